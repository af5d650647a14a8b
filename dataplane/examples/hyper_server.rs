//! hyper serving HTTP on per-thread ioth stacks.
//!
//! `hyper_server IFACE FIRST_IPV4/PREFIX [THREADS]`: thread i owns the i-th address from
//! FIRST_IPV4 on, runs its own current-thread tokio runtime, drives its own stack and serves
//! HTTP/1.1 with hyper on port 80. Ctrl-C stops it. Run as root.
use std::{convert::Infallible, net::Ipv4Addr, sync::Arc, thread};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use ioth_dataplane::{Dataplane, DataplaneOptions, StackConfig, api::aio::AsyncStack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(iface), Some(cidr)) = (args.next(), args.next()) else {
        return Err("usage: hyper_server IFACE FIRST_IPV4/PREFIX [THREADS]".into());
    };
    let threads: u8 = args.next().map(|t| t.parse()).transpose()?.unwrap_or(2);
    let (ip, prefix) = cidr.split_once('/').ok_or("expected A.B.C.D/P")?;
    let (ip, prefix): (Ipv4Addr, u8) = (ip.parse()?, prefix.parse()?);
    let dp = Dataplane::attach(&iface, DataplaneOptions::default())?;
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let dp = Arc::clone(&dp);
            let o = ip.octets();
            let my_ip = Ipv4Addr::new(o[0], o[1], o[2], o[3] + i);
            thread::spawn(move || serve(dp, i, my_ip, prefix))
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")??;
    }
    Ok(())
}

fn serve(dp: Arc<Dataplane>, i: u8, ip: Ipv4Addr, prefix: u8) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let config = StackConfig {
            mac: [0x02, 0x68, 0x79, 0x70, 0, i],
            ipv4: vec![(ip, prefix)],
            ..StackConfig::default()
        };
        let stack = dp
            .stack(config, smoltcp::time::Instant::from_millis(0))
            .map_err(|e| e.to_string())?;
        let stack = AsyncStack::new(stack);
        tokio::task::spawn_local(stack.clone().drive());
        let mut listener = stack.listen(80, 16).map_err(|e| e.to_string())?;
        println!("thread {i}: hyper on http://{ip}/");
        loop {
            let stream = listener.accept().await;
            tokio::task::spawn_local(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "hyper on ioth thread {i} at {ip}\n"
                    )))))
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    eprintln!("thread {i}: connection error: {e}");
                }
            });
        }
    })
}
