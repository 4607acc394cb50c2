//! The response body on its way to the client: an upstream's, streamed as it arrives, or a
//! small one of tether's own (error pages, `return`).
//!
//! The upstream body carries the bookkeeping that must last exactly as long as the stream: the
//! peer's active-request guard (least_conn counts open streams, not just request heads), the
//! `proxy_read_timeout` idle timer, and the keep-alive connection, returned to the peer's pool
//! only once the upstream's response has been read to the end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::event_stream::EndAfterEvent;
use super::idle::ReadIdle;
use super::{BodyError, learn};
use crate::compress::{self, Encoder};
use crate::drain::CloseSignal;
use crate::limits::ConnectionHolds;
use crate::peer::ActiveGuard;
use crate::proxy::origin::OriginBody;
use crate::proxy::pool::Pooled;
use crate::proxy::relayed::UpstreamLines;
use crate::telemetry::access_log::Record;
use crate::tls::upstream::TlsTarget;
use crate::upstream::BodyLearner;

pin_project! {
    /// An upstream response body on its way to the client.
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        inner: OriginBody,
        // `proxy_read_timeout` is the idle time between two reads, so an SSE stream or a slow
        // download that keeps moving is never cut (see `idle`: one timer, not one per frame).
        #[pin]
        idle: ReadIdle,
        // `send_timeout` of the location: how long the client may leave this body unread.
        send_timeout: Duration,
        // The connection goes back to the pool only after the whole response was read; a body
        // dropped half-way takes the connection down with it. Some: pooled under this TLS
        // (None inside: plain); None: the request asked the upstream to close.
        keep_alive: Option<Option<std::sync::Arc<TlsTarget>>>,
        guard: Option<ActiveGuard>,
        // Where the upstream's header lines are for the client's HTTP/1 writer: in the map
        // (with their spellings) or relayed from the head.
        lines: Option<UpstreamLines>,
    }
}

impl UpstreamBody {
    /// Streams `inner`, counting on `guard` until the end and returning its connection to the
    /// peer's pool (as `keep_alive` says: Some with the TLS it was secured with) if the
    /// response completes. `timeouts` are the location's `proxy_read_timeout` and
    /// `send_timeout`; `lines` is where the head's lines are for the client's writer.
    pub fn new(
        inner: OriginBody,
        timeouts: (Duration, Duration),
        keep_alive: Option<Option<std::sync::Arc<TlsTarget>>>,
        guard: ActiveGuard,
        lines: UpstreamLines,
    ) -> Pin<Box<UpstreamBody>> {
        let (read_timeout, send_timeout) = timeouts;
        // The block first and the body written in it: built on the stack and then boxed, its
        // few hundred bytes would be copied once more.
        let body = Box::write(
            Box::new_uninit(),
            UpstreamBody {
                inner,
                idle: ReadIdle::new(read_timeout),
                send_timeout,
                keep_alive,
                guard: Some(guard),
                lines: Some(lines),
            },
        );
        Box::into_pin(body)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.as_mut().moved();
                if this.inner.is_end_stream() {
                    finish(this.inner.get_mut(), this.keep_alive, this.guard);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                finish(this.inner.get_mut(), this.keep_alive, this.guard);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.keep_alive.take();
                this.guard.take();
                Poll::Ready(Some(Err(BodyError::Upstream(error))))
            }
            Poll::Pending => {
                ready!(this.idle.poll_expired(cx));
                this.keep_alive.take();
                this.guard.take();
                Poll::Ready(Some(Err(BodyError::ReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response was read to its end: the connection may carry the next request.
fn finish(
    inner: &mut OriginBody,
    keep_alive: &mut Option<Option<std::sync::Arc<TlsTarget>>>,
    guard: &mut Option<ActiveGuard>,
) {
    if let (Some(tls), Some(guard)) = (keep_alive.take(), guard.as_ref())
        && let Some(connection) = inner.take_reusable()
    {
        guard.peer().pool.put(Pooled { connection, tls });
    }
    guard.take();
}

pin_project! {
    /// Every response body tether sends: a streamed upstream body, or a small one of its own,
    /// gzipped on its way if `gzip` says so; with the request's access log lines, finished
    /// when the body ends or is dropped.
    #[derive(Debug)]
    pub struct ResponseBody {
        #[pin]
        kind: Kind,
        // Boxed: the deflate state is large, and most responses are not compressed.
        encoder: Option<Box<Encoder>>,
        log: Option<LogOnEnd>,
        // `limit_conn` places, given back when the body is dropped (after its end, or cut off).
        holds: Option<ConnectionHolds>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind {
        // Streamed from an upstream; an event stream ends after a complete event when its
        // server drains or tether stops; `sticky learn` may read a handshake's first chunks.
        Upstream {
            // Boxed: a response moves through several layers on its way to the writer, and
            // every move of this body inline was a copy of some 400 bytes; one allocation costs
            // less than those copies.
            body: Pin<Box<UpstreamBody>>,
            events: Option<Box<EndAfterEvent>>,
            learner: Option<Box<BodyLearner>>,
        },
        // Generated by tether (error pages, `return`).
        Full { data: Option<Bytes> },
    }
}

/// A request's log lines riding on its response body: bytes are counted as they go, and the
/// lines finished when the body is dropped — after its end, or cut off.
#[derive(Debug)]
struct LogOnEnd(Option<Box<Record>>);

impl Drop for LogOnEnd {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.finish();
        }
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        let data: Bytes = data.into();
        ResponseBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            encoder: None,
            log: None,
            holds: None,
        }
    }

    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full { data: None },
            encoder: None,
            log: None,
            holds: None,
        }
    }

    /// How long the client may leave this body unread (`send_timeout` of the location that
    /// proxied it); None for tether's own answers, which use the http-level value.
    pub fn send_timeout(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Upstream { body, .. } => Some(body.send_timeout),
            Kind::Full { .. } => None,
        }
    }

    /// Ends this event stream after a complete event once `signal` fires (a drain or a stop).
    pub fn end_events_on(&mut self, signal: Arc<CloseSignal>) {
        if let Kind::Upstream { events, .. } = &mut self.kind {
            *events = Some(Box::new(EndAfterEvent::new(signal)));
        }
    }

    /// Shows the upstream body's chunks to `learner` (`sticky learn` reading a handshake).
    pub fn learn_from(&mut self, learner: BodyLearner) {
        if let Kind::Upstream { learner: slot, .. } = &mut self.kind {
            *slot = Some(Box::new(learner));
        }
    }

    /// Holds the request's `limit_conn` places until the body is dropped.
    pub fn hold_until_end(&mut self, holds: ConnectionHolds) {
        self.holds = Some(holds);
    }

    /// Where the upstream's header lines are for the client's HTTP/1 writer (None: tether's
    /// own answer).
    pub fn upstream_lines(&self) -> Option<&UpstreamLines> {
        match &self.kind {
            Kind::Upstream { body, .. } => body.lines.as_ref(),
            Kind::Full { .. } => None,
        }
    }

    /// Carries `record` until the body ends or is dropped, counting the bytes sent.
    pub fn log_on_end(&mut self, record: Box<Record>) {
        self.log = Some(LogOnEnd(Some(record)));
    }

    /// Sends the body through `encoder` (the head was already marked compressed).
    pub fn compress(&mut self, encoder: Encoder) {
        self.encoder = Some(Box::new(encoder));
    }
}

impl From<Pin<Box<UpstreamBody>>> for ResponseBody {
    fn from(body: Pin<Box<UpstreamBody>>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Upstream {
                body,
                events: None,
                learner: None,
            },
            encoder: None,
            log: None,
            holds: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let frame = match this.encoder.as_deref_mut() {
            None => ready!(this.kind.poll_frame(cx)),
            Some(encoder) => ready!(encoder.poll_frame(this.kind, cx)).map(|r| {
                r.map_err(|failure| match failure {
                    compress::Failure::Body(error) => error,
                    compress::Failure::Deflate(error) => BodyError::Compress(error),
                })
            }),
        };
        if let (Some(Ok(frame)), Some(LogOnEnd(Some(record)))) = (&frame, this.log.as_mut())
            && let Some(data) = frame.data_ref()
        {
            record.body_sent(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.encoder {
            Some(encoder) => encoder.is_finished(),
            None => self.kind.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.encoder {
            // The compressed size is known only at the end.
            Some(_) => SizeHint::default(),
            None => self.kind.size_hint(),
        }
    }
}

impl Body for Kind {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            KindProj::Upstream {
                body,
                events,
                learner,
            } => {
                let frame = ready!(match events {
                    Some(events) => events.poll_frame(body.as_mut(), cx),
                    None => body.as_mut().poll_frame(cx),
                });
                if let (Some(Ok(frame)), Some(_)) = (&frame, &learner) {
                    learn::observe(frame, learner);
                }
                Poll::Ready(frame)
            }
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Kind::Upstream { body, .. } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
