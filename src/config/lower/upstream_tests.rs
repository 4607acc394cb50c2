//! Upstream stickiness, health checks and server identity: the model they lower to, and every
//! error with its exact message and `file:line:col`.

use std::time::Duration;

use super::tests::{in_location, in_server, lower_errors, lower_ok};
use crate::config::model::*;

/// Asserts that `text` yields exactly `want`, in order.
fn check(text: &str, want: &[&str]) {
    assert_eq!(lower_errors(text), want, "config: {text}");
}

/// Wraps `body` in `http { upstream u { ... } }` on one line: the body starts at column 21.
fn in_upstream(body: &str) -> String {
    format!("http {{ upstream u {{ {body} }} }}")
}

fn upstream<'a>(config: &'a Config, name: &str) -> &'a Upstream {
    let found = config.http.upstreams.iter().find(|u| u.name == name);
    found.unwrap_or_else(|| panic!("no upstream {name}"))
}

fn cookie(upstream: &Upstream) -> &StickyCookie {
    match &upstream.sticky {
        Some(Sticky::Cookie(cookie)) => cookie,
        other => panic!("not a sticky cookie: {other:?}"),
    }
}

#[test]
fn sticky_and_health_check_lower_to_the_model() {
    let config = lower_ok(
        r#"http {
  sticky_secret "http secret";
  upstream cookie {
    server 10.0.0.1:5000 route=a;
    server 10.0.0.2:5000 route=b backup;
    sticky cookie srv_id expires=1h domain=.example.com path=/app httponly secure samesite=lax;
    health_check interval=10s fails=3 passes=2 uri=/healthz?full=1 timeout=2s status=200-299;
  }
  upstream own { server a:1; sticky cookie s expires=max; sticky_secret mine; health_check; }
  upstream routed {
    server a:1 route=x; server b:1 route=y; server c:1;
    sticky route $cookie_route $arg_route;
    sticky_secret unused;
    health_check status=204 interval=2s;
  }
  upstream plain { server a:1; server a:80; health_check interval=30s; }
}"#,
    );
    let first = upstream(&config, "cookie");
    let got = cookie(first);
    let want = StickyCookie {
        name: "srv_id".into(),
        expires: Some(CookieExpiry::After(Duration::from_secs(3600))),
        domain: Some(".example.com".into()),
        path: "/app".into(),
        http_only: true,
        secure: true,
        same_site: Some(SameSite::Lax),
        secret: Some("http secret".into()),
        span: got.span.clone(),
    };
    assert_eq!(got, &want);
    assert_eq!(got.span.to_string(), "t.conf:6:5");
    let check = first.health_check.as_ref().expect("health_check");
    let want = HealthCheck {
        interval: Duration::from_secs(10),
        fails: 3,
        passes: 2,
        uri: "/healthz?full=1".into(),
        timeout: Duration::from_secs(2),
        status: (200, 299),
        span: check.span.clone(),
    };
    assert_eq!(check, &want);
    assert_eq!(check.span.to_string(), "t.conf:7:5");

    // The upstream's own secret wins; the other defaults hold.
    let own = upstream(&config, "own");
    let got = cookie(own);
    let want = StickyCookie {
        name: "s".into(),
        expires: Some(CookieExpiry::Max),
        domain: None,
        path: "/".into(),
        http_only: false,
        secure: false,
        same_site: None,
        secret: Some("mine".into()),
        span: got.span.clone(),
    };
    assert_eq!(got, &want);
    let check = own.health_check.as_ref().expect("health_check");
    let want = HealthCheck {
        interval: Duration::from_secs(5),
        fails: 1,
        passes: 1,
        uri: "/".into(),
        timeout: Duration::from_secs(5),
        status: (200, 399),
        span: check.span.clone(),
    };
    assert_eq!(check, &want);

    // A secret without `sticky cookie` is harmless; the timeout follows a short interval.
    let routed = upstream(&config, "routed");
    match &routed.sticky {
        Some(Sticky::Route { variables, span }) => {
            assert_eq!(variables, &["$cookie_route", "$arg_route"]);
            assert_eq!(span.to_string(), "t.conf:12:5");
        }
        other => panic!("not a sticky route: {other:?}"),
    }
    let check = routed.health_check.as_ref().expect("health_check");
    assert_eq!(check.status, (204, 204));
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    let routes: Vec<Option<&str>> = routed.servers.iter().map(|s| s.route.as_deref()).collect();
    assert_eq!(routes, [Some("x"), Some("y"), None]);

    // `a` and `a:80` are different as written, so two servers; a long interval caps the timeout.
    let plain = upstream(&config, "plain");
    assert_eq!(plain.sticky, None);
    assert_eq!(plain.servers.len(), 2);
    let check = plain.health_check.as_ref().expect("health_check");
    assert_eq!(
        (check.interval, check.timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
}

#[test]
fn http_sticky_secret_may_follow_the_upstreams() {
    let config = lower_ok(
        "http { upstream u { server a:1; sticky cookie s; } \
         upstream v { server a:1; sticky cookie t; sticky_secret v; } sticky_secret late; }",
    );
    assert_eq!(
        cookie(upstream(&config, "u")).secret.as_deref(),
        Some("late")
    );
    assert_eq!(cookie(upstream(&config, "v")).secret.as_deref(), Some("v"));
    // No secret anywhere: the cookie codec derives one from the group name.
    let config = lower_ok(&in_upstream("server a:1; sticky cookie s;"));
    assert_eq!(cookie(&config.http.upstreams[0]).secret, None);
}

#[test]
fn backup_down_and_drain_go_with_every_method() {
    let methods = [
        "",
        "least_conn;",
        "ip_hash;",
        "hash $uri;",
        "hash $remote_addr consistent;",
        "random;",
        "random two least_conn;",
    ];
    for method in methods {
        let config = lower_ok(&in_upstream(&format!(
            "server a:1; server b:1 backup; server c:1 backup down; server d:1 backup drain; \
             server e:1 down drain; server f:1 backup down drain; {method}"
        )));
        let flags: Vec<(bool, bool, bool)> = config.http.upstreams[0]
            .servers
            .iter()
            .map(|s| (s.backup, s.down, s.drain))
            .collect();
        let want = [
            (false, false, false),
            (true, false, false),
            (true, true, false),
            (true, false, true),
            (false, true, true),
            (true, true, true),
        ];
        assert_eq!(flags, want, "method {method:?}");
    }
}

#[test]
fn sticky_cookie_errors() {
    check(
        &in_upstream(
            r#"server a:1; sticky cookie "a b" expires=0 domain= path=app samesite=Strict bogus;"#,
        ),
        &[
            r#"invalid cookie name "a b" in t.conf:1:47 (a cookie name is letters, digits and any of !#$%&'*+-.^_`|~)"#,
            r#"invalid parameter "expires=0" in "sticky" directive in t.conf:1:53"#,
            r#"invalid parameter "domain=" in "sticky" directive in t.conf:1:63"#,
            r#"invalid parameter "path=app" in "sticky" directive in t.conf:1:71"#,
            r#"invalid parameter "samesite=Strict" in "sticky" directive in t.conf:1:80"#,
            r#"invalid parameter "bogus" in "sticky" directive in t.conf:1:96"#,
        ],
    );
    check(
        &in_upstream(r#"server a:1; sticky cookie s expires=1q "domain=a;b" httponly=on;"#),
        &[
            r#"invalid parameter "expires=1q" in "sticky" directive in t.conf:1:49"#,
            r#"invalid parameter "domain=a;b" in "sticky" directive in t.conf:1:60"#,
            r#"invalid parameter "httponly=on" in "sticky" directive in t.conf:1:73"#,
        ],
    );
    check(
        &in_upstream("server a:1; sticky cookie;"),
        &[r#"invalid number of arguments in "sticky" directive in t.conf:1:33"#],
    );
    check(
        &in_upstream("server a:1; sticky;"),
        &[r#"invalid number of arguments in "sticky" directive in t.conf:1:33"#],
    );
    check(
        &in_upstream("server a:1; sticky learn create=$x;"),
        &[r#""sticky learn" cannot create sessions from "$x" in t.conf:1:46"#],
    );
    check(
        &in_upstream("server a:1; sticky hash $x;"),
        &[r#"invalid value "hash" in "sticky" directive in t.conf:1:40"#],
    );
    check(
        &in_upstream("server a:1; sticky cookie a; sticky cookie b;"),
        &[r#""sticky" directive is duplicate in t.conf:1:50"#],
    );
    check(
        &in_location("sticky cookie s;"),
        &[r#""sticky" directive is not allowed here in t.conf:1:30"#],
    );
}

#[test]
fn sticky_route_errors() {
    check(
        &in_upstream("server a:1 route=x; sticky route $a route $;"),
        &[
            r#"invalid variable name "route" in t.conf:1:57"#,
            r#"invalid variable name "$" in t.conf:1:63"#,
        ],
    );
    check(
        &in_upstream("server a:1; sticky route;"),
        &[r#"invalid number of arguments in "sticky" directive in t.conf:1:33"#],
    );
    check(
        &in_upstream("server a:1; server b:1; sticky route $cookie_r;"),
        &[r#""sticky route" needs servers with "route=" in upstream "u" in t.conf:1:45"#],
    );
    // A `route=` that is itself wrong is reported once, not again as missing.
    check(
        &in_upstream("server a:1 route=; sticky route $x;"),
        &[r#"invalid parameter "route=" in "server" directive in t.conf:1:32"#],
    );
}

#[test]
fn server_identity_errors() {
    check(
        &in_upstream("server a:1 route=x; server b:1 route=x; server a:1 route=y;"),
        &[r#"duplicate route "x" in upstream "u" in t.conf:1:52"#],
    );
}

#[test]
fn sticky_secret_errors() {
    check(
        &in_upstream(r#"server a:1; sticky_secret "";"#),
        &[r#"invalid value "" in "sticky_secret" directive in t.conf:1:47"#],
    );
    check(
        "http { sticky_secret a; sticky_secret b; }",
        &[r#""sticky_secret" directive is duplicate in t.conf:1:25"#],
    );
    check(
        &in_server("sticky_secret a;"),
        &[r#""sticky_secret" directive is not allowed here in t.conf:1:17"#],
    );
}

#[test]
fn health_check_errors() {
    check(
        &in_upstream(
            "server a:1; health_check interval=0 fails=0 passes=x uri=healthz timeout=0s \
             status=300-200 match=ok mandatory bogus;",
        ),
        &[
            r#"invalid parameter "interval=0" in "health_check" directive in t.conf:1:46"#,
            r#"invalid parameter "fails=0" in "health_check" directive in t.conf:1:57"#,
            r#"invalid parameter "passes=x" in "health_check" directive in t.conf:1:65"#,
            r#"invalid parameter "uri=healthz" in "health_check" directive in t.conf:1:74"#,
            r#"invalid parameter "timeout=0s" in "health_check" directive in t.conf:1:86"#,
            r#"invalid parameter "status=300-200" in "health_check" directive in t.conf:1:97"#,
            r#""match=ok" in "health_check" directive is not supported by tether in t.conf:1:112"#,
            r#""mandatory" in "health_check" directive is not supported by tether in t.conf:1:121"#,
            r#"invalid parameter "bogus" in "health_check" directive in t.conf:1:131"#,
        ],
    );
    check(
        &in_upstream("server a:1; health_check; health_check;"),
        &[r#""health_check" directive is duplicate in t.conf:1:47"#],
    );
    let hint = "(health_check belongs in the upstream block in tether)";
    check(
        &in_location("health_check;"),
        &[&format!(
            r#""health_check" directive is not allowed here in t.conf:1:30 {hint}"#
        )],
    );
    check(
        &in_server("health_check uri=/h;"),
        &[&format!(
            r#""health_check" directive is not allowed here in t.conf:1:17 {hint}"#
        )],
    );
}

#[test]
fn sticky_learn_lowers_with_nginx_defaults_and_tethers_own_sources() {
    let config = lower_ok(
        "http { sticky_secret s3; upstream u { server a:1; \
         sticky learn create=$signalr_connection_token create=$upstream_cookie_SID \
         create=$Upstream_Http_X_Session lookup=$arg_id lookup=$cookie_SID zone=hub:1m; } }",
    );
    let Some(Sticky::Learn(learn)) = &upstream(&config, "u").sticky else {
        panic!("not sticky learn");
    };
    assert_eq!(
        learn.create,
        [
            LearnSource::SignalrConnectionToken,
            LearnSource::UpstreamCookie("SID".into()),
            LearnSource::UpstreamHeader("x-session".into()),
        ]
    );
    assert_eq!(learn.lookup, ["$arg_id", "$cookie_SID"]);
    assert_eq!((learn.zone.as_str(), learn.size), ("hub", 1 << 20));
    assert_eq!(learn.timeout, Duration::from_secs(600));
    assert_eq!((learn.header, learn.sync.as_deref()), (false, None));
    assert_eq!(learn.secret.as_deref(), Some("s3"));
    let config = lower_ok(
        "http { upstream u { server a:1; sticky learn create=$engineio_sid lookup=$arg_sid \
         zone=io:64k timeout=1h header sync=redis://10.0.0.5:6380/2; } }",
    );
    let Some(Sticky::Learn(learn)) = &upstream(&config, "u").sticky else {
        panic!("not sticky learn");
    };
    assert_eq!(learn.create, [LearnSource::EngineioSid]);
    assert_eq!(learn.timeout, Duration::from_secs(3600));
    assert_eq!(learn.sync.as_deref(), Some("redis://10.0.0.5:6380/2"));
    assert!(learn.header);
}

#[test]
fn sticky_learn_errors() {
    check(
        &in_upstream("server a:1; sticky learn lookup=$arg_id zone=z:1m;"),
        &[r#""sticky learn" must have "create" parameter in t.conf:1:33"#],
    );
    check(
        &in_upstream("server a:1; sticky learn create=$engineio_sid lookup=$arg_sid;"),
        &[r#""sticky learn" must have "zone" parameter in t.conf:1:33"#],
    );
    check(
        &in_upstream("server a:1; sticky learn create=$engineio_sid zone=z:1k lookup=sid;"),
        &[
            r#"zone "z" is too small in t.conf:1:67"#,
            r#"invalid variable name "sid" in t.conf:1:77"#,
        ],
    );
    check(
        &in_upstream(
            "server a:1; sticky learn create=$engineio_sid lookup=$arg_sid zone=z:1m \
             sync=http://r:1;",
        ),
        &[r#"invalid sync store "http://r:1" (expected redis://HOST[:PORT][/DB]) in t.conf:1:93"#],
    );
    check(
        "http { upstream u { server a:1; sticky learn create=$engineio_sid lookup=$arg_sid \
         zone=z:1m; } upstream v { server b:1; sticky learn create=$engineio_sid \
         lookup=$arg_sid zone=z:1m; } }",
        &[r#"zone "z" is already used by upstream "u" in t.conf:1:121"#],
    );
}
