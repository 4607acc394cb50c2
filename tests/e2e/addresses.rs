//! Where upstreams live and where tether listens: servers on UNIX-domain sockets (in an
//! upstream and straight in `proxy_pass`), repeated `server` lines as servers of their own (the
//! way people weight one), `listen [::]:PORT` beside `listen PORT` (nginx's `ipv6only=on`) and
//! `ipv6only=off`, and `proxy_pass` to a host name that is no upstream.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::session::{cookie_value, get_with_cookie, websocket};
use crate::harness::{Backend, Proxy, free_addr, get, within};

#[tokio::test]
async fn a_server_on_a_unix_socket_takes_requests_and_websockets() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("app.sock");
    let app = Backend::start_unix("app", &socket).await;
    let path = socket.display();
    let conf = format!(
        "events {{}} http {{ upstream up {{ server unix:{path}; }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://up; }} \
         location /direct/ {{ proxy_pass http://unix:{path}:/inner/; }} }} }}"
    );
    let proxy = Proxy::start(&conf, &[]).await;

    let reply = get(proxy.addr, "/page").await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-backend")),
        (200, "app")
    );
    assert_eq!(app.last().uri, "/page");

    // `http://unix:PATH:/URI` replaces the location prefix with the URI, and sends nginx's
    // `Host: localhost` (a socket has no host name).
    let reply = get(proxy.addr, "/direct/x?y=1").await;
    assert_eq!(reply.status, 200);
    let seen = app.last();
    assert_eq!(seen.uri, "/inner/x?y=1");
    assert_eq!(seen.headers["host"], "localhost");

    // A WebSocket tunnels over the socket like over TCP.
    let (mut ws, response) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(response.headers()["x-backend"], "app");
    ws.send(Message::text("over a socket")).await.expect("send");
    let echo = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(
        echo.expect("a frame").expect("a message"),
        Message::text("over a socket")
    );
}

#[tokio::test]
async fn repeated_server_lines_are_servers_of_their_own() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let names = [("a", a.addr), ("b", b.addr)];
    // The way people give a server twice the share, as nginx allows.
    let conf = "events {} http { upstream up { server {a}; server {a}; server {b}; \
                sticky cookie srv; } server { listen {listen}; \
                location / { proxy_pass http://up; } } }";
    let proxy = Proxy::start(conf, &names).await;

    let before = proxy.snapshot();
    let group = before.upstream("up").expect("the group");
    let members = group.members();
    assert_eq!(members.len(), 3);
    let (first, second) = (&members[0].peer, &members[1].peer);
    assert!(!Arc::ptr_eq(first, second), "two lines, two servers");
    assert_eq!(first.key.address, second.key.address);
    assert_eq!((first.key.ordinal, second.key.ordinal), (0, 1));

    // Round robin over three servers, two of them `a`: a twice as often as b.
    let mut cookies = Vec::new();
    for i in 0..30 {
        let reply = get(proxy.addr, &format!("/{i}")).await;
        assert_eq!(reply.status, 200);
        cookies.push((
            reply.header("x-backend").to_string(),
            cookie_value(&reply.headers, "srv"),
        ));
    }
    assert_eq!((a.hits(), b.hits()), (20, 10));
    assert_eq!(first.state.requests() + second.state.requests(), 20);
    assert!(first.state.requests() > 0 && second.state.requests() > 0);

    // The cookie names the address: both lines of `a` issue one value, and it pins to `a`.
    let values_of_a: Vec<&String> = cookies
        .iter()
        .filter(|(by, _)| by == "a")
        .filter_map(|(_, value)| value.as_ref())
        .collect();
    assert!(values_of_a.windows(2).all(|w| w[0] == w[1]), "{cookies:?}");
    let pinned = format!("srv={}", values_of_a[0]);
    for _ in 0..4 {
        let reply = get_with_cookie(proxy.addr, "/pinned", &pinned).await;
        assert_eq!(reply.header("x-backend"), "a");
    }

    // A reload keeps each of them, state and all, by its place among the lines of `a`.
    proxy.apply(conf, &names).await.expect("reload");
    let after = proxy.snapshot();
    let kept = after.upstream("up").expect("the group").members();
    assert!(Arc::ptr_eq(&kept[0].peer, first) && Arc::ptr_eq(&kept[1].peer, second));
}

/// Whether this machine has IPv6 loopback (a container may not).
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

#[tokio::test]
async fn listen_on_ipv6_binds_beside_the_same_port_on_ipv4() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let a = Backend::start("a").await;
    let port = free_addr().port();
    // As nginx's default config writes it: both wildcards on one port, which binds only
    // because an IPv6 listener takes IPv6 alone (`ipv6only=on`).
    let conf = format!(
        "events {{}} http {{ upstream up {{ server {{a}}; }} server {{ listen {{listen}}; \
         listen {port}; listen [::]:{port}; location / {{ proxy_pass http://up; }} }} }}"
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    for addr in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ] {
        let reply = get(addr, "/").await;
        assert_eq!(
            (reply.status.as_u16(), reply.header("x-backend")),
            (200, "a"),
            "{addr}"
        );
    }
    drop(proxy);
}

#[tokio::test]
async fn ipv6only_off_takes_ipv4_on_the_ipv6_wildcard() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let a = Backend::start("a").await;
    let port = free_addr().port();
    let conf = format!(
        "events {{}} http {{ upstream up {{ server {{a}}; }} server {{ listen {{listen}}; \
         listen [::]:{port} ipv6only=off; location / {{ proxy_pass http://up; }} }} }}"
    );
    let _proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let reply = get(SocketAddr::from(([127, 0, 0, 1], port)), "/").await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-backend")),
        (200, "a")
    );
}

#[tokio::test]
async fn proxy_pass_to_a_host_name_that_is_no_upstream_resolves_it_on_port_80() {
    // nginx reads `http://NAME` that is no upstream as a host on the scheme's port; the test
    // needs port 80 on loopback (root, and nothing there already), else it skips.
    let port_80 = SocketAddr::from(([127, 0, 0, 1], 80));
    if std::net::TcpListener::bind(port_80).is_err() {
        eprintln!("skipped: 127.0.0.1:80 cannot be bound here");
        return;
    }
    let a = Backend::start_at("a", port_80).await;
    let conf = "events {} http { upstream other { server 127.0.0.1:1; } server { \
                listen {listen}; location / { proxy_pass http://localhost; } } }";
    let proxy = Proxy::start(conf, &[]).await;
    let reply = get(proxy.addr, "/").await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-backend")),
        (200, "a")
    );
    // nginx's `$proxy_host`: no port where none was written.
    assert_eq!(a.last().headers["host"], "localhost");
}

/// The backend answering each of `count` requests sent one after the other to `addr`.
async fn sequence(addr: SocketAddr, count: usize) -> Vec<String> {
    let mut answers = Vec::with_capacity(count);
    for i in 0..count {
        let reply = get(addr, &format!("/seq/{i}")).await;
        assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
        answers.push(reply.header("x-backend").to_string());
    }
    answers
}

#[tokio::test]
async fn repeated_lines_and_unix_sockets_next_to_real_nginx() {
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("s.sock");
    let s = Backend::start_unix("s", &socket).await;
    let names = [("a", a.addr), ("b", b.addr)];
    let path = socket.display();
    let upstream =
        format!("server {{a}}; server {{a}} weight=2; server {{b}}; server unix:{path};");
    let locations = format!(
        "location / {{ proxy_pass http://u; }} \
         location /direct/ {{ proxy_pass http://unix:{path}:/inner/; }}"
    );
    let Some(nginx) = crate::harness::nginx::Nginx::start_with(&upstream, &locations, &names).await
    else {
        return;
    };
    let conf = format!(
        "events {{}} http {{ upstream u {{ {upstream} }} server {{ listen {{listen}}; {locations} }} }}"
    );
    let proxy = Proxy::start(&conf, &names).await;

    // nginx's smooth weighted round robin over every line, the repeated one included.
    let from_nginx = sequence(nginx.addr, 15).await;
    assert_eq!(sequence(proxy.addr, 15).await, from_nginx);
    assert_eq!(from_nginx.iter().filter(|by| *by == "a").count(), 9);

    // The URI and Host a socket server sees from `proxy_pass http://unix:PATH:/URI`.
    let mut seen = Vec::new();
    for addr in [nginx.addr, proxy.addr] {
        let reply = get(addr, "/direct/x?q=1").await;
        assert_eq!(reply.status.as_u16(), 200);
        let last = s.last();
        seen.push((last.uri, last.headers["host"].clone()));
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test]
async fn a_repeated_line_keeps_every_consistent_hash_key_where_nginx_puts_it() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    // ketama hashes the name as written: a repeated line's points fall on the first's, so it
    // adds no share and moves no key (nginx's behaviour, which tether's ring is bit for bit).
    let upstream = "hash $arg_k consistent; server {a}; server {b}; server {a}; server {c};";
    let Some(nginx) = crate::harness::nginx::Nginx::start(upstream, &names).await else {
        return;
    };
    let conf = format!(
        "events {{}} http {{ upstream u {{ {upstream} }} server {{ listen {{listen}}; \
         location / {{ proxy_pass http://u; }} }} }}"
    );
    let proxy = Proxy::start(&conf, &names).await;
    let single = Proxy::start(
        "events {} http { upstream u { hash $arg_k consistent; server {a}; server {b}; \
         server {c}; } server { listen {listen}; location / { proxy_pass http://u; } } }",
        &names,
    )
    .await;
    for k in 0..40 {
        let path = format!("/?k=key-{k}");
        let want = get(nginx.addr, &path).await.header("x-backend").to_string();
        assert_eq!(
            get(proxy.addr, &path).await.header("x-backend"),
            want,
            "{path}"
        );
        assert_eq!(
            get(single.addr, &path).await.header("x-backend"),
            want,
            "{path}"
        );
    }
}
