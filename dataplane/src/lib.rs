//! The ioth data plane: every thread its own network node.
//!
//! The modules climb in the order a received frame takes:
//!
//! | module | what it owns |
//! |---|---|
//! | [`classifier`] | the XDP program that picks each frame's endpoint (or passes it to the kernel), its maps, pins and read-only view |
//! | [`xsk`] | AF_XDP: one UMEM per rx queue, the sockets' rings, frames owned by guards, the audit |
//! | [`link`] | what a stack runs over: the AF_XDP link (checksum completion, retransmission watch), TAP, in-memory |
//! | [`stack`] | the per-thread smoltcp stack, its sharded sockets, the TCP listener |
//! | [`api`] | sockets for applications: blocking, tokio, the shared echo/discard/source services |
//! | [`endpoint`] | what [`endpoint::Dataplane`] hands out: thread stacks (ports to come) |
//!
//! Beside them: [`wire`] (the one frame parser, [`wire::Mac`]), [`capture`] (per-endpoint
//! capture for `ioth capture`), [`sys`] (process liveness, waiting, queue counts) and
//! [`netns`] (the namespace/veth fixtures that tests, the demo and the benchmarks share).
//!
//! - [`endpoint::Dataplane`] attaches the classifier to an interface and hands out
//!   per-thread stacks ([`endpoint::EndpointStack`]) whose MAC/IPs it registers; they are
//!   unregistered when the stack drops (return, thread exit or panic).
//! - Sockets: the blocking API ([`api::blocking`]: `std::io::Read`/`Write`), the tokio API
//!   ([`api::aio`]: `AsyncRead`/`AsyncWrite`, enough for hyper), or smoltcp's sockets
//!   directly through [`stack::Stack::sockets`] and [`stack::TcpListener`].
//!
//! # A multi-threaded server
//!
//! Each worker thread owns one IPv4 address and runs a blocking echo on it:
//!
//! ```no_run
//! use std::{io::{Read, Write}, net::Ipv4Addr, sync::Arc, thread};
//! use ioth_dataplane::{Dataplane, DataplaneOptions, StackConfig, api::blocking::BlockingStack};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dp = Dataplane::attach("eth0", DataplaneOptions::default())?;
//! let workers: Vec<_> = (0..4u8)
//!     .map(|i| {
//!         let dp = Arc::clone(&dp);
//!         thread::spawn(move || -> std::io::Result<()> {
//!             let config = StackConfig {
//!                 mac: [0x02, 0, 0, 0, 0, i + 1],
//!                 ipv4: vec![(Ipv4Addr::new(192, 0, 2, 10 + i), 24)],
//!                 ..StackConfig::default()
//!             };
//!             let stack = dp
//!                 .stack(config, smoltcp::time::Instant::from_millis(0))
//!                 .map_err(std::io::Error::other)?;
//!             let stack = BlockingStack::new(stack);
//!             let mut listener = stack.listen(7, 16).map_err(std::io::Error::other)?;
//!             loop {
//!                 let mut conn = listener.accept()?;
//!                 let mut buf = [0u8; 1500];
//!                 loop {
//!                     let n = conn.read(&mut buf)?;
//!                     if n == 0 { break; }
//!                     conn.write_all(&buf[..n])?;
//!                 }
//!                 conn.shutdown()?;
//!             }
//!         })
//!     })
//!     .collect();
//! for w in workers { w.join().expect("worker")?; }
//! # Ok(()) }
//! ```
//!
//! `examples/hyper_server.rs` does the same with tokio and hyper.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod capture;
pub mod classifier;
pub mod endpoint;
pub mod link;
pub mod netns;
pub mod stack;
pub mod sys;
pub mod wire;
pub mod xsk;

pub use classifier::{
    AttachMode, Classifier, ClassifierError, EndpointAddrs, EndpointId, LoadOptions, ModeRequest,
    VerdictCounters,
};
pub use endpoint::{Dataplane, DataplaneError, DataplaneOptions, EndpointStack};
pub use stack::{Congestion, SocketHandle, Sockets, Stack, StackConfig, TcpListener};
