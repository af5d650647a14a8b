//! The few system calls the harness needs that std lacks: batched UDP (recvmmsg/sendmmsg)
//! and CPU pinning. The only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd};

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(io::Error::other)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::other)
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only when nothing else on its CPU wants to.
pub fn idle_priority() -> io::Result<()> {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread (0) with a valid parameter block
    // that outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &p) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Buffers for batched datagram I/O on a connected or unconnected UDP socket.
pub struct Batch {
    bufs: Vec<[u8; 2048]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("size", &self.bufs.len())
            .finish()
    }
}

impl Batch {
    /// Room for `n` datagrams.
    pub fn new(n: usize) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Self {
            bufs: vec![[0u8; 2048]; n],
            lens: vec![0; n],
            addrs: vec![zero_addr; n],
            addr_lens: vec![0; n],
            iovs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        }
    }

    /// Datagram `i`'s bytes (after a receive, its received length).
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// Datagram `i`'s buffer, to fill in place before `set_len`.
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Sets the length of datagram `i`.
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(2048);
    }

    fn headers(&mut self, n: usize, receive: bool, with_addr: bool) {
        self.iovs.clear();
        self.hdrs.clear();
        for i in 0..n {
            let len = if receive { 2048 } else { self.lens[i] };
            self.iovs.push(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: len,
            });
        }
        for i in 0..n {
            // SAFETY: mmsghdr is plain old data; zero is a valid starting value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            if with_addr {
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = if receive {
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t
                } else {
                    self.addr_lens[i]
                };
            }
            self.hdrs.push(h);
        }
    }

    /// Receives up to `n` datagrams (blocking for the first unless the socket is
    /// non-blocking). Remembers each sender for [`Batch::send_back`].
    pub fn recv(&mut self, sock: &impl AsRawFd, n: usize) -> io::Result<usize> {
        let n = n.min(self.bufs.len());
        self.headers(n, true, true);
        // SAFETY: `hdrs[..n]` point into `iovs`, `bufs` and `addrs`, which live in `self`
        // and are not touched until the call returns; each iovec covers a whole 2048-byte
        // buffer and each name a whole sockaddr_storage.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = r as usize;
        for i in 0..r {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.addr_lens[i] = self.hdrs[i].msg_hdr.msg_namelen;
        }
        Ok(r)
    }

    /// Sends datagrams `0..n` (to their senders if `back`, else on the connected socket).
    pub fn send(&mut self, sock: &impl AsRawFd, n: usize, back: bool) -> io::Result<usize> {
        let n = n.min(self.bufs.len());
        self.headers(n, false, back);
        // SAFETY: as in `recv`; iovecs cover the set lengths, names the lengths recvmmsg
        // reported for them.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Sends datagrams `0..n` back to the addresses they came from.
    pub fn send_back(&mut self, sock: &impl AsRawFd, n: usize) -> io::Result<usize> {
        self.send(sock, n, true)
    }
}
