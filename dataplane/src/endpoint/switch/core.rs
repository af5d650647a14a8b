//! The switching decisions, sans-IO: which port a MAC is behind (learned, aged, capped per
//! port), and where each frame goes. The NIC side (the uplink) is not a port of the table:
//! what is not learned behind a port is out there.

use std::collections::HashMap;

use smoltcp::time::{Duration, Instant};

use crate::wire::Mac;

/// A port's number (`vde_switch` numbers ports from 1).
pub type PortId = u32;

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// To one port.
    Port(PortId),
    /// To every port but this one (`None`: every port).
    Flood(Option<PortId>),
    /// Out through the NIC.
    Uplink,
}

/// What learning a source MAC did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A MAC not seen before: it now belongs to the port (the owner must claim it).
    New,
    /// Known on this port; its age is reset.
    Refreshed,
    /// It moved here from another port (a station that moved; the claim stays).
    Moved {
        /// The port it was behind.
        from: PortId,
    },
    /// Not learned: a multicast or zero source, or the port holds its cap of MACs.
    Refused,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// The learning table and the forwarding rules of one switch.
#[derive(Debug)]
pub struct SwitchCore {
    table: HashMap<Mac, Entry>,
    per_port: HashMap<PortId, usize>,
    max_per_port: usize,
    max_age: Duration,
}

/// Frames shorter than an Ethernet header are dropped everywhere.
pub const MIN_FRAME: usize = 14;

impl SwitchCore {
    /// A table that forgets a MAC unseen for `max_age` and learns at most `max_per_port`
    /// MACs behind one port.
    pub fn new(max_age: Duration, max_per_port: usize) -> Self {
        Self {
            table: HashMap::new(),
            per_port: HashMap::new(),
            max_per_port,
            max_age,
        }
    }

    /// The port `mac` is behind, if learned.
    pub fn lookup(&self, mac: Mac) -> Option<PortId> {
        self.table.get(&mac).map(|e| e.port)
    }

    /// The MACs learned behind `port`.
    pub fn macs_of(&self, port: PortId) -> impl Iterator<Item = Mac> + '_ {
        self.table
            .iter()
            .filter(move |(_, e)| e.port == port)
            .map(|(m, _)| *m)
    }

    /// Learns `src` behind `port` at `now`.
    pub fn learn(&mut self, src: Mac, port: PortId, now: Instant) -> Learned {
        if !src.is_station() {
            return Learned::Refused;
        }
        match self.table.get_mut(&src) {
            Some(e) if e.port == port => {
                e.seen = now;
                Learned::Refreshed
            }
            Some(e) => {
                let from = e.port;
                if self.per_port.get(&port).copied().unwrap_or(0) >= self.max_per_port {
                    return Learned::Refused;
                }
                e.port = port;
                e.seen = now;
                if let Some(n) = self.per_port.get_mut(&from) {
                    *n -= 1;
                }
                *self.per_port.entry(port).or_default() += 1;
                Learned::Moved { from }
            }
            None => {
                let n = self.per_port.entry(port).or_default();
                if *n >= self.max_per_port {
                    return Learned::Refused;
                }
                *n += 1;
                self.table.insert(src, Entry { port, seen: now });
                Learned::New
            }
        }
    }

    /// Forgets every MAC behind `port` (it closed); returns them.
    pub fn forget_port(&mut self, port: PortId) -> Vec<Mac> {
        let gone: Vec<Mac> = self.macs_of(port).collect();
        for m in &gone {
            self.table.remove(m);
        }
        self.per_port.remove(&port);
        gone
    }

    /// Forgets one MAC (e.g. one the classifier would not let it own).
    pub fn forget(&mut self, mac: Mac) {
        if let Some(e) = self.table.remove(&mac)
            && let Some(n) = self.per_port.get_mut(&e.port)
        {
            *n -= 1;
        }
    }

    /// Forgets the MACs not seen for the maximum age; returns them with their ports.
    pub fn expire(&mut self, now: Instant) -> Vec<(Mac, PortId)> {
        let max_age = self.max_age;
        let old: Vec<(Mac, PortId)> = self
            .table
            .iter()
            .filter(|(_, e)| now - e.seen > max_age)
            .map(|(m, e)| (*m, e.port))
            .collect();
        for (m, _) in &old {
            self.forget(*m);
        }
        old
    }

    /// Where a frame from `port` goes (after its source is learned): a learned unicast
    /// destination on another port there; one on the same port nowhere; broadcast,
    /// multicast and unknown unicast to every other port and out through the NIC.
    pub fn forward(&self, port: PortId, frame: &[u8], outs: &mut Vec<Out>) {
        outs.clear();
        let Some(dst) = dst(frame) else { return };
        if dst.0[0] & 1 == 0
            && let Some(p) = self.lookup(dst)
        {
            if p != port {
                outs.push(Out::Port(p));
            }
            return;
        }
        outs.push(Out::Flood(Some(port)));
        outs.push(Out::Uplink);
    }

    /// Where a frame from the NIC goes: broadcast and multicast to every port; unicast to
    /// the port its destination is learned behind, else nowhere (the classifier sent it
    /// here for a MAC that has since aged out).
    pub fn forward_uplink(&self, frame: &[u8]) -> Option<Out> {
        let dst = dst(frame)?;
        if dst.0[0] & 1 != 0 {
            return Some(Out::Flood(None));
        }
        self.lookup(dst).map(Out::Port)
    }
}

/// A token bucket: at most `rate` per second on average, `burst` at once.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        }
    }

    /// Takes `n` tokens if there are that many (after refilling to `now`).
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        let elapsed = (now - self.last).total_micros() as f64 / 1e6;
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// The limits of each port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortLimits {
    /// Most frames per second from a port (0: no limit).
    pub packets_per_s: u64,
    /// Most bytes per second from a port (0: no limit).
    pub bytes_per_s: u64,
}

/// A port's rate limiter (both buckets; an absent limit always passes).
#[derive(Clone, Copy, Debug)]
pub struct PortRate {
    packets: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl PortRate {
    /// Buckets for `limits`, each allowing a tenth of a second's worth at once.
    pub fn new(limits: PortLimits, now: Instant) -> Self {
        let bucket = |rate: u64| (rate > 0).then(|| TokenBucket::new(rate, rate / 10, now));
        Self {
            packets: bucket(limits.packets_per_s),
            bytes: bucket(limits.bytes_per_s),
        }
    }

    /// Whether a frame of `len` bytes may pass now.
    pub fn admit(&mut self, len: usize, now: Instant) -> bool {
        self.packets.as_mut().is_none_or(|b| b.take(1, now))
            && self.bytes.as_mut().is_none_or(|b| b.take(len as u64, now))
    }
}

/// The destination MAC of a frame long enough to be one.
pub fn dst(frame: &[u8]) -> Option<Mac> {
    let d: [u8; 6] = frame.get(0..6)?.try_into().ok()?;
    (frame.len() >= MIN_FRAME).then_some(Mac(d))
}

/// The source MAC of a frame long enough to be one.
pub fn src(frame: &[u8]) -> Option<Mac> {
    let s: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    (frame.len() >= MIN_FRAME).then_some(Mac(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn learned_unicast_goes_to_its_port_and_the_rest_floods_and_leaves() {
        let t0 = Instant::from_secs(0);
        let mut s = SwitchCore::new(Duration::from_secs(30), 8);
        let mut outs = Vec::new();
        assert_eq!(s.learn(Mac(A), 1, t0), Learned::New);
        assert_eq!(s.learn(Mac(A), 1, t0), Learned::Refreshed);
        // B unknown yet: flood to other ports and out the NIC.
        s.forward(1, &frame(B, A), &mut outs);
        assert_eq!(outs, [Out::Flood(Some(1)), Out::Uplink]);
        assert_eq!(s.learn(Mac(B), 2, t0), Learned::New);
        s.forward(1, &frame(B, A), &mut outs);
        assert_eq!(outs, [Out::Port(2)]);
        // To a MAC behind the same port: nowhere (the segment had it already).
        s.forward(2, &frame(B, B), &mut outs);
        assert!(outs.is_empty());
        s.forward(1, &frame(BCAST, A), &mut outs);
        assert_eq!(outs, [Out::Flood(Some(1)), Out::Uplink]);
        assert_eq!(
            s.forward_uplink(&frame(BCAST, [2, 9, 9, 9, 9, 9])),
            Some(Out::Flood(None))
        );
        assert_eq!(
            s.forward_uplink(&frame(A, [2, 9, 9, 9, 9, 9])),
            Some(Out::Port(1))
        );
        assert_eq!(s.forward_uplink(&frame([2, 1, 1, 1, 1, 1], A)), None);
        // Runts go nowhere.
        s.forward(1, &frame(B, A)[..13], &mut outs);
        assert!(outs.is_empty());
        assert_eq!(s.forward_uplink(&[0xff; 13]), None);
    }

    #[test]
    fn buckets_pass_the_rate_and_the_burst_and_no_more() {
        let t0 = Instant::from_secs(10);
        let mut r = PortRate::new(
            PortLimits {
                packets_per_s: 1000,
                bytes_per_s: 0,
            },
            t0,
        );
        let passed = (0..500).filter(|_| r.admit(60, t0)).count();
        assert_eq!(passed, 100, "the burst: a tenth of a second");
        let t1 = t0 + Duration::from_millis(50);
        let passed = (0..500).filter(|_| r.admit(60, t1)).count();
        assert_eq!(passed, 50, "50 ms at 1000/s");
        let mut b = PortRate::new(
            PortLimits {
                packets_per_s: 0,
                bytes_per_s: 10_000,
            },
            t0,
        );
        assert!(b.admit(1000, t0));
        assert!(!b.admit(1, t0), "1000 bytes is the burst");
        let mut none = PortRate::new(PortLimits::default(), t0);
        assert!((0..10_000).all(|_| none.admit(9000, t0)));
    }

    #[test]
    fn macs_age_move_are_capped_and_go_with_their_port() {
        let t0 = Instant::from_secs(0);
        let mut s = SwitchCore::new(Duration::from_secs(30), 2);
        assert_eq!(s.learn(Mac(A), 1, t0), Learned::New);
        assert_eq!(
            s.learn(Mac([1, 0, 0, 0, 0, 1]), 1, t0),
            Learned::Refused,
            "multicast"
        );
        assert_eq!(s.learn(Mac([0; 6]), 1, t0), Learned::Refused, "zero");
        assert_eq!(s.learn(Mac(B), 1, t0), Learned::New);
        assert_eq!(
            s.learn(Mac([2, 0, 0, 0, 0, 0xc]), 1, t0),
            Learned::Refused,
            "cap"
        );
        assert_eq!(s.learn(Mac(B), 2, t0), Learned::Moved { from: 1 });
        assert_eq!(
            s.learn(Mac([2, 0, 0, 0, 0, 0xc]), 1, t0),
            Learned::New,
            "room again"
        );
        assert!(s.expire(Instant::from_secs(20)).is_empty());
        assert_eq!(
            s.learn(Mac(A), 1, Instant::from_secs(25)),
            Learned::Refreshed
        );
        let mut old = s.expire(Instant::from_secs(40));
        old.sort();
        assert_eq!(old, [(Mac(B), 2), (Mac([2, 0, 0, 0, 0, 0xc]), 1)]);
        assert_eq!(s.forget_port(1), [Mac(A)]);
        assert_eq!(s.lookup(Mac(A)), None);
    }
}
