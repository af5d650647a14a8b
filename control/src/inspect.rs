//! `ioth status` and `ioth endpoints`: read the classifier attached to an interface from any
//! process — while `ioth serve` runs, or not at all (then there is nothing attached).

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::classifier::view::{ClassifierView, attached_interfaces};

/// Options of `ioth status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this interface (default: every interface with an ioth classifier).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `ioth endpoints`.
#[derive(Debug, clap::Args)]
pub struct EndpointsArgs {
    /// Only this interface (default: every interface with an ioth classifier).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn interfaces(iface: &Option<String>) -> Result<Vec<String>> {
    Ok(match iface {
        Some(i) => vec![i.clone()],
        None => attached_interfaces()?,
    })
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub fn status(args: &StatusArgs) -> Result<()> {
    let mut rows = Vec::new();
    for iface in interfaces(&args.iface)? {
        let v = ClassifierView::open(&iface).with_context(|| format!("inspecting {iface}"))?;
        let counters = v.counters()?;
        let eps = v.endpoints()?;
        let endpoints = eps.len();
        // Published by each endpoint's owner; all sockets of an interface bind alike.
        let xsk = eps
            .iter()
            .find_map(|e| e.xsk)
            .map_or_else(|| "-".to_owned(), |m| m.to_string());
        rows.push(serde_json::json!({
            "iface": iface,
            "program_id": v.attachment().program_id,
            "mode": v.attachment().mode,
            "xsk": xsk,
            "queues": v.attachment().queues,
            "pinned": ioth_dataplane::classifier::pin::is_pinned(&iface),
            "endpoints": endpoints,
            "xdp_packets": {
                "redirect": counters.redirect,
                "pass": counters.pass,
                "drop": counters.drop,
                "aborted": counters.aborted,
            },
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no interface has an ioth classifier attached");
        return Ok(());
    }
    println!(
        "{:<16} {:>8} {:<7} {:<9} {:<6} {:>6} {:>9} {:>12} {:>12} {:>8} {:>8}",
        "IFACE",
        "PROG",
        "MODE",
        "XSK",
        "PINNED",
        "QUEUES",
        "ENDPOINTS",
        "REDIRECT",
        "PASS",
        "DROP",
        "ABORTED"
    );
    for r in rows {
        println!(
            "{:<16} {:>8} {:<7} {:<9} {:<6} {:>6} {:>9} {:>12} {:>12} {:>8} {:>8}",
            r["iface"].as_str().unwrap_or(""),
            n(&r["program_id"]),
            r["mode"].as_str().unwrap_or(""),
            r["xsk"].as_str().unwrap_or("-"),
            if r["pinned"] == true { "yes" } else { "no" },
            n(&r["queues"]),
            n(&r["endpoints"]),
            n(&r["xdp_packets"]["redirect"]),
            n(&r["xdp_packets"]["pass"]),
            n(&r["xdp_packets"]["drop"]),
            n(&r["xdp_packets"]["aborted"]),
        );
    }
    Ok(())
}

pub fn endpoints(args: &EndpointsArgs) -> Result<()> {
    let ifaces = interfaces(&args.iface)?;
    if args.iface.is_some() && ifaces.is_empty() {
        bail!("nothing attached");
    }
    let mut all = Vec::new();
    for iface in ifaces {
        let v = ClassifierView::open(&iface).with_context(|| format!("inspecting {iface}"))?;
        for e in v.endpoints()? {
            all.push((iface.clone(), e));
        }
    }
    if args.json {
        let list: Vec<_> = all
            .iter()
            .map(|(iface, e)| {
                let mut j = serde_json::to_value(e).unwrap_or_default();
                j["iface"] = serde_json::Value::String(iface.clone());
                j
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>4} {:<6} {:<17} {:<16} {:<24} {:>8} {:>8} {:>6} {:>10} {:>12} {:>8} {:>10} {:>12} {:>7}",
        "IFACE",
        "SLOT",
        "KIND",
        "MAC",
        "IPV4",
        "IPV6",
        "PID",
        "TID",
        "THREAD",
        "RX PKTS",
        "RX BYTES",
        "RX DROP",
        "TX PKTS",
        "TX BYTES",
        "RETRANS"
    );
    for (iface, e) in all {
        let join = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        println!(
            "{:<12} {:>4} {:<6} {:<17} {:<16} {:<24} {:>8} {:>8} {:>6} {:>10} {:>12} {:>8} {:>10} {:>12} {:>7}{}{}",
            iface,
            e.slot,
            e.kind.to_string(),
            match e.macs.len() {
                0 => "-".to_owned(),
                1 => e.macs[0].to_string(),
                n => format!("{} +{}", e.macs[0], n - 1),
            },
            join(e.ipv4.iter().map(|a| a.to_string()).collect()),
            join(e.ipv6.iter().map(|a| a.to_string()).collect()),
            e.pid,
            e.tid,
            e.thread,
            e.rx_packets,
            e.rx_bytes,
            e.rx_dropped,
            e.tx_packets,
            e.tx_bytes,
            e.tcp_retransmits,
            if e.owner_foreign {
                "  (owner in another pid namespace)"
            } else if e.owner_alive {
                ""
            } else {
                "  (owner gone)"
            },
            e.port.as_ref().map_or_else(String::new, |p| format!(
                "  {} port {}: {}{}",
                p.kind,
                p.port,
                p.description,
                p.pid.map_or_else(String::new, |x| format!(" (pid {x})"))
            ))
        );
    }
    Ok(())
}

/// Options of `ioth attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Interface.
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: String,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = crate::serve::Mode::Auto)]
    pub mode: crate::serve::Mode,
}

/// Options of `ioth detach` and `ioth reap`.
#[derive(Debug, clap::Args)]
pub struct IfaceArgs {
    /// Interface.
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: String,
}

pub fn attach(args: &AttachArgs) -> Result<()> {
    if nix::net::if_::if_nametoindex(args.iface.as_str()).is_err() {
        bail!("no network interface named {:?}", args.iface);
    }
    let mode = ioth_dataplane::classifier::pin::attach(&args.iface, args.mode.into())?;
    println!(
        "attached to {} in {mode} mode, pinned at {}",
        args.iface,
        ioth_dataplane::classifier::pin::dir(&args.iface).display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Interface.
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: String,
    /// Detach even though live processes own endpoints on it (their traffic then goes to
    /// the kernel).
    #[arg(long)]
    pub force: bool,
}

pub fn detach(args: &DetachArgs) -> Result<()> {
    if !args.force
        && let Ok(eps) = ioth_dataplane::classifier::ClassifierView::open(&args.iface)
            .and_then(|v| v.endpoints())
    {
        let mut live: Vec<u32> = eps
            .iter()
            .filter(|e| e.owner_alive)
            .map(|e| e.pid)
            .collect();
        live.sort_unstable();
        live.dedup();
        if !live.is_empty() {
            bail!(
                "{} endpoint(s) on {} belong to live processes (pid {}): detaching would cut \
                 them off; stop them first, or detach --force",
                eps.iter().filter(|e| e.owner_alive).count(),
                args.iface,
                live.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    ioth_dataplane::classifier::pin::detach(&args.iface)?;
    println!("detached from {}", args.iface);
    Ok(())
}

pub fn reap(args: &IfaceArgs) -> Result<()> {
    let mut c = ioth_dataplane::classifier::pin::open(&args.iface)?;
    let slots = c.reap_dead_owners()?;
    println!(
        "reaped {} endpoint(s) of dead owners on {}",
        slots.len(),
        args.iface
    );
    let foreign = ioth_dataplane::classifier::ClassifierView::open(&args.iface)
        .and_then(|v| v.endpoints())
        .map(|eps| eps.iter().filter(|e| e.owner_foreign).count())
        .unwrap_or(0);
    if foreign > 0 {
        println!(
            "left alone: {foreign} endpoint(s) owned in another pid namespace (reap from there)"
        );
    }
    Ok(())
}
