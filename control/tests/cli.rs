//! Command-line input checked before anything runs (no privileges needed).

use std::process::Command;

#[test]
fn path_shaped_interface_names_are_refused_before_they_become_paths() {
    for args in [
        vec!["detach", "--iface", "../../etc"],
        vec!["attach", "--iface", "a/b"],
        vec!["reap", "--iface", ".."],
        vec!["status", "--iface", "eth0:1"],
        vec![
            "serve",
            "--iface",
            "sixteen-bytes-xx",
            "--ipv4",
            "10.0.0.1/24",
        ],
        vec!["run", "--iface", "../x", "--", "true"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ioth"))
            .args(&args)
            .output()
            .expect("run ioth");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is not an interface name"), "{args:?}: {err}");
    }
}
