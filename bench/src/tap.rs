//! `ioth-bench tap-echo`: smoltcp the way it is usually run — over a Linux TAP device — with
//! the same stack, configuration and echo/discard logic as `ioth serve`, to show what the
//! AF_XDP path adds (or saves). Thread i opens TAP `tapb<i>`, gives the kernel side
//! 10.98.i.1/24 and its stack 10.98.i.2/24 (gateway 10.98.i.1); the harness routes
//! 10.98.0.0/16 from the load side through the server namespace (IP forwarding).
//! TCP and UDP echo on port 7, TCP discard on port 9, TCP source on port 19. Runs until killed.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::{
    Stack, StackConfig, TcpListener,
    api::apps::{Service, ServiceConn, udp_echo_allowed},
    link::tap::TapLink,
};
use smoltcp::{socket::udp, time::Instant};

/// The stack address of TAP thread `i`.
pub fn stack_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 98, i as u8, 2)
}

/// Runs `threads` TAP stacks until killed.
pub fn tap_echo(threads: usize) -> Result<()> {
    if threads == 0 || threads > 16 {
        bail!("tap-echo: --threads must be 1..=16");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..threads {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(i, &tx) {
                let _ = tx.send(Err(format!("tap thread {i}: {e:#}")));
            }
        });
    }
    for _ in 0..threads {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("tap threads ended"),
        }
    }
    println!("ready tap-echo threads={threads}");
    loop {
        std::thread::park();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    ioth_dataplane::netns::run("ip", args)?;
    Ok(())
}

fn serve(i: usize, ready: &std::sync::mpsc::Sender<Result<(), String>>) -> Result<()> {
    let name = format!("tapb{i}");
    let link = TapLink::open(&name).with_context(|| format!("opening TAP {name}"))?;
    ip(&["addr", "add", &format!("10.98.{i}.1/24"), "dev", &name])?;
    ip(&["link", "set", &name, "up"])?;
    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as i64);
    let config = StackConfig {
        mac: [0x02, 0x7a, 0x70, 0, 0, i as u8],
        ipv4: vec![(stack_ip(i), 24)],
        gateway_v4: Some(Ipv4Addr::new(10, 98, i as u8, 1)),
        thread: i as u32,
        ..StackConfig::default()
    };
    let mut stack = Stack::new(link, config, now())?;
    let mut echo = TcpListener::bind(&mut stack, 7, 64)?;
    let mut discard = TcpListener::bind(&mut stack, 9, 64)?;
    let mut source = TcpListener::bind(&mut stack, 19, 64)?;
    let udp_h = stack.udp_bind(7, 256)?;
    let _ = ready.send(Ok(()));
    let mut conns: Vec<ServiceConn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        stack.poll(now())?;
        for (l, service) in [
            (&mut echo, Service::Echo),
            (&mut discard, Service::Discard),
            (&mut source, Service::Source),
        ] {
            while let Some(handle) = l.accept(&mut stack) {
                conns.push(ServiceConn::new(service, handle));
            }
        }
        let mut worked = false;
        conns.retain_mut(|c| {
            let step = c.step(stack.sockets(), &mut buf);
            worked |= step.received;
            !step.done
        });
        let s = stack.sockets().get_mut::<udp::Socket<'_>>(udp_h);
        while let Ok((n, meta)) = s.recv_slice(&mut buf) {
            worked = true;
            // The same rule as `ioth serve`'s echo, so both measure the same work.
            if !udp_echo_allowed(meta.endpoint.port) {
                continue;
            }
            if s.send_slice(&buf[..n], meta.endpoint).is_err() {
                break;
            }
        }
        if worked {
            stack.poll(now())?;
        }
        stack.wait(now(), Duration::from_millis(250))?;
    }
}
