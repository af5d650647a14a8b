//! Receive-side TCP/UDP checksum check that also completes *partial* checksums.
//!
//! A kernel sender on a veth (or any local sender with checksum offload) hands frames over
//! with CHECKSUM_PARTIAL: the TCP/UDP checksum field holds only the folded pseudo-header
//! sum, and the device was meant to finish it. AF_XDP in copy mode passes such frames on
//! as they are. A stack that verified them naively would drop every segment a local client
//! sends.
//!
//! [`check_l4`] verifies the checksum of an Ethernet frame carrying IPv4/IPv6 + TCP/UDP; if
//! the checksum is wrong but the field holds exactly the pseudo-header sum, it completes the
//! checksum in place (what the NIC would have done) and accepts the frame. Anything else with
//! a wrong checksum is rejected. Frames that are not TCP/UDP are left to the stack.
//!
//! The headers are found by [`crate::wire::parse_ip`]; a frame whose IP headers are cut
//! short or malformed is left to the stack, which drops it.
//!
//! Sans-IO and allocation-free: one pass over the segment, done once per frame (the stack is
//! configured not to verify TCP/UDP checksums again).

use crate::wire::{IPPROTO_TCP, IPPROTO_UDP, IpParse, IpVersion, parse_ip};

/// The verdict of [`check_l4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// Not IPv4/IPv6 TCP/UDP (or too short to tell): the stack decides.
    NotL4,
    /// The checksum is correct (or absent: UDP over IPv4 with checksum 0).
    Valid,
    /// It was a partial (offload) checksum; it is now complete.
    Completed,
    /// The checksum is wrong: drop the frame.
    Invalid,
}

/// Ones'-complement sum of `data` (16-bit big-endian words, odd byte padded), folded to 16
/// bits.
///
/// Eight bytes at a time: the ones'-complement sum does not depend on byte order except for
/// one final swap (RFC 1071 §2(B)), so native-endian u64 words are added with end-around
/// carry and the folded result is turned into big-endian order at the end. Chunks start at
/// even offsets, so 16-bit word boundaries are kept.
fn sum(data: &[u8]) -> u32 {
    let add = |acc: u64, w: u64| {
        let (s, carry) = acc.overflowing_add(w);
        s + u64::from(carry)
    };
    let mut chunks = data.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        acc = add(acc, u64::from_ne_bytes(w));
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    acc = add(acc, u64::from_ne_bytes(w));
    // Fold 64 → 16 bits with end-around carry (still in native byte order).
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    u32::from(u16::from_be(acc as u16))
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Checks (and completes, if partial) the TCP/UDP checksum of an untagged Ethernet frame.
pub fn check_l4(frame: &mut [u8]) -> L4Checksum {
    let IpParse::Ip(ip) = parse_ip(frame) else {
        return L4Checksum::NotL4;
    };
    let proto = ip.protocol;
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || ip.fragment || !ip.complete(frame) {
        return L4Checksum::NotL4;
    }
    let l4_len = ip.l4_len;
    let pseudo = sum(ip.address_bytes(frame)) + u32::from(proto) + l4_len as u32;
    let field_off = if proto == IPPROTO_TCP { 16 } else { 6 };
    if (proto == IPPROTO_UDP && l4_len < 8) || (proto == IPPROTO_TCP && l4_len < 20) {
        return L4Checksum::Invalid;
    }
    let l4 = &mut frame[ip.l4..ip.l4 + l4_len];
    let field = u16::from_be_bytes([l4[field_off], l4[field_off + 1]]);
    if proto == IPPROTO_UDP && field == 0 && ip.version == IpVersion::V4 {
        return L4Checksum::Valid;
    }
    let segment = sum(l4);
    if fold(pseudo + segment) == 0xffff {
        return L4Checksum::Valid;
    }
    if field == fold(pseudo) {
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; finish it over the segment.
        let mut done = !fold(segment);
        if proto == IPPROTO_UDP && done == 0 {
            done = 0xffff;
        }
        l4[field_off..field_off + 2].copy_from_slice(&done.to_be_bytes());
        return L4Checksum::Completed;
    }
    L4Checksum::Invalid
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::{
        phy::ChecksumCapabilities,
        wire::{
            EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol,
            Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
        },
    };

    /// A valid Ethernet/IPv4/UDP frame built by smoltcp's own emitters.
    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let src = Ipv4Address::new(10, 99, 0, 2);
        let dst = Ipv4Address::new(10, 99, 0, 11);
        let udp = UdpRepr {
            src_port: 40000,
            dst_port: 7,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 8 + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; 14 + 20 + 8 + payload.len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        let mut u = UdpPacket::new_unchecked(p.payload_mut());
        udp.emit(
            &mut u,
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        buf
    }

    /// The textbook sum, 16 bits at a time.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            let hi = u64::from(c[0]) << 8;
            acc += hi | c.get(1).map_or(0, |b| u64::from(*b));
        }
        fold((acc & 0xffff_ffff) as u32 + (acc >> 32) as u32)
    }

    #[test]
    fn the_wide_sum_equals_the_textbook_sum_at_every_length() {
        // A deterministic xorshift: lengths 0..=300, all-ones and random contents (carries).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in 0..=300 {
            let random: Vec<u8> = (0..len).map(|_| next()).collect();
            for data in [random, vec![0xff; len], vec![0; len]] {
                assert_eq!(fold(sum(&data)), reference_sum(&data), "len {len}");
            }
        }
    }

    #[test]
    fn a_correct_checksum_is_valid_and_untouched() {
        let mut f = udp_frame(b"hello ioth");
        let before = f.clone();
        assert_eq!(check_l4(&mut f), L4Checksum::Valid);
        assert_eq!(f, before);
    }

    #[test]
    fn a_partial_checksum_is_completed_to_the_real_one() {
        let good = udp_frame(b"partial checksum from a veth sender");
        let mut partial = good.clone();
        // What the kernel leaves with CHECKSUM_PARTIAL: the folded pseudo-header sum.
        let pseudo = sum(&good[26..34]) + 17 + (good.len() - 34) as u32;
        partial[40..42].copy_from_slice(&fold(pseudo).to_be_bytes());
        assert_eq!(check_l4(&mut partial), L4Checksum::Completed);
        assert_eq!(partial, good);
    }

    #[test]
    fn a_corrupted_payload_is_invalid() {
        let mut f = udp_frame(b"hello ioth");
        let last = f.len() - 1;
        f[last] ^= 0x40;
        assert_eq!(check_l4(&mut f), L4Checksum::Invalid);
    }

    #[test]
    fn udp_over_ipv4_without_checksum_is_valid() {
        let mut f = udp_frame(b"x");
        f[40] = 0;
        f[41] = 0;
        assert_eq!(check_l4(&mut f), L4Checksum::Valid);
    }

    /// An IPv6/UDP frame, optionally behind a hop-by-hop header, checksummed by smoltcp.
    fn udp6_frame(payload: &[u8], hop_by_hop: bool) -> Vec<u8> {
        use smoltcp::wire::{Ipv6Address, Ipv6Packet, Ipv6Repr};
        let src = Ipv6Address::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 2);
        let dst = Ipv6Address::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11);
        let ext: &[u8] = if hop_by_hop {
            &[17, 0, 1, 4, 0, 0, 0, 0]
        } else {
            &[]
        };
        let udp_len = 8 + payload.len();
        let mut buf = vec![0u8; 14 + 40 + ext.len() + udp_len];
        buf[12] = 0x86;
        buf[13] = 0xdd;
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: if hop_by_hop {
                IpProtocol::HopByHop
            } else {
                IpProtocol::Udp
            },
            payload_len: ext.len() + udp_len,
            hop_limit: 64,
        };
        let mut p = Ipv6Packet::new_unchecked(&mut buf[14..]);
        ip.emit(&mut p);
        let l4 = &mut buf[54..];
        l4[..ext.len()].copy_from_slice(ext);
        let mut u = UdpPacket::new_unchecked(&mut l4[ext.len()..]);
        UdpRepr {
            src_port: 40000,
            dst_port: 7,
        }
        .emit(
            &mut u,
            &src.into(),
            &dst.into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
        buf
    }

    #[test]
    fn ipv6_udp_is_verified_also_behind_an_extension_header() {
        for hbh in [false, true] {
            let mut f = udp6_frame(b"ipv6 payload", hbh);
            assert_eq!(check_l4(&mut f), L4Checksum::Valid, "hop-by-hop {hbh}");
            let last = f.len() - 1;
            f[last] ^= 1;
            assert_eq!(check_l4(&mut f), L4Checksum::Invalid, "hop-by-hop {hbh}");
        }
    }

    #[test]
    fn other_frames_and_every_truncation_are_handled_without_panic() {
        assert_eq!(check_l4(&mut [0u8; 10]), L4Checksum::NotL4);
        let f = udp_frame(b"truncate me at every length");
        for len in 0..=f.len() {
            let mut t = f[..len].to_vec();
            let _ = check_l4(&mut t);
        }
        let mut arp = f.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(check_l4(&mut arp), L4Checksum::NotL4);
    }
}
