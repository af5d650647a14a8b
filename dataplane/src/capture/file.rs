//! Capture files: classic pcap (the default) or pcapng, whose enhanced packet blocks carry
//! each frame's direction in their flags, so Wireshark and tcpdump show received and sent
//! frames apart.

use std::io::{self, Write};

use super::protocol::Direction;

/// Largest part of a frame written (the snapshot length).
const SNAPLEN: u32 = 262_144;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u16 = 1;

/// The file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileFormat {
    /// Classic pcap, nanosecond timestamps; no direction.
    #[default]
    Pcap,
    /// pcapng: one section, one Ethernet interface, nanosecond timestamps, the direction of
    /// each frame in its `epb_flags` (inbound: received by the endpoint; outbound: sent).
    Pcapng,
}

impl std::str::FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pcap" => Ok(Self::Pcap),
            "pcapng" => Ok(Self::Pcapng),
            _ => Err(format!("unknown capture format {s:?} (pcap, pcapng)")),
        }
    }
}

/// Writes captured Ethernet frames to `W` in a [`FileFormat`].
#[derive(Debug)]
pub struct CaptureFile<W: Write> {
    out: W,
    format: FileFormat,
}

impl<W: Write> CaptureFile<W> {
    /// Writes the file header; `name` names the capture's interface (pcapng `if_name`).
    pub fn new(mut out: W, format: FileFormat, name: &str) -> io::Result<Self> {
        match format {
            FileFormat::Pcap => {
                let mut h = Vec::with_capacity(24);
                h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes()); // nanosecond resolution
                h.extend_from_slice(&2u16.to_le_bytes());
                h.extend_from_slice(&4u16.to_le_bytes());
                h.extend_from_slice(&0i32.to_le_bytes());
                h.extend_from_slice(&0u32.to_le_bytes());
                h.extend_from_slice(&SNAPLEN.to_le_bytes());
                h.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
                out.write_all(&h)?;
            }
            FileFormat::Pcapng => {
                // Section header block: byte-order magic, version 1.0, section length unknown.
                let mut shb = Vec::new();
                shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
                shb.extend_from_slice(&1u16.to_le_bytes());
                shb.extend_from_slice(&0u16.to_le_bytes());
                shb.extend_from_slice(&(-1i64).to_le_bytes());
                write_block(&mut out, 0x0a0d_0d0a, &shb, &[])?;
                // Interface description block: Ethernet, snaplen, if_name, if_tsresol = 9.
                let mut idb = Vec::new();
                idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
                idb.extend_from_slice(&0u16.to_le_bytes());
                idb.extend_from_slice(&SNAPLEN.to_le_bytes());
                write_block(&mut out, 1, &idb, &[(2, name.as_bytes()), (9, &[9])])?;
            }
        }
        Ok(Self { out, format })
    }

    /// Writes one frame captured at `ns` nanoseconds since the Unix epoch, going `dir`.
    pub fn frame(&mut self, ns: u64, dir: Direction, data: &[u8]) -> io::Result<()> {
        let len = data.len() as u32;
        let kept = &data[..data.len().min(SNAPLEN as usize)];
        match self.format {
            FileFormat::Pcap => {
                let mut h = [0u8; 16];
                h[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
                h[4..8].copy_from_slice(&((ns % 1_000_000_000) as u32).to_le_bytes());
                h[8..12].copy_from_slice(&(kept.len() as u32).to_le_bytes());
                h[12..16].copy_from_slice(&len.to_le_bytes());
                self.out.write_all(&h)?;
                self.out.write_all(kept)
            }
            FileFormat::Pcapng => {
                // Enhanced packet block: interface 0, timestamp in if_tsresol units (ns).
                let mut epb = Vec::with_capacity(20 + kept.len() + 3);
                epb.extend_from_slice(&0u32.to_le_bytes());
                epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
                epb.extend_from_slice(&(ns as u32).to_le_bytes());
                epb.extend_from_slice(&(kept.len() as u32).to_le_bytes());
                epb.extend_from_slice(&len.to_le_bytes());
                epb.extend_from_slice(kept);
                epb.resize(epb.len().next_multiple_of(4), 0);
                // epb_flags bits 0-1: 01 inbound, 10 outbound.
                let flags: u32 = match dir {
                    Direction::Rx => 1,
                    Direction::Tx => 2,
                };
                write_block(&mut self.out, 6, &epb, &[(2, &flags.to_le_bytes())])
            }
        }
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes a pcapng block: type, total length, `body` (a multiple of 4 bytes), the options
/// (code, value; each padded to 4, then opt_endofopt), total length again.
fn write_block(
    out: &mut impl Write,
    kind: u32,
    body: &[u8],
    options: &[(u16, &[u8])],
) -> io::Result<()> {
    let mut opts = Vec::new();
    for (code, value) in options {
        opts.extend_from_slice(&code.to_le_bytes());
        opts.extend_from_slice(&(value.len() as u16).to_le_bytes());
        opts.extend_from_slice(value);
        opts.resize(opts.len().next_multiple_of(4), 0);
    }
    if !options.is_empty() {
        opts.extend_from_slice(&[0, 0, 0, 0]);
    }
    let total = (12 + body.len() + opts.len()) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&opts)?;
    out.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_header_and_records_have_the_classic_layout() {
        let mut buf = Vec::new();
        let mut w = CaptureFile::new(&mut buf, FileFormat::Pcap, "x").unwrap();
        w.frame(1_700_000_000_123_456_789, Direction::Tx, &[1, 2, 3])
            .unwrap();
        assert_eq!(&buf[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(buf[20..24].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(buf[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(
            u32::from_le_bytes(buf[28..32].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u32::from_le_bytes(buf[32..36].try_into().unwrap()), 3);
        assert_eq!(&buf[40..], &[1, 2, 3]);
    }

    /// Walks the blocks of a pcapng file: (type, body and options).
    fn blocks(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 12 {
            let kind = u32::from_le_bytes(b[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0, "block length is a multiple of 4");
            let trailer = u32::from_le_bytes(b[len - 4..len].try_into().unwrap()) as usize;
            assert_eq!(trailer, len, "total length repeated");
            out.push((kind, b[8..len - 4].to_vec()));
            b = &b[len..];
        }
        assert!(b.is_empty());
        out
    }

    #[test]
    fn pcapng_blocks_carry_the_direction() {
        let mut buf = Vec::new();
        let mut w = CaptureFile::new(&mut buf, FileFormat::Pcapng, "veth0 slot 3").unwrap();
        w.frame(1_700_000_000_123_456_789, Direction::Rx, &[1, 2, 3, 4, 5])
            .unwrap();
        w.frame(1_700_000_000_123_456_790, Direction::Tx, &[6; 60])
            .unwrap();
        let b = blocks(&buf);
        assert_eq!(
            b.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [0x0a0d_0d0a, 1, 6, 6]
        );
        let flags = |body: &[u8], caplen: usize| {
            let opt = 20 + caplen.next_multiple_of(4);
            assert_eq!(
                u16::from_le_bytes(body[opt..opt + 2].try_into().unwrap()),
                2
            );
            u32::from_le_bytes(body[opt + 4..opt + 8].try_into().unwrap())
        };
        assert_eq!(flags(&b[2].1, 5), 1, "received: inbound");
        assert_eq!(flags(&b[3].1, 60), 2, "sent: outbound");
        let ts = |body: &[u8]| {
            u64::from(u32::from_le_bytes(body[4..8].try_into().unwrap())) << 32
                | u64::from(u32::from_le_bytes(body[8..12].try_into().unwrap()))
        };
        assert_eq!(ts(&b[2].1), 1_700_000_000_123_456_789);
        assert_eq!(&b[2].1[20..25], &[1, 2, 3, 4, 5]);
    }
}
