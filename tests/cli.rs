//! The `tether` binary's command line: `-t` on good and broken configs, `-T`, `-v`.

use std::path::Path;
use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("run tether")
}

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.conf");
    std::fs::write(&path, text).unwrap();
    let out = tether(&["-t", "-c", path.to_str().unwrap()]);
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "broken.conf");
    (out.status.success(), stderr)
}

const GOOD_UPSTREAM: &str = "upstream backend { server 127.0.0.1:9001; }";

#[test]
fn broken_configs_fail_with_file_line_and_column() {
    let table: [(&str, String, &[&str]); 6] = [
        (
            "unknown directive",
            format!(
                "http {{\n  {GOOD_UPSTREAM}\n  server {{\n    listen 127.0.0.1:8080;\n    location / {{ proxy_pas http://backend; }}\n  }}\n}}\n"
            ),
            &[
                "unknown directive \"proxy_pas\"",
                "broken.conf:5:18",
                "did you mean \"proxy_pass\"",
            ],
        ),
        (
            "missing semicolon",
            format!(
                "http {{\n  {GOOD_UPSTREAM}\n  server {{\n    listen 127.0.0.1:8080\n  }}\n}}\n"
            ),
            &["broken.conf:5:3"],
        ),
        (
            "unbalanced brace",
            format!("http {{\n  {GOOD_UPSTREAM}\n}}\n}}\n"),
            &["unexpected \"}\"", "broken.conf:4:1"],
        ),
        (
            "unknown upstream",
            format!(
                "http {{\n  {GOOD_UPSTREAM}\n  server {{\n    listen 127.0.0.1:8080;\n    location / {{ proxy_pass http://backnd; }}\n  }}\n}}\n"
            ),
            &[
                "no upstream \"backnd\"",
                "broken.conf:5:29",
                "did you mean \"backend\"",
            ],
        ),
        (
            "bad port",
            format!(
                "http {{\n  {GOOD_UPSTREAM}\n  server {{\n    listen 127.0.0.1:99999;\n  }}\n}}\n"
            ),
            &["invalid port", "99999", "broken.conf:4:12"],
        ),
        (
            "bad time unit",
            format!("http {{\n  {GOOD_UPSTREAM}\n  proxy_read_timeout 10q;\n}}\n"),
            &["invalid time \"10q\"", "broken.conf:3:22"],
        ),
    ];
    for (what, text, expected) in table {
        let (ok, stderr) = check(&text);
        assert!(!ok, "{what}: tether -t accepted it");
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{what}: {fragment:?} missing from:\n{stderr}"
            );
        }
    }
}

#[test]
fn every_error_in_a_file_is_reported() {
    let (ok, stderr) = check(
        "http {\n  upstream b { server 127.0.0.1:9001; }\n  server {\n    listen 127.0.0.1:8080;\n    location / { proxy_pass http://b; proxy_bufering off; }\n    location /x { proxy_read_timeout 5x; }\n  }\n}\n",
    );
    assert!(!ok);
    assert!(stderr.contains("broken.conf:5:"), "{stderr}");
    assert!(stderr.contains("broken.conf:6:"), "{stderr}");
    assert!(stderr.contains("test failed"), "{stderr}");
}

#[test]
fn a_good_config_passes_and_dash_capital_t_prints_it() {
    let out = tether(&["-t", "-c", "conf/signalr.conf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("syntax is ok"), "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");

    let out = tether(&["-T", "-c", "conf/signalr.conf"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("# configuration file conf/signalr.conf:"),
        "{stdout}"
    );
    assert!(stdout.contains("proxy_read_timeout 100s;"), "{stdout}");
    assert!(Path::new("conf/signalr.conf").exists());
}

#[test]
fn version() {
    let out = tether(&["-v"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
