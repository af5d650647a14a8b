//! An in-memory Ethernet link between two stacks, with seeded loss, reordering and delay,
//! driven by a virtual clock: deterministic tests of the same [`crate::stack::Stack`] that
//! runs over AF_XDP.
//!
//! Time is whatever the caller passes to `poll`: a frame sent at `t` becomes receivable at
//! `t + delay (+ jitter)`; nothing here reads a real clock or sleeps.

use std::{cell::RefCell, collections::VecDeque, io, rc::Rc, time::Duration};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use smoltcp::{
    phy::{self, DeviceCapabilities, Medium},
    time::{Duration as SDuration, Instant},
};

use super::device::Link;

/// Impairments of the simulated link (each direction alike).
#[derive(Clone, Copy, Debug)]
pub struct Impairments {
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is delayed by an extra `jitter` (so later frames overtake it).
    pub reorder: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra delay of reordered frames.
    pub jitter: Duration,
    /// RNG seed: the same seed gives the same run.
    pub seed: u64,
}

impl Default for Impairments {
    fn default() -> Self {
        Self {
            loss: 0.0,
            reorder: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(5),
            seed: 1,
        }
    }
}

/// Counters of the simulated wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Frames put on the wire.
    pub sent: u64,
    /// Frames the wire dropped.
    pub lost: u64,
    /// Frames the wire delayed past later ones.
    pub reordered: u64,
    /// Frames delivered.
    pub delivered: u64,
}

#[derive(Debug)]
struct Wire {
    imp: Impairments,
    rng: SmallRng,
    /// Per direction: frames in flight with their delivery time, kept sorted by time.
    inflight: [VecDeque<(Instant, Vec<u8>)>; 2],
    stats: WireStats,
}

impl Wire {
    fn send(&mut self, to: usize, now: Instant, frame: Vec<u8>) {
        self.stats.sent += 1;
        if self.rng.random_bool(self.imp.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut delay = self.imp.delay;
        if self.rng.random_bool(self.imp.reorder) {
            delay += self.imp.jitter;
            self.stats.reordered += 1;
        }
        let at = now + SDuration::from_micros(delay.as_micros() as u64);
        let q = &mut self.inflight[to];
        let pos = q.iter().position(|(t, _)| *t > at).unwrap_or(q.len());
        q.insert(pos, (at, frame));
    }

    fn peek<R>(&self, side: usize, now: Instant, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (t, frame) = self.inflight[side].front()?;
        (*t <= now).then(|| f(frame))
    }

    fn recv(&mut self, side: usize, now: Instant) -> Option<Vec<u8>> {
        let q = &mut self.inflight[side];
        if q.front().is_some_and(|(t, _)| *t <= now) {
            self.stats.delivered += 1;
            return q.pop_front().map(|(_, f)| f);
        }
        None
    }
}

/// One end of a simulated link.
#[derive(Debug)]
pub struct SimLink {
    wire: Rc<RefCell<Wire>>,
    side: usize,
    mtu: usize,
}

/// Makes the two ends of a link with `imp` impairments.
pub fn pair(imp: Impairments) -> (SimLink, SimLink) {
    let wire = Rc::new(RefCell::new(Wire {
        imp,
        rng: SmallRng::seed_from_u64(imp.seed),
        inflight: [VecDeque::new(), VecDeque::new()],
        stats: WireStats::default(),
    }));
    (
        SimLink {
            wire: Rc::clone(&wire),
            side: 0,
            mtu: 1500,
        },
        SimLink {
            wire,
            side: 1,
            mtu: 1500,
        },
    )
}

impl SimLink {
    /// Sends `frame` to the other end as it is, with no stack in between (fuzzing and tests
    /// feed the stack at the other end arbitrary frames this way).
    pub fn send_raw(&self, now: Instant, frame: Vec<u8>) {
        self.wire.borrow_mut().send(1 - self.side, now, frame);
    }

    /// The wire's counters (shared by both ends).
    pub fn stats(&self) -> WireStats {
        self.wire.borrow().stats
    }
}

/// A received frame.
#[derive(Debug)]
pub struct SimRxToken(Vec<u8>);

impl phy::RxToken for SimRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame to send.
#[derive(Debug)]
pub struct SimTxToken<'a> {
    link: &'a SimLink,
    now: Instant,
}

impl phy::TxToken for SimTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.link
            .wire
            .borrow_mut()
            .send(1 - self.link.side, self.now, frame);
        r
    }
}

impl phy::Device for SimLink {
    type RxToken<'a> = SimRxToken;
    type TxToken<'a> = SimTxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.wire.borrow_mut().recv(self.side, now)?;
        Some((SimRxToken(frame), SimTxToken { link: self, now }))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        Some(SimTxToken { link: self, now })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

impl Link for SimLink {
    fn peek<R>(&mut self, now: Instant, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.wire.borrow().peek(self.side, now, f)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Virtual time: nothing to wait for; the caller advances the clock.
    fn wait(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}
