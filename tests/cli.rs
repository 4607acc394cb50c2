//! The `tether` binary's command line: `-t` on good and broken configs, `-T`, `-v`.

mod command;

use std::path::Path;
use std::process::Command;

use command::{check_named, tether};

fn check(text: &str) -> (bool, String) {
    check_named(text, "broken.conf")
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

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("t.conf");
    std::fs::write(
        &conf,
        format!("http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}"),
    )
    .unwrap();
    // Start with a small soft limit, as a login shell would give.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec {} -c {}",
            env!("CARGO_BIN_EXE_tether"),
            conf.display()
        ))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tether");
    let limits = format!("/proc/{}/limits", child.id());
    // Wait (bounded) until tether serves: by then it has set its limits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "tether did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&limits).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files  SOFT  HARD  files"
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
}

#[test]
fn dash_t_checks_every_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert = file("a.pem", one.cert.pem());
    let key = file("a.key", one.signing_key.serialize_pem());
    let wrong_key = file("b.key", other.signing_key.serialize_pem());
    let garbage = file(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n".into(),
    );
    let conf = |cert: &str, key: &str| {
        format!(
            "events {{}} http {{ server {{ listen 127.0.0.1:8443 ssl; \
             ssl_certificate {cert}; ssl_certificate_key {key}; \
             location / {{ return 200; }} }} }}"
        )
    };
    assert!(check(&conf(&cert, &key)).0, "a matching pair passes");
    for (what, text, named) in [
        (
            "a key of another certificate",
            conf(&cert, &wrong_key),
            &wrong_key,
        ),
        ("a garbage certificate", conf(&garbage, &key), &garbage),
        (
            "a missing key",
            conf(&cert, "/nonexistent/k.pem"),
            &"/nonexistent/k.pem".into(),
        ),
    ] {
        let (ok, stderr) = check(&text);
        assert!(!ok, "{what}: tether -t accepted it");
        assert!(stderr.contains(named.as_str()), "{what}: {stderr}");
    }
}

#[test]
fn dash_t_warns_about_settings_inside_if() {
    // The CORS idiom: `add_header` inside `if` replaces the location's list when it holds.
    let text = format!(
        "http {{\n  {GOOD_UPSTREAM}\n  server {{\n    listen 127.0.0.1:8080;\n    location / {{\n      add_header X-Frame-Options DENY;\n      if ($request_method = OPTIONS) {{ add_header Access-Control-Allow-Origin *; return 204; }}\n      proxy_pass http://backend;\n    }}\n  }}\n}}\n"
    );
    let (ok, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("[warn] \"add_header\" inside \"if\"")
            && stderr.contains("replace the location's")
            && stderr.contains("broken.conf:7:40"),
        "{stderr}"
    );
    assert!(stderr.contains("test is successful"), "{stderr}");
}
