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
    /// The head's bytes (status line included).
    head: Bytes,
    /// Where the first [`NOTED`] names start in `head`, as the parse found them (None past
    /// the last line): found by offset, without walking the lines.
    starts: [u16; NOTED],
    noted: u8,
}

/// How many names' offsets are kept; a longer head's later names are found by walking its
/// lines.
const NOTED: usize = 16;

impl Spellings {
    /// The spellings of a response head: its bytes, and where its header names start (in wire
    /// order; all of them, or at least the first [`NOTED`]).
    pub fn of_head(head: Bytes, name_starts: impl IntoIterator<Item = usize>) -> Spellings {
        let mut starts = [0u16; NOTED];
        let mut noted = 0;
        for (slot, start) in starts.iter_mut().zip(name_starts) {
            // A head is at most 64 KiB (`origin::head::MAX_HEAD`), so offsets fit.
            *slot = u16::try_from(start).unwrap_or(u16::MAX);
            noted += 1;
        }
        Spellings {
            head,
            starts,
            noted,
        }
    }

    /// The names, in wire order.
    pub fn names(&self) -> Option<Names<'_>> {
        Some(Names(self))
    }

    /// Built from names (tests, and heads made by hand).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Spellings {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        let mut starts = Vec::new();
        for name in names {
            starts.push(head.len());
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": \r\n");
        }
        head.extend_from_slice(b"\r\n");
        Spellings::of_head(head.into(), starts)
    }
}

/// The header names of [`Spellings`].
pub struct Names<'a>(&'a Spellings);

impl Names<'_> {
    /// The spellings, read in order by a [`Speller`].
    pub fn speller(&self) -> Speller<'_> {
        let spellings = self.0;
        let noted = &spellings.starts[..usize::from(spellings.noted)];
        Speller {
            head: &spellings.head,
            noted,
            cursor: 0,
            // Names past the noted ones are found by walking the lines after the last noted.
            rest: if noted.len() < NOTED {
                spellings.head.len()
            } else {
                noted[NOTED - 1] as usize
            },
        }
    }
}

/// Finds the spelling of each name a writer meets. Names usually come in wire order (the map
/// is filled as the head is parsed), so the name at the cursor is tried first, then the ones
/// after it (headers the proxy removed are skipped), then all of them. A noted name is checked
/// by its length and the `:` after it before any byte is compared.
pub struct Speller<'a> {
    head: &'a [u8],
    noted: &'a [u16],
    cursor: usize,
    /// Where the lines no offset was noted for begin (the head's end when all were noted).
    rest: usize,
}

impl<'a> Speller<'a> {
    /// The upstream's spelling of `name` (lowercase), if it sent that name.
    pub fn spell(&mut self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        let (head, noted) = (self.head, self.noted);
        let is_it = |start: usize| {
            head.get(start + name.len()) == Some(&b':')
                && head[start..start + name.len()].eq_ignore_ascii_case(name)
        };
        let found = (self.cursor..noted.len())
            .chain(0..self.cursor)
            .find(|&at| is_it(usize::from(noted[at])));
        if let Some(at) = found {
            self.cursor = at + 1;
            let start = usize::from(noted[at]);
            return Some(&head[start..start + name.len()]);
        }
        let (start, _) = find_from(head, self.rest, name)?;
        Some(&head[start..start + name.len()])
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
        let spellings = Spellings::of_head(head, [17, 36]);
        let names = spellings.names().unwrap();
        let mut speller = names.speller();
        assert_eq!(speller.spell("x-request"), Some(&b"X-Request"[..]));
        assert_eq!(speller.spell("x-request-id"), Some(&b"X-Request-Id"[..]));
        assert_eq!(speller.spell("http/1.1 200 ok"), None);
    }

    #[test]
    fn names_past_the_noted_ones_are_found_by_walking_the_lines() {
        let names: Vec<String> = (0..NOTED + 4).map(|i| format!("X-Name-{i}")).collect();
        let spellings = Spellings::from_names(names.iter().map(String::as_str));
        let names_of = spellings.names().unwrap();
        let mut speller = names_of.speller();
        for name in names.iter().rev() {
            let lower = name.to_ascii_lowercase();
            assert_eq!(speller.spell(&lower), Some(name.as_bytes()), "{name}");
        }
    }
}
