//! A backend whose health checks pass only when the test says so: its probes are held
//! unanswered until then, so a test can catch a checked group between a reload and a server's
//! first passing check.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A backend whose health the test decides: `GET /health` waits until [`HeldHealth::pass`],
/// then answers 200; anything else is answered at once with `x-backend: NAME`.
pub struct HeldHealth {
    /// Where it listens.
    pub addr: SocketAddr,
    probes: Arc<AtomicUsize>,
    pass: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HeldHealth {
    /// Starts it, its health held.
    pub async fn start(name: &'static str) -> HeldHealth {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let probes = Arc::new(AtomicUsize::new(0));
        let (pass, passing) = watch::channel(false);
        let task = tokio::spawn({
            let probes = probes.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (probes, passing) = (probes.clone(), passing.clone());
                    let service = service_fn(move |request: http::Request<_>| {
                        let (probes, mut passing) = (probes.clone(), passing.clone());
                        async move {
                            if request.uri().path() == "/health" {
                                probes.fetch_add(1, Ordering::SeqCst);
                                let _ = passing.wait_for(|pass| *pass).await;
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(StatusCode::OK)
                                    .header("x-backend", name)
                                    .body(Full::new(Bytes::from(name)))
                                    .expect("a valid response"),
                            )
                        }
                    });
                    tokio::spawn(
                        auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned(),
                    );
                }
            }
        });
        HeldHealth {
            addr,
            probes,
            pass,
            task,
        }
    }

    /// Health probes received so far (answered or still held).
    pub fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    /// Lets every held probe, and every later one, pass.
    pub fn pass(&self) {
        self.pass.send_replace(true);
    }
}

impl Drop for HeldHealth {
    fn drop(&mut self) {
        self.task.abort();
    }
}
