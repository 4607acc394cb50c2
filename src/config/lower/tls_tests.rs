//! Lowering of the `ssl_*` directives and `http2`: meaning, http -> server inheritance, which
//! servers terminate TLS, the notices and every error's wording.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::{in_server, lower_errors, lower_ok};
use crate::config::load_str;
use crate::config::model::*;

/// Lowers `text` as `/etc/tether/tether.conf`, so relative paths have a folder to resolve in.
fn lower_in_etc(text: &str) -> Config {
    let main = Path::new("/etc/tether/tether.conf");
    match load_str(main, text, Path::new("/prefix")) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn notices(config: &Config) -> Vec<(&str, &str)> {
    let notices = config.ignored.iter();
    notices.map(|i| (i.name.as_str(), i.reason)).collect()
}

const PAIR: &str = "ssl_certificate c.pem; ssl_certificate_key k.pem;";

#[test]
fn settings_are_inherited_from_http_and_overridden_by_server() {
    let config = lower_in_etc(
        "http {
           ssl_certificate certs/ec.pem; ssl_certificate_key /keys/ec.key;
           ssl_certificate certs/rsa.pem; ssl_certificate_key certs/rsa.key;
           ssl_protocols TLSv1.3; ssl_ciphers HIGH:!aNULL; ssl_prefer_server_ciphers on;
           ssl_session_cache shared:SSL:10m; ssl_session_timeout 1h; ssl_session_tickets off;
           ssl_stapling on; ssl_stapling_file ocsp.der;
           ssl_client_certificate ca.pem; ssl_trusted_certificate more-ca.pem;
           ssl_verify_client optional; ssl_verify_depth 3;
           server { listen 443 ssl; server_name a.example b.example; }
           server { listen 444 ssl; ssl_protocols TLSv1.2 TLSv1.3; ssl_verify_client off;
                    ssl_certificate own.pem; ssl_certificate_key own.key; }
         }",
    );
    let first = config.http.servers[0].tls.as_ref().expect("tls");
    let pairs: Vec<(&Path, &Path)> = first
        .certificates
        .iter()
        .map(|p| (p.certificate.as_path(), p.key.as_path()))
        .collect();
    let etc = |p: &str| PathBuf::from("/etc/tether").join(p);
    assert_eq!(
        pairs,
        [
            (etc("certs/ec.pem").as_path(), Path::new("/keys/ec.key")),
            (&etc("certs/rsa.pem"), &etc("certs/rsa.key")),
        ]
    );
    assert_eq!(first.protocols, [TlsVersion::Tls13]);
    assert_eq!(
        first.ciphers.as_ref().map(|c| c.0.as_str()),
        Some("HIGH:!aNULL")
    );
    assert!(first.prefer_server_ciphers);
    // 10 megabytes at nginx's ~4000 sessions a megabyte.
    assert_eq!(first.session_cache, Some(40_960));
    assert_eq!(first.session_timeout, Duration::from_secs(3600));
    assert!(!first.session_tickets);
    assert_eq!(first.stapling_file, Some(etc("ocsp.der")));
    assert_eq!(first.client_certificate, Some(etc("ca.pem")));
    assert_eq!(first.trusted_certificate, Some(etc("more-ca.pem")));
    assert_eq!(first.verify_client, VerifyClient::Optional);
    assert_eq!(first.verify_depth, 3);
    assert_eq!(first.session_scope, "a.example b.example @ 0.0.0.0:443");

    let second = config.http.servers[1].tls.as_ref().expect("tls");
    assert_eq!(second.certificates.len(), 1);
    assert_eq!(second.certificates[0].certificate, etc("own.pem"));
    assert_eq!(second.protocols, [TlsVersion::Tls12, TlsVersion::Tls13]);
    assert_eq!(second.verify_client, VerifyClient::Off);
    assert_ne!(first.session_scope, second.session_scope);
}

#[test]
fn nginx_defaults() {
    let config = lower_ok(&in_server(&format!("listen 443 ssl; {PAIR}")));
    let tls = config.http.servers[0].tls.as_ref().expect("tls");
    assert_eq!(tls.protocols, [TlsVersion::Tls12, TlsVersion::Tls13]);
    assert_eq!(tls.ciphers, None);
    assert!(!tls.prefer_server_ciphers);
    assert_eq!(tls.session_cache, None);
    assert_eq!(tls.session_timeout, Duration::from_secs(300));
    assert!(tls.session_tickets);
    assert_eq!(tls.stapling_file, None);
    assert_eq!(tls.verify_client, VerifyClient::Off);
    assert_eq!(tls.verify_depth, 1);
    assert!(!config.http.servers[0].http2);
}

#[test]
fn one_ssl_listen_makes_the_whole_address_tls() {
    let config = lower_ok(&format!(
        "http {{ {PAIR}
           server {{ listen 443 ssl; listen 80; }}
           server {{ listen 443; server_name other; }}
           server {{ listen 80; server_name plain; }} }}"
    ));
    let servers = &config.http.servers;
    assert!(servers[0].tls.is_some() && servers[1].tls.is_some());
    assert!(
        servers[1].listens[0].ssl,
        "marked ssl on the shared address"
    );
    assert!(!servers[0].listens[1].ssl);
    assert_eq!(servers[2].tls, None);
}

#[test]
fn http2_flag_at_http_and_server_level() {
    let config = lower_ok(
        "http { http2 on; server { listen 80; } server { listen 81; http2 off; }
                server { listen 82 http2; http2 off; } }",
    );
    let http2: Vec<bool> = config.http.servers.iter().map(|s| s.http2).collect();
    assert_eq!(http2, [true, false, true]);
    assert!(notices(&config).is_empty());
}

#[test]
fn session_cache_forms() {
    let cache = |value: &str| {
        let config = lower_ok(&in_server(&format!(
            "listen 443 ssl; {PAIR} ssl_session_cache {value};"
        )));
        config.http.servers[0]
            .tls
            .as_ref()
            .expect("tls")
            .session_cache
    };
    assert_eq!(cache("off"), None);
    assert_eq!(cache("none"), None);
    assert_eq!(cache("builtin"), Some(20_480));
    assert_eq!(cache("builtin:1000"), Some(1000));
    assert_eq!(cache("shared:SSL:1m"), Some(4096));
    assert_eq!(cache("builtin:1000 shared:SSL:1m"), Some(4096));
}

#[test]
fn notices_say_what_tether_does_instead() {
    let config = lower_ok(&in_server(&format!(
        "listen 443 ssl; {PAIR} ssl_protocols TLSv1 TLSv1.1 TLSv1.2; ssl_stapling on;
         ssl_stapling_verify on; ssl_dhparam dh.pem; ssl_ecdh_curve X25519; ssl_buffer_size 4k;"
    )));
    let notices = notices(&config);
    let names: Vec<&str> = notices.iter().map(|n| n.0).collect();
    assert_eq!(
        names,
        [
            "ssl_protocols",
            "ssl_stapling_verify",
            "ssl_dhparam",
            "ssl_buffer_size",
            "ssl_stapling",
        ]
    );
    assert!(notices[0].1.contains("rustls does not speak"));
    assert!(notices[4].1.contains("only from \"ssl_stapling_file\""));
    let tls = config.http.servers[0].tls.as_ref().expect("tls");
    assert_eq!(tls.protocols, [TlsVersion::Tls12]);
    assert_eq!(
        tls.ecdh_curve.as_ref().map(|c| c.0.as_str()),
        Some("X25519")
    );
}

#[test]
fn errors() {
    let check = |body: &str, want: &[&str]| {
        assert_eq!(lower_errors(&in_server(body)), want, "body: {body}");
    };
    check(
        "ssl on;",
        &[
            r#"the "ssl" directive is not supported by tether in t.conf:1:17 (write the "ssl" parameter of "listen" instead)"#,
        ],
    );
    check(
        "ssl_protocols SSLv3 TLSv1;",
        &[
            r#"no protocol tether speaks in "ssl_protocols" in t.conf:1:17 (rustls speaks TLSv1.2 and TLSv1.3)"#,
        ],
    );
    check(
        "ssl_protocols TLSv1.4;",
        &[r#"invalid value "TLSv1.4" in "ssl_protocols" directive in t.conf:1:31"#],
    );
    check(
        "ssl_verify_client optional_no_ca;",
        &[
            r#""ssl_verify_client optional_no_ca" is not supported by tether in t.conf:1:35 (tether verifies every client certificate it accepts)"#,
        ],
    );
    check(
        &format!("listen 443 ssl; {PAIR} ssl_verify_client on;"),
        &[
            r#"no "ssl_client_certificate" or "ssl_trusted_certificate" for "ssl_verify_client" in t.conf:1:83"#,
        ],
    );
    check(
        "listen 443 ssl; ssl_certificate c.pem;",
        &[r#"no "ssl_certificate_key" is defined for certificate "c.pem" in t.conf:1:33"#],
    );
    check(
        "ssl_crl crl.pem;",
        &[r#"directive "ssl_crl" is not supported by tether in t.conf:1:17"#],
    );
    check(
        "ssl_certificat c.pem;",
        &[r#"unknown directive "ssl_certificat" in t.conf:1:17 (did you mean "ssl_certificate"?)"#],
    );
    check(
        "ssl_certificate $ssl_server_name.pem;",
        &[
            r#""$ssl_server_name.pem" in "ssl_certificate" directive is not supported by tether in t.conf:1:33"#,
        ],
    );
    check(
        "ssl_session_cache shared:SSL;",
        &[r#"invalid value "shared:SSL" in "ssl_session_cache" directive in t.conf:1:35"#],
    );
    check(
        "ssl_session_cache off builtin;",
        &[r#"invalid value "off" in "ssl_session_cache" directive in t.conf:1:35"#],
    );
    check(
        "http2 maybe;",
        &[r#"invalid value "maybe" in "http2" directive, it must be "on" or "off" in t.conf:1:23"#],
    );
}

#[test]
fn an_http_level_error_is_reported_once_for_all_servers() {
    let errors = lower_errors(
        "http { ssl_certificate c.pem;
           server { listen 443 ssl; server_name a; } server { listen 443; server_name b; } }",
    );
    assert_eq!(
        errors,
        [r#"no "ssl_certificate_key" is defined for certificate "c.pem" in t.conf:1:8"#]
    );
}
