//! A request's body on its way up: framed by its `Content-Length` or chunked, queued while
//! the body has pieces ready (the request head with the first of them) and written when it has
//! none, so a body malformed in what already arrived fails before the upstream saw it.
//!
//! Driven by the exchange until the response head arrives, then by the response body (an
//! upstream may answer before it read the whole upload).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Body;

use super::Connection;
use crate::proxy::body::BodyError;
use crate::proxy::body::request::RequestBody;
use crate::server::http1::chunk_size_line;

/// A request's body on its way up.
#[derive(Debug)]
pub(super) struct Upload {
    /// The body (handed back whole while nothing was taken from it).
    pub(super) body: RequestBody,
    chunked: bool,
    /// `Content-Length` bytes not yet sent.
    remaining: u64,
    /// A frame was taken from the body: it can no longer be handed back whole.
    pub(super) started: bool,
    /// The body ended and its last bytes are queued.
    pub(super) finished: bool,
}

impl Upload {
    /// `body`, sent chunked, or as `length` bytes (what its `Content-Length` said).
    pub(super) fn new(body: RequestBody, length: Option<u64>) -> Upload {
        Upload {
            body,
            chunked: length.is_none(),
            remaining: length.unwrap_or(0),
            started: false,
            finished: false,
        }
    }
}

/// Why an upload stopped.
pub(super) enum UploadError {
    /// Writing to the upstream failed.
    Io(std::io::Error),
    /// The client's body failed (gone, too slow, too large).
    Body(BodyError),
}

impl Upload {
    /// Queues body bytes and writes them out for as long as the body has some and the socket
    /// takes them; `Ready(Ok)` once everything was written.
    ///
    /// What the body has ready is queued before anything is written (up to [`FLUSH_AT`]), the
    /// request head included: one write where the body is at hand, and a body that turns out
    /// malformed in the bytes already received fails before the upstream saw any of it.
    pub(super) fn poll_send(
        &mut self,
        conn: &mut Connection,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            let mut waiting = false;
            while !self.finished && conn.write.len() - conn.written < FLUSH_AT {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(None) => {
                        if self.chunked {
                            conn.write.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.finished = true;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(UploadError::Body(error)));
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        self.started = true;
                        if let Ok(data) = frame.into_data() {
                            self.queue(conn, &data);
                        }
                    }
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                }
            }
            if waiting && !self.started {
                // The head waits for the body's first bytes: a body malformed from its start
                // fails before the upstream saw anything of the request.
                return Poll::Pending;
            }
            ready!(conn.poll_drain(cx)).map_err(UploadError::Io)?;
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            if waiting {
                return Poll::Pending;
            }
        }
    }

    fn queue(&mut self, conn: &mut Connection, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        if self.chunked {
            let (line, len) = chunk_size_line(data.len());
            conn.write.extend_from_slice(&line[..usize::from(len)]);
            conn.write.extend_from_slice(data);
            conn.write.extend_from_slice(b"\r\n");
        } else {
            // The client's body was read to its declared length, so it cannot overrun the
            // length sent; a `proxy_set_header Content-Length` smaller than the body must not
            // let the rest be read upstream as a second request.
            let take = (data.len() as u64).min(self.remaining) as usize;
            conn.write.extend_from_slice(&data[..take]);
            self.remaining -= take as u64;
        }
    }
}

/// How much of a body is queued before it is written (then writing waits for the upstream).
const FLUSH_AT: usize = 64 * 1024;
