//! Running the `tether` binary from the integration tests that drive it as a process (`cli`,
//! `operations`).

use std::process::{Command, Output};

/// Runs `tether ARGS` to completion.
pub fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("run tether")
}

/// `tether -t` on `text` written to a file named `name`: whether it passed, and stderr with
/// the file's path shortened to `name`.
pub fn check_named(text: &str, name: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = tether(&["-t", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), name);
    (out.status.success(), stderr)
}
