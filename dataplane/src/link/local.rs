//! The local segment: frames between endpoints of one data plane — a thread stack and a
//! switch port, or two thread stacks — are handed over in memory and never touch the NIC
//! (on a veth or a real NIC a frame sent out does not come back in).
//!
//! Every member has an [`Inbox`]: a bounded queue of frames and a wakeup socket its owner
//! waits on together with its AF_XDP sockets. A thread stack registers its MAC; a switch
//! registers its own inbox and, one by one, the MACs it learns behind its ports. A sender
//! looks the destination up here before transmitting: a member's unicast MAC gets the frame
//! in its inbox instead of on the wire; a broadcast or multicast goes on the wire and also to
//! the switch (which floods it to its ports); a switch floods its ports' broadcasts to every
//! thread stack. While no switch exists a thread stack pays one relaxed load per frame sent.

use std::{
    collections::{HashMap, VecDeque},
    io,
    os::{fd::AsRawFd as _, fd::RawFd, unix::net::UnixDatagram},
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use crate::wire::Mac;

/// Frames an inbox holds before further ones are dropped (counted).
const INBOX_FRAMES: usize = 1024;

/// A member's queue of frames and the socket that wakes it.
#[derive(Debug)]
pub struct Inbox {
    queue: Mutex<VecDeque<Vec<u8>>>,
    /// The queue's length, readable without the lock: the owner's per-frame check.
    len: AtomicUsize,
    wake_tx: UnixDatagram,
    wake_rx: UnixDatagram,
    /// Frames dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Inbox {
    fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixDatagram::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Self {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            wake_tx,
            wake_rx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a copy of `frame` and wakes the owner; `false` if the queue was full.
    pub fn push(&self, frame: &[u8]) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= INBOX_FRAMES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let was_empty = q.is_empty();
        q.push_back(frame.to_vec());
        self.len.store(q.len(), Ordering::Release);
        drop(q);
        if was_empty {
            // A full wakeup socket already holds a wakeup: nothing lost.
            let _ = self.wake_tx.send(&[1]);
        }
        true
    }

    /// The next queued frame. An empty inbox costs one atomic load (it is asked for every
    /// frame a stack takes in); the wakeup is drained when the last frame is taken.
    pub fn pop(&self) -> Option<Vec<u8>> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let f = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        if f.is_some() && q.is_empty() {
            // Under the lock: a push that finds the queue empty wakes after this.
            let mut b = [0u8; 64];
            while self.wake_rx.recv(&mut b).is_ok() {}
        }
        f
    }

    /// Whether no frame is queued (one atomic load).
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// The fd that becomes readable when frames are queued.
    pub fn fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }
}

/// Where a frame a member sends goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Out through the NIC only.
    Wire,
    /// To another member only (handed over; not on the wire).
    Local,
    /// On the wire and to the switch too (broadcast, multicast).
    Both,
}

/// The members of one data plane's local segment.
#[derive(Debug, Default)]
pub struct LocalLan {
    /// A switch is a member: frames may have to be handed over.
    active: AtomicBool,
    members: RwLock<HashMap<Mac, Arc<Inbox>>>,
    switch: RwLock<Option<Arc<Inbox>>>,
    stacks: RwLock<Vec<Weak<Inbox>>>,
}

/// A member's place on the segment; its MACs leave with it.
#[derive(Debug)]
pub struct Member {
    lan: Arc<LocalLan>,
    inbox: Arc<Inbox>,
    macs: Vec<Mac>,
    is_switch: bool,
}

impl LocalLan {
    /// Joins a thread stack owning `mac` (`None`: it shares the interface's MAC, so frames
    /// are not handed to it by MAC; it still gets the switch's broadcasts).
    pub fn join_stack(self: &Arc<Self>, mac: Option<Mac>) -> io::Result<Member> {
        let inbox = Arc::new(Inbox::new()?);
        if let Some(mac) = mac {
            self.write_members().insert(mac, Arc::clone(&inbox));
        }
        let mut stacks = self.stacks.write().unwrap_or_else(|e| e.into_inner());
        stacks.retain(|w| w.strong_count() > 0);
        stacks.push(Arc::downgrade(&inbox));
        Ok(Member {
            lan: Arc::clone(self),
            inbox,
            macs: mac.into_iter().collect(),
            is_switch: false,
        })
    }

    /// Joins a switch (at most one; its ports' MACs are added with [`Member::claim`]).
    pub fn join_switch(self: &Arc<Self>) -> io::Result<Member> {
        let inbox = Arc::new(Inbox::new()?);
        *self.switch.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&inbox));
        self.active.store(true, Ordering::Release);
        Ok(Member {
            lan: Arc::clone(self),
            inbox,
            macs: Vec::new(),
            is_switch: true,
        })
    }

    fn write_members(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Mac, Arc<Inbox>>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `frame` (sent by the member whose inbox is `from`) to the member its
    /// destination belongs to, and says whether it must also (or only) go on the wire.
    pub fn route(&self, from: &Arc<Inbox>, frame: &[u8]) -> Route {
        if !self.active.load(Ordering::Relaxed) {
            return Route::Wire;
        }
        let Some(dst) = frame.get(0..6) else {
            return Route::Wire;
        };
        if dst[0] & 1 != 0 {
            if let Some(sw) = self
                .switch
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                && !Arc::ptr_eq(sw, from)
            {
                sw.push(frame);
            }
            return Route::Both;
        }
        let mac = Mac(dst.try_into().unwrap_or_default());
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        match members.get(&mac) {
            Some(inbox) if !Arc::ptr_eq(inbox, from) => {
                inbox.push(frame);
                Route::Local
            }
            _ => Route::Wire,
        }
    }

    /// Gives a broadcast or multicast frame from the switch's ports to every thread stack.
    pub fn flood_stacks(&self, frame: &[u8]) {
        for w in self.stacks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(inbox) = w.upgrade() {
                inbox.push(frame);
            }
        }
    }
}

impl Member {
    /// The member's inbox.
    pub fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// The segment.
    pub fn lan(&self) -> &LocalLan {
        &self.lan
    }

    /// Routes a frame this member sends (see [`LocalLan::route`]).
    pub fn route(&self, frame: &[u8]) -> Route {
        self.lan.route(&self.inbox, frame)
    }

    /// Claims `mac` for this member (a switch: a MAC learned behind a port).
    pub fn claim(&mut self, mac: Mac) {
        self.lan
            .write_members()
            .insert(mac, Arc::clone(&self.inbox));
        self.macs.push(mac);
    }

    /// Gives up a claimed `mac`.
    pub fn release(&mut self, mac: Mac) {
        let mut m = self.lan.write_members();
        if m.get(&mac).is_some_and(|i| Arc::ptr_eq(i, &self.inbox)) {
            m.remove(&mac);
        }
        self.macs.retain(|x| *x != mac);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        {
            let mut m = self.lan.write_members();
            for mac in &self.macs {
                if m.get(mac).is_some_and(|i| Arc::ptr_eq(i, &self.inbox)) {
                    m.remove(mac);
                }
            }
        }
        if self.is_switch {
            self.lan.active.store(false, Ordering::Release);
            *self.lan.switch.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst);
        f
    }

    #[test]
    fn frames_go_to_members_or_the_wire() {
        let lan = Arc::new(LocalLan::default());
        let a = lan.join_stack(Some(Mac([2, 0, 0, 0, 0, 1]))).unwrap();
        let b = lan.join_stack(Some(Mac([2, 0, 0, 0, 0, 2]))).unwrap();
        // No switch: everything goes on the wire, nothing is looked up.
        assert_eq!(a.route(&frame([2, 0, 0, 0, 0, 2])), Route::Wire);
        assert!(b.inbox().is_empty());
        let mut sw = lan.join_switch().unwrap();
        sw.claim(Mac([2, 9, 0, 0, 0, 1]));
        // To a port's MAC: handed to the switch, not on the wire.
        assert_eq!(a.route(&frame([2, 9, 0, 0, 0, 1])), Route::Local);
        assert_eq!(sw.inbox().pop().unwrap()[..6], [2, 9, 0, 0, 0, 1]);
        // Between two stacks, and to the wire for anyone else.
        assert_eq!(a.route(&frame([2, 0, 0, 0, 0, 2])), Route::Local);
        assert!(b.inbox().pop().is_some());
        assert_eq!(a.route(&frame([2, 7, 7, 7, 7, 7])), Route::Wire);
        // Broadcast: the wire and the switch; the switch floods the stacks.
        assert_eq!(a.route(&frame([0xff; 6])), Route::Both);
        assert!(sw.inbox().pop().is_some());
        lan.flood_stacks(&frame([0xff; 6]));
        assert!(a.inbox().pop().is_some() && b.inbox().pop().is_some());
        // A member's MACs leave with it; the switch's too.
        drop(b);
        assert_eq!(a.route(&frame([2, 0, 0, 0, 0, 2])), Route::Wire);
        sw.release(Mac([2, 9, 0, 0, 0, 1]));
        assert_eq!(a.route(&frame([2, 9, 0, 0, 0, 1])), Route::Wire);
        drop(sw);
        assert_eq!(a.route(&frame([0xff; 6])), Route::Wire);
    }

    #[test]
    fn a_full_inbox_drops_and_counts() {
        let i = Inbox::new().unwrap();
        for _ in 0..INBOX_FRAMES {
            assert!(i.push(&[1; 60]));
        }
        assert!(!i.push(&[1; 60]));
        assert_eq!(i.dropped.load(Ordering::Relaxed), 1);
        while i.pop().is_some() {}
        assert!(i.is_empty());
    }
}
