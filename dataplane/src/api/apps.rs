//! Small TCP services driven from a stack's poll loop: the echo, discard and source steps
//! that `ioth serve` and the benchmark's TAP server share, so both measure the same code.

use smoltcp::socket::tcp;

use crate::stack::{SocketHandle, Sockets};

/// Whether a UDP echo may answer a datagram from source port `port`. System ports (below
/// 1024, and 0) belong to servers — echo, chargen, daytime, DNS, NTP — and answering one lets
/// a single spoofed datagram start an endless loop between two services (the echo–chargen
/// loop, CVE-1999-0103). inetd refuses its own services' ports; this refuses every system
/// port. Clients send from ephemeral ports and are answered.
pub fn udp_echo_allowed(port: u16) -> bool {
    port >= 1024
}

/// What a TCP service does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Sends back what it receives, in order, with the peer's window as backpressure.
    Echo,
    /// Reads and forgets.
    Discard,
    /// Sends zeros as fast as the peer takes them (like chargen), and forgets what it reads.
    Source,
}

/// One connection of a [`Service`].
#[derive(Debug)]
pub struct ServiceConn {
    /// The service.
    pub service: Service,
    /// The connection.
    pub handle: SocketHandle,
    /// Echo: bytes received that did not fit the send buffer yet (sent first next time).
    pending: Vec<u8>,
}

/// What one [`ServiceConn::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes were received (the stack has work: poll it again).
    pub received: bool,
    /// The connection is over and its socket removed: drop the `ServiceConn`.
    pub done: bool,
}

impl ServiceConn {
    /// A connection of `service` on socket `handle` (e.g. from [`crate::stack::TcpListener::accept`]).
    pub fn new(service: Service, handle: SocketHandle) -> Self {
        Self {
            service,
            handle,
            pending: Vec::new(),
        }
    }

    /// Serves what arrived; closes once the peer has closed and everything is sent; removes
    /// the socket when the connection is over. `buf` is scratch space.
    ///
    /// An idle connection is only looked at (`Sockets::get`), which leaves its shard alone:
    /// idle connections cost the stack nothing.
    pub fn step(&mut self, sockets: &mut Sockets, buf: &mut [u8]) -> Step {
        let s = sockets.get::<tcp::Socket<'static>>(self.handle);
        if s.state() == tcp::State::Established
            && s.may_recv()
            && !s.can_recv()
            && self.pending.is_empty()
            && (self.service != Service::Source || !s.can_send())
        {
            return Step::default();
        }
        let s = sockets.get_mut::<tcp::Socket<'static>>(self.handle);
        let mut received = false;
        match self.service {
            Service::Echo => {
                // Bytes that did not fit last time go first, so the echo keeps order.
                if !self.pending.is_empty() {
                    let sent = s.send_slice(&self.pending).unwrap_or(0);
                    self.pending.drain(..sent);
                }
                // Take only what the send buffer can hold: the peer's window is the
                // backpressure, nothing piles up in user space.
                let room = s.send_capacity() - s.send_queue();
                if self.pending.is_empty() && room > 0 && s.can_recv() {
                    let take = room.min(buf.len());
                    let n = s.recv_slice(&mut buf[..take]).unwrap_or(0);
                    let sent = s.send_slice(&buf[..n]).unwrap_or(0);
                    self.pending.extend_from_slice(&buf[sent..n]);
                    received = n > 0;
                }
            }
            Service::Discard | Service::Source => {
                while let Ok(n) = s.recv_slice(buf) {
                    if n == 0 {
                        break;
                    }
                    received = true;
                }
                if self.service == Service::Source && s.may_send() {
                    // Fill the send buffer in place; the peer's window paces it.
                    let _ = s.send(|room| {
                        room.fill(0);
                        (room.len(), ())
                    });
                }
            }
        }
        if !s.may_recv() && s.send_queue() == 0 && self.pending.is_empty() && s.is_open() {
            s.close();
        }
        let done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
        if done {
            sockets.remove(self.handle);
        }
        Step { received, done }
    }
}
