//! tether's own HTTP/1.1 client side: one upstream connection, driven by the request that uses
//! it — no channel to a connection task, no task per connection.
//!
//! ```text
//! request ──encode head (one pass)──> write ──upload body──> ... ──read──> parse head (once)
//!    └── Response<OriginBody>: the body decoded from the same buffer, the connection handed
//!        back to the pool at its end (or to a tunnel after a 101)
//! ```
//!
//! Why not hyper's client here: it parses every response head into its own map behind a
//! dispatcher channel and a task per connection, and hides the upstream's spelling of header
//! names; a proxy reads each head once, relays it, and keeps the connection on the request's
//! own task. And the response is re-framed for the client, so its framing is checked strictly
//! (`head`): what could be read two ways is a 502, never relayed.
//!
//! `head` is pure (bytes in, verdicts out); `exchange` sends a request and waits for its head,
//! `upload` sends its body; `body` streams the answer. Chunked bodies are decoded by the same strict decoder as the
//! client's request bodies. Must not import the response side of `proxy::body` (the pool names
//! this module, and the response body names the pool).

mod body;
mod exchange;
pub mod head;
mod upload;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;

pub use body::OriginBody;
pub use exchange::{Exchange, Failure, Sent};
pub use head::{InvalidHead, Keeping, ResponseHead};

use crate::stream::UpstreamStream;

/// Fewest free bytes asked of a read; the buffer grows by this much when fuller.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange with an upstream failed on the upstream's side.
#[derive(Debug)]
pub enum OriginError {
    /// Reading or writing the connection failed (reset, refused write).
    Io(io::Error),
    /// The upstream closed the connection before its answer was complete.
    Closed,
    /// The upstream's head or chunked body cannot be read unambiguously.
    Invalid(&'static str),
}

impl std::fmt::Display for OriginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginError::Io(error) => error.fmt(f),
            OriginError::Closed => f.write_str("upstream prematurely closed connection"),
            OriginError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for OriginError {}

/// One HTTP/1.1 connection to an upstream server.
#[derive(Debug)]
pub struct Connection {
    io: UpstreamStream,
    /// Bytes read and not yet taken: the next head, a body's bytes.
    read: BytesMut,
    /// Bytes to write, from `written` on: a request head, small body pieces, chunk framing.
    write: Vec<u8>,
    written: usize,
    /// Some byte of the current request was written (the upstream may have acted on it).
    wrote: bool,
}

impl Connection {
    /// A new connection over `io`, opened and (for https) secured. Boxed: it moves with the
    /// request, the response body and the pool, one pointer each time.
    pub fn new(io: UpstreamStream) -> Box<Connection> {
        Box::new(Connection {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            written: 0,
            wrote: false,
        })
    }

    /// Whether an idle connection is still worth reusing: the server has neither closed it nor
    /// sent anything unasked. Asks the socket's cached readiness, so a connection nothing
    /// happened on costs no system call.
    pub fn is_usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        // Plain sockets answer without a poll (a waker swapped for a no-op one and back).
        if let Some(nothing) = self.io.has_nothing_to_read() {
            return nothing;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// The socket and whatever was read past the last head, for a tunnel after a `101`.
    pub fn into_parts(self) -> (UpstreamStream, Bytes) {
        (self.io, self.read.freeze())
    }

    /// Reads more into the buffer: `Ready(Ok(0))` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            self.read.reserve(READ_CHUNK);
        }
        self.io.poll_read_buf_direct(cx, &mut self.read)
    }

    /// Writes out what waits in the write buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let pending = &self.write[self.written..];
            let slice = [io::IoSlice::new(pending)];
            let n = std::task::ready!(self.io.poll_write_direct(cx, &slice))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.wrote = true;
        }
        self.write.clear();
        self.written = 0;
        // TLS buffers records; plain sockets flush as a no-op.
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// True while bytes wait to be written.
    fn has_pending_write(&self) -> bool {
        self.written < self.write.len()
    }
}
