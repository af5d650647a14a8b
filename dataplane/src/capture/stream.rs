//! The client end of capture: [`CaptureStream`] reads an endpoint's frames from its owning
//! process, [`PcapWriter`] writes them as classic pcap.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    os::{fd::AsRawFd, unix::net::UnixStream},
};

use super::protocol::{Direction, PROTOCOL, socket_path};

/// What a capture client receives.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// A frame the endpoint received or sent.
    Frame {
        /// Nanoseconds since the Unix epoch.
        ns: u64,
        /// Which way.
        dir: Direction,
        /// The Ethernet frame.
        data: Vec<u8>,
    },
    /// Frames the server could not queue for this capture, in total so far.
    Dropped(u64),
}

/// Errors of a capture client.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The owning process has no capture socket or does not answer.
    #[error("process {pid} does not answer on {path}: {source}")]
    Connect {
        /// The owner.
        pid: u32,
        /// Its socket.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The owning process refused.
    #[error("process {pid} refused the capture: {reason}")]
    Refused {
        /// The owner.
        pid: u32,
        /// Its answer.
        reason: String,
    },
    /// Reading the stream failed.
    #[error("reading the capture stream: {0}")]
    Io(#[from] io::Error),
    /// The stream is not in the expected format.
    #[error("malformed capture stream: {0}")]
    Malformed(String),
}

/// A capture of one endpoint, streamed from its owning process.
#[derive(Debug)]
pub struct CaptureStream {
    stream: BufReader<UnixStream>,
}

/// Largest frame the stream accepts (a jumbo frame; larger lengths mean a corrupt stream).
const MAX_FRAME: u32 = 65_536;

impl CaptureStream {
    /// Asks process `pid` for the frames of endpoint `slot` on `iface`.
    pub fn connect(pid: u32, iface: &str, slot: u32) -> Result<Self, CaptureError> {
        let path = socket_path(pid);
        let connect_err = |source| CaptureError::Connect {
            pid,
            path: path.display().to_string(),
            source,
        };
        let mut stream = UnixStream::connect(&path).map_err(connect_err)?;
        writeln!(stream, "{PROTOCOL} {iface} {slot}")?;
        let mut stream = BufReader::new(stream);
        let mut answer = String::new();
        stream.read_line(&mut answer)?;
        let answer = answer.trim_end();
        if answer != "OK" {
            return Err(CaptureError::Refused {
                pid,
                reason: answer
                    .strip_prefix("ERR ")
                    .unwrap_or(if answer.is_empty() {
                        "connection closed"
                    } else {
                        answer
                    })
                    .to_owned(),
            });
        }
        Ok(Self { stream })
    }

    /// The next record; `None` when the server ended the capture (the endpoint went away).
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let mut h = [0u8; 16];
        match self.stream.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let value = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        match h[0] {
            0 if len <= MAX_FRAME => {
                let mut data = vec![0u8; len as usize];
                self.stream.read_exact(&mut data)?;
                let dir = if h[1] == 1 {
                    Direction::Tx
                } else {
                    Direction::Rx
                };
                Ok(Some(Record::Frame {
                    ns: value,
                    dir,
                    data,
                }))
            }
            1 => Ok(Some(Record::Dropped(value))),
            kind => Err(CaptureError::Malformed(format!(
                "record kind {kind}, length {len}"
            ))),
        }
    }

    /// Whether a record (or part of one) is already read into the buffer: then the socket
    /// may not become readable again before [`CaptureStream::next_record`] is called.
    pub fn has_buffered(&self) -> bool {
        !self.stream.buffer().is_empty()
    }

    /// The socket (to wait on it together with other events).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.get_ref().as_raw_fd()
    }
}

/// Writes Ethernet frames in the classic pcap format (nanosecond timestamps).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

/// Snapshot length written in the pcap header.
const SNAPLEN: u32 = 262_144;

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes()); // nanosecond resolution
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        out.write_all(&h)?;
        Ok(Self { out })
    }

    /// Writes one frame captured at `ns` nanoseconds since the Unix epoch.
    pub fn frame(&mut self, ns: u64, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ns % 1_000_000_000) as u32).to_le_bytes());
        let len = data.len() as u32;
        h[8..12].copy_from_slice(&len.min(SNAPLEN).to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out
            .write_all(&data[..data.len().min(SNAPLEN as usize)])
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_header_and_records_have_the_classic_layout() {
        let mut buf = Vec::new();
        let mut w = PcapWriter::new(&mut buf).unwrap();
        w.frame(1_700_000_000_123_456_789, &[1, 2, 3]).unwrap();
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
}
