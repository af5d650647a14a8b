//! `ioth serve`: N worker threads, each its own network node (own MAC, own IPs, own smoltcp
//! stack over its own AF_XDP sockets), serving echo, HTTP or discard.
//!
//! Thread i owns A.B.C.(D+i) and X::(Y+i). Each prints a ready line; a final ready line
//! follows. SIGINT/SIGTERM stop the threads (their classifier entries go with their stacks),
//! then the program is detached and the UMEMs freed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    Dataplane, DataplaneOptions, LoadOptions,
    endpoint::switch::{self, SwitchOptions, core::PortLimits},
    wire::Mac,
};

/// Prints a line on stdout; a closed stdout (the reader went away) is not an error worth a
/// panic in a server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

pub mod addrs;
pub mod args;
pub mod audit;
pub mod http;
pub mod linkwatch;
pub mod stats;
pub mod supervise;
pub mod worker;

pub use args::{App, Mode, ServeArgs};

use addrs::stack_configs;
use audit::unaccounted_frames;
use stats::ThreadStats;
use supervise::Workers;
use worker::WorkerArgs;

/// Runs `ioth serve` until SIGINT/SIGTERM.
pub fn run(args: &ServeArgs) -> Result<()> {
    let tunnels: Vec<_> = args.vxlan.iter().chain(&args.vxvde).cloned().collect();
    if args.threads == 0 && args.vde.is_none() && tunnels.is_empty() {
        bail!("--threads must be at least 1 (or serve a switch with --vde or --vxlan)");
    }
    let configs = stack_configs(args)?;
    let mut apps: Vec<App> = args.app.clone();
    apps.sort_by_key(|a| a.default_port());
    apps.dedup();
    if args.port.is_some() && apps.len() > 1 {
        bail!("--port applies to a single --app; with several, each uses its default port");
    }
    let apps: Vec<(App, u16)> = apps
        .into_iter()
        .map(|a| (a, args.port.unwrap_or(a.default_port())))
        .collect();
    let mode = args.mode.into();
    let dp = Dataplane::attach(
        &args.iface,
        DataplaneOptions {
            mode,
            load: LoadOptions {
                log: args.ebpf_log,
                ..LoadOptions::default()
            },
            ..DataplaneOptions::default()
        },
    )
    .with_context(|| format!("attaching to {}", args.iface))?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let (watch, link_fatal) = linkwatch::spawn(
        &args.iface,
        Arc::clone(&stop),
        linkwatch::Served {
            queues: dp.queues().len() as u32,
            mtu: configs.iter().map(|c| c.mtu).max().unwrap_or(1500),
        },
    )?;
    let wargs = Arc::new(WorkerArgs {
        apps: apps.clone(),
        backlog: args.backlog,
        busy_poll: args.busy_poll,
        test_panic_thread: args.test_panic_thread,
    });
    let say_line = |l: &str| say!("{l}");
    let mut workers = Workers::start(&dp, configs, wargs, &stop, &say_line)?;
    let served: Vec<String> = apps
        .iter()
        .map(|(a, p)| format!("{}:{p}", format!("{a:?}").to_lowercase()))
        .collect();
    let switch = match (&args.vde, tunnels.is_empty()) {
        (None, true) => None,
        (vde, _) => {
            let dir = vde.as_ref().map(|d| {
                d.clone()
                    .unwrap_or_else(|| switch::default_dir(&args.iface))
            });
            let gid = match &args.vde_group {
                Some(g) => Some(
                    nix::unistd::Group::from_name(g)
                        .with_context(|| format!("looking up group {g:?}"))?
                        .with_context(|| format!("no group named {g:?}"))?
                        .gid
                        .as_raw(),
                ),
                None => None,
            };
            let opts = SwitchOptions {
                dir: dir.clone(),
                gid,
                vxlan: tunnels.clone(),
                mode: args.vde_mode,
                mac: Mac(addrs::thread_mac(
                    &addrs::machine_id(),
                    &args.iface,
                    u16::MAX,
                )),
                max_macs_per_port: args.vde_macs_per_port,
                max_age: smoltcp::time::Duration::from_secs(300),
                thread: u32::from(u16::MAX),
                limits: PortLimits {
                    packets_per_s: args.port_pps,
                    bytes_per_s: args.port_bps,
                },
            };
            let sw = switch::spawn(&dp, opts, Arc::clone(&stop), |line| say!("{line}"))
                .context("starting the switch")?;
            if let Some(d) = &dir {
                say!("vde switch {} ready", d.display());
            }
            for v in &tunnels {
                say!(
                    "{} port to {} vni {} port {} ready",
                    if v.learn_ports { "vxvde" } else { "vxlan" },
                    v.remote,
                    v.vni,
                    v.port
                );
            }
            Some(sw)
        }
    };
    let thread_stats: Vec<Arc<ThreadStats>> =
        workers.list.iter().map(|w| Arc::clone(&w.stats)).collect();
    let _metrics = match &args.metrics {
        Some(addr) => {
            let addr = crate::metrics::parse_listen(addr)?;
            let sources = crate::metrics::Sources {
                dp: Arc::clone(&dp),
                threads: thread_stats,
            };
            let bound = crate::metrics::serve(
                addr,
                move || crate::metrics::render(&sources),
                Arc::clone(&stop),
            )?;
            say!("metrics http://{bound}/metrics");
            Some(bound)
        }
        None => None,
    };
    say!(
        "ready threads={} iface={} apps={}",
        args.threads,
        args.iface,
        served.join(",")
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        workers.check(&say_line);
    }
    let died = workers.stop(&say_line);
    if let Some(sw) = switch {
        let c = &sw.counters;
        say!(
            "stopped vde switch: from ports {}, to ports {}, to thread stacks {}, from the NIC {}, to the NIC {}, spoofed {}, over rate {}, dropped {}",
            c.from_ports.load(Ordering::Relaxed),
            c.to_ports.load(Ordering::Relaxed),
            c.to_local.load(Ordering::Relaxed),
            c.from_uplink.load(Ordering::Relaxed),
            c.to_uplink.load(Ordering::Relaxed),
            c.spoofed.load(Ordering::Relaxed),
            c.over_rate.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed)
        );
        sw.join();
    }
    let _ = watch.join();
    let unaccounted = unaccounted_frames(&dp);
    let pinned = dp.pinned();
    drop(dp);
    say!(
        "stopped: classifier {}, UMEM freed, frames accounted: {}",
        if pinned {
            "left attached (pinned)"
        } else {
            "detached"
        },
        if unaccounted.is_empty() {
            "yes".to_owned()
        } else {
            format!("NO ({})", unaccounted.join("; "))
        }
    );
    if let Some(why) = link_fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bail!("{why}");
    }
    if died > 0 {
        bail!("{died} worker death(s) during the run (each was restarted)");
    }
    Ok(())
}
