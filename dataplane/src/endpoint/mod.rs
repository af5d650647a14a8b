//! Endpoints: what a [`Dataplane`] hands out on an interface. Every endpoint owns addresses
//! in the classifier and is served by its own AF_XDP sockets.
//!
//! - [`dataplane`]: [`Dataplane`] — the classifier on one interface and one UMEM per rx
//!   queue; creates endpoints.
//! - [`thread`]: [`EndpointStack`] — a thread's own smoltcp stack (the kind there is today).
//!
//! Ports — endpoints that are pipes of frames to other processes, namespaces and hosts
//! (VDE, TAP in a namespace, VXLAN) — arrive here as a kind of their own, beside `thread`.

pub mod dataplane;
pub mod thread;

pub use dataplane::{Dataplane, DataplaneError, DataplaneOptions};
pub use thread::{EndpointGuard, EndpointStack};
