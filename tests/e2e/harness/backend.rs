//! A named backend on 127.0.0.1:0 that counts hits and records what it saw; over TLS too
//! ([`Backend::start_tls`]), recording each handshake, or on a UNIX-domain socket
//! ([`Backend::start_unix`]).
//!
//! Routes (any method):
//! - `/hold?ms=N`          answer after N ms (long polling)
//! - `/sse?n=N[&accel=no]` N server-sent events, each released by [`Backend::release_event`]
//!   (with `X-Accel-Buffering: no` when asked)
//! - `/download?bytes=N`   N bytes, streamed in 64 KiB chunks
//! - `/upload`             reads the body, answers `bytes=N sum=S`
//! - `/ws`                 WebSocket echo (tungstenite answers pings and the close handshake);
//!   the first subprotocol offered, if any, is the one chosen
//! - `/status?code=N`      an empty answer with that status
//! - `/drop`               closes the connection without answering
//! - anything else         `NAME` with header `x-backend: NAME`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::tls_backend::Handshake;

type Body = BoxBody<Bytes, std::io::Error>;

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// HTTP version the request arrived with.
    pub version: http::Version,
    /// Headers as received.
    pub headers: HeaderMap,
}

impl Seen {
    /// A header's value as text ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Where backends listen unless told otherwise: 127.0.0.1, any free port.
const LOOPBACK_ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

struct State {
    name: &'static str,
    seen: Mutex<Vec<Seen>>,
    hits: AtomicUsize,
    connections: AtomicUsize,
    events: Semaphore,
    handshakes: Mutex<Vec<Handshake>>,
}

/// A running backend; stops accepting when dropped.
pub struct Backend {
    /// Its name (the body of its default answer).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Backends named `names`, started one after the other.
    pub async fn start_all<const N: usize>(names: [&'static str; N]) -> [Backend; N] {
        let mut started = Vec::with_capacity(N);
        for name in names {
            started.push(Backend::start(name).await);
        }
        match started.try_into() {
            Ok(all) => all,
            Err(_) => unreachable!("one backend per name"),
        }
    }

    /// Starts a backend called `name`.
    pub async fn start(name: &'static str) -> Backend {
        Backend::start_with(name, None, LOOPBACK_ANY_PORT).await
    }

    /// Starts a backend called `name` on `addr` (another loopback address than 127.0.0.1, so
    /// several listen on one port as pods behind one DNS name do).
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> Backend {
        Backend::start_with(name, None, addr).await
    }

    /// Starts a backend called `name` that speaks only TLS, with `config`: it records every
    /// handshake ([`Backend::handshakes`]), and answers as a plain one does.
    pub async fn start_tls(name: &'static str, config: Arc<rustls::ServerConfig>) -> Backend {
        Backend::start_with(name, Some(TlsAcceptor::from(config)), LOOPBACK_ANY_PORT).await
    }

    /// Starts a backend called `name` listening on the UNIX-domain socket `path` (its `addr`
    /// is unspecified).
    pub async fn start_unix(name: &'static str, path: &std::path::Path) -> Backend {
        let listener = UnixListener::bind(path).expect("bind the backend's socket");
        let state = Arc::new(State {
            name,
            seen: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            events: Semaphore::new(0),
            handshakes: Mutex::new(Vec::new()),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                serving.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_connection(TokioIo::new(stream), serving.clone()));
            }
        });
        Backend {
            name,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            state,
            task,
        }
    }

    async fn start_with(name: &'static str, tls: Option<TlsAcceptor>, at: SocketAddr) -> Backend {
        let listener = TcpListener::bind(at).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let state = Arc::new(State {
            name,
            seen: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            events: Semaphore::new(0),
            handshakes: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone(), tls));
        Backend {
            name,
            addr,
            state,
            task,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (how well the proxy reuses its upstream connections).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The TLS handshakes completed so far, in order (a TLS backend's).
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.state.handshakes.lock().unwrap().clone()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the backend saw a request")
    }

    /// Lets the SSE stream(s) send one more event.
    pub fn release_event(&self) {
        self.state.events.add_permits(1);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                return serve_connection(TokioIo::new(stream), state).await;
            };
            // A failed handshake (a client that does not trust us, or has no certificate
            // when one is required) just closes the connection.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let handshake = Handshake::of(stream.get_ref().1);
            state.handshakes.lock().unwrap().push(handshake);
            serve_connection(TokioIo::new(stream), state).await;
        });
    }
}

async fn serve_connection<I>(io: TokioIo<I>, state: Arc<State>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| answer(req, state.clone()));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .await;
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(query: &HashMap<String, String>, key: &str, default: u64) -> u64 {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let body = http_body_util::Full::new(text.into())
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

async fn answer(
    mut req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, std::io::Error> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let query = query(&req);
    let mut response = match req.uri().path() {
        "/hold" => {
            tokio::time::sleep(Duration::from_millis(number(&query, "ms", 0))).await;
            full(StatusCode::OK, format!("{} held", state.name))
        }
        "/sse" => sse(
            state.clone(),
            number(&query, "n", 1),
            query.get("accel").map(String::as_str) == Some("no"),
        ),
        "/download" => download(number(&query, "bytes", 0)),
        "/upload" => {
            let mut body = req.into_body();
            let (mut bytes, mut sum) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                    sum = data.iter().fold(sum, |s, &b| s.wrapping_add(b as u64));
                }
            }
            full(StatusCode::OK, format!("bytes={bytes} sum={sum}"))
        }
        "/ws" => websocket(&mut req),
        "/status" => {
            let code = number(&query, "code", 200) as u16;
            full(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), "")
        }
        "/drop" => return Err(std::io::Error::other("dropping the connection on purpose")),
        // A session the application opens, under any prefix: `Set-Cookie: sid=SID` (what
        // `sticky learn create=$upstream_cookie_sid` learns).
        path if path.ends_with("/login") => {
            let sid = query.get("sid").map_or("", String::as_str);
            let mut response = full(StatusCode::OK, state.name);
            let cookie = HeaderValue::from_str(&format!("sid={sid}; Path=/"));
            if let Ok(cookie) = cookie {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        _ => full(StatusCode::OK, state.name),
    };
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_static(state.name));
    Ok(response)
}

/// Events `data: NAME i`, each sent only when the test releases it: a test that waits for event
/// i before releasing i+1 proves the proxy delivers each event on its own.
fn sse(state: Arc<State>, count: u64, accel_buffering_no: bool) -> Response<Body> {
    let stream = futures_util::stream::unfold(0u64, move |i| {
        let state = state.clone();
        async move {
            if i == count {
                return None;
            }
            let permit = state.events.acquire().await.ok()?;
            permit.forget();
            let event = Bytes::from(format!("data: {} {i}\n\n", state.name));
            Some((Ok::<_, std::io::Error>(Frame::data(event)), i + 1))
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    if accel_buffering_no {
        response
            .headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    response
}

fn download(total: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![7u8; CHUNK as usize]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = CHUNK.min(total - sent);
            Some((
                Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n as usize))),
                sent + n,
            ))
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    response
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let subprotocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|offered| offered.to_str().ok())
        .and_then(|offered| offered.split(',').next())
        .and_then(|first| HeaderValue::from_str(first.trim()).ok());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = full(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header"),
    );
    if let Some(subprotocol) = subprotocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, subprotocol);
    }
    response
}
