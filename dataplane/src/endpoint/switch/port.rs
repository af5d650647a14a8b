//! A switch port of any kind: a VDE client, or a VXLAN tunnel to other hosts.

use std::{io, os::fd::RawFd};

use super::{vde::VdePort, vxlan::VxlanPort};

/// One port.
#[derive(Debug)]
pub enum Port {
    /// A VDE client (vde_plug, vdens, QEMU, `ioth run`).
    Vde(VdePort),
    /// A VXLAN tunnel.
    Vxlan(VxlanPort),
}

impl Port {
    /// The next frame from the port, if one is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Port::Vde(p) => p.recv(buf),
            Port::Vxlan(p) => p.recv(buf),
        }
    }

    /// Sends a frame out of the port; `false` if it was dropped.
    pub fn send(&self, frame: &[u8]) -> bool {
        match self {
            Port::Vde(p) => p.send(frame),
            Port::Vxlan(p) => p.send(frame),
        }
    }

    /// The fds to wait on.
    pub fn fds(&self, out: &mut Vec<RawFd>) {
        match self {
            Port::Vde(p) => {
                out.push(p.data_fd());
                out.push(p.ctl_fd());
            }
            Port::Vxlan(p) => out.push(p.fd()),
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
