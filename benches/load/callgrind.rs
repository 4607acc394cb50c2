//! The callgrind mode (`--callgrind[=N]`): instructions per keep-alive request through each
//! proxy, the number issue 15's "≤ 0.8× nginx's instructions per request" is judged by (and
//! per WebSocket echo message).
//!
//! Each proxy runs under valgrind's callgrind, one process (nginx without its master), pinned
//! to the proxy core, in front of the same nginx backend as the table's rows; h2load sends N
//! keep-alive GETs over 64 connections, the proxy stops and callgrind's total is read. Then
//! again with 5N. The start-up, the config, the 64 connections opened and closed and the
//! first request are in both runs, so the difference over 4N is what one more request costs.
//! Callgrind counts user space only: kernel time (the same for every proxy on loopback) is
//! not in it.
//!
//! The `ws_echo` row counts the same way per message: the table's 100 WebSockets through the
//! proxy to the bench's echo backend, N (then 5N) 1 KiB echoes between them, the sockets
//! closed and the tunnels ended before the proxy stops.
//!
//! Knows the proxies only through `proxies.rs`; the clients through `clients.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backends::{self, Live};
use crate::clients::{get_head_within, h2load_h1, open_websockets, set_cookie};
use crate::machine::{self, Found};
use crate::options::Options;
use crate::proxies::{Callgrind, Kind, Launch, Ports, Proxy};
use crate::scenarios::{ECHO_CONNS, Row};
use crate::tls;

/// Connections the requests are spread over, as wrk's in the table's rows.
const CONNS: usize = 64;
/// The long run sends this many times the short run's requests.
const FACTOR: u64 = 5;
/// valgrind runs a proxy some 50 times slower: bounds that still end a stuck run.
const FIRST_ANSWER: Duration = Duration::from_secs(60);
const STOPPED: Duration = Duration::from_secs(120);

/// What one proxy cost on one row: the two runs' totals.
struct Counted {
    short: u64,
    long: u64,
}

impl Counted {
    /// Instructions one more request costs.
    fn per_request(&self, requests: u64) -> f64 {
        (self.long as f64 - self.short as f64) / ((FACTOR - 1) * requests) as f64
    }
}

/// Runs the mode: every selected row (get, ip_hash, sticky, learn) on every selected proxy; returns
/// the report (settings, machine, config, the table and the raw totals).
pub async fn run(options: Options, found: &Found) -> Result<String, String> {
    let mut wanted = vec![machine::NGINX, machine::H2LOAD, machine::VALGRIND];
    if options.proxies.contains(&Kind::Haproxy) {
        wanted.push(machine::HAPROXY);
    }
    if let Some(missing) = found.missing(&wanted) {
        return Err(missing);
    }
    let requests = options.callgrind_requests;
    if requests < CONNS as u64 {
        return Err(format!(
            "--callgrind={requests}: at least {CONNS}, one request per connection"
        ));
    }
    let valgrind = found
        .path(machine::VALGRIND)
        .cloned()
        .ok_or("valgrind is not installed")?;

    let dir = tempfile::Builder::new()
        .prefix("tether-callgrind-")
        .tempdir()
        .map_err(|e| format!("a temporary directory: {e}"))?;
    // The SSE upstream in the shared config is never used here; its port only has to be valid.
    let ws_listener = crate::bind().await?;
    let ports = Ports {
        http: [
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
        ],
        ws: crate::port_of(&ws_listener)?,
        sse: crate::free_port()?,
        listen: [
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
        ],
        tls: [
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
        ],
    };
    tls::write_certificates(dir.path())?;
    let _backend = backends::nginx_backend(dir.path(), ports.http).await?;
    let echoes = backends::ws_echo(ws_listener);
    let launch = crate::launch(&options, ports, dir.path().to_path_buf());
    let cert = tls::files(dir.path(), tls::KeyKind::EcdsaP256);

    let mut lines = Vec::new();
    let mut totals = Vec::new();
    for row in &options.rows {
        // The GET rows count requests; the echo row, messages.
        let (unit, about) = match row.callgrind_path() {
            Some(path) => ("request", format!("{}: keep-alive GET {path}", row.id())),
            None => (
                "message",
                format!("{}: 1 KiB WebSocket echo, per message", row.id()),
            ),
        };
        let mut cells = Vec::new();
        for kind in Kind::ALL {
            if !options.proxies.contains(&kind) {
                cells.push("-".to_string());
                continue;
            }
            if let Some(why) = row.not_applicable(kind) {
                cells.push(format!("n/a ({why})"));
                continue;
            }
            let out = |count: u64| {
                dir.path()
                    .join(format!("{}.{}.{count}", kind.name(), row.id()))
            };
            let tool = Tool {
                valgrind: &valgrind,
                launch: &launch,
                cert: &cert,
                echoes: &echoes,
            };
            let counted = Counted {
                short: tool.count(kind, *row, requests, out(requests)).await?,
                long: tool
                    .count(kind, *row, FACTOR * requests, out(FACTOR * requests))
                    .await?,
            };
            let per = counted.per_request(requests);
            eprintln!(
                "load: callgrind {} {}: {per:.0} instructions per {unit}",
                row.id(),
                kind.name()
            );
            totals.push(format!(
                "- {} {}: {} {unit}s {} instructions, {} {unit}s {}",
                row.id(),
                kind.name(),
                requests,
                counted.short,
                FACTOR * requests,
                counted.long
            ));
            cells.push(format!("{:.1}k", per / 1000.0));
        }
        lines.push((about, cells));
    }
    Ok(format!(
        "## Settings\n\n{}\n\n{}\n{}{}",
        summary(&options, requests),
        found.describe(&launch.tether),
        crate::configs(&launch, &cert),
        render(&lines, &totals)
    ))
}

/// What every measured run shares.
struct Tool<'a> {
    valgrind: &'a PathBuf,
    launch: &'a Launch,
    cert: &'a tls::CertFiles,
    /// The echo backend's open connections (a tunnel's upstream side).
    echoes: &'a Live,
}

impl Tool<'_> {
    /// Starts `kind` under callgrind, sends `requests` keep-alive GETs to `row`'s path (or,
    /// for the echo row, that many echoes), stops it and returns callgrind's total of
    /// instructions.
    async fn count(
        &self,
        kind: Kind,
        row: Row,
        requests: u64,
        out: PathBuf,
    ) -> Result<u64, String> {
        let callgrind = Callgrind {
            valgrind: self.valgrind.clone(),
            out: out.clone(),
        };
        let proxy = Proxy::start(kind, self.launch, self.cert, Some(&callgrind)).await?;
        let Some(path) = row.callgrind_path() else {
            return self.count_echoes(proxy, requests, &out).await;
        };
        // One request first (in both runs, so it cancels out): the proxy answers, and the
        // sticky and learn rows take their session's cookie from it.
        let first = row.session(kind).map_or(path, |(login, _)| login);
        let head = get_head_within(proxy.addr, first, FIRST_ANSWER).await?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "{} {path} answered {:?}",
                kind.name(),
                head.lines().next()
            ));
        }
        let mut headers = Vec::new();
        if let Some((_, name)) = row.session(kind) {
            let cookie =
                set_cookie(&head, name).ok_or_else(|| format!("no {name} cookie in:\n{head}"))?;
            headers.push(format!("Cookie: {cookie}"));
        }
        let url = format!("http://{}{path}", proxy.addr);
        let report = h2load_h1(&url, CONNS, requests, &headers).await?;
        if report.succeeded as u64 != requests {
            return Err(format!(
                "{}: {} of {requests} requests succeeded\n{}",
                kind.name(),
                report.succeeded,
                proxy.log_tail()
            ));
        }
        proxy.stop(STOPPED).await?;
        total(&out)
    }

    /// Sends `messages` echoes over the echo row's WebSockets through `proxy` (the first
    /// `messages % ECHO_CONNS` of them one more), closes them, waits until the backend saw
    /// every tunnel end, stops the proxy and returns callgrind's total.
    async fn count_echoes(&self, proxy: Proxy, messages: u64, out: &Path) -> Result<u64, String> {
        let mut open = open_websockets(proxy.addr, ECHO_CONNS, ECHO_CONNS, None).await?;
        let conns = ECHO_CONNS as u64;
        let echoed = futures_util::future::join_all(open.iter_mut().enumerate().map(
            |(index, ws)| async move {
                let share = messages / conns + u64::from((index as u64) < messages % conns);
                for _ in 0..share {
                    ws.echo_within(FIRST_ANSWER).await?;
                }
                Ok::<(), String>(())
            },
        ))
        .await;
        echoed.into_iter().collect::<Result<Vec<()>, String>>()?;
        drop(open);
        self.echoes.until_zero(STOPPED).await;
        if self.echoes.get() > 0 {
            return Err(format!("{} tunnels still open", self.echoes.get()));
        }
        proxy.stop(STOPPED).await?;
        total(out)
    }
}

/// callgrind's total instructions in `out` (its `summary:` line, or `totals:`).
fn total(out: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(out).map_err(|e| format!("read {}: {e}", out.display()))?;
    parse_total(&text).ok_or_else(|| format!("no total in {}", out.display()))
}

fn parse_total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn summary(options: &Options, requests: u64) -> String {
    let rows: Vec<&str> = options.rows.iter().map(|row| row.id()).collect();
    format!(
        "callgrind: rows {}; {requests} and {} keep-alive GETs over {CONNS} connections (h2load), \
         or WebSocket echoes over {ECHO_CONNS}, per proxy and row; access logs {}",
        rows.join(","),
        FACTOR * requests,
        if options.access_log {
            "on (nginx's combined format in every proxy)"
        } else {
            "off"
        },
    )
}

/// The table: a line per row, a column per proxy, tether over nginx; then the raw totals.
fn render(lines: &[(String, Vec<String>)], totals: &[String]) -> String {
    let mut out = String::from(
        "## Instructions per request (callgrind, user space)\n\n\
         | row | tether | nginx | HAProxy | tether / nginx |\n|---|---:|---:|---:|---:|\n",
    );
    for (about, cells) in lines {
        let number = |cell: &String| cell.strip_suffix('k')?.parse::<f64>().ok();
        let ratio = match (number(&cells[0]), number(&cells[1])) {
            (Some(tether), Some(nginx)) if nginx > 0.0 => format!("{:.2}×", tether / nginx),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "| {about} ↓ | {} | {ratio} |\n",
            cells.join(" | ")
        ));
    }
    out.push_str(&format!(
        "\nPer request (or message) = (total after {FACTOR}N − total after N) / {}N.\n\
         Totals:\n{}\n",
        FACTOR - 1,
        totals.join("\n")
    ));
    out
}

/// Checks the pure parts (run by `cargo test`); panics on the first that does not hold.
pub fn check() {
    let file = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 126375\n\nfn=main\n";
    assert_eq!(parse_total(file), Some(126_375));
    assert_eq!(parse_total("events: Ir\ntotals: 42\n"), Some(42));
    assert_eq!(parse_total("events: Ir\n"), None);
    let counted = Counted {
        short: 1_000_000 + 5_000 * 30_000,
        long: 1_000_000 + 25_000 * 30_000,
    };
    assert_eq!(counted.per_request(5_000), 30_000.0);
}
