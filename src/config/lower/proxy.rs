//! Proxy settings shared by `http`, `server` and `location`, and their nginx inheritance.
//!
//! Each level collects what it sets into a [`ProxyLayer`] (unset fields stay `None`); a location's
//! effective [`ProxySettings`] is its layer over the server's over the http's, over the defaults.
//! Lists (`proxy_set_header`, `add_header`) are inherited as a whole, and only by a level that
//! sets none, exactly as nginx. The client-address rules (`client`) ride along, so every level
//! that inherits proxy settings inherits them the same way. Must not import other `lower`
//! contexts.

use std::sync::Arc;
use std::time::Duration;

use super::Lowering;
use super::client::ClientLayer;
use super::error_page::ErrorPageLayer;
use super::gzip::GzipLayer;
use super::headers::ResponseLayer;
use super::limits::LimitsLayer;
use super::proxy_ssl::ProxySslLayer;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{
    AccessLog, AddHeader, ClientRules, NextUpstream, ProxySettings, RedirectRules,
};

/// The proxy settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct ProxyLayer {
    // Shared by every level that inherits them; `Arc::make_mut` appends in place while the
    // level that writes them is read (nothing shares them yet).
    set_headers: Option<Arc<Vec<(String, String)>>>,
    add_headers: Option<Arc<Vec<AddHeader>>>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    buffering: Option<bool>,
    next_upstream: Option<NextUpstream>,
    next_upstream_tries: Option<u32>,
    client_max_body_size: Option<u64>,
    client_body_timeout: Option<Duration>,
    client_send_timeout: Option<Duration>,
    ssl: ProxySslLayer,
    /// `access_log`s written at this level (`off` leaves it empty but set).
    pub(super) access_logs: Option<Arc<Vec<AccessLog>>>,
    client: ClientLayer,
    gzip: GzipLayer,
    limits: LimitsLayer,
    response: ResponseLayer,
    /// `absolute_redirect`, `port_in_redirect`, `server_name_in_redirect`.
    redirects: [Option<bool>; 3],
    error_pages: ErrorPageLayer,
}

impl ProxyLayer {
    /// This level's settings, falling back to `outer`'s field by field.
    pub(super) fn over(&self, outer: &ProxyLayer) -> ProxyLayer {
        fn pick<T: Clone>(inner: &Option<T>, outer: &Option<T>) -> Option<T> {
            inner.as_ref().or(outer.as_ref()).cloned()
        }
        ProxyLayer {
            set_headers: pick(&self.set_headers, &outer.set_headers),
            add_headers: pick(&self.add_headers, &outer.add_headers),
            connect_timeout: pick(&self.connect_timeout, &outer.connect_timeout),
            read_timeout: pick(&self.read_timeout, &outer.read_timeout),
            send_timeout: pick(&self.send_timeout, &outer.send_timeout),
            buffering: pick(&self.buffering, &outer.buffering),
            next_upstream: pick(&self.next_upstream, &outer.next_upstream),
            next_upstream_tries: pick(&self.next_upstream_tries, &outer.next_upstream_tries),
            client_max_body_size: pick(&self.client_max_body_size, &outer.client_max_body_size),
            client_body_timeout: pick(&self.client_body_timeout, &outer.client_body_timeout),
            client_send_timeout: pick(&self.client_send_timeout, &outer.client_send_timeout),
            ssl: self.ssl.over(&outer.ssl),
            access_logs: pick(&self.access_logs, &outer.access_logs),
            client: self.client.over(&outer.client),
            error_pages: self.error_pages.over(&outer.error_pages),
            gzip: self.gzip.over(&outer.gzip),
            limits: self.limits.over(&outer.limits),
            response: self.response.over(&outer.response),
            redirects: [0, 1, 2].map(|i| self.redirects[i].or(outer.redirects[i])),
        }
    }

    /// Whether this level writes `proxy_set_header` or `add_header` (what an `if` may set).
    pub(super) fn sets_header_lists(&self) -> bool {
        self.set_headers.is_some() || self.add_headers.is_some()
    }

    /// The effective redirect rules alone (what a server's own redirects follow).
    pub(super) fn redirect_rules(&self) -> RedirectRules {
        let d = RedirectRules::default();
        let [absolute, port, server_name] = self.redirects;
        RedirectRules {
            absolute: absolute.unwrap_or(d.absolute),
            port: port.unwrap_or(d.port),
            server_name: server_name.unwrap_or(d.server_name),
        }
    }

    /// The effective client-address rules alone (what a server applies before any location).
    pub(super) fn client_rules(&self) -> ClientRules {
        self.client.clone().resolve()
    }

    /// The effective error pages alone (what a server uses before any location).
    pub(super) fn error_pages(&self) -> crate::config::model::ErrorPages {
        self.error_pages.resolve()
    }

    /// The effective settings: this layer over nginx's defaults.
    pub(super) fn resolve(self) -> ProxySettings {
        let d = ProxySettings::default();
        let redirects = self.redirect_rules();
        ProxySettings {
            set_headers: self.set_headers.unwrap_or(d.set_headers),
            add_headers: self.add_headers.unwrap_or(d.add_headers),
            connect_timeout: self.connect_timeout.unwrap_or(d.connect_timeout),
            read_timeout: self.read_timeout.unwrap_or(d.read_timeout),
            send_timeout: self.send_timeout.unwrap_or(d.send_timeout),
            buffering: self.buffering.unwrap_or(d.buffering),
            next_upstream: self.next_upstream.unwrap_or(d.next_upstream),
            next_upstream_tries: self.next_upstream_tries.unwrap_or(d.next_upstream_tries),
            client_max_body_size: self.client_max_body_size.unwrap_or(d.client_max_body_size),
            client_body_timeout: self.client_body_timeout.unwrap_or(d.client_body_timeout),
            client_send_timeout: self.client_send_timeout.unwrap_or(d.client_send_timeout),
            ssl: self.ssl.resolve(),
            access_logs: self.access_logs.unwrap_or(d.access_logs),
            redirects,
            client: self.client.resolve(),
            gzip: self.gzip.resolve(),
            limits: self.limits.resolve(),
            response: self.response.resolve(),
            error_pages: self.error_pages.resolve(),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is one of the shared settings; false if it is not one
    /// (the caller's context then handles it). `d` has passed [`Lowering::accepts`].
    pub(super) fn proxy_setting(&mut self, layer: &mut ProxyLayer, d: &Directive) -> bool {
        let args = &d.args;
        match d.name() {
            "proxy_set_header" => {
                let header = (args[0].text.clone(), args[1].text.clone());
                let list = layer.set_headers.get_or_insert_with(Arc::default);
                Arc::make_mut(list).push(header);
            }
            "add_header" => {
                let always = match args.get(2) {
                    None => false,
                    Some(word) if word.text == "always" => true,
                    Some(word) => {
                        self.error(
                            &word.span,
                            ErrorKind::InvalidParameter {
                                directive: d.name().into(),
                                value: word.text.clone(),
                            },
                        );
                        return true;
                    }
                };
                let list = layer.add_headers.get_or_insert_with(Arc::default);
                Arc::make_mut(list).push(AddHeader {
                    name: args[0].text.clone(),
                    value: args[1].text.clone(),
                    always,
                });
            }
            "proxy_connect_timeout" => {
                self.once(&mut layer.connect_timeout, d, |cx| cx.time(d, &args[0]));
            }
            "proxy_read_timeout" => {
                self.once(&mut layer.read_timeout, d, |cx| cx.time(d, &args[0]))
            }
            "proxy_send_timeout" => {
                self.once(&mut layer.send_timeout, d, |cx| cx.time(d, &args[0]))
            }
            "proxy_buffering" => self.once(&mut layer.buffering, d, |cx| cx.flag(d, &args[0])),
            "proxy_next_upstream" => {
                self.once(&mut layer.next_upstream, d, |cx| cx.next_upstream(d));
            }
            "proxy_next_upstream_tries" => {
                let slot = &mut layer.next_upstream_tries;
                self.once(slot, d, |cx| cx.number(d, &args[0], 0));
            }
            "client_max_body_size" => {
                let slot = &mut layer.client_max_body_size;
                self.once(slot, d, |cx| cx.size(d, &args[0]));
            }
            "client_body_timeout" => {
                self.once(&mut layer.client_body_timeout, d, |cx| cx.time(d, &args[0]))
            }
            "access_log" => self.access_log(layer, d),
            "absolute_redirect" | "port_in_redirect" | "server_name_in_redirect" => {
                let index = match d.name() {
                    "absolute_redirect" => 0,
                    "port_in_redirect" => 1,
                    _ => 2,
                };
                self.once(&mut layer.redirects[index], d, |cx| cx.flag(d, &args[0]));
            }
            "send_timeout" => {
                self.once(&mut layer.client_send_timeout, d, |cx| cx.time(d, &args[0]))
            }
            // Accepted only in the form that means nothing to tether.
            "proxy_cache" if args[0].text == "off" => self.ignore(d, "tether does not cache"),
            "proxy_cache" => {
                let kind = ErrorKind::ValueNotSupported {
                    directive: d.name().into(),
                    value: args[0].text.clone(),
                };
                self.error(&args[0].span, kind);
            }
            // Server and location level (the http level takes them before this).
            "resolver" | "resolver_timeout" => self.resolver_elsewhere(d),
            _ => {
                return self.client_setting(&mut layer.client, d)
                    || self.proxy_ssl_setting(&mut layer.ssl, d)
                    || self.gzip_setting(&mut layer.gzip, d)
                    || self.limits_setting(&mut layer.limits, d)
                    || self.response_setting(&mut layer.response, d)
                    || self.error_page_setting(&mut layer.error_pages, d);
            }
        }
        true
    }

    /// Sets a once-per-level `slot` from `parse`, or reports the directive as duplicate.
    pub(super) fn once<T>(
        &mut self,
        slot: &mut Option<T>,
        d: &Directive,
        parse: impl FnOnce(&mut Lowering) -> Option<T>,
    ) {
        if slot.is_some() {
            self.duplicate(d);
        } else if let Some(value) = parse(self) {
            *slot = Some(value);
        }
    }

    /// `proxy_next_upstream error | timeout | invalid_header | http_XXX | non_idempotent | off`.
    fn next_upstream(&mut self, d: &Directive) -> Option<NextUpstream> {
        let mut next = NextUpstream::OFF;
        let mut off = false;
        let mut valid = true;
        for word in &d.args {
            match word.text.as_str() {
                "error" => next.error = true,
                "timeout" => next.timeout = true,
                "invalid_header" => next.invalid_header = true,
                "non_idempotent" => next.non_idempotent = true,
                "off" => off = true,
                code @ ("http_500" | "http_502" | "http_503" | "http_504" | "http_403"
                | "http_404" | "http_429") => {
                    // The arm's patterns guarantee three digits after `http_`.
                    let status = code[5..].parse().unwrap_or_default();
                    // Once each: a list written with repeats stays as short as the set.
                    if !next.statuses.contains(&status) {
                        next.statuses.push(status);
                    }
                }
                _ => {
                    valid = false;
                    self.error(
                        &word.span,
                        ErrorKind::InvalidValue {
                            directive: d.name().into(),
                            value: word.text.clone(),
                        },
                    );
                }
            }
        }
        // As in nginx, `off` anywhere in the list wins.
        valid.then_some(if off { NextUpstream::OFF } else { next })
    }
}
