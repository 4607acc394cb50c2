//! `error_page` and nested locations next to real nginx: the same server blocks in both, the
//! same requests, the same status, body (where it is not a default page, whose footer names
//! the server) and `Location` expected back.

use std::net::SocketAddr;

use crate::error_pages::{DEAD_FARM, MAINTENANCE, NESTED, NESTED_PATHS, start_server};
use crate::harness::client::request;
use crate::harness::nginx::Nginx;
use crate::harness::{Backend, free_addr, send};

/// The block with `{NAME}` placeholders filled, for nginx (tether's harness fills its own).
fn filled(block: &str, backends: &[(&str, SocketAddr)]) -> String {
    let mut text = block.to_string();
    for (name, addr) in backends {
        text = text.replace(&format!("{{{name}}}"), &addr.to_string());
    }
    text
}

/// (status, body or "default page", Location) for each request, as `addr` answers them.
async fn answers(addr: SocketAddr, requests: &[(&str, &str)]) -> Vec<(u16, String, String)> {
    let mut seen = Vec::new();
    for &(method, path) in requests {
        let reply = send(addr, request(method, path, "")).await;
        // A default page's footer names the server: compare that it is one, not its text.
        let body = if reply.body.contains("<center><h1>") {
            "default page".to_string()
        } else {
            reply.body.clone()
        };
        seen.push((
            reply.status.as_u16(),
            body,
            reply.header("location").to_string(),
        ));
    }
    seen
}

/// Runs `block` in tether and nginx and compares their answers to `requests`.
async fn compare(block: &str, backends: &[(&str, SocketAddr)], requests: &[(&str, &str)]) {
    let Some(nginx) =
        Nginx::start_with("server 127.0.0.1:9;", &filled(block, backends), backends).await
    else {
        return;
    };
    let tether = start_server(block, backends).await;
    let ours = answers(tether.addr, requests).await;
    let theirs = answers(nginx.addr, requests).await;
    for ((request, ours), theirs) in requests.iter().zip(&ours).zip(&theirs) {
        assert_eq!(ours, theirs, "{request:?}\n{}", nginx.logs());
    }
}

#[tokio::test]
async fn error_pages_answer_as_nginx_answers() {
    let dead = free_addr();
    let b = Backend::start("b").await;
    let block = format!(
        r#"{DEAD_FARM}
        location /intercepted/ {{
            proxy_intercept_errors on;
            error_page 404 = /nf;
            error_page 500 =503 /nf;
            proxy_pass http://{{b}}/;
        }}
        location = /nf {{ internal; return 200 "not found here"; }}
        location /gone {{ error_page 404 https://example.com/new$uri; return 404; }}
        location /moved {{ error_page 404 =301 http://example.com/; return 404; }}
        location /text {{ error_page 404 /nf; return 404 "text wins"; }}
        location /twice {{ error_page 502 /again; proxy_pass http://{{dead}}; }}
        location /again {{ error_page 502 /nf; proxy_pass http://{{dead}}; }}
        "#
    );
    let requests = [
        ("GET", "/shop"),
        ("POST", "/shop"),
        ("HEAD", "/shop"),
        ("GET", "/sorry.html"),
        ("GET", "/api/x?y=1"),
        ("DELETE", "/api/x"),
        ("GET", "/intercepted/status?code=404"),
        ("GET", "/intercepted/status?code=500"),
        ("GET", "/intercepted/status?code=403"),
        ("GET", "/intercepted/plain"),
        ("GET", "/gone/x"),
        ("GET", "/moved"),
        ("GET", "/text"),
        ("GET", "/twice"),
    ];
    compare(&block, &[("dead", dead), ("b", b.addr)], &requests).await;
}

#[tokio::test]
async fn nested_locations_match_as_nginx_matches() {
    let a = Backend::start("a").await;
    let requests: Vec<(&str, &str)> = NESTED_PATHS.iter().map(|path| ("GET", *path)).collect();
    compare(NESTED, &[("a", a.addr)], &requests).await;
}

#[tokio::test]
async fn a_named_page_for_the_servers_return_answers_as_nginx_answers() {
    compare(
        MAINTENANCE,
        &[],
        &[("GET", "/"), ("POST", "/x"), ("HEAD", "/y")],
    )
    .await;
}

/// An upstream that answers every request `401` with a Basic challenge, then closes.
async fn challenger() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"farm\"\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_intercepted_401_keeps_its_challenge_as_in_nginx() {
    let upstream = challenger().await;
    let block = r#"
        location / {
            proxy_intercept_errors on;
            error_page 401 /login;
            proxy_pass http://{up};
        }
        location = /login { internal; return 200 "please sign in"; }
    "#;
    let backends = [("up", upstream)];
    let Some(nginx) =
        Nginx::start_with("server 127.0.0.1:9;", &filled(block, &backends), &backends).await
    else {
        return;
    };
    let tether = start_server(block, &backends).await;
    for addr in [tether.addr, nginx.addr] {
        let reply = send(addr, request("GET", "/private", "")).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (401, "please sign in")
        );
        assert_eq!(
            reply.header("www-authenticate"),
            "Basic realm=\"farm\"",
            "{addr}"
        );
    }
}
