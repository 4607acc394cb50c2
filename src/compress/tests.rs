//! The decision over whole heads (nginx's rules, one case per rule), and the encoder over
//! streams whose pieces arrive one by one.

use std::collections::VecDeque;
use std::io::Read as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Body, Frame};

use super::*;
use crate::config::{Gzip, GzipDisable, GzipProxied, GzipTypes};

fn gzip() -> Gzip {
    Gzip {
        enabled: true,
        types: GzipTypes::List(vec!["application/json".into(), "text/event-stream".into()]),
        ..Gzip::default()
    }
}

fn headers<Lines: FromIterator<(HeaderName, HeaderValue)>>(pairs: &[(&str, &str)]) -> Lines {
    pairs
        .iter()
        .map(|(name, value)| {
            let name: HeaderName = name.parse().unwrap();
            (name, HeaderValue::from_str(value).unwrap())
        })
        .collect()
}

/// Whether a GET with `request` headers gets its `status` + `response` compressed under
/// `config`; the response head as rewritten.
fn decide(
    config: &Gzip,
    request: &[(&str, &str)],
    status: u16,
    response: &[(&str, &str)],
) -> (bool, HeaderMap) {
    let policy = Policy::new(config).expect("gzip on");
    let request = headers(request);
    let offer = policy
        .offer(&Method::GET, Version::HTTP_11, &request)
        .unwrap();
    let mut head = headers(response);
    let status = StatusCode::from_u16(status).unwrap();
    (offer.respond(status, &mut head, None).is_some(), head)
}

const GZIP: (&str, &str) = ("accept-encoding", "gzip, deflate");
const HTML: (&str, &str) = ("content-type", "text/html");

#[test]
fn off_compiles_to_nothing() {
    assert!(Policy::new(&Gzip::default()).is_none());
}

#[test]
fn compressed_head_loses_length_and_ranges_and_gets_a_weak_etag() {
    let response = [
        HTML,
        ("content-length", "1000"),
        ("accept-ranges", "bytes"),
        ("etag", "\"abc\""),
    ];
    let (yes, head) = decide(&gzip(), &[GZIP], 200, &response);
    assert!(yes);
    assert_eq!(head["content-encoding"], "gzip");
    assert!(!head.contains_key("content-length"));
    assert!(!head.contains_key("accept-ranges"));
    assert_eq!(head["etag"], "W/\"abc\"");
    assert!(!head.contains_key("vary"), "gzip_vary is off");
    let (_, head) = decide(&gzip(), &[GZIP], 200, &[HTML, ("etag", "W/\"x\"")]);
    assert_eq!(head["etag"], "W/\"x\"");
    let (_, head) = decide(&gzip(), &[GZIP], 200, &[HTML, ("etag", "bare")]);
    assert!(!head.contains_key("etag"));
}

#[test]
fn only_200_403_404_of_listed_types_long_enough_and_not_encoded() {
    let config = gzip();
    let json = ("content-type", "application/json; charset=utf-8");
    assert!(decide(&config, &[GZIP], 200, &[json]).0);
    assert!(decide(&config, &[GZIP], 404, &[HTML]).0);
    assert!(decide(&config, &[GZIP], 403, &[HTML]).0);
    for status in [201, 206, 301, 500, 502] {
        assert!(!decide(&config, &[GZIP], status, &[HTML]).0, "{status}");
    }
    // nginx cuts the type at `;` only before `charset=`.
    assert!(!decide(&config, &[GZIP], 200, &[("content-type", "text/html; q=1")]).0);
    assert!(
        decide(
            &config,
            &[GZIP],
            200,
            &[("content-type", "Text/HTML;charset=x")]
        )
        .0
    );
    assert!(!decide(&config, &[GZIP], 200, &[("content-type", "text/css")]).0);
    assert!(
        !decide(&config, &[GZIP], 200, &[]).0,
        "no type: only gzip_types *"
    );
    let any = Gzip {
        types: GzipTypes::Any,
        ..gzip()
    };
    assert!(decide(&any, &[GZIP], 200, &[]).0);
    assert!(!decide(&config, &[GZIP], 200, &[HTML, ("content-length", "19")]).0);
    assert!(decide(&config, &[GZIP], 200, &[HTML, ("content-length", "20")]).0);
    // tether's own answers tell their length by the body they carry.
    let policy = Policy::new(&config).unwrap();
    let offer = policy
        .offer(&Method::GET, Version::HTTP_11, &headers(&[GZIP]))
        .unwrap();
    assert!(
        offer
            .respond(StatusCode::OK, &mut headers(&[HTML]), Some(19))
            .is_none()
    );
    assert!(
        offer
            .respond(StatusCode::OK, &mut headers(&[HTML]), Some(20))
            .is_some()
    );
    assert!(!decide(&config, &[GZIP], 200, &[HTML, ("content-encoding", "br")]).0);
    assert!(decide(&config, &[GZIP], 200, &[HTML, ("content-encoding", "")]).0);
    let range = ("content-range", "bytes 0-9/100");
    assert!(!decide(&config, &[GZIP], 200, &[HTML, range]).0);
}

#[test]
fn vary_goes_on_every_candidate_compressed_or_not() {
    let config = Gzip {
        vary: true,
        ..gzip()
    };
    let (yes, head) = decide(&config, &[GZIP], 200, &[HTML]);
    assert!(yes);
    assert_eq!(head["vary"], "Accept-Encoding");
    let (yes, head) = decide(&config, &[], 200, &[HTML]);
    assert!(!yes);
    assert_eq!(head["vary"], "Accept-Encoding");
    let (_, head) = decide(&config, &[GZIP], 502, &[HTML]);
    assert!(!head.contains_key("vary"));
    let (_, head) = decide(&config, &[GZIP], 200, &[("content-type", "image/png")]);
    assert!(!head.contains_key("vary"));
}

#[test]
fn clients_refused_by_encoding_version_and_agent() {
    let mut config = gzip();
    config.disable = GzipDisable {
        msie6: true,
        patterns: vec!["^curl/".into()],
    };
    let policy = Policy::new(&config).unwrap();
    let compressed = |version, request: &[(&str, &str)]| {
        let request = headers(request);
        let offer = policy.offer(&Method::GET, version, &request).unwrap();
        offer
            .respond(StatusCode::OK, &mut headers(&[HTML]), None)
            .is_some()
    };
    assert!(compressed(Version::HTTP_11, &[GZIP]));
    assert!(compressed(Version::HTTP_2, &[GZIP]));
    assert!(!compressed(Version::HTTP_10, &[GZIP]));
    assert!(!compressed(
        Version::HTTP_11,
        &[("accept-encoding", "gzip;q=0")]
    ));
    let msie = (
        "user-agent",
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    );
    assert!(!compressed(Version::HTTP_11, &[GZIP, msie]));
    assert!(!compressed(
        Version::HTTP_11,
        &[GZIP, ("user-agent", "CURL/8.0")]
    ));
    assert!(compressed(
        Version::HTTP_11,
        &[GZIP, ("user-agent", "Wget curl/8")]
    ));
    // A HEAD gets a GET's head, and no encoder: it has no body.
    let head_request = policy.offer(&Method::HEAD, Version::HTTP_11, &headers(&[GZIP]));
    let mut head = headers(&[HTML, ("content-length", "500")]);
    let encoder = head_request
        .unwrap()
        .respond(StatusCode::OK, &mut head, None);
    assert!(encoder.is_none());
    assert_eq!(head["content-encoding"], "gzip");
    assert!(!head.contains_key("content-length"));
    let connect = policy.offer(&Method::CONNECT, Version::HTTP_2, &headers(&[GZIP]));
    assert!(connect.is_none());
    let old = Gzip {
        http_version: crate::config::GzipHttpVersion::Http10,
        ..gzip()
    };
    let policy = Policy::new(&old).unwrap();
    let offer = policy
        .offer(&Method::GET, Version::HTTP_10, &headers(&[GZIP]))
        .unwrap();
    assert!(
        offer
            .respond(StatusCode::OK, &mut headers(&[HTML]), None)
            .is_some()
    );
}

#[test]
fn proxied_requests_follow_gzip_proxied() {
    let via = ("via", "1.1 cdn");
    let with = |proxied: GzipProxied| Gzip { proxied, ..gzip() };
    let flags = GzipProxied::default();
    // off (the default) refuses whatever else is said.
    assert!(!decide(&gzip(), &[GZIP, via], 200, &[HTML]).0);
    assert!(decide(&gzip(), &[GZIP], 200, &[HTML]).0, "not proxied");
    let any = with(GzipProxied { any: true, ..flags });
    assert!(
        decide(
            &any,
            &[GZIP, via],
            200,
            &[HTML, ("cache-control", "public")]
        )
        .0
    );
    let auth = with(GzipProxied {
        auth: true,
        ..flags
    });
    let authorization = ("authorization", "Bearer x");
    let cached = ("cache-control", "max-age=60");
    assert!(decide(&auth, &[GZIP, via, authorization], 200, &[HTML, cached]).0);
    assert!(!decide(&auth, &[GZIP, via], 200, &[HTML, cached]).0);
    let expired = with(GzipProxied {
        expired: true,
        ..flags
    });
    let date = ("date", "Sun, 06 Dec 2026 08:00:00 GMT");
    let past = ("expires", "Thu, 01 Jan 1970 00:00:00 GMT");
    let future = ("expires", "Mon, 07 Dec 2026 08:00:00 GMT");
    assert!(decide(&expired, &[GZIP, via], 200, &[HTML, date, past]).0);
    assert!(!decide(&expired, &[GZIP, via], 200, &[HTML, date, future]).0);
    assert!(!decide(&expired, &[GZIP, via], 200, &[HTML, ("expires", "0")]).0);
    let no_cache = with(GzipProxied {
        no_cache: true,
        private: true,
        ..flags
    });
    let says = |value| [HTML, ("cache-control", value)];
    assert!(decide(&no_cache, &[GZIP, via], 200, &says("No-Cache")).0);
    assert!(
        decide(
            &no_cache,
            &[GZIP, via],
            200,
            &says("max-age=0, private=\"x\"")
        )
        .0
    );
    assert!(!decide(&no_cache, &[GZIP, via], 200, &says("no-store")).0);
    // Without Expires or Cache-Control, the header tests decide, and yes is the default.
    assert!(decide(&no_cache, &[GZIP, via], 200, &[HTML]).0);
    let no_lm = with(GzipProxied {
        no_last_modified: true,
        no_etag: true,
        ..flags
    });
    assert!(decide(&no_lm, &[GZIP, via], 200, &[HTML]).0);
    let modified = ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT");
    assert!(!decide(&no_lm, &[GZIP, via], 200, &[HTML, modified]).0);
    assert!(!decide(&no_lm, &[GZIP, via], 200, &[HTML, ("etag", "\"1\"")]).0);
}

/// A body whose pieces are handed out one per poll, with a `Pending` wherever the script says
/// (waking itself, as a body waiting on a socket would be woken); counts what it handed out.
struct Script {
    steps: VecDeque<Option<&'static str>>,
    taken: usize,
}

impl Body for Script {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let step = self.steps.pop_front();
        self.taken += 1;
        match step {
            None => Poll::Ready(None),
            Some(Some(piece)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(piece))))),
            Some(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// Polls `encoder` over `script` until it ends; each frame it made, with how many steps of the
/// script had been played when it came out.
fn drive(mut encoder: Encoder, script: Vec<Option<&'static str>>) -> Vec<(usize, Bytes)> {
    let mut body = Script {
        steps: script.into(),
        taken: 0,
    };
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut seen = Vec::new();
    for _ in 0..1000 {
        match encoder.poll_frame(Pin::new(&mut body), &mut cx) {
            Poll::Ready(Some(Ok(frame))) => seen.push((body.taken, frame.into_data().unwrap())),
            Poll::Ready(Some(Err(_))) => panic!("failed"),
            Poll::Ready(None) => return seen,
            Poll::Pending => {}
        }
    }
    panic!("runs away");
}

/// Everything made, in one piece.
fn joined(seen: &[(usize, Bytes)]) -> Vec<u8> {
    seen.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

/// Decodes as much of a gzip stream as has arrived.
fn decode_prefix(bytes: &[u8]) -> String {
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    let mut text = Vec::new();
    let mut buf = [0; 256];
    // A stream cut after a sync flush decodes up to the cut, then reports the missing end.
    while let Ok(n) = decoder.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(text).unwrap()
}

#[test]
fn what_is_at_hand_leaves_when_the_body_waits() {
    let script = vec![Some("data: one\n\n"), None, Some("data: two\n\n"), None];
    let seen = drive(Encoder::new(1, false), script);
    // Made before the second event was read: the first event, whole.
    let early: Vec<(usize, Bytes)> = seen.iter().filter(|(t, _)| *t <= 2).cloned().collect();
    assert_eq!(decode_prefix(&joined(&early)), "data: one\n\n");
    let mut whole = String::new();
    flate2::read::GzDecoder::new(&joined(&seen)[..])
        .read_to_string(&mut whole)
        .unwrap();
    assert_eq!(whole, "data: one\n\ndata: two\n\n");
}

#[test]
fn an_event_stream_is_flushed_after_every_piece() {
    // No wait between the two events: still, the first is decodable alone.
    let script = vec![Some("data: one\n\n"), Some("data: two\n\n")];
    let seen = drive(Encoder::new(6, true), script);
    assert_eq!(seen[0].0, 1);
    assert_eq!(decode_prefix(&seen[0].1), "data: one\n\n");
}

#[test]
fn a_large_body_round_trips_in_pieces() {
    let piece: &'static str = Box::leak(
        (0..2000)
            .map(|i| format!("line {i} of a long page\n"))
            .collect::<String>()
            .into_boxed_str(),
    );
    let script = vec![Some(piece), Some(piece), None, Some(piece)];
    let seen = drive(Encoder::new(9, false), script);
    let all = joined(&seen);
    assert!(all.len() < piece.len() * 3 / 4, "compressed: {}", all.len());
    let mut whole = String::new();
    flate2::read::GzDecoder::new(&all[..])
        .read_to_string(&mut whole)
        .unwrap();
    assert_eq!(whole, piece.repeat(3));
}

#[test]
fn an_empty_body_is_still_a_whole_gzip_stream() {
    let seen = drive(Encoder::new(1, false), vec![]);
    let mut whole = String::new();
    flate2::read::GzDecoder::new(&joined(&seen)[..])
        .read_to_string(&mut whole)
        .unwrap();
    assert_eq!(whole, "");
}
