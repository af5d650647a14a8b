//! A raw endpoint: AF_XDP sockets on every rx queue for an endpoint that owns a MAC (and
//! whatever MACs it claims later), with no stack of its own — what a switch uses to reach
//! the NIC. Its classifier entries live as long as it does.

use std::sync::{Arc, Mutex};

use super::thread::EndpointGuard;
use crate::{
    classifier::{Classifier, ClassifierError, EndpointAddrs, EndpointId, EndpointKind},
    wire::Mac,
    xsk::XskSocket,
};

/// An fd as the XskMap takes it.
#[derive(Clone, Copy, Debug)]
pub struct SocketFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// AF_XDP sockets of one endpoint, one per rx queue, and its registration.
#[derive(Debug)]
pub struct RawEndpoint {
    // Declared first: dropped first, so the classifier stops redirecting to the sockets
    // before they close.
    guard: EndpointGuard,
    /// The sockets, one per rx queue (queue order).
    pub sockets: Vec<XskSocket>,
    /// The interface's index.
    pub ifindex: u32,
    /// The interface's MTU.
    pub mtu: u32,
    /// (rx queue, socket fd) of each socket, for the XskMap entries of ports.
    socket_fds: Vec<(u32, SocketFd)>,
}

impl RawEndpoint {
    pub(super) fn new(
        guard: EndpointGuard,
        sockets: Vec<XskSocket>,
        ifindex: u32,
        mtu: u32,
    ) -> Self {
        use std::os::fd::AsRawFd as _;
        let socket_fds = sockets
            .iter()
            .map(|s| (s.queue().queue(), SocketFd(s.as_raw_fd())))
            .collect();
        Self {
            guard,
            sockets,
            ifindex,
            mtu,
            socket_fds,
        }
    }

    /// The endpoint's slot.
    pub fn endpoint(&self) -> EndpointId {
        self.guard.id()
    }

    /// The classifier it is registered in.
    pub fn classifier(&self) -> &Arc<Mutex<Classifier>> {
        self.guard.classifier()
    }

    /// Registers a port behind this endpoint: a classifier endpoint of its own (kind
    /// port, numbered `port`) whose frames arrive on this endpoint's sockets. It owns the
    /// MACs claimed for it and goes (with them) when the guard drops.
    pub fn add_port(&self, port: u32) -> Result<EndpointGuard, ClassifierError> {
        let mut c = self.classifier().lock().unwrap_or_else(|e| e.into_inner());
        let id = c.add_endpoint(&EndpointAddrs {
            thread: port,
            kind: EndpointKind::Port,
            ..EndpointAddrs::default()
        })?;
        let guard = EndpointGuard::new(Arc::clone(self.classifier()), id);
        for (queue, fd) in &self.socket_fds {
            c.set_socket(*queue, id.0, *fd)?;
        }
        Ok(guard)
    }

    /// Claims `mac` for endpoint `id` (a port's): frames to it are redirected here.
    pub fn claim(&self, id: EndpointId, mac: Mac) -> Result<(), ClassifierError> {
        let mut c = self.classifier().lock().unwrap_or_else(|e| e.into_inner());
        c.add_mac(id, mac.0)
    }

    /// Gives up `mac` claimed for endpoint `id`.
    pub fn release(&self, id: EndpointId, mac: Mac) -> Result<(), ClassifierError> {
        let mut c = self.classifier().lock().unwrap_or_else(|e| e.into_inner());
        c.remove_mac(id, mac.0)
    }
}
