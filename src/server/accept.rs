//! The accept loop of one listener and the serving of one client connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;
use std::pin::pin;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WorkerProcesses};
use crate::inflight::{Inflight, Token};
use crate::proxy::{self, ClientBody, ConnInfo, TunnelControl};
use crate::server::Shared;
use crate::server::http1::{self, Stops};
use crate::server::sniff::{self, Opening};

/// Connection limits from the config.
#[derive(Clone)]
pub struct Limits {
    /// `worker_connections` × workers: past this, accepting waits (backpressure, not refusal).
    connections: Arc<Semaphore>,
}

impl Limits {
    /// Limits for `config`.
    pub fn from_config(config: &Config) -> Limits {
        let workers = match config.worker_processes {
            WorkerProcesses::Count(n) => n.max(1),
            WorkerProcesses::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Limits {
            connections: Arc::new(Semaphore::new(config.worker_connections.max(1) * workers)),
        }
    }
}

/// The signals and counts a stop works with.
#[derive(Clone)]
pub struct Lifecycle {
    /// True: close every connection now (fast stop).
    pub stop: Arc<watch::Sender<bool>>,
    /// True: end every tunnel (WebSockets get a close frame).
    pub close_tunnels: CancellationToken,
    /// Open client connections.
    pub connections: Arc<Inflight>,
    /// Open tunnels.
    pub tunnels: Arc<Inflight>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            stop: Arc::new(watch::channel(false).0),
            close_tunnels: CancellationToken::new(),
            connections: Arc::default(),
            tunnels: Arc::default(),
        }
    }
}

/// Accepts connections until the listener is retired or tether stops, serving each in a task
/// of its own. Retiring only stops accepting: open connections finish their requests.
pub async fn accept_loop(
    listener: TcpListener,
    listen: SocketAddr,
    shared: Arc<Shared>,
    limits: Limits,
    lifecycle: Lifecycle,
    mut retired: watch::Receiver<bool>,
) {
    // A listener bound to one address accepts only on it: its connections' local address is
    // known without a getsockname() each. Only a wildcard listener has to ask.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|bound| !bound.ip().is_unspecified());
    loop {
        let permit = tokio::select! {
            permit = limits.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = retired.wait_for(|retired| *retired) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = retired.wait_for(|retired| *retired) => return,
        };
        match accepted {
            Ok((stream, client)) => {
                let conn = ConnInfo {
                    client,
                    local: bound.unwrap_or_else(|| stream.local_addr().unwrap_or(listen)),
                    listen,
                    scheme: "http",
                    tunnels: TunnelControl {
                        close: lifecycle.close_tunnels.clone(),
                        open: lifecycle.tunnels.clone(),
                    },
                };
                let token = lifecycle.connections.enter();
                let signals = Signals {
                    retired: retired.clone(),
                    stop: lifecycle.stop.subscribe(),
                };
                tokio::spawn(serve_connection(
                    stream,
                    conn,
                    shared.clone(),
                    permit,
                    token,
                    signals,
                ));
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::error!(%listen, %error, "accept() failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What ends a connection early: its listener retired (finish gracefully) or a fast stop.
struct Signals {
    retired: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

/// Serves one client connection (HTTP/1.1 with keep-alive and upgrades, or HTTP/2 by prior
/// knowledge) until it closes, its listener is retired (then it finishes the request in hand
/// and closes), or tether stops. A client that sends nothing within `client_header_timeout`
/// is closed, as nginx does.
async fn serve_connection(
    stream: TcpStream,
    conn: ConnInfo,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    _token: Token,
    mut signals: Signals,
) {
    // Small writes (SSE events, WebSocket frames, response heads) must leave at once.
    let _ = stream.set_nodelay(true);
    let header_timeout = shared.snapshot.load().client.header_timeout;
    // Nothing is in hand before the first byte: retiring the listener closes at once too.
    let opening = tokio::select! {
        opening = timeout(header_timeout, sniff::opening(&stream)) => opening,
        _ = signals.retired.wait_for(|retired| *retired) => return,
        _ = signals.stop.wait_for(|stop| *stop) => return,
    };
    let opening = match opening {
        Ok(Ok(opening)) => opening,
        Ok(Err(error)) => {
            tracing::debug!(%error, "client connection failed before its first request");
            return;
        }
        Err(_) => return, // Silent past client_header_timeout.
    };
    let conn = Arc::new(conn);
    match opening {
        Opening::Http2 => {
            let service = service_fn(move |request: Request<Incoming>| {
                let request = request.map(ClientBody::http2);
                let response =
                    proxy::serve(request, None, conn.clone(), shared.snapshot.load_full());
                async move { Ok::<_, Infallible>(response.await) }
            });
            // Boxed: HTTP/2 by prior knowledge is the rare case here, and its connection state
            // (1.5 KB) inline would size every connection's task for it.
            let mut connection = Box::pin(
                http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
            drive(connection.as_mut(), |c| c.graceful_shutdown(), signals).await;
        }
        Opening::Http1 => {
            let Signals {
                mut retired,
                mut stop,
            } = signals;
            let stop = pin!(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            });
            let retired = pin!(async move {
                let _ = retired.wait_for(|retired| *retired).await;
            });
            http1::serve(stream, conn, shared, Stops::new(stop, retired)).await;
        }
    }
}

/// Runs a hyper connection to its end: asked to finish gracefully (answer what is in hand with
/// `Connection: close` or GOAWAY) when its listener retires, dropped at once on a fast stop.
/// The connection is borrowed where the caller pinned it, so the task holds it once.
async fn drive<C>(
    mut connection: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    mut signals: Signals,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "client connection ended with an error");
                }
                return;
            }
            _ = signals.retired.wait_for(|retired| *retired), if !draining => {
                graceful_shutdown(connection.as_mut());
                draining = true;
            }
            _ = signals.stop.wait_for(|stop| *stop) => return,
        }
    }
}
