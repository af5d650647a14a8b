//! `cargo xtask bench`: builds the benchmark programs in release mode and runs them.
//!
//! Today: the classifier's cost per frame (`ioth-bench classifier`). Results go to
//! `bench/results/`. `--quick` is the smoke mode that `cargo xtask test` also runs.

use anyhow::{Result, bail};

use crate::cmd::{self, command, root};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Smoke mode: every benchmark briefly, rough numbers (seconds, not minutes).
    #[arg(long)]
    pub quick: bool,
}

/// Builds and runs the benchmarks; `smoke` writes its JSON outside the results folder.
pub fn run_benchmarks(quick: bool, json: &str) -> Result<()> {
    cmd::run(command("cargo").args(["build", "--release", "--locked", "-p", "ioth-bench"]))?;
    let mut c = command(root().join("target/release/ioth-bench"));
    c.args(["classifier", "--json", json]);
    if quick {
        c.arg("--quick");
    }
    cmd::run(&mut c)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks load XDP programs: run them as root");
    }
    crate::setup::run()?;
    let json = if args.quick {
        "target/bench-quick/classifier.json"
    } else {
        "bench/results/classifier.json"
    };
    run_benchmarks(args.quick, json)
}
