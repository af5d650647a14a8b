//! Endpoints in the classifier's maps: claiming a slot, the addresses it owns, its sockets
//! in the XskMap, removal and reaping of dead owners.

use aya::maps::{HashMap, MapData, MapError};
use ioth_common::{
    EndpointOwner, EndpointSlot, EndpointStats, EndpointTx, FIRST_ENDPOINT_SLOT, Ipv4Key, Ipv6Key,
    MAX_QUEUES, MacKey, SLOTS_PER_QUEUE, map_names, xsk_index,
};
use std::os::fd::AsRawFd;

use super::{
    program::Classifier,
    types::{ClassifierError, EndpointAddrs, EndpointId, EndpointKind, Result, map_err},
};
use crate::{sys, wire::Mac};

/// `BPF_NOEXIST`: insert only if the key is not there yet.
const BPF_NOEXIST: u64 = 1;

impl Classifier {
    /// Registers an endpoint owning `addrs` in a free slot. Every address must be free; on any
    /// failure nothing stays registered.
    pub fn add_endpoint(&mut self, addrs: &EndpointAddrs) -> Result<EndpointId> {
        // A port starts with no address: it owns what it learns (`add_mac`).
        if addrs.mac.is_none()
            && addrs.ipv4.is_empty()
            && addrs.ipv6.is_empty()
            && addrs.kind != EndpointKind::Port
        {
            return Err(ClassifierError::InvalidEndpoint("it owns no address"));
        }
        if let Some(mac) = addrs.mac {
            if mac[0] & 1 != 0 {
                return Err(ClassifierError::InvalidEndpoint(
                    "a multicast MAC cannot be owned",
                ));
            }
            if mac == [0; 6] {
                return Err(ClassifierError::InvalidEndpoint(
                    "the zero MAC cannot be owned",
                ));
            }
        }
        // The owners map allocates slots: claiming a slot is an insert-if-absent, atomic
        // even when several processes share pinned maps. The owner is this process and the
        // calling thread (a stack's thread).
        let me = sys::ProcessIdentity::current();
        let owner = EndpointOwner {
            pid: me.pid,
            tid: nix::unistd::gettid().as_raw() as u32,
            thread: addrs.thread,
            kind: addrs.kind.code(),
            start: me.start,
            pidns: me.pidns,
        };
        let mut claimed = None;
        for s in FIRST_ENDPOINT_SLOT..SLOTS_PER_QUEUE {
            if self.endpoints.contains_key(&s) {
                continue;
            }
            match self.owners.insert(s, owner, BPF_NOEXIST) {
                Ok(()) => {
                    claimed = Some(s);
                    break;
                }
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(map_err(map_names::OWNERS, "claim a slot")(e)),
            }
        }
        let slot = claimed.ok_or(ClassifierError::NoFreeSlot(
            SLOTS_PER_QUEUE - FIRST_ENDPOINT_SLOT,
        ))?;
        self.endpoints.insert(
            slot,
            EndpointAddrs {
                thread: addrs.thread,
                kind: addrs.kind,
                ..EndpointAddrs::default()
            },
        );
        match self.insert_addrs(slot, addrs) {
            Ok(()) => {
                self.reset_stats(slot)?;
                Ok(EndpointId(slot))
            }
            Err(e) => {
                // Roll back whatever was inserted.
                let _ = self.remove_endpoint(EndpointId(slot));
                Err(e)
            }
        }
    }

    fn insert_addrs(&mut self, slot: u32, addrs: &EndpointAddrs) -> Result<()> {
        let value = EndpointSlot { slot };
        let in_use = |addr: String| {
            move |e: MapError| match &e {
                MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EEXIST) => {
                    ClassifierError::AddressInUse { addr }
                }
                _ => map_err("ownership map", "insert")(e),
            }
        };
        if let Some(mac) = addrs.mac {
            self.by_mac
                .insert(MacKey::new(mac), value, BPF_NOEXIST)
                .map_err(in_use(Mac(mac).to_string()))?;
            self.endpoints.get_mut(&slot).expect("reserved").mac = Some(mac);
            if let Some(n) = &mut self.nic {
                n.add(mac);
            }
        }
        for ip in &addrs.ipv4 {
            self.by_ipv4
                .insert(Ipv4Key { addr: ip.octets() }, value, BPF_NOEXIST)
                .map_err(in_use(ip.to_string()))?;
            self.endpoints
                .get_mut(&slot)
                .expect("reserved")
                .ipv4
                .push(*ip);
        }
        for ip in &addrs.ipv6 {
            self.by_ipv6
                .insert(Ipv6Key { addr: ip.octets() }, value, BPF_NOEXIST)
                .map_err(in_use(ip.to_string()))?;
            self.endpoints
                .get_mut(&slot)
                .expect("reserved")
                .ipv6
                .push(*ip);
        }
        Ok(())
    }

    /// Adds `mac` to the MACs endpoint `id` owns (a MAC learned behind a switch). Already
    /// its own: nothing to do. Owned by another endpoint: [`ClassifierError::AddressInUse`].
    pub fn add_mac(&mut self, id: EndpointId, mac: [u8; 6]) -> Result<()> {
        if !Mac(mac).is_station() {
            return Err(ClassifierError::InvalidEndpoint(
                "only a unicast, non-zero MAC can be owned",
            ));
        }
        let addrs = self
            .endpoints
            .get(&id.0)
            .ok_or(ClassifierError::UnknownEndpoint(id.0))?;
        if addrs.mac == Some(mac) || addrs.learned.contains(&mac) {
            return Ok(());
        }
        match self
            .by_mac
            .insert(MacKey::new(mac), EndpointSlot { slot: id.0 }, BPF_NOEXIST)
        {
            Ok(()) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                return Err(ClassifierError::AddressInUse {
                    addr: Mac(mac).to_string(),
                });
            }
            Err(e) => return Err(map_err(map_names::BY_MAC, "insert")(e)),
        }
        if let Some(a) = self.endpoints.get_mut(&id.0) {
            a.learned.push(mac);
        }
        if let Some(n) = &mut self.nic {
            n.add(mac);
        }
        Ok(())
    }

    /// Removes a learned `mac` from endpoint `id` (no-op if it does not own it as learned).
    pub fn remove_mac(&mut self, id: EndpointId, mac: [u8; 6]) -> Result<()> {
        let Some(addrs) = self.endpoints.get_mut(&id.0) else {
            return Err(ClassifierError::UnknownEndpoint(id.0));
        };
        let Some(pos) = addrs.learned.iter().position(|m| *m == mac) else {
            return Ok(());
        };
        addrs.learned.swap_remove(pos);
        if let Some(n) = &mut self.nic {
            n.remove(mac);
        }
        self.by_mac
            .remove(&MacKey::new(mac))
            .map_err(map_err(map_names::BY_MAC, "remove"))
    }

    fn reset_stats(&mut self, slot: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| ClassifierError::Map {
            map: map_names::EP_STATS,
            op: "count CPUs",
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            }),
        })?;
        let zero = aya::maps::PerCpuValues::try_from(vec![EndpointStats::default(); cpus])
            .map_err(|e| ClassifierError::Map {
                map: map_names::EP_STATS,
                op: "zero",
                source: MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-cpu values",
                    io_error: e,
                }),
            })?;
        self.ep_stats
            .set(slot, zero, 0)
            .map_err(map_err(map_names::EP_STATS, "zero"))?;
        self.ep_tx
            .set(slot, EndpointTx::default(), 0)
            .map_err(map_err(map_names::EP_TX, "zero"))
    }

    /// Removes an endpoint: its addresses and its sockets on every queue.
    pub fn remove_endpoint(&mut self, id: EndpointId) -> Result<()> {
        let addrs = self
            .endpoints
            .remove(&id.0)
            .ok_or(ClassifierError::UnknownEndpoint(id.0))?;
        // Remove everything even if one removal fails; report the first failure.
        let mut first_err = None;
        let mut note = |r: std::result::Result<(), MapError>, map| {
            if let Err(e) = r
                && first_err.is_none()
            {
                first_err = Some(map_err(map, "remove")(e));
            }
        };
        for mac in addrs.mac.iter().chain(&addrs.learned) {
            note(self.by_mac.remove(&MacKey::new(*mac)), map_names::BY_MAC);
            if let Some(n) = &mut self.nic {
                n.remove(*mac);
            }
        }
        for ip in addrs.ipv4 {
            note(
                self.by_ipv4.remove(&Ipv4Key { addr: ip.octets() }),
                map_names::BY_IPV4,
            );
        }
        for ip in addrs.ipv6 {
            note(
                self.by_ipv6.remove(&Ipv6Key { addr: ip.octets() }),
                map_names::BY_IPV6,
            );
        }
        for q in 0..MAX_QUEUES {
            // Unset of an empty XskMap slot is ENOENT-free (array semantics): ignore errors.
            let _ = self.xsks.unset(xsk_index(q, id.0));
        }
        // Absent if registration failed half-way: ignore.
        let _ = self.owners.remove(&id.0);
        first_err.map_or(Ok(()), Err)
    }

    /// Removes every endpoint whose owning process no longer exists (a server that was
    /// killed): its addresses, sockets and owner entry. Returns the slots reaped.
    ///
    /// An owner is its pid *and* start time in its pid namespace ([`sys::ProcessIdentity`]):
    /// a reused pid is not the owner, and an owner in another pid namespace is left alone
    /// (its pid means nothing here; reap from its namespace). Reapers of all processes take
    /// turns ([`sys::reap_lock`]), and each slot's owner is read again just before its
    /// entries go, so an owner that claimed a slot meanwhile keeps it.
    pub fn reap_dead_owners(&mut self) -> Result<Vec<u32>> {
        let _turn = sys::reap_lock().map_err(ClassifierError::ReapLock)?;
        let dead: Vec<(u32, EndpointOwner)> = self
            .owners
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(_, o)| owner_of(o).liveness() == sys::Liveness::Dead)
            .collect();
        let mut reaped = Vec::new();
        for (slot, seen) in dead {
            // Still the same, still dead?
            match self.owners.get(&slot, 0) {
                Ok(now) if now == seen && owner_of(&now).liveness() == sys::Liveness::Dead => {}
                _ => continue,
            }
            reaped.push(slot);
            for mac in remove_keys_of(&mut self.by_mac, slot) {
                if let Some(n) = &mut self.nic {
                    n.remove(mac.addr);
                }
            }
            remove_keys_of(&mut self.by_ipv4, slot);
            remove_keys_of(&mut self.by_ipv6, slot);
            for q in 0..MAX_QUEUES {
                let _ = self.xsks.unset(xsk_index(q, slot));
            }
            let _ = self.owners.remove(&slot);
        }
        Ok(reaped)
    }

    /// The endpoints registered through this classifier.
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointId, &EndpointAddrs)> {
        self.endpoints.iter().map(|(s, a)| (EndpointId(*s), a))
    }

    /// Puts `socket` in the XskMap for endpoint `slot` (or [`ioth_common::FANOUT_SLOT`]) on `queue`.
    pub fn set_socket(&mut self, queue: u32, slot: u32, socket: impl AsRawFd) -> Result<()> {
        if queue >= MAX_QUEUES {
            return Err(ClassifierError::QueueOutOfRange(queue));
        }
        if slot >= SLOTS_PER_QUEUE {
            return Err(ClassifierError::UnknownEndpoint(slot));
        }
        self.xsks
            .set(xsk_index(queue, slot), socket, 0)
            .map_err(map_err(map_names::XSKS, "set"))
    }
}

/// The identity an owners-map entry records.
pub(crate) fn owner_of(o: &EndpointOwner) -> sys::ProcessIdentity {
    sys::ProcessIdentity {
        pid: o.pid,
        start: o.start,
        pidns: o.pidns,
    }
}

/// Removes every key of an ownership map that points at `slot`; the keys removed.
fn remove_keys_of<K: aya::Pod>(map: &mut HashMap<MapData, K, EndpointSlot>, slot: u32) -> Vec<K> {
    let keys: Vec<K> = map
        .iter()
        .filter_map(|kv| kv.ok())
        .filter(|(_, v)| v.slot == slot)
        .map(|(k, _)| k)
        .collect();
    for k in &keys {
        let _ = map.remove(k);
    }
    keys
}
