//! `ioth-bench compare`: ioth side by side with the kernel stack on one veth pair.
//!
//! Two fresh namespaces joined by a veth pair (made and removed here). The server side runs
//! in one namespace pinned to CPU 0, the load in the other pinned to CPU 1, the same for
//! every system:
//! - `ioth`: `ioth serve --app echo`, N threads with N IPs;
//! - `kernel-ip`: Linux sockets, N threads with one IP each (recvmmsg/sendmmsg, epoll);
//! - `kernel-reuseport`: Linux sockets, N threads sharing one IP with SO_REUSEPORT.
//!
//! Workloads: UDP echo of 64-byte datagrams (a window in flight per target) and TCP
//! request/response of 64 bytes over 1, 64 and 1000 connections. Each measurement is
//! repeated; the report gives the median and the spread (min–max), and a ratio whose spread
//! overlaps 1.0 is a tie.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::{NetNs, VethPair};
use serde::Serialize;

use crate::load::{self, LoadResult};

/// Options of `ioth-bench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Smoke mode: each workload once, briefly (checks the harness, numbers are rough).
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per measurement.
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    /// Seconds per repetition.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// The `ioth` binary to measure.
    #[arg(long, default_value = "target/release/ioth")]
    pub ioth: PathBuf,
    /// JSON results.
    #[arg(long, default_value = "bench/results/latest.json")]
    pub json: PathBuf,
    /// Markdown table.
    #[arg(long, default_value = "bench/results/latest.md")]
    pub markdown: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum System {
    Ioth,
    KernelIp,
    KernelReuseport,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ioth => "ioth",
            System::KernelIp => "kernel-ip",
            System::KernelReuseport => "kernel-reuseport",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    UdpEcho,
    TcpRr(usize),
}

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::UdpEcho => "udp-echo-64B".into(),
            Workload::TcpRr(c) => format!("tcp-rr-64B-{c}conn"),
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Workload::UdpEcho => "packets/s",
            Workload::TcpRr(_) => "transactions/s",
        }
    }
}

/// Median, min and max of repeated measurements.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    Stat {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

#[derive(Debug, Serialize)]
struct Row {
    system: System,
    workload: String,
    unit: &'static str,
    threads: usize,
    endpoints: usize,
    rate: Stat,
    p50_us: Stat,
    p99_us: Stat,
    p999_us: Stat,
    lost: u64,
    server_cpu_seconds_per_million: Stat,
    reps: u32,
    secs_per_rep: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    date: String,
    git_commit: String,
}

fn text(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> Machine {
    let m = crate::machine();
    Machine {
        cpu: m.cpu,
        cores: m.cores,
        kernel: m.kernel,
        date: text(Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ")),
        git_commit: text(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
    }
}

/// A server process in the server namespace, pinned to CPU 0, killed on drop.
struct Server {
    child: Child,
}

impl Server {
    fn start(ns: &NetNs, program: &str, args: &[String], ready_prefix: &str) -> Result<Self> {
        use std::io::BufRead as _;
        let mut child = ns
            .command("taskset")
            .args(["-c", "0", program])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let out = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = ready_prefix.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line.starts_with(&prefix) {
                    let _ = tx.send(());
                }
            }
        });
        let s = Self { child };
        rx.recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("{program} did not become ready"))?;
        Ok(s)
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
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
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

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 99, 0, last))
}

fn run_load(pair: &VethPair, w: Workload, targets: &[SocketAddr], secs: f64) -> Result<LoadResult> {
    let targets = targets.to_vec();
    let d = Duration::from_secs_f64(secs);
    on_load_cpu(&pair.peer, move || match w {
        Workload::UdpEcho => load::udp_echo(&targets, 64, 16, d),
        Workload::TcpRr(c) => load::tcp_rr(&targets, c, 64, d),
    })
}

pub fn run(args: &CompareArgs) -> Result<()> {
    if !args.ioth.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p ioth-control` (cargo xtask bench does)",
            args.ioth.display()
        );
    }
    let ioth = std::fs::canonicalize(&args.ioth)?;
    let self_exe = std::env::current_exe()?;
    let (reps, secs, thread_counts, workloads): (u32, f64, Vec<usize>, Vec<Workload>) =
        if args.quick {
            (
                1,
                0.3,
                vec![1],
                vec![Workload::UdpEcho, Workload::TcpRr(1), Workload::TcpRr(8)],
            )
        } else {
            (
                args.reps.max(1),
                args.secs,
                vec![1, 2],
                vec![
                    Workload::UdpEcho,
                    Workload::TcpRr(1),
                    Workload::TcpRr(64),
                    Workload::TcpRr(1000),
                ],
            )
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
    let mut rows = Vec::new();
    for &threads in &thread_counts {
        for system in [System::Ioth, System::KernelIp, System::KernelReuseport] {
            let (server, targets): (Server, Vec<IpAddr>) = match system {
                System::Ioth => (
                    Server::start(
                        &pair.host,
                        &ioth.to_string_lossy(),
                        &[
                            "serve".into(),
                            "--iface".into(),
                            pair.host_if.clone(),
                            "--threads".into(),
                            threads.to_string(),
                            "--ipv4".into(),
                            format!("{}/24", ip(IOTH_BASE)),
                            "--app".into(),
                            "echo".into(),
                            "--backlog".into(),
                            "64".into(),
                        ],
                        "ready threads=",
                    )?,
                    (0..threads).map(|i| ip(IOTH_BASE + i as u8)).collect(),
                ),
                System::KernelIp | System::KernelReuseport => {
                    let reuse = system == System::KernelReuseport;
                    let ips: Vec<IpAddr> = if reuse {
                        vec![ip(1); threads]
                    } else {
                        (0..threads).map(|i| ip(KERNEL_BASE + i as u8)).collect()
                    };
                    let mut a = vec![
                        "kernel-server".to_owned(),
                        "--threads".into(),
                        threads.to_string(),
                    ];
                    if reuse {
                        a.push("--reuseport".into());
                    }
                    for i in ips.iter().take(if reuse { 1 } else { threads }) {
                        a.push("--ip".into());
                        a.push(i.to_string());
                    }
                    (
                        Server::start(
                            &pair.host,
                            &self_exe.to_string_lossy(),
                            &a,
                            "ready kernel-server",
                        )?,
                        ips,
                    )
                }
            };
            for &w in &workloads {
                let port = 7;
                let t: Vec<SocketAddr> = targets
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect();
                // Warm-up: ARP/neighbours, caches, connection set-up paths.
                run_load(&pair, w, &t, 0.3)
                    .with_context(|| format!("{} {} warm-up", system.name(), w.name()))?;
                let mut rates = Vec::new();
                let (mut p50, mut p99, mut p999, mut cpu) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut lost = 0;
                for _ in 0..reps {
                    let c0 = server.cpu_seconds();
                    let r = run_load(&pair, w, &t, secs)?;
                    let c1 = server.cpu_seconds();
                    let rate = r.ops as f64 / r.secs;
                    rates.push(rate);
                    p50.push(r.latency.value_at_quantile(0.5) as f64 / 1e3);
                    p99.push(r.latency.value_at_quantile(0.99) as f64 / 1e3);
                    p999.push(r.latency.value_at_quantile(0.999) as f64 / 1e3);
                    cpu.push(if r.ops > 0 {
                        (c1 - c0) / (r.ops as f64 / 1e6)
                    } else {
                        f64::NAN
                    });
                    lost += r.lost;
                }
                let row = Row {
                    system,
                    workload: w.name(),
                    unit: w.unit(),
                    threads,
                    endpoints: threads,
                    rate: stat(rates),
                    p50_us: stat(p50),
                    p99_us: stat(p99),
                    p999_us: stat(p999),
                    lost,
                    server_cpu_seconds_per_million: stat(cpu),
                    reps,
                    secs_per_rep: secs,
                };
                eprintln!(
                    "bench: {:<17} {:<20} {} thr: {:>10.0} {} (min {:.0}, max {:.0}), p50 {:.1} µs, p99 {:.1} µs, lost {}",
                    system.name(),
                    row.workload,
                    threads,
                    row.rate.median,
                    row.unit,
                    row.rate.min,
                    row.rate.max,
                    row.p50_us.median,
                    row.p99_us.median,
                    lost
                );
                rows.push(row);
            }
            drop(server);
        }
    }
    let report = Report {
        machine: machine(),
        rows,
    };
    for p in [&args.json, &args.markdown] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    let md = markdown(&report);
    std::fs::write(&args.markdown, &md)?;
    println!("{md}");
    eprintln!(
        "bench: results in {} and {}",
        args.json.display(),
        args.markdown.display()
    );
    Ok(())
}

/// ioth / kernel with the spread: min over max and max over min; a tie if it spans 1.0.
fn ratio(a: &Stat, b: &Stat) -> String {
    if b.median == 0.0 || b.min == 0.0 || b.max == 0.0 {
        return "n/a".into();
    }
    let (mid, lo, hi) = (a.median / b.median, a.min / b.max, a.max / b.min);
    let verdict = if lo <= 1.0 && hi >= 1.0 { " (tie)" } else { "" };
    format!("{mid:.2}x [{lo:.2}–{hi:.2}]{verdict}")
}

fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let mut s = format!(
        "Machine: {} ({} cores), Linux {}, {}, commit {}. Server pinned to CPU 0, load to CPU 1; veth, copy-mode AF_XDP.\n\n",
        m.cpu, m.cores, m.kernel, m.date, m.git_commit
    );
    s.push_str("| workload | threads | ioth | kernel (IP per thread) | kernel (SO_REUSEPORT) | ioth / kernel-ip | ioth / kernel-reuseport | p99 µs ioth / kernel-ip |\n|---|---|---|---|---|---|---|---|\n");
    let find = |sys: System, w: &str, t: usize| {
        r.rows
            .iter()
            .find(|x| x.system == sys && x.workload == w && x.threads == t)
    };
    let mut keys: Vec<(String, usize)> = r
        .rows
        .iter()
        .map(|x| (x.workload.clone(), x.threads))
        .collect();
    keys.dedup();
    let mut seen = std::collections::HashSet::new();
    for (w, t) in keys {
        if !seen.insert((w.clone(), t)) {
            continue;
        }
        let (Some(i), Some(k), Some(p)) = (
            find(System::Ioth, &w, t),
            find(System::KernelIp, &w, t),
            find(System::KernelReuseport, &w, t),
        ) else {
            continue;
        };
        s.push_str(&format!(
            "| {w} | {t} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} / {:.0} |\n",
            i.rate.median,
            k.rate.median,
            p.rate.median,
            ratio(&i.rate, &k.rate),
            ratio(&i.rate, &p.rate),
            i.p99_us.median,
            k.p99_us.median,
        ));
    }
    s
}
