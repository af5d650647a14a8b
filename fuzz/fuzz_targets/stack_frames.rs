//! A stack over the in-memory link, fed arbitrary frames: an echo listener and UDP echo on
//! port 7, IPv4 and IPv6. The input is a sequence of frames (a length byte pair, then that
//! many bytes); unicast frames get the stack's MAC as destination so that they reach its IP
//! layer, and checksums are completed as the AF_XDP link would. Seeds in `seeds/stack_frames`
//! start it on hostile IPv6: extension-header chains, fragments, routing header type 0, NDP
//! options of length 0, an RA with hop limit 64 from off link. Time advances a
//! little per frame, so timers (retransmissions, keep-alive) run too. Never a panic, and the
//! socket count stays bounded by the listener's backlog.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use ioth_dataplane::{
    Stack, StackConfig, TcpListener,
    link::{
        checksum::check_l4,
        sim::{Impairments, pair},
    },
};
use libfuzzer_sys::fuzz_target;
use smoltcp::{socket::udp, time::Instant};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

fuzz_target!(|data: &[u8]| {
    let (ours, peer) = pair(Impairments::default());
    let config = StackConfig {
        mac: MAC,
        ipv4: vec![(Ipv4Addr::new(10, 0, 0, 1), 24)],
        ipv6: vec![(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 64)],
        tcp_rx_buffer: 2048,
        tcp_tx_buffer: 2048,
        max_sockets: 64,
        ..StackConfig::default()
    };
    let mut now = Instant::from_millis(0);
    let Ok(mut stack) = Stack::new(ours, config, now) else {
        return;
    };
    let Ok(mut listener) = TcpListener::bind(&mut stack, 7, 4) else {
        return;
    };
    let Ok(udp_h) = stack.udp_bind(7, 8) else {
        return;
    };
    let mut conns = Vec::new();
    let mut rest = data;
    let mut buf = [0u8; 2048];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut frame = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        // Unicast frames go to the stack's MAC; multicast and broadcast ones (NDP, RA, ARP)
        // keep their group address.
        if frame.len() >= 14 && frame[0] & 1 == 0 {
            frame[..6].copy_from_slice(&MAC);
        }
        let _ = check_l4(&mut frame);
        peer.send_raw(now, frame);
        now += smoltcp::time::Duration::from_millis(50);
        let _ = stack.poll(now);
        while let Some(h) = listener.accept(&mut stack) {
            conns.push(h);
        }
        for h in &conns {
            let s = stack
                .sockets()
                .get_mut::<smoltcp::socket::tcp::Socket<'static>>(*h);
            if let Ok(n) = s.recv_slice(&mut buf) {
                let _ = s.send_slice(&buf[..n]);
            }
        }
        let s = stack.sockets().get_mut::<udp::Socket<'static>>(udp_h);
        while let Ok((n, meta)) = s.recv_slice(&mut buf) {
            let _ = s.send_slice(&buf[..n], meta.endpoint);
        }
        let _ = stack.poll(now);
        assert!(stack.sockets().len() <= 64);
    }
});
