//! `ioth-bench fairness`: one endpoint flooded, its neighbour on the same rx queue measured
//! (issue 12 §2). A one-queue veth, so every frame shares queue 0's UMEM; `ioth serve` with N
//! threads (2, and 64 real stacks); thread 0 gets a UDP flood to its discard port from the
//! live-frame generator, thread 1 carries TCP request/response (64 B, 1 and 16 connections).
//! Each repetition measures the neighbour without, then with the flood; the ratio of each
//! pair is the result (goal: at least 0.8). The flood runs as `SCHED_IDLE` on the load CPU,
//! so it only takes what the request/response client leaves: the client is not slowed by
//! the generator, only the server side by the flood.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use ioth_dataplane::netns::VethPair;
use serde::Serialize;

use crate::{compare::server::Server, report::Stat};

#[derive(Debug, clap::Args)]
pub struct FairnessArgs {
    /// Repetitions (pairs of unflooded and flooded measurements).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Thread counts of the server.
    #[arg(long, value_delimiter = ',', default_value = "2,64")]
    pub threads: Vec<u8>,
    /// The `ioth` binary.
    #[arg(long, default_value = "target/release/ioth")]
    pub ioth: String,
    /// JSON results.
    #[arg(long, default_value = "bench/results/fairness.json")]
    pub json: PathBuf,
    /// Markdown table.
    #[arg(long, default_value = "bench/results/fairness.md")]
    pub markdown: PathBuf,
}

const BASE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);

#[derive(Debug, Serialize)]
struct Row {
    threads: u8,
    conns: usize,
    /// Neighbour transactions/s without the flood.
    alone: Stat,
    /// With the flood.
    flooded: Stat,
    /// Per-pair ratios flooded / alone.
    ratio: Stat,
    p99_alone_us: Stat,
    p99_flooded_us: Stat,
    /// Frames the generator sent per second during the flooded measurements.
    flood_pps: Stat,
}

fn addr(i: u8) -> Ipv4Addr {
    let o = BASE.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + i)
}

/// `ioth serve` with echo and discard on `threads` threads, pinned to the server CPU.
fn serve(pair: &VethPair, ioth: &str, threads: u8) -> Result<Server> {
    let args: Vec<String> = [
        "serve",
        "--iface",
        &pair.host_if,
        "--threads",
        &threads.to_string(),
        "--ipv4",
        &format!("{BASE}/24"),
        "--app",
        "echo",
        "--app",
        "discard",
        "--max-sockets",
        "256",
    ]
    .map(str::to_owned)
    .to_vec();
    Server::start(&pair.host, ioth, &args, "ready threads=")
}

/// One neighbour measurement: (transactions/s, p99 µs, flood frames/s).
fn measure(
    pair: &VethPair,
    conns: usize,
    secs: f64,
    flood: Option<&[Vec<u8>]>,
) -> Result<(f64, f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood.map(|frames| {
        let frames = frames.to_vec();
        let iface = pair.peer_if.clone();
        let stop = Arc::clone(&stop);
        pair.peer.spawn(move || -> Result<(u64, f64)> {
            crate::sys::pin_to_cpu(1)?;
            // Only what the request/response client leaves.
            crate::sys::idle_priority()?;
            let start = Instant::now();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                sent += crate::xdp::flood(&iface, &frames, Duration::from_millis(100))?.sent;
            }
            Ok((sent, start.elapsed().as_secs_f64()))
        })
    });
    if flooder.is_some() {
        std::thread::sleep(Duration::from_millis(300));
    }
    let target = vec![SocketAddr::from((addr(1), 7))];
    let d = Duration::from_secs_f64(secs);
    let res = pair
        .peer
        .spawn(move || -> Result<crate::load::LoadResult> {
            crate::sys::pin_to_cpu(1)?;
            crate::load::tcp_rr(&target, conns, 64, d)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    stop.store(true, Ordering::Relaxed);
    let flood_pps = match flooder {
        Some(h) => {
            let (sent, s) = h.join().map_err(|_| anyhow::anyhow!("flood panicked"))??;
            sent as f64 / s
        }
        None => 0.0,
    };
    Ok((
        res.ops as f64 / res.secs,
        res.latency.value_at_quantile(0.99) as f64 / 1e3,
        flood_pps,
    ))
}

pub fn run(args: &FairnessArgs) -> Result<()> {
    let mut rows = Vec::new();
    for &threads in &args.threads {
        if threads < 2 {
            bail!("--threads: at least 2 (a flooded thread and its neighbour)");
        }
        let pair = VethPair::new("fair", 1)?;
        let server = serve(&pair, &args.ioth, threads)?;
        let frames =
            crate::frames::discard_flood(server.ready_mac(addr(0))?, pair.peer_mac, addr(0));
        for conns in [1usize, 16] {
            // Warm-up: neighbours resolved, connections' paths hot.
            measure(&pair, conns, 0.3, None)?;
            let (mut alone, mut flooded, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            let (mut p99a, mut p99f, mut pps) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.reps {
                let (a, pa, _) = measure(&pair, conns, args.secs, None)?;
                let (f, pf, fp) = measure(&pair, conns, args.secs, Some(&frames))?;
                alone.push(a);
                flooded.push(f);
                ratio.push(if a > 0.0 { f / a } else { 0.0 });
                p99a.push(pa);
                p99f.push(pf);
                pps.push(fp);
            }
            let row = Row {
                threads,
                conns,
                alone: Stat::of(alone),
                flooded: Stat::of(flooded),
                ratio: Stat::of(ratio),
                p99_alone_us: Stat::of(p99a),
                p99_flooded_us: Stat::of(p99f),
                flood_pps: Stat::of(pps),
            };
            eprintln!(
                "fairness: {threads} threads, {conns} conn(s): neighbour {:.0} alone, {:.0} flooded ({:.2}x [{:.2}-{:.2}]), p99 {:.0} / {:.0} us, flood {:.0} pps",
                row.alone.median,
                row.flooded.median,
                row.ratio.median,
                row.ratio.min,
                row.ratio.max,
                row.p99_alone_us.median,
                row.p99_flooded_us.median,
                row.flood_pps.median
            );
            rows.push(row);
        }
    }
    if let Some(d) = args.json.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&rows)?)?;
    let mut md = String::from(
        "| server threads | conns | neighbour alone (tps) | flooded (tps) | flooded / alone (goal ≥ 0.8) | p99 µs alone / flooded | flood (pps offered) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2}x [{:.2}–{:.2}] {} | {:.0} / {:.0} | {:.0} |\n",
            r.threads,
            r.conns,
            r.alone.median,
            r.flooded.median,
            r.ratio.median,
            r.ratio.min,
            r.ratio.max,
            if r.ratio.min >= 0.8 {
                "met"
            } else {
                "**not met**"
            },
            r.p99_alone_us.median,
            r.p99_flooded_us.median,
            r.flood_pps.median
        ));
    }
    std::fs::write(&args.markdown, md)?;
    eprintln!(
        "fairness: results in {} and {}",
        args.json.display(),
        args.markdown.display()
    );
    Ok(())
}
