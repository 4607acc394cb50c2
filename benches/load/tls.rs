//! TLS for the load bench: the certificates every proxy presents (made at bench time, the same
//! files for all three), and the bench's own TLS client for the handshake rows and `wss://`.
//!
//! The handshake client is built to cost less than the server it measures: it does not check
//! the server's certificate or its signature (a verifier that accepts everything — loopback,
//! our own certificate), so per full handshake the client pays a key exchange and the record
//! work while the proxy pays the same plus the signature. The proxy's core then saturates
//! first and handshakes/s compares proxies, not clients.
//!
//! Knows nothing of proxies or scenarios.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The name in the certificates and the SNI the bench's client sends.
pub const SERVER_NAME: &str = "bench.test";

/// The key type of the certificate a run presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

impl KeyKind {
    /// The stem of its files in the certificate folder.
    pub fn stem(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::Rsa2048 => "rsa-2048",
        }
    }

    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa2048 => "RSA 2048",
        }
    }
}

/// Where one key type's files are: certificate, key, and both in one PEM (HAProxy's `crt`).
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key.
    pub key: PathBuf,
    /// The certificate followed by the key.
    pub combined: PathBuf,
}

/// The files of `kind` in `dir` (written by [`write_certificates`]).
pub fn files(dir: &Path, kind: KeyKind) -> CertFiles {
    let stem = kind.stem();
    CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
        combined: dir.join(format!("{stem}.pem")),
    }
}

/// Makes a self-signed certificate of each key type for [`SERVER_NAME`] and writes its files
/// into `dir`.
pub fn write_certificates(dir: &Path) -> Result<(), String> {
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let algorithm = match kind {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        let key = rcgen::KeyPair::generate_for(algorithm)
            .map_err(|e| format!("a {} key: {e}", kind.label()))?;
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(|e| format!("certificate params: {e}"))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("a {} certificate: {e}", kind.label()))?;
        let paths = files(dir, kind);
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
        };
        write(&paths.cert, &cert.pem())?;
        write(&paths.key, &key.serialize_pem())?;
        write(
            &paths.combined,
            &format!("{}{}", cert.pem(), key.serialize_pem()),
        )?;
    }
    Ok(())
}

/// Accepts any certificate and any signature: the bench talks to its own proxies on loopback,
/// and checking would make the client as slow as the server it measures.
#[derive(Debug)]
struct AcceptAnything(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// A client config for the bench: HTTP/1.1 by ALPN, no certificate checks, and session
/// resumption (tickets, session IDs) on or off.
pub fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

/// A TLS connection to `addr` sending [`SERVER_NAME`] as SNI.
pub async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// What a handshake run counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Handshakes {
    /// Connections that completed a handshake and a GET.
    pub done: u64,
    /// Of those, handshakes that resumed a session.
    pub resumed: u64,
    /// Connections that failed.
    pub failed: u64,
}

/// `conns` clients, each opening a connection, completing a handshake, sending one
/// `GET /` with `Connection: close`, reading the answer and closing, again and again for
/// `length`. Each client has its own session cache, as each browser has: a cache shared by
/// all would be drained whenever more clients start at once than it keeps tickets for (a
/// TLS 1.3 ticket is used once, and rustls keeps 8 per server).
pub async fn handshakes(
    addr: SocketAddr,
    resume: bool,
    conns: usize,
    length: Duration,
) -> Handshakes {
    let started = Instant::now();
    let clients = (0..conns).map(|_| {
        let config = client_config(resume);
        async move {
            let mut counts = Handshakes::default();
            while started.elapsed() < length {
                let limit = Duration::from_secs(2);
                match tokio::time::timeout(limit, one_request(addr, &config)).await {
                    Ok(Ok(resumed)) => {
                        counts.done += 1;
                        counts.resumed += u64::from(resumed);
                    }
                    _ => counts.failed += 1,
                }
            }
            counts
        }
    });
    futures_util::future::join_all(clients)
        .await
        .into_iter()
        .fold(Handshakes::default(), |sum, one| Handshakes {
            done: sum.done + one.done,
            resumed: sum.resumed + one.resumed,
            failed: sum.failed + one.failed,
        })
}

/// One connection, one GET; whether its handshake resumed a session.
async fn one_request(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<bool, String> {
    let mut tls = connect(addr, config).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("send: {e}"))?;
    tls.flush().await.map_err(|e| format!("send: {e}"))?;
    // The backend answers `200` with the body "ok": read until the head and that body are in.
    let mut response = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        let n = tls
            .read(&mut buffer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response".into());
        }
        response.extend_from_slice(&buffer[..n]);
        if response.ends_with(b"\r\n\r\nok") {
            break;
        }
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err("not a 200".into());
    }
    Ok(resumed)
}
