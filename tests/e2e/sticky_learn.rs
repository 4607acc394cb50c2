//! `sticky learn`: sessions learned from the upstream's own handshakes, with no cookie and no
//! `ip_hash`. Three SignalR servers behind round robin, the real `@microsoft/signalr` client
//! over each transport (it gets no cookie: neither the servers nor tether set one): the
//! negotiate response's `connectionToken` is learned and every later request, which carries it
//! as `?id=`, reaches the server that issued it. The same farm without `sticky learn` sends
//! transports to servers that never issued their token. A session whose server goes away is
//! re-pinned, and stays where it was re-pinned when the old server returns.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::certs::TestCa;
use crate::harness::client::{request, send};
use crate::harness::session::eventually;
use crate::harness::signalr::{HUB_PATH, HubServer, Transport};
use crate::harness::signalr_client::{Session, SignalrClient};
use crate::harness::socketio::{Mode, SocketIoServer, run_client};
use crate::harness::{Proxy, get};

/// A client session: node's start-up, negotiation, the transport, the invocations, the stop.
const SESSION_LIMIT: Duration = Duration::from_secs(20);
const ECHOES: usize = 2;

/// The hosting guide's location, round robin over three hub servers, and `LEARN` (the
/// `sticky learn` line, or nothing for the control).
fn farm_config(learn: &str) -> String {
    format!(
        r#"
        events {{}}
        http {{
            map $http_connection $connection_upgrade {{ "~*Upgrade" $http_connection; default keep-alive; }}
            upstream hub {{
                server {{a}} max_fails=0; server {{b}} max_fails=0; server {{c}} max_fails=0;
                {learn}
            }}
            server {{
                listen {{listen}};
                location {HUB_PATH} {{
                    proxy_pass http://hub;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $connection_upgrade;
                    proxy_buffering off;
                }}
            }}
        }}"#
    )
}

const LEARN_SIGNALR: &str =
    "sticky learn create=$signalr_connection_token lookup=$arg_id zone=hub:1m timeout=10m;";

struct Farm {
    servers: [HubServer; 3],
    proxy: Proxy,
}

impl Farm {
    async fn start(learn: &str) -> Farm {
        let servers = [
            HubServer::start("a").await,
            HubServer::start("b").await,
            HubServer::start("c").await,
        ];
        let backends: Vec<(&str, SocketAddr)> = servers.iter().map(|s| (s.name, s.addr)).collect();
        let proxy = Proxy::start(&farm_config(learn), &backends).await;
        Farm { servers, proxy }
    }

    fn unknown_tokens(&self) -> usize {
        self.servers.iter().map(HubServer::unknown_tokens).sum()
    }

    async fn session(
        &self,
        client: &SignalrClient,
        ca: &TestCa,
        transport: Transport,
    ) -> Result<Session, String> {
        let url = format!("http://{}{HUB_PATH}", self.proxy.addr);
        client
            .run(&url, transport, ECHOES, &ca.ca_file(), SESSION_LIMIT)
            .await
            .map_err(|failed| format!("{}: {}", failed.status, failed.stderr))
    }
}

#[tokio::test]
async fn signalr_sessions_learned_from_negotiate_keep_every_transport_on_its_server() {
    let Some(client) = SignalrClient::installed() else {
        return;
    };
    let ca = TestCa::new();
    let farm = Farm::start(LEARN_SIGNALR).await;
    let mut sessions = 0;
    for transport in Transport::ALL {
        for _ in 0..2 {
            let session = farm
                .session(&client, &ca, transport)
                .await
                .unwrap_or_else(|failed| panic!("a {transport:?} session failed: {failed}"));
            sessions += 1;
            assert!(
                session
                    .echoes
                    .iter()
                    .all(|(_, server)| *server == session.whoami),
                "{transport:?}: every Echo answered where WhoAmI was: {session:?}"
            );
        }
    }
    assert_eq!(
        farm.unknown_tokens(),
        0,
        "no request reached a server that did not issue its token"
    );
    // Round robin placed the negotiations: every server took new sessions.
    let negotiations: Vec<usize> = farm.servers.iter().map(HubServer::negotiations).collect();
    assert_eq!(
        negotiations.iter().sum::<usize>(),
        sessions,
        "{negotiations:?}"
    );
    assert!(negotiations.iter().all(|&n| n >= 1), "{negotiations:?}");
    farm.proxy.stop().await;
}

/// The control: the same farm, round robin alone. SignalR's transport lands on a server that
/// never negotiated it, which answers 404 ("session unknown").
#[tokio::test]
async fn round_robin_alone_sends_signalr_transports_to_servers_that_never_issued_them() {
    let Some(client) = SignalrClient::installed() else {
        return;
    };
    let ca = TestCa::new();
    let farm = Farm::start("").await;
    let outcome = farm.session(&client, &ca, Transport::LongPolling).await;
    let failed = outcome.expect_err("a session without stickiness fails");
    assert!(failed.contains("404"), "{failed}");
    assert!(farm.unknown_tokens() >= 1);
    farm.proxy.stop().await;
}

/// Negotiates through the proxy: the connection token the negotiate response carries.
async fn negotiate(proxy: &Proxy) -> String {
    let path = format!("{HUB_PATH}/negotiate?negotiateVersion=1");
    let reply = send(proxy.addr, request("POST", &path, "")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let json: Value = serde_json::from_str(&reply.body).expect("negotiate JSON");
    json["connectionToken"]
        .as_str()
        .expect("a connection token")
        .to_string()
}

/// A session's server stops: its next request is balanced elsewhere and the session is
/// re-pinned there, so it does not flap back when the old server returns (as a sticky cookie
/// would not). Every server here is `max_fails=0`, so the returning one is usable at once.
#[tokio::test]
async fn a_session_whose_server_stops_is_repinned_and_stays_when_it_returns() {
    let mut farm = Farm::start(LEARN_SIGNALR).await;
    let token = negotiate(&farm.proxy).await;
    let poll = format!("{HUB_PATH}?id={token}");
    // Learned: the poll reaches the issuing server (its first poll is answered at once).
    assert_eq!(get(farm.proxy.addr, &poll).await.status, 200);
    assert_eq!(farm.unknown_tokens(), 0);
    let home = farm
        .servers
        .iter()
        .position(|s| s.negotiations() == 1)
        .expect("one server negotiated");
    let (name, addr) = (farm.servers[home].name, farm.servers[home].addr);
    // Stopped (a server tether does not know takes its slot here): the next request goes
    // elsewhere, a 404 there, the session's state gone with its server.
    drop(std::mem::replace(
        &mut farm.servers[home],
        HubServer::start("elsewhere").await,
    ));
    eventually(
        Duration::from_secs(5),
        "the stopped server refuses",
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    let reply = get(farm.proxy.addr, &poll).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let unknown = |farm: &Farm| -> Vec<usize> {
        farm.servers.iter().map(HubServer::unknown_tokens).collect()
    };
    let after_stop = unknown(&farm);
    let new_home = after_stop
        .iter()
        .position(|&n| n == 1)
        .unwrap_or_else(|| panic!("one server got the session: {after_stop:?}"));
    assert_ne!(new_home, home);
    // Back on its address, knowing nothing: the session stays on its new server.
    farm.servers[home] = HubServer::start_at(name, addr).await;
    for _ in 0..3 {
        let _ = get(farm.proxy.addr, &poll).await;
    }
    let after_return = unknown(&farm);
    assert_eq!(
        after_return[home], 0,
        "the session flapped back: {after_return:?}"
    );
    assert_eq!(after_return[new_home], 4, "{after_return:?}");
    farm.proxy.stop().await;
}

/// socket.io behind round robin over three servers, learning each engine.io handshake's `sid`
/// (or, for the control, round robin alone).
async fn socketio_farm(learn: &str) -> Option<([SocketIoServer; 3], Proxy)> {
    let servers = SocketIoServer::start_all(["a", "b", "c"]).await?;
    let backends: Vec<(&str, SocketAddr)> = servers.iter().map(|s| (s.name, s.addr)).collect();
    let conf = format!(
        r#"
        events {{}}
        http {{
            map $http_upgrade $connection_upgrade {{ default upgrade; "" keep-alive; }}
            upstream io {{ server {{a}}; server {{b}}; server {{c}}; {learn} }}
            server {{
                listen {{listen}};
                location /socket.io/ {{
                    proxy_pass http://io;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $connection_upgrade;
                }}
            }}
        }}"#
    );
    let proxy = Proxy::start(&conf, &backends).await;
    Some((servers, proxy))
}

const LEARN_ENGINEIO: &str = "sticky learn create=$engineio_sid lookup=$arg_sid zone=io:1m;";

#[tokio::test]
async fn socketio_sessions_learned_from_the_handshake_stay_on_one_server() {
    let Some((servers, proxy)) = socketio_farm(LEARN_ENGINEIO).await else {
        return;
    };
    let url = format!("http://{}", proxy.addr);
    let mut sessions = 0;
    for mode in [Mode::Polling, Mode::Upgrade] {
        for _ in 0..3 {
            let run = run_client(&url, mode)
                .await
                .unwrap_or_else(|failed| panic!("a {mode:?} session failed: {failed}"));
            sessions += 1;
            assert!(
                run.servers.windows(2).all(|w| w[0] == w[1]),
                "{mode:?}: one server answered every ask: {run:?}"
            );
            if let Mode::Upgrade = mode {
                assert_eq!(run.transport, "websocket", "{run:?}");
            }
        }
    }
    let mut connections = Vec::new();
    for server in &servers {
        let counts = server.counts().await;
        assert_eq!(counts.unknown_sid, 0, "{}: {counts:?}", server.name);
        connections.push(counts.connections);
    }
    assert_eq!(connections.iter().sum::<u64>(), sessions, "{connections:?}");
    assert!(
        connections.iter().all(|&n| n >= 1),
        "round robin placed them: {connections:?}"
    );
    proxy.stop().await;
}

/// The control: round robin alone sends the requests after the handshake to servers that do
/// not know the `sid` ("Session ID unknown").
#[tokio::test]
async fn round_robin_alone_sends_socketio_polls_to_servers_that_never_issued_the_sid() {
    let Some((servers, proxy)) = socketio_farm("").await else {
        return;
    };
    let url = format!("http://{}", proxy.addr);
    let outcome = run_client(&url, Mode::Polling).await;
    assert!(
        outcome.is_err(),
        "a session without stickiness fails: {outcome:?}"
    );
    let mut unknown = 0;
    for server in &servers {
        unknown += server.counts().await.unknown_sid;
    }
    assert!(unknown >= 1, "a server was asked for a sid it never issued");
    proxy.stop().await;
}
