//! AF_XDP sockets: the per-socket rx and tx rings, and the guards that own frames while user
//! space holds them.
//!
//! A socket is split into an [`RxPart`] and a [`TxPart`] so the two directions can be driven
//! independently. A received frame leaves the rx half only as an [`RxFrame`]: it borrows the
//! half, cannot be copied, and returns the frame (to the fill ring, at the next
//! [`RxPart::sync`]) when it drops — also when a closure using it panics. A frame to send is
//! a [`TxSlot`]: written in place, queued by [`TxSlot::send`], given back if dropped unsent.
//! No public function takes or returns a raw frame descriptor, so safe code cannot alias a
//! frame, use it after returning it, or return it twice. A guard that is forgotten
//! (`mem::forget`) leaks its frame; the half notices at its next sync and the UMEM's audit
//! reports it.
#![allow(unsafe_code)]

use std::{
    fmt, io,
    os::fd::{AsRawFd, RawFd},
    sync::{Arc, atomic::Ordering},
};

use xsk_rs::{
    FrameDesc, RxQueue, Socket, TxQueue,
    config::{BindFlags, Interface, LibxdpFlags, SocketConfig},
};

use super::{
    ledger::Place,
    umem::{BindMode, MAX_RX_BATCH, QueueUmem, Result, XskError, queue_size},
};
use crate::sys::wait_readable;

/// Frames a socket takes from (or gives back to) the shared free list at once.
const CACHE_BATCH: usize = 64;

/// One AF_XDP socket: its own rx and tx rings, the queue's shared UMEM. Split it with
/// [`XskSocket::into_parts`] to drive the two directions independently.
pub struct XskSocket {
    rx: RxPart,
    tx: TxPart,
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.rx.fd)
            .field("queue", &self.rx.queue.queue())
            .finish_non_exhaustive()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd
    }
}

impl XskSocket {
    /// Binds a new socket to `queue`'s interface and rx queue, sharing its UMEM. The first
    /// socket of a queue tries zero-copy and falls back to copy mode; later ones inherit the
    /// mode (they must pass no bind flags).
    pub fn bind(queue: &Arc<QueueUmem>) -> Result<XskSocket> {
        let sock_err = |reason: String| XskError::Socket {
            iface: queue.iface().to_owned(),
            queue: queue.queue(),
            reason,
        };
        let iface: Interface = queue
            .iface()
            .parse()
            .map_err(|e| sock_err(format!("interface name: {e:?}")))?;
        let config = queue.config();
        let mut shared = queue.lock();
        let first = shared.fill.is_none();
        let wakeup = if config.need_wakeup {
            BindFlags::XDP_USE_NEED_WAKEUP
        } else {
            BindFlags::empty()
        };
        let attempts: &[(Option<BindMode>, BindFlags)] = if first {
            &[
                (
                    Some(BindMode::ZeroCopy),
                    BindFlags::XDP_ZEROCOPY.union(wakeup),
                ),
                (Some(BindMode::Copy), BindFlags::XDP_COPY.union(wakeup)),
            ]
        } else {
            // libxdp binds later sockets with XDP_SHARED_UMEM alone, as the kernel requires.
            &[(None, BindFlags::empty())]
        };
        let mut last_err = String::new();
        for &(mode, flags) in attempts {
            let socket_config = SocketConfig::builder()
                .rx_queue_size(queue_size(config.rx_ring_size, "rx ring size")?)
                .tx_queue_size(queue_size(config.tx_ring_size, "tx ring size")?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(flags)
                .build();
            // SAFETY: INHIBIT_PROG_LOAD is set, as Socket::new requires for a shared UMEM
            // (aya owns the XDP program; libxdp must not load or detach one).
            match unsafe { Socket::new(socket_config, queue.umem(), &iface, queue.queue()) } {
                Ok((tx, rx, rings)) => {
                    if let Some(rings) = rings {
                        shared.fill = Some(rings);
                    }
                    if let Some(mode) = mode {
                        queue.set_mode(mode);
                    }
                    let fd = rx.fd().as_raw_fd();
                    let batch = (config.rx_ring_size as usize).min(MAX_RX_BATCH);
                    let ring = config.tx_ring_size as usize;
                    set_tx_budget(fd, config.tx_ring_size);
                    drop(shared);
                    let mut socket = XskSocket {
                        rx: RxPart {
                            queue: Arc::clone(queue),
                            ring: rx,
                            fd,
                            batch: vec![FrameDesc::default(); batch],
                            pos: 0,
                            len: 0,
                            recycle: Vec::with_capacity(batch),
                            released: 0,
                            out: 0,
                            sampled: (0, 0),
                        },
                        tx: TxPart {
                            queue: Arc::clone(queue),
                            ring: tx,
                            cache: Vec::with_capacity(CACHE_BATCH * 2),
                            pending: Vec::with_capacity(ring),
                            fd,
                            unkicked: false,
                            out: 0,
                        },
                    };
                    if first {
                        socket.rx.sync()?;
                    }
                    return Ok(socket);
                }
                Err(e) => {
                    let os = std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .and_then(io::Error::raw_os_error);
                    log::debug!(
                        "bind {} queue {} ({mode:?}): {e} ({os:?})",
                        queue.iface(),
                        queue.queue()
                    );
                    last_err = match os {
                        // The kernel allows one UMEM per (device, queue).
                        Some(libc::EBUSY) => "the queue is already bound to another AF_XDP \
                            socket's UMEM (another ioth serve, or any AF_XDP program, on this \
                            interface): one process per interface"
                            .to_owned(),
                        Some(errno) => format!("{e}: {}", io::Error::from_raw_os_error(errno)),
                        None => e.to_string(),
                    };
                }
            }
        }
        Err(sock_err(last_err))
    }

    /// The queue this socket is bound to.
    pub fn queue(&self) -> &Arc<QueueUmem> {
        &self.rx.queue
    }

    /// Waits up to `timeout_ms` for frames, hands each received frame to `f`, returns the
    /// frames to the fill ring. Returns the number of frames.
    pub fn recv(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8])) -> Result<usize> {
        if self.rx.fetch() == 0 {
            wait_readable(&[self.rx.fd], timeout_ms).map_err(|source| XskError::Io {
                what: "poll",
                source,
            })?;
        }
        let mut n = 0;
        while let Some(frame) = self.rx.next_frame() {
            f(frame.bytes());
            n += 1;
        }
        self.rx.sync()?;
        Ok(n)
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub fn statistics(&self) -> Result<xsk_rs::socket::XdpStatistics> {
        self.rx.statistics()
    }

    /// The receive and transmit halves.
    pub fn into_parts(self) -> (RxPart, TxPart) {
        (self.rx, self.tx)
    }
}

/// The receive half of a socket: its rx ring and the frames taken from it.
pub struct RxPart {
    queue: Arc<QueueUmem>,
    ring: RxQueue,
    fd: RawFd,
    /// Descriptors consumed from the rx ring; `pos..len` are not handed out yet.
    batch: Vec<FrameDesc>,
    pos: usize,
    len: usize,
    /// Returned frames, on their way back to the fill ring.
    recycle: Vec<FrameDesc>,
    /// Frames returned since the last sync (for the accounting).
    released: usize,
    /// Frames handed out as [`RxFrame`]s and not returned yet.
    out: usize,
    /// This socket's share of the queue's sampled `rx_ring` / `rx_batch`.
    sampled: (u64, u64),
}

impl fmt::Debug for RxPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxPart")
            .field("fd", &self.fd)
            .field("queue", &self.queue.queue())
            .finish_non_exhaustive()
    }
}

/// A received frame, owned by user space while this guard lives. Dropping it returns the
/// frame (to the fill ring at the next [`RxPart::sync`]).
#[must_use = "dropping a received frame returns it at once"]
pub struct RxFrame<'a> {
    part: &'a mut RxPart,
    desc: FrameDesc,
}

impl fmt::Debug for RxFrame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxFrame")
            .field("len", &self.bytes().len())
            .finish_non_exhaustive()
    }
}

impl RxFrame<'_> {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the guard owns the frame exclusively (it came off this socket's rx ring
        // and is returned only when the guard drops); the slice borrows the guard.
        unsafe { self.part.queue.bytes(&self.desc) }
    }

    /// The frame's bytes, to change in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`; `&mut self` makes this the only reference.
        unsafe { self.part.queue.bytes_mut(&mut self.desc) }
    }
}

impl Drop for RxFrame<'_> {
    fn drop(&mut self) {
        let p = &mut *self.part;
        p.queue.note(
            std::slice::from_ref(&self.desc),
            Place::Stack,
            Place::Recycle,
        );
        p.recycle.push(self.desc);
        p.released += 1;
        p.out -= 1;
    }
}

impl RxPart {
    /// The socket's fd (for the XskMap and for waiting).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The queue this half belongs to.
    pub fn queue(&self) -> &Arc<QueueUmem> {
        &self.queue
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub fn statistics(&self) -> Result<xsk_rs::socket::XdpStatistics> {
        self.ring
            .fd()
            .xdp_statistics()
            .map_err(|source| XskError::Io {
                what: "XDP_STATISTICS",
                source,
            })
    }

    /// Frames ready to be handed out, consuming a new batch from the rx ring if the last
    /// one is used up. No system call.
    pub fn fetch(&mut self) -> usize {
        if self.pos == self.len {
            // SAFETY: `batch` only receives descriptors the kernel hands over on this
            // socket's rx ring; they belong to this UMEM, and the previous batch has been
            // handed out entirely (pos == len).
            let n = unsafe { self.ring.consume(&mut self.batch) };
            self.pos = 0;
            self.len = n;
            let q = &self.queue;
            q.note(&self.batch[..n], Place::KernelRx, Place::Batch);
            q.account.moved(&q.account.kernel_rx, &q.account.user, n);
        }
        self.len - self.pos
    }

    /// The next received frame, still in the batch: to look at (and change in place, e.g.
    /// to complete a checksum) before [`RxPart::next_frame`] takes it or
    /// [`RxPart::skip`] drops it.
    pub fn peek_mut(&mut self) -> Option<&mut [u8]> {
        if self.fetch() == 0 {
            return None;
        }
        let desc = &mut self.batch[self.pos];
        // SAFETY: the frame came off this socket's rx ring and is not handed out yet:
        // user space owns it and only this half can reach it; the slice borrows the half.
        Some(unsafe { self.queue.bytes_mut(desc) })
    }

    /// Hands out the next received frame.
    pub fn next_frame(&mut self) -> Option<RxFrame<'_>> {
        if self.fetch() == 0 {
            return None;
        }
        let desc = self.batch[self.pos];
        self.pos += 1;
        self.out += 1;
        self.queue
            .note(std::slice::from_ref(&desc), Place::Batch, Place::Stack);
        Some(RxFrame { part: self, desc })
    }

    /// Drops the next received frame (it returns at the next sync). Returns whether there
    /// was one.
    pub fn skip(&mut self) -> bool {
        self.next_frame().is_some()
    }

    /// Returns released frames to the fill ring (one lock), reclaims completed tx frames,
    /// and wakes the kernel if the fill ring asks for it.
    pub fn sync(&mut self) -> Result<()> {
        if self.out != 0 {
            // No guard can be alive while `&mut self` is borrowed: these were forgotten.
            let out = std::mem::take(&mut self.out);
            self.queue.violation(|| {
                format!("{out} received frame(s) never returned (a guard was forgotten)")
            });
        }
        let q = Arc::clone(&self.queue);
        q.account
            .moved(&q.account.user, &q.account.free, self.released);
        self.released = 0;
        self.sample();
        let needs_wakeup = {
            let mut shared = q.lock();
            q.note(&self.recycle, Place::Recycle, Place::Free);
            shared.free.append(&mut self.recycle);
            shared.reclaim(&q);
            shared.top_up(&q);
            shared.fill_needs_wakeup()
        };
        if needs_wakeup {
            // Any socket bound to the queue can wake it; use our own fd.
            wait_readable(&[self.fd], 0).map_err(|source| XskError::Io {
                what: "fill ring wakeup",
                source,
            })?;
        }
        Ok(())
    }

    /// Publishes this socket's rx-ring and batch occupancy to the queue's account (two
    /// relaxed adds when they changed; the ring's producer index is one load).
    fn sample(&mut self) {
        let now = (
            u64::from(self.ring.nb_avail_exact()),
            (self.len - self.pos) as u64,
        );
        let (ring, batch) = self.sampled;
        if now != self.sampled {
            let a = &self.queue.account;
            a.rx_ring
                .fetch_add(now.0.wrapping_sub(ring), Ordering::Relaxed);
            a.rx_batch
                .fetch_add(now.1.wrapping_sub(batch), Ordering::Relaxed);
            self.sampled = now;
        }
    }
}

impl Drop for RxPart {
    fn drop(&mut self) {
        // Frames still in the batch or returned but not yet recycled go back to the free
        // list, so the queue's accounting stays whole when a socket goes away. Frames the
        // kernel already put on this socket's rx ring are drained too: once the socket
        // closes they would be lost to the queue's pool.
        let q = Arc::clone(&self.queue);
        if self.out != 0 {
            q.violation(|| {
                format!(
                    "{} received frame(s) never returned when their socket closed",
                    self.out
                )
            });
        }
        loop {
            let rest = &self.batch[self.pos..self.len];
            q.note(rest, Place::Batch, Place::Recycle);
            self.recycle.extend_from_slice(rest);
            self.released += rest.len();
            self.pos = self.len;
            if self.fetch() == 0 {
                break;
            }
        }
        q.account
            .moved(&q.account.user, &q.account.free, self.released);
        let (ring, batch) = self.sampled;
        q.account.rx_ring.fetch_sub(ring, Ordering::Relaxed);
        q.account.rx_batch.fetch_sub(batch, Ordering::Relaxed);
        let mut shared = q.lock();
        q.note(&self.recycle, Place::Recycle, Place::Free);
        shared.free.append(&mut self.recycle);
    }
}

/// The transmit half of a socket: its tx ring and a small cache of free frames.
pub struct TxPart {
    queue: Arc<QueueUmem>,
    ring: TxQueue,
    /// Free frames this socket may write (counted as free).
    cache: Vec<FrameDesc>,
    /// Written frames not yet on the tx ring.
    pending: Vec<FrameDesc>,
    /// The socket's fd (for kicks).
    fd: RawFd,
    /// The last kick left frames on the tx ring.
    unkicked: bool,
    /// Slots handed out and not yet sent or given back.
    out: usize,
}

impl fmt::Debug for TxPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxPart")
            .field("queue", &self.queue.queue())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// A free UMEM frame of a set length to write a frame into. [`TxSlot::send`] queues it for
/// transmission (the next [`TxPart::flush`] puts it on the tx ring); dropped unsent, it goes
/// back to the free frames.
#[must_use = "a slot that is not sent is given back"]
pub struct TxSlot<'a> {
    part: &'a mut TxPart,
    desc: FrameDesc,
    sent: bool,
}

impl fmt::Debug for TxSlot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxSlot").finish_non_exhaustive()
    }
}

impl TxSlot<'_> {
    /// The frame's bytes (as long as asked for), to write.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the slot owns the frame exclusively: it was taken from the free frames
        // and goes to the tx ring or back to them only when the slot is consumed.
        unsafe { self.part.queue.bytes_mut(&mut self.desc) }
    }

    /// Queues the frame for transmission.
    pub fn send(mut self) {
        self.sent = true;
    }
}

impl Drop for TxSlot<'_> {
    fn drop(&mut self) {
        let p = &mut *self.part;
        p.out -= 1;
        if self.sent {
            p.pending.push(self.desc);
        } else {
            p.queue
                .note(std::slice::from_ref(&self.desc), Place::Tx, Place::Free);
            p.cache.push(self.desc);
        }
    }
}

impl TxPart {
    /// Whether a frame can be written now (takes a batch of free frames if the cache is
    /// empty: one lock per batch).
    pub fn ready(&mut self) -> bool {
        if self.cache.is_empty() {
            let q = &self.queue;
            let mut shared = q.lock();
            shared.reclaim(q);
            let take = CACHE_BATCH.min(shared.free.len());
            let start = shared.free.len() - take;
            self.cache.extend(shared.free.drain(start..));
        }
        !self.cache.is_empty() && self.pending.len() < self.pending.capacity()
    }

    /// A free frame of `len` bytes to write, or `None` if none is free (the caller retries
    /// later).
    pub fn slot(&mut self, len: usize) -> Option<TxSlot<'_>> {
        if !self.ready() {
            return None;
        }
        let mut desc = self.cache.pop()?;
        self.queue
            .note(std::slice::from_ref(&desc), Place::Free, Place::Tx);
        // SAFETY: the descriptor comes from the free frames: it belongs to this UMEM and
        // nothing else refers to its frame.
        let _ = unsafe { self.queue.write_mut(&mut desc, len) };
        self.out += 1;
        Some(TxSlot {
            part: self,
            desc,
            sent: false,
        })
    }

    /// Puts queued frames on the tx ring and kicks the kernel if it asks for it.
    ///
    /// In copy mode the kernel transmits only inside the kick (sendto), at most its tx
    /// budget per call, and says EAGAIN when it left frames on the ring: those are kicked
    /// again here (a few times) and, if some still remain, at the next flush even when
    /// nothing new was queued, so no frame waits on the ring for more traffic.
    pub fn flush(&mut self) -> Result<usize> {
        if self.out != 0 {
            let out = std::mem::take(&mut self.out);
            self.queue
                .violation(|| format!("{out} transmit slot(s) never sent or given back"));
        }
        if self.pending.is_empty() && !self.unkicked {
            return Ok(0);
        }
        // SAFETY: pending descriptors are frames of this UMEM written through slots, owned
        // by user space until the kernel takes them from the tx ring.
        let n = unsafe { self.ring.produce(&self.pending) };
        let q = &self.queue;
        q.note(&self.pending[..n], Place::Tx, Place::KernelTx);
        q.account.moved(&q.account.free, &q.account.kernel_tx, n);
        self.pending.drain(..n);
        if (n > 0 || self.unkicked) && self.ring.needs_wakeup() {
            self.unkicked = true;
            for _ in 0..TX_KICKS {
                if !kick_tx(self.fd).map_err(|source| XskError::Io {
                    what: "tx wakeup",
                    source,
                })? {
                    self.unkicked = false;
                    break;
                }
            }
        } else {
            self.unkicked = false;
        }
        Ok(n)
    }
}

impl Drop for TxPart {
    fn drop(&mut self) {
        // Cached and unsent frames go back to the queue's free list (sent ones come back
        // through the completion ring).
        let q = Arc::clone(&self.queue);
        let mut shared = q.lock();
        q.note(&self.pending, Place::Tx, Place::Free);
        shared.free.append(&mut self.cache);
        shared.free.append(&mut self.pending);
    }
}

/// Kicks per flush while the kernel leaves frames on the tx ring (copy mode).
const TX_KICKS: usize = 4;

/// `SOL_XDP` and `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17, `include/uapi/linux/if_xdp.h`; not in
/// the libc crate yet).
const SOL_XDP: libc::c_int = 283;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Lets one copy-mode kick send up to `frames` frames instead of the kernel's default 32.
/// Older kernels do not know the option: then each kick sends 32 and [`TxPart::flush`]
/// kicks again.
fn set_tx_budget(fd: RawFd, frames: u32) {
    let budget: u32 = frames;
    // SAFETY: `budget` is a live u32 for the duration of the call and its size is passed;
    // setsockopt only reads it. `fd` is the AF_XDP socket just created.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&raw const budget).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!(
            "XDP_MAX_TX_SKB_BUDGET {frames}: {}",
            io::Error::last_os_error()
        );
    }
}

/// Asks the kernel to transmit what is on the socket's tx ring (sendto, no data). Returns
/// whether it left frames there (EAGAIN: its per-call budget ran out, or the completion
/// ring is full until user space reclaims).
fn kick_tx(fd: RawFd) -> io::Result<bool> {
    // SAFETY: a zero-length sendto with null buffer and address is how AF_XDP is told to
    // transmit; the kernel reads no user memory.
    let r = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if r >= 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Ok(true),
        // Busy (another kick in progress), no buffers, link down: the frames stay on the
        // ring and the next flush tries again.
        Some(libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}
