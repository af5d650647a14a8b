//! The tokio API: a stack driven by a task on the thread's current-thread runtime, and TCP
//! streams that implement `AsyncRead`/`AsyncWrite`, so tokio code — hyper included — runs
//! on a thread's own network stack.
//!
//! Everything here is `!Send` on purpose: a stack belongs to one thread. Use a
//! current-thread runtime with a `LocalSet` (see `examples/hyper_server.rs`).
//!
//! How it fits together: [`AsyncStack::drive`] is a future that polls the stack whenever a
//! link fd becomes readable, a stack timer is due, or a socket operation asks for it (a
//! `Notify`). Socket futures register their wakers with smoltcp's sockets, which wake them
//! on data, space or state changes.
#![allow(unsafe_code)]

use std::{
    cell::RefCell,
    io,
    os::fd::RawFd,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use smoltcp::{
    socket::{tcp, udp},
    time::Instant,
    wire::IpEndpoint,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf, unix::AsyncFd},
    sync::Notify,
};

use crate::stack::{SocketHandle, Stack, StackError, StackOwner, TcpListener};

/// A link whose readiness can be awaited through file descriptors.
pub trait PollFds {
    /// The fds that become readable when frames arrive.
    fn poll_fds(&self) -> Vec<RawFd>;
}

impl PollFds for crate::link::XskDevice {
    fn poll_fds(&self) -> Vec<RawFd> {
        self.rx_parts()
            .iter()
            .map(|r| r.fd())
            .chain(self.local_fd())
            .collect()
    }
}

impl PollFds for crate::link::tap::TapLink {
    fn poll_fds(&self) -> Vec<RawFd> {
        use std::os::fd::AsRawFd;
        vec![self.as_raw_fd()]
    }
}

struct Inner<S> {
    owner: S,
    clock: std::time::Instant,
}

impl<S: StackOwner> Inner<S> {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as i64)
    }
}

/// A stack shared by the tasks of one thread.
pub struct AsyncStack<S> {
    inner: Rc<RefCell<Inner<S>>>,
    kick: Rc<Notify>,
    /// Sockets of dropped streams: closed, removed from the set once fully closed.
    graveyard: Rc<RefCell<Vec<SocketHandle>>>,
}

impl<S> Clone for AsyncStack<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Rc::clone(&self.inner),
            kick: Rc::clone(&self.kick),
            graveyard: Rc::clone(&self.graveyard),
        }
    }
}

impl<S> std::fmt::Debug for AsyncStack<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncStack").finish_non_exhaustive()
    }
}

/// A raw fd registered with tokio's reactor (the fd is owned by the link, not by us).
struct Fd(RawFd);

impl std::os::fd::AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl<S: StackOwner + 'static> AsyncStack<S>
where
    S::L: PollFds,
{
    /// Wraps a stack. Call [`AsyncStack::drive`] on a task of the same thread.
    pub fn new(owner: S) -> Self {
        Self {
            inner: Rc::new(RefCell::new(Inner {
                owner,
                clock: std::time::Instant::now(),
            })),
            kick: Rc::new(Notify::new()),
            graveyard: Rc::new(RefCell::new(Vec::new())),
        }
    }

    /// Closes the sockets of dropped streams and frees those that are fully closed.
    fn reap(&self, s: &mut Stack<S::L>) {
        self.graveyard.borrow_mut().retain(|h| {
            let done = match s.sockets().get_mut::<smoltcp::socket::Socket<'static>>(*h) {
                smoltcp::socket::Socket::Tcp(sock) => {
                    sock.close();
                    matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait)
                }
                _ => true,
            };
            if done {
                s.sockets().remove(*h);
            }
            !done
        });
    }

    fn with<R>(&self, f: impl FnOnce(&mut Stack<S::L>) -> R) -> R {
        let mut inner = self.inner.borrow_mut();
        f(inner.owner.stack())
    }

    /// Runs the stack until the future is dropped: polls it on frames, on timers and when a
    /// socket operation asks for it.
    pub async fn drive(self) -> io::Result<()> {
        let fds = self.with(|s| s.link().poll_fds());
        let fds: Vec<AsyncFd<Fd>> = fds
            .into_iter()
            .map(|fd| {
                // SAFETY: the fd belongs to the link inside `self.inner`, which this future
                // keeps alive (it holds an `Rc` to it) for as long as the `AsyncFd` exists;
                // the link never replaces its fds.
                unsafe { AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }
                    .map_err(io::Error::from)
            })
            .collect::<io::Result<_>>()?;
        loop {
            let (delay, more) = {
                let mut inner = self.inner.borrow_mut();
                let now = inner.now();
                let s = inner.owner.stack();
                s.poll(now)?;
                self.reap(s);
                (s.poll_delay(now), s.rx_pending())
            };
            if more {
                // Frames are still waiting (the poll stopped at its budget): let the tasks
                // read their sockets, then take the rest in. Their fd readiness is already
                // spent, so waiting for it could leave them until the next timer.
                tokio::task::yield_now().await;
                continue;
            }
            let sleep = tokio::time::sleep(delay.unwrap_or(Duration::from_secs(1)));
            tokio::pin!(sleep);
            let readable = async {
                // Wait for any fd; clear its readiness so the next wait blocks again (the
                // poll above drains what is there).
                let futs = fds.iter().map(|fd| Box::pin(fd.readable()));
                let (guard, _, _) = futures_select_all(futs).await;
                if let Ok(mut g) = guard {
                    g.clear_ready();
                }
            };
            tokio::select! {
                _ = &mut sleep => {}
                _ = readable => {}
                _ = self.kick.notified() => {}
            }
        }
    }

    /// A UDP socket bound to `port`.
    pub fn udp_bind(&self, port: u16) -> Result<AsyncUdpSocket<S>, StackError> {
        let handle = self.with(|s| s.udp_bind(port, 64))?;
        Ok(AsyncUdpSocket {
            stack: self.clone(),
            handle,
        })
    }

    /// Listens on `port` with a backlog.
    pub fn listen(&self, port: u16, backlog: usize) -> Result<AsyncTcpListener<S>, StackError> {
        let listener = self.with(|s| TcpListener::bind(s, port, backlog))?;
        Ok(AsyncTcpListener {
            stack: self.clone(),
            listener,
        })
    }
}

/// Minimal select-all over boxed futures (avoids a dependency for one use).
async fn futures_select_all<F: std::future::Future + Unpin>(
    futs: impl Iterator<Item = F>,
) -> (F::Output, usize, ()) {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        if futs.is_empty() {
            return Poll::Pending;
        }
        for (i, f) in futs.iter_mut().enumerate() {
            if let Poll::Ready(out) = Pin::new(f).poll(cx) {
                return Poll::Ready((out, i, ()));
            }
        }
        Poll::Pending
    })
    .await
}

/// A TCP listener on an [`AsyncStack`].
pub struct AsyncTcpListener<S> {
    stack: AsyncStack<S>,
    listener: TcpListener,
}

impl<S> std::fmt::Debug for AsyncTcpListener<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTcpListener")
            .field("port", &self.listener.port())
            .finish_non_exhaustive()
    }
}

impl<S: StackOwner + 'static> AsyncTcpListener<S>
where
    S::L: PollFds,
{
    /// The next established connection.
    pub async fn accept(&mut self) -> AsyncTcpStream<S> {
        let handle = std::future::poll_fn(|cx| {
            let stack = &self.stack;
            let listener = &mut self.listener;
            stack.with(|s| match listener.accept(s) {
                Some(h) => Poll::Ready(h),
                None => {
                    listener.register_wakers(s, cx.waker());
                    Poll::Pending
                }
            })
        })
        .await;
        // Accepting replenished the listen queue: let the driver see the new sockets.
        self.stack.kick.notify_one();
        AsyncTcpStream {
            stack: self.stack.clone(),
            handle,
        }
    }
}

/// A TCP connection on an [`AsyncStack`]: `AsyncRead + AsyncWrite`.
pub struct AsyncTcpStream<S> {
    stack: AsyncStack<S>,
    handle: SocketHandle,
}

impl<S> std::fmt::Debug for AsyncTcpStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTcpStream")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<S: StackOwner + 'static> AsyncTcpStream<S>
where
    S::L: PollFds,
{
    fn socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        self.stack
            .with(|s| f(s.sockets().get_mut::<tcp::Socket<'static>>(self.handle)))
    }
}

impl<S: StackOwner + 'static> AsyncRead for AsyncTcpStream<S>
where
    S::L: PollFds,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.socket(|s| {
            if s.can_recv() {
                let n = s
                    .recv_slice(buf.initialize_unfilled())
                    .map_err(io::Error::other)?;
                buf.advance(n);
                return Poll::Ready(Ok(true));
            }
            if !s.may_recv() {
                // The peer closed (or the connection is gone): end of stream.
                return Poll::Ready(Ok(false));
            }
            s.register_recv_waker(cx.waker());
            Poll::Pending
        });
        if let Poll::Ready(Ok(true)) = r {
            // Reading opened the window: let the driver tell the peer.
            self.stack.kick.notify_one();
        }
        r.map_ok(|_| ())
    }
}

impl<S: StackOwner + 'static> AsyncWrite for AsyncTcpStream<S>
where
    S::L: PollFds,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.socket(|s| {
            if !s.may_send() {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
            }
            if s.can_send() {
                return Poll::Ready(s.send_slice(data).map_err(io::Error::other));
            }
            s.register_send_waker(cx.waker());
            Poll::Pending
        });
        if r.is_ready() {
            self.stack.kick.notify_one();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket(|s| {
            if s.send_queue() == 0 || !s.may_send() {
                Poll::Ready(Ok(()))
            } else {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket(|s| s.close());
        self.stack.kick.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl<S> Drop for AsyncTcpStream<S> {
    fn drop(&mut self) {
        // The driver closes the socket and frees it once the close handshake is done.
        self.stack.graveyard.borrow_mut().push(self.handle);
        self.stack.kick.notify_one();
    }
}

/// A UDP socket on an [`AsyncStack`].
pub struct AsyncUdpSocket<S> {
    stack: AsyncStack<S>,
    handle: SocketHandle,
}

impl<S> std::fmt::Debug for AsyncUdpSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncUdpSocket")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<S: StackOwner + 'static> AsyncUdpSocket<S>
where
    S::L: PollFds,
{
    /// Receives a datagram: its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, IpEndpoint)> {
        std::future::poll_fn(|cx| {
            self.stack.with(|s| {
                let sock = s.sockets().get_mut::<udp::Socket<'static>>(self.handle);
                match sock.recv_slice(buf) {
                    Ok((n, meta)) => Poll::Ready(Ok((n, meta.endpoint))),
                    Err(udp::RecvError::Exhausted) => {
                        sock.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(io::Error::other(e))),
                }
            })
        })
        .await
    }

    /// Sends a datagram to `to` (waits for buffer space).
    pub async fn send_to(&self, data: &[u8], to: IpEndpoint) -> io::Result<()> {
        let r = std::future::poll_fn(|cx| {
            self.stack.with(|s| {
                let sock = s.sockets().get_mut::<udp::Socket<'static>>(self.handle);
                match sock.send_slice(data, to) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(udp::SendError::BufferFull) => {
                        sock.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(io::Error::other(e))),
                }
            })
        })
        .await;
        self.stack.kick.notify_one();
        r
    }
}

impl<S> Drop for AsyncUdpSocket<S> {
    fn drop(&mut self) {
        // UDP sockets have no close handshake: the graveyard frees them at once.
        self.stack.graveyard.borrow_mut().push(self.handle);
        self.stack.kick.notify_one();
    }
}
