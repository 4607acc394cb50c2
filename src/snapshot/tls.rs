//! TLS on a snapshot's listen addresses: which addresses speak TLS, and for a handshake, the
//! virtual server its SNI names and that server's rustls config.
//!
//! Configs are built (certificate files read) with the snapshot, so a reload — also one a
//! certificate swap set off — gives new handshakes the new certificates while established
//! connections keep theirs. rustls is no network code: this stays within the layering rule.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::{self, ConfigError, ErrorKind};

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
) -> Result<Termination, Vec<ConfigError>> {
    let alpn_h2 = server.http2 || server.listens.iter().any(|l| l.ssl && l.http2);
    let config = server_config(tls, alpn_h2)?;
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

/// Placeholder until `tls::server_config` lands: the first certificate pair, no options.
fn server_config(
    tls: &config::ServerTls,
    alpn_h2: bool,
) -> Result<Arc<rustls::ServerConfig>, Vec<ConfigError>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = || vec![ConfigError::at(&tls.span, ErrorKind::NoCertificate)];
    let pair = tls.certificates.first().ok_or_else(fail)?;
    let chain = CertificateDer::pem_file_iter(&pair.certificate)
        .map_err(|_| fail())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| fail())?;
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|_| fail())?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|_| fail())?;
    config.alpn_protocols = if alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}
