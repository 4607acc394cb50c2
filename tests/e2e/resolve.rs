//! `server NAME resolve` with a `resolver`: tether follows DNS while running, as nginx 1.27.3
//! does, so a headless Kubernetes service or an ECS service that changes its pods is followed
//! without a reload. The pods are backends on 127.0.0.2, 127.0.0.3 ... sharing one port; a DNS
//! server on loopback answers for `app.test`, and the test changes its answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::dns::Dns;
use crate::harness::session::{eventually, websocket};
use crate::harness::{Backend, Proxy, free_addr, get, within};

/// The loopback address of pod `n` (127.0.0.n).
fn pod(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// `upstream pods { server app.test:PORT resolve; }` asking `dns`, answers valid 100 ms.
fn conf(dns: &Dns, port: u16) -> String {
    format!(
        "events {{}} http {{ resolver {dns} valid=100ms; resolver_timeout 2s; \
         upstream pods {{ zone pods 64k; server app.test:{port} resolve; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://pods; }} }} }}",
        dns = dns.addr
    )
}

/// Which pod answers `GET /` now.
async fn answered_by(proxy: &Proxy) -> String {
    let reply = get(proxy.addr, "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend").to_string()
}

#[tokio::test]
async fn a_new_pod_gets_traffic_and_a_removed_one_keeps_its_websocket() {
    let dns = Dns::start().await;
    let port = free_addr().port();
    let one = Backend::start_at("one", SocketAddr::new(pod(2), port)).await;
    let two = Backend::start_at("two", SocketAddr::new(pod(3), port)).await;
    dns.set("app.test", &[pod(2)]);
    let proxy = Proxy::start(&conf(&dns, port), &[]).await;

    // Looked up before the first request: the pod is there from the start.
    assert_eq!(answered_by(&proxy).await, "one");
    let (mut ws, response) = websocket(proxy.addr, "/ws", None).await;
    assert_eq!(response.headers()["x-backend"], "one");
    let first = proxy.snapshot().upstream("pods").expect("group").members()[0]
        .peer
        .clone();

    // A second pod appears: it takes its share without a reload, and the first one is the
    // same server as before (its counters go on).
    dns.set("app.test", &[pod(2), pod(3)]);
    eventually(
        Duration::from_secs(5),
        "the new pod's first request",
        || async { answered_by(&proxy).await == "two" },
    )
    .await;
    let snapshot = proxy.snapshot();
    let members = snapshot.upstream("pods").expect("group").members();
    assert_eq!(members.len(), 2);
    assert!(
        Arc::ptr_eq(&members[0].peer, &first),
        "the pod that stayed kept its state"
    );
    assert_eq!(
        &*first.key.address,
        SocketAddr::new(pod(2), port).to_string()
    );
    let before = one.hits();
    for _ in 0..4 {
        answered_by(&proxy).await;
    }
    assert!(
        one.hits() > before,
        "round robin still reaches the first pod"
    );

    // The first pod goes away: no new request reaches it, its WebSocket stays open.
    dns.set("app.test", &[pod(3)]);
    eventually(
        Duration::from_secs(5),
        "the upstream without the first pod",
        || async {
            proxy
                .snapshot()
                .upstream("pods")
                .expect("group")
                .members()
                .len()
                == 1
        },
    )
    .await;
    let hits = one.hits();
    for _ in 0..6 {
        assert_eq!(answered_by(&proxy).await, "two");
    }
    assert_eq!(one.hits(), hits, "the removed pod took no new request");
    ws.send(Message::text("still here")).await.expect("send");
    let echo = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(
        echo.expect("a frame").expect("a message"),
        Message::text("still here")
    );
    assert!(two.hits() > 0);
}

#[tokio::test]
async fn a_failing_resolver_keeps_the_addresses_and_an_empty_answer_leaves_none() {
    let dns = Dns::start().await;
    let port = free_addr().port();
    let one = Backend::start_at("one", SocketAddr::new(pod(4), port)).await;
    dns.set("app.test", &[pod(4)]);
    let proxy = Proxy::start(&conf(&dns, port), &[]).await;
    assert_eq!(answered_by(&proxy).await, "one");

    // The DNS server fails every lookup (SERVFAIL): the pod stays through several of them.
    dns.fail(true);
    let asked = dns.queries();
    eventually(
        Duration::from_secs(5),
        "two more failed lookups",
        || async { dns.queries() >= asked + 2 },
    )
    .await;
    assert_eq!(answered_by(&proxy).await, "one");
    let snapshot = proxy.snapshot();
    assert_eq!(snapshot.upstream("pods").expect("group").members().len(), 1);
    drop(one);

    // A name with no addresses (NXDOMAIN here) leaves the group with no server: 502, as an
    // nginx upstream whose resolved server has no peers.
    let dns = Dns::start().await;
    let proxy = Proxy::start(&conf(&dns, port), &[]).await;
    assert_eq!(get(proxy.addr, "/").await.status, 502);
}

#[tokio::test]
async fn proxy_pass_with_variables_looks_up_a_host_that_is_no_upstream() {
    let dns = Dns::start().await;
    let port = free_addr().port();
    let _five = Backend::start_at("five", SocketAddr::new(pod(5), port)).await;
    let _six = Backend::start_at("six", SocketAddr::new(pod(6), port)).await;
    dns.set("app.test", &[pod(5)]);
    let conf = format!(
        "events {{}} http {{ resolver {dns} valid=100ms; upstream named {{ server {{a}}; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://$arg_to:{port}; }} \
         location /bare/ {{ proxy_pass http://$arg_to; }} }} }}",
        dns = dns.addr
    );
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let to = |name: &str| format!("/?to={name}");

    let reply = get(proxy.addr, &to("app.test")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-backend")),
        (200, "five")
    );
    // An upstream's name still names the upstream.
    assert_eq!(
        get(proxy.addr, "/bare/?to=named").await.header("x-backend"),
        "a"
    );

    // The answer is kept for `valid=`, then asked again.
    dns.set("app.test", &[pod(6)]);
    eventually(Duration::from_secs(5), "the new address", || async {
        get(proxy.addr, &to("app.test")).await.header("x-backend") == "six"
    })
    .await;
    // A name DNS does not know: 502, as nginx's "could not be resolved".
    assert_eq!(get(proxy.addr, &to("gone.test")).await.status.as_u16(), 502);

    // Without a resolver, nginx's "no resolver defined to resolve": 502.
    let plain = Proxy::start(
        &format!(
            "events {{}} http {{ server {{ listen {{listen}}; \
             location / {{ proxy_pass http://$arg_to:{port}; }} }} }}"
        ),
        &[],
    )
    .await;
    assert_eq!(get(plain.addr, &to("app.test")).await.status.as_u16(), 502);
}
