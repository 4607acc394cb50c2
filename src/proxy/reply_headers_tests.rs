//! The rules applied to header maps, without sockets; the end-to-end and nginx-differential
//! tests are in `tests/e2e/response_headers.rs`.

use std::sync::Arc;

use super::*;
use crate::config::{self, CookieFlags, Pattern, ResponseRules, Span, ValueRewrite};
use crate::snapshot::reply_headers::{Compiler, DefaultRedirect};
use crate::vars::Vars;

fn span() -> Span {
    Span::builtin()
}

fn rewrite(from: &str, to: &str) -> ValueRewrite {
    let pattern = match from.strip_prefix('~') {
        Some(source) => Pattern::Regex {
            source: source.into(),
            caseless: false,
        },
        None => Pattern::Text(from.into()),
    };
    ValueRewrite {
        pattern,
        replacement: to.into(),
        span: span(),
    }
}

fn plan(rules: &ResponseRules, default: Option<DefaultRedirect>) -> ReplyPlan {
    let vars = Vars::build(&[]).unwrap();
    let mut errors = Vec::new();
    let mut compiler = Compiler {
        vars: &vars,
        errors: &mut errors,
        templates: Vec::new(),
    };
    let plan = compiler.plan(rules, default, false);
    assert!(errors.is_empty(), "{errors:?}");
    plan
}

const ORIGIN: Origin<'static> = Origin {
    scheme: "http",
    host: "front",
    port: 8080,
};

fn rewritten(plan: &ReplyPlan, pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    rewrite_upstream(&mut headers, plan, &Rendered::default(), ORIGIN, u8::MAX);
    headers
}

#[test]
fn the_default_redirect_maps_the_proxy_pass_url_to_the_location_and_makes_it_absolute() {
    let default = DefaultRedirect {
        from: "http://backend/uri/".into(),
        to: "/one/".into(),
    };
    let plan = plan(&ResponseRules::default(), Some(default));
    let h = rewritten(&plan, &[("location", "http://backend/uri/x?y")]);
    assert_eq!(h["location"], "http://front:8080/one/x?y");
    // Another host, or a relative value, is left as it is.
    let h = rewritten(&plan, &[("location", "http://other/uri/x")]);
    assert_eq!(h["location"], "http://other/uri/x");
    let h = rewritten(&plan, &[("location", "/uri/x")]);
    assert_eq!(h["location"], "/uri/x");
    let h = rewritten(&plan, &[("refresh", "5; URL=http://backend/uri/r")]);
    assert_eq!(h["refresh"], "5; URL=/one/r");
}

#[test]
fn redirect_rules_go_in_order_and_a_regex_replaces_the_whole_value() {
    let rules = ResponseRules {
        redirects: Some(Arc::new(vec![
            config::Redirect::Rewrite(rewrite("~^http://b(\\d)/(.*)$", "https://x/$1/$2")),
            config::Redirect::Rewrite(rewrite("http://b", "http://never")),
        ])),
        ..ResponseRules::default()
    };
    let plan = plan(&rules, None);
    let h = rewritten(&plan, &[("location", "http://b7/p/q")]);
    assert_eq!(h["location"], "https://x/7/p/q");
    let h = rewritten(&plan, &[("location", "http://bx/p")]);
    assert_eq!(h["location"], "http://neverx/p");
}

#[test]
fn cookie_domain_path_and_flags_edit_each_set_cookie() {
    let rules = ResponseRules {
        cookie_domains: Arc::new(vec![rewrite("internal.local", "example.com")]),
        cookie_paths: Arc::new(vec![rewrite("/app/", "/")]),
        cookie_flags: Arc::new(vec![CookieFlags {
            cookie: Pattern::Text("sid".into()),
            flags: vec![
                CookieFlag::Secure(true),
                CookieFlag::HttpOnly(false),
                CookieFlag::SameSite(Some(SameSiteValue::Lax)),
            ],
            span: span(),
        }]),
        ..ResponseRules::default()
    };
    let plan = plan(&rules, None);
    let h = rewritten(
        &plan,
        &[
            (
                "set-cookie",
                "sid=1; Domain=.Internal.Local; Path=/app/x; HttpOnly",
            ),
            ("set-cookie", "other=2; path=/app/; domain=elsewhere"),
        ],
    );
    let all: Vec<&str> = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        all,
        [
            "sid=1; Domain=.example.com; Path=/x; Secure; SameSite=Lax",
            "other=2; path=/; domain=elsewhere",
        ]
    );
}

#[test]
fn expires_follows_nginx() {
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let set = |expires, pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        set_expires(&mut h, expires, at);
        (
            h.get("expires").map(|v| v.to_str().unwrap().to_string()),
            h.get("cache-control")
                .map(|v| v.to_str().unwrap().to_string()),
        )
    };
    let one_hour = Expires::After {
        seconds: 3600,
        modified: false,
    };
    assert_eq!(
        set(one_hour, &[("cache-control", "private")]),
        (
            Some("Tue, 14 Nov 2023 23:13:20 GMT".into()),
            Some("max-age=3600".into())
        )
    );
    let past = Expires::After {
        seconds: -60,
        modified: false,
    };
    assert_eq!(set(past, &[]).1.as_deref(), Some("no-cache"));
    assert_eq!(
        set(Expires::Epoch, &[]),
        (
            Some("Thu, 01 Jan 1970 00:00:01 GMT".into()),
            Some("no-cache".into())
        )
    );
    assert_eq!(
        set(Expires::Max, &[]),
        (
            Some("Thu, 31 Dec 2037 23:55:55 GMT".into()),
            Some("max-age=315360000".into())
        )
    );
    let modified = Expires::After {
        seconds: 7200,
        modified: true,
    };
    assert_eq!(set(modified, &[]), (None, None));
    let last = [("last-modified", "Tue, 14 Nov 2023 21:13:20 GMT")];
    assert_eq!(
        set(modified, &last),
        (
            Some("Tue, 14 Nov 2023 23:13:20 GMT".into()),
            Some("max-age=3600".into())
        )
    );
    // @TIME: the next such time of day.
    let noon = Expires::TimeOfDay(Duration::from_secs(12 * 3600));
    assert_eq!(
        set(noon, &[]).0.as_deref(),
        Some("Wed, 15 Nov 2023 12:00:00 GMT")
    );
}
