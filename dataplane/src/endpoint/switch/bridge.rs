//! The switch's thread: waits on the control socket, the ports, the AF_XDP sockets and the
//! group tap, and moves each frame where [`SwitchCore`] says.

use std::{
    collections::{BTreeMap, HashSet},
    io,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
};

use smoltcp::time::{Duration, Instant};

use super::{
    core::{Learned, MIN_FRAME, Out, PortId, PortLimits, PortRate, SwitchCore, src},
    port::Port,
    vde::VdeListener,
    vxlan::{VxlanPort, VxlanSpec},
};
use crate::{
    capture::{Direction, TapRegistration},
    classifier::{ClassifierError, EndpointId, TxPublisher, types::PortInfo},
    endpoint::{
        dataplane::{Dataplane, DataplaneError},
        thread::EndpointGuard,
    },
    link::{
        checksum::{L4Checksum, check_l4},
        local::{Member, Route},
    },
    sys::{
        PollSet,
        mmsg::{MAX_BATCH, RecvBatch},
        netlink::Rtnetlink,
        packet::GroupTap,
        ports_file,
    },
    wire::{IpParse, Mac, parse_ip},
    xsk::{RxPart, TxPart},
};

/// Largest frame a port may send (vdeplug4's limit: 9216 bytes of payload + 18).
pub const MAX_PORT_FRAME: usize = 9216 + 18;
/// Frames taken from one source per round before the others get their turn.
const BUDGET: usize = 64;

/// How the switch is set up.
#[derive(Clone, Debug)]
pub struct SwitchOptions {
    /// The directory served as a VDE switch (`DIR/ctl`), if any.
    pub dir: Option<PathBuf>,
    /// VXLAN tunnels to other hosts, each a port.
    pub vxlan: Vec<VxlanSpec>,
    /// Permissions of the directory and the control socket (`vde_switch -m`).
    pub mode: u32,
    /// Group of the directory and the control socket (`vde_switch -g`).
    pub gid: Option<u32>,
    /// The switch's own MAC (its endpoint's address in the classifier).
    pub mac: Mac,
    /// Most MACs learned behind one port.
    pub max_macs_per_port: usize,
    /// A learned MAC unseen this long is forgotten.
    pub max_age: Duration,
    /// The owner's index shown by `ioth endpoints`.
    pub thread: u32,
    /// Rate limits of every port.
    pub limits: PortLimits,
}

/// Errors of starting a switch.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The switch's endpoint could not be made.
    #[error(transparent)]
    Dataplane(Box<DataplaneError>),
    /// A socket could not be set up.
    #[error("{what}")]
    Io {
        /// What.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The thread could not start.
    #[error("the switch thread ended before it was ready")]
    Thread,
}

/// What the switch counted, for operators and tests.
#[derive(Debug, Default)]
pub struct SwitchCounters {
    /// Ports connected now.
    pub ports: AtomicU64,
    /// Frames received from ports.
    pub from_ports: AtomicU64,
    /// Frames received from the NIC (AF_XDP and the group tap).
    pub from_uplink: AtomicU64,
    /// Frames sent out through the NIC.
    pub to_uplink: AtomicU64,
    /// Frames delivered to ports.
    pub to_ports: AtomicU64,
    /// Frames handed to thread stacks of the same data plane.
    pub to_local: AtomicU64,
    /// Frames dropped: runts, oversize, unlearnable or foreign sources, full queues.
    pub dropped: AtomicU64,
    /// Of those, frames from a port with a source address (IP, or ARP sender) that belongs
    /// to another endpoint or to the host.
    pub spoofed: AtomicU64,
    /// Of those, frames over a port's rate limit.
    pub over_rate: AtomicU64,
}

/// A running switch; stops when `stop` is set, then its ports close and its classifier
/// entries go.
#[derive(Debug)]
pub struct SwitchHandle {
    /// Its counters.
    pub counters: Arc<SwitchCounters>,
    thread: JoinHandle<()>,
}

impl SwitchHandle {
    /// Waits for the switch thread to end (after `stop` was set).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts a switch on `dp`'s interface serving `opts.dir`; returns once it is ready (or
/// why it could not start). Port events are reported through `report` (one line each).
pub fn spawn(
    dp: &Arc<Dataplane>,
    opts: SwitchOptions,
    stop: Arc<AtomicBool>,
    report: impl Fn(String) + Send + 'static,
) -> Result<SwitchHandle, SwitchError> {
    let counters = Arc::new(SwitchCounters::default());
    let (ready_tx, ready_rx) = mpsc::channel();
    let dp = Arc::clone(dp);
    let c = Arc::clone(&counters);
    let thread = thread::Builder::new()
        .name("ioth-vde".into())
        .spawn(move || {
            let mut sw = match Switch::new(&dp, &opts, c) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            sw.run(&stop, &report);
        })
        .map_err(|source| SwitchError::Io {
            what: "starting the switch thread".into(),
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(SwitchHandle { counters, thread }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(SwitchError::Thread),
    }
}

/// A port's endpoint: registration, capture tap, transmit counters.
struct PortSlot {
    guard: EndpointGuard,
    tap: TapRegistration,
    publisher: Option<TxPublisher>,
    /// Frames and bytes the port sent (its "transmit", as a thread stack's), and what was
    /// last published.
    sent: (u64, u64),
    published: (u64, u64),
}

impl PortSlot {
    fn id(&self) -> EndpointId {
        self.guard.id()
    }

    /// Publishes the transmit counters if they changed (one map write).
    fn publish(&mut self) {
        if self.sent == self.published {
            return;
        }
        if let Some(p) = &mut self.publisher {
            let v = ioth_common::EndpointTx {
                tx_packets: self.sent.0,
                tx_bytes: self.sent.1,
                ..Default::default()
            };
            if let Err(e) = p.publish(&v) {
                log::debug!("vde: publishing a port's counters: {e}");
            }
        }
        self.published = self.sent;
    }
}

struct Switch {
    raw: crate::endpoint::raw::RawEndpoint,
    rx: Vec<RxPart>,
    tx: TxPart,
    _idle_tx: Vec<TxPart>,
    tap: GroupTap,
    listener: Option<VdeListener>,
    core: SwitchCore,
    ports: BTreeMap<PortId, Port>,
    /// Each port's own endpoint in the classifier (its learned MACs, its counters), its
    /// capture tap and its published transmit counters.
    slots: BTreeMap<PortId, PortSlot>,
    /// Where the ports are described for other processes (`ioth endpoints`).
    ports_file: PathBuf,
    /// The switch on the data plane's local segment: frames to and from thread stacks.
    local: Member,
    limits: PortLimits,
    rates: BTreeMap<PortId, PortRate>,
    /// Addresses no port may send from: the host's and other endpoints' (refreshed).
    forbidden: HashSet<IpAddr>,
    iface: String,
    counters: Arc<SwitchCounters>,
    /// Largest frame the NIC side takes.
    uplink_max: usize,
    clock: std::time::Instant,
    /// The frame from the NIC side being switched (changed in place: checksums).
    buf: Vec<u8>,
    /// Frames from a port, taken in one call (`None` only while they are being switched).
    batch: Option<RecvBatch>,
    /// Frames for ports, sent a batch per port at the end of each round.
    out: OutQueue,
    outs: Vec<Out>,
    poll: PollSet,
    /// Where each source sits in `poll`.
    polled: Polled,
}

/// Indices into the switch's [`PollSet`] of the last round.
#[derive(Debug, Default)]
struct Polled {
    /// The VDE control socket and the connections that have not sent their request yet.
    listener: std::ops::Range<usize>,
    tap: usize,
    /// Each port with its data fd's and its control fd's index.
    ports: Vec<(PortId, usize, Option<usize>)>,
}

/// Frames waiting to go to ports, in the order they were switched.
#[derive(Debug, Default)]
struct OutQueue {
    data: Vec<u8>,
    /// Port, start in `data`, length.
    frames: Vec<(PortId, usize, usize)>,
}

impl OutQueue {
    fn push(&mut self, p: PortId, frame: &[u8]) {
        self.frames.push((p, self.data.len(), frame.len()));
        self.data.extend_from_slice(frame);
    }

    fn is_full(&self) -> bool {
        self.frames.len() >= MAX_BATCH
    }
}

impl Switch {
    fn new(
        dp: &Arc<Dataplane>,
        opts: &SwitchOptions,
        counters: Arc<SwitchCounters>,
    ) -> Result<Self, SwitchError> {
        let raw = dp
            .raw_endpoint(opts.mac, opts.thread)
            .map_err(|e| SwitchError::Dataplane(Box::new(e)))?;
        let io_err = |what: String| move |source| SwitchError::Io { what, source };
        let tap = GroupTap::open(raw.ifindex)
            .map_err(io_err(format!("a broadcast tap on {}", dp.iface())))?;
        let listener = match &opts.dir {
            Some(dir) => Some(
                VdeListener::bind(dir, opts.mode, opts.gid)
                    .map_err(io_err(format!("serving {}", dir.display())))?,
            ),
            None => None,
        };
        let mut ports = BTreeMap::new();
        for (i, spec) in opts.vxlan.iter().enumerate() {
            let group_ifindex = match &spec.dev {
                Some(dev) => Some(
                    Rtnetlink::open()
                        .and_then(|mut nl| nl.link(dev))
                        .map_err(|e| SwitchError::Io {
                            what: format!("looking up {dev}"),
                            source: io::Error::other(e),
                        })?
                        .ok_or_else(|| SwitchError::Io {
                            what: format!("the VXLAN device {dev}"),
                            source: io::Error::from(io::ErrorKind::NotFound),
                        })?
                        .index,
                ),
                None => None,
            };
            let port = VxlanPort::open(spec, group_ifindex)
                .map_err(io_err(format!("the VXLAN port to {}", spec.remote)))?;
            ports.insert(i as PortId + 1, Port::Vxlan(Box::new(port)));
        }
        let mut raw = raw;
        let mut rx = Vec::new();
        let mut txs = Vec::new();
        for s in std::mem::take(&mut raw.sockets) {
            let (r, t) = s.into_parts();
            rx.push(r);
            txs.push(t);
        }
        let tx = txs.remove(0);
        let local = dp
            .lan()
            .join_switch()
            .map_err(io_err("joining the local segment".into()))?;
        // The Ethernet header, one VLAN tag, the link's MTU; never more than a UMEM frame.
        let uplink_max = (raw.mtu as usize + 18).min(2048);
        Ok(Self {
            raw,
            rx,
            tx,
            _idle_tx: txs,
            tap,
            listener,
            core: SwitchCore::new(opts.max_age, opts.max_macs_per_port),
            ports,
            slots: BTreeMap::new(),
            ports_file: ports_file(std::process::id()),
            local,
            limits: opts.limits,
            rates: BTreeMap::new(),
            forbidden: HashSet::new(),
            iface: dp.iface().to_owned(),
            counters,
            uplink_max,
            clock: std::time::Instant::now(),
            buf: vec![0u8; MAX_PORT_FRAME + 1],
            // One byte more than the largest frame: a longer datagram shows as oversize.
            batch: Some(RecvBatch::new(BUDGET, MAX_PORT_FRAME + 1)),
            out: OutQueue::default(),
            outs: Vec::new(),
            poll: PollSet::default(),
            polled: Polled::default(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as i64)
    }

    /// Refreshes the addresses no port may send from: the host's, and those of every other
    /// endpoint in the classifier.
    fn refresh_forbidden(&mut self) {
        let mut f = HashSet::new();
        match Rtnetlink::open().and_then(|mut nl| nl.addresses()) {
            Ok(addrs) => f.extend(addrs.into_iter().map(|a| a.addr)),
            Err(e) => log::debug!("vde: host addresses of {}: {e}", self.iface),
        }
        {
            let me = self.raw.endpoint();
            let c = self
                .raw
                .classifier()
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (id, a) in c.endpoints() {
                if id != me {
                    f.extend(a.ipv4.iter().map(|x| IpAddr::V4(*x)));
                    f.extend(a.ipv6.iter().map(|x| IpAddr::V6(*x)));
                }
            }
        }
        self.forbidden = f;
    }

    /// The source address a frame claims: its IP source, or an ARP packet's sender.
    fn claimed_source(frame: &[u8]) -> Option<IpAddr> {
        match parse_ip(frame) {
            IpParse::Ip(ip) => Some(ip.src(frame)).map(|a| match a {
                smoltcp::wire::IpAddress::Ipv4(v) => IpAddr::V4(v),
                smoltcp::wire::IpAddress::Ipv6(v) => IpAddr::V6(v),
            }),
            _ if frame.get(12..14) == Some(&[0x08, 0x06]) => {
                let spa: [u8; 4] = frame.get(28..32)?.try_into().ok()?;
                Some(IpAddr::from(spa))
            }
            _ => None,
        }
    }

    /// Gives port `id` its classifier endpoint.
    fn open_slot(&mut self, id: PortId, report: &dyn Fn(String)) {
        match self.raw.add_port(id) {
            Ok(guard) => {
                let slot = guard.id();
                let publisher = {
                    let c = self
                        .raw
                        .classifier()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    c.tx_publisher(slot).ok()
                };
                self.slots.insert(
                    id,
                    PortSlot {
                        tap: crate::capture::register(&self.iface, slot.0),
                        guard,
                        publisher,
                        sent: (0, 0),
                        published: (0, 0),
                    },
                );
            }
            Err(e) => report(format!("vde: port {id}: no classifier endpoint: {e}")),
        }
    }

    /// Writes the ports' descriptions for other processes (`ioth endpoints`).
    fn publish_ports(&self) {
        let list: Vec<PortInfo> = self
            .ports
            .iter()
            .filter_map(|(id, p)| {
                let slot = self.slots.get(id)?.id().0;
                let (kind, description, pid) = match p {
                    Port::Vde(v) => ("vde", v.description.clone(), v.pid),
                    Port::Vxlan(x) => (x.kind(), x.describe(), None),
                };
                Some(PortInfo {
                    slot,
                    port: *id,
                    kind: kind.to_owned(),
                    description,
                    pid,
                })
            })
            .collect();
        let tmp = self.ports_file.with_extension("tmp");
        let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned());
        let written = std::fs::create_dir_all(crate::sys::RUN_DIR)
            .and_then(|()| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, &self.ports_file));
        if let Err(e) = written {
            log::debug!("vde: {}: {e}", self.ports_file.display());
        }
    }

    fn run(&mut self, stop: &AtomicBool, report: &dyn Fn(String)) {
        let mut expired_at = self.now();
        let mut published_at = self.now();
        self.refresh_forbidden();
        let tunnels: Vec<PortId> = self.ports.keys().copied().collect();
        for id in tunnels {
            self.open_slot(id, report);
        }
        self.publish_ports();
        while !stop.load(Ordering::Relaxed) {
            // Frames already on an rx ring or in the inbox need no wait: just look at the rest.
            let busy = self.rx.iter_mut().any(|r| r.fetch() > 0) || !self.local.inbox().is_empty();
            self.fill_poll();
            if let Err(e) = self.poll.wait(if busy { 0 } else { 200 }) {
                report(format!("vde: wait: {e}"));
            }
            let now = self.now();
            // Requests that never come time out: look at the pending ones now and then too.
            if self.polled.listener.clone().any(|i| self.poll.ready(i))
                || now - expired_at >= Duration::from_secs(1)
            {
                self.accept(report);
            }
            self.drop_hung_up(report);
            self.poll_ports();
            self.poll_uplink();
            self.flush_ports();
            if let Err(e) = self.tx.flush() {
                log::debug!("vde: uplink flush: {e}");
            }
            for r in &mut self.rx {
                if let Err(e) = r.sync() {
                    log::debug!("vde: uplink sync: {e}");
                }
            }
            let now = self.now();
            if now - published_at >= Duration::from_millis(250) {
                published_at = now;
                for ps in self.slots.values_mut() {
                    ps.publish();
                }
            }
            if now - expired_at >= Duration::from_secs(1) {
                expired_at = now;
                for (mac, port) in self.core.expire(now) {
                    if let Some(g) = self.slots.get(&port) {
                        let _ = self.raw.release(g.id(), mac);
                    }
                    self.local.release(mac);
                }
                for p in self.ports.values_mut() {
                    p.expire();
                }
                self.refresh_forbidden();
            }
        }
        for (id, _) in std::mem::take(&mut self.ports) {
            for mac in self.core.forget_port(id) {
                self.local.release(mac);
            }
        }
        // The ports' endpoints (and the MACs they own) go with their guards.
        self.slots.clear();
        let _ = std::fs::remove_file(&self.ports_file);
    }

    /// Puts every source in the poll set, noting where.
    fn fill_poll(&mut self) {
        self.poll.clear();
        self.poll.push(self.local.inbox().fd());
        let start = self.poll.len();
        if let Some(l) = &self.listener {
            l.fds(&mut |fd| {
                self.poll.push(fd);
            });
        }
        self.polled.listener = start..self.poll.len();
        self.polled.tap = self.poll.push(self.tap.fd());
        for r in &self.rx {
            self.poll.push(r.fd());
        }
        self.polled.ports.clear();
        for (id, p) in &self.ports {
            let data = self.poll.push(p.data_fd());
            let ctl = p.ctl_fd().map(|fd| self.poll.push(fd));
            self.polled.ports.push((*id, data, ctl));
        }
    }

    fn accept(&mut self, report: &dyn Fn(String)) {
        let mut refused = Vec::new();
        let ports = &self.ports;
        let Some(listener) = &mut self.listener else {
            return;
        };
        let new = listener.poll(
            |asked| {
                if let Some(p) = asked
                    && p > 0
                    && !ports.contains_key(&p)
                {
                    return Some(p);
                }
                (1..=u32::from(u16::MAX)).find(|p| !ports.contains_key(p))
            },
            &mut refused,
        );
        for r in refused {
            report(format!("vde: refused a client: {r}"));
        }
        let changed = !new.is_empty();
        for p in new {
            report(format!(
                "vde: port {} connected: {:?} (pid {})",
                p.id,
                p.description,
                p.pid.map_or("-".to_owned(), |x| x.to_string())
            ));
            let id = p.id;
            self.ports.insert(id, Port::Vde(p));
            self.open_slot(id, report);
        }
        if changed {
            self.publish_ports();
        }
        self.counters
            .ports
            .store(self.ports.len() as u64, Ordering::Relaxed);
    }

    fn drop_hung_up(&mut self, report: &dyn Fn(String)) {
        // A client says nothing on its control connection: readable means it hung up.
        let gone: Vec<PortId> = self
            .polled
            .ports
            .iter()
            .filter(|(_, _, ctl)| ctl.is_some_and(|i| self.poll.ready(i)))
            .filter(|(id, _, _)| self.ports.get(id).is_some_and(Port::hung_up))
            .map(|(id, _, _)| *id)
            .collect();
        for id in gone {
            self.ports.remove(&id);
            self.rates.remove(&id);
            for mac in self.core.forget_port(id) {
                self.local.release(mac);
            }
            // Its endpoint and the MACs it owned go with the guard.
            self.slots.remove(&id);
            report(format!("vde: port {id} closed"));
            self.publish_ports();
        }
        self.counters
            .ports
            .store(self.ports.len() as u64, Ordering::Relaxed);
    }

    /// Takes one batch (up to [`BUDGET`] frames, one call) from each port that has frames.
    fn poll_ports(&mut self) {
        let Some(mut batch) = self.batch.take() else {
            return;
        };
        for k in 0..self.polled.ports.len() {
            let (id, data, _) = self.polled.ports[k];
            if !self.poll.ready(data) {
                continue;
            }
            let Some(port) = self.ports.get_mut(&id) else {
                continue;
            };
            let partial = port.partial_checksums();
            let got = port.recv_batch(&mut batch).unwrap_or_else(|e| {
                log::debug!("vde: port {id}: {e}");
                0
            });
            for i in 0..got {
                let frame = batch.frame_mut(i);
                self.counters.from_ports.fetch_add(1, Ordering::Relaxed);
                if !(MIN_FRAME..=MAX_PORT_FRAME).contains(&frame.len())
                    || (partial && check_l4(frame) == L4Checksum::Invalid)
                {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                self.switch_from_port(id, frame);
            }
        }
        self.batch = Some(batch);
    }

    fn switch_from_port(&mut self, id: PortId, frame: &[u8]) {
        let n = frame.len();
        let now = self.now();
        let limits = self.limits;
        let admitted = self
            .rates
            .entry(id)
            .or_insert_with(|| PortRate::new(limits, now))
            .admit(n, now);
        if !admitted {
            self.counters.over_rate.fetch_add(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(a) = Self::claimed_source(frame)
            && self.forbidden.contains(&a)
        {
            self.counters.spoofed.fetch_add(1, Ordering::Relaxed);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(s) = src(frame) else { return };
        let Some(ps) = self.slots.get_mut(&id) else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        ps.sent.0 += 1;
        ps.sent.1 += n as u64;
        if ps.tap.tap().active() {
            ps.tap.tap().record(Direction::Tx, frame);
        }
        let slot = ps.id();
        match self.core.learn(s, id, now) {
            Learned::New => {
                if let Err(e) = self.raw.claim(slot, s) {
                    // Owned by another endpoint (or by nobody we may take it from): a port
                    // never sends from someone else's MAC.
                    if !matches!(e, ClassifierError::AddressInUse { .. }) {
                        log::warn!("vde: claiming {s} for port {id}: {e}");
                    }
                    self.core.forget(s);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.local.claim(s);
            }
            Learned::Refreshed => {}
            Learned::Moved { from } => {
                // The station moved to another port: so does its claim.
                if let Some(old) = self.slots.get(&from).map(PortSlot::id) {
                    let _ = self.raw.release(old, s);
                }
                if self.raw.claim(slot, s).is_err() {
                    self.core.forget(s);
                    self.local.release(s);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            Learned::Refused => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut outs = std::mem::take(&mut self.outs);
        self.core.forward(id, frame, &mut outs);
        if outs.contains(&Out::Uplink) {
            // Not behind a port: perhaps a thread stack of this data plane.
            match self.local.route(frame) {
                Route::Local => {
                    self.counters.to_local.fetch_add(1, Ordering::Relaxed);
                    outs.clear();
                }
                Route::Both => {
                    self.local.lan().flood_stacks(frame);
                    self.counters.to_local.fetch_add(1, Ordering::Relaxed);
                }
                Route::Wire => {}
            }
        }
        for out in &outs {
            match *out {
                Out::Port(p) => self.send_port(p, frame),
                Out::Flood(except) => {
                    let targets: Vec<PortId> = self
                        .ports
                        .keys()
                        .copied()
                        .filter(|p| Some(*p) != except)
                        .collect();
                    for p in targets {
                        self.send_port(p, frame);
                    }
                }
                Out::Uplink => self.send_uplink(frame),
            }
        }
        self.outs = outs;
    }

    /// Queues `frame` for port `p` (sent by [`Switch::flush_ports`]).
    fn send_port(&mut self, p: PortId, frame: &[u8]) {
        if self.out.is_full() {
            self.flush_ports();
        }
        self.out.push(p, frame);
    }

    /// Queues the frame in `buf` (from the NIC side) for port `p`.
    fn send_port_from_buf(&mut self, p: PortId, n: usize) {
        if self.out.is_full() {
            self.flush_ports();
        }
        self.out.push(p, &self.buf[..n]);
    }

    /// Sends the queued frames, one call per run of frames for the same port.
    fn flush_ports(&mut self) {
        let frames = &self.out.frames;
        let mut i = 0;
        while i < frames.len() {
            let p = frames[i].0;
            let run = frames[i..].iter().take_while(|f| f.0 == p).count();
            let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
            for (s, &(_, at, len)) in slices.iter_mut().zip(&frames[i..i + run]) {
                *s = &self.out.data[at..at + len];
            }
            let slices = &slices[..run];
            let sent = self
                .ports
                .get_mut(&p)
                .map_or(0, |port| port.send_batch(slices));
            if let Some(ps) = self.slots.get(&p)
                && ps.tap.tap().active()
            {
                for f in &slices[..sent] {
                    ps.tap.tap().record(Direction::Rx, f);
                }
            }
            self.counters
                .to_ports
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.counters
                .dropped
                .fetch_add((run - sent) as u64, Ordering::Relaxed);
            i += run;
        }
        self.out.frames.clear();
        self.out.data.clear();
    }

    fn send_uplink(&mut self, frame: &[u8]) {
        let n = frame.len();
        if n > self.uplink_max {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.slot(n) {
            Some(mut slot) => {
                slot.bytes_mut().copy_from_slice(frame);
                slot.send();
                self.counters.to_uplink.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn poll_uplink(&mut self) {
        // Unicast to learned MACs (and anything else the classifier steers here) over AF_XDP.
        for i in 0..self.rx.len() {
            for _ in 0..BUDGET {
                let Some(frame) = self.rx[i].next_frame() else {
                    break;
                };
                let n = frame.bytes().len().min(self.buf.len());
                self.buf[..n].copy_from_slice(&frame.bytes()[..n]);
                drop(frame);
                self.switch_from_uplink(n);
            }
        }
        // Frames thread stacks of this data plane sent to the ports' MACs (or broadcast).
        for _ in 0..BUDGET {
            let Some(f) = self.local.inbox().pop() else {
                break;
            };
            let n = f.len().min(self.buf.len());
            self.buf[..n].copy_from_slice(&f[..n]);
            self.switch_from_uplink(n);
        }
        // Broadcast and multicast, copied while the kernel keeps the originals.
        if !self.poll.ready(self.polled.tap) {
            return;
        }
        for _ in 0..BUDGET {
            match self.tap.recv(&mut self.buf) {
                Ok(Some(n)) => self.switch_from_uplink(n.min(self.buf.len())),
                Ok(None) => break,
                Err(e) => {
                    log::debug!("vde: group tap: {e}");
                    break;
                }
            }
        }
    }

    fn switch_from_uplink(&mut self, n: usize) {
        self.counters.from_uplink.fetch_add(1, Ordering::Relaxed);
        // A kernel sender on the NIC's side may leave TCP/UDP checksums partial (offload):
        // complete them, as the NIC would, before a port's kernel sees the frame.
        if check_l4(&mut self.buf[..n]) == L4Checksum::Invalid {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.core.forward_uplink(&self.buf[..n]) {
            Some(Out::Port(p)) => self.send_port_from_buf(p, n),
            Some(Out::Flood(_)) => {
                let targets: Vec<PortId> = self.ports.keys().copied().collect();
                for p in targets {
                    self.send_port_from_buf(p, n);
                }
            }
            Some(Out::Uplink) | None => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
