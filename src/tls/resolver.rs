//! Which certificate a handshake gets when a server has several (`ssl_certificate` written
//! more than once, typically ECDSA and RSA): the first the client can verify, ECDSA and
//! Ed25519 before RSA (smaller, faster to sign), otherwise in the order written.
//!
//! One resolver serves one virtual server: choosing the server by SNI is the acceptor's job
//! (`server::tls`), before this config is used. Must not import the other `tls` files.

use std::sync::Arc;

use rustls::SignatureAlgorithm;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A server's certificates, best first.
#[derive(Debug)]
pub(super) struct BestCertificate {
    keys: Vec<Arc<CertifiedKey>>,
}

impl BestCertificate {
    /// Orders `keys` (in the order written) by preference: RSA last, the rest kept in order.
    pub(super) fn new(keys: Vec<Arc<CertifiedKey>>) -> BestCertificate {
        let mut keys = keys;
        // A stable sort: pairs of one kind keep the order they were written in.
        keys.sort_by_key(|key| key.key.algorithm() == SignatureAlgorithm::RSA);
        BestCertificate { keys }
    }
}

impl ResolvesServerCert for BestCertificate {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered = client_hello.signature_schemes();
        // No certificate the client can verify: the handshake fails, as with OpenSSL.
        let usable = self
            .keys
            .iter()
            .find(|key| key.key.choose_scheme(offered).is_some());
        usable.cloned()
    }
}
