//! Active health checks: every server of a group with `health_check` — backups and `down`
//! servers included — is probed on its own timer, so a recovery is noticed without any user
//! traffic. Verdicts are written to the peer's state, which the group's pick reads.
//!
//! A probe is a fresh connection, `GET uri` with `Host: <group name>` and `Connection: close`;
//! it passes when the status falls in the configured range within the timeout.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::config::HealthCheck;
use crate::peer::{CheckState, Peer};
use crate::snapshot::Snapshot;

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
        let host = HeaderValue::from_str(&upstream.group.name)
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        for member in upstream.group.members() {
            tasks.push(tokio::spawn(probe_loop(
                member.peer.clone(),
                check.clone(),
                host.clone(),
            )));
        }
    }
    HealthChecks { tasks }
}

/// Probes one server forever, turning runs of passes and failures into verdicts.
async fn probe_loop(peer: Arc<Peer>, check: HealthCheck, host: HeaderValue) {
    let mut ticks = interval(check.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut passes, mut fails) = (0u32, 0u32);
    loop {
        ticks.tick().await;
        let passed = timeout(check.timeout, probe(&peer, &check, &host))
            .await
            .unwrap_or(false);
        let before = peer.state.check_state();
        let verdict = if passed {
            passes += 1;
            fails = 0;
            // A first verdict needs only one pass: a new server should not wait `passes` intervals.
            (passes >= check.passes || matches!(before, CheckState::Unknown | CheckState::Pending))
                .then_some(CheckState::Up)
        } else {
            fails += 1;
            passes = 0;
            (fails >= check.fails).then_some(CheckState::Down)
        };
        if let Some(verdict) = verdict
            && verdict != before
        {
            tracing::warn!(
                upstream = %peer.key.address,
                group = %peer.key.group,
                "health check: server is {}",
                if verdict == CheckState::Up { "up" } else { "down" }
            );
            peer.state.set_check_state(verdict);
        }
    }
}

/// One probe: true when the server answered `GET uri` with an accepted status.
async fn probe(peer: &Peer, check: &HealthCheck, host: &HeaderValue) -> bool {
    let mut stream = None;
    for addr in &peer.addrs {
        if let Ok(connected) = TcpStream::connect(addr).await {
            stream = Some(connected);
            break;
        }
    }
    let Some(stream) = stream else {
        return false;
    };
    let Ok((mut sender, connection)) = http1::handshake(TokioIo::new(stream)).await else {
        return false;
    };
    tokio::spawn(connection);
    let Ok(request) = Request::get(check.uri.as_str())
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, "tether-health-check")
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (check.status.0..=check.status.1).contains(&status)
        }
        Err(_) => false,
    }
}
