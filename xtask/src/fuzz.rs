//! `cargo xtask fuzz [--minutes N] [--target T]`: runs the cargo-fuzz targets of `fuzz/`
//! (nightly, AddressSanitizer), splitting the time between them. Each target's corpus grows in
//! `fuzz/corpus/T` (not committed); `fuzz/regressions/T` holds the inputs that once crashed,
//! committed, and replayed at the start of every run (libFuzzer runs every input of its
//! corpus directories first). A crash is copied there and fails the run: it stays a
//! regression test from then on. `cargo xtask test` runs each target briefly.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, command};

/// The targets in `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &[
    "classify",
    "wire",
    "stack_frames",
    "vde_request",
    "capture_records",
    "cli_parsers",
];

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Minutes in all, shared by the targets.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    crate::setup::run()?;
    let targets: Vec<&str> = match &args.target {
        Some(t) => match TARGETS.iter().find(|x| **x == t.as_str()) {
            Some(x) => vec![*x],
            None => bail!("no fuzz target {t:?}; there are {}", TARGETS.join(", ")),
        },
        None => TARGETS.to_vec(),
    };
    let each = Duration::from_secs_f64(args.minutes.max(0.05) * 60.0 / targets.len() as f64);
    fuzz(&targets, each)
}

/// Builds the targets, then runs each for `each` (at least a second).
pub fn fuzz(targets: &[&str], each: Duration) -> Result<()> {
    let dir = cmd::root().join("fuzz");
    cmd::run(
        command("cargo")
            .current_dir(&dir)
            .args(["+nightly", "fuzz", "build", "-O"]),
    )
    .context("building the fuzz targets")?;
    let mut crashed = Vec::new();
    for t in targets {
        let corpus = dir.join("corpus").join(t);
        let regressions = dir.join("regressions").join(t);
        fs::create_dir_all(&corpus)?;
        fs::create_dir_all(&regressions)?;
        let secs = each.as_secs().max(1).to_string();
        eprintln!("fuzz: {t} for {secs} s");
        let mut c = command("cargo");
        c.current_dir(&dir)
            .args(["+nightly", "fuzz", "run", "-O", t])
            .arg(&corpus)
            .arg(&regressions);
        // Hand-made starting points, committed (read only: new inputs go to `corpus`).
        let seeds = dir.join("seeds").join(t);
        if seeds.is_dir() {
            c.arg(&seeds);
        }
        let r = cmd::run(
            c.args(["--", "-rss_limit_mb=2048"])
                .arg(format!("-max_total_time={secs}")),
        );
        if let Err(e) = r {
            let kept = keep_crashes(&dir.join("artifacts").join(t), &regressions)?;
            crashed.push(format!("{t}: {e:#}; kept as regressions: {kept:?}"));
        }
    }
    if !crashed.is_empty() {
        bail!("fuzzing found crashes:\n  {}", crashed.join("\n  "));
    }
    Ok(())
}

/// Copies the crash inputs cargo-fuzz left in `artifacts` into `regressions`; their names.
fn keep_crashes(artifacts: &Path, regressions: &Path) -> Result<Vec<String>> {
    let mut kept = Vec::new();
    for e in fs::read_dir(artifacts).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ["crash-", "leak-", "timeout-", "oom-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fs::copy(e.path(), regressions.join(&name))
                .with_context(|| format!("keeping {name}"))?;
            kept.push(name);
        }
    }
    Ok(kept)
}
