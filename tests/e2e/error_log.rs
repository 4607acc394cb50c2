//! The error log, seen from outside: the `tether` binary run with `error_log` files (a global
//! tracing subscriber cannot be captured in-process), real requests to a dead farm, a flapping
//! server behind a gate, a flood of connections; then the files are read as an operator would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::free_addr;
use crate::harness::process::{Process, signal, tether_binary, write_atomically};
use crate::harness::procfs::catches;
use crate::harness::raw::exchange;
use crate::harness::session::eventually;

mod conditions;

const LIMIT: Duration = Duration::from_secs(10);

/// nginx's line head: local time, `[level]`, pid#tid.
const HEAD: &str = r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(debug|info|warn|error)\] \d+#\d+: ";

/// `tether -p PREFIX -c CONF` run as a child, its stderr not a terminal, `TETHER_LOG` unset so
/// the config's levels rule; relative `error_log` paths land under `PREFIX/`.
struct Logged {
    process: Process,
    addr: SocketAddr,
    conf: PathBuf,
    prefix: PathBuf,
}

impl Logged {
    async fn start(conf: &str) -> Logged {
        Logged::start_with(conf, Command::new(tether_binary())).await
    }

    /// Starts it with `command` (the binary, perhaps with limits set) and waits until it
    /// serves and catches SIGHUP and SIGUSR1.
    async fn start_with(conf: &str, mut command: Command) -> Logged {
        let dir = tempfile::tempdir().expect("a folder for tether");
        let prefix = dir.path().join("prefix");
        std::fs::create_dir_all(prefix.join("logs")).expect("the logs folder");
        let addr = free_addr();
        let conf_path = dir.path().join("tether.conf");
        write_atomically(&conf_path, &conf.replace("{listen}", &addr.to_string()));
        command
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .env_remove("TETHER_LOG")
            .env_remove("NO_COLOR");
        let mut process = Process::start(command, dir);
        process.until_accepting(addr).await;
        let pid = process.pid();
        eventually(
            LIMIT,
            "tether's SIGHUP and SIGUSR1 handlers",
            || async move { catches(pid, &[libc::SIGHUP, libc::SIGUSR1]) },
        )
        .await;
        Logged {
            process,
            addr,
            conf: conf_path,
            prefix,
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.prefix.join(name)).unwrap_or_default()
    }

    /// Waits until `name` (under the prefix) has `count` lines containing `needle`.
    async fn lines_with(&self, name: &str, needle: &str, count: usize) -> Vec<String> {
        let what = format!("{count} line(s) with {needle:?} in {name}");
        let found = || lines_with(&self.read(name), needle);
        eventually(LIMIT, &what, || {
            let enough = found().len() >= count;
            async move { enough }
        })
        .await;
        found()
    }
}

fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// `GET path` with `Host: host` on a fresh connection; the status.
async fn get(addr: SocketAddr, host: &str, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let responses = exchange(addr, request.as_bytes(), LIMIT).await;
    responses.first().map_or(0, |response| response.status)
}

fn assert_nginx_shaped(lines: &[String]) {
    let head = regex::Regex::new(HEAD).unwrap();
    for line in lines {
        assert!(head.is_match(line), "not nginx-shaped: {line:?}");
    }
}

#[tokio::test]
async fn stderr_that_is_no_terminal_gets_nginx_lines_without_colours() {
    let tether =
        Logged::start("http { server { listen {listen}; location / { return 200 ok; } } }").await;
    let what = "the listening line on stderr";
    eventually(LIMIT, what, || {
        let seen = tether.process.stderr().contains("listening");
        async move { seen }
    })
    .await;
    let stderr = tether.process.stderr();
    assert!(
        !stderr.contains('\x1b'),
        "colour codes on stderr: {stderr:?}"
    );
    let listening = lines_with(&stderr, "listening");
    assert_nginx_shaped(&listening);
    assert!(listening[0].contains("[info] "), "{listening:?}");
}

#[tokio::test]
async fn a_request_to_a_dead_farm_is_logged_with_its_context_at_the_levels_asked() {
    let (dead_a, dead_b) = (free_addr(), free_addr());
    let tether = Logged::start(&format!(
        "error_log logs/error.log error;
         error_log logs/warn.log warn;
         http {{
           upstream farm {{ server {dead_a} max_fails=1; server {dead_b} max_fails=1; }}
           server {{ listen {{listen}}; server_name example.com;
             location / {{ proxy_pass http://farm; }} }}
         }}"
    ))
    .await;
    // Both servers refuse: each try is an error, each server is then out for fail_timeout.
    assert_eq!(get(tether.addr, "example.com", "/hub?x=1").await, 502);
    let refused = tether
        .lines_with(
            "logs/error.log",
            "connect() failed (111: Connection refused)",
            2,
        )
        .await;
    assert_nginx_shaped(&refused);
    let mut tried = Vec::new();
    for line in &refused {
        let context = ", client: 127.0.0.1, server: example.com, request: \"GET /hub?x=1 \
                       HTTP/1.1\", upstream: \"http://";
        assert!(line.contains("[error] "), "{line}");
        assert!(
            line.contains(&format!("while connecting to upstream{context}")),
            "{line}"
        );
        assert!(
            line.ends_with("/hub?x=1\", host: \"example.com\", group: farm"),
            "{line}"
        );
        tried.extend(
            [dead_a, dead_b]
                .into_iter()
                .filter(|dead| line.contains(&dead.to_string())),
        );
    }
    tried.sort();
    let mut both = vec![dead_a, dead_b];
    both.sort();
    assert_eq!(tried, both, "one line per server tried: {refused:?}");

    // Both are out now: nginx's "no live upstreams", naming the group.
    assert_eq!(get(tether.addr, "example.com", "/hub").await, 502);
    let none = tether
        .lines_with("logs/error.log", "no live upstreams", 1)
        .await;
    assert!(
        none[0].contains("[error] ",)
            && none[0].contains(
                "no live upstreams while connecting to upstream, client: 127.0.0.1, server: \
             example.com, request: \"GET /hub HTTP/1.1\", upstream: \"http://farm/hub\", host: \
             \"example.com\", group: farm"
            ),
        "{none:?}"
    );

    // The warnings go to the warn log only; neither file carries a control byte.
    let disabled = tether
        .lines_with("logs/warn.log", "upstream server temporarily disabled", 2)
        .await;
    assert!(
        disabled.iter().all(|line| line.contains("[warn] ")),
        "{disabled:?}"
    );
    assert_nginx_shaped(&disabled);
    let errors = tether.read("logs/error.log");
    assert!(
        !errors.contains("[warn]") && !errors.contains("[info]"),
        "{errors}"
    );
    assert!(tether.read("logs/warn.log").contains("no live upstreams"));
    for name in ["logs/error.log", "logs/warn.log"] {
        let text = tether.read(name);
        assert!(!text.bytes().any(|b| b == 0x1b), "ESC in {name}: {text:?}");
    }
}

#[tokio::test]
async fn sigusr1_reopens_the_error_log_after_logrotate_renamed_it() {
    let dead = free_addr();
    let tether = Logged::start(&format!(
        "error_log logs/error.log info;
         http {{ server {{ listen {{listen}}; server_name site;
           location / {{ proxy_pass http://{dead}; }} }} }}"
    ))
    .await;
    assert_eq!(get(tether.addr, "site", "/before").await, 502);
    tether.lines_with("logs/error.log", "GET /before", 1).await;
    let (log, rotated) = (
        tether.prefix.join("logs/error.log"),
        tether.prefix.join("logs/error.log.1"),
    );
    std::fs::rename(&log, &rotated).expect("rotate");
    signal(tether.process.pid(), libc::SIGUSR1);
    tether
        .lines_with("logs/error.log", "log files reopened", 1)
        .await;
    assert_eq!(get(tether.addr, "site", "/after").await, 502);
    tether.lines_with("logs/error.log", "GET /after", 1).await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("GET /before") && !old.contains("GET /after"),
        "{old}"
    );
}

#[tokio::test]
async fn a_reload_moves_the_error_log_and_changes_its_level() {
    let conf = |log: &str, level: &str| {
        format!(
            "error_log {log} {level};
             http {{ server {{ listen {{listen}}; location / {{ return 200 ok; }} }} }}"
        )
    };
    // A header line too long: answered 400 and logged at info, as nginx does.
    let too_long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "x".repeat(9000)
    );
    let rejected = |addr| {
        let request = too_long.clone();
        async move { exchange(addr, request.as_bytes(), LIMIT).await[0].status }
    };
    let tether = Logged::start(&conf("logs/first.log", "warn")).await;
    assert_eq!(rejected(tether.addr).await, 400);
    let reload = |text: String| {
        write_atomically(
            &tether.conf,
            &text.replace("{listen}", &tether.addr.to_string()),
        );
        signal(tether.process.pid(), libc::SIGHUP);
    };
    reload(conf("logs/second.log", "info"));
    tether
        .lines_with("logs/second.log", "reload applied", 1)
        .await;
    // The same event, filtered out before, is written now.
    assert_eq!(rejected(tether.addr).await, 400);
    tether
        .lines_with("logs/second.log", "too long header line", 1)
        .await;
    let first = tether.read("logs/first.log");
    assert!(
        !first.contains("[info]") && !first.contains("too long"),
        "{first}"
    );

    // A file that cannot be opened fails the reload, and the log stays where it was.
    reload(conf("missing/folder/third.log", "info"));
    let failed = tether
        .lines_with("logs/second.log", "reload failed", 1)
        .await;
    assert!(
        failed[0].contains("third.log\" failed (2: No such file or directory)"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_server_with_its_own_error_log_gets_its_requests_events_there() {
    let dead = free_addr();
    let tether = Logged::start(&format!(
        "http {{
           error_log logs/http.log warn;
           server {{ listen {{listen}}; server_name site.example; error_log logs/site.log error;
             location / {{ proxy_pass http://{dead}; }} }}
           server {{ listen {{listen}}; server_name other.example;
             location / {{ proxy_pass http://{dead}; }} }}
         }}"
    ))
    .await;
    assert_eq!(get(tether.addr, "site.example", "/mine").await, 502);
    assert_eq!(get(tether.addr, "other.example", "/theirs").await, 502);
    let mine = tether
        .lines_with("logs/site.log", "connect() failed", 1)
        .await;
    assert!(
        mine[0].contains("server: site.example, request: \"GET /mine"),
        "{mine:?}"
    );
    let theirs = tether
        .lines_with("logs/http.log", "connect() failed", 1)
        .await;
    assert!(theirs[0].contains("server: other.example"), "{theirs:?}");
    assert!(!tether.read("logs/http.log").contains("site.example"));
    assert!(!tether.read("logs/site.log").contains("other.example"));
    // Process events stay with the main level: stderr, without an error_log there.
    assert!(tether.process.stderr().contains("listening"));
}

#[tokio::test]
async fn an_error_log_that_cannot_be_opened_stops_tether_at_start() {
    let dir = tempfile::tempdir().expect("a folder");
    let conf = dir.path().join("tether.conf");
    std::fs::write(&conf, "error_log missing/error.log;").expect("write the config");
    let output = Command::new(tether_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run tether");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let missing = dir.path().join("missing/error.log");
    let want = format!(
        "[emerg] open() \"{}\" failed (2: No such file or directory)",
        missing.display()
    );
    assert!(stderr.contains(&want), "{want} in {stderr}");
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_logged_as_nginx_logs_a_read_timeout() {
    // Accepts, reads, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let tether = Logged::start(&format!(
        "error_log logs/error.log error;
         http {{ server {{ listen {{listen}}; server_name slow.example;
           location / {{ proxy_read_timeout 200ms; proxy_pass http://{silent_addr}; }} }} }}"
    ))
    .await;
    assert_eq!(get(tether.addr, "slow.example", "/wait").await, 504);
    let line = tether
        .lines_with("logs/error.log", "upstream timed out", 1)
        .await
        .remove(0);
    assert!(
        line.contains(&format!("[error] {}#", tether.process.pid())),
        "{line}"
    );
    let want = format!(
        "upstream timed out (110: Connection timed out) while reading response header from \
         upstream, client: 127.0.0.1, server: slow.example, request: \"GET /wait HTTP/1.1\", \
         upstream: \"http://{silent_addr}/wait\", host: \"slow.example\""
    );
    assert!(line.contains(&want), "{line}");
    held.abort();
}
