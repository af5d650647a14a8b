//! [`Dataplane`]: the classifier attached to an interface plus one UMEM per rx queue; it
//! hands out per-thread [`Stack`]s whose addresses it registers in the classifier.
//!
//! A stack's classifier entries live exactly as long as the stack: they are removed when it
//! drops — on return, on thread exit and on panic (unwinding drops it) — so traffic is
//! never black-holed by a dead thread.

use std::{
    fmt,
    process::Command,
    sync::{Arc, Mutex, MutexGuard},
};

use crate::{
    classifier::{
        AttachMode, Classifier, ClassifierError, EndpointAddrs, EndpointId, LoadOptions,
        ModeRequest,
    },
    device::XskDevice,
    stack::{Stack, StackConfig, StackError},
    xsk::{BindMode, QueueUmem, XskConfig, XskError},
};

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The classifier failed.
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    /// AF_XDP failed.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// The stack configuration is not usable.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// A pinned attachment could not be used.
    #[error(transparent)]
    Pin(#[from] crate::pin::PinError),
    /// The interface's queues could not be read.
    #[error("reading the rx queues of {iface}: {why}")]
    Queues {
        /// Interface.
        iface: String,
        /// Why.
        why: String,
    },
}

/// Options of [`Dataplane::attach`].
#[derive(Clone, Debug, Default)]
pub struct DataplaneOptions {
    /// XDP attach mode.
    pub mode: ModeRequest,
    /// UMEM and ring sizes (per rx queue).
    pub xsk: XskConfig,
    /// Classifier load options.
    pub load: LoadOptions,
}

/// The classifier on one interface and the UMEM of each of its rx queues.
pub struct Dataplane {
    iface: String,
    classifier: Mutex<Classifier>,
    queues: Vec<Arc<QueueUmem>>,
    attach_mode: AttachMode,
    pinned: bool,
}

impl fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataplane")
            .field("iface", &self.iface)
            .field("queues", &self.queues.len())
            .field("attach_mode", &self.attach_mode)
            .finish_non_exhaustive()
    }
}

/// Number of rx queues of `iface` in use, as the kernel reports it in the caller's namespace:
/// the current channel count from `ethtool -l` (a veth, for one, can have more queues than
/// it uses), else the device's `numrxqueues`.
pub fn rx_queues(iface: &str) -> Result<u32, DataplaneError> {
    let err = |why: String| DataplaneError::Queues {
        iface: iface.to_owned(),
        why,
    };
    // `ip` and `ethtool` run in the calling thread's network namespace (sysfs may show
    // another one).
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .map_err(|e| err(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let mut max = 1;
    while let Some(w) = words.next() {
        if w == "numrxqueues" {
            max = words
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| err("unreadable numrxqueues".into()))?;
            break;
        }
    }
    let current = Command::new("ethtool")
        .args(["-l", iface])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| current_rx_channels(&String::from_utf8_lossy(&o.stdout)));
    Ok(current.map_or(max, |c| c.clamp(1, max)))
}

/// Rx queues in use from `ethtool -l` output: current RX plus Combined channels.
fn current_rx_channels(text: &str) -> Option<u32> {
    let current = text.split("Current hardware settings:").nth(1)?;
    let field = |name: &str| {
        current
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    Some(field("RX:") + field("Combined:")).filter(|n| *n > 0)
}

impl Dataplane {
    /// Loads the classifier, attaches it to `iface` and creates a UMEM per rx queue.
    pub fn attach(iface: &str, opts: DataplaneOptions) -> Result<Arc<Self>, DataplaneError> {
        let (classifier, attach_mode) = if crate::pin::dir(iface).exists() {
            // A persistent attachment (`ioth attach`): share its maps, leave it attached on
            // exit, and clear out endpoints of servers that died without cleaning up.
            let mut c = crate::pin::open(iface)?;
            let reaped = c.reap_dead_owners()?;
            if !reaped.is_empty() {
                log::info!("{iface}: reaped endpoints of dead owners in slots {reaped:?}");
            }
            let view = crate::inspect::ClassifierView::open(iface).map_err(|e| {
                DataplaneError::Queues {
                    iface: iface.to_owned(),
                    why: e.to_string(),
                }
            })?;
            let mode = if view.attachment().mode == "skb" {
                AttachMode::Skb
            } else {
                AttachMode::Driver
            };
            (c, mode)
        } else {
            let mut c = Classifier::load(opts.load)?;
            let mode = c.attach(iface, opts.mode)?;
            (c, mode)
        };
        let pinned = crate::pin::dir(iface).exists();
        let n = rx_queues(iface)?.clamp(1, ioth_common::MAX_QUEUES);
        let queues = (0..n)
            .map(|q| QueueUmem::new(iface, q, opts.xsk))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            iface: iface.to_owned(),
            classifier: Mutex::new(classifier),
            queues,
            attach_mode,
            pinned,
        }))
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Whether this data plane uses a pinned (persistent) attachment.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// The XDP attach mode obtained.
    pub fn attach_mode(&self) -> AttachMode {
        self.attach_mode
    }

    /// The AF_XDP bind mode obtained (after the first stack).
    pub fn bind_mode(&self) -> Option<BindMode> {
        self.queues.first().and_then(|q| q.mode())
    }

    /// The per-queue UMEMs.
    pub fn queues(&self) -> &[Arc<QueueUmem>] {
        &self.queues
    }

    /// The classifier (for counters and endpoint listings).
    pub fn classifier(&self) -> MutexGuard<'_, Classifier> {
        self.classifier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a stack owning `config`'s addresses: registers them in the classifier, binds a
    /// socket on every rx queue and puts the sockets in the XskMap. Undone when it drops.
    pub fn stack(
        self: &Arc<Self>,
        config: StackConfig,
        now: smoltcp::time::Instant,
    ) -> Result<EndpointStack, DataplaneError> {
        config.validate()?;
        let addrs = EndpointAddrs {
            mac: Some(config.mac),
            ipv4: config.ipv4.iter().map(|(a, _)| *a).collect(),
            ipv6: config.ipv6.iter().map(|(a, _)| *a).collect(),
            thread: config.thread,
        };
        let id = self.classifier().add_endpoint(&addrs)?;
        // From here on the guard removes the entries whatever fails.
        let guard = EndpointGuard {
            dataplane: Arc::clone(self),
            id,
        };
        let mut sockets = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            sockets.push(q.socket()?);
        }
        {
            let mut c = self.classifier();
            for s in &sockets {
                use std::os::fd::AsRawFd;
                c.set_socket(s.queue().queue(), id.0, s.as_raw_fd())?;
            }
        }
        let mtu = config.mtu;
        // Stacks transmit through the socket of queue (thread % queues), spreading the
        // queues' locks and completion rings over the threads.
        let tx_index = config.thread as usize;
        let mut device = XskDevice::new(sockets, mtu, tx_index)?;
        device.set_tx_publisher(self.classifier().tx_publisher(id)?);
        device.set_capture(crate::capture::register(&self.iface, id.0));
        let stack = Stack::new(device, config, now)?;
        Ok(EndpointStack {
            _guard: guard,
            stack,
        })
    }
}

/// Removes an endpoint's classifier entries (addresses and sockets) when dropped.
#[derive(Debug)]
pub struct EndpointGuard {
    dataplane: Arc<Dataplane>,
    id: EndpointId,
}

impl EndpointGuard {
    /// The endpoint's slot.
    pub fn id(&self) -> EndpointId {
        self.id
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        if let Err(e) = self.dataplane.classifier().remove_endpoint(self.id) {
            log::warn!("removing endpoint {}: {e}", self.id.0);
        }
    }
}

/// A stack registered in the classifier. Derefs to the [`Stack`].
#[derive(Debug)]
pub struct EndpointStack {
    // Declared first: dropped first, so the classifier stops redirecting to the sockets
    // before they close.
    _guard: EndpointGuard,
    stack: Stack<XskDevice>,
}

impl EndpointStack {
    /// The endpoint's slot in the classifier.
    pub fn endpoint(&self) -> EndpointId {
        self._guard.id()
    }
}

impl std::ops::Deref for EndpointStack {
    type Target = Stack<XskDevice>;
    fn deref(&self) -> &Self::Target {
        &self.stack
    }
}

impl std::ops::DerefMut for EndpointStack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.stack
    }
}

#[cfg(test)]
mod tests {
    use super::current_rx_channels;

    #[test]
    fn current_channels_come_from_the_second_block_of_ethtool_l() {
        let veth = "Channel parameters for v:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";
        assert_eq!(current_rx_channels(veth), Some(1));
        let nic = "Pre-set maximums:\nRX:\t\tn/a\nCombined:\t8\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nCombined:\t4\n";
        assert_eq!(current_rx_channels(nic), Some(4));
        assert_eq!(
            current_rx_channels("netlink error: Operation not supported"),
            None
        );
    }
}
