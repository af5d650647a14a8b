//! Read-only access to the classifier attached to an interface, from any process: what
//! `ioth status` and `ioth endpoints` show while `ioth serve` runs.
//!
//! The program is found through the interface (rtnetlink names the attached XDP program's
//! id and mode); its maps through the program (map ids) and their names. Nothing here
//! writes to a map.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::loaded_programs,
};
use ioth_common::{
    Counter, EndpointOwner, EndpointSlot, EndpointStats, EndpointTx, Ipv4Key, Ipv6Key, MacKey,
    PROGRAM_NAME, map_names,
};

use super::{
    counters::VerdictCounters,
    types::{AttachMode, EndpointKind, PortInfo},
};
use crate::{
    sys::{
        self,
        netlink::{Rtnetlink, XdpMode},
    },
    wire::Mac,
    xsk::BindMode,
};

/// Errors of inspection.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No such interface (in this network namespace).
    #[error("no network interface named {0:?}")]
    UnknownInterface(String),
    /// The interface has no ioth classifier attached.
    #[error("{0} has no ioth classifier attached")]
    NotAttached(String),
    /// A kernel object could not be read.
    #[error("reading {what}: {why}")]
    Read {
        /// What.
        what: String,
        /// Why.
        why: String,
    },
}

type Result<T> = std::result::Result<T, InspectError>;

/// How the program is attached.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    /// Interface.
    pub iface: String,
    /// Kernel program id.
    pub program_id: u32,
    /// Driver or skb mode.
    pub mode: AttachMode,
    /// Rx queues of the interface.
    pub queues: u32,
}

/// One endpoint as the classifier's maps describe it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointView {
    /// Slot.
    pub slot: u32,
    /// Its MAC, if it owns one (the lowest, when it owns several).
    pub mac: Option<Mac>,
    /// Every MAC it owns: its own and, for a switch, those learned behind its ports.
    pub macs: Vec<Mac>,
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// Owning process id (0 if unknown).
    pub pid: u32,
    /// Owning thread id (0 if unknown).
    pub tid: u32,
    /// The owner's index of the endpoint (`ioth serve`: thread index; a port: its number).
    pub thread: u32,
    /// What it is: a thread's stack, a switch port, a switch.
    pub kind: EndpointKind,
    /// A port: what its switch says of it (client description, client pid, port number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortInfo>,
    /// Whether the owning process still exists (pid and start time; an owner in another pid
    /// namespace counts as alive: it cannot be judged from here).
    pub owner_alive: bool,
    /// The owner is in another pid namespace (`pid` is its pid there).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_foreign: bool,
    /// Frames redirected to it.
    pub rx_packets: u64,
    /// Bytes redirected to it.
    pub rx_bytes: u64,
    /// Frames it owns that found no socket.
    pub rx_dropped: u64,
    /// Frames its stack sent (published by the owner a few times a second).
    pub tx_packets: u64,
    /// Bytes its stack sent.
    pub tx_bytes: u64,
    /// TCP segments its stack sent again.
    pub tcp_retransmits: u64,
    /// How its AF_XDP sockets are bound (`None`: not published yet; `-` in JSON).
    #[serde(serialize_with = "bind_or_dash")]
    pub xsk: Option<BindMode>,
}

/// The maps of an attached classifier, opened read-only by id.
pub struct ClassifierView {
    attachment: Attachment,
    /// Map name → kernel map id.
    maps: BTreeMap<String, u32>,
}

impl std::fmt::Debug for ClassifierView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierView")
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

fn read_err(what: &str, why: impl std::fmt::Display) -> InspectError {
    InspectError::Read {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

/// The interfaces in this namespace with an ioth classifier attached.
pub fn attached_interfaces() -> Result<Vec<String>> {
    let links = Rtnetlink::open()
        .and_then(|mut nl| nl.links())
        .map_err(|e| read_err("interfaces", e))?;
    Ok(links
        .into_iter()
        .filter(|l| l.xdp.is_some() && ClassifierView::open(&l.name).is_ok())
        .map(|l| l.name)
        .collect())
}

impl ClassifierView {
    /// Opens the classifier attached to `iface`.
    pub fn open(iface: &str) -> Result<Self> {
        let link = Rtnetlink::open()
            .and_then(|mut nl| nl.link(iface))
            .map_err(|e| read_err("interface", e))?
            .ok_or_else(|| InspectError::UnknownInterface(iface.to_owned()))?;
        let xdp = link
            .xdp
            .ok_or_else(|| InspectError::NotAttached(iface.to_owned()))?;
        let program_id = xdp.id;
        let mode = match xdp.mode {
            XdpMode::Driver => AttachMode::Driver,
            XdpMode::Skb => AttachMode::Skb,
            XdpMode::Hardware | XdpMode::Multiple => {
                return Err(InspectError::NotAttached(iface.to_owned()));
            }
        };
        let info = loaded_programs()
            .filter_map(|p| p.ok())
            .find(|p| p.id() == program_id)
            .ok_or_else(|| InspectError::NotAttached(iface.to_owned()))?;
        // Kernel object names are truncated to 15 bytes.
        if !PROGRAM_NAME.starts_with(info.name_as_str().unwrap_or("-")) {
            return Err(InspectError::NotAttached(iface.to_owned()));
        }
        let ids = info
            .map_ids()
            .map_err(|e| read_err("program maps", e))?
            .unwrap_or_default();
        let mut maps = BTreeMap::new();
        for id in ids {
            let info = aya::maps::MapInfo::from_id(id).map_err(|e| read_err("map info", e))?;
            maps.insert(info.name_as_str().unwrap_or("").to_owned(), id);
        }
        Ok(Self {
            attachment: Attachment {
                iface: iface.to_owned(),
                program_id,
                mode,
                queues: sys::rx_queues(iface).unwrap_or(1),
            },
            maps,
        })
    }

    /// How the program is attached.
    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    fn map(&self, name: &str) -> Result<Map> {
        // Kernel map names are truncated to 15 bytes.
        let key = &name[..name.len().min(15)];
        let id = self
            .maps
            .get(key)
            .ok_or_else(|| read_err(name, "the program has no such map"))?;
        let data = MapData::from_id(*id).map_err(|e| read_err(name, e))?;
        Ok(match name {
            map_names::COUNTERS | map_names::EP_STATS => Map::PerCpuArray(data),
            map_names::EP_TX => Map::Array(data),
            _ => Map::HashMap(data),
        })
    }

    /// Verdict counters, summed over CPUs.
    pub fn counters(&self) -> Result<VerdictCounters> {
        let m: PerCpuArray<MapData, u64> = self
            .map(map_names::COUNTERS)?
            .try_into()
            .map_err(|e| read_err("counters", e))?;
        let get = |c: Counter| -> Result<u64> {
            Ok(m.get(&(c as u32), 0)
                .map_err(|e| read_err("counters", e))?
                .iter()
                .sum())
        };
        Ok(VerdictCounters {
            redirect: get(Counter::Redirect)?,
            pass: get(Counter::Pass)?,
            drop: get(Counter::Drop)?,
            aborted: get(Counter::Aborted)?,
        })
    }

    /// Every endpoint with its addresses, owner and receive counters, by slot.
    pub fn endpoints(&self) -> Result<Vec<EndpointView>> {
        let mut eps: BTreeMap<u32, EndpointView> = BTreeMap::new();
        let by_mac: HashMap<MapData, MacKey, EndpointSlot> = self
            .map(map_names::BY_MAC)?
            .try_into()
            .map_err(|e| read_err("by-mac", e))?;
        for kv in by_mac.iter() {
            let (k, v) = kv.map_err(|e| read_err("by-mac", e))?;
            let e = eps.entry(v.slot).or_insert_with(|| blank(v.slot));
            e.macs.push(Mac(k.addr));
        }
        let by_v4: HashMap<MapData, Ipv4Key, EndpointSlot> = self
            .map(map_names::BY_IPV4)?
            .try_into()
            .map_err(|e| read_err("by-ipv4", e))?;
        for kv in by_v4.iter() {
            let (k, v) = kv.map_err(|e| read_err("by-ipv4", e))?;
            eps.entry(v.slot)
                .or_insert_with(|| blank(v.slot))
                .ipv4
                .push(Ipv4Addr::from(k.addr));
        }
        let by_v6: HashMap<MapData, Ipv6Key, EndpointSlot> = self
            .map(map_names::BY_IPV6)?
            .try_into()
            .map_err(|e| read_err("by-ipv6", e))?;
        for kv in by_v6.iter() {
            let (k, v) = kv.map_err(|e| read_err("by-ipv6", e))?;
            eps.entry(v.slot)
                .or_insert_with(|| blank(v.slot))
                .ipv6
                .push(Ipv6Addr::from(k.addr));
        }
        if let Ok(m) = self.map(map_names::OWNERS) {
            let owners: HashMap<MapData, u32, EndpointOwner> =
                m.try_into().map_err(|e| read_err("owners", e))?;
            for kv in owners.iter() {
                let (slot, o) = kv.map_err(|e| read_err("owners", e))?;
                if let Some(e) = eps.get_mut(&slot) {
                    e.pid = o.pid;
                    let live = super::endpoints::owner_of(&o).liveness();
                    // One in another pid namespace cannot be judged from here: not dead.
                    e.owner_alive = live != sys::Liveness::Dead;
                    e.owner_foreign = live == sys::Liveness::Foreign;
                    e.tid = o.tid;
                    e.thread = o.thread;
                    e.kind = EndpointKind::from_code(o.kind);
                }
            }
        }
        let stats: PerCpuArray<MapData, EndpointStats> = self
            .map(map_names::EP_STATS)?
            .try_into()
            .map_err(|e| read_err("endpoint stats", e))?;
        let tx: Option<Array<MapData, EndpointTx>> = self
            .map(map_names::EP_TX)
            .ok()
            .and_then(|m| m.try_into().ok());
        for e in eps.values_mut() {
            if let Some(t) = tx.as_ref().and_then(|t| t.get(&e.slot, 0).ok()) {
                e.tx_packets = t.tx_packets;
                e.tx_bytes = t.tx_bytes;
                e.tcp_retransmits = t.tcp_retransmits;
                e.xsk = BindMode::from_published(t.bind);
            }
            e.ipv4.sort();
            e.ipv6.sort();
            e.macs.sort();
            e.mac = e.macs.first().copied();
            if e.kind == EndpointKind::Port {
                e.port = port_info(e.pid, e.slot);
            }
            if let Ok(v) = stats.get(&e.slot, 0) {
                for s in v.iter() {
                    e.rx_packets += s.rx_packets;
                    e.rx_bytes += s.rx_bytes;
                    e.rx_dropped += s.rx_dropped;
                }
            }
        }
        Ok(eps.into_values().collect())
    }
}

fn blank(slot: u32) -> EndpointView {
    EndpointView {
        slot,
        mac: None,
        macs: Vec::new(),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        pid: 0,
        tid: 0,
        thread: 0,
        kind: EndpointKind::Thread,
        port: None,
        owner_alive: false,
        owner_foreign: false,
        rx_packets: 0,
        rx_bytes: 0,
        rx_dropped: 0,
        tx_packets: 0,
        tx_bytes: 0,
        tcp_retransmits: 0,
        xsk: None,
    }
}

/// What the switch in process `pid` says of the port in `slot`.
fn port_info(pid: u32, slot: u32) -> Option<PortInfo> {
    let text = std::fs::read_to_string(sys::ports_file(pid)).ok()?;
    let ports: Vec<PortInfo> = serde_json::from_str(&text).ok()?;
    ports.into_iter().find(|p| p.slot == slot)
}

/// Serialises a bind mode as `copy` / `zero-copy`, or `-` when not known.
fn bind_or_dash<S: serde::Serializer>(
    m: &Option<BindMode>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&m.map_or_else(|| "-".to_owned(), |m| m.to_string()))
}
