//! tether's realip next to real nginx's: the same server block in both, the same
//! X-Forwarded-For values sent from a trusted peer, the same `$remote_addr|$remote_port|
//! $realip_remote_addr|$realip_remote_port` expected back — with `real_ip_recursive` off and
//! on.

use std::net::SocketAddr;

use crate::harness::nginx::Nginx;
use crate::harness::{Backend, Proxy};
use crate::real_ip::get_from;

/// X-Forwarded-For lines (several where a client sends several), sent as written.
const CASES: &[&[&str]] = &[
    &["203.0.113.9"],
    &["203.0.113.9, 198.51.100.7, 10.1.1.1"],
    &["10.1.1.1, 10.2.2.2"],
    &["203.0.113.9:4711"],
    &["[2001:db8::7]:4711"],
    &["2001:db8::7"],
    &["unknown"],
    &["203.0.113.9, unknown"],
    &["unknown, 10.1.1.1"],
    &[" 203.0.113.9 ,, 10.1.1.1 , "],
    &["010.001.002.003"],
    &["1.2.3.4:0"],
    &["203.0.113.9", "198.51.100.7, 10.1.1.1"],
    &["203.0.113.9", "10.1.1.1"],
];

fn server_block(recursive: &str) -> String {
    format!(
        "set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For; real_ip_recursive {recursive};
        location / {{ return 200
            \"$remote_addr|$remote_port|$realip_remote_addr|$realip_remote_port\"; }}"
    )
}

async fn answers(addr: SocketAddr) -> Vec<String> {
    let mut seen = Vec::new();
    for lines in CASES {
        let headers: Vec<(&str, &str)> = lines.iter().map(|l| ("X-Forwarded-For", *l)).collect();
        let reply = get_from("127.0.0.1".parse().unwrap(), addr, "/", &headers).await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        // The peer's own port differs per connection: where it still is `$remote_port`, say so.
        let fields: Vec<&str> = body.split('|').collect();
        let peer_port = fields.get(3).copied().unwrap_or_default();
        seen.push(
            body.replace(&format!("|{peer_port}|"), "|PEER|")
                .replace(&format!("|{peer_port}"), "|PEER"),
        );
    }
    seen
}

#[tokio::test]
async fn x_forwarded_for_is_read_as_nginx_reads_it() {
    let a = Backend::start("a").await;
    for recursive in ["off", "on"] {
        let block = server_block(recursive);
        let Some(nginx) = Nginx::start_with("server {a};", &block, &[("a", a.addr)]).await else {
            return;
        };
        let conf = format!("http {{ server {{ listen {{listen}}; {block} }} }}");
        let proxy = Proxy::start(&conf, &[]).await;
        let (ours, theirs) = (answers(proxy.addr).await, answers(nginx.addr).await);
        for ((lines, ours), theirs) in CASES.iter().zip(&ours).zip(&theirs) {
            assert_eq!(
                ours, theirs,
                "recursive {recursive}, X-Forwarded-For {lines:?}"
            );
        }
        proxy.stop().await;
    }
}
