//! The operating-system glue every other module leans on: process liveness, waiting on file
//! descriptors, an interface's rx queue count.
//!
//! Small free functions over libc and procfs. They know nothing of frames, stacks or the
//! classifier; everything above them may call them, they call nothing above.
#![allow(unsafe_code)]

use std::{io, os::fd::RawFd, process::Command};

/// Whether process `pid` is alive: it exists and is neither a zombie nor dead (a killed
/// process whose parent has not reaped it yet still has a `/proc` entry). The one rule for
/// every "is the owner still there" question: reaping, `ioth endpoints`, capture sockets,
/// stale namespaces.
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name (which may itself hold ')').
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// Most fds [`wait_readable`] waits on at once (one socket per rx queue of a stack).
pub const MAX_WAIT_FDS: usize = ioth_common::MAX_QUEUES as usize;

/// Waits until one of `fds` (at most [`MAX_WAIT_FDS`]) is readable or `timeout_ms` passes
/// (0: just look; negative: no limit). Returns whether one is readable; an interrupted wait
/// returns `false`. Allocation-free: it runs once per loop iteration of every stack.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<bool> {
    let n = fds.len().min(MAX_WAIT_FDS);
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_WAIT_FDS];
    for (p, fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = *fd;
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds[..n]` is a valid, initialised array of pollfd that outlives the call;
    // poll(2) only writes their `revents`. The fds belong to objects the caller holds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms.max(-1)) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Errors of reading an interface's queues.
#[derive(Debug, thiserror::Error)]
#[error("reading the rx queues of {iface}: {why}")]
pub struct QueuesError {
    /// Interface.
    pub iface: String,
    /// Why.
    pub why: String,
}

/// Number of rx queues of `iface` in use, as the kernel reports it in the calling thread's
/// network namespace: the current channel count (a veth, for one, can have more queues than
/// it uses), else the device's `numrxqueues`.
pub fn rx_queues(iface: &str) -> Result<u32, QueuesError> {
    let err = |why: String| QueuesError {
        iface: iface.to_owned(),
        why,
    };
    // `ip` and `ethtool` run in the calling thread's network namespace (sysfs may show
    // another one).
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .map_err(|e| err(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let mut max = 1;
    while let Some(w) = words.next() {
        if w == "numrxqueues" {
            max = words
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| err("unreadable numrxqueues".into()))?;
            break;
        }
    }
    let current = Command::new("ethtool")
        .args(["-l", iface])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| current_rx_channels(&String::from_utf8_lossy(&o.stdout)));
    Ok(current.map_or(max, |c| c.clamp(1, max)))
}

/// Rx queues in use from `ethtool -l` output: current RX plus Combined channels.
fn current_rx_channels(text: &str) -> Option<u32> {
    let current = text.split("Current hardware settings:").nth(1)?;
    let field = |name: &str| {
        current
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    Some(field("RX:") + field("Combined:")).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_channels_come_from_the_second_block_of_ethtool_l() {
        let veth = "Channel parameters for v:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";
        assert_eq!(current_rx_channels(veth), Some(1));
        let nic = "Pre-set maximums:\nRX:\t\tn/a\nCombined:\t8\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nCombined:\t4\n";
        assert_eq!(current_rx_channels(nic), Some(4));
        assert_eq!(
            current_rx_channels("netlink error: Operation not supported"),
            None
        );
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_or_pid_0_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        // Not waited for: once it exits it is a zombie with a /proc entry.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!process_alive(pid));
        drop(child);
    }
}
