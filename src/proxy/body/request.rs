//! The request body sent upstream: the client's body streamed as it arrives and cut off past
//! `client_max_body_size`, and [`SendProgress`], which tells the `proxy_send_timeout` watchdog
//! how the upload moves.
//!
//! Must not import the response side (`response`, the peer): the connection pool names this
//! body, and the response body names the pool.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::BodyError;
use super::client::ClientBody;

pin_project! {
    /// The request body sent upstream: the client's, streamed and cut off past
    /// `client_max_body_size` (the check for bodies whose size was not announced up front), or
    /// none at all for a retried bodyless request.
    #[project = RequestBodyProj]
    #[derive(Debug)]
    pub enum RequestBody {
        /// The client's body.
        Client {
            #[pin]
            inner: ClientBody,
            remaining: u64,
            progress: Option<Arc<SendProgress>>,
        },
        /// No body.
        Empty,
    }
}

impl RequestBody {
    /// Wraps the client's body; `limit` 0 means unlimited, as nginx. `progress`, if given,
    /// records how the upload moves (for `proxy_send_timeout`).
    pub fn client(
        inner: ClientBody,
        limit: u64,
        progress: Option<Arc<SendProgress>>,
    ) -> RequestBody {
        RequestBody::Client {
            inner,
            remaining: if limit == 0 { u64::MAX } else { limit },
            progress,
        }
    }
}

impl RequestBody {
    /// The client's body back, as it stands (None for no body): what an `error_page` asks
    /// again with when no server took the request.
    pub fn into_client(self) -> Option<ClientBody> {
        match self {
            RequestBody::Client { inner, .. } => Some(inner),
            RequestBody::Empty => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let RequestBodyProj::Client {
            inner,
            remaining,
            progress,
        } = self.project()
        else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        if let Some(progress) = progress {
            progress.record(&polled);
        }
        let frame = match ready!(polled) {
            None => return Poll::Ready(None),
            Some(Err(error)) => return Poll::Ready(Some(Err(BodyError::Client(error)))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > *remaining {
                return Poll::Ready(Some(Err(BodyError::TooLarge)));
            }
            *remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { inner, .. } => inner.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { inner, .. } => inner.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// How an upload to the upstream is moving, read by the `proxy_send_timeout` watchdog.
///
/// hyper asks the body for the next frame as soon as the previous one is written; when the
/// upstream stops reading, hyper stops asking. So "not asked for a while, and not waiting on the
/// client either" is exactly nginx's "the upstream accepted nothing for proxy_send_timeout".
#[derive(Debug)]
pub struct SendProgress {
    start: Instant,
    /// Milliseconds after `start` of the last frame handed to hyper.
    last_frame_ms: AtomicU64,
    /// The body is pending on the client (its slowness is not the upstream's fault).
    waiting_on_client: AtomicBool,
    /// The whole body was handed over.
    done: AtomicBool,
}

impl SendProgress {
    /// Tracking starts now.
    pub fn new() -> Arc<SendProgress> {
        Arc::new(SendProgress {
            start: Instant::now(),
            last_frame_ms: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            done: AtomicBool::new(false),
        })
    }

    fn record<T, E>(&self, polled: &Poll<Option<Result<T, E>>>) {
        let waiting = polled.is_pending();
        self.waiting_on_client.store(waiting, Ordering::Relaxed);
        if !waiting {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last_frame_ms.store(ms, Ordering::Relaxed);
        }
        if matches!(polled, Poll::Ready(None)) {
            self.done.store(true, Ordering::Relaxed);
        }
    }

    /// True once the whole body was handed to hyper.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// True while the body waits for the client to send more.
    pub fn is_waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    /// When hyper last took a frame (or tracking began).
    pub fn last_frame(&self) -> Instant {
        self.start + Duration::from_millis(self.last_frame_ms.load(Ordering::Relaxed))
    }
}
