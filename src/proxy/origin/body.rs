//! An upstream response's body, read from the connection's buffer as the client takes it:
//! `Content-Length` bytes, chunked (decoded strictly, as the client's request bodies are), or
//! everything until the upstream closes. The connection is handed back only when the body was
//! read exactly to its end, the upload finished and nothing unasked followed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::head::{ResponseFraming, ResponseHead};
use super::upload::Upload;
use super::{Connection, OriginError};
use crate::server::http1::decode::{Decoded, Decoder};

/// How much of the body is left to read.
#[derive(Debug)]
enum Reading {
    /// By length or chunks.
    Framed(Decoder),
    /// Until the upstream closes.
    UntilClose,
    /// Read to its end.
    Done,
}

/// An upstream response body (see the module doc).
#[derive(Debug)]
pub struct OriginBody {
    conn: Option<Box<Connection>>,
    reading: Reading,
    /// The rest of a request body the upstream answered before reading it all (boxed: rare).
    upload: Option<Box<Upload>>,
    /// The connection may carry another request once the body is read to its end.
    keep_alive: bool,
}

impl OriginBody {
    /// The body that follows `head` on `conn`; `upload` is what is left of the request's body,
    /// `complete` false when writing it already failed.
    pub(super) fn new(
        conn: Box<Connection>,
        head: &ResponseHead,
        upload: Option<Box<Upload>>,
        complete: bool,
    ) -> OriginBody {
        let reading = match head.framing {
            ResponseFraming::None => Reading::Done,
            ResponseFraming::Length(length) => Reading::Framed(Decoder::length(length)),
            ResponseFraming::Chunked => Reading::Framed(Decoder::chunked()),
            ResponseFraming::UntilClose => Reading::UntilClose,
        };
        OriginBody {
            conn: Some(conn),
            reading,
            upload,
            keep_alive: head.keep_alive && complete,
        }
    }

    /// The connection, for a tunnel after a `101` (None once taken).
    pub fn into_connection(mut self) -> Option<Box<Connection>> {
        self.conn.take()
    }

    /// The connection, if the body was read to its end and the connection can carry the next
    /// request; taken, so it is handed back once.
    pub fn take_reusable(&mut self) -> Option<Box<Connection>> {
        let idle = self.is_end_stream()
            && self.upload.is_none()
            && self.keep_alive
            && self.conn.as_ref().is_some_and(|conn| conn.read.is_empty());
        if idle { self.conn.take() } else { None }
    }

    /// Moves the unfinished upload on; an upload that fails now only costs the connection
    /// its reuse (the answer is already on its way).
    fn drive_upload(&mut self, cx: &mut Context<'_>) {
        let (Some(upload), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) else {
            return;
        };
        match upload.poll_send(conn, cx) {
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Ready(Err(_)) => {
                self.upload = None;
                self.keep_alive = false;
            }
            Poll::Pending => {}
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = OriginError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, OriginError>>> {
        let this = self.get_mut();
        if this.upload.is_some() {
            this.drive_upload(cx);
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match &mut this.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Framed(decoder) => match decoder.decode(&mut conn.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End) => {
                        this.reading = Reading::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(malformed) => {
                        this.keep_alive = false;
                        this.conn = None;
                        return Poll::Ready(Some(Err(OriginError::Invalid(malformed.0))));
                    }
                },
                Reading::UntilClose if !conn.read.is_empty() => {
                    let data = conn.read.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Reading::UntilClose => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.reading, Reading::UntilClose) => {
                    this.reading = Reading::Done;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(OriginError::Closed)));
                }
                Ok(_) => {}
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(OriginError::Io(error))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.reading {
            Reading::Done => true,
            Reading::Framed(decoder) => decoder.is_done(),
            Reading::UntilClose => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Framed(decoder) => match decoder.remaining() {
                Some(remaining) => SizeHint::with_exact(remaining),
                None => SizeHint::default(),
            },
            Reading::UntilClose => SizeHint::default(),
        }
    }
}
