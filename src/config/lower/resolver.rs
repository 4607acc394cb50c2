//! `resolver` and `resolver_timeout`, at the http level and inside an `upstream` (nginx 1.27.3
//! allows both); an upstream without its own takes the http level's, and `proxy_pass` with
//! variables uses the http level's. A `server NAME resolve` line with no resolver in force is
//! an error, as in nginx ("no resolver defined to resolve"). At server and location level
//! (where nginx would scope the one `proxy_pass` with variables uses) the directives are
//! checked and noted as having no effect. Must not import anything outside `config`.

use std::time::Duration;

use super::Lowering;
use super::values::{parse_time, split_host_port};
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{RESOLVER_TIMEOUT, Resolver, Upstream};

/// Why a server- or location-level resolver has no effect in tether.
const PER_REQUEST: &str = "tether takes resolver at http level (proxy_pass with variables, \
                           server ... resolve) and in upstream blocks only";

/// A level's `resolver` and `resolver_timeout`, as written.
#[derive(Default)]
pub(super) struct ResolverLayer {
    resolver: Option<Resolver>,
    timeout: Option<Duration>,
}

impl ResolverLayer {
    /// The resolver in force at this level: its own, else `outer`'s; this level's
    /// `resolver_timeout` applies to either (nginx's merge of the two directives).
    pub(super) fn over(&self, outer: Option<&Resolver>) -> Option<Resolver> {
        let mut resolver = self.resolver.clone().or_else(|| outer.cloned())?;
        if let Some(timeout) = self.timeout {
            resolver.timeout = timeout;
        }
        Some(resolver)
    }
}

impl Lowering {
    /// Lowers `resolver` or `resolver_timeout` into `layer`; false for any other directive.
    pub(super) fn resolver_setting(&mut self, layer: &mut ResolverLayer, d: &Directive) -> bool {
        match d.name() {
            "resolver" => self.once(&mut layer.resolver, d, |cx| cx.resolver(d)),
            "resolver_timeout" => {
                self.once(&mut layer.timeout, d, |cx| cx.time(d, &d.args[0]));
            }
            _ => return false,
        }
        true
    }

    /// Checks a server- or location-level `resolver` or `resolver_timeout`, then notes it.
    pub(super) fn resolver_elsewhere(&mut self, d: &Directive) {
        let mut layer = ResolverLayer::default();
        self.resolver_setting(&mut layer, d);
        self.ignore(d, PER_REQUEST);
    }

    /// `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off] [status_zone=NAME]`.
    fn resolver(&mut self, d: &Directive) -> Option<Resolver> {
        let mut resolver = Resolver {
            servers: Vec::new(),
            valid: None,
            ipv4: true,
            ipv6: true,
            timeout: RESOLVER_TIMEOUT,
            span: d.span.clone(),
        };
        let mut valid = true;
        for word in &d.args {
            let text = word.text.as_str();
            let ok = match text.split_once('=') {
                Some(("valid", time)) => parse_time(time)
                    .filter(|time| !time.is_zero())
                    .map(|time| resolver.valid = Some(time))
                    .is_some(),
                Some(("ipv4", flag)) => on_off(flag).map(|on| resolver.ipv4 = on).is_some(),
                Some(("ipv6", flag)) => on_off(flag).map(|on| resolver.ipv6 = on).is_some(),
                // NGINX Plus's statistics zone: tether's status page covers upstreams anyway.
                Some(("status_zone", name)) => !name.is_empty(),
                Some(_) => false,
                None => match split_host_port(text) {
                    Some((host, port)) => {
                        let port = match port {
                            Some(port) => self.port(d, word, port)?,
                            None => 53,
                        };
                        resolver.servers.push((host.to_string(), port));
                        true
                    }
                    None => false,
                },
            };
            if !ok {
                valid = false;
                self.invalid_parameter(d, word);
            }
        }
        if !resolver.ipv4 && !resolver.ipv6 {
            // nginx's words.
            self.error(&d.span, ErrorKind::ResolverAsksNothing);
            return None;
        }
        if resolver.servers.is_empty() {
            let name = d.name().into();
            self.error(&d.span, ErrorKind::InvalidArgCount { name });
            return None;
        }
        valid.then_some(resolver)
    }

    /// Gives every upstream without a resolver of its own the http level's, then reports each
    /// `server ... resolve` line left with none.
    pub(super) fn inherit_resolver(&mut self, upstreams: &mut [Upstream], http: &ResolverLayer) {
        let outer = http.over(None);
        for upstream in upstreams {
            if upstream.resolver.is_none() {
                upstream.resolver = outer.clone();
            }
            if upstream.resolver.is_some() {
                continue;
            }
            for server in upstream.servers.iter().filter(|s| s.resolve) {
                let name = server.address.clone();
                self.error(&server.span, ErrorKind::NoResolver { name });
            }
        }
    }
}

fn on_off(flag: &str) -> Option<bool> {
    match flag {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}
