//! The `location` context: match rules (nested locations and named ones too), `proxy_pass`,
//! `internal` and the status pages (`return` and the other rewrite directives are
//! `rewrite`'s).
//!
//! `proxy_pass http://NAME` is resolved against the upstream names collected by `http` (so an
//! upstream may be defined after the server that uses it); anything else is a host (resolved
//! when the snapshot is built, as nginx resolves it at load), a UNIX-domain socket
//! (`http://unix:/path:/uri`), or carries variables to be resolved per request. A nested
//! location inherits its parent's settings as the parent inherits the server's, and must sit
//! inside its parent as nginx requires. Must not import `regex` directly (regexes are checked
//! through `Lowering::check_regex`) nor anything outside `config`.

use std::collections::HashSet;
use std::net::IpAddr;

use super::Lowering;
use super::directives::{Context, HTTP_LEVEL_ONLY, closest};
use super::proxy::ProxyLayer;
use super::rewrite::REWRITE_DIRECTIVES;
use super::values::{parse_number, split_host_port};
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{
    Handler, Location, LocationMatch, ProxyPass, ProxyTarget, Return, StatusPage,
};

impl Lowering {
    /// Lowers the `location` blocks written side by side in one block (`parent`: the location
    /// they are nested in, None at server level), each inheriting `outer`. A repeated match
    /// rule is an error, as in nginx.
    pub(super) fn locations(
        &mut self,
        blocks: &[&Directive],
        outer: &ProxyLayer,
        parent: Option<&LocationMatch>,
    ) -> Vec<Location> {
        let mut seen = HashSet::new();
        let mut lowered = Vec::with_capacity(blocks.len());
        for d in blocks {
            let Some(location) = self.location(d, outer, parent) else {
                continue;
            };
            // Only literal paths and names can clash; regexes are tried in order, duplicates
            // are harmless.
            let key = match &location.matcher {
                LocationMatch::Exact(path) => Some((0, path.clone())),
                LocationMatch::Prefix { path, .. } => Some((1, path.clone())),
                LocationMatch::Named(name) => Some((2, name.clone())),
                LocationMatch::Regex { .. } => None,
            };
            if let Some(key) = key
                && !seen.insert(key.clone())
            {
                self.error(&d.span, ErrorKind::DuplicateLocation { path: key.1 });
            }
            lowered.push(location);
        }
        lowered
    }

    /// Lowers one `location` block, inheriting `outer` (its parent location's settings, or the
    /// server's over http's). `None` if its match rule is invalid or it may not sit in
    /// `parent`; its body is still checked so every error is reported.
    fn location(
        &mut self,
        d: &Directive,
        outer: &ProxyLayer,
        parent: Option<&LocationMatch>,
    ) -> Option<Location> {
        let matcher = self
            .location_match(d)
            .filter(|matcher| self.fits_inside(d, matcher, parent));
        // nginx: no URI part in `proxy_pass` where no matched prefix can be replaced.
        let regex = matches!(
            matcher,
            Some(LocationMatch::Regex { .. } | LocationMatch::Named(_))
        );
        let mut layer = ProxyLayer::default();
        let mut proxy = None;
        let mut status = None;
        let mut rewrite = Vec::new();
        let mut pending_ifs = Vec::new();
        let mut internal = false;
        let mut nested = Vec::new();
        for inner in d.block.as_deref().unwrap_or_default() {
            if !self.accepts(Context::Location, inner) {
                continue;
            }
            match inner.name() {
                "proxy_pass" if proxy.is_some() || status.is_some() => self.duplicate(inner),
                "proxy_pass" => {
                    let uri_error = regex.then_some(ErrorKind::UriInRegexLocation);
                    proxy = Some(self.proxy_pass(inner, uri_error));
                }
                name if REWRITE_DIRECTIVES.contains(&name) => {
                    self.rewrite_step(inner, &mut rewrite, Some(&mut pending_ifs));
                }
                // Content handlers, like `proxy_pass`: one per location.
                "status" | "stub_status" if status.is_some() || proxy.is_some() => {
                    self.duplicate(inner)
                }
                "status" => status = Some(StatusPage::Full),
                "stub_status" => status = Some(StatusPage::Stub),
                "internal" if internal => self.duplicate(inner),
                "internal" => internal = true,
                "location" => nested.push(inner),
                "keepalive_timeout" => self.ignore(inner, HTTP_LEVEL_ONLY),
                _ => {
                    self.proxy_setting(&mut layer, inner);
                }
            }
        }
        let handler = match (status, proxy.flatten()) {
            (Some(page), _) => Handler::Status(page),
            (None, Some(p)) => Handler::Proxy(p),
            (None, None) => Handler::NotFound,
        };
        let merged = layer.over(outer);
        self.resolve_ifs(&mut rewrite, pending_ifs, &merged);
        // Nested locations inherit this one's settings as written here, over its own outer.
        let nested = match &matcher {
            Some(matcher) => self.locations(&nested, &merged, Some(matcher)),
            None => Vec::new(),
        };
        Some(Location {
            matcher: matcher?,
            handler,
            rewrite,
            proxy: merged.resolve(),
            internal,
            nested,
            span: d.span.clone(),
        })
    }

    /// nginx's rules for a location inside another: not inside an exact or a named location,
    /// no named location below server level, and a literal path that starts with its parent's
    /// (a regex parent's pattern text, as nginx compares it).
    fn fits_inside(
        &mut self,
        d: &Directive,
        matcher: &LocationMatch,
        parent: Option<&LocationMatch>,
    ) -> bool {
        let Some(parent) = parent else {
            return true;
        };
        let location = matcher.as_written().to_string();
        let kind = match (parent, matcher) {
            (LocationMatch::Exact(path), _) => ErrorKind::LocationInsideExact {
                location,
                parent: path.clone(),
            },
            (LocationMatch::Named(name), _) => ErrorKind::LocationInsideNamed {
                location,
                parent: name.clone(),
            },
            (_, LocationMatch::Named(name)) => {
                ErrorKind::NamedLocationNotAtServerLevel { name: name.clone() }
            }
            (_, LocationMatch::Regex { .. }) => return true,
            (_, _) if location.starts_with(parent.as_written()) => return true,
            (_, _) => ErrorKind::LocationOutside {
                location,
                parent: parent.as_written().to_string(),
            },
        };
        self.error(&d.span, kind);
        false
    }

    /// `location [=|^~|~|~*] PATH`, the modifier also accepted glued to the path (`=/x`).
    fn location_match(&mut self, d: &Directive) -> Option<LocationMatch> {
        let (modifier, path) = match d.args.as_slice() {
            [modifier, path] => (modifier.text.as_str(), path.text.as_str()),
            [path] => {
                let text = path.text.as_str();
                let split = ["=", "^~", "~*", "~"]
                    .into_iter()
                    .find(|m| text.starts_with(m))
                    .map_or(0, str::len);
                (&text[..split], &text[split..])
            }
            // `accepts` allows one or two arguments only.
            _ => return None,
        };
        let matcher = match modifier {
            "=" => LocationMatch::Exact(path.to_string()),
            "^~" => LocationMatch::Prefix {
                path: path.to_string(),
                no_regex: true,
            },
            "~" | "~*" => {
                let case_insensitive = modifier == "~*";
                self.check_regex(&d.args[d.args.len() - 1].span, path, case_insensitive);
                LocationMatch::Regex {
                    pattern: path.to_string(),
                    case_insensitive,
                }
            }
            "" if path.starts_with('@') => LocationMatch::Named(path.to_string()),
            "" => LocationMatch::Prefix {
                path: path.to_string(),
                no_regex: false,
            },
            _ => {
                let kind = ErrorKind::InvalidLocationModifier {
                    modifier: modifier.into(),
                };
                self.error(&d.args[0].span, kind);
                return None;
            }
        };
        Some(matcher)
    }

    /// `return CODE [TEXT]`, or `return URL` (a 302), with nginx's 0..=999 code range.
    pub(super) fn return_(&mut self, d: &Directive) -> Option<Return> {
        let first = &d.args[0];
        let code = parse_number::<u16>(&first.text).filter(|&code| code <= 999);
        let is_url = ["http://", "https://", "$scheme"]
            .iter()
            .any(|prefix| first.text.starts_with(prefix));
        let (code, text) = match (code, d.args.get(1)) {
            (Some(code), text) => (code, text.map(|w| w.text.clone())),
            (None, None) if is_url => (302, Some(first.text.clone())),
            _ => {
                let value = first.text.clone();
                self.error(&first.span, ErrorKind::InvalidReturnCode { value });
                return None;
            }
        };
        Some(Return {
            code,
            text,
            span: d.span.clone(),
        })
    }

    /// `proxy_pass http[s]://TARGET[URI]`. `uri_error` (in a regex location or an `if`) forbids
    /// a literal URI part, as nginx does, since there is no matched prefix for it to replace; a
    /// URI with variables is sent as rendered, so it is allowed anywhere.
    pub(super) fn proxy_pass(
        &mut self,
        d: &Directive,
        uri_error: Option<ErrorKind>,
    ) -> Option<ProxyPass> {
        let word = &d.args[0];
        let url = word.text.as_str();
        let scheme = |prefix: &str| {
            url.get(..prefix.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
        };
        let (https, rest) = if scheme("http://") {
            (false, &url["http://".len()..])
        } else if scheme("https://") {
            (true, &url["https://".len()..])
        } else {
            let kind = ErrorKind::InvalidUrlPrefix { url: url.into() };
            self.error(&word.span, kind);
            return None;
        };
        if rest
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("unix:"))
        {
            return self.proxy_pass_unix(d, rest, https, uri_error);
        }
        let (authority, uri) = match rest.find('/') {
            Some(slash) => (&rest[..slash], Some(rest[slash..].to_string())),
            None => (rest, None),
        };
        if authority.is_empty() {
            self.error(&word.span, ErrorKind::NoHost { url: url.into() });
            return None;
        }
        let literal_uri = uri.as_ref().is_some_and(|uri| !uri.contains('$'));
        let target = if authority.contains('$') {
            // Resolved per request; nginx allows a URI then even in regex locations.
            ProxyTarget::Variable(authority.to_string())
        } else {
            if let Some(kind) = uri_error.filter(|_| literal_uri) {
                self.error(&d.span, kind);
                return None;
            }
            self.proxy_target(d, authority, https)?
        };
        Some(ProxyPass {
            target,
            uri,
            https,
            span: d.span.clone(),
        })
    }

    /// `proxy_pass http://unix:/path.sock[:/uri]` (`rest` is what follows the scheme): the
    /// path ends at the first `:`, as in nginx, and what follows it is the URI.
    fn proxy_pass_unix(
        &mut self,
        d: &Directive,
        rest: &str,
        https: bool,
        uri_error: Option<ErrorKind>,
    ) -> Option<ProxyPass> {
        let (path, uri) = match rest[5..].split_once(':') {
            Some((path, uri)) => (path, Some(uri.to_string())),
            None => (&rest[5..], None),
        };
        self.unix_path(d, &d.args[0], path)?;
        let literal_uri = uri.as_ref().is_some_and(|uri| !uri.contains('$'));
        if let Some(kind) = uri_error.filter(|_| literal_uri) {
            self.error(&d.span, kind);
            return None;
        }
        Some(ProxyPass {
            target: ProxyTarget::Unix {
                path: path.to_string(),
            },
            uri,
            https,
            span: d.span.clone(),
        })
    }

    /// A literal authority: an upstream name, or `host:port`, or an IP literal (port 80, or
    /// 443 for `https`, as nginx).
    fn proxy_target(&mut self, d: &Directive, authority: &str, https: bool) -> Option<ProxyTarget> {
        let word = &d.args[0];
        let Some((host, port)) = split_host_port(authority) else {
            self.error(
                &word.span,
                ErrorKind::NoHost {
                    url: word.text.clone(),
                },
            );
            return None;
        };
        // nginx compares upstream names case-insensitively.
        let upstream = self.upstream_keys.get(&host.to_ascii_lowercase()).cloned();
        match (upstream, port) {
            (Some(name), None) => Some(ProxyTarget::Upstream(name)),
            (Some(name), Some(port)) => {
                let port = port.to_string();
                self.error(&word.span, ErrorKind::UpstreamWithPort { name, port });
                None
            }
            (None, Some(port)) => {
                let port = self.port(d, word, port)?;
                let host = host.to_string();
                let port_written = true;
                Some(ProxyTarget::Address {
                    host,
                    port,
                    port_written,
                })
            }
            (None, None) if host.parse::<IpAddr>().is_ok() => Some(ProxyTarget::Address {
                host: host.to_string(),
                port: if https { 443 } else { 80 },
                port_written: false,
            }),
            (None, None) => {
                let names = self.upstream_names.iter().map(String::as_str);
                let budget = &mut self.suggestion_budget;
                // A name one typo away from an upstream is taken for that typo: reported
                // here, with the upstream it meant, rather than looked up in DNS.
                if let Some(suggestion) = closest(host, names, budget).map(str::to_string) {
                    let (name, suggestion) = (host.to_string(), Some(suggestion));
                    self.error(&word.span, ErrorKind::UnknownUpstream { name, suggestion });
                    return None;
                }
                // Else a host name, as nginx reads it: resolved when the snapshot is built,
                // on the scheme's port.
                Some(ProxyTarget::Address {
                    host: host.to_string(),
                    port: if https { 443 } else { 80 },
                    port_written: false,
                })
            }
        }
    }
}
