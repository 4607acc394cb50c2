//! Every lowering error with its exact message and `file:line:col`, and their collection.

use super::tests::{in_location, in_server, lower_errors};

/// Asserts that `text` yields exactly `want`, in order.
fn check(text: &str, want: &[&str]) {
    assert_eq!(lower_errors(text), want, "config: {text}");
}

#[test]
fn directive_errors() {
    check(
        &in_location("proxy_pas http://b;"),
        &[r#"unknown directive "proxy_pas" in t.conf:1:30 (did you mean "proxy_pass"?)"#],
    );
    check(
        &in_server("frobnicate;"),
        &[r#"unknown directive "frobnicate" in t.conf:1:17"#],
    );
    check(
        &in_server("proxy_pass http://b;"),
        &[r#""proxy_pass" directive is not allowed here in t.conf:1:17"#],
    );
    check(
        "server { }",
        &[r#""server" directive is not allowed here in t.conf:1:1"#],
    );
    check(
        &in_server("listen;"),
        &[r#"invalid number of arguments in "listen" directive in t.conf:1:17"#],
    );
    check(
        "http;",
        &[r#"directive "http" has no opening "{" in t.conf:1:1"#],
    );
    check(
        &in_location("proxy_pass http://a:1 { }"),
        &[r#"directive "proxy_pass" is not terminated by ";" in t.conf:1:30"#],
    );
    check(
        "http { } http { }",
        &[r#""http" directive is duplicate in t.conf:1:10"#],
    );
    check(
        &in_location("proxy_read_timeout 1s; proxy_read_timeout 2s;"),
        &[r#""proxy_read_timeout" directive is duplicate in t.conf:1:53"#],
    );
    check(
        &in_location("rewrite ^ /x bogus;"),
        &[r#"invalid parameter "bogus" in "rewrite" directive in t.conf:1:43"#],
    );
    check(
        &in_server("if (-f $request_filename) { }"),
        &[
            r#"file test "-f" in "if" is not supported by tether in t.conf:1:20 (tether serves no files; test variables with =, != or ~ instead)"#,
        ],
    );
    check(
        &in_server("if ($x = ) { }"),
        &[r#"invalid condition "($x = )" in t.conf:1:17"#],
    );
    check(
        &in_location("if ($x) { proxy_read_timeout 1s; }"),
        &[
            r#""proxy_read_timeout" inside "if" is not supported by tether in t.conf:1:40 (inside "if" tether takes return, rewrite, set, break, add_header, proxy_pass and proxy_set_header; choose other values with a "map" instead)"#,
        ],
    );
    check(
        &in_server("if ($x) { proxy_pass http://127.0.0.1:1; }"),
        &[
            r#""proxy_pass" inside "if" is not supported by tether in t.conf:1:27 (inside "if" tether takes return, rewrite, set, break, add_header, proxy_pass and proxy_set_header; choose other values with a "map" instead)"#,
        ],
    );
    check(
        &in_location("if ($x) { proxy_pass http://127.0.0.1:1/api/; }"),
        &[r#""proxy_pass" cannot have URI part inside "if" statement in t.conf:1:40"#],
    );
}

#[test]
fn value_errors() {
    check(
        "worker_processes 0;",
        &[r#"invalid number "0" in "worker_processes" directive in t.conf:1:18"#],
    );
    check(
        &in_location("proxy_read_timeout 10q;"),
        &[r#"invalid time "10q" in "proxy_read_timeout" directive in t.conf:1:49"#],
    );
    check(
        &in_location("client_max_body_size 1x;"),
        &[r#"invalid size "1x" in "client_max_body_size" directive in t.conf:1:51"#],
    );
    check(
        &in_location("proxy_buffering maybe;"),
        &[
            r#"invalid value "maybe" in "proxy_buffering" directive, it must be "on" or "off" in t.conf:1:46"#,
        ],
    );
    check(
        &in_location("proxy_next_upstream error bogus;"),
        &[r#"invalid value "bogus" in "proxy_next_upstream" directive in t.conf:1:56"#],
    );
    check(
        &in_location("add_header X y sometimes;"),
        &[r#"invalid parameter "sometimes" in "add_header" directive in t.conf:1:45"#],
    );
    check(
        &in_location("proxy_cache zone1; gzip maybe;"),
        &[
            r#""zone1" in "proxy_cache" directive is not supported by tether in t.conf:1:42"#,
            r#"invalid value "maybe" in "gzip" directive, it must be "on" or "off" in t.conf:1:54"#,
        ],
    );
    check(
        &in_location("return 1000; return 200;"),
        &[r#"invalid return code "1000" in t.conf:1:37"#],
    );
    check(
        &in_location("return /relative;"),
        &[r#"invalid return code "/relative" in t.conf:1:37"#],
    );
}

#[test]
fn listen_and_server_name_errors() {
    check(
        &in_server("listen 99999;"),
        &[r#"invalid port in "listen" directive: "99999" in t.conf:1:24"#],
    );
    check(
        &in_server("listen 1.2.3.4:0;"),
        &[r#"invalid port in "listen" directive: "0" in t.conf:1:24"#],
    );
    check(
        &in_server("listen example.com:80;"),
        &[
            r#"host not found in "example.com:80" of the "listen" directive in t.conf:1:24 (tether listens on IP addresses, "*" or localhost)"#,
        ],
    );
    check(
        &in_server("listen [::1;"),
        &[r#"invalid address "[::1" in "listen" directive in t.conf:1:24"#],
    );
    check(
        &in_server("listen unix:/tmp/s ssl;"),
        &[
            r#"unix socket "unix:/tmp/s" in "listen ... ssl/http2" directive is not supported by tether in t.conf:1:24"#,
        ],
    );
    check(
        &in_server("listen unix:tmp/s;"),
        &[r#"invalid address "unix:tmp/s" in "listen" directive in t.conf:1:24"#],
    );
    check(
        &in_server("listen 80 ssl;"),
        &[r#"no "ssl_certificate" is defined for the "listen ... ssl" directive in t.conf:1:17"#],
    );
    check(
        &in_server("listen 80 foo quic;"),
        &[
            r#"invalid parameter "foo" in "listen" directive in t.conf:1:27"#,
            r#""quic" in "listen" directive is not supported by tether in t.conf:1:31"#,
        ],
    );
    check(
        &in_server("listen 80; listen 80;"),
        &["duplicate listen 0.0.0.0:80 in t.conf:1:28"],
    );
    check(
        &in_server("listen unix:/tmp/s; listen unix:/tmp/s;"),
        &["duplicate listen unix:/tmp/s in t.conf:1:37"],
    );
    check(
        "http { server { listen 80 default_server; } server { listen 80 default; } }",
        &["a duplicate default server for 0.0.0.0:80 in t.conf:1:54"],
    );
    check(
        &in_server("server_name *.a.* a*b;"),
        &[
            r#"invalid server name or wildcard "*.a.*" in t.conf:1:29"#,
            r#"invalid server name or wildcard "a*b" in t.conf:1:35"#,
        ],
    );
}

#[test]
fn error_page_errors() {
    check(
        &in_location("error_page 299 404 /x;"),
        &[r#"value "299" must be between 300 and 599 in t.conf:1:41"#],
    );
    check(
        &in_location("error_page 404 =abc /x;"),
        &[r#"invalid value "=abc" in "error_page" directive in t.conf:1:45"#],
    );
    check(
        &in_location("error_page = /x;"),
        &[r#"invalid value "=" in "error_page" directive in t.conf:1:41"#],
    );
    check(
        &in_location("proxy_intercept_errors maybe;"),
        &[
            r#"invalid value "maybe" in "proxy_intercept_errors" directive, it must be "on" or "off" in t.conf:1:53"#,
        ],
    );
}

#[test]
fn location_errors() {
    check(
        &in_server("location ~ ( { }"),
        &[r#"invalid regex "(": unclosed group in t.conf:1:28"#],
    );
    check(
        &in_server("location !~ /x { }"),
        &[r#"invalid location modifier "!~" in t.conf:1:26"#],
    );
    // nginx's rules for nesting, in its words.
    check(
        &in_server("location /x { location /y { } }"),
        &[r#"location "/y" is outside location "/x" in t.conf:1:31"#],
    );
    check(
        &in_server("location = /x { location /x/y { } }"),
        &[r#"location "/x/y" cannot be inside the exact location "/x" in t.conf:1:33"#],
    );
    check(
        &in_server("location @n { location /y { } }"),
        &[r#"location "/y" cannot be inside the named location "@n" in t.conf:1:31"#],
    );
    check(
        &in_server("location /x { location @n { } }"),
        &[r#"named location "@n" can be on the server level only in t.conf:1:31"#],
    );
    check(
        &in_server("location @n { } location @n { }"),
        &[r#"duplicate location "@n" in t.conf:1:33"#],
    );
    check(
        &in_server("location /x { location /x/y { } location /x/y { } }"),
        &[r#"duplicate location "/x/y" in t.conf:1:49"#],
    );
    check(
        &in_server("location @n { proxy_pass http://1.2.3.4:80/y; }"),
        &[
            r#""proxy_pass" cannot have URI part in location given by regular expression in t.conf:1:31"#,
        ],
    );
    check(
        &in_server("location / { } location / { }"),
        &[r#"duplicate location "/" in t.conf:1:32"#],
    );
    check(
        &in_server("location ~ /x { proxy_pass http://1.2.3.4:80/y; }"),
        &[
            r#""proxy_pass" cannot have URI part in location given by regular expression in t.conf:1:33"#,
        ],
    );
}

#[test]
fn proxy_pass_errors() {
    check(
        "http { upstream backend { server a; } server { location / { proxy_pass http://backnd; } } }",
        &[r#"no upstream "backnd" for proxy_pass in t.conf:1:72 (did you mean "backend"?)"#],
    );
    check(
        &in_location("proxy_pass a:1;"),
        &[r#"invalid URL prefix in "a:1" in t.conf:1:41"#],
    );
    check(
        &in_location("proxy_pass http://;"),
        &[r#"no host in "http://" of the "proxy_pass" directive in t.conf:1:41"#],
    );
    check(
        "http { upstream u { server a; } server { location / { proxy_pass http://u:8080; } } }",
        &[r#"upstream "u" may not have port 8080 in t.conf:1:66"#],
    );
}

#[test]
fn upstream_and_map_errors() {
    check(
        "http { upstream u { } }",
        &[r#"no servers are inside upstream "u" in t.conf:1:8"#],
    );
    check(
        "http { upstream u { server a; } upstream u { server b; } }",
        &[r#"duplicate upstream "u" in t.conf:1:33"#],
    );
    check(
        "http { upstream u { server a:1 weight=0 bogus; server unix:/x; server [::1; } }",
        &[
            r#"invalid parameter "weight=0" in "server" directive in t.conf:1:32"#,
            r#"invalid parameter "bogus" in "server" directive in t.conf:1:41"#,
            r#"invalid address "[::1" in "server" directive in t.conf:1:71"#,
        ],
    );
    check(
        "http { upstream u { server a; hash $a ring; keepalive 0; } }",
        &[
            r#"invalid parameter "ring" in "hash" directive in t.conf:1:39"#,
            r#"invalid number "0" in "keepalive" directive in t.conf:1:55"#,
        ],
    );
    check(
        "http { upstream u { server a; random one; } }",
        &[r#"invalid parameter "one" in "random" directive in t.conf:1:38"#],
    );
    check(
        "http { upstream u { server a; ip_hash; hash $a; ip_hash; } }",
        &[
            r#""hash" and "ip_hash" (at t.conf:1:31) are both balancing methods of upstream "u" in t.conf:1:40 (keep one)"#,
            r#""ip_hash" directive is duplicate in t.conf:1:49"#,
        ],
    );
    check(
        "http { map $a b { } }",
        &[r#"invalid variable name "b" in t.conf:1:15"#],
    );
    check(
        "http { map $a $b { x; ~( 1; default 1; default 2; } }",
        &[
            r#"invalid number of arguments in "map" directive in t.conf:1:20"#,
            r#"invalid regex "(": unclosed group in t.conf:1:23"#,
            r#""default" directive is duplicate in t.conf:1:40"#,
        ],
    );
}

#[test]
fn every_error_is_collected_in_file_order() {
    let text = "\
worker_processes many;
http {
    upstream backend { server 127.0.0.1:5000 weight=x; }
    server {
        listen 70000;
        lisen 80;
        location / {
            proxy_pass http://backnd;
            proxy_read_timeout 5 s;
            try_files $uri /;
        }
    }
    proxy_connect_timeout 1q;
}
";
    check(
        text,
        &[
            r#"invalid number "many" in "worker_processes" directive in t.conf:1:18"#,
            r#"invalid parameter "weight=x" in "server" directive in t.conf:3:46"#,
            r#"invalid port in "listen" directive: "70000" in t.conf:5:16"#,
            r#"unknown directive "lisen" in t.conf:6:9 (did you mean "listen"?)"#,
            r#"no upstream "backnd" for proxy_pass in t.conf:8:24 (did you mean "backend"?)"#,
            r#"invalid number of arguments in "proxy_read_timeout" directive in t.conf:9:13"#,
            r#"directive "try_files" is not supported by tether in t.conf:10:13"#,
            r#"invalid time "1q" in "proxy_connect_timeout" directive in t.conf:13:27"#,
        ],
    );
}

#[test]
fn error_log_errors() {
    check(
        "error_log stderr loud;",
        &[r#"invalid value "loud" in "error_log" directive in t.conf:1:18"#],
    );
    check(
        "error_log syslog:server=10.0.0.1 warn;",
        &[r#""syslog:" in "error_log" directive is not supported by tether in t.conf:1:11"#],
    );
    check(
        "error_log a.log warn extra;",
        &[r#"invalid number of arguments in "error_log" directive in t.conf:1:1"#],
    );
    check(
        &in_location("error_log site.log;"),
        &[
            r#""error_log" in a location is not supported by tether: write it in the server, http or main context in t.conf:1:30"#,
        ],
    );
    // Events name their server by its first server_name: two servers of one name must agree.
    check(
        "http { server { server_name a; error_log a.log; } server { server_name a b; } \
         server { server_name b; error_log b.log; } server { server_name b; error_log b.log; } }",
        &[
            r#"servers named "a" have different "error_log"s: tether tells a server's events apart by its first server_name in t.conf:1:51"#,
        ],
    );
}
