//! Helpers shared by the control-plane integration tests.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

/// Asserts that `promtool check metrics` (Prometheus's own checker) accepts `text`.
pub fn assert_promtool_accepts(text: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let res = check.wait_with_output().expect("promtool output");
    assert!(
        res.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}
