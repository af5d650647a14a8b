//! The same stack over a TAP device: the kernel in a fresh namespace pings it and talks TCP
//! to it. Privileged: run by `cargo xtask test` as root (`--ignored`).

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ioth_dataplane::{Stack, StackConfig, TcpListener, link::tap::TapLink, netns::NetNs};
use smoltcp::{socket::tcp, time::Instant};

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_stack_over_tap_answers_ping_and_tcp() {
    let ns = NetNs::new("tap").expect("netns");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop2 = Arc::clone(&stop);
    let server = ns.spawn(move || {
        let link = TapLink::open("ioth-tap0").expect("TAP device");
        let clock = std::time::Instant::now();
        let now = || Instant::from_micros(clock.elapsed().as_micros() as i64);
        let mut stack = Stack::new(
            link,
            StackConfig {
                mac: [0x02, 0x54, 0x41, 0x50, 0, 1],
                ipv4: vec![(Ipv4Addr::new(10, 98, 0, 2), 24)],
                ..StackConfig::default()
            },
            now(),
        )
        .unwrap();
        let mut listener = TcpListener::bind(&mut stack, 7, 4).unwrap();
        ready_tx.send(()).unwrap();
        let mut conns = Vec::new();
        let mut buf = [0u8; 1500];
        while !stop2.load(Ordering::Relaxed) {
            stack.poll(now()).unwrap();
            while let Some(h) = listener.accept(&mut stack) {
                conns.push(h);
            }
            for &h in &conns {
                let s = stack.sockets().get_mut::<tcp::Socket<'_>>(h);
                if s.can_recv() && s.can_send() {
                    let n = s.recv_slice(&mut buf).unwrap();
                    s.send_slice(&buf[..n]).unwrap();
                }
            }
            stack.poll(now()).unwrap();
            stack.wait(now(), Duration::from_millis(20)).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    ns.ip(&["addr", "add", "10.98.0.1/24", "dev", "ioth-tap0"])
        .unwrap();
    ns.ip(&["link", "set", "ioth-tap0", "up"]).unwrap();
    let ping = ns.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.98.0.2"]);
    let _inside = ns.enter().unwrap();
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([10, 98, 0, 2], 7)),
        Duration::from_secs(5),
    )
    .expect("TCP connect over TAP");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"over tap").unwrap();
    let mut got = [0u8; 8];
    s.read_exact(&mut got).unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(ping.is_ok(), "ping over TAP failed: {ping:?}");
    assert_eq!(&got, b"over tap");
}
