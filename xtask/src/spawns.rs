//! `cargo xtask test`'s spawn check: the library and the `ioth` binary talk to the kernel
//! through libraries (rtnetlink, ioctls, mount(2)), never by running `ip`, `ethtool`,
//! `mount` or any other program and reading its output.
//!
//! `Command::new` may appear only in the test fixtures (`dataplane/src/netns.rs`, which makes
//! the namespaces and veth pairs tests, the demo and the benchmarks use), in the demo's
//! clients (`control/src/demo.rs`), in `ioth run`, whose job is to start the user's program
//! (`control/src/run.rs`), and in `#[cfg(test)]` modules.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::imports::{strip, without_inline_mods};

/// Files allowed to start programs.
const ALLOWED: &[&str] = &[
    "dataplane/src/netns.rs",
    "control/src/demo.rs",
    "control/src/run.rs",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let p = e?.path();
        if p.is_dir() {
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Fails naming every place outside [`ALLOWED`] that starts a program.
pub fn check(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    for dir in ["dataplane/src", "control/src"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        if ALLOWED.contains(&rel.as_str()) {
            continue;
        }
        let code = without_inline_mods(&strip(&fs::read_to_string(&f)?));
        for (n, line) in code.lines().enumerate() {
            if line.contains("Command::new") || line.contains("process::Command") {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        bail!(
            "programs started at run time (use a library; see DESIGN.md):\n  {}",
            found.join("\n  ")
        )
    }
}
