//! The vde_switch protocol, server side: `DIR/ctl` takes control connections; each sends one
//! request naming its data socket; the switch answers with the address of a datagram socket
//! of its own connected to the client's; from then on one datagram is one Ethernet frame,
//! both ways, and EOF on the control connection closes the port. (vde-2's `datasock.c` is the
//! switch side, vdeplug4's `libvdeplug_vde.c` the client side; `../shared/INTEROP.md`.)
//!
//! [`parse_request`] is sans-IO (a hostile client cannot make it panic); [`VdeListener`] and
//! [`VdePort`] do the socket work, non-blocking, driven by the switch's loop.

use std::{
    fs, io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::{
            ffi::OsStrExt as _,
            fs::{FileTypeExt as _, PermissionsExt as _},
            net::{UnixDatagram, UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
};

use super::core::PortId;

/// The request's magic number.
pub const MAGIC: u32 = 0xfeed_face;
/// The protocol version served.
pub const VERSION: u32 = 3;
/// `sizeof(struct sockaddr_un)` on Linux.
pub const SOCKADDR_UN_LEN: usize = 110;
/// Fixed part of a request: magic, version, type, the client's data socket address.
pub const REQUEST_FIXED: usize = 12 + SOCKADDR_UN_LEN;
/// Longest description kept (the rest of a longer one is ignored).
const MAX_DESCRIPTION: usize = 256;

/// A port request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The port asked for (`type` = port << 8), or `None` for any.
    pub port: Option<PortId>,
    /// The client's data socket.
    pub data_socket: PathBuf,
    /// What the client says it is.
    pub description: String,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Shorter than the fixed part.
    #[error("request of {0} bytes, shorter than the {REQUEST_FIXED} of a version 3 request")]
    Short(usize),
    /// Not the magic number.
    #[error("bad magic {0:#x}")]
    Magic(u32),
    /// Another protocol version.
    #[error("protocol version {0}, only 3 is served")]
    Version(u32),
    /// The data socket address is not a Unix socket path.
    #[error("the data socket address is not an AF_UNIX path")]
    Address,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one request (as written in one piece by the client).
pub fn parse_request(buf: &[u8]) -> Result<Request, RequestError> {
    if buf.len() < REQUEST_FIXED {
        return Err(RequestError::Short(buf.len()));
    }
    let magic = u32_at(buf, 0);
    if magic != MAGIC {
        return Err(RequestError::Magic(magic));
    }
    let version = u32_at(buf, 4);
    if version != VERSION {
        return Err(RequestError::Version(version));
    }
    let kind = u32_at(buf, 8);
    let sa = &buf[12..REQUEST_FIXED];
    let family = u16::from_ne_bytes([sa[0], sa[1]]);
    if family != libc::AF_UNIX as u16 {
        return Err(RequestError::Address);
    }
    let path = &sa[2..];
    let path = &path[..path.iter().position(|b| *b == 0).unwrap_or(path.len())];
    if path.is_empty() || path[0] != b'/' {
        return Err(RequestError::Address);
    }
    let desc = &buf[REQUEST_FIXED..];
    let desc = &desc[..desc.len().min(MAX_DESCRIPTION)];
    let desc = &desc[..desc.iter().position(|b| *b == 0).unwrap_or(desc.len())];
    Ok(Request {
        port: (kind >> 8 != 0).then_some(kind >> 8),
        data_socket: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
        description: String::from_utf8_lossy(desc).into_owned(),
    })
}

/// A `struct sockaddr_un` naming `path` (at most 107 bytes).
pub fn sockaddr_un(path: &Path) -> Option<[u8; SOCKADDR_UN_LEN]> {
    let p = path.as_os_str().as_bytes();
    if p.len() >= SOCKADDR_UN_LEN - 2 {
        return None;
    }
    let mut sa = [0u8; SOCKADDR_UN_LEN];
    sa[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    sa[2..2 + p.len()].copy_from_slice(p);
    Some(sa)
}

/// A connected VDE port.
#[derive(Debug)]
pub struct VdePort {
    /// Its number.
    pub id: PortId,
    /// The client's description.
    pub description: String,
    /// The client's pid (SO_PEERCRED of the control connection).
    pub pid: Option<u32>,
    ctl: UnixStream,
    data: UnixDatagram,
    path: PathBuf,
}

impl VdePort {
    /// The data socket's fd.
    pub fn data_fd(&self) -> RawFd {
        self.data.as_raw_fd()
    }

    /// The control connection's fd (readable when the client hangs up).
    pub fn ctl_fd(&self) -> RawFd {
        self.ctl.as_raw_fd()
    }

    /// Whether the client hung up its control connection (it sends nothing on it, so
    /// readable means EOF or an error).
    pub fn hung_up(&self) -> bool {
        let mut b = [0u8; 64];
        match (&self.ctl).read_nonblocking(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

trait ReadNonblocking {
    fn read_nonblocking(self, buf: &mut [u8]) -> io::Result<usize>;
}

impl ReadNonblocking for &UnixStream {
    fn read_nonblocking(self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read as _;
        let mut s = self;
        s.read(buf)
    }
}

impl Drop for VdePort {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The switch's directory: `DIR/ctl` and the ports' data sockets.
#[derive(Debug)]
pub struct VdeListener {
    dir: PathBuf,
    ctl: UnixListener,
    /// Control connections that have not sent their request yet, with when they came.
    pending: Vec<(UnixStream, std::time::Instant)>,
}

/// Pending control connections kept at most: beyond, the oldest is dropped (a client that
/// connects and never writes cannot pile them up, nor lock others out).
const MAX_PENDING: usize = 64;
/// How long a control connection may take to send its request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl VdeListener {
    /// Serves `dir` (made if missing) with mode `mode` on the directory and the control
    /// socket, and group `gid` if given, as `vde_switch -m` and `-g` do. A stale `ctl` of a
    /// dead switch is replaced; a live one is an error.
    pub fn bind(dir: &Path, mode: u32, gid: Option<u32>) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o100))?;
        let ctl_path = dir.join("ctl");
        if ctl_path.exists() {
            if UnixStream::connect(&ctl_path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by a running switch", ctl_path.display()),
                ));
            }
            fs::remove_file(&ctl_path)?;
        }
        let ctl = UnixListener::bind(&ctl_path)?;
        fs::set_permissions(&ctl_path, fs::Permissions::from_mode(mode & 0o666))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(dir, None, Some(gid))?;
            std::os::unix::fs::chown(&ctl_path, None, Some(gid))?;
        }
        ctl.set_nonblocking(true)?;
        Ok(Self {
            dir: dir.to_owned(),
            ctl,
            pending: Vec::new(),
        })
    }

    /// The fds to wait on: the listener and the pending control connections.
    pub fn fds(&self, out: &mut impl FnMut(RawFd)) {
        out(self.ctl.as_raw_fd());
        for (s, _) in &self.pending {
            out(s.as_raw_fd());
        }
    }

    /// Accepts new control connections and turns the ones whose request arrived into ports
    /// (numbered by `number`, which gets the asked-for port and answers the one to use).
    /// Refused requests are answered by closing the connection and reported in `refused`.
    pub fn poll(
        &mut self,
        mut number: impl FnMut(Option<PortId>) -> Option<PortId>,
        refused: &mut Vec<String>,
    ) -> Vec<VdePort> {
        loop {
            match self.ctl.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.pending.len() >= MAX_PENDING {
                        self.pending.remove(0);
                        refused.push(
                            "too many control connections waiting: dropped the oldest".into(),
                        );
                    }
                    self.pending.push((s, std::time::Instant::now()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    refused.push(format!("accept: {e}"));
                    break;
                }
            }
        }
        let before = self.pending.len();
        self.pending
            .retain(|(_, since)| since.elapsed() < REQUEST_TIMEOUT);
        if self.pending.len() < before {
            refused.push(format!(
                "{} control connection(s) sent no request within {REQUEST_TIMEOUT:?}",
                before - self.pending.len()
            ));
        }
        let mut ports = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let mut buf = [0u8; REQUEST_FIXED + MAX_DESCRIPTION];
            match (&self.pending[i].0).read_nonblocking(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    i += 1;
                    continue;
                }
                Ok(n) => {
                    let (stream, _) = self.pending.swap_remove(i);
                    match self.open_port(stream, &buf[..n], &mut number) {
                        Ok(p) => ports.push(p),
                        Err(e) => refused.push(e),
                    }
                }
                Err(e) => {
                    self.pending.swap_remove(i);
                    refused.push(format!("reading a request: {e}"));
                }
            }
        }
        ports
    }

    fn open_port(
        &self,
        ctl: UnixStream,
        request: &[u8],
        number: &mut impl FnMut(Option<PortId>) -> Option<PortId>,
    ) -> Result<VdePort, String> {
        let req = parse_request(request).map_err(|e| e.to_string())?;
        let is_socket =
            fs::symlink_metadata(&req.data_socket).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(format!("{} is not a socket", req.data_socket.display()));
        }
        let id = number(req.port).ok_or("no free port")?;
        let data = UnixDatagram::unbound().map_err(|e| e.to_string())?;
        data.connect(&req.data_socket)
            .map_err(|e| format!("connecting to {}: {e}", req.data_socket.display()))?;
        let path = self.dir.join(format!("{id:03}.{}", data.as_raw_fd()));
        let _ = fs::remove_file(&path);
        bind_unix_datagram(&data, &path).map_err(|e| format!("binding {}: {e}", path.display()))?;
        data.set_nonblocking(true).map_err(|e| e.to_string())?;
        let reply = sockaddr_un(&path).ok_or("the data socket path is too long")?;
        use std::io::Write as _;
        (&ctl)
            .write_all(&reply)
            .map_err(|e| format!("answering the request: {e}"))?;
        let pid = nix::sys::socket::getsockopt(&ctl, nix::sys::socket::sockopt::PeerCredentials)
            .ok()
            .map(|c| c.pid() as u32);
        Ok(VdePort {
            id,
            description: req.description,
            pid,
            ctl,
            data,
            path,
        })
    }
}

/// The client side of the protocol: a port of the switch at `dir` (what `vde_plug
/// vde://DIR` opens). Dropping it closes the port.
#[derive(Debug)]
pub struct VdeClient {
    _ctl: UnixStream,
    data: UnixDatagram,
    path: PathBuf,
}

impl VdeClient {
    /// Connects to the switch serving `dir`, describing itself as `description`.
    pub fn connect(dir: &Path, description: &str) -> io::Result<Self> {
        let ctl = UnixStream::connect(dir.join("ctl"))?;
        let data = UnixDatagram::unbound()?;
        // Our data socket lives in the switch's directory, as vdeplug4's does.
        let path = dir.join(format!(".{}-{}", std::process::id(), data.as_raw_fd()));
        let _ = fs::remove_file(&path);
        bind_unix_datagram(&data, &path).map_err(io::Error::from)?;
        let result = (|| {
            let sa = sockaddr_un(&path).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the data socket path is too long",
                )
            })?;
            let mut req = Vec::with_capacity(REQUEST_FIXED + description.len());
            req.extend_from_slice(&MAGIC.to_ne_bytes());
            req.extend_from_slice(&VERSION.to_ne_bytes());
            req.extend_from_slice(&0u32.to_ne_bytes());
            req.extend_from_slice(&sa);
            req.extend_from_slice(description.as_bytes());
            use std::io::{Read as _, Write as _};
            (&ctl).write_all(&req)?;
            let mut reply = [0u8; SOCKADDR_UN_LEN];
            (&ctl).read_exact(&mut reply)?;
            let p = &reply[2..];
            let p = &p[..p.iter().position(|b| *b == 0).unwrap_or(p.len())];
            data.connect(std::ffi::OsStr::from_bytes(p))?;
            data.set_nonblocking(true)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Self {
            _ctl: ctl,
            data,
            path,
        })
    }

    /// The data socket's fd.
    pub fn fd(&self) -> RawFd {
        self.data.as_raw_fd()
    }

    /// The next frame from the switch, if one is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        recv_frame(&self.data, buf)
    }

    /// Sends a frame to the switch; `false` if it was dropped.
    pub fn send(&self, frame: &[u8]) -> bool {
        self.data.send(frame).is_ok()
    }
}

impl Drop for VdeClient {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for VdeListener {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.dir.join("ctl"));
    }
}

/// One frame from a non-blocking data socket, if one is waiting.
fn recv_frame(sock: &UnixDatagram, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match sock.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Binds an unbound datagram socket to `path` (std has no bind for an existing
/// `UnixDatagram`).
fn bind_unix_datagram(sock: &UnixDatagram, path: &Path) -> nix::Result<()> {
    let addr = nix::sys::socket::UnixAddr::new(path)?;
    nix::sys::socket::bind(sock.as_raw_fd(), &addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(port: u32, path: &str, desc: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_ne_bytes());
        b.extend_from_slice(&VERSION.to_ne_bytes());
        b.extend_from_slice(&(port << 8).to_ne_bytes());
        b.extend_from_slice(&sockaddr_un(Path::new(path)).unwrap());
        b.extend_from_slice(desc.as_bytes());
        b
    }

    #[test]
    fn a_version_3_request_reads_back() {
        let r = parse_request(&request(0, "/tmp/.1234-0", "vde_plug: user=root")).unwrap();
        assert_eq!(r.port, None);
        assert_eq!(r.data_socket, Path::new("/tmp/.1234-0"));
        assert_eq!(r.description, "vde_plug: user=root");
        assert_eq!(parse_request(&request(5, "/x", "")).unwrap().port, Some(5));
    }

    #[test]
    fn bad_requests_are_refused_and_no_input_panics() {
        let good = request(0, "/tmp/.1-0", "d");
        for len in 0..good.len() {
            let _ = parse_request(&good[..len]);
        }
        assert!(matches!(
            parse_request(&good[..10]),
            Err(RequestError::Short(10))
        ));
        let mut b = good.clone();
        b[0] ^= 1;
        assert!(matches!(parse_request(&b), Err(RequestError::Magic(_))));
        let mut b = good.clone();
        b[4] = 2;
        assert_eq!(parse_request(&b), Err(RequestError::Version(2)));
        let mut b = good.clone();
        b[12] = 2; // AF_INET
        assert_eq!(parse_request(&b), Err(RequestError::Address));
        assert_eq!(
            parse_request(&request(0, "relative", "")),
            Err(RequestError::Address)
        );
        let mut long = request(0, "/y", "");
        long.extend(std::iter::repeat_n(b'x', 10_000));
        assert_eq!(
            parse_request(&long).unwrap().description.len(),
            MAX_DESCRIPTION
        );
        assert!(sockaddr_un(Path::new(&"/a".repeat(60))).is_none());
    }
}
