//! The serving end of capture: each endpoint's tap, checked by its device on every frame,
//! and the process's capture socket that streams a tap's copies to a client.

use std::{
    collections::HashMap,
    fs,
    io::{self, BufRead, BufReader, BufWriter, Read, Write},
    os::{
        fd::AsRawFd,
        unix::{
            fs::PermissionsExt as _,
            net::{UnixListener, UnixStream},
        },
    },
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::protocol::{Direction, PROTOCOL, RUN_DIR, socket_path};

/// Frames a capture may have queued before further ones are dropped (counted).
const QUEUE_FRAMES: usize = 8192;

/// A frame copied for a capture.
#[derive(Debug)]
struct Copied {
    ns: u64,
    dir: Direction,
    data: Vec<u8>,
}

/// One endpoint's capture switch, checked by its device on every frame.
#[derive(Debug)]
pub struct CaptureTap {
    active: AtomicBool,
    sink: Mutex<Option<SyncSender<Copied>>>,
    dropped: AtomicU64,
}

impl CaptureTap {
    fn new() -> Self {
        Self {
            active: AtomicBool::new(false),
            sink: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether someone captures this endpoint (one relaxed load: the whole idle cost).
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Copies `frame` for the capture. Never blocks; a full queue counts a drop.
    pub fn record(&self, dir: Direction, frame: &[u8]) {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        let copied = Copied {
            ns,
            dir,
            data: frame.to_vec(),
        };
        if let Err(TrySendError::Full(_)) = sink.try_send(copied) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn start(&self) -> Option<Receiver<Copied>> {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if sink.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_FRAMES);
        *sink = Some(tx);
        self.dropped.store(0, Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
        Some(rx)
    }

    fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A tap registered with this process's capture service; unregistered when dropped.
#[derive(Debug)]
pub struct TapRegistration {
    tap: Arc<CaptureTap>,
    key: (String, u32),
}

impl TapRegistration {
    /// The tap.
    #[inline]
    pub fn tap(&self) -> &CaptureTap {
        &self.tap
    }
}

impl Drop for TapRegistration {
    fn drop(&mut self) {
        self.tap.stop();
        let mut s = service();
        s.taps.remove(&self.key);
        s.taps.retain(|_, t| t.strong_count() > 0);
        if s.taps.is_empty() && s.running.take().is_some() {
            // The last endpoint is gone: remove the socket now (the process may be about
            // to exit); the service thread notices and ends.
            let _ = fs::remove_file(socket_path(std::process::id()));
        }
    }
}

#[derive(Default)]
struct Service {
    taps: HashMap<(String, u32), Weak<CaptureTap>>,
    /// Generation of the running service thread, if one runs.
    running: Option<u64>,
    generations: u64,
}

static SERVICE: Mutex<Option<Service>> = Mutex::new(None);

fn service() -> ServiceGuard {
    let mut g = SERVICE.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(Service::default);
    ServiceGuard(g)
}

struct ServiceGuard(std::sync::MutexGuard<'static, Option<Service>>);

impl std::ops::Deref for ServiceGuard {
    type Target = Service;
    fn deref(&self) -> &Service {
        self.0.as_ref().expect("initialised by service()")
    }
}

impl std::ops::DerefMut for ServiceGuard {
    fn deref_mut(&mut self) -> &mut Service {
        self.0.as_mut().expect("initialised by service()")
    }
}

/// Registers the tap of endpoint `slot` on `iface` and makes sure this process answers
/// capture requests. If the socket cannot be set up, capture is unavailable (logged), the
/// data path is not affected.
pub fn register(iface: &str, slot: u32) -> TapRegistration {
    let tap = Arc::new(CaptureTap::new());
    let key = (iface.to_owned(), slot);
    let mut s = service();
    s.taps.insert(key.clone(), Arc::downgrade(&tap));
    if s.running.is_none() {
        match listen() {
            Ok(listener) => {
                s.generations += 1;
                let generation = s.generations;
                s.running = Some(generation);
                std::thread::Builder::new()
                    .name("ioth-capture".into())
                    .spawn(move || serve(listener, generation))
                    .map_err(|e| log::warn!("capture unavailable: starting its thread: {e}"))
                    .ok();
            }
            Err(e) => log::warn!("capture unavailable: {e}"),
        }
    }
    TapRegistration { tap, key }
}

fn listen() -> io::Result<UnixListener> {
    let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    fs::create_dir_all(RUN_DIR).map_err(|e| ctx(RUN_DIR, e))?;
    fs::set_permissions(RUN_DIR, fs::Permissions::from_mode(0o700)).map_err(|e| ctx(RUN_DIR, e))?;
    // Sockets of processes that died without cleaning up.
    if let Ok(entries) = fs::read_dir(RUN_DIR) {
        for e in entries.flatten() {
            let name = e.file_name();
            // Capture sockets and port descriptions of processes that died.
            let pid = name
                .to_str()
                .and_then(|n| {
                    n.strip_suffix(".sock")
                        .or_else(|| n.strip_suffix(".ports.json"))
                })
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && (pid == std::process::id() || !crate::sys::process_alive(pid))
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let path = socket_path(std::process::id());
    let listener = UnixListener::bind(&path).map_err(|e| ctx(&path.display().to_string(), e))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(|e| ctx(&path.display().to_string(), e))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Accepts clients until no tap is left, then removes the socket.
fn serve(listener: UnixListener, generation: u64) {
    let path = socket_path(std::process::id());
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = std::thread::Builder::new()
                    .name("ioth-capture-client".into())
                    .spawn(move || {
                        if let Err(e) = client(stream) {
                            log::debug!("capture client: {e}");
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = crate::sys::wait_readable(&[listener.as_raw_fd()], 250);
            }
            Err(e) => {
                log::warn!("capture: accept: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let mut s = service();
        if s.running != Some(generation) {
            // The last tap went away and took the socket with it.
            return;
        }
        s.taps.retain(|_, t| t.strong_count() > 0);
        if s.taps.is_empty() {
            s.running = None;
            let _ = fs::remove_file(&path);
            return;
        }
    }
}

/// How long a write to a capture client may block: one that stops reading is dropped
/// (and the endpoint can be captured again), never holding its thread forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the peer of `stream` may capture: root, or the user this process runs as. The
/// socket's file mode (0600 in a 0700 directory) says the same; this holds if those were
/// loosened.
fn peer_allowed(stream: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

fn client(stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    if !peer_allowed(&stream) {
        let mut out = &stream;
        writeln!(
            out,
            "ERR permission denied (root or the server's user only)"
        )?;
        return Ok(());
    }
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(256)
        .read_line(&mut line)?;
    let mut out = BufWriter::new(stream.try_clone()?);
    let Some((iface, slot)) = super::protocol::parse_request(&line) else {
        writeln!(out, "ERR bad request (expected {PROTOCOL} <iface> <slot>)")?;
        return out.flush();
    };
    let iface = iface.to_owned();
    let tap = service().taps.get(&(iface.clone(), slot)).cloned();
    let Some(tap) = tap.and_then(|t| t.upgrade()) else {
        writeln!(out, "ERR no endpoint {slot} on {iface} in this process")?;
        return out.flush();
    };
    let Some(frames) = tap.start() else {
        writeln!(
            out,
            "ERR endpoint {slot} on {iface} is already being captured"
        )?;
        return out.flush();
    };
    let weak = Arc::downgrade(&tap);
    drop(tap);
    let r = stream_frames(&stream, &mut out, &frames, &weak);
    if let Some(tap) = weak.upgrade() {
        tap.stop();
    }
    r
}

fn stream_frames(
    stream: &UnixStream,
    out: &mut BufWriter<UnixStream>,
    frames: &Receiver<Copied>,
    tap: &Weak<CaptureTap>,
) -> io::Result<()> {
    writeln!(out, "OK")?;
    out.flush()?;
    let mut reported = 0;
    loop {
        match frames.recv_timeout(Duration::from_millis(200)) {
            Ok(f) => {
                write_frame(out, &f)?;
                while let Ok(f) = frames.try_recv() {
                    write_frame(out, &f)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if hung_up(stream) {
                    return Ok(());
                }
            }
            // The endpoint is gone (its tap, and with it the sender, dropped).
            Err(RecvTimeoutError::Disconnected) => return out.flush(),
        }
        let dropped = tap
            .upgrade()
            .map_or(reported, |t| t.dropped.load(Ordering::Relaxed));
        if dropped != reported {
            reported = dropped;
            write_header(out, 1, Direction::Rx, 0, dropped)?;
        }
        out.flush()?;
    }
}

/// Whether the client closed its end (it never sends anything after the request, so
/// readable means end of stream or error).
fn hung_up(stream: &UnixStream) -> bool {
    crate::sys::wait_readable(&[stream.as_raw_fd()], 0).unwrap_or(true)
}

fn write_header(
    out: &mut impl Write,
    kind: u8,
    dir: Direction,
    len: u32,
    value: u64,
) -> io::Result<()> {
    let mut h = [0u8; 16];
    h[0] = kind;
    h[1] = u8::from(dir == Direction::Tx);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&value.to_le_bytes());
    out.write_all(&h)
}

fn write_frame(out: &mut impl Write, f: &Copied) -> io::Result<()> {
    write_header(out, 0, f.dir, f.data.len() as u32, f.ns)?;
    out.write_all(&f.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_copies_only_while_started_and_counts_what_does_not_fit() {
        let tap = CaptureTap::new();
        tap.record(Direction::Rx, b"ignored");
        assert!(!tap.active());
        let rx = tap.start().expect("not started yet");
        assert!(tap.start().is_none(), "one capture at a time");
        for _ in 0..QUEUE_FRAMES + 5 {
            tap.record(Direction::Tx, b"frame");
        }
        assert_eq!(tap.dropped.load(Ordering::Relaxed), 5);
        let first = rx.try_recv().unwrap();
        assert_eq!(
            (first.dir, first.data.as_slice()),
            (Direction::Tx, &b"frame"[..])
        );
        tap.stop();
        assert!(!tap.active());
        assert!(
            rx.try_recv().is_ok(),
            "queued frames stay readable after the stop"
        );
    }
}
