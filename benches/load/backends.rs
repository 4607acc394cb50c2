//! The backends every proxy is put in front of, identical for all three: nginx itself as the
//! small-GET backend (three `return 200` servers in one process on the client core), and two
//! backends inside the bench process: a WebSocket echo server and an SSE server that fans one
//! event a second out to every open stream.
//!
//! The in-process servers speak just enough of their protocols for the bench's own clients
//! (`clients.rs`), with as little work per message as possible: the point is to load the
//! proxy, not the backend.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::procs::{Guard, find_binary};
use crate::proxies::CLIENT_CORE;

/// Starts nginx as the HTTP backend on `ports`, pinned to the client core, and waits (bounded)
/// until it accepts on all three.
pub async fn nginx_backend(dir: &Path, ports: [u16; 3]) -> Result<Guard, String> {
    let dir = dir.join("backend");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let d = dir.display();
    let [a, b, c] = ports;
    let conf = format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{a};
        listen 127.0.0.1:{b};
        listen 127.0.0.1:{c};
        location / {{ return 200 \"ok\"; }}
        # The learn row's session: tether and HAProxy learn it from this cookie.
        location = /learn/login {{ add_header Set-Cookie \"sid=s1\"; return 200 \"ok\"; }}
    }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| format!("write {}: {e}", path.display()))?;
    let nginx = find_binary("nginx").ok_or("nginx is not installed")?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"));
    command.arg("-c").arg(&path);
    let mut guard = Guard::spawn(command, Some(CLIENT_CORE), &dir.join("output.log"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for port in ports {
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = guard.exited() {
                return Err(format!(
                    "nginx backend exited ({status}):\n{}",
                    guard.log_tail()
                ));
            }
            if tokio::time::Instant::now() > deadline {
                return Err("the nginx backend does not accept connections".into());
            }
            // Polling a condition: ends as soon as nginx listens.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(guard)
}

/// Counts open connections of an in-process backend, so a scenario can wait until the last
/// run's connections are gone before the next run opens thousands more.
#[derive(Clone, Default)]
pub struct Live(Arc<AtomicUsize>);

impl Live {
    /// Connections open now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Waits (at most `limit`) until no connection is open.
    pub async fn until_zero(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn open(&self) -> LiveHandle {
        self.0.fetch_add(1, Ordering::Relaxed);
        LiveHandle(self.0.clone())
    }
}

/// One open connection; counted down when dropped, whichever way the connection ends.
struct LiveHandle(Arc<AtomicUsize>);

impl Drop for LiveHandle {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a request head (up to the blank line), returning its lines.
async fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

/// Serves WebSocket echo on `listener`: each data frame comes back unmasked with the same
/// opcode and payload.
pub fn ws_echo(listener: TcpListener) -> Live {
    let live = Live::default();
    let counter = live.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = counter.open();
            tokio::spawn(async move {
                let _handle = handle;
                let _ = echo_connection(stream).await;
            });
        }
    });
    live
}

async fn echo_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(4096, stream);
    let head = read_head(&mut reader).await?;
    let key = head
        .iter()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let accept = derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    reader.get_mut().write_all(answer.as_bytes()).await?;
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => u64::from(reader.read_u16().await?),
            127 => reader.read_u64().await?,
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            reader.read_exact(&mut mask).await?;
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload).await?;
        if opcode == 0x8 {
            return Ok(());
        }
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        let mut frame = Vec::with_capacity(payload.len() + 10);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        reader.get_mut().write_all(&frame).await?;
    }
}

/// The clock SSE events are stamped with: microseconds since the bench's first look at it.
/// Backend and clients share the process, so a client subtracts the stamp from its own
/// reading to get the event's delay through the proxy.
pub fn event_clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Serves `GET /sse` on `listener` as an endless chunked `text/event-stream`, writing one
/// event a second to every open stream at once (a fan-out), and counting streams. Each event
/// is `data: T` with T the [`event_clock`] when it was sent.
pub fn sse(listener: TcpListener) -> Live {
    let live = Live::default();
    let counter = live.clone();
    let (events, _) = broadcast::channel::<Arc<[u8]>>(16);
    let ticker = events.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let event = format!("data: {}\n\n", event_clock());
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            let _ = ticker.send(chunk.into_bytes().into());
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = counter.open();
            let events = events.subscribe();
            tokio::spawn(async move {
                let _handle = handle;
                let _ = sse_stream(stream, events).await;
            });
        }
    });
    live
}

async fn sse_stream(
    stream: TcpStream,
    mut events: broadcast::Receiver<Arc<[u8]>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    read_head(&mut reader).await?;
    let stream = reader.get_mut();
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    loop {
        match events.recv().await {
            Ok(chunk) => stream.write_all(&chunk).await?,
            // A stream that fell behind skips what it missed, as a real fan-out would.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}
