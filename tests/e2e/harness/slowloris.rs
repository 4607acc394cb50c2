//! Slowloris clients: many connections that each send half a request line and then a byte
//! every 300 ms, never finishing their head, and note when tether closes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::within;

/// A running attack; its connections close when it is dropped.
pub struct Slowloris {
    open: Vec<Arc<AtomicBool>>,
    closed: watch::Receiver<usize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Slowloris {
    /// Opens `count` connections to `addr`, one after the other: the first is the oldest.
    pub async fn attack(addr: SocketAddr, count: usize) -> Slowloris {
        let (closed_count, closed) = watch::channel(0usize);
        let closed_count = Arc::new(closed_count);
        let mut open = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let still_open = Arc::new(AtomicBool::new(true));
            open.push(still_open.clone());
            let closed_count = closed_count.clone();
            tasks.push(tokio::spawn(async move {
                dribble(stream).await;
                still_open.store(false, Ordering::SeqCst);
                closed_count.send_modify(|n| *n += 1);
            }));
        }
        Slowloris {
            open,
            closed,
            tasks,
        }
    }

    /// How many tether has closed so far.
    pub fn closed(&self) -> usize {
        *self.closed.borrow()
    }

    /// Whether connection `index` (0: the oldest) is still open.
    pub fn is_open(&self, index: usize) -> bool {
        self.open[index].load(Ordering::SeqCst)
    }

    /// Waits (at most `limit`) until tether has closed `at_least` of them.
    pub async fn wait_closed(&mut self, at_least: usize, limit: Duration) {
        let closed = self.closed.wait_for(|n| *n >= at_least);
        within(limit, "tether to close slowloris connections", closed)
            .await
            .expect("the attack is running");
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Half a head, then a byte every 300 ms, until the server closes the connection.
async fn dribble(mut stream: TcpStream) {
    if stream.write_all(b"GET / HTTP/1.1\r\n").await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut sink) => if !matches!(read, Ok(n) if n > 0) { return },
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                if stream.write_all(b"X").await.is_err() { return }
            }
        }
    }
}
