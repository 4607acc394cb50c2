//! Header names as the upstream spelled them. hyper hands us response headers in a
//! `HeaderMap`, whose names are lowercase; nginx relays names as the upstream wrote them, and
//! clients and scripts that compare names case-sensitively depend on it. hyper's own
//! `preserve_header_case` keeps the spellings in an extension type it does not export, so
//! they are taken here instead: [`HeadTap`] sits under hyper on each upstream connection and,
//! once [`Sender::try_send_request`] arms it, copies the header names of the next final
//! response head it reads (1xx heads skipped) into a buffer the connection reuses, and the
//! response carries [`Spellings`] — a handle on that buffer — to the client's writer
//! (`server::http1::write` uses them; HTTP/2 clients get lowercase names, as that protocol
//! requires).
//!
//! Costs: one vectorised walk over the head's `:` and line ends in the bytes read while armed,
//! its names copied into the connection's buffer (no allocation once it has grown), a
//! reference count and a lock for the writer, whose lookups are mostly one compare each (names
//! arrive in wire order). Checking each name's case up front, to hand out nothing when all are
//! `Title-Case`, cost more than the lookups it saved. Must not import the server side.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::body::request::RequestBody;

/// The upstream's spelling of the header names of one response head: a handle on its
/// connection's buffer, valid until that connection reads its next head (after this
/// response's head is written).
#[derive(Clone, Debug)]
pub struct Spellings {
    shared: Arc<Shared>,
    /// Which head of the connection these are (the buffer may have moved on since).
    head: u64,
}

impl Spellings {
    /// The names, in wire order; None when the connection has read another head since (the
    /// writer then spells every name in `Title-Case`).
    pub fn names(&self) -> Option<Names<'_>> {
        let captured = self.shared.captured.lock().ok()?;
        (captured.head == self.head && captured.kept).then_some(Names(captured))
    }

    /// Built from names (tests, and heads made by hand).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Spellings {
        let mut joined = Vec::new();
        for name in names {
            push_name(&mut joined, name.as_bytes());
        }
        let shared = Shared {
            armed: AtomicBool::new(false),
            captured: Mutex::new(Captured {
                names: joined,
                head: 1,
                kept: true,
            }),
        };
        Spellings {
            shared: Arc::new(shared),
            head: 1,
        }
    }
}

/// The names of [`Spellings`], locked while the writer reads them.
pub struct Names<'a>(MutexGuard<'a, Captured>);

impl Names<'_> {
    /// The spellings, read in order by a [`Speller`].
    pub fn speller(&self) -> Speller<'_> {
        Speller {
            names: &self.0.names,
            cursor: 0,
        }
    }
}

/// Finds the spelling of each name a writer meets. Names usually come in wire order (hyper
/// fills the map as it parses), so the name at the cursor is tried first, then the ones after
/// it (headers the proxy removed are skipped), then all of them. A name is rejected on its
/// length (stored before it) before any byte is compared, and skipped without reading it.
pub struct Speller<'a> {
    names: &'a [u8],
    cursor: usize,
}

impl<'a> Speller<'a> {
    /// The upstream's spelling of `name` (lowercase), if it sent that name.
    pub fn spell(&mut self, name: &str) -> Option<&'a [u8]> {
        let names = self.names;
        let found = find_from(names, self.cursor, name).or_else(|| find_from(names, 0, name))?;
        self.cursor = found + name.len();
        Some(&names[found..found + name.len()])
    }
}

/// Appends `name` to `names`: its length in two bytes, then its bytes (a name is shorter than
/// [`MAX_HEAD`], the longest head kept).
fn push_name(names: &mut Vec<u8>, name: &[u8]) {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    names.extend_from_slice(&len.to_le_bytes());
    names.extend_from_slice(&name[..usize::from(len)]);
}

/// Where `name`'s bytes start among the length-prefixed `names`, looking from offset `from`
/// (the start of a length).
fn find_from(names: &[u8], mut from: usize, name: &str) -> Option<usize> {
    let name = name.as_bytes();
    while let Some(len) = names.get(from..from + 2) {
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let start = from + 2;
        from = start + len;
        if len == name.len() && names.get(start..from)?.eq_ignore_ascii_case(name) {
            return Some(start);
        }
    }
    None
}

/// What one scan of a head found.
enum Scan {
    /// The head is not all here yet.
    Partial,
    /// The head ends at this offset (after its empty line).
    Whole { end: usize },
}

/// Scans the head at the start of `bytes` in one vectorised walk over its `:` and line ends:
/// where it ends, and its names, put in `names` (see [`push_name`]). A line's first `:` ends
/// its name; the head ends at the first line that is empty.
fn scan(bytes: &[u8], names: &mut Vec<u8>) -> Scan {
    names.clear();
    let Some(status_end) = memchr::memchr(b'\n', bytes) else {
        return Scan::Partial;
    };
    let mut line_start = status_end + 1;
    if bytes[line_start..].starts_with(b"\r\n") {
        return Scan::Whole {
            end: line_start + 2,
        };
    }
    let mut named = false;
    let first = line_start;
    for at in memchr::memchr2_iter(b':', b'\n', &bytes[first..]).map(|at| at + first) {
        if bytes[at] == b':' {
            if !named {
                push_name(names, &bytes[line_start..at]);
                named = true;
            }
            continue;
        }
        line_start = at + 1;
        named = false;
        if bytes[line_start..].starts_with(b"\r\n") {
            return Scan::Whole {
                end: line_start + 2,
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
    /// The names of the last head captured.
    captured: Mutex<Captured>,
}

/// The names of a connection's last response head, in a buffer reused from head to head.
#[derive(Debug, Default)]
struct Captured {
    /// The names, each after its length (see [`push_name`]).
    names: Vec<u8>,
    /// Counts the heads looked at: tells [`Spellings`] whether the buffer moved on.
    head: u64,
    /// The head is all here and one of its names is spelled otherwise than the writer would.
    kept: bool,
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
    /// its lines are only walked (its end, and its names).
    fn take_head<'b>(&self, mut bytes: &'b [u8]) -> Option<&'b [u8]> {
        // Poisoned only if a writer panicked while reading: spellings are then lost, not the
        // response.
        let Ok(mut captured) = self.shared.captured.lock() else {
            self.shared.armed.store(false, Ordering::Relaxed);
            return None;
        };
        // Whatever happens next, spellings handed out for an earlier head no longer apply.
        captured.head = captured.head.wrapping_add(1);
        captured.kept = false;
        loop {
            let end = match scan(bytes, &mut captured.names) {
                Scan::Whole { end } => end,
                Scan::Partial if bytes.len() < MAX_HEAD => return Some(bytes),
                Scan::Partial => {
                    self.shared.armed.store(false, Ordering::Relaxed);
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
            captured.kept = !captured.names.is_empty();
            self.shared.armed.store(false, Ordering::Relaxed);
            return None;
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

/// The spellings of the head captured since the tap was armed, if the writer needs them.
fn spellings_of(shared: &Arc<Shared>) -> Option<Spellings> {
    if shared.armed.load(Ordering::Relaxed) {
        return None;
    }
    let captured = shared.captured.lock().ok()?;
    captured.kept.then(|| Spellings {
        shared: shared.clone(),
        head: captured.head,
    })
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

    /// The spellings of the response head just read (None when it had no header, or no head
    /// was read since the request was sent).
    pub fn take_spellings(&self) -> Option<Spellings> {
        spellings_of(&self.shared)
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
        let spellings = spellings_of(&handle.0)?;
        let names = spellings.names().unwrap();
        let (mut all, mut rest) = (Vec::new(), &names.0.names[..]);
        while let [low, high, tail @ ..] = rest {
            let (name, after) = tail.split_at(usize::from(u16::from_le_bytes([*low, *high])));
            all.push(String::from_utf8(name.to_vec()).unwrap());
            rest = after;
        }
        Some(all)
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
    }

    #[test]
    fn a_name_ends_at_its_lines_first_colon_and_a_head_without_names_gives_none() {
        assert_eq!(captured(&[b"HTTP/1.1 204 No Content\r\n\r\n"]), None);
        let head = b"HTTP/1.1 200 OK\r\nX-Request-Id: a:b\r\nDate: 10:11\r\n\r\n";
        assert_eq!(captured(&[head]).unwrap(), ["X-Request-Id", "Date"]);
    }

    #[test]
    fn spellings_lapse_when_the_connection_reads_its_next_head() {
        let (mut tap, handle) = tap(());
        handle.0.armed.store(true, Ordering::Relaxed);
        tap.capture(b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n");
        let first = spellings_of(&handle.0).unwrap();
        assert!(first.names().is_some());
        handle.0.armed.store(true, Ordering::Relaxed);
        assert!(
            spellings_of(&handle.0).is_none(),
            "nothing read since armed"
        );
        tap.capture(b"HTTP/1.1 200 OK\r\nx-b: 1\r\n\r\n");
        assert!(first.names().is_none());
        assert!(spellings_of(&handle.0).unwrap().names().is_some());
    }

    #[test]
    fn the_speller_follows_wire_order_and_finds_the_rest() {
        let spellings = Spellings::from_names(["Connection", "Content-Type", "X-ID", "Set-Cookie"]);
        let names = spellings.names().unwrap();
        let mut speller = names.speller();
        assert_eq!(speller.spell("content-type"), Some(&b"Content-Type"[..]));
        assert_eq!(speller.spell("set-cookie"), Some(&b"Set-Cookie"[..]));
        assert_eq!(speller.spell("x-id"), Some(&b"X-ID"[..]));
        assert_eq!(speller.spell("server"), None);
        // A name sent twice, spelled two ways: each in its turn.
        let spellings = Spellings::from_names(["Set-Cookie", "x-a", "set-cookie"]);
        let names = spellings.names().unwrap();
        let mut speller = names.speller();
        assert_eq!(speller.spell("set-cookie"), Some(&b"Set-Cookie"[..]));
        assert_eq!(speller.spell("set-cookie"), Some(&b"set-cookie"[..]));
        assert_eq!(speller.spell("x-a"), Some(&b"x-a"[..]));
    }
}
