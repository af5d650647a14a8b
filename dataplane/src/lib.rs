//! The ioth data plane.
//!
//! Frames travel NIC → XDP classifier ([`classifier`]) → AF_XDP rings and UMEM ([`xsk`]) →
//! the owning thread's stack. This crate holds everything after the NIC that runs in user
//! space, plus [`netns`], the namespace/veth fixtures that tests, the demo and the benchmark
//! harness share.
#![deny(unsafe_code)]

pub mod classifier;
pub mod netns;
pub mod xsk;

pub use classifier::{
    AttachMode, Classifier, ClassifierError, EndpointAddrs, EndpointId, LoadOptions, ModeRequest,
    VerdictCounters,
};
