//! TLS on a snapshot's listen addresses: which addresses speak TLS, and for a handshake, the
//! virtual server its SNI names and that server's rustls config.
//!
//! Configs are built (certificate files read) with the snapshot, so a reload — also one a
//! certificate swap set off — gives new handshakes the new certificates while established
//! connections keep theirs. rustls is no network code: this stays within the layering rule.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::tls::SessionStore;

/// A virtual server's TLS termination.
pub struct Termination {
    /// What handshakes that name this server are answered with.
    pub config: Arc<rustls::ServerConfig>,
    /// Which certificates the server presents and how it checks clients, as configured (the
    /// files, not their contents: a rotated certificate is the same identity). HTTP/2
    /// requests on a connection whose handshake chose another identity are misdirected (421):
    /// the client coalesced connections for names this certificate does not serve.
    pub identity: u64,
    /// `ssl_verify_client` is on or optional: a request for this server on a connection whose
    /// handshake chose another server did not go through this server's client check (421).
    pub verifies_clients: bool,
}

/// Builds the termination of a server that has TLS settings.
pub(super) fn termination(
    server: &config::Server,
    tls: &config::ServerTls,
    sessions: &SessionStore,
) -> Result<Termination, Vec<ConfigError>> {
    let alpn_h2 = server.http2 || server.listens.iter().any(|l| l.ssl && l.http2);
    let config = crate::tls::server_config(tls, alpn_h2, sessions)?;
    let mut hasher = DefaultHasher::new();
    for pair in &tls.certificates {
        pair.certificate.hash(&mut hasher);
        pair.key.hash(&mut hasher);
    }
    // Servers with the same certificates but different client checks are not one identity:
    // a request must not skip the check of its server by naming another one in its SNI.
    (tls.verify_client as u8).hash(&mut hasher);
    tls.client_certificate.hash(&mut hasher);
    Ok(Termination {
        config,
        identity: hasher.finish(),
        verifies_clients: tls.verify_client != config::VerifyClient::Off,
    })
}
