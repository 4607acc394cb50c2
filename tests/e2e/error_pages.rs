//! `error_page`, named locations, `internal`, `proxy_intercept_errors`, `recursive_error_pages`
//! and nested locations, over real sockets: a dead farm's 502 becoming a friendly page or a
//! retry on a fallback group, an upstream's 404 replaced, redirects to URLs, the method an
//! internal redirect sends, the cycle limit, and nested matching with inherited settings.
//! `error_pages_nginx` runs the same server blocks through real nginx.

use std::net::SocketAddr;

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, Reply, free_addr, get, send};

/// Starts tether with one server whose body is `server` (placeholders filled from `backends`).
pub(crate) async fn start_server(server: &str, backends: &[(&str, SocketAddr)]) -> Proxy {
    let conf = format!("events {{}} http {{ server {{ listen {{listen}}; {server} }} }}");
    Proxy::start(&conf, backends).await
}

/// The friendly-page and fallback block that both tether and nginx run.
pub(crate) const DEAD_FARM: &str = r#"
    location / {
        error_page 502 503 504 /sorry.html;
        proxy_pass http://{dead};
    }
    location /api/ {
        error_page 502 = @fallback;
        proxy_pass http://{dead};
    }
    location @fallback { proxy_pass http://{b}; }
    location = /sorry.html { internal; return 200 "sorry, back soon"; }
"#;

#[tokio::test]
async fn a_dead_farms_502_becomes_a_friendly_page() {
    let dead = free_addr();
    let b = Backend::start("b").await;
    let proxy = start_server(DEAD_FARM, &[("dead", dead), ("b", b.addr)]).await;
    // No `=`: the status stays the error's, the body is the page's.
    let reply = get(proxy.addr, "/shop").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (502, "sorry, back soon")
    );
    // `internal`: the page itself is not reachable from outside.
    assert_eq!(get(proxy.addr, "/sorry.html").await.status.as_u16(), 404);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn a_dead_farms_502_is_retried_on_a_fallback_group_through_a_named_location() {
    let dead = free_addr();
    let b = Backend::start("b").await;
    let proxy = start_server(DEAD_FARM, &[("dead", dead), ("b", b.addr)]).await;
    // `=`: the fallback's own status; a named location keeps the method and the URI.
    let reply = send(proxy.addr, request("DELETE", "/api/items/7?x=1", "")).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "b"));
    let seen = b.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("DELETE", "/api/items/7?x=1")
    );
}

#[tokio::test]
async fn an_internal_redirect_asks_with_get_except_for_head() {
    let dead = free_addr();
    let b = Backend::start("b").await;
    let server = r#"
        location / { error_page 502 /oops?from=$uri; proxy_pass http://{dead}; }
        location /oops { internal; proxy_pass http://{b}; }
    "#;
    let proxy = start_server(server, &[("dead", dead), ("b", b.addr)]).await;
    let reply = send(proxy.addr, request("POST", "/form", "")).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (502, "b"));
    let seen = b.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/oops?from=/form")
    );
    let reply = send(proxy.addr, request("HEAD", "/form", "")).await;
    assert_eq!(reply.status.as_u16(), 502);
    assert_eq!(b.last().method.as_str(), "HEAD");
}

#[tokio::test]
async fn an_error_page_keeps_the_clients_request_uri_as_nginx_does() {
    let dead = free_addr();
    let server = r#"
        location / { error_page 502 /sorry?why=dead; proxy_pass http://{dead}; }
        location = /sorry { internal; return 200 "$request_uri $uri $args"; }
    "#;
    let proxy = start_server(server, &[("dead", dead)]).await;
    let reply = get(proxy.addr, "/shop/cart?item=7").await;
    // nginx's internal redirect: `$uri` and `$args` are the page's, `$request_uri` the
    // client's; without `=`, the status stays the error's.
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (502, "/shop/cart?item=7 /sorry why=dead")
    );
}

#[tokio::test]
async fn upstream_errors_are_replaced_only_when_intercepted() {
    let a = Backend::start("a").await;
    let server = r#"
        error_page 404 = /missing;
        location /intercepted/ { proxy_intercept_errors on; proxy_pass http://{a}/; }
        location /passed/ { proxy_pass http://{a}/; }
        location = /missing { internal; return 200 "custom 404"; }
    "#;
    let proxy = start_server(server, &[("a", a.addr)]).await;
    let reply = get(proxy.addr, "/intercepted/status?code=404").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "custom 404")
    );
    // A status with no error_page for it passes through, intercepted or not.
    let reply = get(proxy.addr, "/intercepted/status?code=500").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (500, ""));
    let reply = get(proxy.addr, "/passed/status?code=404").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (404, ""));
    // tether's own 404 (no location matches) goes through the server's error_page.
    let reply = get(proxy.addr, "/nothing-here").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "custom 404")
    );
}

#[tokio::test]
async fn error_pages_redirect_to_urls_with_302_or_the_code_given() {
    let server = r#"
        location /gone { error_page 404 https://example.com/new$uri; return 404; }
        location /moved { error_page 404 =301 http://example.com/; return 404; }
        location /text { error_page 404 /never; return 404 "text wins"; }
    "#;
    let proxy = start_server(server, &[]).await;
    let reply = get(proxy.addr, "/gone/x").await;
    assert_eq!(reply.status.as_u16(), 302);
    assert_eq!(reply.header("location"), "https://example.com/new/gone/x");
    let reply = get(proxy.addr, "/moved").await;
    assert_eq!(reply.status.as_u16(), 301);
    assert_eq!(reply.header("location"), "http://example.com/");
    // `return` with a text answers itself: no error page.
    let reply = get(proxy.addr, "/text").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (404, "text wins")
    );
}

/// The status and body of `GET path`.
async fn answer(addr: SocketAddr, path: &str) -> (u16, String) {
    let Reply { status, body, .. } = get(addr, path).await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn error_pages_recurse_only_when_allowed_and_cycles_end_in_500() {
    let dead = free_addr();
    let once = r#"
        location / { error_page 502 /second; proxy_pass http://{dead}; }
        location /second { error_page 502 /third; proxy_pass http://{dead}; }
        location /third { return 200 "third"; }
    "#;
    let proxy = start_server(once, &[("dead", dead)]).await;
    // The error page's own failure gets the default page.
    let (status, body) = answer(proxy.addr, "/").await;
    assert_eq!(status, 502);
    assert!(body.contains("502 Bad Gateway"), "{body}");
    let recursive = format!("recursive_error_pages on; {once}");
    let proxy = start_server(&recursive, &[("dead", dead)]).await;
    assert_eq!(answer(proxy.addr, "/").await, (502, "third".to_string()));
    let cycle = "recursive_error_pages on; error_page 404 /again; location / { return 404; }";
    let proxy = start_server(cycle, &[]).await;
    assert_eq!(answer(proxy.addr, "/").await.0, 500);
}

/// Nested locations: tether and nginx both run this block (see `error_pages_nginx`).
pub(crate) const NESTED: &str = r#"
    location / { return 200 "root"; }
    location /api/ {
        proxy_set_header X-Level outer;
        error_page 404 = /api-missing;
        proxy_pass http://{a};
        location /api/admin/ { proxy_pass http://{a}; }
        location ~ \.json$ { return 200 "api-json"; }
        location = /api/exact { return 200 "api-exact"; }
        location /api/none/ { }
    }
    location = /api-missing { return 200 "api-missing"; }
    location ~ \.json$ { return 200 "top-json"; }
    location ^~ /static/ {
        return 200 "static";
        location ~ \.css$ { return 200 "static-css"; }
    }
    location = /exact { return 200 "exact"; }
    location /exact { return 200 "exact-prefix"; }
    location ^~ /images/ { return 200 "images"; }
    location ~* \.png$ { return 200 "png"; }
"#;

/// Paths whose status and body tether and nginx must agree on for [`NESTED`].
pub(crate) const NESTED_PATHS: &[&str] = &[
    "/",
    "/api/x",
    "/api/x.json",
    "/other.json",
    "/api/admin/u",
    "/api/admin/u.json",
    "/api/exact",
    "/api/none/x",
    "/static/a.css",
    "/static/a.json",
    "/static/x",
    "/exact",
    "/exact/x",
    "/exact.png",
    "/images/a.png",
    "/x/a.PNG",
];

#[tokio::test]
async fn nested_locations_match_inside_their_parent_and_inherit_its_settings() {
    let a = Backend::start("a").await;
    let proxy = start_server(NESTED, &[("a", a.addr)]).await;
    let expected = [
        ("/", 200, "root"),
        ("/api/x", 200, "a"),
        // A nested regex is tried before the server's.
        ("/api/x.json", 200, "api-json"),
        ("/other.json", 200, "top-json"),
        ("/api/admin/u", 200, "a"),
        ("/api/admin/u.json", 200, "api-json"),
        ("/api/exact", 200, "api-exact"),
        // No handler of its own (proxy_pass is not inherited): 404, through the inherited
        // error_page.
        ("/api/none/x", 200, "api-missing"),
        // `^~` stops the server's regexes, not its own nested ones.
        ("/static/a.css", 200, "static-css"),
        ("/static/a.json", 200, "static"),
        ("/static/x", 200, "static"),
    ];
    for (path, status, body) in expected {
        assert_eq!(
            answer(proxy.addr, path).await,
            (status, body.to_string()),
            "{path}"
        );
    }
    // The nested location inherited proxy_set_header from its parent.
    get(proxy.addr, "/api/admin/u").await;
    assert_eq!(a.last().header("x-level"), "outer");
}

#[tokio::test]
async fn a_websocket_to_a_dead_farm_is_carried_to_the_fallback() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dead = free_addr();
    let b = Backend::start("b").await;
    let server = r#"
        location / {
            error_page 502 = @fallback;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://{dead};
        }
        location @fallback {
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://{b};
        }
    "#;
    let proxy = start_server(server, &[("dead", dead), ("b", b.addr)]).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let url = proxy.url("/ws").replace("http", "ws");
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("a WebSocket handshake through the fallback");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("still here")).await.unwrap();
    let limit = std::time::Duration::from_secs(10);
    let echoed = crate::harness::within(limit, "the fallback's echo", ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap().into_text().unwrap(), "still here");
}

#[tokio::test]
async fn own_errors_before_proxying_get_pages_too() {
    let a = Backend::start("a").await;
    let server = r#"
        error_page 403 413 /refused;
        location /small/ { client_max_body_size 10; proxy_pass http://{a}; }
        location /closed/ { deny all; proxy_pass http://{a}; }
        location /refused { internal; return 200 "refused"; }
    "#;
    let proxy = start_server(server, &[("a", a.addr)]).await;
    let reply = send(
        proxy.addr,
        request("POST", "/small/x", "more than ten bytes"),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (413, "refused")
    );
    let reply = get(proxy.addr, "/closed/x").await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (403, "refused")
    );
    assert_eq!(a.hits(), 0);
}

/// The maintenance-mode idiom: a server-level `return` whose page is a named location.
pub(crate) const MAINTENANCE: &str = r#"
    error_page 503 = @maintenance;
    return 503;
    location / { return 200 "never"; }
    location @maintenance { return 200 "down for maintenance"; }
"#;

#[tokio::test]
async fn a_named_location_skips_the_servers_return_as_in_nginx() {
    let proxy = start_server(MAINTENANCE, &[]).await;
    let expected = (200, "down for maintenance".to_string());
    assert_eq!(answer(proxy.addr, "/anything").await, expected);
}

#[tokio::test]
async fn a_request_body_no_server_took_goes_to_the_fallback_with_it() {
    let dead = free_addr();
    let b = Backend::start("b").await;
    let server = r#"
        location /upload { error_page 502 = @fallback; proxy_pass http://{dead}; }
        location @fallback { proxy_pass http://{b}; }
    "#;
    let proxy = start_server(server, &[("dead", dead), ("b", b.addr)]).await;
    // A POST to a dead farm: its body never left tether, so the fallback gets all of it.
    let reply = send(proxy.addr, request("POST", "/upload", "0123456789")).await;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(reply.body.starts_with("bytes=10 "), "{}", reply.body);
    let seen = b.last();
    assert_eq!(
        (seen.method.as_str(), seen.header("content-length")),
        ("POST", "10")
    );
}

#[tokio::test]
async fn an_http2_request_keeps_its_server_across_an_internal_redirect() {
    use http_body_util::{BodyExt, Empty};
    use hyper::client::conn::http2;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    // HTTP/2 names the host in `:authority` only: the page must be looked up in that server.
    let conf = r#"events {} http {
        server { listen {listen} default_server; location / { return 200 "default"; } }
        server { listen {listen}; server_name a.test;
            error_page 404 /page;
            location / { return 404; }
            location = /page { return 200 "a-page"; }
        }
    }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake with tether");
    tokio::spawn(connection);
    let request = http::Request::get("http://a.test/missing")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let limit = std::time::Duration::from_secs(10);
    let response = crate::harness::within(limit, "an h2 answer", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"a-page");
}
