//! `ioth top`: per-endpoint packet and byte rates, refreshed every second.
//!
//! Reads the classifier's maps like `ioth endpoints` (receive counters kept by the XDP
//! program, transmit counters published by each endpoint's owner) and shows the rates
//! between two readings: a full-screen table in a terminal (sorted, `q` quits), or plain
//! text frames with `--batch` (or when standard output is not a terminal).

use std::{
    collections::HashMap,
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use ioth_dataplane::classifier::view::{ClassifierView, EndpointView, attached_interfaces};
use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Block, Cell, Paragraph, Row, Table},
};

/// Options of `ioth top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Only this interface (default: every interface with an ioth classifier).
    #[arg(long, value_parser = ioth_dataplane::sys::parse_ifname)]
    pub iface: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Print plain text frames instead of the full-screen view (as `top -b`).
    #[arg(short, long)]
    pub batch: bool,
    /// Stop after this many refreshes (default: until `q`, or forever with --batch).
    #[arg(short = 'n', long)]
    pub iterations: Option<u64>,
    /// Batch mode printing one JSON array per refresh (one line each).
    #[arg(long)]
    pub json: bool,
}

/// Column the table is sorted by (descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Packets,
    Bytes,
    Drops,
    Endpoint,
}

impl SortBy {
    fn next(self) -> Self {
        match self {
            SortBy::Packets => SortBy::Bytes,
            SortBy::Bytes => SortBy::Drops,
            SortBy::Drops => SortBy::Endpoint,
            SortBy::Endpoint => SortBy::Packets,
        }
    }
    fn name(self) -> &'static str {
        match self {
            SortBy::Packets => "packets/s",
            SortBy::Bytes => "bytes/s",
            SortBy::Drops => "drops/s",
            SortBy::Endpoint => "endpoint",
        }
    }
}

/// One endpoint's rates between two readings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
struct Rates {
    iface: String,
    slot: u32,
    endpoint: String,
    thread: u32,
    pid: u32,
    alive: bool,
    rx_pps: f64,
    rx_bps: f64,
    tx_pps: f64,
    tx_bps: f64,
    drops_ps: f64,
    retransmits: u64,
}

type Key = (String, u32, u32);

/// Readings of the counters, and the rates between the last two.
#[derive(Debug, Default)]
struct Sampler {
    last: HashMap<Key, (Instant, EndpointView)>,
}

fn label(e: &EndpointView) -> String {
    e.ipv4
        .first()
        .map(|a| a.to_string())
        .or_else(|| e.ipv6.first().map(|a| a.to_string()))
        .or_else(|| e.mac.map(|m| m.to_string()))
        .unwrap_or_else(|| format!("slot{}", e.slot))
}

impl Sampler {
    fn sample(&mut self, ifaces: &[String]) -> Result<Vec<Rates>> {
        let now = Instant::now();
        let mut next = HashMap::new();
        let mut rows = Vec::new();
        for iface in ifaces {
            let v = ClassifierView::open(iface).with_context(|| format!("inspecting {iface}"))?;
            for e in v.endpoints()? {
                let key = (iface.clone(), e.slot, e.pid);
                let mut r = Rates {
                    iface: iface.clone(),
                    slot: e.slot,
                    endpoint: label(&e),
                    thread: e.thread,
                    pid: e.pid,
                    alive: e.owner_alive,
                    retransmits: e.tcp_retransmits,
                    ..Rates::default()
                };
                if let Some((then, old)) = self.last.get(&key) {
                    let dt = now.duration_since(*then).as_secs_f64().max(1e-3);
                    let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / dt;
                    r.rx_pps = rate(e.rx_packets, old.rx_packets);
                    r.rx_bps = rate(e.rx_bytes, old.rx_bytes);
                    r.tx_pps = rate(e.tx_packets, old.tx_packets);
                    r.tx_bps = rate(e.tx_bytes, old.tx_bytes);
                    r.drops_ps = rate(e.rx_dropped, old.rx_dropped);
                }
                rows.push(r);
                next.insert(key, (now, e));
            }
        }
        self.last = next;
        Ok(rows)
    }
}

fn sort(rows: &mut [Rates], by: SortBy) {
    let total = |r: &Rates| match by {
        SortBy::Packets => r.rx_pps + r.tx_pps,
        SortBy::Bytes => r.rx_bps + r.tx_bps,
        SortBy::Drops => r.drops_ps,
        SortBy::Endpoint => 0.0,
    };
    rows.sort_by(|a, b| {
        total(b)
            .total_cmp(&total(a))
            .then_with(|| (&a.iface, a.slot).cmp(&(&b.iface, b.slot)))
    });
}

/// 1234567 → "1.23M".
fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

const HEADER: [&str; 11] = [
    "IFACE", "SLOT", "ENDPOINT", "THREAD", "PID", "RX PKT/s", "RX B/s", "TX PKT/s", "TX B/s",
    "DROP/s", "RETRANS",
];

fn cells(r: &Rates) -> [String; 11] {
    [
        r.iface.clone(),
        r.slot.to_string(),
        r.endpoint.clone(),
        r.thread.to_string(),
        if r.alive {
            r.pid.to_string()
        } else {
            format!("{} (gone)", r.pid)
        },
        human(r.rx_pps),
        human(r.rx_bps),
        human(r.tx_pps),
        human(r.tx_bps),
        human(r.drops_ps),
        r.retransmits.to_string(),
    ]
}

fn interfaces(iface: &Option<String>) -> Result<Vec<String>> {
    let ifaces = match iface {
        Some(i) => vec![i.clone()],
        None => attached_interfaces()?,
    };
    if ifaces.is_empty() {
        bail!("no interface has an ioth classifier attached");
    }
    Ok(ifaces)
}

pub fn run(args: &TopArgs) -> Result<()> {
    if !(args.interval.is_finite() && (0.1..=3600.0).contains(&args.interval)) {
        bail!("--interval {}: expected 0.1 to 3600 seconds", args.interval);
    }
    let ifaces = interfaces(&args.iface)?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut sampler = Sampler::default();
    let first = sampler.sample(&ifaces)?;
    if args.batch || args.json || !std::io::stdout().is_terminal() {
        return batch(args, &ifaces, interval, &mut sampler);
    }
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let r = interactive(args, &ifaces, interval, &mut sampler, first, &mut terminal);
    ratatui::try_restore().context("restoring the terminal")?;
    r
}

fn batch(args: &TopArgs, ifaces: &[String], interval: Duration, s: &mut Sampler) -> Result<()> {
    let mut n = 0;
    while args.iterations.is_none_or(|max| n < max) {
        std::thread::sleep(interval);
        let mut rows = s.sample(ifaces)?;
        sort(&mut rows, SortBy::Packets);
        n += 1;
        if args.json {
            println!("{}", serde_json::to_string(&rows)?);
            continue;
        }
        println!("ioth top — {} endpoint(s), refresh {n}", rows.len());
        println!(
            "{:<12} {:>5} {:<24} {:>6} {:>14} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
            HEADER[0],
            HEADER[1],
            HEADER[2],
            HEADER[3],
            HEADER[4],
            HEADER[5],
            HEADER[6],
            HEADER[7],
            HEADER[8],
            HEADER[9],
            HEADER[10]
        );
        for r in &rows {
            let c = cells(r);
            println!(
                "{:<12} {:>5} {:<24} {:>6} {:>14} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
            );
        }
        println!();
    }
    Ok(())
}

fn interactive(
    args: &TopArgs,
    ifaces: &[String],
    interval: Duration,
    s: &mut Sampler,
    mut rows: Vec<Rates>,
    terminal: &mut ratatui::DefaultTerminal,
) -> Result<()> {
    let mut by = SortBy::Packets;
    let mut n = 0u64;
    let mut due = Instant::now() + interval;
    loop {
        sort(&mut rows, by);
        terminal
            .draw(|f| {
                let [head, body, foot] = Layout::vertical([
                    Constraint::Length(1),
                    Constraint::Min(3),
                    Constraint::Length(1),
                ])
                .areas(f.area());
                f.render_widget(
                    Paragraph::new(format!(
                        "ioth top — {} endpoint(s) on {} — sorted by {} — every {:.1} s",
                        rows.len(),
                        ifaces.join(","),
                        by.name(),
                        interval.as_secs_f64()
                    )),
                    head,
                );
                let table = Table::new(
                    rows.iter().map(|r| Row::new(cells(r).map(Cell::from))),
                    [
                        Constraint::Length(12),
                        Constraint::Length(5),
                        Constraint::Min(15),
                        Constraint::Length(6),
                        Constraint::Length(12),
                        Constraint::Length(9),
                        Constraint::Length(9),
                        Constraint::Length(9),
                        Constraint::Length(9),
                        Constraint::Length(7),
                        Constraint::Length(8),
                    ],
                )
                .header(
                    Row::new(HEADER.map(Cell::from))
                        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
                )
                .block(Block::default());
                f.render_widget(table, body);
                f.render_widget(
                    Line::from("q quit   s change sort column   rates are per second"),
                    foot,
                );
            })
            .context("drawing")?;
        let wait = due.saturating_duration_since(Instant::now());
        if event::poll(wait).context("reading the keyboard")? {
            if let Event::Key(k) = event::read().context("reading the keyboard")?
                && k.kind == KeyEventKind::Press
            {
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(());
                    }
                    KeyCode::Char('s') => by = by.next(),
                    _ => {}
                }
            }
            continue;
        }
        rows = s.sample(ifaces)?;
        n += 1;
        due = Instant::now() + interval;
        if args.iterations.is_some_and(|max| n >= max) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sort_by_the_chosen_column_and_print_compactly() {
        let r = |slot, pps, bps, drops| Rates {
            slot,
            rx_pps: pps,
            rx_bps: bps,
            drops_ps: drops,
            ..Rates::default()
        };
        let mut rows = vec![
            r(1, 10.0, 5.0, 0.0),
            r(2, 20.0, 1.0, 3.0),
            r(3, 0.0, 9.0, 0.0),
        ];
        sort(&mut rows, SortBy::Packets);
        assert_eq!(rows.iter().map(|r| r.slot).collect::<Vec<_>>(), [2, 1, 3]);
        sort(&mut rows, SortBy::Bytes);
        assert_eq!(rows.iter().map(|r| r.slot).collect::<Vec<_>>(), [3, 1, 2]);
        sort(&mut rows, SortBy::Drops);
        assert_eq!(rows[0].slot, 2);
        sort(&mut rows, SortBy::Endpoint);
        assert_eq!(rows.iter().map(|r| r.slot).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(human(999.0), "999");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(SortBy::Endpoint.next(), SortBy::Packets);
    }
}
