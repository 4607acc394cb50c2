//! tether's integration tests: real backends and real clients on 127.0.0.1 ephemeral ports,
//! tether started in-process from a config string. One module per capability.

mod harness;

mod big_bodies;
mod failures;
mod http1;
mod http2;
mod long_poll;
mod routing;
mod sse;
mod websocket;
