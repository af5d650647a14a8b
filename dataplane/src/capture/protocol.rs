//! The capture protocol both ends share: where the socket is, the request line, and the
//! 16-byte record header.

use std::path::PathBuf;

/// Directory of the capture sockets.
pub const RUN_DIR: &str = crate::sys::RUN_DIR;

/// Protocol version in the request line.
pub(super) const PROTOCOL: &str = "IOTH-CAPTURE 1";

/// The capture socket of process `pid`.
pub fn socket_path(pid: u32) -> PathBuf {
    PathBuf::from(RUN_DIR).join(format!("{pid}.sock"))
}

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the endpoint.
    Rx,
    /// Sent by the endpoint.
    Tx,
}

/// A client's request line, `IOTH-CAPTURE 1 <iface> <slot>`: the interface and the slot, or
/// `None` for anything else (the server answers `ERR bad request`).
pub fn parse_request(line: &str) -> Option<(&str, u32)> {
    let mut words = line.split_whitespace();
    let (Some(magic), Some(version), Some(iface), Some(slot), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    if Some(magic) != PROTOCOL.split_whitespace().next()
        || Some(version) != PROTOCOL.split_whitespace().nth(1)
    {
        return None;
    }
    Some((iface, slot.parse().ok()?))
}
