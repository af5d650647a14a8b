//! `cargo xtask bench`: builds the benchmark programs in release mode and runs them.
//!
//! `ioth-bench classifier` (the classifier's cost per frame), `ioth-bench stack` (a packet's
//! cost through a stack as its socket count grows) and `ioth-bench compare` (ioth
//! side by side with kernel sockets on a veth pair). Results go to `bench/results/`;
//! `--quick` is the smoke mode that `cargo xtask test` also runs (results elsewhere).

use anyhow::{Result, bail};

use crate::cmd::{self, command, root};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Smoke mode: every benchmark briefly, rough numbers (seconds, not minutes).
    #[arg(long)]
    pub quick: bool,
}

/// Builds `ioth-bench` and `ioth` (release).
fn build_release() -> Result<()> {
    cmd::run(command("cargo").args([
        "build",
        "--release",
        "--locked",
        "-p",
        "ioth-bench",
        "-p",
        "ioth-control",
    ]))
}

/// Builds and runs the benchmarks, writing results under `dir`.
pub fn run_benchmarks(quick: bool, dir: &str) -> Result<()> {
    build_release()?;
    let bench = root().join("target/release/ioth-bench");
    let mut c = command(&bench);
    c.args(["classifier", "--json", &format!("{dir}/classifier.json")]);
    if quick {
        c.arg("--quick");
    }
    cmd::run(&mut c)?;
    let mut c = command(&bench);
    c.args(["stack", "--json", &format!("{dir}/stack.json")]);
    if quick {
        c.arg("--quick");
    }
    cmd::run(&mut c)?;
    let mut c = command(&bench);
    c.args([
        "compare",
        "--json",
        &format!("{dir}/latest.json"),
        "--markdown",
        &format!("{dir}/latest.md"),
    ]);
    if quick {
        c.arg("--quick");
    }
    cmd::run(&mut c)?;
    // One endpoint flooded, its neighbour on the same queue measured.
    let mut c = command(&bench);
    c.args([
        "fairness",
        "--json",
        &format!("{dir}/fairness.json"),
        "--markdown",
        &format!("{dir}/fairness.md"),
    ]);
    if quick {
        c.args(["--reps", "1", "--secs", "0.5", "--threads", "2"]);
    }
    cmd::run(&mut c)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks load XDP programs: run them as root");
    }
    crate::setup::run()?;
    let dir = if args.quick {
        "target/bench-quick"
    } else {
        "bench/results"
    };
    run_benchmarks(args.quick, dir)
}

/// `cargo xtask soak --minutes N`: a long mixed-traffic run with SIGKILL and restart cycles
/// (`ioth-bench soak`); fails if fds, UMEM frames, map entries, sockets or memory grow.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
}

/// Builds and runs the soak, writing soak.json, soak.md and soak.svg into `dir`.
pub fn soak(minutes: f64, dir: &str) -> Result<()> {
    build_release()?;
    let bench = root().join("target/release/ioth-bench");
    cmd::run(command(&bench).args([
        "soak",
        "--minutes",
        &minutes.to_string(),
        "--out",
        dir,
        "--ioth",
        &root().join("target/release/ioth").to_string_lossy(),
    ]))
}

pub fn run_soak(args: &SoakArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the soak attaches XDP programs: run it as root");
    }
    crate::setup::run()?;
    soak(args.minutes, "bench/results/soak")
}
