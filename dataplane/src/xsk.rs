//! AF_XDP sockets and their UMEM, through xsk-rs.
//!
//! One [`QueueUmem`] exists per (interface, rx queue): every socket bound to that queue must
//! share it, and with it its single fill ring and single completion ring (a kernel rule).
//! Those two rings and the free-frame list live behind one mutex, taken once per batch;
//! each [`XskSocket`] owns its own rx and tx rings and needs no lock for them.
//!
//! Frame ownership: a frame is in exactly one place at a time — the free list (user space),
//! the fill ring or the kernel (after `fill`), a socket's batch (after `rx`), the tx ring or
//! the kernel (after `tx`), then back to the free list via the completion ring. The counters
//! of [`FrameAccount`] follow every move, so tests can prove nothing leaked.
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

/// The parts of a queue shared by all its sockets: one fill ring, one completion ring and
/// the free list. Locked once per batch.
struct Shared {
    fill: Option<(FillQueue, CompQueue)>,
    free: Vec<FrameDesc>,
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
            }),
            account,
            mode: Mutex::new(None),
        }))
    }

    /// The queue's rx queue index.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// How the queue's sockets are bound (after the first socket).
    pub fn mode(&self) -> Option<BindMode> {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the frames are now.
    pub fn frames(&self) -> FrameCounts {
        self.account.snapshot()
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
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
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
                    drop(shared);
                    let mut socket = XskSocket {
                        queue: Arc::clone(self),
                        rx,
                        _tx: tx,
                        fd,
                        batch: vec![FrameDesc::default(); self.config.ring_size as usize],
                    };
                    if first {
                        socket.refill()?;
                    }
                    return Ok(socket);
                }
                Err(e) => {
                    log::debug!("bind {} queue {} ({mode:?}): {e}", self.iface, self.queue);
                    last_err = e.to_string();
                }
            }
        }
        Err(sock_err(last_err))
    }
}

/// One AF_XDP socket: its own rx and tx rings, the queue's shared UMEM.
pub struct XskSocket {
    queue: Arc<QueueUmem>,
    rx: RxQueue,
    /// Kept so the socket stays bound; transmit comes with the data path.
    _tx: TxQueue,
    fd: RawFd,
    batch: Vec<FrameDesc>,
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd)
            .field("queue", &self.queue.queue)
            .finish_non_exhaustive()
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl XskSocket {
    /// The queue this socket is bound to.
    pub fn queue(&self) -> &Arc<QueueUmem> {
        &self.queue
    }

    /// Puts free frames into the queue's fill ring (as many as fit) and wakes the kernel if
    /// it asked for it.
    pub fn refill(&mut self) -> Result<usize> {
        let q = &self.queue;
        let mut shared = q.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Shared { fill, free } = &mut *shared;
        let Some((fq, _cq)) = fill.as_mut() else {
            return Ok(0);
        };
        let n = (fq.nb_free(free.len() as u32) as usize).min(free.len());
        if n == 0 {
            return Ok(0);
        }
        let start = free.len() - n;
        // SAFETY: these descriptors come from the free list: they belong to this UMEM and
        // nothing else refers to their frames until the kernel hands them back on an rx ring.
        let produced = unsafe { fq.produce(&free[start..]) };
        free.truncate(free.len() - produced);
        q.account
            .moved(&q.account.free, &q.account.kernel_rx, produced);
        if fq.needs_wakeup() {
            fq.wakeup(self.rx.fd_mut(), 0)
                .map_err(|source| XskError::Io {
                    what: "fill ring wakeup",
                    source,
                })?;
        }
        Ok(produced)
    }

    /// Waits up to `timeout_ms` for frames, hands each received frame to `f`, returns the
    /// frames to the free list and refills the fill ring. Returns the number of frames.
    pub fn recv(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8])) -> Result<usize> {
        // SAFETY: `batch` only receives descriptors the kernel hands over on this socket's
        // rx ring; they belong to this socket's UMEM.
        let mut n = unsafe { self.rx.consume(&mut self.batch) };
        if n == 0 {
            // SAFETY: as above.
            n = unsafe { self.rx.poll_and_consume(&mut self.batch, timeout_ms) }.map_err(
                |source| XskError::Io {
                    what: "rx poll",
                    source,
                },
            )?;
        }
        if n == 0 {
            return Ok(0);
        }
        let q = Arc::clone(&self.queue);
        q.account.moved(&q.account.kernel_rx, &q.account.user, n);
        for desc in &self.batch[..n] {
            // SAFETY: the descriptor came from our rx ring, so user space owns the frame
            // until it goes back to the free list below; nothing writes it meanwhile.
            let data = unsafe { q.umem.data(desc) };
            f(data.contents());
        }
        {
            let mut shared = q.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.free.extend_from_slice(&self.batch[..n]);
        }
        q.account.moved(&q.account.user, &q.account.free, n);
        self.refill()?;
        Ok(n)
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub fn statistics(&self) -> Result<xsk_rs::socket::XdpStatistics> {
        self.rx
            .fd()
            .xdp_statistics()
            .map_err(|source| XskError::Io {
                what: "XDP_STATISTICS",
                source,
            })
    }
}
