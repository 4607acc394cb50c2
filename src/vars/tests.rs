//! Built-in variables and template syntax against realistic requests. The request they read
//! (as the proxy hands it to `vars`) and `render` are shared with `map_tests`.

use super::*;
use crate::header_list::HeaderList;

/// The owned parts of a request that a [`RequestInfo`] borrows.
pub(super) struct Request {
    method: Method,
    uri: Uri,
    /// The normalised path, as the proxy makes it for `$uri`.
    path: Vec<u8>,
    /// The normalised host, as the proxy makes it for `$host`.
    host: String,
    version: Version,
    pub(super) headers: HeaderList,
    client: SocketAddr,
}

impl Request {
    pub(super) fn new(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut map = HeaderList::new();
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
            peer: self.client,
            proxy_protocol: None,
            local: "10.1.1.1:8443".parse().unwrap(),
            scheme: "https",
            tls: None,
            server_name: "chat.example.com",
            proxy_host: "signalr_farm",
            facts: &crate::vars::RequestFacts::NONE,
            late: None,
            locals: None,
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

pub(super) fn span(line: u32) -> Span {
    Span {
        line,
        ..Span::builtin()
    }
}

pub(super) fn render(vars: &Vars, text: &str, req: &Request) -> String {
    let template = vars.compile(text, &span(1)).unwrap();
    let mut out = String::new();
    template.render(vars, &req.info(), &mut out);
    out
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
        ("$proxy_port", "80"),
        ("$request_id", "00000000000000000000000000000000"),
        ("$connection", "0"),
        ("$pipe", "."),
        ("$remote_user", ""),
        // Known only with a response: empty before it, as in nginx.
        ("$status", ""),
        ("$upstream_addr", ""),
        ("$sent_http_x_a", ""),
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
fn a_template_read_in_place_reads_what_it_renders() {
    let vars = no_maps();
    let req = negotiate();
    // Borrowed: one cookie, argument or single-valued header (absent ones read as empty).
    for text in [
        "$cookie_theme",
        "$cookie_SID",
        "$cookie_missing",
        "$arg_id",
        "$arg_TOKEN",
        "$arg_flag",
        "$arg_missing",
        "$http_x_request_id",
        "$http_missing",
    ] {
        let template = vars.compile(text, &span(1)).unwrap();
        let read = template.read_in_place(&req.info());
        assert_eq!(read, Some(render(&vars, text, &req).as_str()), "{text}");
    }
    // Rendered: joined header values, other variables, text around a variable.
    for text in [
        "$http_accept",
        "$host",
        "s-$cookie_theme",
        "$cookie_theme$arg_id",
    ] {
        let template = vars.compile(text, &span(1)).unwrap();
        assert_eq!(template.read_in_place(&req.info()), None, "{text}");
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
    // `$1` outside a map value is the last regex match of the request (empty without one).
    let capture = vars.compile("/$1", &span(8)).unwrap();
    let mut text = String::new();
    capture.render(&vars, &empty_request(), &mut text);
    assert_eq!(text, "/");
    let unclosed = vars.compile("${host", &span(9)).unwrap_err();
    assert!(matches!(
        unclosed.kind,
        ErrorKind::InvalidVariableSyntax { .. }
    ));
    // Prefix families need a name after the prefix.
    assert!(vars.compile("$http_", &span(1)).is_err());
}

#[test]
fn compiled_vars_can_be_shared_between_worker_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Vars>();
    shareable::<Template>();
}
