//! Mounting bpffs, through mount(2) (nix), mode 0700.

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// Whether a bpffs is mounted at `path` (from `/proc/self/mounts`).
pub fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let want = path.to_string_lossy();
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    Ok(mounts.lines().any(|l| {
        let mut w = l.split_whitespace().skip(1);
        w.next() == Some(want.as_ref()) && w.next() == Some("bpf")
    }))
}

/// Mounts a bpffs at `path` (which must exist), root-only (mode 0700).
pub fn mount_bpffs(path: &Path) -> std::io::Result<()> {
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(std::io::Error::from)
}
