//! `limit_req*` and `limit_conn*`: inheritance (lists whole, and only by a level with none of
//! its own; the rest field by field), and every error with nginx's message and its place.

use super::tests::{in_location, lower_errors, lower_ok};
use crate::config::model::*;

const ZONES: &str = "limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s; \
                     limit_conn_zone $binary_remote_addr zone=addr:1m;";

#[test]
fn limits_inherit_as_nginx_merges_them() {
    let config = lower_ok(&format!(
        "http {{ {ZONES}
            limit_req zone=one burst=5;
            limit_req_status 429;
            server {{
                limit_conn addr 2;
                location /inherits {{ return 200; }}
                location /own {{
                    limit_req zone=one nodelay;
                    limit_req_log_level warn;
                    limit_conn_dry_run on;
                    return 200;
                }}
            }}
        }}"
    ));
    let http = &config.http;
    assert_eq!(http.request_zones[0].rate, 10_000);
    assert_eq!(http.request_zones[0].size, 1 << 20);
    assert_eq!(http.connection_zones[0].name, "addr");
    let inherits = &http.servers[0].locations[0].proxy.limits;
    assert_eq!(inherits.requests.len(), 1);
    assert_eq!(
        (inherits.requests[0].burst, inherits.requests[0].delay),
        (5, 0)
    );
    assert_eq!(inherits.request_response.status, 429);
    assert_eq!(inherits.request_response.log_level, ErrorLevel::Error);
    assert_eq!(inherits.connections[0].max, 2);
    let own = &http.servers[0].locations[1].proxy.limits;
    assert_eq!(
        (own.requests[0].burst, own.requests[0].delay),
        (0, u64::MAX)
    );
    assert_eq!(own.request_response.status, 429, "inherited field by field");
    assert_eq!(own.request_response.log_level, ErrorLevel::Warn);
    assert!(own.connection_response.dry_run);
    assert_eq!(own.connections.len(), 1, "the server's limit_conn");
    let plain = lower_ok(&in_location("return 200;"));
    assert!(plain.http.servers[0].locations[0].proxy.limits.is_empty());
}

#[test]
fn zone_errors() {
    let check = |http_level: &str, want: &[&str]| {
        let text = format!("http {{ {http_level} }}");
        assert_eq!(lower_errors(&text), want, "config: {text}");
    };
    check(
        "limit_req_zone $a zone=one:1m rate=5r/h;",
        &[r#"invalid value "rate=5r/h" in "limit_req_zone" directive in t.conf:1:38"#],
    );
    check(
        "limit_req_zone $a zone=one:16k rate=1r/s;",
        &[r#"zone "one" is too small in t.conf:1:26"#],
    );
    check(
        "limit_req_zone $a zone=one rate=1r/s;",
        &[r#"invalid value "zone=one" in "limit_req_zone" directive in t.conf:1:26"#],
    );
    check(
        "limit_req_zone $a rate=1r/s burst=1;",
        &[r#"invalid parameter "burst=1" in "limit_req_zone" directive in t.conf:1:36"#],
    );
    check(
        "limit_req_zone $a rate=1r/s rate=2r/s;",
        &[r#""limit_req_zone" must have "zone" parameter in t.conf:1:8"#],
    );
    check(
        "limit_req_zone $a zone=z:1m rate=1r/s; limit_req_zone $b zone=z:2m rate=1r/s;",
        &[r#"duplicate zone "z" in t.conf:1:47"#],
    );
    check(
        "limit_conn_zone $a addr:1m;",
        &[r#"invalid parameter "addr:1m" in "limit_conn_zone" directive in t.conf:1:27"#],
    );
}

#[test]
fn limit_errors() {
    let check = |body: &str, want: &[&str]| {
        let text = format!("http {{ {ZONES} server {{ location / {{ {body} }} }} }}");
        assert_eq!(lower_errors(&text), want, "config: {text}");
    };
    // The location body starts at column 139.
    check(
        "limit_req zone=one burst=0;",
        &[r#"invalid value "burst=0" in "limit_req" directive in t.conf:1:158"#],
    );
    check(
        "limit_req zone=one delay=0;",
        &[r#"invalid value "delay=0" in "limit_req" directive in t.conf:1:158"#],
    );
    check(
        "limit_req burst=5;",
        &[r#""limit_req" must have "zone" parameter in t.conf:1:139"#],
    );
    check(
        "limit_req zone=one; limit_req zone=one burst=2;",
        &[r#""limit_req" directive is duplicate in t.conf:1:159"#],
    );
    check(
        "limit_conn addr 0;",
        &[r#"invalid value "0" in "limit_conn" directive in t.conf:1:155"#],
    );
    check(
        "limit_req_status 600;",
        &[r#"invalid value "600" in "limit_req_status" directive in t.conf:1:156"#],
    );
    check(
        "limit_conn_log_level crit;",
        &[r#"invalid value "crit" in "limit_conn_log_level" directive in t.conf:1:160"#],
    );
    check(
        "limit_req_zone $a zone=x:1m;",
        &[r#""limit_req_zone" directive is not allowed here in t.conf:1:139"#],
    );
    // A zone of the other kind is as unknown as a missing one.
    check(
        "limit_req zone=addr; limit_conn one 1;",
        &[
            r#"unknown zone "addr" in "limit_req" directive in t.conf:1:139"#,
            r#"unknown zone "one" in "limit_conn" directive in t.conf:1:160"#,
        ],
    );
}

#[test]
fn an_unknown_zone_inherited_by_many_locations_is_reported_once() {
    let errors =
        lower_errors("http { limit_req zone=gone; server { location /a { } location /b { } } }");
    assert_eq!(
        errors,
        [r#"unknown zone "gone" in "limit_req" directive in t.conf:1:8"#]
    );
}
