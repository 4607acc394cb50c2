//! Which server and which location answer, by nginx's rules, and where `proxy_pass` sends the
//! request: URI prefix replacement, literal addresses, upstream groups chosen by a `map`, and
//! `return` in its three forms. Locations answer `return 200 "NAME"` to show which one matched.

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, send};

/// GETs `path` with this `Host`; returns (status, body).
async fn get_as(proxy: &Proxy, host: &str, path: &str) -> (u16, String) {
    let mut req = request("GET", path, "");
    req.headers_mut().insert("host", host.parse().unwrap());
    let reply = send(proxy.addr, req).await;
    (reply.status.as_u16(), reply.body)
}

/// Asserts each (path, location name) pair.
async fn assert_locations(proxy: &Proxy, cases: &[(&str, &str)]) {
    for &(path, expected) in cases {
        let (status, body) = get_as(proxy, "localhost", path).await;
        assert_eq!((status, body.as_str()), (200, expected), "{path}");
    }
}

#[tokio::test]
async fn locations_follow_nginx_precedence() {
    let conf = r#"events {} http { server { listen {listen};
        location / { return 200 "root"; }
        location /images/ { return 200 "images"; }
        location /images/thumbs/ { return 200 "thumbs"; }
        location = /logo.png { return 200 "exact-logo"; }
        location /logo.png { return 200 "prefix-logo"; }
        location ^~ /static/ { return 200 "static"; }
        location ~ \.png$ { return 200 "png"; }
        location ~* \.jpg$ { return 200 "jpg"; }
        location ~ ^/files/ { return 200 "files-first-regex"; }
        location ~ ^/files/abc { return 200 "files-second-regex"; }
        location /files/abc/deep/ { return 200 "files-prefix"; }
    } }"#;
    let proxy = Proxy::start(conf, &[]).await;
    assert_locations(
        &proxy,
        &[
            // `=` wins over everything, regexes included.
            ("/logo.png", "exact-logo"),
            // The same prefix without `=` is an ordinary prefix: a regex still beats it.
            ("/logo.png.png", "png"),
            ("/logo.pngx", "prefix-logo"),
            // `^~` stops the regex search.
            ("/static/a.png", "static"),
            ("/static/a.jpg", "static"),
            // A regex beats the longest prefix...
            ("/images/a.png", "png"),
            ("/images/thumbs/a.png", "png"),
            ("/images/b.JPG", "jpg"),
            // ...case-sensitively with `~`.
            ("/images/a.PNG", "images"),
            // Without a regex match, the longest prefix wins, whatever its place in the file.
            ("/images/thumbs/a.gif", "thumbs"),
            ("/images/a.gif", "images"),
            ("/elsewhere", "root"),
            // Regexes are tried in file order: the first that matches wins, not the longest,
            // and not the longer prefix either.
            ("/files/abc/deep/x", "files-first-regex"),
        ],
    )
    .await;
}

#[tokio::test]
async fn server_names_follow_nginx_precedence() {
    let conf = r#"events {} http {
        server { listen {listen}; server_name first.test; return 200 "first"; }
        server { listen {listen}; server_name example.com; return 200 "exact"; }
        server { listen {listen}; server_name *.example.com; return 200 "star-prefix"; }
        server { listen {listen}; server_name www.example.*; return 200 "star-suffix"; }
        server { listen {listen}; server_name ~^api\d+\.test$; return 200 "regex"; }
        server { listen {listen}; server_name ~^[a-z]+\.test$; return 200 "later-regex"; }
        server { listen {listen} default_server; server_name _; return 200 "default"; }
    }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let cases = [
        ("example.com", "exact"),
        ("EXAMPLE.com:8080", "exact"),
        ("a.example.com", "star-prefix"),
        ("deep.a.example.com", "star-prefix"),
        // Both wildcards match: the one starting with `*` wins.
        ("www.example.com", "star-prefix"),
        ("www.example.org", "star-suffix"),
        ("api7.test", "regex"),
        // Regexes in file order; exact names before any regex.
        ("first.test", "first"),
        ("other.test", "later-regex"),
        // Nothing matches: the default_server, not the first server.
        ("unknown.invalid", "default"),
        ("127.0.0.1", "default"),
    ];
    for (host, expected) in cases {
        assert_eq!(
            get_as(&proxy, host, "/").await,
            (200, expected.to_string()),
            "Host: {host}"
        );
    }
}

#[tokio::test]
async fn proxy_pass_with_a_uri_replaces_the_location_prefix() {
    let a = Backend::start("a").await;
    let conf = "events {} http { upstream up { server {a}; } server { listen {listen};
        location /api/ { proxy_pass http://up/v1/; }
        location /keep/ { proxy_pass http://up; }
        location = /exact { proxy_pass http://up/fixed; }
    } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    for (path, upstream_uri) in [
        ("/api/users?x=1", "/v1/users?x=1"),
        ("/api/", "/v1/"),
        ("/keep/users?x=1", "/keep/users?x=1"),
        ("/exact?q=2", "/fixed?q=2"),
    ] {
        let (status, body) = get_as(&proxy, "localhost", path).await;
        assert_eq!((status, body.as_str()), (200, "a"), "{path}");
        assert_eq!(a.last().uri, upstream_uri, "{path}");
    }
}

#[tokio::test]
async fn proxy_pass_to_a_literal_address() {
    let a = Backend::start("a").await;
    let conf =
        "events {} http { server { listen {listen}; location / { proxy_pass http://{a}; } } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    assert_eq!(
        get_as(&proxy, "localhost", "/lit?x=1").await,
        (200, "a".to_string())
    );
    let seen = a.last();
    assert_eq!(seen.uri, "/lit?x=1");
    // $proxy_host is the address as written, port included.
    assert_eq!(seen.header("host"), a.addr.to_string());
}

#[tokio::test]
async fn a_map_chooses_the_upstream_group() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let conf = "events {} http {
        map $http_x_pool $pool { default up1; beta up2; }
        upstream up1 { server {a}; }
        upstream up2 { server {b}; }
        server { listen {listen}; location / { proxy_pass http://$pool; } }
    }";
    let proxy = Proxy::start(conf, &[("a", a.addr), ("b", b.addr)]).await;
    for (pool, expected) in [
        (None, "a"),
        (Some("beta"), "b"),
        (Some("gamma"), "a"),
        (Some("beta"), "b"),
    ] {
        let mut req = request("GET", "/pool?x=1", "");
        if let Some(pool) = pool {
            req.headers_mut().insert("x-pool", pool.parse().unwrap());
        }
        let reply = send(proxy.addr, req).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, expected),
            "X-Pool: {pool:?}"
        );
    }
    assert_eq!((a.hits(), b.hits()), (2, 2));
    // With a variable, $proxy_host is the group name, and the request URI is kept.
    assert_eq!(b.last().header("host"), "up2");
    assert_eq!(b.last().uri, "/pool?x=1");
}

#[tokio::test]
async fn return_redirects_answers_text_and_errors() {
    let conf = r#"events {} http { server { listen {listen};
        location /old/ { return 301 https://$host$request_uri; }
        location /text { return 200 "text"; }
        location /gone { return 404; }
    } }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let mut req = request("GET", "/old/page?q=1", "");
    req.headers_mut()
        .insert("host", "Example.com:8080".parse().unwrap());
    let reply = send(proxy.addr, req).await;
    assert_eq!(reply.status, 301);
    // $host: lowercase, without the port (nginx).
    assert_eq!(reply.header("location"), "https://example.com/old/page?q=1");

    let reply = send(proxy.addr, request("GET", "/text", "")).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "text"));

    let reply = send(proxy.addr, request("GET", "/gone", "")).await;
    assert_eq!(reply.status, 404);
}
