//! Cost of a sticky cookie each way: encoding (the value, the `Set-Cookie` header) when a
//! session is pinned, and decoding (finding the cookie in a request, mapping it back to a
//! server) on every request that carries one.
//!
//! The group has 1,000 servers; only `find` depends on that (a binary search).
//! Run: `cargo bench --bench sticky`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::COOKIE;
use tether::balance::sticky::{StickyKey, StickyTable};
use tether::config::{CookieExpiry, SameSite, Span, StickyCookie};
use tether::header_list::HeaderList;
use tether::sessions::handshake::{Handshake, HandshakeScan};
use tether::sessions::{SessionZone, clock};
use tether::upstream::cookie::CookieIssuer;

/// Servers in the group.
const SERVERS: usize = 1_000;
/// The cookie's name, as `sticky cookie srv_id ...` would set it.
const NAME: &str = "srv_id";

/// `sticky cookie srv_id [expires=...] domain=.example.com path=/ httponly secure samesite=lax`.
fn spec(expires: Option<CookieExpiry>) -> StickyCookie {
    StickyCookie {
        name: NAME.to_string(),
        expires,
        domain: Some(".example.com".to_string()),
        path: "/".to_string(),
        http_only: true,
        secure: true,
        same_site: Some(SameSite::Lax),
        secret: None,
        span: Span::builtin(),
    }
}

/// The `Cookie` header of a browser with analytics, consent and app cookies, ours last, so
/// every other cookie is parsed first.
fn browser_cookies(value: &str) -> HeaderList {
    let header = format!(
        "_ga=GA1.2.1204384522.1717171717; _gid=GA1.2.987654321.1717171717; \
         cookieconsent_status=dismiss; theme=dark; lang=en-GB; \
         session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiIsImV4cCI6MTcxNzE3NTMxN30.c2lnbmF0dXJl; \
         csrftoken=Xq3kP9vTz2LmN8bR4wYc; {NAME}={value}"
    );
    let mut headers = HeaderList::new();
    // The text is ASCII without control characters: always a valid header value.
    headers.insert(COOKIE, header.parse().unwrap());
    headers
}

fn sticky(c: &mut Criterion) {
    let addresses: Vec<String> = (0..SERVERS)
        .map(|i| format!("127.0.0.1:{}", 10_000 + i))
        .collect();
    let identities: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let table = StickyTable::new(&StickyKey::for_group("farm"), &identities);
    let values = || (0..SERVERS).map(|i| table.value(i));
    // Cookie names and hex values are always valid header text, so building cannot fail.
    let session = CookieIssuer::new(&spec(None), values()).unwrap();
    let hourly = spec(Some(CookieExpiry::After(Duration::from_secs(3600))));
    let sliding = CookieIssuer::new(&hourly, values()).unwrap();
    let pinned = SERVERS / 2;

    let mut group = c.benchmark_group("sticky_encode");
    group.bench_function("value", |b| b.iter(|| table.value(black_box(pinned))));
    // A session cookie's header is built with the snapshot: this is a clone.
    group.bench_function("set_cookie_session", |b| {
        b.iter(|| session.set_cookie(black_box(pinned)))
    });
    // `expires=1h` slides: the clock, a date and the header are formatted per response.
    group.bench_function("set_cookie_expires_1h", |b| {
        b.iter(|| sliding.set_cookie(black_box(pinned)))
    });
    group.finish();

    let ours = browser_cookies(table.value(pinned));
    let alone = {
        let mut headers = HeaderList::new();
        let text = format!("{NAME}={}", table.value(pinned));
        // As above: ASCII, valid header text.
        headers.insert(COOKIE, text.parse().unwrap());
        headers
    };
    let stale = browser_cookies("0123456789abcdef");
    assert_eq!(session.read(&ours), Some(table.value(pinned)));
    assert_eq!(table.find(table.value(pinned)), Some(pinned));
    assert_eq!(session.read(&stale).and_then(|v| table.find(v)), None);

    let mut group = c.benchmark_group("sticky_decode");
    group.bench_function("read_alone", |b| b.iter(|| session.read(black_box(&alone))));
    group.bench_function("read_among_8", |b| {
        b.iter(|| session.read(black_box(&ours)))
    });
    group.bench_function("find", |b| {
        b.iter(|| table.find(black_box(table.value(pinned))))
    });
    // What a request with the cookie pays before balancing: read it, then map it back.
    group.bench_function("read_and_find", |b| {
        b.iter(|| session.read(black_box(&ours)).and_then(|v| table.find(v)))
    });
    // A cookie from a server since removed: the same work, ending in a miss.
    group.bench_function("read_and_find_stale", |b| {
        b.iter(|| session.read(black_box(&stale)).and_then(|v| table.find(v)))
    });
    group.finish();
}

/// `sticky learn` on every request that carries a session: the zone lookup (a full 1m zone,
/// 4096 sessions, its mutex uncontended) and the value mapped back to a server; and the scan of
/// a SignalR negotiate body, paid once per session.
fn learned(c: &mut Criterion) {
    let key = StickyKey::for_group("hub");
    let identities: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:5000")).collect();
    let names: Vec<&str> = identities.iter().map(String::as_str).collect();
    let table = StickyTable::new(&key, &names);
    let zone = SessionZone::new("hub", 1 << 20, Duration::from_secs(600));
    let now = clock::now_ms();
    for i in 0..4096 {
        zone.learn(format!("{i:022}").as_bytes(), table.value(i % 3), now);
    }
    let known = format!("{:022}", 4000);
    let mut group = c.benchmark_group("learned");
    group.bench_function("lookup_and_find", |b| {
        b.iter(|| zone.lookup_with(black_box(known.as_bytes()), now, |v| table.find(v)))
    });
    group.bench_function("lookup_unknown", |b| {
        b.iter(|| {
            zone.lookup_with(black_box(b"not-a-session-key-at-all"), now, |v| {
                table.find(v)
            })
        })
    });
    let negotiate = br#"{"negotiateVersion":1,"connectionId":"AbCdEfGhIjKlMnOpQrStUv","connectionToken":"t0KeN-Xyz_123abcDEF456","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;
    group.bench_function("scan_negotiate", |b| {
        b.iter(|| HandshakeScan::new(Handshake::SignalrNegotiate).feed(black_box(negotiate)))
    });
    group.finish();
}

criterion_group!(benches, sticky, learned);
criterion_main!(benches);
