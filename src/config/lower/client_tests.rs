//! The client-address directives: realip settings and `allow`/`deny`, their inheritance
//! (lists whole, and only by a level with none of its own), `listen ... proxy_protocol`, and
//! every error with its `file:line:col`.

use std::net::IpAddr;

use super::tests::{in_location, in_server, lower_errors, lower_ok};
use crate::config::model::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn realip_settings_inherit_field_by_field_and_lists_whole() {
    let config = lower_ok(
        "http {
            set_real_ip_from 10.0.0.0/8;
            set_real_ip_from 2001:db8::/32;
            real_ip_header X-Forwarded-For;
            server {
                listen 80;
                real_ip_recursive on;
                location /inherits { return 200; }
                location /own {
                    set_real_ip_from 192.168.0.0/16;
                    real_ip_header proxy_protocol;
                    return 200;
                }
                location /custom { real_ip_header CF-Connecting-IP; return 200; }
            }
            server { listen 81; real_ip_header X-Real-IP; }
        }",
    );
    let server = &config.http.servers[0];
    let real_ip = |index: usize| &server.locations[index].proxy.client.real_ip;
    assert_eq!(server.client.real_ip.trusted.len(), 2);
    assert_eq!(server.client.real_ip.header, RealIpHeader::XForwardedFor);
    assert!(server.client.real_ip.recursive);
    assert_eq!(real_ip(0), &server.client.real_ip);
    // Its own list replaces the inherited one; the flag still comes from the server.
    assert_eq!(real_ip(1).trusted.len(), 1);
    assert!(real_ip(1).trusted[0].contains(ip("192.168.7.7")));
    assert!(!real_ip(1).trusted[0].contains(ip("10.0.0.1")));
    assert_eq!(real_ip(1).header, RealIpHeader::ProxyProtocol);
    assert!(real_ip(1).recursive);
    let custom = RealIpHeader::Other("cf-connecting-ip".into());
    assert_eq!(real_ip(2).header, custom);
    let other = &config.http.servers[1].client.real_ip;
    assert_eq!(other.header, RealIpHeader::XRealIp);
    assert!(!other.recursive);
}

#[test]
fn access_rules_keep_their_order_and_inherit_only_into_a_level_without_any() {
    let config = lower_ok(&in_server(
        "allow 10.0.0.0/8; deny all;
         location /open { return 200; }
         location /status { allow 127.0.0.1; allow ::1; allow unix:; deny all; return 200; }",
    ));
    let server = &config.http.servers[0];
    let open = &server.locations[0].proxy.client;
    let status = &server.locations[1].proxy.client;
    assert_eq!(server.client.access.len(), 2);
    assert_eq!(open.access, server.client.access);
    assert!(open.admits(ip("10.2.3.4")));
    assert!(!open.admits(ip("127.0.0.1")));
    assert_eq!(status.access.len(), 4);
    assert!(status.admits(ip("127.0.0.1")));
    assert!(status.admits(ip("::1")));
    assert!(!status.admits(ip("10.2.3.4")));
    assert_eq!(status.access[2].peers, Peers::Unix);
}

#[test]
fn proxy_protocol_is_a_property_of_the_address() {
    let config = lower_ok(
        "http {
            server { listen 127.0.0.1:8080 proxy_protocol; server_name a; }
            server { listen 127.0.0.1:8080; server_name b; listen 127.0.0.1:8081; }
        }",
    );
    let listens: Vec<(u16, bool)> = config
        .http
        .servers
        .iter()
        .flat_map(|s| &s.listens)
        .map(|l| (l.addr.port(), l.proxy_protocol))
        .collect();
    assert_eq!(listens, [(8080, true), (8080, true), (8081, false)]);
}

#[test]
fn bad_addresses_are_reported_where_they_are_written() {
    assert_eq!(
        lower_errors(&in_location(
            "allow 10.0.0.0/33; deny 300.1.1.1; allow everyone;"
        )),
        [
            r#"invalid parameter "10.0.0.0/33" in "allow" directive in t.conf:1:36"#,
            r#"invalid parameter "300.1.1.1" in "deny" directive in t.conf:1:54"#,
            r#"invalid parameter "everyone" in "allow" directive in t.conf:1:71"#,
        ]
    );
    assert_eq!(
        lower_errors(&in_server(
            "set_real_ip_from 10.0.0.0/8x; set_real_ip_from lb.example.com; \
             real_ip_recursive maybe; real_ip_header a; real_ip_header b;"
        )),
        [
            r#"invalid parameter "10.0.0.0/8x" in "set_real_ip_from" directive in t.conf:1:34"#,
            r#""lb.example.com" in "set_real_ip_from" directive is not supported by tether in t.conf:1:64"#,
            r#"invalid value "maybe" in "real_ip_recursive" directive, it must be "on" or "off" in t.conf:1:98"#,
            r#""real_ip_header" directive is duplicate in t.conf:1:123"#,
        ]
    );
    assert_eq!(
        lower_errors(&in_server("allow;")),
        [r#"invalid number of arguments in "allow" directive in t.conf:1:17"#]
    );
}
