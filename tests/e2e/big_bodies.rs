//! 1 GiB each way through the real `tether` binary, with its peak memory read from the kernel:
//! bodies are streamed frame by frame, so tether's footprint must not grow with their size.
//!
//! This is the one test that runs tether as a child process: memory has to be measured on
//! tether alone, not on a test process that also hosts the backend and the client.

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::harness::{Backend, within};

const GIB: u64 = 1 << 30;
/// tether's peak resident memory must stay under this while 1 GiB passes each way.
const RSS_LIMIT_KIB: u64 = 64 << 10;

/// The tether child process; killed when the test ends, panics included.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
    _conf: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `tether -c CONF` on a free port and waits until it accepts connections.
    async fn start(backend: SocketAddr) -> Running {
        for _ in 0..3 {
            // The port is free when we look; another process could take it before tether binds
            // it, in which case tether exits and we try another.
            let port = StdListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let conf_text = format!(
                "events {{}} http {{ upstream up {{ server {backend}; }} server {{ listen {addr}; \
                 location / {{ proxy_pass http://up; client_max_body_size 0; proxy_buffering off; }} }} }}"
            );
            let mut conf = tempfile::NamedTempFile::new().unwrap();
            conf.write_all(conf_text.as_bytes()).unwrap();
            let log = tempfile::NamedTempFile::new().unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_tether"))
                .arg("-c")
                .arg(conf.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("spawn the tether binary");
            let mut running = Running {
                child,
                addr,
                log,
                _conf: conf,
            };
            if running.accepting().await {
                return running;
            }
        }
        panic!("tether never started (see its log above)");
    }

    /// Waits until tether accepts connections; false if it exited first.
    async fn accepting(&mut self) -> bool {
        within(
            Duration::from_secs(10),
            "tether to accept connections",
            async {
                loop {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                        eprintln!("tether exited with {status}:\n{log}");
                        return false;
                    }
                    if TcpStream::connect(self.addr).await.is_ok() {
                        return true;
                    }
                    // Polling a condition: the process gives no other signal that it is ready.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await
    }

    /// `VmHWM`: the peak resident set size so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

async fn connection<B>(addr: SocketAddr) -> http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_passes_in_bounded_memory() {
    let backend = Backend::start("a").await;
    let tether = Running::start(backend.addr).await;
    let at_start = tether.peak_rss_kib();
    let started = Instant::now();

    // Download: counted frame by frame, never collected.
    let mut sender = connection::<Empty<Bytes>>(tether.addr).await;
    let request = Request::get(format!("/download?bytes={GIB}"))
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("download response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        GIB.to_string().as_str()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    within(Duration::from_secs(30), "the 1 GiB download", async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download frame");
            if let Some(data) = frame.data_ref() {
                // Every byte is 7; checking one per frame catches mixed-up streams cheaply.
                assert_eq!(data.first(), Some(&7));
                received += data.len() as u64;
            }
        }
    })
    .await;
    assert_eq!(received, GIB);
    let downloaded = started.elapsed();

    // Upload: one 64 KiB chunk sent over and over, generated as the stream is polled.
    const CHUNK: u64 = 64 << 10;
    let chunk = Bytes::from((0..CHUNK).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let chunk_sum: u64 = chunk.iter().map(|&b| b as u64).sum();
    let frames = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move { (sent < GIB).then(|| (Ok::<_, std::io::Error>(Frame::data(chunk)), sent + CHUNK)) }
    });
    let mut sender = connection(tether.addr).await;
    let request = Request::post("/upload")
        .header("host", "localhost")
        .header("content-length", GIB)
        .body(StreamBody::new(frames))
        .unwrap();
    let response = within(
        Duration::from_secs(30),
        "the 1 GiB upload",
        sender.send_request(request),
    )
    .await
    .expect("upload response");
    assert_eq!(response.status(), 200);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("bytes={GIB} sum={}", chunk_sum * (GIB / CHUNK))
    );
    let uploaded = started.elapsed() - downloaded;

    let peak = tether.peak_rss_kib();
    eprintln!(
        "tether peak RSS: {} KiB at start, {peak} KiB after 1 GiB down ({downloaded:?}) and 1 GiB up ({uploaded:?})",
        at_start
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "tether's peak RSS was {peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
}
