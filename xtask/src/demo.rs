//! `cargo xtask demo`: builds `ioth` and runs `ioth demo` (a private veth pair between two
//! fresh namespaces, or a real interface with --iface).

use anyhow::{Result, bail};

use crate::cmd::{self, command, root};

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run on this interface instead of a private veth pair.
    #[arg(long)]
    pub iface: Option<String>,
    /// Seconds to watch the interface (with --iface).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
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
    if let Some(iface) = &args.iface {
        c.args(["--iface", iface, "--seconds", &args.seconds.to_string()]);
    }
    cmd::run(&mut c)
}
