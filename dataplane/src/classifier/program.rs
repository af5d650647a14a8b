//! The XDP classifier seen from user space: loading the program, attaching it, test runs.
//!
//! [`Classifier`] owns the eBPF object and its maps (endpoint registration is in
//! `endpoints`, counters in `counters`). It never touches frames; it only says which
//! endpoint owns which MAC/IP and which AF_XDP socket serves an endpoint on an rx queue.
//! Endpoints come and go at run time by map updates, without reloading the program.
//!
//! Dropping a [`Classifier`] detaches the program (the attachment is a bpf_link owned by the
//! process, so a crash detaches it too).

use std::{
    collections::BTreeMap,
    fmt,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, XskMap},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ioth_common::{
    Config, EndpointOwner, EndpointSlot, EndpointStats, EndpointTx, Ipv4Key, Ipv6Key, MacKey,
    NO_SLOT, PROGRAM_NAME, TRACE_GLOBAL, Trace, map_names,
};

use super::types::{
    AttachMode, ClassifierError, EndpointAddrs, LoadOptions, ModeRequest, Result, TestRunDecision,
    map_err,
};
use crate::sys::wait_readable;

/// The compiled classifier, built by build.rs through aya-build.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ioth-ebpf"));

/// The benchmark harness's XDP programs (the `ioth-bench-xdp` binary of `ebpf/ioth-ebpf`:
/// live-frame generator, XDP_DROP ceiling, counters). `build.rs` builds every binary of that
/// package, so `ioth-bench` takes the object from here instead of building it again.
pub static BENCH_XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ioth-bench-xdp"));

/// The maps that are pinned (all but the per-load trace and log maps).
pub const PINNED_MAPS: &[&str] = &[
    map_names::BY_MAC,
    map_names::BY_IPV4,
    map_names::BY_IPV6,
    map_names::XSKS,
    map_names::COUNTERS,
    map_names::EP_STATS,
    map_names::CONFIG,
    map_names::OWNERS,
    map_names::EP_TX,
];

/// The loaded XDP classifier and its maps.
pub struct Classifier {
    pub(super) ebpf: Ebpf,
    pub(super) by_mac: HashMap<MapData, MacKey, EndpointSlot>,
    pub(super) by_ipv4: HashMap<MapData, Ipv4Key, EndpointSlot>,
    pub(super) by_ipv6: HashMap<MapData, Ipv6Key, EndpointSlot>,
    pub(super) xsks: XskMap<MapData>,
    pub(super) counters: PerCpuArray<MapData, u64>,
    pub(super) ep_stats: PerCpuArray<MapData, EndpointStats>,
    pub(super) config: Array<MapData, Config>,
    pub(super) owners: HashMap<MapData, u32, EndpointOwner>,
    pub(super) ep_tx: Array<MapData, EndpointTx>,
    /// Kernel id of the tx-counter map (writers open their own handle by id).
    pub(super) ep_tx_id: u32,
    pub(super) trace: Option<Array<MapData, Trace>>,
    pub(super) attachment: Option<(String, AttachMode, XdpLinkId)>,
    pub(super) endpoints: BTreeMap<u32, EndpointAddrs>,
    /// The interface whose address list carries the endpoints' MACs (once attached or
    /// opened from its pins).
    pub(super) nic: Option<super::nic::NicAddresses>,
    /// Forwards the program's log records while the classifier lives.
    pub(super) _log_forwarder: Option<LogForwarder>,
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
            .flat_map(|dir| PINNED_MAPS.iter().map(move |m| (*m, dir.join(m))))
            .collect();
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(PROGRAM).map_err(ClassifierError::Load)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(ClassifierError::Missing("program"))?
            .try_into()
            .map_err(ClassifierError::Program)?;
        program.load().map_err(ClassifierError::Program)?;
        let log_forwarder = if opts.log {
            let id = program.info().map_err(ClassifierError::Program)?.id();
            Some(LogForwarder::start(id))
        } else {
            None
        };

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
            nic: None,
            _log_forwarder: log_forwarder,
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

    /// Keeps `iface`'s own address list in step with the endpoints' MACs from now on (set
    /// by [`Classifier::attach`] and by opening a pinned classifier).
    pub fn set_nic(&mut self, iface: &str) {
        self.nic = super::nic::NicAddresses::new(iface);
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
                    self.set_nic(iface);
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
    /// process, until the pin is removed ([`super::pin::detach`]).
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
}

impl Drop for Classifier {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::warn!("detaching the classifier: {e}");
        }
    }
}

/// Forwards the classifier program's aya-log records to the `log` crate from a thread of its
/// own (loaded with [`LoadOptions::log`]); stops when dropped. The thread opens the log ring
/// buffer by program id, so nothing of the loader crosses threads.
#[derive(Debug)]
pub(super) struct LogForwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogForwarder {
    fn start(program_id: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ioth-ebpf-log".into())
            .spawn(move || {
                let mut logger = match aya_log::EbpfLogger::init_from_id(program_id) {
                    Ok(l) => l,
                    Err(e) => {
                        log::warn!("eBPF logging unavailable: {e}");
                        return;
                    }
                };
                while !flag.load(Ordering::Relaxed) {
                    let _ = wait_readable(&[logger.as_raw_fd()], 200);
                    logger.flush();
                }
            })
            .map_err(|e| log::warn!("eBPF logging unavailable: starting its thread: {e}"))
            .ok();
        Self { stop, thread }
    }
}

impl Drop for LogForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
