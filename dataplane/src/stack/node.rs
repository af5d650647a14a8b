//! One network stack: a smoltcp `Interface` and `SocketSet` over a [`Link`].
//!
//! Sans-IO in the sense that matters: the stack never reads the clock and never blocks on
//! its own. The owning thread's loop passes `now` to [`Stack::poll`] and decides whether to
//! sleep ([`Stack::wait`]) or spin. The same stack runs over AF_XDP, or over any other
//! [`Link`] (an in-memory one in tests).

use std::{fmt, time::Duration};

use smoltcp::{
    iface::{Config, Interface, PollIngressSingleResult, PollResult},
    socket::{tcp, udp},
    time::Instant,
    wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr},
};

use super::{
    config::{Congestion, MAX_ADDRESSES, StackConfig, StackError},
    sockets::{SocketHandle, Sockets},
};
use crate::link::Link;

/// One stack: interface, sockets and the link it runs over.
pub struct Stack<L: Link> {
    iface: Interface,
    sockets: Sockets,
    link: L,
    config: StackConfig,
    /// The last poll stopped at its receive budget with frames still waiting.
    rx_left: bool,
    /// Sockets refused because `max_sockets` were open.
    limit_hits: u64,
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
            limit_hits: 0,
        })
    }

    /// Processes everything that arrived and sends what is due. Returns whether socket
    /// state may have changed (the application should look at its sockets).
    ///
    /// Each received frame is processed against the socket shard its flow belongs to, and
    /// egress visits only the shards that need it (see [`super::sockets`]), so the cost per
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

    /// Sockets refused so far because [`StackConfig::max_sockets`] were open (a listener
    /// that cannot refill its queue, a bind or connect that failed): for a metric and a
    /// warning, so that hitting the limit is never silent.
    pub fn socket_limit_hits(&self) -> u64 {
        self.limit_hits
    }

    fn check_limit(&mut self) -> Result<(), StackError> {
        if self.sockets.len() >= self.config.max_sockets {
            self.limit_hits += 1;
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
        s.set_timeout(self.config.tcp_timeout);
        s.set_keep_alive(self.config.tcp_keep_alive);
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
/// ([`crate::endpoint::EndpointStack`]). The socket APIs ([`crate::api`]) work
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
