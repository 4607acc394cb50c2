//! The status pages: `status;` (JSON, or Prometheus's text format) and `stub_status;`
//! (nginx's text, so existing scrapers keep working).
//!
//! A page is one [`Report`] read from the live counters — the peers' atomics that the balancer
//! itself uses, the session zones' (`zones.rs`), and the process's and listeners' from
//! [`Telemetry`] — then written out by `json.rs`, `prometheus.rs` or [`stub`]. Nothing is kept
//! for the page's sake: reading it costs the request path nothing.
//!
//! Which format `status;` answers in: `?format=json` or `?format=prometheus` if the query says;
//! else Prometheus when `Accept` names `text/plain` or `application/openmetrics-text` (what
//! Prometheus sends), else JSON (browsers, curl).
//!
//! Names no hyper type: the proxy turns a [`Reply`] into a response.

mod json;
mod prometheus;
mod zones;

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::StatusPage;
use crate::drain::Progress;
use crate::peer::{HistogramReading, Peer, Transport};
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use crate::upstream::{MemberSpec, Retired, ServerState};
pub use zones::{SyncReport, ZoneReport};

/// A status page, ready to send.
#[derive(Debug)]
pub struct Reply {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The page.
    pub body: String,
}

/// How `status;` writes its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON document.
    Json,
    /// Prometheus's text exposition format 0.0.4.
    Prometheus,
}

impl Format {
    /// The format a request asks for: its query's `format=` first, then its `Accept` header.
    pub fn asked(query: Option<&str>, accept: Option<&[u8]>) -> Format {
        let named = query
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("format="));
        match named {
            Some("prometheus") => return Format::Prometheus,
            Some("json") => return Format::Json,
            _ => {}
        }
        let accept = accept.unwrap_or_default();
        let names = |wanted: &[u8]| accept.windows(wanted.len()).any(|w| w == wanted);
        if names(b"text/plain") || names(b"application/openmetrics-text") {
            Format::Prometheus
        } else {
            Format::Json
        }
    }
}

/// Answers a status location.
pub fn answer(
    page: StatusPage,
    format: Format,
    snapshot: &Snapshot,
    telemetry: &Telemetry,
) -> Reply {
    let report = Report::read(snapshot, telemetry);
    match (page, format) {
        (StatusPage::Stub, _) => Reply {
            content_type: "text/plain",
            body: stub(&report),
        },
        (StatusPage::Full, Format::Json) => Reply {
            content_type: "application/json",
            body: json::write(&report),
        },
        (StatusPage::Full, Format::Prometheus) => Reply {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: prometheus::write(&report),
        },
    }
}

/// nginx's `stub_status` text, byte for byte in its layout (the spaces before each line end
/// are nginx's). Active = open connections and tunnels (nginx counts an upgraded connection as
/// active; an HTTP/2 WebSocket stream is counted with its connection too). Writing = requests
/// in progress: exchanges open on upstream servers, plus this one; Waiting = the other active
/// connections; Reading is always 0 (tether does not tell a connection reading its request
/// head from an idle one: both count as Waiting).
pub fn stub(report: &Report) -> String {
    let in_progress: u64 = report
        .upstreams
        .iter()
        .flat_map(|group| &group.servers)
        .map(|server| server.active)
        .sum();
    let writing = in_progress + 1;
    let active = (report.connections + report.tunnels).max(1);
    let waiting = active.saturating_sub(writing);
    let accepted: u64 = report.listeners.iter().map(|l| l.accepted).sum();
    format!(
        "Active connections: {active} \nserver accepts handled requests\n {accepted} {accepted} {} \nReading: 0 Writing: {writing} Waiting: {waiting} \n",
        report.requests
    )
}

/// Every number a page shows, read at one moment.
#[derive(Debug)]
pub struct Report {
    /// The snapshot's generation (1 for the first config).
    pub generation: u64,
    /// Since start.
    pub uptime: Duration,
    /// Seconds since the Unix epoch at start.
    pub started_unix: f64,
    /// Reloads applied since start.
    pub reloads_applied: u64,
    /// Reloads that failed since start.
    pub reloads_failed: u64,
    /// Why the last failed reload failed.
    pub last_reload_error: Option<String>,
    /// Open file descriptors (None where /proc is not there).
    pub open_fds: Option<u64>,
    /// The open-file limit.
    pub fd_limit: u64,
    /// Open client connections still speaking HTTP.
    pub connections: u64,
    /// Open tunnels (upgraded connections, HTTP/2 WebSocket streams).
    pub tunnels: u64,
    /// Client requests since start.
    pub requests: u64,
    /// Access log lines dropped since start because a file's writer had fallen behind.
    pub access_log_dropped: u64,
    /// Each listen address served since start.
    pub listeners: Vec<ListenerReport>,
    /// Each upstream group of the config in force, by name.
    pub upstreams: Vec<GroupReport>,
    /// Each `sticky learn` zone of the config in force, by name.
    pub zones: Vec<ZoneReport>,
}

/// One listen address.
#[derive(Debug)]
pub struct ListenerReport {
    /// The `listen` address.
    pub listen: SocketAddr,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open.
    pub active: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes failed.
    pub tls_failures: u64,
}

/// One upstream group.
#[derive(Debug)]
pub struct GroupReport {
    /// Its name.
    pub name: String,
    /// Its servers, primaries first, in config order.
    pub servers: Vec<ServerReport>,
}

/// One upstream server.
#[derive(Debug)]
pub struct ServerReport {
    /// The address as written.
    pub address: String,
    /// `backup`.
    pub backup: bool,
    /// Its state now.
    pub state: ServerState,
    /// `weight=`.
    pub weight: u32,
    /// `max_conns=` (0: unlimited).
    pub max_conns: u32,
    /// Requests and tunnels in flight.
    pub active: u64,
    /// Of those, the long-lived ones by transport, in [`Transport::ALL`]'s order.
    pub tunnels: [u64; 3],
    /// Requests sent.
    pub requests: u64,
    /// Answers relayed, by class (index 0 is 1xx).
    pub responses: [u64; 5],
    /// Failed attempts (connect errors, resets, timeouts, retried statuses).
    pub failures: u64,
    /// Connections that could not be opened.
    pub connect_errors: u64,
    /// Times passive health took it out.
    pub passive_downs: u64,
    /// The last active health check: passed, and when (seconds since the Unix epoch).
    pub last_check: Option<(bool, f64)>,
    /// Requests its sticky cookie or route sent here.
    pub sticky_hits: u64,
    /// New sessions pinned here (the group is sticky and the method chose this server).
    pub sticky_new: u64,
    /// Sessions whose pin named no usable server, pinned here anew.
    pub sticky_repinned: u64,
    /// Requests the balancing method sent here (new pins and re-pins included).
    pub balancer_picks: u64,
    /// Exchange times.
    pub request_time: HistogramReading,
    /// Its drain (`drain_timeout`), while one runs: streams left, closed, time to go.
    pub drain: Option<Progress>,
    /// A reload removed it: it is listed while its drain runs.
    pub removed: bool,
}

impl Report {
    /// Reads every counter now.
    pub fn read(snapshot: &Snapshot, telemetry: &Telemetry) -> Report {
        let (reloads_applied, reloads_failed) = telemetry.reloads();
        let started_unix = telemetry.started_unix();
        let mut upstreams: Vec<GroupReport> = snapshot
            .upstreams()
            .map(|group| GroupReport {
                name: group.name.to_string(),
                servers: (group.members().iter())
                    .map(|member| {
                        let state = member.state(group.health_check.is_some());
                        let sticky = group.is_sticky();
                        server_report(&member.peer, &member.spec, state, sticky, started_unix)
                    })
                    .collect(),
            })
            .collect();
        for retired in telemetry.retired() {
            add_retired(&mut upstreams, retired, started_unix);
        }
        upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        let listeners = telemetry
            .listeners()
            .into_iter()
            .map(|(listen, stats)| ListenerReport {
                listen,
                accepted: stats.accepted(),
                active: stats.active(),
                tls_handshakes: stats.tls_handshakes(),
                tls_failures: stats.tls_failures(),
            })
            .collect();
        Report {
            generation: snapshot.generation,
            uptime: telemetry.uptime(),
            started_unix,
            reloads_applied,
            reloads_failed,
            last_reload_error: telemetry.last_reload_error(),
            open_fds: open_fds(),
            fd_limit: crate::process::open_file_limit(),
            connections: telemetry.connections(),
            tunnels: telemetry.tunnels(),
            requests: telemetry.requests(),
            access_log_dropped: crate::telemetry::access_log::dropped_lines(),
            listeners,
            upstreams,
            zones: zones::read(snapshot),
        }
    }
}

/// One server's numbers, read from its peer's atomics, with `spec` its parameters and `state`
/// as its group sees it.
fn server_report(
    peer: &Peer,
    spec: &MemberSpec,
    state: ServerState,
    sticky: bool,
    started_unix: f64,
) -> ServerReport {
    let counters = &peer.state;
    let traffic = counters.traffic();
    let by_balancer = counters.picked_by_balancer();
    let repinned = counters.repinned();
    ServerReport {
        address: peer.key.address.to_string(),
        backup: spec.backup,
        state,
        weight: spec.weight,
        max_conns: spec.max_conns,
        active: counters.active(),
        tunnels: Transport::ALL.map(|t| traffic.open(t)),
        requests: counters.requests(),
        responses: traffic.responses(),
        failures: counters.failures(),
        connect_errors: traffic.connect_errors(),
        passive_downs: traffic.passive_downs(),
        last_check: traffic.last_check().map(|check| {
            // Both clocks count from (about) the process's start.
            (check.passed, started_unix + check.at_ms as f64 / 1000.0)
        }),
        sticky_hits: counters.picked_by_sticky(),
        sticky_new: if sticky {
            by_balancer.saturating_sub(repinned)
        } else {
            0
        },
        sticky_repinned: repinned,
        balancer_picks: by_balancer,
        request_time: traffic.durations(),
        drain: peer.drain_progress(),
        removed: false,
    }
}

/// Lists a server a reload removed under the group it was in (the group too, if the reload
/// removed it), while its drain runs: until its deadline, or while streams are left to close.
fn add_retired(upstreams: &mut Vec<GroupReport>, retired: Retired, started_unix: f64) {
    let Retired { peer, place } = retired;
    let mut server = server_report(
        &peer,
        &place.spec,
        ServerState::Draining,
        place.sticky,
        started_unix,
    );
    let running =
        (server.drain.as_ref()).is_some_and(|drain| drain.left > 0 || !drain.finish_in.is_zero());
    if !running {
        return;
    }
    server.removed = true;
    match upstreams.iter_mut().find(|group| group.name == place.group) {
        Some(group) => group.servers.push(server),
        None => upstreams.push(GroupReport {
            name: place.group,
            servers: vec![server],
        }),
    }
}

/// Open file descriptors: the entries of /proc/self/fd, less the one reading it.
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_format_before_accept_does() {
        let prometheus_accept: &[u8] =
            b"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let browser: &[u8] = b"text/html,application/xhtml+xml,*/*;q=0.8";
        assert_eq!(Format::asked(None, None), Format::Json);
        assert_eq!(Format::asked(None, Some(browser)), Format::Json);
        assert_eq!(
            Format::asked(None, Some(prometheus_accept)),
            Format::Prometheus
        );
        assert_eq!(
            Format::asked(Some("a=1&format=prometheus"), Some(browser)),
            Format::Prometheus
        );
        assert_eq!(
            Format::asked(Some("format=json"), Some(prometheus_accept)),
            Format::Json
        );
    }
}
