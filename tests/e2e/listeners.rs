//! Listeners across reloads: an added `listen` is bound and serves; a removed one stops
//! accepting at once while its open connections finish the request in hand; one that stays is
//! never re-bound, so its clients never notice; and a `listen` that cannot be bound fails the
//! whole reload, leaving the running config exactly as it was. A tether bound but not yet
//! opened (root binds, then becomes the configured user) answers nobody.

use std::net::SocketAddr;
use std::time::Duration;

use tether::runtime::StartError;
use tokio::net::{TcpListener, TcpStream};

use crate::harness::client::Connection;
use crate::harness::free_addr;
use crate::harness::session::eventually;
use crate::harness::tally::Load;
use crate::harness::{Backend, Proxy, get};

/// `upstream up { SERVERS }` behind `location /`, listening on `{listen}` and on `extra`.
fn conf(servers: &str, extra: &[SocketAddr]) -> String {
    let listens: String = extra
        .iter()
        .map(|addr| format!("listen {addr}; "))
        .collect();
    format!(
        "events {{}} http {{ upstream up {{ {servers} }} \
         server {{ listen {{listen}}; {listens}location / {{ proxy_pass http://up; }} }} }}"
    )
}

/// Which backend answers `GET path` on a new connection to `addr`; the answer must be a 200.
async fn answered_by(addr: SocketAddr, path: &str) -> String {
    let reply = get(addr, path).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("x-backend").to_string()
}

/// Waits until `addr` refuses new connections.
async fn refuses(addr: SocketAddr) {
    let what = format!("{addr} refusing connections");
    eventually(Duration::from_secs(5), &what, || async move {
        matches!(
            TcpStream::connect(addr).await,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
}

#[tokio::test]
async fn an_added_listen_is_bound_and_serves() {
    let a = Backend::start("a").await;
    let names = [("a", a.addr)];
    let proxy = Proxy::start(&conf("server {a};", &[]), &names).await;
    let extra = free_addr();
    assert!(TcpStream::connect(extra).await.is_err(), "free before");

    let applied = proxy
        .apply(&conf("server {a};", &[extra]), &names)
        .await
        .expect("reload");
    assert_eq!(applied.listeners_added, [extra]);
    assert_eq!(proxy.tether().local_addr(extra), Some(extra));
    // Serving as soon as the reload returned: no wait.
    for i in 0..3 {
        assert_eq!(answered_by(extra, &format!("/new/{i}")).await, "a");
    }
    assert_eq!(answered_by(proxy.addr, "/").await, "a", "the old one too");
}

#[tokio::test]
async fn a_removed_listen_stops_accepting_and_finishes_its_in_flight_request() {
    let a = Backend::start("a").await;
    let names = [("a", a.addr)];
    let extra = free_addr();
    let proxy = Proxy::start(&conf("server {a};", &[extra]), &names).await;

    // A keep-alive client of the listener about to go, with a long request in flight.
    let mut connection = Connection::open(extra).await;
    assert_eq!(connection.get("/").await.status, 200);
    let in_flight = tokio::spawn(async move {
        let reply = connection.get("/hold?ms=500").await;
        (reply, connection)
    });
    eventually(Duration::from_secs(5), "the held request at a", || {
        let arrived = a.seen().iter().any(|s| s.uri.starts_with("/hold"));
        async move { arrived }
    })
    .await;

    let applied = proxy
        .apply(&conf("server {a};", &[]), &names)
        .await
        .expect("reload");
    assert_eq!(applied.listeners_removed, [extra]);
    assert!(
        !in_flight.is_finished(),
        "the request was in flight during the reload"
    );
    refuses(extra).await;
    assert_eq!(proxy.tether().local_addr(extra), None);

    // The request in hand finishes, then the connection is closed.
    let (reply, connection) = in_flight.await.expect("the held request");
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "a held")
    );
    eventually(
        Duration::from_secs(5),
        "the retired connection closed",
        || {
            let closed = connection.is_closed();
            async move { closed }
        },
    )
    .await;
    assert_eq!(
        answered_by(proxy.addr, "/").await,
        "a",
        "the other listener serves"
    );
}

#[tokio::test]
async fn an_unchanged_listener_is_never_rebound() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let names = [("a", a.addr), ("b", b.addr)];
    let extra = free_addr();
    let proxy = Proxy::start(&conf("server {a};", &[extra]), &names).await;
    let bound = proxy.tether().local_addr(proxy.addr);
    // Clients connected before any reload: one idle keep-alive connection on each listener,
    // and steady traffic (keep-alive and new connections) on the first.
    let mut kept = Connection::open(proxy.addr).await;
    let mut kept_extra = Connection::open(extra).await;
    assert_eq!(kept.get("/").await.header("x-backend"), "a");
    assert_eq!(kept_extra.get("/").await.header("x-backend"), "a");
    let load = Load::start(proxy.addr);
    load.wait_served("a", 10).await;

    for (round, server) in ["b", "a", "b"].into_iter().enumerate() {
        proxy
            .apply(&conf(&format!("server {{{server}}};"), &[extra]), &names)
            .await
            .expect("reload");
        load.wait_served(server, 10).await;
        // The connections opened before are still open, and now see the new config.
        for connection in [&mut kept, &mut kept_extra] {
            let reply = connection.get(&format!("/round/{round}")).await;
            assert_eq!(
                (reply.status.as_u16(), reply.header("x-backend")),
                (200, server)
            );
            assert!(!connection.is_closed());
        }
    }
    assert_eq!(proxy.tether().local_addr(proxy.addr), bound);
    assert_eq!(proxy.tether().local_addr(extra), Some(extra));
    let tally = load.finish().await;
    assert!(
        tally.bad.is_empty(),
        "answers other than 200: {:?}",
        tally.bad
    );
    assert!(
        tally.errors.is_empty(),
        "a listener that stays never refuses or cuts: {:?}",
        tally.errors
    );
}

#[tokio::test]
async fn a_listen_that_cannot_be_bound_fails_the_reload_cleanly() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let names = [("a", a.addr), ("b", b.addr)];
    let proxy = Proxy::start(&conf("server {a};", &[]), &names).await;
    let occupied = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let taken = occupied.local_addr().expect("address");
    // A second new address that could be bound: the reload must not leave it bound either.
    let free = free_addr();

    let wanted = conf("server {b};", &[free, taken]);
    let error = match proxy.apply(&wanted, &names).await {
        Ok(_) => panic!("a reload onto an occupied port succeeded"),
        Err(error) => error,
    };
    match &error {
        StartError::Bind { addr, error } => {
            assert_eq!(*addr, taken);
            assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("a bind error, not {other}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("bind() to {taken} failed"))
    );
    assert_eq!(proxy.snapshot().generation, 1, "nothing was swapped");
    assert_eq!(proxy.tether().local_addrs(), [proxy.addr]);
    refuses(free).await;
    for i in 0..5 {
        assert_eq!(
            answered_by(proxy.addr, &format!("/{i}")).await,
            "a",
            "old config"
        );
    }

    // Once the port is free, the same config applies in full.
    drop(occupied);
    let applied = proxy.apply(&wanted, &names).await.expect("reload");
    assert_eq!(applied.new.generation, 2);
    let mut added = applied.listeners_added.clone();
    added.sort();
    let mut expected = vec![free, taken];
    expected.sort();
    assert_eq!(added, expected);
    for addr in [proxy.addr, free, taken] {
        assert_eq!(answered_by(addr, "/").await, "b", "on {addr}");
    }
}

/// `tether -c` binds as root and accepts only once it is the configured user: a client that
/// connects in between waits in the kernel's backlog and is answered after `open`, never
/// before (CI caught a root-served answer while the accept loops started at bind).
#[tokio::test(flavor = "current_thread")]
async fn a_bound_tether_answers_nobody_until_it_opens() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = free_addr();
    let text =
        format!("http {{ server {{ listen {addr}; location / {{ return 200 \"up\\n\"; }} }} }}");
    let config = tether::config::load_str(std::path::Path::new("t.conf"), &text, ".".as_ref())
        .expect("config");
    let tether = tether::runtime::Tether::bind(&config).await.expect("bind");
    // The handshake completes in the backlog; the request waits there.
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // One thread: while this read waits, every task tether spawned gets its turn, so an
    // accept loop started at bind would answer now.
    let early = tokio::time::timeout(Duration::from_millis(300), client.read(&mut [0; 1])).await;
    assert!(early.is_err(), "answered before open: {early:?}");

    tether.open();
    let mut answer = String::new();
    let read = client.read_to_string(&mut answer);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered after open")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("up\n"), "{answer}");
}
