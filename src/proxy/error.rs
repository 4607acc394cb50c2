//! Every way a proxied exchange can fail before a response starts, and the status code each
//! becomes. This is the one place where failures turn into responses.

use std::fmt;

use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::body::response::ResponseBody;

/// A failure that ends an exchange with an error page.
#[derive(Debug)]
pub enum ProxyError {
    /// No location matches (404).
    NotFound,
    /// `client_max_body_size` exceeded (413).
    BodyTooLarge,
    /// The client's request could not be read or forwarded as sent (400).
    BadRequest,
    /// The client went away while sending its body (nginx logs 499; nobody reads the answer).
    ClientAborted,
    /// The client sent nothing of its body for `client_body_timeout` (408).
    ClientTimeout,
    /// Every server of the group is down or was tried (502).
    NoLiveUpstream,
    /// Every healthy server is at `max_conns` (503).
    AllBusy,
    /// The upstream answered with a status `proxy_next_upstream` counts as a failure, and no
    /// other server was left to try (502).
    UpstreamStatus(u16),
    /// The upstream's `101` to a WebSocket handshake tether made for an HTTP/2 client did not
    /// answer its key (502).
    UpstreamHandshake,
    /// `proxy_pass http://$var` named no upstream group (502, as nginx without a resolver).
    UnknownUpstream(String),
    /// Connection refused, reset or closed by the upstream before a response (502).
    Upstream(UpstreamFailure),
    /// The upstream did not answer in time (504).
    Timeout(TimeoutKind),
}

/// What the upstream did wrong.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// Connecting failed.
    Connect(std::io::Error),
    /// The exchange failed after connecting (reset, premature close, invalid response).
    Exchange(crate::proxy::origin::OriginError),
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// `proxy_connect_timeout`.
    Connect,
    /// `proxy_send_timeout`.
    Send,
    /// `proxy_read_timeout` (waiting for the response head).
    Read,
}

impl ProxyError {
    /// The status this failure answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest | ProxyError::ClientAborted => StatusCode::BAD_REQUEST,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::AllBusy => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoLiveUpstream
            | ProxyError::UnknownUpstream(_)
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamStatus(_)
            | ProxyError::UpstreamHandshake => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// True when the client, not the upstream, ended the exchange: not a server failure, and
    /// no reason to try another server.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            ProxyError::BodyTooLarge
                | ProxyError::ClientAborted
                | ProxyError::ClientTimeout
                | ProxyError::BadRequest
        )
    }

    /// True for failures `proxy_next_upstream timeout` covers.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProxyError::Timeout(_))
    }

    /// The error page.
    pub fn into_response(self) -> Response<ResponseBody> {
        error_page(self.status())
    }
}

/// An nginx-style error page for `status`.
pub fn error_page(status: StatusCode) -> Response<ResponseBody> {
    error_page_titled(status, None)
}

/// An error page whose title says more than the status' reason phrase (nginx's "400 Request
/// Header Or Cookie Too Large").
pub fn error_page_titled(status: StatusCode, title: Option<&str>) -> Response<ResponseBody> {
    let title = format!(
        "{} {}",
        status.as_str(),
        title.unwrap_or_else(|| status.canonical_reason().unwrap_or(""))
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>tether</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotFound => f.write_str("no location matches"),
            ProxyError::BodyTooLarge => f.write_str("client intended to send too large body"),
            ProxyError::BadRequest => f.write_str("client request could not be read"),
            ProxyError::ClientAborted => {
                f.write_str("client closed the connection while sending its body")
            }
            ProxyError::ClientTimeout => f.write_str("client timed out sending its body"),
            ProxyError::NoLiveUpstream => f.write_str("no live upstreams"),
            ProxyError::AllBusy => f.write_str("every live upstream is at max_conns"),
            ProxyError::UpstreamStatus(status) => write!(f, "upstream answered {status}"),
            ProxyError::UpstreamHandshake => {
                f.write_str("upstream's 101 did not accept the WebSocket key sent")
            }
            ProxyError::UnknownUpstream(name) => write!(f, "no upstream named \"{name}\""),
            ProxyError::Upstream(UpstreamFailure::Connect(error)) => {
                write!(f, "connect() to upstream failed ({error})")
            }
            ProxyError::Upstream(UpstreamFailure::Exchange(error)) => {
                write!(f, "upstream failed before sending a response ({error})")
            }
            ProxyError::Timeout(TimeoutKind::Connect) => {
                f.write_str("upstream timed out while connecting")
            }
            ProxyError::Timeout(TimeoutKind::Send) => {
                f.write_str("upstream timed out while sending the request")
            }
            ProxyError::Timeout(TimeoutKind::Read) => {
                f.write_str("upstream timed out while reading the response header")
            }
        }
    }
}
