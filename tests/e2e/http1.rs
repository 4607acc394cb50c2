//! HTTP/1.1 through tether: forwarding, keep-alive on both sides, header rules.

use crate::harness::client::{Connection, request};
use crate::harness::{Backend, Proxy, get};

#[tokio::test]
async fn forwards_and_takes_turns_over_the_group() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = Proxy::round_robin(&[a.addr, b.addr], "").await;
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let reply = get(proxy.addr, "/hello?x=1").await;
        assert_eq!(reply.status, 200);
        bodies.push(reply.body);
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "a", "b", "b"]);
    assert_eq!(a.last().uri, "/hello?x=1");
}

#[tokio::test]
async fn keep_alive_on_both_sides() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let mut client = Connection::open(proxy.addr).await;
    for i in 0..20 {
        let reply = client.get(&format!("/n/{i}")).await;
        assert_eq!(reply.status, 200);
        assert!(!client.is_closed(), "the client connection stays open");
    }
    assert_eq!(a.hits(), 20);
    // Twenty sequential requests travelled on one pooled upstream connection.
    assert_eq!(a.connections(), 1, "upstream connections opened");
    assert!(a.seen().iter().all(|s| s.header("connection") != "close"));
}

#[tokio::test]
async fn connection_close_from_the_map_idiom_is_honoured_upstream() {
    let a = Backend::start("a").await;
    let conf = r#"events {} http {
        map $http_upgrade $connection_upgrade { default upgrade; "" close; }
        upstream up { server {a}; }
        server { listen {listen}; location / {
            proxy_pass http://up;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        } } }"#;
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let mut client = Connection::open(proxy.addr).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").await.status, 200);
    }
    assert_eq!(a.last().header("connection"), "close");
    assert_eq!(
        a.connections(),
        3,
        "each request on its own upstream connection, as asked"
    );
}

#[tokio::test]
async fn default_and_configured_headers_follow_nginx() {
    let a = Backend::start("a").await;
    // Without proxy_set_header, Host is $proxy_host (the upstream name) and hop-by-hop headers
    // are not forwarded.
    let proxy = Proxy::round_robin(&[a.addr], "").await;
    let mut req = request("GET", "/h", "");
    req.headers_mut()
        .insert("connection", "keep-alive, x-hop".parse().unwrap());
    req.headers_mut().insert("x-hop", "secret".parse().unwrap());
    req.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    req.headers_mut()
        .insert("x-end-to-end", "kept".parse().unwrap());
    crate::harness::send(proxy.addr, req).await;
    let seen = a.last();
    assert_eq!(seen.header("host"), "up");
    assert_eq!(seen.header("x-hop"), "");
    assert_eq!(seen.header("keep-alive"), "");
    assert_eq!(seen.header("x-end-to-end"), "kept");
    proxy.stop().await;

    let proxy = Proxy::round_robin(
        &[a.addr],
        r#"proxy_set_header Host $host;
           proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
           proxy_set_header X-Forwarded-Proto $scheme;
           proxy_set_header X-Real-IP $remote_addr;
           proxy_set_header X-Server $server_addr:$server_port;
           proxy_set_header Accept-Encoding "";"#,
    )
    .await;
    let mut req = request("GET", "/h", "");
    req.headers_mut()
        .insert("host", "Example.COM:8080".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-for", "10.1.1.1".parse().unwrap());
    req.headers_mut()
        .insert("accept-encoding", "gzip".parse().unwrap());
    crate::harness::send(proxy.addr, req).await;
    let seen = a.last();
    assert_eq!(seen.header("host"), "example.com");
    assert_eq!(seen.header("x-forwarded-for"), "10.1.1.1, 127.0.0.1");
    assert_eq!(seen.header("x-forwarded-proto"), "http");
    assert_eq!(seen.header("x-real-ip"), "127.0.0.1");
    assert_eq!(
        seen.header("x-server"),
        format!("127.0.0.1:{}", proxy.addr.port()),
        "the address the client reached"
    );
    assert_eq!(
        seen.header("accept-encoding"),
        "",
        "an empty value removes the header"
    );
}

#[tokio::test]
async fn post_bodies_and_response_headers_pass_through() {
    let a = Backend::start("a").await;
    let proxy = Proxy::round_robin(&[a.addr], "add_header X-Served-By tether;").await;
    let reply = crate::harness::send(proxy.addr, request("POST", "/upload", "hello")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        format!(
            "bytes=5 sum={}",
            b"hello".iter().map(|&b| b as u64).sum::<u64>()
        )
    );
    assert_eq!(reply.header("x-backend"), "a");
    assert_eq!(reply.header("x-served-by"), "tether");
}
