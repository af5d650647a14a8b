//! Opening a TAP device (`/dev/net/tun`, `TUNSETIFF` with `IFF_TAP | IFF_NO_PI`): a file
//! descriptor on which each read is one Ethernet frame the kernel sends out of the device and
//! each write one frame it receives. The device is made in the calling thread's network
//! namespace; the fd works from any thread.
#![allow(unsafe_code)]

use std::{
    fs::OpenOptions,
    io,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::fs::OpenOptionsExt as _,
};

/// `TUNSETIFF` (`_IOW('T', 202, int)`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with its `ifr_flags` member.
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates (or attaches to) TAP device `name`, non-blocking. Returns its fd.
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut ifr = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    for (d, s) in ifr.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid `struct ifreq` (name and flags) that outlives the call; the
    // kernel reads it and may write the name back.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &raw mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Reads one frame from a TAP fd into `buf`; `None` if none is waiting.
pub fn read_frame(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    super::read_frame(fd.as_raw_fd(), buf)
}

/// Writes one frame to a TAP fd; `false` if the device would not take it now.
pub fn write_frame(fd: &OwnedFd, frame: &[u8]) -> bool {
    // SAFETY: `frame` is valid for reads of its length for the duration of the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    n == frame.len() as isize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(size_of::<IfreqFlags>(), 40);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a-name-longer-than-15", "a/b"] {
            assert_eq!(
                open_tap(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }
}
