//! `cargo xtask setup`: installs what the build and the tests need, only what is missing.
//!
//! - Debian packages (the C part of xsk-rs, and the real peers the tests run);
//! - rust-src for the nightly toolchain (the eBPF crate builds `core` itself);
//! - bpf-linker 0.13, built against the nightly toolchain's own libLLVM into `.tools/`;
//! - cargo-fuzz, into `.tools/` too (`cargo xtask fuzz`).
//!
//! A second run finds everything in place and returns in seconds.

use std::{fs, os::unix::fs::symlink, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, command, tools_dir};

/// Debian packages and why they are needed.
pub const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("clang", "xsk-rs builds libbpf/libxdp"),
    ("libelf-dev", "xsk-rs builds libbpf/libxdp"),
    ("zlib1g-dev", "xsk-rs builds libbpf/libxdp"),
    ("m4", "xsk-rs builds libbpf/libxdp"),
    ("pkg-config", "xsk-rs builds libbpf/libxdp"),
    ("make", "xsk-rs builds libbpf/libxdp"),
    (
        "iproute2",
        "test fixtures: namespaces and veth pairs; a test peer",
    ),
    ("iputils-ping", "tests: ping peers"),
    ("ethtool", "tests: offload settings"),
    ("curl", "tests and demo: HTTP peer"),
    ("socat", "tests and demo: TCP/UDP peer"),
    ("tcpdump", "tests: reads ioth's pcap"),
    (
        "tshark",
        "tests: Wireshark reads ioth's pcapng and its directions",
    ),
    ("tcpreplay", "tests: floods hostile frames"),
    ("prometheus", "tests: promtool and a real scraper"),
    (
        "nftables",
        "tests: a peer that drops segments (retransmissions)",
    ),
    (
        "bpftool",
        "tests: inspect the classifier's maps from outside",
    ),
    (
        "hping3",
        "tests: crafted TCP segments (spoofed SYN floods, a SYN on a live flow)",
    ),
    ("wrk", "bench: HTTP load from a standard tool"),
    ("vde2", "tests: vde_switch, a real VDE switch to cascade"),
    ("vdeplug", "tests: vde_plug and dpipe, real VDE clients"),
    ("vdens", "tests: a namespace plugged into a VDE network"),
    (
        "libvdeplug-pcap",
        "bench: vdeplug4's pcap:// plugin, VirtualSquare's NIC-to-VDE way",
    ),
];

/// The bpf-linker release and the LLVM majors it can link (its cargo features).
const BPF_LINKER: &str = "bpf-linker@0.13.0";
const BPF_LINKER_LLVM: &[u32] = &[21, 22, 23];

/// What the eBPF build needs to know about the nightly toolchain.
#[derive(Debug)]
pub struct Nightly {
    /// LLVM major of rustc +nightly.
    pub llvm_major: u32,
    /// The toolchain's libLLVM shared object.
    pub libllvm: std::path::PathBuf,
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "Debian packages missing ({}); run `cargo xtask setup` as root to install them",
            missing.join(" ")
        );
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    cmd::output(Command::new("apt-get").args(["update", "-qq"]))
        .context("apt-get update (are Debian's package servers reachable?)")?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing);
    cmd::output(&mut install)
        .with_context(|| format!("cannot install Debian packages {}", missing.join(" ")))?;
    Ok(())
}

/// The LLVM major version in `rustc -vV` output.
fn llvm_major(rustc_vv: &str) -> Option<u32> {
    let version = rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.trim().parse().ok()
}

fn nightly() -> Result<Nightly> {
    let toolchains = cmd::stdout(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain");
        cmd::output(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .context("the eBPF crate needs a nightly toolchain and none could be installed")?;
    }
    let components = cmd::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to the nightly toolchain");
        cmd::output(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
        .context("cannot download rust-src for the nightly toolchain")?;
    }
    let vv = cmd::stdout(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = llvm_major(&vv).context("rustc +nightly -vV names no LLVM version")?;
    let sysroot = cmd::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let prefix = format!("libLLVM.so.{llvm_major}.");
    let libllvm = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .with_context(|| {
            format!(
                "the nightly toolchain ships no {prefix}* in {}: bpf-linker cannot be built",
                lib.display()
            )
        })?;
    Ok(Nightly {
        llvm_major,
        libllvm,
    })
}

/// The stamp that records which LLVM the project's bpf-linker was built against.
fn stamp_path() -> std::path::PathBuf {
    tools_dir().join("bpf-linker.llvm")
}

fn stamp_for(n: &Nightly) -> String {
    format!(
        "{BPF_LINKER} llvm-{} {}\n",
        n.llvm_major,
        n.libllvm.display()
    )
}

fn bpf_linker(n: &Nightly) -> Result<()> {
    if !BPF_LINKER_LLVM.contains(&n.llvm_major) {
        bail!(
            "the nightly toolchain uses LLVM {}, but {BPF_LINKER} links only LLVM {:?}",
            n.llvm_major,
            BPF_LINKER_LLVM
        );
    }
    let bin = tools_dir().join("bin/bpf-linker");
    let want = stamp_for(n);
    let have = fs::read_to_string(stamp_path()).unwrap_or_default();
    if bin.exists() && have == want && n.libllvm.exists() {
        return Ok(());
    }
    if bin.exists() && !have.is_empty() {
        eprintln!(
            "setup: bpf-linker was built for {}, nightly now needs llvm-{}: rebuilding",
            have.split_whitespace().nth(1).unwrap_or("?"),
            n.llvm_major
        );
    }
    // LLVM_PREFIX/lib must hold libLLVM.so and the versioned file: links to the toolchain's.
    // The directory is persistent because the linker's RUNPATH points into it.
    let llvm = tools_dir().join("llvm");
    let lib = llvm.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let versioned = n.libllvm.file_name().context("libLLVM has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), versioned] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&n.libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "setup: building {BPF_LINKER} against {} (about a minute)",
        n.libllvm.display()
    );
    let mut install = command("cargo");
    install
        .env("LLVM_PREFIX", &llvm)
        .args(["install", BPF_LINKER, "--no-default-features", "--features"])
        .arg(format!("llvm-{}", n.llvm_major))
        .args(["--locked", "--force", "--root"])
        .arg(tools_dir());
    cmd::run(&mut install).context("building bpf-linker (crates.io reachable?)")?;
    cmd::output(command(&bin).arg("--version")).context("the new bpf-linker does not run")?;
    fs::write(stamp_path(), want).context("writing the bpf-linker stamp")?;
    Ok(())
}

/// The cargo-fuzz release `cargo xtask fuzz` (and the fuzz step of `cargo xtask test`) run.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

/// Installs cargo-fuzz into `.tools/` (half a minute, once).
fn cargo_fuzz() -> Result<()> {
    let bin = tools_dir().join("bin/cargo-fuzz");
    if bin.exists() {
        return Ok(());
    }
    eprintln!(
        "setup: installing {CARGO_FUZZ} into {}",
        tools_dir().display()
    );
    let mut install = command("cargo");
    install
        .args(["install", CARGO_FUZZ, "--locked", "--root"])
        .arg(tools_dir());
    cmd::run(&mut install).context("installing cargo-fuzz (crates.io reachable?)")
}

/// Runs the whole set-up. Returns what the eBPF build needs to know.
pub fn run() -> Result<Nightly> {
    let started = std::time::Instant::now();
    packages()?;
    let n = nightly()?;
    bpf_linker(&n)?;
    cargo_fuzz()?;
    eprintln!(
        "setup: ready (nightly LLVM {}, bpf-linker in {}) in {:.1?}",
        n.llvm_major,
        tools_dir().join("bin").display(),
        started.elapsed()
    );
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major_of_rustc() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
        assert_eq!(llvm_major("LLVM version: x.1\n"), None);
    }

    #[test]
    fn an_unsupported_llvm_is_a_one_line_error() {
        let n = Nightly {
            llvm_major: 99,
            libllvm: "/nonexistent/libLLVM.so.99.1".into(),
        };
        let e = bpf_linker(&n).unwrap_err().to_string();
        assert!(e.contains("LLVM 99") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn every_package_has_a_reason() {
        for (p, why) in DEBIAN_PACKAGES {
            assert!(!p.is_empty() && !why.is_empty());
        }
    }
}
