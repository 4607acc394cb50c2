//! The `proxy_ssl_*` directives: how `proxy_pass https://` speaks TLS, inherited http ->
//! server -> location field by field like the other proxy settings ([`super::proxy`]).
//!
//! Values are checked here (flags, numbers, protocol names); files are only resolved against
//! the prefix — reading them is `tls::upstream`'s, when a snapshot is built, so a reload sees a
//! replaced file. Must not import other `lower` contexts.

use super::Lowering;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{SslFile, TlsVersion, UpstreamSsl};
use crate::config::source::Span;

/// The `proxy_ssl_*` settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct ProxySslLayer {
    verify: Option<bool>,
    trusted_certificate: Option<SslFile>,
    verify_depth: Option<u32>,
    server_name: Option<bool>,
    name: Option<String>,
    certificate: Option<SslFile>,
    certificate_key: Option<SslFile>,
    protocols: Option<Vec<TlsVersion>>,
    session_reuse: Option<bool>,
    /// The first `proxy_ssl_*` directive of this level.
    span: Option<Span>,
}

impl ProxySslLayer {
    /// This level's settings, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &ProxySslLayer) -> ProxySslLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        ProxySslLayer {
            verify: pick(&self.verify, &outer.verify),
            trusted_certificate: pick(&self.trusted_certificate, &outer.trusted_certificate),
            verify_depth: pick(&self.verify_depth, &outer.verify_depth),
            server_name: pick(&self.server_name, &outer.server_name),
            name: pick(&self.name, &outer.name),
            certificate: pick(&self.certificate, &outer.certificate),
            certificate_key: pick(&self.certificate_key, &outer.certificate_key),
            protocols: pick(&self.protocols, &outer.protocols),
            session_reuse: pick(&self.session_reuse, &outer.session_reuse),
            span: pick(&self.span, &outer.span),
        }
    }

    /// The effective settings: this layer over nginx's defaults.
    pub(super) fn resolve(self) -> UpstreamSsl {
        let d = UpstreamSsl::default();
        UpstreamSsl {
            verify: self.verify.unwrap_or(d.verify),
            trusted_certificate: self.trusted_certificate,
            verify_depth: self.verify_depth.unwrap_or(d.verify_depth),
            server_name: self.server_name.unwrap_or(d.server_name),
            name: self.name,
            certificate: self.certificate,
            certificate_key: self.certificate_key,
            protocols: self.protocols.unwrap_or(d.protocols),
            session_reuse: self.session_reuse.unwrap_or(d.session_reuse),
            span: self.span,
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is a `proxy_ssl_*` setting; false if it is not one. `d`
    /// has passed [`Lowering::accepts`].
    pub(super) fn proxy_ssl_setting(&mut self, layer: &mut ProxySslLayer, d: &Directive) -> bool {
        let word = &d.args[0];
        match d.name() {
            "proxy_ssl_verify" => self.once(&mut layer.verify, d, |cx| cx.flag(d, word)),
            "proxy_ssl_server_name" => self.once(&mut layer.server_name, d, |cx| cx.flag(d, word)),
            "proxy_ssl_session_reuse" => {
                self.once(&mut layer.session_reuse, d, |cx| cx.flag(d, word))
            }
            "proxy_ssl_verify_depth" => {
                self.once(&mut layer.verify_depth, d, |cx| cx.number(d, word, 0))
            }
            "proxy_ssl_name" => {
                self.once(&mut layer.name, d, |_| Some(word.text.clone()));
            }
            "proxy_ssl_trusted_certificate" => {
                let file = self.ssl_file(d, word);
                self.once(&mut layer.trusted_certificate, d, |_| Some(file));
            }
            "proxy_ssl_certificate" => {
                let file = self.ssl_file(d, word);
                self.once(&mut layer.certificate, d, |_| Some(file));
            }
            "proxy_ssl_certificate_key" => {
                let file = self.ssl_file(d, word);
                self.once(&mut layer.certificate_key, d, |_| Some(file));
            }
            "proxy_ssl_protocols" => {
                self.once(&mut layer.protocols, d, |cx| cx.ssl_protocols(d));
            }
            _ => return false,
        }
        layer.span.get_or_insert_with(|| d.span.clone());
        true
    }

    fn ssl_file(&self, d: &Directive, word: &Word) -> SslFile {
        SslFile {
            path: self.conf_dir.join(&word.text),
            span: d.span.clone(),
        }
    }

    /// `proxy_ssl_protocols`: the versions rustls speaks. nginx's older names (SSLv2, SSLv3,
    /// TLSv1, TLSv1.1) are accepted and dropped — rustls never offers them, so the list can
    /// only get stronger — as long as one version tether speaks remains.
    fn ssl_protocols(&mut self, d: &Directive) -> Option<Vec<TlsVersion>> {
        let mut versions = Vec::new();
        let mut valid = true;
        for word in &d.args {
            match super::tls::tls_version(&word.text) {
                Some(Some(version)) => versions.push(version),
                Some(None) => {}
                None => {
                    valid = false;
                    let kind = ErrorKind::InvalidValue {
                        directive: d.name().into(),
                        value: word.text.clone(),
                    };
                    self.error(&word.span, kind);
                }
            }
        }
        if valid && versions.is_empty() {
            self.error(&d.span, ErrorKind::NoTlsVersion);
            return None;
        }
        versions.sort();
        versions.dedup();
        valid.then_some(versions)
    }
}
