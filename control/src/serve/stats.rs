//! What each worker publishes for the main thread and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use ioth_dataplane::EndpointStack;
use smoltcp::socket::tcp;

/// What a worker publishes for the main thread and the metrics endpoint. The worker owns
/// its stack and sockets; it copies their counters here about twice a second.
#[derive(Debug, Default)]
pub struct ThreadStats {
    /// Thread index.
    pub index: u16,
    /// The endpoint's label: its IPv4 address.
    pub endpoint: String,
    /// Its classifier slot (0 until the stack exists).
    pub slot: AtomicU64,
    /// Requests served.
    pub requests: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_rx_dropped: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_rx_ring_full: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_fill_ring_empty: AtomicU64,
    /// XDP_STATISTICS of its sockets.
    pub xsk_tx_invalid: AtomicU64,
    /// TCP sockets per smoltcp state (index: `tcp_state_index`).
    pub tcp_states: [AtomicU64; TCP_STATES.len()],
    /// Sockets open, and the most the stack may hold.
    pub sockets: AtomicU64,
    /// The stack's socket limit.
    pub sockets_max: AtomicU64,
    /// Sockets refused at the limit.
    pub socket_limit_hits: AtomicU64,
    /// Half-open TCP connections dropped to make room (SYN floods).
    pub half_open_dropped: AtomicU64,
    /// UDP datagrams the echo did not answer: from a system port (reflection loops).
    pub udp_echo_refused: AtomicU64,
    /// Times the worker died and was restarted.
    pub restarts: AtomicU64,
}

/// smoltcp's TCP states, as metric labels.
pub const TCP_STATES: [&str; 11] = [
    "closed",
    "listen",
    "syn-sent",
    "syn-received",
    "established",
    "fin-wait-1",
    "fin-wait-2",
    "close-wait",
    "closing",
    "last-ack",
    "time-wait",
];

pub fn tcp_state_index(s: tcp::State) -> usize {
    match s {
        tcp::State::Closed => 0,
        tcp::State::Listen => 1,
        tcp::State::SynSent => 2,
        tcp::State::SynReceived => 3,
        tcp::State::Established => 4,
        tcp::State::FinWait1 => 5,
        tcp::State::FinWait2 => 6,
        tcp::State::CloseWait => 7,
        tcp::State::Closing => 8,
        tcp::State::LastAck => 9,
        tcp::State::TimeWait => 10,
    }
}

pub fn publish(stack: &mut EndpointStack, stats: &ThreadStats) {
    if let Ok(x) = stack.link().xdp_statistics() {
        stats.xsk_rx_dropped.store(x.rx_dropped, Ordering::Relaxed);
        stats
            .xsk_rx_ring_full
            .store(x.rx_ring_full, Ordering::Relaxed);
        stats
            .xsk_fill_ring_empty
            .store(x.fill_ring_empty, Ordering::Relaxed);
        stats.xsk_tx_invalid.store(x.tx_invalid, Ordering::Relaxed);
    }
    let mut counts = [0u64; TCP_STATES.len()];
    for (_, socket) in stack.sockets().iter() {
        if let smoltcp::socket::Socket::Tcp(t) = socket {
            counts[tcp_state_index(t.state())] += 1;
        }
    }
    for (a, c) in stats.tcp_states.iter().zip(counts) {
        a.store(c, Ordering::Relaxed);
    }
    stats
        .sockets
        .store(stack.sockets().len() as u64, Ordering::Relaxed);
    stats
        .sockets_max
        .store(stack.config().max_sockets as u64, Ordering::Relaxed);
    stats
        .socket_limit_hits
        .store(stack.socket_limit_hits(), Ordering::Relaxed);
}
