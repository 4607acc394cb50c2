//! Client certificates (`ssl_verify_client`): rustls's WebPKI verifier over the CAs of
//! `ssl_client_certificate` and `ssl_trusted_certificate`, with nginx's `ssl_verify_depth`.
//!
//! Only `ssl_client_certificate`'s CAs are named to clients in the certificate request, as in
//! nginx. `ssl_verify_depth N` follows OpenSSL's meaning — at most N intermediate CAs between
//! the client's certificate and a trusted CA — counted over the intermediates the client
//! sends, leaving out any that is itself a trusted CA (some clients send their root too).
//! webpki does not report the path it built, so a client that sends unneeded extra
//! intermediates can be refused where OpenSSL would not. Must not import the other `tls` files.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore};

use crate::config::{ConfigError, ErrorKind, ServerTls, TlsFileRole, VerifyClient};

/// The verifier for `tls`, or None when no client certificate is asked for. `named` are the
/// CAs of `ssl_client_certificate`, `unnamed` those of `ssl_trusted_certificate`.
pub(super) fn verifier(
    tls: &ServerTls,
    named: Vec<CertificateDer<'static>>,
    unnamed: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ConfigError> {
    if tls.verify_client == VerifyClient::Off {
        return Ok(None);
    }
    let fail = |reason: String| {
        let path = tls
            .client_certificate
            .clone()
            .or(tls.trusted_certificate.clone());
        let kind = ErrorKind::TlsFile {
            role: TlsFileRole::ClientCertificates,
            path: path.unwrap_or_default(),
            reason,
        };
        ConfigError::at(&tls.span, kind)
    };
    let mut hinted = RootCertStore::empty();
    let mut trusted = RootCertStore::empty();
    for cert in &named {
        hinted.add(cert.clone()).map_err(|e| fail(e.to_string()))?;
    }
    for cert in named.iter().chain(&unnamed) {
        trusted.add(cert.clone()).map_err(|e| fail(e.to_string()))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(trusted), provider)
        .clear_root_hint_subjects()
        .add_root_hint_subjects(hinted.subjects());
    if tls.verify_client == VerifyClient::Optional {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder.build().map_err(|e| fail(e.to_string()))?;
    Ok(Some(Arc::new(DepthLimited {
        inner,
        anchors: named.into_iter().chain(unnamed).collect(),
        depth: tls.verify_depth,
    })))
}

/// WebPKI verification, then `ssl_verify_depth`.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn ClientCertVerifier>,
    /// The trusted CAs, to leave them out of the count.
    anchors: Vec<CertificateDer<'static>>,
    depth: u32,
}

impl ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let counted = super::untrusted_intermediates(intermediates, &self.anchors);
        if counted > usize::try_from(self.depth).unwrap_or(usize::MAX) {
            let reason = CertificateError::ApplicationVerificationFailure;
            return Err(Error::InvalidCertificate(reason));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
