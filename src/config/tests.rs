//! End-to-end tests of the public API: [`load`] and [`load_str`] on whole configs.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The WebSocket/SignalR example from the ASP.NET Core hosting guide.
const SIGNALR: &str = r#"
http {
  map $http_connection $connection_upgrade { "~*Upgrade" $http_connection; default keep-alive; }
  upstream backend { server localhost:5000; server localhost:5002; ip_hash; }
  server {
    listen 80; server_name example.com *.example.com;
    location /hubroute {
      proxy_pass http://backend;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_cache off; proxy_http_version 1.1; proxy_buffering off; proxy_read_timeout 100s;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
"#;

#[test]
fn signalr_guide_config_lowers_to_the_expected_model() {
    let config = load_str(Path::new("conf/signalr.conf"), SIGNALR, Path::new(".")).expect("valid");
    assert_eq!(config.main_file, Path::new("conf/signalr.conf"));
    assert_eq!(config.files, [PathBuf::from("conf/signalr.conf")]);
    assert_eq!(config.worker_processes, WorkerProcesses::Auto);

    let map = &config.http.maps[0];
    assert_eq!(map.source, "$http_connection");
    assert_eq!(map.variable, "connection_upgrade");
    assert_eq!(map.default, "keep-alive");
    assert!(!map.hostnames);
    assert_eq!(map.entries.len(), 1);
    assert_eq!(
        map.entries[0].pattern,
        MapPattern::Regex {
            pattern: "Upgrade".into(),
            case_insensitive: true,
        }
    );
    assert_eq!(map.entries[0].value, "$http_connection");
    assert_eq!(map.span.to_string(), "conf/signalr.conf:3:3");

    let upstream = &config.http.upstreams[0];
    assert_eq!(upstream.name, "backend");
    assert_eq!(upstream.method, BalanceMethod::IpHash);
    let peers: Vec<(&str, &str, u16)> = upstream
        .servers
        .iter()
        .map(|p| (p.address.as_str(), p.host.as_str(), p.port))
        .collect();
    assert_eq!(
        peers,
        [
            ("localhost:5000", "localhost", 5000),
            ("localhost:5002", "localhost", 5002)
        ]
    );
    assert!(upstream.servers.iter().all(|p| p.weight == 1 && !p.backup));

    let server = &config.http.servers[0];
    let listen: SocketAddr = "0.0.0.0:80".parse().expect("address");
    assert_eq!(server.listens.len(), 1);
    assert_eq!(server.listens[0].addr, listen);
    assert_eq!(
        server.names,
        [
            ServerName::Exact("example.com".into()),
            ServerName::WildcardPrefix {
                suffix: ".example.com".into(),
                include_bare: false
            },
        ]
    );
    assert!(server.rewrite.is_empty());

    let location = &server.locations[0];
    assert_eq!(
        location.matcher,
        LocationMatch::Prefix {
            path: "/hubroute".into(),
            no_regex: false
        }
    );
    let Handler::Proxy(pass) = &location.handler else {
        panic!("expected proxy_pass, got {:?}", location.handler);
    };
    assert_eq!(pass.target, ProxyTarget::Upstream("backend".into()));
    assert_eq!(pass.uri, None);
    assert_eq!(pass.span.to_string(), "conf/signalr.conf:8:7");
    let headers: Vec<(&str, &str)> = location
        .proxy
        .set_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Upgrade", "$http_upgrade"),
            ("Connection", "$connection_upgrade"),
            ("Host", "$host"),
            ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
            ("X-Forwarded-Proto", "$scheme"),
        ]
    );
    assert_eq!(
        location.proxy,
        ProxySettings {
            set_headers: location.proxy.set_headers.clone(),
            read_timeout: Duration::from_secs(100),
            buffering: false,
            ..ProxySettings::default()
        }
    );

    let ignored: Vec<&str> = config.ignored.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(ignored, ["proxy_cache", "proxy_http_version"]);
}

#[test]
fn broken_configs_name_file_line_and_column() {
    let cases: [(&str, &str); 6] = [
        (
            "http {\n  server {\n    location / {\n      proxy_pas http://b;\n    }\n  }\n}\n",
            r#"unknown directive "proxy_pas" in conf/t.conf:4:7 (did you mean "proxy_pass"?)"#,
        ),
        (
            "http {\n  server {\n    listen 80\n  }\n}\n",
            r#"unexpected "}" in conf/t.conf:4:3"#,
        ),
        (
            "http {\n  server { }\n}\n}\n",
            r#"unexpected "}" in conf/t.conf:4:1"#,
        ),
        (
            "http {\n  upstream backend { server 10.0.0.1:80; }\n  server {\n    location / { proxy_pass http://backnd; }\n  }\n}\n",
            r#"no upstream "backnd" for proxy_pass in conf/t.conf:4:29 (did you mean "backend"?)"#,
        ),
        (
            "http {\n  server {\n    listen 127.0.0.1:99999;\n  }\n}\n",
            r#"invalid port in "listen" directive: "99999" in conf/t.conf:3:12"#,
        ),
        (
            "http {\n  proxy_read_timeout 10q;\n}\n",
            r#"invalid time "10q" in "proxy_read_timeout" directive in conf/t.conf:2:22"#,
        ),
    ];
    for (text, want) in cases {
        let errors = load_str(Path::new("conf/t.conf"), text, Path::new(".")).expect_err(text);
        assert_eq!(errors.to_string(), want, "config:\n{text}");
    }
}

#[test]
fn load_reads_includes_relative_to_the_main_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    fs::create_dir_all(conf.join("upstreams")).expect("mkdir");
    fs::write(
        conf.join("upstreams/app.conf"),
        "upstream app { server 127.0.0.1:5000; }",
    )
    .expect("write");
    fs::write(
        conf.join("site.conf"),
        "server { location / { proxy_pass http://app; } }",
    )
    .expect("write");
    let main = conf.join("tether.conf");
    fs::write(
        &main,
        "http { include upstreams/*.conf; include site.conf; }",
    )
    .expect("write");
    let config = load(&main, dir.path()).expect("valid");
    assert_eq!(
        config.files,
        [
            main.clone(),
            conf.join("upstreams/app.conf"),
            conf.join("site.conf")
        ]
    );
    assert_eq!(config.http.upstreams[0].name, "app");
    let Handler::Proxy(pass) = &config.http.servers[0].locations[0].handler else {
        panic!("expected proxy_pass");
    };
    assert_eq!(pass.target, ProxyTarget::Upstream("app".into()));

    // Semantic errors inside an included file name that file.
    fs::write(conf.join("site.conf"), "server { listen 0; }").expect("write");
    let errors = load(&main, dir.path()).expect_err("bad port");
    let want = format!(
        "invalid port in \"listen\" directive: \"0\" in {}:1:17",
        conf.join("site.conf").display()
    );
    assert_eq!(errors.to_string(), want);
}

#[test]
fn load_reports_a_missing_main_file() {
    let errors = load(Path::new("/nonexistent/tether.conf"), Path::new(".")).expect_err("missing");
    assert_eq!(
        errors.to_string(),
        "open() \"/nonexistent/tether.conf\" failed (No such file or directory)"
    );
}
