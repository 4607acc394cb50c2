//! Header names as the upstream spelled them. hyper hands us response headers in a
//! `HeaderMap`, whose names are lowercase; nginx relays names as the upstream wrote them, and
//! clients and scripts that compare names case-sensitively depend on it. hyper's own
//! `preserve_header_case` keeps the spellings in an extension type it does not export, so
//! they are taken here instead: [`HeadTap`] sits under hyper on each upstream connection and,
//! once [`Sender::try_send_request`] arms it, copies the header lines of the next final
//! response head it reads (1xx heads skipped) into [`Spellings`], which ride on the response
//! body to the client's writer (`server::http1::write` uses them; HTTP/2 clients get
//! lowercase names, as that protocol requires).
//!
//! Costs: one vectorised walk over the head's `:` and line ends in the bytes read while
//! armed, its names copied into one allocation, and the writer's lookups, mostly one compare
//! each (names arrive in wire order). Must not import the server side.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::body::request::RequestBody;

/// The header names of one response head as the upstream spelled them, in wire order, each
/// followed by `:`.
#[derive(Clone, Debug)]
pub struct Spellings(Box<[u8]>);

impl Spellings {
    /// The spellings, read in order by a [`Speller`].
    pub fn speller(&self) -> Speller<'_> {
        Speller {
            names: &self.0,
            cursor: 0,
        }
    }

    /// Built from names (tests, and heads made by hand).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Spellings {
        let mut joined = Vec::new();
        for name in names {
            joined.extend_from_slice(name.as_bytes());
            joined.push(b':');
        }
        Spellings(joined.into_boxed_slice())
    }
}

/// Finds the spelling of each name a writer meets. Names usually come in wire order (hyper
/// fills the map as it parses), so the name at the cursor is tried first, then the ones after
/// it (headers the proxy removed are skipped), then all of them. A name is rejected on its
/// length (no `:` right after) before any byte is compared.
pub struct Speller<'a> {
    names: &'a [u8],
    cursor: usize,
}

impl<'a> Speller<'a> {
    /// The upstream's spelling of `name` (lowercase), if it sent that name.
    pub fn spell(&mut self, name: &str) -> Option<&'a [u8]> {
        let names = self.names;
        let found = find_from(names, self.cursor, name).or_else(|| find_from(names, 0, name))?;
        self.cursor = found + name.len() + 1;
        Some(&names[found..found + name.len()])
    }
}

/// Where `name` starts among the `:`-ended names of `names`, looking from offset `from` (the
/// start of a name).
fn find_from(names: &[u8], mut from: usize, name: &str) -> Option<usize> {
    let name = name.as_bytes();
    while from < names.len() {
        if names.get(from + name.len()) == Some(&b':')
            && names[from..from + name.len()].eq_ignore_ascii_case(name)
        {
            return Some(from);
        }
        from += memchr::memchr(b':', &names[from..]).map_or(names.len(), |at| at + 1);
    }
    None
}

/// What one scan of a head found.
enum Scan {
    /// The head is not all here yet.
    Partial,
    /// The head ends at this offset (after its empty line); its names, each ended by `:`.
    Whole { end: usize, names: Box<[u8]> },
}

/// Scans the head at the start of `bytes` in one vectorised walk over its `:` and line ends:
/// where it ends, and its names. A line's first `:` ends its name; the head ends at the first
/// line that is empty.
fn scan(bytes: &[u8]) -> Scan {
    let Some(status_end) = memchr::memchr(b'\n', bytes) else {
        return Scan::Partial;
    };
    let mut names = Vec::with_capacity(256);
    let mut line_start = status_end + 1;
    let mut named = false;
    if bytes[line_start..].starts_with(b"\r\n") {
        return Scan::Whole {
            end: line_start + 2,
            names: Box::default(),
        };
    }
    let first = line_start;
    for at in memchr::memchr2_iter(b':', b'\n', &bytes[first..]).map(|at| at + first) {
        if bytes[at] == b':' {
            if !named {
                names.extend_from_slice(&bytes[line_start..=at]);
                named = true;
            }
            continue;
        }
        line_start = at + 1;
        named = false;
        if bytes[line_start..].starts_with(b"\r\n") {
            return Scan::Whole {
                end: line_start + 2,
                names: names.into_boxed_slice(),
            };
        }
    }
    Scan::Partial
}

/// What a tap and the sender of its connection share.
#[derive(Debug, Default)]
struct Shared {
    /// A request was sent: the next final response head is to be captured.
    armed: AtomicBool,
    /// The last head captured, until the sender takes it.
    captured: Mutex<Option<Spellings>>,
}

/// An upstream stream with the head capture under it.
#[derive(Debug)]
pub struct HeadTap<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Bytes of a head that came over several reads (empty in the usual case: one read).
    partial: Vec<u8>,
}

/// The longest head captured; past it, the head's spellings are not kept (hyper refuses
/// such heads anyway).
const MAX_HEAD: usize = 64 * 1024;

impl<S> HeadTap<S> {
    /// The stream itself (a tunnel takes it over after a `101`).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Looks at `fresh`, bytes just read while armed.
    fn capture(&mut self, fresh: &[u8]) {
        if self.partial.is_empty() {
            if let Some(rest) = self.take_head(fresh) {
                self.partial = rest.to_vec();
            }
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(fresh);
            if let Some(rest) = self.take_head(&joined) {
                self.partial = rest.to_vec();
            }
        }
    }

    /// Takes the first final head at the start of `bytes` (1xx heads skipped); returns the
    /// unfinished head to keep for the next read, if any. hyper parses the head itself: here
    /// its lines are only walked (its end, and whether any name is not `Title-Case`).
    fn take_head<'b>(&mut self, mut bytes: &'b [u8]) -> Option<&'b [u8]> {
        loop {
            let (end, names) = match scan(bytes) {
                Scan::Whole { end, names } => (end, names),
                Scan::Partial if bytes.len() < MAX_HEAD => return Some(bytes),
                Scan::Partial => {
                    self.publish(None);
                    return None;
                }
            };
            // `HTTP/1.1 1xx`: an interim head (`100 Continue`); the final one follows.
            if bytes.get(9) == Some(&b'1') {
                bytes = &bytes[end..];
                if bytes.is_empty() {
                    return None;
                }
                continue;
            }
            self.publish(Some(Spellings(names)));
            return None;
        }
    }

    fn publish(&mut self, spellings: Option<Spellings>) {
        self.shared.armed.store(false, Ordering::Relaxed);
        if let Ok(mut slot) = self.shared.captured.lock() {
            *slot = spellings;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadTap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.shared.armed.load(Ordering::Relaxed) && buf.filled().len() > before {
            this.capture(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's error for a request that failed, with the request when it was not sent.
pub type TrySendError = hyper::client::conn::TrySendError<Request<RequestBody>>;

/// The sending half of one HTTP/1.1 connection to an upstream, with its head capture.
#[derive(Debug)]
pub struct Sender {
    send: SendRequest<RequestBody>,
    shared: Arc<Shared>,
}

/// Puts a tap on `stream`; the sender made with [`Sender::new`] from the same pair arms it.
pub fn tap<S>(stream: S) -> (HeadTap<S>, TapHandle) {
    let shared = Arc::new(Shared::default());
    let tap = HeadTap {
        inner: stream,
        shared: shared.clone(),
        partial: Vec::new(),
    };
    (tap, TapHandle(shared))
}

/// The sender's end of a [`HeadTap`].
#[derive(Debug)]
pub struct TapHandle(Arc<Shared>);

impl Sender {
    /// hyper's sender for the connection `handle`'s tap is under.
    pub fn new(send: SendRequest<RequestBody>, handle: TapHandle) -> Sender {
        Sender {
            send,
            shared: handle.0,
        }
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        self.send.ready().await
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Sends `request`, arming the tap: [`Sender::take_spellings`] then has the names of the
    /// response head. (The future does not borrow the sender, as hyper's does not.)
    pub fn try_send_request(
        &mut self,
        request: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError>> + use<> {
        self.shared.armed.store(true, Ordering::Relaxed);
        self.send.try_send_request(request)
    }

    /// The spellings of the last response head read (taken: None the second time).
    pub fn take_spellings(&self) -> Option<Spellings> {
        self.shared.captured.lock().ok()?.take()
    }

    /// Sends `request` without looking at the answer's spellings (health checks).
    pub async fn send_request(
        &mut self,
        request: Request<RequestBody>,
    ) -> hyper::Result<Response<Incoming>> {
        self.send.send_request(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(reads: &[&[u8]]) -> Option<Vec<String>> {
        let (mut tap, handle) = tap(());
        handle.0.armed.store(true, Ordering::Relaxed);
        for read in reads {
            if handle.0.armed.load(Ordering::Relaxed) {
                tap.capture(read);
            }
        }
        assert!(!handle.0.armed.load(Ordering::Relaxed), "a head was taken");
        let spellings = handle.0.captured.lock().unwrap().take()?;
        let text = String::from_utf8(spellings.0.to_vec()).unwrap();
        Some(text.split_terminator(':').map(str::to_string).collect())
    }

    #[test]
    fn the_final_head_is_captured_across_reads_and_after_a_100() {
        let names = captured(&[b"HTTP/1.1 200 OK\r\nContent-Type: a\r\nX-ID: 1\r\n\r\nbody"]);
        assert_eq!(names.unwrap(), ["Content-Type", "X-ID"]);
        let names = captured(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No",
            b" Content\r\netag: x\r\n",
            b"\r\n",
        ]);
        assert_eq!(names.unwrap(), ["etag"]);
        let names = captured(&[b"HTTP/1.1 204 No Content\r\n\r\n"]);
        assert_eq!(names.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_speller_follows_wire_order_and_finds_the_rest() {
        let spellings = Spellings::from_names(["Connection", "Content-Type", "X-ID", "Set-Cookie"]);
        let mut speller = spellings.speller();
        assert_eq!(speller.spell("content-type"), Some(&b"Content-Type"[..]));
        assert_eq!(speller.spell("set-cookie"), Some(&b"Set-Cookie"[..]));
        assert_eq!(speller.spell("x-id"), Some(&b"X-ID"[..]));
        assert_eq!(speller.spell("server"), None);
    }
}
