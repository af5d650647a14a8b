//! An `AF_PACKET` socket that sees a copy of the broadcast and multicast frames an interface
//! receives, while the kernel keeps the originals: how broadcast from the NIC reaches ports
//! (an XDP program returns one verdict per frame, and an XskMap delivers to one socket).
//!
//! A classic BPF filter keeps only frames whose destination has the group bit; outgoing
//! frames are ignored (`PACKET_IGNORE_OUTGOING`). Non-blocking.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// `PACKET_IGNORE_OUTGOING` (Linux 4.20, `include/uapi/linux/if_packet.h`).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A broadcast/multicast tap on one interface.
#[derive(Debug)]
pub struct GroupTap {
    fd: OwnedFd,
}

impl GroupTap {
    /// Opens the tap on interface `ifindex` (in the calling thread's network namespace).
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The filter first, then the binding: no unfiltered frame gets queued.
        // ldb [0]; jset #1, keep, drop; keep: ret #262144; drop: ret #0
        let mut code = [
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: 1,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 262_144,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_mut_ptr(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value to fill in.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// The socket's fd (to wait on).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next frame, if one is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        super::read_frame(self.fd.as_raw_fd(), buf)
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points at a live T whose size is passed; setsockopt only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
