//! `ioth-bench raw-echo`: the raw AF_XDP ceiling. The same classifier and AF_XDP rings as
//! ioth (one UMEM per rx queue, one socket per thread and queue), but no stack: each UDP
//! frame is turned around (MACs, IPs, ports swapped) and sent straight back. Anything else
//! is dropped; the harness gives the load side a static neighbour entry instead of ARP.
//!
//! Thread i owns `--ip` i. Prints `ready raw-echo ...`; on each `stats` line on stdin it
//! prints `stats rx=N tx=N` (frames received from / queued on the rings, all threads).

use std::{
    io::BufRead as _,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    Classifier, EndpointAddrs, LoadOptions, ModeRequest,
    sys::wait_readable,
    xsk::{QueueUmem, RxPart, TxPart, XskConfig, XskSocket},
};

#[derive(Debug, Default)]
struct Totals {
    rx: AtomicU64,
    tx: AtomicU64,
}

/// Runs the raw echo on `iface` until killed.
pub fn raw_echo(iface: &str, ips: &[Ipv4Addr], busy_poll: bool) -> Result<()> {
    if ips.is_empty() {
        bail!("raw-echo: give at least one --ip");
    }
    let mut classifier =
        Classifier::load(LoadOptions::default()).context("loading the classifier")?;
    let mode = classifier
        .attach(iface, ModeRequest::Auto)
        .with_context(|| format!("attaching the classifier to {iface}"))?;
    let queues = ioth_dataplane::sys::rx_queues(iface)?;
    let umems = (0..queues)
        .map(|q| QueueUmem::new(iface, q, XskConfig::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let totals = Arc::new(Totals::default());
    let mut workers = Vec::new();
    let mut bind_mode = None;
    for (i, ip) in ips.iter().enumerate() {
        let id = classifier.add_endpoint(&EndpointAddrs {
            mac: None,
            ipv4: vec![*ip],
            ipv6: Vec::new(),
            thread: i as u32,
            ..Default::default()
        })?;
        let mut parts = Vec::new();
        for u in &umems {
            let s = XskSocket::bind(u)?;
            classifier.set_socket(u.queue(), id.0, std::os::fd::AsRawFd::as_raw_fd(&s))?;
            bind_mode = u.mode();
            parts.push(s.into_parts());
        }
        let totals = Arc::clone(&totals);
        workers.push(std::thread::spawn(move || {
            if let Err(e) = echo_loop(parts, &totals, busy_poll) {
                eprintln!("raw-echo thread {i}: {e:#}");
            }
        }));
    }
    println!(
        "ready raw-echo threads={} queues={queues} xdp={mode} xsk={}",
        ips.len(),
        bind_mode.map_or("-".to_owned(), |m| m.to_string())
    );
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            println!(
                "stats rx={} tx={}",
                totals.rx.load(Ordering::Relaxed),
                totals.tx.load(Ordering::Relaxed)
            );
        }
    }
    // stdin closed: the harness went away; keep serving until killed.
    for w in workers {
        let _ = w.join();
    }
    drop(classifier);
    Ok(())
}

fn echo_loop(mut parts: Vec<(RxPart, TxPart)>, totals: &Totals, busy_poll: bool) -> Result<()> {
    let fds: Vec<_> = parts.iter().map(|(rx, _)| rx.fd()).collect();
    loop {
        let (mut rx_n, mut tx_n) = (0u64, 0u64);
        for (rx, tx) in &mut parts {
            // The same receive budget per round as a stack's poll, so that under a flood the
            // echo transmits between batches of reception, as ioth does.
            let mut budget = ioth_dataplane::stack::RX_BUDGET;
            while budget > 0
                && let Some(mut frame) = rx.next_frame()
            {
                budget -= 1;
                rx_n += 1;
                let f = frame.bytes_mut();
                if !crate::frames::turn_around_udp4(f) {
                    continue;
                }
                if let Some(mut slot) = tx.slot(f.len()) {
                    slot.bytes_mut().copy_from_slice(f);
                    slot.send();
                    tx_n += 1;
                }
            }
            tx.flush()?;
            rx.sync()?;
        }
        if rx_n > 0 {
            totals.rx.fetch_add(rx_n, Ordering::Relaxed);
            totals.tx.fetch_add(tx_n, Ordering::Relaxed);
        } else if !busy_poll {
            wait_readable(&fds, 10)?;
        }
    }
}
