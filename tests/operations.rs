//! The `tether` binary as an operator meets it: `-t` reporting every kind of error in one pass
//! and a notice for each directive that has no effect, `worker_rlimit_nofile`, the default
//! config path, `tether demo --listen`, the systemd unit and privilege dropping.

mod command;

use std::path::Path;
use std::process::Command;

use command::check_named;

fn check(text: &str) -> (bool, String) {
    check_named(text, "t.conf")
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
    until_serving(&mut child, port);
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

/// A free loopback port (bound and released: good enough for a child to bind next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Waits (bounded) until something accepts on `port`, killing `child` and failing if not.
fn until_serving(child: &mut std::process::Child, port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("tether did not start serving on {port}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One HTTP/1.1 GET over a fresh connection: the whole answer as text.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A field of /proc/PID/status, e.g. "Uid".
fn status_field(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line[field.len() + 1..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn user_drops_root_after_binding() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("user: not root, nothing to drop; skipped");
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("t.conf");
    // A name for the user (looked up), a number for the group (Debian's nobody has no group
    // of its own name).
    std::fs::write(
        &conf,
        format!(
            "user nobody 65534;\nhttp {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"up\\n\"; }} }} }}"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["-c", conf.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tether");
    until_serving(&mut child, port);
    // It serves as nobody: the answer comes after the drop, which happens before the
    // listeners are used — so ask, then look.
    let answer = get(port, "/");
    let (uid, gid, groups) = (
        status_field(child.id(), "Uid"),
        status_field(child.id(), "Gid"),
        status_field(child.id(), "Groups"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(uid, "65534 65534 65534 65534");
    assert_eq!(gid, "65534 65534 65534 65534");
    assert!(
        !groups.split(' ').any(|g| g == "0"),
        "still in root's group: {groups}"
    );
}

#[test]
fn systemd_is_told_when_tether_is_ready_and_when_it_stops() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("t.conf");
    std::fs::write(
        &conf,
        format!("http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}"),
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["-c", conf.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tether");
    let mut buffer = [0; 256];
    let received = socket.recv(&mut buffer);
    let ready = received.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    // READY means serving: the listener accepts at once.
    let serving = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let stopping = socket
        .recv(&mut buffer)
        .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("a READY message within 15 s");
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", child.id())),
        "{ready}"
    );
    assert!(serving, "READY came before the listener accepted");
    assert_eq!(stopping.expect("a STOPPING message"), "STOPPING=1\n");
}

#[test]
fn the_demo_listens_where_it_is_told() {
    // The demo's app servers have fixed ports; another demo running here would hold them.
    if (9101..=9103).any(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_err()) {
        eprintln!("demo --listen: the demo's app ports 9101-9103 are taken; skipped");
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        // Run from elsewhere than the source tree: the built-in demo config is used.
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tether demo");
    until_serving(&mut child, port);
    let answer = get(port, "/whoami");
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(["a\n", "b\n", "c\n"].contains(&body), "{answer}");
}

#[test]
fn the_systemd_unit_is_valid_and_its_commands_are_real() {
    let unit = std::fs::read_to_string("conf/tether.service").expect("conf/tether.service");
    for line in [
        "Type=notify",
        "ExecReload=",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(line), "the unit has no {line}");
    }
    let binary = env!("CARGO_BIN_EXE_tether");
    let conf = Path::new("conf/tether.conf").canonicalize().unwrap();
    // Every command the unit runs, with this build's binary and the shipped config: the flags
    // must be tether's (a typo would fail the unit at start or reload).
    for line in unit.lines().filter(|l| l.starts_with("Exec")) {
        let (key, command) = line.split_once('=').unwrap();
        let args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|a| a.replace("/etc/tether/tether.conf", conf.to_str().unwrap()))
            .collect();
        // ExecStart would serve until stopped: its flags are checked against --help only.
        if key == "ExecStart" {
            let help = Command::new(binary).arg("--help").output().unwrap();
            let help = String::from_utf8_lossy(&help.stdout).into_owned();
            let mut flags = args.iter().filter(|a| a.starts_with('-'));
            assert!(flags.all(|a| help.contains(a.as_str())), "{line}");
            continue;
        }
        let out = Command::new(binary).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match key {
            "ExecStartPre" => assert!(out.status.success(), "{line}: {stderr}"),
            // Nothing runs here to reload: the answer must be about the pid file, not the flags.
            "ExecReload" => assert!(stderr.contains("pid file"), "{line}: {stderr}"),
            other => panic!("unexpected {other} in the unit"),
        }
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the unit's syntax is not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tether.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tether", binary)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify says what it ignores on stderr and still exits 0.
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tether.service"))
        .collect();
    assert!(out.status.success() && about_ours.is_empty(), "{stderr}");
}
