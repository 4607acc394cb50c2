//! The status report in Prometheus's text exposition format (0.0.4): one family per metric,
//! each with its `# HELP` and `# TYPE`, counters ending in `_total`, request time a histogram.
//! The names are stable; README.md lists them. `sticky learn`'s zones and syncs are written by
//! `zones.rs`. Imports only its parent.

mod zones;

use std::fmt::Write;

use super::{Report, ServerReport};
use crate::drain::schedule::Progress;
use crate::peer::{DURATION_BOUNDS, Transport};
use crate::upstream::ServerState;

/// Every state a server can be in, as the `state` label of `tether_upstream_server_state`.
const STATES: [&str; 5] = ["up", "down", "draining", "checking", "slow-start"];

/// The report in the text format.
pub fn write(report: &Report) -> String {
    let mut out = Exposition(String::with_capacity(4096));
    process(&mut out, report);
    listeners(&mut out, report);
    servers(&mut out, report);
    zones::write(&mut out, report);
    out.0
}

/// A metric family's name, type and help, and how to read its value from one report row.
type Family<R> = (&'static str, &'static str, &'static str, fn(&R) -> u64);

/// A counter's name and help, and how to read it from one report row.
type Counter<R> = (&'static str, &'static str, fn(&R) -> u64);

/// The page being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(self.0, "{name}{braces} {value}");
    }

    /// A family with one sample per upstream server.
    fn per_server(
        &mut self,
        report: &Report,
        (name, kind, help): (&str, &str, &str),
        value: impl Fn(&ServerReport) -> u64,
    ) {
        self.family(name, kind, help);
        for (group, server) in each_server(report) {
            self.sample(name, &server_labels(group, server), value(server));
        }
    }
}

fn process(out: &mut Exposition, r: &Report) {
    out.family(
        "tether_config_generation",
        "gauge",
        "Generation of the config in force (1 for the first).",
    );
    out.sample("tether_config_generation", "", r.generation);
    out.family(
        "tether_reloads_total",
        "counter",
        "Config reloads since start, by result.",
    );
    out.sample(
        "tether_reloads_total",
        "result=\"applied\"",
        r.reloads_applied,
    );
    out.sample(
        "tether_reloads_total",
        "result=\"failed\"",
        r.reloads_failed,
    );
    out.family(
        "tether_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    );
    out.sample(
        "tether_start_time_seconds",
        "",
        format!("{:.3}", r.started_unix),
    );
    out.family(
        "tether_uptime_seconds",
        "gauge",
        "Seconds since the process started.",
    );
    out.sample(
        "tether_uptime_seconds",
        "",
        format!("{:.3}", r.uptime.as_secs_f64()),
    );
    if let Some(open) = r.open_fds {
        out.family("tether_open_fds", "gauge", "Open file descriptors.");
        out.sample("tether_open_fds", "", open);
    }
    out.family("tether_max_fds", "gauge", "The open-file limit.");
    out.sample("tether_max_fds", "", r.fd_limit);
    out.family(
        "tether_access_log_dropped_lines_total",
        "counter",
        "Access log lines dropped because a file's writer had fallen behind (slow or full disk).",
    );
    out.sample(
        "tether_access_log_dropped_lines_total",
        "",
        r.access_log_dropped,
    );
    out.family(
        "tether_connections_active",
        "gauge",
        "Open client connections.",
    );
    out.sample("tether_connections_active", "", r.connections);
    out.family(
        "tether_tunnels_active",
        "gauge",
        "Open tunnels (upgraded connections, HTTP/2 WebSocket streams).",
    );
    out.sample("tether_tunnels_active", "", r.tunnels);
    out.family(
        "tether_requests_total",
        "counter",
        "Client requests since start, whatever answered them.",
    );
    out.sample("tether_requests_total", "", r.requests);
}

fn listeners(out: &mut Exposition, r: &Report) {
    let families: [Family<super::ListenerReport>; 4] = [
        (
            "tether_listener_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            |l| l.accepted,
        ),
        (
            "tether_listener_connections_active",
            "gauge",
            "Client connections open and speaking HTTP (an upgraded one counts as a tunnel).",
            |l| l.active,
        ),
        (
            "tether_listener_tls_handshakes_total",
            "counter",
            "TLS handshakes completed.",
            |l| l.tls_handshakes,
        ),
        (
            "tether_listener_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            |l| l.tls_failures,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for listener in &r.listeners {
            let labels = format!(
                "listen=\"{}\"",
                label(&crate::config::model::shown_listen(listener.listen))
            );
            out.sample(name, &labels, value(listener));
        }
    }
}

fn servers(out: &mut Exposition, r: &Report) {
    let name = "tether_upstream_server_state";
    out.family(
        name,
        "gauge",
        "1 for the state the server is in, 0 for the others.",
    );
    for (group, server) in each_server(r) {
        let labels = server_labels(group, server);
        for state in STATES {
            let now = u64::from(server.state.as_str() == state);
            out.sample(name, &format!("{labels},state=\"{state}\""), now);
        }
    }
    let name = "tether_upstream_server_slow_start_progress";
    out.family(
        name,
        "gauge",
        "How far along its slow_start ramp (1 when not on one).",
    );
    for (group, server) in each_server(r) {
        let progress = match server.state {
            ServerState::SlowStart { percent } => f64::from(percent) / 100.0,
            _ => 1.0,
        };
        out.sample(name, &server_labels(group, server), progress);
    }
    out.per_server(
        r,
        (
            "tether_upstream_server_backup",
            "gauge",
            "1 for a backup server.",
        ),
        |s| u64::from(s.backup),
    );
    out.per_server(
        r,
        (
            "tether_upstream_server_max_conns",
            "gauge",
            "max_conns= (0: unlimited).",
        ),
        |s| u64::from(s.max_conns),
    );
    out.per_server(
        r,
        (
            "tether_upstream_server_active_connections",
            "gauge",
            "Requests and tunnels in flight.",
        ),
        |s| s.active,
    );
    let name = "tether_upstream_server_active_tunnels";
    out.family(
        name,
        "gauge",
        "Long-lived exchanges in flight, by transport.",
    );
    for (group, server) in each_server(r) {
        let labels = server_labels(group, server);
        for (i, transport) in Transport::ALL.iter().enumerate() {
            let labels = format!("{labels},transport=\"{}\"", transport.as_str());
            out.sample(name, &labels, server.tunnels[i]);
        }
    }
    out.per_server(
        r,
        (
            "tether_upstream_server_requests_total",
            "counter",
            "Requests sent.",
        ),
        |s| s.requests,
    );
    let name = "tether_upstream_server_responses_total";
    out.family(
        name,
        "counter",
        "Answers relayed to clients, by status class.",
    );
    for (group, server) in each_server(r) {
        let labels = server_labels(group, server);
        for (class, count) in server.responses.iter().enumerate() {
            out.sample(name, &format!("{labels},code=\"{}xx\"", class + 1), count);
        }
    }
    let counters: [Counter<ServerReport>; 6] = [
        (
            "tether_upstream_server_failures_total",
            "Failed attempts.",
            |s| s.failures,
        ),
        (
            "tether_upstream_server_connect_errors_total",
            "Connections that could not be opened.",
            |s| s.connect_errors,
        ),
        (
            "tether_upstream_server_passive_downs_total",
            "Times passive health took the server out.",
            |s| s.passive_downs,
        ),
        (
            "tether_upstream_server_sticky_hits_total",
            "Requests its sticky cookie or route sent here.",
            |s| s.sticky_hits,
        ),
        (
            "tether_upstream_server_sticky_new_total",
            "New sessions pinned here.",
            |s| s.sticky_new,
        ),
        (
            "tether_upstream_server_sticky_repinned_total",
            "Sessions whose pin named no usable server, pinned here anew.",
            |s| s.sticky_repinned,
        ),
    ];
    for (name, help, value) in counters {
        out.per_server(r, (name, "counter", help), value);
    }
    out.per_server(
        r,
        (
            "tether_upstream_server_balancer_picks_total",
            "counter",
            "Requests the balancing method sent here.",
        ),
        |s| s.balancer_picks,
    );
    health_checks(out, r);
    drains(out, r);
    request_time(out, r);
}

/// A family of one gauge per row: its name, its help, and the row's value as written.
type Gauge<R> = (&'static str, &'static str, fn(&R) -> String);

/// The drains running now (`drain_timeout`): only servers with one show these families.
fn drains(out: &mut Exposition, r: &Report) {
    let draining: Vec<_> = each_server(r)
        .filter_map(|(group, server)| {
            let drain = server.drain.as_ref()?;
            let labels = server_labels(group, server);
            Some((
                format!("{labels},reason=\"{}\"", drain.reason.as_str()),
                drain,
            ))
        })
        .collect();
    if draining.is_empty() {
        return;
    }
    // Gauges, one value per draining server each.
    let gauges: [Gauge<Progress>; 3] = [
        (
            "tether_upstream_server_drain_tunnels_left",
            "Tunnels and event streams the server's drain has still to close.",
            |drain| drain.left.to_string(),
        ),
        (
            "tether_upstream_server_drain_tunnels_closed",
            "Tunnels and event streams the server's drain has closed so far.",
            |drain| drain.closed.to_string(),
        ),
        (
            "tether_upstream_server_drain_finish_seconds",
            "Seconds until the server's drain expects to have closed its last stream.",
            |drain| format!("{:.3}", drain.finish_in.as_secs_f64()),
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        for (labels, drain) in &draining {
            out.sample(name, labels, value(drain));
        }
    }
}

fn health_checks(out: &mut Exposition, r: &Report) {
    let checked: Vec<_> = each_server(r)
        .filter_map(|(group, server)| Some((server_labels(group, server), server.last_check?)))
        .collect();
    if checked.is_empty() {
        return;
    }
    let name = "tether_upstream_server_health_check_passed";
    out.family(name, "gauge", "1 if the last active health check passed.");
    for (labels, (passed, _)) in &checked {
        out.sample(name, labels, u64::from(*passed));
    }
    let name = "tether_upstream_server_health_check_timestamp_seconds";
    out.family(
        name,
        "gauge",
        "When the last active health check ran, since the Unix epoch.",
    );
    for (labels, (_, at)) in &checked {
        out.sample(name, labels, format!("{at:.3}"));
    }
}

fn request_time(out: &mut Exposition, r: &Report) {
    let name = "tether_upstream_server_request_duration_seconds";
    out.family(
        name,
        "histogram",
        "From choosing the server to the end of the answer (WebSocket tunnels left out).",
    );
    for (group, server) in each_server(r) {
        let labels = server_labels(group, server);
        let reading = &server.request_time;
        let mut cumulative = 0;
        for (i, count) in reading.buckets.iter().enumerate() {
            cumulative += count;
            let le = DURATION_BOUNDS
                .get(i)
                .map_or("+Inf".to_string(), |bound| bound.to_string());
            let bucket = format!("{labels},le=\"{le}\"");
            out.sample(&format!("{name}_bucket"), &bucket, cumulative);
        }
        out.sample(
            &format!("{name}_sum"),
            &labels,
            format!("{:.6}", reading.sum_seconds),
        );
        out.sample(&format!("{name}_count"), &labels, cumulative);
    }
}

fn each_server(r: &Report) -> impl Iterator<Item = (&str, &ServerReport)> {
    r.upstreams
        .iter()
        .flat_map(|g| g.servers.iter().map(|s| (g.name.as_str(), s)))
}

fn server_labels(group: &str, server: &ServerReport) -> String {
    format!(
        "upstream=\"{}\",server=\"{}\"",
        label(group),
        label(&server.address)
    )
}

/// A label value escaped as the format wants (backslash, quote, newline).
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_format_wants() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
