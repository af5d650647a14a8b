//! Extra (dummy) endpoints in the classifier that a running `ioth serve` attached: the
//! endpoint-scaling workloads measure ioth with 1, 100 and 10,000 registered endpoints.
//!
//! The program is found through the interface (`ip -d link show` names its id), its maps
//! through the program, as `ioth status` does. Each filler claims a free slot in the owners
//! map (insert-if-absent, as the data plane does, so it never takes a server's slot) and
//! owns a MAC, an IPv4 and an IPv6 address that no traffic uses. Dropping [`Fillers`]
//! removes them again.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, MapData};
use ioth_common::{
    EndpointOwner, EndpointSlot, FIRST_ENDPOINT_SLOT, Ipv4Key, Ipv6Key, MacKey, PROGRAM_NAME,
    SLOTS_PER_QUEUE, map_names,
};

const BPF_NOEXIST: u64 = 1;

/// Filler endpoints registered in an attached classifier; removed on drop.
pub struct Fillers {
    by_mac: HashMap<MapData, MacKey, EndpointSlot>,
    by_ipv4: HashMap<MapData, Ipv4Key, EndpointSlot>,
    by_ipv6: HashMap<MapData, Ipv6Key, EndpointSlot>,
    owners: HashMap<MapData, u32, EndpointOwner>,
    added: Vec<(u32, u32)>,
}

impl std::fmt::Debug for Fillers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fillers")
            .field("added", &self.added.len())
            .finish_non_exhaustive()
    }
}

/// Filler `i`'s addresses (10.200.0.0/14, fd00:42::/64; never routed anywhere).
fn addrs(i: u32) -> ([u8; 6], Ipv4Addr, Ipv6Addr) {
    let b = i.to_be_bytes();
    (
        [0x02, 0x42, b[0], b[1], b[2], b[3]],
        Ipv4Addr::new(10, 200 + (b[1] & 3), b[2], b[3]),
        Ipv6Addr::new(
            0xfd00,
            0x42,
            0,
            0,
            0,
            0,
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        ),
    )
}

fn open<K: aya::Pod, V: aya::Pod>(
    maps: &[(String, u32)],
    name: &str,
) -> Result<HashMap<MapData, K, V>> {
    // Kernel object names are truncated to 15 bytes.
    let short = &name[..name.len().min(15)];
    let id = maps
        .iter()
        .find(|(n, _)| n == short)
        .map(|(_, id)| *id)
        .with_context(|| format!("the attached classifier has no map {name}"))?;
    let data = MapData::from_id(id).with_context(|| format!("opening map {name}"))?;
    Ok(HashMap::try_from(aya::maps::Map::HashMap(data))?)
}

impl Fillers {
    /// Registers `count` filler endpoints in the classifier attached to `iface` (of the
    /// calling thread's namespace).
    pub fn add(iface: &str, count: u32) -> Result<Self> {
        let out = std::process::Command::new("ip")
            .args(["-d", "link", "show", "dev", iface])
            .output()
            .context("running ip")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let prog_id: u32 = text
            .split("prog/xdp id ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .with_context(|| format!("{iface} has no XDP program attached"))?;
        let info = aya::programs::loaded_programs()
            .filter_map(|p| p.ok())
            .find(|p| p.id() == prog_id)
            .with_context(|| format!("program {prog_id} not found"))?;
        if !PROGRAM_NAME.starts_with(info.name_as_str().unwrap_or("-")) {
            bail!("the program on {iface} is not the ioth classifier");
        }
        let mut maps = Vec::new();
        for id in info.map_ids()?.unwrap_or_default() {
            let m = aya::maps::MapInfo::from_id(id)?;
            maps.push((m.name_as_str().unwrap_or("").to_owned(), id));
        }
        let mut f = Self {
            by_mac: open(&maps, map_names::BY_MAC)?,
            by_ipv4: open(&maps, map_names::BY_IPV4)?,
            by_ipv6: open(&maps, map_names::BY_IPV6)?,
            owners: open(&maps, map_names::OWNERS)?,
            added: Vec::new(),
        };
        let me = ioth_dataplane::sys::ProcessIdentity::current();
        let owner = EndpointOwner {
            pid: me.pid,
            tid: 0,
            thread: 0,
            kind: ioth_common::OWNER_THREAD,
            start: me.start,
            pidns: me.pidns,
        };
        let mut slot = FIRST_ENDPOINT_SLOT;
        for i in 0..count {
            // Claim the next free slot.
            loop {
                if slot >= SLOTS_PER_QUEUE {
                    bail!("no free endpoint slot left after {i} fillers");
                }
                let s = slot;
                slot += 1;
                match f.owners.insert(s, owner, BPF_NOEXIST) {
                    Ok(()) => {
                        f.added.push((s, i));
                        break;
                    }
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e).context("claiming a slot"),
                }
            }
            let (s, _) = *f.added.last().expect("just pushed");
            let (mac, v4, v6) = addrs(i);
            let v = EndpointSlot { slot: s };
            f.by_mac.insert(MacKey::new(mac), v, BPF_NOEXIST)?;
            f.by_ipv4
                .insert(Ipv4Key { addr: v4.octets() }, v, BPF_NOEXIST)?;
            f.by_ipv6
                .insert(Ipv6Key { addr: v6.octets() }, v, BPF_NOEXIST)?;
        }
        Ok(f)
    }

    /// How many fillers are registered.
    pub fn len(&self) -> usize {
        self.added.len()
    }
}

impl Drop for Fillers {
    fn drop(&mut self) {
        for &(s, i) in &self.added {
            let (mac, v4, v6) = addrs(i);
            let _ = self.by_mac.remove(&MacKey::new(mac));
            let _ = self.by_ipv4.remove(&Ipv4Key { addr: v4.octets() });
            let _ = self.by_ipv6.remove(&Ipv6Key { addr: v6.octets() });
            let _ = self.owners.remove(&s);
        }
    }
}
