//! One worker thread of `ioth serve`: its own stack, listeners and connections.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use ioth_dataplane::{
    Dataplane, StackConfig, TcpListener,
    api::apps::{Service, ServiceConn, udp_echo_allowed},
    wire::Mac,
};
use smoltcp::{socket::udp, time::Instant};

use super::{
    args::App,
    http::HttpConn,
    stats::{ThreadStats, publish},
};

/// A connection being served.
enum Conn {
    /// Echo, discard or source (shared with the benchmark's TAP server).
    Stream(ServiceConn),
    /// HTTP/1.1: one request, one answer, then close.
    Http(HttpConn),
}

/// What every worker shares.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    /// (app, port) pairs.
    pub apps: Vec<(App, u16)>,
    /// Listen backlog per port.
    pub backlog: usize,
    /// Spin instead of sleeping.
    pub busy_poll: bool,
    /// Testing aid: this thread panics a second after it is ready.
    pub test_panic_thread: Option<u16>,
}

/// Runs thread `index`: builds its stack from `config`, says ready (or why not) on `ready`,
/// serves until `stop`.
pub fn worker(
    dp: Arc<Dataplane>,
    index: u16,
    config: StackConfig,
    args: Arc<WorkerArgs>,
    stop: Arc<AtomicBool>,
    stats: Arc<ThreadStats>,
    ready: mpsc::Sender<Result<String, String>>,
) {
    let clock = std::time::Instant::now();
    let now = || Instant::from_micros(clock.elapsed().as_micros() as i64);
    let ip = config.ipv4[0].0;
    let ipv6 = config.ipv6.first().map(|(a, _)| *a);
    let mac = config.mac;
    let mut stack = match dp.stack(config, now()) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("thread {index}: {e:#}")));
            return;
        }
    };
    let mut listeners = Vec::new();
    let mut udps = Vec::new();
    for &(app, port) in &args.apps {
        match TcpListener::bind(&mut stack, port, args.backlog) {
            Ok(l) => listeners.push((app, l)),
            Err(e) => {
                let _ = ready.send(Err(format!("thread {index}: {e}")));
                return;
            }
        }
        if matches!(app, App::Echo | App::Discard) {
            match stack.udp_bind(port, 256) {
                Ok(h) => udps.push((app, h)),
                Err(e) => {
                    let _ = ready.send(Err(format!("thread {index}: {e}")));
                    return;
                }
            }
        }
    }
    stats
        .slot
        .store(u64::from(stack.endpoint().0), Ordering::Relaxed);
    let queues = dp.queues().len();
    let _ = ready.send(Ok(format!(
        "ready thread={index} ipv4={ip} ipv6={} mac={} queues={queues} xdp={}{} xsk={}",
        ipv6.map_or("-".to_owned(), |a| a.to_string()),
        Mac(mac),
        dp.attach_mode(),
        if dp.pinned() { "(pinned)" } else { "" },
        dp.bind_mode().map_or("-".to_owned(), |m| m.to_string()),
    )));
    let body = format!("ioth thread {index} at {ip}\n");
    let panic_at = (args.test_panic_thread == Some(index))
        .then(|| now() + smoltcp::time::Duration::from_secs(1));
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut published = std::time::Instant::now();
    let mut limit_warned: (u64, Option<std::time::Instant>) = (0, None);
    while !stop.load(Ordering::Relaxed) {
        if published.elapsed() >= Duration::from_millis(500) {
            publish(&mut stack, &stats);
            stats.half_open_dropped.store(
                listeners.iter().map(|(_, l)| l.dropped_half_open()).sum(),
                Ordering::Relaxed,
            );
            published = std::time::Instant::now();
            // Never refuse silently: say so when the socket limit was hit (at most every 10 s).
            let hits = stack.socket_limit_hits();
            if hits > limit_warned.0
                && limit_warned
                    .1
                    .is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(10))
            {
                eprintln!(
                    "warning: thread {index}: socket limit ({}) reached: {} socket(s) refused \
                     so far (listeners accept fewer; raise --max-sockets)",
                    stack.config().max_sockets,
                    hits
                );
                limit_warned = (hits, Some(std::time::Instant::now()));
            }
        }
        if panic_at.is_some_and(|t| now() >= t) {
            panic!("thread {index}: panic requested by --test-panic-thread");
        }
        if let Err(e) = stack.poll(now()) {
            log::warn!("thread {index}: link error: {e}");
        }
        for (app, listener) in &mut listeners {
            while let Some(handle) = listener.accept(&mut stack) {
                conns.push(match app {
                    App::Echo => Conn::Stream(ServiceConn::new(Service::Echo, handle)),
                    App::Discard => Conn::Stream(ServiceConn::new(Service::Discard, handle)),
                    App::Source => Conn::Stream(ServiceConn::new(Service::Source, handle)),
                    App::Http => Conn::Http(HttpConn::new(handle)),
                });
            }
        }
        let mut worked = false;
        conns.retain_mut(|c| match c {
            Conn::Stream(sc) => {
                let step = sc.step(stack.sockets(), &mut buf);
                if step.received {
                    worked = true;
                    if sc.service == Service::Echo {
                        stats.requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
                !step.done
            }
            Conn::Http(h) => {
                let step = h.step(stack.sockets(), &mut buf, &body);
                worked |= step.worked;
                if step.answered {
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                }
                !step.done
            }
        });
        for &(app, h) in &udps {
            let s = stack.sockets().get_mut::<udp::Socket<'_>>(h);
            while let Ok((n, meta)) = s.recv_slice(&mut buf) {
                worked = true;
                if app == App::Echo && !udp_echo_allowed(meta.endpoint.port) {
                    stats.udp_echo_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if app == App::Echo && s.send_slice(&buf[..n], meta.endpoint).is_err() {
                    break;
                }
            }
        }
        if worked && let Err(e) = stack.poll(now()) {
            log::warn!("thread {index}: link error: {e}");
        }
        if !args.busy_poll
            && let Err(e) = stack.wait(now(), Duration::from_millis(250))
        {
            log::warn!("thread {index}: wait: {e}");
        }
    }
}
