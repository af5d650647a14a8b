//! Capability checks: a command names the capability it lacks instead of failing later with
//! an opaque EPERM.

use anyhow::{Result, bail};

/// A capability: its number and name.
pub type Cap = (u32, &'static str);

/// CAP_NET_ADMIN: attach XDP programs, bind AF_XDP sockets.
pub const NET_ADMIN: Cap = (12, "CAP_NET_ADMIN");
/// CAP_NET_RAW: create AF_XDP sockets.
pub const NET_RAW: Cap = (13, "CAP_NET_RAW");
/// CAP_SYS_ADMIN: can stand in for CAP_BPF, and reads BPF objects by id.
pub const SYS_ADMIN: Cap = (21, "CAP_SYS_ADMIN");
/// CAP_BPF: load programs, create and read maps.
pub const BPF: Cap = (39, "CAP_BPF");

fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Fails, naming the first missing capability, unless all of `caps` are effective.
/// CAP_BPF is also satisfied by CAP_SYS_ADMIN.
pub fn require(command: &str, caps: &[Cap]) -> Result<()> {
    let eff = effective();
    let has = |c: Cap| eff & (1u64 << c.0) != 0;
    for &c in caps {
        if has(c) || (c == BPF && has(SYS_ADMIN)) {
            continue;
        }
        bail!(
            "`ioth {command}` needs {} and this process does not have it (run as root, or grant it)",
            c.1
        );
    }
    Ok(())
}
