//! What an error event on the request path says about its request, as nginx's error log does:
//! `client`, `server` (the virtual server's first name), `request` (the request line),
//! `upstream` (`scheme://server/uri`, the group's name when no server was chosen), `host`,
//! and tether's `group`; and the messages, in nginx's words where nginx has them
//! ("connect() failed (111: Connection refused) while connecting to upstream").
//!
//! A [`RequestContext`] is made for every proxied request from what is at hand — references,
//! the method (a copy for the standard ones) and a shared handle on the target's path and query
//! (the whole target only in the rare absolute form) — and nothing is
//! formatted unless an event fires: the request line and the upstream URL are `Display`
//! values that tracing renders only for an enabled event.

use std::fmt;
use std::net::IpAddr;

use http::uri::PathAndQuery;
use http::{Method, Uri, Version};

use tracing::Level;

use super::error::{ProxyError, TimeoutKind, UpstreamFailure};
use super::origin::OriginError;
use crate::telemetry::errno::os_error;
use crate::upstream::NoPeer;

/// Logs an event with the request's context. `upstream = X` adds the upstream; `group = G`
/// names the group.
macro_rules! request_event {
    ($level:expr, $cx:expr, upstream = $upstream:expr, group = $group:expr, $($message:tt)+) => {
        tracing::event!(
            $level,
            client = %$cx.client,
            server = $cx.server,
            request = %$cx.request_line(),
            upstream = %$upstream,
            host = $cx.host,
            group = $group,
            $($message)+
        )
    };
    ($level:expr, $cx:expr, $($message:tt)+) => {
        tracing::event!(
            $level,
            client = %$cx.client,
            server = $cx.server,
            request = %$cx.request_line(),
            host = $cx.host,
            $($message)+
        )
    };
}
pub(crate) use request_event;

/// The request an error event is about.
pub struct RequestContext<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The virtual server's first `server_name` ("" if none).
    pub server: &'a str,
    /// The `Host` the request named, as normalised.
    pub host: &'a str,
    scheme: &'static str,
    method: Method,
    target: Target,
    version: Version,
}

/// A request's target, as much of it as an error line shows.
enum Target {
    /// Origin form (`/path?query`): a share of the path and query's bytes (cloning the whole
    /// `Uri` copied three handles, per request, for a line most requests never log).
    Origin(Option<PathAndQuery>),
    /// Absolute form (`http://host/path`), shown as sent.
    Absolute(Uri),
}

impl Target {
    fn of(uri: &Uri) -> Target {
        match uri.scheme() {
            Some(_) => Target::Absolute(uri.clone()),
            None => Target::Origin(uri.path_and_query().cloned()),
        }
    }
}

impl<'a> RequestContext<'a> {
    /// The context of a request with this head from `client` (its real address), answered by
    /// server `server`.
    pub fn new<B>(
        request: &crate::proxy::request::Request<B>,
        client: IpAddr,
        server: &'a str,
        host: &'a str,
    ) -> RequestContext<'a> {
        RequestContext {
            client,
            server,
            host,
            scheme: "http",
            method: request.method().clone(),
            target: Target::of(request.uri()),
            version: request.version(),
        }
    }

    /// The upstream is reached over TLS (`proxy_pass https://`).
    pub fn upstream_tls(&mut self, tls: bool) {
        self.scheme = if tls { "https" } else { "http" };
    }

    /// `GET /hub HTTP/1.1`, as the client sent it.
    pub fn request_line(&self) -> impl fmt::Display + '_ {
        RequestLine(self)
    }

    /// `http://10.0.0.1:5000/hub`: the request's URI on `server` (an address, or a group name
    /// when no server was chosen).
    pub fn upstream<'s>(&'s self, server: &'s dyn fmt::Display) -> impl fmt::Display + 's {
        UpstreamUrl { cx: self, server }
    }

    fn path_and_query(&self) -> &str {
        let path_and_query = match &self.target {
            Target::Origin(path_and_query) => path_and_query.as_ref(),
            Target::Absolute(uri) => uri.path_and_query(),
        };
        path_and_query.map_or("/", PathAndQuery::as_str)
    }
}

struct RequestLine<'c, 'a>(&'c RequestContext<'a>);

impl fmt::Display for RequestLine<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cx = self.0;
        // An absolute-form target is shown as sent; otherwise the path and query.
        match &cx.target {
            Target::Absolute(target) => write!(f, "{} {} {:?}", cx.method, target, cx.version),
            Target::Origin(_) => {
                write!(f, "{} {} {:?}", cx.method, cx.path_and_query(), cx.version)
            }
        }
    }
}

struct UpstreamUrl<'c, 'a> {
    cx: &'c RequestContext<'a>,
    server: &'c dyn fmt::Display,
}

impl fmt::Display for UpstreamUrl<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cx = self.cx;
        write!(f, "{}://{}{}", cx.scheme, self.server, cx.path_and_query())
    }
}

/// Logs that the group had no server to offer (nginx's "no live upstreams"; tether says when
/// the live ones are all at `max_conns`).
pub fn log_no_peer(cx: &RequestContext<'_>, group: &str, no_peer: NoPeer) {
    let upstream = cx.upstream(&group);
    match no_peer {
        NoPeer::AllDown => request_event!(
            Level::ERROR,
            cx,
            upstream = upstream,
            group = group,
            "no live upstreams while connecting to upstream"
        ),
        NoPeer::AllBusy => request_event!(
            Level::ERROR,
            cx,
            upstream = upstream,
            group = group,
            "no live upstreams (every live server is at max_conns) while connecting to upstream"
        ),
    }
}

/// Logs how a proxied request ended in error, unless it was logged where it happened (each
/// failed try on a server, and a group with no server to offer, are).
pub fn log_final(cx: &RequestContext<'_>, error: &ProxyError) {
    match error {
        ProxyError::BodyTooLarge => {
            request_event!(Level::ERROR, cx, "client intended to send too large body")
        }
        ProxyError::UnknownUpstream(name) => request_event!(
            Level::ERROR,
            cx,
            "no upstream group \"{name}\" for the proxy_pass variable's value"
        ),
        ProxyError::UpstreamHandshake => request_event!(
            Level::ERROR,
            cx,
            "upstream's 101 did not accept the WebSocket key sent while reading response header \
             from upstream"
        ),
        // nginx logs what the client did at `info`: it is not the server's problem.
        ProxyError::ClientAborted => request_event!(
            Level::INFO,
            cx,
            "client prematurely closed connection while sending request to upstream"
        ),
        ProxyError::ClientTimeout => request_event!(
            Level::INFO,
            cx,
            "client timed out (110: Connection timed out) while reading client request body"
        ),
        ProxyError::BadRequest => {
            request_event!(
                Level::INFO,
                cx,
                "client sent an invalid request body or target"
            )
        }
        ProxyError::NotFound
        | ProxyError::NoLiveUpstream
        | ProxyError::AllBusy
        | ProxyError::Upstream(_)
        | ProxyError::UpstreamStatus(_)
        | ProxyError::Timeout(_) => {}
    }
}

/// What one failed try on one server is called in the log, in nginx's words.
pub fn attempt_failure(error: &ProxyError) -> String {
    match error {
        ProxyError::Upstream(UpstreamFailure::Connect(io)) => match os_error(io) {
            Some(os) => format!("connect() failed ({os}) while connecting to upstream"),
            None => format!("{io} while connecting to upstream"),
        },
        ProxyError::Upstream(UpstreamFailure::Exchange(error)) => exchange_failure(error),
        ProxyError::Timeout(kind) => {
            let stage = match kind {
                TimeoutKind::Connect => "connecting to upstream",
                TimeoutKind::Send => "sending request to upstream",
                TimeoutKind::Read => "reading response header from upstream",
            };
            format!("upstream timed out (110: Connection timed out) while {stage}")
        }
        ProxyError::UpstreamStatus(status) => {
            format!("upstream sent status {status} while reading response header from upstream")
        }
        other => format!("{other} while reading response header from upstream"),
    }
}

/// nginx's words for an exchange that failed after connecting.
fn exchange_failure(error: &OriginError) -> String {
    const STAGE: &str = "while reading response header from upstream";
    match error {
        OriginError::Closed => format!("upstream prematurely closed connection {STAGE}"),
        OriginError::Invalid(why) => format!("{why} {STAGE}"),
        OriginError::Io(io) => match os_error(io) {
            Some(os) => format!("recv() failed ({os}) {STAGE}"),
            None => format!("upstream failed ({io}) {STAGE}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn the_request_line_and_upstream_url_show_the_target_as_sent() {
        let cx = |target: &str| {
            let head = crate::proxy::request::Parts {
                method: Method::POST,
                uri: target.parse().unwrap(),
                ..Default::default()
            };
            let request = crate::proxy::request::Request::from_parts(head, ());
            let client = "192.0.2.1".parse().unwrap();
            let cx = RequestContext::new(&request, client, "app", "app.test");
            let server = "10.0.0.1:5000";
            (
                cx.request_line().to_string(),
                cx.upstream(&server).to_string(),
            )
        };
        assert_eq!(
            cx("/hub?id=1"),
            (
                "POST /hub?id=1 HTTP/1.1".to_string(),
                "http://10.0.0.1:5000/hub?id=1".to_string()
            )
        );
        assert_eq!(
            cx("http://app.test/hub?id=1"),
            (
                "POST http://app.test/hub?id=1 HTTP/1.1".to_string(),
                "http://10.0.0.1:5000/hub?id=1".to_string()
            )
        );
        assert_eq!(cx("http://app.test").1, "http://10.0.0.1:5000/");
    }

    #[test]
    fn failures_read_like_nginx() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let connect = ProxyError::Upstream(UpstreamFailure::Connect(refused));
        assert_eq!(
            attempt_failure(&connect),
            "connect() failed (111: Connection refused) while connecting to upstream"
        );
        assert_eq!(
            attempt_failure(&ProxyError::Timeout(TimeoutKind::Read)),
            "upstream timed out (110: Connection timed out) while reading response header from \
             upstream"
        );
        assert_eq!(
            attempt_failure(&ProxyError::Timeout(TimeoutKind::Connect)),
            "upstream timed out (110: Connection timed out) while connecting to upstream"
        );
    }
}
