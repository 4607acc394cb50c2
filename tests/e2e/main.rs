//! tether's integration tests: real backends and real clients on 127.0.0.1 ephemeral ports,
//! tether started in-process from a config string. One module per capability.

mod harness;

mod access;
mod access_log;
mod balancing;
mod big_bodies;
mod browser;
mod certificate_rotation;
mod client_failures;
mod demo_page;
mod error_log;
mod error_pages;
mod error_pages_nginx;
mod failover;
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
mod real_ip;
mod real_ip_nginx;
mod reload;
mod reload_soak;
mod routing;
mod signalr;
mod sse;
mod status;
mod sticky;
mod tls;
mod upstream_failures;
mod upstream_tls;
mod websocket;
mod websocket_h2;
