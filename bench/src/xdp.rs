//! The harness's own XDP programs (`ioth-bench-xdp`, built from `ebpf/ioth-ebpf` together
//! with the classifier by `dataplane/build.rs`): the live-frame generator, the XDP_DROP ceiling and frame counters.
//!
//! The generator runs `bench_tx` with BPF_PROG_TEST_RUN in live-frame mode
//! (BPF_F_TEST_XDP_LIVE_FRAMES, which aya 0.14 exposes as `TestRunAttrs::xdp_live_frames`):
//! the kernel builds a real frame from the given bytes for every run, and `XDP_TX` sends it
//! out of the load side's veth, so the server's veth receives it like any frame from the
//! wire — millions per second from one CPU, no socket or skb on the sending side.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};

use ioth_dataplane::classifier::BENCH_XDP_OBJECT as OBJECT;

/// One of the harness's XDP programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    /// Returns XDP_TX (the live-frame generator).
    Tx,
    /// Counts and drops everything (the receive ceiling).
    Drop,
    /// Counts and passes everything (lets a veth accept XDP_TX'ed frames for kernel servers).
    Pass,
    /// Counts and drops IPv4 UDP, passes the rest (counts echo replies on the load side).
    Sink,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Tx => "bench_tx",
            Prog::Drop => "bench_drop",
            Prog::Pass => "bench_pass",
            Prog::Sink => "bench_sink",
        }
    }
}

/// A loaded program with its own counters; attached in driver mode until dropped.
pub struct BenchXdp {
    ebpf: Ebpf,
    prog: Prog,
    counts: PerCpuArray<MapData, u64>,
    link: Option<XdpLinkId>,
}

impl std::fmt::Debug for BenchXdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchXdp")
            .field("prog", &self.prog)
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

/// Frames and bytes a counting program has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames.
    pub frames: u64,
    /// Bytes.
    pub bytes: u64,
}

impl BenchXdp {
    /// Loads `prog` (its own instance of the counters).
    pub fn load(prog: Prog) -> Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the benchmark's XDP programs")?;
        let p: &mut Xdp = ebpf
            .program_mut(prog.name())
            .with_context(|| format!("no program {}", prog.name()))?
            .try_into()?;
        p.load()
            .with_context(|| format!("loading {}", prog.name()))?;
        let counts = PerCpuArray::try_from(
            ebpf.take_map("BENCH_COUNTS")
                .context("no map BENCH_COUNTS")?,
        )?;
        Ok(Self {
            ebpf,
            prog,
            counts,
            link: None,
        })
    }

    fn program(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(self.prog.name())
            .context("program vanished")?
            .try_into()?)
    }

    /// Attaches in driver mode to `iface` (of the calling thread's network namespace).
    pub fn attach(&mut self, iface: &str) -> Result<()> {
        let name = self.prog.name();
        let link = self
            .program()?
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching {name} to {iface} (driver mode)"))?;
        self.link = Some(link);
        Ok(())
    }

    /// Frames and bytes counted so far, summed over CPUs.
    pub fn counts(&self) -> Result<Counts> {
        let f = self.counts.get(&0, 0)?.iter().sum();
        let b = self.counts.get(&1, 0)?.iter().sum();
        Ok(Counts {
            frames: f,
            bytes: b,
        })
    }
}

/// What one flood run sent.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    /// Frames the generator produced (each transmitted by XDP_TX; the receiving veth may
    /// still drop some if its ring is full).
    pub sent: u64,
    /// Wall time.
    pub secs: f64,
}

/// Runs the live-frame generator on `iface` (in the calling thread's namespace) for
/// `duration`: `frames` in turn, in turn, in chunks of runs per system call.
pub fn flood(iface: &str, frames: &[Vec<u8>], duration: Duration) -> Result<Flood> {
    if frames.is_empty() {
        bail!("flood: no frames to send");
    }
    let mut generator = BenchXdp::load(Prog::Tx)?;
    let ifindex = nix::net::if_::if_nametoindex(iface)
        .with_context(|| format!("no interface {iface} in the load namespace"))?;
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    let mut ctx = [0u8; 24];
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    // Each system call sets up a page pool first (milliseconds): calls of up to half a
    // second, sized from the rate measured so far and the time left, keep that small.
    let mut chunk: u32 = 65_536;
    let start = Instant::now();
    let end = start + duration;
    let mut sent = 0u64;
    let prog = generator.program()?;
    'run: loop {
        for f in frames {
            ctx[4..8].copy_from_slice(&(f.len() as u32).to_ne_bytes());
            let opts = TestRunOptions {
                data_in: Some(f),
                ctx_in: Some(&ctx),
                repeat: chunk,
                attrs: TestRunAttrs::new().xdp_live_frames(256),
                ..TestRunOptions::default()
            };
            prog.test_run(opts)
                .context("BPF_PROG_TEST_RUN with live frames")?;
            sent += u64::from(chunk);
            let now = Instant::now();
            if now >= end {
                break 'run;
            }
            let rate = sent as f64 / (now - start).as_secs_f64();
            let slice = (end - now).as_secs_f64().min(0.5) / frames.len() as f64;
            chunk = ((rate * slice) as u32).max(4096);
        }
    }
    Ok(Flood {
        sent,
        secs: start.elapsed().as_secs_f64(),
    })
}
