//! Server selection by name and location matching, case by case against nginx's precedence
//! rules; bad regexes reported with their spans.

use super::*;
use crate::config::{Handler, Location, LocationMatch, ProxySettings};

fn exact(name: &str) -> ServerName {
    ServerName::Exact(name.to_string())
}

fn star_prefix(suffix: &str) -> ServerName {
    ServerName::WildcardPrefix {
        suffix: suffix.to_string(),
        include_bare: false,
    }
}

fn dot_prefix(suffix: &str) -> ServerName {
    ServerName::WildcardPrefix {
        suffix: suffix.to_string(),
        include_bare: true,
    }
}

fn star_suffix(prefix: &str) -> ServerName {
    ServerName::WildcardSuffix(prefix.to_string())
}

fn regex(pattern: &str) -> ServerName {
    ServerName::Regex(pattern.to_string())
}

#[test]
fn server_names_follow_nginx_precedence() {
    let servers: Vec<(Vec<ServerName>, bool)> = vec![
        /* 0 */ (vec![exact("first.test")], false),
        /* 1 */ (vec![exact("www.example.com"), exact("")], false),
        /* 2 */ (vec![star_prefix(".example.com")], false),
        /* 3 */ (vec![star_prefix(".api.example.com")], false),
        /* 4 */ (vec![dot_prefix(".example.org")], false),
        /* 5 */ (vec![star_suffix("www.example.")], false),
        /* 6 */ (vec![star_suffix("www.example.co.")], false),
        /* 7 */ (vec![regex(r"^a\."), regex(r"^(.+)\.example\.com$")], true),
        /* 8 */ (vec![regex(r"\.example\.net$"), star_suffix("mail.")], true),
        /* 9 */ (vec![regex(r"^SHOUT\.test$")], false),
    ];
    let borrowed: Vec<(&[ServerName], bool)> =
        servers.iter().map(|(n, d)| (n.as_slice(), *d)).collect();
    let hosts = VirtualHosts::build(&borrowed).unwrap();
    let table = [
        // Exact beats every wildcard and regex.
        ("www.example.com", 1),
        ("", 1),
        // `*.` wildcards, longest first, at any depth; they do not match the bare domain.
        // They also beat regexes (both of server 7's match "a.example.com").
        ("a.example.com", 2),
        ("a.b.example.com", 2),
        ("v1.api.example.com", 3),
        ("x.v1.api.example.com", 3),
        ("api.example.com", 2),
        // `.example.org` matches the bare domain and subdomains.
        ("example.org", 4),
        ("deep.sub.example.org", 4),
        // Prefix wildcards beat suffix wildcards; suffix wildcards prefer the longest.
        ("www.example.org", 4),
        ("www.example.net", 5),
        ("www.example.co.uk", 6),
        // `www.example.*` needs something after the dot.
        ("www.example", 7),
        ("mail.example.net", 8),
        // Regexes in file order: server 7's `^a\.` before server 8's `\.example\.net$`.
        ("a.example.net", 7),
        ("b.example.net", 8),
        // Uppercase in a pattern makes it caseless, as nginx.
        ("shout.test", 9),
        // Nothing matched: the first default_server, not the first server.
        ("unknown.test", 7),
        ("example.com", 7),
    ];
    for (host, want) in table {
        assert_eq!(hosts.find(host), want, "host {host:?}");
    }
}

#[test]
fn default_server_is_the_first_server_without_default_server() {
    let a = [exact("a.test")];
    let b = [exact("b.test")];
    let hosts = VirtualHosts::build(&[(&a, false), (&b, false)]).unwrap();
    assert_eq!(hosts.find("c.test"), 0);
    assert_eq!(hosts.find("b.test"), 1);
    // A name claimed twice belongs to the first server.
    let hosts = VirtualHosts::build(&[(&b, false), (&b, false)]).unwrap();
    assert_eq!(hosts.find("b.test"), 0);
}

#[test]
fn bad_server_name_regexes_are_all_reported() {
    let names = [regex("(unclosed"), regex("[z-a]")];
    let errors = VirtualHosts::build(&[(&names, false)]).unwrap_err();
    assert_eq!(errors.0.len(), 2);
    assert!(matches!(
        &errors.0[0].kind,
        ErrorKind::InvalidRegex { pattern, .. } if pattern == "(unclosed"
    ));
}

fn location(matcher: LocationMatch, line: u32) -> Location {
    Location {
        rewrite: Vec::new(),
        matcher,
        handler: Handler::NotFound,
        proxy: ProxySettings::default(),
        internal: false,
        nested: Vec::new(),
        span: Span {
            line,
            ..Span::builtin()
        },
    }
}

fn prefix(path: &str, no_regex: bool) -> LocationMatch {
    LocationMatch::Prefix {
        path: path.to_string(),
        no_regex,
    }
}

fn re(pattern: &str, case_insensitive: bool) -> LocationMatch {
    LocationMatch::Regex {
        pattern: pattern.to_string(),
        case_insensitive,
    }
}

#[test]
fn locations_follow_nginx_precedence() {
    let locations: Vec<Location> = [
        /* 0 */ prefix("/", false),
        /* 1 */ LocationMatch::Exact("/".to_string()),
        /* 2 */ prefix("/static/", true),
        /* 3 */ prefix("/static/js/", false),
        /* 4 */ re(r"\.(png|jpg)$", true),
        /* 5 */ re(r"\.js$", false),
        /* 6 */ prefix("/api/", false),
        /* 7 */ re(r"^/api/v2/", false),
        /* 8 */ re(r"^/api/", false),
        /* 9 */ LocationMatch::Exact("/api/v2/health".to_string()),
        /* 10 */ prefix("/api/", true),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, m)| location(m, i as u32 + 1))
    .collect();
    let table = Locations::build(&locations).unwrap();
    let cases = [
        // `=` wins at once, even over a matching regex.
        ("/", Some(1)),
        ("/api/v2/health", Some(9)),
        // No regex matches: the longest prefix.
        ("/index.html", Some(0)),
        // `^~` as the longest prefix stops the regex search.
        ("/static/logo.png", Some(2)),
        // A longer plain prefix under a `^~` one: regexes are searched again.
        ("/static/js/app.js", Some(5)),
        ("/static/js/app.css", Some(3)),
        // Regexes beat a plain prefix; `~*` ignores case, `~` does not.
        ("/img/A.PNG", Some(4)),
        ("/x/APP.JS", Some(0)),
        // Regexes in file order: the first match wins, not the most specific.
        ("/photos/api/v2/a.jpg", Some(4)),
        ("/api/v2/users", Some(7)),
        ("/api/v1/users", Some(8)),
        // A duplicate prefix keeps the first (`/api/` without `^~`), so regexes still run.
        ("/api/", Some(8)),
    ];
    for (path, want) in cases {
        assert_eq!(table.find(path.as_bytes()), want, "path {path:?}");
    }
}

#[test]
fn no_matching_location_is_none() {
    let locations = [
        location(prefix("/api/", false), 1),
        location(LocationMatch::Exact("/x".to_string()), 2),
        location(re("^/y", false), 3),
    ];
    let table = Locations::build(&locations).unwrap();
    assert_eq!(table.find(b"/other"), None);
    assert_eq!(table.find(b"/x/"), None);
    assert_eq!(table.find(b"/api"), None);
    assert_eq!(table.find(b"/yes"), Some(2));
    // Decoded paths need not be UTF-8; byte regexes still match around such bytes.
    assert_eq!(table.find(b"/y\xff"), Some(2));
}

#[test]
fn bad_location_regexes_point_at_their_location() {
    let locations = [
        location(re("(a", false), 4),
        location(prefix("/", false), 5),
        location(re("b)", true), 6),
    ];
    let errors = Locations::build(&locations).unwrap_err();
    let lines: Vec<u32> = errors
        .0
        .iter()
        .map(|e| e.span.as_ref().map_or(0, |s| s.line))
        .collect();
    assert_eq!(lines, [4, 6]);
}

#[test]
fn nested_locations_are_searched_inside_their_parent() {
    let mut api = location(prefix("/api/", false), 1);
    api.nested = vec![
        /* 2 */ location(prefix("/api/admin/", true), 2),
        /* 3 */ location(re(r"\.json$", false), 3),
        /* 4 */ location(LocationMatch::Exact("/api/exact".into()), 4),
    ];
    let mut js = location(re(r"\.js$", false), 5);
    js.nested = vec![/* 6 */ location(prefix("/lib/", false), 6)];
    let locations = [
        /* 0 */ location(prefix("/", false), 0),
        /* 1 */ api,
        /* 5 */ js,
        /* 7 */ location(re(r"\.json$", false), 7),
        /* 8 */ location(LocationMatch::Named("@fallback".into()), 8),
    ];
    let table = Locations::build(&locations).unwrap();
    let cases = [
        ("/", Some(0)),
        ("/api/x", Some(1)),
        // The parent's nested regex before the server's.
        ("/api/x.json", Some(3)),
        ("/x.json", Some(7)),
        ("/api/exact", Some(4)),
        // A nested `^~` stops only its own level's regexes: the server's still run (nginx).
        ("/api/admin/u", Some(2)),
        ("/api/admin/u.js", Some(5)),
        // A regex location's nested prefix.
        ("/lib/a.js", Some(6)),
        ("/x/a.js", Some(5)),
        // Named locations are never matched by path.
        ("@fallback", None),
    ];
    for (path, want) in cases {
        assert_eq!(table.find(path.as_bytes()), want, "path {path:?}");
    }
    assert_eq!(table.named("@fallback"), Some(8));
    assert_eq!(table.named("@other"), None);
}
