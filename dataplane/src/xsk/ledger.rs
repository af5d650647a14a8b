//! The frame ledger: where every UMEM frame is, frame by frame, for the debug audit.
//!
//! The counters of [`super::umem`] say how many frames are in each state; they cannot tell a
//! frame that is in two places from two frames, nor a frame that is nowhere from one that
//! moved. The ledger records each frame's place and checks every move against it: a frame
//! leaving a place it is not in (returned twice, sent twice, given to the kernel while user
//! space still holds it) is a violation, recorded with the frame and both places. The audit
//! then checks the places against the free list (each frame on it once, and free) and the
//! counters, so a frame that went missing shows as a difference.
//!
//! One relaxed atomic swap per frame move; off (no table at all) unless
//! [`super::XskConfig::audit`] is set, which it is by default in debug builds.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

/// Where a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Place {
    /// On the queue's free list or a socket's transmit cache.
    Free = 0,
    /// Given to the kernel for reception: fill ring, in flight, or on an rx ring.
    KernelRx = 1,
    /// Consumed from an rx ring into a socket's batch, not handed out yet.
    Batch = 2,
    /// Handed out as a received frame (an `RxFrame` guard).
    Stack = 3,
    /// Returned by its guard, on the socket's way back to the free list.
    Recycle = 4,
    /// Taken for transmission (a `TxSlot`, or written and waiting for the tx ring).
    Tx = 5,
    /// On a tx ring, held by the kernel, or on the completion ring.
    KernelTx = 6,
}

impl Place {
    const ALL: [Place; 7] = [
        Place::Free,
        Place::KernelRx,
        Place::Batch,
        Place::Stack,
        Place::Recycle,
        Place::Tx,
        Place::KernelTx,
    ];

    fn from_u8(v: u8) -> Place {
        Place::ALL[usize::from(v).min(Place::ALL.len() - 1)]
    }
}

/// How many frames are in each [`Place`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaceCounts(pub [u64; 7]);

impl PlaceCounts {
    /// Frames in `p`.
    pub fn get(&self, p: Place) -> u64 {
        self.0[p as usize]
    }
}

/// What an audit found wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("UMEM audit of {queue}: {problems:?}")]
pub struct AuditError {
    /// The queue (interface and rx queue).
    pub queue: String,
    /// Each problem, in words.
    pub problems: Vec<String>,
}

/// The per-frame places of one UMEM.
pub(super) struct Ledger {
    places: Box<[AtomicU8]>,
    frame_size: usize,
    violations: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("frames", &self.places.len())
            .field("violations", &self.violations.load(Ordering::Relaxed))
            .finish()
    }
}

/// Violations whose description is kept (the count goes on).
const KEPT: usize = 8;

impl Ledger {
    /// A ledger of `frames` frames of `frame_size` bytes, all [`Place::Free`].
    pub(super) fn new(frames: usize, frame_size: usize) -> Self {
        Self {
            places: (0..frames)
                .map(|_| AtomicU8::new(Place::Free as u8))
                .collect(),
            frame_size,
            violations: AtomicU64::new(0),
            first: Mutex::new(Vec::new()),
        }
    }

    /// The frame a descriptor address points into.
    fn index(&self, addr: usize) -> usize {
        addr / self.frame_size
    }

    /// Records that the frame at `addr` moves from `from` to `to`; a frame that was not in
    /// `from` (or an address outside the UMEM) is a violation.
    pub(super) fn moved(&self, addr: usize, from: Place, to: Place) {
        let i = self.index(addr);
        let Some(slot) = self.places.get(i) else {
            self.violation(format!(
                "address {addr:#x} is outside the UMEM ({from:?} → {to:?})"
            ));
            return;
        };
        let was = Place::from_u8(slot.swap(to as u8, Ordering::Relaxed));
        if was != from {
            self.violation(format!(
                "frame {i} moved {from:?} → {to:?} but was {was:?} (returned or handed out twice?)"
            ));
        }
    }

    /// Records a violation found elsewhere (e.g. a guard that was never dropped).
    pub(super) fn violation(&self, what: String) {
        self.violations.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT {
            kept.push(what);
        }
    }

    /// Frames per place.
    pub(super) fn counts(&self) -> PlaceCounts {
        let mut c = PlaceCounts::default();
        for p in self.places.iter() {
            c.0[usize::from(p.load(Ordering::Relaxed)).min(6)] += 1;
        }
        c
    }

    /// The permutation check: every frame in exactly one place. `free_list` are the
    /// addresses on the queue's free list (taken under its lock); `free`, `kernel` and
    /// `user` are the queue's exact counters (free list + caches + written tx frames;
    /// kernel rx + tx; received frames held by user space). Returns the places, or every
    /// problem found.
    pub(super) fn check(
        &self,
        free_list: impl Iterator<Item = usize>,
        free: u64,
        kernel: u64,
        user: u64,
    ) -> Result<PlaceCounts, Vec<String>> {
        let mut problems = self.first.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let n = self.violations.load(Ordering::Relaxed);
        if n as usize > problems.len() {
            problems.push(format!("{} more violations", n as usize - problems.len()));
        }
        let mut seen = vec![false; self.places.len()];
        for addr in free_list {
            let i = self.index(addr);
            match seen.get_mut(i) {
                None => problems.push(format!("free list: address {addr:#x} outside the UMEM")),
                Some(true) => problems.push(format!("frame {i} is on the free list twice")),
                Some(s) => {
                    *s = true;
                    let p = Place::from_u8(self.places[i].load(Ordering::Relaxed));
                    if p != Place::Free {
                        problems.push(format!("frame {i} is on the free list but {p:?}"));
                    }
                }
            }
        }
        let c = self.counts();
        let check = |problems: &mut Vec<String>, what: &str, places: u64, counted: u64| {
            if places != counted {
                problems.push(format!(
                    "{what}: {places} frames by place, {counted} by the counters"
                ));
            }
        };
        check(
            &mut problems,
            "free",
            c.get(Place::Free) + c.get(Place::Tx),
            free,
        );
        check(
            &mut problems,
            "kernel",
            c.get(Place::KernelRx) + c.get(Place::KernelTx),
            kernel,
        );
        check(
            &mut problems,
            "received, held by user space",
            c.get(Place::Batch) + c.get(Place::Stack) + c.get(Place::Recycle),
            user,
        );
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 2048;

    /// Four frames taken from the free list, one received into the stack and returned.
    fn ledger_after_a_round_trip() -> Ledger {
        let l = Ledger::new(4, SIZE);
        for i in 0..4 {
            l.moved(i * SIZE, Place::Free, Place::KernelRx);
        }
        // Frame 2 arrives (the kernel adds its headroom to the address).
        let rx = 2 * SIZE + 256;
        l.moved(rx, Place::KernelRx, Place::Batch);
        l.moved(rx, Place::Batch, Place::Stack);
        l.moved(rx, Place::Stack, Place::Recycle);
        l.moved(rx, Place::Recycle, Place::Free);
        l
    }

    #[test]
    fn an_honest_history_passes_the_audit() {
        let l = ledger_after_a_round_trip();
        let c = l.check([2 * SIZE].into_iter(), 1, 3, 0).expect("clean");
        assert_eq!((c.get(Place::Free), c.get(Place::KernelRx)), (1, 3));
    }

    #[test]
    fn a_frame_returned_twice_is_caught() {
        let l = ledger_after_a_round_trip();
        // The same received frame returned again: it is already free.
        l.moved(2 * SIZE + 256, Place::Stack, Place::Recycle);
        l.moved(2 * SIZE + 256, Place::Recycle, Place::Free);
        let problems = l
            .check([2 * SIZE, 2 * SIZE].into_iter(), 2, 3, 0)
            .expect_err("a double return");
        assert!(
            problems.iter().any(|p| p.contains("was Free")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("free list twice")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_leaked_frame_is_caught_even_when_the_counters_add_up() {
        let l = Ledger::new(2, SIZE);
        l.moved(0, Place::Free, Place::KernelRx);
        l.moved(0, Place::KernelRx, Place::Batch);
        l.moved(0, Place::Batch, Place::Stack);
        // The guard was forgotten: the counters were told it came back, the ledger was not.
        let problems = l.check([0, SIZE].into_iter(), 2, 0, 0).expect_err("a leak");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("frame 0 is on the free list but Stack")),
            "{problems:?}"
        );
        // Without the (lying) free-list entry, the places disagree with the counters.
        let problems = l.check([SIZE].into_iter(), 2, 0, 0).expect_err("a leak");
        assert!(
            problems.iter().any(|p| p.starts_with("free:")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("received")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_address_outside_the_umem_is_a_violation() {
        let l = Ledger::new(1, SIZE);
        l.moved(5 * SIZE, Place::Free, Place::KernelRx);
        assert!(l.check([0].into_iter(), 1, 0, 0).is_err());
    }
}
