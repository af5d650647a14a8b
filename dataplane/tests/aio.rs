//! The tokio API on per-thread stacks over AF_XDP: hyper serving HTTP and a tokio echo, each
//! thread on its own address, reached by curl and kernel sockets from the peer namespace.
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

use std::{
    convert::Infallible,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::Arc,
    thread,
    time::Duration,
};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use ioth_dataplane::{
    Dataplane, DataplaneOptions, StackConfig, api::aio::AsyncStack, netns::VethPair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 31 + i)
}

/// One server thread: its own runtime, stack, hyper on :80 and a tokio echo on :7.
fn server_thread(dp: Arc<Dataplane>, i: u8, ready: std::sync::mpsc::Sender<()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let config = StackConfig {
            mac: [0x02, 0x61, 0x69, 0x6f, 0, i],
            ipv4: vec![(ip(i), 24)],
            ..StackConfig::default()
        };
        let stack = AsyncStack::new(
            dp.stack(config, smoltcp::time::Instant::from_millis(0))
                .expect("stack"),
        );
        tokio::task::spawn_local(stack.clone().drive());
        let mut http = stack.listen(80, 8).unwrap();
        let mut echo = stack.listen(7, 8).unwrap();
        let udp = stack.udp_bind(7).unwrap();
        tokio::task::spawn_local(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&buf[..n], from).await;
            }
        });
        ready.send(()).unwrap();
        tokio::task::spawn_local(async move {
            loop {
                let mut s = echo.accept().await;
                tokio::task::spawn_local(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        loop {
            let stream = http.accept().await;
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |_r: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "hyper on ioth thread {i}\n"
                    )))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn hyper_and_tokio_echo_on_per_thread_stacks() {
    let pair = VethPair::new("aio", 1).expect("veth pair");
    let dp = {
        let _inside = pair.host.enter().unwrap();
        Dataplane::attach(&pair.host_if, DataplaneOptions::default()).expect("attach")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..2 {
        let (dp, tx) = (Arc::clone(&dp), tx.clone());
        // Detached: the threads run until the test process ends. They live in the host
        // namespace, where the interface is (AF_XDP binds by interface name).
        pair.host.spawn(move || server_thread(dp, i, tx));
    }
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..2u8 {
        for _ in 0..3 {
            let out = pair
                .peer
                .exec("curl", &["-sS", "-m", "5", &format!("http://{}/", ip(i))])
                .expect("curl");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("hyper on ioth thread {i}\n")
            );
        }
    }
    // Kernel TCP sockets from the peer: a 1 MiB echo through the tokio echo.
    let echoed = pair.peer.run(move || {
        let s =
            TcpStream::connect_timeout(&SocketAddr::new(ip(1).into(), 7), Duration::from_secs(5))
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expect = data.clone();
        let writer = thread::spawn(move || w.write_all(&data).unwrap());
        let mut got = vec![0u8; expect.len()];
        let mut r = s;
        r.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        got == expect
    });
    assert!(echoed, "the tokio echo returned different bytes");
    // UDP through the tokio UDP socket.
    let udp_ok = pair.peer.run(move || {
        let u = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 64];
        (0..100u8).all(|i| {
            u.send_to(&[i; 32], (ip(0), 7)).unwrap();
            matches!(u.recv(&mut b), Ok(32) if b[..32] == [i; 32])
        })
    });
    assert!(udp_ok, "the tokio UDP echo failed");
}
