//! Upstream groups of a snapshot: resolving servers, binding them to live peers, compiling
//! hash keys and sticky route variables; the group builds its balancers and cookies itself.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::balance::Method;
use crate::config::{self, BalanceMethod, ConfigError, ErrorKind, Span};
use crate::peer::{CheckState, FailPolicy, PeerKey, PeerRegistry};
use crate::upstream::{Group, GroupSpec, Member, MemberSpec, StickyMode};
use crate::vars::Vars;

/// Idle connections kept per upstream server when the config sets no `keepalive`.
const DEFAULT_IDLE_PER_PEER: usize = 64;
/// Upstream keep-alive timeout for `proxy_pass http://host:port` (no `upstream` block).
const DEFAULT_UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// Builds one `upstream` block. With `staging`, a server this config adds to a group with
/// active checks waits for its first passing check before it takes traffic.
pub(super) fn build_group(
    upstream: &config::Upstream,
    registry: &PeerRegistry,
    vars: &Vars,
    staging: bool,
) -> Result<Group, Vec<ConfigError>> {
    let name: Arc<str> = upstream.name.as_str().into();
    let idle_limit = upstream.keepalive.unwrap_or(DEFAULT_IDLE_PER_PEER);
    let mut errors = Vec::new();
    let mut members = Vec::new();
    for spec in &upstream.servers {
        match resolve(&spec.host, spec.port, &spec.address, &spec.span) {
            Ok(addrs) => {
                let key = PeerKey {
                    group: name.clone(),
                    address: spec.address.as_str().into(),
                };
                let (peer, new) = registry.insert_or_get(key, addrs, idle_limit);
                if new && staging && upstream.health_check.is_some() {
                    peer.state.set_check_state(CheckState::Pending);
                }
                members.push(Member {
                    peer,
                    spec: member_spec(spec),
                });
            }
            Err(error) => errors.push(error),
        }
    }
    let mut compile = |text: &str, span: &Span| match vars.compile(text, span) {
        Ok(template) => Some(template),
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let (method, hash_key) = match &upstream.method {
        BalanceMethod::RoundRobin => (Method::RoundRobin, None),
        BalanceMethod::LeastConn => (Method::LeastConn, None),
        BalanceMethod::Random { two } => (Method::Random { two: *two }, None),
        BalanceMethod::IpHash => (Method::IpHash, None),
        BalanceMethod::Hash { key, consistent } => (
            Method::Hash {
                consistent: *consistent,
            },
            compile(key, &upstream.span),
        ),
    };
    let sticky = match &upstream.sticky {
        None => None,
        Some(config::Sticky::Cookie(cookie)) => Some(StickyMode::Cookie(cookie.clone())),
        Some(config::Sticky::Route { variables, span }) => Some(StickyMode::Route(
            variables.iter().filter_map(|v| compile(v, span)).collect(),
        )),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let spec = GroupSpec {
        method,
        hash_key,
        sticky,
        keepalive_timeout: upstream.keepalive_timeout,
        health_check: upstream.health_check.clone(),
    };
    Ok(Group::new(name, members, spec))
}

fn member_spec(spec: &config::PeerSpec) -> MemberSpec {
    MemberSpec {
        weight: spec.weight.max(1),
        fail_policy: FailPolicy {
            max_fails: spec.max_fails,
            fail_timeout_ms: spec.fail_timeout.as_millis() as u64,
        },
        max_conns: spec.max_conns,
        backup: spec.backup,
        down: spec.down,
        drain: spec.drain,
        slow_start: spec.slow_start,
        route: spec.route.clone(),
    }
}

pub(super) fn resolve(
    host: &str,
    port: u16,
    written: &str,
    span: &Span,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let not_found = || ConfigError {
        span: Some(span.clone()),
        kind: ErrorKind::HostNotFound {
            address: written.to_string(),
        },
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| not_found())?
        .collect();
    if addrs.is_empty() {
        return Err(not_found());
    }
    Ok(addrs)
}

/// The one-server group behind `proxy_pass http://host:port`: a `server` line without
/// parameters.
pub(super) fn implicit(
    host: &str,
    port: u16,
    address: &str,
    span: &Span,
    registry: &PeerRegistry,
) -> Result<Group, ConfigError> {
    let addrs = resolve(host, port, address, span)?;
    let name: Arc<str> = address.into();
    let peer = registry.get_or_insert(
        PeerKey {
            group: name.clone(),
            address: name.clone(),
        },
        addrs,
        DEFAULT_IDLE_PER_PEER,
    );
    let member = Member {
        peer,
        spec: member_spec(&config::PeerSpec::with_defaults(
            address,
            host,
            port,
            span.clone(),
        )),
    };
    let spec = GroupSpec {
        method: Method::RoundRobin,
        hash_key: None,
        sticky: None,
        keepalive_timeout: DEFAULT_UPSTREAM_KEEPALIVE,
        health_check: None,
    };
    Ok(Group::new(name, vec![member], spec))
}
