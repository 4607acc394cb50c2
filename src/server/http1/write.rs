//! Writing responses to an HTTP/1 client: the head encoded once into a reused buffer, the body
//! framed (`Content-Length`, chunked, or until close for HTTP/1.0), small pieces copied in
//! behind the head and larger ones queued as shared `Bytes`, all written with one `writev` per
//! batch — a small response's head and body leave in one syscall, and a stream's pieces leave
//! as soon as the body has nothing more at hand (an SSE event is never held back waiting for
//! company).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use std::io::Write as _;

use crate::proxy::relayed::UpstreamLines;
use crate::proxy::spelling::Names;
use crate::stream::ClientStream;
use bytes::{Buf, Bytes};
#[cfg(test)]
use http::header::HeaderValue;
use http::header::{self, HeaderMap};
use http::{StatusCode, Version};
use tokio::io::AsyncWrite;

/// How a response body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Nothing follows the head (HEAD, 1xx, 204, 304, and empty bodies with a length).
    None,
    /// Exactly this many bytes follow.
    Length(u64),
    /// Chunked transfer coding (HTTP/1.1 with no length known up front).
    Chunked,
    /// The body runs until the connection closes (HTTP/1.0 with no length known).
    UntilClose,
}

/// What the head of one response must say beyond the upstream's headers.
pub struct HeadPlan<'a> {
    /// The status.
    pub status: StatusCode,
    /// A reason phrase other than the status' own, as the upstream wrote it.
    pub reason: Option<&'a [u8]>,
    /// The headers as the proxy left them.
    pub headers: &'a HeaderMap,
    /// The framing chosen; adds `Content-Length` or `Transfer-Encoding` when the headers do not
    /// carry them already.
    pub framing: BodyFraming,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// The client's version (an HTTP/1.0 client is told `Connection: keep-alive` explicitly).
    pub client_version: Version,
    /// Where the upstream's header lines are: in `headers` with the upstream's spelling of
    /// their names, or relayed from its head (None: tether's own answer).
    pub upstream: Option<&'a UpstreamLines>,
}

/// Bytes queued for the client, in order: a response head (encoded in place, into a buffer
/// reused from response to response) with the small pieces of body that follow it copied in
/// behind it, then larger pieces of body, shared. Nothing here allocates per response once
/// the buffer has grown to the largest head.
#[derive(Debug, Default)]
pub struct Outbox {
    /// A head and small pieces of body, copied; always ahead of `queue` (something is added
    /// here only while the queue is empty, else it is queued).
    inline: Vec<u8>,
    inline_sent: usize,
    queue: VecDeque<Piece>,
    queued: usize,
    /// Bytes written since the outbox was made (tells a stalled write from a slow one).
    written: u64,
    /// What is queued is the last the connection sends: the kernel may hold its last segment
    /// for the FIN (see `MaybeTls::poll_write_ending`).
    last: bool,
}

/// Body pieces up to this size are copied behind the head rather than queued: an SSE event or
/// a small answer leaves as one slice, with its chunk framing, and nothing is queued, dropped
/// or walked for it.
const COPY_MAX: usize = 512;

/// Copies stop once the buffer holds this much, so the buffer a connection keeps for its life
/// stays small (a long head may exceed it; then nothing is copied behind that head).
const INLINE_MAX: usize = 2048;

/// One queued piece after the head.
#[derive(Debug)]
enum Piece {
    /// Body bytes, shared (never copied).
    Data(Bytes),
    /// A chunk-size line, held inline.
    Size { text: [u8; 18], len: u8 },
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Data(bytes) => bytes,
            Piece::Size { text, len } => &text[..usize::from(*len)],
        }
    }

    /// Drops the first `n` bytes (fewer than the piece holds).
    fn advance(&mut self, n: usize) {
        match self {
            Piece::Data(bytes) => bytes.advance(n),
            Piece::Size { text, len } => {
                text.copy_within(n..usize::from(*len), 0);
                *len -= n as u8;
            }
        }
    }
}

/// How many pieces go into one `writev`.
const MAX_SLICES: usize = 32;

/// What a connection's head buffer starts with: room for a usual response head and a small
/// body behind it. Grown from empty, one reallocation per doubling, it cost ~3k instructions
/// on every new connection.
const HEAD_ROOM: usize = 1024;

impl Outbox {
    /// An outbox for a new connection, its head buffer sized for a usual response.
    pub fn for_connection() -> Outbox {
        Outbox {
            inline: Vec::with_capacity(HEAD_ROOM),
            ..Outbox::default()
        }
    }

    /// Says that what is queued now is the last the connection sends before it closes.
    pub fn mark_last(&mut self) {
        self.last = true;
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.inline.len() - self.inline_sent + self.queued
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Queues `bytes` as they are.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.queue.push_back(Piece::Data(bytes));
        }
    }

    /// The inline buffer, ready to take bytes at its end: emptied if all of it was written.
    fn inline_tail(&mut self) -> &mut Vec<u8> {
        if self.inline_sent == self.inline.len() {
            self.inline.clear();
            self.inline_sent = 0;
        }
        &mut self.inline
    }

    /// Queues a response head.
    pub fn push_head(&mut self, plan: &HeadPlan<'_>) {
        let inline = self.inline_tail();
        let start = inline.len();
        encode_head(inline, plan);
        // Something (a `100 Continue`) still waits: the head goes behind it.
        if !self.queue.is_empty() {
            let head = Bytes::copy_from_slice(&self.inline[start..]);
            self.inline.truncate(start);
            self.push(head);
        }
    }

    /// Queues one piece of body, framed.
    pub fn push_data(&mut self, data: Bytes, framing: BodyFraming) {
        if data.is_empty() {
            return;
        }
        let chunked = framing == BodyFraming::Chunked;
        let (size_line, size_len) = if chunked {
            chunk_size_line(data.len())
        } else {
            ([0; 18], 0)
        };
        let size_line = &size_line[..usize::from(size_len)];
        // What the buffer will hold before this piece (emptied if all of it was written).
        let held = if self.inline_sent == self.inline.len() {
            0
        } else {
            self.inline.len()
        };
        if self.queue.is_empty()
            && data.len() <= COPY_MAX
            && held + size_line.len() + data.len() + 2 <= INLINE_MAX
        {
            let inline = self.inline_tail();
            inline.extend_from_slice(size_line);
            inline.extend_from_slice(&data);
            if chunked {
                inline.extend_from_slice(b"\r\n");
            }
            return;
        }
        if chunked {
            let mut text = [0u8; 18];
            text[..size_line.len()].copy_from_slice(size_line);
            self.queued += size_line.len();
            self.queue.push_back(Piece::Size {
                text,
                len: size_len,
            });
            self.push(data);
            self.push(Bytes::from_static(b"\r\n"));
        } else {
            self.push(data);
        }
    }

    /// Queues the end of a chunked body.
    pub fn push_last_chunk(&mut self) {
        const LAST: &[u8] = b"0\r\n\r\n";
        if self.queue.is_empty() {
            self.inline_tail().extend_from_slice(LAST);
        } else {
            self.push(Bytes::from_static(LAST));
        }
    }

    /// Writes what is queued; `Ready(Ok)` once all of it was written.
    pub fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut ClientStream,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            if self.queue.is_empty() {
                // Only the buffer (a small answer, an SSE event with its framing: nearly every
                // write): one slice, without laying out the array of them.
                let inline = [IoSlice::new(&self.inline[self.inline_sent..])];
                let written = std::task::ready!(stream.poll_write_ending(cx, &inline, self.last))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.consume(written);
                continue;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            if self.inline_sent < self.inline.len() {
                slices[0] = IoSlice::new(&self.inline[self.inline_sent..]);
                count = 1;
            }
            for (slot, piece) in slices[count..].iter_mut().zip(self.queue.iter()) {
                *slot = IoSlice::new(piece.bytes());
                count += 1;
            }
            // Straight to a plain socket; one slice (a small response, an SSE event with its
            // framing) with `send`, which cost 5 % of an SSE event's CPU against `writev`'s 8 %
            // (perf, 1,000 streams).
            let written = std::task::ready!(stream.poll_write_direct(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(written);
        }
        // A no-op on TCP; TLS may hold records a write could not yet pass to the socket.
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn consume(&mut self, mut written: usize) {
        self.written += written as u64;
        let from_inline = written.min(self.inline.len() - self.inline_sent);
        self.inline_sent += from_inline;
        written -= from_inline;
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let len = front.bytes().len();
            if len <= written {
                written -= len;
                self.queue.pop_front();
            } else {
                front.advance(written);
                return;
            }
        }
    }
}

/// `len` in hex and CRLF, the line before a chunk's data, and its length. Spelled digit by
/// digit rather than through `write!`: the formatting machinery cost more than the rest of
/// queueing a chunk, and a stream pays it per event.
pub fn chunk_size_line(len: usize) -> ([u8; 18], u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 18];
    // At least one digit (a 0 has one); a 64-bit length has at most 16, so CRLF fits too.
    let digits = (usize::BITS - (len | 1).leading_zeros()).div_ceil(4) as usize;
    for (place, slot) in text[..digits].iter_mut().rev().enumerate() {
        *slot = HEX[(len >> (4 * place)) & 0xf];
    }
    text[digits..digits + 2].copy_from_slice(b"\r\n");
    (text, digits as u8 + 2)
}

/// Encodes a response head at the end of `buf`.
fn encode_head(buf: &mut Vec<u8>, plan: &HeadPlan<'_>) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(plan.status.as_str().as_bytes());
    buf.push(b' ');
    let reason = plan
        .reason
        .unwrap_or_else(|| plan.status.canonical_reason().unwrap_or("").as_bytes());
    buf.extend_from_slice(reason);
    buf.extend_from_slice(b"\r\n");
    // The upstream's own lines first when they come from its head (the map then holds only
    // what tether added), as they came.
    let relayed = plan.upstream.and_then(UpstreamLines::relayed);
    let present = relayed.map(|lines| lines.write_to(buf)).unwrap_or_default();
    // Names as the upstream spelled them, as nginx relays them; names it did not send
    // (tether's own) in the canonical `Title-Case` nginx writes its own in.
    let names = plan.upstream.and_then(UpstreamLines::spellings);
    let names = names.and_then(|spellings| spellings.names());
    let mut speller = names.as_ref().map(Names::speller);
    // Noted on the way rather than looked up after: a standard name compares as a tag.
    let (mut has_date, mut has_server) = (present.date, present.server);
    let mut has_length = present.content_length;
    for (name, value) in plan.headers {
        has_date |= name == header::DATE;
        has_server |= name == header::SERVER;
        has_length |= name == header::CONTENT_LENGTH;
        // nginx writes Content-Type and -Length itself, in this spelling, whatever the
        // upstream's (standard names compare as tags).
        let spelled = match speller.as_mut() {
            Some(_) if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH => None,
            Some(speller) => speller.spell(name.as_str()),
            None => None,
        };
        match spelled {
            Some(spelled) => buf.extend_from_slice(spelled),
            None => put_title_case(buf, name.as_str()),
        }
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    if !has_server {
        // nginx's `server_tokens on`; a location with `off` set its own.
        buf.extend_from_slice(
            concat!("Server: tether/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
    }
    if !has_date {
        buf.extend_from_slice(b"Date: ");
        put_date(buf);
        buf.extend_from_slice(b"\r\n");
    }
    match plan.framing {
        BodyFraming::Length(length) if !has_length => {
            // Writing into a Vec cannot fail.
            let _ = write!(buf, "Content-Length: {length}\r\n");
        }
        BodyFraming::Chunked => buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    // A 101 carries the upstream's own `Connection: upgrade`.
    if plan.status != StatusCode::SWITCHING_PROTOCOLS {
        if !plan.keep_alive {
            buf.extend_from_slice(b"Connection: close\r\n");
        } else if plan.client_version == Version::HTTP_10 {
            buf.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    buf.extend_from_slice(b"\r\n");
}

/// `content-type` as `Content-Type`: each letter after the start or a `-` in upper case.
/// Copied whole, then those letters raised in place (no push per byte).
fn put_title_case(buf: &mut Vec<u8>, name: &str) {
    let start = buf.len();
    buf.extend_from_slice(name.as_bytes());
    let mut upper = true;
    for byte in &mut buf[start..] {
        if upper {
            byte.make_ascii_uppercase();
        }
        upper = *byte == b'-';
    }
}

thread_local! {
    /// The `Date` value, formatted once per second per thread.
    static DATE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((0, [0; 29])) };
}

fn put_date(buf: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = second;
            }
        }
        buf.extend_from_slice(&cache.1);
    });
}

/// The framing a response gets: none where HTTP forbids a body, the upstream's
/// `Content-Length` when it sent one, the body's own exact size (tether's error pages), else
/// chunked for HTTP/1.1 and until-close for HTTP/1.0.
pub fn framing_for(
    status: StatusCode,
    head_request: bool,
    headers: &HeaderMap,
    exact_size: Option<u64>,
    client_version: Version,
) -> BodyFraming {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return BodyFraming::None;
    }
    if head_request {
        return BodyFraming::None;
    }
    // A body that knows its length (an upstream's framed body, tether's own pages) says it
    // without a header lookup; its `Content-Length`, where it has one, says the same.
    let declared = || {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok())
    };
    match exact_size.or_else(declared) {
        Some(0) => BodyFraming::Length(0),
        Some(length) => BodyFraming::Length(length),
        None if client_version == Version::HTTP_11 => BodyFraming::Chunked,
        None => BodyFraming::UntilClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(plan: &HeadPlan<'_>) -> String {
        let mut all = Vec::new();
        encode_head(&mut all, plan);
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn a_head_carries_status_headers_date_and_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let text = head(&HeadPlan {
            status: StatusCode::OK,
            reason: None,
            headers: &headers,
            framing: BodyFraming::Chunked,
            keep_alive: true,
            client_version: Version::HTTP_11,
            upstream: None,
        });
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nServer: tether/"),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn closing_and_http10_keep_alive_are_said_out_loud() {
        let headers = HeaderMap::new();
        let plan = |keep_alive, client_version| HeadPlan {
            status: StatusCode::NOT_FOUND,
            reason: Some(b"Nowhere"),
            headers: &headers,
            framing: BodyFraming::Length(5),
            keep_alive,
            client_version,
            upstream: None,
        };
        let closing = head(&plan(false, Version::HTTP_11));
        assert!(closing.starts_with("HTTP/1.1 404 Nowhere\r\n"), "{closing}");
        assert!(closing.contains("Content-Length: 5\r\nConnection: close\r\n\r\n"));
        let old = head(&plan(true, Version::HTTP_10));
        assert!(old.contains("Connection: keep-alive\r\n"), "{old}");
    }

    #[test]
    fn bodies_are_framed_as_http_requires() {
        let none = HeaderMap::new();
        let mut sized = HeaderMap::new();
        sized.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        let v11 = Version::HTTP_11;
        assert_eq!(
            framing_for(StatusCode::NO_CONTENT, false, &none, None, v11),
            BodyFraming::None
        );
        assert_eq!(
            framing_for(StatusCode::NOT_MODIFIED, false, &sized, None, v11),
            BodyFraming::None
        );
        assert_eq!(
            framing_for(StatusCode::OK, true, &sized, None, v11),
            BodyFraming::None
        );
        assert_eq!(
            framing_for(StatusCode::OK, false, &sized, None, v11),
            BodyFraming::Length(12)
        );
        assert_eq!(
            framing_for(StatusCode::OK, false, &none, Some(3), v11),
            BodyFraming::Length(3)
        );
        assert_eq!(
            framing_for(StatusCode::OK, false, &none, None, v11),
            BodyFraming::Chunked
        );
        assert_eq!(
            framing_for(StatusCode::OK, false, &none, None, Version::HTTP_10),
            BodyFraming::UntilClose
        );
    }

    /// Everything waiting, in the order it would be written.
    fn waiting(outbox: &Outbox) -> Vec<u8> {
        let mut all = outbox.inline[outbox.inline_sent..].to_vec();
        for piece in &outbox.queue {
            all.extend_from_slice(piece.bytes());
        }
        all
    }

    #[test]
    fn chunks_are_sized_in_hex() {
        for len in [26, COPY_MAX + 1] {
            let mut outbox = Outbox::default();
            outbox.push_data(Bytes::from(vec![b'a'; len]), BodyFraming::Chunked);
            outbox.push_last_chunk();
            let all = waiting(&outbox);
            let size = format!("{len:x}\r\n");
            let data = vec![b'a'; len];
            assert_eq!(all, [size.as_bytes(), &data, b"\r\n0\r\n\r\n"].concat());
            assert_eq!(outbox.len(), all.len());
        }
    }

    #[test]
    fn chunk_size_lines_are_the_shortest_hex_of_any_length() {
        for len in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            4096,
            65_535,
            1 << 40,
            usize::MAX,
        ] {
            let (text, n) = chunk_size_line(len);
            assert_eq!(&text[..usize::from(n)], format!("{len:x}\r\n").as_bytes());
        }
    }

    #[test]
    fn small_pieces_are_copied_behind_the_head_and_large_ones_shared() {
        let mut outbox = Outbox::default();
        outbox.push_head(&HeadPlan {
            status: StatusCode::OK,
            reason: None,
            headers: &HeaderMap::new(),
            framing: BodyFraming::Chunked,
            keep_alive: true,
            client_version: Version::HTTP_11,
            upstream: None,
        });
        let head_len = outbox.inline.len();
        // An event: copied, framing and all; nothing queued.
        outbox.push_data(Bytes::from_static(b"data: 1\n\n"), BodyFraming::Chunked);
        assert!(outbox.queue.is_empty());
        assert!(outbox.inline.ends_with(b"\r\n9\r\ndata: 1\n\n\r\n"));
        // A large piece is shared, not copied; a small one behind it must queue too, or it
        // would overtake it.
        let large = Bytes::from(vec![b'x'; COPY_MAX + 1]);
        outbox.push_data(large.clone(), BodyFraming::Chunked);
        outbox.push_data(Bytes::from_static(b"data: 2\n\n"), BodyFraming::Chunked);
        let shared = outbox.queue.iter().any(|piece| match piece {
            Piece::Data(bytes) => bytes.as_ptr() == large.as_ptr(),
            Piece::Size { .. } => false,
        });
        assert!(shared);
        assert!(waiting(&outbox).ends_with(b"\r\n9\r\ndata: 2\n\n\r\n"));
        // Once everything was written the buffer takes copies again, from its start.
        let len = outbox.len();
        outbox.consume(len);
        outbox.push_data(Bytes::from_static(b"data: 3\n\n"), BodyFraming::Chunked);
        assert_eq!(outbox.inline, b"9\r\ndata: 3\n\n\r\n");
        assert!(outbox.inline.capacity() >= head_len);
    }

    #[test]
    fn copies_stop_before_the_buffer_grows_past_its_bound() {
        let mut outbox = Outbox::default();
        for _ in 0..100 {
            outbox.push_data(Bytes::from(vec![b'e'; 100]), BodyFraming::Chunked);
        }
        assert!(outbox.inline.len() <= INLINE_MAX, "{}", outbox.inline.len());
        assert!(!outbox.queue.is_empty());
        let event = [&b"64\r\n"[..], &[b'e'; 100], b"\r\n"].concat();
        assert_eq!(waiting(&outbox), event.repeat(100));
    }

    #[test]
    fn a_head_waits_behind_what_was_queued_before_it() {
        let headers = HeaderMap::new();
        let plan = HeadPlan {
            status: StatusCode::OK,
            reason: None,
            headers: &headers,
            framing: BodyFraming::Length(2),
            keep_alive: true,
            client_version: Version::HTTP_11,
            upstream: None,
        };
        let mut outbox = Outbox::default();
        outbox.push(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
        outbox.push_head(&plan);
        outbox.push_data(Bytes::from_static(b"ok"), BodyFraming::Length(2));
        let text = String::from_utf8(waiting(&outbox)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        assert!(outbox.inline.is_empty());
    }

    #[test]
    fn partial_writes_move_through_head_and_pieces_in_order() {
        let headers = HeaderMap::new();
        let mut outbox = Outbox::default();
        outbox.push_head(&HeadPlan {
            status: StatusCode::OK,
            reason: None,
            headers: &headers,
            framing: BodyFraming::Chunked,
            keep_alive: true,
            client_version: Version::HTTP_11,
            upstream: None,
        });
        let head = outbox.inline.clone();
        outbox.push_data(Bytes::from_static(b"abc"), BodyFraming::Chunked);
        outbox.push_data(Bytes::from(vec![b'z'; COPY_MAX + 1]), BodyFraming::Chunked);
        outbox.push_last_chunk();
        let z = vec![b'z'; COPY_MAX + 1];
        let size = format!("{:x}\r\n", z.len());
        let expected = [
            &head[..],
            b"3\r\nabc\r\n",
            size.as_bytes(),
            &z,
            b"\r\n0\r\n\r\n",
        ]
        .concat();
        assert_eq!(outbox.len(), expected.len());
        // Consume in odd steps and rebuild what was "written".
        let mut sent = Vec::new();
        while !outbox.is_empty() {
            let next: Vec<u8> = waiting(&outbox).into_iter().take(5).collect();
            sent.extend_from_slice(&next);
            outbox.consume(next.len());
        }
        assert_eq!(sent, expected);
        assert_eq!(outbox.written(), expected.len() as u64);
    }

    /// Bytes that are all in the buffer (nothing queued: the one-slice write) and more than
    /// the socket takes at once go out whole and in order, across partial writes and waits
    /// for room.
    #[tokio::test]
    async fn a_buffer_larger_than_the_socket_takes_goes_out_whole_and_in_order() {
        use std::future::poll_fn;
        use std::time::Duration;
        use tokio::io::AsyncReadExt;

        let (mut far, mut stream) = crate::stream::loopback().await;
        // A head far larger than the sockets' buffers between them (a long head is the one
        // thing the buffer takes past its bound).
        let big: String = (0..16_000_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("x-big", HeaderValue::from_str(&big).unwrap());
        let mut outbox = Outbox::default();
        outbox.push_head(&HeadPlan {
            status: StatusCode::OK,
            reason: None,
            headers: &headers,
            framing: BodyFraming::Length(0),
            keep_alive: true,
            client_version: Version::HTTP_11,
            upstream: None,
        });
        assert!(outbox.queue.is_empty(), "all of it in the buffer");
        let expected = waiting(&outbox);
        let len = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; len];
            far.read_exact(&mut got).await.unwrap();
            got
        });
        let flushed = poll_fn(|cx| outbox.poll_flush(cx, &mut stream));
        let limit = Duration::from_secs(10);
        tokio::time::timeout(limit, flushed).await.unwrap().unwrap();
        let got = tokio::time::timeout(limit, reader).await.unwrap().unwrap();
        assert!(got == expected, "every byte, in order");
        assert_eq!(outbox.written(), len as u64);
    }
}
