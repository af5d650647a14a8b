//! Facing the hostile Internet (issue 12 §1), with real peers in fresh namespaces: hping3
//! crafting SYNs (spoofed half-open floods, a bare SYN on a live flow), kernel TCP and UDP
//! sockets and socat as the clients that must keep being served.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    sync::mpsc,
    thread,
    time::Duration,
};

use common::{BASE_V4, Server, peer_ok};
use ioth_dataplane::netns::VethPair;

/// A kernel TCP client in the peer namespace: one echo round trip.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Result<(), String> {
    s.write_all(msg).map_err(|e| format!("send: {e}"))?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("receive: {e}"))?;
    if got != msg {
        return Err(format!("echoed {got:?}, sent {msg:?}"));
    }
    Ok(())
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_bare_syn_on_a_live_connection_takes_nothing() {
    let pair = VethPair::new("c5961", 1).expect("veth pair");
    let _server = Server::start(&pair, 1, "echo", &[]);
    let (port_tx, port_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = pair.peer.spawn(move || -> Result<(), String> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((BASE_V4, 7)), Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        round_trip(&mut s, b"before the SYN")?;
        port_tx
            .send(s.local_addr().map_err(|e| e.to_string())?.port())
            .ok();
        go_rx.recv().ok();
        round_trip(&mut s, b"after the SYN")
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the client connected");
    // hping3 sends a bare SYN from the client's address and port (-k keeps it) and prints
    // the flags of what comes back.
    let (_, out) = peer_ok(
        &pair.peer,
        "hping3",
        &[
            "-S",
            "-c",
            "1",
            "-k",
            "-s",
            &port.to_string(),
            "-p",
            "7",
            &BASE_V4.to_string(),
        ],
    );
    go_tx.send(()).ok();
    let kept = client.join().expect("client thread");
    // RFC 5961 §4 asks for a challenge ACK; smoltcp 0.14 drops a SYN without ACK in a
    // synchronized state before its challenge-ACK check ("expecting an ACK"), so none comes
    // (DESIGN "Known issues"). What must hold: no listener answers it, the flow stays.
    assert!(
        out.contains("HPING") && !out.contains("flags=SA") && !out.contains("flags=RA"),
        "a SYN on a live flow must not reach a listener (SYN-ACK) nor reset it:\n{out}"
    );
    assert_eq!(kept, Ok(()), "the connection must survive the SYN");
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_spoofed_syn_flood_does_not_lock_real_clients_out() {
    let pair = VethPair::new("synfl", 1).expect("veth pair");
    // The default backlog (16) per port: the flood below is forty times that.
    let server = Server::start(&pair, 1, "echo", &[]);
    // 640 SYNs from an address of the peer's LAN that nobody answers ARP for: every one
    // leaves a half-open connection (the SYN-ACK cannot even be sent), from a new source port
    // each (hping3 counts them up).
    let (ok, out) = peer_ok(
        &pair.peer,
        "hping3",
        &[
            "-S",
            "-p",
            "7",
            "-a",
            "10.99.0.201",
            "-i",
            "u500",
            "-c",
            "640",
            &BASE_V4.to_string(),
        ],
    );
    // hping3 exits 1 when nothing answers (nothing can: the source is spoofed).
    assert!(ok || out.contains("HPING"), "hping3 did not run: {out}");
    // Real clients right after the flood, while the half-open connections are still there.
    for i in 0..5 {
        let (ok, out) = peer_ok(
            &pair.peer,
            "sh",
            &[
                "-c",
                &format!(
                    "echo real-{i} | timeout 10 socat -t 2 - TCP:{BASE_V4}:7,connect-timeout=3"
                ),
            ],
        );
        assert!(
            ok && out.contains(&format!("real-{i}")),
            "client {i} after a SYN flood: {out}"
        );
    }
    drop(server);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn udp_echo_refuses_datagrams_from_well_known_ports() {
    let pair = VethPair::new("udpwk", 1).expect("veth pair");
    let _server = Server::start(&pair, 1, "echo", &[]);
    let answers = |src_port: u16| {
        pair.peer.run(move || {
            let s = UdpSocket::bind(("0.0.0.0", src_port)).expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(500))).ok();
            let mut buf = [0u8; 64];
            for _ in 0..3 {
                s.send_to(b"loop?", (BASE_V4, 7)).expect("send");
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return n == 5;
                }
            }
            false
        })
    };
    // A client's ephemeral port is answered; an echo, chargen, DNS or any other system
    // port is a server that would answer back: refused (no reflection loops).
    assert!(answers(40_007), "an ordinary client must get its echo");
    for port in [7, 19, 53, 123, 1023] {
        assert!(
            !answers(port),
            "a datagram from port {port} must not be echoed"
        );
    }
    thread::sleep(Duration::from_millis(100));
    assert!(answers(1024), "1024 is not a system port");
}

/// The value of `name{…label…}` in a Prometheus text exposition.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Established connections of the thread, from its metrics.
fn established(pair: &VethPair, port: u16) -> f64 {
    let out = pair
        .host
        .exec(
            "curl",
            &[
                "-sS",
                "-m",
                "5",
                &format!("http://127.0.0.1:{port}/metrics"),
            ],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    sample(&out, "ioth_tcp_connections{", "state=\"established\"").unwrap_or(-1.0)
}

/// 20 kernel clients connect and echo once, then their host vanishes (its firewall drops
/// everything from the endpoint); returns once they are connected, and a sender that lets
/// them go.
fn abandoned_clients(pair: &VethPair) -> mpsc::Sender<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    pair.peer.spawn(move || {
        let mut held = Vec::new();
        for i in 0..20 {
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::from((BASE_V4, 7)), Duration::from_secs(5))
                    .expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            round_trip(&mut s, format!("client {i}").as_bytes()).expect("echo");
            held.push(s);
        }
        ready_tx.send(()).ok();
        done_rx.recv().ok();
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("clients connected");
    let rules = format!(
        "table inet ioth_gone {{\n chain input {{\n  type filter hook input priority 0; \
         policy accept;\n  ip saddr {BASE_V4} drop\n }}\n}}\n"
    );
    let (ok, out) = peer_ok(
        &pair.peer,
        "sh",
        &["-c", &format!("echo '{rules}' | nft -f -")],
    );
    assert!(ok, "nft: {out}");
    done_tx
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn connections_whose_peer_vanished_are_closed_by_keep_alive_and_timeout() {
    // Control: with keep-alive and the timeout off (smoltcp's defaults), the abandoned
    // connections stay — what the defaults must prevent.
    let pair = VethPair::new("gone0", 1).expect("veth pair");
    let server = Server::start(
        &pair,
        1,
        "echo",
        &[
            "--metrics",
            "19481",
            "--tcp-timeout",
            "0",
            "--tcp-keepalive",
            "0",
        ],
    );
    let done = abandoned_clients(&pair);
    thread::sleep(Duration::from_secs(6));
    assert_eq!(
        established(&pair, 19481),
        20.0,
        "without timeouts they stay"
    );
    drop(done);
    drop(server);
    drop(pair);

    let pair = VethPair::new("gone1", 1).expect("veth pair");
    let _server = Server::start(
        &pair,
        1,
        "echo",
        &[
            "--metrics",
            "19482",
            "--tcp-timeout",
            "3",
            "--tcp-keepalive",
            "1",
        ],
    );
    let _done = abandoned_clients(&pair);
    // The metrics follow within half a second; the connections must be seen first.
    let seen = (0..20).any(|_| {
        thread::sleep(Duration::from_millis(250));
        established(&pair, 19482) == 20.0
    });
    assert!(seen, "the 20 connections never showed as established");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let n = established(&pair, 19482);
        if n == 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} connection(s) to a vanished peer still established after 15 s"
        );
        thread::sleep(Duration::from_millis(500));
    }
}
