//! The rewrite module over real sockets: `rewrite` with captures and `$args`, its flags,
//! internal redirects that search the location again (and nginx's limit of 10), `set`, `if`
//! choosing a configuration, and regex-location captures in `proxy_pass`. Backends record the
//! URI they were sent; `rewrite_nginx` runs the same configs through real nginx.

use crate::harness::client::request;
use crate::harness::{Backend, Proxy, send};

/// GETs `path`; returns (status, body).
async fn get(proxy: &Proxy, path: &str) -> (u16, String) {
    let reply = send(proxy.addr, request("GET", path, "")).await;
    (reply.status.as_u16(), reply.body)
}

#[tokio::test]
async fn last_searches_the_location_again_with_the_new_uri_and_arguments() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let conf = r#"events {} http {
        upstream old { server {a}; }
        upstream new { server {b}; }
        server { listen {listen};
            location /old/ { rewrite ^/old/(.*)$ /new/$1?from=old last; proxy_pass http://old; }
            location /new/ { proxy_pass http://new; }
        } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr), ("b", b.addr)]).await;
    assert_eq!(get(&proxy, "/old/x%20y?z=1").await, (200, "b".into()));
    // `$1` is the decoded path's; the URI goes up escaped, new arguments before the old.
    assert_eq!(b.last().uri, "/new/x%20y?from=old&z=1");
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn break_stays_in_the_location_and_sends_the_rewritten_uri() {
    let a = Backend::start("a").await;
    let conf = r#"events {} http { upstream u { server {a}; }
        server { listen {listen};
            location /brk/ { rewrite ^/brk/(.*) /users/$1 break; proxy_pass http://u/api/; }
            location /q/ { rewrite ^/q/(.*) /z?a=$1? break; proxy_pass http://u; }
            location /users/ { return 500; }
        } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    // nginx: after `break` the proxy_pass URI is ignored (no matched prefix to replace).
    assert_eq!(get(&proxy, "/brk/a%20b?x=1").await, (200, "a".into()));
    assert_eq!(a.last().uri, "/users/a%20b?x=1");
    // A final `?` drops the client's arguments.
    assert_eq!(get(&proxy, "/q/v?x=1").await, (200, "a".into()));
    assert_eq!(a.last().uri, "/z?a=v");
}

#[tokio::test]
async fn a_server_rewrite_runs_before_the_location_is_chosen() {
    let a = Backend::start("a").await;
    let conf = r#"events {} http { upstream u { server {a}; }
        server { listen {listen};
            rewrite ^/legacy/(.*)$ /app/$1;
            location /app/ { proxy_pass http://u/v2/; }
            location /legacy/ { return 410; }
        } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    assert_eq!(get(&proxy, "/legacy/page?k=v").await, (200, "a".into()));
    assert_eq!(a.last().uri, "/v2/page?k=v");
}

#[tokio::test]
async fn regex_location_captures_go_into_proxy_pass_and_headers() {
    let a = Backend::start("a").await;
    let conf = r#"events {} http { upstream u { server {a}; }
        server { listen {listen};
            location ~ ^/hub/(?<tenant>[a-z]+)/(.*)$ {
                proxy_set_header X-Tenant $tenant;
                proxy_pass http://u/signalr/$2$is_args$args;
            }
        } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    assert_eq!(
        get(&proxy, "/hub/acme/negotiate?id=7").await,
        (200, "a".into())
    );
    let seen = a.last();
    assert_eq!(seen.uri, "/signalr/negotiate?id=7");
    assert_eq!(seen.header("x-tenant"), "acme");
}

#[tokio::test]
async fn set_and_if_choose_values_and_configurations() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let conf = r#"events {} http {
        upstream stable { server {a}; }
        upstream canary { server {b}; }
        server { listen {listen};
            location / {
                set $pool stable;
                if ($cookie_canary = "1") { set $pool canary; }
                if ($request_method = OPTIONS) { return 204; }
                if ($http_user_agent ~* (bot|crawler)) { return 403; }
                if ($arg_direct) {
                    proxy_set_header X-Direct $arg_direct;
                    proxy_pass http://canary;
                }
                proxy_set_header X-Pool $pool;
                proxy_pass http://$pool;
            }
        } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr), ("b", b.addr)]).await;
    assert_eq!(get(&proxy, "/x").await, (200, "a".into()));
    assert_eq!(a.last().header("x-pool"), "stable");

    let mut req = request("GET", "/x", "");
    req.headers_mut()
        .insert("cookie", "canary=1".parse().unwrap());
    assert_eq!(send(proxy.addr, req).await.body, "b");
    assert_eq!(b.last().header("x-pool"), "canary");

    let reply = send(proxy.addr, request("OPTIONS", "/x", "")).await;
    assert_eq!(reply.status, 204);
    let mut req = request("GET", "/x", "");
    req.headers_mut()
        .insert("user-agent", "FriendlyBot/1.0".parse().unwrap());
    assert_eq!(send(proxy.addr, req).await.status, 403);

    // The `if` with settings: its proxy_pass, and its header list instead of the location's.
    assert_eq!(get(&proxy, "/x?direct=yes").await, (200, "b".into()));
    let seen = b.last();
    assert_eq!(seen.header("x-direct"), "yes");
    assert_eq!(seen.header("x-pool"), "");
    assert_eq!((a.hits(), b.hits()), (1, 2));
}

#[tokio::test]
async fn internal_redirects_stop_after_ten_with_a_500() {
    let mut chain = String::new();
    for step in 0..10 {
        let next = step + 1;
        chain.push_str(&format!(
            "location = /s{step} {{ rewrite ^ /s{next} last; }}\n"
        ));
    }
    let conf = format!(
        r#"events {{}} http {{ server {{ listen {{listen}};
            {chain}
            location = /s10 {{ return 200 "ten"; }}
            location = /t {{ rewrite ^ /s0 last; }}
            location /loop {{ rewrite ^/loop(.*) /loop/x$1; }}
        }} }}"#
    );
    let proxy = Proxy::start(&conf, &[]).await;
    // Ten searches again are allowed, the eleventh is a cycle.
    assert_eq!(get(&proxy, "/s0").await, (200, "ten".into()));
    assert_eq!(get(&proxy, "/t").await.0, 500);
    // A rewrite without a flag searches again too, after the location's other directives.
    assert_eq!(get(&proxy, "/loop").await.0, 500);
}

#[tokio::test]
async fn redirects_are_absolute_with_the_arguments_appended() {
    let conf = r#"events {} http { server { listen {listen};
        location /red { rewrite ^/red(.*) /x$1 redirect; }
        location /perm { rewrite ^/perm(.*) /y$1?via=perm permanent; }
        location /abs { rewrite ^ https://other.example$uri; }
        location /ret { return 301 /to; }
    } }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let base = format!("http://localhost:{}", proxy.addr.port());
    let location = |reply: &crate::harness::client::Reply| reply.header("location").to_string();
    let reply = send(proxy.addr, request("GET", "/red/a?x=1", "")).await;
    assert_eq!(reply.status, 302);
    assert_eq!(location(&reply), format!("{base}/x/a?x=1"));
    let reply = send(proxy.addr, request("GET", "/perm/a?x=1", "")).await;
    assert_eq!(reply.status, 301);
    assert_eq!(location(&reply), format!("{base}/y/a?via=perm&x=1"));
    let reply = send(proxy.addr, request("GET", "/abs/p", "")).await;
    assert_eq!(reply.status, 302);
    assert_eq!(location(&reply), "https://other.example/abs/p");
    let reply = send(proxy.addr, request("GET", "/ret", "")).await;
    assert_eq!(location(&reply), format!("{base}/to"));
}

#[tokio::test]
async fn redirect_locations_follow_absolute_port_and_server_name_in_redirect() {
    let conf = r#"events {} http { server { listen {listen}; server_name app.example;
        absolute_redirect off;
        location /rel { return 302 /r; }
        location /abs { absolute_redirect on; port_in_redirect off; return 302 /a; }
        location /named { absolute_redirect on; server_name_in_redirect on; return 302 /n; }
    } }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let location = |path: &'static str| async move {
        send(proxy.addr, request("GET", path, ""))
            .await
            .header("location")
            .to_string()
    };
    assert_eq!(location("/rel").await, "/r");
    assert_eq!(location("/abs").await, "http://localhost/a");
    let port = proxy.addr.port();
    assert_eq!(
        location("/named").await,
        format!("http://app.example:{port}/n")
    );
}

#[tokio::test]
async fn the_access_log_sees_the_rewritten_uri_and_the_one_received() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rewrite.log");
    let conf = format!(
        "http {{ log_format rw '$request_uri|$uri|$args|$1|$via'; upstream u {{ server {{a}}; }} \
         server {{ listen {{listen}}; \
         location /old/ {{ rewrite ^/old/(.*)$ /new/$1?n=1 last; }} \
         location /new/ {{ set $via rewritten; proxy_pass http://u; access_log {} rw; }} }} }}",
        log.display()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    assert_eq!(get(&proxy, "/old/page?k=v").await, (200, "a".into()));
    let line = crate::harness::within(
        std::time::Duration::from_secs(10),
        "the access log line",
        async {
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(line) = text.lines().next() {
                    return line.to_string();
                }
                // Polling a condition: the writer thread writes as soon as it can.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    assert_eq!(line, "/old/page?k=v|/new/page|n=1&k=v|page|rewritten");
}

#[tokio::test]
async fn return_444_closes_the_connection_without_an_answer() {
    use crate::harness::raw::read_to_close;
    use tokio::io::AsyncWriteExt;
    let conf = r#"events {} http {
        server { listen {listen} default_server; server_name _; return 444; }
        server { listen {listen}; server_name app.test; location / { return 200 "app"; } }
    }"#;
    let proxy = Proxy::start(conf, &[]).await;
    let limit = std::time::Duration::from_secs(10);
    // HTTP/1: nothing at all is written back (nginx's "close the connection").
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: scanner.example\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut stream, limit).await, b"");
    // HTTP/2: the stream is reset, no response head.
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(connection);
    let h2 = http::Request::builder()
        .uri("http://scanner.example/")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = crate::harness::within(limit, "the reset", sender.send_request(h2)).await;
    assert!(answer.is_err(), "{answer:?}");
    // The named server answers as usual.
    let mut req = request("GET", "/", "");
    req.headers_mut()
        .insert("host", "app.test".parse().unwrap());
    assert_eq!(send(proxy.addr, req).await.body, "app");
}
