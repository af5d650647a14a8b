//! Every external command goes through here, so a failure names the command that failed.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The project-local tool directory (bpf-linker and its LLVM link).
pub fn tools_dir() -> PathBuf {
    root().join(".tools")
}

/// `cmd` as a shell-like line, for messages.
pub fn line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A command with the project's tools first on PATH.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools_dir().join("bin")];
    paths.extend(std::env::split_paths(&path));
    c.env("PATH", std::env::join_paths(paths).expect("PATH"));
    c.current_dir(root());
    c
}

/// Runs `cmd` with inherited stdio; a non-zero exit is an error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", line(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", line(cmd));
    }
    Ok(())
}

/// Runs `cmd` capturing its output; a non-zero exit is an error with its stderr.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", line(cmd)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        bail!("`{}` failed ({}): {last}", line(cmd), out.status);
    }
    Ok(out)
}

/// Runs `cmd` and returns its stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&output(cmd)?.stdout).into_owned())
}

/// Whether we run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
