//! What `ioth-bench compare` measures: the systems and the workloads.

use serde::Serialize;

/// What serves the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// `ioth serve --app echo --app discard`: N threads, N IPs, smoltcp over AF_XDP.
    Ioth,
    /// Linux sockets, N threads with one IP each (recvmmsg/sendmmsg, epoll).
    KernelIp,
    /// Linux sockets, N threads sharing one IP with SO_REUSEPORT.
    KernelReuseport,
    /// The raw AF_XDP ceiling: the classifier and AF_XDP sockets, no stack (`raw-echo`).
    RawAfxdp,
    /// The receive ceiling: an XDP program that counts and drops every frame.
    XdpDrop,
    /// The same smoltcp stack over a TAP device (routed from the veth), `tap-echo`.
    SmoltcpTap,
    /// Kernel sockets on the host's own IP, no XDP program on the interface.
    HostDetached,
    /// The same with `ioth serve` (1 thread, other IP) attached to the interface.
    HostAttached,
    /// A kernel server in a namespace behind a VDE port of `ioth serve --vde` (vde_plug tap).
    VdeIoth,
    /// The same behind VirtualSquare's way: libpcap on the NIC into a `vde_switch`
    /// (vdeplug4's `vde_plug vde://DIR pcap://IF`), the namespace on a `vde_plug` tap.
    VdePcapplug,
    /// The same behind the kernel's way: the NIC and a veth into the namespace in a bridge.
    LinuxBridge,
    /// A kernel server on "host 2" (a namespace with Linux's vxlan device, reached over a
    /// second veth), behind a VXLAN port of `ioth serve --vxlan`.
    VxlanIoth,
    /// The same, the NIC bridged to a Linux vxlan device instead.
    VxlanKernel,
}

impl System {
    pub const ALL: [System; 13] = [
        System::Ioth,
        System::KernelIp,
        System::KernelReuseport,
        System::RawAfxdp,
        System::XdpDrop,
        System::SmoltcpTap,
        System::HostDetached,
        System::HostAttached,
        System::VdeIoth,
        System::VdePcapplug,
        System::LinuxBridge,
        System::VxlanIoth,
        System::VxlanKernel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Ioth => "ioth",
            System::KernelIp => "kernel-ip",
            System::KernelReuseport => "kernel-reuseport",
            System::RawAfxdp => "raw-afxdp",
            System::XdpDrop => "xdp-drop",
            System::SmoltcpTap => "smoltcp-tap",
            System::HostDetached => "host-detached",
            System::HostAttached => "host-attached",
            System::VdeIoth => "vde-ioth",
            System::VdePcapplug => "vde-pcap",
            System::LinuxBridge => "bridge",
            System::VxlanIoth => "vxlan-ioth",
            System::VxlanKernel => "vxlan-kernel",
        }
    }

    /// The workloads this system serves.
    pub(crate) fn serves(self, w: Workload) -> bool {
        use Workload::*;
        match self {
            System::Ioth | System::KernelIp | System::KernelReuseport => true,
            System::RawAfxdp => matches!(w, UdpEcho | UdpFlood | UdpEchoFlood),
            System::XdpDrop => w == UdpFlood,
            System::SmoltcpTap => {
                matches!(
                    w,
                    UdpEcho | TcpRr(1) | TcpRr(64) | TcpBulkUp | TcpBulkEcho | TcpBulkDown
                )
            }
            System::HostDetached | System::HostAttached => {
                matches!(w, TcpRr(64) | TcpBulkUp | TcpBulkEcho)
            }
            System::VdeIoth
            | System::VdePcapplug
            | System::LinuxBridge
            | System::VxlanIoth
            | System::VxlanKernel => {
                matches!(w, UdpEcho | TcpRr(1) | TcpRr(64))
            }
        }
    }
}

/// What the load does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Closed-loop UDP echo of 64-byte datagrams (a window of 16 in flight per target),
    /// from kernel sockets: packets/s and round-trip latency.
    UdpEcho,
    /// Open-loop flood of 64-byte UDP datagrams to the discard port (9) from the
    /// live-frame generator: what the server's sockets receive (packets/s), what reaches
    /// its veth.
    UdpFlood,
    /// The same flood to the echo port (7): what the server echoes back at saturation
    /// (packets/s), a server's echo throughput that no closed-loop client limits.
    UdpEchoFlood,
    /// TCP request/response of 64 bytes over this many connections.
    TcpRr(usize),
    /// TCP bulk towards the server (discard, port 9), one connection per thread.
    TcpBulkUp,
    /// TCP bulk through the server's echo (port 7): both directions at once.
    TcpBulkEcho,
    /// TCP bulk from the server's source (port 19), one connection per thread.
    TcpBulkDown,
    /// HTTP/1.1 GET, one request per connection, from `wrk` with 64 connections (port 80).
    HttpWrk,
}

impl Workload {
    pub fn name(self) -> String {
        match self {
            Workload::UdpEcho => "udp-echo-64B".into(),
            Workload::UdpFlood => "udp-flood-64B".into(),
            Workload::UdpEchoFlood => "udp-echo-flood-64B".into(),
            Workload::TcpRr(c) => format!("tcp-rr-64B-{c}conn"),
            Workload::TcpBulkUp => "tcp-bulk-up".into(),
            Workload::TcpBulkEcho => "tcp-bulk-echo".into(),
            Workload::TcpBulkDown => "tcp-bulk-down".into(),
            Workload::HttpWrk => "http-wrk-64conn".into(),
        }
    }
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Workload::UdpEcho => "packets/s",
            Workload::UdpFlood => "packets/s into sockets",
            Workload::UdpEchoFlood => "packets/s echoed",
            Workload::TcpRr(_) => "transactions/s",
            Workload::TcpBulkUp | Workload::TcpBulkEcho | Workload::TcpBulkDown => "Gbit/s",
            Workload::HttpWrk => "requests/s",
        }
    }
    pub(crate) fn port(self) -> u16 {
        match self {
            Workload::TcpBulkUp | Workload::UdpFlood => crate::frames::DISCARD_PORT,
            Workload::TcpBulkDown => 19,
            Workload::HttpWrk => 80,
            _ => 7,
        }
    }
}
