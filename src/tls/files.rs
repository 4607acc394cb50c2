//! Reading the TLS files a server names: certificate chains with their keys (PEM), the CA
//! lists client certificates are checked against (PEM) and the stapled OCSP response (DER).
//!
//! Every failure names the file and says what is wrong with it. A certificate outside its
//! validity period is only a warning: the operator may be about to replace it, and refusing
//! the whole config would take every other server down with it. Must not import the other
//! `tls` files.

use std::fs;
use std::path::Path;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertificatePair, ConfigError, ErrorKind, Span, TlsFileRole};

/// Loads one `ssl_certificate` + `ssl_certificate_key` pair, checking the key is the
/// certificate's, with `ocsp` (a DER OCSP response) to staple.
pub(super) fn certified_key(
    pair: &CertificatePair,
    provider: &CryptoProvider,
    ocsp: Option<&[u8]>,
) -> Result<CertifiedKey, ConfigError> {
    let fail = |role, path: &Path, reason: String| {
        let path = path.to_path_buf();
        ConfigError::at(&pair.span, ErrorKind::TlsFile { role, path, reason })
    };
    let chain = certificates(&pair.certificate)
        .map_err(|reason| fail(TlsFileRole::Certificate, &pair.certificate, reason))?;
    warn_if_not_valid_now(&pair.certificate, &chain[0]);
    let key_role = TlsFileRole::CertificateKey;
    let bytes = read(&pair.key).map_err(|reason| fail(key_role, &pair.key, reason))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => "no private key in it".to_string(),
            other => format!("not a PEM private key ({other})"),
        };
        fail(key_role, &pair.key, reason)
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        let reason = format!("unsupported private key ({e})");
        fail(key_role, &pair.key, reason)
    })?;
    let mut certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // `Unknown`: rustls cannot read the key's public half to compare; the handshake would
        // then fail visibly rather than quietly.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            let kind = ErrorKind::KeyMismatch {
                certificate: pair.certificate.clone(),
                key: pair.key.clone(),
            };
            return Err(ConfigError::at(&pair.span, kind));
        }
    }
    certified.ocsp = ocsp.map(<[u8]>::to_vec);
    Ok(certified)
}

/// The CA certificates in `path` (`ssl_client_certificate`, `ssl_trusted_certificate`).
pub(super) fn ca_certificates(
    path: &Path,
    span: &Span,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    certificates(path).map_err(|reason| {
        let (role, path) = (TlsFileRole::ClientCertificates, path.to_path_buf());
        ConfigError::at(span, ErrorKind::TlsFile { role, path, reason })
    })
}

/// The bytes of `ssl_stapling_file` (a DER OCSP response, stapled as it is).
pub(super) fn stapling(path: &Path, span: &Span) -> Result<Vec<u8>, ConfigError> {
    let bytes = read(path).and_then(|bytes| match bytes.is_empty() {
        true => Err("the file is empty".to_string()),
        false => Ok(bytes),
    });
    bytes.map_err(|reason| {
        let (role, path) = (TlsFileRole::StaplingFile, path.to_path_buf());
        ConfigError::at(span, ErrorKind::TlsFile { role, path, reason })
    })
}

/// The PEM certificates in `path`, in order; at least one.
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    match chain {
        Ok(chain) if chain.is_empty() => Err("no PEM certificate in it".to_string()),
        Ok(chain) => Ok(chain),
        Err(e) => Err(format!("not a PEM certificate ({e})")),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| crate::config::parse::os_reason(&e))
}

/// Warns (does not fail) when the leaf certificate is expired or not yet valid.
fn warn_if_not_valid_now(path: &Path, leaf: &CertificateDer<'_>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        // rustls and the handshake will judge a certificate x509-parser cannot read.
        return;
    };
    let validity = cert.validity();
    if !validity.is_valid() {
        tracing::warn!(
            "certificate \"{}\" is not valid now (valid from {} to {})",
            path.display(),
            validity.not_before,
            validity.not_after
        );
    }
}
