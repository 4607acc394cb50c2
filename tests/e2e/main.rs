//! tether's integration tests: real backends and real clients on 127.0.0.1 ephemeral ports,
//! tether started in-process from a config string. One module per capability.

mod harness;

mod access;
mod access_log;
mod addresses;
mod balancing;
mod big_bodies;
mod browser;
mod certificate_rotation;
mod client_failures;
mod demo_page;
mod error_log;
mod failover;
mod gzip;
mod hashing;
mod health;
mod hostile;
mod http1;
mod http2;
mod lifecycle;
mod limits;
mod listeners;
mod long_poll;
mod passive_health;
mod paths;
mod rate_limits;
mod real_ip;
mod real_ip_nginx;
mod reload;
mod reload_soak;
mod resolve;
mod response_headers;
mod rewrite;
mod rewrite_nginx;
mod routing;
mod shipped_map;
mod signalr;
mod sse;
mod status;
mod sticky;
mod tls;
mod upstream_failures;
mod upstream_tls;
mod websocket;
mod websocket_h2;
