//! `cargo xtask`: the single entry point to set up, build, test, demo and benchmark ioth.
//!
//! Each subcommand is one module. Every external command runs through `cmd`, so a failure
//! names the command that failed.
#![deny(unsafe_code)]

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod imports;
mod setup;
mod spawns;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Set up, test, demo and benchmark ioth")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install what the build needs (Debian packages, rust-src, bpf-linker); idempotent.
    Setup,
    /// Run the whole suite: fmt, clippy, eBPF build, unit, differential and namespace tests.
    Test(test::TestArgs),
    /// Show ioth working: on a private veth pair, or on --iface.
    Demo(demo::DemoArgs),
    /// Run the benchmarks (release build); --quick for a smoke run.
    Bench(bench::BenchArgs),
    /// Check the house rules (also part of `test`): no two modules of a crate import each
    /// other; the library and the binary start no programs.
    Imports,
    /// Soak: mixed traffic and SIGKILL/restart cycles for --minutes; nothing may grow.
    Soak(bench::SoakArgs),
    /// Fuzz the parsers, the reference classifier and a stack (cargo-fuzz, nightly);
    /// crashes become committed regression inputs in fuzz/regressions/.
    Fuzz(fuzz::FuzzArgs),
    /// Write the man page and shell completions of `ioth` into target/dist/.
    Dist,
}

/// Builds `ioth` and has it print its man page and completions into target/dist/.
fn dist() -> Result<()> {
    setup::run()?;
    cmd::run(cmd::command("cargo").args(["build", "--release", "--locked", "-p", "ioth-control"]))?;
    let ioth = cmd::root().join("target/release/ioth");
    let dist = cmd::root().join("target/dist");
    std::fs::create_dir_all(dist.join("completions"))?;
    let man = cmd::output(cmd::command(&ioth).arg("manpage"))?;
    std::fs::write(dist.join("ioth.1"), man.stdout)?;
    for shell in ["bash", "zsh", "fish"] {
        let out = cmd::output(cmd::command(&ioth).args(["completions", shell]))?;
        std::fs::write(
            dist.join("completions").join(format!("ioth.{shell}")),
            out.stdout,
        )?;
    }
    eprintln!(
        "dist: {} (man page) and {}",
        dist.join("ioth.1").display(),
        dist.join("completions").display()
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r: Result<()> = match &cli.command {
        Cmd::Setup => setup::run().map(|_| ()),
        Cmd::Test(a) => test::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Imports => imports::check(&cmd::root()).and_then(|()| spawns::check(&cmd::root())),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Soak(a) => bench::run_soak(a),
        Cmd::Dist => dist(),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
