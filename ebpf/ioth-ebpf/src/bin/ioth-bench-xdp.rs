//! XDP programs for the benchmark harness (`ioth-bench`), never attached by ioth itself.
//!
//! - `bench_tx`: returns `XDP_TX`. The harness runs it with BPF_PROG_TEST_RUN in live-frame
//!   mode on the load side's veth: every run transmits the frame to the server's side
//!   (a frame generator of millions of frames per second).
//! - `bench_drop`: counts and drops every frame: the receive ceiling on the server's veth.
//! - `bench_pass`: counts and passes every frame. A veth drops frames that arrive by XDP_TX
//!   unless a driver-mode program is attached on it; the kernel systems get this one.
//! - `bench_sink`: counts and drops IPv4 UDP, passes the rest (ARP keeps working): counts
//!   the echo replies that come back to the load side.
//!
//! Counters: `BENCH_COUNTS` (per CPU) index 0 frames, index 1 bytes. Nothing here modifies
//! a frame, allocates or loops.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

#[map(name = "BENCH_COUNTS")]
static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;

#[inline(always)]
fn count(ctx: &XdpContext) {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(p) = COUNTS.get_ptr_mut(0) {
        // SAFETY: a per-CPU array slot, valid for the program's run; no other writer on
        // this CPU.
        unsafe { *p += 1 };
    }
    if let Some(b) = COUNTS.get_ptr_mut(1) {
        // SAFETY: as above.
        unsafe { *b += len };
    }
}

/// Whether the frame is IPv4 UDP (no VLAN tag; the harness sends none).
#[inline(always)]
fn is_ipv4_udp(ctx: &XdpContext) -> bool {
    let start = ctx.data();
    if start + ETH_HLEN + 20 > ctx.data_end() {
        return false;
    }
    // SAFETY: the 34 bytes read lie inside the packet (checked just above, which is also
    // what the verifier checks); u8 reads have alignment 1.
    let (t0, t1, proto) = unsafe {
        (
            *((start + 12) as *const u8),
            *((start + 13) as *const u8),
            *((start + ETH_HLEN + 9) as *const u8),
        )
    };
    u16::from_be_bytes([t0, t1]) == ETH_P_IPV4 && proto == IPPROTO_UDP
}

#[xdp]
pub fn bench_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_drop(ctx: XdpContext) -> u32 {
    count(&ctx);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_pass(ctx: XdpContext) -> u32 {
    count(&ctx);
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    if is_ipv4_udp(&ctx) {
        count(&ctx);
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
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
