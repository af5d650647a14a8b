//! One repetition of each workload: the closed-loop and wrk clients, the live-frame flood and
//! its counters.

use std::{io::Write as _, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::NetNs;

use super::{server::*, systems::*};
use crate::{
    load::{self, LoadResult},
    xdp::{BenchXdp, Prog},
};

/// One measured repetition.
#[derive(Debug, Default)]
pub(crate) struct Rep {
    /// The primary metric in the workload's unit.
    pub(crate) rate: f64,
    /// Operations for CPU-per-million (packets, transactions; bytes for bulk).
    pub(crate) ops: u64,
    pub(crate) extra: Vec<(&'static str, f64)>,
    pub(crate) lost: u64,
}

/// `wrk` from the load namespace on the load CPU: one process per target, 64 connections
/// shared between them; requests/s summed, latency percentiles of the slowest.
pub(crate) fn wrk(c: &Ctx<'_>, r: &Running, secs: f64) -> Result<Rep> {
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

pub(crate) fn closed_loop(c: &Ctx<'_>, r: &Running, w: Workload, secs: f64) -> Result<Rep> {
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
pub(crate) struct FloodCounts {
    /// Frames that reached the server's veth (its XDP program ran).
    pub(crate) arrived: u64,
    /// Frames received into the server's sockets.
    pub(crate) rx: u64,
}

/// Sums the samples of Prometheus metric `name` in `text`.
pub(crate) fn prom_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub(crate) fn scrape(ns: &NetNs, addr: SocketAddr) -> Result<String> {
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

pub(crate) fn udp_in_datagrams(ns: &NetNs) -> Result<u64> {
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

pub(crate) fn flood_counts(
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

pub(crate) fn flood_frames(c: &Ctx<'_>, r: &Running, port: u16) -> Vec<Vec<u8>> {
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
pub(crate) fn flood_programs(
    c: &Ctx<'_>,
    r: &Running,
) -> Result<(Option<BenchXdp>, Option<BenchXdp>)> {
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

pub(crate) fn flood_rep(
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

pub(crate) type FloodProgs = (Option<BenchXdp>, Option<BenchXdp>);

/// Warm-up before the repetitions of `w` against `r`: neighbours (the stack under test
/// learns the load side's MAC), caches, connection set-up paths. Loads the flood's XDP
/// programs, which stay attached until the returned value drops.
pub(crate) fn warm_up(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    label: &str,
) -> Result<Option<FloodProgs>> {
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
pub(crate) fn one_rep(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    progs: Option<&FloodProgs>,
    secs: f64,
    label: &str,
) -> Result<(Rep, f64)> {
    let c0 = r.cpu_seconds();
    let busy0 = server_cpu_busy();
    let roles0 = r.port_cpu();
    let mut rep = match progs {
        Some(p) => flood_rep(c, r, w, p, secs),
        None => closed_loop(c, r, w, secs),
    }
    .with_context(|| label.to_owned())?;
    if rep.ops > 0 {
        let per_op = |s: f64| s * 1e6 / rep.ops as f64;
        rep.extra
            .push(("cpu0_us_per_op", per_op(server_cpu_busy() - busy0)));
        if let (Some(a), Some(b)) = (roles0, r.port_cpu()) {
            rep.extra
                .push(("switch_us_per_op", per_op(b.switch - a.switch)));
            rep.extra.push(("plug_us_per_op", per_op(b.plug - a.plug)));
            rep.extra.push(("app_us_per_op", per_op(b.app - a.app)));
        }
    }
    Ok((rep, r.cpu_seconds() - c0))
}
