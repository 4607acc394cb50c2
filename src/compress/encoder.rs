//! The gzip stream of one response, made as the body streams: each piece of body is
//! compressed as it arrives, and what is compressed leaves as soon as the body has nothing
//! more at hand (flushed with a deflate sync flush), so a stream's events and a long poll's
//! answer are never held back waiting for more. A `text/event-stream` is flushed after every
//! piece, even when the next one is already there: each event is decodable on its own.
//!
//! Memory per response is bounded: the deflate state (flate2's pure-Rust one: 343 KiB
//! measured at every level, for as long as the response streams) and the compressed form of
//! one piece; nothing is buffered whole.
//!
//! Must not import anything of tether.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body::{Body, Frame};

/// What compressing a body produced, or why it stopped.
#[derive(Debug)]
pub enum Failure<E> {
    /// The body being compressed failed.
    Body(E),
    /// The compressor failed (it writes to memory: not expected, but not a panic either).
    Deflate(std::io::Error),
}

/// What [`Encoder::poll_frame`] yields: the next piece of the gzip stream, or why it stopped.
pub type Compressed<E> = Option<Result<Frame<Bytes>, Failure<E>>>;

/// Compresses one response body as it streams.
pub struct Encoder {
    gzip: GzEncoder<Vec<u8>>,
    /// Input was written since the last flush.
    unflushed: bool,
    /// Flush after every piece (`text/event-stream`).
    flush_each: bool,
    /// The gzip trailer was written: the stream is complete.
    finished: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("unflushed", &self.unflushed)
            .field("flush_each", &self.flush_each)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// A gzip stream at `level` (1..=9); `flush_each` flushes after every piece of body.
    pub fn new(level: u32, flush_each: bool) -> Encoder {
        Encoder {
            gzip: GzEncoder::new(Vec::new(), Compression::new(level)),
            unflushed: false,
            flush_each,
            finished: false,
        }
    }

    /// True once the whole gzip stream was handed out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next frame of the compressed body, polling `inner` for the uncompressed one.
    /// Trailers are dropped (nginx sends none with a compressed body either).
    pub fn poll_frame<B>(
        &mut self,
        mut inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Compressed<B::Error>>
    where
        B: Body<Data = Bytes>,
    {
        if self.finished {
            return Poll::Ready(None);
        }
        loop {
            match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if let Err(error) = self.gzip.write_all(&data) {
                        return Poll::Ready(Some(Err(Failure::Deflate(error))));
                    }
                    self.unflushed = true;
                    let made = if self.flush_each {
                        self.flush()
                    } else {
                        Ok(self.take())
                    };
                    match made {
                        Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Ok(None) => {}
                        Err(error) => return Poll::Ready(Some(Err(Failure::Deflate(error)))),
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Some(Err(Failure::Body(error))));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    if let Err(error) = self.gzip.try_finish() {
                        return Poll::Ready(Some(Err(Failure::Deflate(error))));
                    }
                    return Poll::Ready(self.take().map(|out| Ok(Frame::data(out))));
                }
                // Nothing more at hand: what was compressed goes now rather than waiting for
                // the next piece, which may be an event away.
                // (`inner` is waiting with the waker: returning Pending after it is sound.)
                Poll::Pending if self.unflushed => match self.flush() {
                    Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Ok(None) => return Poll::Pending,
                    Err(error) => return Poll::Ready(Some(Err(Failure::Deflate(error)))),
                },
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Sync-flushes the compressor and hands out everything it made.
    fn flush(&mut self) -> std::io::Result<Option<Bytes>> {
        self.unflushed = false;
        self.gzip.flush()?;
        Ok(self.take())
    }

    /// The compressed bytes made so far, if any.
    fn take(&mut self) -> Option<Bytes> {
        let out = self.gzip.get_mut();
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(out)))
    }
}
