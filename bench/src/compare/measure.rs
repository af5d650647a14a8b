//! Repetitions, warm-up and the rows of the report (median and spread; paired scaling runs).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use super::{server::*, systems::*, workloads::*};
use crate::{
    endpoints::Fillers,
    report::{Row, Stat},
};

pub(crate) fn rep_label(r: &Running, w: Workload, threads: usize, endpoints: usize) -> String {
    format!(
        "{} {} {threads} thr {endpoints} ep",
        r.system.name(),
        w.name()
    )
}

/// Warm-up and `reps` measured repetitions of `w` against `r`; one result row.
pub(crate) fn measure(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    threads: usize,
    endpoints: usize,
    reps: u32,
    secs: f64,
) -> Result<Row> {
    let label = rep_label(r, w, threads, endpoints);
    let progs = warm_up(c, r, w, &label)?;
    let mut done = Vec::new();
    for _ in 0..reps {
        done.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
    }
    Ok(row(r.system, w, threads, endpoints, done, secs))
}

/// Endpoint scaling as a paired comparison: each repetition measures the server with its
/// own endpoints only and with `n - 1` filler endpoints registered, one right after the
/// other (alternating which goes first), so that a drift of the host lands on both sides of each pair. The row is the
/// `n`-endpoint measurement; its metric `ratio_to_1_paired` is the per-pair ratio
/// (n endpoints / 1) and `rate_1_paired` the baseline of the pairs.
#[expect(
    clippy::too_many_arguments,
    reason = "one measurement's parameters, used once"
)]
pub(crate) fn measure_scaling(
    c: &Ctx<'_>,
    r: &mut Running,
    w: Workload,
    threads: usize,
    n: usize,
    reps: u32,
    secs: f64,
    fillers_added: &mut bool,
) -> Result<Row> {
    let label = rep_label(r, w, threads, n);
    let progs = warm_up(c, r, w, &label)?;
    let (mut base, mut scaled) = (Vec::new(), Vec::new());
    for i in 0..reps {
        // A B, B A, A B, ...: neither side always runs first.
        let base_first = i % 2 == 0;
        if base_first {
            base.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        }
        let iface = c.pair.host_if.clone();
        let fillers = c
            .pair
            .host
            .run(move || Fillers::add(&iface, n as u32 - 1))
            .with_context(|| format!("registering {n} endpoints"))?;
        if !*fillers_added {
            eprintln!(
                "bench: {} filler endpoints registered per repetition",
                fillers.len()
            );
            *fillers_added = true;
        }
        scaled.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        drop(fillers);
        if !base_first {
            base.push(one_rep(c, r, w, progs.as_ref(), secs, &label)?);
        }
    }
    let ratios: Vec<f64> = base
        .iter()
        .zip(&scaled)
        .map(|((b, _), (s, _))| s.rate / b.rate)
        .collect();
    let baseline = Stat::of(base.iter().map(|(b, _)| b.rate).collect());
    let mut row = row(r.system, w, threads, n, scaled, secs);
    row.metrics
        .insert("ratio_to_1_paired".into(), Stat::of(ratios));
    row.metrics.insert("rate_1_paired".into(), baseline);
    Ok(row)
}

/// The result row of measured repetitions (and a line on stderr).
pub(crate) fn row(
    system: System,
    w: Workload,
    threads: usize,
    endpoints: usize,
    done: Vec<(Rep, f64)>,
    secs: f64,
) -> Row {
    let (reps_v, cpu): (Vec<Rep>, Vec<f64>) = done.into_iter().unzip();
    let mut metrics: BTreeMap<String, Stat> = BTreeMap::new();
    if let Some(first) = reps_v.first() {
        for (i, (name, _)) in first.extra.iter().enumerate() {
            metrics.insert(
                (*name).to_owned(),
                Stat::of(reps_v.iter().map(|r| r.extra[i].1).collect()),
            );
        }
    }
    let per_million: Vec<f64> = reps_v
        .iter()
        .zip(&cpu)
        .map(|(rep, c)| {
            if rep.ops > 0 {
                c / (rep.ops as f64 / 1e6)
            } else {
                f64::NAN
            }
        })
        .collect();
    let row = Row {
        system: system.name(),
        workload: w.name(),
        unit: w.unit(),
        threads,
        endpoints,
        rate: Stat::of(reps_v.iter().map(|r| r.rate).collect()),
        metrics,
        lost: reps_v.iter().map(|r| r.lost).sum(),
        server_cpu_seconds: Stat::of(cpu),
        server_cpu_seconds_per_million: Stat::of(per_million),
        reps: reps_v.len() as u32,
        secs_per_rep: secs,
    };
    let p99 = row
        .metrics
        .get("p99_us")
        .map_or(String::new(), |s| format!(", p99 {:.1} µs", s.median));
    eprintln!(
        "bench: {:<16} {:<20} {} thr {:>5} ep: {:>12.2} {} [{:.2}–{:.2}]{p99}{}",
        row.system,
        row.workload,
        threads,
        endpoints,
        row.rate.median,
        row.unit,
        row.rate.min,
        row.rate.max,
        if row.lost > 0 {
            format!(", lost {}", row.lost)
        } else {
            String::new()
        }
    );
    row
}
