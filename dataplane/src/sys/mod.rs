//! The operating-system glue every other module leans on: process liveness, waiting on file
//! descriptors, and talking to the kernel about interfaces — rtnetlink ([`netlink`]), the
//! ethtool ioctl ([`ethtool`]), bpffs ([`mount`]). No process is spawned and no tool output
//! parsed.
//!
//! They know nothing of frames, stacks or the classifier; everything above them may call
//! them, they call nothing above.
#![allow(unsafe_code)]

pub mod ethtool;
pub mod mmsg;
pub mod mount;
pub mod netlink;
pub mod packet;
pub mod tap;

use std::{io, os::fd::RawFd};

/// Whether `name` can be a network interface's name, by the kernel's own rule
/// (`dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space. Names
/// become paths (pins, switch directories), so nothing else may get that far.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// The same as a `Result`, for command-line parsers: the name, or why it cannot be one.
pub fn parse_ifname(name: &str) -> Result<String, String> {
    if valid_ifname(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not an interface name (1-15 bytes, no '/', ':' or spaces, not . or ..)"
        ))
    }
}

/// The runtime directory: capture sockets, port descriptions, default switch directories.
pub const RUN_DIR: &str = "/run/ioth";

/// `iface` qualified by the caller's network namespace, `IF@ns<inode>`: a name for global
/// places (bpffs pins, `/run` directories) where interface names, which are per namespace,
/// would collide. The namespace is always named: telling "the initial one" by comparing with
/// pid 1's is wrong in a pid namespace (a container's pid 1 shares the container's network
/// namespace), which made two namespaces share one name.
pub fn netns_qualified(iface: &str) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let here = std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino());
    format!("{iface}@ns{here}")
}

/// Where a switch in process `pid` describes its ports for other processes.
pub fn ports_file(pid: u32) -> std::path::PathBuf {
    std::path::PathBuf::from(RUN_DIR).join(format!("{pid}.ports.json"))
}

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

/// Who owns something in shared state (a classifier slot): a pid alone is not an identity —
/// pids are reused, and mean nothing outside their pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Process id, in `pidns`.
    pub pid: u32,
    /// Start time, clock ticks after boot (0: not known).
    pub start: u64,
    /// Inode of the pid namespace (0: not known).
    pub pidns: u64,
}

/// What can be said of an owner from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running.
    Alive,
    /// Gone: no such process, a zombie, or its pid now belongs to a newer process.
    Dead,
    /// In another pid namespace: its pid means nothing here.
    Foreign,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: start_time(pid).unwrap_or(0),
            pidns: pid_namespace("self").unwrap_or(0),
        }
    }

    /// Whether the owner is still running, seen from this process's pid namespace.
    pub fn liveness(&self) -> Liveness {
        if self.pidns != 0
            && let Some(ours) = pid_namespace("self")
            && ours != self.pidns
        {
            return Liveness::Foreign;
        }
        if !process_alive(self.pid) {
            return Liveness::Dead;
        }
        match start_time(self.pid) {
            // The pid was reused by a process started later.
            Some(t) if self.start != 0 && t != self.start => Liveness::Dead,
            _ => Liveness::Alive,
        }
    }
}

/// Serialises reapers across processes: an exclusive `flock` on `RUN_DIR/reap.lock`, held
/// until the returned file drops. Two reapers of the same slots would otherwise race (one
/// deleting entries a new owner has just claimed after the other freed the slot).
pub fn reap_lock() -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    std::fs::create_dir_all(RUN_DIR)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::Path::new(RUN_DIR).join("reap.lock"))?;
    loop {
        // SAFETY: flock(2) on an fd this function owns; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Process `pid`'s start time (`/proc/PID/stat` field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (the state).
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// The inode of the pid namespace of `/proc/<which>` (`self` or a pid).
fn pid_namespace(which: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{which}/ns/pid"))
        .ok()
        .map(|m| m.ino())
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
    poll(&mut pfds[..n], timeout_ms)
}

/// Reads one frame (a datagram, a TAP read) from the non-blocking `fd` into `buf`; `None`
/// if none is waiting.
pub fn read_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writes of its length for the duration of the call; `fd`
    // belongs to an object the caller holds.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n as usize))
}

/// poll(2) on `pfds`; an interrupted wait is `false`.
fn poll(pfds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<bool> {
    // SAFETY: `pfds` is a valid, initialised array of pollfd that outlives the call; poll(2)
    // only writes their `revents`. The fds belong to objects the caller holds.
    let r = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            timeout_ms.max(-1),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Waits until one of `fds` (any number) is readable or `timeout_ms` passes. For loops that
/// wait on more fds than [`wait_readable`] takes (it allocates).
pub fn wait_readable_any(fds: &[RawFd], timeout_ms: i32) -> io::Result<bool> {
    if fds.len() <= MAX_WAIT_FDS {
        return wait_readable(fds, timeout_ms);
    }
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    poll(&mut pfds, timeout_ms)
}

/// A set of fds waited on together, telling afterwards which of them are ready: a loop
/// that serves many sources (the switch's ports) looks only at those, instead of asking
/// each one and hearing "nothing" (a system call per source per round).
#[derive(Debug, Default)]
pub struct PollSet {
    pfds: Vec<libc::pollfd>,
}

impl PollSet {
    /// Empties the set (its memory is kept).
    pub fn clear(&mut self) {
        self.pfds.clear();
    }

    /// Adds `fd` (waited on for input); its index for [`PollSet::ready`].
    pub fn push(&mut self, fd: RawFd) -> usize {
        self.pfds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        self.pfds.len() - 1
    }

    /// Fds in the set.
    pub fn len(&self) -> usize {
        self.pfds.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.pfds.is_empty()
    }

    /// Waits until one fd is ready or `timeout_ms` passes (0: just look; negative: no
    /// limit); whether one is. An interrupted wait is `false`, with nothing ready.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        for p in &mut self.pfds {
            p.revents = 0;
        }
        poll(&mut self.pfds, timeout_ms)
    }

    /// Whether the `i`th fd had input, a hang-up or an error at the last wait.
    pub fn ready(&self, i: usize) -> bool {
        self.pfds.get(i).is_some_and(|p| p.revents != 0)
    }
}

/// Errors of reading an interface's queues.
#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    /// No interface of that name in this network namespace.
    #[error("no network interface named {0:?}")]
    NoSuchInterface(String),
    /// The kernel could not be asked.
    #[error("reading the rx queues of {iface}")]
    Netlink {
        /// Interface.
        iface: String,
        /// Why.
        #[source]
        source: netlink::NetlinkError,
    },
}

/// Number of rx queues of `iface` in use, in the calling thread's network namespace: the
/// current channel count (ethtool; a veth, for one, can have more queues than it uses),
/// else the device's `numrxqueues` (rtnetlink).
pub fn rx_queues(iface: &str) -> Result<u32, QueuesError> {
    let link = netlink::Rtnetlink::open()
        .and_then(|mut nl| nl.link(iface))
        .map_err(|source| QueuesError::Netlink {
            iface: iface.to_owned(),
            source,
        })?
        .ok_or_else(|| QueuesError::NoSuchInterface(iface.to_owned()))?;
    let max = link.num_rx_queues.max(1);
    let current = ethtool::rx_channels(iface).unwrap_or_else(|e| {
        log::debug!("{iface}: channel count: {e}");
        None
    });
    Ok(current.map_or(max, |c| c.clamp(1, max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        for good in ["eth0", "veth-ioth", "a", "enp0s31f6", "br.100", "x@y"] {
            assert!(valid_ifname(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "eth0:1",
            "a b",
            "sixteen-bytes-xx",
            "\0",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
            assert!(parse_ifname(bad).is_err());
        }
    }

    #[test]
    fn loopback_has_one_queue_and_an_unknown_interface_is_a_clear_error() {
        assert_eq!(rx_queues("lo").expect("lo"), 1);
        assert!(matches!(
            rx_queues("ioth-nonesuch"),
            Err(QueuesError::NoSuchInterface(_))
        ));
    }

    #[test]
    fn an_identity_is_pid_start_time_and_pid_namespace() {
        let me = ProcessIdentity::current();
        assert!(me.start > 0 && me.pidns > 0, "{me:?}");
        assert_eq!(me.liveness(), Liveness::Alive);
        // The same pid started at another time: a reused pid, so the owner is gone.
        let reused = ProcessIdentity {
            start: me.start + 1,
            ..me
        };
        assert_eq!(reused.liveness(), Liveness::Dead);
        // An owner in another pid namespace: its pid says nothing here.
        let foreign = ProcessIdentity {
            pidns: me.pidns + 1,
            ..me
        };
        assert_eq!(foreign.liveness(), Liveness::Foreign);
        // Not known (older entries): the pid alone decides.
        let bare = ProcessIdentity {
            start: 0,
            pidns: 0,
            ..me
        };
        assert_eq!(bare.liveness(), Liveness::Alive);
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
