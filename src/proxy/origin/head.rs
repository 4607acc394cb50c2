//! The two heads of an upstream exchange, as bytes: the request head written in one pass from
//! the request as the proxy left it, and the response head parsed once (httparse) into what
//! the proxy relays, with its framing decided strictly.
//!
//! Strict because the response is re-framed on its way to the client: a head that could be
//! read two ways (`Content-Length` beside `Transfer-Encoding`, two lengths, a length that is not
//! a plain number, a transfer coding other than `chunked`, a folded or malformed line) is
//! refused, answered 502 as nginx answers an "upstream sent invalid header", and the
//! connection is never used again. Pure: std, `bytes`, `http`, `httparse` (and the spellings
//! it hands on, and the cache of header names).

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};

use crate::header_list::HeaderList;
use http::{Method, StatusCode, Version};

#[cfg(doc)]
use crate::proxy::headers::left_out_of_responses;
use crate::proxy::headers::{Rewritable, is_left_out, is_named};
use crate::proxy::names::header_name;
use crate::proxy::relayed::{RelayedLines, Spans, UpstreamLines};
use crate::proxy::spelling::Spellings;

/// The most header lines an upstream's response head may have. nginx counts none (its bound
/// is the head's size), so this is generous: hyper's 100 refused answers nginx relays.
pub const MAX_HEADERS: usize = 256;
/// The largest response head taken (status line and headers): past it, the upstream "sent too
/// big header" (502), as nginx says when its `proxy_buffer_size` is exceeded.
pub const MAX_HEAD: usize = 64 * 1024;

/// How the request's body is framed upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body: nothing follows the head.
    None,
    /// `Content-Length` bytes (the header is the request's own).
    Length(u64),
    /// `Transfer-Encoding: chunked` (added here: the client's was hop-by-hop and stripped).
    Chunked,
}

/// Writes the request head into `out`: the request line with `target` (origin-form), the
/// headers as the proxy left them (names lowercase, as hyper wrote them), and
/// `Transfer-Encoding: chunked` when the body is sent chunked.
pub fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderList,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == RequestFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A request's `Content-Length`, as the client side checked it (one plain number).
pub fn declared_length(headers: &HeaderList) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (a `HEAD`'s answer, 204, 304, a 101's switch).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status.
    pub status: StatusCode,
    /// The upstream's protocol version.
    pub version: Version,
    /// The headers, names lowercase, values sharing the head's bytes (empty when the lines
    /// are relayed from the head).
    pub headers: HeaderMap,
    /// How the body that follows is delimited.
    pub framing: ResponseFraming,
    /// The connection may carry another request once this response is read to its end.
    pub keep_alive: bool,
    /// Where the header lines are for the client's writer: in the map (with the upstream's
    /// spellings of their names), or relayed from the head (the head's bytes, shared).
    pub lines: UpstreamLines,
    /// A `Set-Cookie` line is there (seen as the map was built: `sticky learn` need not look
    /// it up in an answer that has none).
    pub sets_cookie: bool,
    /// Its `Content-Type` is `text/event-stream`: the answer opens an event stream.
    pub event_stream: bool,
}

/// What of a response head is kept as it is parsed, as the proxy decided before sending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keeping {
    /// The header lines the client would not see and nothing reads: not put in the header
    /// map (bits of [`left_out_of_responses`]).
    pub left_out: u16,
    /// Nothing reads or changes the answer's header lines and its client speaks HTTP/1: they
    /// stay in the head and are relayed from it, and no header map is built...
    pub relay: bool,
    /// ...unless the answer has one of these lines, which something rewrites or reads (the
    /// location's rules, `sticky learn` from a cookie; bits of [`Rewritable`]).
    pub rewritten: u8,
}

/// Why a response head is refused, in nginx's words where it has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidHead(pub &'static str);

impl std::fmt::Display for InvalidHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidHead {}

/// What one look at the read buffer found.
#[derive(Debug)]
pub enum Parsed {
    /// The head is not all here yet.
    Partial,
    /// An interim (1xx other than 101) head, taken out of the buffer: read on for the final one.
    Interim,
    /// The final head, taken out of the buffer; the body starts at the buffer's front.
    Final(Box<ResponseHead>),
}

/// Parses the response head at the front of `buf` (answering a `method` request) and takes it
/// out of the buffer when whole. The header lines `keeping.left_out` names are read for the
/// framing but not put in the header map: the client would not see them. With
/// `keeping.relay`, no map is built at all (the lines are relayed from the head) unless the
/// answer is a `101` or has a `Connection` line naming other headers.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    keeping: Keeping,
) -> Result<Parsed, InvalidHead> {
    // Left uninitialised: httparse fills only the slots it uses, and writing all hundred
    // empty slots first was most of the parse's own cost.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(InvalidHead("upstream sent too big header"));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(InvalidHead("upstream sent too many header lines"));
        }
        Err(_) => return Err(InvalidHead("upstream sent invalid header")),
    };
    if len > MAX_HEAD {
        return Err(InvalidHead("upstream sent too big header"));
    }
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| InvalidHead("upstream sent no valid HTTP/1.0 header"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        let _ = buf.split_to(len);
        return Ok(Parsed::Interim);
    }
    // Where each name and value lies in the head, so the head can be frozen (shared, not
    // copied) before the header map is built from it.
    let base = buf.as_ptr() as usize;
    let count = response.headers.len();
    // Most heads have a few lines: those are noted on the stack, where zeroing room for all
    // 256 cost more than the parse (a 4 KiB memset per response).
    let mut inline = [Line::default(); 32];
    let mut spilled = Vec::new();
    let lines: &mut [Line] = if count <= inline.len() {
        &mut inline[..count]
    } else {
        spilled.resize(count, Line::default());
        &mut spilled
    };
    let mut framing = Framing::default();
    for (line, header) in lines.iter_mut().zip(response.headers.iter()) {
        framing.see(header.name.as_bytes(), header.value)?;
        *line = Line {
            name_at: (header.name.as_ptr() as usize - base) as u32,
            name_len: header.name.len() as u32,
            value_at: (header.value.as_ptr() as usize - base) as u32,
            value_len: header.value.len() as u32,
        };
    }
    let raw = buf.split_to(len).freeze();
    // A `Connection` line naming other headers stays: they are removed with it later.
    let left_out = keeping.left_out & !u16::from(framing.names_headers);
    let relay = keeping.relay
        && framing.rewritable & keeping.rewritten == 0
        && !framing.names_headers
        && status != StatusCode::SWITCHING_PROTOCOLS;
    let relayed = match relay {
        true => relayed_spans(&raw, lines, left_out),
        false => None,
    };
    let (headers, lines) = match relayed {
        Some(spans) => (
            HeaderMap::new(),
            UpstreamLines::Relayed(RelayedLines::new(raw, spans)),
        ),
        None => {
            let headers = header_map(&raw, lines, left_out)?;
            let starts = lines.iter().map(|line| line.name_at as usize);
            (
                headers,
                UpstreamLines::Mapped(Spellings::of_head(raw, starts)),
            )
        }
    };
    let bodyless = *method == Method::HEAD
        || status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing_kind = framing.decide(bodyless)?;
    let keep_alive = version == Version::HTTP_11
        && !framing.close
        && framing_kind != ResponseFraming::UntilClose;
    Ok(Parsed::Final(Box::new(ResponseHead {
        status,
        version,
        headers,
        framing: framing_kind,
        keep_alive,
        lines,
        sets_cookie: framing.rewritable & Rewritable::SET_COOKIE != 0,
        event_stream: framing.event_stream == Some(true),
    })))
}

/// The runs of `lines` of `raw` the client is to see (all but those `left_out` names), to be
/// copied as they are; None when one of them cannot be (see [`Spans::keep`]).
fn relayed_spans(raw: &[u8], lines: &[Line], left_out: u16) -> Option<Spans> {
    let mut spans = Spans::default();
    for line in lines {
        let (name_at, value_at) = (line.name_at as usize, line.value_at as usize);
        let name = (name_at, name_at + line.name_len as usize);
        if is_left_out(&raw[name.0..name.1], left_out) {
            continue;
        }
        let value = (value_at, value_at + line.value_len as usize);
        if !spans.keep(raw, name, value) {
            return None;
        }
    }
    Some(spans)
}

/// The header map of a head's `lines` (less those `left_out` names), values sharing `raw`.
fn header_map(raw: &Bytes, lines: &[Line], left_out: u16) -> Result<HeaderMap, InvalidHead> {
    let mut headers = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let (name_at, value_at) = (line.name_at as usize, line.value_at as usize);
        let name = &raw[name_at..name_at + line.name_len as usize];
        let value = value_at..value_at + line.value_len as usize;
        if left_out != 0 && is_left_out(name, left_out) {
            continue;
        }
        let name = header_name(name).map_err(|_| InvalidHead("upstream sent invalid header"))?;
        let value = raw.slice(value);
        // SAFETY: httparse accepted this value, and what it accepts in a value (HTAB, SP,
        // visible ASCII, obs-text; never another control byte nor DEL) is exactly what a
        // `HeaderValue` may hold. Checking every byte again was a tenth of the parse.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
        headers.append(name, value);
    }
    Ok(headers)
}

/// Where one header line's name and value lie in the head.
#[derive(Clone, Copy, Default)]
struct Line {
    name_at: u32,
    name_len: u32,
    value_at: u32,
    value_len: u32,
}

/// What the framing headers of a head said, seen one line at a time.
#[derive(Debug, Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    /// A `Connection` line names a header (a token other than `close`, `keep-alive` and
    /// `upgrade`): that header is hop-by-hop too.
    names_headers: bool,
    /// Not framing, but seen in the same look at each name: which of `Location`, `Refresh`
    /// and `Set-Cookie` the head has (bits of [`Rewritable`]).
    rewritable: u8,
    /// The first `Content-Type` line's value starts `text/event-stream` (None: no such line),
    /// as a lookup in the map would have found it.
    event_stream: Option<bool>,
}

impl Framing {
    fn see(&mut self, name: &[u8], value: &[u8]) -> Result<(), InvalidHead> {
        if is_named(name, b"content-length") {
            if self.length.is_some() {
                return Err(InvalidHead(
                    "upstream sent duplicate header line: \"Content-Length\"",
                ));
            }
            self.length = Some(parse_length(value)?);
        } else if is_named(name, b"transfer-encoding") {
            // nginx takes exactly `chunked`; anything else (another coding, a list, a second
            // line) would leave the body's end to a guess.
            if self.chunked || !trim(value).eq_ignore_ascii_case(b"chunked") {
                return Err(InvalidHead("upstream sent unknown \"Transfer-Encoding\""));
            }
            self.chunked = true;
        } else if is_named(name, b"connection") {
            for token in value.split(|&byte| byte == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !(token.eq_ignore_ascii_case(b"keep-alive")
                    || token.eq_ignore_ascii_case(b"upgrade")
                    || token.is_empty())
                {
                    self.names_headers = true;
                }
            }
        } else if is_named(name, b"set-cookie") {
            self.rewritable |= Rewritable::SET_COOKIE;
        } else if is_named(name, b"location") {
            self.rewritable |= Rewritable::LOCATION;
        } else if is_named(name, b"refresh") {
            self.rewritable |= Rewritable::REFRESH;
        } else if is_named(name, b"content-type") {
            (self.event_stream).get_or_insert(value.starts_with(b"text/event-stream"));
        }
        Ok(())
    }

    fn decide(&self, bodyless: bool) -> Result<ResponseFraming, InvalidHead> {
        if self.chunked && self.length.is_some() {
            return Err(InvalidHead(
                "upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time",
            ));
        }
        Ok(match (bodyless, self.chunked, self.length) {
            (true, _, _) => ResponseFraming::None,
            (false, true, _) => ResponseFraming::Chunked,
            (false, false, Some(0)) => ResponseFraming::None,
            (false, false, Some(length)) => ResponseFraming::Length(length),
            (false, false, None) => ResponseFraming::UntilClose,
        })
    }
}

/// A `Content-Length` value: digits only (no sign, no spaces inside, no list), at most 18 of
/// them so it cannot overflow.
fn parse_length(value: &[u8]) -> Result<u64, InvalidHead> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidHead(
            "upstream sent invalid \"Content-Length\" header",
        ));
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
