//! A switch port of any kind: a VDE client, or a VXLAN tunnel to other hosts.

use std::{io, os::fd::RawFd};

use super::{vde::VdePort, vxlan::VxlanPort};
use crate::sys::mmsg::{self, RecvBatch};

/// One port.
#[derive(Debug)]
pub enum Port {
    /// A VDE client (vde_plug, vdens, QEMU, `ioth run`).
    Vde(VdePort),
    /// A VXLAN tunnel.
    Vxlan(Box<VxlanPort>),
}

impl Port {
    /// The frames waiting on the port, as many as `batch` holds, in one recvmmsg(2); how
    /// many (a tunnel's datagrams that carry no frame of ours come back empty).
    pub fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        match self {
            Port::Vde(p) => batch.recv(p.data_fd()),
            Port::Vxlan(p) => p.recv_batch(batch),
        }
    }

    /// Sends `frames` out of the port; how many went (the rest were dropped: the far end's
    /// queue is full or it is gone), in one sendmmsg(2) per 64.
    pub fn send_batch(&mut self, frames: &[&[u8]]) -> usize {
        match self {
            Port::Vde(p) => frames
                .chunks(mmsg::MAX_BATCH)
                .map(|c| mmsg::send_batch(p.data_fd(), c).unwrap_or(0))
                .sum(),
            Port::Vxlan(p) => p.send_batch(frames),
        }
    }

    /// Whether its frames may carry partial (offload) TCP/UDP checksums that the switch must
    /// complete, as a NIC would: a tunnel's sender leaves them to the NIC it believes is
    /// there (Linux's vxlan over a veth does). A VDE client reads complete frames off a TAP.
    pub fn partial_checksums(&self) -> bool {
        matches!(self, Port::Vxlan(_))
    }

    /// The fd that is readable when frames wait.
    pub fn data_fd(&self) -> RawFd {
        match self {
            Port::Vde(p) => p.data_fd(),
            Port::Vxlan(p) => p.fd(),
        }
    }

    /// The fd that is readable when the far end hangs up (a VDE client's control
    /// connection; a tunnel has none).
    pub fn ctl_fd(&self) -> Option<RawFd> {
        match self {
            Port::Vde(p) => Some(p.ctl_fd()),
            Port::Vxlan(_) => None,
        }
    }

    /// Whether the far end went away (a VDE client hung up; a tunnel never does).
    pub fn hung_up(&self) -> bool {
        match self {
            Port::Vde(p) => p.hung_up(),
            Port::Vxlan(_) => false,
        }
    }

    /// Periodic upkeep (a tunnel forgets old remotes).
    pub fn expire(&mut self) {
        if let Port::Vxlan(p) = self {
            p.expire();
        }
    }
}
