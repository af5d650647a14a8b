//! Helpers shared by the control-plane integration tests (each test file uses some).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use ioth_dataplane::netns::{NetNs, VethPair};

/// Asserts that `promtool check metrics` (Prometheus's own checker) accepts `text`.
pub fn assert_promtool_accepts(text: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let res = check.wait_with_output().expect("promtool output");
    assert!(
        res.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

pub const BASE_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
pub const BASE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11);

pub fn v4(i: u8) -> Ipv4Addr {
    let o = BASE_V4.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + i)
}

pub fn v6(i: u8) -> Ipv6Addr {
    let mut s = BASE_V6.segments();
    s[7] += u16::from(i);
    Ipv6Addr::from(s)
}

/// A running `ioth serve` in the host namespace; SIGTERMed on drop.
pub struct Server {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub ready: Vec<String>,
}

impl Server {
    pub fn start(pair: &VethPair, threads: u8, app: &str, extra: &[&str]) -> Server {
        Self::start_env(pair, threads, app, extra, &[])
    }

    pub fn start_env(
        pair: &VethPair,
        threads: u8,
        app: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = pair
            .host
            .command(env!("CARGO_BIN_EXE_ioth"))
            .args([
                "serve",
                "--iface",
                &pair.host_if,
                "--threads",
                &threads.to_string(),
            ])
            .args([
                "--ipv4",
                &format!("{BASE_V4}/24"),
                "--ipv6",
                &format!("{BASE_V6}/64"),
            ])
            .args(["--app", app])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ioth serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            lines: rx,
            ready: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = s
                .lines
                .recv_timeout(left)
                .expect("ioth serve did not print its final ready line");
            let last = line.starts_with("ready threads=");
            s.ready.push(line);
            if last {
                break;
            }
        }
        let thread_lines = s
            .ready
            .iter()
            .filter(|l| l.starts_with("ready thread="))
            .count();
        assert_eq!(thread_lines, usize::from(threads), "{:?}", s.ready);
        s
    }

    /// Sends SIGTERM, waits, and returns the exit status and the remaining output.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.terminate();
        let rest = self.lines.try_iter().collect();
        (status, rest)
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                // Let the reader thread drain the pipe.
                thread::sleep(Duration::from_millis(100));
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

pub fn peer_ok(ns: &NetNs, program: &str, args: &[&str]) -> (bool, String) {
    let out = ns
        .command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run peer command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn ioth_json(ns: &NetNs, args: &[&str]) -> serde_json::Value {
    let out = ns
        .command(env!("CARGO_BIN_EXE_ioth"))
        .args(args)
        .output()
        .expect("run ioth");
    assert!(
        out.status.success(),
        "ioth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}
