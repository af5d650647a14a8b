//! Operating a running `ioth serve` from other processes: `ioth capture` (pcap read back by
//! tcpdump), `ioth top` (text frames and the full-screen view under a pseudo-terminal), and
//! the retransmission counter against a peer whose firewall (nftables) drops segments.
//!
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

mod common;

use std::{
    io::Read as _,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{Server, ioth_json, peer_ok, v4};
use ioth_dataplane::netns::{NetNs, VethPair};

fn ioth(ns: &NetNs) -> Command {
    ns.command(env!("CARGO_BIN_EXE_ioth"))
}

/// Waits until `child` exits (up to `secs`), killing it after that. Returns its output.
fn finish(mut child: Child, secs: u64) -> (bool, String, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("child output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

/// Starts `ioth capture` and waits for its "capturing" line on stderr.
fn start_capture(ns: &NetNs, args: &[&str]) -> Child {
    let mut child = ioth(ns)
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ioth capture");
    let mut err = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("capturing endpoint") {
        match err.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!(
                "ioth capture ended before capturing: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    // Keep the rest of stderr for `finish` through a pipe of our own.
    child.stderr = Some(err);
    child
}

fn tcpdump(pcap_path_or_dash: &str, stdin: Option<Vec<u8>>) -> String {
    let mut child = Command::new("tcpdump")
        .args(["-n", "-r", pcap_path_or_dash])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        use std::io::Write as _;
        input.write_all(&bytes).expect("feed tcpdump");
    }
    drop(input);
    let out = child.wait_with_output().expect("tcpdump output");
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn capture_gives_tcpdump_both_directions_of_one_endpoint_only() {
    let pair = VethPair::new("capture", 1).expect("veth pair");
    let server = Server::start(&pair, 2, "http", &[]);
    let pid = server.child.id();
    let (a, b) = (v4(0).to_string(), v4(1).to_string());
    let file = std::env::temp_dir().join(format!("ioth-capture-{}.pcap", std::process::id()));
    let capture = start_capture(&pair.host, &[&b, "-w", &file.to_string_lossy()]);

    // A second capture of the same endpoint is refused while the first runs.
    let out = ioth(&pair.host)
        .args(["capture", &b, "-c", "1"])
        .output()
        .expect("second capture");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already being captured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (ok, _) = peer_ok(&pair.peer, "ping", &["-c", "3", "-i", "0.2", &b]);
    assert!(ok, "ping {b}");
    let (ok, body) = peer_ok(
        &pair.peer,
        "curl",
        &["-sS", "-m", "5", &format!("http://{b}/")],
    );
    assert!(ok && body.contains("thread 1"), "{body}");
    // Traffic of the other endpoint must not show up.
    let (ok, _) = peer_ok(&pair.peer, "ping", &["-c", "2", "-i", "0.2", &a]);
    assert!(ok, "ping {a}");
    thread::sleep(Duration::from_millis(300));
    let pid_c = nix::unistd::Pid::from_raw(capture.id() as i32);
    nix::sys::signal::kill(pid_c, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let (ok, err, _) = finish(capture, 10);
    assert!(ok, "ioth capture: {err}");
    assert!(err.contains("frames captured"), "{err}");

    let text = tcpdump(&file.to_string_lossy(), None);
    let _ = std::fs::remove_file(&file);
    let lines: Vec<&str> = text.lines().collect();
    let count = |pat: &str| lines.iter().filter(|l| l.contains(pat)).count();
    assert_eq!(
        count(&format!("> {b}: ICMP echo request")),
        3,
        "requests received:\n{text}"
    );
    assert_eq!(
        count(&format!("IP {b} > 10.99.0.2: ICMP echo reply")),
        3,
        "replies sent:\n{text}"
    );
    assert!(count("HTTP/1.1 200 OK") == 1, "the HTTP answer:\n{text}");
    assert!(
        count(": Flags [S]") == 1 && count(": Flags [S.]") == 1,
        "{text}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&a)),
        "frames of {a} leaked into the capture of {b}:\n{text}"
    );

    // -c: stops by itself; stdout is a pcap stream tcpdump reads from a pipe.
    let capture = start_capture(&pair.host, &[&a, "-c", "4"]);
    let (ok, _) = peer_ok(&pair.peer, "ping", &["-c", "4", "-i", "0.2", &a]);
    assert!(ok, "ping {a}");
    let (ok, err, pcap) = finish(capture, 10);
    assert!(ok, "ioth capture -c: {err}");
    assert!(err.contains("4 frames captured"), "{err}");
    let text = tcpdump("-", Some(pcap));
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains("ICMP echo re"), "{text}");

    // pcapng: Wireshark (tshark) reads each frame's direction: requests in, replies out.
    let ng = std::env::temp_dir().join(format!("ioth-capture-{}.pcapng", std::process::id()));
    let capture = start_capture(
        &pair.host,
        &[
            &a,
            "-c",
            "4",
            "--format",
            "pcapng",
            "-w",
            &ng.to_string_lossy(),
        ],
    );
    let (ok, _) = peer_ok(&pair.peer, "ping", &["-c", "2", "-i", "0.2", &a]);
    assert!(ok, "ping {a}");
    let (ok, err, _) = finish(capture, 10);
    assert!(ok, "ioth capture --format pcapng: {err}");
    let out = Command::new("tshark")
        .args(["-r", &ng.to_string_lossy(), "-T", "fields"])
        .args(["-e", "frame.packet_flags_direction", "-e", "icmp.type"])
        .output()
        .expect("tshark");
    let _ = std::fs::remove_file(&ng);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Direction 1 is inbound, 2 outbound; ICMP type 8 a request, 0 a reply.
    let rows: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (
                f.next().unwrap_or("").to_owned(),
                f.next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    for (dir, icmp) in &rows {
        let dir = u32::from_str_radix(dir.trim_start_matches("0x"), 16).unwrap_or(0);
        let want = if icmp == "8" { 1 } else { 2 };
        assert_eq!(dir, want, "ICMP type {icmp}:\n{text}");
    }
    println!("pcapng: tshark reads directions {rows:?}");

    // Bad endpoint names and unknown endpoints are clear errors.
    for (arg, want) in [("10.99.0.99", "no endpoint"), ("bogus", "not an endpoint")] {
        let out = ioth(&pair.host)
            .args(["capture", arg])
            .output()
            .expect("ioth capture");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{arg}: {err}");
    }

    // The capture socket goes with the server.
    let sock = ioth_dataplane::capture::socket_path(pid);
    let (status, _) = server.stop();
    assert!(status.success());
    // The server runs under `ip netns exec`, whose pid is the server's (exec).
    assert!(!sock.exists(), "{} left behind", sock.display());
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn top_shows_rates_in_text_and_full_screen_and_quits_on_q() {
    let pair = VethPair::new("top", 1).expect("veth pair");
    let _server = Server::start(&pair, 2, "echo", &[]);
    let busy = v4(1).to_string();
    // Steady traffic to thread 1 while top samples.
    let mut ping = pair
        .peer
        .command("ping")
        .args(["-c", "100", "-i", "0.02", &busy])
        .stdout(Stdio::null())
        .spawn()
        .expect("ping");
    thread::sleep(Duration::from_millis(300));
    let out = ioth(&pair.host)
        .args(["top", "--batch", "-n", "2", "--interval", "0.5"])
        .output()
        .expect("ioth top --batch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("ioth top — 2 endpoint(s)").count(),
        2,
        "{text}"
    );
    // The busy endpoint is sorted first with a non-zero receive and transmit rate.
    let last = text.rsplit("refresh 2").next().unwrap_or("");
    let first_row = last.lines().nth(2).unwrap_or("");
    let cols: Vec<&str> = first_row.split_whitespace().collect();
    assert_eq!(cols.get(2), Some(&busy.as_str()), "{text}");
    let rate = |i: usize| {
        cols.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(rate(5) > 0.0 && rate(7) > 0.0, "rx/tx rates: {first_row}");

    // JSON, one array per refresh.
    let out = ioth(&pair.host)
        .args(["top", "--json", "-n", "1", "--interval", "0.5"])
        .output()
        .expect("ioth top --json");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["endpoint"], busy.as_str(), "{rows}");
    assert!(rows[0]["rx_pps"].as_f64().unwrap_or(0.0) > 0.0, "{rows}");

    // The full-screen view under a pseudo-terminal (script), answered with "q".
    let inner = format!(
        "stty cols 140 rows 20; exec {} top --interval 0.3",
        env!("CARGO_BIN_EXE_ioth")
    );
    let mut tui = pair
        .host
        .command("script")
        .args(["-qfec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut keys = tui.stdin.take().expect("stdin");
    thread::sleep(Duration::from_millis(1500));
    use std::io::Write as _;
    keys.write_all(b"s").expect("key s");
    thread::sleep(Duration::from_millis(500));
    keys.write_all(b"q").expect("key q");
    let (ok, err, screen) = finish(tui, 10);
    let _ = ping.kill();
    let _ = ping.wait();
    assert!(ok, "ioth top did not quit on q: {err}");
    let screen = String::from_utf8_lossy(&screen);
    // The screen is drawn in place (cursor moves between words): look for the words.
    assert!(screen.contains("packets/s"), "{screen}");
    assert!(
        screen.contains("bytes/"),
        "the s key re-sorts by bytes: {screen}"
    );
    assert!(screen.contains(&busy), "{screen}");
    assert!(
        screen.contains("\x1b[?1049l"),
        "the terminal was not restored"
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn retransmissions_are_counted_when_the_peer_drops_segments() {
    let pair = VethPair::new("retx", 1).expect("veth pair");
    let _server = Server::start(&pair, 1, "echo", &[]);
    let ip = v4(0).to_string();
    // The peer's firewall drops every 50th segment the endpoint sends.
    let rules = format!(
        "table inet ioth_loss {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  \
         ip saddr {ip} tcp sport 7 numgen inc mod 50 == 0 drop\n }}\n}}\n"
    );
    let rules_file = std::env::temp_dir().join(format!("ioth-retx-{}.nft", std::process::id()));
    std::fs::write(&rules_file, rules).expect("write rules");
    let nft = pair
        .peer
        .exec("nft", &["-f", &rules_file.to_string_lossy()]);
    let _ = std::fs::remove_file(&rules_file);
    nft.expect("nft");
    let before = ioth_json(&pair.host, &["endpoints", "--json"])[0]["tcp_retransmits"]
        .as_u64()
        .expect("tcp_retransmits");
    assert_eq!(before, 0);

    let dir = std::env::temp_dir();
    let input = dir.join(format!("ioth-retx-in-{}", std::process::id()));
    let output = dir.join(format!("ioth-retx-out-{}", std::process::id()));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&input, &data).expect("write input");
    let status = pair
        .peer
        .command("socat")
        .args(["-t", "20", "-T", "30", "-", &format!("TCP:{ip}:7")])
        .stdin(std::fs::File::open(&input).expect("input"))
        .stdout(std::fs::File::create(&output).expect("output"))
        .status()
        .expect("socat");
    let echoed = std::fs::read(&output).expect("read output");
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    assert!(status.success());
    assert!(echoed == data, "echo differs ({} bytes back)", echoed.len());

    // The owner publishes its counters every 250 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    let retx = loop {
        let v = ioth_json(&pair.host, &["endpoints", "--json"]);
        let n = v[0]["tcp_retransmits"].as_u64().unwrap_or(0);
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        thread::sleep(Duration::from_millis(100));
    };
    // About one segment in fifty was lost; each loss costs at least one retransmission.
    assert!(retx > 0, "no retransmission counted");
    let v = ioth_json(&pair.host, &["endpoints", "--json"]);
    assert!(v[0]["tx_packets"].as_u64().unwrap_or(0) > 200, "{v}");
    eprintln!(
        "retransmissions: {retx} of {} segments sent",
        v[0]["tx_packets"]
    );
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn the_source_app_streams_zeros_to_a_kernel_reader() {
    let pair = VethPair::new("source", 1).expect("veth pair");
    let _server = Server::start(&pair, 1, "source", &[]);
    let cmd = format!(
        "socat -u TCP:{}:19 - | head -c 2000000 | od -An -tx1 | sort -u",
        v4(0)
    );
    let out = pair
        .peer
        .command("timeout")
        .args(["20", "sh", "-c", &cmd])
        .output()
        .expect("socat");
    // 2 MB arrived (head stops the reader) and every byte is zero.
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        lines
            .iter()
            .all(|l| l.chars().all(|c| c == '0' || c == ' ' || c == '*')),
        "{text}"
    );
    assert!(!lines.is_empty(), "nothing arrived");
    let count = pair
        .peer
        .command("timeout")
        .args([
            "20",
            "sh",
            "-c",
            &format!("socat -u TCP:{}:19 - | head -c 2000000 | wc -c", v4(0)),
        ])
        .output()
        .expect("socat");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "2000000");
}

/// Asks the capture socket of server `pid` for endpoint `slot`; the first line answered and
/// the connection.
fn capture_request(pid: u32, iface: &str, slot: u64) -> (String, std::os::unix::net::UnixStream) {
    use std::io::{BufRead as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(format!("/run/ioth/{pid}.sock"))
        .expect("connect to the capture socket");
    writeln!(s, "IOTH-CAPTURE 1 {iface} {slot}").expect("request");
    let mut line = String::new();
    std::io::BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .expect("answer");
    (line.trim().to_owned(), s)
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn capture_drops_a_client_that_stops_reading_and_refuses_other_users() {
    let pair = VethPair::new("capacl", 1).expect("veth pair");
    let server = Server::start(&pair, 1, "echo", &[]);
    let pid = server.child.id();
    let eps = ioth_json(&pair.host, &["endpoints", "--json"]);
    let slot = eps[0]["slot"].as_u64().expect("slot");
    // A client that asks and then never reads, while the endpoint is flooded with pings.
    let (ok, stuck) = capture_request(pid, &pair.host_if, slot);
    assert_eq!(ok, "OK");
    let (again, _) = capture_request(pid, &pair.host_if, slot);
    assert!(again.contains("already being captured"), "{again}");
    let (ok, out) = peer_ok(
        &pair.peer,
        "ping",
        &[
            "-f",
            "-c",
            "20000",
            "-s",
            "1400",
            "-W",
            "1",
            &v4(0).to_string(),
        ],
    );
    assert!(ok, "ping flood: {out}");
    // The write timeout (3 s) frees the capture for someone who reads.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, _) = capture_request(pid, &pair.host_if, slot);
        if answer == "OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a client that never reads still holds the capture: {answer}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    drop(stuck);

    // Only root or the server's user: with the socket opened to everyone (a loosened mode),
    // the credential check still refuses the nobody user.
    use std::os::unix::fs::PermissionsExt as _;
    let sock = format!("/run/ioth/{pid}.sock");
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (dir_mode, sock_mode) = (mode("/run/ioth"), mode(&sock));
    let set =
        |p: &str, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set("/run/ioth", 0o755);
    set(&sock, 0o666);
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "echo 'IOTH-CAPTURE 1 {} {slot}' | timeout 5 socat -t 2 - UNIX-CONNECT:{sock}",
            pair.host_if
        ))
        .output()
        .expect("setpriv");
    set("/run/ioth", dir_mode);
    set(&sock, sock_mode);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ERR permission denied"),
        "the nobody user: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
}
