//! `ioth run`: an unmodified program in a fresh network namespace whose interface is a port
//! of a running ioth's VDE switch — its own addresses on the NIC's LAN while the rest of the
//! host uses the kernel's network (what vdens and View-OS promise).
//!
//! A thread unshares a new network namespace, makes a TAP device there, configures it over
//! rtnetlink and starts the program (a child forked from that thread lives in the
//! namespace). A relay thread moves frames between the TAP and a VDE data socket connected
//! to the switch. When the program exits, its namespace and the TAP go with it and the port
//! closes; `ioth run` exits with the program's status. SIGTERM and SIGHUP are passed on;
//! SIGINT and SIGQUIT from a terminal reach the program directly (it is in the same process
//! group) and are not sent a second time.

use std::{
    net::IpAddr,
    os::{fd::AsRawFd as _, unix::process::ExitStatusExt as _},
    path::PathBuf,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    endpoint::switch::{default_dir, vde::VdeClient},
    sys::{netlink::Rtnetlink, tap, wait_readable},
};

/// Options of `ioth run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The switch to join: the directory `ioth serve --vde DIR` serves.
    #[arg(long, value_name = "DIR", conflicts_with = "iface")]
    pub vde: Option<PathBuf>,
    /// Join the switch of the `ioth serve --vde` running on this interface (its default
    /// directory, /run/ioth/vde/IF@nsN).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// IPv4 address and prefix of the namespace's interface, e.g. 10.99.0.60/24.
    #[arg(long)]
    pub ipv4: Option<String>,
    /// IPv6 address and prefix of the namespace's interface, e.g. fd00:99::60/64.
    #[arg(long)]
    pub ipv6: Option<String>,
    /// Default gateway (IPv4 or IPv6; give it twice for both).
    #[arg(long)]
    pub gw: Vec<IpAddr>,
    /// The node's name (the port's description).
    #[arg(long, default_value = "ioth-run")]
    pub name: String,
    /// The interface's name inside the namespace.
    #[arg(long, default_value = "vde0")]
    pub ifname: String,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn cidr(s: &str, what: &str) -> Result<(IpAddr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--{what} {s:?}: expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = a
        .parse()
        .with_context(|| format!("--{what} {s:?}: not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| (1..=max).contains(p))
        .with_context(|| format!("--{what} {s:?}: prefix must be 1..={max}"))?;
    if (what == "ipv4") != addr.is_ipv4() {
        bail!("--{what} {s:?}: wrong address family");
    }
    Ok((addr, prefix))
}

/// Makes the namespace, its interface and the program in it (on a thread of its own, which
/// then ends: the namespace lives as long as the program).
fn start_in_namespace(
    args: &RunArgs,
    addrs: Vec<(IpAddr, u8)>,
) -> Result<(Child, std::os::fd::OwnedFd)> {
    let ifname = args.ifname.clone();
    let gws = args.gw.clone();
    let command = args.command.clone();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("ioth-run-netns".into())
        .spawn(move || {
            let r = (|| -> Result<(Child, std::os::fd::OwnedFd)> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("making a network namespace")?;
                let tap = tap::open_tap(&ifname).context("making the TAP device")?;
                let mut nl = Rtnetlink::open()?;
                let lo = nl.link("lo")?.context("no loopback in the new namespace")?;
                nl.set_up(lo.index, true)?;
                let link = nl.link(&ifname)?.context("the TAP device vanished")?;
                for (a, p) in &addrs {
                    nl.add_address(link.index, *a, *p)
                        .with_context(|| format!("adding {a}/{p}"))?;
                }
                nl.set_up(link.index, true)?;
                for gw in &gws {
                    nl.add_default_route(*gw)
                        .with_context(|| format!("the default route via {gw}"))?;
                }
                // Forked from this thread: the program starts in the new namespace.
                let child = Command::new(&command[0])
                    .args(&command[1..])
                    .spawn()
                    .with_context(|| format!("starting {}", command[0]))?;
                Ok((child, tap))
            })();
            let _ = tx.send(r);
        })
        .context("starting the namespace thread")?;
    rx.recv().context("the namespace thread ended")?
}

/// Runs the program; returns the exit code `ioth run` should exit with.
pub fn run(args: &RunArgs) -> Result<i32> {
    let dir = match (&args.vde, &args.iface) {
        (Some(d), _) => d.clone(),
        (None, Some(i)) => default_dir(i),
        (None, None) => bail!("name the switch to join: --vde DIR or --iface IF"),
    };
    if !dir.join("ctl").exists() {
        bail!(
            "no VDE switch at {} (start one with `ioth serve --iface IF --vde {}`)",
            dir.display(),
            dir.display()
        );
    }
    let mut addrs = Vec::new();
    if let Some(s) = &args.ipv4 {
        addrs.push(cidr(s, "ipv4")?);
    }
    if let Some(s) = &args.ipv6 {
        addrs.push(cidr(s, "ipv6")?);
    }
    let description = format!("ioth run {}: {}", args.name, args.command.join(" "));
    let port = VdeClient::connect(&dir, &description)
        .with_context(|| format!("joining the switch at {}", dir.display()))?;
    let (mut child, tap) = start_in_namespace(args, addrs)?;

    // Frames between the TAP and the switch until the program is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let relay = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("ioth-run-relay".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let fds = [tap.as_raw_fd(), port.fd()];
                while !stop.load(Ordering::Relaxed) {
                    if wait_readable(&fds, 200).is_err() {
                        break;
                    }
                    while let Ok(Some(n)) = tap::read_frame(&tap, &mut buf) {
                        port.send(&buf[..n]);
                    }
                    while let Ok(Some(n)) = port.recv(&mut buf) {
                        tap::write_frame(&tap, &buf[..n]);
                    }
                }
            })
            .context("starting the relay")?
    };

    // SIGTERM and SIGHUP go on to the program; SIGINT and SIGQUIT from a terminal reach it
    // directly, so ioth run only waits.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
    ])
    .context("installing signal handlers")?;
    let sig_handle = signals.handle();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let forwarder = thread::spawn(move || {
        for sig in signals.forever() {
            if (sig == signal_hook::consts::SIGTERM || sig == signal_hook::consts::SIGHUP)
                && let Ok(s) = nix::sys::signal::Signal::try_from(sig)
            {
                let _ = nix::sys::signal::kill(pid, s);
            }
        }
    });
    let status = child.wait().context("waiting for the program")?;
    sig_handle.close();
    let _ = forwarder.join();
    stop.store(true, Ordering::Relaxed);
    let _ = relay.join();
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::cidr;

    #[test]
    fn addresses_parse_and_bad_ones_are_refused() {
        assert_eq!(
            cidr("10.99.0.60/24", "ipv4").unwrap(),
            ("10.99.0.60".parse().unwrap(), 24)
        );
        assert!(cidr("fd00::60/64", "ipv6").is_ok());
        for (s, what) in [
            ("10.99.0.60", "ipv4"),
            ("10.99.0.60/33", "ipv4"),
            ("x/24", "ipv4"),
            ("fd00::60/64", "ipv4"),
            ("10.0.0.1/8", "ipv6"),
            ("fd00::1/0", "ipv6"),
        ] {
            assert!(cidr(s, what).is_err(), "{s}");
        }
    }
}
