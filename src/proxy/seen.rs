//! What the proxy shows of itself: the status pages as responses, and which long-lived
//! transport a relayed answer opens (counted on the server's guard while it lasts).

use http::Response;
use http::header::{self, HeaderValue};

use super::request::Request;

use super::{ClientBody, ClientSide, ResponseBody, tunnel, upgrade};
use crate::config::StatusPage;
use crate::peer::Transport;
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use crate::telemetry::status::{self, Format};

/// A status page, in the format the request asks for, never cached.
pub(super) fn status_page(
    page: StatusPage,
    request: &Request<ClientBody>,
    snapshot: &Snapshot,
    telemetry: &Telemetry,
) -> Response<ResponseBody> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .map(HeaderValue::as_bytes);
    let format = Format::asked(request.uri().query(), accept);
    let reply = status::answer(page, format, snapshot, telemetry);
    let mut response = Response::new(ResponseBody::full(reply.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The transport a relayed answer opens, when it is a long-lived one: a WebSocket tunnel (an
/// HTTP/2 extended CONNECT is one by definition), or an event stream. A long poll was marked
/// while its head was awaited.
/// `event_stream`: the answer's `Content-Type` is `text/event-stream` (seen as it was parsed).
pub(super) fn transport_of(
    parts: &http::response::Parts,
    switching: bool,
    event_stream: bool,
    client: &Option<ClientSide>,
) -> Option<Transport> {
    if switching {
        let websocket = match client {
            Some(ClientSide::Http2(_)) => true,
            _ => upgrade::protocol_of(&parts.headers) == tunnel::Protocol::WebSocket,
        };
        return websocket.then_some(Transport::WebSocket);
    }
    event_stream.then_some(Transport::ServerSentEvents)
}
