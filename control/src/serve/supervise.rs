//! Worker threads under supervision: started and waited for with a deadline, and restarted
//! with the same addresses when one dies.
//!
//! A worker that panics unwinds its stack, whose guard removes its classifier entries: its
//! addresses pass to the kernel until it is back. The supervisor notices within 100 ms,
//! says so on stdout (`thread=N died: …`), counts it (`ioth_worker_restarts_total`) and
//! restarts it after a backoff (1 s, doubling to 30 s, back to 1 s after a minute of
//! health). The run then ends non-zero, so a supervisor above (systemd, CI) hears of it even
//! though the service recovered.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use ioth_dataplane::{Dataplane, StackConfig};

use super::{
    stats::ThreadStats,
    worker::{WorkerArgs, worker},
};

/// How long a worker may take to build its stack and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker up this long has its backoff reset.
const HEALTHY: Duration = Duration::from_secs(60);

/// One supervised worker.
pub struct Supervised {
    pub index: u16,
    pub stats: Arc<ThreadStats>,
    config: StackConfig,
    handle: Option<JoinHandle<()>>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
    /// Times it died.
    pub deaths: u32,
}

/// Starts worker `index`; it reports on `ready`.
fn spawn(
    dp: &Arc<Dataplane>,
    index: u16,
    config: StackConfig,
    args: &Arc<WorkerArgs>,
    stop: &Arc<AtomicBool>,
    stats: &Arc<ThreadStats>,
    ready: mpsc::Sender<Result<String, String>>,
) -> std::io::Result<JoinHandle<()>> {
    let (dp, args, stop, stats) = (
        Arc::clone(dp),
        Arc::clone(args),
        Arc::clone(stop),
        Arc::clone(stats),
    );
    thread::Builder::new()
        .name(format!("ioth-{index}"))
        .spawn(move || worker(dp, index, config, args, stop, stats, ready))
}

/// Waits for `n` ready reports, at most [`READY_TIMEOUT`] in all, giving up at once when
/// `stop` is set (SIGTERM during start-up). Each line goes to `say`; the first failure is
/// the error.
pub fn wait_ready(
    rx: &mpsc::Receiver<Result<String, String>>,
    n: usize,
    stop: &AtomicBool,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut failed = None;
    let mut got = 0;
    while got < n {
        if stop.load(Ordering::Relaxed) {
            return Err("stopped while starting".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} worker(s) not ready after {READY_TIMEOUT:?}",
                n - got
            ));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(line)) => {
                got += 1;
                say(&line);
            }
            Ok(Err(e)) => {
                got += 1;
                failed.get_or_insert(e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failed.get_or_insert("a worker exited before it was ready".into());
                break;
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The workers of one `ioth serve`.
pub struct Workers {
    pub list: Vec<Supervised>,
    dp: Arc<Dataplane>,
    args: Arc<WorkerArgs>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    /// Starts one worker per config and waits until all are ready (see [`wait_ready`]);
    /// on failure every started worker is stopped and joined.
    pub fn start(
        dp: &Arc<Dataplane>,
        configs: Vec<StackConfig>,
        args: Arc<WorkerArgs>,
        stop: &Arc<AtomicBool>,
        say: &dyn Fn(&str),
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut list = Vec::new();
        for (i, config) in configs.into_iter().enumerate() {
            let stats = Arc::new(ThreadStats {
                index: i as u16,
                endpoint: config.ipv4[0].0.to_string(),
                ..ThreadStats::default()
            });
            let handle = spawn(
                dp,
                i as u16,
                config.clone(),
                &args,
                stop,
                &stats,
                ready_tx.clone(),
            );
            let handle = match handle {
                Ok(h) => h,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    join_all(&mut list);
                    anyhow::bail!("spawning a worker thread: {e}");
                }
            };
            list.push(Supervised {
                index: i as u16,
                stats,
                config,
                handle: Some(handle),
                started: Instant::now(),
                backoff: FIRST_BACKOFF,
                restart_at: None,
                deaths: 0,
            });
        }
        drop(ready_tx);
        if let Err(e) = wait_ready(&ready_rx, list.len(), stop, say) {
            stop.store(true, Ordering::Relaxed);
            join_all(&mut list);
            anyhow::bail!("{e}");
        }
        Ok(Self {
            list,
            dp: Arc::clone(dp),
            args,
            stop: Arc::clone(stop),
        })
    }

    /// One round of supervision (every 100 ms): notices workers that ended while the server
    /// runs, and restarts those whose backoff has passed.
    pub fn check(&mut self, say: &dyn Fn(&str)) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        for w in &mut self.list {
            if w.handle.as_ref().is_some_and(JoinHandle::is_finished) {
                let why = match w.handle.take().map(JoinHandle::join) {
                    Some(Err(p)) => format!(
                        "panicked: {}",
                        p.downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| p.downcast_ref::<&str>().copied())
                            .unwrap_or("(no message)")
                    ),
                    _ => "returned".to_owned(),
                };
                w.deaths += 1;
                w.stats.restarts.fetch_add(1, Ordering::Relaxed);
                if now - w.started >= HEALTHY {
                    w.backoff = FIRST_BACKOFF;
                }
                say(&format!(
                    "error: thread={} died ({why}); its addresses pass to the kernel; \
                     restarting in {:?}",
                    w.index, w.backoff
                ));
                w.restart_at = Some(now + w.backoff);
                w.backoff = (w.backoff * 2).min(MAX_BACKOFF);
            }
            if w.restart_at.is_some_and(|t| now >= t) {
                w.restart_at = None;
                // The testing aid panics the first run only: the restart is what it tests.
                let args = Arc::new(WorkerArgs {
                    test_panic_thread: None,
                    ..(*self.args).clone()
                });
                let (tx, rx) = mpsc::channel();
                match spawn(
                    &self.dp,
                    w.index,
                    w.config.clone(),
                    &args,
                    &self.stop,
                    &w.stats,
                    tx,
                ) {
                    Ok(h) => {
                        w.handle = Some(h);
                        w.started = Instant::now();
                        match wait_ready(&rx, 1, &self.stop, &|l| say(&format!("restarted {l}"))) {
                            Ok(()) => {}
                            Err(e) => {
                                say(&format!("error: thread={} did not come back: {e}", w.index))
                            }
                        }
                    }
                    Err(e) => {
                        say(&format!("error: thread={}: cannot restart: {e}", w.index));
                        w.restart_at = Some(now + w.backoff);
                    }
                }
            }
        }
    }

    /// Joins every worker (after `stop` is set), saying how each ended; the number that died
    /// during the run.
    pub fn stop(mut self, say: &dyn Fn(&str)) -> u32 {
        for w in &mut self.list {
            let panicked = w.handle.take().is_some_and(|h| h.join().is_err());
            say(&format!(
                "stopped thread={} requests={}{}{}",
                w.index,
                w.stats.requests.load(Ordering::Relaxed),
                if panicked { " (panicked)" } else { "" },
                if w.deaths > 0 {
                    format!(" (died {} time(s), restarted)", w.deaths)
                } else {
                    String::new()
                }
            ));
        }
        self.list.iter().map(|w| w.deaths).sum()
    }
}

fn join_all(list: &mut [Supervised]) {
    for w in list {
        if let Some(h) = w.handle.take() {
            let _ = h.join();
        }
    }
}
