//! The ioth data plane: every thread its own network node.
//!
//! Frames travel NIC → XDP classifier ([`classifier`]) → the owning thread's AF_XDP socket
//! ([`xsk`], one UMEM per rx queue) → that thread's smoltcp [`Stack`] over an
//! [`device::XskDevice`]. Frames no thread owns pass to the kernel.
//!
//! - [`Dataplane`] attaches the classifier to an interface and hands out per-thread stacks
//!   ([`EndpointStack`]) whose MAC/IPs it registers; they are unregistered when the stack
//!   drops (return, thread exit or panic).
//! - Sockets: the blocking API ([`blocking`]: `std::io::Read`/`Write`), the tokio API
//!   ([`aio`]: `AsyncRead`/`AsyncWrite`, enough for hyper), or smoltcp's sockets directly
//!   through [`Stack::sockets`] and [`TcpListener`] (a listener with a real backlog).
//! - The stack is sans-IO; links are thin drivers behind [`device::Link`]: AF_XDP
//!   ([`device::XskDevice`]), TAP ([`tap::TapLink`]) and an in-memory link with a virtual
//!   clock and seeded impairments ([`sim`]).
//! - [`netns`] holds the namespace/veth fixtures that tests, the demo and the benchmarks share.
//!
//! # A multi-threaded server
//!
//! Each worker thread owns one IPv4 address and runs a blocking echo on it:
//!
//! ```no_run
//! use std::{io::{Read, Write}, net::Ipv4Addr, sync::Arc, thread};
//! use ioth_dataplane::{Dataplane, DataplaneOptions, StackConfig, blocking::BlockingStack};
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

pub mod aio;
pub mod apps;
pub mod blocking;
pub mod capture;
pub mod checksum;
pub mod classifier;
pub mod dataplane;
pub mod device;
pub mod inspect;
pub mod netns;
pub mod pin;
pub mod retx;
pub mod sim;
pub mod sockets;
pub mod stack;
pub mod tap;
pub mod xsk;

pub use classifier::{
    AttachMode, Classifier, ClassifierError, EndpointAddrs, EndpointId, LoadOptions, ModeRequest,
    VerdictCounters,
};
pub use dataplane::{Dataplane, DataplaneError, DataplaneOptions, EndpointStack};
pub use sockets::{SocketHandle, Sockets};
pub use stack::{Congestion, Stack, StackConfig, TcpListener};
