//! Variables against realistic requests, and nginx's `map` rules.

use super::*;
use crate::config::{MapEntry, MapPattern};

/// The owned parts of a request that a [`RequestInfo`] borrows.
struct Request {
    method: Method,
    uri: Uri,
    /// The normalised path, as the proxy makes it for `$uri`.
    path: Vec<u8>,
    /// The normalised host, as the proxy makes it for `$host`.
    host: String,
    version: Version,
    headers: HeaderMap,
    client: SocketAddr,
}

impl Request {
    fn new(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let uri: Uri = uri.parse().unwrap();
        // Where the proxy takes the host from: `Host`, else the authority (HTTP/2).
        let raw_host = map
            .get("host")
            .map(|value| value.as_bytes())
            .or_else(|| uri.authority().map(|a| a.host().as_bytes()));
        let host = raw_host
            .map(|raw| {
                crate::route::host::normalise(raw)
                    .unwrap()
                    .as_str()
                    .to_string()
            })
            .unwrap_or_default();
        Request {
            host,
            method: Method::GET,
            path: crate::route::path::normalise(uri.path())
                .unwrap()
                .into_owned(),
            uri,
            version,
            headers: map,
            client: "192.0.2.7:51234".parse().unwrap(),
        }
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            uri: &self.uri,
            path: &self.path,
            host: &self.host,
            version: self.version,
            headers: &self.headers,
            client: self.client,
            local: "10.1.1.1:8443".parse().unwrap(),
            scheme: "https",
            server_name: "chat.example.com",
            proxy_host: "signalr_farm",
        }
    }
}

/// A SignalR negotiate request as a browser behind another proxy sends it.
fn negotiate() -> Request {
    Request::new(
        Version::HTTP_11,
        "/chat/negotiate?negotiateVersion=1&id=abc%20d&Token=xyz&empty=&flag",
        &[
            ("host", "Chat.Example.COM:8443"),
            ("cookie", ".AspNetCore.Session=s1; sid=\"q\"; Theme=light"),
            ("cookie", "theme=dark"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.2, 10.0.0.1"),
            ("accept", "text/html"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("content-length", "42"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("x-request-id", "r-1"),
        ],
    )
}

fn span(line: u32) -> Span {
    Span {
        line,
        ..Span::builtin()
    }
}

fn render(vars: &Vars, text: &str, req: &Request) -> String {
    let template = vars.compile(text, &span(1)).unwrap();
    let mut out = String::new();
    template.render(vars, &req.info(), &mut out);
    out
}

/// `map SOURCE $variable { entries; default DEFAULT; }` written at `line`, entries below it.
fn map(
    line: u32,
    source: &str,
    variable: &str,
    default: &str,
    entries: &[(&str, &str)],
) -> config::Map {
    let entries = entries
        .iter()
        .zip(line + 1..)
        .map(|((pattern, value), line)| {
            let pattern = if let Some(re) = pattern.strip_prefix("~*") {
                MapPattern::Regex {
                    pattern: re.to_string(),
                    case_insensitive: true,
                }
            } else if let Some(re) = pattern.strip_prefix('~') {
                MapPattern::Regex {
                    pattern: re.to_string(),
                    case_insensitive: false,
                }
            } else {
                MapPattern::Exact(pattern.to_string())
            };
            MapEntry {
                pattern,
                value: value.to_string(),
                span: span(line),
            }
        })
        .collect();
    config::Map {
        source: source.to_string(),
        variable: variable.to_string(),
        default: default.to_string(),
        hostnames: false,
        entries,
        span: span(line),
    }
}

fn no_maps() -> Vars {
    Vars::build(&[]).unwrap()
}

#[test]
fn every_variable_reads_a_realistic_request() {
    let vars = no_maps();
    let req = negotiate();
    let query = "negotiateVersion=1&id=abc%20d&Token=xyz&empty=&flag";
    let request_uri = format!("/chat/negotiate?{query}");
    let cases = [
        ("$host", "chat.example.com"),
        ("$http_host", "Chat.Example.COM:8443"),
        ("$remote_addr", "192.0.2.7"),
        ("$remote_port", "51234"),
        ("$server_addr", "10.1.1.1"),
        ("$server_port", "8443"),
        ("$scheme", "https"),
        ("$request_method", "GET"),
        ("$request_uri", &request_uri),
        ("$uri", "/chat/negotiate"),
        ("$args", query),
        ("$query_string", query),
        ("$is_args", "?"),
        // Raw (not decoded), name compared case-insensitively, first occurrence.
        ("$arg_id", "abc%20d"),
        ("$arg_token", "xyz"),
        ("$arg_empty", ""),
        ("$arg_flag", ""),
        ("$arg_missing", ""),
        ("$http_x_request_id", "r-1"),
        ("$HTTP_ACCEPT", "text/html, application/json"),
        ("$http_missing", ""),
        // The first cookie of that name across every Cookie header, raw value.
        ("$cookie_theme", "light"),
        ("$cookie_sid", "\"q\""),
        ("$cookie_missing", ""),
        ("$content_length", "42"),
        ("$content_type", "application/json"),
        ("$server_name", "chat.example.com"),
        ("$server_protocol", "HTTP/1.1"),
        ("$request", &format!("GET {request_uri} HTTP/1.1")),
        ("$proxy_host", "signalr_farm"),
        (
            "$proxy_add_x_forwarded_for",
            "203.0.113.9, 198.51.100.2, 10.0.0.1, 192.0.2.7",
        ),
        ("$http_upgrade", "websocket"),
    ];
    for (text, want) in cases {
        assert_eq!(render(&vars, text, &req), want, "{text}");
    }
}

#[test]
fn uri_is_the_normalised_path_and_request_uri_the_original() {
    let vars = no_maps();
    let req = Request::new(
        Version::HTTP_11,
        "/chat/%61//x/../neg%20otiate/.?x=%41",
        &[],
    );
    let shown = render(&vars, "$uri|$request_uri|$args", &req);
    assert_eq!(
        shown,
        "/chat/a/neg otiate/|/chat/%61//x/../neg%20otiate/.?x=%41|x=%41"
    );
    // A decoded byte that is no UTF-8 shows as U+FFFD.
    let req = Request::new(Version::HTTP_11, "/a%FFb", &[]);
    assert_eq!(render(&vars, "$uri", &req), "/a\u{fffd}b");
}

#[test]
fn host_falls_back_to_the_authority_then_server_name() {
    let vars = no_maps();
    // HTTP/2: absolute-form URI and no Host header.
    let h2 = Request::new(Version::HTTP_2, "https://API.example.com:443/x?", &[]);
    assert_eq!(render(&vars, "$host", &h2), "api.example.com");
    assert_eq!(render(&vars, "$server_protocol", &h2), "HTTP/2.0");
    assert_eq!(render(&vars, "$request", &h2), "GET /x? HTTP/2.0");
    // An empty query is no query for `$is_args`.
    assert_eq!(render(&vars, "[$is_args$args]", &h2), "[]");
    // Neither: the server's name.
    let bare = Request::new(Version::HTTP_10, "/", &[]);
    assert_eq!(render(&vars, "$host", &bare), "chat.example.com");
    assert_eq!(render(&vars, "$server_protocol", &bare), "HTTP/1.0");
    // IPv6 literal keeps its brackets; a trailing dot goes.
    let v6 = Request::new(Version::HTTP_11, "/", &[("host", "[::1]:8080")]);
    assert_eq!(render(&vars, "$host", &v6), "[::1]");
    let dotted = Request::new(Version::HTTP_11, "/", &[("host", "Example.com.")]);
    assert_eq!(render(&vars, "$host", &dotted), "example.com");
}

#[test]
fn forwarded_for_without_a_previous_hop_is_the_client() {
    let vars = no_maps();
    let mut req = Request::new(Version::HTTP_11, "/", &[]);
    // A v4 client on a dual-stack socket reads as plain v4.
    req.client = "[::ffff:192.0.2.8]:1000".parse().unwrap();
    assert_eq!(
        render(&vars, "$proxy_add_x_forwarded_for", &req),
        "192.0.2.8"
    );
    assert_eq!(
        render(&vars, "$remote_addr:$remote_port", &req),
        "192.0.2.8:1000"
    );
}

#[test]
fn template_syntax() {
    let vars = no_maps();
    let req = negotiate();
    let literal = vars.compile("keep-alive", &span(1)).unwrap();
    assert_eq!(literal.literal(), Some("keep-alive"));
    assert!(!literal.has_variables());
    assert_eq!(vars.compile("", &span(1)).unwrap().literal(), Some(""));
    // A `$` not followed by a name is literal.
    let dollars = vars.compile("5$ a$-b $", &span(1)).unwrap();
    assert_eq!(dollars.literal(), Some("5$ a$-b $"));
    let braced = vars.compile("${scheme}s://$$host", &span(1)).unwrap();
    assert!(braced.has_variables());
    assert_eq!(braced.literal(), None);
    let mut out = String::from("prefix:");
    braced.render(&vars, &req.info(), &mut out);
    // Rendering appends.
    assert_eq!(out, "prefix:httpss://$chat.example.com");
}

#[test]
fn compile_errors_carry_the_span() {
    let vars = no_maps();
    let unknown = vars.compile("x $nope y", &span(7)).unwrap_err();
    assert_eq!(unknown.span, Some(span(7)));
    assert_eq!(
        unknown.kind,
        ErrorKind::UnknownVariable {
            name: "nope".to_string()
        }
    );
    // Captures exist only in map values.
    let capture = vars.compile("/$1", &span(8)).unwrap_err();
    assert_eq!(
        capture.kind,
        ErrorKind::UnknownVariable {
            name: "1".to_string()
        }
    );
    let unclosed = vars.compile("${host", &span(9)).unwrap_err();
    assert!(matches!(
        unclosed.kind,
        ErrorKind::InvalidVariableSyntax { .. }
    ));
    // Prefix families need a name after the prefix.
    assert!(vars.compile("$http_", &span(1)).is_err());
}

#[test]
fn signalr_connection_upgrade_idiom() {
    let vars = Vars::build(&[
        map(
            1,
            "$http_connection",
            "connection_upgrade",
            "keep-alive",
            &[("~*Upgrade", "$http_connection")],
        ),
        // nginx's documented WebSocket idiom: the empty exact entry.
        map(
            5,
            "$http_upgrade",
            "upgrade_or_close",
            "upgrade",
            &[("", "close")],
        ),
    ])
    .unwrap();
    let cases = [
        (Some("Upgrade"), "Upgrade"),
        (Some("keep-alive, Upgrade"), "keep-alive, Upgrade"),
        (Some("keep-alive"), "keep-alive"),
        (None, "keep-alive"),
    ];
    for (connection, want) in cases {
        let headers: Vec<(&str, &str)> =
            connection.map(|c| ("connection", c)).into_iter().collect();
        let req = Request::new(Version::HTTP_11, "/hub", &headers);
        assert_eq!(
            render(&vars, "$connection_upgrade", &req),
            want,
            "{connection:?}"
        );
    }
    let ws = Request::new(Version::HTTP_11, "/", &[("upgrade", "websocket")]);
    assert_eq!(render(&vars, "$upgrade_or_close", &ws), "upgrade");
    let plain = Request::new(Version::HTTP_11, "/", &[]);
    assert_eq!(render(&vars, "$upgrade_or_close", &plain), "close");
}

#[test]
fn exact_entries_beat_regexes_and_regexes_go_in_file_order() {
    let vars = Vars::build(&[map(
        1,
        "$uri",
        "kind",
        "none",
        &[
            ("~^/api/", "api"),
            ("~^/api/v2/", "v2"),
            ("/api/exact", "exact"),
            ("~*\\.PNG$", "image"),
        ],
    )])
    .unwrap();
    let cases = [
        ("/api/exact", "exact"),
        ("/api/v2/users", "api"),
        ("/img/a.png", "image"),
        ("/other", "none"),
    ];
    for (uri, want) in cases {
        let req = Request::new(Version::HTTP_11, uri, &[]);
        assert_eq!(render(&vars, "$kind", &req), want, "{uri}");
    }
}

#[test]
fn regex_captures_fill_the_value() {
    let vars = Vars::build(&[
        map(
            1,
            "$uri",
            "route",
            "-",
            &[
                // `$1st` is capture 1 then "st", as nginx; `$3` did not take part.
                ("~^/users/([a-z]+)/(\\d+)(/x)?$", "$2:$1st[$3]:$inner:$1"),
                ("~^/plain/", "$1"),
            ],
        ),
        // A nested map with captures of its own, rendered between the outer ones.
        map(10, "$arg_v", "inner", "", &[("~^(é+)(z)$", "$2$1")]),
    ])
    .unwrap();
    let req = Request::new(Version::HTTP_11, "/users/bob/42?v=%C3%A9z", &[]);
    // The arg is raw, so the inner map sees the percent-encoding and falls to its default.
    assert_eq!(render(&vars, "<$route>", &req), "<42:bobst[]::bob>");
    let vars_utf8 = Vars::build(&[
        map(
            1,
            "$uri",
            "route",
            "-",
            &[("~^/users/([a-z]+)/(\\d+)$", "$2:$inner:$1")],
        ),
        map(10, "$http_x_v", "inner", "", &[("~^(é+)(z)$", "$2$1")]),
    ])
    .unwrap();
    // Header bytes need not be ASCII: build them raw.
    let with_x_v = |value: &str| {
        let mut req = Request::new(Version::HTTP_11, "/users/bob/42", &[]);
        let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap();
        req.headers.insert("x-v", value);
        req
    };
    assert_eq!(render(&vars_utf8, "$route", &with_x_v("ééz")), "42:zéé:bob");
    assert_eq!(render(&vars_utf8, "$route", &with_x_v("éé z")), "42::bob");
    // A capture-less entry's `$1` is empty; so is the source after rendering.
    let plain = Request::new(Version::HTTP_11, "/plain/x", &[]);
    assert_eq!(render(&vars, "[$route]", &plain), "[]");
}

#[test]
fn hostnames_maps_match_wildcards_longest_first() {
    let mut sites = map(
        1,
        "$arg_h",
        "site",
        "other",
        &[
            ("Example.com", "exact"),
            ("*.example.com", "star"),
            ("*.eu.example.com", "eu"),
            (".example.org", "dot"),
            ("www.example.*", "tail"),
            ("~^api\\.", "regex"),
        ],
    );
    sites.hostnames = true;
    let vars = Vars::build(&[sites]).unwrap();
    let cases = [
        ("EXAMPLE.com.", "exact"),
        ("a.b.example.com", "star"),
        ("x.eu.example.com", "eu"),
        ("example.org", "dot"),
        ("x.example.org", "dot"),
        ("www.example.net", "tail"),
        ("api.test", "regex"),
        // Wildcards come before regexes.
        ("api.example.com", "star"),
        ("nothing", "other"),
    ];
    for (host, want) in cases {
        let req = Request::new(Version::HTTP_11, &format!("/?h={host}"), &[]);
        assert_eq!(render(&vars, "$site", &req), want, "{host}");
    }
    // Without `hostnames`, patterns are plain, case-sensitive strings.
    let plain = Vars::build(&[map(
        1,
        "$arg_h",
        "site",
        "other",
        &[("*.example.com", "star")],
    )])
    .unwrap();
    let req = Request::new(Version::HTTP_11, "/?h=a.example.com", &[]);
    assert_eq!(render(&plain, "$site", &req), "other");
    let req = Request::new(Version::HTTP_11, "/?h=*.example.com", &[]);
    assert_eq!(render(&plain, "$site", &req), "star");
}

#[test]
fn maps_nest_and_may_be_used_before_they_are_defined() {
    let vars = Vars::build(&[
        // Uses `$pool` and `$tier`, both defined below.
        map(
            1,
            "$pool",
            "backend",
            "$tier-default",
            &[("blue", "$tier-blue-$pool")],
        ),
        map(5, "$cookie_pool", "pool", "green", &[("b", "blue")]),
        map(9, "$http_x_tier", "tier", "web", &[("~^(api|ws)$", "$1")]),
    ])
    .unwrap();
    let blue = Request::new(
        Version::HTTP_11,
        "/",
        &[("cookie", "pool=b"), ("x-tier", "ws")],
    );
    assert_eq!(render(&vars, "$backend", &blue), "ws-blue-blue");
    let none = Request::new(Version::HTTP_11, "/", &[]);
    assert_eq!(
        render(&vars, "$backend|${pool}", &none),
        "web-default|green"
    );
}

#[test]
fn cycles_between_maps_are_errors_at_the_map() {
    let errors = Vars::build(&[
        map(1, "$b", "a", "", &[]),
        map(3, "$http_x", "b", "", &[("x", "$a")]),
        map(6, "$c", "c", "", &[]),
        map(8, "$a", "d", "", &[]),
    ])
    .unwrap_err();
    let found: Vec<(u32, ErrorKind)> = errors
        .0
        .into_iter()
        .map(|e| (e.span.map_or(0, |s| s.line), e.kind))
        .collect();
    let cycle = |names: &[&str]| ErrorKind::MapCycle {
        cycle: names.iter().map(|n| n.to_string()).collect(),
    };
    assert_eq!(
        found,
        [(1, cycle(&["a", "b", "a"])), (6, cycle(&["c", "c"]))]
    );
}

#[test]
fn every_map_error_is_reported() {
    let errors = Vars::build(&[
        map(1, "$http_x", "host", "", &[]),
        map(
            3,
            "$http_x",
            "m",
            "$nope",
            &[("a", "1"), ("a", "2"), ("~(", "3")],
        ),
        map(8, "$missing", "n", "", &[("x", "$2")]),
    ])
    .unwrap_err();
    let found: Vec<(u32, ErrorKind)> = errors
        .0
        .into_iter()
        .map(|e| (e.span.map_or(0, |s| s.line), e.kind))
        .collect();
    assert_eq!(found.len(), 5, "{found:?}");
    let unknown = |name: &str| ErrorKind::UnknownVariable {
        name: name.to_string(),
    };
    assert_eq!(
        found[0],
        (
            1,
            ErrorKind::DuplicateVariable {
                name: "host".to_string()
            }
        )
    );
    assert_eq!(found[1], (3, unknown("nope")));
    assert_eq!(
        found[2],
        (
            5,
            ErrorKind::DuplicateMapEntry {
                pattern: "a".to_string()
            }
        )
    );
    assert!(matches!(&found[3], (6, ErrorKind::InvalidRegex { pattern, .. }) if pattern == "("));
    // A map's source may not use captures, nor name what does not exist; `$2` in a value may.
    assert_eq!(found[4], (8, unknown("missing")));
}

#[test]
fn compiled_vars_can_be_shared_between_worker_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Vars>();
    shareable::<Template>();
}
