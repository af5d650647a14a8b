//! `ioth demo`: `ioth serve` with four threads on a private veth pair, proven with real
//! clients from the peer namespace.
//!
//! Makes two fresh namespaces joined by a veth pair with two queues, starts
//! `ioth serve --threads 4 --app http --app echo` on the ioth side, then from the peer side
//! pings every thread's IPv4 and IPv6 address, fetches `GET /` from every thread with curl
//! (20 times, for a latency median), and does a TCP and a UDP echo exchange with socat. It
//! prints one row per thread, stops the server with SIGTERM, and removes everything.
//!
//! With `--iface IF --ipv4 A/P` it serves on a real interface instead, until Ctrl-C (no
//! traffic is generated: clients are the operator's).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::netns::{NetNs, VethPair, addrs};

/// Options of `ioth demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Serve on this interface instead of a private veth pair (needs --ipv4).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// With --iface: first thread's IPv4 address and prefix.
    #[arg(long)]
    pub ipv4: Option<String>,
    /// With --iface: first thread's IPv6 address and prefix.
    #[arg(long)]
    pub ipv6: Option<String>,
    /// Threads.
    #[arg(long, default_value_t = 4)]
    pub threads: u16,
}

const CURLS: usize = 20;

pub fn run(args: &DemoArgs) -> Result<()> {
    let exe = std::env::current_exe().context("locating the ioth binary")?;
    if let Some(iface) = &args.iface {
        let ipv4 = args
            .ipv4
            .as_deref()
            .context("--iface needs --ipv4 A.B.C.D/P: the addresses the threads take")?;
        let mut c = Command::new(exe);
        c.args([
            "serve",
            "--iface",
            iface,
            "--threads",
            &args.threads.to_string(),
        ])
        .args(["--ipv4", ipv4, "--app", "http", "--app", "echo"]);
        if let Some(v6) = &args.ipv6 {
            c.args(["--ipv6", v6]);
        }
        println!("ioth demo: serving on {iface}; press Ctrl-C to stop");
        let status = c.status().context("running ioth serve")?;
        if !status.success() {
            bail!("ioth serve exited with {status}");
        }
        return Ok(());
    }
    private_pair(&exe, args.threads)
}

struct Thread {
    index: u16,
    ipv4: String,
    ipv6: String,
    mac: String,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn peer(ns: &NetNs, program: &str, args: &[&str]) -> (bool, String) {
    match ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ),
        Err(_) => (false, String::new()),
    }
}

fn echo(ns: &NetNs, target: &str, msg: &str) -> bool {
    let child = ns
        .command("socat")
        .args(["-t", "2", "-T", "3", "-", target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(format!("{msg}\n").as_bytes());
    }
    child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout) == format!("{msg}\n"))
        .unwrap_or(false)
}

fn stop(child: &mut Child) -> Result<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            child.kill()?;
            return Ok(child.wait()?);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn private_pair(exe: &std::path::Path, threads: u16) -> Result<()> {
    let started = Instant::now();
    let pair = VethPair::new("demo", 2).context("making the veth pair")?;
    println!(
        "ioth demo: namespaces {} (ioth, {}) and {} (clients, {}), veth with 2 queues",
        pair.host.name(),
        pair.host_if,
        pair.peer.name(),
        pair.peer_if
    );
    let first_v4 = format!("{}/{}", addrs::FIRST_ENDPOINT_V4, addrs::PREFIX_V4);
    let first_v6 = format!("{}/{}", addrs::FIRST_ENDPOINT_V6, addrs::PREFIX_V6);
    let mut child = pair
        .host
        .command(&exe.to_string_lossy())
        .args([
            "serve",
            "--iface",
            &pair.host_if,
            "--threads",
            &threads.to_string(),
        ])
        .args(["--ipv4", &first_v4, "--ipv6", &first_v6])
        .args(["--app", "http", "--app", "echo"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting ioth serve")?;
    let out = child.stdout.take().context("ioth serve stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut list = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = stop(&mut child);
                bail!("ioth serve did not become ready");
            }
        };
        println!("  serve: {line}");
        if line.starts_with("ready threads=") {
            break;
        }
        if line.starts_with("ready thread=") {
            list.push(Thread {
                index: field(&line, "thread")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                ipv4: field(&line, "ipv4").unwrap_or("?").to_owned(),
                ipv6: field(&line, "ipv6").unwrap_or("?").to_owned(),
                mac: field(&line, "mac").unwrap_or("?").to_owned(),
            });
        }
    }
    list.sort_by_key(|t| t.index);

    println!();
    println!(
        "{:<6} {:<11} {:<13} {:<17} {:<9} {:<6} {:<9} {:<9} {:>12}",
        "thread", "IPv4", "IPv6", "MAC", "ping 4/6", "curl", "TCP echo", "UDP echo", "median HTTP"
    );
    let mut all_ok = true;
    for t in &list {
        let ping4 = peer(
            &pair.peer,
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "2", &t.ipv4],
        )
        .0;
        let ping6 = peer(
            &pair.peer,
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "2", &t.ipv6],
        )
        .0;
        let url4 = format!("http://{}/", t.ipv4);
        let url6 = format!("http://[{}]/", t.ipv6);
        let (body_ok, body) = peer(&pair.peer, "curl", &["-sS", "-m", "5", &url4]);
        let body_ok =
            body_ok && body.contains(&format!("thread {}", t.index)) && body.contains(&t.ipv4);
        let curl6 = peer(&pair.peer, "curl", &["-sS", "-m", "5", &url6]).0;
        let mut curl_args = vec!["-s", "-m", "5", "-o", "/dev/null", "-w", "%{time_total}\\n"];
        let urls = vec![url4.as_str(); CURLS];
        curl_args.extend(urls.iter().copied());
        let (_, times) = peer(&pair.peer, "curl", &curl_args);
        let mut times: Vec<f64> = times
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times
            .get(times.len() / 2)
            .map_or("-".to_owned(), |s| format!("{:.0} µs", s * 1e6));
        let tcp = echo(&pair.peer, &format!("TCP:{}:7", t.ipv4), "ioth tcp echo")
            && echo(
                &pair.peer,
                &format!("TCP6:[{}]:7", t.ipv6),
                "ioth tcp6 echo",
            );
        let udp = echo(&pair.peer, &format!("UDP:{}:7", t.ipv4), "ioth udp echo")
            && echo(
                &pair.peer,
                &format!("UDP6:[{}]:7", t.ipv6),
                "ioth udp6 echo",
            );
        let ok = |b: bool| if b { "ok" } else { "FAIL" };
        println!(
            "{:<6} {:<11} {:<13} {:<17} {:<9} {:<6} {:<9} {:<9} {:>12}",
            t.index,
            t.ipv4,
            t.ipv6,
            t.mac,
            format!("{}/{}", ok(ping4), ok(ping6)),
            ok(body_ok && curl6 && times.len() == CURLS),
            ok(tcp),
            ok(udp),
            median
        );
        all_ok &= ping4 && ping6 && body_ok && curl6 && tcp && udp && times.len() == CURLS;
    }
    let host = peer(
        &pair.peer,
        "ping",
        &[
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            &addrs::HOST_V4.to_string(),
        ],
    )
    .0;
    println!(
        "host {} (kernel stack, same interface): ping {}",
        addrs::HOST_V4,
        if host { "ok" } else { "FAIL" }
    );
    all_ok &= host;

    let status = stop(&mut child)?;
    thread::sleep(Duration::from_millis(100));
    println!();
    for line in rx.try_iter() {
        println!("  serve: {line}");
    }
    let attached = pair
        .host
        .ip(&["-d", "link", "show", &pair.host_if])
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
        .unwrap_or(true);
    drop(pair);
    println!(
        "teardown: server {status}, program detached: {}, namespaces removed; {:.1?} in all",
        if attached { "NO" } else { "yes" },
        started.elapsed()
    );
    if !all_ok || attached || !status.success() {
        bail!("the demo did not behave as expected (see above)");
    }
    Ok(())
}
