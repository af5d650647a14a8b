//! `ioth serve` on a veth pair between fresh namespaces, checked with real peers from the
//! peer namespace: ping, curl, socat, and kernel TCP/UDP sockets.
//!
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{Server, ioth_json, peer_ok, v4, v6};
use ioth_dataplane::netns::{NetNs, VethPair};

fn xdp_attached(ns: &NetNs, ifname: &str) -> bool {
    let out = ns
        .ip(&["-d", "link", "show", ifname])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn every_thread_answers_ping_curl_tcp_and_udp_at_its_own_addresses() {
    let threads = 4;
    let pair = VethPair::new("serve", 2).expect("veth pair");
    let server = Server::start(&pair, threads, "http", &[]);
    for i in 0..threads {
        let line = server
            .ready
            .iter()
            .find(|l| l.starts_with(&format!("ready thread={i} ")))
            .expect("a ready line per thread");
        assert!(line.contains(&format!("ipv4={} ", v4(i))), "{line}");
        for ip in [v4(i).to_string(), v6(i).to_string()] {
            let (ok, out) = peer_ok(
                &pair.peer,
                "ping",
                &["-c", "3", "-i", "0.2", "-W", "2", &ip],
            );
            assert!(ok, "ping {ip} failed:\n{out}");
        }
        for url in [format!("http://{}/", v4(i)), format!("http://[{}]/", v6(i))] {
            let (ok, body) = peer_ok(&pair.peer, "curl", &["-sS", "-m", "5", &url]);
            assert!(ok, "curl {url} failed");
            assert_eq!(body, format!("ioth thread {i} at {}\n", v4(i)), "{url}");
        }
    }
    // The host's own address still belongs to the kernel.
    let (ok, _) = peer_ok(&pair.peer, "ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(ok, "host ping failed");
    let (status, rest) = server.stop();
    assert!(
        status.success(),
        "ioth serve exited with {status}: {rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("stopped: classifier detached")),
        "{rest:?}"
    );
    assert!(
        !xdp_attached(&pair.host, &pair.host_if),
        "program left attached"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn echo_over_tcp_and_udp_with_socat_and_kernel_sockets() {
    let threads = 2;
    let pair = VethPair::new("echo", 2).expect("veth pair");
    let server = Server::start(&pair, threads, "echo", &[]);
    for i in 0..threads {
        for target in [
            format!("TCP:{}:7", v4(i)),
            format!("TCP6:[{}]:7", v6(i)),
            format!("UDP:{}:7", v4(i)),
            format!("UDP6:[{}]:7", v6(i)),
        ] {
            let msg = format!("hello {target}");
            let out = pair
                .peer
                .command("socat")
                .args(["-t", "2", "-T", "3", "-", &target])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    c.stdin
                        .take()
                        .unwrap()
                        .write_all(format!("{msg}\n").as_bytes())?;
                    c.wait_with_output()
                })
                .expect("socat");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{msg}\n"),
                "{target}"
            );
        }
    }
    // 1000 concurrent TCP connections over both threads, each echoing its own message.
    let conns = pair.peer.run(move || {
        let mut streams = Vec::new();
        for c in 0..1000u32 {
            let ip = IpAddr::V4(v4((c % 2) as u8));
            let s = TcpStream::connect_timeout(&SocketAddr::new(ip, 7), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connection {c}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            streams.push((c, s));
        }
        for (c, s) in &mut streams {
            s.write_all(format!("connection {c:04}\n").as_bytes())
                .unwrap();
        }
        let mut ok = 0;
        for (c, s) in &mut streams {
            let mut buf = [0u8; 16];
            s.read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("connection {c}: {e}"));
            assert_eq!(&buf, format!("connection {c:04}\n").as_bytes());
            ok += 1;
        }
        ok
    });
    assert_eq!(conns, 1000);
    // UDP datagrams echoed, at a moderate rate.
    let lost = pair.peer.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut lost = 0;
        let mut buf = [0u8; 64];
        for n in 0..2000u32 {
            let msg = n.to_be_bytes();
            s.send_to(&msg, (v4(0), 7)).unwrap();
            match s.recv(&mut buf) {
                Ok(4) if buf[..4] == msg => {}
                _ => lost += 1,
            }
        }
        lost
    });
    assert_eq!(lost, 0, "UDP datagrams lost");
    let (status, rest) = server.stop();
    assert!(status.success(), "{rest:?}");
}

/// The IPv4 keys of the IOTH_BY_IPV4 map of the program attached to `ifname`, read with
/// bpftool (nothing of ours in the loop).
fn classifier_ipv4_keys(ns: &NetNs, ifname: &str) -> Vec<Ipv4Addr> {
    let out = ns
        .ip(&["-d", "link", "show", ifname])
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(id) = text
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
    else {
        return Vec::new();
    };
    let bpftool = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("bpftool")
            .arg("-j")
            .args(args)
            .output()
            .expect("bpftool");
        serde_json::from_slice(&out.stdout).expect("bpftool JSON")
    };
    let prog = bpftool(&["prog", "show", "id", id]);
    for map in prog["map_ids"].as_array().expect("map_ids") {
        let mid = map.to_string();
        if bpftool(&["map", "show", "id", &mid])["name"] != "IOTH_BY_IPV4" {
            continue;
        }
        let dump = bpftool(&["map", "dump", "id", &mid]);
        return dump
            .as_array()
            .expect("dump")
            .iter()
            .map(|e| {
                let b: Vec<u8> = e["key"]
                    .as_array()
                    .expect("raw key bytes")
                    .iter()
                    .map(|x| {
                        u8::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16)
                            .unwrap()
                    })
                    .collect();
                Ipv4Addr::new(b[0], b[1], b[2], b[3])
            })
            .collect();
    }
    panic!("no IOTH_BY_IPV4 map on program {id}");
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_panicking_thread_is_noticed_restarted_and_the_run_ends_non_zero() {
    let pair = VethPair::new("panic", 1).expect("veth pair");
    let server = Server::start(&pair, 2, "http", &["--test-panic-thread", "1"]);
    let ready = Instant::now();
    let mut keys = classifier_ipv4_keys(&pair.host, &pair.host_if);
    keys.sort();
    assert_eq!(keys, vec![v4(0), v4(1)]);
    // Thread 1 panics one second after it is ready; its stack drops while unwinding, which
    // removes its classifier entries: gone within a second of the panic.
    let gone = loop {
        let keys = classifier_ipv4_keys(&pair.host, &pair.host_if);
        if keys == vec![v4(0)] {
            break ready.elapsed();
        }
        assert!(
            ready.elapsed() < Duration::from_secs(2),
            "entries still there: {keys:?}"
        );
        thread::sleep(Duration::from_millis(5));
    };
    println!("panicked thread's entries removed {gone:?} after ready (panic at ~1 s)");
    // The supervisor says so at once.
    let died = server
        .lines
        .recv_timeout(Duration::from_secs(2))
        .expect("a line about the death");
    assert!(
        died.contains("thread=1 died (panicked: thread 1: panic requested"),
        "{died}"
    );
    // Thread 0 keeps serving meanwhile.
    let (ok, _) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{}/", v4(0))],
    );
    assert!(ok, "thread 0 stopped serving");
    // A second later thread 1 is back, with the same addresses.
    let back = server
        .lines
        .recv_timeout(Duration::from_secs(5))
        .expect("a line about the restart");
    assert!(back.starts_with("restarted ready thread=1 "), "{back}");
    let mut keys = classifier_ipv4_keys(&pair.host, &pair.host_if);
    keys.sort();
    assert_eq!(keys, vec![v4(0), v4(1)]);
    let (ok, out) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{}/", v4(1))],
    );
    assert!(
        ok && out.contains("thread 1"),
        "the restarted thread: {out}"
    );
    // The run ends non-zero: a supervisor above hears of the death.
    let (status, rest) = server.stop();
    assert!(!status.success(), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("thread=1") && l.contains("died 1 time(s), restarted")),
        "{rest:?}"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_100_mb_transfer_each_way_and_100k_udp_datagrams() {
    use sha2::{Digest, Sha256};
    const BYTES: usize = 100 * 1024 * 1024;
    let pair = VethPair::new("bulk", 2).expect("veth pair");
    let server = Server::start(&pair, 1, "echo", &[]);
    let (sent, received, secs) = pair.peer.run(move || {
        let s =
            TcpStream::connect_timeout(&SocketAddr::new(v4(0).into(), 7), Duration::from_secs(5))
                .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let started = Instant::now();
        let writer = thread::spawn(move || {
            // Deterministic, non-repeating content: a counter stream.
            let mut h = Sha256::new();
            let mut block = vec![0u8; 64 * 1024];
            let mut n: u64 = 0;
            let mut left = BYTES;
            while left > 0 {
                for chunk in block.chunks_exact_mut(8) {
                    chunk.copy_from_slice(&n.to_le_bytes());
                    n += 1;
                }
                let len = left.min(block.len());
                w.write_all(&block[..len]).expect("upload");
                h.update(&block[..len]);
                left -= len;
            }
            w.shutdown(std::net::Shutdown::Write).unwrap();
            h.finalize()
        });
        let mut r = s;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < BYTES {
            let n = r.read(&mut buf).expect("download");
            assert!(n > 0, "echo closed after {got} bytes");
            h.update(&buf[..n]);
            got += n;
        }
        let sent = writer.join().unwrap();
        (sent, h.finalize(), started.elapsed().as_secs_f64())
    });
    assert_eq!(sent, received, "sha256 of what came back differs");
    println!(
        "100 MB up and 100 MB down through the echo thread in {secs:.1} s ({:.0} Mbit/s each way, debug build)",
        BYTES as f64 * 8.0 / secs / 1e6
    );
    // 100,000 UDP datagrams, at most 8 in flight: none may be lost.
    let (lost, secs) = pair.peer.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((v4(0), 7)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let started = Instant::now();
        let (mut next, mut done, mut lost) = (0u32, 0u32, 0u32);
        let mut buf = [0u8; 64];
        while done < 100_000 {
            while next < 100_000 && next - done < 8 {
                s.send(&next.to_be_bytes()).unwrap();
                next += 1;
            }
            match s.recv(&mut buf) {
                Ok(4) => done += 1,
                Ok(_) => panic!("odd datagram"),
                Err(_) => {
                    // Timed out: whatever is in flight is lost.
                    lost += next - done;
                    done = next;
                }
            }
        }
        (lost, started.elapsed().as_secs_f64())
    });
    assert_eq!(lost, 0, "UDP datagrams lost");
    println!("100,000 UDP datagrams echoed in {secs:.1} s, none lost");
    let (status, rest) = server.stop();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("frames accounted: yes")),
        "{rest:?}"
    );
}

/// Writes `frames` as a pcap file (Ethernet link type).
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32 / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(i as u32 % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Hostile frames addressed to a thread: truncations, bad checksums, odd TCP flag sets, IP
/// options, fragments, random payloads.
fn hostile_frames(dst_mac: [u8; 6], src_mac: [u8; 6], dst: Ipv4Addr, n: usize) -> Vec<Vec<u8>> {
    use ioth_common::{fixtures::*, wire::*};
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    let mut rng = SmallRng::seed_from_u64(7);
    let src = [10, 99, 0, 2];
    let tcp = |flags: u8, rng: &mut SmallRng| {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&rng.random::<u16>().to_be_bytes());
        t[2..4].copy_from_slice(&[0, 80]);
        t[4..8].copy_from_slice(&rng.random::<u32>().to_be_bytes());
        t[12] = 0x50;
        t[13] = flags;
        t[14..16].copy_from_slice(&[0xff, 0xff]);
        t[16..18].copy_from_slice(&rng.random::<u16>().to_be_bytes());
        t
    };
    (0..n)
        .map(|i| {
            let mut ip = match i % 6 {
                0 => ipv4(src, dst.octets(), 6, &tcp(rng.random(), &mut rng)),
                1 => ipv4(src, dst.octets(), 6, &tcp(0x3f, &mut rng)), // every flag at once
                2 => {
                    let mut p = ipv4(src, dst.octets(), 17, &udp(1, 7, b"x"));
                    p[6] = 0x20; // a fragment
                    p
                }
                3 => {
                    let mut p = ipv4(src, dst.octets(), 6, &tcp(0x02, &mut rng));
                    p[0] = 0x4f; // claims 60 bytes of header (options)
                    p
                }
                4 => ipv4(src, dst.octets(), 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
                _ => (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect(),
            };
            if rng.random_bool(0.5) {
                let cut = rng.random_range(0..=ip.len());
                ip.truncate(cut);
            }
            if rng.random_bool(0.3) && !ip.is_empty() {
                let k = rng.random_range(0..ip.len());
                ip[k] ^= 0xff;
            }
            eth(dst_mac, src_mac, ETH_P_IPV4, &ip)
        })
        .collect()
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).expect("mac");
    }
    m
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn hostile_frames_never_crash_a_thread_or_leak_a_frame() {
    let pair = VethPair::new("hostile", 1).expect("veth pair");
    let server = Server::start(&pair, 2, "http", &[]);
    let mut frames = Vec::new();
    for i in 0..2u8 {
        let line = server
            .ready
            .iter()
            .find(|l| l.starts_with(&format!("ready thread={i} ")))
            .unwrap();
        let mac = line
            .split("mac=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        frames.extend(hostile_frames(parse_mac(mac), pair.peer_mac, v4(i), 10_000));
    }
    let pcap = std::env::temp_dir().join(format!("ioth-hostile-{}.pcap", std::process::id()));
    write_pcap(&pcap, &frames);
    // Replayed as fast as tcpreplay goes: a flood.
    let (ok, out) = peer_ok(
        &pair.peer,
        "tcpreplay",
        &["--topspeed", "-i", &pair.peer_if, &pcap.to_string_lossy()],
    );
    let _ = std::fs::remove_file(&pcap);
    assert!(ok, "tcpreplay failed: {out}");
    for i in 0..2 {
        let (ok, body) = peer_ok(
            &pair.peer,
            "curl",
            &["-sS", "-m", "5", &format!("http://{}/", v4(i))],
        );
        assert!(
            ok && body.contains(&format!("thread {i}")),
            "thread {i} stopped serving"
        );
    }
    let (status, rest) = server.stop();
    assert!(status.success(), "{rest:?}");
    assert!(!rest.iter().any(|l| l.contains("panicked")), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("frames accounted: yes")),
        "{rest:?}"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn bad_input_is_refused_with_a_clear_error_and_nothing_left_behind() {
    let pair = VethPair::new("refuse", 1).expect("veth pair");
    let run = |args: &[&str]| {
        let out = pair
            .host
            .command(env!("CARGO_BIN_EXE_ioth"))
            .arg("serve")
            .args(args)
            .output()
            .expect("run ioth serve");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let iface = pair.host_if.as_str();
    // The host's own address.
    let (st, err) = run(&["--iface", iface, "--ipv4", "10.99.0.1/24"]);
    assert!(!st.success());
    assert!(
        err.contains("10.99.0.1 is configured on a host interface"),
        "{err}"
    );
    // An unknown interface.
    let (st, err) = run(&["--iface", "no-such-if0", "--ipv4", "10.99.0.11/24"]);
    assert!(!st.success());
    assert!(err.contains("no-such-if0"), "{err}");
    // Invalid addresses and ranges.
    for bad in [
        "10.99.0.11",
        "10.99.0.300/24",
        "10.99.0.11/40",
        "224.0.0.1/24",
    ] {
        let (st, err) = run(&["--iface", iface, "--ipv4", bad]);
        assert!(!st.success(), "{bad} accepted");
        assert!(err.starts_with("ioth: error:"), "{bad}: {err}");
    }
    let (st, err) = run(&[
        "--iface",
        iface,
        "--ipv4",
        "10.99.0.250/24",
        "--threads",
        "10",
    ]);
    assert!(!st.success() && err.contains("past .254"), "{err}");
    // A missing capability is named.
    let out = pair
        .host
        .command("setpriv")
        .args(["--inh-caps=-net_raw", "--bounding-set=-net_raw"])
        .arg(env!("CARGO_BIN_EXE_ioth"))
        .args(["serve", "--iface", iface, "--ipv4", "10.99.0.11/24"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs CAP_NET_RAW"), "{err}");
    // Nothing was left attached by the failed starts.
    assert!(!xdp_attached(&pair.host, &pair.host_if));
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn status_and_endpoints_read_a_running_server_from_another_process() {
    let pair = VethPair::new("inspect", 2).expect("veth pair");
    let server = Server::start(&pair, 2, "http", &[]);
    for _ in 0..3 {
        let (ok, _) = peer_ok(
            &pair.peer,
            "curl",
            &["-sS", "-m", "5", &format!("http://{}/", v4(1))],
        );
        assert!(ok);
    }
    let status = ioth_json(&pair.host, &["status", "--json"]);
    let s = &status.as_array().expect("list")[0];
    assert_eq!(s["iface"], pair.host_if.as_str());
    assert_eq!(s["mode"], "driver");
    assert_eq!(s["xsk"], "copy", "veth binds in copy mode");
    assert_eq!(s["queues"], 2);
    assert_eq!(s["endpoints"], 2);
    assert!(s["program_id"].as_u64().unwrap() > 0);
    assert!(s["xdp_packets"]["redirect"].as_u64().unwrap() > 0);
    let eps = ioth_json(
        &pair.host,
        &["endpoints", "--iface", &pair.host_if, "--json"],
    );
    let eps = eps.as_array().expect("list");
    assert_eq!(eps.len(), 2);
    for i in 0..2u8 {
        let e = eps
            .iter()
            .find(|e| e["ipv4"][0] == v4(i).to_string())
            .unwrap_or_else(|| panic!("no endpoint for {}", v4(i)));
        assert_eq!(e["ipv6"][0], v6(i).to_string());
        assert_eq!(e["pid"].as_u64().unwrap(), u64::from(server.child.id()));
        assert!(e["tid"].as_u64().unwrap() > 0 && e["tid"] != e["pid"]);
        assert_eq!(e["owner_alive"], true);
        let rx = e["rx_packets"].as_u64().unwrap();
        if i == 1 {
            assert!(rx >= 9, "three HTTP exchanges: {rx}");
        }
    }
    let (st, _) = server.stop();
    assert!(st.success());
    // Nothing attached any more: an empty list, and a clear error for the interface.
    assert_eq!(
        ioth_json(&pair.host, &["status", "--json"]),
        serde_json::json!([])
    );
    let out = pair
        .host
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(["endpoints", "--iface", &pair.host_if])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ioth classifier attached"));
}

/// A bpffs mounted for one test (pins must outlive `ip netns exec`, which remounts /sys).
struct Bpffs(std::path::PathBuf);

impl Bpffs {
    fn mount() -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ioth-bpffs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "mount bpffs");
        Bpffs(p)
    }
    fn env(&self) -> (&'static str, &str) {
        ("IOTH_BPFFS", self.0.to_str().unwrap())
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn ioth_env(ns: &NetNs, env: (&str, &str), args: &[&str]) -> (bool, String, String) {
    let out = ns
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(args)
        .env(env.0, env.1)
        .output()
        .expect("run ioth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The unicast MACs on `iface`'s own address list (`bridge fdb show dev IF`: its `self`
/// entries), which a real NIC's unicast filter lets through.
fn nic_macs(ns: &NetNs, iface: &str) -> Vec<String> {
    let out = ns
        .exec("bridge", &["fdb", "show", "dev", iface])
        .expect("bridge fdb show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" self"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| u8::from_str_radix(&m[..2], 16).is_ok_and(|b| b & 1 == 0))
        .map(str::to_owned)
        .collect()
}

/// The MACs in a server's ready lines.
fn ready_macs(ready: &[String]) -> Vec<String> {
    ready
        .iter()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn endpoint_macs_are_on_the_nics_address_list_while_they_live() {
    let pair = VethPair::new("nicuc", 1).expect("veth pair");
    assert!(nic_macs(&pair.host, &pair.host_if).is_empty());
    let server = Server::start(&pair, 3, "echo", &[]);
    let mut want = ready_macs(&server.ready);
    assert_eq!(want.len(), 3, "{:?}", server.ready);
    let mut have = nic_macs(&pair.host, &pair.host_if);
    want.sort();
    have.sort();
    assert_eq!(
        have, want,
        "the device's address list holds the endpoints' MACs"
    );
    let (st, _) = server.stop();
    assert!(st.success());
    assert!(
        nic_macs(&pair.host, &pair.host_if).is_empty(),
        "the MACs go with the endpoints"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_pinned_attachment_outlives_servers_and_dead_owners_are_reaped() {
    use std::os::unix::fs::PermissionsExt as _;
    let fs = Bpffs::mount();
    let env = fs.env();
    let pair = VethPair::new("pinned", 1).expect("veth pair");
    let iface = pair.host_if.clone();
    let (ok, out, err) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(ok, "attach: {err}");
    assert!(out.contains("pinned at"), "{out}");
    // Root-only pins.
    let dir = std::fs::read_dir(fs.0.join("ioth"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in std::fs::read_dir(&dir).unwrap() {
        let m = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
    // The attachment outlived `ioth attach`.
    assert!(xdp_attached(&pair.host, &iface));
    let (ok, _, err) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(!ok && err.contains("already has a pinned"), "{err}");

    // A server uses it and leaves it attached.
    let server = Server::start_env(&pair, 2, "http", &[], &[env]);
    assert!(
        server
            .ready
            .iter()
            .any(|l| l.contains("xdp=driver(pinned)")),
        "{:?}",
        server.ready
    );
    let (ok, body) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{}/", v4(1))],
    );
    assert!(ok && body.contains("thread 1"));
    // Another server on the same attachment while this one runs: an address the first one
    // owns is refused, and so are new addresses (the kernel gives each queue one UMEM, so one
    // process per interface); each is a clear error that leaves nothing behind.
    let count = || {
        let (_, eps, _) = ioth_env(&pair.host, env, &["endpoints", "--iface", &iface, "--json"]);
        serde_json::from_str::<serde_json::Value>(&eps)
            .unwrap()
            .as_array()
            .map_or(0, Vec::len)
    };
    let (ok, _, err) = ioth_env(
        &pair.host,
        env,
        &[
            "serve",
            "--iface",
            &iface,
            "--ipv4",
            &format!("{}/24", v4(1)),
            "--mac",
            "02:00:00:00:aa:00",
        ],
    );
    assert!(
        !ok && err.contains(&format!("{} is already claimed", v4(1))),
        "{err}"
    );
    let (ok, _, err) = ioth_env(
        &pair.host,
        env,
        &[
            "serve",
            "--iface",
            &iface,
            "--ipv4",
            "10.99.0.31/24",
            "--mac",
            "02:00:00:00:aa:00",
        ],
    );
    assert!(!ok && err.contains("one process per interface"), "{err}");
    assert_eq!(count(), 2, "a failed server left endpoints behind");
    // Detaching under a live server needs --force.
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(
        !ok && err.contains("2 endpoint(s)") && err.contains("detach --force"),
        "{err}"
    );
    assert!(xdp_attached(&pair.host, &iface));
    let (st, rest) = server.stop();
    assert!(st.success());
    assert!(
        rest.iter().any(|l| l.contains("left attached (pinned)")),
        "{rest:?}"
    );
    assert!(xdp_attached(&pair.host, &iface));
    let (_, eps, _) = ioth_env(&pair.host, env, &["endpoints", "--iface", &iface, "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&eps).unwrap(),
        serde_json::json!([])
    );

    assert!(nic_macs(&pair.host, &iface).is_empty());

    // A server killed with SIGKILL leaves its entries (and its MACs on the device's address
    // list); they are reaped.
    let mut server = Server::start_env(&pair, 2, "http", &[], &[env]);
    let macs = ready_macs(&server.ready);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut left = nic_macs(&pair.host, &iface);
    left.sort();
    let mut want = macs.clone();
    want.sort();
    assert_eq!(
        left, want,
        "a killed server's MACs stay listed until reaped"
    );
    let (_, eps, _) = ioth_env(&pair.host, env, &["endpoints", "--iface", &iface, "--json"]);
    let eps: serde_json::Value = serde_json::from_str(&eps).unwrap();
    assert_eq!(eps.as_array().unwrap().len(), 2);
    assert!(
        eps.as_array()
            .unwrap()
            .iter()
            .all(|e| e["owner_alive"] == false),
        "{eps}"
    );
    let (ok, out, err) = ioth_env(&pair.host, env, &["reap", "--iface", &iface]);
    assert!(ok && out.contains("reaped 2"), "{out}{err}");
    assert!(
        nic_macs(&pair.host, &iface).is_empty(),
        "reaping takes the dead owner's MACs off the device"
    );
    let (_, eps, _) = ioth_env(&pair.host, env, &["endpoints", "--iface", &iface, "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&eps).unwrap(),
        serde_json::json!([])
    );
    // ...and a new server reaps them by itself before claiming the same addresses.
    let mut server = Server::start_env(&pair, 1, "http", &[], &[env]);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let server = Server::start_env(&pair, 1, "http", &[], &[env]);
    let (ok, _) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{}/", v4(0))],
    );
    assert!(ok, "the restarted server does not answer");
    drop(server);

    // Detach removes everything; a second detach is a clear error.
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(ok, "{err}");
    assert!(!xdp_attached(&pair.host, &iface));
    assert!(!dir.exists());
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(!ok && err.contains("no pinned ioth attachment"), "{err}");

    // A stale pin (its link removed behind ioth's back) is reported, not used.
    let (ok, _, _) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(ok);
    std::fs::remove_file(dir.join("link")).unwrap();
    let (ok, _, err) = ioth_env(
        &pair.host,
        env,
        &["serve", "--iface", &iface, "--ipv4", "10.99.0.11/24"],
    );
    assert!(!ok && err.contains("stale pin"), "{err}");
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(ok, "{err}");
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn the_exporter_serves_a_pinned_attachment_with_and_without_a_server() {
    let fs = Bpffs::mount();
    let env = fs.env();
    let pair = VethPair::new("exporter", 1).expect("veth pair");
    let iface = pair.host_if.clone();
    let (ok, _, err) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(ok, "{err}");
    let server = Server::start_env(&pair, 2, "http", &[], &[env]);
    for _ in 0..3 {
        let (ok, _) = peer_ok(
            &pair.peer,
            "curl",
            &["-sS", "-m", "5", &format!("http://{}/", v4(1))],
        );
        assert!(ok);
    }
    // Killed if the test fails: a stray exporter would hold the harness's output open.
    let mut exporter = KillOnDrop(
        pair.host
            .command(env!("CARGO_BIN_EXE_ioth"))
            .args(["exporter", "--listen", "19466", "--reap-every", "1"])
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .spawn()
            .expect("ioth exporter"),
    );
    // Its lines, read on a thread: a line that never comes fails the test, never hangs it.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = exporter.0.stdout.take().unwrap();
    thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a line from the exporter within 10 s")
    };
    let line = next_line();
    assert!(line.starts_with("metrics http://127.0.0.1:19466"), "{line}");
    let scrape = || {
        let out = pair
            .host
            .exec(
                "curl",
                &["-sS", "-m", "5", "http://127.0.0.1:19466/metrics"],
            )
            .expect("scrape");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = scrape();
    common::assert_promtool_accepts(&text);
    let series = text
        .lines()
        .find(|l| {
            l.starts_with("ioth_endpoint_rx_packets_total{")
                && l.contains("endpoint=\"10.99.0.12\"")
                && l.contains("thread=\"1\"")
        })
        .unwrap_or_else(|| panic!("no series for thread 1:\n{text}"));
    let rx: u64 = series.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rx >= 9, "{series}");
    // Without the server the attachment and its counters remain; the endpoints are gone.
    let (st, _) = server.stop();
    assert!(st.success());
    let text = scrape();
    assert!(
        text.contains("ioth_xdp_packets_total{iface=\"veth-ioth\",verdict=\"redirect\"}"),
        "{text}"
    );
    assert!(!text.contains("ioth_endpoint_rx_packets_total{"), "{text}");
    // A server killed with SIGKILL cannot clean up: the exporter reaps its endpoints.
    let mut killed = Server::start_env(&pair, 2, "http", &[], &[env]);
    let endpoints = || -> serde_json::Value {
        let (ok, out, err) = ioth_env(&pair.host, env, &["endpoints", "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).expect("JSON")
    };
    let eps = endpoints();
    assert_eq!(eps.as_array().map(Vec::len), Some(2), "{eps}");
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let line = next_line();
    assert!(
        line.starts_with("reaped endpoints of dead owners"),
        "{line}"
    );
    let eps = endpoints();
    assert_eq!(eps.as_array().map(Vec::len), Some(0), "{eps}");
    // Detached and attached again under the running exporter: it follows the new
    // attachment (before, it kept reaping the old maps and missed this server).
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(ok, "{err}");
    let (ok, _, err) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(ok, "{err}");
    let mut killed = Server::start_env(&pair, 1, "http", &[], &[env]);
    killed.child.kill().expect("SIGKILL");
    let _ = killed.child.wait();
    let line = next_line();
    assert!(
        line.starts_with("reaped endpoints of dead owners"),
        "{line}"
    );
    let eps = endpoints();
    assert_eq!(eps.as_array().map(Vec::len), Some(0), "{eps}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exporter.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let st = exporter.0.wait().unwrap();
    assert!(st.success(), "exporter exit {st}");
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(ok, "{err}");
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn serve_and_status_need_no_ip_or_ethtool_and_link_changes_are_reported() {
    let pair = VethPair::new("noip", 2).expect("veth pair");
    // A PATH with nothing on it: `ip`, `ethtool` and `mount` cannot be found.
    let empty = std::env::temp_dir().join(format!("ioth-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("empty dir");
    let path = empty.to_str().expect("utf-8 path");
    let server = Server::start_env(&pair, 2, "echo", &[], &[("PATH", path)]);
    let (ok, out) = peer_ok(
        &pair.peer,
        "ping",
        &["-c", "2", "-W", "2", &v4(1).to_string()],
    );
    assert!(ok, "ping thread 1: {out}");
    let out = pair
        .host
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(["status", "--json"])
        .env("PATH", path)
        .output()
        .expect("ioth status");
    assert!(
        out.status.success(),
        "ioth status without ip/ethtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let s = &status.as_array().expect("list")[0];
    assert_eq!(s["iface"], pair.host_if.as_str());
    assert_eq!(s["mode"], "driver");
    assert_eq!(s["queues"], 2);
    assert_eq!(s["endpoints"], 2);

    // Link changes on the served interface are noticed and reported.
    let host_ip = |args: &[&str]| pair.host.ip(args).expect("ip link");
    host_ip(&["link", "set", &pair.host_if, "mtu", "1400"]);
    host_ip(&["link", "set", &pair.host_if, "down"]);
    host_ip(&["link", "set", &pair.host_if, "up"]);
    let want = [
        format!("link {}: mtu 1500 -> 1400", pair.host_if),
        format!(
            "link {}: warning: mtu 1400 is below the stacks' 1500: larger packets will not \
             pass (restart with a smaller --mtu to adapt)",
            pair.host_if
        ),
        format!("link {}: down", pair.host_if),
        format!("link {}: up", pair.host_if),
    ];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want.iter().all(|w| seen.contains(w)) && Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    for w in &want {
        assert!(seen.contains(w), "{w:?} not reported; got {seen:?}");
    }
    println!("link changes reported: {seen:?}");
    // Still serving after the bounce.
    let (ok, out) = peer_ok(
        &pair.peer,
        "ping",
        &["-c", "2", "-W", "2", &v4(0).to_string()],
    );
    assert!(ok, "ping thread 0 after down/up: {out}");
    let (status, lines) = server.stop();
    assert!(status.success(), "{lines:?}");
    let _ = std::fs::remove_dir(&empty);
}

/// The owners map's entries, read with bpftool from the pin directory: (key bytes, value
/// bytes).
fn owner_entries(pins: &std::path::Path) -> Vec<(Vec<String>, Vec<String>)> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pins.join("IOTH_OWNERS"))
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let bytes = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .expect("raw bytes")
            .iter()
            .map(|b| b.as_str().unwrap().to_owned())
            .collect()
    };
    v.as_array()
        .expect("dump")
        .iter()
        .map(|e| (bytes(&e["key"]), bytes(&e["value"])))
        .collect()
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn reaping_sees_through_a_reused_pid_and_leaves_other_pid_namespaces_alone() {
    let fs = Bpffs::mount();
    let env = fs.env();
    let pair = VethPair::new("reapid", 1).expect("veth pair");
    let iface = pair.host_if.clone();
    let (ok, _, err) = ioth_env(&pair.host, env, &["attach", "--iface", &iface]);
    assert!(ok, "attach: {err}");
    let pins = std::fs::read_dir(fs.0.join("ioth"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // A killed server whose pid now belongs to a live process (here: a `sleep` of ours,
    // written into its owner entries with bpftool; the start time stays the dead one's).
    let mut server = Server::start_env(&pair, 2, "http", &[], &[env]);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = sleeper.id().to_le_bytes();
    for (key, mut value) in owner_entries(&pins) {
        for (i, b) in pid.iter().enumerate() {
            value[i] = format!("0x{b:02x}");
        }
        let mut args = vec!["map".to_owned(), "update".into(), "pinned".into()];
        args.push(pins.join("IOTH_OWNERS").to_string_lossy().into_owned());
        args.push("key".into());
        args.extend(key);
        args.push("value".into());
        args.extend(value);
        let st = Command::new("bpftool")
            .args(&args)
            .status()
            .expect("bpftool");
        assert!(st.success(), "bpftool {args:?}");
    }
    let (ok, out, err) = ioth_env(&pair.host, env, &["reap", "--iface", &iface]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        ok && out.contains("reaped 2"),
        "a reused pid must not keep dead endpoints: {out}{err}"
    );

    // A live server in another pid namespace, at a pid that does not exist out here: its
    // owner entries say nothing to us, so they are left alone.
    let free_pid = (20_000..32_000u32)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid");
    let script = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid; {} serve --iface {iface} --threads 1 \
         --ipv4 {}/24 --app http & wait",
        free_pid - 1,
        env!("CARGO_BIN_EXE_ioth"),
        v4(0)
    );
    let mut foreign = pair
        .host
        .command("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .env(env.0, env.1)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let out = foreign.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.starts_with("ready threads="))),
        "the server in its own pid namespace did not start"
    );
    let (_, eps, _) = ioth_env(&pair.host, env, &["endpoints", "--iface", &iface, "--json"]);
    let eps: serde_json::Value = serde_json::from_str(&eps).unwrap();
    assert_eq!(eps[0]["pid"], free_pid, "{eps}");
    assert_eq!(eps[0]["owner_foreign"], true, "{eps}");
    let (ok, out, err) = ioth_env(&pair.host, env, &["reap", "--iface", &iface]);
    assert!(
        ok && out.contains("reaped 0") && out.contains("left alone: 1"),
        "{out}{err}"
    );
    let (ok, body) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{}/", v4(0))],
    );
    assert!(
        ok && body.contains("thread 0"),
        "the foreign owner lost its endpoint: {body}"
    );
    // The namespace's init (sh) takes every process of it along when it dies.
    let init = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        foreign.id(),
        foreign.id()
    ))
    .unwrap_or_default();
    for p in init.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", p]).status();
    }
    let _ = foreign.kill();
    let _ = foreign.wait();
    // Its entries stay (nobody here can tell it is gone): detaching takes --force.
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface]);
    assert!(!ok && err.contains("detach --force"), "{err}");
    let (ok, _, err) = ioth_env(&pair.host, env, &["detach", "--iface", &iface, "--force"]);
    assert!(ok, "{err}");
    assert!(!xdp_attached(&pair.host, &iface));
}

/// Waits (at most 10 s) for `server` to exit by itself; its status and every line it printed.
fn exits_by_itself(mut server: Server) -> (std::process::ExitStatus, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = server.child.try_wait() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop by itself"
        );
        thread::sleep(Duration::from_millis(50));
    };
    thread::sleep(Duration::from_millis(100));
    (status, server.lines.try_iter().collect())
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn new_rx_queues_or_a_removed_interface_stop_the_server_saying_why() {
    // `ethtool -L` adds a queue the server has no socket on: its frames would be lost.
    let pair = VethPair::new("lnkq", 2).expect("veth pair");
    pair.host
        .exec("ethtool", &["-L", &pair.host_if, "rx", "1", "tx", "1"])
        .expect("ethtool -L 1");
    let server = Server::start(&pair, 1, "echo", &[]);
    assert!(server.ready[0].contains("queues=1"), "{:?}", server.ready);
    pair.host
        .exec("ethtool", &["-L", &pair.host_if, "rx", "2", "tx", "2"])
        .expect("ethtool -L 2");
    let (status, lines) = exits_by_itself(server);
    assert!(!status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "link {}: 2 rx queues now, sockets on 1",
            pair.host_if
        ))),
        "{lines:?}"
    );
    drop(pair);

    // The interface goes away.
    let pair = VethPair::new("lnkrm", 1).expect("veth pair");
    let server = Server::start(&pair, 1, "echo", &[]);
    pair.host
        .ip(&["link", "del", &pair.host_if])
        .expect("ip link del");
    let (status, lines) = exits_by_itself(server);
    assert!(!status.success(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("link {}: removed; stopping", pair.host_if)),
        "{lines:?}"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn the_stacks_mtu_is_chosen_and_checked_against_the_link_and_the_frame() {
    let pair = VethPair::new("mtu", 1).expect("veth pair");
    let serve = |mtu: &str| {
        pair.host
            .command(env!("CARGO_BIN_EXE_ioth"))
            .args(["serve", "--iface", &pair.host_if, "--threads", "1"])
            .args(["--ipv4", &format!("{}/24", v4(0)), "--mtu", mtu])
            .output()
            .expect("ioth serve")
    };
    for (mtu, why) in [("9000", "MTU"), ("1600", "MTU"), ("1000", "1280")] {
        let out = serve(mtu);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "--mtu {mtu} must be refused clearly: {err}"
        );
    }
    // A smaller one than the link's is fine: a 1400-byte ping fits, the stack answers.
    let server = Server::start(&pair, 1, "echo", &["--mtu", "1400"]);
    let (ok, out) = peer_ok(
        &pair.peer,
        "ping",
        &["-c", "1", "-W", "2", "-s", "1372", &v4(0).to_string()],
    );
    assert!(ok, "a 1400-byte ping to a stack with MTU 1400: {out}");
    drop(server);
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn with_mac_host_every_thread_answers_from_the_interfaces_mac() {
    let pair = VethPair::new("machost", 1).expect("veth pair");
    let server = Server::start(&pair, 2, "http", &["--mac", "host"]);
    let host_mac = ioth_dataplane::wire::Mac(pair.host_mac).to_string();
    assert!(
        server
            .ready
            .iter()
            .filter(|l| l.starts_with("ready thread="))
            .all(|l| l.contains(&format!("mac={host_mac}"))),
        "{:?}",
        server.ready
    );
    // Each thread answers at its own addresses (ARP, NDP, HTTP)...
    for i in 0..2 {
        let (ok, body) = peer_ok(
            &pair.peer,
            "curl",
            &["-sS", "-m", "5", &format!("http://{}/", v4(i))],
        );
        assert!(ok && body.contains(&format!("thread {i}")), "{body}");
        let (ok, out) = peer_ok(
            &pair.peer,
            "ping",
            &["-c", "1", "-W", "2", &v6(i).to_string()],
        );
        assert!(ok, "ping {}: {out}", v6(i));
    }
    // ...and the peer learned the interface's MAC for all of them.
    let neigh =
        String::from_utf8_lossy(&pair.peer.ip(&["neigh", "show"]).unwrap().stdout).into_owned();
    for a in [
        v4(0).to_string(),
        v4(1).to_string(),
        v6(0).to_string(),
        v6(1).to_string(),
    ] {
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with(&format!("{a} ")) && l.contains(&host_mac)),
            "{a} is not at {host_mac}:\n{neigh}"
        );
    }
    // The endpoints own addresses, no MAC; nothing was added to the NIC's address list; the
    // kernel keeps its own traffic.
    let eps = ioth_json(&pair.host, &["endpoints", "--json"]);
    assert!(
        eps.as_array()
            .unwrap()
            .iter()
            .all(|e| e["macs"].as_array().is_some_and(Vec::is_empty)),
        "{eps}"
    );
    assert!(nic_macs(&pair.host, &pair.host_if).is_empty());
    let (ok, out) = peer_ok(&pair.peer, "ping", &["-c", "1", "-W", "2", "10.99.0.1"]);
    assert!(ok, "the host's own address: {out}");
    let (st, rest) = server.stop();
    assert!(st.success(), "{rest:?}");
}
