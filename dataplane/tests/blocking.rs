//! The blocking API on a per-thread stack over AF_XDP: a std::io TCP echo and a UDP echo,
//! reached by kernel sockets from the peer namespace. Privileged (`--ignored`).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::Arc,
    thread,
    time::Duration,
};

use ioth_dataplane::{
    Dataplane, DataplaneOptions, StackConfig, api::blocking::BlockingStack, netns::VethPair,
};

const IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 41);

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn blocking_tcp_and_udp_echo() {
    let pair = VethPair::new("blk", 1).expect("veth pair");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = pair.host.spawn(move || {
        let dp = Dataplane::attach("veth-ioth", DataplaneOptions::default()).unwrap();
        let stack = BlockingStack::new(
            Arc::clone(&dp)
                .stack(
                    StackConfig {
                        mac: [0x02, 0x62, 0x6c, 0x6b, 0, 1],
                        ipv4: vec![(IP, 24)],
                        ..StackConfig::default()
                    },
                    smoltcp::time::Instant::from_millis(0),
                )
                .unwrap(),
        );
        let mut udp = stack.udp_bind(7).unwrap();
        let mut listener = stack.listen(7, 4).unwrap();
        tx.send(()).unwrap();
        // UDP: echo three datagrams.
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            let (n, from) = udp.recv_from(&mut buf).unwrap();
            udp.send_to(&buf[..n], from).unwrap();
        }
        // TCP: echo one connection until the client closes.
        let mut conn = listener.accept().unwrap();
        let mut total = 0;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).unwrap();
            total += n;
        }
        conn.shutdown().unwrap();
        total
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let client = pair.peer.spawn(move || {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 64];
        for i in 0..3u8 {
            u.send_to(&[i; 10], (IP, 7)).unwrap();
            let n = u.recv(&mut b).unwrap();
            assert_eq!(&b[..n], &[i; 10]);
        }
        let s =
            TcpStream::connect_timeout(&SocketAddr::from((IP, 7)), Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = s.try_clone().unwrap();
        let d2 = data.clone();
        let writer = thread::spawn(move || {
            w.write_all(&d2).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        let mut r = s;
        r.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got == data
    });
    assert!(client.join().unwrap(), "echoed bytes differ");
    assert_eq!(server.join().unwrap(), 300_000);
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn an_mtu_that_does_not_fit_the_frame_or_the_interface_is_refused() {
    use ioth_dataplane::{DataplaneError, stack::StackError};
    let pair = VethPair::new("mtu", 1).expect("veth pair");
    pair.host.run(|| {
        let dp = Dataplane::attach("veth-ioth", DataplaneOptions::default()).unwrap();
        let stack = |mtu: usize| {
            Arc::clone(&dp)
                .stack(
                    StackConfig {
                        mac: [0x02, 0x6d, 0x74, 0x75, 0, 1],
                        ipv4: vec![(Ipv4Addr::new(10, 99, 0, 42), 24)],
                        mtu,
                        ..StackConfig::default()
                    },
                    smoltcp::time::Instant::from_millis(0),
                )
                .map_err(Box::new)
        };
        // Larger than a UMEM frame can receive (2048 less the kernel's 256 of headroom),
        // larger than the interface's 1500, smaller than IPv6 allows: each refused, clearly.
        for (mtu, want) in [(3000, 1778), (1600, 1500), (1000, 1000)] {
            match stack(mtu).map(drop).map_err(|b| *b) {
                Err(DataplaneError::Stack(e @ StackError::Mtu { max, .. })) => {
                    assert_eq!(max, want, "{e}");
                }
                Err(e) => panic!("MTU {mtu}: {e}"),
                Ok(()) => panic!("MTU {mtu} accepted"),
            }
        }
        // What fits is taken (and its entries go with it).
        drop(stack(1500).expect("MTU 1500"));
    });
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn more_rx_queues_than_the_classifier_serves_are_refused_before_attaching() {
    use ioth_dataplane::DataplaneError;
    let queues = ioth_common::MAX_QUEUES + 2;
    let pair = VethPair::new("manyq", queues).expect("veth pair");
    pair.host
        .exec("ethtool", &["-L", "veth-ioth", "rx", &queues.to_string()])
        .expect("ethtool -L");
    let attached = pair.host.run(|| {
        let r = Dataplane::attach("veth-ioth", DataplaneOptions::default()).map(drop);
        match r {
            Err(DataplaneError::TooManyQueues { queues: q, .. }) => Ok(q),
            Err(e) => Err(e.to_string()),
            Ok(()) => Err("attached".into()),
        }
    });
    assert_eq!(attached, Ok(queues), "refused with the queue count");
    let out = pair
        .host
        .ip(&["-d", "link", "show", "veth-ioth"])
        .expect("ip link");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("prog/xdp"),
        "nothing left attached"
    );
}
