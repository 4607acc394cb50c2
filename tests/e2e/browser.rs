//! A real browser through tether: headless Chromium loads a page over HTTPS (HTTP/2 by ALPN)
//! and opens a `wss://` WebSocket on the same origin, which Chromium carries over the HTTP/2
//! connection it has (RFC 8441 extended CONNECT, which tether advertises and nginx does not
//! support). The page echoes messages and reports back; the upstream learns from tether which
//! protocol the browser used (`$server_protocol`), so the test sees HTTP/2 was really used.
//!
//! Skips (with a line on the terminal) where Chromium is not installed; with
//! `TETHER_REQUIRE_CHROMIUM` set (CI sets it, after installing it) it fails instead.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::harness::certs::{KeyKind, TestCa};
use crate::harness::{Proxy, within};

/// The page: a WebSocket to its own origin, three echoes, then a report of what came back
/// (or of the error).
const PAGE: &str = r#"<!doctype html><title>tether</title><script>
const ws = new WebSocket(`wss://${location.host}/ws`);
const got = [];
const report = (result) => fetch(`/report?result=${encodeURIComponent(result)}`);
ws.onopen = () => { for (let i = 0; i < 3; i++) ws.send(`message ${i}`); };
ws.onmessage = (event) => {
  got.push(event.data);
  if (got.length === 3) { report(got.join(",")); ws.close(); }
};
ws.onerror = () => report("error");
</script>"#;

/// What the page's backend saw.
#[derive(Default)]
struct Seen {
    /// `X-Client-Protocol` of the page request and of the WebSocket upgrade.
    page_protocol: Option<String>,
    websocket_protocol: Option<String>,
    /// The page's report.
    report: Option<String>,
}

/// The page's backend: `/` the page, `/ws` a WebSocket echo, `/report` the result.
async fn page_backend() -> (SocketAddr, Arc<Mutex<Seen>>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reported = Arc::new(Notify::new());
    let (state, notify) = (seen.clone(), reported.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (state, notify) = (state.clone(), notify.clone());
            let service = service_fn(move |request: Request<Incoming>| {
                let answer = answer(request, &state, &notify);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen, reported)
}

fn answer(
    mut request: Request<Incoming>,
    seen: &Mutex<Seen>,
    reported: &Notify,
) -> Response<Full<Bytes>> {
    let protocol = request
        .headers()
        .get("x-client-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match request.uri().path() {
        "/" => {
            seen.lock().unwrap().page_protocol = Some(protocol);
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html")
                .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
                .unwrap()
        }
        "/ws" => {
            seen.lock().unwrap().websocket_protocol = Some(protocol);
            let key = request.headers()[header::SEC_WEBSOCKET_KEY]
                .as_bytes()
                .to_vec();
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "upgrade")
                .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(&key))
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        "/report" => {
            let query = request.uri().query().unwrap_or("").to_string();
            seen.lock().unwrap().report = Some(query);
            reported.notify_one();
            Response::new(Full::new(Bytes::from_static(b"thanks")))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

/// The Chromium binary, or None after saying the test skips (a failure with
/// `TETHER_REQUIRE_CHROMIUM` set).
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(move |dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("TETHER_REQUIRE_CHROMIUM").is_none(),
            "Chromium not installed, and TETHER_REQUIRE_CHROMIUM is set"
        );
        eprintln!("browser test skipped: Chromium not installed");
    }
    found
}

/// Chromium headless with a fresh profile in `profile` and nothing that reaches beyond
/// loopback (no background networking, component updates or sync); the caller adds its own
/// flags and the URL.
pub(crate) fn headless(chromium: &Path, profile: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// A child process group killed when dropped (Chromium starts several processes).
pub(crate) struct Browser(pub(crate) std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self.0.id() as i32;
        // SAFETY: signalling a process group this test created; no memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn chromium_opens_a_wss_websocket_over_http2_through_tether() {
    let Some(chromium) = chromium() else { return };
    let ca = TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], KeyKind::EcdsaP256);
    let (page, seen, reported) = page_backend().await;
    let conf = format!(
        "events {{}} http {{ \
           map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }} \
           server {{ listen {{listen}} ssl; http2 on; \
             ssl_certificate {}; ssl_certificate_key {}; \
             location / {{ proxy_pass http://{{page}}; proxy_http_version 1.1; \
               proxy_set_header Upgrade $http_upgrade; \
               proxy_set_header Connection $connection_upgrade; \
               proxy_set_header X-Client-Protocol $server_protocol; }} }} }}",
        leaf.cert.display(),
        leaf.key.display()
    );
    let proxy = Proxy::start(&conf, &[("page", page)]).await;

    // Chromium trusts the certificate by its public key's hash, nothing else.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf.spki);
    let spki = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let profile = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}/", proxy.addr.port());
    let child = headless(&chromium, profile.path())
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start Chromium");
    let _browser = Browser(child);

    within(
        Duration::from_secs(30),
        "the page's report",
        reported.notified(),
    )
    .await;
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.report.as_deref(),
        Some("result=message%200%2Cmessage%201%2Cmessage%202"),
        "three echoes"
    );
    assert_eq!(seen.page_protocol.as_deref(), Some("HTTP/2.0"), "the page");
    assert_eq!(
        seen.websocket_protocol.as_deref(),
        Some("HTTP/2.0"),
        "the WebSocket rode the HTTP/2 connection (extended CONNECT)"
    );
}
