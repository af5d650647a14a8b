//! Endpoints: what a [`Dataplane`] hands out on an interface. Every endpoint owns addresses
//! in the classifier and is served by its own AF_XDP sockets.
//!
//! - [`dataplane`]: [`Dataplane`] — the classifier on one interface and one UMEM per rx
//!   queue; creates endpoints.
//! - [`thread`]: [`EndpointStack`] — a thread's own smoltcp stack.
//! - [`raw`]: [`raw::RawEndpoint`] — AF_XDP sockets for an endpoint without a stack.
//! - [`switch`]: a vde_switch-compatible switch whose ports are pipes of frames to other
//!   processes (VDE clients); it reaches the NIC through a raw endpoint that claims the MACs
//!   learned behind its ports.

pub mod dataplane;
pub mod raw;
pub mod switch;
pub mod thread;

pub use dataplane::{Dataplane, DataplaneError, DataplaneOptions};
pub use thread::{EndpointGuard, EndpointStack};
