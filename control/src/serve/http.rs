//! `--app http`: one HTTP/1.1 request, one answer, then close.
//!
//! Deliberately minimal (it reads until the blank line, answers `GET` with a fixed body and
//! anything else with 400): it is a benchmark subject as much as a demo, so it costs what
//! the stack costs and nothing more. See DESIGN.md, "HTTP in the binary".

use ioth_dataplane::{SocketHandle, Sockets};
use smoltcp::socket::tcp;

/// Most request bytes kept (a request longer than this gets a 400).
const MAX_REQUEST: usize = 16 * 1024;

/// One HTTP connection being served.
#[derive(Debug)]
pub struct HttpConn {
    handle: SocketHandle,
    request: Vec<u8>,
    answered: bool,
}

/// What one [`HttpConn::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStep {
    /// Bytes were read or an answer was sent.
    pub worked: bool,
    /// A request was answered in this step.
    pub answered: bool,
    /// The connection is over and its socket removed.
    pub done: bool,
}

impl HttpConn {
    /// A connection on socket `handle` (from the listener).
    pub fn new(handle: SocketHandle) -> Self {
        Self {
            handle,
            request: Vec::new(),
            answered: false,
        }
    }

    /// Reads what arrived, answers a complete request with `body`, closes when done.
    pub fn step(&mut self, sockets: &mut Sockets, buf: &mut [u8], body: &str) -> HttpStep {
        let mut step = HttpStep::default();
        // Look first (a read-only look leaves the socket's shard alone, so idle connections
        // cost the stack nothing); act only on those with something to do.
        let s = sockets.get::<tcp::Socket<'_>>(self.handle);
        if s.state() == tcp::State::Established && s.may_recv() && !s.can_recv() && !self.answered {
            return step;
        }
        let s = sockets.get_mut::<tcp::Socket<'_>>(self.handle);
        if s.can_recv() {
            let n = s.recv_slice(buf).unwrap_or(0);
            step.worked |= n > 0;
            if self.request.len() < MAX_REQUEST {
                self.request.extend_from_slice(&buf[..n]);
            }
        }
        if !self.answered {
            let complete = self.request.windows(4).any(|w| w == b"\r\n\r\n");
            if complete || self.request.len() >= MAX_REQUEST {
                let (status, text) = if complete && self.request.starts_with(b"GET ") {
                    ("200 OK", body)
                } else {
                    ("400 Bad Request", "bad request\n")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nServer: ioth\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.send_slice(resp.as_bytes());
                s.close();
                self.answered = true;
                step.answered = true;
                step.worked = true;
            }
        }
        if !s.may_recv() && s.send_queue() == 0 && s.is_open() {
            s.close();
        }
        step.done = matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait);
        if step.done {
            sockets.remove(self.handle);
        }
        step
    }
}
