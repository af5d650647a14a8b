//! Prometheus metrics of `ioth serve`, in the text format at `/metrics`.
//!
//! Every scrape reads the sources afresh — the classifier's per-CPU counters (summed), each
//! thread's published counters, each queue's frame accounting — and encodes them with the
//! prometheus crate. The names and labels are part of ioth's interface (README, "Metrics").
//! The HTTP side is hyper on a runtime of its own thread: concurrent connections, header and
//! connection timeouts; it answers `GET /metrics` (404 elsewhere) and stops with the server.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Bytes, body::Incoming, header,
    server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use ioth_common::Counter;
use ioth_dataplane::{Dataplane, classifier::EndpointKind};
use prometheus::{Encoder as _, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::serve::stats::{TCP_STATES, ThreadStats};

/// What the metrics are read from.
pub struct Sources {
    /// The data plane (classifier and UMEMs).
    pub dp: Arc<Dataplane>,
    /// Each worker's published counters.
    pub threads: Vec<Arc<ThreadStats>>,
}

/// `IP:PORT`, or a bare `PORT` on loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse()
        .with_context(|| format!("--metrics {s:?}: expected IP:PORT or PORT"))
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn encode(reg: &Registry) -> Result<String> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// The metric families both renderers take from the classifier's maps.
struct ClassifierFamilies {
    xdp: IntCounterVec,
    rx_packets: IntCounterVec,
    rx_bytes: IntCounterVec,
    rx_dropped: IntCounterVec,
    tx_packets: IntCounterVec,
    tx_bytes: IntCounterVec,
    retransmits: IntCounterVec,
}

/// One endpoint's counters as the classifier's maps hold them.
#[derive(Debug, Default)]
struct EndpointCounters {
    rx: ioth_common::EndpointStats,
    tx: ioth_common::EndpointTx,
}

/// Labels of the per-endpoint families.
const EP_LABELS: [&str; 4] = ["iface", "endpoint", "thread", "kind"];

impl ClassifierFamilies {
    fn register(reg: &Registry) -> Result<Self> {
        Ok(Self {
            xdp: counter(
                reg,
                "ioth_xdp_packets_total",
                "Frames the XDP classifier saw, by verdict.",
                &["iface", "verdict"],
            )?,
            rx_packets: counter(
                reg,
                "ioth_endpoint_rx_packets_total",
                "Frames redirected to the endpoint's sockets.",
                &EP_LABELS,
            )?,
            rx_bytes: counter(
                reg,
                "ioth_endpoint_rx_bytes_total",
                "Bytes redirected to the endpoint's sockets.",
                &EP_LABELS,
            )?,
            rx_dropped: counter(
                reg,
                "ioth_endpoint_rx_dropped_total",
                "Frames the endpoint owns that found no socket on their queue.",
                &EP_LABELS,
            )?,
            tx_packets: counter(
                reg,
                "ioth_endpoint_tx_packets_total",
                "Frames the endpoint's stack sent (published by its owner every 250 ms).",
                &EP_LABELS,
            )?,
            tx_bytes: counter(
                reg,
                "ioth_endpoint_tx_bytes_total",
                "Bytes the endpoint's stack sent (published by its owner every 250 ms).",
                &EP_LABELS,
            )?,
            retransmits: counter(
                reg,
                "ioth_tcp_retransmits_total",
                "TCP segments the endpoint's stack sent again (RTO and fast retransmits).",
                &["endpoint"],
            )?,
        })
    }

    fn verdicts(&self, iface: &str, c: &ioth_dataplane::VerdictCounters) {
        for v in Counter::ALL {
            self.xdp
                .with_label_values(&[iface, v.label()])
                .inc_by(c.get(v));
        }
    }

    fn endpoint(&self, labels: &[&str; 4], c: &EndpointCounters) {
        self.rx_packets
            .with_label_values(labels)
            .inc_by(c.rx.rx_packets);
        self.rx_bytes
            .with_label_values(labels)
            .inc_by(c.rx.rx_bytes);
        self.rx_dropped
            .with_label_values(labels)
            .inc_by(c.rx.rx_dropped);
        self.tx_packets
            .with_label_values(labels)
            .inc_by(c.tx.tx_packets);
        self.tx_bytes
            .with_label_values(labels)
            .inc_by(c.tx.tx_bytes);
        self.retransmits
            .with_label_values(&[labels[1]])
            .inc_by(c.tx.tcp_retransmits);
    }
}

fn build_info(reg: &Registry, mode: &str) -> Result<()> {
    gauge(
        reg,
        "ioth_build_info",
        "Build and mode of the running ioth.",
        &["version", "mode"],
    )?
    .with_label_values(&[env!("CARGO_PKG_VERSION"), mode])
    .set(1);
    Ok(())
}

/// The metrics of attached classifiers, read from their maps (no server needed): what
/// `ioth exporter` serves for persistent attachments.
pub fn render_attached(only: Option<&str>) -> Result<String> {
    use ioth_dataplane::classifier::view::{ClassifierView, attached_interfaces};
    let reg = Registry::new();
    let fams = ClassifierFamilies::register(&reg)?;
    let ifaces = match only {
        Some(i) => vec![i.to_owned()],
        None => attached_interfaces()?,
    };
    for iface in &ifaces {
        let v = ClassifierView::open(iface)?;
        fams.verdicts(iface, &v.counters()?);
        for e in v.endpoints()? {
            let endpoint = e
                .ipv4
                .first()
                .map(|a| a.to_string())
                .or_else(|| e.ipv6.first().map(|a| a.to_string()))
                .unwrap_or_else(|| format!("slot{}", e.slot));
            let endpoint = match e.kind {
                EndpointKind::Thread => endpoint,
                EndpointKind::Port => format!("port{}", e.thread),
                EndpointKind::Switch => "switch".to_owned(),
            };
            let thread = e.thread.to_string();
            let kind = e.kind.to_string();
            let l = [
                iface.as_str(),
                endpoint.as_str(),
                thread.as_str(),
                kind.as_str(),
            ];
            let c = EndpointCounters {
                rx: ioth_common::EndpointStats {
                    rx_packets: e.rx_packets,
                    rx_bytes: e.rx_bytes,
                    rx_dropped: e.rx_dropped,
                },
                tx: ioth_common::EndpointTx {
                    tx_packets: e.tx_packets,
                    tx_bytes: e.tx_bytes,
                    tcp_retransmits: e.tcp_retransmits,
                    ..Default::default()
                },
            };
            fams.endpoint(&l, &c);
        }
    }
    build_info(&reg, "exporter")?;
    encode(&reg)
}

/// The metrics as Prometheus text.
pub fn render(src: &Sources) -> Result<String> {
    let reg = Registry::new();
    let iface = src.dp.iface();
    let fams = ClassifierFamilies::register(&reg)?;
    let (counters, ep_stats, ports) = {
        let c = src.dp.classifier();
        let counters = c.counters()?;
        // Switch ports of this server: their own endpoints, counted by the classifier.
        let ports: Vec<(u32, EndpointCounters)> = c
            .endpoints()
            .filter(|(_, a)| a.kind == EndpointKind::Port)
            .map(|(id, a)| {
                (
                    a.thread,
                    EndpointCounters {
                        rx: c.endpoint_stats(id.0).unwrap_or_default(),
                        tx: c.endpoint_tx(id.0).unwrap_or_default(),
                    },
                )
            })
            .collect();
        let stats: Vec<_> = src
            .threads
            .iter()
            .map(|t| {
                let slot = t.slot.load(Ordering::Relaxed) as u32;
                if slot == 0 {
                    return EndpointCounters::default();
                }
                EndpointCounters {
                    rx: c.endpoint_stats(slot).unwrap_or_default(),
                    tx: c.endpoint_tx(slot).unwrap_or_default(),
                }
            })
            .collect();
        (counters, stats, ports)
    };
    fams.verdicts(iface, &counters);
    let xsk = [
        (
            "ioth_xsk_rx_dropped_total",
            "XDP_STATISTICS rx_dropped of the endpoint's sockets.",
        ),
        (
            "ioth_xsk_rx_ring_full_total",
            "XDP_STATISTICS rx_ring_full of the endpoint's sockets.",
        ),
        (
            "ioth_xsk_fill_ring_empty_total",
            "XDP_STATISTICS rx_fill_ring_empty_descs of the endpoint's sockets.",
        ),
        (
            "ioth_xsk_tx_invalid_total",
            "XDP_STATISTICS tx_invalid_descs of the endpoint's sockets.",
        ),
    ]
    .map(|(n, h)| counter(&reg, n, h, &["iface", "endpoint"]));
    let [xsk_dropped, xsk_full, xsk_empty, xsk_invalid] = xsk;
    let (xsk_dropped, xsk_full, xsk_empty, xsk_invalid) =
        (xsk_dropped?, xsk_full?, xsk_empty?, xsk_invalid?);
    let tcp = gauge(
        &reg,
        "ioth_tcp_connections",
        "TCP sockets of the endpoint's stack, by state.",
        &["endpoint", "state"],
    )?;
    let guard = [
        (
            "ioth_socket_limit_hits_total",
            "Sockets the endpoint's stack refused because --max-sockets were open.",
        ),
        (
            "ioth_tcp_half_open_dropped_total",
            "Half-open TCP connections dropped to make room for new ones (SYN floods).",
        ),
        (
            "ioth_udp_echo_refused_total",
            "UDP datagrams the echo did not answer: sent from a system port (reflection loops).",
        ),
        (
            "ioth_worker_restarts_total",
            "Times the endpoint's worker thread died and was restarted.",
        ),
    ]
    .map(|(n, h)| counter(&reg, n, h, &["iface", "endpoint"]));
    let [limit_hits, half_open, echo_refused, restarts] = guard;
    let (limit_hits, half_open, echo_refused, restarts) =
        (limit_hits?, half_open?, echo_refused?, restarts?);
    let sockets = gauge(
        &reg,
        "ioth_sockets",
        "Sockets open in the endpoint's stack.",
        &["iface", "endpoint"],
    )?;
    let sockets_max = gauge(
        &reg,
        "ioth_sockets_limit",
        "The most sockets the endpoint's stack may hold (--max-sockets).",
        &["iface", "endpoint"],
    )?;
    for (port, ep) in &ports {
        let (endpoint, thread) = (format!("port{port}"), port.to_string());
        fams.endpoint(&[iface, endpoint.as_str(), thread.as_str(), "port"], ep);
    }
    for (t, ep) in src.threads.iter().zip(&ep_stats) {
        let thread = t.index.to_string();
        let l = [iface, t.endpoint.as_str(), thread.as_str(), "thread"];
        fams.endpoint(&l, ep);
        let e = [iface, t.endpoint.as_str()];
        xsk_dropped
            .with_label_values(&e)
            .inc_by(t.xsk_rx_dropped.load(Ordering::Relaxed));
        xsk_full
            .with_label_values(&e)
            .inc_by(t.xsk_rx_ring_full.load(Ordering::Relaxed));
        xsk_empty
            .with_label_values(&e)
            .inc_by(t.xsk_fill_ring_empty.load(Ordering::Relaxed));
        xsk_invalid
            .with_label_values(&e)
            .inc_by(t.xsk_tx_invalid.load(Ordering::Relaxed));
        limit_hits
            .with_label_values(&e)
            .inc_by(t.socket_limit_hits.load(Ordering::Relaxed));
        half_open
            .with_label_values(&e)
            .inc_by(t.half_open_dropped.load(Ordering::Relaxed));
        echo_refused
            .with_label_values(&e)
            .inc_by(t.udp_echo_refused.load(Ordering::Relaxed));
        restarts
            .with_label_values(&e)
            .inc_by(t.restarts.load(Ordering::Relaxed));
        sockets
            .with_label_values(&e)
            .set(t.sockets.load(Ordering::Relaxed) as i64);
        sockets_max
            .with_label_values(&e)
            .set(t.sockets_max.load(Ordering::Relaxed) as i64);
        for (state, n) in TCP_STATES.iter().zip(&t.tcp_states) {
            tcp.with_label_values(&[t.endpoint.as_str(), state])
                .set(n.load(Ordering::Relaxed) as i64);
        }
    }
    let umem = gauge(
        &reg,
        "ioth_umem_frames",
        "UMEM frames by state: free (free list, tx caches), fill (fill ring, kernel), rx (rx \
         ring, received batch), stack (lent to a stack), tx (tx ring, kernel), completion \
         (completion ring).",
        &["iface", "queue", "state"],
    )?;
    for q in src.dp.queues() {
        let f = q.frame_states();
        let queue = q.queue().to_string();
        for (state, n) in [
            ("free", f.free),
            ("fill", f.fill),
            ("rx", f.rx),
            ("stack", f.stack),
            ("tx", f.tx),
            ("completion", f.completion),
        ] {
            umem.with_label_values(&[iface, queue.as_str(), state])
                .set(n as i64);
        }
    }
    let mode = format!(
        "{}/{}",
        src.dp.attach_mode(),
        src.dp.bind_mode().map_or("-".to_owned(), |m| m.to_string())
    );
    build_info(&reg, &mode)?;
    encode(&reg)
}

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to one request: the metrics at `GET /metrics`, 404 elsewhere, 405 for other
/// methods.
async fn respond<R>(req: Request<Incoming>, render: Arc<R>) -> Response<Full<Bytes>>
where
    R: Fn() -> Result<String> + Send + Sync + 'static,
{
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "try /metrics\n".into());
    }
    // Rendering reads maps (system calls): off the runtime's thread.
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(Ok(body)) => {
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Serves `/metrics` on `addr` until `stop` is set, rendering each scrape with `render`.
/// Returns the bound address.
///
/// hyper on a current-thread tokio runtime of its own thread: every connection is a task,
/// so a slow or stalled client holds up nobody; a client gets [`HEADER_TIMEOUT`] to send
/// its request and [`CONNECTION_TIMEOUT`] in all.
pub fn serve<R>(addr: SocketAddr, render: R, stop: Arc<AtomicBool>) -> Result<SocketAddr>
where
    R: Fn() -> Result<String> + Send + Sync + 'static,
{
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the metrics endpoint's runtime")?;
    let render = Arc::new(render);
    thread::Builder::new()
        .name("ioth-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::warn!("metrics endpoint: {e}");
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    let accepted = tokio::select! {
                        r = listener.accept() => r,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    };
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            log::warn!("metrics accept: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let render = Arc::clone(&render);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let render = Arc::clone(&render);
                            async move { Ok::<_, std::convert::Infallible>(respond(req, render).await) }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service);
                        match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => log::debug!("metrics connection: {e}"),
                            Err(_) => log::debug!("metrics connection: over {CONNECTION_TIMEOUT:?}"),
                        }
                    });
                }
            });
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_listen("0.0.0.0:9464").unwrap().to_string(),
            "0.0.0.0:9464"
        );
        assert!(parse_listen("somewhere").is_err());
    }
}

/// Options of `ioth exporter`.
#[derive(Debug, clap::Args)]
pub struct ExporterArgs {
    /// Where to serve /metrics: IP:PORT, or PORT for loopback.
    #[arg(long)]
    pub listen: String,
    /// Only this interface (default: every interface with an ioth classifier).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// Seconds between sweeps that remove endpoints of dead owners from pinned attachments
    /// (0: never), so a SIGKILLed server's addresses do not stay claimed until the next
    /// server starts.
    #[arg(long, default_value_t = 2)]
    pub reap_every: u64,
}

/// Removes the endpoints of dead owners from the pinned attachments (all, or `only`).
/// `open` keeps each attachment's maps open between sweeps.
fn reap_pinned(
    only: Option<&str>,
    open: &mut std::collections::HashMap<String, ioth_dataplane::Classifier>,
) {
    let ifaces = match only {
        Some(i) => vec![i.to_owned()],
        None => ioth_dataplane::classifier::view::attached_interfaces().unwrap_or_default(),
    };
    for iface in ifaces {
        if !ioth_dataplane::classifier::pin::is_pinned(&iface) {
            open.remove(&iface);
            continue;
        }
        // Detached and attached again since the last sweep: the maps held open are the old
        // attachment's (still valid, so nothing fails), and reaping them would miss the new
        // one's dead owners. Compare program ids; reopen on a change.
        let live = ioth_dataplane::classifier::ClassifierView::open(&iface)
            .map(|v| v.attachment().program_id)
            .ok();
        if let Some(c) = open.get(&iface)
            && c.program_id().ok() != live
        {
            log::info!("{iface}: attached anew; reopening its pins");
            open.remove(&iface);
        }
        let c = match open.entry(iface.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match ioth_dataplane::classifier::pin::open(&iface) {
                    Ok(c) => e.insert(c),
                    Err(err) => {
                        log::warn!("reaping {iface}: {err}");
                        continue;
                    }
                }
            }
        };
        match c.reap_dead_owners() {
            Ok(slots) if !slots.is_empty() => {
                println!("reaped endpoints of dead owners on {iface}: slots {slots:?}");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
            }
            Ok(_) => {}
            Err(e) => {
                // Perhaps detached and attached again: open it afresh next time.
                log::warn!("reaping {iface}: {e}");
                open.remove(&iface);
            }
        }
    }
}

/// `ioth exporter`: serves the classifier's counters of attached interfaces until
/// SIGINT/SIGTERM, with no server running (persistent attachments).
pub fn exporter(args: &ExporterArgs) -> Result<()> {
    let addr = parse_listen(&args.listen)?;
    let only = args.iface.clone();
    if let Some(i) = &only {
        ioth_dataplane::classifier::view::ClassifierView::open(i)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let bound = serve(
        addr,
        move || render_attached(only.as_deref()),
        Arc::clone(&stop),
    )?;
    println!("metrics http://{bound}/metrics");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let every = Duration::from_secs(args.reap_every);
    let mut swept = std::time::Instant::now();
    let mut open = std::collections::HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        if args.reap_every > 0 && swept.elapsed() >= every {
            reap_pinned(args.iface.as_deref(), &mut open);
            swept = std::time::Instant::now();
        }
    }
    Ok(())
}
