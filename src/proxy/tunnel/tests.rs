//! The tunnel over in-memory pipes: copying, half-close, memory, idle timeout, shutdown.

use std::future::poll_fn;
use std::task::Poll;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::frames::GOING_AWAY;
use super::half::READ_SIZE;
use super::*;
use crate::drain::CloseReason;
use tokio_util::sync::CancellationToken;

/// The tunnel's outcome alone: what these tests check (shadows the module's `run`).
fn run<C, U>(
    client: C,
    client_early: &[u8],
    upstream: U,
    upstream_early: &[u8],
    protocol: Protocol,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> impl Future<Output = Outcome> + use<C, U>
where
    C: Side + AsyncWrite,
    U: Side + AsyncWrite,
{
    let running = super::run(
        client,
        client_early,
        upstream,
        upstream_early,
        protocol,
        idle_timeout,
        CloseSignal::under(&shutdown),
    );
    async move { running.await.outcome }
}

const PIPE: usize = 4096;
const LIMIT: Duration = Duration::from_secs(5);

/// The far ends of a tunnel: what the client and the upstream hold.
struct Ends {
    client: DuplexStream,
    upstream: DuplexStream,
}

/// A tunnel between two pipes, unstarted.
fn tunnel(protocol: Protocol) -> (Tunnel<DuplexStream, DuplexStream>, Ends) {
    let (client, client_near) = duplex(PIPE);
    let (upstream, upstream_near) = duplex(PIPE);
    let tunnel = Tunnel::new(client_near, upstream_near, protocol);
    (tunnel, Ends { client, upstream })
}

/// A running tunnel, with its shutdown switch.
fn spawn(protocol: Protocol, idle: Duration) -> (JoinHandle<Outcome>, Ends, CancellationToken) {
    let (client, client_near) = duplex(PIPE);
    let (upstream, upstream_near) = duplex(PIPE);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(run(
        client_near,
        &[],
        upstream_near,
        &[],
        protocol,
        idle,
        stopped,
    ));
    (task, Ends { client, upstream }, stop)
}

/// Polls the tunnel once, as far as it can go without waiting.
async fn step(tunnel: &mut Tunnel<DuplexStream, DuplexStream>) -> Poll<io::Result<()>> {
    poll_fn(|cx| Poll::Ready(tunnel.poll(cx))).await
}

async fn read_exactly(from: &mut DuplexStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    timeout(LIMIT, from.read_exact(&mut bytes))
        .await
        .expect("bytes in time")
        .expect("bytes");
    bytes
}

/// Everything until the other side ends its writes.
async fn read_to_end(from: &mut DuplexStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    timeout(LIMIT, from.read_to_end(&mut bytes))
        .await
        .expect("the end in time")
        .expect("a clean end");
    bytes
}

#[tokio::test]
async fn copies_both_ways_and_passes_half_closes_on() {
    let (task, mut ends, _stop) = spawn(Protocol::Other, Duration::from_secs(60));
    ends.client.write_all(b"hello upstream").await.unwrap();
    assert_eq!(
        read_exactly(&mut ends.upstream, 14).await,
        b"hello upstream"
    );
    ends.upstream.write_all(b"hello client").await.unwrap();
    assert_eq!(read_exactly(&mut ends.client, 12).await, b"hello client");

    // The client is done sending: the upstream sees the end, and can still answer.
    ends.client.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut ends.upstream).await, b"");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (_, received) = tokio::join!(
        async {
            ends.upstream.write_all(&big).await.unwrap();
            ends.upstream.shutdown().await.unwrap();
        },
        read_to_end(&mut ends.client),
    );
    assert_eq!(received, big);
    let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
}

#[tokio::test]
async fn a_buffer_is_held_only_while_the_writer_lags() {
    let (mut tunnel, mut ends) = tunnel(Protocol::Other);
    assert!(step(&mut tunnel).await.is_pending());
    assert_eq!(
        tunnel.to_upstream.buffered() + tunnel.to_client.buffered(),
        0
    );

    // The first pipeful fits in the upstream's pipe: written at once, nothing kept.
    ends.client.write_all(&[1; PIPE]).await.unwrap();
    assert!(step(&mut tunnel).await.is_pending());
    assert_eq!(tunnel.to_upstream.buffered(), 0);
    // The second does not: the tunnel keeps it (one read's worth at most) and reads no more.
    ends.client.write_all(&[2; PIPE]).await.unwrap();
    assert!(step(&mut tunnel).await.is_pending());
    assert_eq!(tunnel.to_upstream.buffered(), PIPE);
    assert!(tunnel.to_upstream.buffered() <= READ_SIZE);
    ends.client.write_all(&[3; PIPE]).await.unwrap();
    assert!(step(&mut tunnel).await.is_pending());
    assert_eq!(
        tunnel.to_upstream.buffered(),
        PIPE,
        "backpressure: no second buffer"
    );

    // The upstream catches up: each buffer is dropped once written.
    let mut received = Vec::new();
    while received.len() < 3 * PIPE {
        received.extend(read_exactly(&mut ends.upstream, PIPE).await);
        assert!(step(&mut tunnel).await.is_pending());
    }
    assert_eq!(tunnel.to_upstream.buffered(), 0);
    let expected: Vec<u8> = [1u8, 2, 3].iter().flat_map(|b| [*b; PIPE]).collect();
    assert_eq!(received, expected);
}

#[tokio::test(start_paused = true)]
async fn silence_either_way_for_the_idle_timeout_closes_but_talk_either_way_does_not() {
    let idle = Duration::from_secs(10);
    let (task, mut ends, _stop) = spawn(Protocol::Other, idle);
    let start = Instant::now();
    // 8 s apart, alternating directions: 40 s in all, never 10 s of silence.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_secs(8)).await;
        if i % 2 == 0 {
            ends.client.write_all(b"ping").await.unwrap();
            assert_eq!(read_exactly(&mut ends.upstream, 4).await, b"ping");
        } else {
            ends.upstream.write_all(b"pong").await.unwrap();
            assert_eq!(read_exactly(&mut ends.client, 4).await, b"pong");
        }
    }
    assert!(!task.is_finished());
    let outcome = task.await.unwrap();
    assert!(matches!(outcome, Outcome::Idle), "{outcome:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(40) + idle);
}

/// A WebSocket frame: FIN, `opcode`, `payload`, masked with `mask` if given.
fn ws_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames are enough here");
    let mut frame = vec![0x80 | opcode, payload.len() as u8];
    match mask {
        Some(key) => {
            frame[1] |= 0x80;
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// Parses one short frame: (opcode, masked, unmasked payload).
fn parse_frame(bytes: &[u8]) -> (u8, bool, Vec<u8>) {
    let opcode = bytes[0] & 0x0f;
    assert_eq!(bytes[0] & 0x80, 0x80, "FIN");
    let masked = bytes[1] & 0x80 != 0;
    let len = usize::from(bytes[1] & 0x7f);
    let (key, payload) = if masked {
        (bytes[2..6].to_vec(), &bytes[6..])
    } else {
        (vec![0; 4], &bytes[2..])
    };
    assert_eq!(payload.len(), len, "one whole frame: {bytes:?}");
    let payload = payload
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    (opcode, masked, payload)
}

/// The close code a close frame carries.
fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test]
async fn shutdown_between_frames_sends_going_away_both_ways() {
    let (task, mut ends, stop) = spawn(Protocol::WebSocket, Duration::from_secs(60));
    let hello = ws_frame(0x1, b"hello", Some([9, 8, 7, 6]));
    ends.client.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut ends.upstream, hello.len()).await, hello);
    let welcome = ws_frame(0x1, b"welcome", None);
    ends.upstream.write_all(&welcome).await.unwrap();
    assert_eq!(read_exactly(&mut ends.client, welcome.len()).await, welcome);

    stop.cancel();
    // Each side gets exactly one close frame, then the end of the stream.
    let to_client = read_to_end(&mut ends.client).await;
    let (opcode, masked, payload) = parse_frame(&to_client);
    assert_eq!((opcode, masked), (0x8, false), "unmasked toward the client");
    assert_eq!(close_code(&payload), GOING_AWAY);
    let to_upstream = read_to_end(&mut ends.upstream).await;
    let (opcode, masked, payload) = parse_frame(&to_upstream);
    assert_eq!((opcode, masked), (0x8, true), "masked toward the upstream");
    assert_eq!(close_code(&payload), GOING_AWAY);

    // Their replies are taken, then the tunnel ends.
    let reply = ws_frame(0x8, &GOING_AWAY.to_be_bytes(), Some([1, 2, 3, 4]));
    ends.client.write_all(&reply).await.unwrap();
    ends.client.shutdown().await.unwrap();
    ends.upstream
        .write_all(&ws_frame(0x8, &GOING_AWAY.to_be_bytes(), None))
        .await
        .unwrap();
    ends.upstream.shutdown().await.unwrap();
    let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
}

#[tokio::test]
async fn shutdown_mid_frame_injects_nothing_into_that_direction() {
    let (task, mut ends, stop) = spawn(Protocol::WebSocket, Duration::from_secs(60));
    // The client is halfway through a 100-byte frame.
    let frame = {
        let mut frame = vec![0x82, 0x80 | 100, 1, 2, 3, 4];
        frame.extend_from_slice(&[0; 100]);
        frame
    };
    ends.client.write_all(&frame[..56]).await.unwrap();
    assert_eq!(read_exactly(&mut ends.upstream, 56).await, &frame[..56]);

    stop.cancel();
    assert_eq!(
        read_to_end(&mut ends.upstream).await,
        b"",
        "no frame of ours inside the client's frame"
    );
    let (opcode, masked, payload) = parse_frame(&read_to_end(&mut ends.client).await);
    assert_eq!(
        (opcode, masked, close_code(&payload)),
        (0x8, false, GOING_AWAY)
    );
    drop(ends);
    let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
}

#[tokio::test]
async fn no_close_frame_follows_one_that_already_passed() {
    let (task, mut ends, stop) = spawn(Protocol::WebSocket, Duration::from_secs(60));
    let close = ws_frame(0x8, &1000u16.to_be_bytes(), None);
    ends.upstream.write_all(&close).await.unwrap();
    assert_eq!(read_exactly(&mut ends.client, close.len()).await, close);
    stop.cancel();
    assert_eq!(read_to_end(&mut ends.client).await, b"");
    let (opcode, ..) = parse_frame(&read_to_end(&mut ends.upstream).await);
    assert_eq!(opcode, 0x8);
    drop(ends);
    timeout(LIMIT, task).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn silent_peers_are_dropped_after_the_grace() {
    let (task, mut ends, stop) = spawn(Protocol::WebSocket, Duration::from_secs(60));
    let start = Instant::now();
    stop.cancel();
    // Neither peer answers nor hangs up: the tunnel still ends, CLOSE_GRACE later.
    let outcome = task.await.unwrap();
    assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
    assert_eq!(start.elapsed(), CLOSE_GRACE);
    assert_eq!(
        read_to_end(&mut ends.client).await.len(),
        4,
        "the close frame"
    );
}

#[tokio::test]
async fn other_protocols_just_close_on_shutdown() {
    let (task, mut ends, stop) = spawn(Protocol::Other, Duration::from_secs(60));
    ends.client.write_all(b"\x88\x00").await.unwrap();
    assert_eq!(read_exactly(&mut ends.upstream, 2).await, b"\x88\x00");
    stop.cancel();
    let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
    assert_eq!(read_to_end(&mut ends.client).await, b"");
    assert_eq!(read_to_end(&mut ends.upstream).await, b"");
}

#[tokio::test]
async fn what_the_client_sent_behind_its_upgrade_reaches_the_upstream_first() {
    let (client, client_near) = duplex(PIPE);
    let (upstream, upstream_near) = duplex(PIPE);
    let mut ends = Ends { client, upstream };
    // A client may send its first frame right behind the upgrade request, before the 101.
    let hello = ws_frame(0x1, b"hello", Some([1, 2, 3, 4]));
    let (early, rest) = hello.split_at(5);
    let task = tokio::spawn(run(
        client_near,
        early,
        upstream_near,
        &[],
        Protocol::WebSocket,
        Duration::from_secs(60),
        CancellationToken::new(),
    ));
    assert_eq!(read_exactly(&mut ends.upstream, early.len()).await, early);
    ends.client.write_all(rest).await.unwrap();
    assert_eq!(read_exactly(&mut ends.upstream, rest.len()).await, rest);
    // Both peers gone: the tunnel ends (bounded: a hang fails instead of stalling the suite).
    drop(ends);
    let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        matches!(outcome, Outcome::Closed | Outcome::Failed(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn what_the_upstream_sent_with_its_101_reaches_the_client_first_and_counts_as_frames() {
    let (client, client_near) = duplex(PIPE);
    let (upstream, upstream_near) = duplex(PIPE);
    let (mut ends, stop) = (Ends { client, upstream }, CancellationToken::new());
    // Half a frame came with the 101; its rest arrives through the tunnel.
    let welcome = ws_frame(0x1, b"welcome", None);
    let (early, rest) = welcome.split_at(4);
    let task = tokio::spawn(run(
        client_near,
        &[],
        upstream_near,
        early,
        Protocol::WebSocket,
        Duration::from_secs(60),
        stop.clone(),
    ));
    assert_eq!(read_exactly(&mut ends.client, early.len()).await, early);
    ends.upstream.write_all(rest).await.unwrap();
    assert_eq!(read_exactly(&mut ends.client, rest.len()).await, rest);

    // The tracker saw the early bytes: the frame is complete, so a close frame may follow.
    stop.cancel();
    let (opcode, _, payload) = parse_frame(&read_to_end(&mut ends.client).await);
    assert_eq!((opcode, close_code(&payload)), (0x8, GOING_AWAY));
    drop(ends);
    let outcome = timeout(LIMIT, task).await.unwrap();
    assert!(matches!(outcome, Ok(Outcome::Shutdown)), "{outcome:?}");
}

#[tokio::test]
async fn a_drain_closes_with_service_restart_both_ways() {
    let (client, client_near) = duplex(PIPE);
    let (upstream, upstream_near) = duplex(PIPE);
    let mut ends = Ends { client, upstream };
    let close = CloseSignal::under(&CancellationToken::new());
    let task = tokio::spawn(super::run(
        client_near,
        &[],
        upstream_near,
        &[],
        Protocol::WebSocket,
        Duration::from_secs(60),
        close.clone(),
    ));
    let hello = ws_frame(0x1, b"hello", Some([9, 8, 7, 6]));
    ends.client.write_all(&hello).await.unwrap();
    assert_eq!(read_exactly(&mut ends.upstream, hello.len()).await, hello);

    close.close(CloseReason::Drain);
    let (opcode, masked, payload) = parse_frame(&read_to_end(&mut ends.client).await);
    assert_eq!((opcode, masked, close_code(&payload)), (0x8, false, 1012));
    let (opcode, masked, payload) = parse_frame(&read_to_end(&mut ends.upstream).await);
    assert_eq!((opcode, masked, close_code(&payload)), (0x8, true, 1012));
    drop(ends);
    let ended = timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(matches!(ended.outcome, Outcome::Shutdown), "{ended:?}");
}
