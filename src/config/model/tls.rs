//! TLS settings as configured: what a `server {}` on a `listen ... ssl` address terminates TLS
//! with (the `ssl_*` directives, http level inherited), and how `proxy_pass https://` speaks
//! TLS to upstreams (the `proxy_ssl_*` directives). Paths are resolved; files are not read here:
//! `tls` loads them when a snapshot is built, so a certificate swap is seen by a reload.

use std::path::PathBuf;
use std::time::Duration;

use super::Span;

/// A virtual server's TLS termination settings (`ssl_*`, effective after inheritance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// `ssl_certificate` + `ssl_certificate_key`, paired in the order written (nginx pairs the
    /// n-th certificate with the n-th key). Several pairs (say ECDSA and RSA): the best one
    /// the client supports is chosen per handshake.
    pub certificates: Vec<CertificatePair>,
    /// `ssl_protocols` (default TLSv1.2 TLSv1.3).
    pub protocols: Vec<TlsVersion>,
    /// `ssl_ciphers` as written (OpenSSL syntax), if set.
    pub ciphers: Option<(String, Span)>,
    /// `ssl_ecdh_curve` as written (OpenSSL's colon-separated group names), if set; unset or
    /// `auto`: rustls's groups in its order.
    pub ecdh_curve: Option<(String, Span)>,
    /// `ssl_prefer_server_ciphers` (default off: the client's order).
    pub prefer_server_ciphers: bool,
    /// `ssl_session_cache`: resumption by session ID, with room for this many sessions (None:
    /// `off`/`none`, nginx's default).
    pub session_cache: Option<usize>,
    /// `ssl_session_timeout` (default 5m): how long a session (ID or ticket) may be resumed.
    pub session_timeout: Duration,
    /// `ssl_session_tickets` (default on): resumption by tickets, keys rotated.
    pub session_tickets: bool,
    /// `ssl_stapling_file`: a DER OCSP response stapled to every handshake (only with
    /// `ssl_stapling on`, as nginx).
    pub stapling_file: Option<PathBuf>,
    /// `ssl_verify_client` with `ssl_client_certificate` (the CAs client certificates must
    /// chain to) and `ssl_verify_depth`.
    pub verify_client: VerifyClient,
    /// `ssl_client_certificate`: CAs trusted for client certificates, and named to clients
    /// in the certificate request.
    pub client_certificate: Option<PathBuf>,
    /// `ssl_trusted_certificate`: more CAs trusted for client certificates, not named to
    /// clients (nginx's meaning; tether does not verify OCSP responses with them).
    pub trusted_certificate: Option<PathBuf>,
    /// `ssl_verify_depth` (default 1, nginx's).
    pub verify_depth: u32,
    /// What resumption is scoped by: the server's names and listen addresses as written.
    /// Servers (and reloads) with the same scope share one session cache and one set of
    /// ticket keys; a different scope never resumes another's sessions.
    pub session_scope: String,
    /// Where the settings were written (the `server` directive), for errors that concern the
    /// whole block ("no ssl_certificate").
    pub span: Span,
}

impl ServerTls {
    /// Every file these settings name (certificates, keys, CA lists, the OCSP response): what
    /// a reload watches.
    pub fn files(&self) -> Vec<PathBuf> {
        let pairs = self.certificates.iter();
        let pair_files = pairs.flat_map(|pair| [pair.certificate.clone(), pair.key.clone()]);
        let others = [
            &self.client_certificate,
            &self.trusted_certificate,
            &self.stapling_file,
        ];
        pair_files
            .chain(others.into_iter().flatten().cloned())
            .collect()
    }
}

/// One `ssl_certificate` with its `ssl_certificate_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificatePair {
    /// PEM: the certificate, then its chain.
    pub certificate: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// The `ssl_certificate` directive.
    pub span: Span,
}

/// A TLS protocol version tether speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `ssl_verify_client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyClient {
    /// No client certificate asked for.
    #[default]
    Off,
    /// A valid client certificate is required.
    On,
    /// Asked for; a client without one is let in (`$ssl_client_verify` = `NONE`), one with an
    /// invalid one is refused.
    Optional,
}
