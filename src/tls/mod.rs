//! TLS configuration built from the config's TLS settings when a snapshot is built: rustls
//! configs, certificate files read and checked. Imports `config` and rustls, never hyper or
//! sockets (`proxy` and `server` do the handshakes).

pub mod upstream;
