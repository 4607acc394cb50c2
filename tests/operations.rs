//! The `tether` binary as an operator meets it: `-t` reporting every kind of error in one pass
//! and a notice for each directive that has no effect, `worker_rlimit_nofile`, the default
//! config path, `tether demo --listen`, the systemd unit and privilege dropping.

use std::path::Path;
use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("run tether")
}

/// `tether -t` on `text`: whether it passed, and stderr with the file's path shortened to
/// `t.conf`.
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.conf");
    std::fs::write(&path, text).unwrap();
    let out = tether(&["-t", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "t.conf");
    (out.status.success(), stderr)
}

fn assert_mentions(stderr: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(
            stderr.contains(fragment),
            "{fragment:?} missing from:\n{stderr}"
        );
    }
}

#[test]
fn dash_t_reports_directive_variable_and_host_errors_in_one_pass() {
    // Line 2: a typo; line 3: a host no resolver knows; line 6: a variable nothing defines;
    // line 7: a map's bad regex; line 8: a log format naming an unknown variable.
    let text = "http {\n  proxy_bufering off;\n  upstream b { server no-such-host.invalid:80; }\n  \
                server {\n    listen 127.0.0.1:8080;\n    \
                location / { proxy_pass http://b; proxy_set_header X-Who $no_such_variable; }\n  \
                }\n  map $host $m { ~( 1; }\n  log_format f '$no_such_either';\n}\n";
    let (ok, stderr) = check(text);
    assert!(!ok, "tether -t accepted it:\n{stderr}");
    assert_mentions(
        &stderr,
        &[
            "unknown directive \"proxy_bufering\" in t.conf:2:3",
            "no-such-host.invalid:80",
            "t.conf:3:",
            "unknown \"no_such_variable\" variable in t.conf:6:",
            "invalid regex \"(\"",
            "unknown \"no_such_either\" variable",
            "test failed",
        ],
    );
    // In file order, as nginx would list them were it to list them all.
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("[emerg]")).collect();
    let position = |fragment: &str| lines.iter().position(|l| l.contains(fragment));
    assert!(
        position("t.conf:2:") < position("t.conf:3:")
            && position("t.conf:3:") < position("t.conf:6:"),
        "{stderr}"
    );
}

#[test]
fn two_balancing_methods_in_one_upstream_are_an_error_naming_both_lines() {
    let text = "http {\n  upstream b {\n    ip_hash;\n    server 127.0.0.1:9001;\n    \
                least_conn;\n  }\n  server { listen 127.0.0.1:8080; location / { proxy_pass http://b; } }\n}\n";
    let (ok, stderr) = check(text);
    assert!(!ok, "tether -t accepted it:\n{stderr}");
    assert_mentions(
        &stderr,
        &["\"least_conn\"", "\"ip_hash\"", "t.conf:3:5", "t.conf:5:5"],
    );
    // The same method twice is a duplicate, not a choice between two.
    let text = text.replace("least_conn", "ip_hash");
    let (ok, stderr) = check(&text);
    assert!(!ok, "tether -t accepted it:\n{stderr}");
    assert_mentions(
        &stderr,
        &["\"ip_hash\" directive is duplicate", "t.conf:5:5"],
    );
}

#[test]
fn directives_of_nginx_machinery_get_a_notice_and_unsupported_ones_an_error() {
    let text = "load_module modules/ngx_stream_module.so;\npcre_jit on;\n\
                worker_rlimit_nofile 4096;\nevents {}\nhttp {\n  \
                proxy_temp_path /var/cache/nginx/proxy_temp;\n  \
                client_body_temp_path /tmp/body 1 2;\n  fastcgi_temp_path /tmp/f;\n  \
                uwsgi_temp_path /tmp/u;\n  scgi_temp_path /tmp/s;\n  \
                client_header_buffer_size 1k;\n  connection_pool_size 512;\n  \
                keepalive_disable msie6;\n  proxy_buffer_size 8k;\n  \
                server { listen 127.0.0.1:8080; location / { return 200; } }\n}\n";
    let (ok, stderr) = check(text);
    assert!(ok, "tether -t refused it:\n{stderr}");
    for (name, line) in [
        ("load_module", 1),
        ("pcre_jit", 2),
        ("proxy_temp_path", 6),
        ("client_body_temp_path", 7),
        ("fastcgi_temp_path", 8),
        ("uwsgi_temp_path", 9),
        ("scgi_temp_path", 10),
        ("client_header_buffer_size", 11),
        ("connection_pool_size", 12),
        ("keepalive_disable", 13),
        ("proxy_buffer_size", 14),
    ] {
        let notice = stderr
            .lines()
            .find(|l| l.contains(&format!("\"{name}\" has no effect")))
            .unwrap_or_else(|| panic!("no notice for {name}:\n{stderr}"));
        assert!(notice.contains("[notice]"), "{notice}");
        assert!(notice.contains(&format!("t.conf:{line}:")), "{notice}");
    }
    // worker_rlimit_nofile is honoured, so it gets no "no effect" notice.
    assert!(
        !stderr.contains("\"worker_rlimit_nofile\" has no effect"),
        "{stderr}"
    );

    for (directive, context) in [
        ("proxy_cache_path /tmp/c keys_zone=c:1m;", "http"),
        ("ssi on;", "location"),
        ("sub_filter a b;", "location"),
        ("auth_request /auth;", "location"),
        ("mirror /m;", "location"),
        ("proxy_cache_use_stale error;", "location"),
        ("proxy_cache_lock on;", "location"),
        ("add_before_body /b;", "location"),
        ("secure_link $arg_s;", "location"),
        ("js_import x.js;", "http"),
        ("perl_modules lib;", "http"),
        ("njs_enable on;", "http"),
    ] {
        let text = match context {
            "http" => format!("http {{ {directive} }}"),
            _ => format!(
                "http {{ server {{ listen 127.0.0.1:8080; location / {{ {directive} return 200; }} }} }}"
            ),
        };
        let name = directive.split_whitespace().next().unwrap();
        let (ok, stderr) = check(&text);
        assert!(!ok, "{name} accepted:\n{stderr}");
        if name == "njs_enable" {
            // Not an nginx directive at all: unknown, not "unsupported".
            assert_mentions(&stderr, &["unknown directive \"njs_enable\""]);
        } else {
            assert_mentions(
                &stderr,
                &[&format!("\"{name}\""), "not supported by tether"],
            );
        }
    }
}

#[test]
fn worker_rlimit_nofile_raises_the_limit_above_the_hard_one_when_allowed() {
    // Raising a hard limit takes CAP_SYS_RESOURCE (root outside a container that drops it);
    // without it tether must say so and run on the limit it has.
    let shell_limits = "ulimit -Sn 256 && ulimit -Hn 512";
    let privileged = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell_limits} && ulimit -Hn 4000"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run sh")
        .success();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("t.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_rlimit_nofile 4000;\nhttp {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}"
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{shell_limits} && exec {} -c {}",
            env!("CARGO_BIN_EXE_tether"),
            conf.display()
        ))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tether");
    let limits = format!("/proc/{}/limits", child.id());
    // Serving means the limit is set: it is applied before the listeners are bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tether did not start");
        }
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
    if privileged {
        // As nginx: soft and hard become the value.
        assert_eq!((fields[3], fields[4]), ("4000", "4000"), "{line}");
    } else {
        assert_eq!((fields[3], fields[4]), ("512", "512"), "{line}");
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert_mentions(&stderr, &["worker_rlimit_nofile", "cannot raise"]);
    }
}

#[test]
fn a_missing_default_config_names_both_places_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("-t")
        .current_dir(dir.path())
        .output()
        .expect("run tether");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    if Path::new("/etc/tether/tether.conf").exists() {
        return;
    }
    assert_mentions(&stderr, &["/etc/tether/tether.conf"]);
}
