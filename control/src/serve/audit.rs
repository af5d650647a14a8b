//! The frame check `ioth serve` makes when it stops: every UMEM frame of every queue is
//! accounted for once all stacks are gone.

use ioth_dataplane::Dataplane;

/// The problems found, one line per queue (none: every frame is accounted for). Every
/// stack is gone, so no frame may be held by user space and every frame of every queue must
/// be somewhere (free, or still with the kernel in a ring); where the frame ledger is kept
/// (debug builds), its permutation check must pass too.
pub fn unaccounted_frames(dp: &Dataplane) -> Vec<String> {
    dp.queues()
        .iter()
        .filter_map(|q| {
            let f = q.frames();
            if f.total() != q.frame_count() || f.user != 0 {
                return Some(format!("queue {}: {f:?}", q.queue()));
            }
            match q.audit() {
                Some(Err(e)) => Some(e.to_string()),
                Some(Ok(_)) | None => None,
            }
        })
        .collect()
}
