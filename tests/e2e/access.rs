//! `allow` and `deny`, nginx's way: rules in order, the first that names the client decides,
//! a location inherits its server's rules only when it has none of its own, a refused client
//! gets 403 before anything is proxied — and the address checked is the real client's.

use std::net::IpAddr;

use crate::harness::{Backend, Proxy};
use crate::real_ip::get_from;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn rules_apply_in_order_and_inherit_only_into_locations_without_any() {
    let a = Backend::start("a").await;
    let conf = "http { server { listen {listen};
        allow 127.0.0.2; deny all;
        location /inherited { proxy_pass http://{a}; }
        location /own { deny 127.0.0.3; allow 127.0.0.0/8; deny all; proxy_pass http://{a}; }
        location /open { allow all; proxy_pass http://{a}; }
        location /answered { deny all; return 200 answered; }
    } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let status = |from: &'static str, path: &'static str| {
        let addr = proxy.addr;
        async move { get_from(ip(from), addr, path, &[]).await.status }
    };
    assert_eq!(status("127.0.0.2", "/inherited").await, 200);
    assert_eq!(status("127.0.0.1", "/inherited").await, 403);
    // The first rule naming the client wins: .3 is denied before the /8 allows it.
    assert_eq!(status("127.0.0.3", "/own").await, 403);
    assert_eq!(status("127.0.0.1", "/own").await, 200);
    assert_eq!(status("127.0.0.4", "/open").await, 200);
    // No location: the server's rules still answer first.
    assert_eq!(status("127.0.0.1", "/nowhere").await, 403);
    assert_eq!(status("127.0.0.2", "/nowhere").await, 404);
    // As in nginx, `return` acts in the rewrite phase, before access is checked.
    assert_eq!(status("127.0.0.1", "/answered").await, 200);
    // Refused requests never reached the backend: .2, .1 and .4's three.
    assert_eq!(a.hits(), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn rules_see_the_real_client_behind_a_trusted_balancer() {
    let a = Backend::start("a").await;
    let conf = "http { server { listen {listen};
        set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
        location /status { allow 203.0.113.0/24; deny all; proxy_pass http://{a}; }
    } }";
    let proxy = Proxy::start(conf, &[("a", a.addr)]).await;
    let from = |client: &'static str| [("X-Forwarded-For", client)];
    let local = ip("127.0.0.1");
    let office = get_from(local, proxy.addr, "/status", &from("203.0.113.50")).await;
    assert_eq!(office.status, 200);
    let stranger = get_from(local, proxy.addr, "/status", &from("198.51.100.1")).await;
    assert_eq!(stranger.status, 403);
    // An untrusted peer cannot claim the office's address.
    let spoof = get_from(
        ip("127.0.0.5"),
        proxy.addr,
        "/status",
        &from("203.0.113.50"),
    )
    .await;
    assert_eq!(spoof.status, 403);
    assert_eq!(a.hits(), 1);
    proxy.stop().await;
}
