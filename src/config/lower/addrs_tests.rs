//! Where upstreams live, as lowered: UNIX-domain sockets, repeated `server` lines, `resolve`
//! with `resolver`, `listen ... ipv6only`, and `proxy_pass` to a host that is no upstream.

use std::time::Duration;

use super::tests::{in_location, lower_errors, lower_ok};
use crate::config::model::*;

fn upstream<'a>(config: &'a Config, name: &str) -> &'a Upstream {
    let found = config.http.upstreams.iter().find(|u| u.name == name);
    found.unwrap_or_else(|| panic!("no upstream {name}"))
}

fn proxy_pass(config: &Config) -> &ProxyPass {
    match &config.http.servers[0].locations[0].handler {
        Handler::Proxy(pass) => pass,
        other => panic!("not a proxy_pass: {other:?}"),
    }
}

#[test]
fn unix_sockets_and_repeated_addresses_are_servers() {
    let config = lower_ok(
        "http { upstream u { server unix:/run/app.sock weight=2; server a:1; server a:1; \
         server UNIX:/run/b.sock; } }",
    );
    let servers = &upstream(&config, "u").servers;
    assert_eq!(
        servers.len(),
        4,
        "a repeated address is a server of its own"
    );
    assert!(servers[0].unix);
    assert_eq!(
        (servers[0].host.as_str(), servers[0].weight),
        ("/run/app.sock", 2)
    );
    assert_eq!(
        servers[0].address, "unix:/run/app.sock",
        "the name as written"
    );
    assert!(!servers[1].unix && servers[1].address == servers[2].address);
    assert!(
        servers[3].unix,
        "the scheme is case-insensitive, as nginx's"
    );
}

#[test]
fn proxy_pass_to_a_unix_socket_keeps_its_uri() {
    let config = lower_ok(&in_location("proxy_pass http://unix:/run/app.sock:/api/;"));
    let pass = proxy_pass(&config);
    let path = "/run/app.sock".to_string();
    assert_eq!(pass.target, ProxyTarget::Unix { path });
    assert_eq!(pass.uri.as_deref(), Some("/api/"));
    let config = lower_ok(&in_location("proxy_pass http://unix:/run/app.sock;"));
    assert_eq!(proxy_pass(&config).uri, None);
}

#[test]
fn unix_socket_errors() {
    // `sun_path` holds 107 bytes and a NUL.
    let fits = format!("/{}", "x".repeat(106));
    lower_ok(&format!("http {{ upstream u {{ server unix:{fits}; }} }}"));
    let errors = lower_errors(&format!(
        "http {{ upstream u {{ server unix:; server unix:{fits}x; }} }}"
    ));
    assert_eq!(
        errors[0],
        r#"invalid address "unix:" in "server" directive in t.conf:1:28"#
    );
    assert!(
        errors[1].starts_with(r#"invalid address "unix:/xxx"#) && errors[1].ends_with("1:42"),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2);
    assert_eq!(
        lower_errors("http { server { location ~ ^/x { proxy_pass http://unix:/a.sock:/y; } } }"),
        [
            r#""proxy_pass" cannot have URI part in location given by regular expression in t.conf:1:34"#
        ]
    );
}

#[test]
fn a_host_that_is_no_upstream_is_proxied_to_as_nginx_does() {
    let config = lower_ok(&in_location("proxy_pass http://app.internal;"));
    let want = ProxyTarget::Address {
        host: "app.internal".into(),
        port: 80,
        port_written: false,
    };
    assert_eq!(proxy_pass(&config).target, want);
    let config = lower_ok(&in_location("proxy_pass https://app.internal/x;"));
    let want = ProxyTarget::Address {
        host: "app.internal".into(),
        port: 443,
        port_written: false,
    };
    assert_eq!(proxy_pass(&config).target, want);
}

#[test]
fn resolve_takes_the_resolver_of_its_upstream_else_the_http_level() {
    let config = lower_ok(
        "http {
  resolver 10.0.0.53 [fd00::53]:5353 valid=5s ipv6=off;
  resolver_timeout 2s;
  upstream pods { server app.svc:8080 resolve; zone pods 64k; }
  upstream own { resolver dns.local:53; resolver_timeout 1s; server b.svc resolve; }
}",
    );
    let pods = upstream(&config, "pods");
    assert!(pods.servers[0].resolve);
    let resolver = pods.resolver.as_ref().expect("the http level's");
    assert_eq!(
        resolver.servers,
        [
            ("10.0.0.53".to_string(), 53),
            ("fd00::53".to_string(), 5353)
        ]
    );
    assert_eq!(resolver.valid, Some(Duration::from_secs(5)));
    assert!(resolver.ipv4 && !resolver.ipv6);
    assert_eq!(resolver.timeout, Duration::from_secs(2));
    let own = upstream(&config, "own").resolver.as_ref().expect("its own");
    assert_eq!(own.servers, [("dns.local".to_string(), 53)]);
    assert_eq!((own.valid, own.timeout), (None, Duration::from_secs(1)));
}

#[test]
fn resolver_errors() {
    assert_eq!(
        lower_errors("http { upstream u { server app.svc resolve; } }"),
        ["no resolver defined to resolve app.svc in t.conf:1:21"]
    );
    assert_eq!(
        lower_errors(
            "http { resolver 1.1.1.1 valid=0 bogus=1; resolver 1.1.1.1 ipv4=off ipv6=off; \
             upstream u { server a:1; } }"
        ),
        [
            r#"invalid parameter "valid=0" in "resolver" directive in t.conf:1:25"#,
            r#"invalid parameter "bogus=1" in "resolver" directive in t.conf:1:33"#,
            r#""ipv4" and "ipv6" cannot both be "off" in t.conf:1:42"#,
        ]
    );
}

#[test]
fn a_server_level_resolver_is_noted_as_having_no_effect() {
    let config = lower_ok("http { server { resolver 127.0.0.11 valid=10s; } }");
    assert!(
        config.ignored.iter().any(|i| i.name == "resolver"),
        "{:?}",
        config.ignored
    );
}

#[test]
fn ipv6only_is_on_unless_turned_off() {
    let config = lower_ok(
        "http { server { listen 80; listen [::]:80; } server { listen [::]:81 ipv6only=off; } }",
    );
    let listens: Vec<bool> = config
        .http
        .servers
        .iter()
        .flat_map(|s| s.listens.iter().map(|l| l.ipv6only))
        .collect();
    assert_eq!(listens, [true, true, false]);
}
