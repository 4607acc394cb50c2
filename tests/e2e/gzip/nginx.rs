//! `gzip` next to real nginx 1.22: the same settings and the same upstream pages behind both,
//! the same requests to each, and the same answer on what matters — status, whether the body
//! is gzipped, `Vary`, `ETag`, `Accept-Ranges`, whether a length is declared, and the body
//! once decoded.

use super::pages::{self, Headers, fetch};
use crate::harness::Proxy;
use crate::harness::nginx::Nginx;

/// The server block's settings both run with.
const SETTINGS: &str = "gzip on; gzip_vary on; gzip_types application/json text/plain;
    gzip_min_length 100; gzip_proxied expired no-cache; gzip_disable msie6;
    location / { proxy_pass http://u; }
    location /said { return 200 \"a text answered by the proxy itself, long enough to be compressed, surely more than a hundred bytes by now\"; }
    location /level { proxy_pass http://u; gzip_comp_level 9; gzip_vary off; }
    location /off { proxy_pass http://u; gzip off; }
    location /nowhere { return 404; }";

const GZIP: (&str, &str) = ("accept-encoding", "gzip");

#[tokio::test]
async fn tether_compresses_what_nginx_compresses() {
    let backend = pages::start().await;
    let upstream = "server {b};";
    let Some(nginx) = Nginx::start_with(upstream, SETTINGS, &[("b", backend)]).await else {
        return;
    };
    let conf = format!(
        "events {{}} http {{ upstream u {{ {upstream} }} server {{ listen {{listen}}; {SETTINGS} }} }}"
    );
    let tether = Proxy::start(&conf, &[("b", backend)]).await;
    let via = ("via", "1.1 cache");
    let msie = (
        "user-agent",
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    );
    let cases: &[(&str, &str, Headers)] = &[
        ("GET", "/page", &[GZIP]),
        ("GET", "/page", &[]),
        (
            "GET",
            "/page",
            &[("accept-encoding", "deflate, gzip;q=0.5")],
        ),
        ("GET", "/page", &[("accept-encoding", "gzip;q=0")]),
        ("GET", "/page", &[("accept-encoding", "x-gzip")]),
        ("GET", "/page", &[GZIP, msie]),
        ("GET", "/page", &[GZIP, via]),
        ("GET", "/expired", &[GZIP, via]),
        ("GET", "/cached", &[GZIP, via]),
        ("GET", "/tiny", &[GZIP]),
        ("GET", "/json", &[GZIP]),
        ("GET", "/png", &[GZIP]),
        ("GET", "/encoded", &[GZIP]),
        ("GET", "/range", &[GZIP]),
        ("GET", "/missing", &[GZIP]),
        ("GET", "/broken", &[GZIP]),
        ("GET", "/stream", &[GZIP]),
        ("HEAD", "/page", &[GZIP]),
        ("GET", "/said", &[GZIP]),
        ("HEAD", "/said", &[GZIP]),
        ("GET", "/nowhere", &[GZIP]),
        ("GET", "/level/page", &[GZIP]),
        ("GET", "/off/page", &[GZIP]),
    ];
    for (method, path, headers) in cases {
        let theirs = fetch(nginx.addr, method, path, headers).await;
        let ours = fetch(tether.addr, method, path, headers).await;
        let case = format!("{method} {path} {headers:?}");
        assert_eq!(ours.status, theirs.status, "{case}");
        assert_eq!(
            ours.gzipped(),
            theirs.gzipped(),
            "{case}: {:?}",
            ours.headers
        );
        for name in [
            "content-encoding",
            "vary",
            "etag",
            "accept-ranges",
            "content-type",
        ] {
            assert_eq!(ours.header(name), theirs.header(name), "{case}: {name}");
        }
        let declared = |f: &pages::Fetched| f.headers.contains_key("content-length");
        assert_eq!(declared(&ours), declared(&theirs), "{case}: content-length");
        // Error pages are signed by each proxy's own name.
        let signed = String::from_utf8_lossy(&theirs.decoded).replace("nginx/1.22.1", "tether");
        assert_eq!(
            String::from_utf8_lossy(&ours.decoded),
            signed,
            "{case}: the body"
        );
    }
}
