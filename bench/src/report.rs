//! The results of `ioth-bench compare`: rows (JSON, schema in bench/README.md), the
//! markdown tables with ratios and targets, and the SVG plots.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::machine::Machine;

/// Median, min and max of repeated measurements.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// The statistic of `v` (NaN everywhere if empty).
    pub fn of(mut v: Vec<f64>) -> Self {
        v.retain(|x| !x.is_nan());
        if v.is_empty() {
            return Self {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        Self {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// One (system, workload, threads, endpoints) measurement.
#[derive(Debug, Serialize)]
pub struct Row {
    pub system: &'static str,
    pub workload: String,
    pub unit: &'static str,
    pub threads: usize,
    pub endpoints: usize,
    /// The workload's primary metric, in `unit`.
    pub rate: Stat,
    /// Further metrics by name (`p50_us`, `p99_us`, `p999_us`, `offered_pps`,
    /// `arrived_pps`, `echoed_pps`, `gbit_s_per_thread`).
    pub metrics: BTreeMap<String, Stat>,
    /// UDP echo round trips lost (timed out), over all repetitions.
    pub lost: u64,
    /// Server CPU seconds (user + system) per repetition.
    pub server_cpu_seconds: Stat,
    /// Server CPU seconds per million operations (packets, transactions; for bulk, per
    /// million kilobytes, i.e. per GB).
    pub server_cpu_seconds_per_million: Stat,
    pub reps: u32,
    pub secs_per_rep: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub rows: Vec<Row>,
}

/// A ratio a/b with its spread (min over max, max over min).
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    pub mid: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The per-pair ratio of an endpoint-scaling row (its repetitions alternate with 1-endpoint
/// ones), if it has one; else the ratio of the two rows' spreads.
fn scaling_ratio(scaled: &Row, one: Option<&Row>) -> Option<Ratio> {
    match scaled.metrics.get("ratio_to_1_paired") {
        Some(p) if !p.median.is_nan() => Some(Ratio {
            mid: p.median,
            lo: p.min,
            hi: p.max,
        }),
        _ => ratio(&scaled.rate, &one?.rate),
    }
}

pub fn ratio(a: &Stat, b: &Stat) -> Option<Ratio> {
    if !(b.median > 0.0 && b.min > 0.0 && b.max > 0.0) || a.median.is_nan() {
        return None;
    }
    Some(Ratio {
        mid: a.median / b.median,
        lo: a.min / b.max,
        hi: a.max / b.min,
    })
}

/// `1.23x [1.10–1.30]`, with `(tie)` when the spread overlaps 1.0.
fn show(r: Option<Ratio>) -> String {
    match r {
        None => "n/a".into(),
        Some(r) => {
            let tie = if r.lo <= 1.0 && r.hi >= 1.0 {
                " (tie)"
            } else {
                ""
            };
            format!("{:.2}x [{:.2}–{:.2}]{tie}", r.mid, r.lo, r.hi)
        }
    }
}

/// Rate with a sensible number of digits.
fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn find<'a>(r: &'a Report, sys: &str, w: &str, t: usize, e: usize) -> Option<&'a Row> {
    r.rows
        .iter()
        .find(|x| x.system == sys && x.workload == w && x.threads == t && x.endpoints == e)
}

/// The better of the two kernel variants for a workload (the stricter comparison).
fn best_kernel<'a>(r: &'a Report, w: &str, t: usize) -> Option<&'a Row> {
    [
        find(r, "kernel-ip", w, t, t),
        find(r, "kernel-reuseport", w, t, t),
    ]
    .into_iter()
    .flatten()
    .max_by(|a, b| a.rate.median.total_cmp(&b.rate.median))
}

/// One target line: measured ratio against the goal, met only if the whole spread meets it.
fn target(name: &str, goal: f64, r: Option<Ratio>, extra: Option<(bool, String)>) -> String {
    let verdict = match r {
        None => "not measured".to_owned(),
        Some(x) if x.lo >= goal && extra.as_ref().is_none_or(|e| e.0) => "**met**".into(),
        Some(x) if x.mid >= goal && extra.as_ref().is_none_or(|e| e.0) => {
            "not met (median meets it, spread does not)".into()
        }
        Some(_) => "**not met**".into(),
    };
    let extra = extra.map_or(String::new(), |e| format!("; {}", e.1));
    format!(
        "| {name} | ≥ {goal:.2}x | {}{extra} | {verdict} |\n",
        show(r)
    )
}

pub fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let mut s = format!(
        "Machine: {} ({} cores), Linux {}, {}, commit {}. Server pinned to CPU 0, load to CPU 1; \
         veth (2 queues), driver-mode XDP, copy-mode AF_XDP.\n\n",
        m.cpu, m.cores, m.kernel, m.date, m.git_commit
    );
    // Targets of issue 5.
    s.push_str("### Targets\n\n| target | goal | measured (median [spread]) | verdict |\n|---|---|---|---|\n");
    let rate = |sys: &str, w: &str, t: usize, e: usize| find(r, sys, w, t, e).map(|x| x.rate);
    for (w, how) in [
        ("udp-echo-flood-64B", "at saturation (echo flood)"),
        ("udp-echo-64B", "closed loop (client-bound)"),
    ] {
        let k = best_kernel(r, w, 1);
        s.push_str(&target(
            &format!(
                "UDP echo 64 B {how}, 1 thread: ioth / kernel ({})",
                k.map_or("-", |k| k.system)
            ),
            2.0,
            rate("ioth", w, 1, 1)
                .zip(k)
                .and_then(|(a, k)| ratio(&a, &k.rate)),
            None,
        ));
    }
    let rr_k = best_kernel(r, "tcp-rr-64B-64conn", 1);
    let rr_i = find(r, "ioth", "tcp-rr-64B-64conn", 1, 1);
    let p99 = rr_i.zip(rr_k).and_then(|(i, k)| {
        let (a, b) = (i.metrics.get("p99_us")?, k.metrics.get("p99_us")?);
        Some((
            a.median <= b.median,
            format!("p99 {:.0} µs vs {:.0} µs", a.median, b.median),
        ))
    });
    s.push_str(&target(
        &format!(
            "TCP RR 64 conns, 1 thread: ioth / kernel ({}), p99 ≤ kernel",
            rr_k.map_or("-", |k| k.system)
        ),
        1.3,
        rr_i.zip(rr_k).and_then(|(i, k)| ratio(&i.rate, &k.rate)),
        p99,
    ));
    let drop = rate("xdp-drop", "udp-flood-64B", 1, 1);
    s.push_str(&target(
        "Receive into sockets under flood, 1 thread: ioth / XDP_DROP",
        0.6,
        rate("ioth", "udp-flood-64B", 1, 1)
            .zip(drop)
            .and_then(|(a, b)| ratio(&a, &b)),
        None,
    ));
    for w in ["udp-flood-64B", "udp-echo-64B"] {
        s.push_str(&target(
            &format!(
                "10,000 endpoints vs 1 ({w}, ioth, 1 thread, paired repetitions): at most 10% cost"
            ),
            0.9,
            find(r, "ioth", w, 1, 10_000).and_then(|x| scaling_ratio(x, find(r, "ioth", w, 1, 1))),
            None,
        ));
    }
    for w in ["tcp-bulk-up", "tcp-rr-64B-64conn"] {
        s.push_str(&target(
            &format!("Host traffic ({w}): classifier attached / detached"),
            0.8,
            rate("host-attached", w, 1, 1)
                .zip(rate("host-detached", w, 1, 1))
                .and_then(|(a, b)| ratio(&a, &b)),
            None,
        ));
    }
    // Ports (issue 11): a kernel server behind a VDE port of ioth, against the same behind
    // VirtualSquare's libpcap way and behind a Linux bridge.
    for (other, goal) in [("vde-pcap", 3.0), ("bridge", 1.0)] {
        for w in ["udp-echo-64B", "tcp-rr-64B-1conn"] {
            let (a, b) = (find(r, "vde-ioth", w, 1, 1), find(r, other, w, 1, 1));
            let p99 = (other == "bridge")
                .then(|| {
                    a.zip(b).and_then(|(a, b)| {
                        let (x, y) = (a.metrics.get("p99_us")?, b.metrics.get("p99_us")?);
                        Some((
                            x.median <= y.median,
                            format!("p99 {:.0} µs vs {:.0} µs", x.median, y.median),
                        ))
                    })
                })
                .flatten();
            s.push_str(&target(
                &format!(
                    "Behind a port ({w}): ioth's VDE switch / {other}{}",
                    if other == "bridge" {
                        ", p99 ≤ bridge"
                    } else {
                        ""
                    }
                ),
                goal,
                a.zip(b).and_then(|(a, b)| ratio(&a.rate, &b.rate)),
                p99,
            ));
        }
    }
    s.push_str(
        "\nA verdict is *met* only if the whole spread (worst rep against best rep) meets the goal. \
         Endpoint scaling is a paired comparison: each 10,000-endpoint repetition runs right \
         after a 1-endpoint one, and the spread is that of the per-pair ratios.\n\n",
    );

    // Main comparison.
    s.push_str("### ioth, kernel and ceilings\n\n");
    s.push_str(
        "| workload | thr | ioth | kernel-ip | kernel-reuseport | raw-afxdp | xdp-drop | smoltcp-tap | ioth / kernel-ip | ioth / kernel-reuseport | ioth / ceiling | p99 µs ioth / kernel-ip | CPU-s per M ioth / kernel-ip |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut keys: Vec<(String, usize, &'static str)> = Vec::new();
    for x in &r.rows {
        let k = (x.workload.clone(), x.threads, x.unit);
        if x.system != "host-attached" && x.system != "host-detached" && !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (w, t, unit) in keys {
        let get = |sys: &str| find(r, sys, &w, t, t);
        let cell = |sys: &str| get(sys).map_or("–".into(), |x| num(x.rate.median));
        let io = get("ioth");
        let rel = |sys: &str| {
            io.zip(get(sys))
                .map_or("–".into(), |(a, b)| show(ratio(&a.rate, &b.rate)))
        };
        // The ceiling: XDP_DROP for receive under flood, the raw echo for UDP echo.
        let ceiling = if w.starts_with("udp-flood") {
            "xdp-drop"
        } else {
            "raw-afxdp"
        };
        let p99 = |x: Option<&Row>| {
            x.and_then(|x| x.metrics.get("p99_us"))
                .map_or("–".into(), |s| format!("{:.0}", s.median))
        };
        let cpu = |x: Option<&Row>| {
            x.map_or("–".into(), |x| {
                format!("{:.2}", x.server_cpu_seconds_per_million.median)
            })
        };
        s.push_str(&format!(
            "| {w} ({unit}) | {t} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |\n",
            cell("ioth"),
            cell("kernel-ip"),
            cell("kernel-reuseport"),
            cell("raw-afxdp"),
            cell("xdp-drop"),
            cell("smoltcp-tap"),
            rel("kernel-ip"),
            rel("kernel-reuseport"),
            rel(ceiling),
            p99(io),
            p99(get("kernel-ip")),
            cpu(io),
            cpu(get("kernel-ip")),
        ));
    }

    // Flood details.
    s.push_str("\n### UDP floods (live-frame generator; udp-flood to the discard port, udp-echo-flood to the echo port): offered, arrived, received, echoed (packets/s)\n\n| workload | system | thr | endpoints | offered | arrived at server veth | into sockets | echoed back |\n|---|---|---|---|---|---|---|---|\n");
    for x in r.rows.iter().filter(|x| x.workload.contains("flood")) {
        let g = |k: &str| x.metrics.get(k).map_or("–".into(), |s| num(s.median));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            x.workload,
            x.system,
            x.threads,
            x.endpoints,
            g("offered_pps"),
            g("arrived_pps"),
            g("received_pps"),
            g("echoed_pps")
        ));
    }

    // Endpoint scaling.
    s.push_str("\n### Endpoint scaling (ioth, 1 thread)\n\n| workload | 1 endpoint | 100 | 10,000 | 10,000 / 1 (paired) |\n|---|---|---|---|---|\n");
    for w in ["udp-echo-64B", "udp-flood-64B", "tcp-rr-64B-64conn"] {
        let g = |e| find(r, "ioth", w, 1, e);
        if g(1).is_none() {
            continue;
        }
        let cell = |e| g(e).map_or("–".into(), |x| num(x.rate.median));
        s.push_str(&format!(
            "| {w} | {} | {} | {} | {} |\n",
            cell(1),
            cell(100),
            cell(10_000),
            g(10_000).map_or("–".into(), |a| show(scaling_ratio(a, g(1))))
        ));
    }

    // Host traffic.
    s.push_str("\n### Host traffic: kernel sockets on the host's own IP, classifier attached vs detached\n\n| workload | detached | attached | attached / detached |\n|---|---|---|---|\n");
    for w in ["tcp-rr-64B-64conn", "tcp-bulk-up", "tcp-bulk-echo"] {
        let (d, a) = (
            find(r, "host-detached", w, 1, 1),
            find(r, "host-attached", w, 1, 1),
        );
        if d.is_none() && a.is_none() {
            continue;
        }
        s.push_str(&format!(
            "| {w} ({}) | {} | {} | {} |\n",
            d.or(a).map_or("", |x| x.unit),
            d.map_or("–".into(), |x| num(x.rate.median)),
            a.map_or("–".into(), |x| num(x.rate.median)),
            a.zip(d)
                .map_or("–".into(), |(a, d)| show(ratio(&a.rate, &d.rate)))
        ));
    }

    // Latency.
    s.push_str(&behind_a_port(r));
    s.push_str("\n### Latency (round trip, µs, median of reps)\n\n| workload | thr | system | p50 | p99 | p99.9 |\n|---|---|---|---|---|---|\n");
    for x in r
        .rows
        .iter()
        .filter(|x| x.metrics.contains_key("p99_us") && x.endpoints == x.threads)
    {
        let g = |k: &str| {
            x.metrics
                .get(k)
                .map_or("–".into(), |s| format!("{:.1}", s.median))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            x.workload,
            x.threads,
            x.system,
            g("p50_us"),
            g("p99_us"),
            g("p999_us")
        ));
    }
    s
}

/// The port systems' server CPU by role, per operation, and the ceiling the port's own
/// client sets: whatever switches, the `vde_plug tap://` that carries frames into the
/// namespace and the kernel server there need their CPU time on the one server CPU.
fn behind_a_port(r: &Report) -> String {
    let mut s = String::from(
        "\n### Behind a port: where the server CPU goes (µs per operation, median of reps)\n\n\
         | workload | system | rate | server CPU (all of CPU 0) | switching | vde_plug tap | kernel server | ceiling of the plug and server alone |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut any = false;
    for w in ["udp-echo-64B", "tcp-rr-64B-1conn", "tcp-rr-64B-64conn"] {
        for sys in [
            "vde-ioth",
            "vde-pcap",
            "bridge",
            "vxlan-ioth",
            "vxlan-kernel",
        ] {
            let Some(x) = find(r, sys, w, 1, 1) else {
                continue;
            };
            let m = |k: &str| x.metrics.get(k).map_or(f64::NAN, |s| s.median);
            let (plug, app) = (m("plug_us_per_op"), m("app_us_per_op"));
            // Nothing but the plug and the server on the CPU: at most this many per second.
            let ceiling = if !(plug > 0.0 && app > 0.0) {
                "–".to_owned()
            } else {
                num(1e6 / (plug + app))
            };
            any = true;
            s.push_str(&format!(
                "| {w} | {sys} | {} | {} | {} | {} | {} | {ceiling} |\n",
                num(x.rate.median),
                num(m("cpu0_us_per_op")),
                num(m("switch_us_per_op")),
                num(m("plug_us_per_op")),
                num(m("app_us_per_op")),
            ));
        }
    }
    if !any {
        return String::new();
    }
    let mut vx = String::new();
    for w in ["udp-echo-64B", "tcp-rr-64B-1conn", "tcp-rr-64B-64conn"] {
        if let (Some(a), Some(b)) = (
            find(r, "vxlan-ioth", w, 1, 1),
            find(r, "vxlan-kernel", w, 1, 1),
        ) {
            let p99 = |x: &Row| x.metrics.get("p99_us").map_or(f64::NAN, |s| s.median);
            vx.push_str(&format!(
                "| {w} | {} | {} / {} |\n",
                show(ratio(&a.rate, &b.rate)),
                num(p99(a)),
                num(p99(b)),
            ));
        }
    }
    if !vx.is_empty() {
        s.push_str(
            "\nNIC → VXLAN port (host 2 a namespace with Linux's vxlan device over a second veth):\n\n\
             | workload | ioth's VXLAN port / the NIC bridged to a kernel vxlan device | p99 µs ioth / kernel |\n\
             |---|---|---|\n",
        );
        s.push_str(&vx);
    }
    s.push_str(
        "\nProcess CPU (utime + stime) of each role; the CPU 0 column also holds softirqs and \
         everything else on it (for the bridge, all of its switching). The ceiling is the rate at \
         which the port's client and the kernel server alone would fill the server CPU: no \
         switch in front of a `vde_plug tap://` can go faster on this machine.\n",
    );
    s
}
