//! One network stack: a smoltcp `Interface` and `SocketSet` over a [`Link`].
//!
//! Sans-IO in the sense that matters: the stack never reads the clock and never blocks on
//! its own. The owning thread's loop passes `now` to [`Stack::poll`] and decides whether to
//! sleep ([`Stack::wait`]) or spin. The same stack runs over AF_XDP, or over any other
//! [`Link`] (an in-memory one in tests).

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use smoltcp::{
    iface::{Config, Interface, PollIngressSingleResult, PollResult},
    socket::{tcp, udp},
    time::Instant,
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint},
};

use crate::{
    device::Link,
    sockets::{SocketHandle, Sockets},
};

/// TCP congestion control of a stack's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// None: send as fast as the window allows.
    None,
    /// Reno.
    Reno,
    /// Cubic.
    #[default]
    Cubic,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "reno" => Ok(Self::Reno),
            "cubic" => Ok(Self::Cubic),
            _ => Err(format!(
                "unknown congestion control {s:?} (none, reno, cubic)"
            )),
        }
    }
}

/// Errors of stack configuration and socket creation.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// An address cannot be used by a stack.
    #[error("{addr} cannot be a stack address: {why}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        why: &'static str,
    },
    /// Too many addresses for one stack.
    #[error("a stack has at most {max} addresses")]
    TooManyAddresses {
        /// The limit.
        max: usize,
    },
    /// The socket limit is reached.
    #[error("the stack's limit of {0} sockets is reached")]
    SocketLimit(usize),
    /// A socket could not listen or bind.
    #[error("cannot listen on port {port}: {why}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        why: String,
    },
}

/// A stack's configuration.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The stack's MAC (unicast).
    pub mac: [u8; 6],
    /// IPv4 addresses with prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// Default IPv4 gateway.
    pub gateway_v4: Option<Ipv4Addr>,
    /// Default IPv6 gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// IP MTU.
    pub mtu: usize,
    /// TCP receive buffer per socket, bytes.
    pub tcp_rx_buffer: usize,
    /// TCP send buffer per socket, bytes.
    pub tcp_tx_buffer: usize,
    /// Congestion control.
    pub congestion: Congestion,
    /// Most sockets the stack may hold.
    pub max_sockets: usize,
    /// Seed for smoltcp's randomness (initial sequence numbers, ports).
    pub seed: u64,
    /// The owner's index of this stack (e.g. its thread index), shown by `ioth endpoints`
    /// and used as the `thread` label of metrics.
    pub thread: u32,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            mac: [0x02, 0, 0, 0, 0, 1],
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            gateway_v4: None,
            gateway_v6: None,
            mtu: 1500,
            tcp_rx_buffer: 64 * 1024,
            tcp_tx_buffer: 64 * 1024,
            congestion: Congestion::default(),
            max_sockets: 4096,
            seed: 0x10_7e_ad,
            thread: 0,
        }
    }
}

/// Most addresses one stack holds (smoltcp's compile-time limit, minus the link-local one).
pub const MAX_ADDRESSES: usize = 3;

impl StackConfig {
    /// Checks the addresses before anything is built (smoltcp panics on some).
    pub fn validate(&self) -> Result<(), StackError> {
        if self.mac[0] & 1 != 0 || self.mac == [0; 6] {
            return Err(StackError::BadAddress {
                addr: crate::classifier::format_mac(self.mac),
                why: "a stack MAC must be unicast and non-zero",
            });
        }
        if self.ipv4.len() + self.ipv6.len() > MAX_ADDRESSES {
            return Err(StackError::TooManyAddresses { max: MAX_ADDRESSES });
        }
        for (a, p) in &self.ipv4 {
            let bad = |why| StackError::BadAddress {
                addr: format!("{a}/{p}"),
                why,
            };
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                return Err(bad("not a unicast address"));
            }
            if *p == 0 || *p > 32 {
                return Err(bad("prefix length must be 1..=32"));
            }
        }
        for (a, p) in &self.ipv6 {
            if a.is_unspecified() || a.is_multicast() || *p == 0 || *p > 128 {
                return Err(StackError::BadAddress {
                    addr: format!("{a}/{p}"),
                    why: "not a unicast address with prefix 1..=128",
                });
            }
        }
        Ok(())
    }
}

/// One stack: interface, sockets and the link it runs over.
pub struct Stack<L: Link> {
    iface: Interface,
    sockets: Sockets,
    link: L,
    config: StackConfig,
    /// The last poll stopped at its receive budget with frames still waiting.
    rx_left: bool,
}

/// Most frames one [`Stack::poll`] takes in before it sends and returns (like NAPI's
/// budget): under a flood the application still gets to read its sockets and the stack to
/// answer, instead of receiving until its socket buffers overflow.
pub const RX_BUDGET: usize = 64;

impl<L: Link> fmt::Debug for Stack<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("mac", &self.config.mac)
            .field("ipv4", &self.config.ipv4)
            .field("ipv6", &self.config.ipv6)
            .finish_non_exhaustive()
    }
}

impl<L: Link> Stack<L> {
    /// Builds a stack over `link`. `now` is the stack's notion of the current time.
    pub fn new(mut link: L, config: StackConfig, now: Instant) -> Result<Self, StackError> {
        config.validate()?;
        let mut c = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        c.random_seed = config.seed;
        let mut iface = Interface::new(c, &mut link, now);
        let mut overflow = false;
        iface.update_ip_addrs(|addrs| {
            for (a, p) in &config.ipv4 {
                overflow |= addrs.push(IpCidr::new(IpAddress::Ipv4(*a), *p)).is_err();
            }
            for (a, p) in &config.ipv6 {
                overflow |= addrs.push(IpCidr::new(IpAddress::Ipv6(*a), *p)).is_err();
            }
        });
        if overflow {
            return Err(StackError::TooManyAddresses { max: MAX_ADDRESSES });
        }
        if let Some(gw) = config.gateway_v4 {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        if let Some(gw) = config.gateway_v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(gw);
        }
        Ok(Self {
            iface,
            sockets: Sockets::default(),
            link,
            config,
            rx_left: false,
        })
    }

    /// Processes everything that arrived and sends what is due. Returns whether socket
    /// state may have changed (the application should look at its sockets).
    ///
    /// Each received frame is processed against the socket shard its flow belongs to, and
    /// egress visits only the shards that need it (see [`crate::sockets`]), so the cost per
    /// packet does not grow with idle connections.
    ///
    /// At most [`RX_BUDGET`] frames are taken in per call; [`Stack::rx_pending`] says
    /// whether more were waiting (then poll again before sleeping).
    pub fn poll(&mut self, now: Instant) -> std::io::Result<bool> {
        let Self {
            iface,
            sockets,
            link,
            rx_left,
            ..
        } = self;
        iface.poll_maintenance(now);
        let mut changed = false;
        *rx_left = false;
        let mut taken = 0;
        while let Some(shard) = link.peek(now, |frame| sockets.shard_for(frame)) {
            if taken == RX_BUDGET {
                *rx_left = true;
                break;
            }
            taken += 1;
            match iface.poll_ingress_single(now, link, sockets.shard_mut(shard)) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => changed = true,
            }
        }
        changed |= sockets.egress(now, |set| {
            let mut changed = false;
            while iface.poll_egress(now, link, set) == PollResult::SocketStateChanged {
                changed = true;
            }
            (changed, iface.poll_at(now, set))
        });
        link.flush()?;
        Ok(changed)
    }

    /// How long the stack may sleep before it must be polled again (timers).
    pub fn poll_delay(&mut self, now: Instant) -> Option<Duration> {
        let iface = &mut self.iface;
        self.sockets
            .next_poll(|set| iface.poll_at(now, set))
            .map(|t| Duration::from_micros(if t > now { (t - now).total_micros() } else { 0 }))
    }

    /// Whether the last [`Stack::poll`] left received frames for the next one (it stopped
    /// at [`RX_BUDGET`]).
    pub fn rx_pending(&self) -> bool {
        self.rx_left
    }

    /// Sleeps until frames may be there or the next timer is due (at most `cap`).
    pub fn wait(&mut self, now: Instant, cap: Duration) -> std::io::Result<()> {
        if self.rx_left {
            return Ok(());
        }
        let delay = self.poll_delay(now).map_or(cap, |d| d.min(cap));
        if delay.is_zero() {
            return Ok(());
        }
        self.link.wait(Some(delay))
    }

    /// The sockets.
    pub fn sockets(&mut self) -> &mut Sockets {
        &mut self.sockets
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    fn check_limit(&self) -> Result<(), StackError> {
        if self.sockets.len() >= self.config.max_sockets {
            return Err(StackError::SocketLimit(self.config.max_sockets));
        }
        Ok(())
    }

    /// A new TCP socket with the stack's buffer sizes and congestion control.
    pub fn tcp_socket(&mut self) -> Result<SocketHandle, StackError> {
        self.check_limit()?;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.config.tcp_rx_buffer]),
            tcp::SocketBuffer::new(vec![0; self.config.tcp_tx_buffer]),
        );
        s.set_congestion_control(match self.config.congestion {
            Congestion::None => tcp::CongestionControl::None,
            Congestion::Reno => tcp::CongestionControl::Reno,
            Congestion::Cubic => tcp::CongestionControl::Cubic,
        });
        s.set_nagle_enabled(false);
        Ok(self.sockets.add(s))
    }

    /// Starts connecting TCP socket `h` from `local_port` to `remote`. Returns the socket's
    /// handle from now on (it moves to its flow's shard; `h` is no longer valid).
    pub fn connect_tcp(
        &mut self,
        h: SocketHandle,
        remote: impl Into<smoltcp::wire::IpEndpoint>,
        local_port: u16,
    ) -> Result<SocketHandle, tcp::ConnectError> {
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket<'static>>(h)
            .connect(cx, remote, local_port)?;
        Ok(self.sockets.place(h))
    }

    /// A UDP socket bound to `port`, with room for `slots` datagrams each way.
    pub fn udp_bind(&mut self, port: u16, slots: usize) -> Result<SocketHandle, StackError> {
        self.check_limit()?;
        let buf =
            |n| udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; n], vec![0; n * 2048]);
        let mut s = udp::Socket::new(buf(slots), buf(slots));
        s.bind(port).map_err(|e| StackError::Listen {
            port,
            why: e.to_string(),
        })?;
        Ok(self.sockets.add(s))
    }
}

/// Something that owns a [`Stack`]: a bare stack, or one registered in a data plane
/// ([`crate::EndpointStack`]). The socket APIs ([`crate::aio`], [`crate::blocking`]) work
/// with either.
pub trait StackOwner {
    /// The link type.
    type L: Link;
    /// The stack.
    fn stack(&mut self) -> &mut Stack<Self::L>;
}

impl<L: Link> StackOwner for Stack<L> {
    type L = L;
    fn stack(&mut self) -> &mut Stack<L> {
        self
    }
}

impl StackOwner for crate::dataplane::EndpointStack {
    type L = crate::device::XskDevice;
    fn stack(&mut self) -> &mut Stack<crate::device::XskDevice> {
        self
    }
}

/// A TCP listener with a real backlog.
///
/// smoltcp's listening socket turns into the connection it accepts; it has no accept queue.
/// This keeps `backlog` sockets listening on the port: each one that a SYN turns into a
/// connection moves to the accept queue and is replaced by a fresh listener, so up to
/// `backlog` handshakes can be in flight while the application has not accepted yet.
#[derive(Debug)]
pub struct TcpListener {
    port: u16,
    listening: Vec<SocketHandle>,
    accepted: std::collections::VecDeque<SocketHandle>,
    backlog: usize,
}

impl TcpListener {
    /// Listens on `port` with `backlog` (at least 1) sockets.
    pub fn bind<L: Link>(
        stack: &mut Stack<L>,
        port: u16,
        backlog: usize,
    ) -> Result<Self, StackError> {
        let mut l = Self {
            port,
            listening: Vec::new(),
            accepted: Default::default(),
            backlog: backlog.max(1),
        };
        l.replenish(stack)?;
        Ok(l)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn replenish<L: Link>(&mut self, stack: &mut Stack<L>) -> Result<(), StackError> {
        while self.listening.len() + self.accepted.len() < self.backlog {
            let h = stack.tcp_socket()?;
            let s = stack.sockets.get_mut::<tcp::Socket<'_>>(h);
            s.listen(IpListenEndpoint {
                addr: None,
                port: self.port,
            })
            .map_err(|e| StackError::Listen {
                port: self.port,
                why: e.to_string(),
            })?;
            self.listening.push(h);
        }
        Ok(())
    }

    /// Registers `waker` with every socket of the listen queue, so that a new connection
    /// wakes the task waiting in accept.
    pub fn register_wakers<L: Link>(&self, stack: &mut Stack<L>, waker: &std::task::Waker) {
        for h in self.listening.iter().chain(self.accepted.iter()) {
            stack
                .sockets
                .get_mut::<tcp::Socket<'_>>(*h)
                .register_recv_waker(waker);
        }
    }

    /// The next established connection, if any. Call after every [`Stack::poll`].
    pub fn accept<L: Link>(&mut self, stack: &mut Stack<L>) -> Option<SocketHandle> {
        let mut i = 0;
        while i < self.listening.len() {
            let h = self.listening[i];
            let state = stack.sockets.get::<tcp::Socket<'_>>(h).state();
            if state != tcp::State::Listen {
                self.listening.swap_remove(i);
                self.accepted.push_back(h);
            } else {
                i += 1;
            }
        }
        // Keep the listen queue full; if the socket limit is hit, accept fewer for now.
        if let Err(e) = self.replenish(stack) {
            log::debug!("listener on port {}: {e}", self.port);
        }
        // Hand out connections once established (or already past it: data may be queued),
        // moved to their flow's shard.
        let pos = self.accepted.iter().position(|h| {
            let s = stack.sockets.get::<tcp::Socket<'_>>(*h);
            s.may_send() || s.may_recv() || !s.is_open()
        })?;
        let h = self.accepted.remove(pos)?;
        Some(stack.sockets.place(h))
    }
}
