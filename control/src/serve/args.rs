//! `ioth serve`'s command line.

use std::net::{Ipv4Addr, Ipv6Addr};

use ioth_dataplane::{Congestion, ModeRequest};

fn parse_vxvde(s: &str) -> Result<ioth_dataplane::endpoint::switch::vxlan::VxlanSpec, String> {
    ioth_dataplane::endpoint::switch::vxlan::VxlanSpec::vxvde(s)
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 770"))
}

/// The application each thread serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// TCP and UDP echo (port 7 by default).
    Echo,
    /// HTTP/1.1: `GET /` answers with the thread's index and IP (port 80 by default).
    Http,
    /// TCP and UDP discard (port 9 by default).
    Discard,
    /// TCP source: zeros as fast as the peer reads (port 19, chargen's, by default).
    Source,
}

/// XDP attach mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Driver mode, else skb mode.
    Auto,
    /// Driver (native) mode only.
    Driver,
    /// Skb (generic) mode only.
    Skb,
}

impl From<Mode> for ModeRequest {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Auto => ModeRequest::Auto,
            Mode::Driver => ModeRequest::Driver,
            Mode::Skb => ModeRequest::Skb,
        }
    }
}

/// Options of `ioth serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Interface to attach to.
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: String,
    /// Worker threads; thread i owns the (i+1)-th address of each range (0 with --vde: a
    /// switch only).
    #[arg(long, default_value_t = 1)]
    pub threads: u16,
    /// First thread's IPv4 address and prefix, e.g. 10.99.0.11/24 (needed with threads).
    #[arg(long)]
    pub ipv4: Option<String>,
    /// Serve DIR as a vde_switch-compatible switch (`DIR/ctl`): VDE clients (`vde_plug
    /// vde://DIR`, `vdens vde://DIR`, QEMU, `ioth run`) are its ports; frames between them
    /// and the NIC go over AF_XDP. Without DIR: /run/ioth/vde/IF@nsN (`ioth run --iface IF`).
    #[arg(long, value_name = "DIR")]
    pub vde: Option<Option<std::path::PathBuf>>,
    /// Connect the switch to other hosts over VXLAN (repeatable):
    /// `REMOTE|GROUP[,vni=N][,port=P][,dev=IF]`; interoperates with Linux's vxlan device.
    #[arg(long, value_name = "SPEC")]
    pub vxlan: Vec<ioth_dataplane::endpoint::switch::vxlan::VxlanSpec>,
    /// Join a vxvde network (vdeplug4's `vxvde://`, repeatable): `[GROUP][,vni=N][,port=P],dev=IF`
    /// (defaults 239.0.0.1, VNI 1, port 14789), so VDE clients on other hosts join without a
    /// switch.
    #[arg(long, value_name = "SPEC", value_parser = parse_vxvde)]
    pub vxvde: Vec<ioth_dataplane::endpoint::switch::vxlan::VxlanSpec>,
    /// Permissions of the switch directory and its control socket, octal (`vde_switch -m`).
    #[arg(long, default_value = "700", value_parser = parse_mode)]
    pub vde_mode: u32,
    /// Group of the switch directory and its control socket (`vde_switch -g`), so its
    /// members may connect (with --vde-mode 770).
    #[arg(long, value_name = "GROUP")]
    pub vde_group: Option<String>,
    /// Most MACs learned behind one VDE port.
    #[arg(long, default_value_t = 16)]
    pub vde_macs_per_port: usize,
    /// Most frames per second a switch port may send (0: no limit); beyond, dropped.
    #[arg(long, default_value_t = 0)]
    pub port_pps: u64,
    /// Most bytes per second a switch port may send (0: no limit); beyond, dropped.
    #[arg(long, default_value_t = 0)]
    pub port_bps: u64,
    /// First thread's IPv6 address and prefix, e.g. fd00:99::11/64.
    #[arg(long)]
    pub ipv6: Option<String>,
    /// What each thread serves; repeat to serve several (each on its default port).
    #[arg(long, value_enum, default_values_t = [App::Echo])]
    pub app: Vec<App>,
    /// Port, with a single --app (default: 7 echo, 80 http, 9 discard).
    #[arg(long)]
    pub port: Option<u16>,
    /// Spin on the rings instead of sleeping in poll(2) (lower latency, a full core each).
    #[arg(long)]
    pub busy_poll: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Default IPv4 gateway of every stack.
    #[arg(long)]
    pub gateway4: Option<Ipv4Addr>,
    /// Default IPv6 gateway of every stack.
    #[arg(long)]
    pub gateway6: Option<Ipv6Addr>,
    /// TCP congestion control: none, reno or cubic.
    #[arg(long, default_value = "cubic")]
    pub congestion: Congestion,
    /// TCP buffer size per socket and direction, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub tcp_buffer: usize,
    /// Most sockets per stack.
    #[arg(long, default_value_t = 4096)]
    pub max_sockets: usize,
    /// The stacks' IP MTU (at most the link's, and what fits a UMEM frame: 1778).
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Seconds a TCP peer may stay silent while we wait on it (handshake, data, FIN,
    /// keep-alive) before the connection is aborted; 0: never.
    #[arg(long, default_value_t = 120)]
    pub tcp_timeout: u64,
    /// Seconds between keep-alive probes on an idle TCP connection; 0: none.
    #[arg(long, default_value_t = 60)]
    pub tcp_keepalive: u64,
    /// Listen backlog per thread and port (each slot is a socket with its buffers).
    #[arg(long, default_value_t = 16)]
    pub backlog: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (ADDR: IP:PORT, or PORT for loopback).
    #[arg(long)]
    pub metrics: Option<String>,
    /// First thread's MAC; thread i gets it plus i (default: locally administered, derived
    /// from the machine id, the interface name and the thread index). `host`: every thread
    /// uses the interface's own MAC and is told apart by its IP addresses only (ipvlan-style,
    /// for networks that drop frames from unknown source MACs, as clouds do).
    #[arg(long)]
    pub mac: Option<String>,
    /// Forward the XDP program's own log records (aya-log) to this process's log
    /// (`RUST_LOG=info` shows them). Only for a classifier this process loads, not a pinned one.
    #[arg(long)]
    pub ebpf_log: bool,
    /// Use addresses even if a host interface has them configured.
    #[arg(long)]
    pub force: bool,
    /// Testing aid: thread N panics one second after it is ready.
    #[arg(long, hide = true)]
    pub test_panic_thread: Option<u16>,
}

impl App {
    /// The port the app serves by default.
    pub fn default_port(self) -> u16 {
        match self {
            App::Echo => 7,
            App::Http => 80,
            App::Discard => 9,
            App::Source => 19,
        }
    }
}
