//! `ioth`: the control-plane command-line tool.
#![deny(unsafe_code)]

mod caps;
mod capture;
mod demo;
mod inspect;
mod metrics;
mod run;
mod serve;
mod top;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ioth",
    version,
    about = "Internet of Threads data plane",
    after_help = "Exit status: 0 on success; 1 on any error (the message names the cause: bad \
                  input, a missing capability, an interface without a classifier, ...); 2 on \
                  invalid command-line usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the classifier at work: on a private veth pair between two fresh network
    /// namespaces (default), or watching a real interface (--iface).
    Demo(demo::DemoArgs),
    /// Serve echo, HTTP or discard from N threads, each its own network node.
    Serve(serve::ServeArgs),
    /// Run a program in a fresh network namespace whose interface is a port of a running
    /// ioth's VDE switch; exits with the program's status.
    Run(run::RunArgs),
    /// Interfaces with an ioth classifier: program, mode, queues, endpoints, verdicts.
    Status(inspect::StatusArgs),
    /// Every endpoint: MAC, IPs, owner (pid, thread), receive counters.
    Endpoints(inspect::EndpointsArgs),
    /// Per-endpoint packet and byte rates, refreshed every second (q quits).
    Top(top::TopArgs),
    /// The frames of one endpoint, both directions, as pcap (tcpdump -r, Wireshark).
    Capture(capture::CaptureArgs),
    /// Attach the classifier persistently (pinned under /sys/fs/bpf/ioth/IF@nsN/).
    Attach(inspect::AttachArgs),
    /// Remove a persistent attachment.
    Detach(inspect::DetachArgs),
    /// Remove the endpoints of dead owners from a persistent attachment.
    Reap(inspect::IfaceArgs),
    /// Serve the classifier's metrics of attached interfaces (no server needed).
    Exporter(metrics::ExporterArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Manpage,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    use caps::{BPF, NET_ADMIN, NET_RAW, SYS_ADMIN};
    let r: Result<()> = match cli.command {
        Cmd::Demo(a) => {
            caps::require("demo", &[BPF, NET_ADMIN, NET_RAW]).and_then(|_| demo::run(&a))
        }
        Cmd::Serve(a) => {
            caps::require("serve", &[BPF, NET_ADMIN, NET_RAW]).and_then(|_| serve::run(&a))
        }
        Cmd::Run(a) => {
            // unshare(CLONE_NEWNET) and the TAP device need CAP_SYS_ADMIN and CAP_NET_ADMIN.
            match caps::require("run", &[NET_ADMIN, SYS_ADMIN]).and_then(|_| run::run(&a)) {
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            }
        }
        Cmd::Status(a) => {
            caps::require("status", &[BPF, SYS_ADMIN]).and_then(|_| inspect::status(&a))
        }
        Cmd::Endpoints(a) => {
            caps::require("endpoints", &[BPF, SYS_ADMIN]).and_then(|_| inspect::endpoints(&a))
        }
        Cmd::Top(a) => caps::require("top", &[BPF, SYS_ADMIN]).and_then(|_| top::run(&a)),
        Cmd::Capture(a) => {
            caps::require("capture", &[BPF, SYS_ADMIN]).and_then(|_| capture::run(&a))
        }
        Cmd::Attach(a) => {
            caps::require("attach", &[BPF, NET_ADMIN, SYS_ADMIN]).and_then(|_| inspect::attach(&a))
        }
        Cmd::Detach(a) => {
            // SYS_ADMIN: it reads the owners map by id to refuse under live owners.
            caps::require("detach", &[BPF, NET_ADMIN, SYS_ADMIN]).and_then(|_| inspect::detach(&a))
        }
        Cmd::Reap(a) => caps::require("reap", &[BPF, SYS_ADMIN]).and_then(|_| inspect::reap(&a)),
        Cmd::Exporter(a) => {
            caps::require("exporter", &[BPF, SYS_ADMIN]).and_then(|_| metrics::exporter(&a))
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "ioth", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Manpage => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(Into::into)
        }
    };
    if let Err(e) = r {
        eprintln!("ioth: error: {e:#}");
        std::process::exit(1);
    }
}
