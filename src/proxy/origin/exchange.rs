//! Sending one request on a [`Connection`] and waiting for its response head, with the upload
//! of its body driven from the same poll (an upstream may answer before it read the whole
//! body: a 413, a 401, an early error; the upload then goes on inside the response body).
//!
//! The request's head is written in one pass from the request as the proxy left it; its body
//! is framed by `Content-Length` when the request has one, chunked otherwise.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Method;
use http_body::Body;

use super::body::OriginBody;
use super::head::{self, Keeping, Parsed, RequestFraming, ResponseHead};
use super::upload::{Upload, UploadError};
use super::{Connection, OriginError};
use crate::proxy::body::BodyError;
use crate::proxy::body::request::RequestBody;
use crate::proxy::request::Request;

/// A request on its way to an upstream, until the response head arrives.
#[derive(Debug)]
pub struct Exchange {
    conn: Option<Box<Connection>>,
    upload: Option<Box<Upload>>,
    /// Writing the upload failed; the upstream may still answer (and the answer wins).
    upload_failed: Option<std::io::Error>,
    method: Method,
    /// What of the response head is kept as it is parsed.
    keeping: Keeping,
    /// Some byte of an answer arrived.
    answered: bool,
}

/// The response head, and the body that streams after it.
#[derive(Debug)]
pub struct Sent {
    /// The head, parsed once.
    pub head: Box<ResponseHead>,
    /// The body (and the connection under it).
    pub body: OriginBody,
}

/// An exchange that failed before a response head.
#[derive(Debug)]
pub struct Failure {
    /// The upstream's fault, or the client's body's.
    pub error: Result<OriginError, BodyError>,
    /// The request's body: `Ok(Some)` handed back untouched (none of it was taken), `Ok(None)`
    /// for a request without one, `Err(())` when part of it is gone (the request cannot be
    /// sent again).
    pub body: Result<Option<RequestBody>, ()>,
    /// Nothing of an answer arrived (a pooled connection the server had closed fails so).
    pub unanswered: bool,
    /// Some of the request was written: the upstream may have acted on it.
    pub sent: bool,
}

impl Exchange {
    /// Starts `request` on `conn`: its head encoded (origin-form), its body taken out of it to
    /// be uploaded. The rest of the request (its head) stays with the caller, so a failure
    /// before anything was taken leaves it whole. The answer's head keeps what `keeping` says.
    pub fn start(
        mut conn: Box<Connection>,
        request: &mut Request<RequestBody>,
        keeping: Keeping,
    ) -> Exchange {
        conn.wrote = false;
        let framing = framing_of(request);
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |target| target.as_str());
        head::encode_request(
            request.method(),
            target,
            request.headers(),
            framing,
            &mut conn.write,
        );
        // Taken out only to be sent: a bodyless request keeps its (empty) body.
        let mut take_body = || std::mem::replace(request.body_mut(), RequestBody::Empty);
        let upload = match framing {
            RequestFraming::None => None,
            RequestFraming::Length(length) => {
                Some(Box::new(Upload::new(take_body(), Some(length))))
            }
            RequestFraming::Chunked => Some(Box::new(Upload::new(take_body(), None))),
        };
        Exchange {
            conn: Some(conn),
            upload,
            upload_failed: None,
            method: request.method().clone(),
            keeping,
            answered: false,
        }
    }

    fn fail(&mut self, error: Result<OriginError, BodyError>) -> Failure {
        let body = match self.upload.take() {
            None => Ok(None),
            Some(upload) if !upload.started => Ok(Some(upload.body)),
            Some(_) => Err(()),
        };
        Failure {
            error,
            body,
            unanswered: !self.answered,
            sent: self.conn.as_ref().is_some_and(|conn| conn.wrote),
        }
    }
}

/// How the body goes up: by the request's `Content-Length` if it has one, chunked if it has a
/// body without one (an HTTP/1 client's chunked body, an HTTP/2 body of unknown length).
/// A request without a body (most) is known by its body alone, without a header lookup.
fn framing_of(request: &Request<RequestBody>) -> RequestFraming {
    if request.body().is_end_stream() {
        return RequestFraming::None;
    }
    match head::declared_length(request.headers()) {
        Some(0) => RequestFraming::None,
        Some(length) => RequestFraming::Length(length),
        None => RequestFraming::Chunked,
    }
}

impl Future for Exchange {
    type Output = Result<Sent, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Pending;
        };
        match this.upload.as_mut() {
            Some(upload) if this.upload_failed.is_none() => match upload.poll_send(conn, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(UploadError::Body(error))) => {
                    return Poll::Ready(Err(this.fail(Err(error))));
                }
                // Not the end yet: an upstream that stops reading may have answered already.
                Poll::Ready(Err(UploadError::Io(error))) => this.upload_failed = Some(error),
                Poll::Pending => {}
            },
            Some(_) => {}
            None if conn.has_pending_write() => match conn.poll_drain(cx) {
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(this.fail(Ok(OriginError::Io(error)))));
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            },
            None => {}
        }
        loop {
            if !conn.read.is_empty() {
                match head::parse_response(&mut conn.read, &this.method, this.keeping) {
                    Ok(Parsed::Final(head)) => {
                        let conn = this.conn.take().expect("checked above");
                        let upload = this.upload.take().filter(|upload| !upload.finished);
                        let complete = this.upload_failed.is_none();
                        let body = OriginBody::new(conn, &head, upload, complete);
                        return Poll::Ready(Ok(Sent { head, body }));
                    }
                    Ok(Parsed::Interim) => continue,
                    Ok(Parsed::Partial) => {}
                    Err(invalid) => {
                        return Poll::Ready(Err(this.fail(Ok(OriginError::Invalid(invalid.0)))));
                    }
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    let error = match this.upload_failed.take() {
                        Some(error) => OriginError::Io(error),
                        None => OriginError::Closed,
                    };
                    return Poll::Ready(Err(this.fail(Ok(error))));
                }
                Ok(_) => this.answered = true,
                Err(error) => return Poll::Ready(Err(this.fail(Ok(OriginError::Io(error))))),
            }
        }
    }
}
