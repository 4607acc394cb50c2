//! Lowering tests: each directive's meaning, inheritance, and every error's exact wording.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::model::*;
use crate::config::{ConfigError, load_str};

pub(super) fn lower_ok(text: &str) -> Config {
    match load_str(Path::new("t.conf"), text, Path::new("/prefix")) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

pub(super) fn lower_errors(text: &str) -> Vec<String> {
    match load_str(Path::new("t.conf"), text, Path::new("/prefix")) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(errors) => errors.0.iter().map(ConfigError::to_string).collect(),
    }
}

/// Wraps `body` in `http { server { ... } }` on one line, so columns are easy to count: the body
/// starts at column 17.
pub(super) fn in_server(body: &str) -> String {
    format!("http {{ server {{ {body} }} }}")
}

/// The same inside `location / { ... }`: the body starts at column 30.
pub(super) fn in_location(body: &str) -> String {
    format!("http {{ server {{ location / {{ {body} }} }} }}")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

#[test]
fn main_and_events() {
    let config =
        lower_ok("worker_processes 4; pid logs/t.pid; events { worker_connections 1024; }");
    assert_eq!(config.worker_processes, WorkerProcesses::Count(4));
    assert_eq!(config.worker_connections, Some(1024));
    assert_eq!(config.pid.as_deref(), Some(Path::new("/prefix/logs/t.pid")));
    let config = lower_ok("worker_processes auto; pid /run/t.pid;");
    assert_eq!(config.worker_processes, WorkerProcesses::Auto);
    assert_eq!(config.worker_connections, None);
    assert_eq!(config.pid.as_deref(), Some(Path::new("/run/t.pid")));
    assert_eq!(config.http.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(config.http.client_header_timeout, Duration::from_secs(60));
}

#[test]
fn listen_forms() {
    let config = lower_ok(&in_server(
        "listen 8080 default_server; listen 1.2.3.4:81; listen *:82 reuseport backlog=511; \
         listen [::]:83 ipv6only=on; listen [::1]:84 http2; listen localhost:85; listen 10.0.0.1;",
    ));
    let listens = &config.http.servers[0].listens;
    let addrs: Vec<SocketAddr> = listens.iter().map(|l| l.addr).collect();
    let want = [
        "0.0.0.0:8080",
        "1.2.3.4:81",
        "0.0.0.0:82",
        "[::]:83",
        "[::1]:84",
        "127.0.0.1:85",
        "10.0.0.1:80",
    ];
    assert_eq!(addrs, want.map(addr));
    assert!(listens[0].default_server && !listens[1].default_server);
    assert!(listens[4].http2);
    // No listen at all is nginx's *:80.
    let config = lower_ok("http { server { } }");
    assert_eq!(config.http.servers[0].listens[0].addr, addr("0.0.0.0:80"));
}

#[test]
fn server_name_forms() {
    let config = lower_ok(&in_server(
        r#"server_name Example.COM *.example.com .example.org www.example.* ~^(?<n>\w+)\.x$ _ "";"#,
    ));
    let names = &config.http.servers[0].names;
    assert_eq!(
        names,
        &[
            ServerName::Exact("example.com".into()),
            ServerName::WildcardPrefix {
                suffix: ".example.com".into(),
                include_bare: false
            },
            ServerName::WildcardPrefix {
                suffix: ".example.org".into(),
                include_bare: true
            },
            ServerName::WildcardSuffix("www.example.".into()),
            ServerName::Regex(r"^(?<n>\w+)\.x$".into()),
            ServerName::Exact("_".into()),
            ServerName::Exact("".into()),
        ]
    );
}

#[test]
fn locations_returns_and_proxy_pass() {
    let config = lower_ok(
        r#"http {
  upstream api { server 10.0.0.1:9000 weight=3 max_fails=2 fail_timeout=5s max_conns=10 backup; server b down drain slow_start=30s route=b1; }
  server {
    return 301 https://$host$request_uri;
    location = /exact { return 204; }
    location ^~ /static/ { return http://cdn.example.com$uri; }
    location ~* \.php$ { proxy_pass http://127.0.0.1; }
    location =/glued { return 200 "ok\n"; }
    location /api/ { proxy_pass http://API/v2/; }
    location /dyn { proxy_pass http://$backend$request_uri; }
    location /addr { proxy_pass http://[::1]:8080; }
    location /none { }
  }
}"#,
    );
    let server = &config.http.servers[0];
    let Some(RewriteStep::Return(ret)) = server.rewrite.first() else {
        panic!("server return: {:?}", server.rewrite);
    };
    assert_eq!(
        (ret.code, ret.text.as_deref()),
        (301, Some("https://$host$request_uri"))
    );
    let matchers: Vec<&LocationMatch> = server.locations.iter().map(|l| &l.matcher).collect();
    assert_eq!(
        matchers,
        [
            &LocationMatch::Exact("/exact".into()),
            &LocationMatch::Prefix {
                path: "/static/".into(),
                no_regex: true
            },
            &LocationMatch::Regex {
                pattern: r"\.php$".into(),
                case_insensitive: true
            },
            &LocationMatch::Exact("/glued".into()),
            &LocationMatch::Prefix {
                path: "/api/".into(),
                no_regex: false
            },
            &LocationMatch::Prefix {
                path: "/dyn".into(),
                no_regex: false
            },
            &LocationMatch::Prefix {
                path: "/addr".into(),
                no_regex: false
            },
            &LocationMatch::Prefix {
                path: "/none".into(),
                no_regex: false
            },
        ]
    );
    let handler = |i: usize| &server.locations[i].handler;
    let returned = |i: usize| match server.locations[i].rewrite.as_slice() {
        [RewriteStep::Return(r)] => (r.code, r.text.clone()),
        other => panic!("not a return: {other:?}"),
    };
    let proxied = |i| match handler(i) {
        Handler::Proxy(p) => (p.target.clone(), p.uri.clone()),
        other => panic!("not a proxy: {other:?}"),
    };
    assert_eq!(returned(0), (204, None));
    assert_eq!(
        returned(1),
        (302, Some("http://cdn.example.com$uri".into()))
    );
    let local = ProxyTarget::Address {
        host: "127.0.0.1".into(),
        port: 80,
        port_written: false,
    };
    assert_eq!(proxied(2), (local, None));
    assert_eq!(returned(3), (200, Some("ok\n".into())));
    assert_eq!(
        proxied(4),
        (ProxyTarget::Upstream("api".into()), Some("/v2/".into()))
    );
    let dynamic = ProxyTarget::Variable("$backend$request_uri".into());
    assert_eq!(proxied(5), (dynamic, None));
    let v6 = ProxyTarget::Address {
        host: "::1".into(),
        port: 8080,
        port_written: true,
    };
    assert_eq!(proxied(6), (v6, None));
    assert!(matches!(handler(7), Handler::NotFound));

    let peers = &config.http.upstreams[0].servers;
    let first = &peers[0];
    assert_eq!(
        (first.host.as_str(), first.port, first.weight),
        ("10.0.0.1", 9000, 3)
    );
    assert_eq!((first.max_fails, first.max_conns), (2, 10));
    assert_eq!(first.fail_timeout, Duration::from_secs(5));
    assert!(first.backup && !first.down);
    let second = &peers[1];
    assert_eq!((second.address.as_str(), second.port), ("b", 80));
    assert!(second.down && second.drain && !second.backup);
    assert_eq!(second.slow_start, Duration::from_secs(30));
    assert_eq!(second.route.as_deref(), Some("b1"));
}

#[test]
fn balance_methods_and_pool() {
    let method = |body: &str| {
        let config = lower_ok(&format!("http {{ upstream u {{ server a:1; {body} }} }}"));
        config.http.upstreams[0].method.clone()
    };
    assert_eq!(method(""), BalanceMethod::RoundRobin);
    assert_eq!(method("least_conn;"), BalanceMethod::LeastConn);
    assert_eq!(method("ip_hash;"), BalanceMethod::IpHash);
    assert_eq!(
        method("hash $remote_addr consistent;"),
        BalanceMethod::Hash {
            key: "$remote_addr".into(),
            consistent: true,
        }
    );
    assert_eq!(
        method("hash $uri;"),
        BalanceMethod::Hash {
            key: "$uri".into(),
            consistent: false
        }
    );
    assert_eq!(method("random;"), BalanceMethod::Random { two: false });
    assert_eq!(
        method("random two least_conn;"),
        BalanceMethod::Random { two: true }
    );
    // nginx warns and keeps the last; tether refuses the second (`operations` tests the -t).
    let two = load_str(
        Path::new("t.conf"),
        "http { upstream u { server a:1; ip_hash; least_conn; } }",
        Path::new("/prefix"),
    );
    assert!(two.is_err());
    let config = lower_ok(
        "http { upstream u { server a:1; keepalive 16; keepalive_timeout 90s; zone z 64k; } }",
    );
    let upstream = &config.http.upstreams[0];
    assert_eq!(upstream.keepalive, Some(16));
    assert_eq!(upstream.keepalive_timeout, Duration::from_secs(90));
    assert_eq!(config.ignored[0].name, "zone");
}

#[test]
fn map_patterns() {
    let config = lower_ok(
        r#"http { map $http_host $name { hostnames; default "d"; Example.com a; "~*^W(\d)" b$1; \~tilde c; *.x.com e; } }"#,
    );
    let map = &config.http.maps[0];
    assert_eq!(
        (map.source.as_str(), map.variable.as_str()),
        ("$http_host", "name")
    );
    assert_eq!(map.default, "d");
    assert!(map.hostnames);
    let patterns: Vec<(&MapPattern, &str)> = map
        .entries
        .iter()
        .map(|e| (&e.pattern, e.value.as_str()))
        .collect();
    assert_eq!(
        patterns,
        [
            (&MapPattern::Exact("example.com".into()), "a"),
            (
                &MapPattern::Regex {
                    pattern: r"^W(\d)".into(),
                    case_insensitive: true
                },
                "b$1"
            ),
            (&MapPattern::Exact("~tilde".into()), "c"),
            (&MapPattern::Exact("*.x.com".into()), "e"),
        ]
    );
}

#[test]
fn proxy_settings_inherit_like_nginx() {
    let config = lower_ok(
        "http {
  proxy_read_timeout 5m; proxy_set_header A 1; add_header X h always; client_max_body_size 0;
  proxy_next_upstream error http_502 non_idempotent;
  server {
    proxy_set_header B 2; proxy_set_header C '';
    location /inherits { proxy_pass http://10.0.0.1:1; }
    location /own { proxy_set_header D 4; add_header Y y; proxy_read_timeout 1s; proxy_buffering off;
                    proxy_next_upstream off; proxy_next_upstream_tries 3; proxy_connect_timeout 2s; }
  }
  server { location / { } }
}",
    );
    let first = &config.http.servers[0];
    let inherits = &first.locations[0].proxy;
    assert_eq!(
        *inherits.set_headers,
        [("B".into(), "2".into()), ("C".into(), String::new())]
    );
    assert_eq!(
        *inherits.add_headers,
        [AddHeader {
            name: "X".into(),
            value: "h".into(),
            always: true
        }]
    );
    assert_eq!(inherits.read_timeout, Duration::from_secs(300));
    assert_eq!(inherits.client_max_body_size, 0);
    assert_eq!(
        inherits.next_upstream,
        NextUpstream {
            error: true,
            non_idempotent: true,
            statuses: vec![502],
            ..NextUpstream::OFF
        }
    );
    let own = &first.locations[1].proxy;
    assert_eq!(*own.set_headers, [("D".into(), "4".into())]);
    assert_eq!(own.add_headers[0].name, "Y");
    assert!(!own.add_headers[0].always);
    assert_eq!(own.read_timeout, Duration::from_secs(1));
    assert_eq!(own.connect_timeout, Duration::from_secs(2));
    assert_eq!(own.send_timeout, Duration::from_secs(60));
    assert!(!own.buffering);
    assert_eq!(own.next_upstream, NextUpstream::OFF);
    assert_eq!(own.next_upstream_tries, 3);
    // A server without its own headers gets the http level's whole list.
    let second = &config.http.servers[1].locations[0].proxy;
    assert_eq!(*second.set_headers, [("A".into(), "1".into())]);
    assert_eq!(second.read_timeout, Duration::from_secs(300));
}

#[test]
fn user_and_open_file_limit_are_honoured_settings() {
    let config = lower_ok("user www-data adm; worker_rlimit_nofile 65536;");
    let who = config.user.expect("user");
    assert_eq!(
        (who.user.as_str(), who.group.as_deref()),
        ("www-data", Some("adm"))
    );
    assert_eq!(config.worker_rlimit_nofile, Some(65536));
    assert!(config.ignored.is_empty());
    assert_eq!(lower_ok("user nginx;").user.and_then(|w| w.group), None);
    assert_eq!(
        lower_errors("worker_rlimit_nofile 0; user a; user b;"),
        [
            r#"invalid number "0" in "worker_rlimit_nofile" directive in t.conf:1:22"#,
            r#""user" directive is duplicate in t.conf:1:33"#,
        ]
    );
}

#[test]
fn no_ops_are_recorded() {
    let config = lower_ok(
        "daemon off; pcre_jit on; error_log stderr; events { multi_accept on; use epoll; }
http { types { text/html html; } sendfile on; gzip_buffers 16 8k; ssl_dhparam dh.pem;
  server { location / { proxy_cache off; proxy_http_version 1.1; keepalive_timeout 5s; } } }",
    );
    let ignored: Vec<(&str, String)> = config
        .ignored
        .iter()
        .map(|i| (i.name.as_str(), i.span.to_string()))
        .collect();
    assert_eq!(
        ignored,
        [
            ("daemon", "t.conf:1:1".to_string()),
            ("pcre_jit", "t.conf:1:13".into()),
            ("multi_accept", "t.conf:1:53".into()),
            ("use", "t.conf:1:70".into()),
            ("types", "t.conf:2:8".into()),
            ("sendfile", "t.conf:2:34".into()),
            ("gzip_buffers", "t.conf:2:47".into()),
            ("ssl_dhparam", "t.conf:2:67".into()),
            ("proxy_cache", "t.conf:3:25".into()),
            ("proxy_http_version", "t.conf:3:42".into()),
            ("keepalive_timeout", "t.conf:3:66".into()),
        ]
    );
    assert!(config.ignored.iter().all(|i| !i.reason.is_empty()));
}

#[test]
fn error_log_at_main_and_http_level() {
    let config = lower_ok(
        "error_log stderr; error_log logs/error.log warn;
http { error_log /var/log/tether/http.log debug; error_log stderr crit; }",
    );
    let main: Vec<_> = config
        .error_log
        .iter()
        .map(|t| (t.destination.clone(), t.level))
        .collect();
    assert_eq!(
        main,
        [
            (ErrorLogDestination::Stderr, ErrorLevel::Error),
            (
                ErrorLogDestination::File("/prefix/logs/error.log".into()),
                ErrorLevel::Warn
            ),
        ],
        "nginx's default level is error; relative paths resolve against the prefix"
    );
    let http: Vec<_> = config
        .http
        .error_log
        .iter()
        .map(|t| (t.destination.clone(), t.level))
        .collect();
    assert_eq!(
        http,
        [
            (
                ErrorLogDestination::File("/var/log/tether/http.log".into()),
                ErrorLevel::Debug
            ),
            (ErrorLogDestination::Stderr, ErrorLevel::Crit),
        ]
    );
    let server = lower_ok(&in_server(
        "server_name *.example.com; error_log site.log info;",
    ));
    let server = &server.http.servers[0];
    assert_eq!(server.first_name(), "*.example.com");
    assert_eq!(
        server.error_log[0].destination,
        ErrorLogDestination::File("/prefix/site.log".into())
    );
    let names: Vec<_> = ErrorLevel::ALL.iter().map(|(l, _)| l.name()).collect();
    assert_eq!(
        names,
        [
            "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"
        ]
    );
}

#[test]
fn status_pages_are_a_location_s_one_content_handler() {
    let config = lower_ok(
        "http { server { location = /s { status; } location = /n { stub_status; } \
         location = /old { stub_status on; } location = /r { status; return 204; } } }",
    );
    let handlers: Vec<_> = config.http.servers[0]
        .locations
        .iter()
        .map(|l| &l.handler)
        .collect();
    assert!(matches!(handlers[0], Handler::Status(StatusPage::Full)));
    assert!(matches!(handlers[1], Handler::Status(StatusPage::Stub)));
    assert!(matches!(handlers[2], Handler::Status(StatusPage::Stub)));
    // `return` is a rewrite directive: it acts first, as in nginx, whatever the handler.
    let returns = &config.http.servers[0].locations[3].rewrite;
    assert!(matches!(returns.as_slice(), [RewriteStep::Return(_)]));
    assert_eq!(
        lower_errors(&in_location("status; proxy_pass http://127.0.0.1:1;")),
        ["\"proxy_pass\" directive is duplicate in t.conf:1:38"]
    );
    assert_eq!(
        lower_errors(&in_location("proxy_pass http://127.0.0.1:1; stub_status;")),
        ["\"stub_status\" directive is duplicate in t.conf:1:61"]
    );
    assert_eq!(
        lower_errors(&in_server("status;")),
        ["\"status\" directive is not allowed here in t.conf:1:17"]
    );
}

#[test]
fn error_pages_and_nested_locations_inherit_as_nginx() {
    let config = lower_ok(&in_server(
        "error_page 502 503 =200 /sorry; proxy_intercept_errors on; \
         location /a/ { proxy_set_header X-A 1; error_page 404 @missing; \
           location /a/b/ { recursive_error_pages on; } } \
         location /c/ { proxy_intercept_errors off; } \
         location @missing { internal; }",
    ));
    let server = &config.http.servers[0];
    assert_eq!(server.error_pages.pages.len(), 1);
    let sorry = &server.error_pages.pages[0];
    assert_eq!(sorry.codes, [502, 503]);
    assert_eq!(sorry.status, PageStatus::Code(200));
    assert_eq!(sorry.target, "/sorry");
    let [a, c, missing] = &server.locations[..] else {
        panic!("three top-level locations");
    };
    // A level's own `error_page` replaces the list; the flags inherit one by one.
    let a_pages = &a.proxy.error_pages;
    assert_eq!(a_pages.pages.len(), 1);
    assert_eq!(a_pages.pages[0].target, "@missing");
    assert_eq!(a_pages.pages[0].status, PageStatus::Original);
    assert!(a_pages.intercept && !a_pages.recursive);
    // The nested location inherits its parent's settings, lists and flags alike.
    let b = &a.nested[0];
    assert_eq!(b.matcher.as_written(), "/a/b/");
    assert_eq!(b.proxy.error_pages.pages, a_pages.pages);
    assert!(b.proxy.error_pages.intercept && b.proxy.error_pages.recursive);
    assert_eq!(b.proxy.set_headers.len(), 1);
    assert_eq!(c.proxy.error_pages.pages, server.error_pages.pages);
    assert!(!c.proxy.error_pages.intercept);
    assert_eq!(missing.matcher, LocationMatch::Named("@missing".into()));
    assert!(missing.internal && !a.internal);
}
