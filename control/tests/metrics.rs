//! `ioth serve --metrics`: the text format passes `promtool check metrics`, counters rise with
//! traffic and agree with what was sent, and a real Prometheus server (started here, on the
//! namespace's loopback) scrapes it and answers queries with rising values.
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use ioth_dataplane::netns::{NetNs, VethPair};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(ns: &NetNs, url: &str) -> String {
    let out = ns.exec("curl", &["-sS", "-m", "5", url]).expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like `get`, but a refused connection (a server still starting) is an empty body.
fn try_get(ns: &NetNs, url: &str) -> String {
    ns.exec("curl", &["-sS", "-m", "5", url])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The value of the sample `name{...label...}` in a text exposition.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn metrics_are_valid_rise_with_traffic_and_prometheus_scrapes_them() {
    let pair = VethPair::new("metrics", 1).expect("veth pair");
    let mut child = pair
        .host
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(["serve", "--iface", &pair.host_if, "--threads", "2"])
        .args([
            "--ipv4",
            "10.99.0.11/24",
            "--app",
            "http",
            "--metrics",
            "19464",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ioth serve");
    let out = child.stdout.take().unwrap();
    let _server = Kill(child);
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line.expect("line").starts_with("ready threads=") {
            break;
        }
    }
    // Keep reading the server's output so it never writes into a closed pipe.
    thread::spawn(move || for _ in lines {});
    let url = "http://127.0.0.1:19464/metrics";
    // A client that trickles a request it never finishes must hold up nobody: scrapes go
    // on while it dribbles, and the server cuts it off (header timeout, 5 s).
    let slow = pair.host.spawn(|| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect("127.0.0.1:19464").expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if s.write_all(b"x").is_err() {
                return Some(start.elapsed());
            }
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
        None
    });
    thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert!(
            get(&pair.host, url).contains("ioth_build_info"),
            "a scrape beside the slow client"
        );
    }
    let cut = slow.join().expect("slow client");
    println!("metrics: a client that never finishes its request was cut off after {cut:?}");
    assert!(
        cut.is_some(),
        "the server never cut off a client that never finished its request"
    );
    let before = get(&pair.host, url);
    // promtool, the format's own checker.
    common::assert_promtool_accepts(&before);
    for name in [
        "ioth_xdp_packets_total",
        "ioth_endpoint_rx_packets_total",
        "ioth_endpoint_tx_packets_total",
        "ioth_endpoint_rx_bytes_total",
        "ioth_endpoint_tx_bytes_total",
        "ioth_xsk_rx_dropped_total",
        "ioth_xsk_rx_ring_full_total",
        "ioth_xsk_fill_ring_empty_total",
        "ioth_xsk_tx_invalid_total",
        "ioth_umem_frames",
        "ioth_tcp_connections",
        "ioth_tcp_retransmits_total",
        "ioth_build_info",
    ] {
        assert!(
            before.contains(&format!("# TYPE {name} ")),
            "{name} missing"
        );
    }
    // Traffic to thread 1 only: its counters rise, thread 0's stay.
    for _ in 0..5 {
        let body = get(&pair.peer, "http://10.99.0.12/");
        assert!(body.contains("thread 1"), "{body}");
    }
    thread::sleep(Duration::from_millis(700)); // the workers publish twice a second
    let after = get(&pair.host, url);
    let rx = |t: &str, ip: &str| {
        sample(
            t,
            "ioth_endpoint_rx_packets_total",
            &format!("endpoint=\"{ip}\""),
        )
        .unwrap()
    };
    let tx = |t: &str, ip: &str| {
        sample(
            t,
            "ioth_endpoint_tx_packets_total",
            &format!("endpoint=\"{ip}\""),
        )
        .unwrap()
    };
    // Five HTTP exchanges are at least 5 × (SYN, request, ACK/FIN ...) frames each way.
    assert!(
        rx(&after, "10.99.0.12") >= rx(&before, "10.99.0.12") + 15.0,
        "{after}"
    );
    assert!(
        tx(&after, "10.99.0.12") >= tx(&before, "10.99.0.12") + 15.0,
        "{after}"
    );
    assert_eq!(rx(&after, "10.99.0.11"), rx(&before, "10.99.0.11"));
    // The frames of each queue, in the six states of their cycle, add up to the UMEM.
    let states = ["free", "fill", "rx", "stack", "tx", "completion"];
    let total: f64 = states
        .iter()
        .map(|s| {
            sample(&after, "ioth_umem_frames", &format!("state=\"{s}\""))
                .unwrap_or_else(|| panic!("umem state {s} missing"))
        })
        .sum();
    assert!(total > 0.0, "{after}");
    // The counters agree with `ioth endpoints` (same maps; the server is idle now).
    let out = pair
        .host
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(["endpoints", "--json"])
        .output()
        .expect("ioth endpoints");
    let eps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ep = eps
        .as_array()
        .and_then(|a| a.iter().find(|e| e["ipv4"][0] == "10.99.0.12"))
        .expect("endpoint 10.99.0.12");
    assert_eq!(ep["rx_packets"].as_f64(), Some(rx(&after, "10.99.0.12")));
    assert_eq!(ep["tx_packets"].as_f64(), Some(tx(&after, "10.99.0.12")));
    let redirect = |t: &str| sample(t, "ioth_xdp_packets_total", "verdict=\"redirect\"").unwrap();
    assert!(redirect(&after) >= redirect(&before) + 15.0);

    // A real Prometheus server scrapes it.
    let dir = std::env::temp_dir().join(format!("ioth-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ioth\n    static_configs:\n      - targets: ['127.0.0.1:19464']\n",
    )
    .unwrap();
    let prom = pair
        .host
        .command("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .args(["--web.listen-address=127.0.0.1:19090", "--log.level=error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let _prom = Kill(prom);
    let query = "http://127.0.0.1:19090/api/v1/query?query=ioth_endpoint_rx_packets_total";
    let value = |body: &str| -> Option<f64> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["data"]["result"]
            .as_array()?
            .iter()
            .find(|r| r["metric"]["endpoint"] == "10.99.0.12")?["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(v) = value(&try_get(&pair.host, query)) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series"
        );
        thread::sleep(Duration::from_millis(300));
    };
    for _ in 0..5 {
        get(&pair.peer, "http://10.99.0.12/");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = value(&try_get(&pair.host, query)).unwrap_or(first);
        if v > first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scraped value did not rise from {first}"
        );
        thread::sleep(Duration::from_millis(300));
    }
    drop(_prom);
    let _ = std::fs::remove_dir_all(&dir);
}
