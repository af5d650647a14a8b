//! Starting and stopping the systems under test: server processes in the server namespace,
//! pinned to the server CPU, and the targets the load aims at.

use std::{
    io::{BufRead as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ioth_dataplane::netns::{NetNs, VethPair};

use super::systems::*;

/// A server process in the server namespace, pinned to CPU 0, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: mpsc::Receiver<String>,
    /// The lines it printed up to and including its final ready line.
    pub(crate) ready: Vec<String>,
}

impl Server {
    pub(crate) fn start(
        ns: &NetNs,
        program: &str,
        args: &[String],
        ready_prefix: &str,
    ) -> Result<Self> {
        let mut child = ns
            .command("taskset")
            .args(["-c", "0", program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let out = child.stdout.take().context("server stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Self {
            child,
            stdin,
            lines: rx,
            ready: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = s
                .lines
                .recv_timeout(left)
                .with_context(|| format!("{program} did not become ready"))?;
            let done = line.starts_with(ready_prefix);
            s.ready.push(line);
            if done {
                return Ok(s);
            }
        }
    }

    /// Sends `cmd` on the server's stdin and returns its first output line starting with
    /// `reply`.
    pub(crate) fn query(&mut self, cmd: &str, reply: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("server has no stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("no answer to {cmd:?}"))?;
            if line.starts_with(reply) {
                return Ok(line);
            }
        }
    }

    /// User + system CPU seconds the server used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may contain spaces).
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
        // `ip netns exec` and taskset exec the server, so the pid is the server's.
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin.take();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `f` on a thread inside `ns`, pinned to CPU 1.
pub(crate) fn on_load_cpu<T: Send + 'static>(
    ns: &NetNs,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    ns.spawn(move || {
        crate::sys::pin_to_cpu(1)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("load thread panicked"))?
}

pub(crate) const IOTH_BASE: u8 = 11;

pub(crate) const KERNEL_BASE: u8 = 51;

pub(crate) const RAW_BASE: u8 = 31;

pub(crate) const PEER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

pub(crate) const HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

pub(crate) fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, last)
}

/// A target of the load: address and the MAC frames to it are sent to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: [u8; 6],
}

/// A running system: its server process(es) and targets.
pub(crate) struct Running {
    pub(crate) system: System,
    pub(crate) servers: Vec<Server>,
    pub(crate) targets: Vec<Target>,
    /// `ioth serve`'s metrics address (in the server namespace).
    pub(crate) metrics: Option<SocketAddr>,
}

impl Running {
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.servers.iter().map(Server::cpu_seconds).sum()
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) pair: &'a VethPair,
    pub(crate) ioth: String,
    pub(crate) self_exe: String,
}

pub(crate) fn start_ioth(
    c: &Ctx<'_>,
    threads: usize,
    base: u8,
) -> Result<(Server, Vec<Target>, SocketAddr)> {
    let metrics: SocketAddr = "127.0.0.1:9464".parse()?;
    let s = Server::start(
        &c.pair.host,
        &c.ioth,
        &[
            "serve".into(),
            "--iface".into(),
            c.pair.host_if.clone(),
            "--threads".into(),
            threads.to_string(),
            "--ipv4".into(),
            format!("{}/24", ip(base)),
            "--app".into(),
            "echo".into(),
            "--app".into(),
            "discard".into(),
            "--app".into(),
            "http".into(),
            "--app".into(),
            "source".into(),
            "--backlog".into(),
            "64".into(),
            "--metrics".into(),
            metrics.to_string(),
        ],
        "ready threads=",
    )?;
    let mut targets = Vec::new();
    for i in 0..threads {
        let want = format!("ipv4={}", ip(base + i as u8));
        let mac = s
            .ready
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == want))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
            .and_then(|m| m.parse::<ioth_dataplane::wire::Mac>().ok())
            .map(|m| m.0)
            .with_context(|| format!("ioth serve printed no MAC for thread {i}"))?;
        targets.push(Target {
            ip: ip(base + i as u8),
            mac,
        });
    }
    Ok((s, targets, metrics))
}

pub(crate) fn start_kernel(
    c: &Ctx<'_>,
    ips: &[Ipv4Addr],
    threads: usize,
    reuse: bool,
) -> Result<Server> {
    let mut a = vec![
        "kernel-server".to_owned(),
        "--threads".into(),
        threads.to_string(),
    ];
    if reuse {
        a.push("--reuseport".into());
    }
    for i in ips {
        a.push("--ip".into());
        a.push(i.to_string());
    }
    Server::start(&c.pair.host, &c.self_exe, &a, "ready kernel-server")
}

pub(crate) fn start(c: &Ctx<'_>, system: System, threads: usize) -> Result<Running> {
    let host_mac = c.pair.host_mac;
    let at = |ip| Target { ip, mac: host_mac };
    let (servers, targets, metrics) = match system {
        System::Ioth => {
            let (s, t, m) = start_ioth(c, threads, IOTH_BASE)?;
            (vec![s], t, Some(m))
        }
        System::KernelIp => {
            let ips: Vec<_> = (0..threads).map(|i| ip(KERNEL_BASE + i as u8)).collect();
            let s = start_kernel(c, &ips, threads, false)?;
            (vec![s], ips.into_iter().map(at).collect(), None)
        }
        System::KernelReuseport => {
            let s = start_kernel(c, &[HOST], threads, true)?;
            (vec![s], vec![at(HOST); threads], None)
        }
        System::RawAfxdp => {
            let ips: Vec<_> = (0..threads).map(|i| ip(RAW_BASE + i as u8)).collect();
            let mut a = vec![
                "raw-echo".to_owned(),
                "--iface".into(),
                c.pair.host_if.clone(),
            ];
            for i in &ips {
                a.push("--ip".into());
                a.push(i.to_string());
                // No ARP in the raw echo: the load side gets a static neighbour entry.
                c.pair.peer.ip(&[
                    "neigh",
                    "replace",
                    &i.to_string(),
                    "lladdr",
                    &ioth_dataplane::wire::Mac(host_mac).to_string(),
                    "dev",
                    &c.pair.peer_if,
                    "nud",
                    "permanent",
                ])?;
            }
            // Raw frames are echoed as they came: the load side's kernel must put complete
            // checksums into them (no offload), or it would drop the echoes.
            c.pair.peer_offloads_off()?;
            let s = Server::start(&c.pair.host, &c.self_exe, &a, "ready raw-echo")?;
            (vec![s], ips.into_iter().map(at).collect(), None)
        }
        System::XdpDrop => (Vec::new(), vec![at(HOST); threads], None),
        System::SmoltcpTap => {
            c.pair
                .host
                .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            let _ = c.pair.peer.ip(&["route", "del", "10.98.0.0/16"]);
            c.pair
                .peer
                .ip(&["route", "add", "10.98.0.0/16", "via", &HOST.to_string()])?;
            let s = Server::start(
                &c.pair.host,
                &c.self_exe,
                &["tap-echo".into(), "--threads".into(), threads.to_string()],
                "ready tap-echo",
            )?;
            let t = (0..threads).map(|i| at(crate::tap::stack_ip(i))).collect();
            (vec![s], t, None)
        }
        System::HostDetached => {
            let s = start_kernel(c, &[HOST], 1, false)?;
            (vec![s], vec![at(HOST)], None)
        }
        System::HostAttached => {
            let s = start_kernel(c, &[HOST], 1, false)?;
            let (io, _, m) = start_ioth(c, 1, IOTH_BASE)?;
            (vec![s, io], vec![at(HOST)], Some(m))
        }
    };
    Ok(Running {
        system,
        servers,
        targets,
        metrics,
    })
}

/// Undoes what [`start`] changed in the topology (the servers stop on drop).
pub(crate) fn stop(c: &Ctx<'_>, r: Running) -> Result<()> {
    let system = r.system;
    drop(r);
    if system == System::RawAfxdp {
        c.pair.peer.exec(
            "ethtool",
            &["-K", &c.pair.peer_if, "tx", "on", "tso", "on", "gso", "on"],
        )?;
    }
    Ok(())
}

pub(crate) fn socket_addrs(r: &Running, port: u16) -> Vec<SocketAddr> {
    r.targets
        .iter()
        .map(|t| SocketAddr::new(IpAddr::V4(t.ip), port))
        .collect()
}
