//! Tests of the accept path: the size of what is spawned per connection, and the connection's
//! one timer once the sniff has handed the connection on.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::peer::PeerRegistry;

/// The size of the future a function of five arguments returns, without calling it.
fn future_size<A, B, C, D, E, F: Future>(_: fn(A, B, C, D, E) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// What is spawned per accept is moved by tokio about ten times: it must be a pointer, not
/// the connection's kilobytes (unboxed, ~100k instructions of memcpy per connection).
#[test]
fn the_task_spawned_per_connection_is_a_pointer() {
    let size = future_size(connection_task);
    assert!(size <= 16, "the spawned connection future is {size} bytes");
    // What the box saves: the connection's own state is kilobytes.
    assert!(future_size(serve_connection) > 1024);
}

/// A future that counts how often it is polled: how often its task was woken.
struct CountingPolls<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountingPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

/// An HTTP/2 client's frame header: (length, type, flags).
async fn read_frame(client: &mut TcpStream) -> (usize, u8, u8) {
    let mut header = [0u8; 9];
    client
        .read_exact(&mut header)
        .await
        .expect("a frame header");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    client
        .read_exact(&mut payload)
        .await
        .expect("a frame payload");
    (length, header[3], header[4])
}

/// Lets every task that can run, run (the runtime is this test's one thread).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;

/// Once the sniff hands a connection to the HTTP/2 server, which times its own idleness, the
/// timer that bounded the wait for the first bytes is gone: it must not wake the connection's
/// task at `client_header_timeout` after the accept (a spurious wake-up per HTTP/2
/// connection). The HTTP/2 server's own limit still closes the idle connection, on its clock.
#[tokio::test(start_paused = true)]
async fn an_http2_connection_is_not_woken_by_the_timer_of_its_first_bytes() {
    let text = "http { client_header_timeout 10s; server { listen 127.0.0.1:80; location / { return 200; } } }";
    let config =
        crate::config::load_str(Path::new("t.conf"), text, Path::new(".")).expect("a valid config");
    let snapshot = Snapshot::build(&config, &PeerRegistry::default(), 0).expect("a snapshot");
    let live = Arc::new(ArcSwap::from_pointee(snapshot));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    let listen: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let lifecycle = Lifecycle::default();
    let tunnels = Arc::new(TunnelControl {
        close: lifecycle.close_tunnels.clone(),
        open: lifecycle.tunnels.clone(),
    });
    let conn = plain_conn((peer, listen, listen), &tunnels, &lifecycle.telemetry);
    let admission = Ceiling::new(4).admit(listen).await;
    let tokens = (
        lifecycle.connections.enter(),
        lifecycle.telemetry.listener(listen).accept(),
    );
    let polls = Arc::new(AtomicUsize::new(0));
    let served = tokio::spawn(CountingPolls {
        inner: Box::pin(serve_connection(
            Accepted::Tcp(server),
            conn,
            live,
            admission,
            tokens,
        )),
        polls: polls.clone(),
    });

    // The connection starts (and its timer with it) before the clock moves.
    settle().await;
    assert!(
        polls.load(Ordering::SeqCst) > 0,
        "the connection's task started"
    );

    // The preface comes 3 s after the accept: the first bytes' timer is due at 10 s, the
    // HTTP/2 server's own limit for a connection that opens no stream at 13 s.
    tokio::time::advance(Duration::from_secs(3)).await;
    client.write_all(sniff::PREFACE).await.unwrap();
    client
        .write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut acked = false;
    while !acked {
        let (_, kind, flags) = read_frame(&mut client).await;
        if kind == SETTINGS && flags & ACK == 0 {
            client
                .write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                .await
                .unwrap();
        }
        acked = kind == SETTINGS && flags & ACK != 0;
    }
    settle().await;
    let settled = polls.load(Ordering::SeqCst);

    // Past the first bytes' deadline, short of the HTTP/2 server's own.
    tokio::time::advance(Duration::from_secs(8)).await;
    settle().await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        settled,
        "the idle HTTP/2 connection's task was woken at client_header_timeout"
    );

    // The HTTP/2 server's own limit closes the connection that opened no stream.
    tokio::time::advance(Duration::from_secs(3)).await;
    let goaway = async {
        // Past what is still unread of the opening (a WINDOW_UPDATE).
        while read_frame(&mut client).await.1 != GOAWAY {}
    };
    tokio::time::timeout(Duration::from_secs(5), goaway)
        .await
        .expect("GOAWAY within 5 s");
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the connection ended")
        .expect("the connection's task did not panic");
}
