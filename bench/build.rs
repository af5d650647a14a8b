//! Builds the benchmark's own XDP programs (the `ioth-bench-xdp` binary of `ebpf/ioth-ebpf`:
//! frame generator, XDP_DROP ceiling, counters) with aya-build, into OUT_DIR. bpf-linker and
//! the nightly toolchain come from `cargo xtask setup`, as for `dataplane/build.rs`.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
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
