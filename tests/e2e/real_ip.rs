//! The client's real address: X-Forwarded-For chains through trusted and untrusted hops, the
//! PROXY protocol from a real HAProxy (v1 and v2), spoofing attempts ignored, and `ip_hash`
//! spreading clients that sit behind one balancer. Clients connect from distinct loopback
//! addresses (all of 127.0.0.0/8 is local), so tether sees distinct peers. The PROXY header
//! comes before TLS and before HTTP/2's preface too.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use http_body_util::{BodyExt, Empty};

use crate::harness::certs::{KeyKind, TestCa};
use crate::harness::haproxy::HaProxy;
use crate::harness::logs::Logs;
use crate::harness::raw::{RawResponse, exchange, parse_responses, read_to_close};
use crate::harness::{Backend, Proxy, within};

const LIMIT: Duration = Duration::from_secs(5);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Connects to `to` from `source` (any port).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source");
    within(LIMIT, "connect", socket.connect(to))
        .await
        .expect("connect")
}

/// One `GET` with `headers` over a fresh connection from `source`: the response.
pub async fn get_from(
    source: IpAddr,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut stream = connect_from(source, to).await;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    // Boxed: its 64 KiB read buffer would otherwise sit in every calling test's future, and
    // a test of many requests outgrows the test thread's stack.
    let bytes = Box::pin(read_to_close(&mut stream, LIMIT)).await;
    let mut responses = parse_responses(&bytes).into_iter();
    responses.next().expect("a response")
}

fn body(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// What a `return` shows of the addresses: `remote_addr remote_port realip_remote_addr`.
const SHOW: &str =
    r#"return 200 "$remote_addr|$remote_port|$realip_remote_addr|$proxy_protocol_addr";"#;

/// What the backend is told of the addresses: `remote_addr|remote_port|realip_remote_addr`.
const TELL: &str = r#"proxy_set_header X-Show "$remote_addr|$remote_port|$realip_remote_addr";"#;

#[tokio::test]
async fn an_x_forwarded_for_chain_is_walked_from_the_right_over_trusted_hops() {
    // Location-level rules (nginx applies them only where the server's found nothing, and
    // after a location's `return`), so what they find is shown upstream.
    const TRUST: &str = "set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8;";
    let conf = format!(
        "http {{ server {{ listen {{listen}};
            real_ip_header X-Forwarded-For;
            location /recursive {{ {TRUST} real_ip_recursive on; proxy_pass http://{{a}}; {TELL}
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}
            location /last {{ {TRUST} proxy_pass http://{{a}}; {TELL} }}
        }} }}"
    );
    let a = Backend::start("a").await;
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let chain = [("X-Forwarded-For", "203.0.113.9, 198.51.100.7, 10.1.1.1")];
    let local = ip("127.0.0.1");
    let shown = async |path: &str, sent: &[(&str, &str)]| {
        let reply = get_from(local, proxy.addr, path, sent).await;
        assert_eq!(reply.status, 200);
        a.last()
    };
    // The last untrusted hop is the client; the trusted 10.1.1.1 is skipped. Upstream, the
    // real client is what X-Forwarded-For grows by.
    let seen = shown("/recursive", &chain).await;
    assert_eq!(seen.header("x-show"), "198.51.100.7||127.0.0.1");
    assert_eq!(
        seen.header("x-forwarded-for"),
        "203.0.113.9, 198.51.100.7, 10.1.1.1, 198.51.100.7"
    );
    // Without recursion the last address wins, trusted or not. A port comes along.
    let seen = shown("/last", &chain).await;
    assert_eq!(seen.header("x-show"), "10.1.1.1||127.0.0.1");
    let seen = shown("/last", &[("X-Forwarded-For", "203.0.113.9:4711")]).await;
    assert_eq!(seen.header("x-show"), "203.0.113.9|4711|127.0.0.1");
    // Something that is no address leaves the address as it was.
    let seen = shown("/last", &[("X-Forwarded-For", "unknown")]).await;
    assert!(seen.header("x-show").starts_with("127.0.0.1|"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_ignored() {
    let conf = format!(
        "http {{ server {{ listen {{listen}};
            set_real_ip_from 127.0.0.2;
            real_ip_header X-Forwarded-For;
            location / {{ {SHOW} }}
        }} }}"
    );
    let proxy = Proxy::start(&conf, &[]).await;
    let spoof = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Real-IP", "203.0.113.8"),
    ];
    let reply = get_from(ip("127.0.0.1"), proxy.addr, "/", &spoof).await;
    assert!(body(&reply).starts_with("127.0.0.1|"), "{}", body(&reply));
    // The same header from the trusted balancer is believed.
    let reply = get_from(ip("127.0.0.2"), proxy.addr, "/", &spoof).await;
    assert_eq!(body(&reply), "203.0.113.9||127.0.0.2|");
    proxy.stop().await;
}

/// An upstream of three counting backends balanced by `method`, behind realip with `rules`.
fn hashed_conf(method: &str, rules: &str) -> String {
    format!(
        "http {{
            upstream farm {{ {method} server {{a}}; server {{b}}; server {{c}}; }}
            server {{ listen {{listen}}; {rules} location / {{ proxy_pass http://farm; }} }}
        }}"
    )
}

#[tokio::test]
async fn ip_hash_and_hash_remote_addr_spread_clients_behind_a_balancer() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let named: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    let realip = "set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;";
    let cases = [
        ("ip_hash;", "", false),
        ("ip_hash;", realip, true),
        ("hash $remote_addr consistent;", realip, true),
    ];
    for (method, rules, spread) in cases {
        let proxy = Proxy::start(&hashed_conf(method, rules), &named).await;
        let mut chosen = Vec::new();
        for i in 0..24 {
            let client = format!("10.{i}.7.1");
            let forwarded = [("X-Forwarded-For", client.as_str())];
            let reply = get_from(ip("127.0.0.1"), proxy.addr, "/", &forwarded).await;
            let server = reply.header("x-backend").expect("answered by a backend");
            // The same client keeps its server.
            let again = get_from(ip("127.0.0.1"), proxy.addr, "/", &forwarded).await;
            assert_eq!(again.header("x-backend"), Some(server), "{client}");
            chosen.push(server.to_string());
        }
        chosen.sort();
        chosen.dedup();
        // Without realip every client is the balancer, pinned to one server.
        let case = format!("{method} {rules:?}");
        assert_eq!(chosen.len() > 1, spread, "{case}: servers {chosen:?}");
        proxy.stop().await;
    }
}

/// tether behind HAProxy: a `proxy_protocol` listener trusting HAProxy's two source addresses.
fn behind_haproxy(realip: &str) -> String {
    format!(
        "http {{
            upstream farm {{ ip_hash; server {{a}}; server {{b}}; server {{c}}; }}
            server {{ listen {{listen}} proxy_protocol;
                set_real_ip_from 127.0.0.201; set_real_ip_from 127.0.0.202;
                {realip}
                location /show {{ {SHOW} }}
                location / {{ proxy_pass http://farm; }}
            }}
        }}"
    )
}

#[tokio::test]
async fn haproxy_send_proxy_v1_and_v2_give_tether_the_real_client() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let named: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    let proxy = Proxy::start(&behind_haproxy("real_ip_header proxy_protocol;"), &named).await;
    let Some(haproxy) = HaProxy::start(proxy.addr, ip("127.0.0.201"), ip("127.0.0.202")).await
    else {
        return;
    };
    for (frontend, balancer) in [(haproxy.v1, "127.0.0.201"), (haproxy.v2, "127.0.0.202")] {
        let mut chosen = Vec::new();
        for i in 1..=12 {
            let client = ip(&format!("127.{i}.0.9"));
            let shown = body(&get_from(client, frontend, "/show", &[]).await);
            let fields: Vec<&str> = shown.split('|').collect();
            assert_eq!(
                fields[0],
                client.to_string(),
                "{shown}: {}",
                haproxy.output()
            );
            assert_eq!(fields[2], balancer, "{shown}");
            assert_eq!(fields[3], client.to_string(), "{shown}");
            // The client's own port, as HAProxy saw it.
            assert!(fields[1].parse::<u16>().is_ok_and(|p| p > 0), "{shown}");
            let reply = get_from(client, frontend, "/", &[]).await;
            chosen.push(reply.header("x-backend").expect("a backend").to_string());
        }
        chosen.sort();
        chosen.dedup();
        assert!(chosen.len() > 1, "all clients pinned to {chosen:?}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn without_realip_the_proxy_protocol_address_is_only_proxy_protocol_addr() {
    let backends = Backend::start_all(["a", "b", "c"]).await;
    let named: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    // As nginx: realip is configured (trust), but it reads X-Real-IP, not the PROXY header.
    let proxy = Proxy::start(&behind_haproxy(""), &named).await;
    let Some(haproxy) = HaProxy::start(proxy.addr, ip("127.0.0.201"), ip("127.0.0.202")).await
    else {
        return;
    };
    let shown = body(&get_from(ip("127.3.0.9"), haproxy.v2, "/show", &[]).await);
    let fields: Vec<&str> = shown.split('|').collect();
    assert_eq!(
        (fields[0], fields[2]),
        ("127.0.0.202", "127.0.0.202"),
        "{shown}"
    );
    assert_eq!(fields[3], "127.3.0.9", "{shown}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_proxy_protocol_listener_closes_connections_without_a_good_header() {
    let logs = Logs::capture();
    let conf = "http { client_header_timeout 1s;
        server { listen {listen} proxy_protocol; location / { return 200 ok; } } }";
    let proxy = Proxy::start(conf, &[]).await;
    let cases: [&[u8]; 3] = [
        b"\r\n\r\n\0\r\nQUIT\n\x2f\x11\0\0",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"PROXY TCP4 203.0.113.9 nonsense 1 2\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for bytes in cases {
        let responses = Box::pin(exchange(proxy.addr, bytes, LIMIT)).await;
        assert!(
            responses.is_empty(),
            "{bytes:?} was answered: {responses:?}"
        );
    }
    // Nothing at all: closed at client_header_timeout.
    let mut silent = connect_from(ip("127.0.0.1"), proxy.addr).await;
    assert!(Box::pin(read_to_close(&mut silent, LIMIT)).await.is_empty());
    // A good header then the request: served.
    let good = b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\n\
        GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let responses = Box::pin(exchange(proxy.addr, good, LIMIT)).await;
    assert_eq!(responses.first().map(|r| r.status), Some(200));
    let warned = logs.lines_with("WARN");
    assert_eq!(
        warned.len(),
        4,
        "one line per refused connection: {warned:#?}"
    );
    assert!(
        warned.iter().all(|line| line.contains("client=127.0.0.1")),
        "{warned:#?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_proxy_header_on_a_plain_listener_is_a_bad_request() {
    let conf = format!("http {{ server {{ listen {{listen}}; location / {{ {SHOW} }} }} }}");
    let proxy = Proxy::start(&conf, &[]).await;
    let spoof = b"PROXY TCP4 203.0.113.9 192.0.2.1 4711 80\r\n\
        GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let responses = exchange(proxy.addr, spoof, LIMIT).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(400),
        "{responses:?}"
    );
    proxy.stop().await;
}

/// One `GET /` over `io` (HTTP/1.1, or HTTP/2 by prior knowledge): the status and body.
async fn get_over<T>(io: T, http2: bool) -> (u16, String)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let request = http::Request::get("http://app.test/")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = if http2 {
        let executor = hyper_util::rt::TokioExecutor::new();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(executor, io)
            .await
            .expect("HTTP/2");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

#[tokio::test]
async fn the_proxy_header_comes_before_tls_and_before_http2_prior_knowledge() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["app.test"], KeyKind::EcdsaP256);
    let conf = format!(
        "http {{ server {{ listen {{listen}} ssl proxy_protocol; server_name app.test;
            ssl_certificate {}; ssl_certificate_key {};
            set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;
            location / {{ return 200 \"$remote_addr $remote_port $scheme\"; }}
        }} }}",
        leaf.cert.display(),
        leaf.key.display()
    );
    let tls = Proxy::start(&conf, &[]).await;
    let mut tcp = connect_from(ip("127.0.0.1"), tls.addr).await;
    tcp.write_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n")
        .await
        .expect("send the header");
    let name = rustls_pki_types::ServerName::try_from("app.test").expect("name");
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[]));
    let stream = within(LIMIT, "the TLS handshake", connector.connect(name, tcp))
        .await
        .expect("TLS after the PROXY header");
    let answer = within(LIMIT, "the answer", get_over(stream, false)).await;
    assert_eq!(answer, (200, "2001:db8::7 4711 https".to_string()));
    tls.stop().await;

    let plain = "http { server { listen {listen} proxy_protocol;
        set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;
        location / { return 200 \"$remote_addr $server_protocol\"; } } }";
    let proxy = Proxy::start(plain, &[]).await;
    let mut tcp = connect_from(ip("127.0.0.1"), proxy.addr).await;
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[203, 0, 113, 7, 192, 0, 2, 1, 0x12, 0x67, 0, 80]);
    tcp.write_all(&header).await.expect("send the header");
    let answer = within(LIMIT, "the answer", get_over(tcp, true)).await;
    assert_eq!(answer, (200, "203.0.113.7 HTTP/2.0".to_string()));
    proxy.stop().await;
}
