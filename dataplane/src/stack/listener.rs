//! [`TcpListener`]: a listening port with a real accept queue over smoltcp's sockets.

use smoltcp::{socket::tcp, wire::IpListenEndpoint};

use super::{config::StackError, node::Stack, sockets::SocketHandle};
use crate::link::Link;

/// A TCP listener with a real backlog that a SYN flood cannot fill.
///
/// smoltcp's listening socket turns into the connection it accepts; it has no accept queue.
/// This keeps `backlog` sockets listening on the port: each one that a SYN turns into a
/// connection moves to the accept queue and is replaced by a fresh listener. Like Linux's
/// SYN queue beside its accept queue, the two kinds of waiting connection are bounded apart:
///
/// - *half-open* ones (SYN-RECEIVED): at most `backlog`; beyond, the oldest is dropped, so
///   spoofed SYNs whose SYN-ACKs go unanswered cannot keep real clients out — a real
///   handshake completes within a round trip, long before `backlog` newer SYNs push it out.
///   A half-open connection also ends on its own when the socket's timeout passes
///   ([`crate::StackConfig::tcp_timeout`]), and one closed before it was accepted is freed;
/// - *established* ones the application has not accepted yet: at most `backlog`; while
///   that many wait, no new sockets listen (the application is the bottleneck, and new
///   clients are refused rather than queued without bound).
#[derive(Debug)]
pub struct TcpListener {
    port: u16,
    listening: Vec<SocketHandle>,
    accepted: std::collections::VecDeque<SocketHandle>,
    backlog: usize,
    /// Half-open connections dropped to make room (a SYN flood's mark).
    dropped_half_open: u64,
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
            dropped_half_open: 0,
        };
        l.replenish(stack)?;
        Ok(l)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Half-open connections dropped so far to make room for new ones.
    pub fn dropped_half_open(&self) -> u64 {
        self.dropped_half_open
    }

    fn replenish<L: Link>(&mut self, stack: &mut Stack<L>) -> Result<(), StackError> {
        let waiting = self
            .accepted
            .iter()
            .filter(|h| {
                stack.sockets().get::<tcp::Socket<'_>>(**h).state() != tcp::State::SynReceived
            })
            .count();
        while self.listening.len() < self.backlog && waiting < self.backlog {
            let h = stack.tcp_socket()?;
            let s = stack.sockets().get_mut::<tcp::Socket<'_>>(h);
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
                .sockets()
                .get_mut::<tcp::Socket<'_>>(*h)
                .register_recv_waker(waker);
        }
    }

    /// The next established connection, if any. Call after every [`Stack::poll`].
    pub fn accept<L: Link>(&mut self, stack: &mut Stack<L>) -> Option<SocketHandle> {
        let mut i = 0;
        while i < self.listening.len() {
            let h = self.listening[i];
            let state = stack.sockets().get::<tcp::Socket<'_>>(h).state();
            if state != tcp::State::Listen {
                self.listening.swap_remove(i);
                self.accepted.push_back(h);
            } else {
                i += 1;
            }
        }
        // Handshakes that failed (reset, timed out) before they were accepted: freed.
        let sockets = stack.sockets();
        self.accepted.retain(|h| {
            let closed = sockets.get::<tcp::Socket<'_>>(*h).state() == tcp::State::Closed;
            if closed {
                sockets.remove(*h);
            }
            !closed
        });
        // At most `backlog` half-open: the oldest go first (the queue is in arrival order).
        let mut half_open = self
            .accepted
            .iter()
            .filter(|h| sockets.get::<tcp::Socket<'_>>(**h).state() == tcp::State::SynReceived)
            .count();
        while half_open > self.backlog {
            let Some(pos) = self.accepted.iter().position(|h| {
                sockets.get::<tcp::Socket<'_>>(*h).state() == tcp::State::SynReceived
            }) else {
                break;
            };
            if let Some(h) = self.accepted.remove(pos) {
                sockets.remove(h);
            }
            half_open -= 1;
            self.dropped_half_open += 1;
        }
        // Keep the listen queue full; if the socket limit is hit, accept fewer for now.
        if let Err(e) = self.replenish(stack) {
            log::debug!("listener on port {}: {e}", self.port);
        }
        // Hand out connections once established (or already past it: data may be queued),
        // moved to their flow's shard.
        let pos = self.accepted.iter().position(|h| {
            let s = stack.sockets().get::<tcp::Socket<'_>>(*h);
            s.may_send() || s.may_recv() || !s.is_open()
        })?;
        let h = self.accepted.remove(pos)?;
        Some(stack.sockets().place(h))
    }
}
