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

pub mod measure;
pub mod server;
pub mod systems;
pub mod workloads;

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::VethPair;

use crate::{
    machine::Machine,
    report::{self, Report},
};
use measure::*;
use server::*;
use systems::*;

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
