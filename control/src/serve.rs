//! `ioth serve`: N worker threads, each its own network node (own MAC, own IPs, own smoltcp
//! stack over its own AF_XDP sockets), serving echo, HTTP or discard.
//!
//! Thread i owns A.B.C.(D+i) and X::(Y+i). Each prints a ready line; a final ready line
//! follows. SIGINT/SIGTERM stop the threads (their classifier entries go with their stacks),
//! then the program is detached and the UMEMs freed.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// Prints a line on stdout; a closed stdout (the reader went away) is not an error worth a
/// panic in a server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}
use ioth_dataplane::{
    Congestion, Dataplane, DataplaneOptions, ModeRequest, SocketHandle, StackConfig, TcpListener,
    apps::{Service, ServiceConn},
    classifier::format_mac,
};
use smoltcp::{
    socket::{tcp, udp},
    time::Instant,
};

/// The application each thread serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// TCP and UDP echo (port 7 by default).
    Echo,
    /// HTTP/1.1: `GET /` answers with the thread's index and IP (port 80 by default).
    Http,
    /// TCP and UDP discard (port 9 by default).
    Discard,
    /// TCP source: zeros as fast as the peer reads (port 19, chargen's, by default).
    Source,
}

/// XDP attach mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Driver mode, else skb mode.
    Auto,
    /// Driver (native) mode only.
    Driver,
    /// Skb (generic) mode only.
    Skb,
}

impl From<Mode> for ModeRequest {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Auto => ModeRequest::Auto,
            Mode::Driver => ModeRequest::Driver,
            Mode::Skb => ModeRequest::Skb,
        }
    }
}

/// Options of `ioth serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Interface to attach to.
    #[arg(long)]
    pub iface: String,
    /// Worker threads; thread i owns the (i+1)-th address of each range.
    #[arg(long, default_value_t = 1)]
    pub threads: u16,
    /// First thread's IPv4 address and prefix, e.g. 10.99.0.11/24.
    #[arg(long)]
    pub ipv4: String,
    /// First thread's IPv6 address and prefix, e.g. fd00:99::11/64.
    #[arg(long)]
    pub ipv6: Option<String>,
    /// What each thread serves; repeat to serve several (each on its default port).
    #[arg(long, value_enum, default_values_t = [App::Echo])]
    pub app: Vec<App>,
    /// Port, with a single --app (default: 7 echo, 80 http, 9 discard).
    #[arg(long)]
    pub port: Option<u16>,
    /// Spin on the rings instead of sleeping in poll(2) (lower latency, a full core each).
    #[arg(long)]
    pub busy_poll: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Default IPv4 gateway of every stack.
    #[arg(long)]
    pub gateway4: Option<Ipv4Addr>,
    /// Default IPv6 gateway of every stack.
    #[arg(long)]
    pub gateway6: Option<Ipv6Addr>,
    /// TCP congestion control: none, reno or cubic.
    #[arg(long, default_value = "cubic")]
    pub congestion: Congestion,
    /// TCP buffer size per socket and direction, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub tcp_buffer: usize,
    /// Most sockets per stack.
    #[arg(long, default_value_t = 4096)]
    pub max_sockets: usize,
    /// Listen backlog per thread and port (each slot is a socket with its buffers).
    #[arg(long, default_value_t = 16)]
    pub backlog: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR: IP:PORT, or PORT for loopback).
    #[arg(long)]
    pub metrics: Option<String>,
    /// First thread's MAC; thread i gets it plus i (default: locally administered, derived
    /// from the interface name and the thread index).
    #[arg(long)]
    pub mac: Option<String>,
    /// Use addresses even if a host interface has them configured.
    #[arg(long)]
    pub force: bool,
    /// Testing aid: thread N panics one second after it is ready.
    #[arg(long, hide = true)]
    pub test_panic_thread: Option<u16>,
}

fn parse_cidr4(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--ipv4 {s:?}: expected A.B.C.D/PREFIX"))?;
    let a: Ipv4Addr = a
        .parse()
        .with_context(|| format!("--ipv4 {s:?}: bad address"))?;
    let p: u8 = p
        .parse()
        .with_context(|| format!("--ipv4 {s:?}: bad prefix"))?;
    if p == 0 || p > 32 {
        bail!("--ipv4 {s:?}: prefix must be 1..=32");
    }
    Ok((a, p))
}

fn parse_cidr6(s: &str) -> Result<(Ipv6Addr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--ipv6 {s:?}: expected X::Y/PREFIX"))?;
    let a: Ipv6Addr = a
        .parse()
        .with_context(|| format!("--ipv6 {s:?}: bad address"))?;
    let p: u8 = p
        .parse()
        .with_context(|| format!("--ipv6 {s:?}: bad prefix"))?;
    if p == 0 || p > 128 {
        bail!("--ipv6 {s:?}: prefix must be 1..=128");
    }
    Ok((a, p))
}

/// The i-th IPv4 address after `base`, staying inside `base`'s last octet range.
fn nth_v4(base: Ipv4Addr, i: u16) -> Result<Ipv4Addr> {
    let o = base.octets();
    let last = u16::from(o[3]) + i;
    if last > 254 {
        bail!("--ipv4 {base} with {} threads runs past .254", i + 1);
    }
    Ok(Ipv4Addr::new(o[0], o[1], o[2], last as u8))
}

fn nth_v6(base: Ipv6Addr, i: u16) -> Result<Ipv6Addr> {
    let mut s = base.segments();
    s[7] = s[7]
        .checked_add(i)
        .with_context(|| format!("--ipv6 {base} with {} threads overflows", i + 1))?;
    Ok(Ipv6Addr::from(s))
}

/// A locally administered MAC derived from the interface name and the thread index.
pub fn thread_mac(iface: &str, index: u16) -> [u8; 6] {
    // FNV-1a: stable across runs and machines.
    let mut h: u32 = 0x811c_9dc5;
    for b in iface.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let h = h.to_be_bytes();
    let i = index.to_be_bytes();
    [0x02, h[1], h[2], h[3], i[0], i[1]]
}

/// Parses a unicast MAC `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<u8>| v.len() == 6 && s.len() == 17)
        .with_context(|| format!("--mac {s:?}: expected six hex bytes like 02:00:00:00:10:00"))?;
    let mac: [u8; 6] = bytes.try_into().expect("six bytes");
    if mac[0] & 1 != 0 || mac == [0; 6] {
        bail!("--mac {s}: must be a unicast, non-zero MAC");
    }
    Ok(mac)
}

/// `base` plus `i`, carried through the last two bytes.
fn nth_mac(base: [u8; 6], i: u16) -> Result<[u8; 6]> {
    let low = u16::from_be_bytes([base[4], base[5]])
        .checked_add(i)
        .with_context(|| {
            format!(
                "--mac {} with {} threads overflows",
                format_mac(base),
                i + 1
            )
        })?;
    let [a, b] = low.to_be_bytes();
    Ok([base[0], base[1], base[2], base[3], a, b])
}

/// Addresses configured on host interfaces (in this namespace), from `ip -o addr`.
fn host_addresses() -> Result<Vec<String>> {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .context("running ip -o addr show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet" || *x == "inet6")?;
            w.next()?.split('/').next().map(str::to_owned)
        })
        .collect())
}

impl App {
    fn default_port(self) -> u16 {
        match self {
            App::Echo => 7,
            App::Http => 80,
            App::Discard => 9,
            App::Source => 19,
        }
    }
}

/// What a worker publishes for the main thread and the metrics endpoint. The worker owns
/// its stack and sockets; it copies their counters here about twice a second.
#[derive(Debug, Default)]
pub struct ThreadStats {
    /// Thread index.
    pub index: u16,
    /// The endpoint's label: its IPv4 address.
    pub endpoint: String,
    /// Its classifier slot (0 until the stack exists).
    pub slot: AtomicU64,
    /// Requests served.
    pub requests: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_rx_dropped: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_rx_ring_full: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_fill_ring_empty: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_tx_invalid: AtomicU64,
    /// TCP sockets per smoltcp state (index: `tcp_state_index`).
    pub tcp_states: [AtomicU64; TCP_STATES.len()],
}

/// smoltcp's TCP states, as metric labels.
pub const TCP_STATES: [&str; 11] = [
    "closed",
    "listen",
    "syn-sent",
    "syn-received",
    "established",
    "fin-wait-1",
    "fin-wait-2",
    "close-wait",
    "closing",
    "last-ack",
    "time-wait",
];

fn tcp_state_index(s: tcp::State) -> usize {
    match s {
        tcp::State::Closed => 0,
        tcp::State::Listen => 1,
        tcp::State::SynSent => 2,
        tcp::State::SynReceived => 3,
        tcp::State::Established => 4,
        tcp::State::FinWait1 => 5,
        tcp::State::FinWait2 => 6,
        tcp::State::CloseWait => 7,
        tcp::State::Closing => 8,
        tcp::State::LastAck => 9,
        tcp::State::TimeWait => 10,
    }
}

fn publish(stack: &mut ioth_dataplane::EndpointStack, stats: &ThreadStats) {
    if let Ok(x) = stack.link().xdp_statistics() {
        stats.xsk_rx_dropped.store(x.rx_dropped, Ordering::Relaxed);
        stats
            .xsk_rx_ring_full
            .store(x.rx_ring_full, Ordering::Relaxed);
        stats
            .xsk_fill_ring_empty
            .store(x.fill_ring_empty, Ordering::Relaxed);
        stats.xsk_tx_invalid.store(x.tx_invalid, Ordering::Relaxed);
    }
    let mut counts = [0u64; TCP_STATES.len()];
    for (_, socket) in stack.sockets().iter() {
        if let smoltcp::socket::Socket::Tcp(t) = socket {
            counts[tcp_state_index(t.state())] += 1;
        }
    }
    for (a, c) in stats.tcp_states.iter().zip(counts) {
        a.store(c, Ordering::Relaxed);
    }
}

/// A connection being served.
enum Conn {
    /// Echo or discard (shared with the benchmark's TAP server).
    Stream(ServiceConn),
    /// HTTP/1.1: one request, one answer, then close.
    Http {
        handle: SocketHandle,
        request: Vec<u8>,
        answered: bool,
    },
}

fn worker(
    dp: Arc<Dataplane>,
    index: u16,
    config: StackConfig,
    args: Arc<WorkerArgs>,
    stop: Arc<AtomicBool>,
    stats: Arc<ThreadStats>,
    ready: mpsc::Sender<Result<String, String>>,
) {
    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as i64);
    let ip = config.ipv4[0].0;
    let ipv6 = config.ipv6.first().map(|(a, _)| *a);
    let mac = config.mac;
    let mut stack = match dp.stack(config, now()) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("thread {index}: {e:#}")));
            return;
        }
    };
    let mut listeners = Vec::new();
    let mut udps = Vec::new();
    for &(app, port) in &args.apps {
        match TcpListener::bind(&mut stack, port, args.backlog) {
            Ok(l) => listeners.push((app, l)),
            Err(e) => {
                let _ = ready.send(Err(format!("thread {index}: {e}")));
                return;
            }
        }
        if matches!(app, App::Echo | App::Discard) {
            match stack.udp_bind(port, 256) {
                Ok(h) => udps.push((app, h)),
                Err(e) => {
                    let _ = ready.send(Err(format!("thread {index}: {e}")));
                    return;
                }
            }
        }
    }
    stats
        .slot
        .store(u64::from(stack.endpoint().0), Ordering::Relaxed);
    let queues = dp.queues().len();
    let _ = ready.send(Ok(format!(
        "ready thread={index} ipv4={ip} ipv6={} mac={} queues={queues} xdp={}{} xsk={}",
        ipv6.map_or("-".to_owned(), |a| a.to_string()),
        format_mac(mac),
        dp.attach_mode(),
        if dp.pinned() { "(pinned)" } else { "" },
        dp.bind_mode().map_or("-".to_owned(), |m| m.to_string()),
    )));
    let body = format!("ioth thread {index} at {ip}\n");
    let panic_at = (args.test_panic_thread == Some(index))
        .then(|| now() + smoltcp::time::Duration::from_secs(1));
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut published = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if published.elapsed() >= Duration::from_millis(500) {
            publish(&mut stack, &stats);
            published = std::time::Instant::now();
        }
        if panic_at.is_some_and(|t| now() >= t) {
            panic!("thread {index}: panic requested by --test-panic-thread");
        }
        if let Err(e) = stack.poll(now()) {
            log::warn!("thread {index}: link error: {e}");
        }
        for (app, listener) in &mut listeners {
            while let Some(handle) = listener.accept(&mut stack) {
                conns.push(match app {
                    App::Echo => Conn::Stream(ServiceConn::new(Service::Echo, handle)),
                    App::Discard => Conn::Stream(ServiceConn::new(Service::Discard, handle)),
                    App::Source => Conn::Stream(ServiceConn::new(Service::Source, handle)),
                    App::Http => Conn::Http {
                        handle,
                        request: Vec::new(),
                        answered: false,
                    },
                });
            }
        }
        let mut worked = false;
        conns.retain_mut(|c| {
            let (handle, request, answered) = match c {
                Conn::Stream(sc) => {
                    let step = sc.step(stack.sockets(), &mut buf);
                    if step.received {
                        worked = true;
                        if sc.service == Service::Echo {
                            stats.requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    return !step.done;
                }
                Conn::Http {
                    handle,
                    request,
                    answered,
                } => (*handle, request, answered),
            };
            let sockets = stack.sockets();
            // Look first (a read-only look leaves the socket's shard alone, so idle
            // connections cost the stack nothing); act only on those with something to do.
            let s = sockets.get::<tcp::Socket<'_>>(handle);
            if s.state() == tcp::State::Established && s.may_recv() && !s.can_recv() && !*answered
            {
                return true;
            }
            let s = sockets.get_mut::<tcp::Socket<'_>>(handle);
            if s.can_recv() {
                let n = s.recv_slice(&mut buf).unwrap_or(0);
                worked |= n > 0;
                if request.len() < 16 * 1024 {
                    request.extend_from_slice(&buf[..n]);
                }
            }
            if !*answered {
                let complete = request.windows(4).any(|w| w == b"\r\n\r\n");
                if complete || request.len() >= 16 * 1024 {
                    let (status, text) = if complete && request.starts_with(b"GET ") {
                        ("200 OK", body.as_str())
                    } else {
                        ("400 Bad Request", "bad request\n")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nServer: ioth\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = s.send_slice(resp.as_bytes());
                    s.close();
                    *answered = true;
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    worked = true;
                }
            }
            if !s.may_recv() && s.send_queue() == 0 && s.is_open() {
                s.close();
            }
            let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
            if done {
                sockets.remove(handle);
            }
            !done
        });
        for &(app, h) in &udps {
            let s = stack.sockets().get_mut::<udp::Socket<'_>>(h);
            while let Ok((n, meta)) = s.recv_slice(&mut buf) {
                worked = true;
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if app == App::Echo && s.send_slice(&buf[..n], meta.endpoint).is_err() {
                    break;
                }
            }
        }
        if worked && let Err(e) = stack.poll(now()) {
            log::warn!("thread {index}: link error: {e}");
        }
        if !args.busy_poll
            && let Err(e) = stack.wait(now(), Duration::from_millis(250))
        {
            log::warn!("thread {index}: wait: {e}");
        }
    }
}

struct WorkerArgs {
    /// (app, port) pairs.
    apps: Vec<(App, u16)>,
    backlog: usize,
    busy_poll: bool,
    test_panic_thread: Option<u16>,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let (v4, p4) = parse_cidr4(&args.ipv4)?;
    let v6 = args.ipv6.as_deref().map(parse_cidr6).transpose()?;
    let mut configs = Vec::new();
    let host = host_addresses()?;
    let base_mac = args.mac.as_deref().map(parse_mac).transpose()?;
    for i in 0..args.threads {
        let ip4 = nth_v4(v4, i)?;
        let ip6 = v6.map(|(a, p)| nth_v6(a, i).map(|a| (a, p))).transpose()?;
        for a in std::iter::once(ip4.to_string()).chain(ip6.map(|(a, _)| a.to_string())) {
            if !args.force && host.contains(&a) {
                bail!("{a} is configured on a host interface; refusing to take it (use --force)");
            }
        }
        configs.push(StackConfig {
            mac: match base_mac {
                Some(m) => nth_mac(m, i)?,
                None => thread_mac(&args.iface, i),
            },
            ipv4: vec![(ip4, p4)],
            ipv6: ip6.into_iter().collect(),
            gateway_v4: args.gateway4,
            gateway_v6: args.gateway6,
            tcp_rx_buffer: args.tcp_buffer,
            tcp_tx_buffer: args.tcp_buffer,
            congestion: args.congestion,
            max_sockets: args.max_sockets,
            seed: u64::from(i) ^ 0x10_7e_ad,
            thread: u32::from(i),
            ..StackConfig::default()
        });
    }
    // Refuse bad addresses before anything is attached.
    for c in &configs {
        c.validate()?;
    }
    let mut apps: Vec<App> = args.app.clone();
    apps.sort_by_key(|a| a.default_port());
    apps.dedup();
    if args.port.is_some() && apps.len() > 1 {
        bail!("--port applies to a single --app; with several, each uses its default port");
    }
    let apps: Vec<(App, u16)> = apps
        .into_iter()
        .map(|a| (a, args.port.unwrap_or(a.default_port())))
        .collect();
    let mode = args.mode.into();
    let dp = Dataplane::attach(
        &args.iface,
        DataplaneOptions {
            mode,
            ..DataplaneOptions::default()
        },
    )
    .with_context(|| format!("attaching to {}", args.iface))?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let wargs = Arc::new(WorkerArgs {
        apps: apps.clone(),
        backlog: args.backlog,
        busy_poll: args.busy_poll,
        test_panic_thread: args.test_panic_thread,
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::new();
    for (i, config) in configs.into_iter().enumerate() {
        let (dp, stop, wargs, ready) = (
            Arc::clone(&dp),
            Arc::clone(&stop),
            Arc::clone(&wargs),
            ready_tx.clone(),
        );
        let stats = Arc::new(ThreadStats {
            index: i as u16,
            endpoint: config.ipv4[0].0.to_string(),
            ..ThreadStats::default()
        });
        let s = Arc::clone(&stats);
        let handle = thread::Builder::new()
            .name(format!("ioth-{i}"))
            .spawn(move || worker(dp, i as u16, config, wargs, stop, s, ready))
            .context("spawning a worker thread")?;
        workers.push((handle, stats));
    }
    drop(ready_tx);
    let mut failed = None;
    for _ in 0..args.threads {
        match ready_rx.recv() {
            Ok(Ok(line)) => say!("{line}"),
            Ok(Err(e)) => {
                failed.get_or_insert(e);
            }
            Err(_) => {
                failed.get_or_insert("a worker exited before it was ready".into());
            }
        }
    }
    if let Some(e) = failed {
        stop.store(true, Ordering::Relaxed);
        for (h, _) in workers {
            let _ = h.join();
        }
        bail!("{e}");
    }
    let served: Vec<String> = apps
        .iter()
        .map(|(a, p)| format!("{}:{p}", format!("{a:?}").to_lowercase()))
        .collect();
    let thread_stats: Vec<Arc<ThreadStats>> = workers.iter().map(|(_, s)| Arc::clone(s)).collect();
    let _metrics = match &args.metrics {
        Some(addr) => {
            let addr = crate::metrics::parse_listen(addr)?;
            let sources = crate::metrics::Sources {
                dp: Arc::clone(&dp),
                threads: thread_stats,
            };
            let bound = crate::metrics::serve(
                addr,
                move || crate::metrics::render(&sources),
                Arc::clone(&stop),
            )?;
            say!("metrics http://{bound}/metrics");
            Some(bound)
        }
        None => None,
    };
    say!(
        "ready threads={} iface={} apps={}",
        args.threads,
        args.iface,
        served.join(",")
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
    }
    for (i, (h, stats)) in workers.into_iter().enumerate() {
        let panicked = h.join().is_err();
        say!(
            "stopped thread={i} requests={}{}",
            stats.requests.load(Ordering::Relaxed),
            if panicked { " (panicked)" } else { "" }
        );
    }
    // Every stack is gone: no frame may be held by user space, and every frame of every
    // queue must be somewhere (free, or still with the kernel in a ring).
    let unaccounted: Vec<String> = dp
        .queues()
        .iter()
        .filter_map(|q| {
            let f = q.frames();
            (f.total() != q.frame_count() || f.user != 0)
                .then(|| format!("queue {}: {f:?}", q.queue()))
        })
        .collect();
    let pinned = dp.pinned();
    drop(dp);
    say!(
        "stopped: classifier {}, UMEM freed, frames accounted: {}",
        if pinned {
            "left attached (pinned)"
        } else {
            "detached"
        },
        if unaccounted.is_empty() {
            "yes".to_owned()
        } else {
            format!("NO ({})", unaccounted.join("; "))
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_parsed_and_bad_ones_refused() {
        assert_eq!(
            parse_cidr4("10.99.0.11/24").unwrap(),
            (Ipv4Addr::new(10, 99, 0, 11), 24)
        );
        for bad in [
            "10.99.0.11",
            "10.99.0.256/24",
            "10.99.0.1/33",
            "x/24",
            "10.0.0.1/0",
        ] {
            assert!(parse_cidr4(bad).is_err(), "{bad}");
        }
        assert!(parse_cidr6("fd00:99::11/64").is_ok());
        assert!(parse_cidr6("fd00:99::11/129").is_err());
    }

    #[test]
    fn thread_addresses_step_and_stop_at_the_range_end() {
        let b = Ipv4Addr::new(10, 99, 0, 250);
        assert_eq!(nth_v4(b, 4).unwrap(), Ipv4Addr::new(10, 99, 0, 254));
        assert!(nth_v4(b, 5).is_err());
        let b6: Ipv6Addr = "fd00::ffff".parse().unwrap();
        assert!(nth_v6(b6, 1).is_err());
    }

    #[test]
    fn macs_are_parsed_counted_and_bad_ones_refused() {
        let m = parse_mac("02:00:00:00:10:ff").unwrap();
        assert_eq!(nth_mac(m, 2).unwrap(), [2, 0, 0, 0, 0x11, 1]);
        assert!(nth_mac([2, 0, 0, 0, 0xff, 0xff], 1).is_err());
        for bad in [
            "01:00:00:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:10",
            "zz:00:00:00:00:01",
            "2:0:0:0:10:1",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thread_macs_are_unicast_local_stable_and_distinct() {
        let a = thread_mac("veth0", 0);
        assert_eq!(a[0] & 0x03, 0x02);
        assert_eq!(a, thread_mac("veth0", 0));
        assert_ne!(a, thread_mac("veth0", 1));
        assert_ne!(a, thread_mac("veth1", 0));
    }
}
