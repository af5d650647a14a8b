//! `ioth-bench stack`: how the cost of one packet through a stack grows with the number of
//! sockets it holds.
//!
//! Two stacks on the in-memory link (no delay, no loss: the same `Stack` code that runs over
//! AF_XDP, without the kernel): B sends a 64-byte UDP datagram to A's echo socket and waits
//! for the answer, again and again. Both stacks also hold N idle established TCP connections
//! to each other. smoltcp looks a received segment's socket up by walking the socket set and
//! walks every socket on each egress pass, so the time per round trip grows with N; this
//! measures by how much. The numbers include both stacks and the in-memory wire (a `Vec`
//! per frame), not the kernel.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant as WallInstant},
};

use anyhow::{Result, bail};
use ioth_dataplane::{
    SocketHandle, Stack, StackConfig, TcpListener,
    link::sim::{self, Impairments, SimLink},
};
use serde::Serialize;
use smoltcp::{
    socket::{tcp, udp},
    time::Instant,
    wire::{IpAddress, IpEndpoint},
};

/// Options of `ioth-bench stack`.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// Smoke mode: few connection counts, short runs (checks the harness; numbers are rough).
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per connection count.
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    /// Seconds per repetition.
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/stack.json")]
    pub json: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    idle_tcp_connections: usize,
    sockets_per_stack: usize,
    us_per_round_trip_median: f64,
    us_per_round_trip_min: f64,
    us_per_round_trip_max: f64,
    /// Median relative to the row with no idle connection.
    cost_ratio: f64,
    reps: u32,
}

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO: u16 = 7;
const IDLE: u16 = 9;

fn stacks(max_sockets: usize) -> Result<(Stack<SimLink>, Stack<SimLink>)> {
    let (la, lb) = sim::pair(Impairments {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        ..Impairments::default()
    });
    let cfg = |mac: u8, ip| StackConfig {
        mac: [0x02, 0, 0, 0, 0, mac],
        ipv4: vec![(ip, 24)],
        // Idle connections need no room: keep the memory of thousands of sockets small.
        tcp_rx_buffer: 1024,
        tcp_tx_buffer: 1024,
        max_sockets,
        ..StackConfig::default()
    };
    let t0 = Instant::from_millis(0);
    Ok((
        Stack::new(la, cfg(1, A), t0)?,
        Stack::new(lb, cfg(2, B), t0)?,
    ))
}

/// A virtual clock that moves 1 µs per call, so smoltcp's timers behave.
struct Clock(i64);
impl Clock {
    fn tick(&mut self) -> Instant {
        self.0 += 1;
        Instant::from_micros(self.0)
    }
}

/// Opens `n` idle connections from B to A. Returns B's handles (kept open).
fn connect(
    a: &mut Stack<SimLink>,
    b: &mut Stack<SimLink>,
    clock: &mut Clock,
    n: usize,
) -> Result<()> {
    let mut listener = TcpListener::bind(a, IDLE, 64)?;
    let mut accepted = 0;
    let mut pending = Vec::new();
    let mut next_port = 10_000u16;
    while accepted < n {
        // Keep up to 64 handshakes in flight.
        while pending.len() < 64 && accepted + pending.len() < n {
            let h = b.tcp_socket()?;
            let h = b.connect_tcp(h, IpEndpoint::new(IpAddress::Ipv4(A), IDLE), next_port)?;
            next_port = next_port.wrapping_add(1).max(10_000);
            pending.push(h);
        }
        for _ in 0..4 {
            let now = clock.tick();
            b.poll(now)?;
            a.poll(now)?;
        }
        while listener.accept(a).is_some() {
            accepted += 1;
        }
        pending
            .retain(|h| b.sockets().get::<tcp::Socket<'_>>(*h).state() != tcp::State::Established);
        if clock.0 > 60_000_000 {
            bail!("only {accepted} of {n} idle connections came up");
        }
    }
    Ok(())
}

/// Round trips per wall-clock second for `secs`.
fn round_trips(
    a: &mut Stack<SimLink>,
    b: &mut Stack<SimLink>,
    clock: &mut Clock,
    (ua, ub): (SocketHandle, SocketHandle),
    secs: f64,
) -> Result<f64> {
    let to_a = IpEndpoint::new(IpAddress::Ipv4(A), ECHO);
    let payload = [0x5au8; 64];
    let mut buf = [0u8; 2048];
    let start = WallInstant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            b.sockets()
                .get_mut::<udp::Socket<'_>>(ub)
                .send_slice(&payload, to_a)
                .map_err(|e| anyhow::anyhow!("send: {e}"))?;
            let now = clock.tick();
            b.poll(now)?;
            a.poll(now)?;
            let s = a.sockets().get_mut::<udp::Socket<'_>>(ua);
            let (len, meta) = s
                .recv_slice(&mut buf)
                .map_err(|e| anyhow::anyhow!("echo did not arrive: {e}"))?;
            s.send_slice(&buf[..len], meta.endpoint)
                .map_err(|e| anyhow::anyhow!("echo: {e}"))?;
            a.poll(now)?;
            b.poll(now)?;
            b.sockets()
                .get_mut::<udp::Socket<'_>>(ub)
                .recv_slice(&mut buf)
                .map_err(|e| anyhow::anyhow!("answer did not arrive: {e}"))?;
            n += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

pub fn run(args: &StackArgs) -> Result<()> {
    let counts: &[usize] = if args.quick {
        &[0, 100]
    } else {
        &[0, 10, 100, 1000, 4000]
    };
    let (reps, secs) = if args.quick {
        (1, 0.2)
    } else {
        (args.reps.max(1), args.secs)
    };
    let mut rows: Vec<Row> = Vec::new();
    println!(
        "{:>12} {:>8} {:>16} {:>16} {:>8}",
        "IDLE CONNS", "SOCKETS", "µs/ROUND TRIP", "[min–max]", "RATIO"
    );
    for &n in counts {
        let (mut a, mut b) = stacks(n + 128)?;
        let mut clock = Clock(0);
        connect(&mut a, &mut b, &mut clock, n)?;
        let ua = a.udp_bind(ECHO, 16)?;
        let ub = b.udp_bind(4000, 16)?;
        // Resolve the neighbours and warm up.
        round_trips(&mut a, &mut b, &mut clock, (ua, ub), 0.05).ok();
        round_trips(&mut a, &mut b, &mut clock, (ua, ub), secs / 5.0)?;
        let mut us: Vec<f64> = (0..reps)
            .map(|_| round_trips(&mut a, &mut b, &mut clock, (ua, ub), secs).map(|r| 1e6 / r))
            .collect::<Result<_>>()?;
        us.sort_by(f64::total_cmp);
        let median = us[us.len() / 2];
        let base = rows.first().map_or(median, |r| r.us_per_round_trip_median);
        let row = Row {
            idle_tcp_connections: n,
            sockets_per_stack: a.sockets().iter().count(),
            us_per_round_trip_median: median,
            us_per_round_trip_min: us[0],
            us_per_round_trip_max: us[us.len() - 1],
            cost_ratio: median / base,
            reps,
        };
        println!(
            "{:>12} {:>8} {:>16.2} {:>16} {:>7.2}x",
            n,
            row.sockets_per_stack,
            median,
            format!(
                "[{:.2}–{:.2}]",
                row.us_per_round_trip_min, row.us_per_round_trip_max
            ),
            row.cost_ratio
        );
        rows.push(row);
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&rows)?)?;
    println!("stack: results in {}", args.json.display());
    Ok(())
}
