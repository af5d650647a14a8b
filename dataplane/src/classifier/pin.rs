//! Persistent attachments: the classifier pinned in bpffs under `/sys/fs/bpf/ioth/IF@nsN/`, so
//! that servers can come and go without reloading it.
//!
//! `attach` loads the classifier with its maps pinned in that directory and pins its XDP link
//! there; the process may then exit. Later [`crate::endpoint::Dataplane::attach`] finds the pin and
//! shares the maps instead of attaching again. `detach` removes the pins, which detaches the
//! program once no process holds it. The directory is root-only (0700), the pins 0600.
//!
//! bpffs is global while interface names are per network namespace: the directory is
//! `IF@ns<inode>` ([`crate::sys::netns_qualified`]), so namespaces never collide, also in
//! containers with pid namespaces of their own.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::PathBuf,
};

use super::{
    program::Classifier,
    types::{AttachMode, ClassifierError, LoadOptions, ModeRequest},
    view::ClassifierView,
};
use crate::sys::mount;

/// Where bpffs is expected, unless `IOTH_BPFFS` names another bpffs mount.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The bpffs mount that holds ioth's pins: `$IOTH_BPFFS`, or [`BPFFS`].
pub fn bpffs() -> PathBuf {
    std::env::var_os("IOTH_BPFFS").map_or_else(|| PathBuf::from(BPFFS), PathBuf::from)
}

/// Errors of persistent attachments.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A pinned attachment exists already.
    #[error("{iface} already has a pinned ioth attachment ({dir})")]
    AlreadyAttached {
        /// Interface.
        iface: String,
        /// Its pin directory.
        dir: String,
    },
    /// The name cannot be an interface's (and must not become a path).
    #[error("{0:?} is not an interface name")]
    BadName(String),
    /// There is no pinned attachment.
    #[error("{0} has no pinned ioth attachment")]
    NotAttached(String),
    /// The pins exist but the attachment behind them is gone.
    #[error("stale pin at {dir} (the link is gone): run `ioth detach --iface {iface}`")]
    Stale {
        /// Interface.
        iface: String,
        /// Its pin directory.
        dir: String,
    },
    /// The classifier failed.
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, PinError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PinError {
    let what = what.into();
    move |source| PinError::Io { what, source }
}

/// The pin directory of `iface` in the caller's network namespace.
pub fn dir(iface: &str) -> PathBuf {
    bpffs()
        .join("ioth")
        .join(crate::sys::netns_qualified(iface))
}

/// Whether `iface` has a pinned attachment (its link pin exists).
pub fn is_pinned(iface: &str) -> bool {
    dir(iface).join("link").exists()
}

/// Mounts bpffs at [`bpffs()`] if it is not mounted there (mode 0700) — but only in the
/// initial mount namespace: elsewhere (e.g. under `ip netns exec`, which remounts /sys) a new
/// mount would vanish with the process, and the pins with it.
pub fn ensure_bpffs() -> Result<()> {
    let root = bpffs();
    let root_s = root.to_string_lossy().into_owned();
    if mount::is_bpffs(&root).map_err(io("reading /proc/self/mounts"))? {
        return Ok(());
    }
    let ino = |p: &str| fs::metadata(p).map(|m| m.ino()).unwrap_or(0);
    if ino("/proc/self/ns/mnt") != ino("/proc/1/ns/mnt") {
        return Err(PinError::Io {
            what: format!("no bpffs at {root_s} in this mount namespace"),
            source: std::io::Error::other(
                "a mount made here would not outlive this process; mount bpffs where every \
                 process sees it and point IOTH_BPFFS at it",
            ),
        });
    }
    fs::create_dir_all(&root).map_err(io(format!("creating {root_s}")))?;
    mount::mount_bpffs(&root).map_err(io(format!("mounting bpffs at {root_s}")))
}

fn check_name(iface: &str) -> Result<()> {
    if crate::sys::valid_ifname(iface) {
        Ok(())
    } else {
        Err(PinError::BadName(iface.to_owned()))
    }
}

/// Loads the classifier with pinned maps, attaches it to `iface` and pins the link.
pub fn attach(iface: &str, mode: ModeRequest) -> Result<AttachMode> {
    check_name(iface)?;
    ensure_bpffs()?;
    let d = dir(iface);
    if d.exists() {
        return Err(if is_pinned(iface) {
            PinError::AlreadyAttached {
                iface: iface.to_owned(),
                dir: d.display().to_string(),
            }
        } else {
            PinError::Stale {
                iface: iface.to_owned(),
                dir: d.display().to_string(),
            }
        });
    }
    let parent = d.parent().expect("a parent");
    fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    fs::create_dir(&d).map_err(io(format!("creating {}", d.display())))?;
    let result = (|| {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
            .map_err(io("restricting the pin directory"))?;
        let mut c = Classifier::load(LoadOptions {
            pin_dir: Some(d.clone()),
            ..LoadOptions::default()
        })?;
        let mode = c.attach(iface, mode)?;
        c.pin_attachment(&d.join("link"))?;
        for entry in fs::read_dir(&d).map_err(io("listing the pins"))? {
            let p = entry.map_err(io("listing the pins"))?.path();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                .map_err(io(format!("restricting {}", p.display())))?;
        }
        Ok(mode)
    })();
    if result.is_err() {
        // Leave nothing half-configured.
        let _ = remove_dir(&d);
    }
    result
}

fn remove_dir(d: &PathBuf) -> Result<()> {
    if let Ok(entries) = fs::read_dir(d) {
        for e in entries.flatten() {
            fs::remove_file(e.path()).map_err(io(format!("removing {}", e.path().display())))?;
        }
    }
    fs::remove_dir(d).map_err(io(format!("removing {}", d.display())))
}

/// Removes the pinned attachment of `iface`: the program detaches once no process holds it.
pub fn detach(iface: &str) -> Result<()> {
    check_name(iface)?;
    let d = dir(iface);
    if !d.exists() {
        return Err(PinError::NotAttached(iface.to_owned()));
    }
    // Removing the link pin drops the last reference to the link (unless a process still
    // holds one), which detaches the program.
    remove_dir(&d)
}

/// Opens the pinned classifier of `iface` (no new attachment), after checking the link pin.
pub fn open(iface: &str) -> Result<Classifier> {
    check_name(iface)?;
    let d = dir(iface);
    if !d.exists() {
        return Err(PinError::NotAttached(iface.to_owned()));
    }
    if aya::programs::links::PinnedLink::from_pin(d.join("link")).is_err()
        || ClassifierView::open(iface).is_err()
    {
        return Err(PinError::Stale {
            iface: iface.to_owned(),
            dir: d.display().to_string(),
        });
    }
    let mut c = Classifier::load(LoadOptions {
        pin_dir: Some(d),
        ..LoadOptions::default()
    })?;
    c.set_nic(iface);
    Ok(c)
}
