//! Feeding a request body from the connection's socket to whoever reads it (hyper's client,
//! sending it upstream), one piece per demand: the connection reads only when the reader has
//! taken the last piece, tells a client that sent `Expect: 100-continue` to go on at the first
//! demand, and bounds the wait for the client's next bytes by `client_body_timeout`.
//!
//! Polled by the connection task alongside whatever else it does (waiting for the response,
//! writing it), never on a task of its own: the socket has one owner.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::stream::ClientStream;
use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Sleep};

use super::READ_CHUNK;
use super::decode::{Decoded, Decoder};
use super::write::Outbox;
use crate::proxy::body::client::{ClientBodyError, Demand, FeedSender};

/// Feeds a request body from the socket to its reader, one piece per demand.
pub struct Pump {
    feed: FeedSender,
    decoder: Decoder,
    /// `100 Continue` is owed at the first demand.
    expect_continue: bool,
    /// `client_body_timeout`, armed while a demanded read waits on the client.
    idle: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    end: Option<PumpEnd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// The body was read to its end.
    Complete,
    /// The reader went away, or the client failed: the connection cannot be reused.
    Abandoned,
}

impl Pump {
    /// A pump for one body, decoded by `decoder`, fed through `feed`.
    pub fn new(feed: FeedSender, decoder: Decoder, expect_continue: bool) -> Pump {
        Pump {
            feed,
            decoder,
            expect_continue,
            idle: None,
            waiting: false,
            end: None,
        }
    }

    /// True once the body was read to its end (the connection may read the next request).
    pub fn is_complete(&self) -> bool {
        self.end == Some(PumpEnd::Complete)
    }

    /// Moves the body along; Ready once it ended, whole or not. `response_started`: a
    /// `100 Continue` may no longer be sent.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut ClientStream,
        read_buf: &mut BytesMut,
        outbox: &mut Outbox,
        response_started: bool,
    ) -> Poll<PumpEnd> {
        if let Some(end) = self.end {
            return Poll::Ready(end);
        }
        let end = std::task::ready!(self.poll_feed(cx, stream, read_buf, outbox, response_started));
        self.end = Some(end);
        Poll::Ready(end)
    }

    fn poll_feed(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut ClientStream,
        read_buf: &mut BytesMut,
        outbox: &mut Outbox,
        response_started: bool,
    ) -> Poll<PumpEnd> {
        loop {
            match std::task::ready!(self.feed.poll_demand(cx)) {
                Demand::Gone => return Poll::Ready(PumpEnd::Abandoned),
                Demand::More => {}
            }
            if std::mem::take(&mut self.expect_continue) && !response_started {
                outbox.push(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
            }
            if !response_started
                && !outbox.is_empty()
                && let Poll::Ready(Err(_)) = outbox.poll_flush(cx, stream)
            {
                self.feed.finish(Err(ClientBodyError::Closed));
                return Poll::Ready(PumpEnd::Abandoned);
            }
            match self.decoder.decode(read_buf) {
                Err(malformed) => {
                    self.feed
                        .finish(Err(ClientBodyError::Malformed(malformed.0)));
                    return Poll::Ready(PumpEnd::Abandoned);
                }
                Ok(Decoded::Data(data)) => {
                    self.waiting = false;
                    self.feed.send(data);
                    if self.decoder.is_done() {
                        self.feed.finish(Ok(()));
                        return Poll::Ready(PumpEnd::Complete);
                    }
                }
                Ok(Decoded::End) => {
                    self.feed.finish(Ok(()));
                    return Poll::Ready(PumpEnd::Complete);
                }
                Ok(Decoded::NeedMore) => {
                    if read_buf.capacity() - read_buf.len() < 1024 {
                        read_buf.reserve(READ_CHUNK);
                    }
                    match stream.poll_read_buf_direct(cx, read_buf) {
                        Poll::Ready(Ok(n)) if n > 0 => self.waiting = false,
                        Poll::Ready(_) => {
                            self.feed.finish(Err(ClientBodyError::Closed));
                            return Poll::Ready(PumpEnd::Abandoned);
                        }
                        Poll::Pending => return self.poll_idle(cx),
                    }
                }
            }
        }
    }

    /// `client_body_timeout`: the wait for the client's next bytes, counted from when this
    /// wait began.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        let timeout = self.feed.idle_timeout();
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + timeout;
            match self.idle.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let expired = self
            .idle
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if expired {
            self.feed.finish(Err(ClientBodyError::Timeout));
            return Poll::Ready(PumpEnd::Abandoned);
        }
        Poll::Pending
    }
}
