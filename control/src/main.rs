//! `ioth`: the control-plane command-line tool.
#![deny(unsafe_code)]

mod demo;
mod inspect;
mod metrics;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ioth", version, about = "Internet of Threads data plane")]
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
    /// Interfaces with an ioth classifier: program, mode, queues, endpoints, verdicts.
    Status(inspect::StatusArgs),
    /// Every endpoint: MAC, IPs, owner (pid, thread), receive counters.
    Endpoints(inspect::EndpointsArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let r: Result<()> = match cli.command {
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Serve(a) => serve::run(&a),
        Cmd::Status(a) => inspect::status(&a),
        Cmd::Endpoints(a) => inspect::endpoints(&a),
    };
    if let Err(e) = r {
        eprintln!("ioth: error: {e:#}");
        std::process::exit(1);
    }
}
