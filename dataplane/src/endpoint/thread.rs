//! A thread-stack endpoint: a [`Stack`] over AF_XDP whose addresses are registered in the
//! classifier for exactly as long as it lives. They are removed when it drops — on return,
//! on thread exit and on panic (unwinding drops it) — so traffic is never black-holed by a
//! dead thread.

use std::sync::{Arc, Mutex};

use crate::{
    classifier::{Classifier, EndpointId},
    link::XskDevice,
    stack::{Stack, StackOwner},
};

/// Removes an endpoint's classifier entries (addresses and sockets) when dropped.
#[derive(Debug)]
pub struct EndpointGuard {
    classifier: Arc<Mutex<Classifier>>,
    id: EndpointId,
}

impl EndpointGuard {
    /// A guard for endpoint `id`, registered in `classifier`.
    pub fn new(classifier: Arc<Mutex<Classifier>>, id: EndpointId) -> Self {
        Self { classifier, id }
    }

    /// The endpoint's slot.
    pub fn id(&self) -> EndpointId {
        self.id
    }

    /// The classifier the endpoint is registered in.
    pub fn classifier(&self) -> &Arc<Mutex<Classifier>> {
        &self.classifier
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        let mut c = self.classifier.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = c.remove_endpoint(self.id) {
            log::warn!("removing endpoint {}: {e}", self.id.0);
        }
    }
}

/// A stack registered in the classifier. Derefs to the [`Stack`].
#[derive(Debug)]
pub struct EndpointStack {
    // Declared first: dropped first, so the classifier stops redirecting to the sockets
    // before they close.
    _guard: EndpointGuard,
    stack: Stack<XskDevice>,
}

impl EndpointStack {
    /// The stack `stack`, registered as `guard`'s endpoint.
    pub fn new(guard: EndpointGuard, stack: Stack<XskDevice>) -> Self {
        Self {
            _guard: guard,
            stack,
        }
    }

    /// The endpoint's slot in the classifier.
    pub fn endpoint(&self) -> EndpointId {
        self._guard.id()
    }
}

impl std::ops::Deref for EndpointStack {
    type Target = Stack<XskDevice>;
    fn deref(&self) -> &Self::Target {
        &self.stack
    }
}

impl std::ops::DerefMut for EndpointStack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.stack
    }
}

impl StackOwner for EndpointStack {
    type L = XskDevice;
    fn stack(&mut self) -> &mut Stack<XskDevice> {
        self
    }
}
