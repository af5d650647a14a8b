//! [`Dataplane`]: the classifier attached to an interface plus one UMEM per rx queue; it
//! hands out endpoints — per-thread [`Stack`]s whose addresses it registers in the
//! classifier (see [`super::thread`]).

use std::{
    fmt,
    os::fd::AsRawFd,
    sync::{Arc, Mutex, MutexGuard},
};

use super::{
    raw::RawEndpoint,
    thread::{EndpointGuard, EndpointStack},
};
use crate::{
    classifier::{
        AttachMode, Classifier, ClassifierError, ClassifierView, EndpointAddrs, EndpointKind,
        LoadOptions, ModeRequest, pin,
    },
    link::{XskDevice, local::LocalLan},
    stack::{Stack, StackConfig, StackError},
    sys::{self, QueuesError, netlink::Rtnetlink},
    wire::Mac,
    xsk::{BindMode, QueueUmem, XskConfig, XskError, XskSocket},
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
    Pin(#[from] pin::PinError),
    /// The interface's queues could not be read.
    #[error(transparent)]
    Queues(#[from] QueuesError),
    /// The interface uses more rx queues than the classifier serves.
    #[error(
        "{iface} uses {queues} rx queues; ioth serves at most {max}: reduce them (e.g. \
         `ethtool -L {iface} combined {max}`)",
        max = ioth_common::MAX_QUEUES
    )]
    TooManyQueues {
        /// Interface.
        iface: String,
        /// Its rx queues in use.
        queues: u32,
    },
    /// The local segment could not be joined.
    #[error("joining the local segment: {0}")]
    Local(String),
    /// The pinned attachment could not be read.
    #[error("reading the pinned attachment of {iface}")]
    View {
        /// Interface.
        iface: String,
        /// Why.
        #[source]
        source: crate::classifier::view::InspectError,
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
    classifier: Arc<Mutex<Classifier>>,
    queues: Vec<Arc<QueueUmem>>,
    attach_mode: AttachMode,
    pinned: bool,
    /// Frames between this data plane's endpoints without the NIC.
    lan: Arc<LocalLan>,
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

impl Dataplane {
    /// Loads the classifier, attaches it to `iface` and creates a UMEM per rx queue.
    pub fn attach(iface: &str, opts: DataplaneOptions) -> Result<Arc<Self>, DataplaneError> {
        // Frames on a queue the classifier does not serve would be lost without a word:
        // refuse before anything is attached.
        let n = sys::rx_queues(iface)?.max(1);
        if n > ioth_common::MAX_QUEUES {
            return Err(DataplaneError::TooManyQueues {
                iface: iface.to_owned(),
                queues: n,
            });
        }
        let (classifier, attach_mode) = if pin::dir(iface).exists() {
            // A persistent attachment (`ioth attach`): share its maps, leave it attached on
            // exit, and clear out endpoints of servers that died without cleaning up.
            let mut c = pin::open(iface)?;
            let reaped = c.reap_dead_owners()?;
            if !reaped.is_empty() {
                log::info!("{iface}: reaped endpoints of dead owners in slots {reaped:?}");
            }
            let view = ClassifierView::open(iface).map_err(|source| DataplaneError::View {
                iface: iface.to_owned(),
                source,
            })?;
            (c, view.attachment().mode)
        } else {
            let mut c = Classifier::load(opts.load)?;
            let mode = c.attach(iface, opts.mode)?;
            (c, mode)
        };
        let pinned = pin::dir(iface).exists();
        let queues = (0..n)
            .map(|q| QueueUmem::new(iface, q, opts.xsk))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            iface: iface.to_owned(),
            classifier: Arc::new(Mutex::new(classifier)),
            queues,
            attach_mode,
            pinned,
            lan: Arc::default(),
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

    /// The local segment of this data plane's endpoints.
    pub fn lan(&self) -> &Arc<LocalLan> {
        &self.lan
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
        // The MTU must fit a UMEM frame (with the kernel's receive headroom and an Ethernet
        // header) and the interface.
        let max_frame = crate::xsk::MAX_FRAME - 14;
        if config.mtu > max_frame {
            return Err(StackError::Mtu {
                mtu: config.mtu,
                max: max_frame,
                why: "an AF_XDP frame of 2048 bytes less the kernel's headroom",
            }
            .into());
        }
        let link = self.link()?;
        if config.mtu > link.mtu as usize {
            return Err(StackError::Mtu {
                mtu: config.mtu,
                max: link.mtu as usize,
                why: "the interface's MTU",
            }
            .into());
        }
        let addrs = EndpointAddrs {
            // A shared (host) MAC is the kernel's too: the stack owns only its addresses.
            mac: (!config.shared_mac).then_some(config.mac),
            ipv4: config.ipv4.iter().map(|(a, _)| *a).collect(),
            ipv6: config.ipv6.iter().map(|(a, _)| *a).collect(),
            thread: config.thread,
            ..Default::default()
        };
        let (guard, sockets) = self.register(&addrs)?;
        let id = guard.id();
        let mtu = config.mtu;
        // Stacks transmit through the socket of queue (thread % queues), spreading the
        // queues' locks and completion rings over the threads.
        let tx_index = config.thread as usize;
        let mut device = XskDevice::new(sockets, mtu, tx_index)?;
        device.set_tx_publisher(self.classifier().tx_publisher(id)?);
        device.set_capture(crate::capture::register(&self.iface, id.0));
        let member = self
            .lan
            .join_stack((!config.shared_mac).then_some(Mac(config.mac)))
            .map_err(|e| DataplaneError::Local(e.to_string()))?;
        device.set_local(member);
        let stack = Stack::new(device, config, now)?;
        Ok(EndpointStack::new(guard, stack))
    }

    /// Creates a raw endpoint owning `mac`: registers it, binds a socket on every rx queue
    /// and puts the sockets in the XskMap. No stack: the caller moves frames itself (a
    /// switch). Undone when it drops.
    pub fn raw_endpoint(
        self: &Arc<Self>,
        mac: Mac,
        thread: u32,
    ) -> Result<RawEndpoint, DataplaneError> {
        let link = self.link()?;
        let addrs = EndpointAddrs {
            mac: Some(mac.0),
            thread,
            kind: EndpointKind::Switch,
            ..EndpointAddrs::default()
        };
        let (guard, sockets) = self.register(&addrs)?;
        Ok(RawEndpoint::new(guard, sockets, link.index, link.mtu))
    }

    /// What the kernel says of the interface now.
    fn link(&self) -> Result<crate::sys::netlink::Link, DataplaneError> {
        Rtnetlink::open()
            .and_then(|mut nl| nl.link(&self.iface))
            .map_err(|source| {
                DataplaneError::Queues(QueuesError::Netlink {
                    iface: self.iface.clone(),
                    source,
                })
            })?
            .ok_or_else(|| DataplaneError::Queues(QueuesError::NoSuchInterface(self.iface.clone())))
    }

    /// Registers an endpoint owning `addrs`, binds a socket on every rx queue and puts the
    /// sockets in the XskMap. The guard removes the entries whatever fails after it.
    fn register(
        &self,
        addrs: &EndpointAddrs,
    ) -> Result<(EndpointGuard, Vec<XskSocket>), DataplaneError> {
        let id = self.classifier().add_endpoint(addrs)?;
        let guard = EndpointGuard::new(Arc::clone(&self.classifier), id);
        let mut sockets = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            sockets.push(XskSocket::bind(q)?);
        }
        let mut c = self.classifier();
        for s in &sockets {
            c.set_socket(s.queue().queue(), id.0, s.as_raw_fd())?;
        }
        drop(c);
        Ok((guard, sockets))
    }
}
