//! The ioth data plane.
//!
//! Frames travel NIC → XDP classifier ([`classifier`]) → AF_XDP rings and UMEM ([`xsk`]) →
//! the owning thread's stack. This crate holds everything after the NIC that runs in user
//! space, plus [`netns`], the namespace/veth fixtures that tests, the demo and the benchmark
//! harness share.
#![deny(unsafe_code)]

pub mod aio;
pub mod checksum;
pub mod classifier;
pub mod dataplane;
pub mod device;
pub mod netns;
pub mod sim;
pub mod stack;
pub mod tap;
pub mod xsk;

pub use classifier::{
    AttachMode, Classifier, ClassifierError, EndpointAddrs, EndpointId, LoadOptions, ModeRequest,
    VerdictCounters,
};
pub use dataplane::{Dataplane, DataplaneError, DataplaneOptions, EndpointStack};
pub use stack::{Congestion, Stack, StackConfig, TcpListener};
