//! Load generators (run in the peer namespace, pinned to their own CPU) and the kernel
//! reference servers (run as `ioth-bench kernel-server` in the server namespace).

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr, UdpSocket},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sys::Batch;

/// What one load run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Completed round trips (datagrams echoed, or request/response transactions).
    pub ops: u64,
    /// Round trips lost (UDP only: timed out).
    pub lost: u64,
    /// Wall time of the measurement.
    pub secs: f64,
    /// Round-trip latency, ns.
    pub latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram bounds")
}

/// Nanoseconds since `epoch`, carried inside a request to time it.
fn ns_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// UDP echo load: one connected socket per target, `window` datagrams of `size` bytes in
/// flight on each, for `duration`, from one thread (batched with sendmmsg/recvmmsg).
pub fn udp_echo(
    targets: &[SocketAddr],
    size: usize,
    window: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let epoch = Instant::now();
    let mut socks = Vec::new();
    for t in targets {
        let bind: SocketAddr = match t.ip() {
            IpAddr::V4(_) => "0.0.0.0:0".parse()?,
            IpAddr::V6(_) => "[::]:0".parse()?,
        };
        let s = UdpSocket::bind(bind)?;
        s.connect(t)?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let mut hist = histogram();
    let mut batch = Batch::new(window.max(1));
    let mut inflight = vec![0usize; socks.len()];
    let mut last_rx = vec![Instant::now(); socks.len()];
    let (mut ops, mut lost) = (0u64, 0u64);
    let size = size.max(8);
    let end = Instant::now() + duration;
    let start = Instant::now();
    while Instant::now() < end {
        for (i, s) in socks.iter().enumerate() {
            // Refill the window.
            let want = window - inflight[i];
            if want > 0 {
                let now = ns_since(epoch);
                for k in 0..want {
                    let buf = batch.buf_mut(k);
                    buf[..8].copy_from_slice(&now.to_le_bytes());
                    batch.set_len(k, size);
                }
                match batch.send(s, want, false) {
                    Ok(n) => inflight[i] += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("sendmmsg"),
                }
            }
            match batch.recv(s, window) {
                Ok(n) => {
                    let now = ns_since(epoch);
                    for k in 0..n {
                        let d = batch.get(k);
                        if d.len() >= 8 {
                            let sent = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
                            let _ = hist.record(now.saturating_sub(sent).max(1));
                        }
                    }
                    inflight[i] = inflight[i].saturating_sub(n);
                    ops += n as u64;
                    last_rx[i] = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Nothing back for 200 ms: whatever is in flight is lost; resend.
                    if last_rx[i].elapsed() > Duration::from_millis(200) && inflight[i] > 0 {
                        lost += inflight[i] as u64;
                        inflight[i] = 0;
                        last_rx[i] = Instant::now();
                    }
                }
                Err(e) => return Err(e).context("recvmmsg"),
            }
        }
    }
    Ok(LoadResult {
        ops,
        lost,
        secs: start.elapsed().as_secs_f64(),
        latency: hist,
    })
}

/// TCP request/response load: `conns` connections spread over `targets`, each sending a
/// `size`-byte request and waiting for the `size`-byte response, for `duration`.
pub fn tcp_rr(
    targets: &[SocketAddr],
    conns: usize,
    size: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let targets = targets.to_vec();
    local.block_on(&rt, async move {
        let hist = Rc::new(RefCell::new(histogram()));
        let ops = Rc::new(RefCell::new(0u64));
        let mut streams = Vec::new();
        for c in 0..conns {
            let t = targets[c % targets.len()];
            let s =
                tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(t))
                    .await
                    .context("connect timed out")?
                    .with_context(|| format!("connect {t}"))?;
            s.set_nodelay(true)?;
            streams.push(s);
        }
        let start = Instant::now();
        let end = start + duration;
        let mut tasks = Vec::new();
        for mut s in streams {
            let (hist, ops) = (Rc::clone(&hist), Rc::clone(&ops));
            tasks.push(tokio::task::spawn_local(async move {
                let req = vec![0x5au8; size];
                let mut resp = vec![0u8; size];
                while Instant::now() < end {
                    let t0 = Instant::now();
                    if s.write_all(&req).await.is_err() || s.read_exact(&mut resp).await.is_err() {
                        break;
                    }
                    let _ = hist
                        .borrow_mut()
                        .record(t0.elapsed().as_nanos().max(1) as u64);
                    *ops.borrow_mut() += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        let latency = hist.borrow().clone();
        let ops = *ops.borrow();
        Ok(LoadResult {
            ops,
            lost: 0,
            secs,
            latency,
        })
    })
}

/// TCP bulk load: one connection per target for `duration`, 64 KiB writes as fast as the
/// connection takes them. `echo`: the server sends everything back and the result counts the
/// bytes read back (both directions at once); otherwise (a discard server) the bytes written.
/// `ops` is bytes; bytes still in socket buffers at the end (a few MB at most) count as
/// written.
/// Which way a bulk transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bulk {
    /// To the server's discard port: bytes written count.
    Up,
    /// Through the server's echo: bytes read back count (both directions at once).
    Echo,
    /// From the server's source port: bytes read count.
    Down,
}

pub fn tcp_bulk(targets: &[SocketAddr], mode: Bulk, duration: Duration) -> Result<LoadResult> {
    let echo = mode != Bulk::Up;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let targets = targets.to_vec();
    local.block_on(&rt, async move {
        let mut streams = Vec::new();
        for t in &targets {
            let s =
                tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(t))
                    .await
                    .context("connect timed out")?
                    .with_context(|| format!("connect {t}"))?;
            streams.push(s);
        }
        let start = Instant::now();
        let end = start + duration;
        let bytes = Rc::new(RefCell::new(0u64));
        let mut tasks = Vec::new();
        for s in streams {
            let (mut r, mut w) = s.into_split();
            let counted = Rc::clone(&bytes);
            tasks.push(tokio::task::spawn_local(async move {
                let chunk = vec![0x5au8; 64 * 1024];
                if mode == Bulk::Down {
                    // Keep the write half open (dropping it would send FIN) until the end.
                    tokio::time::sleep_until(end.into()).await;
                    drop(w);
                    return;
                }
                while Instant::now() < end {
                    match tokio::time::timeout_at(end.into(), w.write_all(&chunk)).await {
                        Ok(Ok(())) => {
                            if !echo {
                                *counted.borrow_mut() += chunk.len() as u64;
                            }
                        }
                        _ => break,
                    }
                }
            }));
            if echo {
                let counted = Rc::clone(&bytes);
                tasks.push(tokio::task::spawn_local(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while Instant::now() < end {
                        match tokio::time::timeout_at(end.into(), r.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => *counted.borrow_mut() += n as u64,
                            _ => break,
                        }
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        let ops = *bytes.borrow();
        Ok(LoadResult {
            ops,
            lost: 0,
            secs,
            latency: histogram(),
        })
    })
}

/// The kernel reference server: UDP echo (recvmmsg/sendmmsg batches) and TCP echo (epoll,
/// via tokio) on port `port`, UDP and TCP discard on port 9 of every address in `ips`, one thread per address — or, with `reuseport`,
/// `threads` threads sharing one address with SO_REUSEPORT. Runs until killed.
pub fn kernel_server(ips: &[IpAddr], threads: usize, port: u16, reuseport: bool) -> Result<()> {
    let binds: Vec<IpAddr> = if reuseport {
        vec![ips[0]; threads.max(1)]
    } else {
        ips.to_vec()
    };
    let mut handles = Vec::new();
    for ip in binds {
        let addr = SocketAddr::new(ip, port);
        let udp = bind_udp(addr, reuseport)?;
        let discard_addr = SocketAddr::new(ip, crate::frames::DISCARD_PORT);
        let udp_discard = bind_udp(discard_addr, reuseport)?;
        let tcp = bind_tcp(addr, reuseport)?;
        let discard = bind_tcp(discard_addr, reuseport)?;
        let http = bind_tcp(SocketAddr::new(ip, 80), reuseport)?;
        let source = bind_tcp(SocketAddr::new(ip, 19), reuseport)?;
        handles.push(std::thread::spawn(move || {
            let udp_thread = std::thread::spawn(move || udp_echo_server(udp));
            let discard_thread = std::thread::spawn(move || udp_discard_server(udp_discard));
            tcp_server(tcp, discard, http, source);
            let _ = udp_thread.join();
            let _ = discard_thread.join();
        }));
    }
    println!("ready kernel-server");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn bind_udp(addr: SocketAddr, reuseport: bool) -> Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    s.set_reuse_port(reuseport)?;
    s.bind(&addr.into())
        .with_context(|| format!("bind udp {addr}"))?;
    Ok(s.into())
}

fn bind_tcp(addr: SocketAddr, reuseport: bool) -> Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuseport)?;
    s.bind(&addr.into())
        .with_context(|| format!("bind tcp {addr}"))?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn udp_echo_server(sock: UdpSocket) {
    let mut batch = Batch::new(32);
    loop {
        match batch.recv(&sock, 32) {
            Ok(n) => {
                let _ = batch.send_back(&sock, n);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn udp_discard_server(sock: UdpSocket) {
    let mut batch = Batch::new(32);
    loop {
        if batch.recv(&sock, 32).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The answer of `ioth serve --app http`, byte for byte the same shape (one request per
/// connection, then close), so that wrk measures the same exchange on both.
fn http_answer(ip: &str) -> String {
    let text = format!("ioth thread 0 at {ip}\n");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nServer: ioth\r\n\r\n{text}",
        text.len()
    )
}

/// TCP echo on `listener`, TCP discard on `discard`, HTTP on `http` and a source of zeros on
/// `source`, one thread (epoll via tokio).
fn tcp_server(
    listener: std::net::TcpListener,
    discard: std::net::TcpListener,
    http: std::net::TcpListener,
    source: std::net::TcpListener,
) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (Ok(listener), Ok(discard), Ok(http), Ok(source)) = (
            tokio::net::TcpListener::from_std(listener),
            tokio::net::TcpListener::from_std(discard),
            tokio::net::TcpListener::from_std(http),
            tokio::net::TcpListener::from_std(source),
        ) else {
            return;
        };
        tokio::task::spawn_local(async move {
            while let Ok((mut s, _)) = source.accept().await {
                tokio::task::spawn_local(async move {
                    let chunk = vec![0u8; 64 * 1024];
                    while s.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        tokio::task::spawn_local(async move {
            while let Ok((mut s, _)) = http.accept().await {
                let answer =
                    http_answer(&s.local_addr().map_or(String::new(), |a| a.ip().to_string()));
                tokio::task::spawn_local(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024
                    {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        tokio::task::spawn_local(async move {
            while let Ok((mut s, _)) = discard.accept().await {
                tokio::task::spawn_local(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// What `wrk` measured against one URL.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WrkResult {
    /// Requests completed per second.
    pub requests_per_sec: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    /// Latency percentiles, µs.
    pub p99_us: f64,
}

/// `wrk` latency like `1.23ms`, `456.00us` or `1.5s`, in µs.
fn wrk_duration_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix("m") {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * mult)
}

/// Reads `wrk --latency` output.
pub fn parse_wrk(out: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    for line in out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => r.requests_per_sec = v.parse()?,
            ["50%", v] => r.p50_us = wrk_duration_us(v).context("wrk p50")?,
            ["99%", v] => r.p99_us = wrk_duration_us(v).context("wrk p99")?,
            _ => {}
        }
    }
    if r.requests_per_sec <= 0.0 {
        anyhow::bail!("wrk reported no requests:\n{out}");
    }
    Ok(r)
}

#[cfg(test)]
mod wrk_tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 1s test @ http://10.99.0.11/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  641.00us\n     75%    1.02ms\n     90%    2.10ms\n     99%    5.33ms\n  12345 requests in 1.00s, 1.80MB read\nRequests/sec:  12340.55\nTransfer/sec:      1.80MB\n";
        let r = parse_wrk(out).unwrap();
        assert_eq!(r.requests_per_sec, 12340.55);
        assert_eq!(r.p50_us, 641.0);
        assert_eq!(r.p99_us, 5330.0);
        assert!(parse_wrk("Requests/sec: 0").is_err());
        assert_eq!(wrk_duration_us("1.50s"), Some(1.5e6));
    }
}
