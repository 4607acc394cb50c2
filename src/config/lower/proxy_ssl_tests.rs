//! `proxy_pass https://` and the `proxy_ssl_*` directives: nginx's defaults, inheritance
//! http -> server -> location, and every error at its place.

use std::path::PathBuf;

use super::tests::{in_location, lower_errors, lower_ok};
use crate::config::model::*;

fn only_location(config: &Config) -> &Location {
    &config.http.servers[0].locations[0]
}

fn pass(location: &Location) -> &ProxyPass {
    match &location.handler {
        Handler::Proxy(pass) => pass,
        other => panic!("not a proxy location: {other:?}"),
    }
}

#[test]
fn https_targets_default_to_port_443_and_nginx_s_ssl_defaults() {
    let config = lower_ok(&in_location("proxy_pass https://127.0.0.1/api/;"));
    let location = only_location(&config);
    let pass = pass(location);
    assert!(pass.https);
    assert_eq!(
        pass.target,
        ProxyTarget::Address {
            host: "127.0.0.1".into(),
            port: 443,
            port_written: false,
        }
    );
    assert_eq!(pass.uri.as_deref(), Some("/api/"));
    let ssl = &location.proxy.ssl;
    assert!(!ssl.verify, "nginx verifies nothing by default");
    assert!(!ssl.server_name, "nginx sends no SNI by default");
    assert!(ssl.session_reuse);
    assert_eq!(ssl.verify_depth, 1);
    assert_eq!(ssl.name, None, "None stands for $proxy_host");
    assert_eq!(ssl.protocols, [TlsVersion::Tls12, TlsVersion::Tls13]);

    let plain = lower_ok(&in_location("proxy_pass http://127.0.0.1;"));
    let pass = self::pass(only_location(&plain));
    assert!(!pass.https);
    assert_eq!(
        pass.target,
        ProxyTarget::Address {
            host: "127.0.0.1".into(),
            port: 80,
            port_written: false,
        }
    );
}

#[test]
fn ssl_settings_inherit_field_by_field_and_files_resolve_against_the_config_folder() {
    let config = lower_ok(
        "http {
  proxy_ssl_verify on; proxy_ssl_trusted_certificate ca.pem; proxy_ssl_protocols TLSv1.3;
  upstream up { server 127.0.0.1:1; }
  server {
    proxy_ssl_server_name on; proxy_ssl_name backend.test;
    location /a { proxy_pass https://up; proxy_ssl_verify_depth 3; }
    location /b { proxy_pass https://up; proxy_ssl_verify off; proxy_ssl_session_reuse off;
      proxy_ssl_certificate /certs/client.pem; proxy_ssl_certificate_key client.key; }
  } }",
    );
    let locations = &config.http.servers[0].locations;
    let a = &locations[0].proxy.ssl;
    assert!(a.verify && a.server_name && a.session_reuse);
    assert_eq!(a.verify_depth, 3);
    assert_eq!(a.name.as_deref(), Some("backend.test"));
    assert_eq!(a.protocols, [TlsVersion::Tls13]);
    let trusted = a.trusted_certificate.as_ref().unwrap();
    assert_eq!(trusted.path, PathBuf::from("ca.pem"));
    assert_eq!(trusted.span.to_string(), "t.conf:2:24");
    assert_eq!(a.span.as_ref().unwrap().to_string(), "t.conf:6:42");

    let b = &locations[1].proxy.ssl;
    assert!(!b.verify && !b.session_reuse && b.server_name);
    assert_eq!(b.verify_depth, 1);
    let certificate = b.certificate.as_ref().unwrap();
    assert_eq!(certificate.path, PathBuf::from("/certs/client.pem"));
    let key = b.certificate_key.as_ref().unwrap();
    assert_eq!(key.path, PathBuf::from("client.key"));
    // Same behaviour wherever written: shared client configs; different: not.
    assert!(a.same_as(&a.clone()));
    assert!(!a.same_as(b));
}

#[test]
fn old_protocol_names_are_dropped_and_ciphers_are_a_notice() {
    let config = lower_ok(&in_location(
        "proxy_pass https://127.0.0.1; proxy_ssl_protocols TLSv1 TLSv1.1 TLSv1.2; \
         proxy_ssl_ciphers HIGH:!aNULL;",
    ));
    let ssl = &only_location(&config).proxy.ssl;
    assert_eq!(ssl.protocols, [TlsVersion::Tls12]);
    let ignored: Vec<&str> = config.ignored.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(ignored, ["proxy_ssl_ciphers"]);
}

#[test]
fn bad_values_are_errors_at_their_place() {
    let errors = lower_errors(&in_location(
        "proxy_ssl_verify maybe; proxy_ssl_protocols TLSv1.4; proxy_ssl_verify_depth x; \
         proxy_ssl_crl crl.pem; proxy_ssl_protocols SSLv3; proxy_ssl_nam x;",
    ));
    assert_eq!(
        errors,
        [
            r#"invalid value "maybe" in "proxy_ssl_verify" directive, it must be "on" or "off" in t.conf:1:47"#,
            r#"invalid value "TLSv1.4" in "proxy_ssl_protocols" directive in t.conf:1:74"#,
            r#"invalid number "x" in "proxy_ssl_verify_depth" directive in t.conf:1:106"#,
            r#"directive "proxy_ssl_crl" is not supported by tether in t.conf:1:109"#,
            // The first one failed, so this one is not a duplicate (as for every directive).
            r#""proxy_ssl_protocols" names no protocol tether speaks (TLSv1.2, TLSv1.3) in t.conf:1:132"#,
            r#"unknown directive "proxy_ssl_nam" in t.conf:1:159 (did you mean "proxy_ssl_name"?)"#,
        ]
    );
    let none = lower_errors(&in_location("proxy_ssl_protocols SSLv3 TLSv1;"));
    assert_eq!(
        none,
        [
            r#""proxy_ssl_protocols" names no protocol tether speaks (TLSv1.2, TLSv1.3) in t.conf:1:30"#
        ]
    );
}
