//! The accept loop of one listener and the serving of one client connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::{Config, WorkerProcesses};
use crate::proxy::{self, ConnInfo};
use crate::server::Shared;

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

/// Accepts connections until `stop` turns true, serving each in a task of its own.
pub async fn accept_loop(
    listener: TcpListener,
    listen: SocketAddr,
    shared: Arc<Shared>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = limits.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((stream, client)) => {
                let conn = ConnInfo {
                    client,
                    local: stream.local_addr().unwrap_or(listen),
                    listen,
                    scheme: "http",
                };
                tokio::spawn(serve_connection(
                    stream,
                    conn,
                    shared.clone(),
                    permit,
                    stop.clone(),
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

/// Serves one client connection (HTTP/1.1 with keep-alive and upgrades, or HTTP/2 by prior
/// knowledge) until it closes or tether stops.
async fn serve_connection(
    stream: TcpStream,
    conn: ConnInfo,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    // Small writes (SSE events, WebSocket frames, response heads) must leave at once.
    let _ = stream.set_nodelay(true);
    let (header_timeout, keep_alive) = {
        let snapshot = shared.snapshot.load();
        (
            snapshot.client_header_timeout,
            !snapshot.keepalive_timeout.is_zero(),
        )
    };
    let conn = Arc::new(conn);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let conn = conn.clone();
        async move {
            let snapshot = shared.snapshot.load_full();
            Ok::<_, Infallible>(proxy::handle(request, &conn, &snapshot).await)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper starts this timer whenever it waits for a request head, so it also closes idle
        // keep-alive connections.
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "client connection ended with an error");
            }
        }
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}
