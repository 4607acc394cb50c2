//! Sessions through tether: requests carrying a cookie, reading `Set-Cookie`, WebSockets opened
//! with a cookie, a peer's live state by address, polling a condition — and a [`Gate`], which
//! stops and restarts a server on the *same* address, as a crashed-then-restarted app server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether::peer::Peer;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response as WsResponse;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async};

use super::client::request;
use super::{Proxy, Reply, send, within};

/// A WebSocket client stream as tungstenite gives it.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `GET path` on a fresh connection with `Cookie: cookie` (e.g. `srv=0123...`).
pub async fn get_with_cookie(addr: SocketAddr, path: &str, cookie: &str) -> Reply {
    let mut req = request("GET", path, "");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("a valid Cookie header"));
    send(addr, req).await
}

/// Every `Set-Cookie` header of a reply, as text.
pub fn set_cookies(reply: &Reply) -> Vec<&str> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("a Set-Cookie in ASCII"))
        .collect()
}

/// The value the reply's `Set-Cookie` gives cookie `name`, if it sets it.
pub fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// Opens a WebSocket on `path` through `addr`, with `Cookie: cookie` when given; returns the
/// stream and the 101 response (its headers: `Set-Cookie`, `x-backend`).
pub async fn websocket(addr: SocketAddr, path: &str, cookie: Option<&str>) -> (Ws, WsResponse) {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a WebSocket URL");
    if let Some(cookie) = cookie {
        req.headers_mut()
            .insert("cookie", cookie.parse().expect("a valid Cookie header"));
    }
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (ws, response) = within(
        Duration::from_secs(5),
        "the WebSocket handshake",
        client_async(req, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("WebSocket handshake through tether");
    assert_eq!(response.status(), 101);
    (ws, response)
}

/// The live peer of server `addr` (as written: `127.0.0.1:PORT`) in group `group`.
pub fn peer(proxy: &Proxy, group: &str, addr: SocketAddr) -> Arc<Peer> {
    let snapshot = proxy.snapshot();
    let upstream = snapshot
        .upstream(group)
        .unwrap_or_else(|| panic!("no upstream {group:?}"));
    let written = addr.to_string();
    upstream
        .members()
        .iter()
        .find(|m| *m.peer.key.address == *written)
        .unwrap_or_else(|| panic!("no server {written} in {group:?}"))
        .peer
        .clone()
}

/// Waits, up to `limit`, until `condition` holds, checking it every 10 ms; a bounded wait on a
/// condition, never a guess at how long something takes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(limit, what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// [`eventually`] for a condition that needs no waiting of its own, up to ten seconds.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    eventually(Duration::from_secs(10), what, || {
        std::future::ready(condition())
    })
    .await;
}

/// A TCP relay on a fixed address in front of a server. Closing it stops the listener and cuts
/// every connection through it (the address then refuses connections, as a stopped process);
/// reopening listens on the same address again. Whatever is behind keeps its counters.
pub struct Gate {
    /// The address the proxy is told about.
    pub addr: SocketAddr,
    target: SocketAddr,
    /// The accept loop and every relayed connection while open.
    tasks: Vec<JoinHandle<()>>,
    relays: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Gate {
    /// Opens a gate on a new ephemeral address in front of `target`.
    pub async fn open(target: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let mut gate = Gate {
            addr: listener.local_addr().expect("gate address"),
            target,
            tasks: Vec::new(),
            relays: Arc::default(),
        };
        gate.serve(listener);
        gate
    }

    /// Stops listening and cuts every connection through the gate; returns once the address
    /// refuses connections.
    pub async fn close(&mut self) {
        // The accept loop first, so no relay starts after the others are taken.
        for task in self.tasks.drain(..) {
            task.abort();
            // An aborted task's future (here, the listener) is dropped before this returns.
            let _ = task.await;
        }
        let relays: Vec<_> = std::mem::take(&mut *self.relays.lock().unwrap());
        for task in relays {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same address again.
    pub async fn reopen(&mut self) {
        assert!(self.tasks.is_empty(), "the gate is already open");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("rebind the gate's address");
        let listener = socket.listen(1024).expect("listen");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (target, relays) = (self.target, self.relays.clone());
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut relays = relays.lock().unwrap();
                relays.retain(|r| !r.is_finished());
                relays.push(relay);
            }
        }));
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.relays.lock().unwrap().iter()) {
            task.abort();
        }
    }
}
