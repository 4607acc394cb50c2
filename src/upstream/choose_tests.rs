//! The whole question a request asks of a group, from its head to the choice: the hash key
//! rendered from the request, the sticky cookie or route read from it, and when the answer
//! must carry `Set-Cookie`.

use crate::header_list::HeaderList;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, Method as HttpMethod, Uri, Version};

use super::*;
use crate::balance::{Key, Method};
use crate::config::{CookieExpiry, Span, StickyCookie};
use crate::peer::{PeerKey, PeerRegistry};
use crate::vars::{RequestInfo, Vars};

/// The owned parts of a request that a [`RequestInfo`] borrows.
struct Request {
    method: HttpMethod,
    uri: Uri,
    headers: HeaderList,
    client: SocketAddr,
}

impl Request {
    fn new(uri: &str, headers: &[(&str, &str)]) -> Request {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                (name, value.parse().unwrap())
            })
            .collect();
        Request {
            method: HttpMethod::GET,
            uri: uri.parse().unwrap(),
            headers,
            client: "192.0.2.7:51234".parse().unwrap(),
        }
    }

    fn from(mut self, client: &str) -> Request {
        self.client = client.parse().unwrap();
        self
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            uri: &self.uri,
            path: self.uri.path().as_bytes(),
            host: "app.example.com",
            version: Version::HTTP_11,
            headers: &self.headers,
            client: self.client,
            peer: self.client,
            proxy_protocol: None,
            local: "10.1.1.1:80".parse().unwrap(),
            scheme: "http",
            tls: None,
            server_name: "app.example.com",
            proxy_host: "",
            facts: &crate::vars::RequestFacts::NONE,
            late: None,
            locals: None,
        }
    }
}

/// A group of servers `a`, `b` and `c` (`route=r-a` ...) balancing by `method`.
fn group(method: Method, hash_key: Option<&str>, sticky: Option<StickyMode>) -> Group {
    let registry = PeerRegistry::default();
    let members = ["a", "b", "c"]
        .into_iter()
        .map(|name| Member {
            peer: registry.get_or_insert(
                PeerKey::new("g".into(), name.into()),
                vec!["127.0.0.1:1".parse().unwrap()],
                4,
            ),
            spec: MemberSpec {
                weight: 1,
                fail_policy: crate::peer::FailPolicy {
                    max_fails: 1,
                    fail_timeout_ms: 60_000,
                },
                max_conns: 0,
                backup: false,
                down: false,
                drain: false,
                drain_timeout: None,
                slow_start: Duration::ZERO,
                route: Some(format!("r-{name}")),
            },
        })
        .collect();
    let spec = GroupSpec {
        method,
        hash_key: hash_key.map(template),
        sticky,
        keepalive_timeout: Duration::from_secs(60),
        health_check: None,
    };
    Group::new("g".into(), members, spec)
}

fn template(text: &str) -> crate::vars::Template {
    no_maps().compile(text, &Span::builtin()).unwrap()
}

fn no_maps() -> Vars {
    Vars::build(&[]).unwrap()
}

/// `sticky cookie srv [expires=...]`.
fn cookie(expires: Option<CookieExpiry>) -> Option<StickyMode> {
    Some(StickyMode::Cookie(StickyCookie {
        name: "srv".into(),
        expires,
        domain: None,
        path: "/".into(),
        http_only: false,
        secure: false,
        same_site: None,
        secret: None,
        span: Span::builtin(),
    }))
}

/// The choice for `request`'s first attempt.
fn choose<'g>(g: &'g Group, request: &Request) -> Choice<'g> {
    let affinity = g.affinity(&request.info(), &no_maps());
    g.choose(&affinity, &Tried::default()).unwrap()
}

/// The `Set-Cookie` value a choice calls for, as text.
fn set_cookie(choice: &Choice<'_>) -> Option<String> {
    let value = choice.set_cookie?.value()?;
    Some(value.to_str().unwrap().to_string())
}

#[test]
fn a_new_session_gets_the_cookie_of_the_server_it_got() {
    let g = group(Method::RoundRobin, None, cookie(None));
    for _ in 0..3 {
        let choice = choose(&g, &Request::new("/", &[]));
        let value = g.cookie_value(choice.member).unwrap();
        assert_eq!(set_cookie(&choice), Some(format!("srv={value}; path=/")));
        assert_eq!(choice.sticky, StickyStatus::New);
    }
}

#[test]
fn a_sticky_hit_sets_no_cookie_unless_the_expiry_slides() {
    let g = group(Method::RoundRobin, None, cookie(None));
    let header = format!("theme=dark; srv={}; lang=en", g.cookie_value(2).unwrap());
    for _ in 0..3 {
        let choice = choose(&g, &Request::new("/", &[("cookie", &header)]));
        assert_eq!(choice.member, 2, "the cookie's server, every time");
        assert_eq!(set_cookie(&choice), None, "nothing to renew");
        assert_eq!(choice.sticky, StickyStatus::Hit);
    }
    assert_eq!(g.member(2).peer.state.picked_by_sticky(), 3);

    let hourly = Some(CookieExpiry::After(Duration::from_secs(3600)));
    let g = group(Method::RoundRobin, None, cookie(hourly));
    let value = g.cookie_value(1).unwrap();
    let choice = choose(
        &g,
        &Request::new("/", &[("cookie", &format!("srv={value}"))]),
    );
    assert_eq!(choice.member, 1);
    let renewed = set_cookie(&choice).expect("a sliding expiry is renewed on a hit");
    assert!(
        renewed.starts_with(&format!("srv={value}; expires=")) && renewed.contains("max-age=3600"),
        "{renewed}"
    );
}

#[test]
fn a_forged_or_stale_cookie_is_rebalanced_and_reissued() {
    let g = group(Method::RoundRobin, None, cookie(None));
    for forged in ["0123456789abcdef", "not-ours", ""] {
        let request = Request::new("/", &[("cookie", &format!("srv={forged}"))]);
        let choice = choose(&g, &request);
        let value = g.cookie_value(choice.member).unwrap();
        assert_eq!(set_cookie(&choice), Some(format!("srv={value}; path=/")));
        assert_eq!(choice.sticky, StickyStatus::Repinned, "{forged:?}");
    }
    let repinned: u64 = g.members().iter().map(|m| m.peer.state.repinned()).sum();
    assert_eq!(repinned, 3);
    // The cookie of a server that is out: the client is pinned to where it went instead.
    g.record_failure(0);
    let stale = format!("srv={}", g.cookie_value(0).unwrap());
    let choice = choose(&g, &Request::new("/", &[("cookie", &stale)]));
    assert_ne!(choice.member, 0);
    assert_eq!(choice.sticky, StickyStatus::Repinned);
    let value = g.cookie_value(choice.member).unwrap();
    assert_eq!(set_cookie(&choice), Some(format!("srv={value}; path=/")));
}

#[test]
fn every_request_with_the_same_stale_cookie_is_re_pinned_to_one_server() {
    // A page whose server went away sends its WebSocket, event stream, long poll and plain
    // requests at once, all with the old cookie: round robin would scatter them, and the last
    // answer's cookie would win. Keyed by the stale value they stay together.
    let g = group(Method::RoundRobin, None, cookie(None));
    g.record_failure(0);
    let stale = format!("srv={}", g.cookie_value(0).unwrap());
    let homes: Vec<usize> = (0..8)
        .map(|_| choose(&g, &Request::new("/", &[("cookie", &stale)])).member)
        .collect();
    assert!(homes.iter().all(|&m| m == homes[0] && m != 0), "{homes:?}");
    // Other stale or forged values spread over the live servers.
    let spread: std::collections::HashSet<usize> = (0..40)
        .map(|i| {
            let forged = format!("srv=forged{i}");
            choose(&g, &Request::new("/", &[("cookie", &forged)])).member
        })
        .collect();
    assert_eq!(spread.len(), 2, "{spread:?}");
}

#[test]
fn the_hash_key_is_rendered_from_the_request() {
    let g = group(
        Method::Hash { consistent: true },
        Some("$arg_user-$http_x_tenant"),
        None,
    );
    let request = Request::new("/chat?user=alice", &[("x-tenant", "acme")]);
    let affinity = g.affinity(&request.info(), &no_maps());
    assert!(
        matches!(affinity.key(), Key::Bytes(b"alice-acme")),
        "{affinity:?}"
    );
    // The same key lands on the same server whoever sends it; no cookie without `sticky`.
    let home = choose(&g, &request).member;
    for client in ["198.51.100.1:1", "203.0.113.9:2"] {
        let choice = choose(
            &g,
            &Request::new("/chat?user=alice", &[("x-tenant", "acme")]).from(client),
        );
        assert_eq!(choice.member, home);
        assert!(choice.set_cookie.is_none());
    }
}

#[test]
fn ip_hash_keys_on_the_client_address() {
    let g = group(Method::IpHash, None, None);
    let request = Request::new("/", &[]).from("198.51.100.20:4000");
    let affinity = g.affinity(&request.info(), &no_maps());
    assert!(
        matches!(affinity.key(), Key::Ip(ip) if ip.to_string() == "198.51.100.20"),
        "{affinity:?}"
    );
    let home = choose(&g, &request).member;
    // Same /24, another port: the same server (nginx's three-octet key).
    let neighbour = Request::new("/", &[]).from("198.51.100.77:5000");
    assert_eq!(choose(&g, &neighbour).member, home);
}

#[test]
fn sticky_route_takes_the_first_non_empty_variable() {
    let routes = vec![template("$cookie_route"), template("$arg_route")];
    let g = group(Method::RoundRobin, None, Some(StickyMode::Route(routes)));
    let by_arg = Request::new("/?route=r-b", &[]);
    assert_eq!(choose(&g, &by_arg).member, 1);
    let both = Request::new("/?route=r-b", &[("cookie", "route=r-c")]);
    assert_eq!(choose(&g, &both).member, 2, "the cookie comes first");
    // An unknown route is balanced; `sticky route` never sets a cookie.
    let unknown = Request::new("/?route=r-z", &[]);
    let affinity = g.affinity(&unknown.info(), &no_maps());
    assert_eq!(affinity.pinned, None);
    assert!(choose(&g, &unknown).set_cookie.is_none());
}
