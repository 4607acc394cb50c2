//! The WebSocket `map` the shipped configs carry (`conf/tether.conf`): an upgrade still reaches
//! the app as an upgrade, and plain requests keep their upstream connection alive. The idiom
//! most guides print (`'' close;`) sends `Connection: close` upstream on every plain request,
//! which tether honours — one upstream connection per request (`http1.rs` shows that).

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::client::Connection;
use crate::harness::{Backend, Proxy, within};

/// The `map $http_upgrade $connection_upgrade { ... }` block of `conf/tether.conf`, as shipped.
fn shipped_map() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tether.conf");
    let text = std::fs::read_to_string(path).expect("read conf/tether.conf");
    let start = text
        .find("map $http_upgrade $connection_upgrade")
        .expect("conf/tether.conf has the WebSocket map");
    let end = start + text[start..].find('}').expect("the map's end") + 1;
    text[start..end].to_string()
}

#[tokio::test]
async fn the_shipped_upgrade_map_keeps_upstream_keep_alive_and_upgrades() {
    let a = Backend::start("a").await;
    let conf = format!(
        "events {{}} http {{ {} upstream up {{ server {{a}}; keepalive 8; }} \
         server {{ listen {{listen}}; location / {{ proxy_pass http://up; \
         proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
         proxy_set_header Connection $connection_upgrade; }} }} }}",
        shipped_map()
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let mut client = Connection::open(proxy.addr).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").await.status, 200);
    }
    assert_ne!(a.last().header("connection"), "close");
    assert_eq!(
        a.connections(),
        1,
        "three plain requests on one upstream connection"
    );

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, response) = within(
        std::time::Duration::from_secs(10),
        "the WebSocket handshake",
        client_async(proxy.url("/ws").replace("http", "ws"), stream),
    )
    .await
    .expect("WebSocket handshake through tether");
    assert_eq!(response.status(), 101);
    assert!(
        a.last()
            .header("connection")
            .to_ascii_lowercase()
            .contains("upgrade")
    );
    ws.send(Message::text("hi")).await.unwrap();
    let echoed = within(std::time::Duration::from_secs(10), "the echo", ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap(), Message::text("hi"));
}
