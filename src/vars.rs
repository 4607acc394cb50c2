//! Variables (`$host`, `$http_x`, `$cookie_x`, ...) and `map` blocks: templates compiled once per
//! config snapshot, rendered per request.
//!
//! Owns [`Vars`] (the compiled maps of one config), [`Template`] (a string split into literal
//! parts and resolved variable references) and [`RequestInfo`] (everything a variable can read
//! about a request). All parsing and name resolution happens when compiling, so rendering is a
//! walk over parts that only appends to the caller's buffer — maps included: a map's source text
//! is rendered into that same buffer, matched there, and cut out again.
//!
//! May use `http` types and `regex`; must not import hyper or tokio (the proxy builds a
//! `RequestInfo` from its hyper request).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::header_list::HeaderList;
use http::{HeaderName, Method, Uri, Version};

use crate::config::{self, ConfigError, ConfigErrors, ErrorKind, Span};
use crate::realip::Proxied;
use crate::tls::TlsSession;

pub mod clock;
mod early;
mod header_values;
mod in_place;
mod late;
mod locals;
mod map;
mod numbers;

pub use early::{Early, Raw};
pub use header_values::{find_cookie, push_basic_user};
use header_values::{push_cookie, push_header, push_lossy, push_remote_user};
pub use late::{Late, Phase, RequestFacts, ResponseFacts, Segment, empty_request};
pub use locals::Locals;
use map::{CompiledMap, find_cycles, render_map};
pub use numbers::{push_ip, push_u64};

/// Everything a variable can read about one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The request method.
    pub method: &'a Method,
    /// Origin-form for HTTP/1, absolute-form for HTTP/2, as received (`$request_uri`, `$args`).
    pub uri: &'a Uri,
    /// `$uri`: the path normalised as nginx does (percent-decoded, slashes merged, `.` and `..`
    /// resolved, see [`crate::route::path`]); decoded bytes need not be UTF-8.
    pub path: &'a [u8],
    /// The host, normalised as [`crate::route::host`] does (lowercase, no port, no trailing
    /// dot); `""` when the request names none.
    pub host: &'a str,
    /// The protocol version the client spoke.
    pub version: Version,
    /// The request headers as received.
    pub headers: &'a HeaderList,
    /// The client's address (`$remote_addr`, `$remote_port`): the real one when realip found
    /// it, else the peer's. Port 0 when the real address came without one.
    pub client: SocketAddr,
    /// The connection's peer, before realip replaced it (`$realip_remote_addr`,
    /// `$realip_remote_port`).
    pub peer: SocketAddr,
    /// What the connection's PROXY protocol header said (`$proxy_protocol_addr`, ...).
    pub proxy_protocol: Option<Proxied>,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// `"http"` or `"https"`.
    pub scheme: &'a str,
    /// The connection's TLS handshake, if it speaks TLS (`$https`, `$ssl_*`).
    pub tls: Option<&'a TlsSession>,
    /// First server_name of the chosen server (`""` if none).
    pub server_name: &'a str,
    /// The proxy_pass authority as written (`$proxy_host`).
    pub proxy_host: &'a str,
    /// `$request_id`, `$connection`, `$connection_requests`.
    pub facts: &'a RequestFacts,
    /// What the response side knows (the access log, filling a line); None before there is a
    /// response, when [`Late`] variables render empty (the time ones read the clock).
    pub late: Option<&'a dyn ResponseFacts>,
    /// What the rewrite phases gave the request (`set` values, captures, a rewritten `$uri`
    /// and `$args`); None before them, or for a request that had none.
    pub locals: Option<&'a Locals>,
}

impl std::fmt::Debug for dyn ResponseFacts + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFacts")
    }
}

impl<'a> RequestInfo<'a> {
    /// `$uri`: the normalised path, or what a rewrite made of it.
    pub fn current_path(&self) -> &'a [u8] {
        self.locals.and_then(Locals::uri).unwrap_or(self.path)
    }

    /// `$args`: the query as received, or what a rewrite or `set $args` made of it.
    pub fn current_args(&self) -> &'a str {
        match self.locals.and_then(Locals::args) {
            Some(args) => args,
            None => self.uri.query().unwrap_or(""),
        }
    }

    /// `$request_uri`: path and query as received.
    fn request_uri(&self) -> &'a str {
        self.uri
            .path_and_query()
            .map_or_else(|| self.uri.path(), |pq| pq.as_str())
    }
}

/// The compiled `map` blocks of one config: what a [`Template`]'s map references point into.
#[derive(Debug)]
pub struct Vars {
    maps: Vec<CompiledMap>,
    /// Lowercased variable name -> index into `maps`.
    names: HashMap<String, usize>,
    /// Lowercased `set` variable (and named capture) name -> its slot in [`Locals`].
    sets: HashMap<String, usize>,
}

/// What `set $NAME` (or a named capture) writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settable {
    /// A variable of the config's own, by its slot in [`Locals`].
    Slot(usize),
    /// `$args` (or `$query_string`): the request's arguments.
    Args,
}

impl Vars {
    /// Compiles every `map` of a config. Maps may reference each other in any file order; all
    /// errors are collected (unknown variables, bad regexes, duplicate names and entries,
    /// cycles between maps).
    pub fn build(maps: &[config::Map]) -> Result<Vars, ConfigErrors> {
        Vars::build_with(maps, &[])
    }

    /// As [`Vars::build`], with the variables `set` (and named regex captures) declare:
    /// nginx's variables are the config's, so a map or header anywhere may read one.
    /// `declared` are names without `$`; naming a built-in or a map is an error (except
    /// `args`, which `set` may change).
    pub fn build_with(
        maps: &[config::Map],
        declared: &[(String, Span)],
    ) -> Result<Vars, ConfigErrors> {
        let mut errors = Vec::new();
        let vars = Vars::build_reporting(maps, declared, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(vars)
    }

    /// As [`Vars::build`], adding errors to `errors` and returning the maps anyway, so that a
    /// config check goes on to find the errors of everything that uses them. Vars built with
    /// errors must never evaluate a request (a cycle would not end).
    pub fn build_reporting(
        maps: &[config::Map],
        declared: &[(String, Span)],
        errors: &mut Vec<ConfigError>,
    ) -> Vars {
        let mut names = HashMap::new();
        for (index, map) in maps.iter().enumerate() {
            // nginx variable names are case-insensitive.
            let name = map.variable.to_ascii_lowercase();
            if builtin(&name).is_some() || names.contains_key(&name) {
                errors.push(error_at(
                    &map.span,
                    ErrorKind::DuplicateVariable {
                        name: map.variable.clone(),
                    },
                ));
            } else {
                names.insert(name, index);
            }
        }
        let sets = declare(declared, &names, errors);
        // Every name is known before any template is compiled: that is what makes forward
        // references work.
        let compiled: Vec<CompiledMap> = maps
            .iter()
            .map(|map| CompiledMap::compile(map, &names, &sets, errors))
            .collect();
        find_cycles(maps, &compiled, errors);
        Vars {
            maps: compiled,
            names,
            sets,
        }
    }

    /// What `set $name` writes to (None: the name was not declared to [`Vars::build_with`]).
    pub fn settable(&self, name: &str) -> Option<Settable> {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "args" | "query_string") {
            return Some(Settable::Args);
        }
        self.sets.get(&lower).map(|&slot| Settable::Slot(slot))
    }

    /// Compiles a template (a header value, a `hash` key, `return` text) against this config's
    /// variables. `span` is where the text was written, for the error.
    pub fn compile(&self, text: &str, span: &Span) -> Result<Template, ConfigError> {
        let scope = Scope {
            maps: &self.names,
            sets: &self.sets,
            captures: false,
        };
        parse(text, &scope).map_err(|kind| error_at(span, kind))
    }
}

/// Gives each declared `set` name a slot, refusing the names tether computes itself.
fn declare(
    declared: &[(String, Span)],
    maps: &HashMap<String, usize>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, usize> {
    let mut sets = HashMap::new();
    let none = HashMap::new();
    let computed = Scope {
        maps,
        sets: &none,
        captures: false,
    };
    for (name, span) in declared {
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "args" | "query_string") || sets.contains_key(&lower) {
            continue;
        }
        if lower.bytes().all(|b| b.is_ascii_digit()) || computed.resolve(&lower).is_ok() {
            let kind = ErrorKind::UnchangeableVariable { name: name.clone() };
            errors.push(error_at(span, kind));
            continue;
        }
        let slot = sets.len();
        sets.insert(lower, slot);
    }
    sets
}

fn error_at(span: &Span, kind: ErrorKind) -> ConfigError {
    ConfigError {
        span: Some(span.clone()),
        kind,
    }
}

/// A string with variables, split at compile time into literal parts and resolved references.
#[derive(Clone, Debug, Default)]
pub struct Template {
    parts: Box<[Part]>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(Box<str>),
    Var(Var),
}

/// Which fact of a TLS handshake an `$ssl_*` variable shows.
#[derive(Clone, Copy, Debug)]
enum SslFact {
    Protocol,
    Cipher,
    ServerName,
    SessionReused,
    ClientVerify,
    ClientSubject,
}

/// Which address of a PROXY protocol header a `$proxy_protocol_*` variable shows.
#[derive(Clone, Copy, Debug)]
enum ProxyFact {
    Addr,
    Port,
    ServerAddr,
    ServerPort,
}

/// One resolved variable reference.
#[derive(Clone, Debug)]
enum Var {
    Host,
    RemoteAddr,
    RemotePort,
    /// `$realip_remote_addr`, `$realip_remote_port`: the peer before realip.
    RealipRemoteAddr,
    RealipRemotePort,
    /// `$proxy_protocol_addr`, `_port`, `_server_addr`, `_server_port`: empty without a header.
    ProxyProtocol(ProxyFact),
    ServerAddr,
    ServerPort,
    Scheme,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    IsArgs,
    ServerName,
    ServerProtocol,
    Request,
    ProxyHost,
    /// `$proxy_port`: the port of `$proxy_host`, 80 when it names none.
    ProxyPort,
    ProxyAddXForwardedFor,
    /// `$https`: `on` over TLS, else empty.
    Https,
    /// `$ssl_*`: a fact of the TLS handshake (empty over plain text).
    Ssl(SslFact),
    /// `$http_NAME`, `$content_type`, `$content_length`.
    Header(HeaderName),
    /// `$arg_NAME`, the name as written (compared case-insensitively, as nginx).
    Arg(Box<str>),
    /// `$cookie_NAME`, the name as written (compared case-insensitively, as nginx).
    Cookie(Box<str>),
    /// A `map` variable: index into [`Vars::maps`].
    Map(usize),
    /// `$remote_user`: the user of a `Basic` `Authorization`.
    RemoteUser,
    /// `$request_id`.
    RequestId,
    /// `$connection`.
    Connection,
    /// `$connection_requests`.
    ConnectionRequests,
    /// `$pipe`: always `.` (tether does not tell pipelined requests apart).
    Pipe,
    /// Known with the response (see [`Late`]).
    Late(Late),
    /// `$1`..`$9` inside a map value.
    Capture(usize),
    /// `$1`..`$9` elsewhere: the last regex the request matched (location, `if`, `rewrite`).
    Match(usize),
    /// A `set` variable or named capture, by slot in [`Locals`].
    Set(usize),
}

impl Template {
    /// The text, when the template has no variables (lets callers precompile a `HeaderValue`).
    pub fn literal(&self) -> Option<&str> {
        match &*self.parts {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Whether rendering depends on the request.
    pub fn has_variables(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Var(_)))
    }

    /// Appends the rendered text to `out`. An unset variable renders as empty. `vars` must be the
    /// [`Vars`] this template was compiled by; with another, unknown maps render as empty.
    pub fn render(&self, vars: &Vars, req: &RequestInfo, out: &mut String) {
        render_parts(&self.parts, vars, req, &NO_CAPTURES, out);
    }

    fn uses_captures(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Var(Var::Capture(_))))
    }

    fn map_references(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(Var::Map(index)) => Some(*index),
            _ => None,
        })
    }
}

/// What a template may name while it is compiled.
struct Scope<'a> {
    /// Lowercased map variable names.
    maps: &'a HashMap<String, usize>,
    /// Lowercased `set` variable names.
    sets: &'a HashMap<String, usize>,
    /// `$1`..`$9` are allowed (map values only).
    captures: bool,
}

impl Scope<'_> {
    fn resolve(&self, name: &str) -> Result<Var, ErrorKind> {
        let lower = name.to_ascii_lowercase();
        if let Some(var) = builtin(&lower) {
            return Ok(var);
        }
        if let Some(&index) = self.maps.get(&lower) {
            return Ok(Var::Map(index));
        }
        if let Some(&slot) = self.sets.get(&lower) {
            return Ok(Var::Set(slot));
        }
        if let [digit @ b'0'..=b'9'] = lower.as_bytes() {
            let group = usize::from(digit - b'0');
            return Ok(match self.captures {
                true => Var::Capture(group),
                false => Var::Match(group),
            });
        }
        // The prefix families; `name[n..]` is safe to slice because the prefixes are ASCII.
        if let Some(header) = lower.strip_prefix("http_").filter(|h| !h.is_empty()) {
            // Names are `[a-z0-9_]+` here, so after `_` -> `-` they are valid header names.
            if let Ok(header) = HeaderName::from_bytes(header.replace('_', "-").as_bytes()) {
                return Ok(Var::Header(header));
            }
        }
        if let Some(late) = Late::by_name(&lower) {
            return Ok(Var::Late(late));
        }
        for (prefix, late) in [
            (
                "upstream_http_",
                Late::UpstreamHttp as fn(HeaderName) -> Late,
            ),
            ("sent_http_", Late::SentHttp),
        ] {
            if let Some(header) = lower.strip_prefix(prefix).filter(|h| !h.is_empty())
                && let Ok(header) = HeaderName::from_bytes(header.replace('_', "-").as_bytes())
            {
                return Ok(Var::Late(late(header)));
            }
        }
        if lower.starts_with("upstream_cookie_") && name.len() > 16 {
            return Ok(Var::Late(Late::UpstreamCookie(name[16..].into())));
        }
        if lower.starts_with("arg_") && name.len() > 4 {
            return Ok(Var::Arg(name[4..].into()));
        }
        if lower.starts_with("cookie_") && name.len() > 7 {
            return Ok(Var::Cookie(name[7..].into()));
        }
        Err(ErrorKind::UnknownVariable {
            name: name.to_string(),
        })
    }
}

/// One `$ssl_*` value of a handshake, as nginx prints it.
fn ssl_fact(tls: &TlsSession, fact: SslFact) -> &str {
    match fact {
        SslFact::Protocol => tls.protocol,
        SslFact::Cipher => tls.cipher,
        SslFact::ServerName => tls.server_name.as_deref().unwrap_or(""),
        SslFact::SessionReused => {
            if tls.session_reused {
                "r"
            } else {
                "."
            }
        }
        SslFact::ClientVerify => tls.client_verify,
        SslFact::ClientSubject => tls.client_subject.as_deref().unwrap_or(""),
    }
}

/// The built-in variables with a fixed name (lowercase).
fn builtin(name: &str) -> Option<Var> {
    Some(match name {
        "host" => Var::Host,
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "realip_remote_addr" => Var::RealipRemoteAddr,
        "realip_remote_port" => Var::RealipRemotePort,
        "proxy_protocol_addr" => Var::ProxyProtocol(ProxyFact::Addr),
        "proxy_protocol_port" => Var::ProxyProtocol(ProxyFact::Port),
        "proxy_protocol_server_addr" => Var::ProxyProtocol(ProxyFact::ServerAddr),
        "proxy_protocol_server_port" => Var::ProxyProtocol(ProxyFact::ServerPort),
        "server_addr" => Var::ServerAddr,
        "server_port" => Var::ServerPort,
        "scheme" => Var::Scheme,
        "request_method" => Var::RequestMethod,
        "request_uri" => Var::RequestUri,
        "uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        "content_length" => Var::Header(http::header::CONTENT_LENGTH),
        "content_type" => Var::Header(http::header::CONTENT_TYPE),
        "server_name" => Var::ServerName,
        "server_protocol" => Var::ServerProtocol,
        "request" => Var::Request,
        "proxy_host" => Var::ProxyHost,
        "proxy_port" => Var::ProxyPort,
        "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
        "https" => Var::Https,
        "ssl_protocol" => Var::Ssl(SslFact::Protocol),
        "ssl_cipher" => Var::Ssl(SslFact::Cipher),
        "ssl_server_name" => Var::Ssl(SslFact::ServerName),
        "ssl_session_reused" => Var::Ssl(SslFact::SessionReused),
        "ssl_client_verify" => Var::Ssl(SslFact::ClientVerify),
        "ssl_client_s_dn" => Var::Ssl(SslFact::ClientSubject),
        "remote_user" => Var::RemoteUser,
        "request_id" => Var::RequestId,
        "connection" => Var::Connection,
        "connection_requests" => Var::ConnectionRequests,
        "pipe" => Var::Pipe,
        _ => return None,
    })
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn name_len(text: &str) -> usize {
    text.bytes().take_while(|&b| is_name_byte(b)).count()
}

/// Splits `text` into parts: `$name`, `${name}`, and (as nginx) `$1`..`$9` taking one digit, so
/// `$1st` is capture 1 then `st`. A `$` not followed by a name is literal.
fn parse(text: &str, scope: &Scope) -> Result<Template, ErrorKind> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        literal.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let len = name_len(braced);
            if len == 0 || braced.as_bytes().get(len) != Some(&b'}') {
                return Err(ErrorKind::InvalidVariableSyntax {
                    template: text.to_string(),
                });
            }
            (&braced[..len], len + 2)
        } else {
            let len = name_len(after);
            if len == 0 {
                literal.push('$');
                rest = after;
                continue;
            }
            let len = if after.starts_with(|c: char| c.is_ascii_digit()) {
                1
            } else {
                len
            };
            (&after[..len], len)
        };
        let var = scope.resolve(name)?;
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(Part::Var(var));
        rest = &after[consumed..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.into()));
    }
    Ok(Template {
        parts: parts.into(),
    })
}

/// Capture groups 0..=9 of the regex entry a map matched, as byte ranges of the render buffer
/// (where the map's source text sits while its value is rendered).
type Captures = [Option<(usize, usize)>; 10];

const NO_CAPTURES: Captures = [None; 10];

fn render_parts(
    parts: &[Part],
    vars: &Vars,
    req: &RequestInfo,
    captures: &Captures,
    out: &mut String,
) {
    for part in parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Var(var) => render_var(var, vars, req, captures, out),
        }
    }
}

// `write!` into a `String` cannot fail, hence the ignored results below.
fn render_var(var: &Var, vars: &Vars, req: &RequestInfo, captures: &Captures, out: &mut String) {
    match var {
        Var::Host if req.host.is_empty() => out.push_str(req.server_name),
        Var::Host => out.push_str(req.host),
        // Canonical form, so a v4 client on a dual-stack socket reads `1.2.3.4`, not
        // `::ffff:1.2.3.4`.
        Var::RemoteAddr => push_client(out, req.client),
        Var::RemotePort => push_port(req.client.port(), out),
        Var::RealipRemoteAddr => push_client(out, req.peer),
        Var::RealipRemotePort => push_port(req.peer.port(), out),
        Var::ProxyProtocol(fact) => {
            if let Some(proxied) = req.proxy_protocol {
                match fact {
                    ProxyFact::Addr => push_ip(out, proxied.client.ip()),
                    ProxyFact::Port => push_u64(out, u64::from(proxied.client.port())),
                    ProxyFact::ServerAddr => push_ip(out, proxied.server.ip()),
                    ProxyFact::ServerPort => push_u64(out, u64::from(proxied.server.port())),
                }
            }
        }
        Var::ServerAddr => match crate::config::model::unix_listen_path(req.local) {
            Some(path) => {
                out.push_str("unix:");
                out.push_str(&path);
            }
            None => push_ip(out, req.local.ip().to_canonical()),
        },
        // Empty on a UNIX-domain socket (its key's port is 0), as nginx.
        Var::ServerPort => push_port(req.local.port(), out),
        Var::Scheme => out.push_str(req.scheme),
        Var::Https => out.push_str(if req.tls.is_some() { "on" } else { "" }),
        Var::Ssl(fact) => {
            if let Some(tls) = req.tls {
                out.push_str(ssl_fact(tls, *fact));
            }
        }
        Var::RequestMethod => out.push_str(req.method.as_str()),
        Var::RequestUri => out.push_str(req.request_uri()),
        Var::Uri => push_lossy(req.current_path(), out),
        Var::Args => out.push_str(req.current_args()),
        Var::IsArgs => {
            if !req.current_args().is_empty() {
                out.push('?');
            }
        }
        Var::ServerName => out.push_str(req.server_name),
        Var::ServerProtocol => out.push_str(protocol(req.version)),
        Var::Request => {
            out.push_str(req.method.as_str());
            out.push(' ');
            out.push_str(req.request_uri());
            out.push(' ');
            out.push_str(protocol(req.version));
        }
        Var::ProxyHost => out.push_str(req.proxy_host),
        Var::ProxyPort => {
            // `host:port`, `[v6]:port`, or a bare name (an upstream group, port 80).
            let port = req
                .proxy_host
                .rsplit_once(':')
                .map(|(_, port)| port)
                .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
            if !req.proxy_host.is_empty() {
                out.push_str(port.unwrap_or("80"));
            }
        }
        Var::ProxyAddXForwardedFor => {
            let before = out.len();
            push_header(req.headers, &X_FORWARDED_FOR, out);
            if out.len() > before {
                out.push_str(", ");
            }
            push_client(out, req.client);
        }
        Var::Header(name) => push_header(req.headers, name, out),
        Var::Arg(name) => {
            if let Some(value) = arg_value(req.current_args(), name) {
                out.push_str(value);
            }
        }
        Var::Cookie(name) => push_cookie(req.headers, name, out),
        Var::Map(index) => render_map(*index, vars, req, out),
        Var::RemoteUser => push_remote_user(req.headers, out),
        Var::RequestId => req.facts.render_id(out),
        Var::Connection => push_u64(out, req.facts.connection),
        Var::ConnectionRequests => push_u64(out, req.facts.connection_requests),
        Var::Pipe => out.push('.'),
        Var::Late(late) => match req.late {
            Some(facts) => facts.render(late, out),
            None => late.render_early(out),
        },
        Var::Capture(group) => {
            if let Some(&Some((start, end))) = captures.get(*group) {
                append_from_within(out, start, end);
            }
        }
        Var::Match(group) => {
            if let Some(text) = req.locals.and_then(|locals| locals.group(*group)) {
                push_lossy(text, out);
            }
        }
        Var::Set(slot) => {
            if let Some(value) = req.locals.and_then(|locals| locals.value(*slot)) {
                out.push_str(value);
            }
        }
    }
}

/// `$arg_NAME`'s value in `query`. nginx wants `name=`: a bare `?flag` leaves `$arg_flag`
/// unset.
fn arg_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// A port as nginx prints `$remote_port`: nothing when unknown (0, as after realip took an
/// address that came without one).
/// A client's address as `$remote_addr` writes it: canonical, so a v4 client on a dual-stack
/// socket reads `1.2.3.4`, not `::ffff:1.2.3.4`; `unix:` for a UNIX-domain socket's, as nginx.
pub(crate) fn push_client(out: &mut String, client: SocketAddr) {
    if client == crate::config::model::UNIX_PEER {
        out.push_str("unix:");
    } else {
        push_ip(out, client.ip().to_canonical());
    }
}

fn push_port(port: u16, out: &mut String) {
    if port != 0 {
        push_u64(out, u64::from(port));
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "",
    }
}

/// Appends `out[start..end]` to `out` without a temporary string.
fn append_from_within(out: &mut String, start: usize, end: usize) {
    let mut at = start;
    while let Some(c) = out.get(at..end).and_then(|s| s.chars().next()) {
        out.push(c);
        at += c.len_utf8();
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod map_tests;
