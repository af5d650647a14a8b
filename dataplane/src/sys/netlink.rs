//! rtnetlink, spoken directly: a blocking `NETLINK_ROUTE` socket (netlink-sys) carrying
//! messages built and parsed by netlink-packet-route. Links (index, flags, MTU, rx queues,
//! the attached XDP program and its mode), addresses, and link events — in the network
//! namespace of the thread that opens the socket, with no process spawned and no text parsed.
//!
//! Blocking on purpose: the data plane's control path runs on plain threads (a server's
//! start, `ioth status`, a watcher thread); nothing here needs a runtime.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeaderFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached},
    neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, bound or used.
    #[error("rtnetlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request.
    #[error("rtnetlink {what}")]
    Refused {
        /// The request.
        what: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// An answer did not decode.
    #[error("rtnetlink {what}: undecodable answer: {why}")]
    Decode {
        /// The request.
        what: &'static str,
        /// Why.
        why: String,
    },
}

type Result<T> = std::result::Result<T, NetlinkError>;

impl NetlinkError {
    /// The errno the kernel answered, if it refused the request.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            NetlinkError::Refused { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// How an XDP program is attached to a link (`IFLA_XDP_ATTACHED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode.
    Driver,
    /// Generic (skb) mode.
    Skb,
    /// Offloaded to the NIC.
    Hardware,
    /// Several programs in several modes.
    Multiple,
}

/// The XDP program attached to a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProgram {
    /// Its kernel id.
    pub id: u32,
    /// How it is attached.
    pub mode: XdpMode,
}

/// What the kernel says of one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The lower layer is up (`IFF_LOWER_UP`: carrier).
    pub lower_up: bool,
    /// MTU.
    pub mtu: u32,
    /// Rx queues the device has (`numrxqueues`; the channels in use may be fewer).
    pub num_rx_queues: u32,
    /// Its hardware address, if it has an Ethernet one.
    pub mac: Option<[u8; 6]>,
    /// The attached XDP program, if any.
    pub xdp: Option<XdpProgram>,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
            mtu: 0,
            num_rx_queues: 1,
            mac: None,
            xdp: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name.clone_from(n),
                LinkAttribute::Mtu(v) => link.mtu = *v,
                LinkAttribute::NumRxQueues(v) => link.num_rx_queues = *v,
                LinkAttribute::Address(a) => link.mac = a.as_slice().try_into().ok(),
                LinkAttribute::Xdp(x) => link.xdp = xdp_program(x),
                _ => {}
            }
        }
        link
    }
}

fn xdp_program(attrs: &[LinkXdp]) -> Option<XdpProgram> {
    let mut id = None;
    let mut mode = None;
    for a in attrs {
        match a {
            LinkXdp::ProgId(v) if *v != 0 => id = Some(*v),
            LinkXdp::Attached(XdpAttached::Driver) => mode = Some(XdpMode::Driver),
            LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(XdpMode::Skb),
            LinkXdp::Attached(XdpAttached::Hardware) => mode = Some(XdpMode::Hardware),
            LinkXdp::Attached(XdpAttached::Multiple) => mode = Some(XdpMode::Multiple),
            _ => {}
        }
    }
    Some(XdpProgram {
        id: id?,
        mode: mode?,
    })
}

/// An address configured on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The link's index.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// A blocking rtnetlink socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Rtnetlink {
    socket: Socket,
    seq: u32,
}

impl Rtnetlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends `msg` and collects the answers: one message, every part of a dump, or none
    /// (an acknowledged change). A kernel error becomes [`NetlinkError::Refused`].
    fn request(
        &mut self,
        what: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(NetlinkError::Socket)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(NetlinkError::Socket)?;
            let mut off = 0;
            while off < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| NetlinkError::Decode {
                        what,
                        why: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode {
                        what,
                        why: "a message of length 0".into(),
                    });
                }
                off += len.next_multiple_of(4);
                if msg.header.sequence_number != self.seq {
                    // An answer to an earlier request that gave up: not ours.
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(NetlinkError::Refused {
                                what,
                                source: e.to_io(),
                            }),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }

    /// The link named `name`, or `None` if there is none in this namespace.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request("get link", RouteNetlinkMessage::GetLink(m), 0) {
            Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })),
            Err(NetlinkError::Refused { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every link in this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// Sets link `index` administratively up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.request(
            "set link up/down",
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Turns link `index`'s promiscuous mode on or off (`ip link set IF promisc on|off`).
    pub fn set_promiscuous(&mut self, index: u32, on: bool) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Promisc;
        if on {
            m.header.flags = LinkFlags::Promisc;
        }
        self.request(
            "set link promiscuous mode",
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    fn address_message(index: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        m
    }

    /// Adds `addr/prefix` to link `index` (an error if it is there already). An IPv6
    /// address skips duplicate address detection (usable at once, as `ip addr add … nodad`).
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let mut m = Self::address_message(index, addr, prefix);
        if addr.is_ipv6() {
            m.header.flags = AddressHeaderFlags::Nodad;
        }
        self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Removes `addr/prefix` from link `index`.
    pub fn del_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let m = Self::address_message(index, addr, prefix);
        self.request(
            "delete address",
            RouteNetlinkMessage::DelAddress(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Adds (or replaces) the default route through `gateway` in the main table.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = match gateway {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        self.request(
            "add default route",
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    fn fdb_message(index: u32, mac: [u8; 6]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        // NTF_SELF: the device's own address list, as `bridge fdb add MAC dev IF self`.
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m
    }

    /// Adds `mac` to link `index`'s own unicast address list, so a NIC's filter lets frames
    /// to it through (`bridge fdb add MAC dev IF self`).
    pub fn add_fdb(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let m = Self::fdb_message(index, mac);
        self.request(
            "add fdb entry",
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Removes `mac` from link `index`'s own address list.
    pub fn del_fdb(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let m = Self::fdb_message(index, mac);
        self.request(
            "delete fdb entry",
            RouteNetlinkMessage::DelNeighbour(m),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Every address configured in this namespace (IPv4 and IPv6).
    pub fn addresses(&mut self) -> Result<Vec<Address>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Unspec;
        let msgs = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(m),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    // IPv4: IFA_LOCAL is the address (IFA_ADDRESS the peer's on
                    // point-to-point links); IPv6 has IFA_ADDRESS only.
                    let pick = |local: bool| {
                        a.attributes.iter().find_map(|x| match x {
                            AddressAttribute::Local(ip) if local => Some(*ip),
                            AddressAttribute::Address(ip) if !local => Some(*ip),
                            _ => None,
                        })
                    };
                    Some(Address {
                        index: a.header.index,
                        addr: pick(true).or_else(|| pick(false))?,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }
}

/// What happened to a link (from the kernel's `RTNLGRP_LINK` notifications).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link is new or changed: its state now.
    Changed(Link),
    /// The link is gone.
    Removed {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
}

/// A subscription to link notifications in the calling thread's network namespace.
#[derive(Debug)]
pub struct LinkEvents {
    socket: Socket,
}

/// `RTMGRP_LINK`: the multicast group of link notifications.
const RTMGRP_LINK: u32 = 1;

impl LinkEvents {
    /// Subscribes.
    pub fn subscribe() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(NetlinkError::Socket)?;
        Ok(Self { socket })
    }

    /// The socket's fd (to wait on).
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The events of the next notification (blocks until one arrives; wait on
    /// [`LinkEvents::fd`] first to bound the wait).
    pub fn next_batch(&mut self) -> Result<Vec<LinkEvent>> {
        let (data, _) = self.socket.recv_from_full().map_err(NetlinkError::Socket)?;
        let mut out = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..]).map_err(|e| {
                    NetlinkError::Decode {
                        what: "link event",
                        why: e.to_string(),
                    }
                })?;
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            off += len.next_multiple_of(4);
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    out.push(LinkEvent::Changed(Link::from_message(&l)));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    let link = Link::from_message(&l);
                    out.push(LinkEvent::Removed {
                        index: link.index,
                        name: link.name,
                    });
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
