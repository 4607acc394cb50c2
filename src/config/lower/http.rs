//! The `http` and `server` contexts: virtual servers, `listen` and `server_name`.
//!
//! Settings are gathered before children are lowered (a `server` after `proxy_read_timeout` and
//! one before it inherit the same value, as in nginx, where merging happens after parsing).
//! Locations are lowered by `location`; upstreams and maps by `upstream`. The http-level
//! `sticky_secret` is handed to every `sticky cookie` group without its own. Must not import
//! `parse` or anything outside `config`: no sockets are opened to check a `listen` address.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::directives::{Context, HTTP_LEVEL_ONLY};
use super::proxy::ProxyLayer;
use super::resolver::ResolverLayer;
use super::rewrite::REWRITE_DIRECTIVES;
use super::sticky::inherit_secret;
use super::tls::TlsLayer;
use super::values::{parse_number, split_host_port};
use super::{Lowering, empty_http};
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{ClientRules, HeadRules, Http, Listen, Server, ServerName};

impl Lowering {
    /// Lowers the body of `http { ... }`.
    pub(super) fn http(&mut self, block: &[Directive]) -> Http {
        // `proxy_pass` may name an upstream defined further down, so names come first.
        self.upstream_names = block
            .iter()
            .filter(|d| d.name() == "upstream" && d.args.len() == 1)
            .map(|d| d.args[0].text.clone())
            .collect();
        // nginx compares upstream names case-insensitively; the first one written wins.
        for name in &self.upstream_names {
            let key = name.to_ascii_lowercase();
            self.upstream_keys
                .entry(key)
                .or_insert_with(|| name.clone());
        }
        self.log_format_names = block
            .iter()
            .filter(|d| d.name() == "log_format")
            .filter_map(|d| d.args.first().map(|word| word.text.clone()))
            .collect();
        // Lowercased names of the upstreams lowered so far, to find duplicates.
        let mut defined = HashSet::new();
        let mut http = empty_http();
        let mut keepalive_timeout = None;
        let mut client_header_timeout = None;
        let mut head = HeadSettings::default();
        let mut sticky_secret = None;
        let mut resolver = ResolverLayer::default();
        let mut layer = ProxyLayer::default();
        let mut tls = TlsLayer::default();
        let mut servers = Vec::new();
        for d in block {
            if !self.accepts(Context::Http, d) {
                continue;
            }
            match d.name() {
                "map" => http.maps.extend(self.map(d)),
                "log_format" => {
                    if let Some(format) = self.log_format(d, &http.log_formats) {
                        http.log_formats.push(format);
                    }
                }
                "upstream" => {
                    let name = &d.args[0].text;
                    if defined.contains(&name.to_ascii_lowercase()) {
                        let kind = ErrorKind::DuplicateUpstream { name: name.clone() };
                        self.error(&d.span, kind);
                    }
                    if let Some(upstream) = self.upstream(d) {
                        defined.insert(upstream.name.to_ascii_lowercase());
                        http.upstreams.push(upstream);
                    }
                }
                "server" => servers.push(d),
                "keepalive_timeout" => {
                    // The optional second argument (a `Keep-Alive: timeout=` header) is dropped.
                    self.once(&mut keepalive_timeout, d, |cx| cx.time(d, &d.args[0]));
                }
                "client_header_timeout" => {
                    self.once(&mut client_header_timeout, d, |cx| cx.time(d, &d.args[0]));
                }
                "large_client_header_buffers" => {
                    self.once(&mut head.buffers, d, |cx| cx.header_buffers(d));
                }
                "client_max_headers" => {
                    self.once(&mut head.max_headers, d, |cx| cx.number(d, &d.args[0], 1));
                }
                "underscores_in_headers" => {
                    self.once(&mut head.underscores, d, |cx| cx.flag(d, &d.args[0]));
                }
                "ignore_invalid_headers" => {
                    self.once(&mut head.ignore_invalid, d, |cx| cx.flag(d, &d.args[0]));
                }
                "sticky_secret" => self.once(&mut sticky_secret, d, |cx| cx.sticky_secret(d)),
                "resolver" | "resolver_timeout" => {
                    self.resolver_setting(&mut resolver, d);
                }
                "error_log" => http.error_log.extend(self.error_log(d)),
                "limit_req_zone" => http.request_zones.extend(self.limit_req_zone(d)),
                "limit_conn_zone" => http.connection_zones.extend(self.limit_conn_zone(d)),
                _ => {
                    if !self.tls_setting(&mut tls, d) {
                        self.proxy_setting(&mut layer, d);
                    }
                }
            }
        }
        http.keepalive_timeout = keepalive_timeout.unwrap_or(http.keepalive_timeout);
        http.client_header_timeout = client_header_timeout.unwrap_or(http.client_header_timeout);
        http.head_rules = head.resolve();
        http.send_timeout = layer.clone().resolve().client_send_timeout;
        inherit_secret(&mut http.upstreams, sticky_secret.as_deref());
        self.check_learn_zones(&http.upstreams);
        self.inherit_resolver(&mut http.upstreams, &resolver);
        http.resolver = resolver.over(None);
        let lowered: Vec<_> = servers
            .into_iter()
            .map(|d| self.server(d, &layer, &tls))
            .collect();
        http.servers = self.terminate_tls(lowered);
        share_proxy_protocol(&mut http.servers);
        self.check_default_servers(&http.servers);
        self.check_server_error_logs(&http.servers);
        self.check_limit_zones(&http);
        http
    }

    /// Gives TLS settings to every server on an address that some `listen ... ssl` makes TLS
    /// (nginx: the `ssl` of one server's listen holds for every server on that address), and
    /// marks all their listens on it `ssl`. A server there without a certificate is an error.
    fn terminate_tls(&mut self, lowered: Vec<(Server, TlsLayer, String)>) -> Vec<Server> {
        let tls_addresses: HashSet<SocketAddr> = lowered
            .iter()
            .flat_map(|(server, ..)| &server.listens)
            .filter(|listen| listen.ssl)
            .map(|listen| listen.addr)
            .collect();
        let mut servers = Vec::with_capacity(lowered.len());
        for (mut server, tls, scope) in lowered {
            let mut first_tls_listen = None;
            for listen in &mut server.listens {
                if tls_addresses.contains(&listen.addr) {
                    listen.ssl = true;
                    first_tls_listen.get_or_insert_with(|| listen.span.clone());
                }
            }
            server.http2 = tls.http2.unwrap_or(false) || server.listens.iter().any(|l| l.http2);
            if let Some(listen_span) = first_tls_listen {
                // A certificate without its key is reported by `server_tls` instead.
                if !tls.has_certificates() {
                    self.error(&listen_span, ErrorKind::NoCertificate);
                }
                server.tls = Some(self.server_tls(&tls, scope, &server.span));
            }
            servers.push(server);
        }
        servers
    }

    /// Lowers one `server { ... }`, its locations inheriting `outer` (the http level). Returns
    /// it with its TLS settings merged over `outer_tls` and its session scope, for
    /// [`Lowering::terminate_tls`] to use if it turns out to be on a TLS address.
    fn server(
        &mut self,
        d: &Directive,
        outer: &ProxyLayer,
        outer_tls: &TlsLayer,
    ) -> (Server, TlsLayer, String) {
        let mut server = Server {
            listens: Vec::new(),
            names: Vec::new(),
            rewrite: Vec::new(),
            redirects: Default::default(),
            locations: Vec::new(),
            tls: None,
            http2: false,
            error_log: Vec::new(),
            client: ClientRules::default(),
            add_headers: Default::default(),
            response: Default::default(),
            error_pages: Default::default(),
            span: d.span.clone(),
        };
        let mut layer = ProxyLayer::default();
        let mut tls = TlsLayer::default();
        let mut scope_names = Vec::new();
        let mut locations = Vec::new();
        let mut addresses = HashSet::new();
        for inner in d.block.as_deref().unwrap_or_default() {
            if !self.accepts(Context::Server, inner) {
                continue;
            }
            match inner.name() {
                "listen" => {
                    let Some(listen) = self.listen(inner) else {
                        continue;
                    };
                    if !addresses.insert(listen.addr) {
                        let kind = ErrorKind::DuplicateListen { addr: listen.addr };
                        self.error(&inner.span, kind);
                    }
                    server.listens.push(listen);
                }
                "server_name" => {
                    scope_names.extend(inner.args.iter().map(|w| w.text.as_str()));
                    let names = inner.args.iter().filter_map(|w| self.server_name(w));
                    server.names.extend(names.collect::<Vec<_>>());
                }
                name if REWRITE_DIRECTIVES.contains(&name) => {
                    self.rewrite_step(inner, &mut server.rewrite, None);
                }
                "location" => locations.push(inner),
                "error_log" => server.error_log.extend(self.error_log(inner)),
                "keepalive_timeout"
                | "client_header_timeout"
                | "large_client_header_buffers"
                | "client_max_headers"
                | "underscores_in_headers"
                | "ignore_invalid_headers" => self.ignore(inner, HTTP_LEVEL_ONLY),
                _ => {
                    if !self.tls_setting(&mut tls, inner) {
                        self.proxy_setting(&mut layer, inner);
                    }
                }
            }
        }
        if server.listens.is_empty() {
            server.listens.push(Listen {
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 80)),
                default_server: false,
                ssl: false,
                http2: false,
                proxy_protocol: false,
                ipv6only: true,
                unix: None,
                span: d.span.clone(),
            });
        }
        let merged = layer.over(outer);
        server.client = merged.client_rules();
        let own = merged.clone().resolve();
        (server.add_headers, server.response) = (own.add_headers, own.response);
        server.redirects = merged.redirect_rules();
        server.error_pages = merged.error_pages();
        server.locations = self.locations(&locations, &merged, None);
        let addresses: Vec<String> = (server.listens.iter())
            .map(|l| crate::config::model::shown_listen(l.addr))
            .collect();
        let scope = format!("{} @ {}", scope_names.join(" "), addresses.join(" "));
        (server, tls.over(outer_tls), scope)
    }

    /// `listen ADDRESS[:PORT] [default_server] [ssl] [http2] [proxy_protocol] [socket options]`.
    fn listen(&mut self, d: &Directive) -> Option<Listen> {
        let word = &d.args[0];
        let text = word.text.as_str();
        if let Some(path) = text.strip_prefix("unix:") {
            return self.listen_unix(d, path);
        }
        // A bare number is a port on all IPv4 addresses.
        let (host, port) = if parse_number::<u64>(text).is_some() {
            ("*", Some(text))
        } else {
            let Some(parts) = split_host_port(text) else {
                let kind = ErrorKind::InvalidAddress {
                    directive: d.name().into(),
                    address: text.into(),
                };
                self.error(&word.span, kind);
                return None;
            };
            parts
        };
        let port = match port {
            Some(port) => self.port(d, word, port)?,
            None => 80,
        };
        let ip = match host {
            "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            // The one name resolved here: nginx would resolve it, and it is always loopback.
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => {
                let Ok(ip) = host.parse() else {
                    let address = text.into();
                    self.error(&word.span, ErrorKind::ListenHostNotFound { address });
                    return None;
                };
                ip
            }
        };
        let mut listen = Listen {
            addr: SocketAddr::new(ip, port),
            default_server: false,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            ipv6only: true,
            unix: None,
            span: d.span.clone(),
        };
        for param in &d.args[1..] {
            self.listen_param(d, param, &mut listen);
        }
        Some(listen)
    }

    /// `listen unix:PATH [default_server] [proxy_protocol]`: a UNIX-domain stream socket,
    /// known by its key wherever listeners are keyed by address. `ssl` and `http2` on it are
    /// refused: TLS is only terminated on TCP here.
    fn listen_unix(&mut self, d: &Directive, path: &str) -> Option<Listen> {
        let word = &d.args[0];
        if !path.starts_with('/') {
            let kind = ErrorKind::InvalidAddress {
                directive: d.name().into(),
                address: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        }
        let path = std::path::PathBuf::from(path);
        let mut listen = Listen {
            addr: crate::config::model::unix_listen_key(&path),
            default_server: false,
            ssl: false,
            http2: false,
            proxy_protocol: false,
            ipv6only: true,
            unix: Some(path),
            span: d.span.clone(),
        };
        for param in &d.args[1..] {
            self.listen_param(d, param, &mut listen);
        }
        if listen.ssl || listen.http2 {
            let kind = ErrorKind::UnixSocketNotSupported {
                directive: format!("{} ... ssl/http2", d.name()),
                address: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        }
        Some(listen)
    }

    fn listen_param(&mut self, d: &Directive, param: &Word, listen: &mut Listen) {
        let text = param.text.as_str();
        let (key, value) = text.split_once('=').unwrap_or((text, ""));
        match (key, value) {
            ("default_server" | "default", "") => listen.default_server = true,
            ("http2", "") => listen.http2 = true,
            ("ssl", "") => listen.ssl = true,
            // Socket options the kernel defaults serve well enough; accepted for compatibility.
            ("reuseport" | "deferred" | "bind", "") => {}
            ("backlog" | "rcvbuf" | "sndbuf", v) if parse_number::<u64>(v).is_some() => {}
            ("ipv6only", "on" | "off") => listen.ipv6only = value == "on",
            ("so_keepalive", _) | ("fastopen", _) => {}
            ("proxy_protocol", "") => listen.proxy_protocol = true,
            ("quic", "") => {
                let kind = ErrorKind::ValueNotSupported {
                    directive: d.name().into(),
                    value: text.into(),
                };
                self.error(&param.span, kind);
            }
            _ => {
                let kind = ErrorKind::InvalidParameter {
                    directive: d.name().into(),
                    value: text.into(),
                };
                self.error(&param.span, kind);
            }
        }
    }

    /// One `server_name` entry. `_` and `""` are kept as exact names that no real host has.
    fn server_name(&mut self, word: &Word) -> Option<ServerName> {
        let text = word.text.as_str();
        if let Some(pattern) = text.strip_prefix('~') {
            // Kept as written: lowercasing would change escapes like `\D`.
            self.check_regex(&word.span, pattern, false);
            return Some(ServerName::Regex(pattern.to_string()));
        }
        let lower = text.to_ascii_lowercase();
        let name = if let Some(rest) = lower.strip_prefix("*.") {
            ServerName::WildcardPrefix {
                suffix: format!(".{rest}"),
                include_bare: false,
            }
        } else if lower.len() > 1 && lower.starts_with('.') {
            ServerName::WildcardPrefix {
                suffix: lower.clone(),
                include_bare: true,
            }
        } else if let Some(rest) = lower.strip_suffix(".*") {
            ServerName::WildcardSuffix(format!("{rest}."))
        } else {
            ServerName::Exact(lower.clone())
        };
        // Any `*` left after taking one wildcard off an end is misplaced, as nginx says.
        let rest = match &name {
            ServerName::WildcardPrefix { suffix, .. } => suffix,
            ServerName::WildcardSuffix(prefix) => prefix,
            ServerName::Exact(exact) => exact,
            ServerName::Regex(_) => return Some(name),
        };
        if rest.contains('*') || rest == "." {
            let kind = ErrorKind::InvalidServerName { name: text.into() };
            self.error(&word.span, kind);
            return None;
        }
        Some(name)
    }

    /// nginx allows one `default_server` per address across all servers.
    fn check_default_servers(&mut self, servers: &[Server]) {
        let mut seen = HashSet::new();
        let defaults = servers
            .iter()
            .flat_map(|s| &s.listens)
            .filter(|l| l.default_server);
        for listen in defaults {
            if !seen.insert(listen.addr) {
                let kind = ErrorKind::DuplicateDefaultServer { addr: listen.addr };
                self.error(&listen.span, kind);
            }
        }
    }
}

/// Marks every listen on an address that some `listen ... proxy_protocol` names: the header is
/// read before anything tells which server a connection is for, so it is the address's property
/// (nginx reads it per listening socket too).
fn share_proxy_protocol(servers: &mut [Server]) {
    let addresses: HashSet<SocketAddr> = servers
        .iter()
        .flat_map(|server| &server.listens)
        .filter(|listen| listen.proxy_protocol)
        .map(|listen| listen.addr)
        .collect();
    let listens = servers.iter_mut().flat_map(|server| &mut server.listens);
    for listen in listens.filter(|listen| addresses.contains(&listen.addr)) {
        listen.proxy_protocol = true;
    }
}

/// The http-level settings of how request heads are read; unset ones keep nginx's defaults.
#[derive(Default)]
struct HeadSettings {
    /// `large_client_header_buffers NUMBER SIZE`.
    buffers: Option<(usize, usize)>,
    max_headers: Option<usize>,
    underscores: Option<bool>,
    ignore_invalid: Option<bool>,
}

impl HeadSettings {
    fn resolve(self) -> HeadRules {
        let defaults = HeadRules::default();
        let (max_line, max_head) = match self.buffers {
            Some((number, size)) => (size, number.saturating_mul(size)),
            None => (defaults.max_line, defaults.max_head),
        };
        HeadRules {
            max_line,
            max_head,
            max_headers: self.max_headers.unwrap_or(defaults.max_headers),
            underscores: self.underscores.unwrap_or(defaults.underscores),
            ignore_invalid: self.ignore_invalid.unwrap_or(defaults.ignore_invalid),
        }
    }
}

impl Lowering {
    /// `large_client_header_buffers NUMBER SIZE`: at least one buffer of at least 1k (a
    /// request line shorter than that is too small for any real client).
    fn header_buffers(&mut self, d: &Directive) -> Option<(usize, usize)> {
        let number = self.number::<usize>(d, &d.args[0], 1)?;
        let size = self.size(d, &d.args[1])?;
        if size < 1024 {
            self.error(
                &d.args[1].span,
                ErrorKind::InvalidValue {
                    directive: d.name().into(),
                    value: d.args[1].text.clone(),
                },
            );
            return None;
        }
        Some((number, usize::try_from(size).unwrap_or(usize::MAX)))
    }
}
