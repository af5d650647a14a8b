//! The classifier on a real veth pair in fresh namespaces, with real AF_XDP sockets and a
//! real kernel on the other side: each socket gets exactly its endpoint's frames, and the
//! host's own traffic (ping, TCP) still works. Driver and skb mode, one and two queues.
//!
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use ioth_common::{
    classify::{Owner, owner},
    fixtures::MapTables,
};
use ioth_dataplane::{
    AttachMode, Classifier, EndpointAddrs, LoadOptions, ModeRequest,
    netns::{NetNs, VethPair, addrs},
    sys::wait_readable,
    xsk::{BindMode, Place, QueueUmem, RxPart, XskConfig, XskSocket},
};

const A_MAC: [u8; 6] = [0x02, 0x49, 0x4f, 0x54, 0x48, 0x0a];
const A_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const B_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 12);
const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11);
const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x12);
/// UDP datagrams sent to each of the four endpoint addresses.
const PER_ADDR: usize = 32;

fn mac_str(m: [u8; 6]) -> String {
    ioth_dataplane::wire::Mac(m).to_string()
}

fn payload(dst: IpAddr, i: usize) -> Vec<u8> {
    format!("ioth {dst} {i}").into_bytes()
}

/// The UDP payload of an IPv4/IPv6 UDP frame without VLAN tag, if it is one.
fn udp_payload(frame: &[u8]) -> Option<Vec<u8>> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket,
    };
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (proto, l4) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header(), ip.payload().to_vec())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header(), ip.payload().to_vec())
        }
        _ => return None,
    };
    if proto != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(&l4[..]).ok()?;
    Some(udp.payload().to_vec())
}

fn is_arp_for(frame: &[u8], ip: Ipv4Addr) -> bool {
    frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[38..42] == ip.octets()
}

fn is_ns_for(frame: &[u8], ip: Ipv6Addr) -> bool {
    frame.len() >= 78
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 58
        && frame[54] == 135
        && frame[62..78] == ip.octets()
}

fn xdp_attached(ns: &NetNs, ifname: &str) -> bool {
    let out = ns
        .ip(&["-d", "link", "show", ifname])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

struct Received {
    /// (slot, queue) → frames.
    frames: BTreeMap<(u32, u32), Vec<Vec<u8>>>,
}

fn drain(sockets: &mut [(u32, u32, XskSocket)], want_udp: usize, deadline: Duration) -> Received {
    let mut frames: BTreeMap<(u32, u32), Vec<Vec<u8>>> = BTreeMap::new();
    let start = Instant::now();
    let mut udp = 0;
    let mut quiet_after_done = 0;
    while start.elapsed() < deadline {
        let mut got = 0;
        for (slot, queue, sock) in sockets.iter_mut() {
            let entry = frames.entry((*slot, *queue)).or_default();
            got += sock
                .recv(5, |f| {
                    if udp_payload(f).is_some_and(|p| p.starts_with(b"ioth ")) {
                        udp += 1;
                    }
                    entry.push(f.to_vec());
                })
                .expect("recv");
        }
        if udp >= want_udp {
            // Keep listening a little: late duplicates or misdirected frames must show up.
            quiet_after_done += 1;
            if quiet_after_done > 20 && got == 0 {
                break;
            }
        }
    }
    Received { frames }
}

fn scenario(tag: &str, mode: ModeRequest, queues: u32) {
    let pair = VethPair::new(tag, queues).expect("veth pair");
    let _inside = pair.host.enter().expect("enter host netns");

    let mut classifier = Classifier::load(LoadOptions::default()).expect("load classifier");
    let got_mode = classifier.attach(&pair.host_if, mode).expect("attach");
    match mode {
        ModeRequest::Driver => assert_eq!(got_mode, AttachMode::Driver),
        ModeRequest::Skb => assert_eq!(got_mode, AttachMode::Skb),
        ModeRequest::Auto => {}
    }
    assert!(xdp_attached(&pair.host, &pair.host_if));

    let a = classifier
        .add_endpoint(&EndpointAddrs {
            mac: Some(A_MAC),
            ipv4: vec![A_V4],
            ipv6: vec![A_V6],
            thread: 0,
            ..Default::default()
        })
        .expect("endpoint A");
    let b = classifier
        .add_endpoint(&EndpointAddrs {
            mac: None,
            ipv4: vec![B_V4],
            ipv6: vec![B_V6],
            thread: 1,
            ..Default::default()
        })
        .expect("endpoint B");

    // The reference's view of the same tables, to check every received frame's owner.
    let mut tables = MapTables::default();
    tables.mac.insert(A_MAC, a.0);
    tables.ipv4.insert(A_V4.octets(), a.0);
    tables.ipv6.insert(A_V6.octets(), a.0);
    tables.ipv4.insert(B_V4.octets(), b.0);
    tables.ipv6.insert(B_V6.octets(), b.0);

    let config = XskConfig {
        frames: 1024,
        fill_size: 512,
        rx_ring_size: 512,
        tx_ring_size: 512,
        need_wakeup: true,
        audit: true,
    };
    let mut umems: Vec<Arc<QueueUmem>> = Vec::new();
    let mut sockets = Vec::new();
    for q in 0..queues {
        let umem = QueueUmem::new(&pair.host_if, q, config).expect("umem");
        // Two sockets sharing one UMEM (and its one fill and completion ring) on this queue.
        for slot in [a.0, b.0] {
            let sock = XskSocket::bind(&umem).expect("AF_XDP socket");
            classifier
                .set_socket(q, slot, sock.as_raw_fd())
                .expect("xskmap");
            sockets.push((slot, q, sock));
        }
        // veth has no zero-copy: the fallback to copy mode must have happened.
        assert_eq!(umem.mode(), Some(BindMode::Copy));
        umems.push(umem);
    }

    // 1. Address resolution for endpoint addresses reaches the endpoint (nobody answers).
    let _ = pair
        .peer
        .exec("ping", &["-c", "1", "-W", "1", &A_V4.to_string()]);
    let _ = pair
        .peer
        .exec("ping", &["-6", "-c", "1", "-W", "1", &A_V6.to_string()]);

    // 2. Static neighbours: A by its own MAC, B behind the host's MAC.
    let host_mac = mac_str(pair.host_mac);
    for (ip, mac) in [
        (A_V4.to_string(), mac_str(A_MAC)),
        (A_V6.to_string(), mac_str(A_MAC)),
        (B_V4.to_string(), host_mac.clone()),
        (B_V6.to_string(), host_mac.clone()),
    ] {
        pair.peer
            .ip(&[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                &pair.peer_if,
                "nud",
                "permanent",
            ])
            .expect("static neighbour");
    }

    // 3. Kernel UDP sockets in the peer send to each endpoint address, from many source
    //    ports so that a multi-queue veth spreads them over its queues.
    let dsts: Vec<IpAddr> = vec![A_V4.into(), A_V6.into(), B_V4.into(), B_V6.into()];
    let sent = dsts.clone();
    pair.peer.run(move || {
        for dst in sent {
            for i in 0..PER_ADDR {
                let bind: SocketAddr = match dst {
                    IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
                    IpAddr::V6(_) => "[::]:0".parse().unwrap(),
                };
                let s = UdpSocket::bind(bind).expect("udp bind");
                s.send_to(&payload(dst, i), SocketAddr::new(dst, 7))
                    .expect("udp send");
            }
        }
    });

    // 4. The host's own traffic still works: ping and a TCP exchange to the host's IP.
    let host_ping = pair.peer.exec(
        "ping",
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &addrs::HOST_V4.to_string(),
        ],
    );
    assert!(host_ping.is_ok(), "ping to the host failed: {host_ping:?}");
    let host_ping6 = pair.peer.exec(
        "ping",
        &[
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &addrs::HOST_V6.to_string(),
        ],
    );
    assert!(
        host_ping6.is_ok(),
        "ping -6 to the host failed: {host_ping6:?}"
    );
    let listener = TcpListener::bind((addrs::HOST_V4, 0)).expect("listen in host netns");
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("read");
        s.write_all(&buf[..n]).expect("write");
    });
    let echoed = pair.peer.run(move || {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::new(addrs::HOST_V4.into(), port),
            Duration::from_secs(5),
        )
        .expect("TCP connect to the host");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"host traffic unharmed").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("TCP read");
        buf[..n].to_vec()
    });
    server.join().expect("TCP server");
    assert_eq!(echoed, b"host traffic unharmed");

    // 5. Collect what each socket received.
    let got = drain(&mut sockets, dsts.len() * PER_ADDR, Duration::from_secs(10));

    let mut udp_by_slot: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut per_queue: BTreeMap<u32, usize> = BTreeMap::new();
    let mut total = 0u64;
    for ((slot, queue), frames) in &got.frames {
        for f in frames {
            total += 1;
            *per_queue.entry(*queue).or_default() += 1;
            // Every frame on a socket is one its endpoint owns, by the reference table.
            assert_eq!(
                owner(f, &tables),
                Owner::Endpoint(*slot),
                "slot {slot} queue {queue} got a frame it does not own: {f:02x?}"
            );
            if let Some(p) = udp_payload(f).filter(|p| p.starts_with(b"ioth ")) {
                udp_by_slot.entry(*slot).or_default().push(p);
            }
        }
    }
    for (slot, addrs_of) in [(a.0, [dsts[0], dsts[1]]), (b.0, [dsts[2], dsts[3]])] {
        let want: BTreeSet<Vec<u8>> = addrs_of
            .iter()
            .flat_map(|d| (0..PER_ADDR).map(move |i| payload(*d, i)))
            .collect();
        let have = udp_by_slot.remove(&slot).unwrap_or_default();
        let have_set: BTreeSet<Vec<u8>> = have.iter().cloned().collect();
        assert_eq!(
            have.len(),
            have_set.len(),
            "slot {slot}: duplicate datagrams"
        );
        assert_eq!(have_set, want, "slot {slot}: exactly its datagrams");
    }
    let a_frames: Vec<&Vec<u8>> = got
        .frames
        .iter()
        .filter(|((s, _), _)| *s == a.0)
        .flat_map(|(_, v)| v)
        .collect();
    assert!(
        a_frames.iter().any(|f| is_arp_for(f, A_V4)),
        "endpoint A saw no ARP request for its address"
    );
    assert!(
        a_frames.iter().any(|f| is_ns_for(f, A_V6)),
        "endpoint A saw no neighbour solicitation for its address"
    );

    let counters = classifier.counters().expect("counters");
    assert_eq!(counters.redirect, total, "every redirect reached a socket");
    assert_eq!(counters.aborted, 0);
    assert_eq!(counters.drop, 0);
    assert!(counters.pass > 0, "host traffic passed");
    let stats_a = classifier.endpoint_stats(a.0).unwrap();
    let stats_b = classifier.endpoint_stats(b.0).unwrap();
    assert_eq!(stats_a.rx_packets + stats_b.rx_packets, total);

    for (_, _, s) in &sockets {
        let st = s.statistics().expect("XDP_STATISTICS");
        assert_eq!(st.rx_dropped(), 0, "kernel dropped frames for a socket");
    }
    for u in &umems {
        let f = u.frames();
        assert_eq!(
            f.total(),
            u.frame_count(),
            "queue {}: frames leaked",
            u.queue()
        );
        assert_eq!(f.user, 0, "queue {}: frames still held", u.queue());
        let places = u
            .audit()
            .expect("the ledger is kept")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(places.get(Place::Stack), 0, "queue {}", u.queue());
    }
    if queues > 1 && got_mode == AttachMode::Driver {
        // Native XDP on veth sees the sender's tx queue as the rx queue: flows spread.
        assert!(
            per_queue.values().filter(|n| **n > 0).count() > 1,
            "all frames arrived on one queue: {per_queue:?}"
        );
    }
    println!(
        "{tag}: mode {got_mode}, {queues} queue(s), {total} frames redirected, per queue {per_queue:?}, \
         host ping + TCP ok"
    );

    // 6. Dropping the loader leaves the interface clean.
    drop(sockets);
    drop(classifier);
    assert!(
        !xdp_attached(&pair.host, &pair.host_if),
        "XDP program still attached after the loader dropped"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn driver_mode_one_queue() {
    scenario("drv1", ModeRequest::Driver, 1);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn skb_mode_one_queue() {
    scenario("skb1", ModeRequest::Skb, 1);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn driver_mode_two_queues() {
    scenario("drv2", ModeRequest::Driver, 2);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn skb_mode_two_queues() {
    scenario("skb2", ModeRequest::Skb, 2);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_killed_loader_leaves_the_interface_clean() {
    let pair = VethPair::new("kill", 1).expect("veth pair");
    let helper = env!("CARGO_BIN_EXE_ioth-attach-hold");
    let mut child = Command::new("ip")
        .args(["netns", "exec", pair.host.name()])
        .arg(helper)
        .arg(&pair.host_if)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn helper");
    // The helper prints "attached" once the program is on the interface.
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 9];
    out.read_exact(&mut buf).expect("helper output");
    assert_eq!(&buf, b"attached\n");
    assert!(xdp_attached(&pair.host, &pair.host_if));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .ok();
    // `ip netns exec` execs the helper, so the pid is the helper's own.
    child.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&pair.host, &pair.host_if) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !xdp_attached(&pair.host, &pair.host_if),
        "a SIGKILLed loader left its program attached"
    );
}

/// Waits until `rx` has at least `n` frames ready (or 5 s pass).
fn wait_for_frames(rx: &mut RxPart, n: usize) -> usize {
    let start = Instant::now();
    while rx.fetch() < n && start.elapsed() < Duration::from_secs(5) {
        let _ = wait_readable(&[rx.fd()], 100);
    }
    rx.fetch()
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn the_frame_audit_catches_a_frame_that_is_never_returned() {
    let pair = VethPair::new("audit", 1).expect("veth pair");
    let _inside = pair.host.enter().expect("enter host netns");
    let mut classifier = Classifier::load(LoadOptions::default()).expect("load classifier");
    classifier
        .attach(&pair.host_if, ModeRequest::Auto)
        .expect("attach");
    let a = classifier
        .add_endpoint(&EndpointAddrs {
            mac: Some(A_MAC),
            ipv4: vec![A_V4],
            ipv6: vec![],
            thread: 0,
            ..Default::default()
        })
        .expect("endpoint");
    let config = XskConfig {
        frames: 256,
        fill_size: 128,
        rx_ring_size: 128,
        tx_ring_size: 128,
        need_wakeup: true,
        audit: true,
    };
    let umem = QueueUmem::new(&pair.host_if, 0, config).expect("umem");
    let sock = XskSocket::bind(&umem).expect("AF_XDP socket");
    classifier
        .set_socket(0, a.0, sock.as_raw_fd())
        .expect("xskmap");
    let (mut rx, mut tx) = sock.into_parts();
    pair.peer
        .ip(&[
            "neigh",
            "replace",
            &A_V4.to_string(),
            "lladdr",
            &mac_str(A_MAC),
            "dev",
            &pair.peer_if,
            "nud",
            "permanent",
        ])
        .expect("static neighbour");
    // Echo requests nobody answers: each arrives at the endpoint's socket.
    let _ = pair.peer.exec(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "1", &A_V4.to_string()],
    );
    assert!(
        wait_for_frames(&mut rx, 3) >= 3,
        "three echo requests arrived"
    );

    // An honest round: a frame received and returned, a slot given back unsent, a slot
    // sent (a copy of the frame back to the peer). The audit finds every frame in one place.
    {
        let frame = rx.next_frame().expect("a frame");
        let mut slot = tx.slot(frame.bytes().len()).expect("a free frame");
        slot.bytes_mut().copy_from_slice(frame.bytes());
        slot.send();
        drop(tx.slot(60).expect("another free frame"));
    }
    tx.flush().expect("flush");
    rx.sync().expect("sync");
    let places = umem
        .audit()
        .expect("the ledger is kept")
        .unwrap_or_else(|e| panic!("an honest round fails the audit: {e}"));
    assert_eq!(places.get(Place::Stack), 0);

    // A frame forgotten (safe code can `mem::forget` a guard): it never comes back, and the
    // frame counters alone would not show it.
    std::mem::forget(rx.next_frame().expect("a second frame"));
    let counted = umem.frames();
    assert_eq!(counted.total(), umem.frame_count(), "the sums still add up");
    rx.sync().expect("sync");
    let err = umem
        .audit()
        .expect("the ledger is kept")
        .expect_err("the leak is caught");
    assert!(
        err.problems.iter().any(|p| p.contains("never returned")),
        "{err}"
    );
    println!("audit: a forgotten frame is reported: {:?}", err.problems);
}
