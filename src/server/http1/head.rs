//! Reading an HTTP/1 request head from the bytes a client sent, with nginx's limits and checks.
//!
//! Two steps. [`HeadScanner`] looks only at the bytes that arrived since it last looked, to find
//! the end of the head and to hold every line to `large_client_header_buffers` while the head is
//! still incomplete — so a client that trickles a head in byte by byte costs linear time, and an
//! over-long line is refused before the rest of it arrives. Then [`parse`] reads the complete
//! head once (httparse, the parser hyper itself uses) and checks what a proxy must not forward
//! ambiguously: the framing of the body (`Content-Length` against `Transfer-Encoding`), `Host`,
//! the method. A head that came whole in one read and is shorter than a line may be (the usual
//! case) skips the scanner: [`parse_read`] lets httparse find its end, and leaves to the two
//! steps whatever it cannot take as they would.
//!
//! Every refusal is a [`Rejection`]: the status, the title of the error page (nginx's wording)
//! and the reason for the log. Std, `bytes`, `http`, `memchr` and httparse only (and the
//! config's [`HeadRules`] and the proxy's pure cache of header names): no sockets, no tokio, so
//! the fuzz target and the unit tests drive it with plain byte strings.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::header_list::HeaderList;
use crate::proxy::names::header_name;

pub use crate::config::HeadRules;

/// Why a head is refused: what the client is told, and what the log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status of the answer.
    pub status: StatusCode,
    /// The error page's title after the code, when it is not the status' own reason phrase
    /// (nginx's "Request Header Or Cookie Too Large").
    pub title: Option<&'static str>,
    /// For the log line, nginx's wording ("client sent invalid method").
    pub reason: &'static str,
}

impl Rejection {
    /// Plain HTTP on a TLS address (nginx's wording and page title).
    pub const PLAIN_HTTP_TO_TLS: Rejection = Rejection {
        status: StatusCode::BAD_REQUEST,
        title: Some("The plain HTTP request was sent to HTTPS port"),
        reason: "client sent plain HTTP request to HTTPS port",
    };

    const fn new(status: StatusCode, reason: &'static str) -> Rejection {
        Rejection {
            status,
            title: None,
            reason,
        }
    }

    fn bad(reason: &'static str) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, reason)
    }
}

const HEADER_TOO_LARGE: Rejection = Rejection {
    status: StatusCode::BAD_REQUEST,
    title: Some("Request Header Or Cookie Too Large"),
    reason: "client sent too long header line",
};
const URI_TOO_LONG: Rejection =
    Rejection::new(StatusCode::URI_TOO_LONG, "client sent too long URI");

/// Finds where a head ends, looking at each byte once across reads, and refuses an over-long
/// line or head as soon as it is one.
#[derive(Debug, Default)]
pub struct HeadScanner {
    /// Bytes already looked at.
    scanned: usize,
    /// Where the line being read starts.
    line_start: usize,
    /// The request line was read (lines after it are header lines).
    past_request_line: bool,
}

impl HeadScanner {
    /// Nothing was looked at yet.
    pub fn is_fresh(&self) -> bool {
        self.scanned == 0
    }

    /// Looks at the bytes of `buf` not seen yet: `Ok(Some(len))` when the head (its first
    /// `len` bytes, the blank line included) is complete, `Ok(None)` when more is needed.
    /// Forget the scanner (start a new one) once a head was found.
    pub fn scan(&mut self, buf: &[u8], rules: &HeadRules) -> Result<Option<usize>, Rejection> {
        while let Some(offset) = memchr_lf(&buf[self.scanned..]) {
            let lf = self.scanned + offset;
            self.scanned = lf + 1;
            let line = &buf[self.line_start..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = lf + 1;
            if lf + 1 > rules.max_head {
                return Err(if self.past_request_line {
                    HEADER_TOO_LARGE
                } else {
                    URI_TOO_LONG
                });
            }
            if !self.past_request_line {
                // Empty lines before the request line are skipped (RFC 9112 §2.2), as httparse
                // and nginx do.
                if line.is_empty() {
                    continue;
                }
                if line.len() > rules.max_line {
                    return Err(URI_TOO_LONG);
                }
                self.past_request_line = true;
                continue;
            }
            if line.is_empty() {
                return Ok(Some(lf + 1));
            }
            if line.len() > rules.max_line {
                return Err(HEADER_TOO_LARGE);
            }
        }
        self.scanned = buf.len();
        // The line still being read may already be too long. A CR at the very end may be the
        // start of its CRLF, which a complete line does not count.
        let mut pending = buf.len() - self.line_start;
        if buf.last() == Some(&b'\r') {
            pending = pending.saturating_sub(1);
        }
        if pending > rules.max_line || buf.len() > rules.max_head {
            return Err(if self.past_request_line {
                HEADER_TOO_LARGE
            } else {
                URI_TOO_LONG
            });
        }
        Ok(None)
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// How the request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target: origin-form (`/path?query`) or absolute-form
    /// (`http://host/path`), as sent.
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header lines, in order, minus the ones the rules drop.
    pub headers: HeaderList,
    /// How the body is framed.
    pub framing: Framing,
    /// The client allows the connection to carry another request.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// An HTTP/1.1 upgrade request: `Connection: upgrade` and an `Upgrade` line (as
    /// [`requested_upgrade`](crate::proxy::headers::requested_upgrade) reads it).
    pub upgrade: bool,
    /// Header lines dropped by `underscores_in_headers` / `ignore_invalid_headers` (for the log).
    pub dropped_headers: usize,
}

/// The header lines parsed on the stack; more than this many (a config that raises
/// `client_max_headers`) take a heap array.
const INLINE_HEADERS: usize = 128;

/// Reads the complete head in `head` (exactly the bytes [`HeadScanner::scan`] measured).
/// `head` is shared, not copied: header values and the target point into it.
pub fn parse(head: &Bytes, rules: &HeadRules) -> Result<RequestHead, Rejection> {
    if rules.max_headers <= INLINE_HEADERS {
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; INLINE_HEADERS];
        parse_into(head, rules, &mut slots[..rules.max_headers])
    } else {
        let mut slots = Vec::new();
        slots.resize_with(rules.max_headers, MaybeUninit::uninit);
        parse_into(head, rules, &mut slots)
    }
}

fn parse_into<'b>(
    head: &'b Bytes,
    rules: &HeadRules,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<RequestHead, Rejection> {
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        // The scanner found a blank line, so httparse cannot want more; a bare CR somewhere can
        // make it think so.
        Ok(httparse::Status::Partial) => return Err(Rejection::bad("client sent invalid request")),
        Err(error) => return Err(parse_error(error, &request)),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(Rejection::bad("client sent invalid request"));
    };
    let lines = request
        .headers
        .iter()
        .map(|line| (line.name.as_bytes(), line.value));
    build(
        head,
        method.as_bytes(),
        target.as_bytes(),
        minor,
        lines,
        rules,
    )
}

/// Reads a head straight from the bytes read so far, when they hold all of it and it is short
/// enough that no line of it can break a limit (the usual case: one read, a head well under
/// `large_client_header_buffers`): httparse finds where it ends, so the head is walked once
/// instead of by the scanner first. The head is cut from `read`.
///
/// None when the scanner must read it: the head is not complete yet, longer than a line may
/// be, or malformed — the scanner's way then gives the same head, or the refusal it always
/// gave (with the checks in its order).
pub fn parse_read(
    read: &mut BytesMut,
    rules: &HeadRules,
) -> Option<Result<RequestHead, Rejection>> {
    if rules.max_headers > INLINE_HEADERS {
        return None;
    }
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; INLINE_HEADERS];
    // Written before they are read, up to the count of lines: left uninitialised, not zeroed
    // (4 KiB a head).
    let mut names = [const { MaybeUninit::<Span>::uninit() }; INLINE_HEADERS];
    let mut values = [const { MaybeUninit::<Span>::uninit() }; INLINE_HEADERS];
    // The parse borrows `read`; what it found is kept as offsets, so that the head can be cut
    // from `read` (its bytes stay where they are) and its values taken as shares of the cut.
    let (len, method, target, minor, count) = {
        let mut request = httparse::Request::new(&mut []);
        let Ok(httparse::Status::Complete(len)) =
            request.parse_with_uninit_headers(read, &mut slots[..rules.max_headers])
        else {
            return None;
        };
        if len > rules.max_line.min(rules.max_head) {
            return None;
        }
        let (Some(method), Some(target), Some(minor)) =
            (request.method, request.path, request.version)
        else {
            return None;
        };
        let base = read.as_ptr() as usize;
        // An empty slice is taken as empty wherever it points (httparse's point into the
        // head, but nothing is lost by not relying on it).
        let span = |bytes: &[u8]| Span {
            start: if bytes.is_empty() {
                0
            } else {
                bytes.as_ptr() as usize - base
            },
            len: bytes.len(),
        };
        for (at, line) in request.headers.iter().enumerate() {
            names[at].write(span(line.name.as_bytes()));
            values[at].write(span(line.value));
        }
        let count = request.headers.len();
        (
            len,
            span(method.as_bytes()),
            span(target.as_bytes()),
            minor,
            count,
        )
    };
    let head = read.split_to(len).freeze();
    let bytes = |span: Span| &head[span.start..span.start + span.len];
    let lines = (0..count).map(|at| {
        // SAFETY: the loop above wrote the first `count` of each.
        let (name, value) = unsafe { (names[at].assume_init(), values[at].assume_init()) };
        (bytes(name), bytes(value))
    });
    let (method, target) = (bytes(method), bytes(target));
    Some(build(&head, method, target, minor, lines, rules))
}

/// Where a piece of a head lies in the bytes it was read from.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// The checks and the header map of a head httparse read: its method, target and minor
/// version, and its header lines as (name, value) slices of `head`.
fn build<'b>(
    head: &'b Bytes,
    method: &'b [u8],
    target: &'b [u8],
    minor: u8,
    lines: impl ExactSizeIterator<Item = (&'b [u8], &'b [u8])>,
    rules: &HeadRules,
) -> Result<RequestHead, Rejection> {
    let method = method_of(method)?;
    // TRACE would echo the request (cookies included) back to a script; CONNECT asks for a
    // forward proxy, which tether is not. Both are refused whatever their target.
    if matches!(method, Method::TRACE | Method::CONNECT) {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "client sent a method tether does not proxy",
        ));
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let uri = target_of(head, target)?;

    let mut checks = HeaderChecks::default();
    let mut headers = HeaderList::with_capacity(lines.len());
    let mut dropped_headers = 0;
    for (name, value) in lines {
        if !name_allowed(name, rules) {
            dropped_headers += 1;
            continue;
        }
        let name =
            header_name(name).map_err(|_| Rejection::bad("client sent invalid header line"))?;
        // SAFETY: httparse accepted this value, and what it accepts in a value (HTAB, SP,
        // visible ASCII, obs-text; never another control byte nor DEL) is exactly what a
        // `HeaderValue` may hold; checking every byte again cost more than the slice.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice_ref(value)) };
        checks.see(&name, &value)?;
        headers.append(name, value);
    }
    let framing = checks.framing(version)?;
    if version == Version::HTTP_11 && checks.hosts == 0 && uri.authority().is_none() {
        return Err(Rejection::bad(
            "client sent HTTP/1.1 request without \"Host\" header",
        ));
    }
    let keep_alive = match checks.connection {
        ConnectionToken::Close => false,
        ConnectionToken::KeepAlive => true,
        ConnectionToken::None => version == Version::HTTP_11,
    };
    Ok(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: checks.expect_continue && version == Version::HTTP_11,
        upgrade: checks.upgrade && checks.connection_upgrade && version == Version::HTTP_11,
        dropped_headers,
    })
}

fn parse_error(error: httparse::Error, request: &httparse::Request) -> Rejection {
    match error {
        httparse::Error::TooManyHeaders => Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "client sent too many header lines",
        ),
        httparse::Error::Version => Rejection::bad("client sent invalid HTTP version"),
        httparse::Error::Token if request.method.is_none() => {
            Rejection::bad("client sent invalid method")
        }
        httparse::Error::Token => Rejection::bad("client sent invalid request"),
        httparse::Error::HeaderName | httparse::Error::HeaderValue => {
            Rejection::bad("client sent invalid header line")
        }
        httparse::Error::NewLine | httparse::Error::Status => {
            Rejection::bad("client sent invalid request")
        }
    }
}

/// nginx takes only uppercase letters, `_` and `-` in a method: `get` is refused, not guessed.
fn method_of(text: &[u8]) -> Result<Method, Rejection> {
    let valid = text
        .iter()
        .all(|&b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
    if !valid {
        return Err(Rejection::bad("client sent invalid method"));
    }
    Method::from_bytes(text).map_err(|_| Rejection::bad("client sent invalid method"))
}

/// Origin-form (`/...`) or absolute-form (`http://host/...`); anything else — `*`, an
/// authority alone, another scheme — is refused, as nginx does.
fn target_of(head: &Bytes, target: &[u8]) -> Result<Uri, Rejection> {
    let invalid = || Rejection::bad("client sent invalid request");
    let uri = Uri::from_maybe_shared(head.slice_ref(target)).map_err(|_| invalid())?;
    if target.starts_with(b"/") {
        return Ok(uri);
    }
    let scheme_ok = matches!(uri.scheme_str(), Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !scheme_ok || uri.authority().is_none() {
        return Err(invalid());
    }
    Ok(uri)
}

/// `[A-Za-z0-9-]`, plus `_` with `underscores_in_headers on`; with `ignore_invalid_headers off`
/// every name httparse took is kept. Every line's name is checked, so the bytes' classes are
/// ORed together from a table (no branch per byte: a tenth of the cost of testing each).
fn name_allowed(name: &[u8], rules: &HeadRules) -> bool {
    if !rules.ignore_invalid {
        return true;
    }
    let classes = name
        .iter()
        .fold(0, |seen, &byte| seen | NAME_BYTE_CLASS[usize::from(byte)]);
    let refused = match rules.underscores {
        true => NOT_A_NAME_BYTE,
        false => NOT_A_NAME_BYTE | UNDERSCORE,
    };
    classes & refused == 0
}

/// [`NAME_BYTE_CLASS`]: `_`, allowed only with `underscores_in_headers on`.
const UNDERSCORE: u8 = 1;
/// [`NAME_BYTE_CLASS`]: neither a letter, a digit, `-` nor `_`.
const NOT_A_NAME_BYTE: u8 = 2;

/// What each byte is in a header name as nginx checks it: 0 for `[A-Za-z0-9-]`.
static NAME_BYTE_CLASS: [u8; 256] = {
    let mut classes = [NOT_A_NAME_BYTE; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphanumeric() || b == b'-' {
            classes[byte] = 0;
        }
        byte += 1;
    }
    classes[b'_' as usize] = UNDERSCORE;
    classes
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ConnectionToken {
    #[default]
    None,
    Close,
    KeepAlive,
}

/// What the header lines say about framing and the connection, gathered in one pass.
#[derive(Debug, Default)]
struct HeaderChecks {
    content_length: Option<u64>,
    transfer_encoding: Option<bool>,
    hosts: usize,
    connection: ConnectionToken,
    expect_continue: bool,
    /// `Connection` lists `upgrade`.
    connection_upgrade: bool,
    /// An `Upgrade` line is there.
    upgrade: bool,
}

impl HeaderChecks {
    fn see(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), Rejection> {
        match *name {
            header::CONTENT_LENGTH => {
                if self.content_length.is_some() {
                    return Err(Rejection::bad(
                        "client sent duplicate header line: \"Content-Length\"",
                    ));
                }
                self.content_length = Some(parse_length(value.as_bytes()).ok_or(
                    Rejection::bad("client sent invalid \"Content-Length\" header"),
                )?);
            }
            header::TRANSFER_ENCODING => {
                if self.transfer_encoding.is_some() {
                    return Err(Rejection::bad(
                        "client sent duplicate header line: \"Transfer-Encoding\"",
                    ));
                }
                self.transfer_encoding = Some(value.as_bytes().eq_ignore_ascii_case(b"chunked"));
            }
            header::HOST => {
                self.hosts += 1;
                if self.hosts > 1 {
                    return Err(Rejection::bad("client sent duplicate host header"));
                }
            }
            header::CONNECTION => {
                for token in value.as_bytes().split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        self.connection = ConnectionToken::Close;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        self.connection_upgrade = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive")
                        && self.connection != ConnectionToken::Close
                    {
                        self.connection = ConnectionToken::KeepAlive;
                    }
                }
            }
            header::EXPECT => {
                self.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
            }
            header::UPGRADE => self.upgrade = true,
            _ => {}
        }
        Ok(())
    }

    /// nginx's rules: both headers at once is refused (a smuggling vector even though RFC 9112
    /// lets `Transfer-Encoding` win); only `chunked` alone is a transfer coding a request may
    /// use, and only in HTTP/1.1.
    fn framing(&self, version: Version) -> Result<Framing, Rejection> {
        match (self.transfer_encoding, self.content_length) {
            (Some(_), Some(_)) => Err(Rejection::bad(
                "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time",
            )),
            (Some(_), None) if version != Version::HTTP_11 => Err(Rejection::bad(
                "client sent \"Transfer-Encoding\" in HTTP/1.0 request",
            )),
            (Some(true), None) => Ok(Framing::Chunked),
            (Some(false), None) => Err(Rejection::new(
                StatusCode::NOT_IMPLEMENTED,
                "client sent unknown \"Transfer-Encoding\"",
            )),
            (None, Some(0)) | (None, None) => Ok(Framing::Empty),
            (None, Some(length)) => Ok(Framing::Length(length)),
        }
    }
}

/// Digits only (no sign, no spaces inside, no list), without overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |total, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        total.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
