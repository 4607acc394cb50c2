//! Two tether instances sharing learned sessions through a real redis-server (`sticky learn
//! ... sync=redis://`), as behind an L4 balancer: a SignalR client negotiates through A and
//! continues through B, whose request reaches the server that issued its token. Redis is killed
//! mid-test: requests go on succeeding on what each instance knows, and the sessions learned
//! meanwhile reach B once Redis is back.

use std::net::SocketAddr;

use serde_json::Value;

use crate::harness::client::{request, send};
use crate::harness::redis::Redis;
use crate::harness::session::until;
use crate::harness::signalr::{HUB_PATH, HubServer};
use crate::harness::{Proxy, get};

/// Sessions checked at each step: were B placing them by the hash of their token (as it places
/// a token it does not know), each would land on its issuer one time in three; all of them
/// doing so by luck is a chance in 729.
const SESSIONS: usize = 6;

/// Round robin over three hub servers, sessions learned from negotiate and shared via `redis`.
fn farm_config(redis: &str) -> String {
    format!(
        r#"
        events {{}}
        http {{
            upstream hub {{
                server {{a}} max_fails=0; server {{b}} max_fails=0; server {{c}} max_fails=0;
                sticky learn create=$signalr_connection_token lookup=$arg_id zone=hub:1m
                             sync={redis};
            }}
            server {{
                listen {{listen}};
                location {HUB_PATH} {{ proxy_pass http://hub; }}
            }}
        }}"#
    )
}

/// The `hub` zone's sync of one instance: (published, received, failures, connected).
fn sync_of(proxy: &Proxy) -> (u64, u64, u64, bool) {
    let status = proxy.tether().shared().syncs.status();
    let [sync] = status.as_slice() else {
        panic!("one synced zone: {status:?}");
    };
    assert_eq!(sync.zone, "hub");
    let stats = sync.stats;
    (
        stats.published,
        stats.received,
        stats.failures,
        stats.connected,
    )
}

/// Negotiates through `proxy`: the connection token the answer carries.
async fn negotiate(proxy: SocketAddr) -> String {
    let path = format!("{HUB_PATH}/negotiate?negotiateVersion=1");
    let reply = send(proxy, request("POST", &path, "")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let json: Value = serde_json::from_str(&reply.body).expect("negotiate JSON");
    json["connectionToken"]
        .as_str()
        .expect("a connection token")
        .to_string()
}

/// The first long poll of `token` through `proxy`: answered at once by the server that issued
/// the token, 404 by any other.
async fn first_poll(proxy: SocketAddr, token: &str) -> u16 {
    get(proxy, &format!("{HUB_PATH}?id={token}"))
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn a_session_negotiated_through_one_instance_continues_through_the_other_redis_down_or_not() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let servers = [
        HubServer::start("a").await,
        HubServer::start("b").await,
        HubServer::start("c").await,
    ];
    let backends: Vec<(&str, SocketAddr)> = servers.iter().map(|s| (s.name, s.addr)).collect();
    let config = farm_config(&redis.url(0));
    let (a, b) = (
        Proxy::start(&config, &backends).await,
        Proxy::start(&config, &backends).await,
    );
    until("both instances to connect to redis", || {
        sync_of(&a).3 && sync_of(&b).3
    })
    .await;
    let unknown = || servers.iter().map(HubServer::unknown_tokens).sum::<usize>();

    let mut tokens = Vec::new();
    for _ in 0..SESSIONS {
        tokens.push(negotiate(a.addr).await);
    }
    until("b to hear of every session a learned", || {
        sync_of(&b).1 == SESSIONS as u64
    })
    .await;
    for token in &tokens {
        assert_eq!(first_poll(b.addr, token).await, 200, "through b: {token}");
    }
    assert_eq!(
        unknown(),
        0,
        "no request reached a server that did not issue its token"
    );
    assert_eq!(sync_of(&a).0, SESSIONS as u64);

    // Redis gone: a learns and routes on its own knowledge, and no request fails for it.
    redis.kill();
    let mut during = Vec::new();
    for _ in 0..SESSIONS * 2 {
        during.push(negotiate(a.addr).await);
    }
    for token in &during[SESSIONS..] {
        assert_eq!(
            first_poll(a.addr, token).await,
            200,
            "through a, redis down: {token}"
        );
    }
    until("a to count redis's absence", || sync_of(&a).2 >= 1).await;
    assert_eq!(unknown(), 0);

    // Back (empty): what a learned meanwhile is written, and b routes those sessions too.
    redis.restart().await;
    until(
        "b to hear of the sessions a learned while redis was down",
        || sync_of(&b).1 >= (SESSIONS * 3) as u64,
    )
    .await;
    for token in &during[..SESSIONS] {
        assert_eq!(
            first_poll(b.addr, token).await,
            200,
            "through b, after: {token}"
        );
    }
    assert_eq!(unknown(), 0);
    a.stop().await;
    b.stop().await;
}
