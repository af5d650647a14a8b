//! The NIC's own unicast address list. Endpoints have MACs of their own, and a real NIC's
//! unicast filter drops frames to MACs it does not know before XDP sees them. Every MAC an
//! endpoint owns (its own, and those a switch port learns) is added to the device's address
//! list — as `bridge fdb add MAC dev IF self` does — and removed when the endpoint lets it go
//! (or a reaper removes a dead owner's). A device without an address list is put in
//! promiscuous mode instead, once, and taken out of it when the classifier goes.

use crate::{sys::netlink::Rtnetlink, wire::Mac};

/// The interface whose address list follows the endpoints' MACs.
#[derive(Debug)]
pub(super) struct NicAddresses {
    ifindex: u32,
    iface: String,
    /// We turned promiscuous mode on (the fallback) and must turn it off.
    promiscuous: bool,
}

impl NicAddresses {
    pub(super) fn new(iface: &str) -> Option<Self> {
        let ifindex = nix::net::if_::if_nametoindex(iface).ok()?;
        Some(Self {
            ifindex,
            iface: iface.to_owned(),
            promiscuous: false,
        })
    }

    /// Lets frames to `mac` through the NIC's filter.
    pub(super) fn add(&mut self, mac: [u8; 6]) {
        if self.promiscuous {
            return;
        }
        let r = Rtnetlink::open().and_then(|mut nl| nl.add_fdb(self.ifindex, mac));
        let Err(e) = r else { return };
        if e.os_error() == Some(libc::EEXIST) {
            // Already listed (a dead owner's entry not reaped yet, or the device's own).
            return;
        }
        log::warn!(
            "{}: cannot add {} to the device's address list ({e}); falling back to \
             promiscuous mode",
            self.iface,
            Mac(mac)
        );
        match Rtnetlink::open().and_then(|mut nl| nl.set_promiscuous(self.ifindex, true)) {
            Ok(()) => self.promiscuous = true,
            Err(e) => log::warn!(
                "{}: promiscuous mode refused too ({e}): frames to endpoint MACs may be \
                 dropped by the NIC",
                self.iface
            ),
        }
    }

    /// Takes `mac` off the NIC's address list.
    pub(super) fn remove(&mut self, mac: [u8; 6]) {
        if let Err(e) = Rtnetlink::open().and_then(|mut nl| nl.del_fdb(self.ifindex, mac))
            && e.os_error() != Some(libc::ENOENT)
        {
            log::debug!(
                "{}: removing {} from the address list: {e}",
                self.iface,
                Mac(mac)
            );
        }
    }
}

impl Drop for NicAddresses {
    fn drop(&mut self) {
        if self.promiscuous
            && let Err(e) =
                Rtnetlink::open().and_then(|mut nl| nl.set_promiscuous(self.ifindex, false))
        {
            log::warn!("{}: leaving promiscuous mode: {e}", self.iface);
        }
    }
}
