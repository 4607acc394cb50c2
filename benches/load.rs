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
//! interleaved and rotated (tether nginx HAProxy, nginx HAProxy tether, ...); a cell is the
//! median of the runs. Proxy CPU is read from `/proc` over the measured window only; a proxy
//! whose core was ≥ 90 % busy was the bottleneck, anything less means the client core capped
//! the run.
//!
//! Every proxy also terminates TLS on a second address (HTTP/2 and HTTP/1.1 by ALPN) with the
//! same certificate, made at bench time: ECDSA P-256, or RSA 2048 in the RSA row.
//!
//! Flags (`cargo bench --bench load -- --help` lists them): `--rows`, `--runs`, `--secs`,
//! `--proxies`, `--access-log on|off` (on by default: every proxy logs each request in nginx's
//! `combined` format), `--ws-idle`, `--tether`, `--tether-log`, each with a `LOAD_*` variable
//! as its fallback; `--callgrind[=N]` counts instructions per request instead (callgrind.rs).
//! A bare `cargo bench` does not run this (`bench = false`); it installs nothing: a missing
//! tool is named with its `apt-get` line, and the rows and peers that do not need it run.
//! The configs, the settings and the machine (CPU, kernel, every version, the tether commit)
//! are printed with the table.
//!
//! Everything listens on 127.0.0.1; every child is in its own process group, killed when its
//! guard drops, on panic and Ctrl-C too.

#[path = "load/backends.rs"]
mod backends;
#[path = "load/callgrind.rs"]
mod callgrind;
#[path = "load/clients.rs"]
mod clients;
#[path = "load/machine.rs"]
mod machine;
#[path = "load/options.rs"]
mod options;
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

use machine::Found;
use options::{Command, Options};
use proxies::{CLIENT_CORE, Kind, Launch, Ports};
use scenarios::{Row, Settings};
use table::{Cell, Scenario};
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match options::parse(&args, |name| std::env::var(name).ok()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let (options, callgrind) = match command {
        Command::Help => {
            print!("{}", options::help());
            return;
        }
        // `cargo test` (and `--all-targets`) runs this binary without `--bench`: it must not
        // start minutes of load or spawn proxies. Like criterion in test mode, it checks what
        // it can check quickly and says how to run it.
        Command::Skip => {
            // A test runner asking for the list of tests (`--list`, as cargo-nextest does):
            // there are none to list.
            if args.iter().any(|arg| arg == "--list") {
                return;
            }
            options::check();
            callgrind::check();
            clients::check();
            println!("load: parsing checked; the load runs by `cargo bench --bench load`");
            return;
        }
        Command::Table(options) => (options, false),
        Command::Callgrind(options) => (options, true),
    };
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
    let found = Found::look();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        let work = async {
            if callgrind {
                callgrind::run(options, &found).await
            } else {
                bench(options, &found, files).await
            }
        };
        tokio::select! {
            outcome = work => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match outcome {
        Ok(report) => {
            println!("{report}");
            println!("(load bench took {:.0} s)", started.elapsed().as_secs_f64());
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    }
}

/// Checks the tools, starts the backends, runs every selected row and returns the report:
/// settings, machine, configs and the table.
async fn bench(options: Options, found: &Found, files: u64) -> Result<String, String> {
    // nginx is the HTTP backend: without it no row runs. The rest only narrows the table.
    if let Some(missing) = found.missing(&[machine::NGINX]) {
        return Err(missing);
    }
    let mut wanted = Vec::new();
    if options.proxies.contains(&Kind::Haproxy) {
        wanted.push(machine::HAPROXY);
    }
    for tool in [machine::WRK, machine::H2LOAD] {
        if options
            .rows
            .iter()
            .any(|row| row.tool() == Some(tool.binary))
        {
            wanted.push(tool);
        }
    }
    if let Some(missing) = found.missing(&wanted) {
        eprintln!(
            "load: {missing}
load: running what does not need them"
        );
    }
    let rows = options.rows.clone();
    let ws_idle = options.ws_idle;
    // Each idle WebSocket holds a client and a backend socket here; keep 200 for the rest.
    if (rows.contains(&Row::WsIdle) || rows.contains(&Row::WssIdle))
        && 2 * ws_idle as u64 + 200 > files
    {
        return Err(format!(
            "--ws-idle {ws_idle} needs {} descriptors; the limit is {files}",
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
    let proxies: Vec<Kind> = options
        .proxies
        .iter()
        .copied()
        .filter(|kind| *kind != Kind::Haproxy || found.has("haproxy"))
        .collect();
    let settings = Settings {
        proxies,
        secs: options.secs,
        runs: options.runs,
        ws_idle,
        ws_live: backends::ws_echo(ws_listener),
        sse_live: backends::sse(sse_listener),
        _http_backend: backends::nginx_backend(dir.path(), ports.http).await?,
        launch: launch(&options, ports, dir.path().to_path_buf()),
    };
    eprintln!("load: {}", summary(&options, &settings.proxies));

    let mut scenarios = Vec::new();
    for row in rows {
        scenarios.push(run_row(row, &settings, found).await);
    }
    let cert = tls::files(&settings.launch.dir, tls::KeyKind::EcdsaP256);
    Ok(format!(
        "## Settings

{}

{}
{}{}",
        summary(&options, &settings.proxies),
        found.describe(&settings.launch.tether),
        configs(&settings.launch, &cert),
        table::render(&scenarios)
    ))
}

/// How the proxies start, from the options: the tether binary is cargo's unless given.
fn launch(options: &Options, ports: Ports, dir: PathBuf) -> Launch {
    Launch {
        ports,
        dir,
        // A given binary (e.g. a wrapper under a profiler) instead of the one cargo built.
        tether: options
            .tether
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tether"))),
        tether_log: options.tether_log.clone(),
        access_log: options.access_log,
    }
}

/// One line of what this run does.
fn summary(options: &Options, proxies: &[Kind]) -> String {
    let rows: Vec<&str> = options.rows.iter().map(|row| row.id()).collect();
    let proxies: Vec<&str> = proxies.iter().map(|kind| kind.name()).collect();
    format!(
        "rows {}; {} run(s) of {} s per proxy and row, interleaved; proxies {}; access logs {}",
        rows.join(","),
        options.runs,
        options.secs,
        proxies.join(","),
        if options.access_log {
            "on (nginx's combined format in every proxy)"
        } else {
            "off"
        },
    )
}

/// Runs `row` `settings.runs` times on each proxy, interleaved; on none if the tool it needs
/// is not installed.
async fn run_row(row: Row, settings: &Settings, found: &Found) -> Scenario {
    let tool_missing = row.tool().filter(|tool| !found.has(tool));
    let mut cells: Vec<Cell> = Kind::ALL
        .iter()
        .map(|kind| match (row.not_applicable(*kind), tool_missing) {
            (Some(why), _) => Cell::NotApplicable(why),
            (None, Some("h2load")) => Cell::NotApplicable("h2load not installed"),
            (None, Some(_)) => Cell::NotApplicable("wrk not installed"),
            (None, None) if *kind == Kind::Haproxy && !found.has("haproxy") => {
                Cell::NotApplicable("not installed")
            }
            (None, None) => Cell::Measured(Vec::new()),
        })
        .collect();
    let mut background_pct: f64 = 0.0;
    for run in 1..=settings.runs {
        // Each run starts with the next proxy (tether nginx HAProxy, nginx HAProxy tether,
        // ...): whatever the previous row or run leaves behind, and the machine's slower
        // phases, fall on every proxy's first place in turn, not always on tether's.
        for place in 0..Kind::ALL.len() {
            let index = (place + run - 1) % Kind::ALL.len();
            let (kind, cell) = (&Kind::ALL[index], &mut cells[index]);
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

/// The configs every proxy runs, as Markdown (the ports are this run's; the RSA rows name the
/// `rsa-2048` files instead).
fn configs(launch: &Launch, cert: &tls::CertFiles) -> String {
    let ports = &launch.ports;
    format!(
        "## tether / nginx config (tether.conf = nginx.conf)\n\n```nginx\n{}```\n\n\
         ## haproxy.cfg\n\n```\n{}```\n\n\
         nginx and HAProxy listen on 127.0.0.1:{} and :{} (tether on :{}); the HTTP backend is \
         nginx (`return 200 \"ok\"`) on :{}, :{}, :{}, pinned to core {CLIENT_CORE} with the \
         clients.\n\n",
        proxies::nginx_syntax(ports, Kind::Tether, cert, launch.access_log),
        proxies::haproxy_cfg(ports, cert, launch.access_log),
        ports.listen[1],
        ports.listen[2],
        ports.listen[0],
        ports.http[0],
        ports.http[1],
        ports.http[2],
    )
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
