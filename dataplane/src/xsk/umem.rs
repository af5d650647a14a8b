//! The UMEM of one (interface, rx queue) and the rings all its sockets share.
//!
//! Every socket bound to a queue must share its UMEM, and with it its single fill ring and
//! single completion ring (a kernel rule). Those two rings and the free-frame list live
//! behind one mutex, taken once per batch. The raw frame descriptors never leave the `xsk`
//! module: sockets hand frames out as guards ([`super::RxFrame`], [`super::TxSlot`]).
//!
//! Frame cycle: free → fill ring → kernel → rx ring → a socket's batch → the stack (a guard)
//! → recycled → free; and free → a transmit slot → tx ring → kernel → completion ring →
//! free. [`FrameAccount`] counts every move (for metrics); the [`Ledger`] (debug audit)
//! records each frame's place and catches a frame in two places or in none.
#![allow(unsafe_code)]

use std::{
    fmt, io,
    num::NonZeroU32,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use xsk_rs::{
    CompQueue, FillQueue, FrameDesc, Umem,
    config::{FrameSize, QueueSize, UmemConfig},
};

use super::ledger::{AuditError, Ledger, Place, PlaceCounts};

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

pub(super) type Result<T, E = XskError> = std::result::Result<T, E>;

/// Bytes per UMEM frame.
pub(super) const FRAME_SIZE: u32 = 2048;

/// Headroom the kernel keeps in front of a received frame (`XDP_PACKET_HEADROOM`).
const RX_HEADROOM: usize = 256;

/// The largest Ethernet frame (header included) a UMEM frame carries both ways: received
/// frames start after the kernel's headroom.
pub const MAX_FRAME: usize = FRAME_SIZE as usize - RX_HEADROOM;

/// Most frames a socket takes off its rx ring at once (its batch).
pub const MAX_RX_BATCH: usize = 256;

/// Sizes of a queue's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM.
    pub frames: u32,
    /// Fill and completion ring sizes.
    pub fill_size: u32,
    /// Rx ring size of each socket: with its batch (at most [`MAX_RX_BATCH`] frames), the
    /// most frames one endpoint can hold on their way in. Kept well below the fill ring's
    /// share, so an endpoint that stops reading (stalled, or flooded faster than it reads)
    /// fills its own ring and loses its own frames there, while the others on the queue keep
    /// getting fill-ring frames.
    pub rx_ring_size: u32,
    /// Tx ring size of each socket.
    pub tx_ring_size: u32,
    /// Ask for need_wakeup (recommended).
    pub need_wakeup: bool,
    /// Keep the frame ledger for [`QueueUmem::audit`] (one atomic swap per frame move; on
    /// by default in debug builds).
    pub audit: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frames: 4096,
            fill_size: 2048,
            rx_ring_size: 512,
            tx_ring_size: 2048,
            need_wakeup: true,
            audit: cfg!(debug_assertions),
        }
    }
}

/// How the first socket of a queue was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BindMode {
    /// XDP_ZEROCOPY: the NIC DMAs into the UMEM.
    #[serde(rename = "zero-copy")]
    ZeroCopy,
    /// XDP_COPY: the kernel copies each frame into the UMEM.
    #[serde(rename = "copy")]
    Copy,
}

impl BindMode {
    /// The mode as an owner publishes it in the classifier's tx map (`BIND_*`).
    pub fn published(mode: Option<BindMode>) -> u64 {
        match mode {
            Some(BindMode::ZeroCopy) => ioth_common::BIND_ZEROCOPY,
            Some(BindMode::Copy) => ioth_common::BIND_COPY,
            None => ioth_common::BIND_UNKNOWN,
        }
    }

    /// The mode an owner published (`None`: not yet, or unknown).
    pub fn from_published(v: u64) -> Option<BindMode> {
        match v {
            ioth_common::BIND_ZEROCOPY => Some(BindMode::ZeroCopy),
            ioth_common::BIND_COPY => Some(BindMode::Copy),
            _ => None,
        }
    }
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
pub(super) struct FrameAccount {
    pub(super) free: AtomicU64,
    pub(super) kernel_rx: AtomicU64,
    pub(super) user: AtomicU64,
    pub(super) kernel_tx: AtomicU64,
    /// Sampled (once per loop iteration of each socket's owner): frames waiting on the
    /// queue's rx rings, and frames consumed from them but not yet handed to a stack.
    pub(super) rx_ring: AtomicU64,
    pub(super) rx_batch: AtomicU64,
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

/// A snapshot of the exact frame counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// On the free list, a tx cache, or written and not yet on a tx ring.
    pub free: u64,
    /// In the fill ring, owned by the kernel, or in an rx ring not yet consumed.
    pub kernel_rx: u64,
    /// Received frames held by user space (a socket's batch or a stack).
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

    pub(super) fn moved(&self, from: &AtomicU64, to: &AtomicU64, n: usize) {
        from.fetch_sub(n as u64, Ordering::Relaxed);
        to.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The parts of a queue shared by all its sockets: one fill ring, one completion ring and
/// the free list. Locked once per batch, never per frame.
pub(super) struct Shared {
    pub(super) fill: Option<(FillQueue, CompQueue)>,
    pub(super) free: Vec<FrameDesc>,
    /// Scratch space for completion-ring batches.
    completed: Vec<FrameDesc>,
    /// Most frames the kernel may hold for reception: the fill ring's size, at most half
    /// the UMEM. Without a limit a flood parks every frame on the fill and rx rings and
    /// leaves none free to write answers into.
    rx_limit: usize,
}

impl Shared {
    /// Moves completed tx frames to the free list. Returns how many.
    pub(super) fn reclaim(&mut self, q: &QueueUmem) -> usize {
        let Some((_, cq)) = self.fill.as_mut() else {
            return 0;
        };
        // SAFETY: the completion ring hands back descriptors of frames this UMEM's sockets
        // submitted for transmission; the kernel is done with them.
        let n = unsafe { cq.consume(&mut self.completed) };
        q.note(&self.completed[..n], Place::KernelTx, Place::Free);
        self.free.extend_from_slice(&self.completed[..n]);
        q.account.moved(&q.account.kernel_tx, &q.account.free, n);
        n
    }

    /// Tops up the fill ring from the free list. Returns how many frames were produced.
    pub(super) fn top_up(&mut self, q: &QueueUmem) -> usize {
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
        let held = q.account.kernel_rx.load(Ordering::Relaxed) as usize;
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
        q.note(&free[start..start + produced], Place::Free, Place::KernelRx);
        free.truncate(free.len() - produced);
        q.account
            .moved(&q.account.free, &q.account.kernel_rx, produced);
        produced
    }

    pub(super) fn fill_needs_wakeup(&self) -> bool {
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
    pub(super) account: FrameAccount,
    ledger: Option<Ledger>,
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

pub(super) fn queue_size(n: u32, what: &str) -> Result<QueueSize> {
    QueueSize::new(n).map_err(|e| XskError::Config(format!("{what} {n}: {e}")))
}

impl QueueUmem {
    /// Creates the UMEM for `iface` queue `queue`. No socket is bound yet (see
    /// [`super::XskSocket::bind`]).
    pub fn new(iface: &str, queue: u32, config: XskConfig) -> Result<Arc<Self>> {
        let umem_err = |reason: String| XskError::Umem {
            iface: iface.to_owned(),
            queue,
            reason,
        };
        let frames = NonZeroU32::new(config.frames)
            .ok_or_else(|| XskError::Config("zero UMEM frames".into()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| umem_err(e.to_string()))?)
            .fill_queue_size(queue_size(config.fill_size, "fill ring size")?)
            .comp_queue_size(queue_size(config.fill_size, "completion ring size")?)
            .build()
            .map_err(|e| umem_err(e.to_string()))?;
        let (umem, descs) =
            Umem::new(umem_config, frames, false).map_err(|e| umem_err(e.to_string()))?;
        let account = FrameAccount::default();
        account.free.store(descs.len() as u64, Ordering::Relaxed);
        let ledger = config
            .audit
            .then(|| Ledger::new(descs.len(), FRAME_SIZE as usize));
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
            ledger,
            mode: Mutex::new(None),
        }))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves rings and free list consistent (every step
        // under it is a complete ring operation), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records in the ledger (if kept) that `descs` move from `from` to `to`.
    #[inline]
    pub(super) fn note(&self, descs: &[FrameDesc], from: Place, to: Place) {
        if let Some(l) = &self.ledger {
            for d in descs {
                l.moved(d.addr(), from, to);
            }
        }
    }

    /// Records a violation of frame ownership found by a socket (if the ledger is kept).
    pub(super) fn violation(&self, what: impl FnOnce() -> String) {
        if let Some(l) = &self.ledger {
            l.violation(what());
        }
    }

    /// The frame bytes of `desc`, from its data start to its length.
    ///
    /// # Safety
    /// `desc` must be a descriptor of this UMEM whose frame user space owns exclusively
    /// (handed back by the kernel on an rx ring, or taken from the free list) for as long
    /// as the returned slice lives.
    pub(super) unsafe fn bytes_mut<'a>(&'a self, desc: &'a mut FrameDesc) -> &'a mut [u8] {
        // SAFETY: the caller guarantees exclusive ownership of the frame.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let len = data.contents().len();
        let ptr = data.contents_mut().as_mut_ptr();
        // SAFETY: `ptr..ptr+len` is the frame's data inside the UMEM mapping, which lives
        // as long as `self`; the caller's exclusive ownership of the frame makes this the
        // only reference to those bytes for `'a`.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// The frame bytes of `desc`, to read.
    ///
    /// # Safety
    /// As for [`QueueUmem::bytes_mut`]: a frame user space owns exclusively, not written
    /// while the slice lives.
    pub(super) unsafe fn bytes<'a>(&'a self, desc: &'a FrameDesc) -> &'a [u8] {
        // SAFETY: the caller guarantees ownership of the frame.
        unsafe { self.umem.data(desc) }.contents()
    }

    /// Sets a free frame's length to `len` and returns its bytes.
    ///
    /// # Safety
    /// As for [`QueueUmem::bytes_mut`]: a frame user space owns exclusively.
    pub(super) unsafe fn write_mut<'a>(
        &'a self,
        desc: &'a mut FrameDesc,
        len: usize,
    ) -> &'a mut [u8] {
        {
            // SAFETY: as for `bytes_mut`.
            let mut data = unsafe { self.umem.data_mut(desc) };
            data.cursor().set_pos(len);
        }
        // SAFETY: as above; the length was just set.
        unsafe { self.bytes_mut(desc) }
    }

    /// The xsk-rs UMEM (for binding sockets).
    pub(super) fn umem(&self) -> &Umem {
        &self.umem
    }

    pub(super) fn config(&self) -> XskConfig {
        self.config
    }

    pub(super) fn set_mode(&self, mode: BindMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = Some(mode);
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

    /// The debug audit: every frame in exactly one place (a permutation check of the frame
    /// ledger against the free list and the counters), no frame ever moved from a place it
    /// was not in, no received frame or transmit slot forgotten by a socket. Returns the
    /// frames per place. `None` when the ledger is off ([`XskConfig::audit`]).
    ///
    /// Exact while no socket of the queue is between two of its own steps (e.g. after the
    /// stacks stopped, or from the only stack's thread between polls).
    pub fn audit(&self) -> Option<Result<PlaceCounts, AuditError>> {
        let ledger = self.ledger.as_ref()?;
        let shared = self.lock();
        let c = self.account.snapshot();
        let r = ledger
            .check(
                shared.free.iter().map(|d| d.addr()),
                c.free,
                c.kernel_rx + c.kernel_tx,
                c.user,
            )
            .map_err(|problems| AuditError {
                queue: format!("{} queue {}", self.iface, self.queue),
                problems,
            });
        Some(r)
    }
}
