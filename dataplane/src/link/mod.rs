//! Links: what a stack's frames travel over, each a thin driver behind one [`Link`] trait.
//!
//! - [`xsk`]: AF_XDP — the received UMEM frame lent to smoltcp in place, replies written
//!   into free UMEM frames; [`checksum`] completes partial checksums on the way in,
//!   [`retx`] counts retransmissions on the way out.
//! - [`tap`]: a Linux TAP device (the benchmark's smoltcp-over-TAP system).
//! - [`sim`]: an in-memory pair with a virtual clock and seeded loss and reordering, for
//!   deterministic tests.
//!
//! Links for endpoints that are not thread stacks (ports to other processes and hosts)
//! arrive beside these.

pub mod checksum;
pub mod device;
pub mod local;
pub mod retx;
pub mod sim;
pub mod tap;
pub mod xsk;

pub use device::Link;
pub use xsk::{LinkCounters, XdpStats, XskDevice};
