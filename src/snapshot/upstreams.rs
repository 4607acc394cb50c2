//! Upstream groups of a snapshot: resolving servers, binding them to live peers, compiling
//! hash keys and sticky route and learn variables, taking `sticky learn` zones from the zone
//! registry; the group builds its balancers and cookies itself.
//!
//! A peer's identity is the group, the address as written and its ordinal among the group's
//! servers with that address (repeated lines are separate servers, as in nginx). A `server
//! NAME resolve` line gives one server per address the name has now (from `Answers`, kept
//! by the runtime's DNS follower), each identified by that address, so a rebuild after a DNS
//! change keeps every server that stays.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::Method;
use crate::config::{self, BalanceMethod, ConfigError, ErrorKind, Span};
use crate::peer::{CheckState, Endpoint, FailPolicy, PeerKey, PeerRegistry};
use crate::resolve::Answers;
use crate::sessions::{SessionRegistry, ZoneSpec};
use crate::upstream::{Group, GroupSpec, LearnMode, Member, MemberSpec, StickyMode};
use crate::vars::Vars;

/// Idle connections kept per upstream server when the config sets no `keepalive`.
const DEFAULT_IDLE_PER_PEER: usize = 64;
/// Upstream keep-alive timeout for `proxy_pass http://host:port` (no `upstream` block).
const DEFAULT_UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// Builds one `upstream` block. With `staging`, a server this config adds to a group with
/// active checks waits for its first passing check before it takes traffic.
pub(super) fn build_group(
    upstream: &config::Upstream,
    (registry, learned): (&PeerRegistry, &SessionRegistry),
    answers: &Answers,
    vars: &Vars,
    staging: bool,
) -> Result<Group, Vec<ConfigError>> {
    let name: Arc<str> = upstream.name.as_str().into();
    let idle_limit = upstream.keepalive.unwrap_or(DEFAULT_IDLE_PER_PEER);
    let mut errors = Vec::new();
    let mut members = Vec::new();
    // Servers of this group per address so far: a repeated address is a server of its own.
    let mut ordinals: HashMap<Arc<str>, u32> = HashMap::new();
    for spec in &upstream.servers {
        let endpoints = match endpoints(spec, answers) {
            Ok(endpoints) => endpoints,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        for (address, endpoint) in endpoints {
            let ordinal = ordinals.entry(address.clone()).or_default();
            let key = PeerKey {
                group: name.clone(),
                address,
                ordinal: *ordinal,
            };
            *ordinal += 1;
            let (peer, new) = registry.insert_or_get(key, endpoint, idle_limit);
            if new && staging && upstream.health_check.is_some() {
                peer.state.set_check_state(CheckState::Pending);
            }
            members.push(Member {
                peer,
                spec: member_spec(spec),
            });
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
        Some(config::Sticky::Learn(learn)) => {
            let lookup = learn.lookup.iter();
            let lookup = lookup.filter_map(|v| compile(v, &learn.span)).collect();
            let zone = learned.zone(&ZoneSpec {
                name: learn.zone.clone(),
                size: learn.size as usize,
                timeout: learn.timeout,
                sync: learn.sync.clone(),
            });
            Some(StickyMode::Learn(LearnMode {
                zone,
                create: learn.create.clone(),
                lookup,
                secret: learn.secret.clone(),
            }))
        }
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

/// The servers of `spec` by identity (the address as written, or for `resolve` each address
/// the name has now: `10.0.0.7:8080`) and where they listen.
fn endpoints(
    spec: &config::PeerSpec,
    answers: &Answers,
) -> Result<Vec<(Arc<str>, Endpoint)>, ConfigError> {
    if spec.resolve && !spec.unix && spec.host.parse::<IpAddr>().is_err() {
        let found = answers.get(&spec.host, spec.port);
        return Ok(found
            .iter()
            .map(|&addr| (addr.to_string().into(), Endpoint::Inet(vec![addr])))
            .collect());
    }
    Ok(vec![(spec.address.as_str().into(), endpoint(spec)?)])
}

/// Where the server of `spec` listens: its socket path, or its name resolved now.
fn endpoint(spec: &config::PeerSpec) -> Result<Endpoint, ConfigError> {
    if spec.unix {
        return Ok(Endpoint::Unix(PathBuf::from(&spec.host)));
    }
    resolve(&spec.host, spec.port, &spec.address, &spec.span).map(Endpoint::Inet)
}

/// The one-server group behind `proxy_pass http://host:port` (or `http://unix:/path`): a
/// `server` line without parameters, named after its address.
pub(super) fn implicit(
    spec: &config::PeerSpec,
    registry: &PeerRegistry,
) -> Result<Group, ConfigError> {
    let endpoint = endpoint(spec)?;
    let name: Arc<str> = spec.address.as_str().into();
    let peer = registry.get_or_insert(
        PeerKey::new(name.clone(), name.clone()),
        endpoint,
        DEFAULT_IDLE_PER_PEER,
    );
    let member = Member {
        peer,
        spec: member_spec(spec),
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
