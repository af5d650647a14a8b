//! The per-thread network stack: smoltcp over a [`crate::link::Link`], sans-IO (the owner's
//! loop passes `now` in and decides when to sleep).
//!
//! - [`node`]: [`Stack`] — the interface, the receive budget, the shard-by-shard poll.
//! - [`sockets`]: the sharded socket sets that keep a packet's cost flat as connections grow.
//! - [`listener`]: [`TcpListener`], a real accept queue over smoltcp's listening sockets.
//! - [`config`]: [`StackConfig`] and the errors of building stacks and sockets.

pub mod config;
pub mod listener;
pub mod node;
pub mod sockets;

pub use config::{Congestion, MAX_ADDRESSES, StackConfig, StackError};
pub use listener::TcpListener;
pub use node::{RX_BUDGET, Stack, StackOwner};
pub use sockets::{SocketHandle, Sockets};
