//! Active health checks: every server of a group with `health_check` — backups and `down`
//! servers included — is probed on its own timer, so a recovery is noticed without any user
//! traffic. Each result goes to the peer, which keeps the run of results and the verdict the
//! group's pick reads; the probing tasks hold nothing worth keeping, so a reload may replace
//! them freely.
//!
//! A probe is a fresh connection opened as requests open theirs (`connect`: the peer's
//! addresses in order, one timeout over all of them), then `GET uri` with `Host: <group name>`
//! and `Connection: close`; it passes when the status falls in the configured range within the
//! check's timeout. A group that a location proxies to with `https://` is probed over TLS,
//! with that location's `proxy_ssl_*` ([`Snapshot::check_tls`]); a failed handshake fails
//! the probe. Imports peer and snapshot state, never `server` or `runtime`.

use std::sync::Arc;

use http::{HeaderValue, header};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::config::HealthCheck;
use crate::peer::{CheckPolicy, CheckState, Peer};
use crate::proxy::body::request::RequestBody;
use crate::proxy::connect::{ConnectError, connect};
use crate::proxy::origin::{Exchange, Keeping};
use crate::proxy::request::{Parts, Request};
use crate::snapshot::Snapshot;
use crate::telemetry::errno;
use crate::tls::upstream::TlsTarget;

/// The probe tasks of one snapshot; dropping this stops them.
#[derive(Debug, Default)]
pub struct HealthChecks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts probing every server of every group that has `health_check`.
pub fn spawn(snapshot: &Snapshot) -> HealthChecks {
    let mut tasks = Vec::new();
    for upstream in snapshot.upstreams() {
        let Some(check) = &upstream.health_check else {
            continue;
        };
        let host = HeaderValue::from_str(&upstream.name)
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let tls = snapshot.check_tls(&upstream.name);
        for member in upstream.members() {
            tasks.push(tokio::spawn(probe_loop(
                member.peer.clone(),
                check.clone(),
                host.clone(),
                tls.cloned(),
            )));
        }
    }
    HealthChecks { tasks }
}

/// Probes one server until stopped, handing each result to the peer.
async fn probe_loop(
    peer: Arc<Peer>,
    check: HealthCheck,
    host: HeaderValue,
    tls: Option<Arc<TlsTarget>>,
) {
    let policy = CheckPolicy {
        passes: check.passes,
        fails: check.fails,
    };
    let mut ticks = interval(check.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probed = timeout(check.timeout, probe(&peer, &check, &host, tls.as_deref()))
            .await
            .unwrap_or_else(|_| Err("timed out (110: Connection timed out)".to_string()));
        let changed = peer.state.record_check(probed.is_ok(), policy);
        if let Some((before, verdict)) = changed {
            log_transition(&peer, before, verdict, probed.err().as_deref());
        }
    }
}

/// Logs a change of a server's verdict, once per change, at the level its meaning calls for:
/// a server found up (at start, or after a reload added it) is news, not a warning; one that
/// comes back is good news; one that goes down, or is down from the first check, is a
/// warning, with the reason of the check that decided it.
fn log_transition(peer: &Peer, before: CheckState, verdict: CheckState, failure: Option<&str>) {
    let (upstream, group) = (&*peer.key.address, &*peer.key.group);
    match (before, verdict) {
        (CheckState::Down, CheckState::Up) => tracing::info!(
            upstream,
            group,
            "upstream server is back up (health check passed)"
        ),
        (_, CheckState::Up) => {
            tracing::info!(
                upstream,
                group,
                "upstream server is up (health check passed)"
            )
        }
        (_, _) => tracing::warn!(
            upstream,
            group,
            "upstream server is down (health check failed: {})",
            failure.unwrap_or("unknown")
        ),
    }
}

/// One probe: Ok when the server answered `GET uri` with an accepted status, else what went
/// wrong, in nginx's words.
async fn probe(
    peer: &Peer,
    check: &HealthCheck,
    host: &HeaderValue,
    tls: Option<&TlsTarget>,
) -> Result<(), String> {
    let connection = match connect(peer, check.timeout, tls).await {
        Ok(connection) => connection,
        Err(ConnectError::Timeout) => {
            return Err("connect() timed out (110: Connection timed out)".to_string());
        }
        Err(ConnectError::Io(error)) => {
            return Err(match errno::os_error(&error) {
                Some(os) => format!("connect() failed ({os})"),
                None => error.to_string(),
            });
        }
    };
    let uri = check
        .uri
        .parse()
        .map_err(|error| format!("invalid check request ({error})"))?;
    let headers = [
        (header::HOST, host.clone()),
        (header::CONNECTION, HeaderValue::from_static("close")),
        (
            header::USER_AGENT,
            HeaderValue::from_static("tether-health-check"),
        ),
    ];
    let head = Parts {
        uri,
        headers: headers.into_iter().collect(),
        ..Parts::default()
    };
    let mut request = Request::from_parts(head, RequestBody::Empty);
    match Exchange::start(connection, &mut request, Keeping::default()).await {
        Ok(sent) => {
            let status = sent.head.status.as_u16();
            if (check.status.0..=check.status.1).contains(&status) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        Err(failure) => Err(match failure.error {
            Ok(error) => format!("request failed ({error})"),
            Err(error) => format!("request failed ({error})"),
        }),
    }
}
