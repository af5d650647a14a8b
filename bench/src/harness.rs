//! `ioth-bench compare`: ioth side by side with the kernel stack, the raw ceilings and
//! smoltcp over TAP, on one veth pair.
//!
//! Two fresh namespaces joined by a veth pair with two queues (made and removed here). The
//! server side runs in one namespace pinned to CPU 0, the load in the other pinned to CPU 1,
//! the same for every system (see [`System`]). Workloads: see [`Workload`]. Each
//! measurement is warmed up, then repeated; the report gives the median and the spread
//! (min–max), and a ratio whose spread overlaps 1.0 is a tie, never a win.
//!
//! On veth everything the kernel does for a frame (the server side's XDP program, the copy
//! into an AF_XDP UMEM, the kernel stack's receive path) runs in softirq on the CPU that
//! sent the frame, i.e. the load CPU; the server CPU runs the server's own threads. Server
//! CPU seconds are the server process's user + system time.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::{NetNs, VethPair};
use serde::Serialize;

use crate::{
    endpoints::Fillers,
    load::{self, LoadResult},
    machine::Machine,
    report::{self, Report, Row, Stat},
    xdp::{BenchXdp, Prog},
};

/// Options of `ioth-bench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Smoke mode: every system and workload once, briefly (checks the harness; rough numbers).
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per measurement (at least 5 for numbers worth quoting).
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    /// Seconds per repetition.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Only these systems (comma-separated names, e.g. `ioth,xdp-drop`); default all.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Only these workloads (comma-separated names, e.g. `udp-flood-64B`); default all.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Only these thread counts (comma-separated, e.g. `1`); default 1 and 2 (quick: 1).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Endpoint counts for the scaling runs (comma-separated; `1` alone: none); default
    /// 100,10000 (quick: 10000).
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<usize>,
    /// The `ioth` binary to measure.
    #[arg(long, default_value = "target/release/ioth")]
    pub ioth: PathBuf,
    /// JSON results.
    #[arg(long, default_value = "bench/results/latest.json")]
    pub json: PathBuf,
    /// Markdown table.
    #[arg(long, default_value = "bench/results/latest.md")]
    pub markdown: PathBuf,
    /// Directory for the SVG plots (throughput.svg, latency.svg); default: beside the JSON.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// What serves the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// `ioth serve --app echo --app discard`: N threads, N IPs, smoltcp over AF_XDP.
    Ioth,
    /// Linux sockets, N threads with one IP each (recvmmsg/sendmmsg, epoll).
    KernelIp,
    /// Linux sockets, N threads sharing one IP with SO_REUSEPORT.
    KernelReuseport,
    /// The raw AF_XDP ceiling: the classifier and AF_XDP sockets, no stack (`raw-echo`).
    RawAfxdp,
    /// The receive ceiling: an XDP program that counts and drops every frame.
    XdpDrop,
    /// The same smoltcp stack over a TAP device (routed from the veth), `tap-echo`.
    SmoltcpTap,
    /// Kernel sockets on the host's own IP, no XDP program on the interface.
    HostDetached,
    /// The same with `ioth serve` (1 thread, other IP) attached to the interface.
    HostAttached,
}

impl System {
    pub const ALL: [System; 8] = [
        System::Ioth,
        System::KernelIp,
        System::KernelReuseport,
        System::RawAfxdp,
        System::XdpDrop,
        System::SmoltcpTap,
        System::HostDetached,
        System::HostAttached,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Ioth => "ioth",
            System::KernelIp => "kernel-ip",
            System::KernelReuseport => "kernel-reuseport",
            System::RawAfxdp => "raw-afxdp",
            System::XdpDrop => "xdp-drop",
            System::SmoltcpTap => "smoltcp-tap",
            System::HostDetached => "host-detached",
            System::HostAttached => "host-attached",
        }
    }

    /// The workloads this system serves.
    fn serves(self, w: Workload) -> bool {
        use Workload::*;
        match self {
            System::Ioth | System::KernelIp | System::KernelReuseport => true,
            System::RawAfxdp => matches!(w, UdpEcho | UdpFlood | UdpEchoFlood),
            System::XdpDrop => w == UdpFlood,
            System::SmoltcpTap => {
                matches!(
                    w,
                    UdpEcho | TcpRr(1) | TcpRr(64) | TcpBulkUp | TcpBulkEcho | TcpBulkDown
                )
            }
            System::HostDetached | System::HostAttached => {
                matches!(w, TcpRr(64) | TcpBulkUp | TcpBulkEcho)
            }
        }
    }
}

/// What the load does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Closed-loop UDP echo of 64-byte datagrams (a window of 16 in flight per target),
    /// from kernel sockets: packets/s and round-trip latency.
    UdpEcho,
    /// Open-loop flood of 64-byte UDP datagrams to the discard port (9) from the
    /// live-frame generator: what the server's sockets receive (packets/s), what reaches
    /// its veth.
    UdpFlood,
    /// The same flood to the echo port (7): what the server echoes back at saturation
    /// (packets/s), a server's echo throughput that no closed-loop client limits.
    UdpEchoFlood,
    /// TCP request/response of 64 bytes over this many connections.
    TcpRr(usize),
    /// TCP bulk towards the server (discard, port 9), one connection per thread.
    TcpBulkUp,
    /// TCP bulk through the server's echo (port 7): both directions at once.
    TcpBulkEcho,
    /// TCP bulk from the server's source (port 19), one connection per thread.
    TcpBulkDown,
    /// HTTP/1.1 GET, one request per connection, from `wrk` with 64 connections (port 80).
    HttpWrk,
}

impl Workload {
    pub fn name(self) -> String {
        match self {
            Workload::UdpEcho => "udp-echo-64B".into(),
            Workload::UdpFlood => "udp-flood-64B".into(),
            Workload::UdpEchoFlood => "udp-echo-flood-64B".into(),
            Workload::TcpRr(c) => format!("tcp-rr-64B-{c}conn"),
            Workload::TcpBulkUp => "tcp-bulk-up".into(),
            Workload::TcpBulkEcho => "tcp-bulk-echo".into(),
            Workload::TcpBulkDown => "tcp-bulk-down".into(),
            Workload::HttpWrk => "http-wrk-64conn".into(),
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Workload::UdpEcho => "packets/s",
            Workload::UdpFlood => "packets/s into sockets",
            Workload::UdpEchoFlood => "packets/s echoed",
            Workload::TcpRr(_) => "transactions/s",
            Workload::TcpBulkUp | Workload::TcpBulkEcho | Workload::TcpBulkDown => "Gbit/s",
            Workload::HttpWrk => "requests/s",
        }
    }
    fn port(self) -> u16 {
        match self {
            Workload::TcpBulkUp | Workload::UdpFlood => crate::frames::DISCARD_PORT,
            Workload::TcpBulkDown => 19,
            Workload::HttpWrk => 80,
            _ => 7,
        }
    }
}

/// A server process in the server namespace, pinned to CPU 0, killed on drop.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The lines it printed up to and including its final ready line.
    ready: Vec<String>,
}

impl Server {
    fn start(ns: &NetNs, program: &str, args: &[String], ready_prefix: &str) -> Result<Self> {
        let mut child = ns
            .command("taskset")
            .args(["-c", "0", program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let out = child.stdout.take().context("server stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Self {
            child,
            stdin,
            lines: rx,
            ready: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = s
                .lines
                .recv_timeout(left)
                .with_context(|| format!("{program} did not become ready"))?;
            let done = line.starts_with(ready_prefix);
            s.ready.push(line);
            if done {
                return Ok(s);
            }
        }
    }

    /// Sends `cmd` on the server's stdin and returns its first output line starting with
    /// `reply`.
    fn query(&mut self, cmd: &str, reply: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("server has no stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no answer to {cmd:?}"))?;
            if line.starts_with(reply) {
                return Ok(line);
            }
        }
    }

    /// User + system CPU seconds the server used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may contain spaces).
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
        // `ip netns exec` and taskset exec the server, so the pid is the server's.
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin.take();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `f` on a thread inside `ns`, pinned to CPU 1.
fn on_load_cpu<T: Send + 'static>(
    ns: &NetNs,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    ns.spawn(move || {
        crate::sys::pin_to_cpu(1)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("load thread panicked"))?
}

const IOTH_BASE: u8 = 11;
const KERNEL_BASE: u8 = 51;
const RAW_BASE: u8 = 31;
const PEER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, last)
}

/// A target of the load: address and the MAC frames to it are sent to.
#[derive(Clone, Copy, Debug)]
struct Target {
    ip: Ipv4Addr,
    mac: [u8; 6],
}

/// A running system: its server process(es) and targets.
struct Running {
    system: System,
    servers: Vec<Server>,
    targets: Vec<Target>,
    /// `ioth serve`'s metrics address (in the server namespace).
    metrics: Option<SocketAddr>,
}

impl Running {
    fn cpu_seconds(&self) -> f64 {
        self.servers.iter().map(Server::cpu_seconds).sum()
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

/// One measured repetition.
#[derive(Debug, Default)]
struct Rep {
    /// The primary metric in the workload's unit.
    rate: f64,
    /// Operations for CPU-per-million (packets, transactions; bytes for bulk).
    ops: u64,
    extra: Vec<(&'static str, f64)>,
    lost: u64,
}

struct Ctx<'a> {
    pair: &'a VethPair,
    ioth: String,
    self_exe: String,
}

fn start_ioth(c: &Ctx<'_>, threads: usize, base: u8) -> Result<(Server, Vec<Target>, SocketAddr)> {
    let metrics: SocketAddr = "127.0.0.1:9464".parse()?;
    let s = Server::start(
        &c.pair.host,
        &c.ioth,
        &[
            "serve".into(),
            "--iface".into(),
            c.pair.host_if.clone(),
            "--threads".into(),
            threads.to_string(),
            "--ipv4".into(),
            format!("{}/24", ip(base)),
            "--app".into(),
            "echo".into(),
            "--app".into(),
            "discard".into(),
            "--app".into(),
            "http".into(),
            "--app".into(),
            "source".into(),
            "--backlog".into(),
            "64".into(),
            "--metrics".into(),
            metrics.to_string(),
        ],
        "ready threads=",
    )?;
    let mut targets = Vec::new();
    for i in 0..threads {
        let want = format!("ipv4={}", ip(base + i as u8));
        let mac = s
            .ready
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == want))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
            .and_then(parse_mac)
            .with_context(|| format!("ioth serve printed no MAC for thread {i}"))?;
        targets.push(Target {
            ip: ip(base + i as u8),
            mac,
        });
    }
    Ok((s, targets, metrics))
}

fn start_kernel(c: &Ctx<'_>, ips: &[Ipv4Addr], threads: usize, reuse: bool) -> Result<Server> {
    let mut a = vec![
        "kernel-server".to_owned(),
        "--threads".into(),
        threads.to_string(),
    ];
    if reuse {
        a.push("--reuseport".into());
    }
    for i in ips {
        a.push("--ip".into());
        a.push(i.to_string());
    }
    Server::start(&c.pair.host, &c.self_exe, &a, "ready kernel-server")
}

fn start(c: &Ctx<'_>, system: System, threads: usize) -> Result<Running> {
    let host_mac = c.pair.host_mac;
    let at = |ip| Target { ip, mac: host_mac };
    let (servers, targets, metrics) = match system {
        System::Ioth => {
            let (s, t, m) = start_ioth(c, threads, IOTH_BASE)?;
            (vec![s], t, Some(m))
        }
        System::KernelIp => {
            let ips: Vec<_> = (0..threads).map(|i| ip(KERNEL_BASE + i as u8)).collect();
            let s = start_kernel(c, &ips, threads, false)?;
            (vec![s], ips.into_iter().map(at).collect(), None)
        }
        System::KernelReuseport => {
            let s = start_kernel(c, &[HOST], threads, true)?;
            (vec![s], vec![at(HOST); threads], None)
        }
        System::RawAfxdp => {
            let ips: Vec<_> = (0..threads).map(|i| ip(RAW_BASE + i as u8)).collect();
            let mut a = vec![
                "raw-echo".to_owned(),
                "--iface".into(),
                c.pair.host_if.clone(),
            ];
            for i in &ips {
                a.push("--ip".into());
                a.push(i.to_string());
                // No ARP in the raw echo: the load side gets a static neighbour entry.
                c.pair.peer.ip(&[
                    "neigh",
                    "replace",
                    &i.to_string(),
                    "lladdr",
                    &ioth_dataplane::wire::Mac(host_mac).to_string(),
                    "dev",
                    &c.pair.peer_if,
                    "nud",
                    "permanent",
                ])?;
            }
            // Raw frames are echoed as they came: the load side's kernel must put complete
            // checksums into them (no offload), or it would drop the echoes.
            c.pair.peer_offloads_off()?;
            let s = Server::start(&c.pair.host, &c.self_exe, &a, "ready raw-echo")?;
            (vec![s], ips.into_iter().map(at).collect(), None)
        }
        System::XdpDrop => (Vec::new(), vec![at(HOST); threads], None),
        System::SmoltcpTap => {
            c.pair
                .host
                .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            let _ = c.pair.peer.ip(&["route", "del", "10.98.0.0/16"]);
            c.pair
                .peer
                .ip(&["route", "add", "10.98.0.0/16", "via", &HOST.to_string()])?;
            let s = Server::start(
                &c.pair.host,
                &c.self_exe,
                &["tap-echo".into(), "--threads".into(), threads.to_string()],
                "ready tap-echo",
            )?;
            let t = (0..threads).map(|i| at(crate::tap::stack_ip(i))).collect();
            (vec![s], t, None)
        }
        System::HostDetached => {
            let s = start_kernel(c, &[HOST], 1, false)?;
            (vec![s], vec![at(HOST)], None)
        }
        System::HostAttached => {
            let s = start_kernel(c, &[HOST], 1, false)?;
            let (io, _, m) = start_ioth(c, 1, IOTH_BASE)?;
            (vec![s, io], vec![at(HOST)], Some(m))
        }
    };
    Ok(Running {
        system,
        servers,
        targets,
        metrics,
    })
}

/// Undoes what [`start`] changed in the topology (the servers stop on drop).
fn stop(c: &Ctx<'_>, r: Running) -> Result<()> {
    let system = r.system;
    drop(r);
    if system == System::RawAfxdp {
        c.pair.peer.exec(
            "ethtool",
            &["-K", &c.pair.peer_if, "tx", "on", "tso", "on", "gso", "on"],
        )?;
    }
    Ok(())
}

fn socket_addrs(r: &Running, port: u16) -> Vec<SocketAddr> {
    r.targets
        .iter()
        .map(|t| SocketAddr::new(IpAddr::V4(t.ip), port))
        .collect()
}

/// `wrk` from the load namespace on the load CPU: one process per target, 64 connections
/// shared between them; requests/s summed, latency percentiles of the slowest.
fn wrk(c: &Ctx<'_>, r: &Running, secs: f64) -> Result<Rep> {
    let targets = socket_addrs(r, 80);
    let conns = (64 / targets.len().max(1)).max(1).to_string();
    let dur = format!("{}s", secs.ceil().max(1.0) as u64);
    let children = targets
        .iter()
        .map(|t| {
            c.pair
                .peer
                .command("taskset")
                .args([
                    "-c",
                    "1",
                    "wrk",
                    "--latency",
                    "-t1",
                    "-c",
                    &conns,
                    "-d",
                    &dur,
                ])
                .arg(format!("http://{t}/"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("starting wrk")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rep = Rep::default();
    let (mut p50, mut p99) = (0.0f64, 0.0f64);
    for child in children {
        let out = child.wait_with_output().context("wrk")?;
        if !out.status.success() {
            bail!("wrk: {}", String::from_utf8_lossy(&out.stderr));
        }
        let w = load::parse_wrk(&String::from_utf8_lossy(&out.stdout))?;
        rep.rate += w.requests_per_sec;
        p50 = p50.max(w.p50_us);
        p99 = p99.max(w.p99_us);
    }
    rep.ops = (rep.rate * secs.ceil().max(1.0)) as u64;
    rep.extra.push(("p50_us", p50));
    rep.extra.push(("p99_us", p99));
    Ok(rep)
}

fn closed_loop(c: &Ctx<'_>, r: &Running, w: Workload, secs: f64) -> Result<Rep> {
    if w == Workload::HttpWrk {
        return wrk(c, r, secs);
    }
    let t = socket_addrs(r, w.port());
    let d = Duration::from_secs_f64(secs);
    let res: LoadResult = on_load_cpu(&c.pair.peer, move || match w {
        Workload::UdpEcho => load::udp_echo(&t, 64, 16, d),
        Workload::TcpRr(n) => load::tcp_rr(&t, n, 64, d),
        Workload::TcpBulkUp => load::tcp_bulk(&t, load::Bulk::Up, d),
        Workload::TcpBulkEcho => load::tcp_bulk(&t, load::Bulk::Echo, d),
        Workload::TcpBulkDown => load::tcp_bulk(&t, load::Bulk::Down, d),
        Workload::UdpFlood | Workload::UdpEchoFlood | Workload::HttpWrk => {
            bail!("not a socket-client workload")
        }
    })?;
    let mut rep = Rep {
        ops: res.ops,
        lost: res.lost,
        ..Rep::default()
    };
    match w {
        Workload::TcpBulkUp | Workload::TcpBulkEcho | Workload::TcpBulkDown => {
            rep.rate = res.ops as f64 * 8.0 / res.secs / 1e9;
            // CPU per million kilobytes: CPU seconds per GB.
            rep.ops = res.ops / 1000;
            rep.extra.push((
                "gbit_s_per_thread",
                rep.rate / r.targets.len().max(1) as f64,
            ));
        }
        _ => {
            rep.rate = res.ops as f64 / res.secs;
            let q = |p| res.latency.value_at_quantile(p) as f64 / 1e3;
            rep.extra.push(("p50_us", q(0.5)));
            rep.extra.push(("p99_us", q(0.99)));
            rep.extra.push(("p999_us", q(0.999)));
        }
    }
    Ok(rep)
}

/// Counters of a flood, read before and after.
#[derive(Clone, Copy, Debug, Default)]
struct FloodCounts {
    /// Frames that reached the server's veth (its XDP program ran).
    arrived: u64,
    /// Frames received into the server's sockets.
    rx: u64,
}

/// Sums the samples of Prometheus metric `name` in `text`.
fn prom_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn scrape(ns: &NetNs, addr: SocketAddr) -> Result<String> {
    ns.run(move || -> Result<String> {
        use std::io::Read as _;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .context("scraping ioth serve's metrics")
}

fn udp_in_datagrams(ns: &NetNs) -> Result<u64> {
    let out = ns.exec("cat", &["/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(h), Some(v)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == "InDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .context("no Udp InDatagrams")
}

fn flood_counts(
    c: &Ctx<'_>,
    r: &mut Running,
    server_xdp: Option<&BenchXdp>,
) -> Result<FloodCounts> {
    Ok(match r.system {
        System::Ioth => {
            let m = scrape(&c.pair.host, r.metrics.context("no metrics address")?)?;
            let redirected = prom_sum(&m, "ioth_endpoint_rx_packets_total");
            let dropped = prom_sum(&m, "ioth_xsk_rx_dropped_total")
                + prom_sum(&m, "ioth_xsk_rx_ring_full_total");
            FloodCounts {
                arrived: prom_sum(&m, "ioth_xdp_packets_total"),
                rx: redirected.saturating_sub(dropped),
            }
        }
        System::RawAfxdp => {
            let line = r.servers[0].query("stats", "stats ")?;
            let rx = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("rx="))
                .and_then(|v| v.parse().ok())
                .context("raw-echo stats")?;
            let iface = c.pair.host_if.clone();
            let arrived = c.pair.host.run(move || {
                ioth_dataplane::classifier::view::ClassifierView::open(&iface)
                    .and_then(|v| v.counters())
                    .map(|v| v.total())
            })?;
            FloodCounts { arrived, rx }
        }
        System::XdpDrop => {
            let n = server_xdp.context("no drop program")?.counts()?.frames;
            FloodCounts { arrived: n, rx: n }
        }
        _ => FloodCounts {
            arrived: server_xdp.map_or(Ok(0), |x| x.counts().map(|c| c.frames))?,
            rx: udp_in_datagrams(&c.pair.host)?,
        },
    })
}

fn flood_frames(c: &Ctx<'_>, r: &Running, port: u16) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for t in &r.targets {
        // Several source ports per target, so SO_REUSEPORT can spread them.
        for k in 0..4u16 {
            frames.push(crate::frames::udp4(
                t.mac,
                c.pair.peer_mac,
                (PEER, 40_000 + k),
                (t.ip, port),
                64,
            ));
        }
    }
    frames
}

/// The XDP programs a flood needs besides the generator: the load side's reply counter,
/// and on the server side the drop ceiling or (kernel servers) a counting XDP_PASS, since
/// a veth only takes XDP_TX'ed frames with a driver-mode program attached.
fn flood_programs(c: &Ctx<'_>, r: &Running) -> Result<(Option<BenchXdp>, Option<BenchXdp>)> {
    let server = match r.system {
        System::Ioth | System::RawAfxdp | System::HostAttached => None,
        System::XdpDrop => Some(Prog::Drop),
        _ => Some(Prog::Pass),
    };
    let server = server
        .map(|p| -> Result<BenchXdp> {
            let mut x = BenchXdp::load(p)?;
            let _in = c.pair.host.enter()?;
            x.attach(&c.pair.host_if)?;
            Ok(x)
        })
        .transpose()?;
    let sink = if r.system == System::XdpDrop {
        None
    } else {
        let mut x = BenchXdp::load(Prog::Sink)?;
        let _in = c.pair.peer.enter()?;
        x.attach(&c.pair.peer_if)?;
        Some(x)
    };
    Ok((server, sink))
}

fn flood_rep(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    progs: &(Option<BenchXdp>, Option<BenchXdp>),
    secs: f64,
) -> Result<Rep> {
    // ioth serve publishes socket statistics twice a second: let them settle.
    let settle = Duration::from_millis(if r.metrics.is_some() { 600 } else { 50 });
    let frames = flood_frames(c, r, w.port());
    std::thread::sleep(settle);
    let before = flood_counts(c, r, progs.0.as_ref())?;
    let echo0 = progs
        .1
        .as_ref()
        .map_or(Ok(0), |x| x.counts().map(|c| c.frames))?;
    let iface = c.pair.peer_if.clone();
    let d = Duration::from_secs_f64(secs);
    let f = on_load_cpu(&c.pair.peer, move || crate::xdp::flood(&iface, &frames, d))?;
    std::thread::sleep(settle);
    let after = flood_counts(c, r, progs.0.as_ref())?;
    let echo1 = progs
        .1
        .as_ref()
        .map_or(Ok(0), |x| x.counts().map(|c| c.frames))?;
    let rx = after.rx.saturating_sub(before.rx);
    let echoed = echo1.saturating_sub(echo0);
    let per_s = |n: u64| n as f64 / f.secs;
    let primary = if w == Workload::UdpEchoFlood {
        echoed
    } else {
        rx
    };
    let mut rep = Rep {
        rate: per_s(primary),
        ops: primary,
        ..Rep::default()
    };
    rep.extra.push(("received_pps", per_s(rx)));
    rep.extra.push(("offered_pps", per_s(f.sent)));
    rep.extra.push((
        "arrived_pps",
        per_s(after.arrived.saturating_sub(before.arrived)),
    ));
    if progs.1.is_some() {
        rep.extra.push(("echoed_pps", per_s(echoed)));
    }
    Ok(rep)
}

type FloodProgs = (Option<BenchXdp>, Option<BenchXdp>);

/// Warm-up before the repetitions of `w` against `r`: neighbours (the stack under test
/// learns the load side's MAC), caches, connection set-up paths. Loads the flood's XDP
/// programs, which stay attached until the returned value drops.
fn warm_up(c: &Ctx<'_>, r: &mut Running, w: Workload, label: &str) -> Result<Option<FloodProgs>> {
    let flood = matches!(w, Workload::UdpFlood | Workload::UdpEchoFlood);
    let warm = if flood { Workload::UdpEcho } else { w };
    if r.system != System::XdpDrop {
        closed_loop(c, r, warm, 0.3).with_context(|| format!("{label} warm-up"))?;
    }
    if !flood {
        return Ok(None);
    }
    let p = flood_programs(c, r)?;
    flood_rep(c, r, w, &p, 0.3).with_context(|| format!("{label} warm-up"))?;
    Ok(Some(p))
}

/// One measured repetition and the server CPU seconds it took.
fn one_rep(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    progs: Option<&FloodProgs>,
    secs: f64,
    label: &str,
) -> Result<(Rep, f64)> {
    let c0 = r.cpu_seconds();
    let rep = match progs {
        Some(p) => flood_rep(c, r, w, p, secs),
        None => closed_loop(c, r, w, secs),
    }
    .with_context(|| label.to_owned())?;
    Ok((rep, r.cpu_seconds() - c0))
}

fn rep_label(r: &Running, w: Workload, threads: usize, endpoints: usize) -> String {
    format!(
        "{} {} {threads} thr {endpoints} ep",
        r.system.name(),
        w.name()
    )
}

/// Warm-up and `reps` measured repetitions of `w` against `r`; one result row.
fn measure(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    threads: usize,
    endpoints: usize,
    reps: u32,
    secs: f64,
) -> Result<Row> {
    let label = rep_label(r, w, threads, endpoints);
    let progs = warm_up(c, r, w, &label)?;
    let mut done = Vec::new();
    for _ in 0..reps {
        done.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
    }
    Ok(row(r.system, w, threads, endpoints, done, secs))
}

/// Endpoint scaling as a paired comparison: each repetition measures the server with its
/// own endpoints only and with `n - 1` filler endpoints registered, one right after the
/// other (alternating which goes first), so that a drift of the host lands on both sides of each pair. The row is the
/// `n`-endpoint measurement; its metric `ratio_to_1_paired` is the per-pair ratio
/// (n endpoints / 1) and `rate_1_paired` the baseline of the pairs.
#[expect(
    clippy::too_many_arguments,
    reason = "one measurement's parameters, used once"
)]
fn measure_scaling(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    threads: usize,
    n: usize,
    reps: u32,
    secs: f64,
    fillers_added: &mut bool,
) -> Result<Row> {
    let label = rep_label(r, w, threads, n);
    let progs = warm_up(c, r, w, &label)?;
    let (mut base, mut scaled) = (Vec::new(), Vec::new());
    for i in 0..reps {
        // A B, B A, A B, ...: neither side always runs first.
        let base_first = i % 2 == 0;
        if base_first {
            base.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        }
        let iface = c.pair.host_if.clone();
        let fillers = c
            .pair
            .host
            .run(move || Fillers::add(&iface, n as u32 - 1))
            .with_context(|| format!("registering {n} endpoints"))?;
        if !*fillers_added {
            eprintln!(
                "bench: {} filler endpoints registered per repetition",
                fillers.len()
            );
            *fillers_added = true;
        }
        scaled.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        drop(fillers);
        if !base_first {
            base.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        }
    }
    let ratios: Vec<f64> = base
        .iter()
        .zip(&scaled)
        .map(|((b, _), (s, _))| s.rate / b.rate)
        .collect();
    let baseline = Stat::of(base.iter().map(|(b, _)| b.rate).collect());
    let mut row = row(r.system, w, threads, n, scaled, secs);
    row.metrics
        .insert("ratio_to_1_paired".into(), Stat::of(ratios));
    row.metrics.insert("rate_1_paired".into(), baseline);
    Ok(row)
}

/// The result row of measured repetitions (and a line on stderr).
fn row(
    system: System,
    w: Workload,
    threads: usize,
    endpoints: usize,
    done: Vec<(Rep, f64)>,
    secs: f64,
) -> Row {
    let (reps_v, cpu): (Vec<Rep>, Vec<f64>) = done.into_iter().unzip();
    let mut metrics: BTreeMap<String, Stat> = BTreeMap::new();
    if let Some(first) = reps_v.first() {
        for (i, (name, _)) in first.extra.iter().enumerate() {
            metrics.insert(
                (*name).to_owned(),
                Stat::of(reps_v.iter().map(|r| r.extra[i].1).collect()),
            );
        }
    }
    let per_million: Vec<f64> = reps_v
        .iter()
        .zip(&cpu)
        .map(|(rep, c)| {
            if rep.ops > 0 {
                c / (rep.ops as f64 / 1e6)
            } else {
                f64::NAN
            }
        })
        .collect();
    let row = Row {
        system: system.name(),
        workload: w.name(),
        unit: w.unit(),
        threads,
        endpoints,
        rate: Stat::of(reps_v.iter().map(|r| r.rate).collect()),
        metrics,
        lost: reps_v.iter().map(|r| r.lost).sum(),
        server_cpu_seconds: Stat::of(cpu),
        server_cpu_seconds_per_million: Stat::of(per_million),
        reps: reps_v.len() as u32,
        secs_per_rep: secs,
    };
    let p99 = row
        .metrics
        .get("p99_us")
        .map_or(String::new(), |s| format!(", p99 {:.1} µs", s.median));
    eprintln!(
        "bench: {:<16} {:<20} {} thr {:>5} ep: {:>12.2} {} [{:.2}–{:.2}]{p99}{}",
        row.system,
        row.workload,
        threads,
        endpoints,
        row.rate.median,
        row.unit,
        row.rate.min,
        row.rate.max,
        if row.lost > 0 {
            format!(", lost {}", row.lost)
        } else {
            String::new()
        }
    );
    row
}

pub fn run(args: &CompareArgs) -> Result<()> {
    if !args.ioth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p ioth-control` (cargo xtask bench does)",
            args.ioth.display()
        );
    }
    let systems: Vec<System> = if args.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for name in &args.systems {
            let s = System::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .with_context(|| {
                    format!(
                        "unknown system {name:?}; known: {}",
                        System::ALL.map(System::name).join(", ")
                    )
                })?;
            v.push(s);
        }
        v
    };
    let started = Instant::now();
    let (reps, secs, thread_counts, workloads, endpoint_counts) = if args.quick {
        (
            1,
            0.3,
            vec![1],
            vec![
                Workload::UdpEcho,
                Workload::UdpFlood,
                Workload::UdpEchoFlood,
                Workload::TcpRr(1),
                Workload::TcpRr(64),
                Workload::TcpBulkUp,
                Workload::TcpBulkEcho,
                Workload::TcpBulkDown,
                Workload::HttpWrk,
            ],
            vec![10_000],
        )
    } else {
        (
            args.reps.max(1),
            args.secs,
            vec![1, 2],
            vec![
                Workload::UdpEcho,
                Workload::UdpFlood,
                Workload::UdpEchoFlood,
                Workload::TcpRr(1),
                Workload::TcpRr(64),
                Workload::TcpRr(1000),
                Workload::TcpBulkUp,
                Workload::TcpBulkEcho,
                Workload::TcpBulkDown,
                Workload::HttpWrk,
            ],
            vec![100, 10_000],
        )
    };
    let (thread_counts, workloads) = select(args, thread_counts, workloads)?;
    let endpoint_counts: Vec<usize> = if args.endpoints.is_empty() {
        endpoint_counts
    } else {
        args.endpoints.iter().copied().filter(|&n| n > 1).collect()
    };
    let pair = VethPair::new("bench", 2).context("making the veth pair")?;
    for i in 0..2u8 {
        pair.host.ip(&[
            "addr",
            "add",
            &format!("{}/24", ip(KERNEL_BASE + i)),
            "dev",
            &pair.host_if,
        ])?;
    }
    let c = Ctx {
        pair: &pair,
        ioth: std::fs::canonicalize(&args.ioth)?
            .to_string_lossy()
            .into_owned(),
        self_exe: std::env::current_exe()?.to_string_lossy().into_owned(),
    };
    let mut rows = Vec::new();
    for &threads in &thread_counts {
        for &system in &systems {
            let host_only = matches!(system, System::HostDetached | System::HostAttached);
            if host_only && threads != 1 {
                continue;
            }
            let mut r = start(&c, system, threads)
                .with_context(|| format!("starting {}", system.name()))?;
            let result = (|| -> Result<()> {
                for &w in &workloads {
                    if system.serves(w) {
                        rows.push(measure(&c, &mut r, w, threads, threads, reps, secs)?);
                    }
                }
                // Endpoint scaling: the same server with filler endpoints registered.
                // Paired with a 1-endpoint repetition each (see `measure_scaling`).
                if system == System::Ioth && threads == 1 {
                    for &n in &endpoint_counts {
                        let mut announced = false;
                        for w in [Workload::UdpEcho, Workload::UdpFlood, Workload::TcpRr(64)] {
                            if workloads.contains(&w) {
                                rows.push(measure_scaling(
                                    &c,
                                    &mut r,
                                    w,
                                    threads,
                                    n,
                                    reps,
                                    secs,
                                    &mut announced,
                                )?);
                            }
                        }
                    }
                }
                Ok(())
            })();
            stop(&c, r)?;
            result?;
            // Partial results after every system: a run that dies late still leaves them.
            let partial = Report {
                machine: Machine::now(),
                rows: std::mem::take(&mut rows),
            };
            write_results(args, &partial)?;
            rows = partial.rows;
        }
    }
    let report = Report {
        machine: Machine::now(),
        rows,
    };
    let md = write_results(args, &report)?;
    let plots = plots_dir(args);
    println!("{md}");
    eprintln!(
        "bench: {} rows in {:.0?}; results in {}, {} and {}/*.svg",
        report.rows.len(),
        started.elapsed(),
        args.json.display(),
        args.markdown.display(),
        plots.display()
    );
    Ok(())
}

/// Narrows the run to the thread counts and workloads named on the command line.
fn select(
    args: &CompareArgs,
    thread_counts: Vec<usize>,
    workloads: Vec<Workload>,
) -> Result<(Vec<usize>, Vec<Workload>)> {
    let threads = if args.threads.is_empty() {
        thread_counts
    } else {
        if let Some(t) = args.threads.iter().find(|t| !(1..=2).contains(*t)) {
            bail!("--threads {t}: the harness runs 1 or 2 server threads (one veth, 2 queues)");
        }
        args.threads.clone()
    };
    let workloads = if args.workloads.is_empty() {
        workloads
    } else {
        let mut v = Vec::new();
        for name in &args.workloads {
            let w = workloads
                .iter()
                .find(|w| w.name() == *name)
                .with_context(|| {
                    let known: Vec<_> = workloads.iter().map(|w| w.name()).collect();
                    format!("unknown workload {name:?}; known: {}", known.join(", "))
                })?;
            v.push(*w);
        }
        v
    };
    Ok((threads, workloads))
}

fn plots_dir(args: &CompareArgs) -> PathBuf {
    args.plots
        .clone()
        .or_else(|| args.json.parent().map(PathBuf::from))
        .unwrap_or_default()
}

/// Writes the JSON, the markdown and the plots; returns the markdown.
fn write_results(args: &CompareArgs, report: &Report) -> Result<String> {
    for p in [&args.json, &args.markdown] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    let md = report::markdown(report);
    std::fs::write(&args.markdown, &md)
        .with_context(|| format!("writing {}", args.markdown.display()))?;
    crate::plot::write_all(report, &plots_dir(args))?;
    Ok(md)
}
