//! One HTTP exchange: route the request, then answer it directly or forward it upstream and
//! stream the answer back. With `server/`, the only place that names hyper types.
//!
//! handle: snapshot.server(listen, host) -> route(path) -> return | proxy; proxy: the group
//! chooses a server -> forward -> relay the answer. Every failure becomes a status code in
//! `error`; nothing here panics on a request.

pub mod body;
pub mod connect;
pub mod context;
pub mod deadline;
pub mod error;
mod error_page;
pub mod extended_connect;
pub mod forward;
pub mod headers;
pub mod health;
mod limits;
pub mod names;
pub mod origin;
mod phases;
pub mod pool;
pub mod relayed;
pub mod reply_headers;
pub mod request;
mod seen;
pub mod spelling;
mod target;
pub mod tunnel;
pub mod upgrade;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Body as _;
use tokio_util::sync::CancellationToken;

use crate::limits::ConnectionHolds;
use crate::realip::{self, Proxied};
use crate::route::{host, path};
use crate::snapshot::{
    Action, ErrorPageTable, ProxyAction, ReturnAction, Route, Snapshot, Target, UpstreamTls,
    UriRewrite, VirtualServer,
};
use crate::telemetry::Telemetry;
use crate::telemetry::access_log::Record;
use crate::tls::upstream::{TlsTarget, server_name};
use crate::upstream::{AnswerReading, Group, Learn, SetCookie, Tried};
use crate::vars::{Locals, Phase, RequestFacts, RequestInfo};
pub use body::client::ClientBody;
use body::request::{RequestBody, SendProgress};
pub use body::response::ResponseBody;
use body::response::UpstreamBody;
use context::RequestContext;
use error::ProxyError;
use extended_connect::Http2WebSocket;
use origin::Keeping;
pub use phases::CloseWithoutAnswer;
use phases::Phased;
use relayed::UpstreamLines;
use request::Request;
use target::{Rewritten, upstream_uri};
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
    /// How tunnels opened on this connection are counted and told to close (one per
    /// listener, shared: a connection takes a reference count, not a clone of each part).
    pub tunnels: std::sync::Arc<TunnelControl>,
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
    let mut client_upgrade = if request.method() == Method::CONNECT {
        if !extended_connect::is_websocket(&request) {
            return error::error_page(StatusCode::METHOD_NOT_ALLOWED);
        }
        extended_connect::present_as_upgrade(request.headers_mut());
        let websocket = Http2WebSocket::take(&mut request);
        Some(ClientSide::Http2(websocket))
    } else {
        client_upgrade.map(ClientSide::Http1)
    };
    let facts = RequestFacts {
        connection: conn.serial,
        connection_requests: conn.requests.fetch_add(1, Ordering::Relaxed) + 1,
        id: fastrand::u128(..),
    };
    // Each pass answers at one place; an `error_page` may send the request on to another
    // (nginx's internal redirect), asked again from its kept head.
    let mut redirects = error_page::Redirects::new();
    let mut at = Destination::Path;
    let facts = &facts;
    loop {
        // One pass of the request through nginx's phases, at one place; an answer that an
        // `error_page` replaces comes back as the request to ask again. Written inline, not as
        // an `async fn` awaited here: starting one copied its whole state (kilobytes) per
        // request.
        let answered = 'pass: {
            let client_upgrade = &mut client_upgrade;
            let done = |response| Answered::Done(response, None);
            // Locations match, and `$uri` shows, the path as nginx normalises it; servers are
            // chosen by, and `$host` shows, the host as nginx validates it. Like nginx, a path or
            // host that cannot be normalised is a bad request before any server or location is
            // chosen. Each normalised copy is owned, or None when the value as received is
            // already normal, so the request can move on while they are used.
            let path_copy = match path::normalise(request.uri().path()) {
                Ok(Cow::Borrowed(_)) => None,
                Ok(Cow::Owned(path)) => Some(path),
                Err(_) => break 'pass done(error::error_page(StatusCode::BAD_REQUEST)),
            };
            let host = match raw_host(&request).map(host::normalise) {
                None => host::HostName::EMPTY,
                Some(Ok(host)) => host,
                Some(Err(_)) => break 'pass done(error::error_page(StatusCode::BAD_REQUEST)),
            };
            let normalised = Normalised {
                path: path_copy.as_deref(),
                host: host.as_str(),
                facts,
                locals: None,
            };
            let Some(server) = snapshot.server(conn.listen, normalised.host) else {
                break 'pass done(error::error_page(StatusCode::NOT_FOUND));
            };
            if let Some(tls) = &conn.tls
                && misdirected(tls, server)
            {
                break 'pass done(error::error_page(StatusCode::MISDIRECTED_REQUEST));
            }
            // Kept only where an `error_page` could ask again: the request itself moves on.
            let head = server
                .has_error_pages
                .then(|| error_page::Head::of(&request));
            let mut replaced = |response: Response<ResponseBody>,
                                origin: error_page::Origin,
                                table: &ErrorPageTable,
                                log: Option<Box<Record>>,
                                body: Option<ClientBody>| {
                let Some(head) = &head else {
                    return Answered::Done(response, log);
                };
                let Some(page) = redirects.page(table, &response, origin) else {
                    return Answered::Done(response, log);
                };
                let mut target = String::new();
                let shown = head.bodiless();
                let info = request_info(&shown, conn, conn.client, server, "", normalised);
                page.target.render(&snapshot.vars, &info, &mut target);
                match redirects.step(page, target) {
                    error_page::Step::Answer(response) => Answered::Done(*response, log),
                    error_page::Step::Named(name) => match head.request(body) {
                        Some(again) => Answered::Again(again, Destination::Named(name)),
                        // Its body went to a server that failed: it cannot be asked again.
                        None => Answered::Done(redirects.unreplaced(response), log),
                    },
                    error_page::Step::Uri(uri) => match head.redirected(&uri) {
                        Some(again) => Answered::Again(again, Destination::Redirected(uri)),
                        None => Answered::Done(
                            error::error_page(StatusCode::INTERNAL_SERVER_ERROR),
                            log,
                        ),
                    },
                }
            };
            // nginx's phases, in order: realip with the server's rules (post-read), the server's
            // rewrite directives, the location search and the location's rewrite directives (again
            // for as long as they change the URI), realip with the location's rules if the
            // server's left the address alone, `limit_req`/`limit_conn` (preaccess),
            // `allow`/`deny` (access), then the content: proxying, or a 404.
            let found = realip::real_client(
                &server.client.real_ip,
                conn.client,
                request.headers(),
                conn.proxy_protocol.as_ref(),
            );
            let mut client = found.unwrap_or(conn.client);
            // What the rewrite phases give the request; empty (and allocation-free) for most.
            let mut locals = Locals::default();
            let base = request_info(&request, conn, client, server, "", normalised);
            let server_pages = &server.error_pages;
            // A named location starts at the location's rewrite phase (nginx): the server's
            // directives that may have sent the request there do not run again.
            let phased = match &at {
                Destination::Named(name) => match server.named(name) {
                    Some(route) => phases::named(server, route, snapshot, &base, &mut locals),
                    // nginx: "could not find named location"
                    None => {
                        let response = error::error_page(StatusCode::INTERNAL_SERVER_ERROR);
                        let body = Some(request.into_body());
                        let origin = error_page::Origin::Tether;
                        break 'pass replaced(response, origin, server_pages, None, body);
                    }
                },
                Destination::Redirected(target) => {
                    let (path, args) = target.split_once('?').unwrap_or((target, ""));
                    locals.set_uri(path.as_bytes().to_vec());
                    locals.set_args(args.to_string());
                    phases::rewrite(server, snapshot, &base, &mut locals, true)
                }
                Destination::Path => phases::rewrite(server, snapshot, &base, &mut locals, false),
            };
            // From here on, variables see what the rewrite phases set, captured and rewrote.
            let normalised = Normalised {
                locals: Some(&locals),
                ..normalised
            };
            let mut info = RequestInfo {
                locals: Some(&locals),
                ..base
            };
            let route = match phased {
                Phased::Route(route) => route,
                Phased::Internal(route) => {
                    let response = error::error_page(StatusCode::NOT_FOUND);
                    let response = location_answer(response, route, snapshot, &info);
                    let body = Some(request.into_body());
                    let origin = error_page::Origin::Tether;
                    break 'pass replaced(response, origin, &route.error_pages, None, body);
                }
                Phased::NoLocation => {
                    let status = match server.client.admits(client.ip()) {
                        true => StatusCode::NOT_FOUND,
                        false => StatusCode::FORBIDDEN,
                    };
                    let response =
                        server_answer(error::error_page(status), server, snapshot, &info);
                    let body = Some(request.into_body());
                    let origin = error_page::Origin::Tether;
                    break 'pass replaced(response, origin, server_pages, None, body);
                }
                // An answer of the rewrite phases comes before realip's location rules and access:
                // it (and its log line) sees the address the server's rules found.
                Phased::Answer { answer, route } => {
                    let log = route.and_then(|route| route.logs.begin(&snapshot.vars, &info));
                    let rules = route.map_or(&server.redirects, |route| &route.settings.redirects);
                    let origin = match &answer {
                        phases::Answer::Return(r) => error_page::Origin::of_return(r),
                        phases::Answer::Redirect { .. } => error_page::Origin::Final,
                        phases::Answer::Cycle => error_page::Origin::Tether,
                    };
                    let response = answer.respond(snapshot, &info, rules);
                    let (response, pages) = match route {
                        Some(route) => (
                            location_answer(response, route, snapshot, &info),
                            &route.error_pages,
                        ),
                        None => (
                            server_answer(response, server, snapshot, &info),
                            server_pages,
                        ),
                    };
                    let body = Some(request.into_body());
                    break 'pass replaced(response, origin, pages, log, body);
                }
            };
            let pages = &route.error_pages;
            let rules = &route.settings.client;
            if found.is_none() {
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
            // Read now: the request is gone by the time the answer comes.
            let gzip = route.gzip.as_ref().and_then(|policy| {
                policy.offer(request.method(), request.version(), request.headers())
            });
            // nginx's preaccess phase: `limit_req`, then `limit_conn`.
            let mut preaccess = match &route.limits {
                Some(limits) => {
                    let cx =
                        RequestContext::new(&request, client.ip(), &server.name, normalised.host);
                    limits::preaccess(limits, &snapshot.vars, &info, &cx).await
                }
                None => limits::Preaccess::default(),
            };
            if let Some(log) = log.as_deref_mut() {
                log.set_limit_statuses(preaccess.statuses.0, preaccess.statuses.1);
            }
            // `add_header` values, rendered against the request as nginx does, for whichever
            // response the location ends up sending.
            let added = render_added(&route.response_headers, snapshot, &info);
            let added = added.as_deref();
            let own = |mut response: Response<ResponseBody>| {
                let status = response.status();
                add_response_headers(response.headers_mut(), status, added);
                response
            };
            let tether = error_page::Origin::Tether;
            let (mut response, origin, body) = match &route.action {
                _ if preaccess.refused() => {
                    (own(preaccess.refusal()), tether, Some(request.into_body()))
                }
                _ if !rules.admits(client.ip()) => {
                    let response = own(error::error_page(StatusCode::FORBIDDEN));
                    (response, tether, Some(request.into_body()))
                }
                Action::NotFound => {
                    let response = own(error::error_page(StatusCode::NOT_FOUND));
                    (response, tether, Some(request.into_body()))
                }
                Action::Status(page) => (
                    own(seen::status_page(
                        *page,
                        &request,
                        snapshot,
                        &conn.telemetry,
                    )),
                    error_page::Origin::Final,
                    None,
                ),
                Action::Proxy(action) => {
                    let mut cx =
                        RequestContext::new(&request, client.ip(), &server.name, normalised.host);
                    cx.upstream_tls(action.tls.is_some());
                    let routed = Routed {
                        server,
                        route,
                        action,
                        cx: &cx,
                        holds: preaccess.holds.take(),
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
                        Ok(response) => (response, error_page::Origin::Upstream, None),
                        Err(Failed { error, body }) => {
                            context::log_final(&cx, &error);
                            (own(error.into_response()), tether, body)
                        }
                    }
                }
            };
            finish_at(&mut response, route, gzip);
            if let Some(holds) = preaccess.holds {
                response.body_mut().hold_until_end(holds);
            }
            if head.is_none() {
                // No `error_page` can replace it: sent from here, not moved through the pass's
                // answer (each move of a response is a copy of its 200 bytes).
                ready_for_client(&mut redirects, &mut response, log);
                return response;
            }
            replaced(response, origin, pages, log, body)
        };
        match answered {
            Answered::Done(mut response, log) => {
                ready_for_client(&mut redirects, &mut response, log);
                return response;
            }
            Answered::Again(next, to) => {
                request = next;
                at = to;
            }
        }
    }
}

/// Readies the response a request ends with: what an `error_page` redirect set for it
/// applied, and its log lines (unless a tunnel took them) put on its body, to be finished at its
/// end.
fn ready_for_client(
    redirects: &mut error_page::Redirects,
    response: &mut Response<ResponseBody>,
    log: Option<Box<Record>>,
) {
    redirects.finish(response);
    if let Some(mut log) = log {
        log.head(
            Phase::SentHead,
            response.status().as_u16(),
            response.headers(),
        );
        response.body_mut().log_on_end(log);
    }
}

/// Where a pass looks for the location that answers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Destination {
    /// By the request's path, as the client sent it: `internal` locations answer 404.
    Path,
    /// After `error_page` to this URI: `$uri` (and `$args`) become it while `$request_uri`
    /// stays the client's, as nginx's internal redirect; `internal` locations are allowed.
    Redirected(String),
    /// The named location (`@name`).
    Named(String),
}

/// How a pass ended.
enum Answered {
    /// With this response (and its log lines, unless a tunnel took them).
    Done(Response<ResponseBody>, Option<Box<Record>>),
    /// With an `error_page` that asks this request again at this destination.
    Again(Request<ClientBody>, Destination),
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
    /// Its places in `limit_conn` zones, held until its response (or tunnel) ends.
    holds: Option<ConnectionHolds>,
    /// `add_header` values, rendered (None: the location has none).
    added: Option<&'a [headers::AddedHeader]>,
}

/// Forwards a routed request; `from` is its connection and its client's real address.
async fn proxy(
    request: Request<ClientBody>,
    client_upgrade: &mut Option<ClientSide>,
    normalised: Normalised<'_>,
    from: (&ConnInfo, SocketAddr),
    snapshot: &Snapshot,
    routed: Routed<'_>,
    log: &mut Option<Box<Record>>,
) -> Result<Response<ResponseBody>, Failed> {
    let (conn, client) = from;
    let Routed {
        server,
        route,
        action,
        cx,
        holds,
        added,
    } = routed;
    let limit = route.settings.client_max_body_size;
    let has_body = !request.body().is_end_stream();
    // Only the HTTP/1 writer relays an answer's lines from its head.
    let http1_client = request.version() != http::Version::HTTP_2;
    if limit > 0
        && has_body
        && origin::head::declared_length(request.headers()).is_some_and(|len| len > limit)
    {
        return Err(ProxyError::BodyTooLarge.into());
    }
    let mut scratch = String::new();
    // A host looked up for this request (no upstream by the rendered name) lives here.
    let looked_up: Arc<Group>;
    let (group, proxy_host): (&Arc<Group>, HeaderValue) = match &action.target {
        Target::Group { group, host } => (group, host.clone()),
        Target::Variable(template) => {
            let info = request_info(&request, conn, client, server, "", normalised);
            template.render(&snapshot.vars, &info, &mut scratch);
            let name = scratch.as_str();
            let host = HeaderValue::from_str(name)
                .map_err(|_| ProxyError::UnknownUpstream(name.to_string()))?;
            match snapshot.upstream(name) {
                Some(group) => (group, host),
                None => {
                    let port = if action.tls.is_some() { 443 } else { 80 };
                    looked_up = snapshot
                        .dynamic
                        .group(name, port)
                        .await
                        .map_err(|why| ProxyError::UnknownUpstream(format!("{name}: {why}")))?;
                    (&looked_up, host)
                }
            }
        }
    };

    // An HTTP/1 connection hands over the client's side of an upgrade exactly when the
    // request asks for one: without it, there is nothing to look up.
    let upgrade = match &*client_upgrade {
        Some(ClientSide::Http2(_)) => Some(HeaderValue::from_static("websocket")),
        Some(ClientSide::Http1(_)) => {
            headers::requested_upgrade(request.version(), request.headers())
        }
        None => None,
    };
    // Taken only once an upstream answers: after a failure, an `error_page` may need it.
    let wanted = upgrade.is_some();

    // Read what the group chooses by and render every template against the request as the
    // client sent it, then rewrite.
    let proxy_host_text = proxy_host.to_str().unwrap_or("");
    let (affinity, rendered, reply_rendered, tls, rendered_uri) = {
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
        // `proxy_pass` with variables: its URI part as rendered (`$proxy_host` empty, as the
        // choice saw it: nginx renders the URL before it knows the upstream).
        let rendered_uri = match &action.uri {
            UriRewrite::Replace(template) => {
                let mut uri = String::new();
                template.render(&snapshot.vars, &info, &mut uri);
                Some(uri)
            }
            _ => None,
        };
        (affinity, rendered, reply_rendered, tls, rendered_uri)
    };
    let (mut parts, mut body) = request.into_parts();
    body.set_idle_timeout(route.settings.client_body_timeout);
    let target = Rewritten {
        normalised: normalised.path,
        rendered: rendered_uri.as_deref(),
        locals: normalised.locals,
    };
    let uri = upstream_uri(&parts.uri, target, &action.uri)?;
    let has_connection = headers::rewrite_request(
        &mut parts.headers,
        &route.request_headers,
        rendered,
        &proxy_host,
        upgrade,
    );
    parts.uri = uri;
    if let Some(ClientSide::Http2(websocket)) = client_upgrade.as_ref().filter(|_| wanted) {
        websocket.prepare(&mut parts);
    }
    // Upstreams always get HTTP/1.1, whatever the client spoke.
    parts.version = http::Version::HTTP_11;
    parts.extensions = http::Extensions::new();

    // `Connection: close` (e.g. from the `map $http_upgrade` idiom) ends that upstream
    // connection after the response: it must not go back to the pool.
    let reusable = !(has_connection && headers::connection_has(&parts.headers, "close"));
    let progress = (!body.is_end_stream()).then(SendProgress::new);
    let body = RequestBody::client(body, limit, progress.clone());
    let upstream_request = Request::from_parts(parts, body);

    // Chosen last, once nothing else can fail: a choice counts a pick and may take a failed
    // server's one trial.
    if let Some(log) = log.as_deref_mut() {
        log.set_group(&group.name);
    }
    let choice = match group.choose(&affinity, &Tried::default()) {
        Ok(choice) => choice,
        Err(no_peer) => {
            context::log_no_peer(cx, &group.name, no_peer);
            let body = upstream_request.into_body().into_client();
            return Err(Failed {
                error: no_peer.into(),
                body,
            });
        }
    };
    // What the client will not see of the answer is not even put in its header map, unless
    // something reads the upstream's head as it came; and no map at all is built where
    // nothing reads or changes the lines and the client speaks HTTP/1.
    let reads_answer_head = route.logs.reads_upstream_head() || group.reads_answer_headers();
    // `sticky learn` reads a handshake's head, or an answer's cookies when it sets some.
    let learning = choice.learn.as_ref().map(Learn::reading);
    let keeping = Keeping {
        left_out: match reads_answer_head {
            true => 0,
            false => headers::left_out_of_responses(route.reply.passed),
        },
        relay: http1_client
            && !reads_answer_head
            && learning != Some(AnswerReading::Head)
            && route.relays_upstream_lines,
        rewritten: route.reply.rewritten
            | match learning {
                Some(AnswerReading::SetCookie) => headers::Rewritable::SET_COOKIE,
                _ => 0,
            },
    };
    let mut unsent = Some(upstream_request);
    let mut answered = None;
    let forwarded = forward::forward(
        group,
        &affinity,
        choice,
        (&mut unsent, &mut answered),
        forward::Route {
            settings: &route.settings,
            tls: tls.as_ref(),
            cx,
            keeping,
        },
        progress.as_deref(),
        log.as_deref_mut(),
    )
    .await;
    // A request no server took still has its body: an `error_page` may send it elsewhere.
    // `forward` leaves its answer in the slot whenever it returns Ok (were one missing, a
    // defect, the client would get a 502, not a dropped connection).
    let answer = match forwarded.and_then(|()| answered.ok_or(ProxyError::NoLiveUpstream)) {
        Ok(answer) => answer,
        Err(error) => {
            let body = unsent.and_then(|request| request.into_body().into_client());
            return Err(Failed { error, body });
        }
    };
    let exchange = Exchange {
        route,
        conn,
        client_upgrade: client_upgrade.take().filter(|_| wanted),
        added,
        reply_rendered,
        host: if normalised.host.is_empty() {
            &server.name
        } else {
            normalised.host
        },
        reusable,
        holds,
    };
    // Returned as it is: a `Result` converted here would copy the response once more.
    exchange.relay(answer, log)
}

/// A proxied exchange that failed before a response: the error, and the client's body if no
/// server took it (None also for a request without one).
struct Failed {
    error: ProxyError,
    body: Option<ClientBody>,
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Failed {
        Failed { error, body: None }
    }
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
    /// Places in `limit_conn` zones: they ride on the body, or on the tunnel until it closes.
    holds: Option<ConnectionHolds>,
}

impl Exchange<'_> {
    /// Turns the upstream's answer into the client's response: headers cleaned, the sticky
    /// cookie and `add_header`s added, then either the body streamed back or — for a `101` —
    /// the two connections joined in a tunnel (an HTTP/2 client is answered `200` for it).
    fn relay(
        self,
        answer: forward::Answer<'_>,
        log: &mut Option<Box<Record>>,
    ) -> Result<Response<ResponseBody>, Failed> {
        let mut guard = answer.guard;
        let (head, incoming) = (answer.head, answer.body);
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = head.status;
        parts.version = head.version;
        headers::discard(std::mem::replace(&mut parts.headers, head.headers));
        guard.answered(parts.status.as_u16());
        // Relayed lines are left as they came (the route has no rule that changes them), and
        // the map holds only what is added below.
        let relayed = matches!(head.lines, UpstreamLines::Relayed(_));
        // `sticky learn` reads the head as the upstream sent it (before cookies are rewritten);
        // an answer it would read was not relayed.
        let learner = (answer.learn.as_ref().filter(|_| !relayed)).and_then(|learn| {
            learn.on_head(parts.status.as_u16(), &parts.headers, head.sets_cookie)
        });
        if let Some(log) = log.as_deref_mut() {
            log.head(Phase::UpstreamHead, parts.status.as_u16(), &parts.headers);
        }
        let switching = match &self.client_upgrade {
            Some(ClientSide::Http2(websocket)) => websocket.accept(&mut parts)?,
            _ => parts.status == StatusCode::SWITCHING_PROTOCOLS,
        };
        let transport =
            seen::transport_of(&parts, switching, head.event_stream, &self.client_upgrade);
        if let Some(transport) = transport {
            guard.mark(transport);
        }
        if !relayed {
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
            reply_headers::rewrite_upstream(
                &mut parts.headers,
                reply,
                rendered,
                origin,
                rewritable,
            );
        }
        // A 101 included: the group said whether this answer pins the client.
        if let Some(value) = answer.set_cookie.as_ref().and_then(SetCookie::value) {
            parts.headers.append(header::SET_COOKIE, value);
        }
        add_response_headers(&mut parts.headers, parts.status, self.added);
        let read_timeout = self.route.settings.read_timeout;
        if !switching {
            let keep_alive = self.reusable.then_some(answer.tls);
            let timeouts = (read_timeout, self.route.settings.client_send_timeout);
            // Listed on its server like a tunnel: a drain or a stop ends it after an event.
            let events = (transport == Some(crate::peer::Transport::ServerSentEvents))
                .then(|| guard.peer().closers.register(&self.conn.tunnels.close));
            let mut body: ResponseBody =
                UpstreamBody::new(incoming, timeouts, keep_alive, guard, head.lines).into();
            if let Some(holds) = self.holds {
                body.hold_until_end(holds);
            }
            if let Some(signal) = events {
                body.end_events_on(signal);
            }
            if let Some(learner) = learner {
                body.learn_from(learner);
            }
            return Ok(Response::from_parts(parts, body));
        }
        let Some(client_upgrade) = self.client_upgrade else {
            // A 101 nobody asked for cannot be relayed meaningfully.
            return Err(ProxyError::UpstreamStatus(101).into());
        };
        // The socket under the 101, for the tunnel (always there: nothing read the body).
        let Some(upstream) = incoming.into_connection() else {
            return Err(ProxyError::UpstreamStatus(101).into());
        };
        // The tunnel's line is written when it ends, with the 101 (or 200) the client got.
        let log = log.take().map(|mut log| {
            log.head(Phase::SentHead, parts.status.as_u16(), &parts.headers);
            // Kept for the tunnel's whole life: only what its line needs.
            log.settle();
            log
        });
        let response = Response::from_parts(parts, ());
        // Listed on its server, so a drain can close it; a stop closes it all the same.
        let close = guard.peer().closers.register(&self.conn.tunnels.close);
        let open = self.conn.tunnels.open.enter();
        let holds = self.holds.map(Box::new);
        match client_upgrade {
            ClientSide::Http1(client) => tokio::spawn(upgrade::tunnel_task(
                client,
                upstream,
                upgrade::protocol_of(response.headers()),
                read_timeout,
                close,
                guard,
                upgrade::TunnelBook { open, log, holds },
            )),
            ClientSide::Http2(websocket) => tokio::spawn(websocket.tunnel_task(
                upstream,
                read_timeout,
                close,
                guard,
                upgrade::TunnelBook { open, log, holds },
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
    rules: &crate::config::RedirectRules,
) -> Response<ResponseBody> {
    let text = r.text.as_ref().map(|template| {
        let mut text = String::new();
        template.render(&snapshot.vars, info, &mut text);
        text
    });
    phases::respond(r.code, text, info, rules)
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

/// A location's own answer from its rewrite phase (`return`, a redirect, or a rewrite error):
/// the location's `add_header`, `expires`, `server_tokens` and `gzip`, as any answer it sends.
fn location_answer(
    mut response: Response<ResponseBody>,
    route: &Route,
    snapshot: &Snapshot,
    info: &RequestInfo,
) -> Response<ResponseBody> {
    let added = render_added(&route.response_headers, snapshot, info);
    let status = response.status();
    add_response_headers(response.headers_mut(), status, added.as_deref());
    let gzip = route.gzip.as_ref();
    let gzip = gzip.and_then(|policy| policy.offer(info.method, info.version, info.headers));
    finish_at(&mut response, route, gzip);
    response
}

/// What a location does to every response it sends, proxied or its own: `expires`,
/// `server_tokens` and the other reply rules, then `gzip` where the request allowed it.
fn finish_at(
    response: &mut Response<ResponseBody>,
    route: &Route,
    gzip: Option<crate::compress::Offer>,
) {
    let status = response.status();
    reply_headers::finish(response.headers_mut(), status, &route.reply);
    if let Some(gzip) = gzip {
        let known_length = response.body().size_hint().exact();
        if let Some(encoder) = gzip.respond(status, response.headers_mut(), known_length) {
            response.body_mut().compress(encoder);
        }
    }
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
    /// What the rewrite phases set, captured and rewrote (None before them).
    locals: Option<&'a Locals>,
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
        locals: normalised.locals,
    }
}
