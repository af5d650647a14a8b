//! The XDP classifier seen from user space. It never touches frames; it says which endpoint
//! owns which MAC/IP and which AF_XDP socket serves an endpoint on an rx queue. Endpoints
//! come and go at run time by map updates, without reloading the program.
//!
//! - [`program`]: [`Classifier`] — load, attach/detach (dropping it detaches), test runs.
//! - [`endpoints`]: registering endpoints, their addresses and sockets; reaping dead owners.
//! - [`counters`]: verdict and per-endpoint counters; [`TxPublisher`] for the owners.
//! - `nic`: the NIC's address list follows the endpoints' MACs.
//! - [`pin`]: persistent attachments in bpffs shared by several processes.
//! - [`view`]: read-only access from any process (what `ioth status` shows).
//! - [`types`]: errors, modes, options and endpoint addresses.

pub mod counters;
pub mod endpoints;
mod nic;
pub mod pin;
pub mod program;
pub mod types;
pub mod view;

pub use counters::{TxPublisher, VerdictCounters};
pub use program::{BENCH_XDP_OBJECT, Classifier, PINNED_MAPS};
pub use types::{
    AttachMode, ClassifierError, EndpointAddrs, EndpointId, EndpointKind, LoadOptions, ModeRequest,
    TestRunDecision,
};
pub use view::{ClassifierView, EndpointView};
