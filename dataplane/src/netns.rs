//! Network namespaces and veth pairs made for tests, the demo and the benchmark harness.
//!
//! Everything made here is removed again when its guard drops (also on panic). Names start
//! with [`PREFIX`] so that `cargo xtask test` can remove leftovers of a killed run.
//! Traffic may only go to addresses inside namespaces made here (the project's network rule).

use std::{
    fs::File,
    io,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

/// Prefix of every namespace this module creates.
pub const PREFIX: &str = "ioth-";

/// Errors from namespace and link set-up.
#[derive(Debug, thiserror::Error)]
pub enum NetNsError {
    /// A command could not be started.
    #[error("running `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A command exited with an error.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command's output was not what was expected.
    #[error("reading {what}: {why}")]
    BadOutput {
        /// What was read.
        what: String,
        /// Why it did not read.
        why: String,
    },
    /// Entering or leaving a namespace failed.
    #[error("setns into {name}")]
    Setns {
        /// The namespace.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = NetNsError> = std::result::Result<T, E>;

/// The `ip` program, by absolute path when it is in a usual place (so a command whose PATH a
/// test empties still starts).
pub fn ip_program() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

/// Runs a command to completion; a non-zero exit is an error naming the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let cmd_line = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetNsError::Spawn {
            cmd: cmd_line(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetNsError::Failed {
            cmd: cmd_line(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a fresh namespace named `ioth-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(ip_program());
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `ip args` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Spawns a thread that runs `f` inside the namespace: kernel sockets it makes, and
    /// interfaces it names, belong to the namespace.
    ///
    /// # Panics
    ///
    /// The spawned thread panics (before running `f`) if it cannot enter the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let target = File::open(format!("/run/netns/{name}"))
                .unwrap_or_else(|e| panic!("opening namespace {name}: {e}"));
            setns(&target, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering namespace {name}: {e}"));
            f()
        })
    }

    /// Runs `f` on a fresh thread inside the namespace and returns its result (a panic in
    /// `f` resumes in the caller).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Moves the calling thread into the namespace until the guard drops.
    ///
    /// Only this thread moves: sockets, interface lookups and XDP attachments it makes while
    /// inside belong to the namespace.
    pub fn enter(&self) -> Result<NsGuard> {
        let err = |source| NetNsError::Setns {
            name: self.name.clone(),
            source,
        };
        let back = File::open("/proc/thread-self/ns/net").map_err(err)?;
        let target = File::open(format!("/run/netns/{}", self.name)).map_err(err)?;
        setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| err(e.into()))?;
        Ok(NsGuard { back })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            log::warn!("removing namespace {}: {e}", self.name);
        }
    }
}

/// Returns the calling thread to the namespace it came from on drop.
#[derive(Debug)]
#[must_use = "the thread leaves the namespace when the guard drops"]
pub struct NsGuard {
    back: File,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.back, CloneFlags::CLONE_NEWNET) {
            // Staying in a namespace that is about to disappear would break the caller's
            // next steps in confusing ways; this is not recoverable.
            panic!("cannot return to the original network namespace: {e}");
        }
    }
}

/// Two namespaces joined by a veth pair, each end addressed: the standard test topology.
///
/// `host` is where ioth runs (the classifier is attached to `host_if`); `peer` plays the
/// rest of the network.
#[derive(Debug)]
pub struct VethPair {
    /// The side where ioth runs.
    pub host: NetNs,
    /// The other side.
    pub peer: NetNs,
    /// Interface name in `host`.
    pub host_if: String,
    /// Interface name in `peer`.
    pub peer_if: String,
    /// MAC of `host_if`.
    pub host_mac: [u8; 6],
    /// MAC of `peer_if`.
    pub peer_mac: [u8; 6],
}

/// Addresses of the standard topology (inside the namespaces only).
pub mod addrs {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Host side IPv4.
    pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    /// Peer side IPv4.
    pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    /// Host side IPv6.
    pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
    /// Peer side IPv6.
    pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 2);
    /// Prefix length of both.
    pub const PREFIX_V4: u8 = 24;
    /// IPv6 prefix length.
    pub const PREFIX_V6: u8 = 64;
    /// The first address handed to endpoints (threads): .11, .12, ...
    pub const FIRST_ENDPOINT_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
    /// The first IPv6 address handed to endpoints.
    pub const FIRST_ENDPOINT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11);
}

fn read_mac(ns: &NetNs, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<crate::wire::Mac>()
        .map(|m| m.0)
        .map_err(|e| NetNsError::BadOutput {
            what: format!("the MAC of {ifname}"),
            why: e.to_string(),
        })
}

impl VethPair {
    /// Makes two namespaces and a veth pair with `queues` rx/tx queues per end, addresses
    /// from [`addrs`], IPv6 DAD off, and both ends up.
    pub fn new(tag: &str, queues: u32) -> Result<Self> {
        let host = NetNs::new(&format!("{tag}-h"))?;
        let peer = NetNs::new(&format!("{tag}-p"))?;
        let (host_if, peer_if) = ("veth-ioth".to_owned(), "veth-peer".to_owned());
        let q = queues.max(1).to_string();
        host.ip(&[
            "link",
            "add",
            &host_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            peer.name(),
        ])?;
        for (ns, ifname, v4, v6) in [
            (&host, &host_if, addrs::HOST_V4, addrs::HOST_V6),
            (&peer, &peer_if, addrs::PEER_V4, addrs::PEER_V6),
        ] {
            ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.accept_dad=0"])?;
            ns.exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{ifname}.accept_dad=0")],
            )?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{v4}/{}", addrs::PREFIX_V4),
                "dev",
                ifname,
            ])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{v6}/{}", addrs::PREFIX_V6),
                "dev",
                ifname,
                "nodad",
            ])?;
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        let host_mac = read_mac(&host, &host_if)?;
        let peer_mac = read_mac(&peer, &peer_if)?;
        Ok(Self {
            host,
            peer,
            host_if,
            peer_if,
            host_mac,
            peer_mac,
        })
    }

    /// Turns off checksum and segmentation offloads on the peer, so its kernel sends frames
    /// with complete checksums (raw receivers see what is on the wire).
    pub fn peer_offloads_off(&self) -> Result<()> {
        self.peer
            .exec(
                "ethtool",
                &["-K", &self.peer_if, "tx", "off", "tso", "off", "gso", "off"],
            )
            .map(|_| ())
    }
}

/// Removes the namespaces named with [`PREFIX`] whose creating process is gone (leftovers of
/// killed runs). Returns the names removed.
pub fn remove_stale() -> Result<Vec<String>> {
    let out = run("ip", &["netns", "list"])?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        // `ioth-TAG-PID-N`: a namespace whose creator still runs is in use, not stale.
        let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let in_use = pid.is_some_and(crate::sys::process_alive);
        if name.starts_with(PREFIX) && !in_use {
            run("ip", &["netns", "del", name])?;
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}
