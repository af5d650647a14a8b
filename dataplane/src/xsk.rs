//! AF_XDP sockets and their UMEM, through xsk-rs.
//!
//! One [`QueueUmem`] exists per (interface, rx queue): every socket bound to that queue must
//! share it, and with it its single fill ring and single completion ring (a kernel rule).
//! Those two rings and the free-frame list live behind one mutex, taken once per batch;
//! each [`XskSocket`] owns its own rx and tx rings and needs no lock for them.
//!
//! Frame ownership: a frame is in exactly one place at a time — free (the queue's free list or
//! a socket's small cache), the fill ring or the kernel (after refill), user space (after rx,
//! until released; or while a frame to send is written), the tx ring or the kernel (after
//! flush), then free again via the completion ring. The counters of [`FrameAccount`] follow
//! every move, batch by batch, so tests can prove nothing leaked.
//!
//! This module is the only one in the crate with `unsafe`: xsk-rs's ring operations are
//! unsafe because the caller must guarantee frame descriptors belong to the UMEM and are
//! not in two places at once, which the ownership discipline above guarantees.
#![allow(unsafe_code)]

use std::{
    fmt, io,
    num::NonZeroU32,
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem,
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

/// Errors of AF_XDP set-up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The UMEM could not be created.
    #[error("creating the UMEM for {iface} queue {queue}: {reason}")]
    Umem {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// What xsk-rs said.
        reason: String,
    },
    /// The socket could not be created or bound.
    #[error("creating an AF_XDP socket on {iface} queue {queue}: {reason}")]
    Socket {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// What xsk-rs said.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// A ring operation failed.
    #[error("AF_XDP ring operation on {what}")]
    Io {
        /// Which operation.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = XskError> = std::result::Result<T, E>;

/// Sizes of a queue's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM.
    pub frames: u32,
    /// Fill and completion ring sizes.
    pub fill_size: u32,
    /// Rx and tx ring sizes of each socket.
    pub ring_size: u32,
    /// Ask for need_wakeup (recommended).
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frames: 4096,
            fill_size: 2048,
            ring_size: 2048,
            need_wakeup: true,
        }
    }
}

/// How the first socket of a queue was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// XDP_ZEROCOPY: the NIC DMAs into the UMEM.
    ZeroCopy,
    /// XDP_COPY: the kernel copies each frame into the UMEM.
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Where a queue's frames are, counted on every move.
#[derive(Debug, Default)]
pub struct FrameAccount {
    free: AtomicU64,
    kernel_rx: AtomicU64,
    user: AtomicU64,
    kernel_tx: AtomicU64,
    /// Sampled (once per loop iteration of each socket's owner): frames waiting on the
    /// queue's rx rings, and frames consumed from them but not yet handed to a stack.
    rx_ring: AtomicU64,
    rx_batch: AtomicU64,
}

/// A queue's frames in the six states of their cycle (free → fill → rx → stack → tx →
/// completion → free). `free`, `stack` + `rx` and `tx` + `completion` + `fill` come from the
/// exact accounting; how many of the kernel's frames already sit on an rx ring and how many
/// of the user's are still in a received batch is sampled from the ring indices by each
/// socket's owner once per loop iteration, and the completion ring is read when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStates {
    /// On the free list or a tx cache.
    pub free: u64,
    /// In the fill ring or held by the kernel for reception.
    pub fill: u64,
    /// Received: on an rx ring, or taken from it and not yet handed to a stack.
    pub rx: u64,
    /// Handed to a stack and not yet released.
    pub stack: u64,
    /// Written for transmission: on a tx ring or held by the kernel.
    pub tx: u64,
    /// Transmitted, waiting on the completion ring.
    pub completion: u64,
}

/// A snapshot of [`FrameAccount`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// On the free list.
    pub free: u64,
    /// In the fill ring, owned by the kernel, or in an rx ring not yet consumed.
    pub kernel_rx: u64,
    /// Held by user space (a socket's batch or a stack).
    pub user: u64,
    /// In a tx ring, owned by the kernel, or in the completion ring not yet consumed.
    pub kernel_tx: u64,
}

impl FrameCounts {
    /// All frames: must always equal the UMEM's frame count.
    pub fn total(&self) -> u64 {
        self.free + self.kernel_rx + self.user + self.kernel_tx
    }
}

impl FrameAccount {
    fn snapshot(&self) -> FrameCounts {
        FrameCounts {
            free: self.free.load(Ordering::Relaxed),
            kernel_rx: self.kernel_rx.load(Ordering::Relaxed),
            user: self.user.load(Ordering::Relaxed),
            kernel_tx: self.kernel_tx.load(Ordering::Relaxed),
        }
    }

    fn moved(&self, from: &AtomicU64, to: &AtomicU64, n: usize) {
        from.fetch_sub(n as u64, Ordering::Relaxed);
        to.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Frames a socket takes from (or gives back to) the shared free list at once.
const CACHE_BATCH: usize = 64;

/// The parts of a queue shared by all its sockets: one fill ring, one completion ring and
/// the free list. Locked once per batch, never per frame.
struct Shared {
    fill: Option<(FillQueue, CompQueue)>,
    free: Vec<FrameDesc>,
    /// Scratch space for completion-ring batches.
    completed: Vec<FrameDesc>,
    /// Most frames the kernel may hold for reception: the fill ring's size, at most half
    /// the UMEM. Without a limit a flood parks every frame on the fill and rx rings and
    /// leaves none free to write answers into.
    rx_limit: usize,
}

impl Shared {
    /// Moves completed tx frames to the free list. Returns how many.
    fn reclaim(&mut self, account: &FrameAccount) -> usize {
        let Some((_, cq)) = self.fill.as_mut() else {
            return 0;
        };
        // SAFETY: the completion ring hands back descriptors of frames this UMEM's sockets
        // submitted for transmission; the kernel is done with them.
        let n = unsafe { cq.consume(&mut self.completed) };
        self.free.extend_from_slice(&self.completed[..n]);
        account.moved(&account.kernel_tx, &account.free, n);
        n
    }

    /// Tops up the fill ring from the free list. Returns how many frames were produced.
    fn top_up(&mut self, account: &FrameAccount) -> usize {
        let Shared {
            fill,
            free,
            rx_limit,
            ..
        } = self;
        let Some((fq, _)) = fill.as_mut() else {
            return 0;
        };
        // The kernel holds at most `rx_limit` frames for reception (fill ring, in flight,
        // rx rings): the rest of the UMEM stays for received frames user space still holds
        // and for transmission, so a flood cannot take every frame and starve replies.
        let held = account.kernel_rx.load(Ordering::Relaxed) as usize;
        let room = rx_limit.saturating_sub(held);
        let n = (fq.nb_free(free.len() as u32) as usize)
            .min(free.len())
            .min(room);
        if n == 0 {
            return 0;
        }
        let start = free.len() - n;
        // SAFETY: descriptors on the free list belong to this UMEM and nothing refers to
        // their frames until the kernel hands them back on an rx ring.
        let produced = unsafe { fq.produce(&free[start..]) };
        free.truncate(free.len() - produced);
        account.moved(&account.free, &account.kernel_rx, produced);
        produced
    }

    fn fill_needs_wakeup(&self) -> bool {
        self.fill.as_ref().is_some_and(|(fq, _)| fq.needs_wakeup())
    }
}

/// The UMEM of one (interface, rx queue), shared by every socket bound to that queue.
pub struct QueueUmem {
    iface: String,
    queue: u32,
    config: XskConfig,
    umem: Umem,
    shared: Mutex<Shared>,
    account: FrameAccount,
    mode: Mutex<Option<BindMode>>,
}

impl fmt::Debug for QueueUmem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueUmem")
            .field("iface", &self.iface)
            .field("queue", &self.queue)
            .field("frames", &self.account.snapshot())
            .finish_non_exhaustive()
    }
}

fn queue_size(n: u32, what: &str) -> Result<QueueSize> {
    QueueSize::new(n).map_err(|e| XskError::Config(format!("{what} {n}: {e}")))
}

impl QueueUmem {
    /// Creates the UMEM for `iface` queue `queue`. No socket is bound yet.
    pub fn new(iface: &str, queue: u32, config: XskConfig) -> Result<Arc<Self>> {
        let umem_err = |reason: String| XskError::Umem {
            iface: iface.to_owned(),
            queue,
            reason,
        };
        let frames = NonZeroU32::new(config.frames)
            .ok_or_else(|| XskError::Config("zero UMEM frames".into()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(2048).map_err(|e| umem_err(e.to_string()))?)
            .fill_queue_size(queue_size(config.fill_size, "fill ring size")?)
            .comp_queue_size(queue_size(config.fill_size, "completion ring size")?)
            .build()
            .map_err(|e| umem_err(e.to_string()))?;
        let (umem, descs) =
            Umem::new(umem_config, frames, false).map_err(|e| umem_err(e.to_string()))?;
        let account = FrameAccount::default();
        account.free.store(descs.len() as u64, Ordering::Relaxed);
        Ok(Arc::new(Self {
            iface: iface.to_owned(),
            queue,
            config,
            umem,
            shared: Mutex::new(Shared {
                fill: None,
                free: descs,
                completed: vec![FrameDesc::default(); config.fill_size as usize],
                rx_limit: config.fill_size.min(config.frames / 2) as usize,
            }),
            account,
            mode: Mutex::new(None),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves rings and free list consistent (every step
        // under it is a complete ring operation), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue's rx queue index.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// How the queue's sockets are bound (after the first socket).
    pub fn mode(&self) -> Option<BindMode> {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the frames are now.
    pub fn frames(&self) -> FrameCounts {
        self.account.snapshot()
    }

    /// The frames by state of their cycle (see [`FrameStates`]; one lock, for metrics).
    pub fn frame_states(&self) -> FrameStates {
        let completion = {
            let mut shared = self.lock();
            shared
                .fill
                .as_mut()
                .map_or(0, |(_, cq)| u64::from(cq.nb_avail_exact()))
        };
        let c = self.account.snapshot();
        let ring = self
            .account
            .rx_ring
            .load(Ordering::Relaxed)
            .min(c.kernel_rx);
        let batch = self.account.rx_batch.load(Ordering::Relaxed).min(c.user);
        let completion = completion.min(c.kernel_tx);
        FrameStates {
            free: c.free,
            fill: c.kernel_rx - ring,
            rx: ring + batch,
            stack: c.user - batch,
            tx: c.kernel_tx - completion,
            completion,
        }
    }

    /// The UMEM's frame count.
    pub fn frame_count(&self) -> u64 {
        u64::from(self.config.frames)
    }

    /// Binds a new socket to the queue, sharing this UMEM. The first socket tries zero-copy
    /// and falls back to copy mode; later ones inherit the mode (they must pass no bind flags).
    pub fn socket(self: &Arc<Self>) -> Result<XskSocket> {
        let sock_err = |reason: String| XskError::Socket {
            iface: self.iface.clone(),
            queue: self.queue,
            reason,
        };
        let iface: Interface = self
            .iface
            .parse()
            .map_err(|e| sock_err(format!("interface name: {e:?}")))?;
        let mut shared = self.lock();
        let first = shared.fill.is_none();
        let wakeup = if self.config.need_wakeup {
            BindFlags::XDP_USE_NEED_WAKEUP
        } else {
            BindFlags::empty()
        };
        let attempts: Vec<(Option<BindMode>, BindFlags)> = if first {
            vec![
                (Some(BindMode::ZeroCopy), BindFlags::XDP_ZEROCOPY | wakeup),
                (Some(BindMode::Copy), BindFlags::XDP_COPY | wakeup),
            ]
        } else {
            // libxdp binds later sockets with XDP_SHARED_UMEM alone, as the kernel requires.
            vec![(None, BindFlags::empty())]
        };
        let mut last_err = String::new();
        for (mode, flags) in attempts {
            let config = SocketConfig::builder()
                .rx_queue_size(queue_size(self.config.ring_size, "rx ring size")?)
                .tx_queue_size(queue_size(self.config.ring_size, "tx ring size")?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(flags)
                .build();
            // SAFETY: INHIBIT_PROG_LOAD is set, as Socket::new requires for a shared UMEM
            // (aya owns the XDP program; libxdp must not load or detach one).
            match unsafe { Socket::new(config, &self.umem, &iface, self.queue) } {
                Ok((tx, rx, rings)) => {
                    if let Some(rings) = rings {
                        shared.fill = Some(rings);
                    }
                    if let Some(mode) = mode {
                        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = Some(mode);
                    }
                    let fd = rx.fd().as_raw_fd();
                    let ring = self.config.ring_size as usize;
                    set_tx_budget(fd, self.config.ring_size);
                    drop(shared);
                    let mut socket = XskSocket {
                        rx: RxPart {
                            queue: Arc::clone(self),
                            ring: rx,
                            fd,
                            batch: vec![FrameDesc::default(); ring],
                            pos: 0,
                            len: 0,
                            recycle: Vec::with_capacity(ring),
                            released: 0,
                            sampled: (0, 0),
                        },
                        tx: TxPart {
                            queue: Arc::clone(self),
                            ring: tx,
                            cache: Vec::with_capacity(CACHE_BATCH * 2),
                            pending: Vec::with_capacity(ring),
                            fd,
                            unkicked: false,
                        },
                    };
                    if first {
                        socket.rx.sync()?;
                    }
                    return Ok(socket);
                }
                Err(e) => {
                    let os = std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<std::io::Error>())
                        .and_then(std::io::Error::raw_os_error);
                    log::debug!(
                        "bind {} queue {} ({mode:?}): {e} ({os:?})",
                        self.iface,
                        self.queue
                    );
                    last_err = match os {
                        // The kernel allows one UMEM per (device, queue).
                        Some(libc::EBUSY) => "the queue is already bound to another AF_XDP \
                            socket's UMEM (another ioth serve, or any AF_XDP program, on this \
                            interface): one process per interface"
                            .to_owned(),
                        Some(errno) => format!("{e}: {}", std::io::Error::from_raw_os_error(errno)),
                        None => e.to_string(),
                    };
                }
            }
        }
        Err(sock_err(last_err))
    }
}

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
            .field("queue", &self.rx.queue.queue)
            .finish_non_exhaustive()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd
    }
}

impl XskSocket {
    /// The queue this socket is bound to.
    pub fn queue(&self) -> &Arc<QueueUmem> {
        &self.rx.queue
    }

    /// Waits up to `timeout_ms` for frames, hands each received frame to `f`, returns the
    /// frames to the fill ring. Returns the number of frames.
    pub fn recv(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8])) -> Result<usize> {
        if self.rx.fetch() == 0 {
            wait_readable(&[self.rx.fd], timeout_ms)?;
        }
        let mut n = 0;
        while let Some(mut desc) = self.rx.next_frame() {
            self.rx.with_frame(&mut desc, |frame| f(frame));
            self.rx.release(desc);
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
    /// Released frames, on their way back to the fill ring.
    recycle: Vec<FrameDesc>,
    /// Frames released since the last sync (for the accounting).
    released: usize,
    /// This socket's share of the queue's sampled `rx_ring` / `rx_batch`.
    sampled: (u64, u64),
}

impl fmt::Debug for RxPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxPart")
            .field("fd", &self.fd)
            .field("queue", &self.queue.queue)
            .finish_non_exhaustive()
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
            q.account.moved(&q.account.kernel_rx, &q.account.user, n);
        }
        self.len - self.pos
    }

    /// The next received frame. User space owns it until [`RxPart::release`].
    pub fn next_frame(&mut self) -> Option<FrameDesc> {
        if self.fetch() == 0 {
            return None;
        }
        let desc = self.batch[self.pos];
        self.pos += 1;
        Some(desc)
    }

    /// Runs `f` on the frame's bytes, mutable in place.
    pub fn with_frame<R>(&self, desc: &mut FrameDesc, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: `desc` came from this socket's rx ring (via `next`) and has not been
        // released: user space owns the frame, nothing else reads or writes it.
        let mut data = unsafe { self.queue.umem.data_mut(desc) };
        f(data.contents_mut())
    }

    /// Gives a frame back; it returns to the fill ring at the next [`RxPart::sync`].
    pub fn release(&mut self, desc: FrameDesc) {
        self.recycle.push(desc);
        self.released += 1;
    }

    /// Returns released frames to the fill ring (one lock), reclaims completed tx frames,
    /// and wakes the kernel if the fill ring asks for it.
    pub fn sync(&mut self) -> Result<()> {
        let q = Arc::clone(&self.queue);
        q.account
            .moved(&q.account.user, &q.account.free, self.released);
        self.released = 0;
        self.sample();
        let needs_wakeup = {
            let mut shared = q.lock();
            shared.free.append(&mut self.recycle);
            shared.reclaim(&q.account);
            shared.top_up(&q.account);
            shared.fill_needs_wakeup()
        };
        if needs_wakeup {
            // Any socket bound to the queue can wake it; use our own fd.
            wait_readable(&[self.fd], 0)?;
        }
        Ok(())
    }
}

impl RxPart {
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
}

impl fmt::Debug for TxPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxPart")
            .field("queue", &self.queue.queue)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl TxPart {
    /// Whether a frame can be written now (takes a batch of free frames if the cache is
    /// empty: one lock per batch).
    pub fn ready(&mut self) -> bool {
        if self.cache.is_empty() {
            let q = &self.queue;
            let mut shared = q.lock();
            shared.reclaim(&q.account);
            let take = CACHE_BATCH.min(shared.free.len());
            let start = shared.free.len() - take;
            self.cache.extend(shared.free.drain(start..));
        }
        !self.cache.is_empty() && self.pending.len() < self.pending.capacity()
    }

    /// Writes a frame of `len` bytes with `f` and queues it for transmission. Returns `None`
    /// if no frame is free (the caller retries later).
    pub fn send<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        if !self.ready() {
            return None;
        }
        let mut desc = self.cache.pop()?;
        // SAFETY: the descriptor comes from the free list (via the cache): it belongs to
        // this UMEM and nothing else refers to its frame.
        let mut data = unsafe { self.queue.umem.data_mut(&mut desc) };
        data.cursor().set_pos(len);
        let r = f(data.contents_mut());
        self.pending.push(desc);
        Some(r)
    }

    /// Puts queued frames on the tx ring and kicks the kernel if it asks for it.
    ///
    /// In copy mode the kernel transmits only inside the kick (sendto), at most its tx
    /// budget per call, and says EAGAIN when it left frames on the ring: those are kicked
    /// again here (a few times) and, if some still remain, at the next flush even when
    /// nothing new was queued, so no frame waits on the ring for more traffic.
    pub fn flush(&mut self) -> Result<usize> {
        if self.pending.is_empty() && !self.unkicked {
            return Ok(0);
        }
        // SAFETY: pending descriptors are frames of this UMEM written by `send`, owned by
        // user space until the kernel takes them from the tx ring.
        let n = unsafe { self.ring.produce(&self.pending) };
        let q = &self.queue;
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

    /// Frames written but not on the ring yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Drop for TxPart {
    fn drop(&mut self) {
        // Cached and unsent frames go back to the queue's free list (sent ones come back
        // through the completion ring).
        let mut shared = self.queue.lock();
        shared.free.append(&mut self.cache);
        shared.free.append(&mut self.pending);
    }
}

impl Drop for RxPart {
    fn drop(&mut self) {
        // Frames still in the batch or released but not yet recycled go back to the free
        // list, so the queue's accounting stays whole when a socket goes away.
        // Frames the kernel already put on this socket's rx ring are drained too: once the
        // socket closes they would be lost to the queue's pool.
        let q = Arc::clone(&self.queue);
        loop {
            self.recycle
                .extend_from_slice(&self.batch[self.pos..self.len]);
            self.released += self.len - self.pos;
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
        shared.free.append(&mut self.recycle);
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

/// Most fds [`wait_readable`] waits on at once (one socket per rx queue of a stack).
const MAX_WAIT_FDS: usize = ioth_common::MAX_QUEUES as usize;

/// Waits until one of `fds` is readable or `timeout_ms` passes (0: just kick the kernel).
/// Allocation-free: it runs once per loop iteration of every stack.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> Result<bool> {
    let n = fds.len().min(MAX_WAIT_FDS);
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_WAIT_FDS];
    for (p, fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = *fd;
        p.events = libc::POLLIN;
    }
    // SAFETY: `pfds[..n]` is a valid, initialised array of pollfd that outlives the call;
    // poll(2) only writes their `revents`. The fds belong to sockets the caller holds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms.max(-1)) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(XskError::Io {
            what: "poll",
            source: e,
        });
    }
    Ok(r > 0)
}
