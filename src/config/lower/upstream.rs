//! The `upstream` and `map` blocks.
//!
//! Upstream: `server` lines with their parameters, the balancing method (one: nginx warns
//! about a second and keeps the last, tether refuses the guess), the idle pool settings, and the group's `sticky` (lowered by
//! `sticky`) and `health_check` (by `health_check`). A server is identified by its address as
//! written and, for a repeated address, which of its lines it is (nginx makes each line a server:
//! people repeat one to weight it); a `route=` names one server, so it must be unique in the
//! group. `unix:/path` addresses are UNIX-domain sockets. `backup` is accepted with every method (nginx refuses it with
//! `hash` and `ip_hash`; tether tries backups the same way under every method). Map: `pattern
//! value;` pairs, which are not directives, so they bypass the directive table. Host names are
//! not resolved here (`snapshot` does that); templates stay verbatim (`vars` compiles them). Must
//! not import `balance` or `peer`: this is the upstream as written, not as run.

use std::collections::HashSet;
use std::time::Duration;

use super::Lowering;
use super::directives::Context;
use super::resolver::ResolverLayer;
use super::values::{parse_number, parse_time, split_host_port};
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{BalanceMethod, Map, MapEntry, MapPattern, PeerSpec, Sticky, Upstream};

/// nginx's upstream `keepalive_timeout` default.
const UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// The directives that choose an upstream's balancing method (round robin is their absence).
fn is_balancing_method(name: &str) -> bool {
    matches!(name, "ip_hash" | "least_conn" | "hash" | "random")
}

impl Lowering {
    /// Records `d` as the upstream's balancing method when it is the first; otherwise reports
    /// it (a duplicate, or a second method naming the first's line) and returns false.
    fn first_method<'a>(
        &mut self,
        upstream: &str,
        seen: &mut Option<&'a Directive>,
        d: &'a Directive,
    ) -> bool {
        let Some(first) = *seen else {
            *seen = Some(d);
            return true;
        };
        if first.name() == d.name() {
            self.duplicate(d);
        } else {
            let kind = ErrorKind::TwoBalancingMethods {
                upstream: upstream.to_string(),
                first: first.name().to_string(),
                first_at: first.span.to_string(),
                second: d.name().to_string(),
            };
            self.error(&d.span, kind);
        }
        false
    }

    /// Lowers `upstream NAME { ... }`; `None` if it has no usable server.
    pub(super) fn upstream(&mut self, d: &Directive) -> Option<Upstream> {
        let name = d.args[0].text.clone();
        let mut method = BalanceMethod::RoundRobin;
        let mut servers = Vec::new();
        let mut keepalive = None;
        let mut keepalive_timeout = None;
        let mut sticky = None;
        let mut secret = None;
        let mut health_check = None;
        let mut resolver = ResolverLayer::default();
        let mut any_server = false;
        // Some server line carries `route=`, even one that failed (whose error is out already:
        // `sticky route` should not pile on).
        let mut any_route = false;
        // Addresses and routes of the servers so far: each names one server.
        let mut identities = Identities::default();
        // The balancing method directive seen so far: a second one is an error.
        let mut method_line: Option<&Directive> = None;
        for inner in d.block.as_deref().unwrap_or_default() {
            if !self.accepts(Context::Upstream, inner) {
                continue;
            }
            if is_balancing_method(inner.name())
                && !self.first_method(&name, &mut method_line, inner)
            {
                continue;
            }
            let args = &inner.args;
            match inner.name() {
                "server" => {
                    any_server = true;
                    any_route |= args[1..].iter().any(|w| w.text.starts_with("route="));
                    if let Some(peer) = self.peer(inner) {
                        self.check_identity(&name, &mut identities, inner, &peer);
                        servers.push(peer);
                    }
                }
                "ip_hash" => method = BalanceMethod::IpHash,
                "least_conn" => method = BalanceMethod::LeastConn,
                "hash" => {
                    let consistent = match args.get(1) {
                        None => false,
                        Some(word) if word.text == "consistent" => true,
                        Some(word) => {
                            self.invalid_parameter(inner, word);
                            continue;
                        }
                    };
                    let key = args[0].text.clone();
                    method = BalanceMethod::Hash { key, consistent };
                }
                "random" => match inner.arg_texts().as_slice() {
                    [] => method = BalanceMethod::Random { two: false },
                    // `two` compares the pair by connections: least_conn is the only method.
                    ["two"] | ["two", "least_conn"] => method = BalanceMethod::Random { two: true },
                    _ => {
                        let bad = args.iter().enumerate().find(|(i, w)| {
                            !matches!((*i, w.text.as_str()), (0, "two") | (1, "least_conn"))
                        });
                        if let Some((_, word)) = bad {
                            self.invalid_parameter(inner, word);
                        }
                    }
                },
                "keepalive" => self.once(&mut keepalive, inner, |cx| cx.number(inner, &args[0], 1)),
                "keepalive_timeout" => {
                    self.once(&mut keepalive_timeout, inner, |cx| cx.time(inner, &args[0]));
                }
                "sticky" => self.once(&mut sticky, inner, |cx| cx.sticky(inner)),
                "sticky_secret" => self.once(&mut secret, inner, |cx| cx.sticky_secret(inner)),
                "health_check" => {
                    self.once(&mut health_check, inner, |cx| cx.health_check(inner));
                }
                _ => {
                    self.resolver_setting(&mut resolver, inner);
                }
            }
        }
        // A server line with a bad parameter was reported already; do not pile on.
        if !any_server {
            self.error(
                &d.span,
                ErrorKind::NoServersInUpstream { name: name.clone() },
            );
        } else if let Some(Sticky::Route { span, .. }) = &sticky
            && !any_route
        {
            let upstream = name.clone();
            self.error(span, ErrorKind::StickyRouteWithoutRoutes { upstream });
        }
        // The upstream's own secret wins; `http` hands its own to the rest afterwards.
        match &mut sticky {
            Some(Sticky::Cookie(cookie)) => cookie.secret = secret,
            Some(Sticky::Learn(learn)) => learn.secret = secret,
            _ => {}
        }
        (!servers.is_empty()).then(|| Upstream {
            name,
            method,
            servers,
            keepalive,
            keepalive_timeout: keepalive_timeout.unwrap_or(UPSTREAM_KEEPALIVE_TIMEOUT),
            sticky,
            health_check,
            resolver: resolver.over(None),
            span: d.span.clone(),
        })
    }

    /// `server ADDRESS|unix:PATH [weight=N] [max_fails=N] [fail_timeout=T] [max_conns=N] [backup] [down]
    /// [drain] [slow_start=T] [route=ID] [resolve]`.
    fn peer(&mut self, d: &Directive) -> Option<PeerSpec> {
        let word = &d.args[0];
        let address = word.text.as_str();
        let mut peer = match address.get(..5) {
            Some(scheme) if scheme.eq_ignore_ascii_case("unix:") => {
                self.unix_path(d, word, &address[5..])?;
                PeerSpec::unix_with_defaults(address, &address[5..], d.span.clone())
            }
            _ => {
                let Some((host, port)) = split_host_port(address) else {
                    let kind = ErrorKind::InvalidAddress {
                        directive: d.name().into(),
                        address: address.into(),
                    };
                    self.error(&word.span, kind);
                    return None;
                };
                let port = match port {
                    Some(port) => self.port(d, word, port)?,
                    None => 80,
                };
                PeerSpec::with_defaults(address, host, port, d.span.clone())
            }
        };
        let mut valid = true;
        for param in &d.args[1..] {
            let text = param.text.as_str();
            let (key, value) = text.split_once('=').unwrap_or((text, ""));
            let ok = match (key, text.contains('=')) {
                ("weight", true) => set(&mut peer.weight, parse_number(value).filter(|&w| w > 0)),
                ("max_fails", true) => set(&mut peer.max_fails, parse_number(value)),
                ("max_conns", true) => set(&mut peer.max_conns, parse_number(value)),
                ("fail_timeout", true) => set(&mut peer.fail_timeout, parse_time(value)),
                ("slow_start", true) => set(&mut peer.slow_start, parse_time(value)),
                ("route", true) if !value.is_empty() => {
                    peer.route = Some(value.to_string());
                    true
                }
                ("backup", false) => set(&mut peer.backup, Some(true)),
                ("down", false) => set(&mut peer.down, Some(true)),
                ("drain", false) => set(&mut peer.drain, Some(true)),
                // Every name is resolved when a snapshot is built (so every reload resolves
                // again); `resolve` also follows it while running.
                ("resolve", false) => set(&mut peer.resolve, Some(true)),
                _ => false,
            };
            if !ok {
                valid = false;
                self.invalid_parameter(d, param);
            }
        }
        valid.then_some(peer)
    }

    /// Reports a server whose `route=` an earlier server of `upstream` has, and records its
    /// own. A repeated address is no error: as in nginx, each line is a server of its own.
    fn check_identity(
        &mut self,
        upstream: &str,
        earlier: &mut Identities,
        d: &Directive,
        peer: &PeerSpec,
    ) {
        let Some(route) = &peer.route else {
            return;
        };
        if !earlier.routes.insert(route.clone()) {
            // The last `route=` on the line is the one that counts (see `peer`).
            let word = d.args.iter().rev().find(|w| w.text.starts_with("route="));
            let kind = ErrorKind::DuplicateRoute {
                route: route.clone(),
                upstream: upstream.to_string(),
            };
            self.error(word.map_or(&d.span, |w| &w.span), kind);
        }
    }

    /// Reports `word` as an invalid parameter of `d`.
    pub(super) fn invalid_parameter(&mut self, d: &Directive, word: &Word) {
        let kind = ErrorKind::InvalidParameter {
            directive: d.name().into(),
            value: word.text.clone(),
        };
        self.error(&word.span, kind);
    }

    /// Lowers `map SOURCE $VARIABLE { pattern value; ... }`.
    pub(super) fn map(&mut self, d: &Directive) -> Option<Map> {
        let target = &d.args[1];
        let variable = match target.text.strip_prefix('$') {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => {
                let value = target.text.clone();
                self.error(&target.span, ErrorKind::InvalidVariableName { value });
                return None;
            }
        };
        let mut default = None;
        let mut hostnames = false;
        let mut entries = Vec::new();
        for entry in d.block.as_deref().unwrap_or_default() {
            if entry.block.is_some() {
                let name = entry.name().into();
                self.error(&entry.span, ErrorKind::NotTerminated { name });
                continue;
            }
            match (entry.name(), entry.args.as_slice()) {
                ("default", [value]) => {
                    self.once(&mut default, entry, |_| Some(value.text.clone()));
                }
                ("hostnames", []) => hostnames = true,
                // `volatile` only disables nginx's per-request value cache; tether has none.
                ("volatile", []) => {}
                (_, [value]) => entries.push(MapEntry {
                    pattern: map_pattern(&entry.name.text),
                    value: value.text.clone(),
                    span: entry.span.clone(),
                }),
                _ => {
                    let name = d.name().into();
                    self.error(&entry.span, ErrorKind::InvalidArgCount { name });
                }
            }
        }
        for entry in &mut entries {
            match &mut entry.pattern {
                MapPattern::Regex {
                    pattern,
                    case_insensitive,
                } => self.check_regex(&entry.span, pattern, *case_insensitive),
                // Host names compare lowercase; `hostnames` may come after the entries.
                MapPattern::Exact(exact) if hostnames => *exact = exact.to_ascii_lowercase(),
                MapPattern::Exact(_) => {}
            }
        }
        Some(Map {
            source: d.args[0].text.clone(),
            variable,
            default: default.unwrap_or_default(),
            hostnames,
            entries,
            span: d.span.clone(),
        })
    }
}

/// The routes of an upstream's servers so far.
#[derive(Default)]
struct Identities {
    routes: HashSet<String>,
}

/// Stores `value` in `slot` when it parsed; false otherwise.
pub(super) fn set<T>(slot: &mut T, value: Option<T>) -> bool {
    match value {
        Some(value) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// `~re` and `~*re` are regexes; a leading `\` is dropped so `\~x` matches a literal `~x`.
fn map_pattern(text: &str) -> MapPattern {
    if let Some(pattern) = text.strip_prefix("~*") {
        MapPattern::Regex {
            pattern: pattern.to_string(),
            case_insensitive: true,
        }
    } else if let Some(pattern) = text.strip_prefix('~') {
        MapPattern::Regex {
            pattern: pattern.to_string(),
            case_insensitive: false,
        }
    } else {
        MapPattern::Exact(text.strip_prefix('\\').unwrap_or(text).to_string())
    }
}
