//! Load clients for lifecycle and soak tests: HTTP clients whose failures are values (a soak
//! counts them instead of panicking), many WebSockets held open and echoed at once, server-sent
//! events read piece by piece, a steady HTTP load that records every failure, and the figures a
//! report prints.
//!
//! Everything talks to 127.0.0.1 only, and every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::client::request;
use super::session::{Ws, eventually, websocket};
use super::{Reply, within};

// ---------------------------------------------------------------------------------------------
// Clients that report failures instead of panicking (a soak counts them).

/// Sends `request` on `sender`, reading the whole answer; any failure becomes text.
async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<Reply, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no response: {e}"))?;
    Reply::read(response)
        .await
        .map_err(|e| format!("body cut: {e}"))
}

/// An HTTP/1.1 connection whose failures are values.
pub struct TryConnection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl TryConnection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> Result<TryConnection, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(TryConnection { sender })
    }

    /// True once the connection can carry no more requests.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        exchange(&mut self.sender, request("GET", path, "")).await
    }
}

/// `GET path` on a fresh connection; failures (refused, cut, no answer) are values.
pub async fn try_get(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    TryConnection::open(addr).await?.get(path).await
}

/// Sends `GET path` on fresh connections until a backend named `name` answers (the sign that
/// a config naming it is serving); every answer must be a 200. Returns how many requests it
/// took. Fails the test after `limit`.
pub async fn until_answered_by(addr: SocketAddr, name: &str, limit: Duration) -> usize {
    within(limit, &format!("an answer from {name}"), async {
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = try_get(addr, "/")
                .await
                .unwrap_or_else(|e| panic!("a request failed while waiting for {name}: {e}"));
            assert_eq!(reply.status, 200, "{reply:?}");
            if reply.header("x-backend") == name {
                return tries;
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// WebSockets held open.

/// One WebSocket held open through a proxy, and the backend that answered its upgrade.
pub struct Held {
    /// The client stream.
    pub ws: Ws,
    /// `x-backend` of the 101.
    pub backend: String,
}

/// Opens `count` WebSockets on `/ws` through `addr`, `batch` handshakes at a time.
pub async fn open_websockets(addr: SocketAddr, count: usize, batch: usize) -> Vec<Held> {
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let n = batch.min(count - held.len());
        let opened =
            futures_util::future::join_all((0..n).map(|_| websocket(addr, "/ws", None))).await;
        held.extend(opened.into_iter().map(|(ws, response)| {
            let backend = response
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Held { ws, backend }
        }));
    }
    held
}

/// Sends `text` and expects it echoed within `limit`; the failure, if any, as text.
pub async fn echo(ws: &mut Ws, text: &str, limit: Duration) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match tokio::time::timeout(limit, ws.next()).await {
        Err(_) => Err(format!("no echo within {limit:?}")),
        Ok(None) => Err("closed".to_string()),
        Ok(Some(Err(e))) => Err(format!("read: {e}")),
        Ok(Some(Ok(message))) if message == Message::text(text) => Ok(()),
        Ok(Some(Ok(other))) => Err(format!("expected the echo, got {other:?}")),
    }
}

/// Echoes one message on every held WebSocket, `batch` at a time; returns the index and
/// failure of each that did not echo.
pub async fn echo_all(held: &mut [Held], tag: &str, batch: usize) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    for (chunk_index, chunk) in held.chunks_mut(batch).enumerate() {
        let results =
            futures_util::future::join_all(chunk.iter_mut().enumerate().map(|(i, h)| async move {
                let index = chunk_index * batch + i;
                let text = format!("{tag} #{index}");
                (index, echo(&mut h.ws, &text, Duration::from_secs(5)).await)
            }))
            .await;
        failed.extend(
            results
                .into_iter()
                .filter_map(|(index, result)| result.err().map(|e| (index, e))),
        );
    }
    failed
}

// ---------------------------------------------------------------------------------------------
// Server-sent events read piece by piece.

/// Reads the next complete event (`...\n\n`) from `body`, keeping what follows in `pending`.
pub async fn next_event(body: &mut hyper::body::Incoming, pending: &mut String) -> String {
    while !pending.contains("\n\n") {
        let frame = within(Duration::from_secs(5), "the next SSE event", body.frame())
            .await
            .expect("the event stream is still open")
            .expect("an event frame");
        if let Some(data) = frame.data_ref() {
            pending.push_str(std::str::from_utf8(data).expect("UTF-8 events"));
        }
    }
    let end = pending.find("\n\n").expect("a complete event") + 2;
    pending.drain(..end).collect()
}

// ---------------------------------------------------------------------------------------------
// Steady HTTP load.

/// Client tasks sending `GET /` back to back until stopped (or a cap is reached): one over a
/// single keep-alive connection, one over a fresh connection per request. Every answer must be
/// a 200 from a backend; anything else is recorded as a failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients against `addr`; each sends at most `cap` requests.
    pub fn start(addr: SocketAddr, cap: usize) -> Load {
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            failures: Arc::default(),
            tasks: Vec::new(),
        };
        let keep_alive = {
            let (stop, ok, failures) = (load.stop.clone(), load.ok.clone(), load.failures.clone());
            tokio::spawn(async move {
                let mut connection: Option<TryConnection> = None;
                for _ in 0..cap {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let outcome = match connection.as_mut() {
                        Some(c) => c.get("/").await,
                        None => match TryConnection::open(addr).await {
                            Ok(mut c) => {
                                let outcome = c.get("/").await;
                                connection = Some(c);
                                outcome
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if outcome.is_err() {
                        // A new connection next time; this one is not trusted any more.
                        connection = None;
                    }
                    record(outcome, "keep-alive", &ok, &failures);
                }
            })
        };
        let fresh = {
            let (stop, ok, failures) = (load.stop.clone(), load.ok.clone(), load.failures.clone());
            tokio::spawn(async move {
                for _ in 0..cap {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    record(try_get(addr, "/").await, "fresh", &ok, &failures);
                }
            })
        };
        Load {
            tasks: vec![keep_alive, fresh],
            ..load
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` further requests succeeded, so traffic really ran under
    /// the config now in force. Fails early with the failures if the clients hit any.
    pub async fn advance(&self, more: usize) {
        let target = self.ok() + more;
        eventually(Duration::from_secs(5), "the HTTP load to advance", || {
            let failures = self.failures.lock().unwrap().len();
            async move {
                assert_eq!(failures, 0, "HTTP requests failed: {:?}", self.failures());
                self.ok() >= target
            }
        })
        .await;
    }

    /// The failures so far, each with the client that saw it.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Stops the clients and waits for them; returns (successes, failures).
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            within(Duration::from_secs(5), "the load clients to stop", task)
                .await
                .expect("a load client panicked");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failures)
    }
}

fn record(
    outcome: Result<Reply, String>,
    client: &str,
    ok: &AtomicUsize,
    failures: &Mutex<Vec<String>>,
) {
    match outcome {
        Ok(reply) if reply.status == 200 && !reply.header("x-backend").is_empty() => {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(reply) => failures
            .lock()
            .unwrap()
            .push(format!("{client}: {} {:?}", reply.status, reply.body)),
        Err(error) => failures.lock().unwrap().push(format!("{client}: {error}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Figures for reports.

/// Median and maximum of some durations.
pub fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    (median, sorted.last().copied().unwrap_or_default())
}

/// Milliseconds with one decimal, for reports.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}
