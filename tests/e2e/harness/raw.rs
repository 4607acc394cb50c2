//! Byte-level HTTP/1 for tests that must see exactly what crosses the wire: a backend that
//! records every request it receives as raw bytes, and a client that sends raw bytes and reads
//! every response that comes back until the connection closes.
//!
//! The backend reads heads with httparse and bodies with tether's own strict decoder, so a
//! request that arrives torn (its body cut off, its framing broken) is recorded as torn, never
//! as one the backend would have acted on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tether::server::http1::decode::{Decoded, Decoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::within;

/// One request as the backend received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRequest {
    /// `METHOD target`.
    pub line: String,
    /// Header lines as received, `name: value`, names lowercased.
    pub headers: Vec<String>,
    /// The body, decoded.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
    }
}

#[derive(Default)]
struct Record {
    complete: Vec<RawRequest>,
    /// Requests whose head arrived but whose body did not end properly.
    torn: usize,
}

/// A backend answering `200` with body `seen N` to every complete request, recording each.
pub struct RawBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl RawBackend {
    /// Starts one on a free loopback port.
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = record.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        RawBackend { addr, record }
    }

    /// The complete requests received so far, in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.lock().complete.clone()
    }

    /// Requests that arrived torn (a head without its whole body).
    pub fn torn(&self) -> usize {
        self.lock().torn
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("record lock")
    }
}

async fn serve(mut stream: TcpStream, record: Arc<Mutex<Record>>) {
    let mut buf = BytesMut::new();
    loop {
        let Some(head_len) = read_until_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = buf.split_to(head_len);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if parsed.parse(&head).is_err() {
            return;
        }
        let line = format!(
            "{} {}",
            parsed.method.unwrap_or(""),
            parsed.path.unwrap_or("")
        );
        let lines: Vec<String> = parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value);
                format!("{}: {value}", h.name.to_ascii_lowercase())
            })
            .collect();
        let find = |name: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .map(str::to_string)
        };
        let mut decoder = match (find("transfer-encoding"), find("content-length")) {
            (Some(_), _) => Decoder::chunked(),
            (None, Some(length)) => Decoder::length(length.parse().unwrap_or(0)),
            (None, None) => Decoder::length(0),
        };
        let mut body = Vec::new();
        let complete = loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::End) => break true,
                Ok(Decoded::NeedMore) => match stream.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => break false,
                },
                Err(_) => break false,
            }
        };
        let seen = {
            let mut record = record.lock().expect("record lock");
            if !complete {
                record.torn += 1;
                return;
            }
            record.complete.push(RawRequest {
                line,
                headers: lines,
                body,
            });
            record.complete.len()
        };
        let text = format!("seen {seen}");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_until_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<usize> {
    loop {
        if let Some(end) = find_head_end(buf) {
            return Some(end);
        }
        match stream.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// One response as the client received it.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length` or chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `bytes` on a new connection and reads responses until the server closes it (bounded
/// by `limit`). Returns every complete response, in order.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<RawResponse> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may refuse before reading it all; what matters is what comes back.
    let _ = stream.write_all(bytes).await;
    parse_responses(&read_to_close(&mut stream, limit).await)
}

/// Sends `bytes` on a new connection and reads until the server closes it or `limit` passes:
/// the bytes read, and whether it closed in time. For corpus tests, where one case that
/// hangs is a fault to report beside the others, not a reason to stop.
pub async fn exchange_bytes(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may refuse before reading it all; what matters is what comes back.
    let _ = stream.write_all(bytes).await;
    let mut all = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read).await.is_ok();
    (all, closed)
}

/// Reads what the server sends until it closes the connection (or resets it), bounded by
/// `limit`.
pub async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    within(limit, "the server to answer and close", async {
        let mut all = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}

/// Reads one whole response with a `Content-Length` from a connection that stays open,
/// bounded by `limit`.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> RawResponse {
    within(limit, "a response", async {
        let mut all = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(response) = parse_responses(&all).pop() {
                let length = response
                    .header("content-length")
                    .and_then(|v| v.parse().ok());
                if length == Some(response.body.len()) {
                    return response;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => all.extend_from_slice(&chunk[..n]),
                _ => panic!("closed before a whole response: {all:?}"),
            }
        }
    })
    .await
}

/// Splits a byte stream into responses (1xx ones included).
pub fn parse_responses(mut all: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut parsed = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = parsed.parse(all) else {
            return responses;
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let mut rest = BytesMut::from(&all[head_len..]);
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let mut decoder = if status < 200 || status == 204 || status == 304 {
            Decoder::length(0)
        } else if find("transfer-encoding").is_some() {
            Decoder::chunked()
        } else {
            let length = find("content-length").and_then(|v| v.parse().ok());
            Decoder::length(length.unwrap_or(rest.len() as u64))
        };
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut rest) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) | Err(_) => {
                    responses.push(RawResponse {
                        status,
                        headers,
                        body,
                    });
                    return responses;
                }
            }
        }
        responses.push(RawResponse {
            status,
            headers,
            body,
        });
        let consumed = all.len() - rest.len();
        all = &all[consumed..];
    }
}
