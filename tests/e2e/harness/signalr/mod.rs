//! A SignalR hub server, speaking what ASP.NET Core's `app.MapHub<T>("/hubroute")` speaks, far
//! enough for the real `@microsoft/signalr` client:
//!
//! - `POST /hubroute/negotiate?negotiateVersion=1` issues a connection (id and token) and offers
//!   WebSockets, server-sent events and long polling;
//! - `/hubroute?id=TOKEN` is the connection: a WebSocket upgrade; a `GET` accepting
//!   `text/event-stream` (with `POST`s carrying what the client sends); or long polling (`GET`
//!   polls, the first answered at once; `POST` sends; `DELETE` ends);
//! - the JSON hub protocol over any of them (`connection.rs`).
//!
//! Connections live in this server's memory, so a request naming a token this server did not
//! issue gets 404, as from ASP.NET Core: what a farm without sticky sessions runs into. The
//! server counts what it saw — negotiations, connections by transport, invocations, unknown
//! tokens, connections still open — for tests of stickiness, draining and learned sessions.

mod connection;
mod transports;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use connection::{Binding, Connection};

/// Where the hub is mapped (the path of the nginx guide's `location /hubroute`).
pub const HUB_PATH: &str = "/hubroute";

/// How often a connection is pinged. ASP.NET Core's default is 15 s; a test's sessions last
/// well under that, so pings come quicker here (one is sent at once after each handshake).
const KEEP_ALIVE: Duration = Duration::from_millis(500);

type Body = BoxBody<Bytes, std::io::Error>;

/// The SignalR transports, as negotiation names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSockets,
    ServerSentEvents,
    LongPolling,
}

impl Transport {
    /// Every transport, in the order negotiation offers them.
    pub const ALL: [Transport; 3] = [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ];

    /// The name in a negotiate answer (and in the client's `HttpTransportType`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSockets => "WebSockets",
            Transport::ServerSentEvents => "ServerSentEvents",
            Transport::LongPolling => "LongPolling",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn transfer_formats(self) -> &'static [&'static str] {
        match self {
            Transport::ServerSentEvents => &["Text"],
            Transport::WebSockets | Transport::LongPolling => &["Text", "Binary"],
        }
    }
}

/// The state of one hub server, shared by its requests.
pub struct Hub {
    name: &'static str,
    keep_alive: Duration,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Every token ever issued, so a token from another server is told from a closed one.
    issued: Mutex<HashSet<String>>,
    stopping: CancellationToken,
    negotiations: AtomicUsize,
    bound: [AtomicUsize; 3],
    invocations: [AtomicUsize; 3],
    unknown_tokens: AtomicUsize,
    pings: AtomicUsize,
}

impl Hub {
    fn invoked(&self, transport: Option<Transport>) {
        if let Some(transport) = transport {
            self.invocations[transport.index()].fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pinged(&self) {
        self.pings.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends a connection and forgets it: later requests with its token get 404.
    fn remove(&self, connection: &Connection) {
        connection.end();
        self.connections
            .lock()
            .expect("no panics while holding it")
            .remove(&connection.token);
    }
}

/// A running hub server; stops accepting and ends its connections when dropped.
pub struct HubServer {
    /// Its name: what `WhoAmI` answers and what `Echo` adds.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    task: JoinHandle<()>,
}

impl HubServer {
    /// Starts a hub server called `name` on a loopback port.
    pub async fn start(name: &'static str) -> HubServer {
        HubServer::start_at(name, "127.0.0.1:0".parse().expect("an address")).await
    }

    /// As [`HubServer::start`], on `addr` (a server started again where one was stopped: it
    /// knows none of the connections the first one issued).
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> HubServer {
        let listener = TcpListener::bind(addr).await.expect("bind a hub server");
        let addr = listener.local_addr().expect("hub server address");
        let hub = Arc::new(Hub {
            name,
            keep_alive: KEEP_ALIVE,
            connections: Mutex::new(HashMap::new()),
            issued: Mutex::new(HashSet::new()),
            stopping: CancellationToken::new(),
            negotiations: AtomicUsize::new(0),
            bound: Default::default(),
            invocations: Default::default(),
            unknown_tokens: AtomicUsize::new(0),
            pings: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, hub.clone()));
        HubServer {
            name,
            addr,
            hub,
            task,
        }
    }

    /// Negotiations answered (connections issued).
    pub fn negotiations(&self) -> usize {
        self.hub.negotiations.load(Ordering::SeqCst)
    }

    /// Connections that started `transport` here.
    pub fn connections(&self, transport: Transport) -> usize {
        self.hub.bound[transport.index()].load(Ordering::SeqCst)
    }

    /// Hub method invocations received over `transport`.
    pub fn invocations(&self, transport: Transport) -> usize {
        self.hub.invocations[transport.index()].load(Ordering::SeqCst)
    }

    /// Requests naming a connection token this server never issued (each answered 404).
    pub fn unknown_tokens(&self) -> usize {
        self.hub.unknown_tokens.load(Ordering::SeqCst)
    }

    /// Pings sent to clients.
    pub fn pings(&self) -> usize {
        self.hub.pings.load(Ordering::SeqCst)
    }

    /// Connections issued and not yet ended.
    pub fn open(&self) -> usize {
        let connections = self
            .hub
            .connections
            .lock()
            .expect("no panics while holding it");
        connections.values().filter(|c| !c.is_ended()).count()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.task.abort();
        self.hub.stopping.cancel();
    }
}

async fn serve(listener: TcpListener, hub: Arc<Hub>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let stopping = hub.stopping.clone();
            let service = service_fn(move |req| answer(req, hub.clone()));
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            // A stopped server's kept-alive connections close with it, as a process's would.
            tokio::select! {
                _ = connection => {}
                () = stopping.cancelled() => {}
            }
        });
    }
}

async fn answer(req: Request<Incoming>, hub: Arc<Hub>) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path();
    if path == format!("{HUB_PATH}/negotiate") && req.method() == Method::POST {
        return Ok(negotiate(&req, &hub));
    }
    if path != HUB_PATH {
        return Ok(text(StatusCode::NOT_FOUND, ""));
    }
    let Some(token) = query_value(&req, "id") else {
        return Ok(text(StatusCode::BAD_REQUEST, "Connection ID required"));
    };
    let found = hub
        .connections
        .lock()
        .expect("no panics while holding it")
        .get(token)
        .cloned();
    let Some(connection) = found else {
        if !hub.issued.lock().expect("no panics").contains(token) {
            hub.unknown_tokens.fetch_add(1, Ordering::SeqCst);
        }
        return Ok(text(StatusCode::NOT_FOUND, "No Connection with that ID"));
    };
    match *req.method() {
        Method::GET => {
            let transport = requested_transport(&req);
            match connection.bind(transport) {
                Binding::Other(bound) => Ok(text(
                    StatusCode::BAD_REQUEST,
                    format!("Cannot change transports mid-connection ({bound:?})"),
                )),
                binding => {
                    if binding == Binding::First {
                        hub.bound[transport.index()].fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(transports::open(req, transport, binding, connection, hub).await)
                }
            }
        }
        Method::POST => transports::receive(req, connection, hub).await,
        Method::DELETE => Ok(transports::delete(&connection, &hub)),
        _ => Ok(text(StatusCode::METHOD_NOT_ALLOWED, "")),
    }
}

/// ASP.NET Core's choice: a WebSocket upgrade, else an event stream when the client accepts
/// one, else long polling.
fn requested_transport(req: &Request<Incoming>) -> Transport {
    let header_has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|value| value.to_ascii_lowercase().contains(token))
        })
    };
    if header_has(header::UPGRADE, "websocket") {
        Transport::WebSockets
    } else if header_has(header::ACCEPT, "text/event-stream") {
        Transport::ServerSentEvents
    } else {
        Transport::LongPolling
    }
}

/// Issues a connection. Negotiate version 1 gives the client a token apart from the id (the
/// id is public, the token is what requests name); version 0 names the connection by its id.
fn negotiate(req: &Request<Incoming>, hub: &Hub) -> Response<Body> {
    hub.negotiations.fetch_add(1, Ordering::SeqCst);
    let version: u64 = query_value(req, "negotiateVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let id = random_token();
    let token = if version >= 1 {
        random_token()
    } else {
        id.clone()
    };
    let connection = Arc::new(Connection::new(token.clone(), &hub.stopping));
    hub.issued.lock().expect("no panics").insert(token.clone());
    hub.connections
        .lock()
        .expect("no panics while holding it")
        .insert(token.clone(), connection);
    let transports: Vec<_> = Transport::ALL
        .iter()
        .map(|t| json!({ "transport": t.name(), "transferFormats": t.transfer_formats() }))
        .collect();
    let mut answer = json!({ "connectionId": id, "availableTransports": transports });
    if version >= 1 {
        answer["negotiateVersion"] = json!(1);
        answer["connectionToken"] = json!(token);
    }
    let mut response = text(StatusCode::OK, answer.to_string());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// 22 URL-safe characters, as ASP.NET Core's ids (so tokens need no escaping in a query).
fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

fn query_value<'r>(req: &'r Request<Incoming>, key: &str) -> Option<&'r str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let body = http_body_util::Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
