//! `ioth capture ENDPOINT`: the frames one endpoint receives and sends, as pcap or pcapng.
//!
//! The endpoint is looked up in the classifier's maps (by IPv4, IPv6 or MAC address, or
//! `slot:N`); its owning process streams copies of the frames over its capture socket
//! (`ioth_dataplane::capture`). Nothing is copied while nobody captures.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    capture::{CaptureFile, CaptureStream, Direction, FileFormat, Record},
    classifier::view::{ClassifierView, EndpointView, attached_interfaces},
};

/// Options of `ioth capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// The endpoint: one of its IPv4 or IPv6 addresses, its MAC, or `slot:N`.
    pub endpoint: String,
    /// Only look on this interface (default: every interface with an ioth classifier).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// Write the pcap here instead of standard output.
    #[arg(short = 'w', long = "write")]
    pub file: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// File format: `pcap`, or `pcapng` (each frame's direction in its flags: received
    /// frames are inbound, sent ones outbound).
    #[arg(long, default_value = "pcap")]
    pub format: FileFormat,
}

/// Whether `e` is the endpoint `spec` names.
fn matches(e: &EndpointView, spec: &str) -> bool {
    if let Some(slot) = spec.strip_prefix("slot:") {
        return slot.parse() == Ok(e.slot);
    }
    if let Ok(ip) = spec.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(a) => e.ipv4.contains(&a),
            std::net::IpAddr::V6(a) => e.ipv6.contains(&a),
        };
    }
    spec.parse::<ioth_dataplane::wire::Mac>()
        .ok()
        .is_some_and(|m| e.mac == Some(m))
}

/// Finds the endpoint `spec` names: (interface, endpoint).
pub fn find_endpoint(iface: &Option<String>, spec: &str) -> Result<(String, EndpointView)> {
    let valid = spec.starts_with("slot:")
        || spec.parse::<std::net::IpAddr>().is_ok()
        || spec.parse::<ioth_dataplane::wire::Mac>().is_ok();
    if !valid {
        bail!("{spec:?} is not an endpoint: expected an IPv4/IPv6 address, a MAC or slot:N");
    }
    let ifaces = match iface {
        Some(i) => vec![i.clone()],
        None => attached_interfaces()?,
    };
    if ifaces.is_empty() {
        bail!("no interface has an ioth classifier attached");
    }
    for i in ifaces {
        let v = ClassifierView::open(&i).with_context(|| format!("inspecting {i}"))?;
        if let Some(e) = v.endpoints()?.into_iter().find(|e| matches(e, spec)) {
            return Ok((i, e));
        }
    }
    bail!("no endpoint {spec} (see `ioth endpoints`)")
}

pub fn run(args: &CaptureArgs) -> Result<()> {
    let (iface, e) = find_endpoint(&args.iface, &args.endpoint)?;
    if e.pid == 0 || !ioth_dataplane::sys::process_alive(e.pid) {
        bail!(
            "endpoint {} on {iface} has no live owner (pid {}); `ioth reap --iface {iface}` \
             removes it",
            args.endpoint,
            e.pid
        );
    }
    let mut stream = CaptureStream::connect(e.pid, &iface, e.slot)
        .with_context(|| format!("capturing endpoint {} on {iface}", args.endpoint))?;
    let out: Box<dyn Write> = match &args.file {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let name = format!("{iface} endpoint {}", e.slot);
    let mut pcap = CaptureFile::new(BufWriter::new(out), args.format, &name)
        .context("writing the capture file's header")?;
    pcap.flush()?;
    eprintln!(
        "capturing endpoint {} (slot {}, pid {}, thread {}) on {iface}",
        args.endpoint, e.slot, e.pid, e.thread
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let (mut frames, mut rx, mut tx, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let mut ended = false;
    while !stop.load(Ordering::Relaxed) && args.count.is_none_or(|c| frames < c) {
        // Wait with a timeout so a signal is noticed even on an idle endpoint.
        let ready = stream.has_buffered()
            || ioth_dataplane::sys::wait_readable(&[stream.as_raw_fd()], 200)
                .context("waiting for frames")?;
        if !ready {
            pcap.flush().ok();
            continue;
        }
        match stream.next_record()? {
            Some(Record::Frame { ns, dir, data }) => {
                match dir {
                    Direction::Rx => rx += 1,
                    Direction::Tx => tx += 1,
                }
                frames += 1;
                if let Err(e) = pcap.frame(ns, dir, &data) {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        break;
                    }
                    return Err(e).context("writing the pcap");
                }
            }
            Some(Record::Dropped(n)) => dropped = n,
            None => {
                ended = true;
                break;
            }
        }
    }
    match pcap.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(e).context("writing the pcap");
        }
        _ => {}
    }
    eprintln!(
        "{frames} frames captured ({rx} received, {tx} sent), {dropped} dropped by the server{}",
        if ended {
            "; the endpoint went away"
        } else {
            ""
        }
    );
    Ok(())
}
