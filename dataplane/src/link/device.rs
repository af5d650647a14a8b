//! The device trait every link implements: a smoltcp `Device` plus the two things a driver
//! loop needs besides it (push queued frames out, sleep until frames may be there), and a
//! look at the next frame so the stack can pick the socket shard before smoltcp sees it.

use std::{io, time::Duration};

use smoltcp::{phy, time::Instant};

/// A smoltcp device that a driver loop can also flush and sleep on.
pub trait Link: phy::Device {
    /// Runs `f` on the frame the next `receive` will hand out, if one is there (without
    /// handing it out): the stack picks the socket shard from it.
    fn peek<R>(&mut self, now: Instant, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// Pushes frames written by the stack out to the wire.
    fn flush(&mut self) -> io::Result<()>;
    /// Blocks until frames may have arrived, or `timeout` passes (`None`: no limit).
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}
