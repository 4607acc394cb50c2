//! One direction of a tunnel: bytes read from one side, written to the other.
//!
//! Reads land in a buffer on the stack of the poll call and are written on at once; only what
//! the writer does not take right away is copied to the heap, in a box of exactly that size,
//! dropped the moment it is written. So an idle direction holds no buffer at all, a flowing one
//! allocates only under backpressure, and there is never more than one read's worth in flight
//! (the next read waits for the box to empty). hyper's `Upgraded` offers no readiness API
//! (`poll_read_ready`), which is why the read goes to the stack rather than waiting for data
//! before allocating.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::frames::{self, FrameTracker};
use super::side::Side;

/// The most one read takes (and so the most one direction ever holds).
pub const READ_SIZE: usize = 16 * 1024;

/// Where one direction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Copying until the source ends.
    Copy,
    /// Shutting down: writing out what was already read, then a close frame if one may go.
    Close,
    /// Shutting down the destination's writes.
    Shutdown,
    /// Closing, our writes ended: reading (and dropping) the source until it hangs up, so its
    /// close reply is taken and the connection ends cleanly rather than with a reset.
    Discard,
    /// Nothing left to do.
    Done,
}

/// Which peer a direction writes to: close frames toward the upstream must be masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    /// The client (frames unmasked).
    Client,
    /// The upstream server (frames masked).
    Upstream,
}

/// One direction of a tunnel.
#[derive(Debug)]
pub struct Half {
    toward: Toward,
    stage: Stage,
    /// Bytes read but not yet written, and how many of them were written.
    pending: Option<(Box<[u8]>, usize)>,
    /// Something was written since the last flush.
    need_flush: bool,
    /// The source's last read waited with this task's waker, which stays registered until
    /// the source turns readable: until then a wake-up is for the other direction, and the
    /// source is asked (`Side::may_have_bytes`) rather than read.
    waiting: bool,
    /// Frame boundaries of what was written, for WebSocket tunnels.
    frames: Option<FrameTracker>,
    /// The graceful close began.
    closing: bool,
    /// The code of the close frame it ends with (1001 for a stop, 1012 for a drain).
    close_code: u16,
    /// The close stage already decided about its close frame.
    close_decided: bool,
    /// Bytes written toward the destination so far.
    written: u64,
}

impl Half {
    /// A direction writing `toward` a peer; `websocket` turns frame tracking on.
    pub fn new(toward: Toward, websocket: bool) -> Half {
        Half {
            toward,
            stage: Stage::Copy,
            pending: None,
            need_flush: false,
            waiting: false,
            frames: websocket.then(FrameTracker::default),
            closing: false,
            close_code: frames::GOING_AWAY,
            close_decided: false,
            written: 0,
        }
    }

    /// True for a WebSocket direction: frames are followed, so a close frame can end it.
    pub fn follows_frames(&self) -> bool {
        self.frames.is_some()
    }

    /// Queues bytes the source delivered before the tunnel began (the upstream's first frames,
    /// read along with its `101`): they go out first, framed like the rest.
    pub fn preload(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.pending = Some((bytes.into(), 0));
        }
    }

    /// The size of the heap buffer this direction holds right now (0: none).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, |(bytes, _)| bytes.len())
    }

    /// Starts the graceful close: stop reading, deliver what was read, then end with a close
    /// frame carrying `code` where the stream allows one. A direction whose source already ended is left alone:
    /// its destination's writes are shut (or being shut) already.
    pub fn begin_close(&mut self, code: u16) {
        self.closing = true;
        self.close_code = code;
        if self.stage == Stage::Copy {
            self.stage = Stage::Close;
        }
    }

    /// Drives this direction; ready once it is done. Bytes moving update `moved`.
    ///
    /// While copying, an error ends the direction with that error (and the tunnel with it).
    /// While closing, it only ends the direction: the other may still close cleanly.
    pub fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        moved: &mut Instant,
    ) -> Poll<io::Result<()>>
    where
        R: Side,
        W: Side + AsyncWrite,
    {
        match ready!(self.poll_stages(cx, src, dst, moved)) {
            Err(error) if self.closing => {
                tracing::debug!(%error, "tunnel direction failed while closing");
                self.stage = Stage::Done;
                Poll::Ready(Ok(()))
            }
            result => Poll::Ready(result),
        }
    }

    fn poll_stages<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        moved: &mut Instant,
    ) -> Poll<io::Result<()>>
    where
        R: Side,
        W: Side + AsyncWrite,
    {
        loop {
            match self.stage {
                Stage::Copy => ready!(self.poll_copy(cx, src, dst, moved))?,
                Stage::Close => {
                    ready!(self.poll_write_pending(cx, dst, moved))?;
                    if !self.close_decided {
                        self.close_decided = true;
                        if let Some(frame) = self.close_frame() {
                            self.pending = Some((frame.into_boxed_slice(), 0));
                            continue;
                        }
                    }
                    ready!(self.poll_flush(cx, dst))?;
                    self.stage = Stage::Shutdown;
                }
                Stage::Shutdown => {
                    ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                    // When closing, the source was told by the other direction (a FIN, and a
                    // close frame where one could go): reading it until it hangs up takes its
                    // reply and spares it a reset. Otherwise this was a half-close, and the
                    // other direction goes on.
                    self.stage = if self.closing {
                        Stage::Discard
                    } else {
                        Stage::Done
                    };
                }
                Stage::Discard => {
                    let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
                    let mut read = ReadBuf::uninit(&mut stack);
                    ready!(Pin::new(&mut *src).poll_read(cx, &mut read))?;
                    if read.filled().is_empty() {
                        self.stage = Stage::Done;
                    }
                }
                Stage::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Copies until the source ends (then moves to `Shutdown`) or nothing can move now.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        moved: &mut Instant,
    ) -> Poll<io::Result<()>>
    where
        R: Side,
        W: Side + AsyncWrite,
    {
        loop {
            // Asked here, not in the call: a copy keeping up has nothing pending, and the call
            // would be made at every read.
            if self.pending.is_some() {
                ready!(self.poll_write_pending(cx, dst, moved))?;
            }
            if self.waiting && !self.need_flush && !src.may_have_bytes() {
                return Poll::Pending;
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut read = ReadBuf::uninit(&mut stack);
            match src.poll_read_direct(cx, &mut read) {
                Poll::Pending => {
                    // A read that waited for want of budget registered no waker with the
                    // socket (tokio woke the task instead): only a wait for bytes is one the
                    // next wake-up may skip.
                    self.waiting = tokio::task::coop::has_budget_remaining();
                    // Nothing more to read for now: push out what was written, as a copy that
                    // waits with unflushed bytes could wait forever.
                    ready!(self.poll_flush(cx, dst))?;
                    return Poll::Pending;
                }
                Poll::Ready(result) => {
                    self.waiting = false;
                    result?
                }
            }
            let data = read.filled();
            if data.is_empty() {
                self.stage = Stage::Shutdown;
                return Poll::Ready(Ok(()));
            }
            *moved = Instant::now();
            let written = self.write_all_it_takes(cx, dst, data)?;
            if written < data.len() {
                // The writer's waker is registered: keep the rest until it is ready.
                self.pending = Some((data[written..].into(), 0));
                return Poll::Pending;
            }
        }
    }

    /// Writes out the pending bytes, if any, and drops their buffer.
    fn poll_write_pending<W: Side + AsyncWrite>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        moved: &mut Instant,
    ) -> Poll<io::Result<()>> {
        while let Some((bytes, at)) = self.pending.take() {
            let written = self.write_all_it_takes(cx, dst, &bytes[at..])?;
            if written > 0 {
                *moved = Instant::now();
            }
            let at = at + written;
            if at < bytes.len() {
                self.pending = Some((bytes, at));
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `bytes` until all are written or the writer would block (its waker then
    /// registered); how many were written.
    fn write_all_it_takes<W: Side + AsyncWrite>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        bytes: &[u8],
    ) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match dst.poll_write_direct(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => return Err(write_zero()),
                Poll::Ready(Ok(n)) => {
                    self.wrote(&bytes[written..written + n]);
                    written += n;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => break,
            }
        }
        Ok(written)
    }

    fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        if self.need_flush {
            ready!(Pin::new(&mut *dst).poll_flush(cx))?;
            self.need_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes written toward the destination so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Accounts for `bytes` having reached the destination.
    fn wrote(&mut self, bytes: &[u8]) {
        self.need_flush = true;
        self.written += bytes.len() as u64;
        if let Some(frames) = &mut self.frames {
            frames.feed(bytes);
        }
    }

    /// The close frame (with `close_code`) to end this direction with, if it is a WebSocket whose
    /// written bytes end at a frame boundary and no close went this way yet. Mid-frame, a frame
    /// of ours would corrupt the stream, so the direction just ends.
    fn close_frame(&self) -> Option<Vec<u8>> {
        let frames = self.frames.as_ref()?;
        if !frames.at_boundary() || frames.saw_close() {
            return None;
        }
        let mask = match self.toward {
            Toward::Client => None,
            // The key guards against scripts crafting bytes a proxy would misread (RFC 6455,
            // 10.3); the payload here is ours and fixed, so a fast random key is enough.
            Toward::Upstream => Some(fastrand::u32(..).to_ne_bytes()),
        };
        Some(frames::close_frame(self.close_code, mask))
    }
}

fn write_zero() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "the peer accepted no more bytes")
}
