//! The status report as one JSON document (the shape is in README.md, "Status and metrics").
//! Written by hand: the shape is fixed and small, and a serializer would be a dependency for
//! one page. Imports only its parent.

use std::fmt::Write;

use super::{GroupReport, Report, ServerReport, ZoneReport};
use crate::peer::Transport;
use crate::upstream::ServerState;

/// The report as JSON.
pub fn write(report: &Report) -> String {
    let mut out = String::with_capacity(1024 + 1024 * servers(report));
    let _ = write_report(&mut out, report);
    out
}

fn servers(report: &Report) -> usize {
    report.upstreams.iter().map(|g| g.servers.len()).sum()
}

fn write_report(out: &mut String, r: &Report) -> std::fmt::Result {
    write!(
        out,
        "{{\"version\":{},\"generation\":{},\"uptime_seconds\":{:.3},\"started_at\":{:.3},",
        string(env!("CARGO_PKG_VERSION")),
        r.generation,
        r.uptime.as_secs_f64(),
        r.started_unix
    )?;
    let last_error = r.last_reload_error.as_deref().map_or("null".into(), string);
    write!(
        out,
        "\"reloads\":{{\"applied\":{},\"failed\":{},\"last_error\":{last_error}}},",
        r.reloads_applied, r.reloads_failed
    )?;
    let open = r.open_fds.map_or("null".into(), |n| n.to_string());
    write!(out, "\"fds\":{{\"open\":{open},\"limit\":{}}},", r.fd_limit)?;
    write!(
        out,
        "\"access_log\":{{\"dropped_lines\":{}}},",
        r.access_log_dropped
    )?;
    write!(
        out,
        "\"connections\":{{\"active\":{},\"tunnels\":{},\"requests\":{}}},\"listeners\":[",
        r.connections, r.tunnels, r.requests
    )?;
    for (i, l) in r.listeners.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write!(
            out,
            "{comma}{{\"listen\":{},\"accepted\":{},\"active\":{},\"tls_handshakes\":{},\"tls_failures\":{}}}",
            string(&crate::config::model::shown_listen(l.listen)),
            l.accepted,
            l.active,
            l.tls_handshakes,
            l.tls_failures
        )?;
    }
    out.push_str("],\"upstreams\":[");
    for (i, group) in r.upstreams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_group(out, group)?;
    }
    out.push_str("],\"learned_sessions\":[");
    for (i, zone) in r.zones.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_zone(out, zone)?;
    }
    out.push_str("]}");
    Ok(())
}

fn write_zone(out: &mut String, z: &ZoneReport) -> std::fmt::Result {
    write!(
        out,
        "{{\"zone\":{},\"size\":{},\"timeout_seconds\":{:.3},\"sessions\":{},\"learned\":{},\"received\":{},\"hits\":{},\"evicted\":{},\"expired\":{},\"repinned\":{},\"sync\":",
        string(&z.name),
        z.size,
        z.timeout.as_secs_f64(),
        z.sessions,
        z.learned,
        z.received,
        z.hits,
        z.evicted,
        z.expired,
        z.repinned
    )?;
    match &z.sync {
        None => out.push_str("null}"),
        Some(sync) => write!(
            out,
            "{{\"target\":{},\"connected\":{},\"published\":{},\"received\":{},\"failures\":{},\"dropped\":{}}}}}",
            string(&sync.target),
            sync.stats.connected,
            sync.stats.published,
            sync.stats.received,
            sync.stats.failures,
            sync.stats.dropped
        )?,
    }
    Ok(())
}

fn write_group(out: &mut String, group: &GroupReport) -> std::fmt::Result {
    write!(out, "{{\"name\":{},\"servers\":[", string(&group.name))?;
    for (i, server) in group.servers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_server(out, server)?;
    }
    out.push_str("]}");
    Ok(())
}

fn write_server(out: &mut String, s: &ServerReport) -> std::fmt::Result {
    let progress = match s.state {
        ServerState::SlowStart { percent } => format!("{:.2}", f64::from(percent) / 100.0),
        _ => "null".into(),
    };
    write!(
        out,
        "{{\"address\":{},\"tier\":\"{}\",\"state\":\"{}\",\"slow_start_progress\":{progress},\"weight\":{},\"max_conns\":{},\"active\":{},\"tunnels\":{{",
        string(&s.address),
        if s.backup { "backup" } else { "primary" },
        s.state.as_str(),
        s.weight,
        s.max_conns,
        s.active,
    )?;
    for (i, transport) in Transport::ALL.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        write!(out, "{comma}\"{}\":{}", transport.as_str(), s.tunnels[i])?;
    }
    write!(out, "}},\"requests\":{},\"responses\":{{", s.requests)?;
    for (class, count) in s.responses.iter().enumerate() {
        let comma = if class == 0 { "" } else { "," };
        write!(out, "{comma}\"{}xx\":{count}", class + 1)?;
    }
    let last_check = match s.last_check {
        None => "null".into(),
        Some((passed, at)) => format!(
            "{{\"result\":\"{}\",\"at\":{at:.3}}}",
            if passed { "passed" } else { "failed" }
        ),
    };
    write!(
        out,
        "}},\"failures\":{},\"connect_errors\":{},\"passive_downs\":{},\"last_check\":{last_check},",
        s.failures, s.connect_errors, s.passive_downs
    )?;
    write!(
        out,
        "\"sticky\":{{\"hits\":{},\"new\":{},\"repinned\":{}}},\"balancer_picks\":{},",
        s.sticky_hits, s.sticky_new, s.sticky_repinned, s.balancer_picks
    )?;
    write!(out, "\"removed\":{},", s.removed)?;
    match &s.drain {
        None => out.push_str("\"drain\":null,"),
        Some(drain) => write!(
            out,
            "\"drain\":{{\"reason\":\"{}\",\"left\":{},\"closed\":{},\"finish_in_seconds\":{:.3}}},",
            drain.reason.as_str(),
            drain.left,
            drain.closed,
            drain.finish_in.as_secs_f64()
        )?,
    }
    write!(
        out,
        "\"request_time\":{{\"count\":{},\"sum_seconds\":{:.6}}}}}",
        s.request_time.count(),
        s.request_time.sum_seconds
    )
}

/// `text` as a JSON string literal.
fn string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }
}
