//! Choosing a virtual server by `Host` and a location by path, with nginx's precedence rules.
//!
//! Owns [`VirtualHosts`] (`server_name` matching on one listen address), [`Locations`] (`location`
//! matching inside one server, on the path as [`path::normalise`] makes it, for the host as
//! [`host::normalise`] makes it) and
//! [`HostnameTable`], the exact/wildcard host lookup that `server_name` and
//! `map ... { hostnames; }` share. Everything here works on plain strings and bytes and the
//! `config` model: it must not import http, hyper or tokio. Tables are built once per config
//! snapshot; the `find` methods run per request, so they never allocate.

pub mod host;
pub mod path;

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use crate::config::{
    ConfigError, ConfigErrors, ErrorKind, Location, LocationMatch, ServerName, Span,
};

/// Exact and wildcard host names mapped to values, looked up as nginx does: the exact name,
/// then the longest `*.`-prefix wildcard, then the longest `.*`-suffix wildcard.
///
/// Regex names are not kept here: their place in the order differs between users (after the
/// wildcards for both, but with captures for `map`), so each caller walks its own list.
#[derive(Clone, Debug)]
pub struct HostnameTable<T> {
    exact: HashMap<String, T>,
    /// Keyed by the domain without its leading dot (`example.com` for `*.example.com`), so a
    /// lookup can slice the host at each dot instead of building `"." + rest`.
    head: HashMap<String, HeadWildcard<T>>,
    /// Keyed by the prefix with its trailing dot (`www.example.` for `www.example.*`).
    tail: HashMap<String, T>,
}

/// The values a `*.example.com` / `.example.com` pair can carry for one domain.
#[derive(Clone, Debug)]
struct HeadWildcard<T> {
    /// Matches any name below the domain.
    subdomains: Option<T>,
    /// Matches the bare domain itself (only the `.example.com` form sets it).
    bare: Option<T>,
}

impl<T> Default for HostnameTable<T> {
    fn default() -> Self {
        HostnameTable {
            exact: HashMap::new(),
            head: HashMap::new(),
            tail: HashMap::new(),
        }
    }
}

impl<T: Copy> HostnameTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `example.com`. Returns false (keeping the first value) if the name was already there.
    pub fn insert_exact(&mut self, name: &str, value: T) -> bool {
        if self.exact.contains_key(name) {
            return false;
        }
        self.exact.insert(name.to_string(), value);
        true
    }

    /// Adds `*.example.com` (`suffix` = `.example.com`) or, with `include_bare`, `.example.com`.
    /// Returns false (keeping the first value) if that domain already had such a wildcard.
    pub fn insert_wildcard_prefix(&mut self, suffix: &str, include_bare: bool, value: T) -> bool {
        let domain = suffix.strip_prefix('.').unwrap_or(suffix);
        let entry = self.head.entry(domain.to_string()).or_insert(HeadWildcard {
            subdomains: None,
            bare: None,
        });
        if entry.subdomains.is_some() || (include_bare && entry.bare.is_some()) {
            return false;
        }
        entry.subdomains = Some(value);
        if include_bare {
            entry.bare = Some(value);
        }
        true
    }

    /// Adds `www.example.*` (`prefix` = `www.example.`). Returns false (keeping the first value) if
    /// it was already there.
    pub fn insert_wildcard_suffix(&mut self, prefix: &str, value: T) -> bool {
        if self.tail.contains_key(prefix) {
            return false;
        }
        self.tail.insert(prefix.to_string(), value);
        true
    }

    /// The value for `host` (compared as given: callers lowercase), or None.
    pub fn find(&self, host: &str) -> Option<T> {
        if let Some(value) = self.exact.get(host) {
            return Some(*value);
        }
        self.find_head(host).or_else(|| self.find_tail(host))
    }

    fn find_head(&self, host: &str) -> Option<T> {
        if self.head.is_empty() {
            return None;
        }
        // The host itself is the longest candidate, reachable only through `.example.com`.
        if let Some(value) = self.head.get(host).and_then(|h| h.bare) {
            return Some(value);
        }
        // Then every shorter domain, left to right, so the longest wildcard wins.
        host.match_indices('.')
            .find_map(|(dot, _)| self.head.get(&host[dot + 1..]).and_then(|h| h.subdomains))
    }

    fn find_tail(&self, host: &str) -> Option<T> {
        if self.tail.is_empty() {
            return None;
        }
        // Right to left: the longest prefix first. The `*` must stand for at least one
        // character, so a dot that ends the host is no candidate.
        host.rmatch_indices('.')
            .filter(|&(dot, _)| dot + 1 < host.len())
            .find_map(|(dot, _)| self.tail.get(&host[..=dot]).copied())
    }
}

/// The virtual servers sharing one listen address, and which one answers for a given `Host`.
#[derive(Clone, Debug)]
pub struct VirtualHosts {
    names: HostnameTable<usize>,
    /// `~regex` names in file order, with their server index.
    regexes: Vec<(Regex, usize)>,
    /// The server for hosts nothing else matched.
    default: usize,
}

impl VirtualHosts {
    /// `servers`: (server_names, is_default_server) of the servers on ONE listen address, in file
    /// order. The default is the first with default_server, else the first server.
    ///
    /// A name listed by two servers goes to the first (nginx warns "conflicting server name" and
    /// does the same). Errors are the regexes that do not compile, all of them.
    pub fn build(servers: &[(&[ServerName], bool)]) -> Result<VirtualHosts, ConfigErrors> {
        let mut names = HostnameTable::new();
        let mut regexes = Vec::new();
        let mut errors = Vec::new();
        for (index, (server_names, _)) in servers.iter().enumerate() {
            for name in server_names.iter() {
                match name {
                    ServerName::Exact(host) => {
                        names.insert_exact(host, index);
                    }
                    ServerName::WildcardPrefix {
                        suffix,
                        include_bare,
                    } => {
                        names.insert_wildcard_prefix(suffix, *include_bare, index);
                    }
                    ServerName::WildcardSuffix(prefix) => {
                        names.insert_wildcard_suffix(prefix, index);
                    }
                    // nginx compiles a server_name regex caselessly when it contains an
                    // uppercase letter: hosts are lowercased, so it could never match otherwise.
                    ServerName::Regex(pattern) => {
                        let caseless = pattern.bytes().any(|b| b.is_ascii_uppercase());
                        match compile_regex(pattern, caseless, None) {
                            Ok(regex) => regexes.push((regex, index)),
                            Err(error) => errors.push(error),
                        }
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let default = servers
            .iter()
            .position(|(_, is_default)| *is_default)
            .unwrap_or(0);
        Ok(VirtualHosts {
            names,
            regexes,
            default,
        })
    }

    /// Index (into `servers`) of the server for this Host (already lowercased, no port; may be "").
    ///
    /// Built from no servers at all, this answers 0: callers never route on an empty address.
    pub fn find(&self, host: &str) -> usize {
        if let Some(index) = self.names.find(host) {
            return index;
        }
        self.regexes
            .iter()
            .find(|(regex, _)| regex.is_match(host))
            .map_or(self.default, |(_, index)| *index)
    }
}

/// The `location` blocks of one server, compiled for nginx's lookup order.
///
/// Paths are bytes: a normalised path is percent-decoded, and `%FF` decodes to no UTF-8. So
/// regexes are byte regexes (on valid UTF-8 they match exactly as text regexes do).
#[derive(Clone, Debug, Default)]
pub struct Locations {
    exact: HashMap<Box<[u8]>, usize>,
    /// Prefix locations, longest first (ties in file order), so the first that matches is the
    /// longest: a plain scan, cheap for the handful of locations a server has.
    prefixes: Vec<Prefix>,
    /// Regex locations in file order.
    regexes: Vec<(regex::bytes::Regex, usize)>,
}

/// One prefix location.
#[derive(Clone, Debug)]
struct Prefix {
    path: String,
    /// `^~`: when this is the longest match, regexes are not consulted.
    no_regex: bool,
    index: usize,
}

impl Locations {
    /// Compiles a server's locations (in file order). Errors are the regexes that do not
    /// compile, all of them. A repeated `=` path or prefix keeps its first location.
    pub fn build(locations: &[Location]) -> Result<Locations, ConfigErrors> {
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        let mut regexes = Vec::new();
        let mut errors = Vec::new();
        for (index, location) in locations.iter().enumerate() {
            match &location.matcher {
                LocationMatch::Exact(path) => {
                    exact.entry(path.as_bytes().into()).or_insert(index);
                }
                LocationMatch::Prefix { path, no_regex } => prefixes.push(Prefix {
                    path: path.clone(),
                    no_regex: *no_regex,
                    index,
                }),
                LocationMatch::Regex {
                    pattern,
                    case_insensitive,
                } => {
                    let regex = regex::bytes::RegexBuilder::new(pattern)
                        .case_insensitive(*case_insensitive)
                        .build()
                        .map_err(|error| regex_error(pattern, &error, Some(&location.span)));
                    match regex {
                        Ok(regex) => regexes.push((regex, index)),
                        Err(error) => errors.push(error),
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        // Stable sort: equal lengths keep file order, so a duplicate prefix resolves to the first.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.path.len()));
        Ok(Locations {
            exact,
            prefixes,
            regexes,
        })
    }

    /// Index of the matching location for a normalised request path, or None (-> 404).
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        if let Some(index) = self.exact.get(path) {
            return Some(*index);
        }
        let longest = self
            .prefixes
            .iter()
            .find(|p| path.starts_with(p.path.as_bytes()));
        if let Some(prefix) = longest.filter(|p| p.no_regex) {
            return Some(prefix.index);
        }
        self.regexes
            .iter()
            .find(|(regex, _)| regex.is_match(path))
            .map(|(_, index)| *index)
            .or(longest.map(|p| p.index))
    }
}

/// Compiles a config regex, turning a failure into nginx's kind of error.
///
/// `span` is None for server names: `ServerName` carries none, so the caller's error has no
/// place (lowering, which has the span, can validate patterns earlier if it wants to).
pub(crate) fn compile_regex(
    pattern: &str,
    case_insensitive: bool,
    span: Option<&Span>,
) -> Result<Regex, ConfigError> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|error| regex_error(pattern, &error, span))
}

fn regex_error(pattern: &str, error: &regex::Error, span: Option<&Span>) -> ConfigError {
    ConfigError {
        span: span.cloned(),
        kind: ErrorKind::InvalidRegex {
            pattern: pattern.to_string(),
            message: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Handler, ProxySettings};

    fn exact(name: &str) -> ServerName {
        ServerName::Exact(name.to_string())
    }

    fn star_prefix(suffix: &str) -> ServerName {
        ServerName::WildcardPrefix {
            suffix: suffix.to_string(),
            include_bare: false,
        }
    }

    fn dot_prefix(suffix: &str) -> ServerName {
        ServerName::WildcardPrefix {
            suffix: suffix.to_string(),
            include_bare: true,
        }
    }

    fn star_suffix(prefix: &str) -> ServerName {
        ServerName::WildcardSuffix(prefix.to_string())
    }

    fn regex(pattern: &str) -> ServerName {
        ServerName::Regex(pattern.to_string())
    }

    #[test]
    fn server_names_follow_nginx_precedence() {
        let servers: Vec<(Vec<ServerName>, bool)> = vec![
            /* 0 */ (vec![exact("first.test")], false),
            /* 1 */ (vec![exact("www.example.com"), exact("")], false),
            /* 2 */ (vec![star_prefix(".example.com")], false),
            /* 3 */ (vec![star_prefix(".api.example.com")], false),
            /* 4 */ (vec![dot_prefix(".example.org")], false),
            /* 5 */ (vec![star_suffix("www.example.")], false),
            /* 6 */ (vec![star_suffix("www.example.co.")], false),
            /* 7 */ (vec![regex(r"^a\."), regex(r"^(.+)\.example\.com$")], true),
            /* 8 */ (vec![regex(r"\.example\.net$"), star_suffix("mail.")], true),
            /* 9 */ (vec![regex(r"^SHOUT\.test$")], false),
        ];
        let borrowed: Vec<(&[ServerName], bool)> =
            servers.iter().map(|(n, d)| (n.as_slice(), *d)).collect();
        let hosts = VirtualHosts::build(&borrowed).unwrap();
        let table = [
            // Exact beats every wildcard and regex.
            ("www.example.com", 1),
            ("", 1),
            // `*.` wildcards, longest first, at any depth; they do not match the bare domain.
            // They also beat regexes (both of server 7's match "a.example.com").
            ("a.example.com", 2),
            ("a.b.example.com", 2),
            ("v1.api.example.com", 3),
            ("x.v1.api.example.com", 3),
            ("api.example.com", 2),
            // `.example.org` matches the bare domain and subdomains.
            ("example.org", 4),
            ("deep.sub.example.org", 4),
            // Prefix wildcards beat suffix wildcards; suffix wildcards prefer the longest.
            ("www.example.org", 4),
            ("www.example.net", 5),
            ("www.example.co.uk", 6),
            // `www.example.*` needs something after the dot.
            ("www.example", 7),
            ("mail.example.net", 8),
            // Regexes in file order: server 7's `^a\.` before server 8's `\.example\.net$`.
            ("a.example.net", 7),
            ("b.example.net", 8),
            // Uppercase in a pattern makes it caseless, as nginx.
            ("shout.test", 9),
            // Nothing matched: the first default_server, not the first server.
            ("unknown.test", 7),
            ("example.com", 7),
        ];
        for (host, want) in table {
            assert_eq!(hosts.find(host), want, "host {host:?}");
        }
    }

    #[test]
    fn default_server_is_the_first_server_without_default_server() {
        let a = [exact("a.test")];
        let b = [exact("b.test")];
        let hosts = VirtualHosts::build(&[(&a, false), (&b, false)]).unwrap();
        assert_eq!(hosts.find("c.test"), 0);
        assert_eq!(hosts.find("b.test"), 1);
        // A name claimed twice belongs to the first server.
        let hosts = VirtualHosts::build(&[(&b, false), (&b, false)]).unwrap();
        assert_eq!(hosts.find("b.test"), 0);
    }

    #[test]
    fn bad_server_name_regexes_are_all_reported() {
        let names = [regex("(unclosed"), regex("[z-a]")];
        let errors = VirtualHosts::build(&[(&names, false)]).unwrap_err();
        assert_eq!(errors.0.len(), 2);
        assert!(matches!(
            &errors.0[0].kind,
            ErrorKind::InvalidRegex { pattern, .. } if pattern == "(unclosed"
        ));
    }

    fn location(matcher: LocationMatch, line: u32) -> Location {
        Location {
            matcher,
            handler: Handler::NotFound,
            proxy: ProxySettings::default(),
            span: Span {
                line,
                ..Span::builtin()
            },
        }
    }

    fn prefix(path: &str, no_regex: bool) -> LocationMatch {
        LocationMatch::Prefix {
            path: path.to_string(),
            no_regex,
        }
    }

    fn re(pattern: &str, case_insensitive: bool) -> LocationMatch {
        LocationMatch::Regex {
            pattern: pattern.to_string(),
            case_insensitive,
        }
    }

    #[test]
    fn locations_follow_nginx_precedence() {
        let locations: Vec<Location> = [
            /* 0 */ prefix("/", false),
            /* 1 */ LocationMatch::Exact("/".to_string()),
            /* 2 */ prefix("/static/", true),
            /* 3 */ prefix("/static/js/", false),
            /* 4 */ re(r"\.(png|jpg)$", true),
            /* 5 */ re(r"\.js$", false),
            /* 6 */ prefix("/api/", false),
            /* 7 */ re(r"^/api/v2/", false),
            /* 8 */ re(r"^/api/", false),
            /* 9 */ LocationMatch::Exact("/api/v2/health".to_string()),
            /* 10 */ prefix("/api/", true),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, m)| location(m, i as u32 + 1))
        .collect();
        let table = Locations::build(&locations).unwrap();
        let cases = [
            // `=` wins at once, even over a matching regex.
            ("/", Some(1)),
            ("/api/v2/health", Some(9)),
            // No regex matches: the longest prefix.
            ("/index.html", Some(0)),
            // `^~` as the longest prefix stops the regex search.
            ("/static/logo.png", Some(2)),
            // A longer plain prefix under a `^~` one: regexes are searched again.
            ("/static/js/app.js", Some(5)),
            ("/static/js/app.css", Some(3)),
            // Regexes beat a plain prefix; `~*` ignores case, `~` does not.
            ("/img/A.PNG", Some(4)),
            ("/x/APP.JS", Some(0)),
            // Regexes in file order: the first match wins, not the most specific.
            ("/photos/api/v2/a.jpg", Some(4)),
            ("/api/v2/users", Some(7)),
            ("/api/v1/users", Some(8)),
            // A duplicate prefix keeps the first (`/api/` without `^~`), so regexes still run.
            ("/api/", Some(8)),
        ];
        for (path, want) in cases {
            assert_eq!(table.find(path.as_bytes()), want, "path {path:?}");
        }
    }

    #[test]
    fn no_matching_location_is_none() {
        let locations = [
            location(prefix("/api/", false), 1),
            location(LocationMatch::Exact("/x".to_string()), 2),
            location(re("^/y", false), 3),
        ];
        let table = Locations::build(&locations).unwrap();
        assert_eq!(table.find(b"/other"), None);
        assert_eq!(table.find(b"/x/"), None);
        assert_eq!(table.find(b"/api"), None);
        assert_eq!(table.find(b"/yes"), Some(2));
        // Decoded paths need not be UTF-8; byte regexes still match around such bytes.
        assert_eq!(table.find(b"/y\xff"), Some(2));
    }

    #[test]
    fn bad_location_regexes_point_at_their_location() {
        let locations = [
            location(re("(a", false), 4),
            location(prefix("/", false), 5),
            location(re("b)", true), 6),
        ];
        let errors = Locations::build(&locations).unwrap_err();
        let lines: Vec<u32> = errors
            .0
            .iter()
            .map(|e| e.span.as_ref().map_or(0, |s| s.line))
            .collect();
        assert_eq!(lines, [4, 6]);
    }
}
