//! The machine a benchmark ran on, recorded with every result.

use std::process::Command;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub date: String,
    pub git_commit: String,
}

fn text(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    pub fn now() -> Self {
        let m = basics();
        // Results written by the run itself do not make the tree dirty.
        let dirty = !text(Command::new("git").args([
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench/results",
        ]))
        .is_empty();
        Self {
            cpu: m.cpu,
            cores: m.cores,
            kernel: m.kernel,
            date: text(Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ")),
            git_commit: format!(
                "{}{}",
                text(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
                if dirty { "-dirty" } else { "" }
            ),
        }
    }
}

/// CPU model, core count and kernel.
struct Basics {
    cpu: String,
    cores: usize,
    kernel: String,
}

fn basics() -> Basics {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    Basics {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel,
    }
}
