//! Watches the served interface through rtnetlink notifications: administrative down/up,
//! carrier loss and return, MTU changes and removal are noticed and reported, on stdout
//! (`link IF: …` lines) and in the log. What the server does about them beyond reporting
//! belongs to the hardening work (DESIGN.md, "Known issues").

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::{Context as _, Result};
use ioth_dataplane::sys::{
    netlink::{Link, LinkEvent, LinkEvents, Rtnetlink},
    wait_readable,
};

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

/// Starts watching `iface` (in this thread's network namespace) until `stop` is set.
pub fn spawn(iface: &str, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    // Subscribe first, then read the state: no change can fall between the two.
    let mut events = LinkEvents::subscribe().context("subscribing to link events")?;
    let mut last = Rtnetlink::open()
        .and_then(|mut nl| nl.link(iface))
        .context("reading the served interface")?
        .with_context(|| format!("no network interface named {iface:?}"))?;
    let iface = iface.to_owned();
    thread::Builder::new()
        .name("ioth-linkwatch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
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
                            last = now;
                        }
                        LinkEvent::Removed { index, .. } if index == last.index => {
                            log::warn!("link {iface}: removed");
                            say!("link {iface}: removed");
                        }
                        _ => {}
                    }
                }
            }
        })
        .context("starting the link watch")
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
