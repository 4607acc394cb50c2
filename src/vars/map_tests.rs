//! nginx's `map` rules: exact entries before regexes, regex captures in values, `hostnames`
//! wildcards, maps nested and used before their definition, and every error in the maps
//! reported at its line.

use super::tests::{Request, render, span};
use super::*;
use crate::config::{MapEntry, MapPattern};

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
        req.headers
            .insert(http::HeaderName::from_static("x-v"), value);
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
