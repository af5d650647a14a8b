//! `ioth demo`: the classifier on a private veth pair, driven by real kernel peers.
//!
//! Makes two fresh namespaces joined by a veth pair with two queues, attaches the classifier
//! on the ioth side, registers four endpoints (one per would-be thread: own MAC, IPv4, IPv6)
//! each with an AF_XDP socket per queue, then from the peer namespace pings the host (kernel
//! traffic, passed) and sends ARP/NS and UDP to each endpoint (redirected). Prints what every
//! endpoint's sockets received and the verdict counters, and removes everything.
//!
//! With `--iface IF` it attaches to a real interface with no endpoints and shows the verdict
//! counters once a second (everything passes to the kernel: nothing is taken from the host).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    Classifier, EndpointAddrs, LoadOptions, ModeRequest,
    classifier::format_mac,
    netns::{VethPair, addrs},
    xsk::{QueueUmem, XskConfig},
};

/// Options of `ioth demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Watch this interface instead of making a private veth pair.
    #[arg(long)]
    pub iface: Option<String>,
    /// Seconds to watch (with --iface).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
}

const ENDPOINTS: u8 = 4;
const QUEUES: u32 = 2;
const DATAGRAMS: usize = 20;

pub fn run(args: &DemoArgs) -> Result<()> {
    match &args.iface {
        Some(iface) => watch(iface, args.seconds),
        None => private_pair(),
    }
}

fn watch(iface: &str, seconds: u64) -> Result<()> {
    let mut c = Classifier::load(load_options()).context("loading the classifier")?;
    let mode = c.attach(iface, ModeRequest::Auto)?;
    println!(
        "ioth: classifier attached to {iface} in {mode} mode, no endpoints: every frame passes"
    );
    println!(
        "{:>4}  {:>10} {:>10} {:>8} {:>8}",
        "t", "pass", "redirect", "drop", "aborted"
    );
    for t in 1..=seconds {
        thread::sleep(Duration::from_secs(1));
        let v = c.counters()?;
        println!(
            "{t:>3}s  {:>10} {:>10} {:>8} {:>8}",
            v.pass, v.redirect, v.drop, v.aborted
        );
    }
    c.detach()?;
    println!("ioth: detached from {iface}");
    Ok(())
}

/// `IOTH_EBPF_LOG=1` turns on the classifier's aya-log output (silent otherwise).
fn load_options() -> LoadOptions {
    LoadOptions {
        trace: false,
        log: std::env::var_os("IOTH_EBPF_LOG").is_some_and(|v| v != "0"),
    }
}

fn endpoint_addrs(i: u8) -> EndpointAddrs {
    let v4 = addrs::FIRST_ENDPOINT_V4.octets();
    let v6 = addrs::FIRST_ENDPOINT_V6.segments();
    EndpointAddrs {
        mac: Some([0x02, 0x49, 0x4f, 0x54, 0x48, i]),
        ipv4: vec![Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3] + i)],
        ipv6: vec![Ipv6Addr::new(
            v6[0],
            v6[1],
            v6[2],
            v6[3],
            v6[4],
            v6[5],
            v6[6],
            v6[7] + u16::from(i),
        )],
    }
}

fn peer(pair: &VethPair, program: &str, args: &[&str]) -> bool {
    pair.peer
        .command(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn private_pair() -> Result<()> {
    let started = Instant::now();
    let pair = VethPair::new("demo", QUEUES).context("making the veth pair")?;
    println!(
        "ioth demo: namespaces {} (ioth, {}) and {} (peer, {}), veth with {QUEUES} queues",
        pair.host.name(),
        pair.host_if,
        pair.peer.name(),
        pair.peer_if
    );
    let _inside = pair.host.enter()?;
    let mut c = Classifier::load(load_options()).context("loading the classifier")?;
    let mode = c.attach(&pair.host_if, ModeRequest::Auto)?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut endpoints = Vec::new();
    let mut workers = Vec::new();
    let umems: Vec<_> = (0..QUEUES)
        .map(|q| QueueUmem::new(&pair.host_if, q, XskConfig::default()))
        .collect::<Result<_, _>>()?;
    for i in 0..ENDPOINTS {
        let a = endpoint_addrs(i);
        let id = c.add_endpoint(&a)?;
        let received = Arc::new(AtomicU64::new(0));
        for umem in &umems {
            let mut sock = umem.socket()?;
            c.set_socket(umem.queue(), id.0, sock.as_raw_fd())?;
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            workers.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match sock.recv(50, |_| {}) {
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("ioth demo: socket error: {e}");
                            break;
                        }
                    }
                }
            }));
        }
        endpoints.push((id, a, received));
    }
    let bind = umems[0].mode().map(|m| m.to_string()).unwrap_or_default();
    println!(
        "ioth demo: classifier attached in {mode} mode, AF_XDP sockets in {bind} mode, \
         {ENDPOINTS} endpoints x {QUEUES} queues"
    );

    // Host traffic: must keep working.
    let host_ping = peer(
        &pair,
        "ping",
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &addrs::HOST_V4.to_string(),
        ],
    );
    // Endpoint traffic: ARP/NS (nobody answers yet: the stacks come with the data path),
    // then UDP datagrams by static neighbour entries, sent by socat from the peer.
    for (_, a, _) in &endpoints {
        let v4 = a.ipv4[0].to_string();
        let v6 = a.ipv6[0].to_string();
        let mac = format_mac(a.mac.expect("demo endpoints have a MAC"));
        peer(&pair, "ping", &["-c", "1", "-W", "1", &v4]);
        for ip in [&v4, &v6] {
            pair.peer.ip(&[
                "neigh",
                "replace",
                ip,
                "lladdr",
                &mac,
                "dev",
                &pair.peer_if,
                "nud",
                "permanent",
            ])?;
        }
        for n in 0..DATAGRAMS {
            let target = if n % 2 == 0 {
                format!("UDP4-SENDTO:{v4}:7")
            } else {
                format!("UDP6-SENDTO:[{v6}]:7")
            };
            let ok = pair
                .peer
                .command("socat")
                .args(["-u", &format!("SYSTEM:echo ioth {n}"), &target])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                bail!("socat could not send to {target}");
            }
        }
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }

    println!();
    println!(
        "{:<9} {:<17} {:<12} {:<16} {:>9} {:>9} {:>9}",
        "endpoint", "MAC", "IPv4", "IPv6", "frames", "xdp pkts", "xdp bytes"
    );
    for (id, a, received) in &endpoints {
        let s = c.endpoint_stats(id.0)?;
        println!(
            "{:<9} {:<17} {:<12} {:<16} {:>9} {:>9} {:>9}",
            id.0,
            format_mac(a.mac.unwrap_or_default()),
            a.ipv4[0],
            a.ipv6[0],
            received.load(Ordering::Relaxed),
            s.rx_packets,
            s.rx_bytes
        );
    }
    let v = c.counters()?;
    println!();
    println!(
        "verdicts: redirect {}  pass {}  drop {}  aborted {}",
        v.redirect, v.pass, v.drop, v.aborted
    );
    println!(
        "host traffic (ping {} from the peer): {}",
        addrs::HOST_V4,
        if host_ping { "ok" } else { "FAILED" }
    );
    let leaked: Vec<_> = umems
        .iter()
        .filter(|u| u.frames().total() != u.frame_count())
        .collect();
    drop(c);
    let attached = Command::new("ip")
        .args(["-n", pair.host.name(), "link", "show", &pair.host_if])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("xdp"))
        .unwrap_or(true);
    println!(
        "teardown: program detached: {}, UMEM frames accounted: {}, done in {:.1?}",
        if attached { "NO" } else { "yes" },
        if leaked.is_empty() { "yes" } else { "NO" },
        started.elapsed()
    );
    let delivered: u64 = endpoints
        .iter()
        .map(|(_, _, r)| r.load(Ordering::Relaxed))
        .sum();
    if !host_ping
        || attached
        || !leaked.is_empty()
        || delivered < u64::from(ENDPOINTS) * DATAGRAMS as u64
    {
        bail!("the demo did not behave as expected (see above)");
    }
    Ok(())
}
