//! Per-endpoint frame capture, for `ioth capture` in another process.
//!
//! Every [`crate::link::XskDevice`] made by a [`crate::endpoint::Dataplane`] carries a [`CaptureTap`]. While
//! nobody captures, the tap costs one relaxed atomic load per frame. A process with taps
//! listens on a Unix socket, `/run/ioth/<pid>.sock` (directory 0700, socket 0600: root
//! only). A client names an interface and an endpoint slot; from then on the owning thread
//! copies each frame it receives or sends into a bounded queue (never blocking: a full queue
//! counts a drop), and a service thread streams the copies to the client until it hangs up
//! or the endpoint goes away.
//!
//! Wire format, after the request line `IOTH-CAPTURE 1 <iface> <slot>\n` and the answer
//! `OK\n` (or `ERR <reason>\n`): records of a 16-byte little-endian header — kind (u8:
//! 0 frame, 1 drop report), direction (u8: 0 received, 1 sent), 2 zero bytes, length (u32),
//! then the frame's time in nanoseconds since the Unix epoch (frames) or the total of
//! dropped frames so far (drop reports) as u64 — followed by `length` frame bytes.
//! [`CaptureFile`] writes them as classic pcap or as pcapng with each frame's direction.

pub mod file;
pub mod protocol;
pub mod stream;
pub mod tap;

pub use file::{CaptureFile, FileFormat};
pub use protocol::{Direction, RUN_DIR, socket_path};
pub use stream::{CaptureError, CaptureStream, Record};
pub use tap::{CaptureTap, TapRegistration, register};
