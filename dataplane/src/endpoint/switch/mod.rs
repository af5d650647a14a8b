//! A vde_switch-compatible switch inside ioth: `DIR/ctl` takes VDE clients (`vde_plug`,
//! `vdens`, libvdeplug programs, QEMU's vde netdev), each a port; frames between ports are
//! switched here, frames to and from the NIC go over AF_XDP (a [`super::raw::RawEndpoint`]
//! that claims every MAC learned behind a port), and broadcast/multicast the NIC receives
//! reaches every port through a group tap while the kernel keeps its copy.
//!
//! - [`core`]: the learning table and the forwarding decisions (sans-IO).
//! - [`vde`]: the vde_switch protocol and the ports' sockets.
//! - [`bridge`]: the switch's thread, which moves the frames.

pub mod bridge;
pub mod core;
pub mod port;
pub mod vde;
pub mod vxlan;

pub use bridge::{SwitchCounters, SwitchError, SwitchHandle, SwitchOptions, spawn};

use std::path::PathBuf;

/// Where a switch on `iface` lives when no directory is named: `/run/ioth/vde/IF@ns<inode>`
/// (interface names are per network namespace, `/run` is not).
pub fn default_dir(iface: &str) -> PathBuf {
    PathBuf::from(crate::capture::RUN_DIR)
        .join("vde")
        .join(crate::sys::netns_qualified(iface))
}
