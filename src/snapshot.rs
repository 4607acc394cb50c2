//! The immutable runtime built from one [`Config`]: virtual servers per listen address, compiled
//! locations, precompiled header plans and templates, and upstream groups over live peers.
//!
//! Requests read it through one atomic load; a reload builds a whole new snapshot and swaps it,
//! so no request ever sees half a config. Building resolves every name, compiles every template
//! and regex, and reports every error with its span — all before anything serves.
//!
//! No hyper here: only `http` types for precompiled header names and values.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::balance::Method;
use crate::config::{
    self, BalanceMethod, Config, ConfigError, ConfigErrors, ErrorKind, Handler, HealthCheck,
    LocationMatch, ProxySettings, ProxyTarget, Span,
};
use crate::cookie::CookieIssuer;
use crate::peer::{FailPolicy, PeerKey, PeerRegistry};
use crate::route::{Locations, VirtualHosts};
use crate::upstream::{Group, Member, MemberSpec, StickyMode};
use crate::vars::{Template, Vars};

/// Idle connections kept per upstream server when the config sets no `keepalive`.
const DEFAULT_IDLE_PER_PEER: usize = 64;
/// Upstream keep-alive timeout for `proxy_pass http://host:port` (no `upstream` block).
const DEFAULT_UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// One consistent runtime view of a config.
pub struct Snapshot {
    /// Increases by one with every successful reload (1 for the first config).
    pub generation: u64,
    /// Compiled `map`s, needed to render any template.
    pub vars: Vars,
    /// `keepalive_timeout` for client connections.
    pub keepalive_timeout: Duration,
    /// `client_header_timeout`.
    pub client_header_timeout: Duration,
    listeners: HashMap<SocketAddr, Listener>,
    servers: Vec<VirtualServer>,
    groups: HashMap<Arc<str>, Arc<Upstream>>,
}

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

/// The virtual servers reachable on one listen address.
struct Listener {
    hosts: VirtualHosts,
    /// Indexes into `Snapshot::servers`, in the order `hosts` knows them.
    servers: Vec<usize>,
}

/// A `server {}` block, compiled.
pub struct VirtualServer {
    /// The first `server_name` (`$server_name`), or "".
    pub name: String,
    /// A server-level `return`, applied before locations.
    pub return_: Option<ReturnAction>,
    locations: Locations,
    routes: Vec<Route>,
}

/// A location, compiled: what to do with a request that matched it.
pub struct Route {
    /// The handler.
    pub action: Action,
    /// Effective proxy settings (timeouts, body limit, retries).
    pub settings: ProxySettings,
    /// `proxy_set_header`, precompiled.
    pub request_headers: HeaderPlan,
    /// `add_header`, precompiled.
    pub response_headers: Vec<AddHeader>,
}

/// What a route does.
pub enum Action {
    /// Forward to an upstream.
    Proxy(ProxyAction),
    /// Answer directly.
    Return(ReturnAction),
    /// No handler: 404.
    NotFound,
}

/// `proxy_pass`, compiled.
pub struct ProxyAction {
    /// Which group.
    pub target: Target,
    /// How the request URI is rewritten.
    pub uri: UriRewrite,
}

/// Where a proxied request goes.
pub enum Target {
    /// A group known when the snapshot was built; `host` is `$proxy_host` (the default `Host`).
    Group {
        /// The group.
        upstream: Arc<Upstream>,
        /// `$proxy_host` as a ready header value.
        host: HeaderValue,
    },
    /// `proxy_pass http://$var...`: the rendered name must be an upstream group.
    Variable(Template),
}

/// nginx's rule for the URI sent upstream.
pub enum UriRewrite {
    /// `proxy_pass` without a URI: the request URI as the client sent it.
    Keep,
    /// With a URI: the part matching the location prefix is replaced by it.
    ReplacePrefix {
        /// The location's prefix (or exact path).
        prefix: String,
        /// The `proxy_pass` URI.
        with: String,
    },
    /// With variables in `proxy_pass`: the URI given replaces the whole request URI.
    Replace(String),
}

/// `return`, compiled.
pub struct ReturnAction {
    /// Status code.
    pub code: StatusCode,
    /// Body text, or the redirect URL for 301/302/303/307/308.
    pub text: Option<Template>,
}

/// `proxy_set_header` lines of one location, compiled.
pub struct HeaderPlan {
    /// In config order.
    pub set: Vec<SetHeader>,
    /// Whether `Host` is among them (else `$proxy_host` is sent, as nginx).
    pub sets_host: bool,
}

/// One `proxy_set_header`.
pub struct SetHeader {
    /// Header name.
    pub name: HeaderName,
    /// Its value.
    pub value: HeaderSource,
}

/// A header value known at build time, or rendered per request.
pub enum HeaderSource {
    /// A fixed value.
    Fixed(HeaderValue),
    /// Rendered per request; an empty result removes the header (nginx).
    Template(Template),
    /// An empty literal: the header is removed.
    Remove,
}

/// One `add_header`, compiled.
pub struct AddHeader {
    /// Header name.
    pub name: HeaderName,
    /// Value.
    pub value: HeaderSource,
    /// `always`: on every status, not only 2xx/3xx.
    pub always: bool,
}

impl Snapshot {
    /// Builds a snapshot from `config`, taking live peers from `registry` so that servers that
    /// stay keep their state. Resolves host names (blocking). Reports every error found.
    pub fn build(
        config: &Config,
        registry: &PeerRegistry,
        generation: u64,
    ) -> Result<Snapshot, ConfigErrors> {
        let mut errors = Vec::new();
        let vars = match Vars::build(&config.http.maps) {
            Ok(vars) => vars,
            Err(ConfigErrors(mut found)) => {
                errors.append(&mut found);
                return Err(ConfigErrors(errors));
            }
        };
        let mut groups = HashMap::new();
        for upstream in &config.http.upstreams {
            match build_upstream(upstream, registry, &vars) {
                Ok(built) => {
                    groups.insert(built.group.name.clone(), Arc::new(built));
                }
                Err(mut found) => errors.append(&mut found),
            }
        }
        let mut builder = ServerBuilder {
            vars: &vars,
            registry,
            groups: &mut groups,
            errors: &mut errors,
        };
        let servers: Vec<VirtualServer> = config
            .http
            .servers
            .iter()
            .map(|server| builder.server(server))
            .collect();
        let listeners = build_listeners(&config.http.servers, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Snapshot {
            generation,
            vars,
            keepalive_timeout: config.http.keepalive_timeout,
            client_header_timeout: config.http.client_header_timeout,
            listeners,
            servers,
            groups,
        })
    }

    /// The addresses this config listens on.
    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.keys().copied()
    }

    /// The virtual server for a request that arrived on `listen` with this `host` (lowercase,
    /// without port). None only if `listen` is not in this config (a listener being retired).
    pub fn server(&self, listen: SocketAddr, host: &str) -> Option<&VirtualServer> {
        let listener = self.listeners.get(&listen)?;
        let index = listener.servers[listener.hosts.find(host)];
        Some(&self.servers[index])
    }

    /// A named upstream group (`proxy_pass http://$var` looks groups up by name per request).
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.groups.get(name)
    }

    /// Every group, for status pages, health checks and tests.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.groups.values()
    }
}

impl VirtualServer {
    /// The route for a request path (None: no location matches, 404).
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.locations.find(path).map(|index| &self.routes[index])
    }
}

/// Groups the servers by listen address and builds each address's name lookup.
fn build_listeners(
    servers: &[config::Server],
    errors: &mut Vec<ConfigError>,
) -> HashMap<SocketAddr, Listener> {
    let mut by_addr: HashMap<SocketAddr, Vec<(usize, bool)>> = HashMap::new();
    for (index, server) in servers.iter().enumerate() {
        for listen in &server.listens {
            by_addr
                .entry(listen.addr)
                .or_default()
                .push((index, listen.default_server));
        }
    }
    let mut listeners = HashMap::new();
    for (addr, members) in by_addr {
        let names: Vec<(&[config::ServerName], bool)> = members
            .iter()
            .map(|&(index, default)| (servers[index].names.as_slice(), default))
            .collect();
        match VirtualHosts::build(&names) {
            Ok(hosts) => {
                let servers = members.iter().map(|&(index, _)| index).collect();
                listeners.insert(addr, Listener { hosts, servers });
            }
            Err(ConfigErrors(mut found)) => errors.append(&mut found),
        }
    }
    listeners
}

fn build_upstream(
    upstream: &config::Upstream,
    registry: &PeerRegistry,
    vars: &Vars,
) -> Result<Upstream, Vec<ConfigError>> {
    let name: Arc<str> = upstream.name.as_str().into();
    let idle_limit = upstream.keepalive.unwrap_or(DEFAULT_IDLE_PER_PEER);
    let mut errors = Vec::new();
    let mut members = Vec::new();
    for spec in &upstream.servers {
        match resolve(&spec.host, spec.port, &spec.address, &spec.span) {
            Ok(addrs) => members.push(Member {
                peer: registry.get_or_insert(
                    PeerKey {
                        group: name.clone(),
                        address: spec.address.as_str().into(),
                    },
                    addrs,
                    idle_limit,
                ),
                spec: member_spec(spec),
            }),
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

fn resolve(
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

/// Compiles server blocks; shares the group table so `proxy_pass http://host:port` targets
/// become implicit one-server groups, one per distinct address.
struct ServerBuilder<'a> {
    vars: &'a Vars,
    registry: &'a PeerRegistry,
    groups: &'a mut HashMap<Arc<str>, Arc<Upstream>>,
    errors: &'a mut Vec<ConfigError>,
}

impl ServerBuilder<'_> {
    fn server(&mut self, server: &config::Server) -> VirtualServer {
        let locations = match Locations::build(&server.locations) {
            Ok(locations) => locations,
            Err(ConfigErrors(mut found)) => {
                self.errors.append(&mut found);
                // A placeholder so the other blocks are still checked; the build fails anyway.
                Locations::build(&[]).unwrap_or_else(|_| unreachable!("no locations, no errors"))
            }
        };
        VirtualServer {
            name: server.names.first().map(name_text).unwrap_or_default(),
            return_: server.return_.as_ref().map(|r| self.return_action(r)),
            locations,
            routes: server.locations.iter().map(|l| self.route(l)).collect(),
        }
    }

    fn route(&mut self, location: &config::Location) -> Route {
        let action = match &location.handler {
            Handler::Proxy(pass) => self.proxy_action(pass, &location.matcher),
            Handler::Return(r) => Action::Return(self.return_action(r)),
            Handler::NotFound => Action::NotFound,
        };
        let set = location
            .proxy
            .set_headers
            .iter()
            .filter_map(|(name, value)| {
                Some(SetHeader {
                    name: self.header_name(name, &location.span)?,
                    value: self.header_source(value, &location.span),
                })
            })
            .collect::<Vec<_>>();
        let sets_host = set.iter().any(|h| h.name == http::header::HOST);
        let response_headers = location
            .proxy
            .add_headers
            .iter()
            .filter_map(|add| {
                Some(AddHeader {
                    name: self.header_name(&add.name, &location.span)?,
                    value: self.header_source(&add.value, &location.span),
                    always: add.always,
                })
            })
            .collect();
        Route {
            action,
            settings: location.proxy.clone(),
            request_headers: HeaderPlan { set, sets_host },
            response_headers,
        }
    }

    fn proxy_action(&mut self, pass: &config::ProxyPass, matcher: &LocationMatch) -> Action {
        let target = match &pass.target {
            ProxyTarget::Upstream(name) => match self.groups.get(name.as_str()) {
                Some(upstream) => Target::Group {
                    upstream: upstream.clone(),
                    host: header_value(name),
                },
                // The upstream failed to build; its error is already recorded.
                None => return Action::NotFound,
            },
            ProxyTarget::Address { host, port } => {
                let address = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                match self.implicit_group(host, *port, &address, &pass.span) {
                    Some(upstream) => Target::Group {
                        upstream,
                        host: header_value(&address),
                    },
                    None => return Action::NotFound,
                }
            }
            ProxyTarget::Variable(text) => match self.vars.compile(text, &pass.span) {
                Ok(template) => Target::Variable(template),
                Err(error) => {
                    self.errors.push(error);
                    return Action::NotFound;
                }
            },
        };
        let uri = match (&pass.uri, &pass.target, matcher) {
            (None, _, _) => UriRewrite::Keep,
            (Some(uri), ProxyTarget::Variable(_), _) => UriRewrite::Replace(uri.clone()),
            (Some(uri), _, LocationMatch::Exact(path) | LocationMatch::Prefix { path, .. }) => {
                UriRewrite::ReplacePrefix {
                    prefix: path.clone(),
                    with: uri.clone(),
                }
            }
            // Lowering rejects a URI in a regex location; pass the request URI unchanged.
            (Some(_), _, LocationMatch::Regex { .. }) => UriRewrite::Keep,
        };
        Action::Proxy(ProxyAction { target, uri })
    }

    fn implicit_group(
        &mut self,
        host: &str,
        port: u16,
        address: &str,
        span: &Span,
    ) -> Option<Arc<Upstream>> {
        if let Some(group) = self.groups.get(address) {
            return Some(group.clone());
        }
        let addrs = match resolve(host, port, address, span) {
            Ok(addrs) => addrs,
            Err(error) => {
                self.errors.push(error);
                return None;
            }
        };
        let name: Arc<str> = address.into();
        let peer = self.registry.get_or_insert(
            PeerKey {
                group: name.clone(),
                address: name.clone(),
            },
            addrs,
            DEFAULT_IDLE_PER_PEER,
        );
        // nginx's defaults for a server line without parameters.
        let member = Member {
            peer,
            spec: MemberSpec {
                weight: 1,
                fail_policy: FailPolicy {
                    max_fails: 1,
                    fail_timeout_ms: 10_000,
                },
                max_conns: 0,
                backup: false,
                down: false,
                drain: false,
                slow_start: Duration::ZERO,
                route: None,
            },
        };
        let group = Group::new(
            name.clone(),
            Method::RoundRobin,
            vec![member],
            None,
            DEFAULT_UPSTREAM_KEEPALIVE,
        );
        let upstream = Arc::new(Upstream {
            group: Arc::new(group),
            hash_key: None,
            sticky_route: Vec::new(),
            cookie: None,
            health_check: None,
        });
        self.groups.insert(name, upstream.clone());
        Some(upstream)
    }

    fn return_action(&mut self, r: &config::Return) -> ReturnAction {
        let code = StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = r
            .text
            .as_ref()
            .and_then(|text| self.template(text, &r.span));
        ReturnAction { code, text }
    }

    fn header_name(&mut self, name: &str, span: &Span) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.errors.push(ConfigError {
                    span: Some(span.clone()),
                    kind: ErrorKind::InvalidHeaderName {
                        name: name.to_string(),
                    },
                });
                None
            }
        }
    }

    fn header_source(&mut self, value: &str, span: &Span) -> HeaderSource {
        if value.is_empty() {
            return HeaderSource::Remove;
        }
        let Some(template) = self.template(value, span) else {
            return HeaderSource::Remove;
        };
        match template.literal() {
            Some(text) => match HeaderValue::from_str(text) {
                Ok(value) => HeaderSource::Fixed(value),
                Err(_) => {
                    self.errors.push(ConfigError {
                        span: Some(span.clone()),
                        kind: ErrorKind::InvalidHeaderValue {
                            value: text.to_string(),
                        },
                    });
                    HeaderSource::Remove
                }
            },
            None => HeaderSource::Template(template),
        }
    }

    fn template(&mut self, text: &str, span: &Span) -> Option<Template> {
        match self.vars.compile(text, span) {
            Ok(template) => Some(template),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }
}

fn name_text(name: &config::ServerName) -> String {
    match name {
        config::ServerName::Exact(name) => name.clone(),
        config::ServerName::WildcardPrefix {
            suffix,
            include_bare,
        } => {
            if *include_bare {
                suffix.clone()
            } else {
                format!("*{suffix}")
            }
        }
        config::ServerName::WildcardSuffix(prefix) => format!("{prefix}*"),
        config::ServerName::Regex(pattern) => format!("~{pattern}"),
    }
}

/// A header value from config text already validated as a host name or address.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}
