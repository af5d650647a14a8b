//! Frames the generator sends and the raw echo rewrites, through smoltcp's wire types.

use std::net::Ipv4Addr;

use smoltcp::{
    phy::ChecksumCapabilities,
    wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Packet,
        Ipv4Repr, UdpPacket, UdpRepr,
    },
};

/// An Ethernet + IPv4 + UDP frame with `payload_len` payload bytes and correct checksums.
pub fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload_len: usize,
) -> Vec<u8> {
    let payload = vec![0x5au8; payload_len];
    let udp = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ipp, &caps);
    let mut u = UdpPacket::new_unchecked(ipp.payload_mut());
    udp.emit(
        &mut u,
        &src.0.into(),
        &dst.0.into(),
        payload_len,
        |b| b.copy_from_slice(&payload),
        &caps,
    );
    buf
}

/// The UDP discard port: frames to it are received, never echoed.
pub const DISCARD_PORT: u16 = 9;

/// Turns an IPv4 UDP frame around in place (MACs, addresses, ports swapped; the checksums
/// stay valid because swapping keeps the sums). Returns `false` (frame untouched) for
/// anything else, and for datagrams to the discard port.
pub fn turn_around_udp4(frame: &mut [u8]) -> bool {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut *frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let (dst, src) = (eth.dst_addr(), eth.src_addr());
    {
        let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return false;
        };
        if ip.next_header() != IpProtocol::Udp {
            return false;
        }
        let (a, b) = (ip.src_addr(), ip.dst_addr());
        let Ok(mut udp) = UdpPacket::new_checked(ip.payload_mut()) else {
            return false;
        };
        let (sp, dp) = (udp.src_port(), udp.dst_port());
        if dp == DISCARD_PORT {
            return false;
        }
        udp.set_src_port(dp);
        udp.set_dst_port(sp);
        ip.set_src_addr(b);
        ip.set_dst_addr(a);
    }
    eth.set_src_addr(dst);
    eth.set_dst_addr(src);
    true
}

/// A UDP flood's frames from the peer (10.99.0.2, four source ports) to the discard port of
/// `dst` at `dst_mac`, 18 bytes of payload: what the live-frame generator sends in turn.
pub fn discard_flood(dst_mac: [u8; 6], src_mac: [u8; 6], dst: Ipv4Addr) -> Vec<Vec<u8>> {
    (0..4u16)
        .map(|p| {
            udp4(
                dst_mac,
                src_mac,
                (Ipv4Addr::new(10, 99, 0, 2), 40_000 + p),
                (dst, DISCARD_PORT),
                18,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_has_valid_checksums_and_turns_around() {
        let a = Ipv4Addr::new(10, 99, 0, 2);
        let b = Ipv4Addr::new(10, 99, 0, 11);
        let mut f = udp4(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            (a, 40000),
            (b, 7),
            64,
        );
        assert_eq!(f.len(), 14 + 20 + 8 + 64);
        let check = |f: &[u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16| {
            let eth = EthernetFrame::new_checked(f).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&src.into(), &dst.into()));
            assert_eq!(udp.src_port(), sport);
        };
        check(&f, a, b, 40000);
        assert!(turn_around_udp4(&mut f));
        check(&f, b, a, 7);
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut short = vec![0u8; 10];
        assert!(!turn_around_udp4(&mut short));
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        let copy = arp.clone();
        assert!(!turn_around_udp4(&mut arp));
        assert_eq!(arp, copy);
        let a = Ipv4Addr::new(10, 99, 0, 2);
        let b = Ipv4Addr::new(10, 99, 0, 11);
        let mut discard = udp4(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            (a, 40000),
            (b, 9),
            64,
        );
        let copy = discard.clone();
        assert!(!turn_around_udp4(&mut discard));
        assert_eq!(discard, copy);
    }
}
