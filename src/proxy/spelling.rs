//! Header names as the upstream spelled them. The response's `HeaderMap` holds names in
//! lowercase; nginx relays names as the upstream wrote them, and clients and scripts that
//! compare names case-sensitively depend on it. So the response carries [`Spellings`] — the
//! head's own bytes, kept from the one parse (`origin::head`), shared, not copied — and the
//! client's HTTP/1 writer (`server::http1::write`) asks a [`Speller`] for each name it writes;
//! HTTP/2 clients get lowercase names, as that protocol requires.
//!
//! Costs: a reference count on the head's bytes, and per name written one compare of the line
//! at the speller's cursor (names arrive in wire order; the length and the `:` after it are
//! checked before any byte is). Must not import the server side.

use bytes::Bytes;

/// The upstream's spelling of the header names of one response head.
#[derive(Clone, Debug)]
pub struct Spellings {
    /// The head's header lines (status line left out).
    lines: Bytes,
}

impl Spellings {
    /// The spellings of a response head, given its bytes (status line, header lines).
    pub fn of_head(head: Bytes) -> Spellings {
        let start = memchr::memchr(b'\n', &head).map_or(head.len(), |at| at + 1);
        Spellings {
            lines: head.slice(start..),
        }
    }

    /// The names, in wire order.
    pub fn names(&self) -> Option<Names<'_>> {
        Some(Names(&self.lines))
    }

    /// Built from names (tests, and heads made by hand).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Spellings {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for name in names {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": \r\n");
        }
        head.extend_from_slice(b"\r\n");
        Spellings::of_head(head.into())
    }
}

/// The header lines of [`Spellings`].
pub struct Names<'a>(&'a [u8]);

impl Names<'_> {
    /// The spellings, read in order by a [`Speller`].
    pub fn speller(&self) -> Speller<'_> {
        Speller {
            lines: self.0,
            cursor: 0,
        }
    }
}

/// Finds the spelling of each name a writer meets. Names usually come in wire order (the map
/// is filled as the head is parsed), so the line at the cursor is tried first, then the ones
/// after it (headers the proxy removed are skipped), then all of them.
pub struct Speller<'a> {
    lines: &'a [u8],
    cursor: usize,
}

impl<'a> Speller<'a> {
    /// The upstream's spelling of `name` (lowercase), if it sent that name.
    pub fn spell(&mut self, name: &str) -> Option<&'a [u8]> {
        let lines = self.lines;
        let name = name.as_bytes();
        let (start, next) =
            find_from(lines, self.cursor, name).or_else(|| find_from(lines, 0, name))?;
        self.cursor = next;
        Some(&lines[start..start + name.len()])
    }
}

/// The line among `lines` from offset `at` on whose name is `name` (any case): where it starts
/// and where the next one does.
fn find_from(lines: &[u8], mut at: usize, name: &[u8]) -> Option<(usize, usize)> {
    while at < lines.len() {
        let rest = &lines[at..];
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |end| end + 1);
        let line = &rest[..end];
        // The parser refused a space before the colon, so a name ends exactly at its `:`.
        if line.get(name.len()) == Some(&b':') && line[..name.len()].eq_ignore_ascii_case(name) {
            return Some((at, at + end));
        }
        at += end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_name_is_matched_whole_up_to_its_colon() {
        let head =
            Bytes::from_static(b"HTTP/1.1 200 OK\r\nX-Request-Id: a:b\r\nX-Request: c\r\n\r\n");
        let spellings = Spellings::of_head(head);
        let names = spellings.names().unwrap();
        let mut speller = names.speller();
        assert_eq!(speller.spell("x-request"), Some(&b"X-Request"[..]));
        assert_eq!(speller.spell("x-request-id"), Some(&b"X-Request-Id"[..]));
        assert_eq!(speller.spell("http/1.1 200 ok"), None);
    }
}
