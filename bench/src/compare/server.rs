//! Starting and stopping the systems under test: server processes in the server namespace,
//! pinned to the server CPU, and the targets the load aims at.

use std::{
    io::{BufRead as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::{NetNs, VethPair};

use super::systems::*;

/// User + system CPU seconds process `pid` used so far (`ip netns exec` and taskset exec
/// the program, so the pid is the program's).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy seconds of the server CPU (CPU 0) since boot: every process, interrupt and softirq
/// on it (what a bridge costs is there, in no process).
pub(crate) fn server_cpu_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu0 ")) else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy / 100.0
}

/// Where the server CPU's time went for a system with a namespace behind a port, in
/// seconds: the switching (ioth, or vde_switch and its pcap plug), the port's client that
/// carries frames to the namespace's TAP (`vde_plug tap://`), and the kernel server there.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PortCpu {
    pub(crate) switch: f64,
    pub(crate) plug: f64,
    pub(crate) app: f64,
}

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
        Self::start_env(ns, program, args, &[], ready_prefix)
    }

    /// [`Server::start`] with `env` set for the program.
    pub(crate) fn start_env(
        ns: &NetNs,
        program: &str,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
        ready_prefix: &str,
    ) -> Result<Self> {
        let mut child = ns
            .command("taskset")
            .args(["-c", "0", program])
            .args(args)
            .envs(env.iter().copied())
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

    /// The MAC `ioth serve` printed for the thread at `ip` in its ready lines.
    pub(crate) fn ready_mac(&self, ip: Ipv4Addr) -> Result<[u8; 6]> {
        let want = format!("ipv4={ip}");
        self.ready
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == want))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
            .and_then(|m| m.parse::<ioth_dataplane::wire::Mac>().ok())
            .map(|m| m.0)
            .with_context(|| format!("ioth serve printed no MAC for {ip}"))
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
        cpu_seconds(self.child.id())
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
    /// What switches frames for a namespace behind a port besides `servers` (vde_switch,
    /// its pcap plug); its CPU is the server side's too.
    pub(crate) chain: Vec<Helper>,
    /// What carries them from the port into that namespace (`vde_plug tap://`).
    pub(crate) plug: Vec<Helper>,
    pub(crate) _behind: Option<NetNs>,
}

impl Running {
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.servers.iter().map(Server::cpu_seconds).sum::<f64>()
            + self
                .chain
                .iter()
                .chain(&self.plug)
                .map(Helper::cpu_seconds)
                .sum::<f64>()
    }

    /// For a system with a namespace behind a port: its CPU seconds by role. The kernel
    /// server behind is the last server; the others and the chain switch.
    pub(crate) fn port_cpu(&self) -> Option<PortCpu> {
        self._behind.as_ref()?;
        let (app, switches) = self.servers.split_last()?;
        Some(PortCpu {
            switch: switches.iter().map(Server::cpu_seconds).sum::<f64>()
                + self.chain.iter().map(Helper::cpu_seconds).sum::<f64>(),
            plug: self.plug.iter().map(Helper::cpu_seconds).sum(),
            app: app.cpu_seconds(),
        })
    }
}

/// A process of a port chain (vde_plug, vde_switch, vde_pcapplug), pinned to the server
/// CPU, killed on drop. Its stdin is a pipe kept open (vde_switch's console quits at EOF).
pub(crate) struct Helper {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Helper {
    pub(crate) fn start(ns: &NetNs, program: &str, args: &[&str]) -> Result<Self> {
        let mut child = ns
            .command("taskset")
            .args(["-c", "0", program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            _stdin: stdin,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespace behind a port: its interface `ifname` (made by `make`), address `addr`,
/// and a kernel server on it. Returns the namespace, the server and the target.
fn behind(
    c: &Ctx<'_>,
    ifname: &str,
    addr: Ipv4Addr,
    make: impl FnOnce(&NetNs) -> Result<Vec<Helper>>,
) -> Result<(NetNs, Vec<Helper>, Server, Target)> {
    let ns = NetNs::new("bench-vb")?;
    let chain = make(&ns)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.ip(&["link", "show", ifname]).is_err() {
        if Instant::now() > deadline {
            bail!("{ifname} did not appear behind the port");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname])?;
    ns.ip(&["link", "set", ifname, "up"])?;
    let out = ns.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
    let mac = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<ioth_dataplane::wire::Mac>()
        .map_err(anyhow::Error::from)?
        .0;
    let server = Server::start(
        &ns,
        &c.self_exe,
        &[
            "kernel-server".into(),
            "--threads".into(),
            "1".into(),
            "--ip".into(),
            addr.to_string(),
        ],
        "ready kernel-server",
    )?;
    Ok((ns, chain, server, Target { ip: addr, mac }))
}

/// What puts the namespace behind a VDE switch in `dir`: `vde_plug vde://DIR tap://vdeb`.
fn tap_plug(dir: &str) -> impl FnOnce(&NetNs) -> Result<Vec<Helper>> {
    let url = format!("vde://{dir}");
    move |ns| Ok(vec![Helper::start(ns, "vde_plug", &[&url, "tap://vdeb"])?])
}

/// The VDE switch directories of the port systems.
fn vde_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ioth-bench-{tag}-{}", std::process::id()))
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
        let at = ip(base + i as u8);
        targets.push(Target {
            ip: at,
            mac: s.ready_mac(at)?,
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
        System::VdeIoth
        | System::VdePcapplug
        | System::LinuxBridge
        | System::VxlanIoth
        | System::VxlanKernel => {
            return start_behind(c, system);
        }
    };
    Ok(Running {
        system,
        servers,
        targets,
        metrics,
        chain: Vec::new(),
        plug: Vec::new(),
        _behind: None,
    })
}

/// A kernel server in a namespace behind a port of ioth's switch, of a vde_switch fed by
/// vde_pcapplug, or of a Linux bridge.
fn start_behind(c: &Ctx<'_>, system: System) -> Result<Running> {
    let host = &c.pair.host;
    let mut servers = Vec::new();
    let mut chain = Vec::new();
    let (ns, more, server, target) = match system {
        System::VdeIoth => {
            let dir = vde_dir("vde");
            let _ = std::fs::remove_dir_all(&dir);
            let d = dir.to_string_lossy().into_owned();
            servers.push(Server::start(
                host,
                &c.ioth,
                &[
                    "serve".into(),
                    "--iface".into(),
                    c.pair.host_if.clone(),
                    "--threads".into(),
                    "0".into(),
                    "--vde".into(),
                    d.clone(),
                ],
                "ready threads=",
            )?);
            behind(c, "vdeb", VDE_IOTH_IP, tap_plug(&d))?
        }
        System::VdePcapplug => {
            let dir = vde_dir("pcap");
            let _ = std::fs::remove_dir_all(&dir);
            let d = dir.to_string_lossy().into_owned();
            // libpcap hands frames on as the veth delivered them: the load side's kernel must
            // put complete checksums in (no offload), or the namespace behind drops them (a
            // veth artefact: frames from a real wire carry complete checksums). ioth's
            // switch completes them itself.
            c.pair.peer_offloads_off()?;
            chain.push(Helper::start(host, "vde_switch", &["-s", &d])?);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !dir.join("ctl").exists() {
                if Instant::now() > deadline {
                    bail!("vde_switch did not start");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // vdeplug4's pcap plugin: libpcap on the NIC into the switch. (vde2's own
            // vde_pcapplug 2.3.2 delivers nothing at low rates with Debian 12's libpcap 1.10:
            // it waits for a TPACKET_V3 block to fill; see bench/README.md.)
            chain.push(Helper::start(
                host,
                "vde_plug",
                &[&format!("vde://{d}"), &format!("pcap://{}", c.pair.host_if)],
            )?);
            behind(c, "vdeb", VDE_PCAP_IP, tap_plug(&d))?
        }
        System::LinuxBridge => {
            let hif = c.pair.host_if.clone();
            behind(c, "brb", BRIDGE_IP, |ns| {
                host.ip(&["link", "add", "br-bench", "type", "bridge"])?;
                host.ip(&["link", "set", &hif, "master", "br-bench"])?;
                host.ip(&[
                    "link",
                    "add",
                    "bra",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "brb",
                    "netns",
                    ns.name(),
                ])?;
                host.ip(&["link", "set", "bra", "master", "br-bench"])?;
                host.ip(&["link", "set", "bra", "up"])?;
                host.ip(&["link", "set", "br-bench", "up"])?;
                Ok(Vec::new())
            })?
        }
        System::VxlanIoth | System::VxlanKernel => {
            let kernel = system == System::VxlanKernel;
            let ip = if kernel {
                VXLAN_KERNEL_IP
            } else {
                VXLAN_IOTH_IP
            };
            let hif = c.pair.host_if.clone();
            let servers = &mut servers;
            behind(c, "vx0", ip, |ns| {
                // The underlay: a second veth between host 1 (the server namespace) and
                // host 2, and Linux's vxlan device on host 2.
                host.ip(&[
                    "link",
                    "add",
                    "uva",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "uvb",
                    "netns",
                    ns.name(),
                ])?;
                host.ip(&["addr", "add", "10.98.0.1/24", "dev", "uva"])?;
                host.ip(&["link", "set", "uva", "up"])?;
                ns.ip(&["addr", "add", "10.98.0.2/24", "dev", "uvb"])?;
                ns.ip(&["link", "set", "uvb", "up"])?;
                let vxlan = |local: &str, remote: &str, dev: &str| {
                    [
                        "type", "vxlan", "id", "42", "dstport", "4789", "local", local, "remote",
                        remote, "dev", dev,
                    ]
                    .map(str::to_owned)
                };
                let mut add = vec!["link".to_owned(), "add".into(), "vx0".into()];
                add.extend(vxlan("10.98.0.2", "10.98.0.1", "uvb"));
                ns.ip(&add.iter().map(String::as_str).collect::<Vec<_>>())?;
                if kernel {
                    let mut add = vec!["link".to_owned(), "add".into(), "vxk".into()];
                    add.extend(vxlan("10.98.0.1", "10.98.0.2", "uva"));
                    host.ip(&add.iter().map(String::as_str).collect::<Vec<_>>())?;
                    host.ip(&["link", "add", "br-bench", "type", "bridge"])?;
                    host.ip(&["link", "set", &hif, "master", "br-bench"])?;
                    host.ip(&["link", "set", "vxk", "master", "br-bench"])?;
                    host.ip(&["link", "set", "vxk", "up"])?;
                    host.ip(&["link", "set", "br-bench", "up"])?;
                } else {
                    servers.push(Server::start(
                        host,
                        &c.ioth,
                        &[
                            "serve".into(),
                            "--iface".into(),
                            hif.clone(),
                            "--threads".into(),
                            "0".into(),
                            "--vxlan".into(),
                            "10.98.0.2,vni=42".into(),
                        ],
                        "ready threads=",
                    )?);
                }
                Ok(Vec::new())
            })?
        }
        _ => unreachable!("start_behind serves the port systems"),
    };
    servers.push(server);
    let plug = more;
    Ok(Running {
        system,
        servers,
        targets: vec![target],
        metrics: None,
        chain,
        plug,
        _behind: Some(ns),
    })
}

/// Address of the namespace behind each port system.
const VDE_IOTH_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 71);
const VDE_PCAP_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 72);
const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 73);
const VXLAN_IOTH_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 74);
const VXLAN_KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 75);

/// Undoes what [`start`] changed in the topology (the servers stop on drop).
pub(crate) fn stop(c: &Ctx<'_>, r: Running) -> Result<()> {
    let system = r.system;
    drop(r);
    match system {
        System::LinuxBridge => {
            c.pair.host.ip(&["link", "del", "br-bench"])?;
            let _ = c.pair.host.ip(&["link", "del", "bra"]);
            c.pair.host.ip(&["link", "set", &c.pair.host_if, "up"])?;
        }
        System::VdeIoth => {
            let _ = std::fs::remove_dir_all(vde_dir("vde"));
        }
        System::VxlanKernel => {
            c.pair.host.ip(&["link", "del", "br-bench"])?;
            let _ = c.pair.host.ip(&["link", "del", "vxk"]);
            let _ = c.pair.host.ip(&["link", "del", "uva"]);
            c.pair.host.ip(&["link", "set", &c.pair.host_if, "up"])?;
        }
        System::VxlanIoth => {
            // Host 2's namespace took its end of the underlay with it; ours goes too.
            let _ = c.pair.host.ip(&["link", "del", "uva"]);
        }
        System::VdePcapplug => {
            let _ = std::fs::remove_dir_all(vde_dir("pcap"));
            c.pair.peer.exec(
                "ethtool",
                &["-K", &c.pair.peer_if, "tx", "on", "tso", "on", "gso", "on"],
            )?;
        }
        _ => {}
    }
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
