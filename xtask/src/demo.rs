//! `cargo xtask demo`: builds `ioth` and runs `ioth demo` (a private veth pair between two
//! fresh namespaces, or a real interface with --iface).

use anyhow::{Result, bail};

use crate::cmd::{self, command, root};

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Serve on this interface instead of a private veth pair (needs --ipv4).
    #[arg(long)]
    pub iface: Option<String>,
    /// With --iface: first thread's IPv4 address and prefix (thread i takes the i-th next).
    #[arg(long)]
    pub ipv4: Option<String>,
    /// With --iface: first thread's IPv6 address and prefix.
    #[arg(long)]
    pub ipv6: Option<String>,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the demo attaches XDP programs and makes namespaces: run it as root");
    }
    crate::setup::run()?;
    cmd::run(command("cargo").args(["build", "--release", "--locked", "-p", "ioth-control"]))?;
    let ioth = root().join("target/release/ioth");
    let mut c = command(&ioth);
    c.arg("demo");
    for (flag, value) in [
        ("--iface", &args.iface),
        ("--ipv4", &args.ipv4),
        ("--ipv6", &args.ipv6),
    ] {
        if let Some(v) = value {
            c.args([flag, v]);
        }
    }
    cmd::run(&mut c)
}
