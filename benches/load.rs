//! The load benchmark: tether against nginx and HAProxy on this machine, same backends, same
//! load, one Markdown table. Run: `cargo bench --bench load`.
//!
//! ```text
//! core 0: the proxy under test (tether | nginx | HAProxy), one worker each
//! core 1: this process (WebSocket echo + SSE backends, WebSocket/SSE clients, the TLS
//!         handshake client), nginx as the HTTP backend, wrk, h2load
//! ```
//!
//! For each row, each proxy is started fresh from its config, loaded, measured and killed,
//! interleaved (tether nginx HAProxy, tether nginx HAProxy, ...); a cell is the median of the
//! runs. Proxy CPU is read from `/proc` over the measured window only; a proxy whose core was
//! ≥ 90 % busy was the bottleneck, anything less means the client core capped the run.
//!
//! Every proxy also terminates TLS on a second address (HTTP/2 and HTTP/1.1 by ALPN) with the
//! same certificate, made at bench time: ECDSA P-256, or RSA 2048 in the RSA row.
//!
//! Environment: `LOAD_ROWS=get,get_close,ip_hash,sticky,ws_idle,ws_echo,sse,reload,
//! tls_full_ecdsa,tls_full_rsa,tls_resumed,https_get,h2_get,wss_idle` (default all), `LOAD_SECS` (seconds per run, default 5; the reload row runs twice that),
//! `LOAD_RUNS` (default 3), `LOAD_WS_IDLE` (idle WebSockets, default 9,000; each takes two
//! descriptors here and two in the proxy, under a hard limit of 20,000), `LOAD_PROXIES`
//! (default `tether,nginx,haproxy`), `LOAD_TETHER_LOG` (tether's log level, default `warn`), `LOAD_ACCESS_LOG=on` (every proxy logs
//! each request in nginx's `combined` format; default off), `LOAD_TETHER` (the tether binary to run, e.g. a wrapper
//! that starts it under a profiler; default the one cargo built).
//!
//! Everything listens on 127.0.0.1; every child is in its own process group, killed when its
//! guard drops, on panic and Ctrl-C too.

#[path = "load/backends.rs"]
mod backends;
#[path = "load/clients.rs"]
mod clients;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/proxies.rs"]
mod proxies;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/table.rs"]
mod table;
#[path = "load/tls.rs"]
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use proxies::{CLIENT_CORE, Kind, Ports};
use scenarios::{Row, Settings};
use table::{Cell, Scenario};
use tokio::net::TcpListener;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs this
    // binary without it, and must not start minutes of load, install packages or spawn
    // proxies: like criterion in test mode, say what to run and succeed.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("load: skipped (not run by `cargo bench`); run `cargo bench --bench load`");
        return;
    }
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("load: only {cores} core: the proxy and the clients will share it");
    } else if let Err(e) = procs::pin_thread(CLIENT_CORE) {
        // Before the runtime starts, so every thread and child inherits the pin.
        eprintln!("load: cannot pin the bench to core {CLIENT_CORE}: {e}");
    }
    // Children (the proxies under test) inherit it.
    let files = tether::process::raise_soft_open_files();
    if let Err(e) = procs::ensure_packages(&[
        ("nginx", "nginx"),
        ("haproxy", "haproxy"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
    ]) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = bench(files) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match outcome {
        Ok(table) => {
            if proxies::access_log_on() {
                println!("(access logs on: nginx's combined format in every proxy)");
            }
            println!("{table}");
            println!("(load bench took {:.0} s)", started.elapsed().as_secs_f64());
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    }
}

/// Reads the `LOAD_*` variables, starts the backends, prints the configs, runs every selected
/// row and returns the table.
async fn bench(files: u64) -> Result<String, String> {
    let number = |name: &str, default: u64| -> Result<u64, String> {
        std::env::var(name).map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|_| format!("{name}={v:?} is not a number"))
        })
    };
    let rows = match std::env::var("LOAD_ROWS") {
        Ok(list) => list
            .split(',')
            .map(|id| {
                Row::ALL
                    .into_iter()
                    .find(|row| row.id() == id.trim())
                    .ok_or_else(|| {
                        let ids: Vec<&str> = Row::ALL.iter().map(|r| r.id()).collect();
                        format!("unknown row {id:?} in LOAD_ROWS (rows: {})", ids.join(","))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => Row::ALL.to_vec(),
    };
    let ws_idle = number("LOAD_WS_IDLE", 9000)? as usize;
    // Each idle WebSocket holds a client and a backend socket here; keep 200 for the rest.
    if (rows.contains(&Row::WsIdle) || rows.contains(&Row::WssIdle))
        && 2 * ws_idle as u64 + 200 > files
    {
        return Err(format!(
            "LOAD_WS_IDLE={ws_idle} needs {} descriptors; the limit is {files}",
            2 * ws_idle + 200
        ));
    }

    let dir = tempfile::Builder::new()
        .prefix("tether-load-")
        .tempdir()
        .map_err(|e| format!("a temporary directory: {e}"))?;
    let ws_listener = bind().await?;
    let sse_listener = bind().await?;
    let ports = Ports {
        http: [free_port()?, free_port()?, free_port()?],
        ws: port_of(&ws_listener)?,
        sse: port_of(&sse_listener)?,
        listen: [free_port()?, free_port()?, free_port()?],
        tls: [free_port()?, free_port()?, free_port()?],
    };
    tls::write_certificates(dir.path())?;
    let proxies = match std::env::var("LOAD_PROXIES") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                Kind::ALL
                    .into_iter()
                    .find(|kind| kind.name().eq_ignore_ascii_case(name.trim()))
                    .ok_or_else(|| format!("unknown proxy {name:?} in LOAD_PROXIES"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => Kind::ALL.to_vec(),
    };
    let settings = Settings {
        proxies,
        secs: number("LOAD_SECS", 5)?.max(1),
        runs: number("LOAD_RUNS", 3)?.max(1) as usize,
        ws_idle,
        ws_live: backends::ws_echo(ws_listener),
        sse_live: backends::sse(sse_listener),
        _http_backend: backends::nginx_backend(dir.path(), ports.http).await?,
        ports,
        dir: dir.path().to_path_buf(),
        // A given binary (e.g. a wrapper under a profiler) instead of the one cargo built.
        tether: std::env::var_os("LOAD_TETHER").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_tether")),
            PathBuf::from,
        ),
    };

    print_configs(
        &settings.ports,
        &tls::files(&settings.dir, tls::KeyKind::EcdsaP256),
    );
    let mut scenarios = Vec::new();
    for row in rows {
        scenarios.push(run_row(row, &settings).await);
    }
    Ok(table::render(&scenarios))
}

/// Runs `row` `settings.runs` times on each proxy, interleaved.
async fn run_row(row: Row, settings: &Settings) -> Scenario {
    let mut cells: Vec<Cell> = Kind::ALL
        .iter()
        .map(|kind| match row.not_applicable(*kind) {
            Some(why) => Cell::NotApplicable(why),
            None => Cell::Measured(Vec::new()),
        })
        .collect();
    let mut background_pct: f64 = 0.0;
    for run in 1..=settings.runs {
        for (kind, cell) in Kind::ALL.iter().zip(cells.iter_mut()) {
            let Cell::Measured(samples) = cell else {
                continue;
            };
            if !settings.proxies.contains(kind) {
                continue;
            }
            // The last run's connections close first (they hold descriptors here, and closing
            // thousands is work that is no one else's).
            let quiet = std::time::Duration::from_secs(10);
            settings.ws_live.until_zero(quiet).await;
            settings.sse_live.until_zero(quiet).await;
            background_pct = background_pct.max(background_load().await);
            let outcome = scenarios::run_once(row, *kind, settings).await;
            match outcome {
                Ok(sample) => {
                    let values: Vec<String> = row
                        .metrics()
                        .iter()
                        .zip(&sample.values)
                        .map(|(m, v)| table::format_value(*v, m.unit))
                        .collect();
                    let cpu = sample
                        .cpu_pct
                        .map_or(String::new(), |c| format!(", CPU {c:.0} %"));
                    eprintln!(
                        "load: {} run {run} {}: {}{cpu}",
                        row.id(),
                        kind.name(),
                        values.join(", ")
                    );
                    samples.push(sample);
                }
                Err(reason) => {
                    eprintln!(
                        "load: {} run {run} {}: FAILED {reason}",
                        row.id(),
                        kind.name()
                    );
                    *cell = Cell::Failed(reason);
                }
            }
        }
    }
    Scenario {
        title: row.title(settings),
        metrics: row.metrics(),
        cells,
        background_pct,
    }
}

/// How busy the busier core is over 200 ms while none of our load runs (between runs).
async fn background_load() -> f64 {
    let before = procs::core_ticks();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = procs::core_ticks();
    (0..after.len())
        .map(|core| procs::busy_pct(&before, &after, core))
        .fold(0.0, f64::max)
}

/// Prints the configs every proxy runs (the ports are this run's; the RSA rows name the
/// `rsa-2048` files instead).
fn print_configs(ports: &Ports, cert: &tls::CertFiles) {
    println!("## tether / nginx config (tether.conf = nginx.conf)\n");
    println!(
        "```nginx\n{}```\n",
        proxies::nginx_syntax(ports, Kind::Tether, cert)
    );
    println!("## haproxy.cfg\n");
    println!("```\n{}```\n", proxies::haproxy_cfg(ports, cert));
    println!(
        "nginx and HAProxy listen on 127.0.0.1:{} and :{} (tether on :{}); the HTTP backend is \
         nginx (`return 200 \"ok\"`) on :{}, :{}, :{}, pinned to core {CLIENT_CORE} with the \
         clients.\n",
        ports.listen[1],
        ports.listen[2],
        ports.listen[0],
        ports.http[0],
        ports.http[1],
        ports.http[2],
    );
}

/// A listener on a free loopback port with a deep accept queue: the bench opens hundreds of
/// connections at once, and a default queue (128 here) overflowing would cost the dropped
/// SYNs a one-second retransmit, charged to whichever proxy is in front.
async fn bind() -> Result<TcpListener, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    socket.listen(4096).map_err(|e| format!("listen: {e}"))
}

fn port_of(listener: &TcpListener) -> Result<u16, String> {
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A free port for a child to listen on: bound, read, released. Another process could take
/// it in between; on a bench machine that is rare enough to accept.
fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("bind a probe port: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
