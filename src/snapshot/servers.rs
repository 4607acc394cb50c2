//! Virtual servers of a snapshot: locations compiled into routes, with their proxy targets,
//! header plans and rewrite programs (an `if` with settings gives its location an alternative
//! route).

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::config::{
    self, ConfigError, ConfigErrors, ErrorKind, Handler, LocationMatch, ProxySettings, ProxyTarget,
    Span, StatusPage,
};
use crate::limits::{Limits, Zones};
use crate::peer::PeerRegistry;
use crate::rewrite::{Compiler, LocationCaptures, Program, if_configs};
use crate::route::Locations;
use crate::telemetry::access_log::{Formats, Logs};
use crate::tls::SessionStore;
use crate::tls::upstream::{TlsTarget, client_config, server_name};
use crate::upstream::Group;
use crate::vars::{Template, Vars};

use super::error_pages::ErrorPageTable;
use super::reply_headers::{Compiler as ReplyCompiler, DefaultRedirect, ReplyPlan};
use super::tls::{Termination, termination};
use super::upstreams;

/// A `server {}` block, compiled.
pub struct VirtualServer {
    /// The first `server_name` (`$server_name`), or "".
    pub name: String,
    /// The server's rewrite directives, run before a location is searched.
    pub rewrite: Program,
    /// How the `Location` of the server-level directives' redirects is written.
    pub redirects: config::RedirectRules,
    /// TLS termination, for a server on a `listen ... ssl` address.
    pub tls: Option<Termination>,
    /// Server-level realip and `allow`/`deny` (a location has its own in its settings).
    pub client: config::ClientRules,
    /// Server-level `add_header`s, for answers made before a location is chosen.
    pub response_headers: Vec<AddHeader>,
    /// Server-level response rules (`expires`, `server_tokens`), likewise.
    pub reply: ReplyPlan,
    /// The error pages in effect before any location (a location has its own in its route).
    pub error_pages: Arc<ErrorPageTable>,
    /// Some `error_page` is in effect somewhere in this server: a request's head is kept, to
    /// ask again after an error.
    pub has_error_pages: bool,
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
    /// What happens to response headers (`proxy_hide_header`, `proxy_redirect`, ...).
    pub reply: ReplyPlan,
    /// `access_log`s in effect.
    pub logs: Logs,
    /// `gzip`, compiled (None: off here).
    pub gzip: Option<crate::compress::Policy>,
    /// `limit_req` and `limit_conn` in effect (None: the location has none).
    pub limits: Option<Box<Limits>>,
    /// The location's rewrite directives.
    pub rewrite: Program,
    /// The configurations of the location's `if` blocks that carry settings, by the index the
    /// program gives them: the request is handled with one when its condition held.
    pub alternatives: Vec<Route>,
    /// A regex location whose captures the request's variables may read (None: a literal
    /// location, or nothing reads them).
    pub captures: Option<LocationCaptures>,
    /// `internal`: a request from outside gets 404.
    pub internal: bool,
    /// `error_page`s in effect here.
    pub error_pages: Arc<ErrorPageTable>,
    /// An upstream's answers here may reach an HTTP/1 client with their header lines relayed
    /// from the head as they came (`proxy::relayed`), no header map built: nothing here reads
    /// or changes them. Tether's own additions (`add_header`, a sticky cookie) go in the
    /// otherwise empty map.
    pub relays_upstream_lines: bool,
}

/// What a route does.
pub enum Action {
    /// Forward to an upstream.
    Proxy(ProxyAction),
    /// Answer with a status page.
    Status(StatusPage),
    /// No handler: 404.
    NotFound,
}

/// `proxy_pass`, compiled.
pub struct ProxyAction {
    /// Which group.
    pub target: Target,
    /// How the request URI is rewritten.
    pub uri: UriRewrite,
    /// `proxy_pass https://`: how the connection is secured (None: plain HTTP).
    pub tls: Option<UpstreamTls>,
}

/// The TLS a `proxy_pass https://` location opens its connections with.
pub enum UpstreamTls {
    /// The name is known at build time (a literal `proxy_ssl_name`, or `$proxy_host` of a
    /// named target): one target for every request, which pooled connections match by pointer.
    Fixed(Arc<TlsTarget>),
    /// The name is rendered per request (`proxy_pass https://$var`, or `proxy_ssl_name` with
    /// variables); `$proxy_host` is the rendered target.
    Rendered {
        /// The client config.
        config: Arc<rustls::ClientConfig>,
        /// `proxy_ssl_name`'s template.
        name: Template,
    },
}

/// Where a proxied request goes.
pub enum Target {
    /// A group known when the snapshot was built; `host` is `$proxy_host` (the default `Host`).
    Group {
        /// The group.
        group: Arc<Group>,
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
    /// With variables in `proxy_pass`: the URI given, rendered, replaces the whole request URI
    /// (arguments included: nginx sends it as rendered).
    Replace(Template),
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

impl VirtualServer {
    /// The route for a normalised request path (None: no location matches, 404).
    pub fn route(&self, path: &[u8]) -> Option<&Route> {
        self.locations.find(path).map(|index| &self.routes[index])
    }

    /// The named location `@name` (`name` with its `@`), or None.
    pub fn named(&self, name: &str) -> Option<&Route> {
        self.locations.named(name).map(|index| &self.routes[index])
    }
}

impl Route {
    /// Whether nothing here reads or changes an upstream answer's header lines: no reply rule
    /// beyond the defaults, no `gzip`, no log line showing a head, no `error_page` that
    /// intercepts answers (an intercepted 401 hands its challenge on). Decided once, into
    /// [`Route::relays_upstream_lines`].
    fn leaves_upstream_lines_alone(&self) -> bool {
        self.reply.leaves_upstream_lines_alone()
            && self.gzip.is_none()
            && !self.logs.reads_response_heads()
            && (self.error_pages.is_empty() || !self.error_pages.intercept)
    }

    /// Whether anything of the route renders templates per request (which may read a regex
    /// location's captures).
    fn renders_per_request(&self) -> bool {
        let rendered_uri = matches!(&self.action, Action::Proxy(p)
            if matches!(p.uri, UriRewrite::Replace(_)) || matches!(p.target, Target::Variable(_)));
        let header_templates = self.request_headers.set.iter().map(|h| &h.value);
        let added = self.response_headers.iter().map(|h| &h.value);
        rendered_uri
            || header_templates
                .chain(added)
                .any(|value| matches!(value, HeaderSource::Template(_)))
    }
}

/// Compiles server blocks; shares the group table so `proxy_pass http://host:port` targets
/// become implicit one-server groups, one per distinct address.
pub(super) struct ServerBuilder<'a> {
    pub(super) vars: &'a Arc<Vars>,
    /// The config's `limit_*_zone`s.
    pub(super) zones: &'a Zones,
    /// The config's `log_format`s, compiled.
    pub(super) formats: &'a Formats,
    pub(super) registry: &'a PeerRegistry,
    pub(super) sessions: &'a SessionStore,
    pub(super) groups: &'a mut HashMap<Arc<str>, Arc<Group>>,
    pub(super) errors: &'a mut Vec<ConfigError>,
    /// The client configs built so far, one per distinct `proxy_ssl_*` setting (None: it failed
    /// and was reported once).
    pub(super) tls_configs: Vec<(config::UpstreamSsl, Option<Arc<rustls::ClientConfig>>)>,
    /// The TLS each group's health probes use: the first `proxy_pass https://` naming it.
    pub(super) check_tls: HashMap<Arc<str>, Arc<TlsTarget>>,
}

impl ServerBuilder<'_> {
    pub(super) fn server(&mut self, server: &config::Server) -> VirtualServer {
        let locations = match Locations::build(&server.locations) {
            Ok(locations) => locations,
            Err(ConfigErrors(mut found)) => {
                self.errors.append(&mut found);
                // An empty table so the other blocks are still checked; the build fails anyway.
                Locations::default()
            }
        };
        let tls =
            server
                .tls
                .as_ref()
                .and_then(|tls| match termination(server, tls, self.sessions) {
                    Ok(termination) => Some(termination),
                    Err(mut found) => {
                        self.errors.append(&mut found);
                        None
                    }
                });
        let routes: Vec<Route> = config::all_locations(&server.locations)
            .into_iter()
            .map(|l| self.route(l))
            .collect();
        let error_pages = ErrorPageTable::build(&server.error_pages, self.vars, self.errors);
        let has_error_pages =
            !error_pages.is_empty() || routes.iter().any(|r| !r.error_pages.is_empty());
        let rewrite = self.compiler().program(&server.rewrite);
        VirtualServer {
            name: server.first_name(),
            rewrite,
            redirects: server.redirects,
            error_pages,
            has_error_pages,
            tls,
            client: server.client.clone(),
            response_headers: self.add_headers(&server.add_headers, &server.span),
            reply: self.reply(&server.response, None, false),
            locations,
            routes,
        }
    }

    fn compiler(&mut self) -> Compiler<'_> {
        Compiler {
            vars: self.vars,
            errors: self.errors,
        }
    }

    fn route(&mut self, location: &config::Location) -> Route {
        let mut route = self.settings_route(location);
        route.rewrite = self.compiler().program(&location.rewrite);
        // Each `if` with settings is the location again, with the block's settings and, if it
        // has its own `proxy_pass`, its handler.
        for config in if_configs(&location.rewrite) {
            let handler = match &config.proxy_pass {
                Some(pass) => Handler::Proxy(pass.clone()),
                None => location.handler.clone(),
            };
            let alternative = config::Location {
                handler,
                rewrite: Vec::new(),
                proxy: config.proxy.clone(),
                ..location.clone()
            };
            let alternative = self.settings_route(&alternative);
            route.alternatives.push(alternative);
        }
        let reads_captures = !route.rewrite.is_empty()
            || std::iter::once(&route)
                .chain(&route.alternatives)
                .any(Route::renders_per_request);
        if let (
            true,
            LocationMatch::Regex {
                pattern,
                case_insensitive,
            },
        ) = (reads_captures, &location.matcher)
        {
            let regex = regex::bytes::RegexBuilder::new(pattern)
                .case_insensitive(*case_insensitive)
                .build();
            // Built once already by `Locations`, whose error is the one reported.
            if let Ok(regex) = regex {
                route.captures = Some(LocationCaptures::new(regex, self.vars));
            }
        }
        route
    }

    /// A location's route without its rewrite directives.
    fn settings_route(&mut self, location: &config::Location) -> Route {
        let action = match &location.handler {
            Handler::Proxy(pass) => self.proxy_action(pass, location),
            Handler::Status(page) => Action::Status(*page),
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
        let response_headers = self.add_headers(&location.proxy.add_headers, &location.span);
        let (default, variables) = match &location.handler {
            Handler::Proxy(pass) => (
                default_redirect(pass, &location.matcher),
                matches!(pass.target, ProxyTarget::Variable(_)),
            ),
            _ => (None, false),
        };
        let reply = self.reply(&location.proxy.response, default, variables);
        let logs = Logs::build(
            &location.proxy.access_logs,
            self.formats,
            self.vars,
            self.errors,
        );
        let mut route = Route {
            gzip: crate::compress::Policy::new(&location.proxy.gzip),
            logs,
            limits: self.zones.limits(&location.proxy.limits),
            internal: location.internal,
            error_pages: ErrorPageTable::build(&location.proxy.error_pages, self.vars, self.errors),
            action,
            settings: location.proxy.clone(),
            request_headers: HeaderPlan { set, sets_host },
            response_headers,
            reply,
            rewrite: Program::default(),
            alternatives: Vec::new(),
            captures: None,
            relays_upstream_lines: false,
        };
        route.relays_upstream_lines = route.leaves_upstream_lines_alone();
        route
    }

    fn add_headers(&mut self, adds: &[config::AddHeader], span: &Span) -> Vec<AddHeader> {
        adds.iter()
            .filter_map(|add| {
                Some(AddHeader {
                    name: self.header_name(&add.name, span)?,
                    value: self.header_source(&add.value, span),
                    always: add.always,
                })
            })
            .collect()
    }

    fn reply(
        &mut self,
        rules: &config::ResponseRules,
        default: Option<DefaultRedirect>,
        variables: bool,
    ) -> ReplyPlan {
        let mut compiler = ReplyCompiler {
            vars: self.vars,
            errors: self.errors,
            templates: Vec::new(),
        };
        compiler.plan(rules, default, variables)
    }

    fn proxy_action(&mut self, pass: &config::ProxyPass, location: &config::Location) -> Action {
        let matcher = &location.matcher;
        let target = match &pass.target {
            ProxyTarget::Upstream(name) => match self.groups.get(name.as_str()) {
                Some(group) => Target::Group {
                    group: group.clone(),
                    host: header_value(name),
                },
                // The upstream failed to build; its error is already recorded.
                None => return Action::NotFound,
            },
            ProxyTarget::Address {
                host,
                port,
                port_written,
            } => {
                let bracketed = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let address = format!("{bracketed}:{port}");
                // nginx's `$proxy_host`: the port only when written.
                let proxy_host = if *port_written { &address } else { &bracketed };
                let spec =
                    config::PeerSpec::with_defaults(&address, host, *port, pass.span.clone());
                match self.implicit_group(&spec) {
                    Some(group) => Target::Group {
                        group,
                        host: header_value(proxy_host),
                    },
                    None => return Action::NotFound,
                }
            }
            ProxyTarget::Unix { path } => {
                let address = format!("unix:{path}");
                let spec = config::PeerSpec::unix_with_defaults(&address, path, pass.span.clone());
                match self.implicit_group(&spec) {
                    // nginx's `$proxy_host` for a socket: there is no host name to send.
                    Some(group) => Target::Group {
                        group,
                        host: HeaderValue::from_static("localhost"),
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
            // With variables anywhere in `proxy_pass`, nginx sends the URI part as rendered.
            (Some(uri), _, _) if uri.contains('$') => match self.template(uri, &pass.span) {
                Some(template) => UriRewrite::Replace(template),
                None => return Action::NotFound,
            },
            (Some(uri), ProxyTarget::Variable(_), _) => match self.template(uri, &pass.span) {
                Some(template) => UriRewrite::Replace(template),
                None => return Action::NotFound,
            },
            (Some(uri), _, LocationMatch::Exact(path) | LocationMatch::Prefix { path, .. }) => {
                UriRewrite::ReplacePrefix {
                    prefix: path.clone(),
                    with: uri.clone(),
                }
            }
            // Lowering rejects a URI in a regex location; pass the request URI unchanged.
            (Some(_), _, LocationMatch::Regex { .. } | LocationMatch::Named(_)) => UriRewrite::Keep,
        };
        let tls = match pass.https {
            true => match self.upstream_tls(&location.proxy.ssl, &target, &pass.span) {
                Some(tls) => Some(tls),
                None => return Action::NotFound,
            },
            false => None,
        };
        Action::Proxy(ProxyAction { target, uri, tls })
    }

    /// The TLS of a `proxy_pass https://` location: its settings' client config (shared with
    /// every location that has the same settings) and the name to verify.
    fn upstream_tls(
        &mut self,
        ssl: &config::UpstreamSsl,
        target: &Target,
        span: &Span,
    ) -> Option<UpstreamTls> {
        let config = self.client_config(ssl)?;
        let name_text = match (&ssl.name, target) {
            (Some(text), _) => text.as_str(),
            (None, Target::Group { host, .. }) => host.to_str().unwrap_or_default(),
            (None, Target::Variable(_)) => "$proxy_host",
        };
        let name = self.template(name_text, span)?;
        let Some(literal) = name.literal() else {
            return Some(UpstreamTls::Rendered { config, name });
        };
        let Some(name) = server_name(literal) else {
            let kind = ErrorKind::InvalidSslName {
                name: literal.to_string(),
            };
            self.errors
                .push(ConfigError::at(ssl.span.as_ref().unwrap_or(span), kind));
            return None;
        };
        let target_tls = Arc::new(TlsTarget { config, name });
        if let Target::Group { group, .. } = target {
            let probes = self.check_tls.entry(group.name.clone());
            probes.or_insert_with(|| target_tls.clone());
        }
        Some(UpstreamTls::Fixed(target_tls))
    }

    fn client_config(&mut self, ssl: &config::UpstreamSsl) -> Option<Arc<rustls::ClientConfig>> {
        if let Some((_, built)) = self.tls_configs.iter().find(|(seen, _)| seen.same_as(ssl)) {
            return built.clone();
        }
        let built = match client_config(ssl) {
            Ok(config) => Some(config),
            Err(mut found) => {
                self.errors.append(&mut found);
                None
            }
        };
        self.tls_configs.push((ssl.clone(), built.clone()));
        built
    }

    /// `proxy_pass http://host:port`: an implicit one-server group per distinct address,
    /// shared by every location naming it.
    /// The one-server group of `proxy_pass http://host:port` (or `http://unix:/path`), shared
    /// by every location naming the same address.
    fn implicit_group(&mut self, spec: &config::PeerSpec) -> Option<Arc<Group>> {
        if let Some(group) = self.groups.get(spec.address.as_str()) {
            return Some(group.clone());
        }
        match upstreams::implicit(spec, self.registry) {
            Ok(group) => {
                let group = Arc::new(group);
                self.groups
                    .insert(spec.address.as_str().into(), group.clone());
                Some(group)
            }
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
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

/// A header value from config text already validated as a host name or address.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// What `proxy_redirect default` stands for in a location (nginx: the `proxy_pass` URL, with
/// `/` added when it has no URI, becomes the location's name, or `/`). None with variables.
fn default_redirect(pass: &config::ProxyPass, matcher: &LocationMatch) -> Option<DefaultRedirect> {
    let scheme = if pass.https { "https" } else { "http" };
    let authority = match &pass.target {
        ProxyTarget::Upstream(name) => name.clone(),
        ProxyTarget::Address {
            host,
            port,
            port_written,
        } => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            // nginx compares with the URL as written.
            if *port_written {
                format!("{host}:{port}")
            } else {
                host
            }
        }
        ProxyTarget::Unix { path } => format!("unix:{path}:"),
        ProxyTarget::Variable(_) => return None,
    };
    let (from, to) = match (&pass.uri, matcher) {
        (Some(uri), LocationMatch::Exact(path) | LocationMatch::Prefix { path, .. }) => {
            (format!("{scheme}://{authority}{uri}"), path.clone())
        }
        _ => (format!("{scheme}://{authority}/"), "/".to_string()),
    };
    Some(DefaultRedirect { from, to })
}
