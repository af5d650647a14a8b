//! `cargo xtask test`: the whole suite, as CI runs it.
//!
//! fmt → clippy → eBPF build → unprivileged tests → privileged tests (root, fresh network
//! namespaces, real XDP and AF_XDP) → no namespace left behind. Prints `N passed, N failed`.
//! As root the privileged tests must run; the suite fails if none did.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, command};

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    failures: Vec<String>,
}

impl Tally {
    fn step(&mut self, name: &str, r: Result<()>) {
        match r {
            Ok(()) => {
                self.passed += 1;
                eprintln!("xtask test: {name}: ok");
            }
            Err(e) => {
                self.failed += 1;
                eprintln!("xtask test: {name}: FAILED: {e:#}");
                self.failures.push(format!("{name}: {e:#}"));
            }
        }
    }
}

/// Parses libtest's summary line
/// `test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`
/// into (passed, failed, ignored).
fn parse_test_result(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let (mut p, mut f, mut i) = (0, 0, 0);
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => p = n,
            "failed" => f = n,
            "ignored" => i = n,
            _ => {}
        }
    }
    Some((p, f, i))
}

/// Runs `cargo test ARGS`, echoing its output and adding its `test result:` lines to `t`.
fn cargo_test(t: &mut Tally, label: &str, args: &[&str]) -> Result<(u64, u64, u64)> {
    let mut c = command("cargo");
    c.arg("test").args(args).stdout(Stdio::piped());
    let line = cmd::line(&c);
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut p, mut f, mut i) = (0u64, 0u64, 0u64);
    for l in BufReader::new(stdout).lines() {
        let l = l?;
        println!("{l}");
        if let Some((lp, lf, li)) = parse_test_result(&l) {
            p += lp;
            f += lf;
            i += li;
        }
        if l.starts_with("test ") && l.ends_with("FAILED") {
            t.failures.push(format!("{label}: {l}"));
        }
    }
    let status = child.wait()?;
    t.passed += p;
    t.failed += f;
    if !status.success() && f == 0 {
        // A build failure or a crashed test binary: count it, it is a failure.
        t.failed += 1;
        t.failures
            .push(format!("{label}: `{line}` failed ({status})"));
    }
    Ok((p, f, i))
}

/// Whether the process that made namespace `name` (`ioth-TAG-PID-N`, see
/// `ioth_dataplane::netns`, whose `remove_stale` applies the same rule) still runs: its
/// namespaces are in use (a benchmark, say), not left behind.
fn creator_alive(name: &str) -> bool {
    let mut fields = name.rsplit('-');
    let pid = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
    // The rule of `ioth_dataplane::sys::process_alive` (xtask builds before anything else
    // and cannot depend on the dataplane): a zombie is not alive.
    pid.is_some_and(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z" | "X" | "x") | None)
        })
    })
}

/// Removes namespaces left by dead runs; returns how many.
fn remove_stale_namespaces() -> Result<usize> {
    let list = cmd::stdout(std::process::Command::new("ip").args(["netns", "list"]))?;
    let mut n = 0;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if name.starts_with("ioth-") && !creator_alive(name) {
            cmd::output(std::process::Command::new("ip").args(["netns", "del", name]))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Run without root: skip the privileged tests (CI never does this).
    #[arg(long)]
    pub unprivileged: bool,
    /// Skip fmt and clippy.
    #[arg(long)]
    pub no_lint: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    let root = cmd::is_root();
    if !root && !args.unprivileged {
        bail!(
            "cargo xtask test runs privileged tests (XDP, AF_XDP, namespaces): run it as root, \
             or pass --unprivileged to run only the rest"
        );
    }
    crate::setup::run()?;
    if root {
        let stale = remove_stale_namespaces()?;
        if stale > 0 {
            eprintln!("xtask test: removed {stale} namespace(s) left by an earlier run");
        }
    }
    let mut t = Tally::default();

    if !args.no_lint {
        t.step(
            "cargo fmt --check",
            cmd::run(command("cargo").args(["fmt", "--all", "--", "--check"])),
        );
        t.step(
            "cargo fmt --check (fuzz targets)",
            cmd::run(command("cargo").args([
                "fmt",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--",
                "--check",
            ])),
        );
        t.step(
            "clippy -D warnings",
            cmd::run(command("cargo").args([
                "clippy",
                "--workspace",
                "--exclude",
                "ioth-ebpf",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])),
        );
        t.step(
            "clippy (eBPF crate, bpfel-unknown-none)",
            cmd::run(command("cargo").args([
                "+nightly",
                "clippy",
                "-p",
                "ioth-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--locked",
                "--",
                "-D",
                "warnings",
            ])),
        );
    }
    t.step("no import loops", crate::imports::check(&cmd::root()));
    t.step(
        "no programs started by the library or the binary",
        crate::spawns::check(&cmd::root()),
    );
    t.step(
        "eBPF build (bpfel-unknown-none)",
        cmd::run(command("cargo").args([
            "+nightly",
            "build",
            "-p",
            "ioth-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--locked",
        ])),
    );

    let (_, _, ignored) = cargo_test(
        &mut t,
        "unprivileged tests",
        &["--workspace", "--exclude", "ioth-ebpf", "--locked"],
    )?;

    // Every fuzz target briefly (regression inputs first): before the privileged tests, which
    // replay the classifier corpus this grows through the loaded program.
    t.step(
        "fuzz smoke run (15 s per target)",
        crate::fuzz::fuzz(crate::fuzz::TARGETS, std::time::Duration::from_secs(15)),
    );

    if root {
        // The privileged tests are the ignored ones; each makes its own namespaces, so they
        // can run in parallel.
        let (p, f, _) = cargo_test(
            &mut t,
            "privileged tests",
            &[
                "--workspace",
                "--exclude",
                "ioth-ebpf",
                "--locked",
                "--",
                "--ignored",
                "--nocapture",
            ],
        )?;
        let ran = p + f;
        t.step(
            "privileged tests ran",
            if ran == 0 || ran < ignored {
                Err(anyhow::anyhow!(
                    "{ran} privileged tests ran, {ignored} exist: running as root, none may be skipped"
                ))
            } else {
                Ok(())
            },
        );
        // The benchmarks never rot: each runs briefly (numbers are not asserted).
        t.step(
            "benchmark smoke run",
            crate::bench::run_benchmarks(true, "target/bench-quick"),
        );
        // Two minutes of soak: mixed traffic and SIGKILL/restart cycles, nothing may grow.
        t.step(
            "soak (2 minutes)",
            crate::bench::soak(2.0, "target/soak-quick"),
        );
        let leaked = remove_stale_namespaces()?;
        t.step(
            "no namespace left behind",
            if leaked == 0 {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{leaked} test namespace(s) were left behind"
                ))
            },
        );
    } else {
        eprintln!("xtask test: NOT root: {ignored} privileged tests were not run");
    }

    eprintln!("xtask test: finished in {:.0?}", started.elapsed());
    for f in &t.failures {
        eprintln!("  failed: {f}");
    }
    println!("{} passed, {} failed", t.passed, t.failed);
    if t.failed > 0 {
        bail!("{} failed", t.failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn parses_libtest_summaries() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.03s"
            ),
            Some((4, 0, 1))
        );
        assert_eq!(
            parse_test_result(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out"
            ),
            Some((3, 2, 0))
        );
        assert_eq!(parse_test_result("test foo ... ok"), None);
    }
}
