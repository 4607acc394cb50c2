//! Following DNS while running: `resolver` and `server NAME resolve` (nginx >= 1.27.3).
//!
//! Each followed name is asked of the `resolver` in force for its upstream (never the
//! system's getaddrinfo, which hides TTLs), again when its answer expires — after `valid=` if
//! set, else the answer's TTL, as nginx. Answers live in [`Answers`]; when one changes, the
//! runtime builds a new snapshot from the config in force, exactly as a reload does: every
//! address is a server of its own keyed by it, so one that stays keeps its state (counters,
//! health, idle connections), one that appears takes traffic at once, and one that goes takes
//! no new request while what it carries — a WebSocket, a stream — runs to its end. A lookup
//! that fails keeps the previous answer (a DNS outage removes no server); an empty answer
//! (NXDOMAIN, no records) leaves the name with no server, as in nginx.
//!
//! `dynamic.rs` looks up, per request, the host a `proxy_pass` with variables renders when it
//! is no upstream.
//!
//! The lookups are hickory's; this module decides what to ask, when, and what changed. It
//! imports `config`, tokio and (for the groups of looked-up hosts) `upstream` and `peer`,
//! never `snapshot`, `proxy` or `runtime` (the runtime hands it the rebuild to run).

mod answers;
mod dynamic;

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver as Client, TokioResolver};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use answers::{Answers, NameKey};
pub use dynamic::{DynamicError, DynamicHosts};

use crate::config::{Config, Resolver};

/// The shortest wait before asking again when the answer's TTL is shorter (or zero): nginx
/// caps nothing here, but a TTL of 0 must not turn into a busy loop.
const MIN_TTL_WAIT: Duration = Duration::from_secs(1);
/// How long to wait before asking again after a lookup failed (when `valid=` says nothing).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// One name a config follows: a `server NAME resolve` line's host and port, and the resolver
/// its upstream asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    /// The host as written.
    pub host: String,
    /// The `server` line's port.
    pub port: u16,
    /// The resolver in force for its upstream.
    pub resolver: Resolver,
}

/// Every name `config` follows, once each (an IP literal with `resolve` has nothing to follow).
pub fn followed(config: &Config) -> Vec<Followed> {
    let mut found: Vec<Followed> = Vec::new();
    for upstream in &config.http.upstreams {
        let Some(resolver) = &upstream.resolver else {
            continue;
        };
        for server in upstream.servers.iter().filter(|s| s.resolve && !s.unix) {
            if server.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let name = Followed {
                host: server.host.clone(),
                port: server.port,
                resolver: resolver.clone(),
            };
            if !found
                .iter()
                .any(|f| f.host == name.host && f.port == name.port)
            {
                found.push(name);
            }
        }
    }
    found
}

/// Looks up every name of `config` that `answers` does not know yet (a first start, or a
/// reload that adds one), all at once and each within its `resolver_timeout` — so a resolver
/// that does not answer delays the start or reload by one timeout, not one per name — and the
/// snapshot about to be built has their servers. A name that fails is recorded empty and
/// asked again by the follower.
pub async fn look_up_new(config: &Config, answers: &Answers) {
    let names = followed(config);
    let keys: HashSet<NameKey> = names.iter().map(|n| (n.host.clone(), n.port)).collect();
    answers.retain(&keys);
    let new: Vec<&Followed> = names
        .iter()
        .filter(|n| !answers.knows(&n.host, n.port))
        .collect();
    let mut clients = Clients::default();
    for name in &new {
        // Made first, one per resolver, so the lookups below can share them.
        if let Err(error) = clients.client(&name.resolver).await {
            tracing::warn!(host = %name.host, "{error}: the server has no address yet");
        }
    }
    let clients = &clients;
    let lookups = new.iter().map(|name| async move {
        let found = match clients.made(&name.resolver) {
            Some(client) => look_up_with(client, name).await,
            None => Err(LookupError::NoServer),
        };
        (name, found)
    });
    for (name, found) in futures_util::future::join_all(lookups).await {
        let addrs = match found {
            Ok((addrs, _)) => addrs,
            Err(error) => {
                tracing::warn!(host = %name.host, "{error}: the server has no address yet");
                Vec::new()
            }
        };
        answers.set(&name.host, name.port, addrs);
    }
}

/// The follower's task; dropping this ends it.
#[derive(Debug)]
pub struct Follower(JoinHandle<()>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following the names of the config in force (`config`, swapped by reloads):
/// whenever an answer changes, `rebuild` runs (and is awaited before the next lookups).
pub fn follow<F, Fut>(
    mut config: watch::Receiver<Arc<Config>>,
    answers: Arc<Answers>,
    rebuild: F,
) -> Follower
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    Follower(tokio::spawn(async move {
        let mut clients = Clients::default();
        // When each name is due, by its position in the list of the config in force.
        let mut due: Vec<(Followed, Instant)> = Vec::new();
        loop {
            let names = followed(&config.borrow_and_update());
            // A name the config keeps keeps its time; a new one was looked up by the reload.
            due = names
                .into_iter()
                .map(|name| {
                    let at = due
                        .iter()
                        .find(|(known, _)| *known == name)
                        .map_or_else(|| Instant::now() + wait(&name, None), |(_, at)| *at);
                    (name, at)
                })
                .collect();
            let next = due.iter().map(|(_, at)| *at).min();
            tokio::select! {
                changed = config.changed() => {
                    if changed.is_err() {
                        return; // the runtime is gone
                    }
                    continue;
                }
                _ = sleep_until(next) => {}
            }
            let now = Instant::now();
            let mut changed = false;
            for (name, at) in due.iter_mut().filter(|(_, at)| *at <= now) {
                match clients.look_up(name).await {
                    Ok((addrs, ttl)) => {
                        *at = Instant::now() + wait(name, Some(ttl));
                        if answers.set(&name.host, name.port, addrs) {
                            tracing::info!(host = %name.host, port = name.port, "the addresses of a resolved server changed");
                            changed = true;
                        }
                    }
                    Err(error) => {
                        // nginx keeps the addresses it had when the resolver fails.
                        *at = Instant::now() + name.resolver.valid.unwrap_or(RETRY_AFTER_FAILURE);
                        tracing::warn!(host = %name.host, "{error}: keeping its addresses");
                    }
                }
            }
            if changed {
                rebuild().await;
            }
        }
    }))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long an answer is used: `valid=` if set, else its TTL (at least [`MIN_TTL_WAIT`]).
fn wait(name: &Followed, ttl: Option<Duration>) -> Duration {
    match (name.resolver.valid, ttl) {
        (Some(valid), _) => valid,
        (None, Some(ttl)) => ttl.max(MIN_TTL_WAIT),
        (None, None) => MIN_TTL_WAIT,
    }
}

/// Why a lookup gave no answer.
#[derive(Debug)]
pub enum LookupError {
    /// No DNS server address for the `resolver` (its host name did not resolve).
    NoServer,
    /// `resolver_timeout` passed.
    Timeout,
    /// The DNS server failed to answer (refused, unreachable, SERVFAIL).
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NoServer => f.write_str("the resolver's address could not be found"),
            LookupError::Timeout => f.write_str("the resolver timed out"),
            LookupError::Failed(why) => write!(f, "the resolver failed ({why})"),
        }
    }
}

/// hickory clients, one per distinct `resolver`, made when first needed.
#[derive(Default)]
struct Clients {
    made: Vec<(Resolver, TokioResolver)>,
}

impl Clients {
    /// The addresses of `name` (with its port) and how long the answer is valid for.
    async fn look_up(
        &mut self,
        name: &Followed,
    ) -> Result<(Vec<SocketAddr>, Duration), LookupError> {
        let client = self.client(&name.resolver).await?;
        look_up_with(client, name).await
    }

    /// The client made for `resolver` already, if any.
    fn made(&self, resolver: &Resolver) -> Option<&TokioResolver> {
        self.made
            .iter()
            .find(|(r, _)| r == resolver)
            .map(|(_, c)| c)
    }

    async fn client(&mut self, resolver: &Resolver) -> Result<&TokioResolver, LookupError> {
        if let Some(at) = self.made.iter().position(|(r, _)| r == resolver) {
            return Ok(&self.made[at].1);
        }
        let client = make_client(resolver).await?;
        self.made.push((resolver.clone(), client));
        Ok(&self.made[self.made.len() - 1].1)
    }
}

/// The addresses of `name` asked of `client` (with the port of its line) and how long the
/// answer is valid for, within the resolver's timeout.
async fn look_up_with(
    client: &TokioResolver,
    name: &Followed,
) -> Result<(Vec<SocketAddr>, Duration), LookupError> {
    let lookup = tokio::time::timeout(name.resolver.timeout, client.lookup_ip(&*name.host));
    match lookup.await {
        Err(_) => Err(LookupError::Timeout),
        Ok(Ok(found)) => {
            let ttl = found
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            let addrs = found
                .iter()
                .map(|ip| SocketAddr::new(ip, name.port))
                .collect();
            Ok((addrs, ttl))
        }
        // NXDOMAIN or no records of the asked types: the name has no servers now.
        Ok(Err(error)) if error.is_no_records_found() => Ok((Vec::new(), MIN_TTL_WAIT)),
        Ok(Err(error)) => Err(LookupError::Failed(error.to_string())),
    }
}

/// A hickory client asking `resolver`'s servers, without a cache of its own (expiry is
/// decided here, by `valid=` or the TTL) and without `/etc/hosts` (nginx's resolver reads
/// neither).
async fn make_client(resolver: &Resolver) -> Result<TokioResolver, LookupError> {
    let mut servers = Vec::new();
    for (host, port) in &resolver.servers {
        let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, *port)],
            // A resolver given by name is looked up once, through the system, as nginx does.
            Err(_) => tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default(),
        };
        for addr in found {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            servers.push(NameServerConfig::new(addr.ip(), true, connections));
        }
    }
    if servers.is_empty() {
        return Err(LookupError::NoServer);
    }
    let config = ResolverConfig::from_name_servers(servers);
    let mut options = ResolverOpts::default();
    options.timeout = resolver.timeout;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.ip_strategy = match (resolver.ipv4, resolver.ipv6) {
        (true, true) => LookupIpStrategy::Ipv4AndIpv6,
        (false, _) => LookupIpStrategy::Ipv6Only,
        (true, false) => LookupIpStrategy::Ipv4Only,
    };
    Client::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|error| LookupError::Failed(error.to_string()))
}
