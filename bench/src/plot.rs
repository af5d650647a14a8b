//! SVG plots of a report (plotters): throughput per workload with the spread over reps,
//! and round-trip latency percentiles.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;

use crate::report::{Report, Row};

const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Panels of rows sharing (workload, threads, endpoints == threads, host or not).
fn panels(r: &Report, keep: impl Fn(&Row) -> bool) -> Vec<(String, Vec<&Row>)> {
    let mut out: Vec<(String, Vec<&Row>)> = Vec::new();
    for x in r.rows.iter().filter(|x| keep(x)) {
        let host = x.system.starts_with("host-");
        let title = format!(
            "{}{} ({}), {} thr",
            if host { "host " } else { "" },
            x.workload,
            x.unit,
            x.threads
        );
        match out.iter_mut().find(|(t, _)| *t == title) {
            Some((_, v)) => v.push(x),
            None => out.push((title, vec![x])),
        }
    }
    out
}

fn grid(n: usize) -> (usize, usize) {
    let cols = if n > 4 { 3 } else { n.clamp(1, 2) };
    (n.div_ceil(cols).max(1), cols)
}

/// Bars of the median rate with min–max whiskers, one panel per workload.
pub fn throughput(r: &Report, path: &Path) -> Result<()> {
    let ps = panels(r, |x| x.endpoints == x.threads);
    let (rows, cols) = grid(ps.len());
    let root = SVGBackend::new(path, (460 * cols as u32, 320 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for ((title, xs), area) in ps.iter().zip(root.split_evenly((rows, cols))) {
        let top = xs
            .iter()
            .map(|x| x.rate.max)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let n = xs.len();
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0f64..top)
            .map_err(err)?;
        let names: Vec<&str> = xs.iter().map(|x| x.system).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    names
                        .get(i as usize)
                        .map_or(String::new(), |s| s.to_string())
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| {
                if *v >= 1e6 {
                    format!("{:.1}M", v / 1e6)
                } else if *v >= 1e3 {
                    format!("{:.0}k", v / 1e3)
                } else {
                    format!("{v:.1}")
                }
            })
            .draw()
            .map_err(err)?;
        for (i, x) in xs.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let xi = i as f64;
            if x.rate.median.is_finite() {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(xi - 0.35, 0.0), (xi + 0.35, x.rate.median)],
                        c.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(xi, x.rate.min), (xi, x.rate.max)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// p50, p99 and p99.9 round-trip latency per system, one panel per workload.
pub fn latency(r: &Report, path: &Path) -> Result<()> {
    let ps = panels(r, |x| {
        x.endpoints == x.threads && x.metrics.contains_key("p99_us")
    });
    let (rows, cols) = grid(ps.len());
    let root = SVGBackend::new(path, (460 * cols as u32, 320 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pct = ["p50_us", "p99_us", "p999_us"];
    for ((title, xs), area) in ps.iter().zip(root.split_evenly((rows, cols))) {
        let top = xs
            .iter()
            .filter_map(|x| x.metrics.get("p999_us").map(|s| s.median))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let n = xs.len();
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!(
                    "{} — µs p50 / p99 / p99.9",
                    title
                        .replace(" (transactions/s)", "")
                        .replace(" (packets/s)", "")
                ),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0f64..top)
            .map_err(err)?;
        let names: Vec<&str> = xs.iter().map(|x| x.system).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    names
                        .get(i as usize)
                        .map_or(String::new(), |s| s.to_string())
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(err)?;
        for (i, x) in xs.iter().enumerate() {
            for (k, p) in pct.iter().enumerate() {
                let Some(s) = x.metrics.get(*p) else { continue };
                if !s.median.is_finite() {
                    continue;
                }
                let x0 = i as f64 - 0.36 + k as f64 * 0.24;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + 0.22, s.median)],
                        COLORS[k].filled(),
                    )))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `throughput.svg` and `latency.svg` into `dir`.
pub fn write_all(r: &Report, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    throughput(r, &dir.join("throughput.svg"))?;
    latency(r, &dir.join("latency.svg"))?;
    Ok(())
}
