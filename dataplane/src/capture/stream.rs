//! The client end of capture: [`CaptureStream`] reads an endpoint's frames from its owning
//! process (`super::file` writes them as pcap or pcapng).

use std::{
    io::{self, BufRead, BufReader, Read, Write as _},
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
        read_record(&mut self.stream)
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

/// Reads one record of the capture stream from `r`; `None` at a clean end of stream. Any
/// byte sequence gives a record, `None` or an error — never a panic, never more than one
/// frame of [`MAX_FRAME`] bytes allocated (the fuzz target `capture_records` holds it to that).
pub fn read_record(r: &mut impl Read) -> Result<Option<Record>, CaptureError> {
    let mut h = [0u8; 16];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let value = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    match h[0] {
        0 if len <= MAX_FRAME => {
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data)?;
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
