//! `sticky learn`: sessions a server's responses create, and the requests that carry them.
//!
//! A request's key (the first non-empty `lookup=` variable) is looked up in the group's
//! session zone (`sessions`), whose values are the servers' sticky values, so a session names
//! a server as a sticky cookie would: across reloads, reorderings and instances. A response
//! creates a session for the server that sent it from the first `create=` source present:
//! a cookie it sets or a header (`$upstream_cookie_NAME`, `$upstream_http_NAME`, read from the
//! head), or the key in a SignalR negotiate or engine.io open body (`$signalr_connection_token`,
//! `$engineio_sid`), read by a [`BodyLearner`] from the body's first chunks as they pass to the
//! client. Only responses to requests of a `sticky learn` group are looked at, and of those
//! only handshakes' bodies.
//!
//! A known session whose server is not usable is re-pinned like a cookie session: the request
//! is balanced (by the key's hash, so its concurrent requests land together) and the session
//! now names the new server. Imports `sessions` and `vars`; `http` only for response headers.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, SET_COOKIE};

use crate::config::LearnSource;
use crate::sessions::handshake::{Handshake, HandshakeScan};
use crate::sessions::{SessionRef, SessionZone, clock};
use crate::vars::{RequestInfo, Template, Vars};

/// How a group learns sessions, as its `sticky learn` says (templates compiled).
#[derive(Clone, Debug)]
pub struct LearnMode {
    /// The session zone (kept across reloads by the zone registry).
    pub zone: Arc<SessionZone>,
    /// `create=` sources, in order.
    pub create: Vec<LearnSource>,
    /// `lookup=` variables, compiled, in order.
    pub lookup: Vec<Template>,
    /// `sticky_secret`, keying the servers' sticky values.
    pub secret: Option<String>,
}

/// What a request brought to a `sticky learn` group.
#[derive(Debug, Default)]
pub(super) struct Presented {
    /// The session the zone knows by the request's key: re-pinned if its server cannot take
    /// the request.
    pub(super) known: Option<SessionRef>,
    /// The handshake its response may be, when the group learns from handshakes.
    pub(super) handshake: Option<Handshake>,
}

impl Presented {
    /// Nothing presented (a group without `sticky learn`).
    #[cfg(test)]
    pub(super) const NOTHING: Presented = Presented {
        known: None,
        handshake: None,
    };
}

/// What the answer to one request may create: the server's sticky value, and where to look.
#[derive(Clone, Copy, Debug)]
pub struct Learn<'g> {
    mode: &'g LearnMode,
    value: &'g str,
    handshake: Option<Handshake>,
}

/// Reads a session key from a handshake body's first chunks and learns it for one server.
/// Dropped at the body's end (or when cut off): a SignalR v0 id found by then is learned.
#[derive(Debug)]
pub struct BodyLearner {
    zone: Arc<SessionZone>,
    value: Box<str>,
    scan: HandshakeScan,
}

impl LearnMode {
    /// The key `request` carries (first non-empty `lookup=`): borrowed from the request when
    /// the variable allows (a cookie, an argument, a header: no allocation per request), else
    /// rendered.
    #[inline]
    pub(super) fn key_of<'r>(
        &self,
        request: &RequestInfo<'r>,
        vars: &Vars,
    ) -> Option<Cow<'r, str>> {
        for template in &self.lookup {
            let key = match template.read_in_place(request) {
                Some(key) => Cow::Borrowed(key),
                None => {
                    let mut text = String::new();
                    template.render(vars, request, &mut text);
                    Cow::Owned(text)
                }
            };
            if !key.is_empty() {
                return Some(key);
            }
        }
        None
    }

    /// The handshake `request` may be answered with, if the group learns from one of its kind.
    #[inline]
    pub(super) fn handshake_of(&self, request: &RequestInfo<'_>) -> Option<Handshake> {
        let reads_bodies = self.create.iter().any(|source| {
            matches!(
                source,
                LearnSource::SignalrConnectionToken | LearnSource::EngineioSid
            )
        });
        if !reads_bodies {
            return None;
        }
        let post = request.method == http::Method::POST;
        let handshake = Handshake::of_request(post, request.path, request.uri.query())?;
        let wanted = match handshake {
            Handshake::SignalrNegotiate => LearnSource::SignalrConnectionToken,
            Handshake::EngineioOpen => LearnSource::EngineioSid,
        };
        self.create.contains(&wanted).then_some(handshake)
    }

    /// Pins `key` to the server whose sticky value is `value`: a session learned here.
    pub(super) fn learn(&self, key: &[u8], value: &str) {
        self.zone.learn(key, value, clock::now_ms());
    }

    /// Pins a known session to the server whose sticky value is `value`: its own server could
    /// not take the request.
    pub(super) fn repin(&self, session: SessionRef, value: &str) {
        self.zone.repin(session, value, clock::now_ms());
    }

    /// What the answer from the server with sticky value `value` may create.
    pub(super) fn on_answer<'g>(&'g self, value: &'g str, presented: &Presented) -> Learn<'g> {
        Learn {
            mode: self,
            value,
            handshake: presented.handshake,
        }
    }
}

/// What a learner reads of its answer's head, known before the answer comes: the proxy
/// relays the heads nothing reads without building their header map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerReading {
    /// Nothing (no source reads this request's answer).
    Nothing,
    /// Its `Set-Cookie` lines, when it has any (a `$upstream_cookie_*` source).
    SetCookie,
    /// The whole head (a handshake's status and content coding, or a header source).
    Head,
}

impl Learn<'_> {
    /// What [`Learn::on_head`] will read of the answer.
    pub fn reading(&self) -> AnswerReading {
        if self.handshake.is_some() {
            return AnswerReading::Head;
        }
        let mut reading = AnswerReading::Nothing;
        for source in &self.mode.create {
            match source {
                LearnSource::UpstreamHeader(_) => return AnswerReading::Head,
                LearnSource::UpstreamCookie(_) => reading = AnswerReading::SetCookie,
                // Read only from a handshake's answer: this request is none.
                LearnSource::SignalrConnectionToken | LearnSource::EngineioSid => {}
            }
        }
        reading
    }

    /// Learns from the response head what it carries (a cookie or header source), or returns
    /// the learner its body needs (a handshake's; a 2xx, not content-encoded). Sources are
    /// tried in `create=` order; the first that gives a key wins. `sets_cookie`: the head has
    /// a `Set-Cookie` line (most answers have none, and looking costs a lookup).
    pub fn on_head(
        &self,
        status: u16,
        headers: &HeaderMap,
        sets_cookie: bool,
    ) -> Option<BodyLearner> {
        for source in &self.mode.create {
            let key = match source {
                LearnSource::UpstreamCookie(_) if !sets_cookie => None,
                LearnSource::UpstreamCookie(name) => set_cookie_value(headers, name),
                LearnSource::UpstreamHeader(name) => {
                    headers.get(name.as_str()).map(|v| v.as_bytes())
                }
                LearnSource::SignalrConnectionToken | LearnSource::EngineioSid => {
                    let handshake = self.handshake?;
                    let encoded = headers
                        .get(CONTENT_ENCODING)
                        .is_some_and(|v| v.as_bytes() != b"identity");
                    if !(200..300).contains(&status) || encoded {
                        continue;
                    }
                    return Some(BodyLearner {
                        zone: self.mode.zone.clone(),
                        value: self.value.into(),
                        scan: HandshakeScan::new(handshake),
                    });
                }
            };
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                self.mode.learn(key, self.value);
                return None;
            }
        }
        None
    }
}

impl BodyLearner {
    /// Looks at the next chunk of the body on its way to the client.
    pub fn observe(&mut self, chunk: &[u8]) {
        if let Some(key) = self.scan.feed(chunk) {
            self.zone.learn(&key, &self.value, clock::now_ms());
        }
    }

    /// True once nothing more is needed from the body.
    pub fn is_done(&self) -> bool {
        self.scan.is_done()
    }
}

impl Drop for BodyLearner {
    fn drop(&mut self) {
        if let Some(key) = self.scan.finish() {
            self.zone.learn(&key, &self.value, clock::now_ms());
        }
    }
}

/// The value of cookie `name` in the response's `Set-Cookie` headers (the last one wins, as
/// a browser would keep it).
fn set_cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| {
            let pair = value.as_bytes().split(|&b| b == b';').next()?;
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn mode(create: Vec<LearnSource>) -> LearnMode {
        LearnMode {
            zone: Arc::new(SessionZone::new(
                "z",
                1 << 20,
                std::time::Duration::from_secs(60),
            )),
            create,
            lookup: Vec::new(),
            secret: None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_cookie_or_header_the_response_carries_is_learned_from_the_head() {
        let sources = vec![
            LearnSource::UpstreamCookie("SID".into()),
            LearnSource::UpstreamHeader("x-session".into()),
        ];
        let mode = mode(sources);
        let learn = mode.on_answer("0123456789abcdef", &Presented::NOTHING);
        let head = headers(&[
            ("set-cookie", "other=1; Path=/"),
            ("set-cookie", "SID = s-42 ; HttpOnly"),
            ("x-session", "h-7"),
        ]);
        assert!(learn.on_head(200, &head, true).is_none());
        let now = clock::now_ms();
        assert_eq!(
            mode.zone.lookup(b"s-42", now).as_deref(),
            Some("0123456789abcdef")
        );
        // The first source that gives a key wins: the header was not learned.
        assert_eq!(mode.zone.lookup(b"h-7", now), None);
        assert!(
            learn
                .on_head(200, &headers(&[("x-session", "h-8")]), true)
                .is_none()
        );
        assert!(mode.zone.lookup(b"h-8", now).is_some());
    }

    #[test]
    fn what_a_learner_reads_of_its_answer_is_known_before_it_comes() {
        let handshake = Presented {
            known: None,
            handshake: Some(Handshake::SignalrNegotiate),
        };
        let protocol = mode(vec![LearnSource::SignalrConnectionToken]);
        let reading =
            |mode: &LearnMode, presented: &Presented| mode.on_answer("v", presented).reading();
        assert_eq!(
            reading(&protocol, &Presented::NOTHING),
            AnswerReading::Nothing
        );
        assert_eq!(reading(&protocol, &handshake), AnswerReading::Head);
        let cookie = mode(vec![
            LearnSource::SignalrConnectionToken,
            LearnSource::UpstreamCookie("sid".into()),
        ]);
        assert_eq!(
            reading(&cookie, &Presented::NOTHING),
            AnswerReading::SetCookie
        );
        let header = mode(vec![
            LearnSource::UpstreamCookie("sid".into()),
            LearnSource::UpstreamHeader("x-session".into()),
        ]);
        assert_eq!(reading(&header, &Presented::NOTHING), AnswerReading::Head);
    }

    #[test]
    fn only_a_handshakes_plain_2xx_body_is_read() {
        let mode = mode(vec![LearnSource::EngineioSid]);
        let not_a_handshake = mode.on_answer("v", &Presented::NOTHING);
        assert!(
            not_a_handshake
                .on_head(200, &HeaderMap::new(), true)
                .is_none()
        );
        let presented = Presented {
            known: None,
            handshake: Some(Handshake::EngineioOpen),
        };
        let learn = mode.on_answer("v", &presented);
        assert!(learn.on_head(400, &HeaderMap::new(), true).is_none());
        let gzipped = headers(&[("content-encoding", "gzip")]);
        assert!(learn.on_head(200, &gzipped, true).is_none());
        let mut learner = learn
            .on_head(200, &HeaderMap::new(), true)
            .expect("a body learner");
        learner.observe(b"0{\"sid\":\"abc\",");
        assert!(learner.is_done());
        assert_eq!(
            mode.zone.lookup(b"abc", clock::now_ms()).as_deref(),
            Some("v")
        );
    }
}
