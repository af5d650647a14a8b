//! The TAP link: the same [`crate::stack::Stack`] over a Linux TAP device, the way smoltcp
//! is usually run. Every frame crosses the kernel twice (a read and a write per frame) —
//! the baseline that the AF_XDP link is compared with.

use std::{io, os::fd::AsRawFd, time::Duration};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium, TunTapInterface};

use super::device::Link;

/// A stack's link over a TAP device.
#[derive(Debug)]
pub struct TapLink {
    tap: TunTapInterface,
    /// A frame read by `peek`, handed out by the next `receive`.
    pending: Option<Vec<u8>>,
}

/// A frame read from the TAP device.
#[derive(Debug)]
pub struct TapRxToken(Vec<u8>);

impl phy::RxToken for TapRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TapLink {
    fn read(&mut self, now: smoltcp::time::Instant) -> Option<Vec<u8>> {
        use phy::RxToken as _;
        let (rx, _) = self.tap.receive(now)?;
        Some(rx.consume(|frame| frame.to_vec()))
    }
}

impl TapLink {
    /// Opens (creating if needed) the TAP device `name` in the caller's network namespace.
    pub fn open(name: &str) -> io::Result<Self> {
        Ok(Self {
            tap: TunTapInterface::new(name, Medium::Ethernet)?,
            pending: None,
        })
    }
}

impl AsRawFd for TapLink {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tap.as_raw_fd()
    }
}

impl phy::Device for TapLink {
    type RxToken<'a> = TapRxToken;
    type TxToken<'a> = <TunTapInterface as Device>::TxToken<'a>;

    fn receive(
        &mut self,
        timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Read into a buffer of ours (one copy: the stack may have peeked at the frame).
        let frame = match self.pending.take() {
            Some(f) => f,
            None => self.read(timestamp)?,
        };
        Some((TapRxToken(frame), self.tap.transmit(timestamp)?))
    }

    fn transmit(&mut self, timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.tap.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.tap.capabilities()
    }
}

impl Link for TapLink {
    fn peek<R>(&mut self, now: smoltcp::time::Instant, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.pending.is_none() {
            self.pending = self.read(now);
        }
        self.pending.as_deref().map(f)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Every frame is written to the TAP fd when smoltcp emits it.
        Ok(())
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        phy::wait(
            self.tap.as_raw_fd(),
            timeout.map(|d| smoltcp::time::Duration::from_micros(d.as_micros() as u64)),
        )
    }
}
