//! Types shared by the XDP classifier (`ioth-ebpf`) and user space (`ioth-dataplane`).
//!
//! This crate owns the *layout* of every map key and value and every constant both sides
//! must agree on. Each type is `#[repr(C)]` with explicit padding fields and a compile-time
//! size assertion, so the kernel's view and user space's view cannot drift apart.
//!
//! It also holds [`classify`], the pure-Rust reference of the classifier's decision
//! function. The eBPF program is written independently; the differential test runs both on
//! the same frames and demands the same verdict and target for every one of them.
#![no_std]
#![deny(unsafe_code)]

pub mod classify;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;

/// Highest number of rx queues of one interface the classifier serves (queues `0..MAX_QUEUES`).
///
/// Frames that arrive on a higher queue and are owned by an endpoint are dropped (counted);
/// unowned frames still pass to the kernel.
pub const MAX_QUEUES: u32 = 16;

/// Number of socket slots per rx queue in the [`XSK_MAP`] (slot 0 is [`FANOUT_SLOT`]).
pub const SLOTS_PER_QUEUE: u32 = 16384;

/// The slot of the per-queue shared socket that receives broadcast/multicast frames that no
/// single endpoint owns, when [`CONFIG_FANOUT`] is set.
pub const FANOUT_SLOT: u32 = 0;

/// Lowest slot an endpoint can have.
pub const FIRST_ENDPOINT_SLOT: u32 = 1;

/// Highest number of endpoints on one interface.
pub const MAX_ENDPOINTS: u32 = SLOTS_PER_QUEUE - FIRST_ENDPOINT_SLOT;

/// Entries of the XskMap: one per (rx queue, slot).
pub const XSK_MAP_ENTRIES: u32 = MAX_QUEUES * SLOTS_PER_QUEUE;

/// Map names, as the eBPF object names them (kernel object names are at most 15 bytes).
pub mod map_names {
    /// `HashMap<MacKey, EndpointSlot>`: endpoints owned by destination MAC.
    pub const BY_MAC: &str = "IOTH_BY_MAC";
    /// `HashMap<Ipv4Key, EndpointSlot>`: endpoints owned by IPv4 address.
    pub const BY_IPV4: &str = "IOTH_BY_IPV4";
    /// `HashMap<Ipv6Key, EndpointSlot>`: endpoints owned by IPv6 address.
    pub const BY_IPV6: &str = "IOTH_BY_IPV6";
    /// `XskMap`, indexed by [`super::xsk_index`].
    pub const XSKS: &str = "IOTH_XSKS";
    /// `PerCpuArray<u64>`, indexed by [`super::Counter`].
    pub const COUNTERS: &str = "IOTH_COUNTERS";
    /// `PerCpuArray<EndpointStats>`, indexed by slot.
    pub const EP_STATS: &str = "IOTH_EP_STATS";
    /// `Array<Config>` with one entry.
    pub const CONFIG: &str = "IOTH_CONFIG";
    /// `Array<Trace>` with one entry; written only when the program is loaded with tracing on.
    pub const TRACE: &str = "IOTH_TRACE";
    /// `HashMap<u32, EndpointOwner>`: who owns each slot (user space only; the program never
    /// reads it). Lets `ioth endpoints` name owners and find dead ones.
    pub const OWNERS: &str = "IOTH_OWNERS";
    /// `Array<EndpointTx>`, indexed by slot: the owner's transmit counters, written by the
    /// owning process a few times a second (the program never reads it).
    pub const EP_TX: &str = "IOTH_EP_TX";
}

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "ioth_classify";

/// Name of the read-only global that turns on decision tracing (set at load time; the
/// verifier removes the tracing code when it is 0).
pub const TRACE_GLOBAL: &str = "IOTH_TRACE_ON";

/// XskMap index of `slot` on rx queue `queue`.
#[inline(always)]
pub const fn xsk_index(queue: u32, slot: u32) -> u32 {
    queue * SLOTS_PER_QUEUE + slot
}

/// Key of [`map_names::BY_MAC`]: a MAC address padded to 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacKey {
    /// The MAC address, as on the wire.
    pub addr: [u8; 6],
    /// Always zero.
    pub pad: [u8; 2],
}

impl MacKey {
    /// A key for `addr`.
    #[inline(always)]
    pub const fn new(addr: [u8; 6]) -> Self {
        Self { addr, pad: [0; 2] }
    }
}

/// Key of [`map_names::BY_IPV4`]: an IPv4 address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ipv4Key {
    /// The address, as on the wire.
    pub addr: [u8; 4],
}

/// Key of [`map_names::BY_IPV6`]: an IPv6 address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ipv6Key {
    /// The address, as on the wire.
    pub addr: [u8; 16],
}

/// Value of the ownership maps: which endpoint slot owns the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointSlot {
    /// In `FIRST_ENDPOINT_SLOT..SLOTS_PER_QUEUE`.
    pub slot: u32,
}

/// Value of [`map_names::OWNERS`]: the process and thread that registered a slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointOwner {
    /// Process id.
    pub pid: u32,
    /// Thread id (0 if not known).
    pub tid: u32,
    /// The owner's own index of the endpoint (`ioth serve`: the thread index; a port: its
    /// number), for labels.
    pub thread: u32,
    /// What the endpoint is: [`OWNER_THREAD`], [`OWNER_PORT`] or [`OWNER_SWITCH`].
    pub kind: u32,
    /// The process's start time (clock ticks after boot, `/proc/PID/stat` field 22): with
    /// the pid, an identity a reused pid does not match (0: not known).
    pub start: u64,
    /// The inode of the owner's pid namespace (`/proc/PID/ns/pid`): `pid` means something
    /// only to a reaper in the same one (0: not known).
    pub pidns: u64,
}

/// [`EndpointOwner::kind`]: a thread's own stack.
pub const OWNER_THREAD: u32 = 0;
/// [`EndpointOwner::kind`]: a switch port (a VDE client, a VXLAN tunnel).
pub const OWNER_PORT: u32 = 1;
/// [`EndpointOwner::kind`]: a switch's own endpoint (its uplink to the NIC).
pub const OWNER_SWITCH: u32 = 2;

/// Per-endpoint receive counters kept by the classifier (per CPU; user space sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// Frames redirected to the endpoint's socket.
    pub rx_packets: u64,
    /// Bytes of those frames (Ethernet header included).
    pub rx_bytes: u64,
    /// Frames the endpoint owns that found no socket on their rx queue and were dropped.
    pub rx_dropped: u64,
}

/// Per-endpoint transmit counters (one entry of [`map_names::EP_TX`]). The classifier never
/// sees transmitted frames (AF_XDP sends them past it), so the endpoint's owner publishes
/// them here for other processes (`ioth endpoints`, `ioth top`, `ioth exporter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointTx {
    /// Frames the endpoint's stack transmitted.
    pub tx_packets: u64,
    /// Bytes of those frames (Ethernet header included).
    pub tx_bytes: u64,
    /// TCP segments the stack sent again (retransmissions seen on the wire).
    pub tcp_retransmits: u64,
    /// How the endpoint's AF_XDP sockets are bound: [`BIND_UNKNOWN`], [`BIND_COPY`] or
    /// [`BIND_ZEROCOPY`].
    pub bind: u64,
}

/// [`EndpointTx::bind`]: not published yet.
pub const BIND_UNKNOWN: u64 = 0;
/// [`EndpointTx::bind`]: XDP_COPY.
pub const BIND_COPY: u64 = 1;
/// [`EndpointTx::bind`]: XDP_ZEROCOPY.
pub const BIND_ZEROCOPY: u64 = 2;

/// The classifier's run-time configuration (one entry of [`map_names::CONFIG`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Bit set of `CONFIG_*` flags.
    pub flags: u32,
}

/// [`Config::flags`]: redirect broadcast/multicast that no endpoint owns to the per-queue
/// [`FANOUT_SLOT`] socket (or pass it, when that socket is missing) instead of passing it.
pub const CONFIG_FANOUT: u32 = 1;

/// The verdict counters of [`map_names::COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `XDP_REDIRECT` into an AF_XDP socket.
    Redirect = 0,
    /// `XDP_PASS` to the kernel.
    Pass = 1,
    /// `XDP_DROP`: owned by an endpoint that has no socket on the frame's queue.
    Drop = 2,
    /// `XDP_ABORTED`: an internal error of the program (never expected).
    Aborted = 3,
}

impl Counter {
    /// All counters, in index order.
    pub const ALL: [Counter; 4] = [
        Counter::Redirect,
        Counter::Pass,
        Counter::Drop,
        Counter::Aborted,
    ];
    /// Number of counters.
    pub const COUNT: u32 = 4;

    /// The Prometheus/CLI label of the counter.
    pub const fn label(self) -> &'static str {
        match self {
            Counter::Redirect => "redirect",
            Counter::Pass => "pass",
            Counter::Drop => "drop",
            Counter::Aborted => "aborted",
        }
    }
}

/// The last decision of the program, written only when it was loaded with tracing on.
/// Used by the differential test to learn the *target*, not only the verdict.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Trace {
    /// Incremented on every traced run, so a stale trace is detectable.
    pub seq: u32,
    /// The owning slot, or [`NO_SLOT`].
    pub slot: u32,
    /// The XskMap index the program redirected to (or tried to), or [`NO_SLOT`].
    pub xsk_index: u32,
    /// Always zero.
    pub pad: u32,
}

/// "No slot" in [`Trace`].
pub const NO_SLOT: u32 = u32::MAX;

/// XDP actions (values of `enum xdp_action`), so user space needs no kernel headers.
pub mod xdp_action {
    /// `XDP_ABORTED`.
    pub const ABORTED: u32 = 0;
    /// `XDP_DROP`.
    pub const DROP: u32 = 1;
    /// `XDP_PASS`.
    pub const PASS: u32 = 2;
    /// `XDP_TX`.
    pub const TX: u32 = 3;
    /// `XDP_REDIRECT`.
    pub const REDIRECT: u32 = 4;
}

/// Ethernet, ARP, IP and ICMPv6 constants the classifier needs.
pub mod wire {
    /// Length of an Ethernet header without VLAN tag.
    pub const ETH_HLEN: usize = 14;
    /// Length of one 802.1Q tag.
    pub const VLAN_HLEN: usize = 4;
    /// EtherType IPv4.
    pub const ETH_P_IPV4: u16 = 0x0800;
    /// EtherType ARP.
    pub const ETH_P_ARP: u16 = 0x0806;
    /// EtherType 802.1Q VLAN tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// EtherType IPv6.
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// Length of an ARP packet for Ethernet/IPv4.
    pub const ARP_LEN: usize = 28;
    /// Offset of the target protocol address in an Ethernet/IPv4 ARP packet.
    pub const ARP_TPA_OFF: usize = 24;
    /// Minimum IPv4 header length.
    pub const IPV4_MIN_HLEN: usize = 20;
    /// Offset of the destination address in the IPv4 header.
    pub const IPV4_DST_OFF: usize = 16;
    /// IPv6 header length.
    pub const IPV6_HLEN: usize = 40;
    /// Offset of the next-header field in the IPv6 header.
    pub const IPV6_NEXT_OFF: usize = 6;
    /// Offset of the destination address in the IPv6 header.
    pub const IPV6_DST_OFF: usize = 24;
    /// IP protocol number of ICMPv6.
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// ICMPv6 neighbour solicitation type.
    pub const ICMPV6_NS: u8 = 135;
    /// Length of a neighbour solicitation up to and including its target address.
    pub const NS_LEN: usize = 24;
    /// Offset of the target address in a neighbour solicitation.
    pub const NS_TARGET_OFF: usize = 8;
}

// Layout checks: no implicit padding anywhere, sizes as the eBPF side expects.
const _: () = assert!(core::mem::size_of::<MacKey>() == 8);
const _: () = assert!(core::mem::size_of::<Ipv4Key>() == 4);
const _: () = assert!(core::mem::size_of::<Ipv6Key>() == 16);
const _: () = assert!(core::mem::size_of::<EndpointSlot>() == 4);
const _: () = assert!(core::mem::size_of::<EndpointStats>() == 24);
const _: () = assert!(core::mem::size_of::<EndpointTx>() == 32);
const _: () = assert!(core::mem::size_of::<Config>() == 4);
const _: () = assert!(core::mem::size_of::<Trace>() == 16);
const _: () = assert!(core::mem::size_of::<EndpointOwner>() == 32);
const _: () = assert!(XSK_MAP_ENTRIES == MAX_QUEUES * SLOTS_PER_QUEUE);

#[cfg(feature = "user")]
mod pod {
    #![expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    use super::*;

    // SAFETY (all impls below): each type is #[repr(C)], Copy, made only of integers and
    // integer arrays, has no implicit padding (asserted above) and every bit pattern is valid.
    macro_rules! pod {
        ($($t:ty),*) => { $(
            // SAFETY: see the comment above the macro.
            unsafe impl aya::Pod for $t {}
        )* };
    }
    pod!(
        MacKey,
        Ipv4Key,
        Ipv6Key,
        EndpointSlot,
        EndpointStats,
        EndpointTx,
        Config,
        Trace,
        EndpointOwner
    );
}
