//! The immutable runtime built from one [`Config`]: virtual servers per listen address, compiled
//! locations, precompiled header plans and templates, and upstream groups over live peers.
//!
//! Requests read it through one atomic load; a reload builds a whole new snapshot and swaps it,
//! so no request ever sees half a config. Building resolves every name, compiles every template
//! and regex, and reports every error with its span — all before anything serves.
//!
//! No hyper here: only `http` types for precompiled header names and values.

mod error_pages;
pub mod reply_headers;
mod servers;
mod tls;
mod upstreams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config, ConfigError, ConfigErrors, HeadRules};
use crate::limits::{ZoneRegistry, Zones};
use crate::peer::PeerRegistry;
use crate::resolve::{Answers, DynamicHosts};
use crate::route::VirtualHosts;
use crate::telemetry::access_log::Formats;
use crate::tls::SessionStore;
use crate::tls::upstream::TlsTarget;
use crate::upstream::Group;
use crate::vars::Vars;

pub use crate::rewrite::ReturnAction;
pub use error_pages::{CompiledPage, ErrorPageTable};
use servers::ServerBuilder;
pub use servers::{
    Action, AddHeader, HeaderPlan, HeaderSource, ProxyAction, Route, SetHeader, Target,
    UpstreamTls, UriRewrite, VirtualServer,
};
pub use tls::Termination;

/// One consistent runtime view of a config.
pub struct Snapshot {
    /// Increases by one with every successful reload (1 for the first config).
    pub generation: u64,
    /// Every file the config was read from (main first): what a reload watches.
    pub files: Vec<PathBuf>,
    /// Compiled `map`s, needed to render any template.
    pub vars: Arc<Vars>,
    /// How client connections are served.
    pub client: ClientSettings,
    /// By `listen` address, hashed by foldhash: looked up per connection and per request, and
    /// keyed by the config's own addresses (nothing a client chooses), where SipHash cost
    /// ~0.2k instructions a lookup.
    listeners: Listeners,
    servers: Vec<VirtualServer>,
    groups: HashMap<Arc<str>, Arc<Group>>,
    /// Groups whose health probes speak TLS (see [`Snapshot::check_tls`]).
    check_tls: HashMap<Arc<str>, Arc<TlsTarget>>,
    /// The `limit_req_zone`s and `limit_conn_zone`s in force.
    pub zones: Zones,
    /// Hosts a `proxy_pass` with variables named that are no upstream, looked up per request
    /// through the http-level `resolver`.
    pub dynamic: DynamicHosts,
}

/// How client connections are served: the http-level settings a connection reads again for
/// each request (so a reload applies from a keep-alive connection's next request).
#[derive(Clone, Copy, Debug)]
pub struct ClientSettings {
    /// `client_header_timeout`: time allowed for a request head.
    pub header_timeout: Duration,
    /// `keepalive_timeout`: how long an idle connection waits for its next request.
    pub keepalive_timeout: Duration,
    /// False with `keepalive_timeout 0`: one request per connection.
    pub keep_alive: bool,
    /// `send_timeout` for answers that no location gave.
    pub send_timeout: Duration,
    /// How heads are read and checked.
    pub head: HeadRules,
}

/// The listen addresses of a config, each with its virtual servers.
type Listeners = HashMap<SocketAddr, Listener, foldhash::fast::RandomState>;

/// The virtual servers reachable on one listen address.
struct Listener {
    hosts: VirtualHosts,
    /// Connections speak TLS (one `listen ... ssl` on the address makes it so for all).
    tls: bool,
    /// Connections start with a PROXY protocol header (lowering marks every listen on it).
    proxy_protocol: bool,
    /// An IPv6 wildcard address that takes IPv4 too (`ipv6only=off` on one of its listens).
    dual_stack: bool,
    /// Indexes into `Snapshot::servers`, in the order `hosts` knows them.
    servers: Vec<usize>,
}

/// How a listener's connections begin, before their first request: what the accept path
/// must do first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStart {
    /// With a TLS handshake.
    pub tls: bool,
    /// With a PROXY protocol header (before TLS).
    pub proxy_protocol: bool,
}

impl Snapshot {
    /// Builds a snapshot from `config`, taking live peers from `registry` so that servers that
    /// stay keep their state. Resolves host names (blocking). Reports every error found. TLS
    /// resumption state starts afresh: a running tether builds with [`Snapshot::build_with`].
    pub fn build(
        config: &Config,
        registry: &PeerRegistry,
        generation: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        let (sessions, zones) = (SessionStore::default(), ZoneRegistry::default());
        let answers = Answers::default();
        Snapshot::build_with(config, registry, (&sessions, &zones, &answers), generation)
    }

    /// As [`Snapshot::build`], with TLS session caches and ticket keys from `sessions` and
    /// `limit_*_zone` state from `zones`, which outlive snapshots like `registry`: clients
    /// resume their sessions, and keep their rate and connection counts, across a reload. The
    /// servers of `server NAME resolve` lines are the addresses `answers` has for them (with
    /// [`Snapshot::build`], none).
    pub fn build_with(
        config: &Config,
        registry: &PeerRegistry,
        (sessions, zones, answers): (&SessionStore, &ZoneRegistry, &Answers),
        generation: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        registry.forget_unused();
        let mut errors = Vec::new();
        // Maps with errors are kept, so that everything using them is checked too; the
        // errors stop this snapshot from ever serving.
        let declared = crate::rewrite::declared_names(config);
        let maps = &config.http.maps;
        let vars = Arc::new(Vars::build_reporting(maps, &declared, &mut errors));
        let mut groups = HashMap::new();
        for upstream in &config.http.upstreams {
            let kept = (registry, &zones.learned);
            match upstreams::build_group(upstream, kept, answers, &vars, generation > 1) {
                Ok(group) => {
                    groups.insert(group.name.clone(), Arc::new(group));
                }
                Err(mut found) => errors.append(&mut found),
            }
        }
        let formats = Formats::build(&config.http.log_formats, &vars, &mut errors);
        let zones = Zones::build(&config.http, zones, &vars, &mut errors);
        let mut builder = ServerBuilder {
            vars: &vars,
            zones: &zones,
            formats: &formats,
            registry,
            sessions,
            groups: &mut groups,
            errors: &mut errors,
            tls_configs: Vec::new(),
            check_tls: HashMap::new(),
        };
        let servers: Vec<VirtualServer> = config
            .http
            .servers
            .iter()
            .map(|server| builder.server(server))
            .collect();
        let check_tls = std::mem::take(&mut builder.check_tls);
        let listeners = build_listeners(&config.http.servers, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Snapshot {
            generation,
            files: config.files.clone(),
            vars,
            client: ClientSettings {
                header_timeout: config.http.client_header_timeout,
                keepalive_timeout: config.http.keepalive_timeout,
                keep_alive: !config.http.keepalive_timeout.is_zero(),
                send_timeout: config.http.send_timeout,
                head: config.http.head_rules,
            },
            listeners,
            servers,
            groups,
            check_tls,
            zones,
            dynamic: DynamicHosts::new(config.http.resolver.clone()),
        })
    }

    /// The addresses this config listens on.
    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.keys().copied()
    }

    /// How connections on `listen` begin, found in one lookup (neither TLS nor a PROXY protocol
    /// header for an address not in this config).
    pub fn connection_start(&self, listen: SocketAddr) -> ConnectionStart {
        self.listeners
            .get(&listen)
            .map_or_else(ConnectionStart::default, |l| ConnectionStart {
                tls: l.tls,
                proxy_protocol: l.proxy_protocol,
            })
    }

    /// Whether `listen`, an IPv6 address, takes IPv4 connections too (`ipv6only=off`).
    pub fn is_dual_stack(&self, listen: SocketAddr) -> bool {
        self.listeners.get(&listen).is_some_and(|l| l.dual_stack)
    }

    /// The virtual server a TLS handshake on `listen` is for: the one `sni` names (lowercase),
    /// or the address's default server when the client named none. None if `listen` is not in
    /// this config or that server has no TLS settings.
    pub fn handshake_server(
        &self,
        listen: SocketAddr,
        sni: Option<&str>,
    ) -> Option<&VirtualServer> {
        let listener = self.listeners.get(&listen)?;
        let position = match sni {
            Some(name) => listener.hosts.find(name),
            None => listener.hosts.default_index(),
        };
        let server = &self.servers[listener.servers[position]];
        server.tls.as_ref().map(|_| server)
    }

    /// The virtual server for a request that arrived on `listen` with this `host` (lowercase,
    /// without port). None only if `listen` is not in this config (a listener being retired).
    pub fn server(&self, listen: SocketAddr, host: &str) -> Option<&VirtualServer> {
        let listener = self.listeners.get(&listen)?;
        let index = listener.servers[listener.hosts.find(host)];
        Some(&self.servers[index])
    }

    /// A named upstream group (`proxy_pass http://$var` looks groups up by name per request).
    pub fn upstream(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.get(name)
    }

    /// The TLS a group's active health checks use: a group is probed over TLS when a location
    /// names it with `proxy_pass https://` — the first such location in file order gives the
    /// `proxy_ssl_*` settings and name. A group reached only through `https://$variable` is
    /// probed in plain HTTP (which group a variable names is known only per request).
    pub fn check_tls(&self, group: &str) -> Option<&Arc<TlsTarget>> {
        self.check_tls.get(group)
    }

    /// Every group, for status pages, health checks and tests.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }
}

/// Groups the servers by listen address and builds each address's name lookup.
fn build_listeners(servers: &[config::Server], errors: &mut Vec<ConfigError>) -> Listeners {
    let mut by_addr: HashMap<SocketAddr, Vec<(usize, bool)>> = HashMap::new();
    for (index, server) in servers.iter().enumerate() {
        for listen in &server.listens {
            by_addr
                .entry(listen.addr)
                .or_default()
                .push((index, listen.default_server));
        }
    }
    let mut listeners = Listeners::default();
    for (addr, members) in by_addr {
        let names: Vec<(&[config::ServerName], bool)> = members
            .iter()
            .map(|&(index, default)| (servers[index].names.as_slice(), default))
            .collect();
        match VirtualHosts::build(&names) {
            Ok(hosts) => {
                let tls = members
                    .iter()
                    .flat_map(|&(index, _)| &servers[index].listens)
                    .any(|listen| listen.addr == addr && listen.ssl);
                let proxy_protocol = members
                    .iter()
                    .flat_map(|&(index, _)| &servers[index].listens)
                    .any(|listen| listen.addr == addr && listen.proxy_protocol);
                let dual_stack = members
                    .iter()
                    .flat_map(|&(index, _)| &servers[index].listens)
                    .any(|listen| listen.addr == addr && !listen.ipv6only);
                let servers = members.iter().map(|&(index, _)| index).collect();
                listeners.insert(
                    addr,
                    Listener {
                        hosts,
                        servers,
                        tls,
                        proxy_protocol,
                        dual_stack,
                    },
                );
            }
            Err(ConfigErrors(mut found)) => errors.append(&mut found),
        }
    }
    listeners
}
