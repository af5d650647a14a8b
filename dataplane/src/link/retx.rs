//! Counting TCP retransmissions from the frames a stack sends.
//!
//! smoltcp keeps no retransmission counter, so the link watches its own transmit path: per
//! flow it remembers the highest sequence number sent (`snd_max`); a segment that carries
//! sequence space (data, SYN or FIN) and starts below `snd_max` is being sent again. That is
//! the same definition as Linux's `TCPRetransSegs` (RTO and fast retransmits alike;
//! keep-alives and pure ACKs carry no sequence space and never count).
//!
//! The table is a fixed array indexed by a hash of the flow: no allocation, O(1) per frame.
//! When two live flows share an entry the newer one takes it over and the older one starts
//! afresh on its next segment, so a collision can only miss a retransmission, never invent
//! one (an entry is trusted only when the whole flow key matches).

use smoltcp::wire::IpAddress;

use crate::wire::{IpParse, TcpHeader, parse_ip};

/// Entries of the flow table (a power of two).
const ENTRIES: usize = 1024;

const TCP_FIN: u8 = TcpHeader::FIN;
const TCP_SYN: u8 = TcpHeader::SYN;
const TCP_RST: u8 = TcpHeader::RST;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FlowKey {
    local_port: u16,
    remote_port: u16,
    /// IPv4 addresses are stored as IPv4-mapped IPv6.
    remote: [u8; 16],
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    used: bool,
    key: FlowKey,
    snd_max: u32,
}

/// Watches transmitted frames and counts TCP retransmissions.
pub struct RetransmitDetector {
    table: Box<[Entry]>,
    retransmits: u64,
}

impl std::fmt::Debug for RetransmitDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetransmitDetector")
            .field("retransmits", &self.retransmits)
            .finish_non_exhaustive()
    }
}

impl Default for RetransmitDetector {
    fn default() -> Self {
        Self {
            table: vec![Entry::default(); ENTRIES].into_boxed_slice(),
            retransmits: 0,
        }
    }
}

/// `a < b` in sequence-number space (RFC 1982 serial arithmetic).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The TCP segment of an Ethernet frame: (flow, seq, sequence space it occupies, flags).
fn tcp_segment(frame: &[u8]) -> Option<(FlowKey, u32, u32, u8)> {
    let IpParse::Ip(ip) = parse_ip(frame) else {
        return None;
    };
    if !ip.complete(frame) {
        return None;
    }
    let tcp = ip.tcp(frame)?;
    let remote = match ip.dst(frame) {
        IpAddress::Ipv4(a) => a.to_ipv6_mapped().octets(),
        IpAddress::Ipv6(a) => a.octets(),
    };
    let key = FlowKey {
        local_port: tcp.src_port,
        remote_port: tcp.dst_port,
        remote,
    };
    let payload = ip.l4_len.checked_sub(tcp.header_len)? as u32;
    let flags = tcp.flags;
    let space = payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
    Some((key, tcp.seq, space, flags))
}

fn index(key: &FlowKey) -> usize {
    // FNV-1a over the key: cheap and good enough to spread ports and addresses.
    let mut h: u32 = 0x811c_9dc5;
    let ports = [key.local_port.to_be_bytes(), key.remote_port.to_be_bytes()];
    for b in ports.iter().flatten().chain(key.remote.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize & (ENTRIES - 1)
}

impl RetransmitDetector {
    /// Looks at one transmitted frame.
    pub fn observe(&mut self, frame: &[u8]) {
        let Some((key, seq, space, flags)) = tcp_segment(frame) else {
            return;
        };
        let e = &mut self.table[index(&key)];
        if flags & TCP_RST != 0 {
            if e.used && e.key == key {
                e.used = false;
            }
            return;
        }
        if space == 0 {
            return;
        }
        let end = seq.wrapping_add(space);
        if e.used && e.key == key && flags & TCP_SYN == 0 {
            if seq_lt(seq, e.snd_max) {
                self.retransmits += 1;
            }
            if seq_lt(e.snd_max, end) {
                e.snd_max = end;
            }
        } else if e.used && e.key == key && seq == e.snd_max.wrapping_sub(space) {
            // The same SYN (or SYN-ACK) again.
            self.retransmits += 1;
        } else {
            *e = Entry {
                used: true,
                key,
                snd_max: end,
            };
        }
    }

    /// Retransmitted segments seen so far.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IPPROTO_TCP;
    use ioth_common::wire::{ETH_P_IPV4, ETH_P_IPV6};

    /// An Ethernet + IPv4 + TCP frame from port 7 to 10.0.0.2:`rport`.
    fn v4(rport: u16, seq: u32, flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[23] = IPPROTO_TCP;
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&7u16.to_be_bytes());
        f[36..38].copy_from_slice(&rport.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f
    }

    /// The same over IPv6.
    fn v6(rport: u16, seq: u32, flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20 + payload];
        f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
        f[20] = IPPROTO_TCP;
        f[53] = 2;
        f[54..56].copy_from_slice(&7u16.to_be_bytes());
        f[56..58].copy_from_slice(&rport.to_be_bytes());
        f[58..62].copy_from_slice(&seq.to_be_bytes());
        f[66] = 5 << 4;
        f[67] = flags;
        f
    }

    const ACK: u8 = 0x10;

    #[test]
    fn new_data_is_not_a_retransmission_resent_data_is() {
        for frame in [v4, v6] {
            let mut d = RetransmitDetector::default();
            d.observe(&frame(1000, 100, TCP_SYN | ACK, 0));
            d.observe(&frame(1000, 101, ACK, 0)); // pure ACK
            d.observe(&frame(1000, 101, ACK, 100));
            d.observe(&frame(1000, 201, ACK, 100));
            assert_eq!(d.retransmits(), 0);
            d.observe(&frame(1000, 101, ACK, 100)); // RTO: from the first unacked byte
            assert_eq!(d.retransmits(), 1);
            d.observe(&frame(1000, 301, ACK | TCP_FIN, 0));
            d.observe(&frame(1000, 301, ACK | TCP_FIN, 0)); // FIN again
            assert_eq!(d.retransmits(), 2);
        }
    }

    #[test]
    fn a_repeated_syn_counts_and_flows_are_separate() {
        let mut d = RetransmitDetector::default();
        d.observe(&v4(1, 500, TCP_SYN, 0));
        d.observe(&v4(2, 100, ACK, 10));
        d.observe(&v4(1, 500, TCP_SYN, 0));
        assert_eq!(d.retransmits(), 1);
        d.observe(&v4(2, 110, ACK, 10));
        assert_eq!(d.retransmits(), 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut d = RetransmitDetector::default();
        d.observe(&v4(9, u32::MAX - 50, ACK, 100));
        d.observe(&v4(9, 49, ACK, 100));
        assert_eq!(d.retransmits(), 0);
        d.observe(&v4(9, u32::MAX - 50, ACK, 100));
        assert_eq!(d.retransmits(), 1);
    }

    #[test]
    fn a_reset_forgets_the_flow_and_garbage_is_ignored() {
        let mut d = RetransmitDetector::default();
        d.observe(&v4(3, 100, ACK, 10));
        d.observe(&v4(3, 110, TCP_RST, 0));
        d.observe(&v4(3, 100, ACK, 10)); // a new flow on the same ports
        assert_eq!(d.retransmits(), 0);
        for len in 0..60 {
            d.observe(&v4(3, 100, ACK, 10)[..len]);
        }
        d.observe(&[0xff; 80]);
        assert_eq!(d.retransmits(), 0);
    }
}
