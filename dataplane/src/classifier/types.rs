//! The classifier's plain types: errors, attach modes, load options, endpoint addresses and
//! the decisions of a test run. No maps here: these travel between the other files.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::{maps::MapError, programs::ProgramError};
use ioth_common::{MAX_QUEUES, PROGRAM_NAME};

/// Errors of the classifier's control path.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// The eBPF object could not be loaded (verifier, missing kernel feature, permissions).
    #[error("loading the XDP classifier")]
    Load(#[source] aya::EbpfError),
    /// The object lacks a map or program this code expects (a build mismatch).
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// The program could not be loaded into the kernel.
    #[error("loading program {PROGRAM_NAME} into the kernel")]
    Program(#[source] ProgramError),
    /// A map operation failed.
    #[error("map {map}: {op}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: MapError,
    },
    /// No interface of that name.
    #[error("no network interface named {0:?}")]
    UnknownInterface(String),
    /// Attaching failed in every mode that was tried.
    #[error("attaching to {iface} in {mode} mode")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode that failed last.
        mode: AttachMode,
        /// The cause.
        #[source]
        source: ProgramError,
    },
    /// The program is attached already.
    #[error("the classifier is already attached to {0}")]
    AlreadyAttached(String),
    /// An address is claimed by another endpoint.
    #[error("{addr} is already claimed by another endpoint")]
    AddressInUse {
        /// The address.
        addr: String,
    },
    /// The endpoint description is not usable.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(&'static str),
    /// Every endpoint slot is taken.
    #[error("all {0} endpoint slots are in use")]
    NoFreeSlot(u32),
    /// No such endpoint.
    #[error("no endpoint in slot {0}")]
    UnknownEndpoint(u32),
    /// The reapers' lock could not be taken.
    #[error("taking the reapers' lock in /run/ioth")]
    ReapLock(#[source] std::io::Error),
    /// The rx queue is beyond what the classifier serves.
    #[error("rx queue {0} is beyond the classifier's {MAX_QUEUES} queues")]
    QueueOutOfRange(u32),
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN")]
    TestRun(#[source] ProgramError),
    /// Pinning failed.
    #[error("pinning at {path}: {why}")]
    Pin {
        /// The pin path.
        path: String,
        /// Why.
        why: String,
    },
}

pub(super) type Result<T, E = ClassifierError> = std::result::Result<T, E>;

pub(super) fn map_err(
    map: &'static str,
    op: &'static str,
) -> impl FnOnce(MapError) -> ClassifierError {
    move |source| ClassifierError::Map { map, op, source }
}

/// The XDP attach mode actually obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) XDP.
    Driver,
    /// Generic (skb) XDP.
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "driver",
            AttachMode::Skb => "skb",
        })
    }
}

/// The attach mode asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Driver mode, falling back to skb mode.
    #[default]
    Auto,
    /// Driver mode only.
    Driver,
    /// Skb mode only.
    Skb,
}

/// Options for [`Classifier::load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Record each decision in the trace map (for the differential test; costs a map write per frame).
    pub trace: bool,
    /// Enable aya-log output of the program (silent otherwise).
    pub log: bool,
    /// Use (or create) the maps pinned in this directory, so that several processes share
    /// one classifier (see [`crate::pin`]).
    pub pin_dir: Option<std::path::PathBuf>,
}

/// The result of one BPF_PROG_TEST_RUN of the classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunDecision {
    /// The XDP action returned.
    pub action: u32,
    /// The owning slot ([`NO_SLOT`] if none), from the trace map.
    pub slot: u32,
    /// The XskMap index, from the trace map.
    pub xsk_index: u32,
}

/// What an endpoint is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A thread's own stack.
    #[default]
    Thread,
    /// A switch port: a pipe of frames to another process or host.
    Port,
    /// A switch's own endpoint (its way to the NIC).
    Switch,
}

impl EndpointKind {
    /// As recorded in the owners map.
    pub fn code(self) -> u32 {
        match self {
            EndpointKind::Thread => ioth_common::OWNER_THREAD,
            EndpointKind::Port => ioth_common::OWNER_PORT,
            EndpointKind::Switch => ioth_common::OWNER_SWITCH,
        }
    }

    /// From the owners map.
    pub fn from_code(c: u32) -> Self {
        match c {
            ioth_common::OWNER_PORT => EndpointKind::Port,
            ioth_common::OWNER_SWITCH => EndpointKind::Switch,
            _ => EndpointKind::Thread,
        }
    }
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointKind::Thread => "thread",
            EndpointKind::Port => "port",
            EndpointKind::Switch => "switch",
        })
    }
}

/// The addresses an endpoint owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointAddrs {
    /// Its own MAC (unicast), or `None` to share the interface's MAC and be found by IP.
    pub mac: Option<[u8; 6]>,
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// The owner's index for this endpoint (a thread index), recorded for labels.
    pub thread: u32,
    /// What it is.
    pub kind: EndpointKind,
    /// MACs it owns besides its own: learned from the ports behind a switch endpoint
    /// ([`crate::classifier::program::Classifier::add_mac`]).
    pub learned: Vec<[u8; 6]>,
}

/// An endpoint's slot in the classifier (its index in the XskMap's per-queue range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

/// A switch port as its switch describes it for other processes (`sys::ports_file`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortInfo {
    /// The port's endpoint slot.
    pub slot: u32,
    /// Its number on the switch.
    pub port: u32,
    /// `vde` or `vxlan`.
    pub kind: String,
    /// What the client said it is (VDE), or the tunnel's remote (VXLAN).
    pub description: String,
    /// The client's process (VDE, from its socket's credentials).
    pub pid: Option<u32>,
}
