//! The XDP classifier seen from user space: load, attach, endpoints, sockets, counters.
//!
//! This module owns the eBPF object and its maps. It never touches frames; it only says which
//! endpoint owns which MAC/IP and which AF_XDP socket serves an endpoint on an rx queue.
//! Endpoints come and go at run time by map updates, without reloading the program.
//!
//! Dropping a [`Classifier`] detaches the program (the attachment is a bpf_link owned by the
//! process, so a crash detaches it too).

use std::{
    collections::BTreeMap,
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, XskMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ioth_common::{
    Config, Counter, EndpointOwner, EndpointSlot, EndpointStats, EndpointTx, FIRST_ENDPOINT_SLOT,
    Ipv4Key, Ipv6Key, MAX_QUEUES, MacKey, NO_SLOT, PROGRAM_NAME, SLOTS_PER_QUEUE, TRACE_GLOBAL,
    Trace, map_names, xsk_index,
};

/// The compiled classifier, built by build.rs through aya-build.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ioth-ebpf"));

/// The benchmark harness's XDP programs (the `ioth-bench-xdp` binary of `ebpf/ioth-ebpf`:
/// live-frame generator, XDP_DROP ceiling, counters). `build.rs` builds every binary of that
/// package, so `ioth-bench` takes the object from here instead of building it again.
pub static BENCH_XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ioth-bench-xdp"));

/// `BPF_NOEXIST`: insert only if the key is not there yet.
const BPF_NOEXIST: u64 = 1;

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

type Result<T, E = ClassifierError> = std::result::Result<T, E>;

fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> ClassifierError {
    move |source| ClassifierError::Map { map, op, source }
}

/// The XDP attach mode actually obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// An endpoint's slot in the classifier (its index in the XskMap's per-queue range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

/// The verdict counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictCounters {
    /// Redirected into a socket.
    pub redirect: u64,
    /// Passed to the kernel.
    pub pass: u64,
    /// Dropped (owned, no socket on the queue).
    pub drop: u64,
    /// Aborted (program error).
    pub aborted: u64,
}

impl VerdictCounters {
    /// The counter of one verdict.
    pub fn get(&self, c: Counter) -> u64 {
        match c {
            Counter::Redirect => self.redirect,
            Counter::Pass => self.pass,
            Counter::Drop => self.drop,
            Counter::Aborted => self.aborted,
        }
    }
    /// All frames seen.
    pub fn total(&self) -> u64 {
        self.redirect + self.pass + self.drop + self.aborted
    }
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

/// Writes one endpoint's [`EndpointTx`] counters into the classifier's tx map, for other
/// processes to read. One system call per write: call it a few times a second, not per packet.
pub struct TxPublisher {
    map: Array<MapData, EndpointTx>,
    slot: u32,
}

impl fmt::Debug for TxPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxPublisher")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl TxPublisher {
    /// Stores `value` as the endpoint's counters.
    pub fn publish(&mut self, value: &EndpointTx) -> Result<()> {
        self.map
            .set(self.slot, value, 0)
            .map_err(map_err(map_names::EP_TX, "publish"))
    }
}

/// The loaded XDP classifier and its maps.
pub struct Classifier {
    ebpf: Ebpf,
    by_mac: HashMap<MapData, MacKey, EndpointSlot>,
    by_ipv4: HashMap<MapData, Ipv4Key, EndpointSlot>,
    by_ipv6: HashMap<MapData, Ipv6Key, EndpointSlot>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    ep_stats: PerCpuArray<MapData, EndpointStats>,
    config: Array<MapData, Config>,
    owners: HashMap<MapData, u32, EndpointOwner>,
    ep_tx: Array<MapData, EndpointTx>,
    /// Kernel id of the tx-counter map (writers open their own handle by id).
    ep_tx_id: u32,
    trace: Option<Array<MapData, Trace>>,
    attachment: Option<(String, AttachMode, XdpLinkId)>,
    endpoints: BTreeMap<u32, EndpointAddrs>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("attachment", &self.attachment)
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(ClassifierError::Missing(name))?;
    T::try_from(map).map_err(map_err(name, "open"))
}

impl Classifier {
    /// Loads the classifier into the kernel (not attached yet).
    pub fn load(opts: LoadOptions) -> Result<Self> {
        let trace_on: u32 = opts.trace.into();
        let log_level: u8 = if opts.log { 0xff } else { 0 };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(TRACE_GLOBAL, &trace_on, true)
            .override_global("AYA_LOG_LEVEL", &log_level, false);
        let pinned = opts.pin_dir.is_some();
        let pin_paths: Vec<(&'static str, std::path::PathBuf)> = opts
            .pin_dir
            .iter()
            .flat_map(|dir| {
                crate::pin::PINNED_MAPS
                    .iter()
                    .map(move |m| (*m, dir.join(m)))
            })
            .collect();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM).map_err(ClassifierError::Load)?;
        let logger = if opts.log {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => Some(logger),
                Err(e) => {
                    log::warn!("eBPF logging unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(ClassifierError::Missing("program"))?
            .try_into()
            .map_err(ClassifierError::Program)?;
        program.load().map_err(ClassifierError::Program)?;

        let mut config: Array<MapData, Config> = take(&mut ebpf, map_names::CONFIG)?;
        if !pinned {
            // A shared (pinned) configuration belongs to whoever attached it.
            config
                .set(0, Config { flags: 0 }, 0)
                .map_err(map_err(map_names::CONFIG, "initialise"))?;
        }
        let ep_tx_id = match ebpf.map(map_names::EP_TX) {
            Some(aya::maps::Map::Array(data)) => data
                .info()
                .map_err(map_err(map_names::EP_TX, "read its id"))?
                .id(),
            _ => return Err(ClassifierError::Missing(map_names::EP_TX)),
        };
        let trace = if opts.trace {
            Some(take(&mut ebpf, map_names::TRACE)?)
        } else {
            None
        };
        Ok(Self {
            by_mac: take(&mut ebpf, map_names::BY_MAC)?,
            by_ipv4: take(&mut ebpf, map_names::BY_IPV4)?,
            by_ipv6: take(&mut ebpf, map_names::BY_IPV6)?,
            xsks: take(&mut ebpf, map_names::XSKS)?,
            counters: take(&mut ebpf, map_names::COUNTERS)?,
            ep_stats: take(&mut ebpf, map_names::EP_STATS)?,
            owners: take(&mut ebpf, map_names::OWNERS)?,
            ep_tx: take(&mut ebpf, map_names::EP_TX)?,
            ep_tx_id,
            config,
            trace,
            ebpf,
            attachment: None,
            endpoints: BTreeMap::new(),
            logger,
        })
    }

    fn program(&self) -> Result<&Xdp> {
        self.ebpf
            .program(PROGRAM_NAME)
            .ok_or(ClassifierError::Missing("program"))?
            .try_into()
            .map_err(ClassifierError::Program)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(ClassifierError::Missing("program"))?
            .try_into()
            .map_err(ClassifierError::Program)
    }

    /// Attaches to `iface`. `Auto` tries driver mode, then skb mode. Returns the mode obtained.
    pub fn attach(&mut self, iface: &str, mode: ModeRequest) -> Result<AttachMode> {
        if let Some((current, _, _)) = &self.attachment {
            return Err(ClassifierError::AlreadyAttached(current.clone()));
        }
        if nix::net::if_::if_nametoindex(iface).is_err() {
            return Err(ClassifierError::UnknownInterface(iface.to_owned()));
        }
        let tries: &[AttachMode] = match mode {
            ModeRequest::Auto => &[AttachMode::Driver, AttachMode::Skb],
            ModeRequest::Driver => &[AttachMode::Driver],
            ModeRequest::Skb => &[AttachMode::Skb],
        };
        let mut last = None;
        for &m in tries {
            let xdp_mode = match m {
                AttachMode::Driver => XdpMode::Driver,
                AttachMode::Skb => XdpMode::Skb,
            };
            match self.program_mut()?.attach(iface, xdp_mode) {
                Ok(link) => {
                    self.attachment = Some((iface.to_owned(), m, link));
                    return Ok(m);
                }
                Err(e) => {
                    log::debug!("attach {iface} in {m} mode: {e}");
                    last = Some((m, e));
                }
            }
        }
        let (mode, source) = last.expect("at least one mode is tried");
        Err(ClassifierError::Attach {
            iface: iface.to_owned(),
            mode,
            source,
        })
    }

    /// Hands the attachment over to a pin at `path`: it outlives this classifier and the
    /// process, until the pin is removed ([`crate::pin::detach`]).
    pub fn pin_attachment(&mut self, path: &std::path::Path) -> Result<()> {
        let Some((iface, mode, link)) = self.attachment.take() else {
            return Err(ClassifierError::InvalidEndpoint("not attached"));
        };
        let link = self
            .program_mut()?
            .take_link(link)
            .map_err(ClassifierError::Program)?;
        let fd_link =
            aya::programs::links::FdLink::try_from(link).map_err(|e| ClassifierError::Pin {
                path: path.display().to_string(),
                why: format!("{e} ({iface} was attached in {mode} mode without a bpf_link)"),
            })?;
        fd_link.pin(path).map_err(|e| ClassifierError::Pin {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(())
    }

    /// Removes every endpoint whose owning process no longer exists (a server that was
    /// killed): its addresses, sockets and owner entry. Returns the slots reaped.
    pub fn reap_dead_owners(&mut self) -> Result<Vec<u32>> {
        let dead: Vec<u32> = self
            .owners
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(_, o)| !crate::inspect::process_alive(o.pid))
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &dead {
            remove_keys_of(&mut self.by_mac, slot);
            remove_keys_of(&mut self.by_ipv4, slot);
            remove_keys_of(&mut self.by_ipv6, slot);
            for q in 0..MAX_QUEUES {
                let _ = self.xsks.unset(xsk_index(q, slot));
            }
            let _ = self.owners.remove(&slot);
        }
        Ok(dead)
    }

    /// Detaches from the interface (no-op if not attached).
    pub fn detach(&mut self) -> Result<()> {
        if let Some((_, _, link)) = self.attachment.take() {
            self.program_mut()?
                .detach(link)
                .map_err(ClassifierError::Program)?;
        }
        Ok(())
    }

    /// The interface and mode, if attached.
    pub fn attachment(&self) -> Option<(&str, AttachMode)> {
        self.attachment.as_ref().map(|(i, m, _)| (i.as_str(), *m))
    }

    /// The kernel's id of the loaded program.
    pub fn program_id(&self) -> Result<u32> {
        let info = self.program()?.info().map_err(ClassifierError::Program)?;
        Ok(info.id())
    }

    /// Turns fan-out of unowned broadcast/multicast to the per-queue shared socket on or off.
    pub fn set_fanout(&mut self, on: bool) -> Result<()> {
        let flags = if on { ioth_common::CONFIG_FANOUT } else { 0 };
        self.config
            .set(0, Config { flags }, 0)
            .map_err(map_err(map_names::CONFIG, "set"))
    }

    /// Registers an endpoint owning `addrs` in a free slot. Every address must be free; on any
    /// failure nothing stays registered.
    pub fn add_endpoint(&mut self, addrs: &EndpointAddrs) -> Result<EndpointId> {
        if addrs.mac.is_none() && addrs.ipv4.is_empty() && addrs.ipv6.is_empty() {
            return Err(ClassifierError::InvalidEndpoint("it owns no address"));
        }
        if let Some(mac) = addrs.mac {
            if mac[0] & 1 != 0 {
                return Err(ClassifierError::InvalidEndpoint(
                    "a multicast MAC cannot be owned",
                ));
            }
            if mac == [0; 6] {
                return Err(ClassifierError::InvalidEndpoint(
                    "the zero MAC cannot be owned",
                ));
            }
        }
        // The owners map allocates slots: claiming a slot is an insert-if-absent, atomic
        // even when several processes share pinned maps. The owner is this process and the
        // calling thread (a stack's thread).
        let owner = EndpointOwner {
            pid: std::process::id(),
            tid: nix::unistd::gettid().as_raw() as u32,
            thread: addrs.thread,
            pad: 0,
        };
        let mut claimed = None;
        for s in FIRST_ENDPOINT_SLOT..SLOTS_PER_QUEUE {
            if self.endpoints.contains_key(&s) {
                continue;
            }
            match self.owners.insert(s, owner, BPF_NOEXIST) {
                Ok(()) => {
                    claimed = Some(s);
                    break;
                }
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(map_err(map_names::OWNERS, "claim a slot")(e)),
            }
        }
        let slot = claimed.ok_or(ClassifierError::NoFreeSlot(
            SLOTS_PER_QUEUE - FIRST_ENDPOINT_SLOT,
        ))?;
        self.endpoints.insert(slot, EndpointAddrs::default());
        match self.insert_addrs(slot, addrs) {
            Ok(()) => {
                self.reset_stats(slot)?;
                Ok(EndpointId(slot))
            }
            Err(e) => {
                // Roll back whatever was inserted.
                let _ = self.remove_endpoint(EndpointId(slot));
                Err(e)
            }
        }
    }

    fn insert_addrs(&mut self, slot: u32, addrs: &EndpointAddrs) -> Result<()> {
        let value = EndpointSlot { slot };
        let in_use = |addr: String| {
            move |e: MapError| match &e {
                MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EEXIST) => {
                    ClassifierError::AddressInUse { addr }
                }
                _ => map_err("ownership map", "insert")(e),
            }
        };
        if let Some(mac) = addrs.mac {
            self.by_mac
                .insert(MacKey::new(mac), value, BPF_NOEXIST)
                .map_err(in_use(format_mac(mac)))?;
            self.endpoints.get_mut(&slot).expect("reserved").mac = Some(mac);
        }
        for ip in &addrs.ipv4 {
            self.by_ipv4
                .insert(Ipv4Key { addr: ip.octets() }, value, BPF_NOEXIST)
                .map_err(in_use(ip.to_string()))?;
            self.endpoints
                .get_mut(&slot)
                .expect("reserved")
                .ipv4
                .push(*ip);
        }
        for ip in &addrs.ipv6 {
            self.by_ipv6
                .insert(Ipv6Key { addr: ip.octets() }, value, BPF_NOEXIST)
                .map_err(in_use(ip.to_string()))?;
            self.endpoints
                .get_mut(&slot)
                .expect("reserved")
                .ipv6
                .push(*ip);
        }
        Ok(())
    }

    fn reset_stats(&mut self, slot: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| ClassifierError::Map {
            map: map_names::EP_STATS,
            op: "count CPUs",
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            }),
        })?;
        let zero = aya::maps::PerCpuValues::try_from(vec![EndpointStats::default(); cpus])
            .map_err(|e| ClassifierError::Map {
                map: map_names::EP_STATS,
                op: "zero",
                source: MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-cpu values",
                    io_error: e,
                }),
            })?;
        self.ep_stats
            .set(slot, zero, 0)
            .map_err(map_err(map_names::EP_STATS, "zero"))?;
        self.ep_tx
            .set(slot, EndpointTx::default(), 0)
            .map_err(map_err(map_names::EP_TX, "zero"))
    }

    /// A handle through which `id`'s owner publishes its transmit counters (its own map
    /// handle, so the owning thread writes without taking the classifier's lock).
    pub fn tx_publisher(&self, id: EndpointId) -> Result<TxPublisher> {
        let data = MapData::from_id(self.ep_tx_id).map_err(map_err(map_names::EP_TX, "open"))?;
        let map = Array::try_from(aya::maps::Map::Array(data))
            .map_err(map_err(map_names::EP_TX, "open"))?;
        Ok(TxPublisher { map, slot: id.0 })
    }

    /// Removes an endpoint: its addresses and its sockets on every queue.
    pub fn remove_endpoint(&mut self, id: EndpointId) -> Result<()> {
        let addrs = self
            .endpoints
            .remove(&id.0)
            .ok_or(ClassifierError::UnknownEndpoint(id.0))?;
        // Remove everything even if one removal fails; report the first failure.
        let mut first_err = None;
        let mut note = |r: std::result::Result<(), MapError>, map| {
            if let Err(e) = r
                && first_err.is_none()
            {
                first_err = Some(map_err(map, "remove")(e));
            }
        };
        if let Some(mac) = addrs.mac {
            note(self.by_mac.remove(&MacKey::new(mac)), map_names::BY_MAC);
        }
        for ip in addrs.ipv4 {
            note(
                self.by_ipv4.remove(&Ipv4Key { addr: ip.octets() }),
                map_names::BY_IPV4,
            );
        }
        for ip in addrs.ipv6 {
            note(
                self.by_ipv6.remove(&Ipv6Key { addr: ip.octets() }),
                map_names::BY_IPV6,
            );
        }
        for q in 0..MAX_QUEUES {
            // Unset of an empty XskMap slot is ENOENT-free (array semantics): ignore errors.
            let _ = self.xsks.unset(xsk_index(q, id.0));
        }
        // Absent if registration failed half-way: ignore.
        let _ = self.owners.remove(&id.0);
        first_err.map_or(Ok(()), Err)
    }

    /// The endpoints registered through this classifier.
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointId, &EndpointAddrs)> {
        self.endpoints.iter().map(|(s, a)| (EndpointId(*s), a))
    }

    /// Puts `socket` in the XskMap for endpoint `slot` (or [`ioth_common::FANOUT_SLOT`]) on `queue`.
    pub fn set_socket(&mut self, queue: u32, slot: u32, socket: impl AsRawFd) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(ClassifierError::QueueOutOfRange(queue));
        }
        if slot >= SLOTS_PER_QUEUE {
            return Err(ClassifierError::UnknownEndpoint(slot));
        }
        self.xsks
            .set(xsk_index(queue, slot), socket, 0)
            .map_err(map_err(map_names::XSKS, "set"))
    }

    /// Removes the socket of `slot` on `queue`.
    pub fn clear_socket(&mut self, queue: u32, slot: u32) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(ClassifierError::QueueOutOfRange(queue));
        }
        self.xsks
            .unset(xsk_index(queue, slot))
            .map_err(map_err(map_names::XSKS, "unset"))
    }

    /// Verdict counters summed over CPUs.
    pub fn counters(&self) -> Result<VerdictCounters> {
        let mut sum = [0u64; Counter::COUNT as usize];
        for (i, total) in sum.iter_mut().enumerate() {
            let values = self
                .counters
                .get(&(i as u32), 0)
                .map_err(map_err(map_names::COUNTERS, "read"))?;
            *total = values.iter().sum();
        }
        Ok(VerdictCounters {
            redirect: sum[Counter::Redirect as usize],
            pass: sum[Counter::Pass as usize],
            drop: sum[Counter::Drop as usize],
            aborted: sum[Counter::Aborted as usize],
        })
    }

    /// Receive counters of one slot, summed over CPUs.
    pub fn endpoint_stats(&self, slot: u32) -> Result<EndpointStats> {
        let values = self
            .ep_stats
            .get(&slot, 0)
            .map_err(map_err(map_names::EP_STATS, "read"))?;
        Ok(values
            .iter()
            .fold(EndpointStats::default(), |a, v| EndpointStats {
                rx_packets: a.rx_packets + v.rx_packets,
                rx_bytes: a.rx_bytes + v.rx_bytes,
                rx_dropped: a.rx_dropped + v.rx_dropped,
            }))
    }

    /// The transmit counters `slot`'s owner published last.
    pub fn endpoint_tx(&self, slot: u32) -> Result<EndpointTx> {
        self.ep_tx
            .get(&slot, 0)
            .map_err(map_err(map_names::EP_TX, "read"))
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, as if it arrived on
    /// (`ifindex`, `queue`); `ifindex` 0 allows queue 0 only. With tracing on (see
    /// [`LoadOptions::trace`]) the decision carries the target; otherwise slot and index are
    /// [`NO_SLOT`].
    pub fn test_run(&self, frame: &[u8], ifindex: u32, queue: u32) -> Result<TestRunDecision> {
        let before = match &self.trace {
            Some(t) => Some(t.get(&0, 0).map_err(map_err(map_names::TRACE, "read"))?),
            None => None,
        };
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        ctx[16..20].copy_from_slice(&queue.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let result = self
            .program()?
            .test_run(opts)
            .map_err(ClassifierError::TestRun)?;
        let (slot, index) = match (&self.trace, before) {
            (Some(t), Some(before)) => {
                let after = t.get(&0, 0).map_err(map_err(map_names::TRACE, "read"))?;
                if after.seq == before.seq {
                    // The program did not trace: it returned before deciding (aborted).
                    (NO_SLOT, NO_SLOT)
                } else {
                    (after.slot, after.xsk_index)
                }
            }
            _ => (NO_SLOT, NO_SLOT),
        };
        Ok(TestRunDecision {
            action: result.return_value,
            slot,
            xsk_index: index,
        })
    }

    /// Runs the program `repeat` times on `frame` in the kernel (BPF_PROG_TEST_RUN, queue 0)
    /// and returns the kernel's average time per run: the classifier's cost per frame.
    pub fn time_per_frame(&self, frame: &[u8], repeat: u32) -> Result<std::time::Duration> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        };
        let result = self
            .program()?
            .test_run(opts)
            .map_err(ClassifierError::TestRun)?;
        Ok(result.duration)
    }

    /// Forwards pending eBPF log records (loaded with [`LoadOptions::log`]) to the `log` crate.
    pub fn flush_log(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// The program, for BPF_PROG_TEST_RUN with live frames (benchmark generators).
    pub fn xdp_program(&self) -> Result<&Xdp> {
        self.program()
    }
}

impl Drop for Classifier {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::warn!("detaching the classifier: {e}");
        }
    }
}

/// Removes every key of an ownership map that points at `slot`.
fn remove_keys_of<K: aya::Pod>(map: &mut HashMap<MapData, K, EndpointSlot>, slot: u32) {
    let keys: Vec<K> = map
        .iter()
        .filter_map(|kv| kv.ok())
        .filter(|(_, v)| v.slot == slot)
        .map(|(k, _)| k)
        .collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}
