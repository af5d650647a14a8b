//! The TAP link: the same [`crate::stack::Stack`] over a Linux TAP device, the way smoltcp
//! is usually run. Every frame crosses the kernel twice (a read and a write per frame) —
//! the baseline that the AF_XDP link is compared with.

use std::{io, os::fd::AsRawFd, time::Duration};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium, TunTapInterface};

use crate::device::Link;

/// A stack's link over a TAP device.
#[derive(Debug)]
pub struct TapLink {
    tap: TunTapInterface,
}

impl TapLink {
    /// Opens (creating if needed) the TAP device `name` in the caller's network namespace.
    pub fn open(name: &str) -> io::Result<Self> {
        Ok(Self {
            tap: TunTapInterface::new(name, Medium::Ethernet)?,
        })
    }
}

impl AsRawFd for TapLink {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.tap.as_raw_fd()
    }
}

impl phy::Device for TapLink {
    type RxToken<'a> = <TunTapInterface as Device>::RxToken<'a>;
    type TxToken<'a> = <TunTapInterface as Device>::TxToken<'a>;

    fn receive(
        &mut self,
        timestamp: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.tap.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.tap.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.tap.capabilities()
    }
}

impl Link for TapLink {
    fn flush(&mut self) -> io::Result<()> {
        // Every frame is written to the TAP fd when smoltcp emits it.
        Ok(())
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        phy::wait(
            self.tap.as_raw_fd(),
            timeout.map(|d| smoltcp::time::Duration::from_micros(d.as_micros() as u64)),
        )
    }
}
