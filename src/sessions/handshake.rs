//! Reading a session key out of the first bytes of a framework's handshake response, without
//! holding the response back: each body chunk is looked at as it passes, and copied only when
//! the key straddles two chunks (at most [`MAX_PREFIX`] bytes in all, then the scan gives up).
//!
//! - SignalR negotiate (`POST .../negotiate`): JSON with `connectionToken` (negotiate v1; the
//!   id later requests carry as `?id=`), else `connectionId` (v0, where that is the id).
//! - engine.io open packet (`GET ...?EIO=N&transport=polling`, no `sid`): `0{"sid":"..."}`,
//!   behind a length prefix in EIO 3 payloads; later requests carry `&sid=`.
//!
//! Std only: the proxy feeds the chunks, whichever HTTP reader produced them.

/// How much of a handshake body is looked at: both frameworks put the key in the first few
/// hundred bytes.
pub const MAX_PREFIX: usize = 4096;

/// Which handshake a response answers (decided from its request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// A SignalR negotiate response.
    SignalrNegotiate,
    /// An engine.io polling open packet.
    EngineioOpen,
}

/// A scan of one handshake response's body, fed chunk by chunk.
#[derive(Debug)]
pub struct HandshakeScan {
    kind: Handshake,
    /// What was seen so far when a chunk ended mid-key; empty in the common case (the key in
    /// the first chunk).
    prefix: Vec<u8>,
    /// SignalR v0's `connectionId`, kept while a `connectionToken` may still come.
    fallback: Option<Vec<u8>>,
    done: bool,
}

/// What a field lookup in a JSON prefix found.
#[derive(Debug, PartialEq, Eq)]
enum Field<'a> {
    /// The string value, complete.
    Found(&'a [u8]),
    /// Not (yet) in the prefix, or cut off by its end.
    NotYet,
}

impl Handshake {
    /// Whether a request is a handshake: a SignalR negotiate (`POST`, path ending in
    /// `/negotiate`), or an engine.io polling open (`EIO=` in the query, no `sid=`).
    pub fn of_request(post: bool, path: &[u8], query: Option<&str>) -> Option<Handshake> {
        if post && path.ends_with(b"/negotiate") {
            return Some(Handshake::SignalrNegotiate);
        }
        let query = query?;
        let mut eio = false;
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            match name {
                "EIO" => eio = true,
                "sid" => return None,
                _ => {}
            }
        }
        eio.then_some(Handshake::EngineioOpen)
    }
}

impl HandshakeScan {
    /// A scan for `kind`'s key.
    pub fn new(kind: Handshake) -> HandshakeScan {
        HandshakeScan {
            kind,
            prefix: Vec::new(),
            fallback: None,
            done: false,
        }
    }

    /// True once the key was found or the scan gave up: later chunks need not be fed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Looks at the next chunk of the body; the key once it is complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        if self.done || chunk.is_empty() {
            return None;
        }
        // The common case, the whole key in the first chunk, copies nothing but the key.
        if self.prefix.is_empty() {
            let seen = &chunk[..chunk.len().min(MAX_PREFIX)];
            if let Some(key) = self.look(seen) {
                return Some(key);
            }
            self.prefix.extend_from_slice(seen);
        } else {
            let room = MAX_PREFIX - self.prefix.len();
            self.prefix
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            let prefix = std::mem::take(&mut self.prefix);
            let found = self.look(&prefix);
            if found.is_some() {
                return found;
            }
            self.prefix = prefix;
        }
        if self.prefix.len() >= MAX_PREFIX {
            return self.finish();
        }
        None
    }

    /// The body ended (or the scan stops): SignalR v0's `connectionId` if that is all it had.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        self.done = true;
        self.prefix = Vec::new();
        self.fallback.take()
    }

    /// The key in `seen` (the body from its start), if complete; marks the scan done then.
    fn look(&mut self, seen: &[u8]) -> Option<Vec<u8>> {
        let found = match self.kind {
            Handshake::SignalrNegotiate => {
                if let Field::Found(id) = json_string(seen, b"connectionId") {
                    self.fallback.get_or_insert_with(|| id.to_vec());
                }
                match json_string(seen, b"connectionToken") {
                    Field::Found(token) => Some(token),
                    Field::NotYet => None,
                }
            }
            Handshake::EngineioOpen => match json_string(open_packet(seen)?, b"sid") {
                Field::Found(sid) => Some(sid),
                Field::NotYet => None,
            },
        };
        let key = found?.to_vec();
        self.done = true;
        self.prefix = Vec::new();
        Some(key)
    }
}

/// The JSON of an engine.io open packet: `0{...}` (EIO 4), or after a `LEN:` length prefix
/// (EIO 3 text payloads) or a binary one (EIO 3 XHR2: `\0`, length digits, `\xff`).
fn open_packet(body: &[u8]) -> Option<&[u8]> {
    let start = body.iter().position(|&b| b == b'{')?;
    (start > 0 && body[start - 1] == b'0').then(|| &body[start..])
}

/// The string value of `"name"` in a JSON prefix. Values with escapes are not keys any
/// framework issues, and are not taken (their raw text would not match the request's).
fn json_string<'a>(json: &'a [u8], name: &[u8]) -> Field<'a> {
    let mut from = 0;
    while let Some(at) = find(&json[from..], name).map(|i| i + from) {
        from = at + name.len();
        let quoted = at > 0 && json[at - 1] == b'"' && json.get(from) == Some(&b'"');
        if !quoted {
            continue;
        }
        let rest = skip_space(&json[from + 1..]);
        let Some((&b':', rest)) = rest.split_first() else {
            // Cut off before the colon, or a value named like the field: look further.
            if rest.is_empty() {
                return Field::NotYet;
            }
            continue;
        };
        let rest = skip_space(rest);
        let Some((&b'"', value)) = rest.split_first() else {
            return Field::NotYet;
        };
        return match value.iter().position(|&b| b == b'"' || b == b'\\') {
            Some(end) if value[end] == b'"' && end > 0 => Field::Found(&value[..end]),
            _ => Field::NotYet,
        };
    }
    Field::NotYet
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
