//! The response-header directives: their meaning, nginx's inheritance and their errors.

use super::tests::{in_location, lower_errors, lower_ok};
use crate::config::model::*;

#[test]
fn response_rules_inherit_list_by_list() {
    let config = lower_ok(
        "http {
  proxy_hide_header X-Powered-By; expires 1h; server_tokens off;
  proxy_cookie_path /app/ /;
  server {
    proxy_redirect http://b/ /; proxy_redirect ~^http://(.*)$ https://$1;
    location /inherits { proxy_pass http://10.0.0.1:1; }
    location /own { proxy_hide_header X-Other; proxy_pass_header Server; expires off;
      proxy_redirect off; proxy_cookie_path off; proxy_cookie_domain .a.example b.example;
      proxy_cookie_flags ~^s secure samesite=lax; proxy_ignore_headers X-Accel-Buffering Vary; }
  }
}",
    );
    let server = &config.http.servers[0];
    let inherits = &server.locations[0].proxy.response;
    assert_eq!(*inherits.hide, ["x-powered-by"]);
    assert_eq!(
        inherits.expires,
        Expires::After {
            seconds: 3600,
            modified: false
        }
    );
    assert_eq!(inherits.server_tokens, ServerTokens::Off);
    assert_eq!(inherits.redirects.as_ref().map(|r| r.len()), Some(2));
    assert_eq!(inherits.cookie_paths.len(), 1);
    let own = &server.locations[1].proxy.response;
    assert_eq!(*own.hide, ["x-other"]);
    assert_eq!(*own.pass, ["server"]);
    assert_eq!(*own.ignore, ["x-accel-buffering", "vary"]);
    assert_eq!(own.expires, Expires::Off);
    assert_eq!(own.redirects.as_ref().map(|r| r.len()), Some(0));
    assert!(own.cookie_paths.is_empty());
    // The leading dot of a domain pattern is dropped, as nginx.
    assert_eq!(
        own.cookie_domains[0].pattern,
        Pattern::Text("a.example".into())
    );
    assert_eq!(
        own.cookie_flags[0].cookie,
        Pattern::Regex {
            source: "^s".into(),
            caseless: false
        }
    );
    assert_eq!(
        own.cookie_flags[0].flags,
        [
            CookieFlag::Secure(true),
            CookieFlag::SameSite(Some(SameSiteValue::Lax))
        ]
    );
    // Server level: the server's own answers use it.
    assert_eq!(server.response.server_tokens, ServerTokens::Off);
    // Never written: nginx's `proxy_redirect default`.
    let plain = lower_ok("http { server { location / { proxy_pass http://a:1; } } }");
    assert_eq!(
        plain.http.servers[0].locations[0].proxy.response.redirects,
        None
    );
}

#[test]
fn expires_values() {
    let expires = |value: &str| {
        let config = lower_ok(&in_location(&format!("expires {value};")));
        config.http.servers[0].locations[0].proxy.response.expires
    };
    let after = |seconds, modified| Expires::After { seconds, modified };
    assert_eq!(expires("epoch"), Expires::Epoch);
    assert_eq!(expires("max"), Expires::Max);
    assert_eq!(expires("30d"), after(30 * 86_400, false));
    assert_eq!(expires("-1"), after(-1, false));
    assert_eq!(expires("modified +24h"), after(86_400, true));
    assert_eq!(
        expires("@15h30m"),
        Expires::TimeOfDay(std::time::Duration::from_secs(15 * 3600 + 1800))
    );
}

#[test]
fn response_header_errors() {
    let check = |body: &str, want: &[&str]| {
        assert_eq!(lower_errors(&in_location(body)), want, "{body}");
    };
    check(
        "expires soon;",
        &[r#"invalid value "soon" in "expires" directive in t.conf:1:38"#],
    );
    check(
        "expires $expires;",
        &[r#""$expires" in "expires" directive is not supported by tether in t.conf:1:38"#],
    );
    check(
        "proxy_ignore_headers Server;",
        &[r#"invalid value "Server" in "proxy_ignore_headers" directive in t.conf:1:51"#],
    );
    check(
        "proxy_cookie_flags s secure sometimes;",
        &[r#"invalid parameter "sometimes" in "proxy_cookie_flags" directive in t.conf:1:58"#],
    );
    check(
        "server_tokens maybe;",
        &[r#"invalid value "maybe" in "server_tokens" directive in t.conf:1:44"#],
    );
    check(
        "proxy_redirect sometimes;",
        &[r#"invalid value "sometimes" in "proxy_redirect" directive in t.conf:1:45"#],
    );
}
