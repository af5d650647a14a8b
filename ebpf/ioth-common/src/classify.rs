//! The reference classifier: what the XDP program must decide for every frame.
//!
//! This is the specification in executable form, written for clarity with checked slice
//! access. The eBPF program (`ebpf/ioth-ebpf`) implements the same table with
//! verifier-friendly pointer arithmetic; the differential test proves they agree.
//! The decision table in DESIGN.md is this function in prose.

use crate::{
    FANOUT_SLOT, FIRST_ENDPOINT_SLOT, MAX_QUEUES, NO_SLOT, SLOTS_PER_QUEUE, wire::*, xdp_action,
    xsk_index,
};

/// What the classifier looks up. The eBPF side reads the same from its maps.
pub trait Tables {
    /// Slot that owns unicast destination MAC `mac`.
    fn by_mac(&self, mac: [u8; 6]) -> Option<u32>;
    /// Slot that owns IPv4 address `ip` (network order).
    fn by_ipv4(&self, ip: [u8; 4]) -> Option<u32>;
    /// Slot that owns IPv6 address `ip` (network order).
    fn by_ipv6(&self, ip: [u8; 16]) -> Option<u32>;
    /// Whether [`crate::CONFIG_FANOUT`] is set.
    fn fanout(&self) -> bool;
    /// Whether the XskMap holds a socket at `index`.
    fn has_socket(&self, index: u32) -> bool;
}

/// Who a frame belongs to, before the socket lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The endpoint in this slot.
    Endpoint(u32),
    /// Broadcast/multicast no endpoint owns, with fan-out on: the per-queue shared socket.
    Fanout,
    /// Nobody here: the kernel.
    Kernel,
}

/// The classifier's full decision for one frame: the XDP action and the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// One of [`xdp_action`]'s values.
    pub action: u32,
    /// The owning slot ([`FANOUT_SLOT`] for fan-out), or [`NO_SLOT`].
    pub slot: u32,
    /// The XskMap index redirected (or tried), or [`NO_SLOT`].
    pub xsk_index: u32,
}

impl Decision {
    /// Pass to the kernel, no owner.
    pub const KERNEL: Decision = Decision {
        action: xdp_action::PASS,
        slot: NO_SLOT,
        xsk_index: NO_SLOT,
    };
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// A slot read from an ownership map is only trusted if it is an endpoint slot.
fn valid_slot(slot: Option<u32>) -> Option<u32> {
    slot.filter(|s| (FIRST_ENDPOINT_SLOT..SLOTS_PER_QUEUE).contains(s))
}

/// Ethernet/IPv4 ARP target protocol address, if `l3` holds such an ARP packet.
fn arp_target(frame: &[u8], l3: usize) -> Option<[u8; 4]> {
    let arp = frame.get(l3..l3 + ARP_LEN)?;
    let ethernet_ipv4 = be16(&arp[0..2]) == 1 && be16(&arp[2..4]) == ETH_P_IPV4;
    let lengths = arp[4] == 6 && arp[5] == 4;
    (ethernet_ipv4 && lengths).then(|| array(&arp[ARP_TPA_OFF..]))
}

/// Target address of an ICMPv6 neighbour solicitation directly after the IPv6 header at `l3`.
fn ns_target(frame: &[u8], l3: usize) -> Option<[u8; 16]> {
    let ip = frame.get(l3..l3 + IPV6_HLEN)?;
    if ip[0] >> 4 != 6 || ip[IPV6_NEXT_OFF] != IPPROTO_ICMPV6 {
        return None;
    }
    let icmp = frame.get(l3 + IPV6_HLEN..l3 + IPV6_HLEN + NS_LEN)?;
    (icmp[0] == ICMPV6_NS && icmp[1] == 0).then(|| array(&icmp[NS_TARGET_OFF..]))
}

/// The EtherType and the offset of the L3 header, after at most one 802.1Q tag.
fn l3_of(frame: &[u8]) -> Option<(u16, usize)> {
    let ethertype = be16(frame.get(12..14)?);
    if ethertype == ETH_P_8021Q {
        let inner = frame.get(ETH_HLEN + 2..ETH_HLEN + VLAN_HLEN)?;
        Some((be16(inner), ETH_HLEN + VLAN_HLEN))
    } else {
        Some((ethertype, ETH_HLEN))
    }
}

/// Who owns `frame`: the decision table of DESIGN.md.
pub fn owner(frame: &[u8], t: &impl Tables) -> Owner {
    if frame.len() < ETH_HLEN {
        return Owner::Kernel;
    }
    let dst: [u8; 6] = array(&frame[0..6]);
    let endpoint = |slot: Option<u32>| valid_slot(slot).map_or(Owner::Kernel, Owner::Endpoint);

    if dst[0] & 1 == 0 {
        // Unicast: the destination MAC decides if an endpoint owns it.
        if let Some(slot) = valid_slot(t.by_mac(dst)) {
            return Owner::Endpoint(slot);
        }
        // Otherwise (the host's MAC, shared by IP-only endpoints): the destination address.
        let Some((ethertype, l3)) = l3_of(frame) else {
            return Owner::Kernel;
        };
        return match ethertype {
            ETH_P_IPV4 => match frame.get(l3..l3 + IPV4_MIN_HLEN) {
                Some(ip) if ip[0] >> 4 == 4 && ip[0] & 0xf >= 5 => {
                    endpoint(t.by_ipv4(array(&ip[IPV4_DST_OFF..])))
                }
                _ => Owner::Kernel,
            },
            ETH_P_IPV6 => match frame.get(l3..l3 + IPV6_HLEN) {
                Some(ip) if ip[0] >> 4 == 6 => endpoint(t.by_ipv6(array(&ip[IPV6_DST_OFF..]))),
                _ => Owner::Kernel,
            },
            ETH_P_ARP => endpoint(arp_target(frame, l3).and_then(|ip| t.by_ipv4(ip))),
            _ => Owner::Kernel,
        };
    }

    // Broadcast / multicast.
    let others = if t.fanout() {
        Owner::Fanout
    } else {
        Owner::Kernel
    };
    let Some((ethertype, l3)) = l3_of(frame) else {
        return others;
    };
    match ethertype {
        // ARP is resolved by its target: ours to the endpoint, everything else to the host.
        ETH_P_ARP => endpoint(arp_target(frame, l3).and_then(|ip| t.by_ipv4(ip))),
        // Neighbour solicitations likewise; other IPv6 multicast (RA, MLD, mDNS, ...) is "others".
        ETH_P_IPV6 => match ns_target(frame, l3) {
            Some(target) => endpoint(t.by_ipv6(target)),
            None => others,
        },
        _ => others,
    }
}

/// The full decision for `frame` arriving on rx queue `queue`.
pub fn classify(frame: &[u8], queue: u32, t: &impl Tables) -> Decision {
    match owner(frame, t) {
        Owner::Kernel => Decision::KERNEL,
        Owner::Endpoint(slot) => {
            if queue >= MAX_QUEUES {
                return Decision {
                    action: xdp_action::DROP,
                    slot,
                    xsk_index: NO_SLOT,
                };
            }
            let index = xsk_index(queue, slot);
            let action = if t.has_socket(index) {
                xdp_action::REDIRECT
            } else {
                xdp_action::DROP
            };
            Decision {
                action,
                slot,
                xsk_index: index,
            }
        }
        Owner::Fanout => {
            if queue >= MAX_QUEUES {
                return Decision {
                    action: xdp_action::PASS,
                    slot: FANOUT_SLOT,
                    xsk_index: NO_SLOT,
                };
            }
            let index = xsk_index(queue, FANOUT_SLOT);
            let action = if t.has_socket(index) {
                xdp_action::REDIRECT
            } else {
                xdp_action::PASS
            };
            Decision {
                action,
                slot: FANOUT_SLOT,
                xsk_index: index,
            }
        }
    }
}
