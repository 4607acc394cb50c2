//! A server's TLS settings ([`config::ServerTls`]) -> a rustls [`ServerConfig`], built with the
//! snapshot so that a reload re-reads certificates and keys.
//!
//! `files` reads certificates, keys, CA lists and the OCSP response; `resolver` picks among a
//! server's certificates per handshake; `ciphers` maps `ssl_ciphers` onto rustls's suites;
//! `sessions` keeps resumption state across reloads; `client_auth` verifies client
//! certificates; `session` describes a finished handshake for the `$ssl_*` variables.
//!
//! `upstream` builds the client configs `proxy_pass https://` connects with.
//!
//! No sockets, no tokio: this runs while a snapshot is built (file reads only). Must not import
//! `server`, `proxy`, `snapshot` or `runtime`; only `config` from this crate.

mod ciphers;
mod client_auth;
mod files;
mod groups;
mod resolver;
mod session;
mod sessions;
pub mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;

use crate::config::{self, ConfigError, ErrorKind, TlsVersion};

pub use ciphers::openssl_name;
pub use session::TlsSession;
pub use sessions::SessionStore;

/// The ALPN ids offered when h2 is on for the server (`http2 on` or `listen ... http2`).
const ALPN_H2: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Builds the rustls config for one TLS server: its certificates (with the OCSP response
/// stapled), protocols, cipher suites, client verification and resumption (through `sessions`,
/// so it carries over reloads). ALPN offers `h2` and `http/1.1` when `alpn_h2`, else
/// `http/1.1`. Every problem found is returned, each naming its file.
pub fn server_config(
    tls: &config::ServerTls,
    alpn_h2: bool,
    sessions: &SessionStore,
) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let provider = provider_for(tls, &mut errors);
    let provider = Arc::new(provider);
    let ocsp = match &tls.stapling_file {
        Some(path) => files::stapling(path, &tls.span)
            .map_err(|e| errors.push(e))
            .ok(),
        None => None,
    };
    let mut keys = Vec::new();
    for pair in &tls.certificates {
        match files::certified_key(pair, &provider, ocsp.as_deref()) {
            Ok(key) => keys.push(Arc::new(key)),
            Err(e) => errors.push(e),
        }
    }
    let mut ca = |path: &Option<PathBuf>| match path {
        Some(path) => files::ca_certificates(path, &tls.span)
            .map_err(|e| errors.push(e))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let (named, unnamed) = (ca(&tls.client_certificate), ca(&tls.trusted_certificate));
    let verifier = client_auth::verifier(tls, named, unnamed, provider.clone())
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if !errors.is_empty() {
        return Err(errors);
    }
    let versions = rustls_versions(&tls.protocols);
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| vec![setup_error(tls, e)])?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver::BestCertificate::new(keys)));
    config.alpn_protocols = match alpn_h2 {
        true => ALPN_H2.iter().map(|id| id.to_vec()).collect(),
        false => vec![b"http/1.1".to_vec()],
    };
    config.ignore_client_order = tls.prefer_server_ciphers;
    let scope = &tls.session_scope;
    config.session_storage = sessions.cache(scope, tls.session_cache, tls.session_timeout);
    if tls.session_tickets {
        config.ticketer = sessions
            .ticketer(scope, tls.session_timeout)
            .map_err(|e| vec![setup_error(tls, e)])?;
    } else if tls.session_cache.is_none() {
        // Neither tickets nor a cache: TLS 1.3 would send tickets nobody can redeem.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
    }
    Ok(Arc::new(config))
}

/// rustls's default provider with the cipher suites `ssl_ciphers` leaves; an error when none
/// is left for the protocols allowed, a warning naming what rustls lacks.
fn provider_for(tls: &config::ServerTls, errors: &mut Vec<ConfigError>) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some((text, span)) = &tls.ecdh_curve {
        key_exchange(&mut provider, text, span, errors);
    }
    let Some((text, span)) = &tls.ciphers else {
        return provider;
    };
    let choice = ciphers::choose(text);
    let usable = |suite: &rustls::SupportedCipherSuite| {
        let version = match suite.version().version {
            rustls::ProtocolVersion::TLSv1_3 => TlsVersion::Tls13,
            _ => TlsVersion::Tls12,
        };
        tls.protocols.contains(&version)
    };
    let suites: Vec<_> = choice.suites.into_iter().filter(usable).collect();
    if suites.is_empty() {
        let ciphers = text.clone();
        errors.push(ConfigError::at(span, ErrorKind::NoCiphers { ciphers }));
        return provider;
    }
    if !choice.unavailable.is_empty() {
        let used: Vec<&str> = suites.iter().filter_map(|s| openssl_name(*s)).collect();
        tracing::warn!(
            "ssl_ciphers in {span}: {} not available in tether (rustls); using {}",
            choice.unavailable.join(":"),
            used.join(":")
        );
    }
    provider.cipher_suites = suites;
    provider
}

/// `ssl_ecdh_curve`: the provider's key-exchange groups, in the order written. Names rustls
/// lacks get a warning saying what is used; none left is an error.
fn key_exchange(
    provider: &mut CryptoProvider,
    text: &str,
    span: &config::Span,
    errors: &mut Vec<ConfigError>,
) {
    let groups = groups::choose(text);
    let Some(chosen) = groups.chosen else {
        return;
    };
    if chosen.is_empty() {
        let kind = ErrorKind::NoKeyExchangeGroups {
            curves: text.to_string(),
        };
        errors.push(ConfigError::at(span, kind));
        return;
    }
    if !groups.unavailable.is_empty() {
        let used: Vec<String> = chosen.iter().map(|g| format!("{:?}", g.name())).collect();
        tracing::warn!(
            "ssl_ecdh_curve in {span}: {} not available in tether (rustls); using {}",
            groups.unavailable.join(":"),
            used.join(":")
        );
    }
    provider.kx_groups = chosen;
}

/// The intermediates a peer sent that are not themselves trusted: what both verify depths
/// count (`ssl_verify_depth`, `proxy_ssl_verify_depth`), since webpki does not say which path
/// it built (a peer that appends its root is not penalised).
fn untrusted_intermediates(
    intermediates: &[rustls::pki_types::CertificateDer<'_>],
    anchors: &[rustls::pki_types::CertificateDer<'static>],
) -> usize {
    intermediates
        .iter()
        .filter(|cert| !anchors.iter().any(|anchor| anchor[..] == cert[..]))
        .count()
}

/// rustls' versions for the configured ones (server and upstream side alike).
fn rustls_versions(versions: &[TlsVersion]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    versions
        .iter()
        .map(|version| match version {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

/// rustls refusing a combination the config allowed: reported at the server.
fn setup_error(tls: &config::ServerTls, error: rustls::Error) -> ConfigError {
    let kind = ErrorKind::InvalidValue {
        directive: "ssl_protocols".into(),
        value: error.to_string(),
    };
    ConfigError::at(&tls.span, kind)
}

#[cfg(test)]
mod tests;
