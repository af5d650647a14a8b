//! [`TcpListener`]: a listening port with a real accept queue over smoltcp's sockets.

use smoltcp::{socket::tcp, wire::IpListenEndpoint};

use super::{config::StackError, node::Stack, sockets::SocketHandle};
use crate::link::Link;

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
