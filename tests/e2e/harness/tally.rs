//! A steady load that tallies every answer by the backend that gave it: one client on a
//! keep-alive connection, one opening a connection per request; answers other than 200 and
//! requests that failed outright are kept as text, so a reload test can show that none were
//! lost and which servers served across the swap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::load::TryConnection;
use super::session::eventually;

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// 200 answers by `x-backend`.
    pub served: HashMap<String, usize>,
    /// Answers other than 200, with their status and body.
    pub bad: Vec<String>,
    /// Requests that failed outright (connect, reset, timeout).
    pub errors: Vec<String>,
}

impl Tally {
    /// 200 answers from backend `name`.
    pub fn served_by(&self, name: &str) -> usize {
        self.served.get(name).copied().unwrap_or(0)
    }
}

/// Steady traffic to a proxy: one client sending `GET /` over and over on a keep-alive
/// connection, another opening a new connection for each request. Every answer is counted.
pub struct Load {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts both clients against `addr`.
    pub fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = [true, false]
            .into_iter()
            .map(|keep_alive| {
                let (tally, stop) = (tally.clone(), stop.clone());
                tokio::spawn(client_loop(addr, keep_alive, tally, stop))
            })
            .collect();
        Load { tally, stop, tasks }
    }

    /// 200 answers from backend `name` so far.
    pub fn served_by(&self, name: &str) -> usize {
        self.tally.lock().unwrap().served_by(name)
    }

    /// Waits until backend `name` has answered `more` requests beyond what it had answered
    /// when called.
    pub async fn wait_served(&self, name: &str, more: usize) {
        let target = self.served_by(name) + more;
        let what = format!("{more} more answers from {name} under load");
        eventually(Duration::from_secs(5), &what, || {
            let done = self.served_by(name) >= target;
            async move { done }
        })
        .await;
    }

    /// Stops both clients (each finishes its request in hand) and returns the tally.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load client panicked");
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

async fn client_loop(
    addr: SocketAddr,
    keep_alive: bool,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let mut connection: Option<TryConnection> = None;
    while !stop.load(Ordering::SeqCst) {
        let outcome =
            tokio::time::timeout(Duration::from_secs(5), one_request(addr, &mut connection))
                .await
                .unwrap_or_else(|_| Err("no answer within 5 s".to_string()));
        if outcome.is_err() || !keep_alive {
            connection = None;
        }
        {
            let mut tally = tally.lock().unwrap();
            match outcome {
                Ok((200, backend)) => *tally.served.entry(backend).or_default() += 1,
                Ok((status, body)) => tally.bad.push(format!("{status}: {body}")),
                Err(error) => tally.errors.push(error),
            }
        }
        // Pacing, not waiting for anything: a few hundred requests a second is plenty and
        // leaves the two CPUs to tether.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `GET /` on `connection` (opening it if needed); `(status, x-backend or body)`. A
/// connection the proxy announced it would close (`Connection: close`) is not reused.
async fn one_request(
    addr: SocketAddr,
    connection: &mut Option<TryConnection>,
) -> Result<(u16, String), String> {
    if connection.as_ref().is_none_or(TryConnection::is_closed) {
        *connection = Some(TryConnection::open(addr).await?);
    }
    let reply = connection.as_mut().expect("opened above").get("/").await?;
    if reply.header("connection").eq_ignore_ascii_case("close") {
        *connection = None;
    }
    let status = reply.status.as_u16();
    if status == 200 {
        Ok((status, reply.header("x-backend").to_string()))
    } else {
        Ok((status, reply.body))
    }
}
