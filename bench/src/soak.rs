//! `ioth-bench soak --minutes N`: a long run of mixed traffic against `ioth serve` on a pinned
//! attachment, with the server SIGKILLed and started again every few cycles, checking that
//! nothing grows: at the quiet point after each cycle the server's fds, its UMEM frames
//! available to the kernel, the classifier's map entries and the stacks' sockets must be back
//! where they were, and its memory must not creep within a server's life. A JSON file, a
//! Markdown summary and an SVG with the curves are written; a leak fails the run.
//!
//! A cycle (5 s of traffic from the peer namespace): HTTP requests on new connections to
//! every thread (connection churn), TCP echo connections carrying 16 KiB each, UDP echo
//! datagrams, and a half-second UDP flood from the live-frame generator. Every fourth cycle
//! ends with SIGKILL; the next server reaps the dead one's endpoints as it starts.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::{NetNs, VethPair};

use crate::compare::server::Server;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// The `ioth` binary.
    #[arg(long, default_value = "target/release/ioth")]
    pub ioth: String,
    /// Directory for soak.json, soak.md and soak.svg.
    #[arg(long, default_value = "bench/results/soak")]
    pub out: PathBuf,
}

const THREADS: u8 = 2;
const BASE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const METRICS_PORT: u16 = 19_498;
const CYCLE: Duration = Duration::from_secs(5);
const KILL_EVERY: usize = 4;

/// What is measured at the quiet point after a cycle.
#[derive(Clone, Debug, Serialize)]
struct Sample {
    cycle: usize,
    secs: f64,
    /// Which server (0, 1, … after each SIGKILL).
    life: usize,
    rss_kib: u64,
    fds: u64,
    /// UMEM frames free or on the fill ring (what the kernel can receive into).
    umem_available: u64,
    /// Keys of the classifier's ownership maps (MACs, IPv4, IPv6) and owner entries.
    map_entries: u64,
    /// Sockets of the stacks.
    sockets: u64,
    /// Traffic of the cycle.
    http_ok: u64,
    tcp_echo_ok: u64,
    udp_echoed: u64,
    flood_sent: u64,
}

/// A private bpffs for the pinned attachment, unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("ioth-soak-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        let st = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&p)
            .status()
            .context("mount bpffs")?;
        if !st.success() {
            bail!("mounting bpffs on {}", p.display());
        }
        Ok(Self(p))
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn ioth(ns: &NetNs, ioth: &str, bpffs: &Path) -> std::process::Command {
    let mut c = ns.command(ioth);
    c.env("IOTH_BPFFS", bpffs);
    c
}

/// `ioth serve` on the pinned attachment in `bpffs`, pinned to the server CPU.
fn start_server(pair: &VethPair, bin: &str, bpffs: &Path) -> Result<Server> {
    let args: Vec<String> = [
        "serve",
        "--iface",
        &pair.host_if,
        "--threads",
        &THREADS.to_string(),
        "--ipv4",
        &format!("{BASE}/24"),
        "--app",
        "http",
        "--app",
        "echo",
        "--metrics",
        &format!("127.0.0.1:{METRICS_PORT}"),
    ]
    .map(str::to_owned)
    .to_vec();
    Server::start_env(
        &pair.host,
        bin,
        &args,
        &[("IOTH_BPFFS", bpffs.as_os_str())],
        "ready threads=",
    )
}

fn addr(i: u8) -> Ipv4Addr {
    let o = BASE.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + i)
}

/// One cycle of traffic from the peer namespace; (http ok, tcp echo ok, udp echoed).
fn traffic(pair: &VethPair, until: Instant) -> (u64, u64, u64) {
    pair.peer.run(move || {
        let (mut http, mut tcp, mut udp) = (0, 0, 0);
        let sock = UdpSocket::bind("0.0.0.0:0").ok();
        if let Some(s) = &sock {
            let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
        }
        let mut buf = vec![0u8; 16 * 1024];
        while Instant::now() < until {
            for i in 0..THREADS {
                let to = |port| SocketAddr::from((addr(i), port));
                // HTTP on a new connection each time.
                if let Ok(mut s) = TcpStream::connect_timeout(&to(80), Duration::from_secs(1)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ =
                        s.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
                    let mut body = Vec::new();
                    if s.read_to_end(&mut body).is_ok() && body.starts_with(b"HTTP/1.1 200") {
                        http += 1;
                    }
                }
                // TCP echo of 16 KiB.
                if let Ok(mut s) = TcpStream::connect_timeout(&to(7), Duration::from_secs(1)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    buf.fill(i + 1);
                    if s.write_all(&buf).is_ok() {
                        let mut got = vec![0u8; buf.len()];
                        if s.read_exact(&mut got).is_ok() && got == buf {
                            tcp += 1;
                        }
                    }
                }
                // UDP echo.
                if let Some(s) = &sock {
                    for _ in 0..20 {
                        let _ = s.send_to(b"soak", to(7));
                    }
                    let mut b = [0u8; 64];
                    while s.recv_from(&mut b).is_ok() {
                        udp += 1;
                    }
                }
            }
        }
        (http, tcp, udp)
    })
}

/// Half a second of UDP flood to the discard port of thread 0 (at `mac`), from the
/// live-frame generator.
fn flood(pair: &VethPair, mac: [u8; 6]) -> u64 {
    let frames = crate::frames::discard_flood(mac, pair.peer_mac, addr(0));
    let iface = pair.peer_if.clone();
    pair.peer
        .run(move || crate::xdp::flood(&iface, &frames, Duration::from_millis(500)))
        .map_or(0, |f| f.sent)
}

/// The metrics text of the running server.
fn scrape(pair: &VethPair) -> String {
    pair.host.run(|| {
        let mut s = match TcpStream::connect(("127.0.0.1", METRICS_PORT)) {
            Ok(s) => s,
            Err(_) => return String::new(),
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    })
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn map_entries(pair: &VethPair, bin: &str, bpffs: &Path) -> u64 {
    let out = ioth(&pair.host, bin, bpffs)
        .args(["endpoints", "--iface", &pair.host_if, "--json"])
        .output();
    let Ok(out) = out else { return 0 };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array().map_or(0, |eps| {
        eps.iter()
            .map(|e| {
                1 + ["macs", "ipv4", "ipv6"]
                    .iter()
                    .map(|k| e[*k].as_array().map_or(0, Vec::len) as u64)
                    .sum::<u64>()
            })
            .sum()
    })
}

pub fn run(args: &SoakArgs) -> Result<()> {
    let pair = VethPair::new("soak", 2)?;
    let bpffs = Bpffs::mount()?;
    let out = ioth(&pair.host, &args.ioth, &bpffs.0)
        .args(["attach", "--iface", &pair.host_if])
        .output()
        .context("ioth attach")?;
    if !out.status.success() {
        bail!("ioth attach: {}", String::from_utf8_lossy(&out.stderr));
    }
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.minutes * 60.0);
    let mut server = start_server(&pair, &args.ioth, &bpffs.0)?;
    let mut life = 0;
    let mut samples = Vec::new();
    let mut cycle = 0;
    while Instant::now() < end {
        let (http_ok, tcp_echo_ok, udp_echoed) = traffic(&pair, Instant::now() + CYCLE);
        let flood_sent = server.ready_mac(addr(0)).map_or(0, |m| flood(&pair, m));
        // Quiet: closing handshakes and TIME-WAIT of the last connections end.
        std::thread::sleep(Duration::from_secs(2));
        let pid = server.child.id();
        let text = scrape(&pair);
        let s = Sample {
            cycle,
            secs: started.elapsed().as_secs_f64(),
            life,
            rss_kib: status_kib(pid, "VmRSS:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
            umem_available: sum(&text, "ioth_umem_frames", &["state=\"free\""])
                + sum(&text, "ioth_umem_frames", &["state=\"fill\""]),
            map_entries: map_entries(&pair, &args.ioth, &bpffs.0),
            sockets: sum(&text, "ioth_sockets", &[]),
            http_ok,
            tcp_echo_ok,
            udp_echoed,
            flood_sent,
        };
        eprintln!(
            "soak: cycle {cycle} life {life}: rss {} KiB, fds {}, umem available {}, map entries {}, sockets {}; http {http_ok}, tcp echo {tcp_echo_ok}, udp {udp_echoed}, flood {flood_sent}",
            s.rss_kib, s.fds, s.umem_available, s.map_entries, s.sockets
        );
        samples.push(s);
        cycle += 1;
        if cycle % KILL_EVERY == 0 && Instant::now() < end {
            let _ = server.child.kill();
            let _ = server.child.wait();
            // The next server reaps the killed one's endpoints before claiming the same.
            server = start_server(&pair, &args.ioth, &bpffs.0)?;
            life += 1;
        }
    }
    drop(server);
    let _ = ioth(&pair.host, &args.ioth, &bpffs.0)
        .args(["detach", "--iface", &pair.host_if, "--force"])
        .output();
    let verdicts = judge(&samples);
    write_report(&args.out, &samples, &verdicts)?;
    let failed: Vec<&String> = verdicts
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, v)| v)
        .collect();
    if !failed.is_empty() {
        bail!(
            "soak: not flat:\n  {}",
            failed.into_iter().cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    eprintln!(
        "soak: flat over {} cycles ({} servers)",
        samples.len(),
        life + 1
    );
    Ok(())
}

/// The checks, each (passed, what it says).
fn judge(s: &[Sample]) -> Vec<(bool, String)> {
    let mut v = Vec::new();
    let Some(first) = s.first() else {
        return vec![(false, "no cycle completed".into())];
    };
    let same = |name: &str, f: &dyn Fn(&Sample) -> u64| {
        let bad: Vec<String> = s
            .iter()
            .filter(|x| f(x) != f(first))
            .map(|x| format!("cycle {}: {}", x.cycle, f(x)))
            .collect();
        (
            bad.is_empty(),
            format!(
                "{name}: {} at every quiet point{}",
                f(first),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!(", but {}", bad.join(", "))
                }
            ),
        )
    };
    v.push(same("fds", &|x| x.fds));
    v.push(same("map entries", &|x| x.map_entries));
    v.push(same("sockets", &|x| x.sockets));
    v.push(same("UMEM frames available", &|x| x.umem_available));
    // Memory: within each server's life, the last quiet point at most 10% + 2 MiB above its
    // first (allocators keep some; a leak per cycle does not stay under that).
    let lives = s.iter().map(|x| x.life).max().unwrap_or(0) + 1;
    for l in 0..lives {
        let xs: Vec<&Sample> = s.iter().filter(|x| x.life == l).collect();
        if let (Some(a), Some(b)) = (xs.first(), xs.last())
            && xs.len() > 1
        {
            let limit = a.rss_kib + a.rss_kib / 10 + 2048;
            v.push((
                b.rss_kib <= limit,
                format!(
                    "RSS of server {l}: {} KiB after its first cycle, {} KiB after its last ({} cycles; limit {limit})",
                    a.rss_kib,
                    b.rss_kib,
                    xs.len()
                ),
            ));
        }
    }
    // The traffic ran.
    let served = s
        .iter()
        .all(|x| x.http_ok > 0 && x.tcp_echo_ok > 0 && x.udp_echoed > 0);
    v.push((
        served,
        "every cycle served HTTP, TCP echo and UDP echo".into(),
    ));
    v
}

fn write_report(dir: &Path, s: &[Sample], verdicts: &[(bool, String)]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("soak.json"), serde_json::to_string_pretty(s)?)?;
    let mut md = String::from("### Soak\n\n");
    md.push_str(&format!(
        "{} cycles of {} s traffic, a SIGKILL and restart every {KILL_EVERY} cycles. Machine: {}.\n\n",
        s.len(),
        CYCLE.as_secs(),
        {
            let m = crate::machine::Machine::now();
            format!("{} ({} cores), Linux {}, {}, commit {}", m.cpu, m.cores, m.kernel, m.date, m.git_commit)
        }
    ));
    for (ok, what) in verdicts {
        md.push_str(&format!(
            "- {} {what}\n",
            if *ok { "flat:" } else { "**GROWS:**" }
        ));
    }
    md.push_str("\n| cycle | server | RSS KiB | fds | UMEM available | map entries | sockets | HTTP | TCP echo | UDP echo | flood |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for x in s {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            x.cycle,
            x.life,
            x.rss_kib,
            x.fds,
            x.umem_available,
            x.map_entries,
            x.sockets,
            x.http_ok,
            x.tcp_echo_ok,
            x.udp_echoed,
            x.flood_sent
        ));
    }
    std::fs::write(dir.join("soak.md"), md)?;
    plot(s, &dir.join("soak.svg"))
}

/// A curve of the soak plot: its title and what it reads from a sample.
type Series = (&'static str, fn(&Sample) -> u64);

fn plot(s: &[Sample], path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting: {e}");
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let series: [Series; 5] = [
        ("RSS (KiB)", |x| x.rss_kib),
        ("fds", |x| x.fds),
        ("UMEM frames available", |x| x.umem_available),
        ("map entries", |x| x.map_entries),
        ("sockets", |x| x.sockets),
    ];
    let t_max = s.last().map_or(1.0, |x| x.secs).max(1.0);
    for ((name, f), area) in series.iter().zip(root.split_evenly((3, 2))) {
        let top = s.iter().map(f).max().unwrap_or(1).max(1) as f64 * 1.2;
        let mut chart = ChartBuilder::on(&area)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("s")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                s.iter().map(|x| (x.secs, f(x) as f64)),
                &RGBColor(0x1f, 0x77, 0xb4),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
