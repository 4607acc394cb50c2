//! Building server configs from certificates made at test time (rcgen, in a temp folder), and
//! real rustls handshakes between them and a client, in memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{ServerConnection, SignatureScheme};

use super::*;
use crate::config::source::SourceFile;
use crate::config::{CertificatePair, ServerTls, Span, VerifyClient};

/// A CA in a temp folder that issues certificates for `localhost` into files there.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let ca_pem = params.self_signed(&key).expect("CA").pem();
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: Issuer::new(params, key),
            ca_pem,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A `localhost` leaf with a key of `alg`, issued by the CA; files `NAME.pem`, `NAME.key`.
    fn leaf(&self, name: &str, alg: &'static rcgen::SignatureAlgorithm) -> CertificatePair {
        let key = match alg == &rcgen::PKCS_RSA_SHA256 {
            true => KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048),
            false => KeyPair::generate_for(alg),
        };
        let key = key.expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        self.pair(name, cert.pem(), key.serialize_pem())
    }

    fn pair(&self, name: &str, cert: String, key: String) -> CertificatePair {
        CertificatePair {
            certificate: self.write(&format!("{name}.pem"), cert),
            key: self.write(&format!("{name}.key"), key),
            span: span(),
        }
    }

    fn client_roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("root");
        roots
    }
}

use rustls_pki_types::pem::PemObject;

fn span() -> Span {
    SourceFile::new("t.conf", "server {}".to_string()).span_at(0)
}

fn settings(certificates: Vec<CertificatePair>) -> ServerTls {
    ServerTls {
        certificates,
        protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        ciphers: None,
        ecdh_curve: None,
        prefer_server_ciphers: false,
        session_cache: None,
        session_timeout: Duration::from_secs(300),
        session_tickets: true,
        stapling_file: None,
        verify_client: VerifyClient::Off,
        client_certificate: None,
        trusted_certificate: None,
        verify_depth: 1,
        session_scope: "localhost @ 0.0.0.0:443".into(),
        span: span(),
    }
}

fn build(tls: &ServerTls) -> Arc<ServerConfig> {
    match server_config(tls, true, &SessionStore::new()) {
        Ok(config) => config,
        Err(errors) => panic!("{errors:?}"),
    }
}

fn build_errors(tls: &ServerTls) -> Vec<String> {
    match server_config(tls, true, &SessionStore::new()) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// A client verifier that offers only `schemes` (all webpki's if empty) and remembers the
/// certificate and OCSP response the server sent.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    schemes: Vec<SignatureScheme>,
    seen: Mutex<Option<(CertificateDer<'static>, Vec<u8>)>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = (end_entity.clone().into_owned(), ocsp.to_vec());
        *self.seen.lock().expect("lock") = Some(seen);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let all = self.inner.supported_verify_schemes();
        match self.schemes.is_empty() {
            true => all,
            false => all
                .into_iter()
                .filter(|s| self.schemes.contains(s))
                .collect(),
        }
    }
}

fn recording(pki: &Pki, schemes: &[SignatureScheme]) -> Arc<Recording> {
    let roots = Arc::new(pki.client_roots());
    let inner = rustls::client::WebPkiServerVerifier::builder(roots)
        .build()
        .expect("verifier");
    Arc::new(Recording {
        inner,
        schemes: schemes.to_vec(),
        seen: Mutex::new(None),
    })
}

fn client(verifier: Arc<Recording>, tls12_only: bool) -> ClientConfig {
    let versions: &[&rustls::SupportedProtocolVersion] = match tls12_only {
        true => &[&rustls::version::TLS12],
        false => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    ClientConfig::builder_with_protocol_versions(versions)
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// Runs a handshake between `client` and `server` in memory, moving bytes until neither side
/// has anything left to say (so TLS 1.3 tickets sent after the handshake arrive too).
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<ServerConnection, rustls::Error> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client, name)?;
    let mut server = ServerConnection::new(server)?;
    // Bounded: a handshake takes a handful of flights.
    for _ in 0..20 {
        let mut moved = 0;
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).expect("client write");
        }
        moved += bytes.len();
        if !bytes.is_empty() {
            server.read_tls(&mut &bytes[..]).expect("server read");
            server.process_new_packets()?;
        }
        let mut bytes = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut bytes).expect("server write");
        }
        moved += bytes.len();
        if !bytes.is_empty() {
            client.read_tls(&mut &bytes[..]).expect("client read");
            client.process_new_packets()?;
        }
        if moved == 0 && !client.is_handshaking() && !server.is_handshaking() {
            return Ok(server);
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn each_key_type_loads_and_serves() {
    let pki = Pki::new();
    let algs = [
        ("rsa", &rcgen::PKCS_RSA_SHA256),
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ("ed25519", &rcgen::PKCS_ED25519),
    ];
    for (name, alg) in algs {
        let server = build(&settings(vec![pki.leaf(name, alg)]));
        let conn = handshake(server, Arc::new(client(recording(&pki, &[]), false)));
        let session = TlsSession::of(&conn.expect(name));
        assert_eq!(session.protocol, "TLSv1.3", "{name}");
        assert_eq!(session.server_name.as_deref(), Some("localhost"));
        assert!(!session.session_reused);
        assert_eq!(session.client_verify, "NONE");
    }
}

#[test]
fn a_full_chain_loads() {
    let pki = Pki::new();
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "intermediate");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let intermediate_pem = params.signed_by(&key, &pki.ca).expect("intermediate").pem();
    let intermediate = Issuer::new(params, key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let leaf = params.signed_by(&key, &intermediate).expect("leaf");
    let chain = leaf.pem() + &intermediate_pem;
    let pair = pki.pair("chain", chain, key.serialize_pem());
    let server = build(&settings(vec![pair]));
    // The client trusts only the root: the intermediate must come from the file.
    let conn = handshake(server, Arc::new(client(recording(&pki, &[]), false)));
    assert!(conn.is_ok(), "{:?}", conn.err());
}

#[test]
fn bad_files_are_named() {
    let pki = Pki::new();
    let rsa = pki.leaf("rsa", &rcgen::PKCS_RSA_SHA256);
    let ec = pki.leaf("ec", &rcgen::PKCS_ECDSA_P256_SHA256);
    let shown = |path: &Path| path.display().to_string();
    let mismatched = CertificatePair {
        key: ec.key.clone(),
        ..rsa.clone()
    };
    assert_eq!(
        build_errors(&settings(vec![mismatched])),
        [format!(
            "certificate key \"{}\" does not match certificate \"{}\" in t.conf:1:1",
            shown(&ec.key),
            shown(&rsa.certificate)
        )]
    );
    let garbage = pki.write("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");
    let empty_key = pki.write("empty.key", "");
    let missing = pki.path("missing.pem");
    let pairs = vec![
        CertificatePair {
            certificate: garbage.clone(),
            ..ec.clone()
        },
        CertificatePair {
            key: empty_key.clone(),
            ..ec.clone()
        },
        CertificatePair {
            certificate: missing.clone(),
            ..ec.clone()
        },
    ];
    let errors = build_errors(&settings(pairs));
    assert_eq!(errors.len(), 3, "{errors:?}");
    let starts = [
        format!(
            "cannot load certificate \"{}\": not a PEM certificate",
            shown(&garbage)
        ),
        format!(
            "cannot load certificate key \"{}\": no private key in it",
            shown(&empty_key)
        ),
        format!(
            "cannot load certificate \"{}\": No such file or directory",
            shown(&missing)
        ),
    ];
    for (error, start) in errors.iter().zip(starts) {
        assert!(error.starts_with(&start), "{error}\n  wanted {start}");
    }
}

#[test]
fn the_client_gets_the_best_certificate_it_can_verify() {
    let pki = Pki::new();
    // RSA written first: ECDSA is still preferred by a client that can take it.
    let rsa = pki.leaf("rsa", &rcgen::PKCS_RSA_SHA256);
    let ec = pki.leaf("ec", &rcgen::PKCS_ECDSA_P256_SHA256);
    let server = build(&settings(vec![rsa.clone(), ec.clone()]));
    let leaf_of = |pair: &CertificatePair| {
        let pem = std::fs::read(&pair.certificate).expect("read");
        CertificateDer::from_pem_slice(&pem).expect("PEM")
    };
    let cases = [
        (vec![], &ec),
        (
            vec![
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PKCS1_SHA256,
            ],
            &rsa,
        ),
    ];
    for (schemes, want) in cases {
        for tls12_only in [false, true] {
            let verifier = recording(&pki, &schemes);
            let config = Arc::new(client(verifier.clone(), tls12_only));
            handshake(server.clone(), config).expect("handshake");
            let seen = verifier.seen.lock().expect("lock").clone();
            assert_eq!(seen.map(|s| s.0), Some(leaf_of(want)), "{schemes:?}");
        }
    }
}

/// Whether `client`'s second handshake, with a config built anew from `second` (as a reload
/// builds one), resumes the session of its first, made with a config from `first`.
fn resumes(
    tls: &ServerTls,
    client: &Arc<ClientConfig>,
    first: &SessionStore,
    second: &SessionStore,
) -> bool {
    let build = |store| server_config(tls, true, store).expect("config");
    // The first config lives on while the second is built, as the old snapshot does across
    // a reload.
    let before = build(first);
    handshake(before.clone(), client.clone()).expect("first handshake");
    let conn = handshake(build(second), client.clone()).expect("second handshake");
    drop(before);
    TlsSession::of(&conn).session_reused
}

#[test]
fn resumption_by_ticket_carries_over_rebuilds_from_one_store() {
    let pki = Pki::new();
    let tls = settings(vec![pki.leaf("ec", &rcgen::PKCS_ECDSA_P256_SHA256)]);
    for tls12 in [false, true] {
        let client = Arc::new(client(recording(&pki, &[]), tls12));
        let store = SessionStore::new();
        assert!(resumes(&tls, &client, &store, &store), "tls12: {tls12}");
        // A store of its own (what a restart is) knows no ticket: the test can fail.
        let client = Arc::new(crate::tls::tests::client(recording(&pki, &[]), tls12));
        let other = SessionStore::new();
        assert!(!resumes(&tls, &client, &store, &other), "tls12: {tls12}");
    }
}

#[test]
fn resumption_by_session_id_carries_over_rebuilds_from_one_store() {
    let pki = Pki::new();
    let mut tls = settings(vec![pki.leaf("ec", &rcgen::PKCS_ECDSA_P256_SHA256)]);
    tls.session_tickets = false;
    tls.session_cache = Some(100);
    for tls12 in [true, false] {
        let client = Arc::new(client(recording(&pki, &[]), tls12));
        let store = SessionStore::new();
        assert!(resumes(&tls, &client, &store, &store), "tls12: {tls12}");
        let client = Arc::new(crate::tls::tests::client(recording(&pki, &[]), tls12));
        assert!(!resumes(&tls, &client, &store, &SessionStore::new()));
    }
}

#[test]
fn ciphers_stapling_and_files() {
    let pki = Pki::new();
    let mut tls = settings(vec![pki.leaf("rsa", &rcgen::PKCS_RSA_SHA256)]);
    tls.ciphers = Some(("ECDHE-RSA-AES128-GCM-SHA256:!aNULL".into(), span()));
    tls.stapling_file = Some(pki.write("ocsp.der", b"\x30\x03\x0a\x01\x00"));
    let verifier = recording(&pki, &[]);
    let conn = handshake(build(&tls), Arc::new(client(verifier.clone(), true)));
    let session = TlsSession::of(&conn.expect("handshake"));
    assert_eq!(session.protocol, "TLSv1.2");
    assert_eq!(session.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
    let seen = verifier.seen.lock().expect("lock").clone();
    assert_eq!(seen.map(|s| s.1), Some(b"\x30\x03\x0a\x01\x00".to_vec()));
    assert_eq!(tls.files().len(), 3);
    // Only TLS 1.2 allowed and only TLS 1.3 suites named: nothing left.
    tls.protocols = vec![TlsVersion::Tls12];
    tls.ciphers = Some(("TLS_AES_128_GCM_SHA256".into(), span()));
    assert_eq!(
        build_errors(&tls),
        [
            r#"no cipher suite tether has is left by "ssl_ciphers" "TLS_AES_128_GCM_SHA256" in t.conf:1:1"#
        ]
    );
}

#[test]
fn client_certificates_are_verified() {
    let pki = Pki::new();
    let mut tls = settings(vec![pki.leaf("server", &rcgen::PKCS_ECDSA_P256_SHA256)]);
    tls.client_certificate = Some(pki.write("ca.pem", &pki.ca_pem));
    tls.verify_client = VerifyClient::On;
    let alice = pki.leaf("alice", &rcgen::PKCS_ECDSA_P256_SHA256);
    let chain = vec![CertificateDer::from_pem_file(&alice.certificate).expect("cert")];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&alice.key).expect("key");
    let with_cert = ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(recording(&pki, &[]))
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    let conn = handshake(build(&tls), Arc::new(with_cert.clone())).expect("handshake");
    let session = TlsSession::of(&conn);
    assert_eq!(session.client_verify, "SUCCESS");
    assert_eq!(session.client_subject.as_deref(), Some("CN=alice"));
    let without = Arc::new(client(recording(&pki, &[]), false));
    assert!(
        handshake(build(&tls), without.clone()).is_err(),
        "on: a certificate is required"
    );
    tls.verify_client = VerifyClient::Optional;
    let conn = handshake(build(&tls), without).expect("optional");
    assert_eq!(TlsSession::of(&conn).client_verify, "NONE");
}

#[test]
fn subjects_print_as_rfc_2253() {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example, Inc.");
    params.distinguished_name.push(DnType::CommonName, "alice");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("parse");
    let ours = session::rfc2253(parsed.subject());
    assert!(ours.contains(r"O=Example\, Inc."), "{ours}");
    // The order is the certificate's, reversed: `openssl x509` says the same (skipped without
    // `openssl`).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.pem");
    std::fs::write(&path, cert.pem()).expect("write");
    let Ok(out) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(&path)
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim().strip_prefix("subject="), Some(ours.as_str()));
}

/// The lines logged on this thread while `run` runs.
fn logged_while(run: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let lines = sink.0.lock().expect("log lock").clone();
    String::from_utf8_lossy(&lines).into_owned()
}

#[test]
fn an_expired_certificate_is_served_with_a_warning_naming_its_file() {
    let pki = Pki::new();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &pki.ca).expect("leaf");
    let pair = pki.pair("expired", cert.pem(), key.serialize_pem());
    let shown = pair.certificate.display().to_string();
    let tls = settings(vec![pair]);
    let logged = logged_while(|| {
        build(&tls);
    });
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains(&shown), "{logged}");
    assert!(logged.contains("is not valid now"), "{logged}");
    // A valid one says nothing.
    let fresh = settings(vec![pki.leaf("fresh", &rcgen::PKCS_ECDSA_P256_SHA256)]);
    assert_eq!(logged_while(|| drop(build(&fresh))), "");
}

#[test]
fn ssl_ecdh_curve_chooses_the_key_exchange() {
    let pki = Pki::new();
    let mut tls = settings(vec![pki.leaf("ec", &rcgen::PKCS_ECDSA_P256_SHA256)]);
    let group = |tls: &ServerTls| {
        let verifier = recording(&pki, &[]);
        let conn = handshake(build(tls), Arc::new(client(verifier, true))).expect("handshake");
        conn.negotiated_key_exchange_group().map(|g| g.name())
    };
    let default = group(&tls);
    tls.ecdh_curve = Some(("prime256v1:X448".into(), span()));
    assert_eq!(group(&tls), Some(rustls::NamedGroup::secp256r1));
    assert_ne!(
        default,
        Some(rustls::NamedGroup::secp256r1),
        "the default is another"
    );
    tls.ecdh_curve = Some(("X448:ffdhe2048".into(), span()));
    assert_eq!(
        build_errors(&tls),
        [
            "no key exchange group tether has in \"ssl_ecdh_curve X448:ffdhe2048\" in t.conf:1:1 \
          (tether has X25519, prime256v1, secp384r1, X25519MLKEM768, SecP256r1MLKEM768, \
          MLKEM768 and MLKEM1024)"
        ]
    );
}
