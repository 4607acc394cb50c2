//! A raw HTTP/1 backend that reports how each of its exchanges ended, for the tests that must
//! prove tether let an upstream connection go: a request body cut off because tether closed
//! the connection, a response write that failed because tether stopped reading and closed.
//!
//! Routes:
//! - `/big?bytes=N` answers N bytes and reports whether the write reached its end
//! - `/park` answers only once the test calls [`Witness::release_parked`] (a long poll)
//! - anything else reads the request body to its end and answers `read N`
//!
//! Chunked request bodies are read until their last-chunk line arrives: enough for bodies the
//! tests write themselves, not a strict decoder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::within;

/// Something the backend saw happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// A request head arrived for this target.
    Request { target: String },
    /// The connection ended (EOF or error) before the request body was complete.
    BodyCut { target: String, read: u64 },
    /// Writing the response failed (tether closed the connection) after `written` body bytes.
    WriteFailed { target: String, written: u64 },
    /// The whole response was written.
    Answered { target: String },
}

impl Sighting {
    /// The bytes read of a body cut off, if this is one.
    pub fn body_cut(self) -> Option<u64> {
        match self {
            Sighting::BodyCut { read, .. } => Some(read),
            _ => None,
        }
    }

    /// The bytes written of a response whose write failed, if this is one.
    pub fn write_failed(self) -> Option<u64> {
        match self {
            Sighting::WriteFailed { written, .. } => Some(written),
            _ => None,
        }
    }
}

/// A running witness backend; stops accepting when dropped.
pub struct Witness {
    /// Where it listens.
    pub addr: SocketAddr,
    sightings: Mutex<mpsc::UnboundedReceiver<Sighting>>,
    parked: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Witness {
    /// Starts one on a free loopback port.
    pub async fn start() -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (report, sightings) = mpsc::unbounded_channel();
        let parked = Arc::new(Semaphore::new(0));
        let released = parked.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, report.clone(), released.clone()));
            }
        });
        Witness {
            addr,
            sightings: Mutex::new(sightings),
            parked,
            task,
        }
    }

    /// Waits (at most `limit`) for the first sighting `pick` accepts, passing over others.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut pick: impl FnMut(Sighting) -> Option<T>,
    ) -> T {
        let mut sightings = self.sightings.lock().await;
        within(limit, what, async {
            loop {
                let sighting = sightings.recv().await.expect("the witness runs");
                if let Some(found) = pick(sighting) {
                    return found;
                }
            }
        })
        .await
    }

    /// Waits (at most `limit`) for a request for `target` to arrive.
    pub async fn wait_request(&self, limit: Duration, target: &str) {
        let what = format!("a request for {target} at the backend");
        self.wait_for(limit, &what, |sighting| {
            matches!(sighting, Sighting::Request { target: t } if t == target).then_some(())
        })
        .await
    }

    /// Lets one parked request be answered.
    pub fn release_parked(&self) {
        self.parked.add_permits(1);
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    report: mpsc::UnboundedSender<Sighting>,
    parked: Arc<Semaphore>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let target = head.target.clone();
        let _ = report.send(Sighting::Request {
            target: target.clone(),
        });
        let body_read = match read_body(&mut stream, &mut buf, &head).await {
            Ok(length) => length,
            Err(read) => {
                let _ = report.send(Sighting::BodyCut { target, read });
                return;
            }
        };
        let outcome = if let Some(bytes) = target.strip_prefix("/big?bytes=") {
            write_big(&mut stream, bytes.parse().unwrap_or(0)).await
        } else if target == "/park" {
            if let Ok(permit) = parked.acquire().await {
                permit.forget();
            }
            answer(&mut stream, "parked").await
        } else {
            answer(&mut stream, &format!("read {body_read}")).await
        };
        match outcome {
            Ok(()) => {
                let _ = report.send(Sighting::Answered { target });
            }
            Err(written) => {
                let _ = report.send(Sighting::WriteFailed { target, written });
                return;
            }
        }
    }
}

struct Head {
    target: String,
    length: Option<u64>,
    chunked: bool,
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut headers);
            parsed.parse(&head).ok()?;
            let find = |name: &str| {
                parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            return Some(Head {
                target: parsed.path.unwrap_or("").to_string(),
                length: find("content-length").and_then(|v| v.parse().ok()),
                chunked: find("transfer-encoding").is_some(),
            });
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Reads the body: `Ok(bytes on the wire)`, or `Err(bytes read)` when the connection ended
/// first.
async fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> Result<u64, u64> {
    let complete = |buf: &[u8]| {
        if head.chunked {
            buf.ends_with(b"0\r\n\r\n")
        } else {
            buf.len() as u64 >= head.length.unwrap_or(0)
        }
    };
    let mut chunk = [0u8; 16 * 1024];
    while !complete(buf) {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Err(buf.len() as u64),
        }
    }
    // What the next request may already have sent stays out of this body's count.
    let length = if head.chunked {
        buf.len()
    } else {
        head.length.unwrap_or(0) as usize
    };
    buf.drain(..length);
    Ok(length as u64)
}

async fn answer(stream: &mut TcpStream, text: &str) -> Result<(), u64> {
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await.map_err(|_| 0)
}

/// Writes `total` bytes in 64 KiB pieces; `Err(written)` when a write fails.
async fn write_big(stream: &mut TcpStream, total: u64) -> Result<(), u64> {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.map_err(|_| 0u64)?;
    let piece = vec![b'z'; 64 * 1024];
    let mut written = 0u64;
    while written < total {
        let n = piece.len().min((total - written) as usize);
        stream.write_all(&piece[..n]).await.map_err(|_| written)?;
        written += n as u64;
    }
    Ok(())
}
