//! rustls with aws-lc-rs against rustls with ring, as a TLS server: CPU per full TLS 1.3
//! handshake (ECDSA P-256 and RSA 2048 certificates), per resumed one, and the heap an idle
//! server connection keeps after its handshake and a little traffic.
//!
//! Handshakes run in memory (no sockets): a client and a server connection pass records
//! through buffers, and only the server's calls are timed, so the number is the server's
//! share alone. The client is the same (aws-lc-rs, no certificate checks) for every server.
//! aws-lc-rs's default provider prefers the post-quantum hybrid X25519MLKEM768 key exchange,
//! which ring does not have; its row with X25519 alone is the like-for-like comparison.
//!
//! Environment: `HANDSHAKES` (per measurement, default 2,000), `ROUNDS` (default 5; the
//! median is printed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls::{DigitallySignedStruct, HandshakeKind, SignatureScheme};

/// Counts live heap bytes, for the idle connection's footprint.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let handshakes = number("HANDSHAKES", 2000);
    let rounds = number("ROUNDS", 5);
    let keys = [
        ("ECDSA P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("RSA 2048", &rcgen::PKCS_RSA_SHA256),
    ];
    println!(
        "| server provider | certificate | full handshake, server CPU | full handshakes/s per core | resumed handshake, server CPU |"
    );
    println!("|---|---|---:|---:|---:|");
    for (label, algorithm) in keys {
        let (chain, key) = certificate(algorithm);
        for (name, provider) in providers() {
            let server = server_config(provider, chain.clone(), key.clone_key());
            let full = median(
                (0..rounds)
                    .map(|_| per_handshake(&server, false, handshakes))
                    .collect(),
            );
            let resumed = median(
                (0..rounds)
                    .map(|_| per_handshake(&server, true, handshakes))
                    .collect(),
            );
            println!(
                "| {name} | {label} | {:.1} µs | {:.0}/s | {:.1} µs |",
                micros(full),
                1.0 / full.as_secs_f64(),
                micros(resumed)
            );
        }
    }
    println!();
    let (chain, key) = certificate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let server = server_config(
        rustls::crypto::aws_lc_rs::default_provider(),
        chain,
        key.clone_key(),
    );
    println!(
        "ServerConnection: {} bytes inline; idle after its handshake and one 1 KiB exchange: \
         {} bytes of heap",
        std::mem::size_of::<ServerConnection>(),
        idle_heap(&server)
    );
}

/// The server providers compared.
// rustls deprecates ring's provider for lacking post-quantum key exchange: that is the point
// of comparing it.
#[allow(deprecated)]
fn providers() -> Vec<(&'static str, CryptoProvider)> {
    let mut x25519_only = rustls::crypto::aws_lc_rs::default_provider();
    x25519_only
        .kx_groups
        .retain(|group| group.name() == rustls::NamedGroup::X25519);
    vec![
        (
            "aws-lc-rs (default: X25519MLKEM768)",
            rustls::crypto::aws_lc_rs::default_provider(),
        ),
        ("aws-lc-rs, X25519", x25519_only),
        ("ring (X25519)", rustls::crypto::ring::default_provider()),
    ]
}

/// A self-signed certificate and its key.
fn certificate(
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(algorithm).expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["bench.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    let der = PrivateKeyDer::try_from(key.serialize_der()).expect("a PKCS#8 key");
    (vec![cert.der().clone()], der)
}

fn server_config(
    provider: CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The same client for every server: aws-lc-rs, every key exchange it has, no checks.
fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// Server CPU per handshake over `count` handshakes (each resuming the previous one's
/// session with `resume`).
fn per_handshake(server: &Arc<ServerConfig>, resume: bool, count: usize) -> Duration {
    let client = client_config(resume);
    if resume {
        // A session to resume from the first handshake on.
        handshake(server, &client);
    }
    let mut total = Duration::ZERO;
    for _ in 0..count {
        let (_, _, spent, kind) = handshake(server, &client);
        assert_eq!(
            kind == HandshakeKind::Resumed,
            resume,
            "resumed when asked to"
        );
        total += spent;
    }
    total / count as u32
}

/// One handshake in memory, the server's tickets delivered; the server's time spent.
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> (ServerConnection, ClientConnection, Duration, HandshakeKind) {
    let name = ServerName::try_from("bench.test").expect("a name");
    let mut client = ClientConnection::new(client.clone(), name).expect("a client");
    let started = Instant::now();
    let mut server = ServerConnection::new(server.clone()).expect("a server");
    let mut spent = started.elapsed();
    let mut buffer = Vec::with_capacity(32 * 1024);
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        buffer.clear();
        while client.wants_write() {
            client.write_tls(&mut buffer).expect("client write");
        }
        let started = Instant::now();
        let mut input = &buffer[..];
        while !input.is_empty() {
            server.read_tls(&mut input).expect("server read");
        }
        server.process_new_packets().expect("server process");
        let mut output = Vec::with_capacity(16 * 1024);
        while server.wants_write() {
            server.write_tls(&mut output).expect("server write");
        }
        spent += started.elapsed();
        let mut input = &output[..];
        while !input.is_empty() {
            client.read_tls(&mut input).expect("client read");
        }
        client.process_new_packets().expect("client process");
    }
    let kind = server.handshake_kind().expect("a finished handshake");
    (server, client, spent, kind)
}

/// Heap held by a server connection that finished its handshake, carried 1 KiB each way and
/// went quiet (the client and everything else dropped).
fn idle_heap(server: &Arc<ServerConfig>) -> isize {
    let client_config = client_config(false);
    let before = LIVE.load(Ordering::Relaxed);
    let (mut server, mut client, _, _) = handshake(server, &client_config);
    let message = [b'x'; 1024];
    std::io::Write::write_all(&mut client.writer(), &message).expect("client data");
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("client write");
    }
    let mut input = &wire[..];
    while !input.is_empty() {
        server.read_tls(&mut input).expect("server read");
    }
    server.process_new_packets().expect("server process");
    let mut received = vec![0u8; 2048];
    let n = std::io::Read::read(&mut server.reader(), &mut received).expect("server data");
    assert_eq!(n, message.len());
    std::io::Write::write_all(&mut server.writer(), &message).expect("server data");
    let mut sink = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut sink).expect("server write");
    }
    drop((client, wire, received, sink));
    LIVE.load(Ordering::Relaxed) - before
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Accepts any certificate and signature: the client's cost is not measured.
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
