//! An upstream's header lines relayed to an HTTP/1 client from the head's own bytes, for
//! the answers nothing reads or changes: no header map is built for them, and the client's
//! writer copies each line the client is to see (`server::http1::write`).
//!
//! Whether an answer may go this way is decided per location and request before it is sent
//! ([`Route::relays_upstream_lines`](crate::snapshot::Route::relays_upstream_lines), an
//! HTTP/1 client) and per answer as it is parsed (`origin::head`: not a `101`, no
//! `Connection` line naming other headers or line a rule rewrites, every kept line already
//! in the form the map's writer would give it: `Name: value` with one space, CRLF, nginx's
//! spelling of `Content-Type` and `Content-Length` — what nginx and most servers send), so
//! the client gets the same bytes either way, lines in the order they came. Pure: `bytes`;
//! must not import the server side.

use bytes::Bytes;

use crate::proxy::headers::is_named;
use crate::proxy::spelling::Spellings;

/// How an upstream answer's header lines reach the client's HTTP/1 writer.
#[derive(Clone, Debug)]
pub enum UpstreamLines {
    /// In the response's header map; the head kept for the names' spellings.
    Mapped(Spellings),
    /// Not in the map (it holds only what tether adds): written from the head.
    Relayed(RelayedLines),
}

impl UpstreamLines {
    /// The spellings of the names in the map, when the lines are there.
    pub fn spellings(&self) -> Option<&Spellings> {
        match self {
            UpstreamLines::Mapped(spellings) => Some(spellings),
            UpstreamLines::Relayed(_) => None,
        }
    }

    /// The lines relayed from the head, when they are not in the map.
    pub fn relayed(&self) -> Option<&RelayedLines> {
        match self {
            UpstreamLines::Mapped(_) => None,
            UpstreamLines::Relayed(lines) => Some(lines),
        }
    }
}

/// A response head whose header lines are relayed as they came, less the ones left out: the
/// kept lines as spans of the head's bytes, copied whole (lines that follow each other in
/// one span).
#[derive(Clone, Debug)]
pub struct RelayedLines {
    /// The whole head, status line included, as the parser took it.
    head: Bytes,
    spans: Spans,
}

/// What the relayed lines held that the writer would otherwise add itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present {
    /// A `Date` line.
    pub date: bool,
    /// A `Server` line (`proxy_pass_header Server`).
    pub server: bool,
    /// A `Content-Length` line.
    pub content_length: bool,
}

/// The most runs of kept lines a relayed head may have: more (many lines left out between
/// kept ones) and the head is put in a map instead.
const MAX_SPANS: usize = 8;

/// The kept lines of a head, as the parser finds them: byte ranges of whole lines (CRLF
/// included), adjacent ones merged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spans {
    ranges: [(u16, u16); MAX_SPANS],
    count: u8,
    present: Present,
}

impl Spans {
    /// Keeps the line whose name is at `name` and value at `value` (byte ranges of `head`, as
    /// the parser found them). False when the line cannot be copied as it is — the writer
    /// would not write it so (blanks around the value other than one space before it, a bare
    /// LF, `Content-Type` or `Content-Length` not spelled as nginx writes them) — or when the
    /// spans are full: the head then needs its map.
    pub fn keep(&mut self, head: &[u8], name: (usize, usize), value: (usize, usize)) -> bool {
        let (name_at, name_end) = name;
        let (value_at, value_end) = value;
        let line_end = value_end + 2;
        // The parser put the `:` right after the name and took the value up to its CR (or LF).
        let written_so = value_at == name_end + 2
            && line_end <= head.len().min(usize::from(u16::MAX))
            && head[name_end + 1] == b' '
            && head[value_end] == b'\r'
            && head[value_end + 1] == b'\n';
        if !written_so {
            return false;
        }
        let name = &head[name_at..name_end];
        // Standard spellings compare whole first: they are what most upstreams send.
        match name.len() {
            12 if name != b"Content-Type" && is_named(name, b"content-type") => return false,
            14 if name == b"Content-Length" => self.present.content_length = true,
            14 if is_named(name, b"content-length") => return false,
            4 => self.present.date |= is_named(name, b"date"),
            6 => self.present.server |= is_named(name, b"server"),
            _ => {}
        }
        let (start, end) = (name_at as u16, line_end as u16);
        let count = usize::from(self.count);
        if count > 0 && self.ranges[count - 1].1 == start {
            self.ranges[count - 1].1 = end;
        } else if count < MAX_SPANS {
            self.ranges[count] = (start, end);
            self.count += 1;
        } else {
            return false;
        }
        true
    }
}

impl RelayedLines {
    /// The lines `spans` kept of `head`.
    pub fn new(head: Bytes, spans: Spans) -> RelayedLines {
        RelayedLines { head, spans }
    }

    /// Writes the lines the client is to see at the end of `buf`, and says which of the
    /// headers the writer adds itself were among them.
    pub fn write_to(&self, buf: &mut Vec<u8>) -> Present {
        let spans = &self.spans;
        for &(start, end) in &spans.ranges[..usize::from(spans.count)] {
            buf.extend_from_slice(&self.head[usize::from(start)..usize::from(end)]);
        }
        spans.present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spans of `head` kept by the lines not named in `left_out` (lowercase names), as
    /// httparse finds them; None when a line cannot be relayed.
    fn relayed(head: &'static [u8], left_out: &[&str]) -> Option<(String, Present)> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut slots);
        assert!(response.parse(head).unwrap().is_complete());
        let base = head.as_ptr() as usize;
        let at = |bytes: &[u8]| {
            let start = bytes.as_ptr() as usize - base;
            (start, start + bytes.len())
        };
        let mut spans = Spans::default();
        for line in response.headers.iter() {
            if left_out.contains(&line.name.to_ascii_lowercase().as_str()) {
                continue;
            }
            if !spans.keep(head, at(line.name.as_bytes()), at(line.value)) {
                return None;
            }
        }
        let lines = RelayedLines::new(Bytes::from_static(head), spans);
        let mut buf = Vec::new();
        let present = lines.write_to(&mut buf);
        Some((String::from_utf8(buf).unwrap(), present))
    }

    #[test]
    fn kept_lines_are_copied_in_runs_in_their_order_and_spelling() {
        let (text, present) = relayed(
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nContent-Type: text/plain\r\n\
              X-ID: a:b\r\nConnection: keep-alive\r\nset-cookie: a=1\r\nx-id: c\r\n\
              Content-Length: 5\r\n\r\n",
            &["server", "date", "connection"],
        )
        .unwrap();
        assert_eq!(
            text,
            "Content-Type: text/plain\r\nX-ID: a:b\r\nset-cookie: a=1\r\nx-id: c\r\n\
             Content-Length: 5\r\n"
        );
        let expected = Present {
            content_length: true,
            ..Present::default()
        };
        assert_eq!(present, expected);
    }

    #[test]
    fn a_line_the_writer_would_write_otherwise_is_not_relayed() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nX-A:  two spaces\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A:none\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: trailing \r\n\r\n",
            b"HTTP/1.1 200 OK\nX-A: bare line feed\n\n",
            b"HTTP/1.1 200 OK\r\nX-Empty:\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 0\r\n\r\n",
        ] {
            assert!(
                relayed(head, &[]).is_none(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn passed_lines_are_noted_for_the_writer_and_runs_are_bounded() {
        let (text, present) =
            relayed(b"HTTP/1.1 200 OK\r\nServer: app\r\nDate: d\r\n\r\n", &[]).unwrap();
        assert_eq!(text, "Server: app\r\nDate: d\r\n");
        assert!(present.server && present.date && !present.content_length);
        // Kept and left-out lines in turn: one run each, up to the bound.
        let alternating: &'static [u8] = b"HTTP/1.1 200 OK\r\n\
            A: 1\r\nX: 0\r\nB: 1\r\nX: 0\r\nC: 1\r\nX: 0\r\nD: 1\r\nX: 0\r\nE: 1\r\nX: 0\r\n\
            F: 1\r\nX: 0\r\nG: 1\r\nX: 0\r\nH: 1\r\nX: 0\r\n\r\n";
        assert!(relayed(alternating, &["x"]).is_some());
        let one_more: &'static [u8] = b"HTTP/1.1 200 OK\r\n\
            A: 1\r\nX: 0\r\nB: 1\r\nX: 0\r\nC: 1\r\nX: 0\r\nD: 1\r\nX: 0\r\nE: 1\r\nX: 0\r\n\
            F: 1\r\nX: 0\r\nG: 1\r\nX: 0\r\nH: 1\r\nX: 0\r\nI: 1\r\n\r\n";
        assert!(relayed(one_more, &["x"]).is_none());
    }
}
