//! A VXLAN port (RFC 7348): the switch's frames to and from other hosts, each in a UDP
//! datagram behind an 8-byte header (flags `0x08`: the VNI is valid; a 24-bit VNI).
//! Interoperates with Linux's `vxlan` device: unicast remotes, a multicast group for
//! broadcast and unknown destinations, and learning — an inner source MAC is remembered
//! behind the sender's IP, and frames to it go there (to the VXLAN port), the rest to the
//! configured remote or group.
//!
//! The UDP socket is an ordinary kernel socket of the host: the encapsulated datagrams are
//! the host's own traffic (the classifier passes them to the kernel).

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::{AsRawFd as _, RawFd},
    str::FromStr,
    time::{Duration, Instant},
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::{
    sys::mmsg::{self, RecvBatch, Senders},
    wire::Mac,
};

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// The header's length.
pub const HEADER: usize = 8;
/// A learned remote unseen this long is forgotten (the kernel's default ageing).
const REMOTE_AGE: Duration = Duration::from_secs(300);
/// Most remotes learned.
const MAX_REMOTES: usize = 4096;

/// A VXLAN port as given on the command line: `REMOTE|GROUP[,vni=N][,port=P][,dev=IF]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    /// The remote VTEP, or the multicast group.
    pub remote: IpAddr,
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The UDP port (both ends).
    pub port: u16,
    /// The interface multicast goes through (a group needs one).
    pub dev: Option<String>,
    /// vxvde (vdeplug4's `vxvde://`): peers send from ephemeral ports, so a learned MAC is
    /// remembered behind the sender's IP *and port*; else (Linux's vxlan) behind its IP,
    /// reached at the VXLAN port.
    pub learn_ports: bool,
}

/// vxvde's defaults: group 239.0.0.1, port 14789, VNI 1.
pub const VXVDE_GROUP: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 1);
/// vxvde's UDP port.
pub const VXVDE_PORT: u16 = 14789;

impl VxlanSpec {
    /// A vxvde spec: `[GROUP][,vni=N][,port=P],dev=IF` (defaults 239.0.0.1, 1, 14789).
    pub fn vxvde(s: &str) -> Result<Self, String> {
        let full = if s.is_empty() || s.starts_with(',') {
            format!("{VXVDE_GROUP}{s}")
        } else {
            s.to_owned()
        };
        let mut spec: VxlanSpec = full.parse()?;
        if !full.contains("port=") {
            spec.port = VXVDE_PORT;
        }
        spec.learn_ports = true;
        if !spec.remote.is_multicast() {
            return Err(format!("{s:?}: vxvde needs a multicast group"));
        }
        Ok(spec)
    }
}

impl FromStr for VxlanSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let remote: IpAddr = parts
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| format!("{s:?}: expected REMOTE|GROUP[,vni=N][,port=P][,dev=IF]"))?;
        let mut spec = VxlanSpec {
            remote,
            vni: 1,
            port: VXLAN_PORT,
            dev: None,
            learn_ports: false,
        };
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("{s:?}: {p:?} is not KEY=VALUE"))?;
            match k {
                "vni" => {
                    spec.vni = v
                        .parse()
                        .ok()
                        .filter(|n| *n < 1 << 24)
                        .ok_or_else(|| format!("{s:?}: vni must be 0..16777215"))?;
                }
                "port" => spec.port = v.parse().map_err(|_| format!("{s:?}: bad port {v:?}"))?,
                "dev" => spec.dev = Some(v.to_owned()),
                _ => return Err(format!("{s:?}: unknown option {k:?} (vni, port, dev)")),
            }
        }
        if !remote.is_ipv4() {
            return Err(format!("{s:?}: only IPv4 remotes are served"));
        }
        if remote.is_multicast() && spec.dev.is_none() {
            return Err(format!("{s:?}: a multicast group needs dev=IF"));
        }
        Ok(spec)
    }
}

/// The 8-byte header for `vni`.
pub fn header(vni: u32) -> [u8; HEADER] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// The VNI of a header, if its I flag is set.
pub fn parse_header(h: &[u8]) -> Option<u32> {
    let h = h.get(..HEADER)?;
    (h[0] & 0x08 != 0).then(|| u32::from_be_bytes([0, h[4], h[5], h[6]]))
}

/// An open VXLAN port.
#[derive(Debug)]
pub struct VxlanPort {
    /// Sends (header and frame gathered, no copy) and receives, a batch per call.
    socket: Socket,
    spec: VxlanSpec,
    default_dst: SockAddr,
    remotes: HashMap<Mac, (SocketAddr, Instant)>,
    header: [u8; HEADER],
    /// Senders of the last batch received.
    senders: Senders,
    /// Destinations of the batch being sent (kept for its memory).
    dsts: Vec<SockAddr>,
}

impl VxlanPort {
    /// Binds the UDP port (and joins the group on `group_ifindex` for a multicast remote).
    pub fn open(spec: &VxlanSpec, group_ifindex: Option<u32>) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), spec.port).into())?;
        socket.set_nonblocking(true)?;
        if let IpAddr::V4(group) = spec.remote
            && group.is_multicast()
        {
            let idx = group_ifindex.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a multicast group needs an interface",
                )
            })?;
            socket.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(idx))?;
            // Multicast leaves through the group's interface (and only its traffic arrives).
            socket.bind_device_by_index_v4(std::num::NonZeroU32::new(idx))?;
            socket.set_multicast_ttl_v4(1)?;
            socket.set_multicast_loop_v4(false)?;
        }
        Ok(Self {
            socket,
            default_dst: SocketAddr::new(spec.remote, spec.port).into(),
            spec: spec.clone(),
            remotes: HashMap::new(),
            header: header(spec.vni),
            senders: Senders::default(),
            dsts: Vec::with_capacity(mmsg::MAX_BATCH),
        })
    }

    /// The socket's fd.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// `vxlan` or `vxvde`.
    pub fn kind(&self) -> &'static str {
        if self.spec.learn_ports {
            "vxvde"
        } else {
            "vxlan"
        }
    }

    /// What it is, for reports.
    pub fn describe(&self) -> String {
        format!(
            "vxlan {} vni {} port {}",
            self.spec.remote, self.spec.vni, self.spec.port
        )
    }

    /// Where `frame` goes: the remote its destination MAC was learned behind, else the
    /// configured remote or group.
    fn destination(&self, frame: &[u8]) -> SockAddr {
        frame
            .get(0..6)
            .and_then(|d| self.remotes.get(&Mac(d.try_into().unwrap_or_default())))
            .filter(|(_, seen)| seen.elapsed() < REMOTE_AGE)
            .map_or_else(
                || self.default_dst.clone(),
                |(addr, _)| SockAddr::from(*addr),
            )
    }

    /// Sends `frames`, each to where [`VxlanPort::destination`] says, in one sendmmsg(2) per
    /// 64; how many went. The destinations go in a buffer the port keeps (no allocation per
    /// batch).
    pub fn send_batch(&mut self, frames: &[&[u8]]) -> usize {
        let mut dsts = std::mem::take(&mut self.dsts);
        let mut sent = 0;
        for chunk in frames.chunks(mmsg::MAX_BATCH) {
            dsts.clear();
            dsts.extend(chunk.iter().map(|f| self.destination(f)));
            sent += mmsg::send_batch_to(self.fd(), &self.header, chunk, &dsts).unwrap_or(0);
        }
        self.dsts = dsts;
        sent
    }

    /// Receives what is waiting in one recvmmsg(2) and turns each datagram into its inner
    /// frame (learning its source behind the sender); datagrams of another VNI, without the I
    /// flag or too short become empty (dropped by the switch). How many were received.
    pub fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let n = batch.recv_from(self.fd(), &mut self.senders)?;
        for i in 0..n {
            let d = batch.frame(i);
            let len = d.len();
            let from = self.senders.get(i);
            match from {
                Some(from) if len >= HEADER + 14 && parse_header(d) == Some(self.spec.vni) => {
                    self.learn(&d[HEADER..], from);
                    batch.narrow(i, HEADER, len - HEADER);
                }
                _ => batch.narrow(i, 0, 0),
            }
        }
        Ok(n)
    }

    /// Learns the inner source MAC of `frame` behind `from`.
    fn learn(&mut self, frame: &[u8], from: SocketAddr) {
        let sender = if self.spec.learn_ports {
            from
        } else {
            SocketAddr::new(from.ip(), self.spec.port)
        };
        let src = Mac(frame[6..12].try_into().unwrap_or_default());
        if frame[6] & 1 == 0
            && (self.remotes.len() < MAX_REMOTES || self.remotes.contains_key(&src))
        {
            self.remotes.insert(src, (sender, Instant::now()));
        }
    }

    /// Forgets remotes unseen for the ageing time.
    pub fn expire(&mut self) {
        self.remotes
            .retain(|_, (_, seen)| seen.elapsed() < REMOTE_AGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let s: VxlanSpec = "10.99.0.2,vni=42".parse().unwrap();
        assert_eq!(
            (s.remote, s.vni, s.port, s.dev),
            ("10.99.0.2".parse().unwrap(), 42, 4789, None)
        );
        let g: VxlanSpec = "239.1.1.1,vni=7,port=8472,dev=veth0".parse().unwrap();
        assert_eq!((g.port, g.dev.as_deref()), (8472, Some("veth0")));
        let v = VxlanSpec::vxvde(",dev=veth0").unwrap();
        assert_eq!(
            (v.remote, v.port, v.vni, v.learn_ports),
            (IpAddr::V4(VXVDE_GROUP), VXVDE_PORT, 1, true)
        );
        assert!(
            VxlanSpec::vxvde("10.0.0.1,dev=x").is_err(),
            "vxvde is multicast"
        );
        for bad in [
            "",
            "x",
            "239.1.1.1",
            "10.0.0.1,vni=16777216",
            "10.0.0.1,color=red",
            "10.0.0.1,vni",
            "fd00::1",
        ] {
            assert!(bad.parse::<VxlanSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_round_trip() {
        assert_eq!(header(42), [0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(parse_header(&header(0x00ab_cdef)), Some(0x00ab_cdef));
        assert_eq!(parse_header(&[0; 8]), None, "I flag missing");
        assert_eq!(parse_header(&[0x08; 7]), None, "short");
    }
}
