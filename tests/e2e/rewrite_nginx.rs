//! tether's rewrite module next to real nginx 1.22: one server block of `rewrite`, `return`,
//! `set` and `if` in both, the same requests sent to each, and the same status, `Location`
//! (the port each listens on aside), body of tether's own 2xx answers and URI sent upstream
//! expected back.

use std::net::SocketAddr;

use crate::harness::client::request;
use crate::harness::nginx::Nginx;
use crate::harness::{Backend, Proxy, send};

/// Both proxies' server block (`u` is the upstream both have).
fn locations() -> String {
    let mut block = String::from(
        r#"
        location /brk/ { rewrite ^/brk/(.*) /users/$1 break; proxy_pass http://u/api/; }
        location /nof/ { rewrite ^/nof/(.*) /nof/x$1; proxy_pass http://u/api/; }
        location /q/ { rewrite ^/q/(.*) /z?a=$1 break; proxy_pass http://u; }
        location /qq/ { rewrite ^/qq/(.*) /z?a=$1? break; proxy_pass http://u; }
        location /sp/ { rewrite ^/sp/(.*) "/z z/$1" break; proxy_pass http://u; }
        location ~ ^/re/(?<first>[^/]+)/(.*)$ { proxy_pass http://u/r/$2?f=$first; }
        location /red { rewrite ^/red(.*) /x$1 redirect; }
        location /perm { rewrite ^/perm(.*) /y$1?via=perm permanent; }
        location /abs { rewrite ^ http://elsewhere.example$uri?from=abs; }
        location /ret { return 301 /to; }
        location /noport { port_in_redirect off; return 302 /np; }
        location /relative { absolute_redirect off; rewrite ^/relative(.*) /r$1 redirect; }
        location /loop { rewrite ^ /loop last; }
        location /cnt { set $a 1; if ($arg_x = 1) { set $a 2; } return 200 "a=$a [$1]"; }
        location /ifre { if ($uri ~ ^/ifre/(?<nm>\w+)) { return 200 "got $1 $nm"; } return 404; }
        location /old/ { rewrite ^/old/(.*)$ /new/$1?from=old last; }
        location /new/ { proxy_pass http://u; }
        location /args { set $args "v=2"; proxy_pass http://u; }
        location /m {
            if ($request_method = OPTIONS) { return 204; }
            if ($http_x_a !~* ^yes$) { return 403 "no"; }
            return 200 "yes $http_x_a";
        }
        location = /t { rewrite ^ /s0 last; }
        location = /s10 { return 200 "ten"; }
        "#,
    );
    for step in 0..10 {
        let next = step + 1;
        block.push_str(&format!(
            "location = /s{step} {{ rewrite ^ /s{next} last; }}\n"
        ));
    }
    block
}

/// (method, target, `X-A` header).
const CASES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/brk/a%20b?x=1", None),
    ("GET", "/nof/a?x=1", None),
    ("GET", "/q/a?x=1", None),
    ("GET", "/qq/a?x=1", None),
    ("GET", "/sp/a?x=1", None),
    ("GET", "/re/one/two?q=1", None),
    ("GET", "/red/a?x=1", None),
    ("GET", "/red/a%20b?x=1", None),
    ("GET", "/red/a+b", None),
    ("GET", "/q/a%20b?x=1", None),
    ("GET", "/q/a+b%26c", None),
    ("GET", "/brk/a+b%3F?x=1", None),
    ("GET", "/perm/a?x=1", None),
    ("GET", "/abs/p?x=1", None),
    ("GET", "/ret", None),
    ("GET", "/noport", None),
    ("GET", "/relative/a?x=1", None),
    ("GET", "/loop", None),
    ("GET", "/cnt?x=1", None),
    ("GET", "/cnt", None),
    ("GET", "/ifre/abc", None),
    ("GET", "/ifre/", None),
    ("GET", "/old/x%20y?z=1", None),
    ("GET", "/args?v=1", None),
    ("OPTIONS", "/m", None),
    ("GET", "/m", Some("YES")),
    ("GET", "/m", Some("maybe")),
    ("GET", "/s0", None),
    ("GET", "/t", None),
];

/// What one proxy did with each case: status, `Location`, body (2xx answers of its own), and
/// the URI the backend was sent (if it was).
async fn answers(addr: SocketAddr, backend: &Backend) -> Vec<String> {
    let mut seen = Vec::new();
    for (method, target, x_a) in CASES {
        let hits = backend.hits();
        let mut req = request(method, target, "");
        if let Some(value) = x_a {
            req.headers_mut().insert("x-a", value.parse().unwrap());
        }
        let reply = send(addr, req).await;
        let location = reply
            .header("location")
            .replace(&format!(":{}", addr.port()), ":PORT");
        let upstream = if backend.hits() > hits {
            backend.last().uri
        } else {
            "-".to_string()
        };
        let body = match reply.status.is_success() && upstream == "-" {
            true => reply.body.clone(),
            false => String::new(),
        };
        seen.push(format!(
            "{method} {target}: {} location={location} body={body} upstream={upstream}",
            reply.status.as_u16()
        ));
    }
    seen
}

#[tokio::test]
async fn rewrite_return_set_and_if_answer_as_nginx_answers() {
    let a = Backend::start("a").await;
    let block = locations();
    let Some(nginx) = Nginx::start_with("server {a};", &block, &[("a", a.addr)]).await else {
        return;
    };
    let conf = format!(
        "http {{ upstream u {{ server {{a}}; }} server {{ listen {{listen}}; {block} }} }}"
    );
    let proxy = Proxy::start(&conf, &[("a", a.addr)]).await;
    let theirs = answers(nginx.addr, &a).await;
    let ours = answers(proxy.addr, &a).await;
    assert_eq!(ours.len(), CASES.len());
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(ours, theirs);
    }
    proxy.stop().await;
}
