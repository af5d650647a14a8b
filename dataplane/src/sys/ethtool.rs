//! The ethtool ioctl for channel counts (`ETHTOOL_GCHANNELS` through `SIOCETHTOOL`): how
//! many rx queues a device uses now, which may be fewer than it has.
#![allow(unsafe_code)]

use std::{
    ffi::c_void,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// `ETHTOOL_GCHANNELS` (`include/uapi/linux/ethtool.h`).
const ETHTOOL_GCHANNELS: u32 = 0x3c;
/// `SIOCETHTOOL` (`include/uapi/linux/sockios.h`).
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `struct ifreq` with its `ifr_data` member.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut c_void,
    /// The rest of the union (`struct ifreq` is 40 bytes).
    _pad: [u8; 16],
}

/// The rx channels `iface` uses now (current RX plus combined channels), in the calling
/// thread's network namespace; `None` if the driver does not report channels.
pub fn rx_channels(iface: &str) -> io::Result<Option<u32>> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{iface:?} is not an interface name"),
        ));
    }
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&raw mut channels).cast(),
        _pad: [0; 16],
    };
    for (d, s) in ifr.name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid `struct ifreq` naming the device, whose `ifr_data` points at
    // `channels`, a live `struct ethtool_channels` the kernel fills; both outlive the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL, &raw mut ifr) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(channels.rx_count + channels.combined_count).filter(|n| *n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(size_of::<IfreqData>(), 40);
        assert_eq!(size_of::<EthtoolChannels>(), 36);
    }

    #[test]
    fn bad_names_are_refused_before_the_kernel_sees_them() {
        for bad in ["", "a-name-longer-than-15", "nul\0"] {
            assert_eq!(
                rx_channels(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn loopback_reports_no_channels() {
        // lo has no get_channels: "not reported", not an error.
        assert_eq!(rx_channels("lo").expect("lo exists"), None);
    }
}
