//! Upstream groups of a snapshot: resolving servers, binding them to live peers, compiling
//! hash keys, sticky routes and cookies.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::balance::Method;
use crate::config::{self, BalanceMethod, ConfigError, ErrorKind, HealthCheck, Span};
use crate::cookie::CookieIssuer;
use crate::peer::{CheckState, FailPolicy, PeerKey, PeerRegistry};
use crate::upstream::{Group, Member, MemberSpec, StickyMode};
use crate::vars::{Template, Vars};

/// Idle connections kept per upstream server when the config sets no `keepalive`.
const DEFAULT_IDLE_PER_PEER: usize = 64;
/// Upstream keep-alive timeout for `proxy_pass http://host:port` (no `upstream` block).
const DEFAULT_UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// An upstream group with what a request needs to choose in it: the compiled hash key and
/// sticky route variables, the sticky cookie, and the active health check settings.
pub struct Upstream {
    /// The group.
    pub group: Arc<Group>,
    /// `hash KEY`, compiled.
    pub hash_key: Option<Template>,
    /// `sticky route $a $b`, compiled.
    pub sticky_route: Vec<Template>,
    /// `sticky cookie`, precompiled.
    pub cookie: Option<CookieIssuer>,
    /// `health_check`.
    pub health_check: Option<HealthCheck>,
}

/// Builds one `upstream` block. With `staging`, a server this config adds to a group with
/// active checks waits for its first passing check before it takes traffic.
pub(super) fn build_upstream(
    upstream: &config::Upstream,
    registry: &PeerRegistry,
    vars: &Vars,
    staging: bool,
) -> Result<Upstream, Vec<ConfigError>> {
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
    let (sticky, sticky_route) = match &upstream.sticky {
        None => (None, Vec::new()),
        Some(config::Sticky::Cookie(cookie)) => (
            Some(StickyMode::Cookie {
                secret: cookie.secret.clone(),
            }),
            Vec::new(),
        ),
        Some(config::Sticky::Route { variables, span }) => (
            Some(StickyMode::Route),
            variables.iter().filter_map(|v| compile(v, span)).collect(),
        ),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let group = Group::new(name, method, members, sticky, upstream.keepalive_timeout);
    let cookie = match &upstream.sticky {
        Some(config::Sticky::Cookie(spec)) => {
            let values = (0..group.len()).filter_map(|i| group.cookie_value(i));
            CookieIssuer::new(spec, values)
        }
        _ => None,
    };
    Ok(Upstream {
        group: Arc::new(group),
        hash_key,
        sticky_route,
        cookie,
        health_check: upstream.health_check.clone(),
    })
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
) -> Result<Upstream, ConfigError> {
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
    let group = Group::new(
        name,
        Method::RoundRobin,
        vec![member],
        None,
        DEFAULT_UPSTREAM_KEEPALIVE,
    );
    Ok(Upstream {
        group: Arc::new(group),
        hash_key: None,
        sticky_route: Vec::new(),
        cookie: None,
        health_check: None,
    })
}
