//! TLS termination: `listen ... ssl` with certificates made at test time. The virtual server
//! (and so the certificate) is chosen by SNI with nginx's `server_name` rules and the default
//! server without SNI; HTTP/2 is chosen by ALPN where enabled; requests go upstream with
//! `$scheme` https; HTTP/2 requests for a server with other certificates are misdirected
//! (421); and what is not a TLS client — plain HTTP, a stalled or garbage handshake — is
//! answered or closed cleanly while real clients are served.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::certs::{self, KeyKind, Leaf, TestCa};
use crate::harness::client::Reply;
use crate::harness::{Backend, Proxy, within};

const LIMIT: Duration = Duration::from_secs(5);

/// `ssl_certificate` and `ssl_certificate_key` lines for `leaf`.
fn cert_lines(leaf: &Leaf) -> String {
    format!(
        "ssl_certificate {}; ssl_certificate_key {};",
        show(&leaf.cert),
        show(&leaf.key)
    )
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// One TLS server for `names` proxying to backend `a`, with `extra` server directives.
fn one_server(leaf: &Leaf, names: &str, extra: &str) -> String {
    format!(
        "events {{}} http {{ server {{ listen {{listen}} ssl; server_name {names}; {} {extra} \
         location / {{ proxy_pass http://{{a}}; proxy_set_header X-Proto $scheme; }} }} }}",
        cert_lines(leaf)
    )
}

async fn get_over(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> Reply {
    let request = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(LIMIT, "a response", sender.send_request(request))
        .await
        .expect("response");
    Reply::read(response).await.expect("body")
}

/// The certificate the server presented on a connection.
fn presented(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

#[tokio::test]
async fn an_https_request_is_proxied_with_scheme_https() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&one_server(&leaf, "app.test", ""), &[("a", a.addr)]).await;

    let mut sender = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    for _ in 0..2 {
        let reply = get_over(&mut sender, "app.test", "/hello").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, "a");
    }
    assert_eq!(a.last().header("x-proto"), "https");
    assert_eq!(a.connections(), 1, "keep-alive over TLS, and upstream");
}

#[tokio::test]
async fn sni_chooses_the_server_and_its_certificate_and_no_sni_gets_the_default() {
    let ca = TestCa::new();
    let first = ca.leaf(&["first.test"], KeyKind::EcdsaP256);
    let wild = ca.leaf(&["x.wild.test"], KeyKind::Rsa2048);
    let other = ca.leaf(&["other.test"], KeyKind::Ed25519);
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let server = |leaf: &Leaf, names: &str, default: &str, backend: &str| {
        format!(
            "server {{ listen {{listen}} ssl {default}; server_name {names}; {} \
             location / {{ proxy_pass http://{{{backend}}}; }} }}",
            cert_lines(leaf)
        )
    };
    let conf = format!(
        "events {{}} http {{ {} {} {} }}",
        server(&first, "first.test", "", "a"),
        server(&wild, "*.wild.test", "", "b"),
        server(&other, "other.test", "default_server", "c"),
    );
    let backends = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let proxy = Proxy::start(&conf, &backends).await;
    let trusting = ca.client_config(&[]);

    // The client checks the certificate against the name it asked for: a handshake that
    // completes got the right one.
    for (sni, leaf, body) in [
        ("first.test", &first, "a"),
        ("x.wild.test", &wild, "b"),
        ("other.test", &other, "c"),
    ] {
        let tls = certs::connect(proxy.addr, trusting.clone(), Some(sni))
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
        assert_eq!(presented(&tls), leaf.der.to_vec(), "{sni}");
        let mut sender = certs::https1(proxy.addr, trusting.clone(), Some(sni)).await;
        assert_eq!(get_over(&mut sender, sni, "/").await.body, body, "{sni}");
    }

    // No SNI (a client connecting by address) and an unknown name: the default server's.
    let unverified = insecure_client();
    let tls = certs::connect(proxy.addr, unverified.clone(), None)
        .await
        .expect("handshake without SNI");
    assert_eq!(presented(&tls), other.der.to_vec());
    let tls = certs::connect(proxy.addr, unverified, Some("nobody.test"))
        .await
        .expect("handshake for an unknown name");
    assert_eq!(presented(&tls), other.der.to_vec());
}

#[tokio::test]
async fn alpn_offers_h2_only_where_http2_is_on() {
    let ca = TestCa::new();
    let on = ca.leaf(&["on.test"], KeyKind::EcdsaP256);
    let off = ca.leaf(&["off.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let conf = format!(
        "events {{}} http {{ \
         server {{ listen {{listen}} ssl; server_name on.test; http2 on; {} \
           location / {{ proxy_pass http://{{a}}; proxy_set_header X-Proto $scheme; }} }} \
         server {{ listen {{listen}} ssl; server_name off.test; {} \
           location / {{ proxy_pass http://{{a}}; }} }} }}",
        cert_lines(&on),
        cert_lines(&off)
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let both = ca.client_config(&[b"h2", b"http/1.1"]);

    let tls = certs::connect(proxy.addr, both.clone(), Some("off.test"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut h2 = certs::https2(proxy.addr, both, Some("on.test")).await;
    let request = Request::get("https://on.test/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = Reply::read(h2.send_request(request).await.unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(a.last().header("x-proto"), "https");
}

#[tokio::test]
async fn http2_requests_for_a_server_with_other_certificates_are_misdirected() {
    let ca = TestCa::new();
    // One certificate covers both names, as a client coalescing connections would check.
    let shared = ca.leaf(&["one.test", "two.test", "three.test"], KeyKind::EcdsaP256);
    let separate = ca.leaf(&["three.test"], KeyKind::EcdsaP256);
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let server = |leaf: &Leaf, name: &str, backend: &str| {
        format!(
            "server {{ listen {{listen}} ssl; http2 on; server_name {name}; {} \
             location / {{ proxy_pass http://{{{backend}}}; }} }}",
            cert_lines(leaf)
        )
    };
    let conf = format!(
        "events {{}} http {{ {} {} {} }}",
        server(&shared, "one.test", "a"),
        server(&shared, "two.test", "b"),
        server(&separate, "three.test", "c"),
    );
    let backends = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    let proxy = Proxy::start(&conf, &backends).await;
    let mut h2 = certs::https2(proxy.addr, ca.client_config(&[b"h2"]), Some("one.test")).await;
    let mut status_of = async |authority: &str| {
        let request = Request::get(format!("https://{authority}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        Reply::read(h2.send_request(request).await.unwrap())
            .await
            .unwrap()
    };
    assert_eq!(status_of("one.test").await.body, "a");
    // Same certificate files: the request goes to its own server.
    assert_eq!(status_of("two.test").await.body, "b");
    // Other certificates: the client must open a connection of its own for it.
    assert_eq!(status_of("three.test").await.status, 421);
    assert_eq!(c.hits(), 0);
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_nginxs_400() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&one_server(&leaf, "app.test", ""), &[("a", a.addr)]).await;

    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within(LIMIT, "the answer and close", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("The plain HTTP request was sent to HTTPS port"),
        "{answer}"
    );
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn a_stalled_or_garbage_handshake_is_closed_and_real_clients_are_served() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let conf = one_server(&leaf, "app.test", "").replace(
        "events {} http {",
        "events {} http { client_header_timeout 1s;",
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;

    // A record header announcing a ClientHello that never comes.
    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    // A handshake record full of garbage.
    let mut garbage = TcpStream::connect(proxy.addr).await.unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    record.extend(std::iter::repeat_n(0xAB, 0x40));
    garbage.write_all(&record).await.unwrap();

    let mut sender = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    assert_eq!(get_over(&mut sender, "app.test", "/").await.status, 200);

    for (what, stream) in [("garbage", &mut garbage), ("stalled", &mut stalled)] {
        // Closed within client_header_timeout (1 s) and a margin; a reset counts as closed.
        let mut rest = Vec::new();
        let what = format!("tether closing the {what} handshake");
        let _ = within(Duration::from_secs(4), &what, stream.read_to_end(&mut rest)).await;
        // rustls may have sent an alert first, but never an HTTP answer.
        assert!(!String::from_utf8_lossy(&rest).contains("HTTP/"), "{what}");
    }
}

#[tokio::test]
async fn wss_and_sse_over_tls_for_http1_clients() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let conf = format!(
        "events {{}} http {{ map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }} \
         server {{ listen {{listen}} ssl; server_name app.test; {} \
         location / {{ proxy_pass http://{{a}}; proxy_http_version 1.1; \
           proxy_set_header Upgrade $http_upgrade; \
           proxy_set_header Connection $connection_upgrade; proxy_buffering off; }} }} }}",
        cert_lines(&leaf)
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;

    let tls = certs::connect(proxy.addr, ca.client_config(&[]), Some("app.test"))
        .await
        .unwrap();
    let (mut ws, _) = within(
        LIMIT,
        "the WebSocket handshake",
        tokio_tungstenite::client_async("wss://app.test/ws", tls),
    )
    .await
    .expect("wss:// handshake");
    for i in 0..3 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = within(LIMIT, "the echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.close(None).await.unwrap();

    let mut sender = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    a.release_event();
    let request = Request::get("/sse?n=3")
        .header("host", "app.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    crate::harness::expect_events_one_by_one(&mut body, &a, 3).await;
}

/// A client that accepts any certificate (to see which one a server presents): tether's own
/// `proxy_ssl_verify off` verifier.
fn insecure_client() -> Arc<rustls::ClientConfig> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let verifier =
        tether::tls::upstream::AnyCertificate::new(provider.signature_verification_algorithms);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn the_tls_variables_reach_the_upstream() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let headers = "proxy_set_header X-Https $https; \
        proxy_set_header X-Ssl \"$ssl_protocol $ssl_cipher $ssl_server_name $ssl_session_reused\";";
    let conf = one_server(&leaf, "app.test", "")
        .replace("proxy_set_header X-Proto $scheme;", headers)
        .replace(
            "events {} http {",
            "events {} http { ssl_protocols TLSv1.2;",
        );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;

    let mut sender = certs::https1(proxy.addr, ca.client_config(&[]), Some("app.test")).await;
    assert_eq!(get_over(&mut sender, "app.test", "/").await.status, 200);
    assert_eq!(a.last().header("x-https"), "on");
    assert_eq!(
        a.last().header("x-ssl"),
        "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384 app.test ."
    );
}

#[tokio::test]
async fn client_certificates_required_or_optional_with_the_subject_upstream() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["strict.test", "loose.test"], KeyKind::EcdsaP256);
    let alice = ca.client("alice");
    let a = Backend::start("a").await;
    let server = |name: &str, verify: &str| {
        format!(
            "server {{ listen {{listen}} ssl; server_name {name}; {} \
             ssl_client_certificate {}; ssl_verify_client {verify}; \
             location / {{ proxy_pass http://{{a}}; \
               proxy_set_header X-Verify $ssl_client_verify; \
               proxy_set_header X-Dn $ssl_client_s_dn; }} }}",
            cert_lines(&leaf),
            ca.ca_file().display()
        )
    };
    let conf = format!(
        "events {{}} http {{ {} {} }}",
        server("strict.test", "on"),
        server("loose.test", "optional")
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let with_cert = ca.client_config_with_cert(&alice);

    // Required: no certificate, no connection (rustls ends the handshake).
    let refused = async {
        let tls = certs::connect(proxy.addr, ca.client_config(&[]), Some("strict.test")).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let request = Request::get("/")
            .header("host", "strict.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)
    };
    assert!(within(LIMIT, "the refusal", refused).await.is_err());
    assert_eq!(a.hits(), 0);

    let mut sender = certs::https1(proxy.addr, with_cert.clone(), Some("strict.test")).await;
    assert_eq!(get_over(&mut sender, "strict.test", "/").await.status, 200);
    assert_eq!(a.last().header("x-verify"), "SUCCESS");
    assert_eq!(a.last().header("x-dn"), "O=tether tests,CN=alice");
    // Naming the strict server on a connection whose handshake skipped its check: 421.
    let mut loose = certs::https1(proxy.addr, ca.client_config(&[]), Some("loose.test")).await;
    assert_eq!(get_over(&mut loose, "strict.test", "/").await.status, 421);

    // Optional: let in without one.
    assert_eq!(get_over(&mut loose, "loose.test", "/").await.status, 200);
    assert_eq!(a.last().header("x-verify"), "NONE");
    assert_eq!(a.last().header("x-dn"), "");
}

#[tokio::test]
async fn sessions_resume_across_a_reload() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let a = Backend::start("a").await;
    let conf = one_server(&leaf, "app.test", "ssl_session_cache shared:SSL:1m;");
    let backends = [("a", a.addr)];
    let proxy = Proxy::start(&conf, &backends).await;
    // One client config: its session store is what resumes.
    let client = ca.client_config(&[]);
    let kind = async |client: &Arc<rustls::ClientConfig>| {
        let tls = certs::connect(proxy.addr, client.clone(), Some("app.test"))
            .await
            .unwrap();
        let mut tls = tls;
        // TLS 1.3 tickets arrive after the handshake: read until the server has spoken.
        tls.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // A TLS write may leave its record in rustls's buffer until flushed.
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        let _ = within(LIMIT, "the answer", tls.read_to_end(&mut answer)).await;
        tls.get_ref().1.handshake_kind()
    };
    assert_eq!(kind(&client).await, Some(rustls::HandshakeKind::Full));
    assert_eq!(kind(&client).await, Some(rustls::HandshakeKind::Resumed));
    proxy
        .apply(&format!("{conf} "), &backends)
        .await
        .expect("reload");
    assert_eq!(
        kind(&client).await,
        Some(rustls::HandshakeKind::Resumed),
        "resumed after the reload"
    );
}

/// An upstream that answers any request with `total` bytes, written as fast as its socket
/// takes them, counting what it got written (what tether accepted from it).
async fn counting_download(total: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![7u8; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let n = chunk.len().min(total - sent);
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                    count.store(sent, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, written)
}

#[tokio::test]
async fn http2_over_tls_serves_many_streams_to_several_groups_while_one_reader_stalls() {
    const BIG: usize = 64 << 20;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let [a, b] = Backend::start_all(["a", "b"]).await;
    let (big, written) = counting_download(BIG).await;
    let conf = format!(
        "events {{}} http {{ server {{ listen {{listen}} ssl; http2 on; server_name app.test; {} \
         location /a/ {{ proxy_pass http://{{a}}/; }} \
         location /b/ {{ proxy_pass http://{{b}}/; }} \
         location /big {{ proxy_pass http://{{big}}; }} }} }}",
        cert_lines(&leaf)
    );
    let backends = [("a", a.addr), ("b", b.addr), ("big", big)];
    let proxy = Proxy::start(&conf, &backends).await;
    let tls = certs::connect(proxy.addr, ca.client_config(&[b"h2"]), Some("app.test"))
        .await
        .unwrap();
    // Streams start with 64 KiB of window, given back only where the test reads.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let get = |path: &str| {
        Request::get(format!("https://app.test{path}"))
            .body(())
            .unwrap()
    };

    // The stalled reader: 64 MiB asked for, not a byte read.
    let (stalled, _) = client.clone().send_request(get("/big"), true).unwrap();
    let stalled = within(LIMIT, "the big response head", stalled)
        .await
        .unwrap();
    assert_eq!(stalled.status(), 200);

    // Meanwhile 40 streams at once, to two groups, each read whole.
    let mut streams = Vec::new();
    for i in 0..40 {
        let path = if i % 2 == 0 { "/a/x" } else { "/b/x" };
        let (response, _) = client.clone().send_request(get(path), true).unwrap();
        streams.push(async move {
            let mut body = response.await.unwrap().into_body();
            let mut text = Vec::new();
            while let Some(data) = body.data().await {
                let data = data.unwrap();
                let _ = body.flow_control().release_capacity(data.len());
                text.extend_from_slice(&data);
            }
            (path, String::from_utf8(text).unwrap())
        });
    }
    let answers = within(LIMIT, "40 streams", futures_util::future::join_all(streams)).await;
    for (path, body) in answers {
        assert_eq!(body, &path[1..2], "{path}");
    }
    assert_eq!((a.hits(), b.hits()), (20, 20));

    // Backpressure reached the upstream: once its writes stop moving, it wrote no more than
    // the buffers on the way (sockets, tether's per-stream queue) hold, far from its 64 MiB.
    let upstream_written = within(LIMIT, "the upstream's writes to settle", async {
        let mut last = usize::MAX;
        loop {
            let now = written.load(Ordering::Relaxed);
            if now == last {
                return now;
            }
            last = now;
            // Pacing the samples: settled means no progress over 200 ms.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    println!(
        "the upstream wrote {} KiB before backpressure held it",
        upstream_written >> 10
    );
    assert!(
        upstream_written < 16 << 20,
        "the upstream wrote {upstream_written} bytes for a reader that took 64 KiB"
    );
    drop(stalled);
}
