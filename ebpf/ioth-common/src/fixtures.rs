//! Fixture frames for every row of the decision table, and an in-memory [`Tables`].
//!
//! The same cases run against the reference (unit tests below) and against the loaded XDP
//! program (`dataplane/tests/classifier.rs`, through BPF_PROG_TEST_RUN).
extern crate std;

use std::{
    collections::{HashMap, HashSet},
    string::String,
    vec,
    vec::Vec,
};

use crate::{
    FANOUT_SLOT, NO_SLOT,
    classify::{Decision, Tables},
    wire::*,
    xdp_action, xsk_index,
};

/// Ownership tables and socket presence held in memory: the reference's view of the maps.
#[derive(Clone, Debug, Default)]
pub struct MapTables {
    /// MAC → slot.
    pub mac: HashMap<[u8; 6], u32>,
    /// IPv4 → slot.
    pub ipv4: HashMap<[u8; 4], u32>,
    /// IPv6 → slot.
    pub ipv6: HashMap<[u8; 16], u32>,
    /// Fan-out flag.
    pub fanout: bool,
    /// XskMap indices that hold a socket.
    pub sockets: HashSet<u32>,
}

impl Tables for MapTables {
    fn by_mac(&self, mac: [u8; 6]) -> Option<u32> {
        self.mac.get(&mac).copied()
    }
    fn by_ipv4(&self, ip: [u8; 4]) -> Option<u32> {
        self.ipv4.get(&ip).copied()
    }
    fn by_ipv6(&self, ip: [u8; 16]) -> Option<u32> {
        self.ipv6.get(&ip).copied()
    }
    fn fanout(&self) -> bool {
        self.fanout
    }
    fn has_socket(&self, index: u32) -> bool {
        self.sockets.contains(&index)
    }
}

/// The host's own MAC in the fixtures.
pub const HOST_MAC: [u8; 6] = [0x02, 0x10, 0x00, 0x00, 0x00, 0x01];
/// The peer's MAC.
pub const PEER_MAC: [u8; 6] = [0x02, 0x20, 0x00, 0x00, 0x00, 0x02];
/// Endpoint A: owns a MAC, an IPv4 and an IPv6 address (slot 1).
pub const A_MAC: [u8; 6] = [0x02, 0x49, 0x4f, 0x00, 0x00, 0x01];
/// Endpoint A's slot.
pub const A_SLOT: u32 = 1;
/// Endpoint A's IPv4 address.
pub const A_IPV4: [u8; 4] = [10, 99, 0, 11];
/// Endpoint A's IPv6 address.
pub const A_IPV6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
/// Endpoint B: IP only, shares the host's MAC (slot 2).
pub const B_SLOT: u32 = 2;
/// Endpoint B's IPv4 address.
pub const B_IPV4: [u8; 4] = [10, 99, 0, 12];
/// Endpoint B's IPv6 address.
pub const B_IPV6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];
/// The host's IPv4 address.
pub const HOST_IPV4: [u8; 4] = [10, 99, 0, 1];
/// The host's IPv6 address.
pub const HOST_IPV6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
/// The peer's IPv4 address.
pub const PEER_IPV4: [u8; 4] = [10, 99, 0, 2];
/// The peer's IPv6 address.
pub const PEER_IPV6: [u8; 16] = [0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02];
/// Queues on which A and B have sockets in the fixtures.
pub const SOCKET_QUEUES: [u32; 2] = [0, 1];

/// The standard tables: A and B with sockets on queues 0 and 1, a fan-out socket on queue 0.
pub fn standard(fanout: bool) -> MapTables {
    let mut t = MapTables {
        fanout,
        ..MapTables::default()
    };
    t.mac.insert(A_MAC, A_SLOT);
    t.ipv4.insert(A_IPV4, A_SLOT);
    t.ipv6.insert(A_IPV6, A_SLOT);
    t.ipv4.insert(B_IPV4, B_SLOT);
    t.ipv6.insert(B_IPV6, B_SLOT);
    for q in SOCKET_QUEUES {
        t.sockets.insert(xsk_index(q, A_SLOT));
        t.sockets.insert(xsk_index(q, B_SLOT));
    }
    t.sockets.insert(xsk_index(0, FANOUT_SLOT));
    t
}

/// An Ethernet frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame with one 802.1Q tag (VLAN `vid`).
pub fn eth_vlan(dst: [u8; 6], src: [u8; 6], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut tag = Vec::with_capacity(VLAN_HLEN - 2 + 2 + payload.len());
    tag.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    tag.extend_from_slice(&ethertype.to_be_bytes());
    tag.extend_from_slice(payload);
    eth(dst, src, ETH_P_8021Q, &tag)
}

/// An IPv4 packet (header checksum left zero: the classifier does not check it).
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (IPV4_MIN_HLEN + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An Ethernet/IPv4 ARP packet (`op` 1 request, 2 reply).
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa);
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa);
    p
}

/// An ICMPv6 neighbour solicitation for `target` (checksum zero), with a source link-layer option.
pub fn ns(target: [u8; 16], code: u8) -> Vec<u8> {
    let mut p = vec![ICMPV6_NS, code, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&target);
    p.extend_from_slice(&[1, 1]);
    p.extend_from_slice(&PEER_MAC);
    p
}

/// The solicited-node multicast address of `target` and its MAC.
pub fn solicited_node(target: [u8; 16]) -> ([u8; 16], [u8; 6]) {
    let mut ip = [0u8; 16];
    ip[0] = 0xff;
    ip[1] = 0x02;
    ip[11] = 0x01;
    ip[12] = 0xff;
    ip[13..].copy_from_slice(&target[13..]);
    let mac = [0x33, 0x33, 0xff, target[13], target[14], target[15]];
    (ip, mac)
}

/// A UDP datagram (checksum zero).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + payload.len());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// One decision-table case: a frame, the queue it arrives on, the fan-out flag and the expected decision.
#[derive(Clone, Debug)]
pub struct Case {
    /// The decision-table row it exercises.
    pub name: String,
    /// The frame.
    pub frame: Vec<u8>,
    /// Its rx queue.
    pub queue: u32,
    /// Whether fan-out is on.
    pub fanout: bool,
    /// The expected decision.
    pub expect: Decision,
}

fn redirect(queue: u32, slot: u32) -> Decision {
    Decision {
        action: xdp_action::REDIRECT,
        slot,
        xsk_index: xsk_index(queue, slot),
    }
}

/// Every row of DESIGN.md's decision table, with the standard tables.
pub fn cases() -> Vec<Case> {
    let udp_to = |dst: [u8; 4]| ipv4(PEER_IPV4, dst, 17, &udp(40000, 7, b"ioth"));
    let udp6_to = |dst: [u8; 16]| ipv6(PEER_IPV6, dst, 17, &udp(40000, 7, b"ioth"));
    let bcast = [0xff; 6];
    let all_nodes_mac = [0x33, 0x33, 0, 0, 0, 1];
    let mut all_nodes = [0u8; 16];
    all_nodes[0] = 0xff;
    all_nodes[1] = 0x02;
    all_nodes[15] = 1;
    let (sn_a, sn_a_mac) = solicited_node(A_IPV6);
    let (sn_h, sn_h_mac) = solicited_node(HOST_IPV6);
    let ra = [134u8, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    let dhcp = ipv4([0; 4], [255; 4], 17, &udp(68, 67, &[1u8; 240]));
    let a_v4 = eth(A_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(A_IPV4));

    let mut c = Vec::new();
    let mut add = |name: &str, frame: Vec<u8>, queue: u32, fanout: bool, expect: Decision| {
        c.push(Case {
            name: name.into(),
            frame,
            queue,
            fanout,
            expect,
        });
    };
    let pass = Decision::KERNEL;
    let fanout_pass = |queue: u32| Decision {
        action: xdp_action::PASS,
        slot: FANOUT_SLOT,
        xsk_index: xsk_index(queue, FANOUT_SLOT),
    };

    // Unicast to an endpoint's MAC: the MAC decides, whatever follows.
    add(
        "unicast endpoint MAC, IPv4",
        a_v4.clone(),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "unicast endpoint MAC, on queue 1",
        a_v4.clone(),
        1,
        false,
        redirect(1, A_SLOT),
    );
    add(
        "unicast endpoint MAC, unknown EtherType",
        eth(A_MAC, PEER_MAC, 0x88b5, &[0u8; 46]),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "unicast endpoint MAC, header only",
        eth(A_MAC, PEER_MAC, ETH_P_IPV4, &[]),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "unicast endpoint MAC, IPv4 of another endpoint",
        eth(A_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(B_IPV4)),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "unicast endpoint MAC, maximum size",
        {
            let mut f = a_v4.clone();
            f.resize(1514, 0xa5);
            f
        },
        0,
        false,
        redirect(0, A_SLOT),
    );
    // Unicast to another MAC (the host's): the destination address decides.
    add(
        "host MAC, IPv4 to IP-only endpoint",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(B_IPV4)),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, IPv4 to MAC endpoint's IP",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(A_IPV4)),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "host MAC, IPv4 to host",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(HOST_IPV4)),
        0,
        false,
        pass,
    );
    add(
        "host MAC, IPv4 with options to endpoint",
        {
            let mut ip = udp_to(B_IPV4);
            ip[0] = 0x46;
            ip.splice(20..20, [1u8, 1, 1, 0]);
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &ip)
        },
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, IPv4 fragment to endpoint",
        {
            let mut ip = udp_to(B_IPV4);
            ip[6] = 0x20; // more fragments
            ip[7] = 0x10; // offset 16*8
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &ip)
        },
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, IPv4 header with version 6",
        {
            let mut ip = udp_to(B_IPV4);
            ip[0] = 0x65;
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &ip)
        },
        0,
        false,
        pass,
    );
    add(
        "host MAC, IPv4 header with IHL 4",
        {
            let mut ip = udp_to(B_IPV4);
            ip[0] = 0x44;
            eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &ip)
        },
        0,
        false,
        pass,
    );
    add(
        "host MAC, IPv4 header truncated",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV4, &udp_to(B_IPV4)[..19]),
        0,
        false,
        pass,
    );
    add(
        "host MAC, IPv6 to IP-only endpoint",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV6, &udp6_to(B_IPV6)),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, IPv6 to host",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV6, &udp6_to(HOST_IPV6)),
        0,
        false,
        pass,
    );
    add(
        "host MAC, IPv6 with extension header to endpoint",
        eth(
            HOST_MAC,
            PEER_MAC,
            ETH_P_IPV6,
            &ipv6(PEER_IPV6, B_IPV6, 0, &[17, 0, 1, 4, 0, 0, 0, 0]),
        ),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, IPv6 header truncated",
        eth(HOST_MAC, PEER_MAC, ETH_P_IPV6, &udp6_to(B_IPV6)[..39]),
        0,
        false,
        pass,
    );
    add(
        "host MAC, unicast ARP reply to endpoint IP",
        eth(
            HOST_MAC,
            PEER_MAC,
            ETH_P_ARP,
            &arp(2, PEER_MAC, PEER_IPV4, HOST_MAC, B_IPV4),
        ),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "host MAC, unicast ARP request for host",
        eth(
            HOST_MAC,
            PEER_MAC,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, HOST_MAC, HOST_IPV4),
        ),
        0,
        false,
        pass,
    );
    add(
        "host MAC, unknown EtherType",
        eth(HOST_MAC, PEER_MAC, 0x88cc, &[0u8; 46]),
        0,
        false,
        pass,
    );
    // ARP broadcast: resolved by target IPv4.
    add(
        "broadcast ARP request for endpoint",
        eth(
            bcast,
            PEER_MAC,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4),
        ),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "broadcast ARP request for IP-only endpoint",
        eth(
            bcast,
            PEER_MAC,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, [0; 6], B_IPV4),
        ),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "broadcast ARP request for host, fan-out on",
        eth(
            bcast,
            PEER_MAC,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, [0; 6], HOST_IPV4),
        ),
        0,
        true,
        pass,
    );
    add(
        "broadcast ARP truncated to 27 bytes",
        eth(
            bcast,
            PEER_MAC,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4)[..27],
        ),
        0,
        false,
        pass,
    );
    add(
        "broadcast ARP with hardware type 6",
        {
            let mut a = arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4);
            a[1] = 6;
            eth(bcast, PEER_MAC, ETH_P_ARP, &a)
        },
        0,
        false,
        pass,
    );
    add(
        "broadcast ARP with odd address lengths",
        {
            let mut a = arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4);
            a[4] = 8;
            eth(bcast, PEER_MAC, ETH_P_ARP, &a)
        },
        0,
        false,
        pass,
    );
    // IPv6 neighbour solicitation: resolved by target address.
    add(
        "multicast NS for endpoint",
        eth(
            sn_a_mac,
            PEER_MAC,
            ETH_P_IPV6,
            &ipv6(PEER_IPV6, sn_a, 58, &ns(A_IPV6, 0)),
        ),
        1,
        false,
        redirect(1, A_SLOT),
    );
    add(
        "multicast NS for host, fan-out on",
        eth(
            sn_h_mac,
            PEER_MAC,
            ETH_P_IPV6,
            &ipv6(PEER_IPV6, sn_h, 58, &ns(HOST_IPV6, 0)),
        ),
        0,
        true,
        pass,
    );
    add(
        "multicast NS with code 1 (not an NS)",
        eth(
            sn_a_mac,
            PEER_MAC,
            ETH_P_IPV6,
            &ipv6(PEER_IPV6, sn_a, 58, &ns(A_IPV6, 1)),
        ),
        0,
        false,
        pass,
    );
    add(
        "multicast NS behind a hop-by-hop header, fan-out on",
        {
            let mut hbh = vec![58u8, 0, 1, 4, 0, 0, 0, 0];
            hbh.extend_from_slice(&ns(A_IPV6, 0));
            eth(
                sn_a_mac,
                PEER_MAC,
                ETH_P_IPV6,
                &ipv6(PEER_IPV6, sn_a, 0, &hbh),
            )
        },
        0,
        true,
        redirect(0, FANOUT_SLOT),
    );
    add(
        "multicast NS truncated in the target",
        eth(
            sn_a_mac,
            PEER_MAC,
            ETH_P_IPV6,
            &ipv6(PEER_IPV6, sn_a, 58, &ns(A_IPV6, 0))[..40 + 20],
        ),
        0,
        false,
        pass,
    );
    // Other broadcast/multicast: fan-out socket when on, else the kernel.
    let ra_frame = eth(
        all_nodes_mac,
        PEER_MAC,
        ETH_P_IPV6,
        &ipv6(PEER_IPV6, all_nodes, 58, &ra),
    );
    add(
        "multicast RA, fan-out off",
        ra_frame.clone(),
        0,
        false,
        pass,
    );
    add(
        "multicast RA, fan-out on",
        ra_frame.clone(),
        0,
        true,
        redirect(0, FANOUT_SLOT),
    );
    add(
        "multicast RA, fan-out on, no fan-out socket on queue",
        ra_frame,
        1,
        true,
        fanout_pass(1),
    );
    let dhcp_frame = eth(bcast, PEER_MAC, ETH_P_IPV4, &dhcp);
    add(
        "broadcast DHCP, fan-out off",
        dhcp_frame.clone(),
        0,
        false,
        pass,
    );
    add(
        "broadcast DHCP, fan-out on",
        dhcp_frame,
        0,
        true,
        redirect(0, FANOUT_SLOT),
    );
    add(
        "multicast truncated VLAN tag, fan-out on",
        eth(bcast, PEER_MAC, ETH_P_8021Q, &[0, 5]),
        0,
        true,
        redirect(0, FANOUT_SLOT),
    );
    // 802.1Q: one tag is parsed, a second one is not.
    add(
        "VLAN, host MAC, IPv4 to endpoint",
        eth_vlan(HOST_MAC, PEER_MAC, 7, ETH_P_IPV4, &udp_to(B_IPV4)),
        0,
        false,
        redirect(0, B_SLOT),
    );
    add(
        "VLAN, broadcast ARP for endpoint",
        eth_vlan(
            bcast,
            PEER_MAC,
            7,
            ETH_P_ARP,
            &arp(1, PEER_MAC, PEER_IPV4, [0; 6], A_IPV4),
        ),
        0,
        false,
        redirect(0, A_SLOT),
    );
    add(
        "VLAN, tag truncated, host MAC",
        eth(HOST_MAC, PEER_MAC, ETH_P_8021Q, &[0, 7]),
        0,
        false,
        pass,
    );
    add(
        "QinQ, host MAC, IPv4 to endpoint (second tag not parsed)",
        {
            let inner = eth_vlan([0; 6], [0; 6], 8, ETH_P_IPV4, &udp_to(B_IPV4));
            eth_vlan(HOST_MAC, PEER_MAC, 7, ETH_P_8021Q, &inner[14..])
        },
        0,
        false,
        pass,
    );
    // Owned, but no socket on the frame's queue: dropped (never passed: the kernel might route it).
    add(
        "endpoint MAC, queue without socket",
        a_v4.clone(),
        3,
        false,
        Decision {
            action: xdp_action::DROP,
            slot: A_SLOT,
            xsk_index: xsk_index(3, A_SLOT),
        },
    );
    // Too short for an Ethernet header (the kernel's BPF_PROG_TEST_RUN refuses < 14 bytes).
    add("13-byte runt", a_v4[..13].to_vec(), 0, false, pass);
    let _ = NO_SLOT;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_QUEUES, classify::classify};

    #[test]
    fn every_decision_table_row() {
        for case in cases() {
            let got = classify(&case.frame, case.queue, &standard(case.fanout));
            assert_eq!(got, case.expect, "case {:?}", case.name);
        }
    }

    #[test]
    fn queue_beyond_max_queues_drops_owned_and_passes_others() {
        let t = standard(true);
        let f = eth(A_MAC, PEER_MAC, ETH_P_IPV4, &[0u8; 40]);
        let d = classify(&f, MAX_QUEUES, &t);
        assert_eq!(d.action, xdp_action::DROP);
        assert_eq!((d.slot, d.xsk_index), (A_SLOT, NO_SLOT));
        let f = eth([0xff; 6], PEER_MAC, 0x88b5, &[0u8; 40]);
        let d = classify(&f, MAX_QUEUES, &t);
        assert_eq!(d.action, xdp_action::PASS);
    }

    #[test]
    fn invalid_slot_values_are_ignored() {
        let mut t = standard(false);
        t.mac.insert(A_MAC, 0);
        t.ipv4.insert(A_IPV4, crate::SLOTS_PER_QUEUE);
        let f = eth(
            A_MAC,
            PEER_MAC,
            ETH_P_IPV4,
            &ipv4(PEER_IPV4, A_IPV4, 17, &[]),
        );
        assert_eq!(classify(&f, 0, &t), Decision::KERNEL);
    }

    #[test]
    fn every_prefix_of_every_case_is_classified_without_panic() {
        for case in cases() {
            for len in 0..=case.frame.len() {
                let _ = classify(&case.frame[..len], case.queue, &standard(case.fanout));
            }
        }
    }
}
