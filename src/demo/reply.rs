//! The replies every route of an app server builds (whole bodies, bodiless ones such as a 101,
//! plain text), the body type they share with the endless streams, and the one query reader
//! the routes need.
//!
//! Imports nothing of the demo: every other file of it may use these.

use std::{convert::Infallible, io};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// Response body of every route: whole bodies and endless event streams alike.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// The value of `key` in a query string, as written (the demo's values need no decoding).
pub(crate) fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// A whole-body response with the given status and content type.
pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = bodied(status, body.into());
    let content_type = HeaderValue::from_static(content_type);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// A response without a body, such as a 101.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    bodied(status, Bytes::new())
}

fn bodied(status: StatusCode, body: Bytes) -> Response<Body> {
    let body = Full::new(body)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body)
}
