//! `ioth-bench`: ioth's benchmark programs. Never a test: numbers are measured and reported,
//! not asserted.
//!
//! `classifier`: the XDP classifier's cost per frame, measured by the kernel itself
//! (BPF_PROG_TEST_RUN with `repeat`), for each kind of frame in the decision table and for 1,
//! 100 and 10,000 registered endpoints. This is the in-kernel decision cost only: the
//! redirect into a socket happens after the program returns and is not included.
#![deny(unsafe_code)]

mod compare;
mod endpoints;
mod fairness;
mod frames;
mod load;
mod machine;
mod plot;
mod raw;
mod report;
mod soak;
mod stack;
mod sys;
mod tap;
mod xdp;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use ioth_common::{fixtures::*, wire::*};
use ioth_dataplane::{Classifier, EndpointAddrs, LoadOptions};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "ioth-bench", about = "ioth benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The classifier's cost per frame, by frame kind and endpoint count.
    Classifier(ClassifierArgs),
    /// ioth side by side with the kernel stack: UDP echo and TCP request/response.
    Compare(compare::CompareArgs),
    /// Cost of a packet through a stack as its socket count grows (in-memory link).
    Stack(stack::StackArgs),
    /// A long run of mixed traffic and SIGKILL/restart cycles; nothing may grow.
    Soak(soak::SoakArgs),
    /// One endpoint flooded, its neighbour on the same rx queue measured (TCP RR).
    Fairness(fairness::FairnessArgs),
    /// The kernel reference server (started by `compare` in the server namespace).
    #[command(hide = true)]
    KernelServer(KernelServerArgs),
    /// The raw AF_XDP echo ceiling (started by `compare` in the server namespace).
    #[command(hide = true)]
    RawEcho(RawEchoArgs),
    /// smoltcp over TAP devices (started by `compare` in the server namespace).
    #[command(hide = true)]
    TapEcho(TapEchoArgs),
}

#[derive(Debug, clap::Args)]
struct RawEchoArgs {
    /// Interface to attach the classifier to.
    #[arg(long)]
    iface: String,
    /// Addresses, one thread each.
    #[arg(long = "ip", required = true)]
    ips: Vec<Ipv4Addr>,
    /// Spin instead of sleeping in poll(2) when idle.
    #[arg(long)]
    busy_poll: bool,
}

#[derive(Debug, clap::Args)]
struct TapEchoArgs {
    /// Threads, each with its own TAP device and stack.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, clap::Args)]
struct KernelServerArgs {
    /// Addresses to serve on (one thread each), or the one address with --reuseport.
    #[arg(long = "ip", required = true)]
    ips: Vec<std::net::IpAddr>,
    /// Threads (with --reuseport).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Share one address between the threads with SO_REUSEPORT.
    #[arg(long)]
    reuseport: bool,
    /// Port.
    #[arg(long, default_value_t = 7)]
    port: u16,
}

#[derive(Debug, clap::Args)]
struct ClassifierArgs {
    /// A few repetitions of a few runs: checks the harness works, numbers are rough.
    #[arg(long)]
    quick: bool,
    /// Repetitions per measurement (median and spread are over these).
    #[arg(long, default_value_t = 7)]
    reps: u32,
    /// Program runs per repetition.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u32,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/classifier.json")]
    json: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    frame: &'static str,
    endpoints: u32,
    ns_per_frame_median: f64,
    ns_per_frame_min: f64,
    ns_per_frame_max: f64,
    reps: u32,
    runs_per_rep: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    machine: machine::Machine,
    rows: Vec<Row>,
}

/// Endpoint `i` of the filler population (never the measured target).
fn filler(i: u32) -> EndpointAddrs {
    let b = i.to_be_bytes();
    EndpointAddrs {
        mac: Some([0x02, 0x42, b[0], b[1], b[2], b[3]]),
        ipv4: vec![Ipv4Addr::new(10, 200 + b[1], b[2], b[3])],
        ipv6: vec![Ipv6Addr::new(
            0xfd00,
            0x42,
            0,
            0,
            0,
            0,
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        )],
        thread: i,
        ..Default::default()
    }
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let udp4 = |dst| ipv4(PEER_IPV4, dst, 17, &udp(40000, 7, &[0u8; 22]));
    let (sn, sn_mac) = solicited_node(A_IPV6);
    vec![
        (
            "unicast to endpoint MAC",
            eth(A_MAC, PEER_MAC, ETH_P_IPV4, &udp4(A_IPV4)),
        ),
        (
            "IPv4 to endpoint IP (host MAC)",
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp4(A_IPV4)),
        ),
        (
            "IPv4 to the host (pass)",
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp4(HOST_IPV4)),
        ),
        (
            "broadcast ARP for endpoint",
            eth(
                [0xff; 6],
                PEER_MAC,
                ETH_P_ARP,
                &arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4),
            ),
        ),
        (
            "IPv6 NS for endpoint",
            eth(
                sn_mac,
                PEER_MAC,
                ETH_P_IPV6,
                &ipv6(PEER_IPV6, sn, 58, &ns(A_IPV6, 0)),
            ),
        ),
    ]
}

fn classifier_bench(a: &ClassifierArgs) -> Result<()> {
    let (reps, runs) = if a.quick {
        (2, 10_000)
    } else {
        (a.reps.max(1), a.runs.max(1))
    };
    let mut rows = Vec::new();
    for endpoints in [1u32, 100, 10_000] {
        let mut c = Classifier::load(LoadOptions::default()).context("loading the classifier")?;
        c.add_endpoint(&EndpointAddrs {
            mac: Some(A_MAC),
            ipv4: vec![A_IPV4.into()],
            ipv6: vec![A_IPV6.into()],
            thread: 0,
            ..Default::default()
        })?;
        for i in 1..endpoints {
            c.add_endpoint(&filler(i))?;
        }
        for (name, frame) in frames() {
            // Warm-up, then the measured repetitions.
            c.time_per_frame(&frame, runs.min(10_000))?;
            let mut samples: Vec<f64> = (0..reps)
                .map(|_| c.time_per_frame(&frame, runs).map(as_ns))
                .collect::<Result<_, _>>()?;
            samples.sort_by(f64::total_cmp);
            let row = Row {
                frame: name,
                endpoints,
                ns_per_frame_median: samples[samples.len() / 2],
                ns_per_frame_min: samples[0],
                ns_per_frame_max: samples[samples.len() - 1],
                reps,
                runs_per_rep: runs,
            };
            eprintln!(
                "classifier: {:<32} {:>6} endpoints: {:>6.1} ns/frame (min {:.1}, max {:.1})",
                row.frame,
                endpoints,
                row.ns_per_frame_median,
                row.ns_per_frame_min,
                row.ns_per_frame_max
            );
            rows.push(row);
        }
    }
    println!();
    println!("| frame | 1 endpoint | 100 endpoints | 10,000 endpoints | 10,000 vs 1 |");
    println!("|---|---|---|---|---|");
    for (name, _) in frames() {
        let at = |n: u32| {
            rows.iter()
                .find(|r| r.frame == name && r.endpoints == n)
                .map_or(f64::NAN, |r| r.ns_per_frame_median)
        };
        println!(
            "| {name} | {:.1} ns | {:.1} ns | {:.1} ns | {:.2}x |",
            at(1),
            at(100),
            at(10_000),
            at(10_000) / at(1)
        );
    }
    let report = Report {
        benchmark: "classifier cost per frame (BPF_PROG_TEST_RUN, in-kernel average)",
        machine: machine::Machine::now(),
        rows,
    };
    if let Some(dir) = a.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", a.json.display()))?;
    eprintln!("classifier: results in {}", a.json.display());
    Ok(())
}

fn as_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn main() {
    let cli = Cli::parse();
    let r = match &cli.command {
        Cmd::Classifier(a) => classifier_bench(a),
        Cmd::Compare(a) => compare::run(a),
        Cmd::Stack(a) => stack::run(a),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Fairness(a) => fairness::run(a),
        Cmd::KernelServer(a) => load::kernel_server(&a.ips, a.threads, a.port, a.reuseport),
        Cmd::RawEcho(a) => raw::raw_echo(&a.iface, &a.ips, a.busy_poll),
        Cmd::TapEcho(a) => tap::tap_echo(a.threads),
    };
    if let Err(e) = r {
        eprintln!("ioth-bench: error: {e:#}");
        std::process::exit(1);
    }
}
