//! A tunnel's two connections as the tunnel uses them: besides polled reads and writes, the
//! question whether anything can have arrived since a read last waited, and a read and a write
//! that skip the runtime's poll wrappers (`MaybeTls::poll_read_direct`, `poll_write_direct`).
//!
//! Every wake-up of a tunnel's task polls both directions, though bytes came one way: in an
//! echo, each message wakes the task twice, and half of its reads are of the quiet side. A
//! read that waits costs tokio a budget check, a lock and a waker compare to find what its
//! cached readiness already says. A plain socket answers the question with one load of that
//! readiness, and leaves the waker its last waiting read gave it in place. Its writes, which
//! nearly always find room, go straight to the socket through the same readiness (a budget
//! check and a poll wrapper fewer each); only one that finds the socket full is polled, to
//! register for room. TLS (records under the bytes) and hyper's HTTP/2 stream offer neither,
//! and are read and written as before.
//!
//! Knows tokio's sockets and tether's stream enum; not the tunnel's framing or timers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::stream::MaybeTls;

/// A connection a tunnel joins: read by one direction, written by the other.
pub trait Side: AsyncRead + Unpin {
    /// False only when nothing can have arrived since a read of it last returned `Pending` —
    /// asked of the runtime's readiness, no system call, the waker that read left untouched.
    /// True when something may have, or when the stream cannot tell (the default).
    fn may_have_bytes(&self) -> bool {
        true
    }

    /// Reads into `buf`: with the bare system call where it has a plain socket (the budget,
    /// waker and readiness kept as a polled read keeps them), else polled.
    fn poll_read_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self).poll_read(cx, buf)
    }

    /// Writes `bytes`: straight to the socket where it has one, else (and when the socket is
    /// full, to register for room) polled.
    fn poll_write_direct(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>
    where
        Self: AsyncWrite,
    {
        Pin::new(self).poll_write(cx, bytes)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Side for MaybeTls<T> {
    fn may_have_bytes(&self) -> bool {
        // `try_io` runs the closure only when tokio's readiness is set, and a closure that
        // succeeds leaves that readiness (and the registered waker) as it was: nothing is
        // read here, the read that follows does it, clearing readiness on a short read.
        let asked = match self {
            MaybeTls::Plain(tcp) => tcp.try_io(Interest::READABLE, || Ok(())),
            MaybeTls::Unix(unix) => unix.try_io(Interest::READABLE, || Ok(())),
            MaybeTls::Tls(_) => return true,
        };
        match asked {
            Ok(()) => true,
            // The closure cannot fail: the error is `try_io`'s own for "no readiness".
            Err(none) => {
                crate::stream::forget_would_block(none);
                false
            }
        }
    }

    fn poll_read_direct(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        MaybeTls::poll_read_direct(self, cx, buf)
    }

    fn poll_write_direct(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>
    where
        Self: AsyncWrite,
    {
        MaybeTls::poll_write_direct(self, cx, &[io::IoSlice::new(bytes)])
    }
}

/// hyper's upgraded HTTP/2 stream (a WebSocket over HTTP/2): no readiness to ask.
impl Side for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {}

#[cfg(test)]
impl Side for tokio::io::DuplexStream {}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;
    use tokio::task::coop::{consume_budget, has_budget_remaining};
    use tokio::task::yield_now;
    use tokio::time::timeout;
    use tokio_util::sync::CancellationToken;

    use super::Side;
    use crate::drain::CloseSignal;
    use crate::proxy::tunnel::{self, Ended, Outcome, Protocol, Tunnel};
    use crate::stream::{ClientStream, loopback};

    const LIMIT: Duration = Duration::from_secs(5);

    /// Two loopback connections joined by a running tunnel (no protocol, a minute's idle
    /// limit): the client's far end, the upstream's far end, and the tunnel's task.
    async fn joined() -> (TcpStream, TcpStream, JoinHandle<Ended>) {
        let (client, client_near) = loopback().await;
        let (upstream, upstream_near) = loopback().await;
        let close = CloseSignal::under(&CancellationToken::new());
        let idle = Duration::from_secs(60);
        let task = tokio::spawn(tunnel::run(
            client_near,
            &[],
            upstream_near,
            &[],
            Protocol::Other,
            idle,
            close,
        ));
        (client, upstream, task)
    }

    async fn send(to: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) {
        timeout(LIMIT, to.write_all(bytes)).await.unwrap().unwrap();
    }

    async fn receive(from: &mut (impl AsyncRead + Unpin), len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        let read = timeout(LIMIT, from.read_exact(&mut bytes)).await;
        read.expect("bytes in time").expect("bytes");
        bytes
    }

    /// Over real sockets a tunnel asks the quiet side's readiness instead of reading it: each
    /// side must still be read when its bytes come — after the other side spoke, after a burst
    /// that spends the task's budget, and when both were quiet.
    #[tokio::test]
    async fn a_side_that_was_only_asked_is_still_read_when_its_bytes_come() {
        let (mut client, mut upstream, task) = joined().await;
        for round in 0..100u32 {
            send(&mut client, &round.to_be_bytes()).await;
            assert_eq!(receive(&mut upstream, 4).await, round.to_be_bytes());
            send(&mut upstream, &round.to_le_bytes()).await;
            assert_eq!(receive(&mut client, 4).await, round.to_le_bytes());
        }
        // Megabytes one way (hundreds of full reads: tokio's budget runs out and the task is
        // made to yield) while the other way keeps talking.
        let burst: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut upstream_reads, mut upstream_writes) = upstream.into_split();
        let sent = burst.clone();
        let burst_writer = tokio::spawn(async move {
            upstream_writes.write_all(&sent).await.unwrap();
            upstream_writes
        });
        let (mut client_reads, mut client_writes) = client.into_split();
        let talk = async {
            for round in 0..200u32 {
                send(&mut client_writes, &round.to_be_bytes()).await;
                assert_eq!(receive(&mut upstream_reads, 4).await, round.to_be_bytes());
                tokio::task::yield_now().await;
            }
        };
        let (_, received) = tokio::join!(talk, receive(&mut client_reads, burst.len()));
        assert!(received == burst, "the burst arrived whole and in order");
        let mut upstream_writes = timeout(LIMIT, burst_writer).await.unwrap().unwrap();
        // Both quiet now; then each side once more.
        for round in 0..10u32 {
            send(&mut upstream_writes, &round.to_le_bytes()).await;
            assert_eq!(receive(&mut client_reads, 4).await, round.to_le_bytes());
            send(&mut client_writes, &round.to_be_bytes()).await;
            assert_eq!(receive(&mut upstream_reads, 4).await, round.to_be_bytes());
        }
        drop((client_writes, upstream_writes));
        let ended = timeout(LIMIT, task).await.unwrap().unwrap();
        assert!(matches!(ended.outcome, Outcome::Closed), "{ended:?}");
    }

    /// Polls the tunnel once.
    async fn step(tunnel: &mut Tunnel<ClientStream, ClientStream>) -> Poll<std::io::Result<()>> {
        poll_fn(|cx| Poll::Ready(tunnel.poll(cx))).await
    }

    /// tokio's budget at the start of a poll of this task, counted by spending it.
    async fn budget_per_poll() -> usize {
        yield_now().await;
        let mut budget = 0;
        while has_budget_remaining() {
            consume_budget().await;
            budget += 1;
        }
        budget
    }

    /// A read that tokio refused for want of budget registered no waker with the socket: the
    /// next wake-up must read that side again, not take it for a side still waiting (which
    /// would leave it unread for good once its readiness was cleared).
    #[tokio::test]
    async fn a_read_refused_for_want_of_budget_is_not_taken_for_a_wait() {
        let (mut client, client_near) = loopback().await;
        let (mut upstream, upstream_near) = loopback().await;
        let mut tunnel = Tunnel::new(client_near, upstream_near, Protocol::Other);
        let budget = budget_per_poll().await;
        assert!(step(&mut tunnel).await.is_pending(), "both sides wait");
        send(&mut client, b"a").await;
        timeout(LIMIT, async {
            while !tunnel.client.may_have_bytes() {
                yield_now().await;
            }
        })
        .await
        .expect("the byte reached the tunnel's socket");
        // In one poll: two units of budget left, spent on reading the byte and writing it on;
        // the read after that is refused (a short read cleared the socket's readiness).
        yield_now().await;
        for _ in 2..budget {
            consume_budget().await;
        }
        assert!(step(&mut tunnel).await.is_pending());
        assert!(!has_budget_remaining(), "the budget ran out in the tunnel");
        assert_eq!(receive(&mut upstream, 1).await, b"a");
        send(&mut client, b"b").await;
        tokio::select! {
            ended = poll_fn(|cx| tunnel.poll(cx)) => panic!("the tunnel ended: {ended:?}"),
            got = receive(&mut upstream, 1) => assert_eq!(got, b"b"),
        }
    }

    /// Over a plain socket a tunnel writes without tokio's poll; when the socket is full, the
    /// write must still register for the wake-up that says it has room again — here nothing
    /// else would wake the tunnel: the other way is silent, and this way's source waits on the
    /// tunnel.
    #[tokio::test]
    async fn a_write_that_finds_the_socket_full_is_woken_when_it_has_room() {
        let (mut client, mut upstream, task) = joined().await;
        // More than the sockets' buffers hold between them: the tunnel's writes fill the
        // client's socket long before the client reads.
        let big: Vec<u8> = (0..16_000_000u32).map(|i| (i % 253) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            upstream.write_all(&sent).await.unwrap();
            upstream
        });
        let received = receive(&mut client, big.len()).await;
        assert!(received == big, "everything arrived, in order");
        let upstream = timeout(LIMIT, writer).await.unwrap().unwrap();
        drop((client, upstream));
        let ended = timeout(LIMIT, task).await.unwrap().unwrap();
        assert!(matches!(ended.outcome, Outcome::Closed), "{ended:?}");
    }
}
