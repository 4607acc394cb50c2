//! The accept loop of one listener and the start of each client connection: admission under
//! the connection ceiling, the PROXY protocol header where the listener expects one, the wait
//! for the first bytes, and the hand-off to the HTTP/1 or HTTP/2 server.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::config::model::UNIX_PEER;
use crate::heap::Recycled;
use crate::inflight::{Inflight, Token};
use crate::proxy::{ConnInfo, TunnelControl};
use crate::server::Bound;
use crate::server::ceiling::{Admission, Ceiling};
use crate::server::h2;
use crate::server::http1;
use crate::server::http1::head::Rejection;
use crate::server::http1::timer::IdleTimer;
use crate::server::proxy_protocol::{self, Refusal};
use crate::server::sniff::{self, Opening};
use crate::server::socket::{Accepted, accepted_inherit_nodelay};
use crate::server::tls::{self, Refused};
use crate::snapshot::{ConnectionStart, Snapshot};
use crate::stream::MaybeTls;
use crate::telemetry::{ListenerToken, Telemetry, Throttle, errno};

/// The signals and counts a stop works with (connections themselves are told through the
/// ceiling's table).
#[derive(Clone)]
pub struct Lifecycle {
    /// True: end every tunnel (WebSockets get a close frame).
    pub close_tunnels: CancellationToken,
    /// Open client connections.
    pub connections: Arc<Inflight>,
    /// Open tunnels.
    pub tunnels: Arc<Inflight>,
    /// The process's and listeners' counters, for the status pages.
    pub telemetry: Arc<Telemetry>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        let connections = Arc::<Inflight>::default();
        let tunnels = Arc::<Inflight>::default();
        Lifecycle {
            close_tunnels: CancellationToken::new(),
            telemetry: Arc::new(Telemetry::new(connections.clone(), tunnels.clone())),
            connections,
            tunnels,
        }
    }
}

/// Accepts connections until the listener is retired or tether stops, serving each in a task
/// of its own. Retiring only stops accepting: open connections finish their requests.
pub async fn accept_loop(
    listener: Bound,
    listen: SocketAddr,
    live: Arc<ArcSwap<Snapshot>>,
    ceiling: Arc<Ceiling>,
    lifecycle: Lifecycle,
    mut retired: watch::Receiver<bool>,
) {
    // A listener bound to one address accepts only on it: its connections' local address is
    // known without a getsockname() each. Only a wildcard listener has to ask.
    // A UNIX-domain listener's connections are known by its key (`$server_addr` names the
    // path from it).
    let bound = match &listener {
        Bound::Tcp(tcp) => tcp
            .local_addr()
            .ok()
            .filter(|bound| !bound.ip().is_unspecified()),
        Bound::Unix(..) => Some(listen),
    };
    // TCP_NODELAY comes with each accepted socket where the listener passes it on.
    let inherit_nodelay = match &listener {
        Bound::Tcp(tcp) => accepted_inherit_nodelay(tcp),
        Bound::Unix(..) => true,
    };
    let accept_failures = Throttle::default();
    // Shared by the listener's connections: cloning its cancellation token per connection
    // would lock the token's node twice (clone and drop).
    let tunnels = Arc::new(TunnelControl {
        close: lifecycle.close_tunnels.clone(),
        open: lifecycle.tunnels.clone(),
    });
    // Looked up once per listener, kept across reloads by the telemetry.
    let stats = lifecycle.telemetry.listener(listen);
    if *retired.borrow() {
        return;
    }
    loop {
        // Admission and the accept come first when they are ready at once, as they are under
        // load: the retirement is then asked by a version compare, not by a wait registered
        // and dropped on the watch per connection (and no random branch order). A retired
        // listener under a steady stream of connections still stops here.
        if is_retired(&retired) {
            return;
        }
        let admission = tokio::select! {
            biased;
            admission = ceiling.admit(listen) => admission,
            _ = retired.wait_for(|retired| *retired) => return,
        };
        let accepted = tokio::select! {
            biased;
            accepted = accept(&listener) => accepted,
            _ = retired.wait_for(|retired| *retired) => return,
        };
        match accepted {
            Ok((stream, client)) => {
                // Small writes (SSE events, WebSocket frames, response heads) must leave at
                // once.
                if let (false, Accepted::Tcp(tcp)) = (inherit_nodelay, &stream) {
                    let _ = tcp.set_nodelay(true);
                }
                let local = bound.unwrap_or_else(|| stream.tcp_local_addr().unwrap_or(listen));
                let conn = plain_conn((client, local, listen), &tunnels, &lifecycle.telemetry);
                let token = lifecycle.connections.enter();
                let counted = stats.accept();
                let slot = admission.slot.clone();
                let task = tokio::spawn(connection_task(
                    stream,
                    conn,
                    live.clone(),
                    admission,
                    (token, counted),
                ));
                slot.set_abort(task.abort_handle());
                // Accepted as the listener was retired: it is told like the others were.
                if is_retired(&retired) {
                    ceiling.retire(Some(listen));
                }
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning, and say so
                // once a second, not at every retry.
                if let Some(unlogged) = accept_failures.allow() {
                    let what = match errno::os_error(&error) {
                        Some(os) => format!("accept4() failed ({os})"),
                        None => format!("accept4() failed ({error})"),
                    };
                    tracing::error!(
                        %listen,
                        times_since_last_line = unlogged,
                        "{what}: new clients wait; raise the open-file limit or lower \
                         worker_connections"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a newly accepted connection is, before any TLS or PROXY protocol header: plain
/// `http` from `client` to `local`, accepted on `listen`.
fn plain_conn(
    (client, local, listen): (SocketAddr, SocketAddr, SocketAddr),
    tunnels: &Arc<TunnelControl>,
    telemetry: &Arc<Telemetry>,
) -> ConnInfo {
    ConnInfo {
        serial: crate::proxy::next_connection_serial(),
        requests: Default::default(),
        client,
        local,
        listen,
        scheme: "http",
        tunnels: tunnels.clone(),
        tls: None,
        proxy_protocol: None,
        telemetry: telemetry.clone(),
    }
}

/// True once the listener is retired or whoever retires it is gone. While nothing was sent,
/// one atomic version compare; once anything was, the value is read (and stays read: the
/// change is not marked seen, so the answer never goes back to false).
fn is_retired(retired: &watch::Receiver<bool>) -> bool {
    match retired.has_changed() {
        Ok(false) => false,
        Ok(true) => *retired.borrow(),
        Err(_) => true,
    }
}

/// Accepts one connection: a UNIX-domain client's address is [`UNIX_PEER`] (nginx's
/// `$remote_addr` of `unix:`).
async fn accept(listener: &Bound) -> std::io::Result<(Accepted, SocketAddr)> {
    match listener {
        Bound::Tcp(tcp) => {
            let (stream, client) = tcp.accept().await?;
            Ok((Accepted::Tcp(stream), client))
        }
        Bound::Unix(unix, _) => {
            let (stream, _) = unix.accept().await?;
            Ok((Accepted::Unix(stream), UNIX_PEER))
        }
    }
}

/// The task spawned per accepted connection: [`serve_connection`] behind one pointer. The
/// connection's future holds the request path's state (~10 KiB), and tokio moves a spawned
/// future whole about ten times over a task's life (into its cell, and at every stage change):
/// unboxed, those copies cost ~100k instructions per connection, more than everything else a
/// connection does. On the heap once, they move a pointer; and the block is the one the last
/// connection on this thread closed ([`Recycled`]), not a fresh trip through the allocator.
fn connection_task(
    stream: Accepted,
    conn: ConnInfo,
    live: Arc<ArcSwap<Snapshot>>,
    admission: Admission,
    tokens: (Token, ListenerToken),
) -> Recycled<impl Future<Output = ()> + Send + use<>> {
    // The block first and the future written in it: built on the stack and then moved in,
    // it would be copied whole once.
    Recycled::write(
        Recycled::new_uninit(),
        serve_connection(stream, conn, live, admission, tokens),
    )
}

/// Serves one client connection (HTTP/1.1 with keep-alive and upgrades, or HTTP/2 by prior
/// knowledge) until it closes, its listener is retired (then it finishes the request in hand
/// and closes), the ceiling sheds it while idle, or tether stops (the task is aborted). A
/// client that sends nothing within `client_header_timeout` is closed, as nginx does.
async fn serve_connection(
    stream: Accepted,
    mut conn: ConnInfo,
    live: Arc<ArcSwap<Snapshot>>,
    admission: Admission,
    (_token, counted): (Token, ListenerToken),
) {
    let (
        settings,
        ConnectionStart {
            tls,
            proxy_protocol,
        },
    ) = {
        let snapshot = live.load();
        (snapshot.client, snapshot.connection_start(conn.listen))
    };
    let header_timeout = settings.header_timeout;
    let slot = &*admission.slot;
    // The connection's one timer: the first request's head is due client_header_timeout after
    // the accept (nginx sets its timer then, and the first bytes do not set it again), and the
    // HTTP/1 server keeps the same timer for its later waits — one timer registration per
    // connection. The HTTP/2 server times its connection itself: for it the timer is dropped
    // (in an Option to be droppable in place), or it would wake the task once, for nothing,
    // at its deadline.
    let mut first_head_due = pin!(Some(sleep_until(Instant::now() + header_timeout)));
    // Some: it was set on the line above.
    let sleep = first_head_due
        .as_mut()
        .as_pin_mut()
        .expect("the timer was just set");
    let mut timer = IdleTimer::new(sleep);
    if proxy_protocol {
        // Before TLS and the sniff: the balancer's header comes first, and counts against
        // client_header_timeout like the rest of the first request's head (nginx too).
        let read = tokio::select! {
            read = timeout(header_timeout, proxy_protocol::read(stream.as_ref())) => read,
            () = slot.told_to_go() => return,
        };
        let client = conn.client;
        match read {
            Ok(Ok(proxied)) => {
                conn.proxy_protocol = proxied;
                // The client's own head gets a whole client_header_timeout of its own.
                timer.set(Instant::now() + header_timeout);
            }
            Ok(Err(Refusal::Empty)) => {
                tracing::debug!(%client, "closed before its PROXY protocol header");
                return;
            }
            Ok(Err(refusal)) => {
                tracing::warn!(%client, "{refusal}; connection closed");
                return;
            }
            Err(_) => {
                let reason = "no PROXY protocol header within client_header_timeout";
                tracing::warn!(%client, "{reason}; connection closed");
                return;
            }
        }
    }
    // The client's first bytes, read by the sniff (nothing is read apart inside TLS).
    let mut first_read = BytesMut::new();
    // TLS is only ever configured on TCP listeners (`listen unix:` refuses `ssl`).
    let (stream, opening) = match stream {
        Accepted::Tcp(stream) if tls => {
            // The handshake counts as part of the first request's head, as in nginx: a client
            // that stalls in it is closed after client_header_timeout.
            let handshake = tokio::select! {
                handshake = timeout(header_timeout, tls::handshake(stream, conn.listen, &live)) => handshake,
                () = slot.told_to_go() => return,
            };
            let client = conn.client;
            match handshake {
                Ok(Ok(done)) => {
                    counted.tls_handshake(true);
                    // The first head gets a whole client_header_timeout after the handshake.
                    timer.set(Instant::now() + header_timeout);
                    // ALPN decided the protocol; nothing is sniffed inside TLS.
                    let opening = if done.tls.http2 {
                        Opening::Http2
                    } else {
                        Opening::Http1
                    };
                    conn.scheme = "https";
                    conn.tls = Some(Box::new(done.tls));
                    (MaybeTls::Tls(done.stream), opening)
                }
                Ok(Err(Refused::PlainHttp(tcp))) => {
                    let rejection = Rejection::PLAIN_HTTP_TO_TLS;
                    http1::refuse(tcp.into(), Arc::new(conn), slot, rejection, &settings).await;
                    return;
                }
                Ok(Err(Refused::Closed(reason))) => {
                    counted.tls_handshake(false);
                    tracing::info!(client = %client.ip(), "TLS: {reason}");
                    return;
                }
                Err(_) => {
                    counted.tls_handshake(false);
                    tracing::info!(client = %client.ip(), "TLS handshake timed out (client_header_timeout)");
                    return;
                }
            }
        }
        stream => {
            // Nothing is in hand before the first byte: retiring the listener, or the ceiling
            // shedding this connection, closes it at once too. The wait is bounded by the
            // connection's own timer, which the HTTP/1 server goes on with.
            let opening = {
                let mut sniff = pin!(sniff::opening(stream.as_ref(), &mut first_read));
                poll_fn(|cx| {
                    if let Poll::Ready(opening) = sniff.as_mut().poll(cx) {
                        return Poll::Ready(Some(opening));
                    }
                    let told = slot.poll_told(cx);
                    if told.shed || told.retired || timer.poll_expired(cx) {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await
            };
            match opening {
                Some(Ok(opening)) => (stream.into_stream(), opening),
                Some(Err(error)) => {
                    tracing::debug!(%error, "client connection failed before its first request");
                    return;
                }
                // Told to go, or silent past client_header_timeout.
                None => return,
            }
        }
    };
    let conn = Arc::new(conn);
    match opening {
        Opening::Http2 => {
            // `timer`, the borrow of it, is not used again.
            first_head_due.set(None);
            h2::serve(stream, first_read.freeze(), conn, live, slot).await;
        }
        Opening::Http1 => {
            http1::serve(stream, first_read, conn, live, slot, (timer, settings)).await
        }
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
