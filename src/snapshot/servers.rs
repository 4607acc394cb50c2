//! Virtual servers of a snapshot: locations compiled into routes, with their proxy targets,
//! header plans and `return`s.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::{
    self, ConfigError, ConfigErrors, ErrorKind, Handler, LocationMatch, ProxySettings, ProxyTarget,
    Span, StatusPage,
};
use crate::peer::PeerRegistry;
use crate::route::Locations;
use crate::telemetry::access_log::{Formats, Logs};
use crate::tls::SessionStore;
use crate::tls::upstream::{TlsTarget, client_config, server_name};
use crate::upstream::Group;
use crate::vars::{Template, Vars};

use super::error_pages::ErrorPageTable;
use super::tls::{Termination, termination};
use super::upstreams;

/// A `server {}` block, compiled.
pub struct VirtualServer {
    /// The first `server_name` (`$server_name`), or "".
    pub name: String,
    /// A server-level `return`, applied before locations.
    pub return_: Option<ReturnAction>,
    /// TLS termination, for a server on a `listen ... ssl` address.
    pub tls: Option<Termination>,
    /// Server-level realip and `allow`/`deny` (a location has its own in its settings).
    pub client: config::ClientRules,
    /// The error pages in effect before any location (a location has its own in its route).
    pub error_pages: Arc<ErrorPageTable>,
    /// Some `error_page` is in effect somewhere in this server: a request's head is kept, to
    /// ask again after an error.
    pub redirects: bool,
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
    /// `access_log`s in effect.
    pub logs: Logs,
    /// `internal`: a request from outside gets 404.
    pub internal: bool,
    /// `error_page`s in effect here.
    pub error_pages: Arc<ErrorPageTable>,
}

/// What a route does.
pub enum Action {
    /// Forward to an upstream.
    Proxy(ProxyAction),
    /// Answer directly.
    Return(ReturnAction),
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

/// Compiles server blocks; shares the group table so `proxy_pass http://host:port` targets
/// become implicit one-server groups, one per distinct address.
pub(super) struct ServerBuilder<'a> {
    pub(super) vars: &'a Arc<Vars>,
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
        let redirects = !error_pages.is_empty() || routes.iter().any(|r| !r.error_pages.is_empty());
        VirtualServer {
            name: server.first_name(),
            error_pages,
            redirects,
            return_: server.return_.as_ref().map(|r| self.return_action(r)),
            tls,
            client: server.client.clone(),
            locations,
            routes,
        }
    }

    fn route(&mut self, location: &config::Location) -> Route {
        let action = match &location.handler {
            Handler::Proxy(pass) => self.proxy_action(pass, location),
            Handler::Return(r) => Action::Return(self.return_action(r)),
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
        let logs = Logs::build(
            &location.proxy.access_logs,
            self.formats,
            self.vars,
            self.errors,
        );
        Route {
            logs,
            internal: location.internal,
            error_pages: ErrorPageTable::build(&location.proxy.error_pages, self.vars, self.errors),
            action,
            settings: location.proxy.clone(),
            request_headers: HeaderPlan { set, sets_host },
            response_headers,
        }
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
            ProxyTarget::Address { host, port } => {
                let address = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                match self.implicit_group(host, *port, &address, &pass.span) {
                    Some(group) => Target::Group {
                        group,
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
    fn implicit_group(
        &mut self,
        host: &str,
        port: u16,
        address: &str,
        span: &Span,
    ) -> Option<Arc<Group>> {
        if let Some(group) = self.groups.get(address) {
            return Some(group.clone());
        }
        match upstreams::implicit(host, port, address, span, self.registry) {
            Ok(group) => {
                let group = Arc::new(group);
                self.groups.insert(address.into(), group.clone());
                Some(group)
            }
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
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

/// A header value from config text already validated as a host name or address.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}
