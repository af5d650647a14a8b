//! Builds the XDP classifier (`ebpf/ioth-ebpf`) for the BPF target with the nightly toolchain
//! and bpf-linker (installed by `cargo xtask setup`), and leaves the object in OUT_DIR.
use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow, bail};
use aya_build::{Package, Toolchain};

/// Fails early, in one line, when bpf-linker is missing or was built for another LLVM than
/// the nightly toolchain's (the eBPF link would otherwise fail obscurely).
fn check_bpf_linker(workspace: &Path) -> anyhow::Result<()> {
    let tools = workspace.join(".tools");
    let stamp = tools.join("bpf-linker.llvm");
    println!("cargo:rerun-if-changed={}", stamp.display());
    if !tools.join("bin/bpf-linker").exists() {
        bail!(
            "bpf-linker is not installed in {}: run `cargo xtask setup`",
            tools.display()
        );
    }
    let Ok(stamp) = std::fs::read_to_string(&stamp) else {
        return Ok(());
    };
    let built: Option<u32> = stamp
        .split_whitespace()
        .find_map(|w| w.strip_prefix("llvm-"))
        .and_then(|m| m.parse().ok());
    let out = Command::new("rustc").args(["+nightly", "-vV"]).output();
    let nightly: Option<u32> = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version: "))
            .and_then(|v| v.split('.').next()?.parse().ok())
    });
    if let (Some(built), Some(nightly)) = (built, nightly)
        && built != nightly
    {
        bail!(
            "bpf-linker was built for LLVM {built} but the nightly toolchain uses LLVM {nightly}: \
             run `cargo xtask setup` to rebuild it"
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    check_bpf_linker(metadata.workspace_root.as_std_path())?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "ioth-ebpf")
        .ok_or_else(|| anyhow!("package ioth-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("ioth-ebpf manifest has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
