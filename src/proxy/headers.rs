//! Header rewriting in both directions: hop-by-hop headers never cross the proxy blindly,
//! `proxy_set_header` applies in config order (an empty result removes the header, as nginx),
//! `Host` defaults to `$proxy_host`, and an upgrade request is forwarded as an upgrade.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::header_list::HeaderList;

pub use crate::snapshot::reply_headers::Rewritable;
use crate::snapshot::{AddHeader, HeaderPlan, HeaderSource};
use crate::vars::{RequestInfo, Vars};

/// Headers that never cross the proxy as they are: first the hop-by-hop ones (RFC 9110 §7.6.1
/// plus the de-facto `Keep-Alive` and `Proxy-Connection`), then the ones nginx hides from a
/// proxied response unless `proxy_pass_header` names them (in the order of
/// [`HIDDEN_BY_DEFAULT`](crate::snapshot::reply_headers::HIDDEN_BY_DEFAULT): `Date` and `Server` are tether's own, `X-Pad` and the `X-Accel-*`
/// instructions an upstream gives its proxy). Indexes into this list are bits of a mask. A
/// `static`, not a `const`: a const array would be built and dropped again at every use.
static STRIPPED: [HeaderName; 15] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::DATE,
    header::SERVER,
    HeaderName::from_static("x-pad"),
    HeaderName::from_static("x-accel-expires"),
    HeaderName::from_static("x-accel-redirect"),
    HeaderName::from_static("x-accel-limit-rate"),
    HeaderName::from_static("x-accel-buffering"),
    HeaderName::from_static("x-accel-charset"),
];

/// How many of [`STRIPPED`] are hop-by-hop (stripped both ways); the rest only from responses.
const HOP_BY_HOP: usize = 7;

/// The hidden-by-default ones: responses only.
const HIDDEN: u16 = ((1 << 15) - 1) & !((1 << HOP_BY_HOP) - 1);

/// `Upgrade`'s bit: an upstream's `Upgrade` reaches the client on any response (a 426 names
/// the protocol to upgrade to), except a 101 turned into an HTTP/2 tunnel.
const UPGRADE_BIT: u16 = 1 << 6;

/// `name`'s index in [`STRIPPED`].
fn stripped_index(name: &HeaderName) -> Option<usize> {
    stripped_index_of(name.as_str().as_bytes())
}

/// The index in [`STRIPPED`] of a name as a message spelled it (any case). A switch on the
/// length first: most names are ruled out by it without a compare, where a `HeaderMap`
/// lookup would hash.
#[inline]
fn stripped_index_of(name: &[u8]) -> Option<usize> {
    // The lengths below as bits: one test rules out most names (`Content-Type`,
    // `Content-Length`, `Cache-Control`, `Set-Cookie`, ...) before the switch.
    const LENGTHS: u32 = 1 << 2
        | 1 << 4
        | 1 << 5
        | 1 << 6
        | 1 << 7
        | 1 << 10
        | 1 << 15
        | 1 << 16
        | 1 << 17
        | 1 << 18;
    if name.len() >= 32 || LENGTHS & (1 << name.len()) == 0 {
        return None;
    }
    let candidates: &[usize] = match name.len() {
        2 => &[3],
        4 => &[7],
        5 => &[9],
        6 => &[8],
        7 => &[4, 6],
        10 => &[0, 1],
        15 => &[10, 14],
        16 => &[2, 11],
        17 => &[5, 13],
        18 => &[12],
        _ => return None,
    };
    candidates
        .iter()
        .copied()
        .find(|&index| is_named(name, STRIPPED_TEXT[index]))
}

/// Whether the header name `name` (a token, as the parsers let through) is `lower` (lowercase
/// letters, digits and `-`) in any case. Setting bit 5 lowers a letter and leaves the digits
/// and `-` as they are; no other token byte lands on one of those by it. Every byte is looked
/// at, with no early exit, so the compare runs a word at a time: header names are compared
/// per line of every head, where a byte-wise compare was a tenth of a response's parse.
#[inline]
pub fn is_named(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .fold(0, |differ, (byte, want)| differ | ((byte | 0x20) ^ want))
            == 0
}

/// [`STRIPPED`] as text: a `HeaderName`'s text is looked up in a table for standard names.
const STRIPPED_TEXT: [&[u8]; STRIPPED.len()] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"date",
    b"server",
    b"x-pad",
    b"x-accel-expires",
    b"x-accel-redirect",
    b"x-accel-limit-rate",
    b"x-accel-buffering",
    b"x-accel-charset",
];

/// Which of the stripped headers a response head may leave out of its header map as it is
/// parsed (bits of a mask, as [`rewrite_response`] takes them): every one the client is not to see
/// — `passed` (bits of `proxy_pass_header`) keeps its own — except `Upgrade`, which a `101`
/// needs. Taking them out here costs a compare per line; putting them in and removing them
/// again cost a hash, an insert and a removal each (nginx's upstream sends `Server`, `Date`
/// and `Connection` with every answer). Nothing may be left out when something reads the
/// upstream's own head (`$upstream_http_*` in a log line, `sticky learn` from a header).
pub fn left_out_of_responses(passed: u8) -> u16 {
    let all = ((1 << HOP_BY_HOP) - 1) | HIDDEN;
    all & !(u16::from(passed) << HOP_BY_HOP) & !UPGRADE_BIT
}

/// Whether a response header line named `name` (as spelled) is one `left_out` leaves out.
/// A `Connection` line that lists other headers must stay (its caller clears bit 0 for it),
/// so the headers it names are removed with the others in [`rewrite_response`].
#[inline]
pub fn is_left_out(name: &[u8], left_out: u16) -> bool {
    stripped_index_of(name).is_some_and(|index| left_out & (1 << index) != 0)
}

/// The `Upgrade` token of an HTTP/1.1 upgrade request (`Connection: upgrade` plus `Upgrade`).
pub fn requested_upgrade(version: Version, headers: &HeaderList) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    connection_has(headers, "upgrade").then(|| upgrade.clone())
}

/// True when a `Connection` header lists `token`.
pub fn connection_has(headers: &HeaderList, token: &str) -> bool {
    connection_tokens(headers.get_all(header::CONNECTION).iter())
        .any(|listed| listed.eq_ignore_ascii_case(token))
}

/// The tokens `Connection` values list, trimmed (a value that is not text lists none).
fn connection_tokens<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = &'a str> {
    values
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

/// Values rendered from the request before its headers are rewritten (templates read the
/// client's original headers, e.g. `$http_upgrade`, `$proxy_add_x_forwarded_for`).
/// Fixed values need no rendering, so a plan without templates allocates nothing here.
pub struct Rendered {
    /// One entry per `HeaderSource::Template` of the plan, in plan order.
    templates: Vec<Option<HeaderValue>>,
}

/// Renders every `proxy_set_header` template of `plan` against the request as received.
pub fn render_request_headers(
    plan: &HeaderPlan,
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Rendered {
    let templates = plan
        .set
        .iter()
        .filter(|h| matches!(h.value, HeaderSource::Template(_)))
        .map(|h| render(&h.value, vars, req, scratch))
        .collect();
    Rendered { templates }
}

/// One `add_header`, rendered for a response.
pub struct AddedHeader {
    /// Header name.
    pub name: HeaderName,
    /// Its value, rendered against the request.
    pub value: HeaderValue,
    /// `always`: added whatever the status, not only to 2xx/3xx.
    pub always: bool,
}

/// Renders `add_header` values for the response (evaluated against the request, as nginx).
pub fn render_response_headers(
    adds: &[AddHeader],
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Vec<AddedHeader> {
    adds.iter()
        .filter_map(|add| {
            Some(AddedHeader {
                name: add.name.clone(),
                value: render(&add.value, vars, req, scratch)?,
                always: add.always,
            })
        })
        .collect()
}

fn render(
    source: &HeaderSource,
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Option<HeaderValue> {
    match source {
        HeaderSource::Fixed(value) => Some(value.clone()),
        HeaderSource::Remove => None,
        HeaderSource::Template(template) => {
            scratch.clear();
            template.render(vars, req, scratch);
            // An empty value removes the header (nginx); an unrepresentable one is dropped too
            // rather than failing the request.
            (!scratch.is_empty())
                .then(|| HeaderValue::from_str(scratch).ok())
                .flatten()
        }
    }
}

/// Rewrites the client's request headers into the upstream request's. True when the result
/// has a `Connection` header (the client's never stays: only `proxy_set_header` or an upgrade
/// writes one).
pub fn rewrite_request(
    headers: &mut HeaderList,
    plan: &HeaderPlan,
    rendered: Rendered,
    proxy_host: &HeaderValue,
    upgrade: Option<HeaderValue>,
) -> bool {
    let mut connection = false;
    // `Expect` is the client's question to tether, which answers `100 Continue` itself;
    // forwarded, it would draw a second interim answer or an upstream's 417. nginx clears it
    // too (its default `proxy_set_header Expect ""`), and a `proxy_set_header` below may
    // still put it back. Stripped with the hop-by-hop ones: found in the same pass.
    // `Host` is `$proxy_host` unless a `proxy_set_header Host` below says otherwise.
    let host = (!plan.sets_host).then_some(proxy_host);
    strip_request(headers, host);
    let mut templates = rendered.templates.into_iter();
    for set in &plan.set {
        let value = match &set.value {
            HeaderSource::Fixed(value) => Some(value.clone()),
            HeaderSource::Remove => None,
            HeaderSource::Template(_) => templates.next().flatten(),
        };
        let is_connection = set.name == header::CONNECTION;
        match value {
            Some(value) => {
                headers.insert(set.name.clone(), value);
                connection |= is_connection;
            }
            None => {
                headers.remove(&set.name);
                connection &= !is_connection;
            }
        }
    }
    if let Some(upgrade) = upgrade {
        // Forward an upgrade as an upgrade even without the `map $http_upgrade` idiom: the
        // client asked for it, and dropping it would break every WebSocket.
        if !headers.contains_key(header::UPGRADE) {
            headers.insert(header::UPGRADE, upgrade);
        }
        if !connection_has(headers, "upgrade") {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        connection = true;
    }
    connection
}

/// How a response's `Upgrade` is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeRole {
    /// Not a tunnel: an `Upgrade` the upstream sent (a 426's) goes on as sent.
    None,
    /// A 101 joining an HTTP/1.1 client: `Upgrade` kept, `Connection: upgrade` set.
    Http1Tunnel,
    /// A 101 answered to an HTTP/2 client as `200`: no `Upgrade` there.
    Http2Tunnel,
}

/// Cleans an upstream response's headers for the client: hop-by-hop headers out, and nginx's
/// default hidden ones unless `passed` (bits of [`HIDDEN_BY_DEFAULT`](crate::snapshot::reply_headers::HIDDEN_BY_DEFAULT)) lets them through.
/// Returns which of `Location`, `Refresh`, `Set-Cookie` it has (bits of [`Rewritable`]),
/// seen in the same pass, so rules for them look only when there is something to rewrite.
pub fn rewrite_response(headers: &mut HeaderMap, upgrade: UpgradeRole, passed: u8) -> u8 {
    let mut candidates = ((1 << HOP_BY_HOP) - 1) | HIDDEN;
    candidates &= !(u16::from(passed) << HOP_BY_HOP);
    if upgrade != UpgradeRole::Http2Tunnel {
        candidates &= !UPGRADE_BIT;
    }
    let rewritable = strip(headers, candidates);
    if upgrade == UpgradeRole::Http1Tunnel && headers.contains_key(header::UPGRADE) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    rewritable
}

/// Removes the headers of [`STRIPPED`] whose bits are set in `candidates` and, when
/// `Connection` is among them, every header it names. One pass over the few headers present
/// finds what to remove, so the common message pays one removal per header it actually has,
/// not a hash lookup per name it might.
/// Returns the [`Rewritable`] bits of the headers left.
fn strip(headers: &mut HeaderMap, candidates: u16) -> u8 {
    let mut present = 0u16;
    let mut rewritable = 0u8;
    for name in headers.keys() {
        match stripped_index(name) {
            Some(index) => present |= (1 << index) & candidates,
            None => rewritable |= Rewritable::of(name),
        }
    }
    if present & 1 != 0 {
        for name in connection_listed(headers.get_all(header::CONNECTION)) {
            headers.remove(name);
        }
    }
    // Only the bits set: most messages have none of these headers left.
    while present != 0 {
        let index = present.trailing_zeros() as usize;
        present &= present - 1;
        headers.remove(&STRIPPED[index]);
    }
    rewritable
}

/// The request's side of [`strip`], in one pass over the lines: the hop-by-hop headers,
/// `Expect` and what `Connection` lists go, and `Host` becomes `host` where the client's was
/// (at the end if it sent none; left alone when `host` is None).
fn strip_request(headers: &mut HeaderList, host: Option<&HeaderValue>) {
    let listed = match headers.contains_key(header::CONNECTION) {
        true => connection_listed(headers.get_all(header::CONNECTION).iter()),
        false => Vec::new(),
    };
    let mut host_seen = false;
    headers.retain(|name, value| {
        if *name == header::HOST
            && let Some(host) = host
        {
            // The client's one `Host` (a second is refused before this) takes the new value.
            *value = host.clone();
            host_seen = true;
            return true;
        }
        !is_stripped_from_requests(name) && !listed.contains(name)
    });
    if let Some(host) = host
        && !host_seen
    {
        headers.append(header::HOST, host.clone());
    }
}

/// What never goes upstream of a client's headers: the hop-by-hop ones of [`STRIPPED`] and
/// `Expect`. Compared as names (most of a request's are standard ones, compared by a tag),
/// not by their text as a response's are.
fn is_stripped_from_requests(name: &HeaderName) -> bool {
    STRIPPED[..HOP_BY_HOP]
        .iter()
        .any(|stripped| stripped == name)
        || name == header::EXPECT
}

/// The headers `Connection` values list (`Connection: x-debug` makes `X-Debug` a hop-by-hop
/// header). The usual tokens name nothing to remove and are skipped unparsed.
fn connection_listed<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<HeaderName> {
    connection_tokens(values)
        .filter(|token| {
            !["keep-alive", "close", "upgrade", ""]
                .iter()
                .any(|usual| token.eq_ignore_ascii_case(usual))
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect()
}

/// Lets go of a header map. One that never had room (`HeaderMap::new()`, the map of an answer
/// whose lines are relayed) owns no memory — an empty index, two empty vectors — yet its drop
/// glue still walks all three (~60 instructions, twice per proxied request): it is forgotten
/// instead. A map that ever had room is dropped as usual.
pub fn discard(map: HeaderMap) {
    if map.capacity() == 0 {
        std::mem::forget(map);
    }
}

/// Idempotent methods may be retried on another server after the request was sent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_compare_by_bit_five_is_exact_for_every_token_byte() {
        // RFC 9110 tchar: the bytes a header name may hold.
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let wanted = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        for byte in (0..=255u8).filter(|&b| tchar(b)) {
            for &want in wanted {
                let same = byte.to_ascii_lowercase() == want;
                assert_eq!(is_named(&[byte], &[want]), same, "{byte:#x} vs {want}");
            }
        }
        assert!(is_named(b"Content-Length", b"content-length"));
        assert!(!is_named(b"Content_Length", b"content-length"));
        assert!(!is_named(b"Content-Lengt", b"content-length"));
    }

    fn headers<Lines: FromIterator<(HeaderName, HeaderValue)>>(pairs: &[(&str, &str)]) -> Lines {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn no_plan() -> HeaderPlan {
        HeaderPlan {
            set: vec![],
            sets_host: false,
        }
    }

    #[test]
    fn the_stripped_list_and_its_index_agree() {
        // Each index is a bit of a u16 mask, and the hop-by-hop ones come first.
        assert!(STRIPPED.len() <= 16);
        let hidden = &crate::snapshot::reply_headers::HIDDEN_BY_DEFAULT;
        for (index, name) in hidden.iter().enumerate() {
            assert_eq!(STRIPPED[HOP_BY_HOP + index].as_str(), *name);
        }
        assert!(HOP_BY_HOP <= STRIPPED.len());
        assert_eq!(HIDDEN.count_ones() as usize, hidden.len());
        assert_eq!(HIDDEN & ((1 << HOP_BY_HOP) - 1), 0);
        for (index, name) in STRIPPED.iter().enumerate() {
            assert_eq!(stripped_index(name), Some(index), "{name}");
            assert_eq!(STRIPPED_TEXT[index], name.as_str().as_bytes());
        }
        // However a message spells them.
        assert_eq!(stripped_index_of(b"Transfer-Encoding"), Some(5));
        assert_eq!(stripped_index_of(b"X-ACCEL-CHARSET"), Some(14));
        // Names near the listed ones are not taken for them.
        for name in [
            "host",
            "x-accel-foo",
            "upgrade-insecure-requests",
            "trailers",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(stripped_index(&name), None, "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_stripped() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("Expect", "100-continue"),
            ("accept", "*/*"),
        ]);
        let plan = no_plan();
        rewrite_request(
            &mut h,
            &plan,
            Rendered { templates: vec![] },
            &HeaderValue::from_static("backend"),
            None,
        );
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["host"], "backend");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn responses_also_lose_x_accel_headers_and_what_any_connection_header_lists() {
        let mut h = headers(&[
            ("connection", "keep-alive"),
            ("connection", "X-Trace, close"),
            ("x-trace", "1"),
            ("x-accel-buffering", "no"),
            ("x-accel-redirect", "/internal"),
            ("proxy-connection", "keep-alive"),
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        rewrite_response(&mut h, UpgradeRole::None, 0);
        let left: Vec<&str> = h.keys().map(|name| name.as_str()).collect();
        assert_eq!(left, ["content-type", "set-cookie"], "{h:?}");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn requests_keep_x_accel_headers_which_only_upstreams_give() {
        let mut h = headers(&[("x-accel-buffering", "no"), ("te", "trailers")]);
        rewrite_request(
            &mut h,
            &no_plan(),
            Rendered { templates: vec![] },
            &HeaderValue::from_static("backend"),
            None,
        );
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-accel-buffering"], "no");
    }

    #[test]
    fn an_upgrade_is_forwarded_without_the_map_idiom() {
        let client = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let upgrade = requested_upgrade(Version::HTTP_11, &client);
        assert_eq!(upgrade.as_ref().unwrap(), "websocket");
        assert!(requested_upgrade(Version::HTTP_10, &client).is_none());
        let mut h = client.clone();
        let plan = no_plan();
        rewrite_request(
            &mut h,
            &plan,
            Rendered { templates: vec![] },
            &HeaderValue::from_static("b"),
            upgrade,
        );
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn a_response_head_leaves_out_what_the_client_would_not_see() {
        let left_out = left_out_of_responses(0);
        assert!(is_left_out(b"Server", left_out));
        assert!(is_left_out(b"connection", left_out));
        assert!(is_left_out(b"X-Accel-Buffering", left_out));
        // A 101 needs its `Upgrade`; a 426 passes it on.
        assert!(!is_left_out(b"Upgrade", left_out));
        assert!(!is_left_out(b"Content-Type", left_out));
        // `proxy_pass_header Server;` (its bit among the hidden-by-default ones).
        let passed = left_out_of_responses(0b0000_0010);
        assert!(!is_left_out(b"server", passed));
        assert!(is_left_out(b"date", passed));
        assert!(!is_left_out(b"date", 0));
    }

    #[test]
    fn a_101_keeps_its_upgrade() {
        let mut h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "x"),
        ]);
        rewrite_response(&mut h, UpgradeRole::Http1Tunnel, 0);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        // An HTTP/2 client's tunnel is answered 200, which carries no `Upgrade`.
        let mut h = headers(&[("upgrade", "websocket"), ("connection", "upgrade")]);
        rewrite_response(&mut h, UpgradeRole::Http2Tunnel, 0);
        assert!(h.is_empty());
    }

    #[test]
    fn a_426_keeps_its_upgrade_as_nginx_passes_it() {
        let mut h = headers(&[("upgrade", "TLS/1.2, HTTP/1.1"), ("connection", "upgrade")]);
        rewrite_response(&mut h, UpgradeRole::None, 0);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["upgrade"], "TLS/1.2, HTTP/1.1");
    }

    #[test]
    fn date_server_and_x_accel_are_hidden_unless_passed() {
        let all = [
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("server", "kestrel"),
            ("x-pad", "avoid browser bug"),
            ("x-accel-buffering", "no"),
            ("x-kept", "1"),
        ];
        let mut h = headers(&all);
        rewrite_response(&mut h, UpgradeRole::None, 0);
        assert_eq!(h.len(), 1, "{h:?}");
        // `proxy_pass_header Server; proxy_pass_header X-Accel-Buffering;`
        let mut h = headers(&all);
        rewrite_response(&mut h, UpgradeRole::None, 0b0100_0010);
        let mut left: Vec<&str> = h.keys().map(|name| name.as_str()).collect();
        left.sort();
        assert_eq!(left, ["server", "x-accel-buffering", "x-kept"]);
    }
}
