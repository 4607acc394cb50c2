//! Choosing a virtual server by `Host` and a location by path, with nginx's precedence rules.
//!
//! Owns [`VirtualHosts`] (`server_name` matching on one listen address), [`Locations`] (`location`
//! matching inside one server, nested and named locations too, in `locations`, on the path as
//! [`path::normalise`] makes it, for the host as [`host::normalise`] makes it) and
//! [`HostnameTable`], the exact/wildcard host lookup that `server_name` and
//! `map ... { hostnames; }` share. Everything here works on plain strings and bytes and the
//! `config` model: it must not import http, hyper or tokio. Tables are built once per config
//! snapshot; the `find` methods run per request, so they never allocate.

pub mod host;
mod locations;
pub mod path;

pub use locations::Locations;

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use crate::config::{ConfigError, ConfigErrors, ErrorKind, ServerName, Span};

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

    /// Index (into `servers`) of the default server: what a TLS client that names no server
    /// (no SNI) gets.
    pub fn default_index(&self) -> usize {
        self.default
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
mod tests;
