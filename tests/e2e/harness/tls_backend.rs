//! The TLS side of a test backend: what each handshake it accepted showed (the SNI name, the
//! client's certificate, whether the session was resumed), and the server configs it runs with
//! — a leaf of the test authority, optionally requiring client certificates from it.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, ServerConfig, ServerConnection};

use super::certs::{Leaf, TestCa};

/// One TLS handshake a backend completed.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The SNI name the client sent, if any.
    pub sni: Option<String>,
    /// The client's certificate, if it presented one.
    pub client_certificate: Option<CertificateDer<'static>>,
    /// A resumed session (no full handshake).
    pub resumed: bool,
}

impl Handshake {
    /// What the connection's handshake showed.
    pub fn of(connection: &ServerConnection) -> Handshake {
        Handshake {
            sni: connection.server_name().map(str::to_string),
            client_certificate: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.clone().into_owned()),
            resumed: connection.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

/// A server config presenting `leaf`; with `clients_from`, every client must present a
/// certificate that authority issued. Sessions can be resumed (rustls's in-memory cache).
pub fn server_config(leaf: &Leaf, clients_from: Option<&TestCa>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder();
    let builder = match clients_from {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(ca.roots()))
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(leaf.key_der.clone_key());
    let config = builder
        .with_single_cert(vec![leaf.der.clone()], key)
        .expect("the leaf and its key");
    Arc::new(config)
}
