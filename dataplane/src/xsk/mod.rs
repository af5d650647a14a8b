//! AF_XDP: one UMEM per (interface, rx queue) and the sockets bound to it, through xsk-rs.
//!
//! - [`umem`]: the queue's UMEM, its shared fill/completion rings and free list, the frame
//!   counters and the debug audit.
//! - [`socket`]: sockets, their rx/tx halves and the frame guards ([`RxFrame`],
//!   [`TxSlot`]) through which alone user space touches a frame.
//! - `ledger`: the per-frame place table behind [`QueueUmem::audit`].
//!
//! With `sys`, the only modules with `unsafe`: xsk-rs's ring operations are unsafe because
//! the caller must guarantee descriptors belong to the UMEM and are in one place at a time;
//! the guards make that a property of the types.

mod ledger;
pub mod socket;
pub mod umem;

pub use ledger::{AuditError, Place, PlaceCounts};
pub use socket::{RxFrame, RxPart, TxPart, TxSlot, XskSocket};
pub use umem::{
    BindMode, FrameCounts, FrameStates, MAX_FRAME, MAX_RX_BATCH, QueueUmem, XskConfig, XskError,
};
