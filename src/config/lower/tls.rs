//! The `ssl_*` directives and `http2 on|off` at http and server level, and their inheritance
//! (http -> server), into a server's [`ServerTls`].
//!
//! Each level collects what it sets into a [`TlsLayer`]; a server's settings are its layer over
//! the http one's, field by field, as nginx merges them (the certificate and key lists each as a
//! whole, then paired in order). Whether a server terminates TLS at all is decided by `http`
//! once every server is lowered (one `listen ... ssl` makes the whole address TLS). Files are
//! not read here: `tls` loads them when a snapshot is built. Paths are resolved against the main
//! config file's folder, as nginx resolves them against its conf prefix (and as `include` does).
//! Must not import other `lower` contexts.

use std::path::PathBuf;
use std::time::Duration;

use super::Lowering;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{CertificatePair, ServerTls, TlsVersion, VerifyClient};
use crate::config::source::Span;

/// nginx's `ssl_session_timeout` default.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// nginx's `builtin` cache size when none is written, in sessions.
const DEFAULT_BUILTIN_SESSIONS: usize = 20_480;
/// nginx: "one megabyte can store about 4000 sessions".
const SHARED_BYTES_PER_SESSION: u64 = 256;

const OLD_PROTOCOLS: &str = "rustls does not speak SSLv2, SSLv3, TLSv1 or TLSv1.1; \
                             tether leaves them out";
const STAPLING_WITHOUT_FILE: &str = "tether staples only from \"ssl_stapling_file\"; \
                                     it does not fetch OCSP responses";
const STAPLING_OFF: &str = "\"ssl_stapling\" is off, so the file is not stapled";
const SSL_OFF: &str = "TLS is set by the \"ssl\" parameter of \"listen\"";
const STAPLING_VERIFY: &str = "tether staples the \"ssl_stapling_file\" response as it is";

/// The TLS settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct TlsLayer {
    certificates: Option<Vec<(PathBuf, Span)>>,
    keys: Option<Vec<(PathBuf, Span)>>,
    protocols: Option<Vec<TlsVersion>>,
    ciphers: Option<(String, Span)>,
    ecdh_curve: Option<(String, Span)>,
    prefer_server_ciphers: Option<bool>,
    session_cache: Option<Option<usize>>,
    session_timeout: Option<Duration>,
    session_tickets: Option<bool>,
    /// `ssl_stapling` with where it was written (for the notice when no file comes with it).
    stapling: Option<(bool, Span)>,
    stapling_file: Option<(PathBuf, Span)>,
    client_certificate: Option<PathBuf>,
    trusted_certificate: Option<PathBuf>,
    verify_client: Option<(VerifyClient, Span)>,
    verify_depth: Option<u32>,
    /// `http2 on|off`.
    pub(super) http2: Option<bool>,
}

impl TlsLayer {
    /// Whether any `ssl_certificate` is set (paired with a key or not).
    pub(super) fn has_certificates(&self) -> bool {
        self.certificates
            .as_ref()
            .is_some_and(|list| !list.is_empty())
    }

    /// This level's settings, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &TlsLayer) -> TlsLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        TlsLayer {
            certificates: pick(&self.certificates, &outer.certificates),
            keys: pick(&self.keys, &outer.keys),
            protocols: pick(&self.protocols, &outer.protocols),
            ciphers: pick(&self.ciphers, &outer.ciphers),
            ecdh_curve: pick(&self.ecdh_curve, &outer.ecdh_curve),
            prefer_server_ciphers: pick(&self.prefer_server_ciphers, &outer.prefer_server_ciphers),
            session_cache: pick(&self.session_cache, &outer.session_cache),
            session_timeout: pick(&self.session_timeout, &outer.session_timeout),
            session_tickets: pick(&self.session_tickets, &outer.session_tickets),
            stapling: pick(&self.stapling, &outer.stapling),
            stapling_file: pick(&self.stapling_file, &outer.stapling_file),
            client_certificate: pick(&self.client_certificate, &outer.client_certificate),
            trusted_certificate: pick(&self.trusted_certificate, &outer.trusted_certificate),
            verify_client: pick(&self.verify_client, &outer.verify_client),
            verify_depth: pick(&self.verify_depth, &outer.verify_depth),
            http2: pick(&self.http2, &outer.http2),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is `http2` or an `ssl_*` directive; false if it is not one.
    /// `d` has passed [`Lowering::accepts`].
    pub(super) fn tls_setting(&mut self, layer: &mut TlsLayer, d: &Directive) -> bool {
        let word = &d.args[0];
        match d.name() {
            // nginx's deprecated switch: `off` changes nothing, `on` is refused with a hint.
            "ssl" if word.text == "off" => self.ignore(d, SSL_OFF),
            "ssl" => self.error(&d.span, ErrorKind::SslDirective),
            "http2" => self.once(&mut layer.http2, d, |cx| cx.flag(d, word)),
            "ssl_certificate" => {
                if let Some(path) = self.tls_path(d, word) {
                    let list = layer.certificates.get_or_insert_with(Vec::new);
                    list.push((path, d.span.clone()));
                }
            }
            "ssl_certificate_key" => {
                if let Some(path) = self.tls_path(d, word) {
                    layer
                        .keys
                        .get_or_insert_with(Vec::new)
                        .push((path, d.span.clone()));
                }
            }
            "ssl_protocols" => self.once(&mut layer.protocols, d, |cx| cx.protocols(d)),
            "ssl_ciphers" => {
                let value = (word.text.clone(), word.span.clone());
                self.once(&mut layer.ciphers, d, |_| Some(value));
            }
            "ssl_ecdh_curve" => {
                let value = (word.text.clone(), word.span.clone());
                self.once(&mut layer.ecdh_curve, d, |_| Some(value));
            }
            "ssl_prefer_server_ciphers" => {
                self.once(&mut layer.prefer_server_ciphers, d, |cx| cx.flag(d, word))
            }
            "ssl_session_cache" => {
                self.once(&mut layer.session_cache, d, |cx| cx.session_cache(d));
            }
            "ssl_session_timeout" => {
                self.once(&mut layer.session_timeout, d, |cx| cx.time(d, word))
            }
            "ssl_session_tickets" => {
                self.once(&mut layer.session_tickets, d, |cx| cx.flag(d, word))
            }
            "ssl_stapling" => {
                let span = d.span.clone();
                self.once(&mut layer.stapling, d, |cx| Some((cx.flag(d, word)?, span)));
            }
            "ssl_stapling_file" => {
                let span = d.span.clone();
                let slot = &mut layer.stapling_file;
                self.once(slot, d, |cx| Some((cx.tls_path(d, word)?, span)));
            }
            "ssl_stapling_verify" => {
                if self.flag(d, word) == Some(true) {
                    self.ignore(d, STAPLING_VERIFY);
                }
            }
            "ssl_client_certificate" => {
                self.once(&mut layer.client_certificate, d, |cx| cx.tls_path(d, word))
            }
            "ssl_trusted_certificate" => {
                self.once(&mut layer.trusted_certificate, d, |cx| cx.tls_path(d, word))
            }
            "ssl_verify_client" => {
                self.once(&mut layer.verify_client, d, |cx| cx.verify_client(d, word))
            }
            "ssl_verify_depth" => self.once(&mut layer.verify_depth, d, |cx| cx.number(d, word, 0)),
            _ => return false,
        }
        true
    }

    /// A file path resolved against the main config file's folder. Variables (`$ssl_server_name`)
    /// and inline `data:` values, which nginx allows, are refused rather than read as a file.
    fn tls_path(&mut self, d: &Directive, word: &Word) -> Option<PathBuf> {
        if word.text.contains('$') || word.text.starts_with("data:") {
            let kind = ErrorKind::ValueNotSupported {
                directive: d.name().into(),
                value: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        }
        Some(self.conf_dir.join(&word.text))
    }

    /// `ssl_protocols`: the versions rustls speaks; older ones are left out with a notice.
    fn protocols(&mut self, d: &Directive) -> Option<Vec<TlsVersion>> {
        let mut versions = Vec::new();
        let mut old = false;
        for word in &d.args {
            match tls_version(&word.text) {
                Some(Some(version)) => versions.push(version),
                Some(None) => old = true,
                None => {
                    let kind = ErrorKind::InvalidValue {
                        directive: d.name().into(),
                        value: word.text.clone(),
                    };
                    self.error(&word.span, kind);
                    return None;
                }
            }
        }
        if old {
            self.ignore(d, OLD_PROTOCOLS);
        }
        if versions.is_empty() {
            self.error(&d.span, ErrorKind::NoTlsProtocols);
            return None;
        }
        versions.sort();
        versions.dedup();
        Some(versions)
    }

    /// `ssl_session_cache off | none | [builtin[:size]] [shared:name:size]`: the room for
    /// sessions by ID (`None`: no cache). nginx's shared cache is sized in bytes; tether keeps
    /// one in-process cache holding as many sessions as that would.
    fn session_cache(&mut self, d: &Directive) -> Option<Option<usize>> {
        let invalid = |cx: &mut Lowering, word: &Word| {
            let kind = ErrorKind::InvalidValue {
                directive: d.name().into(),
                value: word.text.clone(),
            };
            cx.error(&word.span, kind);
        };
        let mut sessions: Option<usize> = None;
        for word in &d.args {
            let text = word.text.as_str();
            let room = match text {
                "off" | "none" if d.args.len() == 1 => return Some(None),
                "builtin" => DEFAULT_BUILTIN_SESSIONS,
                _ => {
                    let parsed = if let Some(count) = text.strip_prefix("builtin:") {
                        super::values::parse_number::<usize>(count).filter(|&n| n > 0)
                    } else if let Some(rest) = text.strip_prefix("shared:") {
                        rest.rsplit_once(':')
                            .filter(|(name, _)| !name.is_empty())
                            .and_then(|(_, size)| super::values::parse_size(size))
                            .map(|bytes| bytes / SHARED_BYTES_PER_SESSION)
                            .filter(|&n| n > 0)
                            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                    } else {
                        None
                    };
                    let Some(room) = parsed else {
                        invalid(self, word);
                        return None;
                    };
                    room
                }
            };
            sessions = Some(sessions.map_or(room, |before| before.max(room)));
        }
        Some(sessions)
    }

    fn verify_client(&mut self, d: &Directive, word: &Word) -> Option<(VerifyClient, Span)> {
        let verify = match word.text.as_str() {
            "on" => VerifyClient::On,
            "off" => VerifyClient::Off,
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => {
                self.error(&word.span, ErrorKind::VerifyClientNoCa);
                return None;
            }
            _ => {
                let kind = ErrorKind::InvalidValue {
                    directive: d.name().into(),
                    value: word.text.clone(),
                };
                self.error(&word.span, kind);
                return None;
            }
        };
        Some((verify, d.span.clone()))
    }

    /// A server's effective settings from its merged layer. `scope` is its names and
    /// addresses (see [`ServerTls::session_scope`]); `span` its `server` directive. Problems
    /// are reported once even when several servers inherit the directive that has them.
    pub(super) fn server_tls(&mut self, layer: &TlsLayer, scope: String, span: &Span) -> ServerTls {
        let certificates = layer.certificates.clone().unwrap_or_default();
        let keys = layer.keys.clone().unwrap_or_default();
        for (certificate, span) in certificates.iter().skip(keys.len()) {
            let certificate = certificate.clone();
            self.error_once(span, ErrorKind::NoCertificateKey { certificate });
        }
        for (key, span) in keys.iter().skip(certificates.len()) {
            let key = key.clone();
            self.error_once(span, ErrorKind::NoCertificateForKey { key });
        }
        let certificates = certificates
            .into_iter()
            .zip(keys)
            .map(|((certificate, span), (key, _))| CertificatePair {
                certificate,
                key,
                span,
            })
            .collect();
        let (verify_client, verify_span) = layer.verify_client.clone().unzip();
        let verify_client = verify_client.unwrap_or_default();
        let no_ca = layer.client_certificate.is_none() && layer.trusted_certificate.is_none();
        if let Some(span) = verify_span.filter(|_| verify_client != VerifyClient::Off && no_ca) {
            self.error_once(&span, ErrorKind::NoClientCertificate);
        }
        let stapling_file = match (&layer.stapling, &layer.stapling_file) {
            (Some((true, _)), Some((file, _))) => Some(file.clone()),
            (Some((true, span)), None) => {
                self.notice_once("ssl_stapling", span, STAPLING_WITHOUT_FILE);
                None
            }
            (_, Some((_, span))) => {
                self.notice_once("ssl_stapling_file", span, STAPLING_OFF);
                None
            }
            _ => None,
        };
        ServerTls {
            certificates,
            protocols: layer
                .protocols
                .clone()
                .unwrap_or(vec![TlsVersion::Tls12, TlsVersion::Tls13]),
            ciphers: layer.ciphers.clone(),
            ecdh_curve: layer.ecdh_curve.clone(),
            prefer_server_ciphers: layer.prefer_server_ciphers.unwrap_or(false),
            session_cache: layer.session_cache.flatten(),
            session_timeout: layer.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT),
            session_tickets: layer.session_tickets.unwrap_or(true),
            stapling_file,
            verify_client,
            client_certificate: layer.client_certificate.clone(),
            trusted_certificate: layer.trusted_certificate.clone(),
            verify_depth: layer.verify_depth.unwrap_or(1),
            session_scope: scope,
            span: span.clone(),
        }
    }

    /// Records an error unless the same one at the same place is already recorded (an
    /// http-level directive is merged into every server).
    pub(super) fn error_once(&mut self, span: &Span, kind: ErrorKind) {
        let seen = self
            .errors
            .iter()
            .any(|e| e.span.as_ref() == Some(span) && e.kind == kind);
        if !seen {
            self.error(span, kind);
        }
    }

    /// Records a notice unless the same one at the same place is already recorded.
    fn notice_once(&mut self, name: &str, span: &Span, reason: &'static str) {
        let seen = self
            .ignored
            .iter()
            .any(|i| &i.span == span && i.reason == reason);
        if !seen {
            self.ignored.push(crate::config::model::Ignored {
                name: name.to_string(),
                reason,
                span: span.clone(),
            });
        }
    }
}

/// One protocol name of `ssl_protocols` / `proxy_ssl_protocols`: a version tether speaks,
/// `Some(None)` for one of nginx's older names (which rustls never speaks), None if unknown.
pub(super) fn tls_version(name: &str) -> Option<Option<TlsVersion>> {
    match name {
        "TLSv1.2" => Some(Some(TlsVersion::Tls12)),
        "TLSv1.3" => Some(Some(TlsVersion::Tls13)),
        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => Some(None),
        _ => None,
    }
}
