//! The Prometheus families of `sticky learn`: per zone, the sessions it holds and counters of
//! what became of sessions; per Redis sync, whether it is connected and counters of what it
//! wrote, read and failed to do. A config without `sticky learn` shows none of them, and one
//! without `sync=` none of the sync's. Imports only its parent.

use super::{Exposition, label};
use crate::telemetry::status::{Report, SyncReport, ZoneReport};

/// A family's name and help, and how to read its number from one zone or sync.
type Reading<R> = (&'static str, &'static str, fn(&R) -> u64);

/// The zone and sync families of `r`.
pub(super) fn write(out: &mut Exposition, r: &Report) {
    if r.zones.is_empty() {
        return;
    }
    let gauges: [Reading<ZoneReport>; 2] = [
        (
            "tether_session_zone_sessions",
            "Learned sessions the zone holds (expired ones not yet swept included).",
            |z| z.sessions as u64,
        ),
        (
            "tether_session_zone_size_bytes",
            "The zone's declared size (256 bytes a session, as nginx counts).",
            |z| z.size as u64,
        ),
    ];
    let counters: [Reading<ZoneReport>; 6] = [
        (
            "tether_session_zone_learned_total",
            "Sessions learned from this instance's upstream responses.",
            |z| z.learned,
        ),
        (
            "tether_session_zone_received_total",
            "Sessions learned by other instances, stored here through the sync.",
            |z| z.received,
        ),
        (
            "tether_session_zone_hits_total",
            "Requests whose session the zone knew.",
            |z| z.hits,
        ),
        (
            "tether_session_zone_evicted_total",
            "Sessions pushed out to make room: the zone was full.",
            |z| z.evicted,
        ),
        (
            "tether_session_zone_expired_total",
            "Sessions forgotten after the zone's timeout without a request.",
            |z| z.expired,
        ),
        (
            "tether_session_zone_repinned_total",
            "Sessions whose server could not take a request, pinned to another server.",
            |z| z.repinned,
        ),
    ];
    let gauges = gauges.into_iter().map(|family| ("gauge", family));
    let counters = counters.into_iter().map(|family| ("counter", family));
    for (kind, (name, help, value)) in gauges.chain(counters) {
        out.family(name, kind, help);
        for zone in &r.zones {
            out.sample(
                name,
                &format!("zone=\"{}\"", label(&zone.name)),
                value(zone),
            );
        }
    }
    syncs(out, r);
}

fn syncs(out: &mut Exposition, r: &Report) {
    let synced: Vec<(String, &SyncReport)> = (r.zones.iter())
        .filter_map(|zone| {
            let sync = zone.sync.as_ref()?;
            let labels = format!(
                "zone=\"{}\",target=\"{}\"",
                label(&zone.name),
                label(&sync.target)
            );
            Some((labels, sync))
        })
        .collect();
    if synced.is_empty() {
        return;
    }
    let name = "tether_session_sync_connected";
    out.family(
        name,
        "gauge",
        "1 while the zone's Redis sync is connected and caught up.",
    );
    for (labels, sync) in &synced {
        out.sample(name, labels, u64::from(sync.stats.connected));
    }
    let counters: [Reading<SyncReport>; 4] = [
        (
            "tether_session_sync_published_total",
            "Sessions learned here and written to Redis.",
            |s| s.stats.published,
        ),
        (
            "tether_session_sync_received_total",
            "Sessions learned elsewhere and read from Redis (announced, or read when connecting).",
            |s| s.stats.received,
        ),
        (
            "tether_session_sync_failures_total",
            "Failed connections, writes, reads and heartbeats.",
            |s| s.stats.failures,
        ),
        (
            "tether_session_sync_dropped_total",
            "Sessions learned here never written: Redis was away longer than the queue holds.",
            |s| s.stats.dropped,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for (labels, sync) in &synced {
            out.sample(name, labels, value(sync));
        }
    }
}
