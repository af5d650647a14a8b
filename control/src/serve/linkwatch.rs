//! Watches the served interface through rtnetlink notifications (and its rx queue count
//! through the ethtool ioctl, once a second), reports every change on stdout (`link IF: …`
//! lines) and in the log, and reacts:
//!
//! - down/up, carrier lost/back: reported; serving goes on (the program and the AF_XDP
//!   sockets stay bound; frames flow again once the link is up);
//! - MTU below the stacks' MTU: reported with a warning (larger frames will not pass);
//! - more rx queues than the server has sockets for (`ethtool -L`): the frames of the new
//!   queues would be lost without a word, so the server stops and exits non-zero, saying why;
//! - the interface removed: the server stops and exits non-zero, saying why.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ioth_dataplane::sys::{
    netlink::{Link, LinkEvent, LinkEvents, Rtnetlink},
    rx_queues, wait_readable,
};

/// What the server was set up for, to judge changes against.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// Rx queues with sockets.
    pub queues: u32,
    /// The largest IP MTU of the stacks.
    pub mtu: usize,
}

/// Why the watch stopped the server (set before `stop`).
pub type Fatal = Arc<Mutex<Option<String>>>;

/// What changed between two states of a link, in words.
pub fn changes(iface: &str, before: &Link, now: &Link) -> Vec<String> {
    let mut out = Vec::new();
    if before.up != now.up {
        out.push(format!(
            "link {iface}: {}",
            if now.up { "up" } else { "down" }
        ));
    }
    if before.lower_up != now.lower_up {
        out.push(format!(
            "link {iface}: carrier {}",
            if now.lower_up { "back" } else { "lost" }
        ));
    }
    if before.mtu != now.mtu {
        out.push(format!("link {iface}: mtu {} -> {}", before.mtu, now.mtu));
    }
    out
}

/// Starts watching `iface` (in this thread's network namespace) until `stop` is set; the
/// returned [`Fatal`] says why, if the watch stopped the server.
pub fn spawn(
    iface: &str,
    stop: Arc<AtomicBool>,
    served: Served,
) -> Result<(JoinHandle<()>, Fatal)> {
    let fatal: Fatal = Arc::new(Mutex::new(None));
    let give_up = {
        let (fatal, stop) = (Arc::clone(&fatal), Arc::clone(&stop));
        move |why: String| {
            log::error!("{why}");
            say!("{why}");
            *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            stop.store(true, Ordering::Relaxed);
        }
    };
    // Subscribe first, then read the state: no change can fall between the two.
    let mut events = LinkEvents::subscribe().context("subscribing to link events")?;
    let mut last = Rtnetlink::open()
        .and_then(|mut nl| nl.link(iface))
        .context("reading the served interface")?
        .with_context(|| format!("no network interface named {iface:?}"))?;
    let iface = iface.to_owned();
    let mut queues_at = Instant::now();
    let handle = thread::Builder::new()
        .name("ioth-linkwatch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if queues_at.elapsed() >= Duration::from_secs(1) {
                    queues_at = Instant::now();
                    if let Ok(n) = rx_queues(&iface)
                        && n > served.queues
                    {
                        give_up(format!(
                            "link {iface}: {n} rx queues now, sockets on {}: frames on the \
                             others would be lost; stopping (restart to serve them)",
                            served.queues
                        ));
                        return;
                    }
                }
                match wait_readable(&[events.fd()], 200) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        log::warn!("link watch: {e}");
                        return;
                    }
                }
                let batch = match events.next_batch() {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("link watch: {e}");
                        continue;
                    }
                };
                for ev in batch {
                    match ev {
                        LinkEvent::Changed(now) if now.index == last.index => {
                            for line in changes(&iface, &last, &now) {
                                log::warn!("{line}");
                                say!("{line}");
                            }
                            if now.mtu != last.mtu && (now.mtu as usize) < served.mtu {
                                let line = format!(
                                    "link {iface}: warning: mtu {} is below the stacks' {}: \
                                     larger packets will not pass (restart with a smaller \
                                     --mtu to adapt)",
                                    now.mtu, served.mtu
                                );
                                log::warn!("{line}");
                                say!("{line}");
                            }
                            last = now;
                        }
                        LinkEvent::Removed { index, .. } if index == last.index => {
                            give_up(format!("link {iface}: removed; stopping"));
                            return;
                        }
                        _ => {}
                    }
                }
            }
        })
        .context("starting the link watch")?;
    Ok((handle, fatal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_one_line() {
        let before = Link {
            index: 3,
            name: "veth0".into(),
            up: true,
            lower_up: true,
            mtu: 1500,
            num_rx_queues: 1,
            mac: None,
            xdp: None,
        };
        assert!(changes("veth0", &before, &before).is_empty());
        let now = Link {
            up: false,
            lower_up: false,
            mtu: 1400,
            ..before.clone()
        };
        assert_eq!(
            changes("veth0", &before, &now),
            [
                "link veth0: down",
                "link veth0: carrier lost",
                "link veth0: mtu 1500 -> 1400"
            ]
        );
    }
}
