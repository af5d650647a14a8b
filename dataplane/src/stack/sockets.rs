//! A stack's sockets, sharded so that a packet costs the same with 10 or 10,000 connections.
//!
//! smoltcp finds a received segment's socket by walking its `SocketSet`, and every egress pass
//! walks all of it (an idle established TCP socket costs ~0.3 µs per pass; `ioth-bench stack`
//! measures it). [`Sockets`] keeps several sets instead:
//!
//! - shard 0, the *datagram* shard: UDP (and ICMP) sockets, and every frame that is not TCP;
//! - the *listen* shard ([`LISTEN_SHARD`]): listening TCP sockets, handshakes not yet
//!   accepted, TCP sockets not connected yet, and every TCP segment of no known flow;
//! - shards 1..=[`FLOW_SHARDS`]: established TCP connections, each in the shard its flow
//!   (local and remote address and port) hashes to. A connection moves there when
//!   [`crate::TcpListener::accept`] hands it out or when [`crate::Stack::connect_tcp`] starts
//!   it; a flow table maps the flow to its shard.
//!
//! The stack peeks at each received frame: what is not TCP goes to the datagram shard (so a
//! UDP datagram is matched against the UDP sockets only, not against a listener's backlog);
//! a TCP segment's flow is looked up in the table (unknown flows go to the listen shard,
//! where a listener or a handshake takes them, or smoltcp answers RST as it would anyway).
//! smoltcp processes the frame against that shard only. Egress runs
//! only on shards that received a frame, that the application touched (any `get_mut`), or
//! whose timers are due: an idle connection is not visited at all.

use std::collections::HashMap;

use smoltcp::{
    iface::{SocketHandle as InnerHandle, SocketSet},
    socket::{AnySocket, Socket, tcp},
    time::Instant,
    wire::{IpAddress, IpEndpoint},
};

use crate::wire::{IPPROTO_TCP, IpParse, is_ipv6_option_header, parse_ip};

/// Shards for established connections (the datagram and the listen shard come on top).
pub const FLOW_SHARDS: usize = 64;

/// The shard of listeners, handshakes and unconnected TCP sockets.
pub const LISTEN_SHARD: usize = FLOW_SHARDS + 1;

/// A socket of a [`crate::Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketHandle {
    shard: u16,
    inner: InnerHandle,
}

#[derive(Debug)]
struct Shard {
    set: SocketSet<'static>,
    /// Something may have changed since the last egress pass.
    dirty: bool,
    /// smoltcp's deadline for the next egress pass, as of the last one.
    poll_at: Option<Instant>,
}

/// (local, remote) endpoints of a TCP connection.
type Flow = (IpEndpoint, IpEndpoint);

/// The sockets of one stack (see the module documentation).
#[derive(Debug)]
pub struct Sockets {
    shards: Vec<Shard>,
    /// Flow → the socket that owns it (in a flow shard).
    flows: HashMap<Flow, SocketHandle>,
    /// The flow each placed socket was filed under (smoltcp forgets a closed socket's
    /// endpoints, so removal needs this to find the flow entry).
    placed: HashMap<SocketHandle, Flow>,
    count: usize,
}

impl Default for Sockets {
    fn default() -> Self {
        Self {
            shards: (0..=LISTEN_SHARD)
                .map(|_| Shard {
                    set: SocketSet::new(Vec::new()),
                    dirty: false,
                    poll_at: None,
                })
                .collect(),
            flows: HashMap::new(),
            placed: HashMap::new(),
            count: 0,
        }
    }
}

fn flow_shard(flow: &Flow) -> u16 {
    // FNV-1a over ports and addresses: stable and cheap.
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    };
    for ep in [flow.0, flow.1] {
        eat(&ep.port.to_be_bytes());
        match ep.addr {
            IpAddress::Ipv4(a) => eat(&a.octets()),
            IpAddress::Ipv6(a) => eat(&a.octets()),
        }
    }
    1 + (h as usize % FLOW_SHARDS) as u16
}

impl Sockets {
    /// The socket `h` (panics if `h` was removed, as smoltcp does).
    pub fn get<T: AnySocket<'static>>(&self, h: SocketHandle) -> &T {
        self.shards[usize::from(h.shard)].set.get(h.inner)
    }

    /// The socket `h`, to change it: its shard gets an egress pass at the next poll.
    pub fn get_mut<T: AnySocket<'static>>(&mut self, h: SocketHandle) -> &mut T {
        let shard = &mut self.shards[usize::from(h.shard)];
        shard.dirty = true;
        shard.set.get_mut(h.inner)
    }

    /// Adds a socket: a TCP socket to the listen shard, any other to the datagram shard.
    pub fn add<T: AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        let socket = socket.upcast();
        let index = match socket {
            Socket::Tcp(_) => LISTEN_SHARD,
            _ => 0,
        };
        let shard = &mut self.shards[index];
        shard.dirty = true;
        self.count += 1;
        SocketHandle {
            shard: index as u16,
            inner: shard.set.add(socket),
        }
    }

    /// Removes socket `h` and returns it.
    pub fn remove(&mut self, h: SocketHandle) -> Socket<'static> {
        let shard = &mut self.shards[usize::from(h.shard)];
        let socket = shard.set.remove(h.inner);
        shard.dirty = true;
        self.count -= 1;
        if let Some(flow) = self.placed.remove(&h)
            && self.flows.get(&flow) == Some(&h)
        {
            self.flows.remove(&flow);
        }
        socket
    }

    /// Every socket.
    pub fn iter(&self) -> impl Iterator<Item = (SocketHandle, &Socket<'static>)> {
        self.shards.iter().enumerate().flat_map(|(i, s)| {
            s.set.iter().map(move |(inner, sock)| {
                (
                    SocketHandle {
                        shard: i as u16,
                        inner,
                    },
                    sock,
                )
            })
        })
    }

    /// How many sockets there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Moves TCP socket `h` from the listen shard to its flow's shard, once its endpoints
    /// are known. Returns its (new) handle.
    pub(crate) fn place(&mut self, h: SocketHandle) -> SocketHandle {
        if usize::from(h.shard) != LISTEN_SHARD {
            return h;
        }
        let t = self.shards[LISTEN_SHARD]
            .set
            .get::<tcp::Socket<'static>>(h.inner);
        let (Some(local), Some(remote)) = (t.local_endpoint(), t.remote_endpoint()) else {
            return h;
        };
        let flow = (local, remote);
        let shard = flow_shard(&flow);
        let socket = self.shards[LISTEN_SHARD].set.remove(h.inner);
        let target = &mut self.shards[usize::from(shard)];
        target.dirty = true;
        let placed = SocketHandle {
            shard,
            inner: target.set.add(socket),
        };
        // A newer connection on the same flow (the old one closed but not removed yet)
        // takes the flow over.
        if let Some(old) = self.flows.insert(flow, placed) {
            self.placed.remove(&old);
        }
        self.placed.insert(placed, flow);
        placed
    }

    /// The shard that must see `frame` (an Ethernet frame): its flow's, else the listen
    /// shard. A SYN without ACK on a known flow goes to the flow's socket while that is
    /// synchronized — smoltcp answers it with a challenge ACK (RFC 5961 §4) and the
    /// connection stays — and to the listeners only once the socket is closed or in
    /// TIME-WAIT (a client reusing its ports for a new connection, as Linux allows).
    pub(crate) fn shard_for(&self, frame: &[u8]) -> usize {
        match transport(frame) {
            Transport::Other => 0,
            Transport::Tcp(Some((flow, flags))) if !self.flows.is_empty() => {
                let Some(h) = self.flows.get(&flow) else {
                    return LISTEN_SHARD;
                };
                if flags & 0x12 == 0x02
                    && matches!(
                        self.get::<tcp::Socket<'static>>(*h).state(),
                        tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen
                    )
                {
                    return LISTEN_SHARD;
                }
                usize::from(h.shard)
            }
            Transport::Tcp(_) => LISTEN_SHARD,
        }
    }

    /// A shard to receive into: marks it for an egress pass.
    pub(crate) fn shard_mut(&mut self, i: usize) -> &mut SocketSet<'static> {
        let s = &mut self.shards[i];
        s.dirty = true;
        &mut s.set
    }

    /// Runs `egress` on every shard that needs it; it returns whether socket state changed
    /// and the shard's next deadline. Returns whether any socket state changed.
    pub(crate) fn egress(
        &mut self,
        now: Instant,
        mut egress: impl FnMut(&mut SocketSet<'static>) -> (bool, Option<Instant>),
    ) -> bool {
        let mut changed = false;
        for s in &mut self.shards {
            if s.dirty || s.poll_at.is_some_and(|t| t <= now) {
                let (c, at) = egress(&mut s.set);
                changed |= c;
                s.dirty = false;
                s.poll_at = at;
            }
        }
        changed
    }

    /// The earliest moment a shard needs an egress pass. Shards marked since the last pass
    /// (the application touched a socket) ask `poll_at` afresh — a socket that was only read
    /// needs nothing, one that was written to needs a pass now — and are unmarked.
    pub(crate) fn next_poll(
        &mut self,
        mut poll_at: impl FnMut(&SocketSet<'static>) -> Option<Instant>,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for s in &mut self.shards {
            if s.dirty {
                s.poll_at = poll_at(&s.set);
                s.dirty = false;
            }
            next = match (next, s.poll_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }
}

/// What a received frame carries, as far as picking its shard goes.
enum Transport {
    /// A TCP segment (of IPv4, or IPv6 behind hop-by-hop, routing and destination-options
    /// headers): its (local, remote) endpoints and flags, if the headers are all there.
    Tcp(Option<(Flow, u8)>),
    /// Anything else: UDP, ICMP, ARP, NDP, other protocols.
    Other,
}

/// Classifies a frame addressed to us (see [`Transport`]). An IP packet cut short whose
/// last protocol read is TCP, or an IPv6 extension header (TCP or not cannot be told), goes
/// with TCP: to the listen shard, where smoltcp drops it.
fn transport(frame: &[u8]) -> Transport {
    match parse_ip(frame) {
        IpParse::Ip(ip) if ip.protocol == IPPROTO_TCP => Transport::Tcp(ip.tcp(frame).map(|t| {
            let local = IpEndpoint::new(ip.dst(frame), t.dst_port);
            let remote = IpEndpoint::new(ip.src(frame), t.src_port);
            ((local, remote), t.flags)
        })),
        IpParse::Cut { protocol: Some(p) } if p == IPPROTO_TCP || is_ipv6_option_header(p) => {
            Transport::Tcp(None)
        }
        IpParse::Ip(_) | IpParse::Cut { .. } | IpParse::NotIp => Transport::Other,
    }
}

/// The (local, remote) endpoints and the flags of a TCP segment in an Ethernet frame
/// addressed to us.
#[cfg(test)]
fn tcp_flow(frame: &[u8]) -> Option<(Flow, u8)> {
    match transport(frame) {
        Transport::Tcp(t) => t,
        Transport::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_spread_over_the_flow_shards_and_frames_find_their_flow() {
        let local = IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), 80);
        let mut seen = std::collections::HashSet::new();
        for port in 1000..3000u16 {
            let s = flow_shard(&(local, IpEndpoint::new(IpAddress::v4(10, 0, 0, 2), port)));
            assert!((1..=FLOW_SHARDS as u16).contains(&s));
            seen.insert(s);
        }
        assert_eq!(seen.len(), FLOW_SHARDS, "every flow shard gets flows");

        // An IPv4 TCP segment from 10.0.0.2:1234 to 10.0.0.1:80.
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[47] = 0x10; // ACK
        let (flow, _) = tcp_flow(&f).expect("a TCP flow");
        assert_eq!(
            flow,
            (local, IpEndpoint::new(IpAddress::v4(10, 0, 0, 2), 1234))
        );
        let mut s = Sockets::default();
        assert_eq!(s.shard_for(&f), LISTEN_SHARD);
        let h = s.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        ));
        // File it in flow shard 7 (as `place` would once its endpoints are known).
        let sock = s.shards[LISTEN_SHARD].set.remove(h.inner);
        let placed = SocketHandle {
            shard: 7,
            inner: s.shards[7].set.add(sock),
        };
        s.flows.insert(flow, placed);
        assert_eq!(s.shard_for(&f), 7);
        f[47] = 0x02; // a bare SYN on the flow of a closed socket: the listeners
        assert_eq!(s.shard_for(&f), LISTEN_SHARD);
        f[47] = 0x12; // SYN-ACK (an outgoing connection's answer): its shard
        assert_eq!(s.shard_for(&f), 7);
        // Truncated TCP: its flow's shard once ports and flags are there, else the listen
        // shard (smoltcp drops it there); shorter than an IPv4 header's protocol field:
        // nothing to tell, the datagram shard.
        for len in 0..54 {
            let want = match len {
                48.. => 7,
                24.. => LISTEN_SHARD,
                _ => 0,
            };
            assert_eq!(s.shard_for(&f[..len]), want, "length {len}");
        }
        f[23] = 17; // UDP: the datagram shard, away from the listeners
        assert_eq!(s.shard_for(&f), 0);
        for len in 0..54 {
            assert_eq!(s.shard_for(&f[..len]), 0);
        }
    }

    #[test]
    fn ipv6_frames_pick_their_shard_behind_extension_headers() {
        let s = Sockets::default();
        // IPv6, next header hop-by-hop (8 bytes), then `upper`, 20 bytes of it.
        let frame = |upper: u8| {
            let mut f = vec![0u8; 14 + 40 + 8 + 20];
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f[14] = 0x60;
            f[14 + 4..14 + 6].copy_from_slice(&28u16.to_be_bytes());
            f[14 + 6] = 0; // hop-by-hop
            f[14 + 40] = upper;
            f
        };
        assert_eq!(
            s.shard_for(&frame(6)),
            LISTEN_SHARD,
            "TCP behind hop-by-hop"
        );
        assert_eq!(s.shard_for(&frame(17)), 0, "UDP behind hop-by-hop");
        assert_eq!(s.shard_for(&frame(58)), 0, "ICMPv6 (MLD) behind hop-by-hop");
        // The extension header cut short: TCP or not cannot be told; the listen shard,
        // where smoltcp drops it.
        assert_eq!(s.shard_for(&frame(6)[..14 + 41]), LISTEN_SHARD);
        assert_eq!(tcp_flow(&frame(6)).map(|(_, flags)| flags), Some(0));
    }
}
