//! `ioth serve --vde DIR`: a vde_switch-compatible switch, with VirtualSquare's own clients
//! (vde_plug, vdens, dpipe, vde_switch) as the other side, in fresh namespaces.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{Server, ioth_json, peer_ok};
use ioth_dataplane::netns::{NetNs, VethPair};

/// A background process killed (and reaped) on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` in `ns`; its stdin is a pipe kept open (vde_switch's console quits on
/// end of input).
fn bg(ns: &NetNs, program: &str, args: &[&str]) -> Bg {
    Bg(ns
        .command(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}")))
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ioth-vde-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Self(d)
    }
    fn url(&self, sub: &str) -> String {
        format!("vde://{}", self.0.join(sub).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `ns` has interface `ifname`.
fn wait_for_link(ns: &NetNs, ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ns.ip(&["link", "show", ifname]).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("{ifname} did not appear in {}", ns.name());
}

/// A namespace whose `tap` is a `vde_plug` port of the switch at `url`, with addresses.
fn plugged(tag: &str, url: &str, tap: &str, v4: &str, v6: &str) -> (NetNs, Bg) {
    let ns = NetNs::new(tag).expect("client netns");
    let plug = bg(&ns, "vde_plug", &[url, &format!("tap://{tap}")]);
    wait_for_link(&ns, tap);
    ns.ip(&["addr", "add", v4, "dev", tap]).expect("v4");
    ns.ip(&["addr", "add", v6, "dev", tap, "nodad"])
        .expect("v6");
    ns.ip(&["link", "set", tap, "up"]).expect("up");
    (ns, plug)
}

fn ping(ns: &NetNs, dst: &str) {
    let v6 = dst.contains(':');
    let mut args = vec!["-c", "2", "-W", "3"];
    if v6 {
        args.insert(0, "-6");
    }
    args.push(dst);
    let (ok, out) = peer_ok(ns, "ping", &args);
    assert!(ok, "ping {dst} from {}: {out}", ns.name());
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn vde_clients_reach_the_nic_and_each_other_through_ioth() {
    let pair = VethPair::new("vde", 1).expect("veth pair");
    let dir = TempDir::new("sw");
    let sw = dir.0.to_string_lossy().into_owned();
    let server = Server::start(&pair, 1, "echo", &["--vde", &sw, "--metrics", "19466"]);
    assert!(
        server.ready.iter().any(|l| l.starts_with("vde switch ")),
        "{:?}",
        server.ready
    );
    // The switch's directory and control socket are root-only by default (vde_switch -m).
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.0), 0o700);
    assert_eq!(mode(&dir.0.join("ctl")), 0o600);

    // Two vde_plug taps in two namespaces, on the NIC's LAN.
    let (a, _plug_a) = plugged(
        "vde-a",
        &dir.url(""),
        "vde0",
        "10.99.0.50/24",
        "fd00:99::50/64",
    );
    let (b, _plug_b) = plugged(
        "vde-b",
        &dir.url(""),
        "vde1",
        "10.99.0.51/24",
        "fd00:99::51/64",
    );
    // The NIC's peer reaches each tap, over IPv4 and IPv6, and they reach it.
    for dst in ["10.99.0.50", "fd00:99::50", "10.99.0.51", "fd00:99::51"] {
        ping(&pair.peer, dst);
    }
    ping(&a, "10.99.0.2");
    ping(&b, "fd00:99::2");
    // The taps reach each other (switched inside ioth).
    ping(&a, "10.99.0.51");
    ping(&b, "fd00:99::50");
    // A tap and a thread stack of the same ioth reach each other without the NIC (the
    // frames are switched inside ioth: a veth does not bring back what was sent out).
    ping(&a, "10.99.0.11");
    ping(&b, "fd00:99::11");
    let (ok, out) = peer_ok(
        &a,
        "sh",
        &[
            "-c",
            "echo to-the-thread | timeout 10 socat -t 2 - TCP:10.99.0.11:7,connect-timeout=5",
        ],
    );
    assert!(
        ok && out.contains("to-the-thread"),
        "TCP from a tap to a thread: {out}"
    );
    let (ok, out) = peer_ok(
        &b,
        "sh",
        &[
            "-c",
            "echo udp-to-the-thread | timeout 10 socat -t 2 - UDP:10.99.0.11:7",
        ],
    );
    assert!(
        ok && out.contains("udp-to-the-thread"),
        "UDP from a tap to a thread: {out}"
    );
    // TCP and UDP from the NIC's peer to a tap: socat echo servers behind the port.
    let _tcp = bg(&a, "socat", &["TCP-LISTEN:7007,fork,reuseaddr", "EXEC:cat"]);
    let _udp = bg(&a, "socat", &["UDP-RECVFROM:7008,fork", "EXEC:cat"]);
    thread::sleep(Duration::from_millis(300));
    let (ok, out) = peer_ok(
        &pair.peer,
        "sh",
        &[
            "-c",
            "echo hello-vde | timeout 10 socat -t 2 - TCP:10.99.0.50:7007,connect-timeout=5",
        ],
    );
    assert!(
        ok && out.contains("hello-vde"),
        "TCP through the port: {out}"
    );
    let (ok, out) = peer_ok(
        &pair.peer,
        "sh",
        &[
            "-c",
            "echo hello-udp | timeout 10 socat -t 2 - UDP:10.99.0.50:7008",
        ],
    );
    assert!(
        ok && out.contains("hello-udp"),
        "UDP through the port: {out}"
    );

    // The switch's endpoint owns the MACs learned behind its ports.
    let eps = ioth_json(
        &pair.host,
        &["endpoints", "--iface", &pair.host_if, "--json"],
    );
    let macs: usize = eps
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["kind"] != "thread")
        .map(|e| e["macs"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(macs >= 3, "the switch's own MAC and both taps': {eps}");

    // Each port is an endpoint of its own: kind port, its tap's MAC, the client's
    // description and pid.
    let a_mac = String::from_utf8_lossy(
        &a.exec("cat", &["/sys/class/net/vde0/address"])
            .expect("tap MAC")
            .stdout,
    )
    .trim()
    .to_owned();
    // A learned MAC is on the NIC's own address list, as the threads' are.
    let fdb = String::from_utf8_lossy(
        &pair
            .host
            .exec("bridge", &["fdb", "show", "dev", &pair.host_if])
            .expect("bridge fdb")
            .stdout,
    )
    .into_owned();
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(&a_mac) && l.contains(" self")),
        "the tap's learned MAC {a_mac} is not on the device's address list:\n{fdb}"
    );
    let ports: Vec<&serde_json::Value> = eps
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["kind"] == "port")
        .collect();
    assert_eq!(ports.len(), 2, "two vde_plug ports: {eps}");
    let pa = ports
        .iter()
        .find(|e| {
            e["macs"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == a_mac.as_str()))
        })
        .unwrap_or_else(|| panic!("no port owns {a_mac}: {eps}"));
    assert_eq!(pa["port"]["kind"], "vde");
    assert!(
        pa["port"]["description"]
            .as_str()
            .unwrap_or("")
            .contains("vdeplug"),
        "{pa}"
    );
    assert!(pa["port"]["pid"].as_u64().unwrap_or(0) > 0, "{pa}");
    assert!(
        pa["rx_packets"].as_u64().unwrap_or(0) > 0,
        "the classifier counts the port's frames: {pa}"
    );
    assert!(
        eps.as_array()
            .expect("list")
            .iter()
            .any(|e| e["kind"] == "switch"),
        "{eps}"
    );
    let table = String::from_utf8_lossy(
        &pair
            .host
            .exec(
                env!("CARGO_BIN_EXE_ioth"),
                &["endpoints", "--iface", &pair.host_if],
            )
            .expect("ioth endpoints")
            .stdout,
    )
    .into_owned();
    assert!(
        table.contains(" port ") && table.contains("vde port 1: vdeplug"),
        "{table}"
    );
    println!("{table}");
    // A port is captured like a thread: both directions of its frames, for tcpdump.
    let slot = pa["slot"].as_u64().expect("slot");
    let pcap = std::env::temp_dir().join(format!("ioth-vde-port-{}.pcap", std::process::id()));
    let mut cap = pair
        .host
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args([
            "capture",
            &format!("slot:{slot}"),
            "-c",
            "4",
            "-w",
            &pcap.to_string_lossy(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ioth capture");
    thread::sleep(Duration::from_millis(500));
    ping(&pair.peer, "10.99.0.50");
    let st = wait_exit(&mut cap, 10);
    assert!(st.success(), "ioth capture of a port");
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-r", &pcap.to_string_lossy()])
        .output()
        .expect("tcpdump");
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("> 10.99.0.50: ICMP echo request")
            && text.contains("IP 10.99.0.50 > 10.99.0.2: ICMP echo reply"),
        "{text}"
    );
    // Its transmit counters are published like a thread's.
    thread::sleep(Duration::from_millis(400));
    let eps = ioth_json(
        &pair.host,
        &["endpoints", "--iface", &pair.host_if, "--json"],
    );
    let tx = eps
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["slot"].as_u64() == Some(slot))
        .and_then(|e| e["tx_packets"].as_u64())
        .unwrap_or(0);
    assert!(tx > 0, "the port's frames sent are counted: {eps}");
    // The metrics count the ports like the threads, told apart by `kind`.
    let (ok, text) = peer_ok(
        &pair.host,
        "curl",
        &["-sS", "-m", "5", "http://127.0.0.1:19466/metrics"],
    );
    assert!(ok, "scrape: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ioth_endpoint_rx_packets_total{")
                && l.contains("endpoint=\"port1\"")
                && l.contains("kind=\"port\"")),
        "no port in the metrics:\n{text}"
    );
    assert!(text.contains("kind=\"thread\""), "{text}");

    // vdens: a namespace whose vde0 is plugged into the switch.
    let (ok, out) = peer_ok(
        &pair.host,
        "timeout",
        &[
            "15",
            "vdens",
            &dir.url(""),
            "sh",
            "-c",
            "ip addr add 10.99.0.52/24 dev vde0 && ip link set vde0 up && ping -c 2 -W 3 10.99.0.2 && ping -c 1 -W 3 10.99.0.50",
        ],
    );
    assert!(ok, "vdens: {out}");

    // A real vde_switch LAN cascaded in through dpipe: its clients reach the NIC's peer
    // and ioth's ports.
    let real = TempDir::new("real");
    let real_dir = real.0.to_string_lossy().into_owned();
    let _vde_switch = bg(&pair.host, "vde_switch", &["-s", &real_dir]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !real.0.join("ctl").exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let _dpipe = bg(
        &pair.host,
        "dpipe",
        &["vde_plug", &dir.url(""), "=", "vde_plug", &real.url("")],
    );
    let (c, _plug_c) = plugged(
        "vde-c",
        &real.url(""),
        "vde2",
        "10.99.0.53/24",
        "fd00:99::53/64",
    );
    ping(&pair.peer, "10.99.0.53");
    ping(&c, "10.99.0.51");

    // A port's process killed: its port closes and its MAC goes with it.
    let out = b
        .exec("cat", &["/sys/class/net/vde1/address"])
        .expect("tap MAC");
    let b_mac = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let owned = |mac: &str| {
        let eps = ioth_json(
            &pair.host,
            &["endpoints", "--iface", &pair.host_if, "--json"],
        );
        eps.as_array().expect("list").iter().any(|e| {
            e["macs"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == mac))
        })
    };
    assert!(owned(&b_mac), "{b_mac} is claimed while its port is open");
    drop(_plug_b);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(100)) {
            closed = line.contains("vde: port 2 closed");
        }
    }
    assert!(closed, "port 2 did not close when its vde_plug was killed");
    assert!(
        !owned(&b_mac),
        "{b_mac} still claimed after its port closed"
    );
    let (status, lines) = server.stop();
    assert!(status.success(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stopped: ") && l.ends_with("frames accounted: yes")),
        "{lines:?}"
    );
    assert!(
        !dir.0.join("ctl").exists(),
        "the control socket goes with the server"
    );
    println!(
        "vde: {}",
        lines
            .iter()
            .filter(|l| l.contains("vde"))
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// `ioth run ARGS -- CMD` in the host namespace, in a process group of its own (as a shell
/// job would be).
fn ioth_run(pair: &VethPair, args: &[&str], cmd: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt as _;
    let mut c = pair.host.command(env!("CARGO_BIN_EXE_ioth"));
    c.arg("run").args(args).arg("--").args(cmd).process_group(0);
    c
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ioth run did not exit within {secs} s");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn ioth_run_gives_an_unmodified_program_its_own_address_and_its_exit_status() {
    let pair = VethPair::new("run", 1).expect("veth pair");
    // The switch at its default place (/run/ioth/vde/IF…), found by `ioth run --iface`.
    let server = Server::start(
        &pair,
        0,
        "echo",
        &["--vde", "--vde-mode", "770", "--vde-group", "nogroup"],
    );
    let iface = pair.host_if.clone();
    // vde_switch's -m and -g: the default directory is let in to a group.
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let i = iface.clone();
        let dir = pair
            .host
            .run(move || ioth_dataplane::endpoint::switch::default_dir(&i));
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .expect("group lookup")
            .expect("nogroup")
            .gid
            .as_raw();
        let d = std::fs::metadata(&dir).expect("switch dir");
        assert_eq!((d.permissions().mode() & 0o777, d.gid()), (0o770, nogroup));
        let c = std::fs::metadata(dir.join("ctl")).expect("ctl");
        assert_eq!((c.permissions().mode() & 0o777, c.gid()), (0o660, nogroup));
    }
    let join = ["--iface", iface.as_str()];

    // The program reaches the NIC's peer from its own addresses; its status comes back.
    let out = ioth_run(
        &pair,
        &[&join[..], &["--ipv4", "10.99.0.60/24", "--ipv6", "fd00:99::60/64"]].concat(),
        &[
            "sh",
            "-c",
            "ping -c 2 -W 3 10.99.0.2 >/dev/null && ping -6 -c 2 -W 3 fd00:99::2 >/dev/null && exit 7",
        ],
    )
    .output()
    .expect("ioth run");
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stdout stays the program's; a server inside is reached from the peer.
    let mut srv = ioth_run(
        &pair,
        &[&join[..], &["--ipv4", "10.99.0.61/24"]].concat(),
        &[
            "socat",
            "TCP-LISTEN:8080,reuseaddr",
            "EXEC:echo hi-from-run",
        ],
    )
    .spawn()
    .expect("ioth run socat");
    let mut reply = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reply.contains("hi-from-run") && Instant::now() < deadline {
        let (_, out) = peer_ok(
            &pair.peer,
            "sh",
            &[
                "-c",
                "timeout 3 socat - TCP:10.99.0.61:8080,connect-timeout=1",
            ],
        );
        reply = out;
    }
    assert!(reply.contains("hi-from-run"), "{reply:?}");
    assert!(wait_exit(&mut srv, 10).success());
    let stdout = ioth_run(&pair, &join, &["echo", "from-inside"])
        .output()
        .expect("echo");
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), "from-inside\n");

    // SIGTERM to ioth run reaches the program (143); Ctrl-C to the job (SIGINT to the
    // process group) ends it once (130).
    for (sig, group, want) in [
        (nix::sys::signal::Signal::SIGTERM, false, 143),
        (nix::sys::signal::Signal::SIGINT, true, 130),
    ] {
        let mut c = ioth_run(&pair, &join, &["sleep", "30"])
            .spawn()
            .expect("sleep");
        thread::sleep(Duration::from_millis(700));
        let pid = c.id() as i32;
        let target = nix::unistd::Pid::from_raw(if group { -pid } else { pid });
        nix::sys::signal::kill(target, sig).expect("kill");
        let st = wait_exit(&mut c, 10);
        assert_eq!(st.code(), Some(want), "{sig:?}");
    }

    // A missing switch is a clear error.
    let out = ioth_run(&pair, &["--vde", "/nonexistent/ioth"], &["true"])
        .output()
        .expect("ioth run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no VDE switch at /nonexistent/ioth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every port went with its program.
    let mut closed = 0;
    while let Ok(line) = server.lines.recv_timeout(Duration::from_millis(300)) {
        closed += usize::from(line.contains(" closed"));
    }
    assert_eq!(closed, 5, "five programs, five ports closed");
    let (status, lines) = server.stop();
    assert!(status.success(), "{lines:?}");
    println!("ioth run: exit status, stdout, a server inside, SIGTERM and Ctrl-C, cleanup: ok");
}

/// `ioth serve ARGS` on the host side, read up to its final ready line (its lines returned);
/// killed on drop.
fn serve_ready(pair: &VethPair, args: &[&str]) -> (Bg, Vec<String>) {
    let mut c = pair.host.command(env!("CARGO_BIN_EXE_ioth"));
    c.args(["serve", "--iface", &pair.host_if])
        .args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut server = Bg(c.spawn().expect("ioth serve"));
    let out = server.0.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let l = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("ioth serve did not become ready");
        let last = l.starts_with("ready threads=");
        seen.push(l);
        if last {
            return (server, seen);
        }
    }
}

/// Host 2: Linux's own VXLAN device in the peer namespace, `vx0` at 10.200.0.2/24 — unicast
/// to ioth's host address, or a multicast group.
fn host2_vxlan(pair: &VethPair, group: bool) {
    let ip = |args: &[&str]| pair.peer.ip(args).expect("ip");
    let mut add = vec![
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "local",
        "10.99.0.2",
    ];
    if group {
        add.extend(["group", "239.1.1.1", "dev", pair.peer_if.as_str()]);
    } else {
        add.extend(["remote", "10.99.0.1", "dev", pair.peer_if.as_str()]);
    }
    ip(&add);
    if group {
        ip(&["route", "add", "224.0.0.0/4", "dev", &pair.peer_if]);
    }
    ip(&["addr", "add", "10.200.0.2/24", "dev", "vx0"]);
    ip(&["addr", "add", "fd00:200::2/64", "dev", "vx0", "nodad"]);
    ip(&["link", "set", "vx0", "up"]);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_kernel_vxlan_on_host_2_reaches_a_thread_and_a_vde_port_on_host_1() {
    for group in [false, true] {
        let pair = VethPair::new(if group { "vxg" } else { "vxu" }, 1).expect("veth pair");
        host2_vxlan(&pair, group);
        let dir = TempDir::new(if group { "vxg" } else { "vxu" });
        let sw = dir.0.to_string_lossy().into_owned();
        let spec = if group {
            format!("239.1.1.1,vni=42,dev={}", pair.host_if)
        } else {
            "10.99.0.2,vni=42".to_owned()
        };
        // The thread's addresses are on the VXLAN segment, not the NIC's LAN.
        let (_server, _) = serve_ready(
            &pair,
            &[
                "--threads",
                "1",
                "--ipv4",
                "10.200.0.11/24",
                "--ipv6",
                "fd00:200::11/64",
                "--vde",
                &sw,
                "--vxlan",
                &spec,
            ],
        );
        let (port, _plug) = plugged(
            if group { "vxg-c" } else { "vxu-c" },
            &dir.url(""),
            "vde0",
            "10.200.0.50/24",
            "fd00:200::50/64",
        );
        // Host 2 reaches the thread stack and the VDE port through its vxlan device, over
        // IPv4 and IPv6, and the port reaches host 2.
        for dst in ["10.200.0.11", "fd00:200::11", "10.200.0.50", "fd00:200::50"] {
            ping(&pair.peer, dst);
        }
        ping(&port, "10.200.0.2");
        ping(&port, "fd00:200::2");
        // TCP and UDP both ways: host 2's kernel leaves the inner checksums of what its vxlan
        // device sends over a veth partial (offload); they must arrive complete.
        let _tcp = bg(
            &port,
            "socat",
            &["TCP-LISTEN:7007,fork,reuseaddr", "EXEC:cat"],
        );
        let _udp = bg(&port, "socat", &["UDP-RECVFROM:7008,fork", "EXEC:cat"]);
        let _udp6 = bg(&port, "socat", &["UDP6-RECVFROM:7009,fork", "EXEC:cat"]);
        thread::sleep(Duration::from_millis(300));
        for (what, cmd) in [
            ("TCP to the thread", "TCP:10.200.0.11:7,connect-timeout=5"),
            ("UDP to the thread", "UDP:10.200.0.11:7"),
            ("TCP to the port", "TCP:10.200.0.50:7007,connect-timeout=5"),
            ("UDP to the port", "UDP:10.200.0.50:7008"),
            (
                "TCP to the thread (v6)",
                "TCP:[fd00:200::11]:7,connect-timeout=5",
            ),
            ("UDP to the port (v6)", "UDP6:[fd00:200::50]:7009"),
        ] {
            let (ok, out) = peer_ok(
                &pair.peer,
                "sh",
                &[
                    "-c",
                    &format!("echo hello-vx | timeout 10 socat -t 2 - {cmd}"),
                ],
            );
            assert!(ok && out.contains("hello-vx"), "{what} from host 2: {out}");
        }
        // The kernel learned ioth's side behind 10.99.0.1 (unicast after the first frames).
        let fdb = String::from_utf8_lossy(
            &pair
                .peer
                .exec("bridge", &["fdb", "show", "dev", "vx0"])
                .expect("fdb")
                .stdout,
        )
        .into_owned();
        assert!(
            fdb.contains("dst 10.99.0.1"),
            "host 2 learned nothing behind ioth: {fdb}"
        );
        println!(
            "vxlan ({}): host 2 <-> thread and port ok; host 2's fdb:\n{fdb}",
            if group { "group" } else { "unicast" }
        );
    }
}

/// A frame from `src` to `dst` with `len` bytes in all.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn hostile_vde_clients_harm_nobody_and_leak_nothing() {
    use ioth_dataplane::endpoint::switch::vde::VdeClient;
    use std::os::unix::net::UnixStream;

    let pair = VethPair::new("vdeh", 1).expect("veth pair");
    let dir = TempDir::new("hostile");
    let sw = dir.0.to_string_lossy().into_owned();
    let server = Server::start(&pair, 1, "echo", &["--vde", &sw, "--port-pps", "500"]);
    let thread_mac: [u8; 6] = server.ready[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mac="))
        .and_then(|m| m.parse::<ioth_dataplane::wire::Mac>().ok())
        .expect("thread MAC")
        .0;
    let (good, _plug) = plugged(
        "vdeh-a",
        &dir.url(""),
        "vde0",
        "10.99.0.50/24",
        "fd00:99::50/64",
    );
    ping(&pair.peer, "10.99.0.50");

    // Handshakes cut short and control connections that never write: the switch keeps
    // serving (at most 64 wait; more are refused).
    let ctl = dir.0.join("ctl");
    let mut idle: Vec<UnixStream> = (0..80)
        .filter_map(|_| UnixStream::connect(&ctl).ok())
        .collect();
    {
        use std::io::Write as _;
        let mut cut = UnixStream::connect(&ctl).expect("ctl");
        cut.write_all(&0xfeed_faceu32.to_ne_bytes())
            .expect("a quarter request");
        idle.push(cut);
        let mut bad = UnixStream::connect(&ctl).expect("ctl");
        bad.write_all(&[0x55; 200]).expect("garbage request");
    }
    ping(&pair.peer, "10.99.0.50");

    // Garbage, runts, oversize datagrams and a spoofed MAC (the thread's): dropped.
    let evil = VdeClient::connect(&dir.0, "hostile").expect("hostile client");
    let evil_mac = [0x02, 0x66, 0, 0, 0, 1];
    for f in [
        vec![0u8; 3],
        vec![0xffu8; 13],
        frame([0xff; 6], evil_mac, 10_000),
        frame([0xff; 6], thread_mac, 60),
        frame([0xff; 6], [0x01, 0, 0, 0, 0, 1], 60),
        frame([0xff; 6], [0; 6], 60),
    ] {
        evil.send(&f);
    }
    // From its own MAC but a thread's IP address, or the host's: ARP and IPv4 spoofing.
    let spoof_arp = |spa: [u8; 4]| {
        let mut f = frame([0xff; 6], evil_mac, 60);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        f[22..28].copy_from_slice(&evil_mac);
        f[28..32].copy_from_slice(&spa);
        f
    };
    for spa in [[10, 99, 0, 11], [10, 99, 0, 1]] {
        evil.send(&spoof_arp(spa));
    }
    // A flood of broadcasts (100,000 frames) while the good tap keeps answering.
    let flooder = thread::spawn(move || {
        let f = frame([0xff; 6], evil_mac, 64);
        for _ in 0..100_000 {
            evil.send(&f);
        }
        evil
    });
    ping(&pair.peer, "10.99.0.50");
    let evil = flooder.join().expect("flood");
    // A client that never reads: what is sent to it is dropped when its queue is full.
    let deaf = VdeClient::connect(&dir.0, "never reads").expect("deaf client");
    for _ in 0..3 {
        ping(&pair.peer, "10.99.0.50");
        ping(&good, "10.99.0.11");
    }
    // The thread's MAC is still the thread's: the peer reaches it, and the switch does not
    // own it.
    ping(&pair.peer, "10.99.0.11");
    let eps = ioth_json(
        &pair.host,
        &["endpoints", "--iface", &pair.host_if, "--json"],
    );
    let thread_str = ioth_dataplane::wire::Mac(thread_mac).to_string();
    let owners: Vec<u64> = eps
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| {
            e["macs"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == thread_str.as_str()))
        })
        .map(|e| e["slot"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(owners.len(), 1, "{thread_str} owned once: {eps}");
    drop((evil, deaf, idle));
    let (status, lines) = server.stop();
    assert!(status.success(), "{lines:?}");
    let summary = lines
        .iter()
        .find(|l| l.starts_with("stopped vde switch"))
        .expect("switch summary");
    let count = |what: &str| -> u64 {
        summary
            .split(", ")
            .find_map(|p| p.strip_prefix(what))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("spoofed ") >= 2,
        "the two spoofed ARP replies: {summary}"
    );
    assert!(
        count("over rate ") > 0,
        "a flood over --port-pps 500: {summary}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stopped: ") && l.ends_with("frames accounted: yes")),
        "{lines:?}"
    );
    println!("hostile clients: {summary}");
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_vxvde_client_on_host_2_joins_without_a_switch() {
    let pair = VethPair::new("vxv", 1).expect("veth pair");
    pair.peer
        .ip(&["route", "add", "224.0.0.0/4", "dev", &pair.peer_if])
        .expect("multicast route");
    let dir = TempDir::new("vxv");
    let sw = dir.0.to_string_lossy().into_owned();
    let vxvde = format!(",dev={}", pair.host_if);
    let (_server, seen) = serve_ready(
        &pair,
        &[
            "--threads",
            "1",
            "--ipv4",
            "10.201.0.11/24",
            "--vde",
            &sw,
            "--vxvde",
            &vxvde,
        ],
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("vxvde port to 239.0.0.1 vni 1 port 14789")),
        "{seen:?}"
    );
    // Host 2: vdeplug4's own vxvde client, a tap on the multicast VDE network.
    let _vxvde = bg(
        &pair.peer,
        "vde_plug",
        &[
            &format!("vxvde://239.0.0.1/if={}", pair.peer_if),
            "tap://vx1",
        ],
    );
    wait_for_link(&pair.peer, "vx1");
    pair.peer
        .ip(&["addr", "add", "10.201.0.2/24", "dev", "vx1"])
        .expect("addr");
    pair.peer.ip(&["link", "set", "vx1", "up"]).expect("up");
    let (port, _plug) = plugged(
        "vxv-c",
        &dir.url(""),
        "vde0",
        "10.201.0.50/24",
        "fd00:201::50/64",
    );
    ping(&pair.peer, "10.201.0.50");
    ping(&pair.peer, "10.201.0.11");
    ping(&port, "10.201.0.2");
    println!("vxvde: host 2's vde_plug vxvde:// reaches a VDE port and a thread, and back");
}
