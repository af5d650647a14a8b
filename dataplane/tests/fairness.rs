//! One endpoint cannot starve another on the same rx queue (issue 12 §2): a stalled stack —
//! registered, never polled — is flooded while its neighbour on the same queue must keep
//! answering. Privileged (`--ignored`).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ioth_dataplane::{
    Dataplane, DataplaneOptions, StackConfig, api::blocking::BlockingStack, netns::VethPair,
    wire::Mac,
};

const STALLED: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 61);
const STALLED_MAC: [u8; 6] = [0x02, 0x66, 0x61, 0x69, 0, 1];
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 62);

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_stalled_endpoint_cannot_starve_its_neighbour_on_the_same_queue() {
    let pair = VethPair::new("stall", 1).expect("veth pair");
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let server = pair.host.spawn(move || {
        let dp = Dataplane::attach("veth-ioth", DataplaneOptions::default()).unwrap();
        let now = smoltcp::time::Instant::from_millis(0);
        // Registered, never polled: whatever reaches it stays on its rx ring.
        let _stalled = Arc::clone(&dp)
            .stack(
                StackConfig {
                    mac: STALLED_MAC,
                    ipv4: vec![(STALLED, 24)],
                    thread: 0,
                    ..StackConfig::default()
                },
                now,
            )
            .unwrap();
        let neighbour = BlockingStack::new(
            Arc::clone(&dp)
                .stack(
                    StackConfig {
                        mac: [0x02, 0x66, 0x61, 0x69, 0, 2],
                        ipv4: vec![(NEIGHBOUR, 24)],
                        thread: 1,
                        ..StackConfig::default()
                    },
                    now,
                )
                .unwrap(),
        );
        let mut udp = neighbour.udp_bind(7).unwrap();
        udp.set_timeout(Some(Duration::from_millis(200)));
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let mut echoed = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
                echoed += 1;
            }
        }
        echoed
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The stalled stack never answers ARP: the peer is told its MAC.
    pair.peer
        .ip(&[
            "neigh",
            "replace",
            &STALLED.to_string(),
            "lladdr",
            &Mac(STALLED_MAC).to_string(),
            "dev",
            &pair.peer_if,
        ])
        .unwrap();
    let answered = pair.peer.run(|| {
        let flood = UdpSocket::bind("0.0.0.0:0").unwrap();
        // Far more than the queue's 4096 UMEM frames, to the stalled endpoint.
        let payload = [0x5au8; 64];
        for _ in 0..20_000 {
            let _ = flood.send_to(&payload, SocketAddr::from((STALLED, 9)));
        }
        // The neighbour on the same queue keeps answering.
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        (0..20)
            .filter(|i| {
                let _ = s.send_to(&[*i as u8; 8], SocketAddr::from((NEIGHBOUR, 7)));
                s.recv_from(&mut buf).is_ok()
            })
            .count()
    });
    stop.store(true, Ordering::Relaxed);
    let echoed = server.join().unwrap();
    assert!(
        answered >= 18,
        "the neighbour answered {answered} of 20 while its queue-mate was stalled (echoed {echoed})"
    );
}
