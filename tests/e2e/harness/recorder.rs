//! A raw recording backend: it accepts TCP connections, keeps the exact bytes each one
//! received, and answers every request it can read strictly ([`super::framing`]) with bytes
//! from a script — well-formed or hostile, as the test wants.
//!
//! The recording is the evidence: a test reads it back per connection with the strict reader,
//! so what a proxy forwarded is judged byte for byte, not through a lenient server's eyes.
//! A request the recorder cannot read strictly is never answered: the connection's bytes are
//! kept until the peer closes it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::framing::{self, Read};

/// What the recorder writes back for one request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The raw bytes of the answer.
    pub bytes: Vec<u8>,
    /// Close the connection after writing them (a close-delimited body, or a broken answer
    /// that must not linger).
    pub close: bool,
}

impl Answer {
    /// `bytes`, the connection kept open.
    pub fn raw(bytes: &[u8]) -> Answer {
        Answer {
            bytes: bytes.to_vec(),
            close: false,
        }
    }

    /// `bytes`, then the connection closed.
    pub fn closing(bytes: &[u8]) -> Answer {
        Answer {
            bytes: bytes.to_vec(),
            close: true,
        }
    }

    /// `200` with body `ok`, kept alive.
    pub fn ok() -> Answer {
        Answer::raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    }
}

/// The status the recorder answers a request it cannot read strictly (then it only records):
/// one no server sends, so a client can tell the backend refused what a proxy forwarded.
pub const UNREADABLE: u16 = 555;

/// Chooses the answer to a request: its number (from 0, across all connections) and the
/// request as read.
pub type Script = Box<dyn Fn(usize, &framing::Message) -> Answer + Send + Sync>;

#[derive(Default)]
struct Record {
    /// The bytes each connection received, in accept order.
    connections: Vec<Vec<u8>>,
    /// Requests answered so far, across connections.
    answered: usize,
}

/// A recording backend on a loopback port.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    record: Arc<Mutex<Record>>,
}

impl Recorder {
    /// Starts one answering `200 ok` to everything.
    pub async fn start() -> Recorder {
        Recorder::scripted(Box::new(|_, _| Answer::ok())).await
    }

    /// Starts one answering as `script` says.
    pub async fn scripted(script: Script) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let record = Arc::new(Mutex::new(Record::default()));
        let script = Arc::new(script);
        let shared = record.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut record = shared.lock().expect("record lock");
                    record.connections.push(Vec::new());
                    record.connections.len() - 1
                };
                let connection = Connection {
                    index,
                    record: shared.clone(),
                    script: script.clone(),
                };
                tokio::spawn(connection.serve(stream));
            }
        });
        Recorder { addr, record }
    }

    /// The bytes each connection received so far, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.lock().connections.clone()
    }

    /// Every connection's bytes read strictly as requests: one list per connection, or the
    /// first place the bytes break the strict rules.
    pub fn requests(&self) -> Vec<Result<Vec<framing::Message>, String>> {
        self.connections()
            .iter()
            .map(|bytes| framing::requests(bytes))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("record lock")
    }
}

/// One accepted connection, serving and recording.
struct Connection {
    index: usize,
    record: Arc<Mutex<Record>>,
    script: Arc<Script>,
}

impl Connection {
    async fn serve(self, mut stream: TcpStream) {
        let mut unread = Vec::new();
        let mut readable = true;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // Answer every whole request already here; after one that breaks the rules, only
            // record.
            while readable {
                match framing::request(&unread) {
                    Ok(Read::Whole(request, used)) => {
                        unread.drain(..used);
                        let number = {
                            let mut record = self.record.lock().expect("record lock");
                            record.answered += 1;
                            record.answered - 1
                        };
                        let answer = (self.script)(number, &request);
                        if stream.write_all(&answer.bytes).await.is_err() || answer.close {
                            return;
                        }
                    }
                    Ok(Read::Partial) => break,
                    Err(_) => {
                        readable = false;
                        let refusal = format!(
                            "HTTP/1.1 {UNREADABLE} Unreadable\r\nContent-Length: 0\r\n\r\n"
                        );
                        if stream.write_all(refusal.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let n = match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            unread.extend_from_slice(&chunk[..n]);
            let mut record = self.record.lock().expect("record lock");
            record.connections[self.index].extend_from_slice(&chunk[..n]);
        }
    }
}
