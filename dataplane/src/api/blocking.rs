//! The blocking API: `std::io::Read`/`Write` TCP streams and a UDP socket on a thread's
//! own stack.
//!
//! There is no background thread: a blocking call drives the stack itself — it polls,
//! checks whether it can complete, and otherwise sleeps on the link until frames arrive or a
//! timer is due. Every other socket of the stack makes progress meanwhile. Handles are
//! `!Send`: a stack belongs to the thread that made it.

use std::{
    cell::RefCell,
    io,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant as StdInstant},
};

use smoltcp::{
    socket::{tcp, udp},
    time::Instant,
    wire::IpEndpoint,
};

use crate::stack::{SocketHandle, Stack, StackError, StackOwner, TcpListener};

struct Inner<S> {
    owner: S,
    clock: StdInstant,
    /// Sockets of dropped streams, freed once closed.
    graveyard: Vec<SocketHandle>,
}

/// A stack used through blocking calls on its own thread.
pub struct BlockingStack<S> {
    inner: Rc<RefCell<Inner<S>>>,
}

impl<S> Clone for BlockingStack<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for BlockingStack<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingStack").finish_non_exhaustive()
    }
}

/// Longest single sleep while blocked (the stack is polled at least this often).
const MAX_SLEEP: Duration = Duration::from_millis(100);

impl<S: StackOwner> BlockingStack<S> {
    /// Wraps a stack for blocking use.
    pub fn new(owner: S) -> Self {
        Self {
            inner: Rc::new(RefCell::new(Inner {
                owner,
                clock: StdInstant::now(),
                graveyard: Vec::new(),
            })),
        }
    }

    /// Drives the stack until `done` returns `Some`, or `timeout` passes.
    fn drive<R>(
        &self,
        timeout: Option<Duration>,
        mut done: impl FnMut(&mut Stack<S::L>) -> Option<io::Result<R>>,
    ) -> io::Result<R> {
        let start = StdInstant::now();
        loop {
            let mut inner = self.inner.borrow_mut();
            let Inner {
                owner,
                clock,
                graveyard,
            } = &mut *inner;
            let now = Instant::from_micros(clock.elapsed().as_micros() as i64);
            let s = owner.stack();
            s.poll(now)?;
            graveyard.retain(|h| {
                let sock = s.sockets().get_mut::<tcp::Socket<'static>>(*h);
                sock.close();
                let gone = matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait);
                if gone {
                    s.sockets().remove(*h);
                }
                !gone
            });
            if let Some(r) = done(s) {
                // Push out whatever the call queued (data, window updates).
                s.poll(now)?;
                return r;
            }
            let cap = match timeout {
                Some(t) => {
                    let left = t.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    left.min(MAX_SLEEP)
                }
                None => MAX_SLEEP,
            };
            s.wait(now, cap)?;
        }
    }

    /// Listens on `port` with a backlog.
    pub fn listen(&self, port: u16, backlog: usize) -> Result<BlockingTcpListener<S>, StackError> {
        let listener = TcpListener::bind(self.inner.borrow_mut().owner.stack(), port, backlog)?;
        Ok(BlockingTcpListener {
            stack: self.clone(),
            listener,
        })
    }

    /// Connects to `remote` from `local_port` and waits until established.
    pub fn connect(
        &self,
        remote: SocketAddr,
        local_port: u16,
        timeout: Option<Duration>,
    ) -> io::Result<BlockingTcpStream<S>> {
        let handle = {
            let mut inner = self.inner.borrow_mut();
            let s = inner.owner.stack();
            let h = s.tcp_socket().map_err(io::Error::other)?;
            match s.connect_tcp(h, IpEndpoint::from(remote), local_port) {
                Ok(h) => h,
                Err(e) => {
                    s.sockets().remove(h);
                    return Err(io::Error::other(e));
                }
            }
        };
        let stream = BlockingTcpStream {
            stack: self.clone(),
            handle,
            timeout,
        };
        self.drive(timeout, |s| {
            let sock = s.sockets().get_mut::<tcp::Socket<'static>>(handle);
            match sock.state() {
                tcp::State::Established => Some(Ok(())),
                tcp::State::Closed => Some(Err(io::ErrorKind::ConnectionRefused.into())),
                _ => None,
            }
        })?;
        Ok(stream)
    }

    /// A UDP socket bound to `port`.
    pub fn udp_bind(&self, port: u16) -> Result<BlockingUdpSocket<S>, StackError> {
        let handle = self.inner.borrow_mut().owner.stack().udp_bind(port, 64)?;
        Ok(BlockingUdpSocket {
            stack: self.clone(),
            handle,
            timeout: None,
        })
    }
}

/// A TCP listener used through blocking calls.
pub struct BlockingTcpListener<S> {
    stack: BlockingStack<S>,
    listener: TcpListener,
}

impl<S> std::fmt::Debug for BlockingTcpListener<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingTcpListener")
            .field("port", &self.listener.port())
            .finish_non_exhaustive()
    }
}

impl<S: StackOwner> BlockingTcpListener<S> {
    /// Waits for the next connection.
    pub fn accept(&mut self) -> io::Result<BlockingTcpStream<S>> {
        let listener = &mut self.listener;
        let handle = self.stack.drive(None, |s| listener.accept(s).map(Ok))?;
        Ok(BlockingTcpStream {
            stack: self.stack.clone(),
            handle,
            timeout: None,
        })
    }
}

/// A TCP connection: `std::io::Read + Write`.
pub struct BlockingTcpStream<S: StackOwner> {
    stack: BlockingStack<S>,
    handle: SocketHandle,
    timeout: Option<Duration>,
}

impl<S: StackOwner> std::fmt::Debug for BlockingTcpStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingTcpStream")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<S: StackOwner> BlockingTcpStream<S> {
    /// Sets the timeout of reads and writes (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}

impl<S: StackOwner> BlockingTcpStream<S> {
    /// Sends everything queued, closes the sending side (FIN) and waits until the peer
    /// acknowledged it. Dropping a stream closes it too, but only the next blocking call on
    /// the stack sends the FIN; call this when nothing else will drive the stack.
    pub fn shutdown(&mut self) -> io::Result<()> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<tcp::Socket<'static>>(h);
            sock.close();
            matches!(
                sock.state(),
                tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed
            )
            .then_some(Ok(()))
        })
    }
}

impl<S: StackOwner> io::Read for BlockingTcpStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<tcp::Socket<'static>>(h);
            if sock.can_recv() {
                Some(sock.recv_slice(buf).map_err(io::Error::other))
            } else if !sock.may_recv() {
                Some(Ok(0))
            } else {
                None
            }
        })
    }
}

impl<S: StackOwner> io::Write for BlockingTcpStream<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<tcp::Socket<'static>>(h);
            if !sock.may_send() {
                Some(Err(io::ErrorKind::BrokenPipe.into()))
            } else if sock.can_send() {
                Some(sock.send_slice(data).map_err(io::Error::other))
            } else {
                None
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<tcp::Socket<'static>>(h);
            (sock.send_queue() == 0 || !sock.may_send()).then_some(Ok(()))
        })
    }
}

impl<S: StackOwner> Drop for BlockingTcpStream<S> {
    fn drop(&mut self) {
        // Closed and freed by the next blocking call on this stack.
        if let Ok(mut inner) = self.stack.inner.try_borrow_mut() {
            inner.graveyard.push(self.handle);
        }
    }
}

/// A UDP socket used through blocking calls.
pub struct BlockingUdpSocket<S> {
    stack: BlockingStack<S>,
    handle: SocketHandle,
    timeout: Option<Duration>,
}

impl<S> std::fmt::Debug for BlockingUdpSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingUdpSocket").finish_non_exhaustive()
    }
}

impl<S: StackOwner> BlockingUdpSocket<S> {
    /// Sets the timeout of `recv_from` (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Waits for a datagram; returns its length and sender.
    pub fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, IpEndpoint)> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<udp::Socket<'static>>(h);
            match sock.recv_slice(buf) {
                Ok((n, meta)) => Some(Ok((n, meta.endpoint))),
                Err(udp::RecvError::Exhausted) => None,
                Err(e) => Some(Err(io::Error::other(e))),
            }
        })
    }

    /// Sends a datagram to `to` (waits for buffer space).
    pub fn send_to(&mut self, data: &[u8], to: IpEndpoint) -> io::Result<()> {
        let h = self.handle;
        self.stack.drive(self.timeout, |s| {
            let sock = s.sockets().get_mut::<udp::Socket<'static>>(h);
            match sock.send_slice(data, to) {
                Ok(()) => Some(Ok(())),
                Err(udp::SendError::BufferFull) => None,
                Err(e) => Some(Err(io::Error::other(e))),
            }
        })
    }
}
