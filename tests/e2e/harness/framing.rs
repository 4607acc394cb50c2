//! A strict reading of HTTP/1 messages as they cross the wire, written for the tests and
//! sharing nothing with tether's own parser, so a test can hold tether's output to it.
//!
//! Strict means: one way to read each byte. Line ends are CRLF only (no bare LF, no bare CR),
//! no obs-fold, no control bytes in names or values, no space before a colon; a message
//! carries at most one `Content-Length` (digits only) or one `Transfer-Encoding: chunked`,
//! never both; chunk sizes are plain hex without sign or prefix, and every chunk and trailer
//! line ends in CRLF. Whatever passes here has exactly one framing, so a peer that reads it
//! any other way is wrong, not merely lenient.

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No framing header: an empty request body, or a response read until close.
    Unframed,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One message, strictly read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `METHOD target` for a request, `VERSION STATUS` for a response.
    pub line: String,
    /// Header lines in order, names lowercased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// How the body was delimited.
    pub framing: Framing,
    /// The body, decoded.
    pub body: Vec<u8>,
}

impl Message {
    /// Every value of header `name` (lowercase).
    pub fn values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// What reading from the start of a buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A whole message, and how many bytes it took.
    Whole(Message, usize),
    /// The bytes so far are a proper beginning; more are needed.
    Partial,
}

/// Reads one request from the start of `buf`.
pub fn request(buf: &[u8]) -> Result<Read, String> {
    let Some(head_len) = head_end(buf)? else {
        return Ok(Read::Partial);
    };
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        other => return Err(format!("request head: {other:?}")),
    }
    let line = format!(
        "{} {}",
        parsed.method.unwrap_or(""),
        parsed.path.unwrap_or("")
    );
    let headers = lowered(parsed.headers)?;
    let framing = framing(&headers)?;
    let hosts = headers.iter().filter(|(n, _)| n == "host").count();
    if parsed.version == Some(1) && hosts != 1 {
        return Err(format!("{hosts} Host headers in an HTTP/1.1 request"));
    }
    body(line, headers, framing, buf, head_len, false)
}

/// Reads one response from the start of `buf`; `head_request` says it answers a HEAD, and
/// `closed` that the connection ended after `buf` (which delimits a body without framing).
pub fn response(buf: &[u8], head_request: bool, closed: bool) -> Result<Read, String> {
    let Some(head_len) = head_end(buf)? else {
        return Ok(Read::Partial);
    };
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        other => return Err(format!("response head: {other:?}")),
    }
    let status = parsed.code.unwrap_or(0);
    let line = format!("HTTP/1.{} {status}", parsed.version.unwrap_or(1));
    let headers = lowered(parsed.headers)?;
    let framing = framing(&headers)?;
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    if bodiless {
        let message = Message {
            line,
            headers,
            framing,
            body: Vec::new(),
        };
        return Ok(Read::Whole(message, head_len));
    }
    body(line, headers, framing, buf, head_len, closed)
}

/// Reads every request in `buf`, in order; an error names the first that breaks the rules,
/// and a partial one at the end is reported as such.
pub fn requests(mut buf: &[u8]) -> Result<Vec<Message>, String> {
    let mut all = Vec::new();
    while !buf.is_empty() {
        match request(buf) {
            Ok(Read::Whole(message, used)) => {
                all.push(message);
                buf = &buf[used..];
            }
            Ok(Read::Partial) => {
                return Err(format!("a partial request after {}", all.len()));
            }
            Err(error) => return Err(format!("request {}: {error}", all.len() + 1)),
        }
    }
    Ok(all)
}

/// Reads every whole request in `buf`, in order, and says whether a partial one follows them
/// (a request cut off: its head or body never completed, so no server could act on it whole).
/// An error names the first request that breaks the rules.
pub fn requests_then_cut(mut buf: &[u8]) -> Result<(Vec<Message>, bool), String> {
    let mut all = Vec::new();
    while !buf.is_empty() {
        match request(buf) {
            Ok(Read::Whole(message, used)) => {
                all.push(message);
                buf = &buf[used..];
            }
            Ok(Read::Partial) => return Ok((all, true)),
            Err(error) => return Err(format!("request {}: {error}", all.len() + 1)),
        }
    }
    Ok((all, false))
}

/// Where the head ends (after its blank line), with every line end checked on the way.
fn head_end(buf: &[u8]) -> Result<Option<usize>, String> {
    for (at, &byte) in buf.iter().enumerate() {
        match byte {
            b'\n' if at == 0 || buf[at - 1] != b'\r' => return Err("a bare LF in the head".into()),
            b'\r' if buf.get(at + 1).is_some_and(|&next| next != b'\n') => {
                return Err("a bare CR in the head".into());
            }
            b'\n' if at >= 3 && &buf[at - 3..=at] == b"\r\n\r\n" => return Ok(Some(at + 1)),
            b'\n'
                if buf
                    .get(at + 1)
                    .is_some_and(|&next| next == b' ' || next == b'\t') =>
            {
                return Err("an obs-folded line".into());
            }
            0..=8 | 11..=12 | 14..=31 | 127 => {
                return Err(format!("control byte {byte:#04x} in the head"));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn lowered(headers: &[httparse::Header]) -> Result<Vec<(String, Vec<u8>)>, String> {
    headers
        .iter()
        .map(|h| {
            let token = h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || h.name.is_empty() {
                return Err(format!("header name {:?}", h.name));
            }
            Ok((h.name.to_ascii_lowercase(), h.value.to_vec()))
        })
        .collect()
}

fn framing(headers: &[(String, Vec<u8>)]) -> Result<Framing, String> {
    let lengths: Vec<&Vec<u8>> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v)
        .collect();
    let codings: Vec<&Vec<u8>> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v)
        .collect();
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(Framing::Unframed),
        ([length], []) => {
            let digits =
                !length.is_empty() && length.len() <= 19 && length.iter().all(u8::is_ascii_digit);
            if !digits {
                return Err(format!(
                    "Content-Length {:?}",
                    String::from_utf8_lossy(length)
                ));
            }
            let text = std::str::from_utf8(length).map_err(|e| e.to_string())?;
            text.parse().map(Framing::Length).map_err(|e| e.to_string())
        }
        ([], [coding]) if coding.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (lengths, codings) => Err(format!(
            "{} Content-Length and {} Transfer-Encoding ({:?})",
            lengths.len(),
            codings.len(),
            codings
                .iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
        )),
    }
}

fn body(
    line: String,
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    buf: &[u8],
    head_len: usize,
    closed: bool,
) -> Result<Read, String> {
    let rest = &buf[head_len..];
    let (body, used) = match framing {
        Framing::Unframed if line.starts_with("HTTP/") => {
            if !closed {
                return Ok(Read::Partial);
            }
            (rest.to_vec(), rest.len())
        }
        Framing::Unframed => (Vec::new(), 0),
        Framing::Length(length) => {
            let Ok(length) = usize::try_from(length) else {
                return Err("a length past memory".into());
            };
            if rest.len() < length {
                return Ok(Read::Partial);
            }
            (rest[..length].to_vec(), length)
        }
        Framing::Chunked => match chunked(rest)? {
            Some(found) => found,
            None => return Ok(Read::Partial),
        },
    };
    let message = Message {
        line,
        headers,
        framing,
        body,
    };
    Ok(Read::Whole(message, head_len + used))
}

/// Decodes a chunked body; `None` until it is whole.
fn chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line) = crlf_line(&buf[at..])? else {
            return Ok(None);
        };
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let hex = !size_text.is_empty()
            && size_text.len() <= 15
            && size_text.iter().all(u8::is_ascii_hexdigit);
        if !hex {
            return Err(format!("chunk size {:?}", String::from_utf8_lossy(line)));
        }
        // At most 15 hex digits: no overflow.
        let size = size_text.iter().fold(0usize, |total, &b| {
            total * 16 + char::from(b).to_digit(16).unwrap_or(0) as usize
        });
        at += line.len() + 2;
        if size == 0 {
            break;
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
    // Trailer lines, strict as header lines, then the blank line.
    loop {
        let Some(line) = crlf_line(&buf[at..])? else {
            return Ok(None);
        };
        at += line.len() + 2;
        if line.is_empty() {
            return Ok(Some((body, at)));
        }
        let name_end = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("a trailer without a colon")?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
        {
            return Err(format!("trailer name {:?}", String::from_utf8_lossy(name)));
        }
    }
}

/// The next line without its CRLF; an error for a bare CR or LF or a control byte in it.
fn crlf_line(buf: &[u8]) -> Result<Option<&[u8]>, String> {
    for (at, &byte) in buf.iter().enumerate() {
        match byte {
            b'\r' if buf.get(at + 1) == Some(&b'\n') => return Ok(Some(&buf[..at])),
            b'\r' if at + 1 == buf.len() => return Ok(None),
            b'\r' | b'\n' => return Err("a bare CR or LF in chunked framing".into()),
            0..=8 | 10..=31 | 127 => {
                return Err(format!("control byte {byte:#04x} in chunked framing"));
            }
            _ => {}
        }
    }
    Ok(None)
}
