//! One HTTP exchange: route the request, then answer it directly or forward it upstream and
//! stream the answer back. With `server/`, the only place that names hyper types.
//!
//! handle: snapshot.server(listen, host) -> route(path) -> return | proxy; proxy: the group
//! chooses a server -> forward -> relay the answer. Every failure becomes a status code in
//! `error`; nothing here panics on a request.

pub mod body;
pub mod connect;
pub mod context;
pub mod error;
pub mod extended_connect;
pub mod forward;
pub mod headers;
pub mod health;
pub mod pool;
pub mod reply_headers;
mod seen;
pub mod spelling;
pub mod tunnel;
pub mod upgrade;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use tokio_util::sync::CancellationToken;

use crate::realip::{self, Proxied};
use crate::route::{host, path};
use crate::snapshot::{
    Action, ProxyAction, ReturnAction, Route, Snapshot, Target, UpstreamTls, UriRewrite,
    VirtualServer,
};
use crate::telemetry::Telemetry;
use crate::telemetry::access_log::Record;
use crate::tls::upstream::{TlsTarget, server_name};
use crate::upstream::{Group, SetCookie, Tried};
use crate::vars::{Phase, RequestFacts, RequestInfo};
pub use body::client::ClientBody;
use body::request::{RequestBody, SendProgress};
pub use body::response::ResponseBody;
use body::response::UpstreamBody;
use context::RequestContext;
use error::ProxyError;
use extended_connect::Http2WebSocket;
use upgrade::ClientUpgrade;

/// What is known about the client connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    /// `$connection`: this connection's serial number, from [`next_connection_serial`].
    pub serial: u64,
    /// Requests received on this connection so far (`$connection_requests`).
    pub requests: AtomicU64,
    /// The peer's address: the TCP connection's other end. Behind a balancer this is the
    /// balancer; the request's real client (`$remote_addr`) is found per request by realip,
    /// from this address, the headers and `proxy_protocol`.
    pub client: SocketAddr,
    /// Our address on this connection.
    pub local: SocketAddr,
    /// The `listen` address that accepted it (selects the virtual servers).
    pub listen: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// How tunnels opened on this connection are counted and told to close.
    pub tunnels: TunnelControl,
    /// The connection's TLS, if it speaks TLS (boxed: a plain connection should not carry it).
    pub tls: Option<Box<ConnTls>>,
    /// What the connection's PROXY protocol header said (None: no header was expected, or it
    /// gave no addresses: v1 `UNKNOWN`, v2 `LOCAL`).
    pub proxy_protocol: Option<Proxied>,
    /// The process's counters (requests; the status pages read them all).
    pub telemetry: Arc<Telemetry>,
}

/// A new connection's `$connection` number: counted from 1 over the process's life.
pub fn next_connection_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// What a TLS handshake settled for the whole connection.
#[derive(Clone, Debug)]
pub struct ConnTls {
    /// The certificate identity of the virtual server the handshake chose (see
    /// [`Termination::identity`](crate::snapshot::Termination)).
    pub identity: u64,
    /// The connection speaks HTTP/2 (chosen by ALPN).
    pub http2: bool,
    /// What the handshake was, for the `$ssl_*` variables.
    pub session: crate::tls::TlsSession,
}

/// Tunnels outlive the request that opened them: they are counted apart, and closed on a
/// signal when tether stops.
#[derive(Clone, Debug)]
pub struct TunnelControl {
    /// Turns true when every tunnel must close.
    pub close: CancellationToken,
    /// Open tunnels.
    pub open: std::sync::Arc<crate::inflight::Inflight>,
}

/// The client's side of an upgrade, whichever protocol it came by.
#[derive(Debug)]
enum ClientSide {
    /// An HTTP/1.1 `Upgrade` request: the socket itself, once the `101` is written.
    Http1(ClientUpgrade),
    /// An HTTP/2 stream opened by an extended CONNECT (RFC 8441) for a WebSocket.
    Http2(Http2WebSocket),
}

/// Answers one request against one snapshot, as a connection calls it: owning the
/// connection's details and the snapshot the request is answered from, and never failing
/// (errors are responses). `client_upgrade` is the client's side of an upgrade it asked for
/// (HTTP/1 only).
pub async fn serve(
    mut request: Request<ClientBody>,
    client_upgrade: Option<ClientUpgrade>,
    conn: Arc<ConnInfo>,
    snapshot: Arc<Snapshot>,
) -> Response<ResponseBody> {
    // One future, not a wrapper awaiting an inner `async fn`: starting the inner one copied
    // its whole state (kilobytes, where the compiler lays the arguments out past the proxy's
    // state) twice per request.
    let (conn, snapshot): (&ConnInfo, &Snapshot) = (&conn, &snapshot);
    conn.telemetry.record_request();
    // Only HTTP/2 brings a CONNECT this far (the HTTP/1 server refuses it): a WebSocket by
    // extended CONNECT goes on as an upgrade, anything else is refused as HTTP/1 refuses it.
    let client_upgrade = if request.method() == Method::CONNECT {
        if !extended_connect::is_websocket(&request) {
            return error::error_page(StatusCode::METHOD_NOT_ALLOWED);
        }
        extended_connect::present_as_upgrade(request.headers_mut());
        let websocket = Http2WebSocket::take(&mut request);
        Some(ClientSide::Http2(websocket))
    } else {
        client_upgrade.map(ClientSide::Http1)
    };
    // Locations match, and `$uri` shows, the path as nginx normalises it; servers are chosen
    // by, and `$host` shows, the host as nginx validates it. Like nginx, a path or host that
    // cannot be normalised is a bad request before any server or location is chosen. Each
    // normalised copy is owned, or None when the value as received is already normal, so the
    // request can move on while they are used.
    let path_copy = match path::normalise(request.uri().path()) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(path)) => Some(path),
        Err(_) => return error::error_page(StatusCode::BAD_REQUEST),
    };
    let host = match raw_host(&request).map(host::normalise) {
        None => host::HostName::EMPTY,
        Some(Ok(host)) => host,
        Some(Err(_)) => return error::error_page(StatusCode::BAD_REQUEST),
    };
    let facts = RequestFacts {
        connection: conn.serial,
        connection_requests: conn.requests.fetch_add(1, Ordering::Relaxed) + 1,
        id: fastrand::u128(..),
    };
    let normalised = Normalised {
        path: path_copy.as_deref(),
        host: host.as_str(),
        facts: &facts,
    };
    let Some(server) = snapshot.server(conn.listen, normalised.host) else {
        return error::error_page(StatusCode::NOT_FOUND);
    };
    if let Some(tls) = &conn.tls
        && misdirected(tls, server)
    {
        return error::error_page(StatusCode::MISDIRECTED_REQUEST);
    }
    // nginx's phases, in order: realip with the server's rules (post-read), the server's
    // `return` (server rewrite), the location, its `return` (rewrite), realip with the
    // location's rules if the server's left the address alone (preaccess), `allow`/`deny`
    // (access), then the content: proxying, or a 404.
    let found = realip::real_client(
        &server.client.real_ip,
        conn.client,
        request.headers(),
        conn.proxy_protocol.as_ref(),
    );
    let mut client = found.unwrap_or(conn.client);
    let mut info = request_info(&request, conn, client, server, "", normalised);
    if let Some(r) = &server.return_ {
        let response = answer_return(r, snapshot, &info);
        return server_answer(response, server, snapshot, &info);
    }
    let Some(route) = server.route(info.path) else {
        let status = match server.client.admits(client.ip()) {
            true => StatusCode::NOT_FOUND,
            false => StatusCode::FORBIDDEN,
        };
        return server_answer(error::error_page(status), server, snapshot, &info);
    };
    // A location's `return` acts in the rewrite phase, before its realip and access: it (and
    // its log line) sees the address the server's rules found.
    let rules = &route.settings.client;
    if found.is_none() && !matches!(route.action, Action::Return(_)) {
        let proxied = conn.proxy_protocol.as_ref();
        let at_location =
            realip::real_client(&rules.real_ip, conn.client, request.headers(), proxied);
        if let Some(at_location) = at_location {
            client = at_location;
            info.client = client;
        }
    }
    // Nothing at all for a location without `access_log`.
    let mut log = route.logs.begin(&snapshot.vars, &info);
    // `add_header` values, rendered against the request as nginx does, for whichever
    // response the location ends up sending.
    let added = render_added(&route.response_headers, snapshot, &info);
    let added = added.as_deref();
    let own = |mut response: Response<ResponseBody>| {
        let status = response.status();
        add_response_headers(response.headers_mut(), status, added);
        response
    };
    let mut response = match &route.action {
        Action::Return(r) => own(answer_return(r, snapshot, &info)),
        _ if !rules.admits(client.ip()) => own(error::error_page(StatusCode::FORBIDDEN)),
        Action::NotFound => own(error::error_page(StatusCode::NOT_FOUND)),
        Action::Status(page) => own(seen::status_page(
            *page,
            &request,
            snapshot,
            &conn.telemetry,
        )),
        Action::Proxy(action) => {
            let mut cx = RequestContext::new(&request, client.ip(), &server.name, normalised.host);
            cx.upstream_tls(action.tls.is_some());
            let routed = Routed {
                server,
                route,
                action,
                cx: &cx,
                added,
            };
            let from = (conn, client);
            let exchange = proxy(
                request,
                client_upgrade,
                normalised,
                from,
                snapshot,
                routed,
                &mut log,
            );
            match exchange.await {
                Ok(response) => response,
                Err(error) => {
                    context::log_final(&cx, &error);
                    own(error.into_response())
                }
            }
        }
    };
    let status = response.status();
    reply_headers::finish(response.headers_mut(), status, &route.reply);
    // A tunnel took the lines with it; otherwise they ride on the body to its end.
    if let Some(mut log) = log {
        log.head(
            Phase::SentHead,
            response.status().as_u16(),
            response.headers(),
        );
        response.body_mut().log_on_end(log);
    }
    response
}

/// Whether a request on a TLS connection names a server its handshake was not for, in a way
/// that matters: on HTTP/2 a server with other certificates (browsers reuse a connection for
/// every name its certificate covers, so the request must not reach a server whose own
/// certificate the client never saw), on any protocol a server that checks client
/// certificates (its check must not be skipped by naming another server in the SNI).
fn misdirected(tls: &ConnTls, server: &VirtualServer) -> bool {
    server
        .tls
        .as_ref()
        .is_some_and(|own| own.identity != tls.identity && (tls.http2 || own.verifies_clients))
}

/// Where a request was routed: its virtual server, its location, and the location's proxying.
struct Routed<'a> {
    server: &'a VirtualServer,
    route: &'a Route,
    action: &'a ProxyAction,
    /// What an error line says about the request (read only when an event fires).
    cx: &'a RequestContext<'a>,
    /// `add_header` values, rendered (None: the location has none).
    added: Option<&'a [headers::AddedHeader]>,
}

/// Forwards a routed request; `from` is its connection and its client's real address.
async fn proxy(
    request: Request<ClientBody>,
    client_upgrade: Option<ClientSide>,
    normalised: Normalised<'_>,
    from: (&ConnInfo, SocketAddr),
    snapshot: &Snapshot,
    routed: Routed<'_>,
    log: &mut Option<Box<Record>>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (conn, client) = from;
    let Routed {
        server,
        route,
        action,
        cx,
        added,
    } = routed;
    let limit = route.settings.client_max_body_size;
    if limit > 0 && declared_length(&request).is_some_and(|len| len > limit) {
        return Err(ProxyError::BodyTooLarge);
    }
    let mut scratch = String::new();
    let (group, proxy_host): (&Arc<Group>, HeaderValue) = match &action.target {
        Target::Group { group, host } => (group, host.clone()),
        Target::Variable(template) => {
            let info = request_info(&request, conn, client, server, "", normalised);
            template.render(&snapshot.vars, &info, &mut scratch);
            let name = scratch.as_str();
            let group = snapshot
                .upstream(name)
                .ok_or_else(|| ProxyError::UnknownUpstream(name.to_string()))?;
            let host = HeaderValue::from_str(name)
                .map_err(|_| ProxyError::UnknownUpstream(name.to_string()))?;
            (group, host)
        }
    };

    let upgrade = match &client_upgrade {
        Some(ClientSide::Http2(_)) => Some(HeaderValue::from_static("websocket")),
        _ => headers::requested_upgrade(request.version(), request.headers()),
    };
    let client_upgrade = client_upgrade.filter(|_| upgrade.is_some());

    // Read what the group chooses by and render every template against the request as the
    // client sent it, then rewrite.
    let proxy_host_text = proxy_host.to_str().unwrap_or("");
    let (affinity, rendered, reply_rendered, tls) = {
        // The choice has always seen `$proxy_host` empty: keys placed by it stay where they are.
        let mut info = request_info(&request, conn, client, server, "", normalised);
        let affinity = group.affinity(&info, &snapshot.vars);
        info.proxy_host = proxy_host_text;
        let tls = match &action.tls {
            None => None,
            Some(UpstreamTls::Fixed(target)) => Some(target.clone()),
            Some(UpstreamTls::Rendered { config, name }) => {
                scratch.clear();
                name.render(&snapshot.vars, &info, &mut scratch);
                let name = server_name(&scratch)
                    .ok_or_else(|| ProxyError::UnknownUpstream(scratch.clone()))?;
                let config = config.clone();
                Some(Arc::new(TlsTarget { config, name }))
            }
        };
        let rendered = headers::render_request_headers(
            &route.request_headers,
            &snapshot.vars,
            &info,
            &mut scratch,
        );
        // Most locations' `proxy_redirect`/`proxy_cookie_*` rules are literal: nothing here.
        let reply_rendered =
            crate::snapshot::reply_headers::render(&route.reply.templates, &snapshot.vars, &info);
        (affinity, rendered, reply_rendered, tls)
    };
    let (mut parts, mut body) = request.into_parts();
    body.set_idle_timeout(route.settings.client_body_timeout);
    let uri = upstream_uri(&parts.uri, normalised.path, &action.uri)?;
    headers::rewrite_request(
        &mut parts.headers,
        &route.request_headers,
        rendered,
        &proxy_host,
        upgrade,
    );
    parts.uri = uri;
    if let Some(ClientSide::Http2(websocket)) = &client_upgrade {
        websocket.prepare(&mut parts);
    }
    // Upstreams always get HTTP/1.1, whatever the client spoke.
    parts.version = http::Version::HTTP_11;
    parts.extensions = http::Extensions::new();

    // `Connection: close` (e.g. from the `map $http_upgrade` idiom) ends that upstream
    // connection after the response: it must not go back to the pool.
    let reusable = !headers::connection_has(&parts.headers, "close");
    let progress = (!body.is_end_stream()).then(SendProgress::new);
    let body = RequestBody::client(body, limit, progress.clone());
    let upstream_request = Request::from_parts(parts, body);

    // Chosen last, once nothing else can fail: a choice counts a pick and may take a failed
    // server's one trial.
    if let Some(log) = log.as_deref_mut() {
        log.set_group(&group.name);
    }
    let choice = group
        .choose(&affinity, &Tried::default())
        .inspect_err(|no_peer| context::log_no_peer(cx, &group.name, *no_peer))?;
    let answer = forward::forward(
        group,
        &affinity,
        choice,
        upstream_request,
        forward::Route {
            settings: &route.settings,
            tls: tls.as_ref(),
            cx,
        },
        progress.as_deref(),
        log.as_deref_mut(),
    )
    .await?;
    let exchange = Exchange {
        route,
        conn,
        client_upgrade,
        added,
        reply_rendered,
        host: if normalised.host.is_empty() {
            &server.name
        } else {
            normalised.host
        },
        reusable,
    };
    exchange.relay(answer, log)
}

/// What the response side of one proxied exchange needs to know about its request.
struct Exchange<'a> {
    route: &'a Route,
    conn: &'a ConnInfo,
    /// The client's side of an upgrade it asked for.
    client_upgrade: Option<ClientSide>,
    /// `add_header` values, rendered against the request.
    added: Option<&'a [headers::AddedHeader]>,
    /// The location's `proxy_redirect`/`proxy_cookie_*` templates, rendered.
    reply_rendered: crate::snapshot::reply_headers::Rendered,
    /// The request's host: what a rewritten relative redirect is made absolute with.
    host: &'a str,
    /// False when the upstream was asked to close the connection after this response.
    reusable: bool,
}

impl Exchange<'_> {
    /// Turns the upstream's answer into the client's response: headers cleaned, the sticky
    /// cookie and `add_header`s added, then either the body streamed back or — for a `101` —
    /// the two connections joined in a tunnel (an HTTP/2 client is answered `200` for it).
    fn relay(
        self,
        answer: forward::Answer<'_>,
        log: &mut Option<Box<Record>>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let mut guard = answer.guard;
        let (mut parts, incoming) = answer.response.into_parts();
        guard.answered(parts.status.as_u16());
        if let Some(log) = log.as_deref_mut() {
            log.head(Phase::UpstreamHead, parts.status.as_u16(), &parts.headers);
        }
        let switching = match &self.client_upgrade {
            Some(ClientSide::Http2(websocket)) => websocket.accept(&mut parts)?,
            _ => parts.status == StatusCode::SWITCHING_PROTOCOLS,
        };
        if let Some(transport) = seen::transport_of(&parts, switching, &self.client_upgrade) {
            guard.mark(transport);
        }
        let role = match (&self.client_upgrade, switching) {
            (_, false) => headers::UpgradeRole::None,
            (Some(ClientSide::Http1(_)), true) => headers::UpgradeRole::Http1Tunnel,
            (_, true) => headers::UpgradeRole::Http2Tunnel,
        };
        let reply = &self.route.reply;
        let rewritable = headers::rewrite_response(&mut parts.headers, role, reply.passed);
        for name in &reply.hidden {
            parts.headers.remove(name);
        }
        let origin = reply_headers::Origin {
            scheme: self.conn.scheme,
            host: self.host,
            port: self.conn.local.port(),
        };
        let rendered = &self.reply_rendered;
        reply_headers::rewrite_upstream(&mut parts.headers, reply, rendered, origin, rewritable);
        // A 101 included: the group said whether this answer pins the client.
        if let Some(value) = answer.set_cookie.as_ref().and_then(SetCookie::value) {
            parts.headers.append(header::SET_COOKIE, value);
        }
        add_response_headers(&mut parts.headers, parts.status, self.added);
        let read_timeout = self.route.settings.read_timeout;
        if !switching {
            let keep_alive = self.reusable.then_some(pool::Pooled {
                sender: answer.sender,
                tls: answer.tls,
            });
            let timeouts = (read_timeout, self.route.settings.client_send_timeout);
            let body = UpstreamBody::new(incoming, timeouts, keep_alive, guard)
                .with_spellings(answer.spellings);
            return Ok(Response::from_parts(parts, body.into()));
        }
        let Some(client_upgrade) = self.client_upgrade else {
            // A 101 nobody asked for cannot be relayed meaningfully.
            return Err(ProxyError::UpstreamStatus(101));
        };
        // The tunnel's line is written when it ends, with the 101 (or 200) the client got.
        let log = log.take().map(|mut log| {
            log.head(Phase::SentHead, parts.status.as_u16(), &parts.headers);
            log
        });
        let mut response = Response::from_parts(parts, incoming);
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (close, open) = (
            self.conn.tunnels.close.clone(),
            self.conn.tunnels.open.enter(),
        );
        match client_upgrade {
            ClientSide::Http1(client) => tokio::spawn(upgrade::tunnel_task(
                client,
                upstream_upgrade,
                upgrade::protocol_of(response.headers()),
                read_timeout,
                close,
                guard,
                upgrade::TunnelBook { open, log },
            )),
            ClientSide::Http2(websocket) => tokio::spawn(websocket.tunnel_task(
                upstream_upgrade,
                read_timeout,
                close,
                guard,
                upgrade::TunnelBook { open, log },
            )),
        };
        let (parts, _) = response.into_parts();
        Ok(Response::from_parts(parts, ResponseBody::empty()))
    }
}

/// `return CODE [text]`: a redirect for 301/302/303/307/308, else a body (or an error page).
fn answer_return(
    r: &ReturnAction,
    snapshot: &Snapshot,
    info: &RequestInfo,
) -> Response<ResponseBody> {
    let text = r.text.as_ref().map(|template| {
        let mut text = String::new();
        template.render(&snapshot.vars, info, &mut text);
        text
    });
    // A 2xx would tell an HTTP/2 WebSocket client its stream is now a tunnel: it is not.
    if info.method == Method::CONNECT && r.code.is_success() {
        return error::error_page(StatusCode::METHOD_NOT_ALLOWED);
    }
    let redirect = matches!(r.code.as_u16(), 301 | 302 | 303 | 307 | 308);
    let mut response = match (text, redirect) {
        (Some(location), true) => {
            let mut response = error::error_page(r.code);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        (Some(text), false) => {
            let mut response = Response::new(ResponseBody::full(text));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        (None, _) if r.code.is_client_error() || r.code.is_server_error() => {
            error::error_page(r.code)
        }
        (None, _) => Response::new(ResponseBody::empty()),
    };
    *response.status_mut() = r.code;
    response
}

/// nginx adds `add_header` values to 2xx/3xx responses only, unless `always` — tether's own
/// answers (`return`, error pages) as well as proxied ones.
fn add_response_headers(
    headers: &mut http::HeaderMap,
    status: StatusCode,
    added: Option<&[headers::AddedHeader]>,
) {
    let eligible = reply_headers::is_eligible(status);
    for header in added.unwrap_or_default() {
        if eligible || header.always {
            headers.append(header.name.clone(), header.value.clone());
        }
    }
}

/// The location's `add_header` values rendered against the request (None: it has none).
fn render_added(
    adds: &[crate::snapshot::AddHeader],
    snapshot: &Snapshot,
    info: &RequestInfo,
) -> Option<Vec<headers::AddedHeader>> {
    (!adds.is_empty())
        .then(|| headers::render_response_headers(adds, &snapshot.vars, info, &mut String::new()))
}

/// A server's own answer made before any location was chosen (its `return`, or no location
/// matching): the server level's `add_header`, `expires` and `server_tokens`.
fn server_answer(
    mut response: Response<ResponseBody>,
    server: &VirtualServer,
    snapshot: &Snapshot,
    info: &RequestInfo,
) -> Response<ResponseBody> {
    let added = render_added(&server.response_headers, snapshot, info);
    let status = response.status();
    add_response_headers(response.headers_mut(), status, added.as_deref());
    reply_headers::finish(response.headers_mut(), status, &server.reply);
    response
}

/// The URI sent upstream, by nginx's rule (see [`UriRewrite`]). `normalised` is the
/// normalised path when it differs from the one received.
fn upstream_uri(
    uri: &Uri,
    normalised: Option<&[u8]>,
    rewrite: &UriRewrite,
) -> Result<Uri, ProxyError> {
    let (prefix, with) = match rewrite {
        // Common case: the client's path and query as they are, shared rather than copied.
        UriRewrite::Keep => {
            let original = uri.path_and_query();
            return Ok(original.map_or(Uri::from_static("/"), |pq| Uri::from(pq.clone())));
        }
        UriRewrite::Replace(with) => return with.parse().map_err(|_| ProxyError::BadRequest),
        UriRewrite::ReplacePrefix { prefix, with } => (prefix, with),
    };
    // nginx: the normalised path with the location prefix replaced, escaped again only if the
    // client's path had escapes (else it is sent as it stands), then the query if not empty.
    let received = uri.path();
    let path = normalised.unwrap_or(received.as_bytes());
    let rest = path.strip_prefix(prefix.as_bytes()).unwrap_or(path);
    let query = uri.query().unwrap_or("");
    let mut target = Vec::with_capacity(with.len() + rest.len() * 3 + query.len() + 1);
    target.extend_from_slice(with.as_bytes());
    if received.contains('%') {
        path::escape(rest, &mut target);
    } else {
        target.extend_from_slice(rest);
    }
    if !query.is_empty() {
        target.push(b'?');
        target.extend_from_slice(query.as_bytes());
    }
    Uri::from_maybe_shared(target).map_err(|_| ProxyError::BadRequest)
}

/// The host a request names, as sent: for HTTP/1 an absolute-form target's authority wins
/// over `Host`, as in nginx; HTTP/2 sends `:authority` and may leave `Host` out.
fn raw_host(request: &Request<ClientBody>) -> Option<&[u8]> {
    let header = request
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes);
    let authority = request.uri().authority().map(|a| a.host().as_bytes());
    if request.version() == http::Version::HTTP_2 {
        header.or(authority)
    } else {
        authority.or(header)
    }
}

/// The normalised path (where it differs from the one received) and host of a request.
#[derive(Clone, Copy, Debug)]
struct Normalised<'a> {
    path: Option<&'a [u8]>,
    /// `""` when the request names no host.
    host: &'a str,
    /// `$request_id` and the connection's numbers.
    facts: &'a crate::vars::RequestFacts,
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What variables read about `request`, from `client` (its real address, realip applied);
/// `normalised` holds its normalised path (where it differs from the one received) and host.
fn request_info<'a>(
    request: &'a Request<ClientBody>,
    conn: &'a ConnInfo,
    client: SocketAddr,
    server: &'a VirtualServer,
    proxy_host: &'a str,
    normalised: Normalised<'a>,
) -> RequestInfo<'a> {
    RequestInfo {
        method: request.method(),
        uri: request.uri(),
        path: normalised.path.unwrap_or(request.uri().path().as_bytes()),
        host: normalised.host,
        version: request.version(),
        headers: request.headers(),
        client,
        peer: conn.client,
        proxy_protocol: conn.proxy_protocol,
        local: conn.local,
        scheme: conn.scheme,
        tls: conn.tls.as_deref().map(|tls| &tls.session),
        server_name: &server.name,
        proxy_host,
        facts: normalised.facts,
        late: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str, rule: &UriRewrite) -> String {
        let uri: Uri = uri.parse().unwrap();
        let normalised = path::normalise(uri.path()).unwrap();
        upstream_uri(&uri, Some(&normalised), rule)
            .unwrap()
            .to_string()
    }

    #[test]
    fn nginx_uri_rules() {
        assert_eq!(
            rewrite("/api/users?x=1", &UriRewrite::Keep),
            "/api/users?x=1"
        );
        let prefix = UriRewrite::ReplacePrefix {
            prefix: "/api/".into(),
            with: "/v1/".into(),
        };
        assert_eq!(rewrite("/api/users?x=1", &prefix), "/v1/users?x=1");
        // The normalised path goes up, escaped again only when the client escaped; an empty
        // query is dropped.
        assert_eq!(rewrite("/api/a//b/../c%20d?", &prefix), "/v1/a/c%20d");
        assert_eq!(
            rewrite("/api/a//b/../c\"d?q=%zz", &prefix),
            "/v1/a/c\"d?q=%zz"
        );
        let root = UriRewrite::ReplacePrefix {
            prefix: "/app".into(),
            with: "/".into(),
        };
        assert_eq!(rewrite("/app/x", &root), "//x");
        assert_eq!(
            rewrite("/any", &UriRewrite::Replace("/fixed".into())),
            "/fixed"
        );
        assert_eq!(rewrite("http://h/p?q", &UriRewrite::Keep), "/p?q");
    }
}
