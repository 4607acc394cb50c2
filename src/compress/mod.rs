//! `gzip on`: which responses are compressed, decided nginx's way, and the streaming
//! compressor that does it.
//!
//! ```text
//! route found ──Policy::offer(request)──> Offer ──respond(status, headers)──> Option<Encoder>
//!                                                                              │
//!                                 ResponseBody drives it over every frame ─────┘
//! ```
//!
//! A [`Policy`] is compiled once per location from its [`config::Gzip`]; an [`Offer`] is what
//! one request allows (read before the request is forwarded, since it is gone by the time the
//! answer comes); [`Offer::respond`] looks at the response head, rewrites it (`Content-Encoding`,
//! no `Content-Length`, `Vary`, a weak `ETag`) and hands back an [`Encoder`] for the body.
//!
//! nginx's rules (`ngx_http_gzip_header_filter`, `ngx_http_gzip_ok`): only 200, 403 and 404
//! are compressed; never a response that already has a `Content-Encoding`, one shorter than
//! `gzip_min_length` by its `Content-Length`, one of a type outside `gzip_types` (the answer
//! to a HEAD gets the head a GET would get); `Vary: Accept-Encoding` (with `gzip_vary`) goes on every response that passed those
//! tests, compressed or not; then the client must take gzip, not be disabled by
//! `gzip_disable`, speak at least `gzip_http_version`, and — if it came through a proxy
//! (`Via`) — pass `gzip_proxied`. tether adds two refusals nginx gets from its phase order: a
//! `Content-Range` response (a range of the uncompressed bytes) and the CONNECT of an HTTP/2
//! WebSocket (its 200 opens a tunnel).
//!
//! Uses `http` types and `flate2`; must not import hyper, tokio or anything of tether but
//! `config`.

mod client;
mod encoder;
mod response;

pub use encoder::{Encoder, Failure};

use http::header::{self, HeaderMap, HeaderValue};

use crate::header_list::HeaderList;
use http::{Method, StatusCode, Version};
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::config::{Gzip, GzipHttpVersion, GzipProxied, GzipTypes};

/// One location's `gzip` settings, compiled.
#[derive(Debug)]
pub struct Policy {
    level: u32,
    min_length: u64,
    types: GzipTypes,
    proxied: GzipProxied,
    vary: bool,
    msie6: bool,
    /// `gzip_disable` regexes (None: there are none).
    disable: Option<RegexSet>,
    http_version: GzipHttpVersion,
}

impl Policy {
    /// The policy of a location with `gzip` as given; None when `gzip` is off there.
    pub fn new(gzip: &Gzip) -> Option<Policy> {
        if !gzip.enabled {
            return None;
        }
        // Each pattern was compiled once already when the config was checked.
        let disable = (!gzip.disable.patterns.is_empty())
            .then(|| {
                RegexSetBuilder::new(&gzip.disable.patterns)
                    .case_insensitive(true)
                    .build()
                    .ok()
            })
            .flatten();
        Some(Policy {
            level: gzip.comp_level,
            min_length: gzip.min_length,
            types: gzip.types.clone(),
            proxied: gzip.proxied,
            vary: gzip.vary,
            msie6: gzip.disable.msie6,
            disable,
            http_version: gzip.http_version,
        })
    }

    /// What a request allows its response: None when no response to it can be compressed or
    /// carry `Vary` for it (an HTTP/2 WebSocket's CONNECT).
    pub fn offer(
        &self,
        method: &Method,
        version: Version,
        headers: &HeaderList,
    ) -> Option<Offer<'_>> {
        if method == Method::CONNECT {
            return None;
        }
        Some(Offer {
            policy: self,
            head: method == Method::HEAD,
            accepted: self.client_takes_gzip(version, headers),
            proxied: headers.contains_key(header::VIA),
            authorized: headers.contains_key(header::AUTHORIZATION),
        })
    }

    /// nginx's `ngx_http_gzip_ok` without the `gzip_proxied` part, which needs the response.
    fn client_takes_gzip(&self, version: Version, headers: &HeaderList) -> bool {
        // nginx 1.22 reads the first Accept-Encoding line.
        let accepts = headers
            .get(header::ACCEPT_ENCODING)
            .is_some_and(|value| client::accepts_gzip(value.as_bytes()));
        if !accepts {
            return false;
        }
        let minimum = match self.http_version {
            GzipHttpVersion::Http10 => Version::HTTP_10,
            GzipHttpVersion::Http11 => Version::HTTP_11,
        };
        if version < minimum {
            return false;
        }
        let agent = headers.get(header::USER_AGENT).map(HeaderValue::as_bytes);
        match agent {
            None => true,
            Some(agent) if self.msie6 && client::is_msie6(agent) => false,
            Some(agent) => !self.disable.as_ref().is_some_and(|set| set.is_match(agent)),
        }
    }
}

/// What one request allows its response, read before the request was forwarded.
#[derive(Debug)]
pub struct Offer<'p> {
    policy: &'p Policy,
    /// A HEAD: the head says what a GET would get, and there is no body to compress.
    head: bool,
    /// The client takes gzip, is not disabled and speaks a recent enough HTTP.
    accepted: bool,
    /// The request came through a proxy (`Via`): `gzip_proxied` decides.
    proxied: bool,
    /// The request carries `Authorization` (`gzip_proxied auth`).
    authorized: bool,
}

impl Offer<'_> {
    /// Looks at a response head about to be sent: when the response is to be compressed,
    /// rewrites `headers` for it and returns the encoder its body must go through (None for a
    /// HEAD, whose head is rewritten all the same, as nginx does). `known_length` is the
    /// body's size when tether made it itself (no `Content-Length` yet). With `gzip_vary`,
    /// `Vary: Accept-Encoding` is added to every response that could have been compressed.
    pub fn respond(
        &self,
        status: StatusCode,
        headers: &mut HeaderMap,
        known_length: Option<u64>,
    ) -> Option<Encoder> {
        let policy = self.policy;
        let length = response::declared_length(headers).or(known_length);
        if !matches!(status.as_u16(), 200 | 403 | 404)
            || response::is_encoded(headers)
            || headers.contains_key(header::CONTENT_RANGE)
            || length.is_some_and(|len| len < policy.min_length)
            || !response::type_listed(headers, &policy.types)
        {
            return None;
        }
        if policy.vary {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if !self.accepted
            || (self.proxied
                && !response::proxied_allows(&policy.proxied, self.authorized, headers))
        {
            return None;
        }
        let streaming = response::is_event_stream(headers);
        response::mark_compressed(headers);
        (!self.head).then(|| Encoder::new(policy.level, streaming))
    }
}

#[cfg(test)]
mod tests;
