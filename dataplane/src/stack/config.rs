//! A stack's configuration and the errors of building stacks and sockets.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::Mac;

/// TCP congestion control of a stack's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// None: send as fast as the window allows.
    None,
    /// Reno.
    Reno,
    /// Cubic.
    #[default]
    Cubic,
}

impl std::str::FromStr for Congestion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "reno" => Ok(Self::Reno),
            "cubic" => Ok(Self::Cubic),
            _ => Err(format!(
                "unknown congestion control {s:?} (none, reno, cubic)"
            )),
        }
    }
}

/// Errors of stack configuration and socket creation.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// An address cannot be used by a stack.
    #[error("{addr} cannot be a stack address: {why}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why.
        why: &'static str,
    },
    /// Too many addresses for one stack.
    #[error("a stack has at most {max} addresses")]
    TooManyAddresses {
        /// The limit.
        max: usize,
    },
    /// The socket limit is reached.
    #[error("the stack's limit of {0} sockets is reached")]
    SocketLimit(usize),
    /// The MTU does not fit the link.
    #[error("MTU {mtu} does not fit: at most {max} ({why})")]
    Mtu {
        /// The MTU asked for.
        mtu: usize,
        /// The largest that fits.
        max: usize,
        /// What limits it.
        why: &'static str,
    },
    /// A socket could not listen or bind.
    #[error("cannot listen on port {port}: {why}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        why: String,
    },
}

/// A stack's configuration.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The stack's MAC (unicast).
    pub mac: [u8; 6],
    /// The MAC is the interface's own, shared by every stack of the data plane (host mode,
    /// like ipvlan: for networks that drop frames from unknown source MACs). The stack is
    /// then found by its IP addresses only; its MAC is neither claimed in the classifier nor
    /// added to the NIC's address list.
    pub shared_mac: bool,
    /// IPv4 addresses with prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// Default IPv4 gateway.
    pub gateway_v4: Option<Ipv4Addr>,
    /// Default IPv6 gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// IP MTU.
    pub mtu: usize,
    /// TCP receive buffer per socket, bytes.
    pub tcp_rx_buffer: usize,
    /// TCP send buffer per socket, bytes.
    pub tcp_tx_buffer: usize,
    /// Congestion control.
    pub congestion: Congestion,
    /// Most sockets the stack may hold.
    pub max_sockets: usize,
    /// A TCP connection whose peer has sent nothing for this long while the stack waits
    /// for it (a handshake's ACK, unacknowledged data or FIN, a keep-alive's answer) is
    /// aborted. `None`: never (smoltcp's default; an abandoned connection then stays).
    pub tcp_timeout: Option<smoltcp::time::Duration>,
    /// Idle TCP connections are probed this often, so a peer that went away is noticed
    /// (within [`StackConfig::tcp_timeout`]). `None`: no keep-alive.
    pub tcp_keep_alive: Option<smoltcp::time::Duration>,
    /// Seed for smoltcp's randomness (initial sequence numbers, ports).
    pub seed: u64,
    /// The owner's index of this stack (e.g. its thread index), shown by `ioth endpoints`
    /// and used as the `thread` label of metrics.
    pub thread: u32,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            mac: [0x02, 0, 0, 0, 0, 1],
            shared_mac: false,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            gateway_v4: None,
            gateway_v6: None,
            mtu: 1500,
            tcp_rx_buffer: 64 * 1024,
            tcp_tx_buffer: 64 * 1024,
            congestion: Congestion::default(),
            max_sockets: 4096,
            tcp_timeout: Some(smoltcp::time::Duration::from_secs(120)),
            tcp_keep_alive: Some(smoltcp::time::Duration::from_secs(60)),
            seed: 0x10_7e_ad,
            thread: 0,
        }
    }
}

/// Most addresses one stack holds (smoltcp's compile-time limit, minus the link-local one).
pub const MAX_ADDRESSES: usize = 3;

impl StackConfig {
    /// Checks the addresses before anything is built (smoltcp panics on some).
    pub fn validate(&self) -> Result<(), StackError> {
        if self.mtu < 1280 {
            return Err(StackError::Mtu {
                mtu: self.mtu,
                max: self.mtu,
                why: "an IPv6 link needs at least 1280",
            });
        }
        if self.mac[0] & 1 != 0 || self.mac == [0; 6] {
            return Err(StackError::BadAddress {
                addr: Mac(self.mac).to_string(),
                why: "a stack MAC must be unicast and non-zero",
            });
        }
        if self.ipv4.len() + self.ipv6.len() > MAX_ADDRESSES {
            return Err(StackError::TooManyAddresses { max: MAX_ADDRESSES });
        }
        for (a, p) in &self.ipv4 {
            let bad = |why| StackError::BadAddress {
                addr: format!("{a}/{p}"),
                why,
            };
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                return Err(bad("not a unicast address"));
            }
            if *p == 0 || *p > 32 {
                return Err(bad("prefix length must be 1..=32"));
            }
        }
        for (a, p) in &self.ipv6 {
            if a.is_unspecified() || a.is_multicast() || *p == 0 || *p > 128 {
                return Err(StackError::BadAddress {
                    addr: format!("{a}/{p}"),
                    why: "not a unicast address with prefix 1..=128",
                });
            }
        }
        Ok(())
    }
}
