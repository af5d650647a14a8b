//! Addresses of `ioth serve`'s threads: parsing the command line's CIDRs and MAC, stepping
//! them per thread, deriving MACs, and the host's own addresses (refused unless --force).

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{StackConfig, sys::netlink::Rtnetlink, wire::Mac};

use super::args::ServeArgs;

pub fn parse_cidr4(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--ipv4 {s:?}: expected A.B.C.D/PREFIX"))?;
    let a: Ipv4Addr = a
        .parse()
        .with_context(|| format!("--ipv4 {s:?}: bad address"))?;
    let p: u8 = p
        .parse()
        .with_context(|| format!("--ipv4 {s:?}: bad prefix"))?;
    if p == 0 || p > 32 {
        bail!("--ipv4 {s:?}: prefix must be 1..=32");
    }
    Ok((a, p))
}

pub fn parse_cidr6(s: &str) -> Result<(Ipv6Addr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--ipv6 {s:?}: expected X::Y/PREFIX"))?;
    let a: Ipv6Addr = a
        .parse()
        .with_context(|| format!("--ipv6 {s:?}: bad address"))?;
    let p: u8 = p
        .parse()
        .with_context(|| format!("--ipv6 {s:?}: bad prefix"))?;
    if p == 0 || p > 128 {
        bail!("--ipv6 {s:?}: prefix must be 1..=128");
    }
    Ok((a, p))
}

/// The i-th IPv4 address after `base`, staying inside `base`'s last octet range.
pub fn nth_v4(base: Ipv4Addr, i: u16) -> Result<Ipv4Addr> {
    let o = base.octets();
    let last = u16::from(o[3]) + i;
    if last > 254 {
        bail!("--ipv4 {base} with {} threads runs past .254", i + 1);
    }
    Ok(Ipv4Addr::new(o[0], o[1], o[2], last as u8))
}

pub fn nth_v6(base: Ipv6Addr, i: u16) -> Result<Ipv6Addr> {
    let mut s = base.segments();
    s[7] = s[7]
        .checked_add(i)
        .with_context(|| format!("--ipv6 {base} with {} threads overflows", i + 1))?;
    Ok(Ipv6Addr::from(s))
}

/// This machine's identity for derived MACs: `/etc/machine-id` (systemd's, also in
/// `/var/lib/dbus/machine-id`), else the host name. Without it, two hosts serving on `eth0`
/// in one LAN would derive the same MACs.
pub fn machine_id() -> Vec<u8> {
    for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(s) = std::fs::read_to_string(path) {
            let id = s.trim();
            if !id.is_empty() {
                return id.as_bytes().to_vec();
            }
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().as_bytes().to_vec())
        .unwrap_or_default()
}

/// A locally administered MAC derived from the machine's identity ([`machine_id`]), the
/// interface name and the thread index: stable across runs, distinct between hosts.
pub fn thread_mac(machine: &[u8], iface: &str, index: u16) -> [u8; 6] {
    // FNV-1a over the machine id, a separator and the interface name.
    let mut h: u32 = 0x811c_9dc5;
    for b in machine.iter().chain(&[0]).chain(iface.as_bytes()) {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    let h = h.to_be_bytes();
    let i = index.to_be_bytes();
    [0x02, h[1], h[2], h[3], i[0], i[1]]
}

/// Parses a unicast MAC `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mac: Mac = s.parse().with_context(|| format!("--mac {s:?}"))?;
    if !mac.is_station() {
        bail!("--mac {s}: must be a unicast, non-zero MAC");
    }
    Ok(mac.0)
}

/// `base` plus `i`, carried through the last two bytes.
pub fn nth_mac(base: [u8; 6], i: u16) -> Result<[u8; 6]> {
    let low = u16::from_be_bytes([base[4], base[5]])
        .checked_add(i)
        .with_context(|| format!("--mac {} with {} threads overflows", Mac(base), i + 1))?;
    let [a, b] = low.to_be_bytes();
    Ok([base[0], base[1], base[2], base[3], a, b])
}

/// Addresses configured on host interfaces (in this namespace), from rtnetlink.
pub fn host_addresses() -> Result<Vec<String>> {
    let addrs = Rtnetlink::open()
        .and_then(|mut nl| nl.addresses())
        .context("reading the host's addresses")?;
    Ok(addrs.into_iter().map(|a| a.addr.to_string()).collect())
}

/// The stack configuration of every thread, validated before anything is attached.
pub fn stack_configs(args: &ServeArgs) -> Result<Vec<StackConfig>> {
    if args.threads == 0 {
        return Ok(Vec::new());
    }
    let ipv4 = args
        .ipv4
        .as_deref()
        .context("--ipv4 is needed for the threads' addresses")?;
    let (v4, p4) = parse_cidr4(ipv4)?;
    let v6 = args.ipv6.as_deref().map(parse_cidr6).transpose()?;
    let machine = machine_id();
    let mut configs = Vec::new();
    let host = host_addresses()?;
    // `--mac host`: the interface's own MAC for every thread (told apart by IP).
    let host_mac = match args.mac.as_deref() {
        Some("host") => Some(
            ioth_dataplane::sys::netlink::Rtnetlink::open()
                .and_then(|mut nl| nl.link(&args.iface))
                .with_context(|| format!("reading {}", args.iface))?
                .and_then(|l| l.mac)
                .with_context(|| format!("{} has no MAC to share", args.iface))?,
        ),
        _ => None,
    };
    let base_mac = match args.mac.as_deref() {
        Some("host") | None => None,
        Some(m) => Some(parse_mac(m)?),
    };
    for i in 0..args.threads {
        let ip4 = nth_v4(v4, i)?;
        let ip6 = v6.map(|(a, p)| nth_v6(a, i).map(|a| (a, p))).transpose()?;
        for a in std::iter::once(ip4.to_string()).chain(ip6.map(|(a, _)| a.to_string())) {
            if !args.force && host.contains(&a) {
                bail!("{a} is configured on a host interface; refusing to take it (use --force)");
            }
        }
        configs.push(StackConfig {
            mac: match (host_mac, base_mac) {
                (Some(m), _) => m,
                (None, Some(m)) => nth_mac(m, i)?,
                (None, None) => thread_mac(&machine, &args.iface, i),
            },
            shared_mac: host_mac.is_some(),
            ipv4: vec![(ip4, p4)],
            ipv6: ip6.into_iter().collect(),
            gateway_v4: args.gateway4,
            gateway_v6: args.gateway6,
            tcp_rx_buffer: args.tcp_buffer,
            tcp_tx_buffer: args.tcp_buffer,
            congestion: args.congestion,
            max_sockets: args.max_sockets,
            mtu: args.mtu,
            tcp_timeout: (args.tcp_timeout > 0)
                .then(|| smoltcp::time::Duration::from_secs(args.tcp_timeout)),
            tcp_keep_alive: (args.tcp_keepalive > 0)
                .then(|| smoltcp::time::Duration::from_secs(args.tcp_keepalive)),
            seed: u64::from(i) ^ 0x10_7e_ad,
            thread: u32::from(i),
        });
    }
    // Refuse bad addresses before anything is attached.
    for c in &configs {
        c.validate()?;
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_parsed_and_bad_ones_refused() {
        assert_eq!(
            parse_cidr4("10.99.0.11/24").unwrap(),
            (Ipv4Addr::new(10, 99, 0, 11), 24)
        );
        for bad in [
            "10.99.0.11",
            "10.99.0.256/24",
            "10.99.0.1/33",
            "x/24",
            "10.0.0.1/0",
        ] {
            assert!(parse_cidr4(bad).is_err(), "{bad}");
        }
        assert!(parse_cidr6("fd00:99::11/64").is_ok());
        assert!(parse_cidr6("fd00:99::11/129").is_err());
    }

    #[test]
    fn thread_addresses_step_and_stop_at_the_range_end() {
        let b = Ipv4Addr::new(10, 99, 0, 250);
        assert_eq!(nth_v4(b, 4).unwrap(), Ipv4Addr::new(10, 99, 0, 254));
        assert!(nth_v4(b, 5).is_err());
        let b6: Ipv6Addr = "fd00::ffff".parse().unwrap();
        assert!(nth_v6(b6, 1).is_err());
    }

    #[test]
    fn macs_are_parsed_counted_and_bad_ones_refused() {
        let m = parse_mac("02:00:00:00:10:ff").unwrap();
        assert_eq!(nth_mac(m, 2).unwrap(), [2, 0, 0, 0, 0x11, 1]);
        assert!(nth_mac([2, 0, 0, 0, 0xff, 0xff], 1).is_err());
        for bad in [
            "01:00:00:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:10",
            "zz:00:00:00:00:01",
            "2:0:0:0:10:1",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thread_macs_are_unicast_local_stable_and_distinct() {
        let m = b"0123456789abcdef0123456789abcdef";
        let a = thread_mac(m, "veth0", 0);
        assert_eq!(a[0] & 0x03, 0x02);
        assert_eq!(a, thread_mac(m, "veth0", 0));
        assert_ne!(a, thread_mac(m, "veth0", 1));
        assert_ne!(a, thread_mac(m, "veth1", 0));
        // Two hosts serving on the same interface name in one LAN.
        assert_ne!(
            a,
            thread_mac(b"fedcba9876543210fedcba9876543210", "veth0", 0)
        );
        // The separator keeps (machine, iface) pairs apart.
        assert_ne!(thread_mac(b"ab", "c", 0), thread_mac(b"a", "bc", 0));
        assert!(!machine_id().is_empty(), "this machine has an identity");
    }
}
