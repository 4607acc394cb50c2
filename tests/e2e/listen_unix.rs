//! `listen unix:PATH`: a server block on a UNIX-domain stream socket (behind another proxy on
//! the same host). Requests and WebSockets over the socket, nginx's variables for such a
//! client (`$remote_addr` = `unix:`, `$server_addr` = `unix:PATH`, empty ports), `allow
//! unix:`, a reload adding and then dropping the socket while a WebSocket on it keeps
//! echoing, the socket file removed when tether stops, and the same config next to nginx.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Backend, Proxy, get, within};

/// One `GET path` over the socket at `socket`, `Connection: close`; the whole answer as text.
async fn get_unix(socket: &Path, path: &str) -> String {
    send_unix(socket, "", path).await
}

/// As [`get_unix`], with `preamble` (a PROXY protocol header) sent first.
async fn send_unix(socket: &Path, preamble: &str, path: &str) -> String {
    within(Duration::from_secs(5), "an answer over the socket", async {
        let mut stream = UnixStream::connect(socket)
            .await
            .expect("connect to the socket");
        let request =
            format!("{preamble}GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        // A reset (a refused PROXY header with the request unread) ends the answer too.
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
}

/// The status code of an HTTP/1.1 answer.
fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

/// The value of header `name` in an HTTP/1.1 answer ("" if absent).
fn header<'a>(answer: &'a str, name: &str) -> &'a str {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, value)| value.trim())
}

type UnixWs = tokio_tungstenite::WebSocketStream<UnixStream>;

async fn websocket_unix(socket: &Path) -> UnixWs {
    let stream = UnixStream::connect(socket)
        .await
        .expect("connect to the socket");
    let request = "ws://app/ws"
        .into_client_request()
        .expect("a WebSocket URL");
    let (ws, response) = within(
        Duration::from_secs(5),
        "the WebSocket handshake over the socket",
        client_async(request, stream),
    )
    .await
    .expect("the WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

async fn echoes(ws: &mut UnixWs, text: &str) {
    ws.send(Message::text(text)).await.expect("send a frame");
    let echo = within(Duration::from_secs(5), "the echo", ws.next()).await;
    assert_eq!(
        echo.expect("a frame").expect("a message"),
        Message::text(text)
    );
}

/// The server block both proxies run, on `{listen}` and on the socket.
fn unix_server(path: &str) -> String {
    format!(
        "listen unix:{path}; \
         location / {{ proxy_pass http://u; \
         proxy_set_header X-Real-IP $remote_addr; \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; \
         proxy_set_header X-Addr \"$server_addr|$server_port|$remote_port\"; \
         proxy_http_version 1.1; \
         proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $http_upgrade; }} \
         location /inner/ {{ allow unix:; deny all; proxy_pass http://u; }}"
    )
}

#[tokio::test]
async fn a_unix_socket_takes_requests_and_websockets_with_nginx_variables() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("tether.sock");
    let path = socket.display().to_string();
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{app}}; }} server {{ listen {{listen}}; {} }} }}",
        unix_server(&path)
    );
    let proxy = Proxy::start(&conf, &[("app", app.addr)]).await;

    let answer = get_unix(&socket, "/page").await;
    assert_eq!(status(&answer), "200", "{answer}");
    assert_eq!(header(&answer, "x-backend"), "app");
    let seen = app.last();
    assert_eq!(seen.uri, "/page");
    assert_eq!(seen.headers["x-real-ip"], "unix:");
    assert_eq!(seen.headers["x-forwarded-for"], "unix:");
    assert_eq!(seen.headers["x-addr"], format!("unix:{path}||"));

    // `allow unix:` lets the socket's clients in and no TCP client.
    assert_eq!(status(&get_unix(&socket, "/inner/x").await), "200");
    assert_eq!(get(proxy.addr, "/inner/x").await.status.as_u16(), 403);

    let mut ws = websocket_unix(&socket).await;
    echoes(&mut ws, "over the listening socket").await;

    // nginx makes the socket usable by anyone who can reach its folder.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket)
        .expect("the socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);

    proxy.stop().await;
    assert!(!socket.exists(), "the socket file outlived tether");
}

#[tokio::test]
async fn a_proxy_on_the_socket_names_the_client_by_proxy_protocol() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("pp.sock");
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{app}}; }} server {{ listen {{listen}}; \
         listen unix:{} proxy_protocol; set_real_ip_from unix:; real_ip_header proxy_protocol; \
         location / {{ proxy_pass http://u; proxy_set_header X-Real-IP $remote_addr; \
         proxy_set_header X-Peer $realip_remote_addr; }} }} }}",
        socket.display()
    );
    let _proxy = Proxy::start(&conf, &[("app", app.addr)]).await;
    let header = "PROXY TCP4 203.0.113.7 192.0.2.1 4711 80\r\n";
    let answer = send_unix(&socket, header, "/").await;
    assert_eq!(status(&answer), "200", "{answer}");
    let seen = app.last();
    assert_eq!(seen.headers["x-real-ip"], "203.0.113.7");
    assert_eq!(seen.headers["x-peer"], "unix:");
    // Without the header the connection is closed, as on TCP.
    let answer = get_unix(&socket, "/").await;
    assert_eq!(answer, "");
}

#[tokio::test]
async fn a_file_already_at_the_path_fails_the_start_as_in_nginx() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("taken.sock");
    std::fs::write(&socket, "").expect("a file in the way");
    let conf = format!(
        "events {{}} http {{ server {{ listen unix:{}; return 200; }} }}",
        socket.display()
    );
    let config = tether::config::load_str(Path::new("t.conf"), &conf, Path::new("."))
        .expect("the config loads");
    let Err(error) = tether::runtime::Tether::start(&config).await else {
        panic!("tether started over a file in the way");
    };
    let error = error.to_string();
    assert!(
        error.contains(&format!("bind() to unix:{}", socket.display())) && error.contains("in use"),
        "{error}"
    );
    // Not tether's file: left where it was.
    assert!(socket.exists());
}

#[tokio::test]
async fn a_reload_adds_and_drops_a_unix_listener_without_cutting_its_websocket() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let socket = dir.path().join("reload.sock");
    let path = socket.display().to_string();
    let without = "events {} http { upstream u { server {app}; } server { listen {listen}; \
                   location / { proxy_pass http://u; } } }";
    let with = format!(
        "events {{}} http {{ upstream u {{ server {{app}}; }} server {{ listen {{listen}}; {} }} }}",
        unix_server(&path)
    );
    let backends = [("app", app.addr)];
    let proxy = Proxy::start(without, &backends).await;
    assert!(!socket.exists());

    let applied = proxy
        .apply(&with, &backends)
        .await
        .expect("reload adding the socket");
    assert_eq!(applied.listeners_added.len(), 1);
    assert_eq!(status(&get_unix(&socket, "/").await), "200");
    let mut ws = websocket_unix(&socket).await;
    echoes(&mut ws, "before").await;

    // The same config again keeps the listener.
    let applied = proxy
        .apply(&with, &backends)
        .await
        .expect("reload keeping it");
    assert!(applied.listeners_added.is_empty() && applied.listeners_removed.is_empty());
    echoes(&mut ws, "kept").await;

    let applied = proxy
        .apply(without, &backends)
        .await
        .expect("reload dropping it");
    assert_eq!(applied.listeners_removed.len(), 1);
    assert!(
        !socket.exists(),
        "the dropped listener's socket file is still there"
    );
    assert!(UnixStream::connect(&socket).await.is_err());
    echoes(&mut ws, "after the listener went").await;
    assert_eq!(get(proxy.addr, "/").await.status.as_u16(), 200);
}

#[tokio::test]
async fn a_unix_listener_next_to_real_nginx() {
    let app = Backend::start("app").await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let nginx_socket = dir.path().join("nginx.sock");
    let tether_socket = dir.path().join("tether.sock");
    let backends = [("app", app.addr)];
    let nginx_server = unix_server(&nginx_socket.display().to_string());
    let Some(_nginx) =
        crate::harness::nginx::Nginx::start_with("server {app};", &nginx_server, &backends).await
    else {
        return;
    };
    let conf = format!(
        "events {{}} http {{ upstream u {{ server {{app}}; }} server {{ listen {{listen}}; {} }} }}",
        unix_server(&tether_socket.display().to_string())
    );
    let _proxy = Proxy::start(&conf, &backends).await;

    for path in ["/page?x=1", "/inner/y"] {
        let mut seen = Vec::new();
        for socket in [&nginx_socket, &tether_socket] {
            let answer = get_unix(socket, path).await;
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            let last = app.last();
            let header = |name: &str| {
                let value = last.headers.get(name).and_then(|v| v.to_str().ok());
                value.unwrap_or("").to_string()
            };
            let addr = header("x-addr").replace(&socket.display().to_string(), "PATH");
            seen.push((
                status(&answer).to_string(),
                body,
                header("x-real-ip"),
                header("x-forwarded-for"),
                addr,
            ));
        }
        assert_eq!(seen[0], seen[1], "nginx, then tether, for {path}");
    }
}
