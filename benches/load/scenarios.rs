//! The rows of the table: what load each scenario puts through a proxy and what it measures.
//! One call of [`run_once`] starts a fresh proxy, runs one scenario once, and stops it.
//!
//! CPU is the proxy's whole process group over the measured window only; memory is resident
//! set size summed over that group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use crate::backends::Live;
use crate::clients::{SseClients, get_head, h2load, open_websockets, set_cookie, wrk};
use crate::procs::{Guard, busy_pct, core_ticks};
use crate::proxies::{CLIENT_CORE, Kind, Launch, PROXY_CORE, Proxy};
use crate::table::{Metric, Sample, Unit};
use crate::tls::{self, KeyKind};

/// A row of the table (some rows are several lines: one per metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    Get,
    GetClose,
    IpHash,
    Sticky,
    Learn,
    WsIdle,
    WsEcho,
    Sse,
    Reload,
    TlsFullEcdsa,
    TlsFullRsa,
    TlsResumed,
    HttpsGet,
    H2Get,
    WssIdle,
}

const fn metric(name: &'static str, unit: Unit, higher_is_better: bool) -> Metric {
    Metric {
        name,
        unit,
        higher_is_better,
    }
}

const RPS: Metric = metric("requests/s", Unit::PerSec, true);
const P50: Metric = metric("p50", Unit::Millis, false);
const P99: Metric = metric("p99", Unit::Millis, false);
const CPU_PER_REQUEST: Metric = metric("proxy CPU per request", Unit::Micros, false);
const RSS_PER_CONN: Metric = metric("proxy RSS per connection", Unit::Bytes, false);
const UPGRADE_RATE: Metric = metric("upgrades/s while opening", Unit::PerSec, true);
const MESSAGE_RATE: Metric = metric("messages/s (echo round trips)", Unit::PerSec, true);
const CPU_PER_MESSAGE: Metric = metric("proxy CPU per message", Unit::Micros, false);
const SSE_CPU: Metric = metric("proxy CPU", Unit::Percent, false);
const CPU_PER_EVENT: Metric = metric("proxy CPU per event", Unit::Micros, false);
const EVENT_RATE: Metric = metric("events delivered/s", Unit::PerSec, true);
// From the backend's write to the client's read, both in this process: the backend's own
// fan-out and the clients' reads are in it for every proxy alike; a proxy that holds events
// back (HAProxy without `http-no-delay`: ~200 ms) shows here, and its CPU then misses the
// sending, done later from a kernel timer.
const EVENT_DELAY: Metric = metric("event delay p50", Unit::Millis, false);
const SOCKET_ERRORS: Metric = metric("wrk socket errors", Unit::Count, false);
const NON_2XX: Metric = metric("non-2xx", Unit::Count, false);
const DROPPED: Metric = metric("dropped WebSockets", Unit::Count, false);
const RSS_AFTER: Metric = metric("proxy RSS after", Unit::Bytes, false);
const HANDSHAKES: Metric = metric("full handshakes/s", Unit::PerSec, true);
const CPU_PER_HANDSHAKE: Metric = metric("proxy CPU per handshake", Unit::Micros, false);
const RESUMED: Metric = metric("resumed handshakes/s", Unit::PerSec, true);
const RESUMED_SHARE: Metric = metric("share of handshakes resumed", Unit::Percent, true);

/// wrk connections for the HTTP rows.
const CONNS: usize = 64;
/// WebSockets in the echo row.
pub const ECHO_CONNS: usize = 100;
/// SSE streams in the fan-out row.
const SSE_STREAMS: usize = 1000;
/// WebSockets held open during the reload row, and how many reloads it makes.
const RELOAD_WEBSOCKETS: usize = 200;
const RELOADS: u32 = 20;
/// Clients in the handshake rows, each a new connection (and one GET) after another.
const HANDSHAKE_CONNS: usize = 32;
/// HTTP/2 connections and streams in flight on each in the h2 row (64 requests in flight,
/// like wrk's 64 connections).
const H2_CONNS: usize = 16;
const H2_STREAMS: usize = 4;

impl Row {
    /// In table order.
    pub const ALL: [Row; 15] = [
        Row::Get,
        Row::GetClose,
        Row::IpHash,
        Row::Sticky,
        Row::Learn,
        Row::WsIdle,
        Row::WsEcho,
        Row::Sse,
        Row::Reload,
        Row::TlsFullEcdsa,
        Row::TlsFullRsa,
        Row::TlsResumed,
        Row::HttpsGet,
        Row::H2Get,
        Row::WssIdle,
    ];

    /// The name `--rows` selects it by.
    pub fn id(self) -> &'static str {
        match self {
            Row::Get => "get",
            Row::GetClose => "get_close",
            Row::IpHash => "ip_hash",
            Row::Sticky => "sticky",
            Row::Learn => "learn",
            Row::WsIdle => "ws_idle",
            Row::WsEcho => "ws_echo",
            Row::Sse => "sse",
            Row::Reload => "reload",
            Row::TlsFullEcdsa => "tls_full_ecdsa",
            Row::TlsFullRsa => "tls_full_rsa",
            Row::TlsResumed => "tls_resumed",
            Row::HttpsGet => "https_get",
            Row::H2Get => "h2_get",
            Row::WssIdle => "wss_idle",
        }
    }

    /// One line for `--help`.
    pub fn about(self) -> &'static str {
        match self {
            Row::Get => "small GET, keep-alive (wrk)",
            Row::GetClose => "small GET, a new connection per request (wrk)",
            Row::IpHash => "ip_hash over 3 backends, keep-alive (wrk)",
            Row::Sticky => "sticky cookie over 3 backends, keep-alive (wrk; not nginx OSS)",
            Row::Learn => {
                "sticky learn over 3 backends, the session from a Set-Cookie (wrk; not nginx OSS)"
            }
            Row::WsIdle => "idle WebSockets: proxy memory per connection",
            Row::WsEcho => "WebSocket echo, 1 KiB messages",
            Row::Sse => "SSE fan-out, 1,000 streams",
            Row::Reload => "reloads under wrk load with WebSockets open (wrk)",
            Row::TlsFullEcdsa => "TLS 1.3 full handshakes, ECDSA P-256",
            Row::TlsFullRsa => "TLS 1.3 full handshakes, RSA 2048",
            Row::TlsResumed => "TLS 1.3 resumed handshakes",
            Row::HttpsGet => "HTTPS small GET, HTTP/1.1 keep-alive (wrk)",
            Row::H2Get => "HTTPS small GET, HTTP/2 (h2load)",
            Row::WssIdle => "idle wss:// WebSockets: proxy memory per connection",
        }
    }

    /// The load generator this row runs, if it runs a packaged one.
    pub fn tool(self) -> Option<&'static str> {
        match self {
            Row::Get
            | Row::GetClose
            | Row::IpHash
            | Row::Sticky
            | Row::Learn
            | Row::Reload
            | Row::HttpsGet => Some("wrk"),
            Row::H2Get => Some("h2load"),
            _ => None,
        }
    }

    /// The path the callgrind mode sends this row's keep-alive GETs to, for the rows it
    /// measures.
    pub fn callgrind_path(self) -> Option<&'static str> {
        match self {
            Row::Get => Some("/"),
            Row::IpHash => Some("/ip_hash"),
            Row::Sticky => Some("/sticky"),
            Row::Learn => Some("/learn"),
            _ => None,
        }
    }

    /// Whether the callgrind mode measures this row: the keep-alive GET rows per request, the
    /// WebSocket echo per message.
    pub fn in_callgrind(self) -> bool {
        self.callgrind_path().is_some() || self == Row::WsEcho
    }

    /// For the rows whose requests carry a session: the path whose answer sets the session's
    /// cookie, and the cookie's name with `kind`.
    pub fn session(self, kind: Kind) -> Option<(&'static str, &'static str)> {
        match self {
            Row::Sticky if kind == Kind::Haproxy => Some(("/sticky", "SRV")),
            Row::Sticky => Some(("/sticky", "srv")),
            // The backends' own cookie, which tether and HAProxy learn (stick-table).
            Row::Learn => Some(("/learn/login", "sid")),
            _ => None,
        }
    }

    /// The row label's first part.
    pub fn title(self, settings: &Settings) -> String {
        match self {
            Row::Get => format!("small GET, keep-alive, {CONNS} conns"),
            Row::GetClose => format!("small GET, new connection per request, {CONNS} conns"),
            Row::IpHash => format!("ip_hash over 3 backends, keep-alive, {CONNS} conns"),
            Row::Sticky => format!("sticky cookie over 3 backends, keep-alive, {CONNS} conns"),
            Row::Learn => format!("sticky learn over 3 backends, keep-alive, {CONNS} conns"),
            Row::WsIdle => format!("{} idle WebSockets", settings.ws_idle),
            Row::WsEcho => format!("WebSocket echo, {ECHO_CONNS} conns, 1 KiB messages"),
            Row::Sse => format!("SSE fan-out, {SSE_STREAMS} streams, 1 event/s each"),
            Row::Reload => format!(
                "{RELOADS} reloads during wrk ({CONNS} conns) + {RELOAD_WEBSOCKETS} WebSockets"
            ),
            Row::TlsFullEcdsa | Row::TlsFullRsa => format!(
                "TLS 1.3 {}, new connection + 1 GET, no resumption, {HANDSHAKE_CONNS} clients",
                self.key().label()
            ),
            Row::TlsResumed => format!(
                "TLS 1.3 {}, new connection + 1 GET, resuming, {HANDSHAKE_CONNS} clients",
                self.key().label()
            ),
            Row::HttpsGet => format!("HTTPS small GET, HTTP/1.1 keep-alive, {CONNS} conns"),
            Row::H2Get => {
                format!("HTTPS small GET, HTTP/2, {H2_CONNS} conns × {H2_STREAMS} streams")
            }
            Row::WssIdle => format!("{} idle wss:// WebSockets", settings.ws_idle),
        }
    }

    /// What it measures, in the order of [`Sample::values`].
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Row::Get | Row::GetClose => &[RPS, P50, P99, CPU_PER_REQUEST],
            Row::IpHash | Row::Sticky | Row::Learn => &[RPS, P99, CPU_PER_REQUEST],
            Row::WsIdle => &[RSS_PER_CONN, UPGRADE_RATE],
            Row::WsEcho => &[MESSAGE_RATE, CPU_PER_MESSAGE],
            Row::Sse => &[SSE_CPU, CPU_PER_EVENT, EVENT_RATE, EVENT_DELAY],
            Row::Reload => &[SOCKET_ERRORS, NON_2XX, DROPPED, RSS_AFTER],
            Row::TlsFullEcdsa | Row::TlsFullRsa => &[HANDSHAKES, CPU_PER_HANDSHAKE],
            Row::TlsResumed => &[RESUMED, CPU_PER_HANDSHAKE, RESUMED_SHARE],
            Row::HttpsGet => &[RPS, P50, P99, CPU_PER_REQUEST],
            Row::H2Get => &[RPS, CPU_PER_REQUEST],
            Row::WssIdle => &[RSS_PER_CONN, UPGRADE_RATE],
        }
    }

    /// The certificate the proxies present in this row (every row runs with a TLS address
    /// configured; only the TLS rows use it).
    pub fn key(self) -> KeyKind {
        match self {
            Row::TlsFullRsa => KeyKind::Rsa2048,
            _ => KeyKind::EcdsaP256,
        }
    }

    /// Why `kind` cannot run this row, if it cannot.
    pub fn not_applicable(self, kind: Kind) -> Option<&'static str> {
        let sticky = matches!(self, Row::Sticky | Row::Learn);
        (sticky && kind == Kind::Nginx).then_some("OSS has no sticky")
    }
}

/// What every run needs: where things are and how long to run.
pub struct Settings {
    /// Seconds per measured run (`--secs`).
    pub secs: u64,
    /// Runs per proxy and row, interleaved (`--runs`).
    pub runs: usize,
    /// WebSockets in the idle row (`--ws-idle`).
    pub ws_idle: usize,
    /// The proxies to run (`--proxies`, less those not installed).
    pub proxies: Vec<Kind>,
    /// How the proxies start; its folder holds the certificates (`tls::write_certificates`).
    pub launch: Launch,
    /// Open connections on the WebSocket echo backend.
    pub ws_live: Live,
    /// Open streams on the SSE backend.
    pub sse_live: Live,
    /// The nginx HTTP backend, killed with the settings.
    pub _http_backend: Guard,
}

/// Starts `kind`, runs `row` once against it, stops it. The caller waits until the previous
/// run's connections are gone.
pub async fn run_once(row: Row, kind: Kind, settings: &Settings) -> Result<Sample, String> {
    let cert = tls::files(&settings.launch.dir, row.key());
    let proxy = Proxy::start(kind, &settings.launch, &cert, None).await?;
    let head = get_head(proxy.addr, "/").await?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET / answered {:?}", head.lines().next()));
    }
    let result = match row {
        Row::Get => http_load(&proxy, settings, "/", &[]).await,
        Row::GetClose => http_load(&proxy, settings, "/", &["Connection: close"]).await,
        Row::IpHash => http_load(&proxy, settings, "/ip_hash", &[])
            .await
            .map(drop_p50),
        Row::Sticky | Row::Learn => sticky(&proxy, row, settings).await.map(drop_p50),
        Row::WsIdle => ws_idle(&proxy, settings, None).await,
        Row::WssIdle => ws_idle(&proxy, settings, Some(tls::client_config(true))).await,
        Row::TlsFullEcdsa | Row::TlsFullRsa => handshake_load(&proxy, settings, false).await,
        Row::TlsResumed => handshake_load(&proxy, settings, true).await,
        Row::HttpsGet => {
            let url = format!("https://{}/", proxy.tls_addr);
            url_load(&proxy, settings, &url, &[]).await
        }
        Row::H2Get => h2_load(&proxy, settings).await,
        Row::WsEcho => ws_echo(&proxy, settings).await,
        Row::Sse => sse(&proxy, settings).await,
        Row::Reload => reload(&proxy, settings).await,
    };
    result.map_err(|e| format!("{e}\n{}", proxy.log_tail()))
}

/// A measured window: the proxy's CPU and both cores' busy time from its start.
struct Window {
    cpu_ns: u64,
    cores: Vec<(u64, u64)>,
    started: Instant,
}

/// What a window measured.
struct Used {
    /// Proxy CPU, nanoseconds.
    cpu_ns: f64,
    /// Proxy CPU, % of one core.
    cpu_pct: f64,
    /// Busy % of the proxy core and the client core.
    cores: [f64; 2],
}

impl Window {
    fn open(proxy: &Proxy) -> Window {
        Window {
            cpu_ns: proxy.usage().cpu_ns,
            cores: core_ticks(),
            started: Instant::now(),
        }
    }

    fn close(&self, proxy: &Proxy) -> Used {
        let cpu_ns = proxy.usage().cpu_ns.saturating_sub(self.cpu_ns) as f64;
        let wall = self.started.elapsed().as_nanos() as f64;
        let now = core_ticks();
        Used {
            cpu_ns,
            cpu_pct: 100.0 * cpu_ns / wall,
            cores: [PROXY_CORE, CLIENT_CORE].map(|core| busy_pct(&self.cores, &now, core)),
        }
    }
}

impl Sample {
    fn loaded(values: Vec<f64>, used: &Used) -> Sample {
        Sample {
            values,
            cpu_pct: Some(used.cpu_pct),
            cores: Some(used.cores),
        }
    }

    fn unloaded(values: Vec<f64>) -> Sample {
        Sample {
            values,
            cpu_pct: None,
            cores: None,
        }
    }
}

/// wrk against `path`: requests/s, p50, p99, proxy CPU µs per request.
async fn http_load(
    proxy: &Proxy,
    settings: &Settings,
    path: &str,
    headers: &[&str],
) -> Result<Sample, String> {
    let url = format!("http://{}{path}", proxy.addr);
    url_load(proxy, settings, &url, headers).await
}

/// wrk against `url` (`http://` or `https://`): requests/s, p50, p99, proxy CPU µs per
/// request.
async fn url_load(
    proxy: &Proxy,
    settings: &Settings,
    url: &str,
    headers: &[&str],
) -> Result<Sample, String> {
    let window = Window::open(proxy);
    let report = wrk(url, CONNS, settings.secs, headers).await?;
    let used = window.close(proxy);
    if report.requests == 0.0 || report.non_2xx > report.requests / 100.0 {
        return Err(format!(
            "{} requests, {} non-2xx, {} socket errors",
            report.requests, report.non_2xx, report.socket_errors
        ));
    }
    let values = vec![
        report.rps,
        report.p50_ms,
        report.p99_ms,
        used.cpu_ns / 1000.0 / report.requests,
    ];
    Ok(Sample::loaded(values, &used))
}

/// The ip_hash, sticky and learn rows show no p50 (it tells nothing the GET row does not).
fn drop_p50(mut sample: Sample) -> Sample {
    sample.values.remove(1);
    sample
}

/// wrk with the cookie a first request was given: every request is routed by its cookie (the
/// sticky row: the proxy's own; the learn row: the backend's, learned by the proxy).
async fn sticky(proxy: &Proxy, row: Row, settings: &Settings) -> Result<Sample, String> {
    let (Some((login, name)), Some(path)) = (row.session(proxy.kind), row.callgrind_path()) else {
        return Err(format!("{} carries no session", row.id()));
    };
    let head = get_head(proxy.addr, login).await?;
    let cookie = set_cookie(&head, name).ok_or_else(|| format!("no {name} cookie in:\n{head}"))?;
    let header = format!("Cookie: {cookie}");
    http_load(proxy, settings, path, &[&header]).await
}

/// h2load over TLS (ALPN h2): requests/s, proxy CPU µs per request.
async fn h2_load(proxy: &Proxy, settings: &Settings) -> Result<Sample, String> {
    let url = format!("https://{}/", proxy.tls_addr);
    let window = Window::open(proxy);
    let report = h2load(&url, H2_CONNS, H2_STREAMS, settings.secs).await?;
    let used = window.close(proxy);
    if report.succeeded == 0.0 || report.failed > report.succeeded / 100.0 {
        return Err(format!(
            "{} requests succeeded, {} failed",
            report.succeeded, report.failed
        ));
    }
    let values = vec![report.rps, used.cpu_ns / 1000.0 / report.succeeded];
    Ok(Sample::loaded(values, &used))
}

/// `HANDSHAKE_CONNS` clients opening TLS connections one after another for `secs`, with
/// session resumption or without: handshakes/s (resumed ones only, when resuming), proxy CPU
/// µs per handshake (with its GET), and with resumption the share that resumed (each client's
/// first handshake is a full one).
async fn handshake_load(
    proxy: &Proxy,
    settings: &Settings,
    resume: bool,
) -> Result<Sample, String> {
    let length = Duration::from_secs(settings.secs);
    let window = Window::open(proxy);
    let counts = tls::handshakes(proxy.tls_addr, resume, HANDSHAKE_CONNS, length).await;
    let used = window.close(proxy);
    let elapsed = window.started.elapsed().as_secs_f64();
    if counts.done == 0 || counts.failed > counts.done / 100 {
        return Err(format!(
            "{} handshakes done, {} failed",
            counts.done, counts.failed
        ));
    }
    let cpu_per = used.cpu_ns / 1000.0 / counts.done as f64;
    let values = if resume {
        vec![
            counts.resumed as f64 / elapsed,
            cpu_per,
            100.0 * counts.resumed as f64 / counts.done as f64,
        ]
    } else {
        vec![counts.done as f64 / elapsed, cpu_per]
    };
    Ok(Sample::loaded(values, &used))
}

/// Opens `ws_idle` WebSockets (`wss://` on the TLS address with `tls`) and reads what the
/// proxy's memory grew by, per connection.
async fn ws_idle(
    proxy: &Proxy,
    settings: &Settings,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Sample, String> {
    let (addr, tls) = match &tls {
        Some(config) => (proxy.tls_addr, Some(config)),
        None => (proxy.addr, None),
    };
    // One upgrade first, so lazily built state (pools, tables) is not charged to the count.
    let mut first = open_websockets(addr, 1, 1, tls).await?;
    first[0].echo_within(Duration::from_secs(2)).await?;
    drop(first);
    let before = proxy.usage().rss_bytes;
    let count = settings.ws_idle;
    let started = Instant::now();
    // Bounded: a proxy that stops accepting upgrades fails its row instead of hanging the run.
    let opening = open_websockets(addr, count, 250, tls);
    let open = tokio::time::timeout(Duration::from_secs(120), opening)
        .await
        .map_err(|_| format!("{count} WebSockets not open within 120 s"))??;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    // Every tunnel is in place once the backend holds them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while settings.ws_live.get() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = settled_rss(proxy).await;
    drop(open);
    let per_connection = (after as f64 - before as f64) / count as f64;
    Ok(Sample::unloaded(vec![per_connection, rate]))
}

/// The proxy's RSS once it stops falling (bounded): the opening burst's buffers are freed at
/// once, but an allocator hands their pages back on its own schedule (tether trims glibc's heap
/// once a second, HAProxy trims too), and an idle connection costs what is left after that.
async fn settled_rss(proxy: &Proxy) -> u64 {
    // Longer than tether's trim period, so every window contains a trim.
    const WINDOW: Duration = Duration::from_millis(1500);
    let deadline = Instant::now() + Duration::from_secs(9);
    let mut last = proxy.usage().rss_bytes;
    let mut steady_windows = 0;
    loop {
        tokio::time::sleep(WINDOW).await;
        let now = proxy.usage().rss_bytes;
        // Settled: two windows in a row less than 1 % lower than the one before.
        steady_windows = if now + now / 100 >= last {
            steady_windows + 1
        } else {
            0
        };
        if steady_windows == 2 || Instant::now() >= deadline {
            return now.min(last);
        }
        last = now;
    }
}

/// `ECHO_CONNS` WebSockets each echoing 1 KiB messages back to back for `secs`.
async fn ws_echo(proxy: &Proxy, settings: &Settings) -> Result<Sample, String> {
    let mut open = open_websockets(proxy.addr, ECHO_CONNS, ECHO_CONNS, None).await?;
    let length = Duration::from_secs(settings.secs);
    let window = Window::open(proxy);
    let started = window.started;
    let counts = futures_util::future::join_all(open.iter_mut().map(|ws| async move {
        let mut count = 0u64;
        while started.elapsed() < length {
            ws.echo_within(Duration::from_secs(5)).await?;
            count += 1;
        }
        Ok::<u64, String>(count)
    }))
    .await;
    let used = window.close(proxy);
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = counts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum();
    let values = vec![total as f64 / elapsed, used.cpu_ns / 1000.0 / total as f64];
    Ok(Sample::loaded(values, &used))
}

/// `SSE_STREAMS` streams open through the proxy; its CPU over `secs` of one event a second.
async fn sse(proxy: &Proxy, settings: &Settings) -> Result<Sample, String> {
    let clients = SseClients::open(proxy.addr, SSE_STREAMS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients.connected() < SSE_STREAMS {
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {SSE_STREAMS} streams open",
                clients.connected()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_before = clients.events();
    // Delays of events before the window are dropped.
    clients.take_median_delay_ms();
    let window = Window::open(proxy);
    tokio::time::sleep(Duration::from_secs(settings.secs)).await;
    let used = window.close(proxy);
    let events = (clients.events() - events_before) as f64;
    let Some(delay) = clients.take_median_delay_ms().filter(|_| events > 0.0) else {
        return Err("no event arrived".into());
    };
    let rate = events / window.started.elapsed().as_secs_f64();
    let values = vec![used.cpu_pct, used.cpu_ns / 1000.0 / events, rate, delay];
    Ok(Sample::loaded(values, &used))
}

/// wrk for twice `secs` with `RELOAD_WEBSOCKETS` WebSockets open, `RELOADS` reloads spread
/// over it; then every WebSocket must still echo.
async fn reload(proxy: &Proxy, settings: &Settings) -> Result<Sample, String> {
    let mut held = open_websockets(proxy.addr, RELOAD_WEBSOCKETS, RELOAD_WEBSOCKETS, None).await?;
    let secs = settings.secs * 2;
    let url = format!("http://{}/", proxy.addr);
    let gap = Duration::from_secs(secs) / (RELOADS + 1);
    let reloads = async {
        for _ in 0..RELOADS {
            tokio::time::sleep(gap).await;
            proxy.reload().await?;
        }
        Ok::<(), String>(())
    };
    let (report, reloads) = tokio::join!(wrk(&url, CONNS, secs, &[]), reloads);
    let report = report?;
    reloads?;
    let mut dropped = 0;
    for ws in &mut held {
        if ws.echo_within(Duration::from_secs(2)).await.is_err() {
            dropped += 1;
        }
    }
    Ok(Sample::unloaded(vec![
        report.socket_errors,
        report.non_2xx,
        f64::from(dropped),
        proxy.usage().rss_bytes as f64,
    ]))
}
