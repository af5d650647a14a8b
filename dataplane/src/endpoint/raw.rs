//! A raw endpoint: AF_XDP sockets on every rx queue for an endpoint that owns a MAC (and
//! whatever MACs it claims later), with no stack of its own — what a switch uses to reach
//! the NIC. Its classifier entries live as long as it does.

use std::sync::{Arc, Mutex};

use super::thread::EndpointGuard;
use crate::{
    classifier::{Classifier, ClassifierError, EndpointId},
    wire::Mac,
    xsk::XskSocket,
};

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
}

impl RawEndpoint {
    pub(super) fn new(
        guard: EndpointGuard,
        sockets: Vec<XskSocket>,
        ifindex: u32,
        mtu: u32,
    ) -> Self {
        Self {
            guard,
            sockets,
            ifindex,
            mtu,
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

    /// Claims `mac` for this endpoint (frames to it are redirected here).
    pub fn claim(&self, mac: Mac) -> Result<(), ClassifierError> {
        let mut c = self.classifier().lock().unwrap_or_else(|e| e.into_inner());
        c.add_mac(self.endpoint(), mac.0)
    }

    /// Gives up a claimed `mac`.
    pub fn release(&self, mac: Mac) -> Result<(), ClassifierError> {
        let mut c = self.classifier().lock().unwrap_or_else(|e| e.into_inner());
        c.remove_mac(self.endpoint(), mac.0)
    }
}
