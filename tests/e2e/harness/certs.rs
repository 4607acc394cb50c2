//! A certificate authority made at test time, and the TLS client side of the tests: leaf
//! certificates of every key type tether takes, written as PEM files a config can name, and
//! rustls client configs that trust the authority.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The key types a leaf can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
}

impl KeyKind {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// A test certificate authority whose files live in a temporary folder.
pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    der: CertificateDer<'static>,
    pem: String,
    dir: tempfile::TempDir,
    issued: AtomicUsize,
}

/// A leaf certificate: its files, and its parts for clients and checks.
pub struct Leaf {
    /// PEM: the leaf certificate (followed by the authority's with `chain`).
    pub cert: PathBuf,
    /// PEM: its PKCS#8 private key.
    pub key: PathBuf,
    /// The leaf certificate.
    pub der: CertificateDer<'static>,
    /// The private key.
    pub key_der: PrivatePkcs8KeyDer<'static>,
    /// The SubjectPublicKeyInfo (what a browser's `--ignore-certificate-errors-spki-list`
    /// hashes).
    pub spki: Vec<u8>,
}

impl TestCa {
    /// A new authority ("tether test CA", ECDSA P-256).
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tether test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("certificate folder");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write the CA");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
            params,
            dir,
            issued: AtomicUsize::new(0),
        }
    }

    /// The authority's certificate as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` (DNS names or IP literals) with a `kind` key, signed by
    /// this authority, written to two new files.
    pub fn leaf(&self, names: &[&str], kind: KeyKind) -> Leaf {
        self.issue(
            names,
            kind,
            names.first().copied().unwrap_or("client"),
            false,
        )
    }

    /// As [`leaf`](Self::leaf), the certificate file followed by the authority's (a chain).
    pub fn chained_leaf(&self, names: &[&str], kind: KeyKind) -> Leaf {
        self.issue(
            names,
            kind,
            names.first().copied().unwrap_or("client"),
            true,
        )
    }

    /// A client certificate with subject `CN=common_name,O=tether tests`.
    pub fn client(&self, common_name: &str) -> Leaf {
        self.issue(&[], KeyKind::EcdsaP256, common_name, false)
    }

    fn issue(&self, names: &[&str], kind: KeyKind, common_name: &str, chain: bool) -> Leaf {
        let key = KeyPair::generate_for(kind.algorithm()).expect("leaf key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tether tests");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("leaf{n}.pem"));
        let key_path = self.dir.path().join(format!("leaf{n}.key"));
        let mut pem = cert.pem();
        if chain {
            pem.push_str(&self.pem);
        }
        std::fs::write(&cert_path, pem).expect("write a leaf");
        std::fs::write(&key_path, key.serialize_pem()).expect("write a key");
        Leaf {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }

    /// A client config trusting this authority, offering `alpn` (e.g. `[b"h2"]`).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client config trusting this authority that presents `client` as its certificate.
    pub fn client_config_with_cert(&self, client: &Leaf) -> Arc<rustls::ClientConfig> {
        let key = PrivateKeyDer::Pkcs8(client.key_der.clone_key());
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(vec![client.der.clone()], key)
            .expect("client certificate");
        Arc::new(config)
    }

    /// The authority as a root store.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("the CA as a root");
        roots
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

/// Connects to `addr` and completes a TLS handshake naming `server_name` (None: no SNI, as a
/// client connecting by IP address does).
pub async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = match server_name {
        Some(name) => ServerName::try_from(name.to_string())
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?,
        // rustls sends no SNI for an IP address.
        None => ServerName::IpAddress(addr.ip().into()),
    };
    TlsConnector::from(config).connect(name, tcp).await
}

/// An HTTP/1.1 client connection over TLS to `addr`, naming `server_name` by SNI.
pub async fn https1(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let tls = connect(addr, config, server_name)
        .await
        .expect("TLS handshake");
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 over TLS");
    tokio::spawn(connection.with_upgrades());
    sender
}

/// An HTTP/2 client connection over TLS (the config must offer `h2` by ALPN).
pub async fn https2(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<&str>,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let tls = connect(addr, config, server_name)
        .await
        .expect("TLS handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 chosen by ALPN"
    );
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("HTTP/2 over TLS");
    tokio::spawn(connection);
    sender
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_of_every_kind_are_written() {
        let ca = TestCa::new();
        for kind in [
            KeyKind::EcdsaP256,
            KeyKind::EcdsaP384,
            KeyKind::Ed25519,
            KeyKind::Rsa2048,
        ] {
            let leaf = ca.chained_leaf(&["example.test"], kind);
            let pem = std::fs::read_to_string(&leaf.cert).unwrap();
            assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{kind:?}");
            assert!(
                std::fs::read_to_string(&leaf.key)
                    .unwrap()
                    .contains("PRIVATE KEY")
            );
        }
    }
}
