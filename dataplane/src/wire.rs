//! Reading frames: the one place that knows where an Ethernet frame's IP and transport
//! headers are, and the [`Mac`] type.
//!
//! [`parse_ip`] walks Ethernet → IPv4/IPv6 (through IPv6 hop-by-hop, routing and
//! destination-options headers) → the upper-layer header, with a bounds check before every
//! read; the checksum check, the socket shard choice and the retransmission watch all start
//! from its [`IpPacket`] instead of counting offsets of their own. Nothing here allocates or
//! panics, whatever the bytes.

use std::{fmt, str::FromStr};

use ioth_common::wire::{ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6, IPV4_MIN_HLEN, IPV6_HLEN};
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv6Address};

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// An Ethernet address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Whether it can be a station's own address: unicast and not all zeros.
    pub fn is_station(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A MAC that does not read as six hexadecimal bytes separated by colons.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (six hex bytes separated by ':', e.g. 02:00:00:00:00:01)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut mac {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(mac))
    }
}

impl From<[u8; 6]> for Mac {
    fn from(m: [u8; 6]) -> Self {
        Mac(m)
    }
}

/// IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where an IP packet's parts are in its Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// The upper-layer protocol (behind IPv6 extension headers).
    pub protocol: u8,
    /// Offset of the upper-layer header in the frame.
    pub l4: usize,
    /// Upper-layer length as the IP header states it (the frame may hold less: see
    /// [`IpPacket::complete`]).
    pub l4_len: usize,
    /// An IPv4 fragment (more fragments, or an offset).
    pub fragment: bool,
}

/// What [`parse_ip`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpParse {
    /// Not IPv4 or IPv6 (ARP, other ethertypes, or too short for an ethertype).
    NotIp,
    /// An IP packet whose headers are all there, up to the upper-layer header's start.
    Ip(IpPacket),
    /// An IP packet whose headers end early or are malformed. `protocol` is the last one
    /// read: the upper-layer protocol of a cut-short IPv4 or IPv6 header, an extension
    /// header's type when the IPv6 chain is cut, `None` when not even that is there.
    Cut {
        /// The last protocol number read.
        protocol: Option<u8>,
    },
}

/// Whether `next` is an IPv6 extension header [`parse_ip`] walks (hop-by-hop, routing,
/// destination options).
pub fn is_ipv6_option_header(next: u8) -> bool {
    matches!(next, 0 | 43 | 60)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Reads the IP layer of an untagged Ethernet frame (see the module documentation).
pub fn parse_ip(frame: &[u8]) -> IpParse {
    let l3 = ETH_HLEN;
    match be16(frame, 12) {
        Some(ETH_P_IPV4) => {
            let Some(&protocol) = frame.get(l3 + 9) else {
                return IpParse::Cut { protocol: None };
            };
            let cut = IpParse::Cut {
                protocol: Some(protocol),
            };
            let Some(h) = frame.get(l3..l3 + IPV4_MIN_HLEN) else {
                return cut;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || total < ihl {
                return cut;
            }
            IpParse::Ip(IpPacket {
                version: IpVersion::V4,
                protocol,
                l4: l3 + ihl,
                l4_len: total - ihl,
                fragment: u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
            })
        }
        Some(ETH_P_IPV6) => {
            let Some(&first) = frame.get(l3 + 6) else {
                return IpParse::Cut { protocol: None };
            };
            let Some(h) = frame.get(l3..l3 + IPV6_HLEN) else {
                return IpParse::Cut {
                    protocol: Some(first),
                };
            };
            if h[0] >> 4 != 6 {
                return IpParse::Cut {
                    protocol: Some(first),
                };
            }
            let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
            // The chain is walked within what the frame holds and the header states.
            let end = (l3 + IPV6_HLEN + payload).min(frame.len());
            let (mut next, mut off) = (first, l3 + IPV6_HLEN);
            while is_ipv6_option_header(next) {
                let Some(ext) = frame.get(off..off + 2).filter(|_| off + 2 <= end) else {
                    return IpParse::Cut {
                        protocol: Some(next),
                    };
                };
                let following = ext[0];
                let len = (usize::from(ext[1]) + 1) * 8;
                if off + len > end {
                    return IpParse::Cut {
                        protocol: Some(next),
                    };
                }
                next = following;
                off += len;
            }
            IpParse::Ip(IpPacket {
                version: IpVersion::V6,
                protocol: next,
                l4: off,
                l4_len: (l3 + IPV6_HLEN + payload).saturating_sub(off),
                fragment: false,
            })
        }
        _ => IpParse::NotIp,
    }
}

impl IpPacket {
    /// Whether `frame` holds the whole upper-layer part the IP header announces.
    pub fn complete(&self, frame: &[u8]) -> bool {
        self.l4 + self.l4_len <= frame.len()
    }

    /// The source and destination address bytes (as the pseudo-header sums them).
    pub fn address_bytes<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        match self.version {
            IpVersion::V4 => &frame[ETH_HLEN + 12..ETH_HLEN + 20],
            IpVersion::V6 => &frame[ETH_HLEN + 8..ETH_HLEN + 40],
        }
    }

    /// The source address.
    pub fn src(&self, frame: &[u8]) -> IpAddress {
        let a = self.address_bytes(frame);
        match self.version {
            IpVersion::V4 => IpAddress::Ipv4(Ipv4Address::from(first::<4>(a))),
            IpVersion::V6 => IpAddress::Ipv6(Ipv6Address::from(first::<16>(a))),
        }
    }

    /// The destination address.
    pub fn dst(&self, frame: &[u8]) -> IpAddress {
        let a = self.address_bytes(frame);
        match self.version {
            IpVersion::V4 => IpAddress::Ipv4(Ipv4Address::from(first::<4>(&a[4..]))),
            IpVersion::V6 => IpAddress::Ipv6(Ipv6Address::from(first::<16>(&a[16..]))),
        }
    }

    /// The TCP header's fields, if the frame holds them.
    pub fn tcp(&self, frame: &[u8]) -> Option<TcpHeader> {
        if self.protocol != IPPROTO_TCP {
            return None;
        }
        let t = frame.get(self.l4..self.l4 + 14)?;
        Some(TcpHeader {
            src_port: u16::from_be_bytes([t[0], t[1]]),
            dst_port: u16::from_be_bytes([t[2], t[3]]),
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            header_len: usize::from(t[12] >> 4) * 4,
            flags: t[13],
        })
    }
}

fn first<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// The fields of a TCP header the data path looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Header length in bytes (data offset × 4).
    pub header_len: usize,
    /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
}

impl TcpHeader {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_print_and_parse_back() {
        let m: Mac = "02:00:00:00:10:ff".parse().expect("a MAC");
        assert_eq!(m, Mac([2, 0, 0, 0, 0x10, 0xff]));
        assert_eq!(m.to_string(), "02:00:00:00:10:ff");
        assert!(m.is_station());
        for bad in [
            "",
            "02:00:00:00:10",
            "02:00:00:00:10:ff:00",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
            "02-00-00-00-00-01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert!(!Mac([1, 0, 0, 0, 0, 1]).is_station());
        assert!(!Mac([0; 6]).is_station());
    }

    fn ipv4_tcp() -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..42].copy_from_slice(&7u32.to_be_bytes());
        f[46] = 0x50;
        f[47] = TcpHeader::ACK;
        f
    }

    #[test]
    fn an_ipv4_tcp_segment_reads_whole() {
        let f = ipv4_tcp();
        let IpParse::Ip(p) = parse_ip(&f) else {
            panic!("not read: {:?}", parse_ip(&f));
        };
        assert_eq!(
            (p.version, p.protocol, p.l4, p.l4_len),
            (IpVersion::V4, 6, 34, 20)
        );
        assert!(p.complete(&f) && !p.fragment);
        assert_eq!(p.src(&f), IpAddress::v4(10, 0, 0, 2));
        assert_eq!(p.dst(&f), IpAddress::v4(10, 0, 0, 1));
        let t = p.tcp(&f).expect("tcp");
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.header_len, t.flags),
            (1234, 80, 7, 20, 0x10)
        );
    }

    #[test]
    fn every_truncation_reads_without_panic_and_says_what_it_knows() {
        let f = ipv4_tcp();
        for len in 0..f.len() {
            let got = parse_ip(&f[..len]);
            let want = match len {
                0..14 => IpParse::NotIp,
                14..24 => IpParse::Cut { protocol: None },
                24..34 => IpParse::Cut { protocol: Some(6) },
                _ => got,
            };
            assert_eq!(got, want, "length {len}");
            if let IpParse::Ip(p) = got {
                assert!(!p.complete(&f[..len]));
                assert_eq!(p.tcp(&f[..len]).is_some(), len >= 48);
            }
        }
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_ip(&arp), IpParse::NotIp);
    }

    #[test]
    fn ipv6_chains_are_walked_and_a_cut_chain_says_so() {
        // IPv6, hop-by-hop (8 bytes), then UDP with 8 bytes.
        let mut f = vec![0u8; 14 + 40 + 8 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&16u16.to_be_bytes());
        f[20] = 0;
        f[54] = IPPROTO_UDP;
        let IpParse::Ip(p) = parse_ip(&f) else {
            panic!("not read");
        };
        assert_eq!(
            (p.version, p.protocol, p.l4, p.l4_len),
            (IpVersion::V6, 17, 62, 8)
        );
        assert_eq!(parse_ip(&f[..55]), IpParse::Cut { protocol: Some(0) });
        assert_eq!(parse_ip(&f[..30]), IpParse::Cut { protocol: Some(0) });
        assert_eq!(parse_ip(&f[..20]), IpParse::Cut { protocol: None });
        // A chain that loops on itself ends at the frame's end, not in an endless walk.
        let mut looped = f.clone();
        looped[54] = 0;
        assert_eq!(parse_ip(&looped), IpParse::Cut { protocol: Some(0) });
    }
}
