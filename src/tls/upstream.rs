//! TLS toward upstreams (`proxy_pass https://`): one rustls client config per distinct
//! `proxy_ssl_*` setting, built when a snapshot is built — files read and checked then, errors
//! naming the file and the directive — and shared by every connection made with it, so its
//! session cache resumes sessions across connections (`proxy_ssl_session_reuse`).
//!
//! [`TlsTarget`] is what one connection is opened with: the config and the name to verify
//! (and send as SNI with `proxy_ssl_server_name on`). Pooled connections are matched on it, so
//! a connection is only reused by a request that would have opened the same one.
//!
//! Must not import hyper, tokio or anything below `config`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{ConfigError, ErrorKind, SslFile, UpstreamSsl};

/// How one upstream connection is secured: what it is opened with, and what a pooled
/// connection must match to be reused.
#[derive(Debug)]
pub struct TlsTarget {
    /// The client config (shared by every location with the same `proxy_ssl_*`).
    pub config: Arc<ClientConfig>,
    /// The name verified against the certificate, and sent as SNI when the config says so.
    pub name: ServerName<'static>,
}

impl TlsTarget {
    /// Whether a connection opened for `self` may carry a request meant for `other`: same
    /// config (so the same verification and client certificate), same name. Usually the very
    /// same target (a pointer compare); a name rendered per request compares by value.
    pub fn same(&self, other: &TlsTarget) -> bool {
        std::ptr::eq(self, other)
            || (Arc::ptr_eq(&self.config, &other.config) && self.name == other.name)
    }
}

/// The name to verify for `text` as nginx takes it from `proxy_ssl_name` or `$proxy_host`:
/// the port stripped, brackets around an IPv6 address removed. None if what remains is
/// neither a DNS name nor an IP address.
pub fn server_name(text: &str) -> Option<ServerName<'static>> {
    let host = match text.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => text.split(':').next().unwrap_or(text),
    };
    ServerName::try_from(host.to_string()).ok()
}

/// The client config for `ssl`: protocols, verification (or none), client certificate,
/// session reuse. Every problem found is returned, each at the directive it concerns.
pub fn client_config(ssl: &UpstreamSsl) -> Result<Arc<ClientConfig>, Vec<ConfigError>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut errors = Vec::new();
    let verifier = verifier(ssl, &provider, &mut errors);
    let client_certificate = client_certificate(ssl, &mut errors);
    let (Some(verifier), Some(client_certificate)) = (verifier, client_certificate) else {
        return Err(errors);
    };
    let versions = super::rustls_versions(&ssl.protocols);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|error| {
            let kind = ErrorKind::InvalidValue {
                directive: "proxy_ssl_protocols".into(),
                value: error.to_string(),
            };
            vec![ConfigError {
                span: ssl.span.clone(),
                kind,
            }]
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_certificate {
        None => builder.with_no_client_auth(),
        Some((chain, key, file)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| vec![file_error(&file, "proxy_ssl_certificate", error)])?,
    };
    config.enable_sni = ssl.server_name;
    if !ssl.session_reuse {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// `proxy_ssl_verify on`: webpki against the trusted certificates, within the depth; off:
/// any certificate, as nginx (the handshake's signatures are still checked).
fn verifier(
    ssl: &UpstreamSsl,
    provider: &Arc<CryptoProvider>,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn ServerCertVerifier>> {
    let algorithms = provider.signature_verification_algorithms;
    if !ssl.verify {
        return Some(Arc::new(AnyCertificate::new(algorithms)));
    }
    let Some(file) = &ssl.trusted_certificate else {
        errors.push(ConfigError {
            span: ssl.span.clone(),
            kind: ErrorKind::VerifyWithoutTrustedCertificate,
        });
        return None;
    };
    let directive = "proxy_ssl_trusted_certificate";
    let anchors = match super::files::certificates(&file.path) {
        Ok(anchors) => anchors,
        Err(reason) => {
            errors.push(file_error(file, directive, reason));
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    for anchor in &anchors {
        if let Err(error) = roots.add(anchor.clone()) {
            errors.push(file_error(file, directive, error));
            return None;
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| errors.push(file_error(file, directive, error)))
        .ok()?;
    Some(Arc::new(DepthLimited {
        webpki,
        anchors,
        depth: ssl.verify_depth,
    }))
}

type ClientCertificate = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    SslFile,
);

/// `proxy_ssl_certificate` with `proxy_ssl_certificate_key`, read; `Some(None)` when neither
/// is set, None on an error.
fn client_certificate(
    ssl: &UpstreamSsl,
    errors: &mut Vec<ConfigError>,
) -> Option<Option<ClientCertificate>> {
    let (certificate, key) = match (&ssl.certificate, &ssl.certificate_key) {
        (None, None) => return Some(None),
        (Some(certificate), Some(key)) => (certificate, key),
        (Some(file), None) | (None, Some(file)) => {
            let certificate_set = ssl.certificate.is_some();
            let names = ["proxy_ssl_certificate", "proxy_ssl_certificate_key"];
            let (set, missing) = if certificate_set {
                (names[0], names[1])
            } else {
                (names[1], names[0])
            };
            let kind = ErrorKind::ClientCertificateHalf {
                set: set.into(),
                missing: missing.into(),
            };
            errors.push(ConfigError::at(&file.span, kind));
            return None;
        }
    };
    let chain = super::files::certificates(&certificate.path)
        .map_err(|reason| errors.push(file_error(certificate, "proxy_ssl_certificate", reason)))
        .ok();
    let private_key = PrivateKeyDer::from_pem_file(&key.path)
        .map_err(|error| errors.push(file_error(key, "proxy_ssl_certificate_key", error)))
        .ok();
    Some(Some((chain?, private_key?, certificate.clone())))
}

fn file_error(file: &SslFile, directive: &str, reason: impl ToString) -> ConfigError {
    let kind = ErrorKind::UpstreamTlsFile {
        directive: directive.into(),
        path: file.path.clone(),
        reason: reason.to_string(),
    };
    ConfigError::at(&file.span, kind)
}

/// `proxy_ssl_verify off`: nginx takes whatever certificate the upstream shows. The handshake
/// itself is still checked (the upstream proves it holds the key of the certificate it sent),
/// which costs nothing and keeps the connection a real TLS one.
/// (Public for clients that must see whichever certificate a server presents: tests.)
#[derive(Debug)]
pub struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyCertificate {
    /// Checks signatures with `algorithms` (a provider's), accepts any certificate.
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> AnyCertificate {
        AnyCertificate { algorithms }
    }
}

impl ServerCertVerifier for AnyCertificate {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `proxy_ssl_verify on`: webpki's verification, then `proxy_ssl_verify_depth`. webpki does
/// not say which path it built, so the depth counts the intermediates the upstream sent that
/// are not themselves trusted (a server that appends its root is not penalised): OpenSSL's
/// depth N allows N - 1 of them.
#[derive(Debug)]
struct DepthLimited {
    webpki: Arc<WebPkiServerVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    depth: u32,
}

impl ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let untrusted = super::untrusted_intermediates(intermediates, &self.anchors);
        if untrusted as u64 > u64::from(self.depth.saturating_sub(1)) {
            return Err(rustls::Error::General(format!(
                "certificate chain longer than proxy_ssl_verify_depth {}",
                self.depth
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_port_as_in_nginx() {
        let dns = |text| server_name(text).map(|name| name.to_str().into_owned());
        assert_eq!(dns("backend.test:8443").as_deref(), Some("backend.test"));
        assert_eq!(dns("backend.test").as_deref(), Some("backend.test"));
        assert_eq!(dns("127.0.0.1:443").as_deref(), Some("127.0.0.1"));
        assert_eq!(dns("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(dns("bad name"), None);
    }

    #[test]
    fn verification_without_trusted_certificates_is_nginx_s_error() {
        let ssl = UpstreamSsl {
            verify: true,
            ..UpstreamSsl::default()
        };
        let errors = client_config(&ssl).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ErrorKind::VerifyWithoutTrustedCertificate);
    }

    #[test]
    fn a_missing_or_garbage_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        for path in [dir.path().join("missing.pem"), garbage] {
            let ssl = UpstreamSsl {
                verify: true,
                trusted_certificate: Some(SslFile {
                    path: path.clone(),
                    span: crate::config::Span::builtin(),
                }),
                ..UpstreamSsl::default()
            };
            let errors = client_config(&ssl).unwrap_err();
            let text = errors[0].to_string();
            assert!(text.contains(&*path.to_string_lossy()), "{text}");
            assert!(text.contains("proxy_ssl_trusted_certificate"), "{text}");
        }
    }

    #[test]
    fn defaults_send_no_sni_and_resume_sessions() {
        let config = client_config(&UpstreamSsl::default()).unwrap();
        assert!(!config.enable_sni);
        let no_reuse = UpstreamSsl {
            session_reuse: false,
            server_name: true,
            ..UpstreamSsl::default()
        };
        let config = client_config(&no_reuse).unwrap();
        assert!(config.enable_sni);
    }
}
