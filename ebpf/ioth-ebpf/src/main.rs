//! The ioth XDP classifier.
//!
//! For every frame on the interface it decides which endpoint (a thread's stack) owns it and
//! redirects it into that endpoint's AF_XDP socket for the frame's rx queue; everything no
//! endpoint owns passes to the kernel untouched. The decision table is DESIGN.md's, and
//! `ioth_common::classify` is its reference: the differential test proves this program and
//! the reference agree frame by frame.
//!
//! This program must never modify a frame, never allocate, and never loop.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use ioth_common::{
    Config, Counter, EndpointOwner, EndpointSlot, EndpointStats, EndpointTx, FANOUT_SLOT,
    FIRST_ENDPOINT_SLOT, Ipv4Key, Ipv6Key, MAX_ENDPOINTS, MAX_QUEUES, MacKey, NO_SLOT,
    SLOTS_PER_QUEUE, Trace, XSK_MAP_ENTRIES, wire::*, xsk_index,
};

#[map(name = "IOTH_BY_MAC")]
static BY_MAC: HashMap<MacKey, EndpointSlot> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

#[map(name = "IOTH_BY_IPV4")]
static BY_IPV4: HashMap<Ipv4Key, EndpointSlot> = HashMap::with_max_entries(MAX_ENDPOINTS * 4, 0);

#[map(name = "IOTH_BY_IPV6")]
static BY_IPV6: HashMap<Ipv6Key, EndpointSlot> = HashMap::with_max_entries(MAX_ENDPOINTS * 4, 0);

#[map(name = "IOTH_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(XSK_MAP_ENTRIES, 0);

#[map(name = "IOTH_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "IOTH_EP_STATS")]
static EP_STATS: PerCpuArray<EndpointStats> = PerCpuArray::with_max_entries(SLOTS_PER_QUEUE, 0);

#[map(name = "IOTH_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Who owns each slot: written and read by user space only (`ioth endpoints`).
#[map(name = "IOTH_OWNERS")]
static OWNERS: HashMap<u32, EndpointOwner> = HashMap::with_max_entries(SLOTS_PER_QUEUE, 0);

#[map(name = "IOTH_EP_TX")]
static EP_TX: Array<EndpointTx> = Array::with_max_entries(SLOTS_PER_QUEUE, 0);

#[map(name = "IOTH_TRACE")]
static TRACE: Array<Trace> = Array::with_max_entries(1, 0);

/// Set to 1 by the loader to record every decision in `IOTH_TRACE` (tests only). When 0 the
/// verifier sees a constant and removes the tracing code.
#[unsafe(no_mangle)]
static IOTH_TRACE_ON: Global<u32> = Global::new(0);

/// Who owns a frame, before the socket lookup.
#[derive(Clone, Copy)]
enum Owner {
    Endpoint(u32),
    Fanout,
    Kernel,
}

/// The only error: an invariant the program relies on was broken (a map entry that must exist
/// is missing). It turns into `XDP_ABORTED`.
struct Broken;

#[xdp]
pub fn ioth_classify(ctx: XdpContext) -> u32 {
    let action = match try_classify(&ctx) {
        Ok(action) => action,
        Err(Broken) => {
            aya_log_ebpf::error!(&ctx, "ioth: classifier invariant broken");
            xdp_action::XDP_ABORTED
        }
    };
    let counter = match action {
        xdp_action::XDP_REDIRECT => Counter::Redirect,
        xdp_action::XDP_PASS => Counter::Pass,
        xdp_action::XDP_DROP => Counter::Drop,
        _ => Counter::Aborted,
    };
    if let Some(count) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot, valid for the program's run; no other writer on this CPU.
        unsafe { *count += 1 };
    }
    action
}

/// A pointer to `N` bytes at `offset`, if the frame holds them.
#[inline(always)]
fn bytes_at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return None;
    }
    // SAFETY: the range [start + offset, start + offset + N) lies inside the packet (checked
    // just above, which is also what the verifier checks); [u8; N] has alignment 1.
    Some(unsafe { *((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn valid_slot(value: Option<*const EndpointSlot>) -> Option<u32> {
    // SAFETY: a pointer returned by a successful hash-map lookup is valid for this run.
    let slot = unsafe { (*value?).slot };
    if (FIRST_ENDPOINT_SLOT..SLOTS_PER_QUEUE).contains(&slot) {
        Some(slot)
    } else {
        None
    }
}

#[inline(always)]
fn by_ipv4(addr: [u8; 4]) -> Option<u32> {
    valid_slot(BY_IPV4.get_ptr(Ipv4Key { addr }))
}

#[inline(always)]
fn by_ipv6(addr: [u8; 16]) -> Option<u32> {
    valid_slot(BY_IPV6.get_ptr(Ipv6Key { addr }))
}

#[inline(always)]
fn endpoint(slot: Option<u32>) -> Owner {
    match slot {
        Some(slot) => Owner::Endpoint(slot),
        None => Owner::Kernel,
    }
}

/// EtherType and L3 offset after at most one 802.1Q tag.
#[inline(always)]
fn l3_of(ctx: &XdpContext, outer: [u8; 2]) -> Option<(u16, usize)> {
    let ethertype = u16::from_be_bytes(outer);
    if ethertype == ETH_P_8021Q {
        let tag = bytes_at::<4>(ctx, ETH_HLEN)?;
        Some((u16::from_be_bytes([tag[2], tag[3]]), ETH_HLEN + VLAN_HLEN))
    } else {
        Some((ethertype, ETH_HLEN))
    }
}

#[inline(always)]
fn arp_target(ctx: &XdpContext, l3: usize) -> Option<[u8; 4]> {
    let arp = bytes_at::<ARP_LEN>(ctx, l3)?;
    let ethernet_ipv4 = arp[0] == 0
        && arp[1] == 1
        && u16::from_be_bytes([arp[2], arp[3]]) == ETH_P_IPV4
        && arp[4] == 6
        && arp[5] == 4;
    if ethernet_ipv4 {
        Some([arp[24], arp[25], arp[26], arp[27]])
    } else {
        None
    }
}

#[inline(always)]
fn ns_target(ctx: &XdpContext, l3: usize) -> Option<[u8; 16]> {
    let ip = bytes_at::<IPV6_HLEN>(ctx, l3)?;
    if ip[0] >> 4 != 6 || ip[IPV6_NEXT_OFF] != IPPROTO_ICMPV6 {
        return None;
    }
    let icmp = bytes_at::<NS_LEN>(ctx, l3 + IPV6_HLEN)?;
    if icmp[0] != ICMPV6_NS || icmp[1] != 0 {
        return None;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&icmp[NS_TARGET_OFF..NS_TARGET_OFF + 16]);
    Some(target)
}

#[inline(always)]
fn owner(ctx: &XdpContext, fanout: bool) -> Owner {
    let Some(eth) = bytes_at::<ETH_HLEN>(ctx, 0) else {
        return Owner::Kernel;
    };
    let dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let outer = [eth[12], eth[13]];

    if dst[0] & 1 == 0 {
        if let Some(slot) = valid_slot(BY_MAC.get_ptr(MacKey::new(dst))) {
            return Owner::Endpoint(slot);
        }
        let Some((ethertype, l3)) = l3_of(ctx, outer) else {
            return Owner::Kernel;
        };
        return match ethertype {
            ETH_P_IPV4 => match bytes_at::<IPV4_MIN_HLEN>(ctx, l3) {
                Some(ip) if ip[0] >> 4 == 4 && ip[0] & 0xf >= 5 => {
                    endpoint(by_ipv4([ip[16], ip[17], ip[18], ip[19]]))
                }
                _ => Owner::Kernel,
            },
            ETH_P_IPV6 => match bytes_at::<IPV6_HLEN>(ctx, l3) {
                Some(ip) if ip[0] >> 4 == 6 => {
                    let mut dst = [0u8; 16];
                    dst.copy_from_slice(&ip[IPV6_DST_OFF..IPV6_DST_OFF + 16]);
                    endpoint(by_ipv6(dst))
                }
                _ => Owner::Kernel,
            },
            ETH_P_ARP => endpoint(arp_target(ctx, l3).and_then(by_ipv4)),
            _ => Owner::Kernel,
        };
    }

    let others = if fanout { Owner::Fanout } else { Owner::Kernel };
    let Some((ethertype, l3)) = l3_of(ctx, outer) else {
        return others;
    };
    match ethertype {
        ETH_P_ARP => endpoint(arp_target(ctx, l3).and_then(by_ipv4)),
        ETH_P_IPV6 => match ns_target(ctx, l3) {
            Some(target) => endpoint(by_ipv6(target)),
            None => others,
        },
        _ => others,
    }
}

#[inline(always)]
fn trace(slot: u32, index: u32) {
    if IOTH_TRACE_ON.load() == 0 {
        return;
    }
    // Referenced here (tracing only) so that the owners and tx maps belong to the program's maps:
    // `ioth endpoints` finds them through the program attached to an interface.
    let _ = OWNERS.get_ptr(0u32);
    let _ = EP_TX.get_ptr(0);
    if let Some(t) = TRACE.get_ptr_mut(0) {
        // SAFETY: array slot 0 exists for the map's lifetime; tracing is used by a single
        // test thread, so no concurrent writer.
        unsafe {
            (*t).seq = (*t).seq.wrapping_add(1);
            (*t).slot = slot;
            (*t).xsk_index = index;
        }
    }
}

#[inline(always)]
fn try_classify(ctx: &XdpContext) -> Result<u32, Broken> {
    let Some(config) = CONFIG.get_ptr(0) else {
        return Err(Broken);
    };
    // SAFETY: array slot 0 exists for the map's lifetime; u32 reads cannot tear.
    let fanout = unsafe { (*config).flags } & ioth_common::CONFIG_FANOUT != 0;
    let queue = ctx.rx_queue_index();
    let (slot, fallback) = match owner(ctx, fanout) {
        Owner::Kernel => {
            trace(NO_SLOT, NO_SLOT);
            return Ok(xdp_action::XDP_PASS);
        }
        Owner::Endpoint(slot) => (slot, xdp_action::XDP_DROP),
        Owner::Fanout => (FANOUT_SLOT, xdp_action::XDP_PASS),
    };
    let Some(stats) = EP_STATS.get_ptr_mut(slot) else {
        return Err(Broken);
    };
    if queue >= MAX_QUEUES {
        trace(slot, NO_SLOT);
        if fallback == xdp_action::XDP_DROP {
            // SAFETY: per-CPU array slot, valid for this run, no other writer on this CPU.
            unsafe { (*stats).rx_dropped += 1 };
        }
        return Ok(fallback);
    }
    let index = xsk_index(queue, slot);
    trace(slot, index);
    match XSKS.redirect(index, u64::from(fallback)) {
        Ok(action) => {
            // SAFETY: as above.
            unsafe {
                (*stats).rx_packets += 1;
                (*stats).rx_bytes += (ctx.data_end() - ctx.data()) as u64;
            }
            Ok(action)
        }
        Err(action) => {
            if action == xdp_action::XDP_DROP {
                // SAFETY: as above.
                unsafe { (*stats).rx_dropped += 1 };
            }
            Ok(action)
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
