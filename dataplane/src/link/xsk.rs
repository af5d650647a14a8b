//! The AF_XDP link: [`XskDevice`] hands smoltcp each received UMEM frame in place (an
//! [`RxFrame`] inside the rx token) and lets smoltcp write replies straight into a free UMEM
//! frame (a [`crate::xsk::TxSlot`] inside the tx token) — no copy in user space. Before a
//! frame reaches smoltcp its TCP/UDP checksum is checked (and a partial one completed) in
//! place, and the capture tap sees it; each frame sent feeds the retransmission watch.

use std::{io, os::fd::RawFd, time::Duration};

use super::{
    checksum::{L4Checksum, check_l4},
    device::Link,
    local::{Member, Route},
    retx::RetransmitDetector,
};

use smoltcp::{
    phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium},
    time::Instant,
};

use crate::{
    capture::{Direction, TapRegistration},
    classifier::TxPublisher,
    sys::wait_readable,
    xsk::{BindMode, RxFrame, RxPart, TxPart, XskError, XskSocket},
};

/// How often a device publishes its transmit counters for other processes.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Counters of the AF_XDP link (owned by the stack's thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Frames dropped before the stack because their TCP/UDP checksum was wrong.
    pub rx_bad_checksum: u64,
    /// Partial (offload) checksums completed.
    pub rx_partial_checksum: u64,
    /// Frames the stack wrote.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// TCP segments sent again (see [`super::retx`]).
    pub tcp_retransmits: u64,
    /// Immediate replies (ARP, ICMP echo, TCP ACK/RST written while a frame was processed)
    /// lost because no UMEM frame was free to write them into.
    pub tx_dropped: u64,
}

/// The kernel's XDP_STATISTICS, summed over a device's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames dropped for reasons other than invalid descriptors (e.g. rx ring full).
    pub rx_dropped: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when the kernel needed a frame.
    pub fill_ring_empty: u64,
    /// Invalid descriptors on the tx ring.
    pub tx_invalid: u64,
}

/// The AF_XDP link of one stack: a socket on every rx queue of the interface (frames for
/// the stack can arrive on any of them) and transmission through one of them.
pub struct XskDevice {
    rx: Vec<RxPart>,
    tx: TxPart,
    /// Tx halves of the other queues' sockets: unused, kept so the sockets stay bound.
    _idle_tx: Vec<TxPart>,
    next: usize,
    /// The queue whose next frame is checked (by `peek`) and not yet handed to smoltcp.
    checked: Option<usize>,
    /// The local segment (frames to and from a switch's ports and other stacks without the
    /// NIC), and a frame taken from its inbox not yet handed to smoltcp.
    local: Option<(Member, Option<Vec<u8>>)>,
    fds: Vec<RawFd>,
    mtu: usize,
    watch: Watch,
}

/// What the device does besides moving frames: counting, retransmission detection, capture
/// and publishing the counters. Only the owning thread touches it.
#[derive(Debug, Default)]
struct Watch {
    counters: LinkCounters,
    retx: RetransmitDetector,
    tap: Option<TapRegistration>,
    publisher: Option<Publisher>,
    /// Where a reply with no free frame is written and forgotten (grown once, reused).
    scratch: Vec<u8>,
}

#[derive(Debug)]
struct Publisher {
    to: TxPublisher,
    at: std::time::Instant,
    published: LinkCounters,
    bind: u64,
}

impl Watch {
    #[inline]
    fn capture(&self, dir: Direction, frame: &[u8]) {
        if let Some(t) = &self.tap
            && t.tap().active()
        {
            t.tap().record(dir, frame);
        }
    }

    /// Lets `f` write a reply that has no frame to go into, and forgets it (counted): the
    /// price of never holding up reception for transmission.
    fn drop_reply<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.counters.tx_dropped += 1;
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        f(&mut self.scratch[..len])
    }

    #[inline]
    fn sent(&mut self, frame: &[u8]) {
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += frame.len() as u64;
        self.retx.observe(frame);
        self.capture(Direction::Tx, frame);
    }

    /// Publishes changed counters at most every [`PUBLISH_EVERY`] (one syscall).
    fn publish(&mut self) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        self.counters.tcp_retransmits = self.retx.retransmits();
        if p.published == self.counters || p.at.elapsed() < PUBLISH_EVERY {
            return;
        }
        let c = self.counters;
        let value = ioth_common::EndpointTx {
            tx_packets: c.tx_frames,
            tx_bytes: c.tx_bytes,
            tcp_retransmits: c.tcp_retransmits,
            bind: p.bind,
        };
        if let Err(e) = p.to.publish(&value) {
            log::debug!("publishing tx counters: {e}");
        }
        p.published = c;
        p.at = std::time::Instant::now();
    }

    /// How long a sleeping owner may wait before unpublished counters are due.
    fn publish_due(&self) -> Option<Duration> {
        let p = self.publisher.as_ref()?;
        let mut c = self.counters;
        c.tcp_retransmits = self.retx.retransmits();
        (p.published != c).then(|| PUBLISH_EVERY.saturating_sub(p.at.elapsed()))
    }
}

impl std::fmt::Debug for XskDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskDevice")
            .field("queues", &self.rx.len())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl XskDevice {
    /// A device over `sockets` (one per rx queue, at least one) that transmits through
    /// `sockets[tx_index % len]`. `mtu` is the IP MTU.
    pub fn new(sockets: Vec<XskSocket>, mtu: usize, tx_index: usize) -> Result<Self, XskError> {
        let mut rx = Vec::with_capacity(sockets.len());
        let mut txs = Vec::with_capacity(sockets.len());
        for s in sockets {
            let (r, t) = s.into_parts();
            rx.push(r);
            txs.push(t);
        }
        if txs.is_empty() {
            return Err(XskError::Config(
                "a device needs at least one socket".into(),
            ));
        }
        let tx = txs.remove(tx_index % txs.len());
        let fds = rx.iter().map(|r| r.fd()).collect();
        Ok(Self {
            rx,
            tx,
            _idle_tx: txs,
            next: 0,
            checked: None,
            local: None,
            fds,
            mtu,
            watch: Watch::default(),
        })
    }

    /// The link's counters.
    pub fn counters(&self) -> LinkCounters {
        let mut c = self.watch.counters;
        c.tcp_retransmits = self.watch.retx.retransmits();
        c
    }

    /// Joins the local segment as `member`: frames to other members are handed over in
    /// memory, frames from them arrive through its inbox (waited on with the sockets).
    pub fn set_local(&mut self, member: Member) {
        self.fds.push(member.inbox().fd());
        self.local = Some((member, None));
    }

    /// The local inbox's fd, if the device is on a local segment.
    pub fn local_fd(&self) -> Option<RawFd> {
        self.local.as_ref().map(|(m, _)| m.inbox().fd())
    }

    /// Whether a frame from the local segment waits (taking it from the inbox, counted and
    /// captured once).
    fn local_ready(&mut self) -> bool {
        let Some((member, pending)) = &mut self.local else {
            return false;
        };
        if pending.is_none()
            && !member.inbox().is_empty()
            && let Some(f) = member.inbox().pop()
        {
            self.watch.capture(Direction::Rx, &f);
            self.watch.counters.rx_frames += 1;
            *pending = Some(f);
        }
        pending.is_some()
    }

    /// Lets `ioth capture` see this device's frames (one relaxed load per frame otherwise).
    pub fn set_capture(&mut self, tap: TapRegistration) {
        self.watch.tap = Some(tap);
    }

    /// Publishes the transmit counters through `to`, a few times a second while they change.
    pub fn set_tx_publisher(&mut self, mut to: TxPublisher) {
        let bind = BindMode::published(self.rx.first().and_then(|r| r.queue().mode()));
        // The bind mode is known now; counters follow as they change.
        let first = ioth_common::EndpointTx {
            bind,
            ..Default::default()
        };
        if let Err(e) = to.publish(&first) {
            log::debug!("publishing the bind mode: {e}");
        }
        self.watch.publisher = Some(Publisher {
            to,
            at: std::time::Instant::now(),
            published: LinkCounters::default(),
            bind,
        });
    }

    /// The kernel's XDP_STATISTICS of the device's sockets, summed (one syscall per socket:
    /// call it from the control path, not per packet).
    pub fn xdp_statistics(&self) -> io::Result<XdpStats> {
        let mut sum = XdpStats::default();
        for r in &self.rx {
            let s = r.statistics().map_err(io::Error::other)?;
            sum.rx_dropped += s.rx_dropped();
            sum.rx_ring_full += s.rx_ring_full();
            sum.fill_ring_empty += s.rx_fill_ring_empty_descs();
            sum.tx_invalid += s.tx_invalid_descs();
        }
        Ok(sum)
    }

    /// The receive halves (one per queue).
    pub fn rx_parts(&self) -> &[RxPart] {
        &self.rx
    }

    /// Finds the next received frame with a valid (or completed) checksum, round-robin over
    /// the queues, and leaves it first in its queue's batch; frames with a bad TCP/UDP
    /// checksum are dropped here (counted). Returns its queue.
    fn next_valid(&mut self) -> Option<usize> {
        if self.checked.is_some() {
            return self.checked;
        }
        let n = self.rx.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let rx = &mut self.rx[i];
            while let Some(frame) = rx.peek_mut() {
                let verdict = check_l4(frame);
                self.watch.capture(Direction::Rx, frame);
                match verdict {
                    L4Checksum::Invalid => {
                        self.watch.counters.rx_bad_checksum += 1;
                        rx.skip();
                        continue;
                    }
                    L4Checksum::Completed => self.watch.counters.rx_partial_checksum += 1,
                    L4Checksum::Valid | L4Checksum::NotL4 => {}
                }
                self.watch.counters.rx_frames += 1;
                self.next = i;
                self.checked = Some(i);
                return Some(i);
            }
        }
        None
    }

    /// Returns released frames to the fill rings (once per loop iteration).
    pub fn sync(&mut self) -> io::Result<()> {
        for r in &mut self.rx {
            r.sync().map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// A received frame: a UMEM frame lent to smoltcp in place (returned when the token is
/// consumed or dropped), or one handed over on the local segment.
#[derive(Debug)]
pub enum XskRxToken<'a> {
    /// From the NIC.
    Umem(RxFrame<'a>),
    /// From another member of the local segment.
    Local(Vec<u8>),
}

impl phy::RxToken for XskRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            XskRxToken::Umem(frame) => f(frame.bytes()),
            XskRxToken::Local(frame) => f(&frame),
        }
    }
}

/// A free UMEM frame smoltcp writes a reply into.
#[derive(Debug)]
pub struct XskTxToken<'a> {
    tx: &'a mut TxPart,
    watch: &'a mut Watch,
    local: Option<&'a Member>,
}

impl phy::TxToken for XskTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // `transmit` hands out a token only when `ready()` said a frame is free; `receive`
        // hands one out with every received frame, free frame or not (see `receive`).
        match self.tx.slot(len) {
            Some(mut slot) => {
                let r = f(slot.bytes_mut());
                self.watch.sent(slot.bytes_mut());
                match self.local.map(|m| m.route(slot.bytes_mut())) {
                    // Handed to another member: the slot goes back unsent.
                    Some(Route::Local) => drop(slot),
                    Some(Route::Wire | Route::Both) | None => slot.send(),
                }
                r
            }
            None => self.watch.drop_reply(len, f),
        }
    }
}

impl phy::Device for XskDevice {
    type RxToken<'a> = XskRxToken<'a>;
    type TxToken<'a> = XskTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // No free-frame check here: waiting for one would tie reception to transmission, and
        // frames held in rx batches (this stack's or another's on the same queue) can be the
        // very frames a tx frame has to come from — a circular wait that stalled a 2-queue
        // veth for good. A reply written while no frame is free is dropped and counted
        // (`tx_dropped`), as a NIC drops on a full tx ring; smoltcp retries what matters.
        let token = if self.local_ready() {
            XskRxToken::Local(self.local.as_mut()?.1.take()?)
        } else {
            let i = self.next_valid()?;
            self.checked = None;
            // A fair turn: the next frame is looked for on the next queue first, so a
            // flooded queue cannot keep the others waiting.
            self.next = (i + 1) % self.rx.len();
            XskRxToken::Umem(self.rx[i].next_frame()?)
        };
        Some((
            token,
            XskTxToken {
                tx: &mut self.tx,
                watch: &mut self.watch,
                local: self.local.as_ref().map(|(m, _)| m),
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if !self.tx.ready() {
            return None;
        }
        Some(XskTxToken {
            tx: &mut self.tx,
            watch: &mut self.watch,
            local: self.local.as_ref().map(|(m, _)| m),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps.max_burst_size = Some(64);
        // TCP/UDP checksums are verified (and partial ones completed) by `check_l4` before
        // smoltcp sees a frame; smoltcp still computes them on transmit.
        let mut cs = ChecksumCapabilities::default();
        cs.tcp = Checksum::Tx;
        cs.udp = Checksum::Tx;
        caps.checksum = cs;
        caps
    }
}

impl Link for XskDevice {
    fn peek<R>(&mut self, _now: Instant, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.local_ready() {
            return self.local.as_ref()?.1.as_deref().map(f);
        }
        let i = self.next_valid()?;
        self.rx[i].peek_mut().map(|frame| f(frame))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tx.flush().map_err(io::Error::other)?;
        self.watch.publish();
        self.sync()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.checked.is_some() || self.local_ready() || self.rx.iter_mut().any(|r| r.fetch() > 0)
        {
            return Ok(());
        }
        // Counters not yet published cut the sleep short, so other processes see them.
        let timeout = match (timeout, self.watch.publish_due()) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        wait_readable(&self.fds, ms)?;
        Ok(())
    }
}
