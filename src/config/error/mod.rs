//! Config errors, rendered like nginx's plus a column and a hint:
//! `unknown directive "proxy_pas" in conf/tether.conf:12:5 (did you mean "proxy_pass"?)`.
//!
//! Owns [`ConfigError`] and [`ErrorKind`]; `wording` says each kind in words. One variant per
//! kind of problem, with structured fields, so callers and tests match on meaning rather than on
//! text. Must not import anything from `config` but `source`.

mod wording;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::source::Span;

/// One problem in a config, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where; `None` for whole-file problems (e.g. the main file cannot be read).
    pub span: Option<Span>,
    /// What.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// An error at a place in a file.
    pub fn at(span: &Span, kind: ErrorKind) -> ConfigError {
        ConfigError {
            span: Some(span.clone()),
            kind,
        }
    }
}

/// What the parser was waiting for when a file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expecting {
    /// Inside a directive: `;` or a block.
    SemicolonOrBrace,
    /// Inside a block: its closing `}`.
    CloseBrace,
}

/// What went wrong. Variants used outside `config` (by `vars` and `snapshot`) are marked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `unknown "name" variable` (used by vars).
    UnknownVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// A regex that does not compile (used by vars and route).
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// `$x` or `${x}` written wrongly, e.g. `${host` (used by vars).
    InvalidVariableSyntax {
        /// The whole template as written.
        template: String,
    },
    /// A `map` defines a variable that already exists: a built-in or another map's (used by
    /// vars).
    DuplicateVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// The same pattern twice in one `map` (nginx: `conflicting parameter`; used by vars).
    DuplicateMapEntry {
        /// The pattern as written.
        pattern: String,
    },
    /// Maps whose values depend on each other in a loop (used by vars).
    MapCycle {
        /// Variable names along the cycle, the first repeated at the end: `["a", "b", "a"]`.
        cycle: Vec<String>,
    },
    /// `invalid header name "x"` (used by snapshot).
    InvalidHeaderName {
        /// The name as written.
        name: String,
    },
    /// `invalid header value "x"` (used by snapshot).
    InvalidHeaderValue {
        /// The value as written.
        value: String,
    },
    /// `host not found in upstream "x"` (used by snapshot when resolving addresses).
    HostNotFound {
        /// The address as written.
        address: String,
    },
    /// A file (main or included) could not be read.
    OpenFailed {
        /// The path tried.
        path: PathBuf,
        /// The operating system's reason, e.g. `No such file or directory`.
        reason: String,
    },
    /// An `include` that (directly or not) includes the file it is in.
    IncludeCycle {
        /// The file included a second time.
        path: PathBuf,
    },
    /// An `include` pattern that is not a valid glob.
    InvalidGlob {
        /// The pattern as written.
        pattern: String,
        /// The glob library's message.
        message: String,
    },
    /// A character that cannot appear here, e.g. `}` where `;` was due.
    Unexpected {
        /// The character found.
        found: char,
    },
    /// A `{` that would open a block nested deeper than `limit` (counting the blocks around
    /// an `include`).
    BlocksTooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// An `include` in a file included `limit` levels deep.
    IncludesTooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// The file ended inside a directive or a block.
    UnexpectedEof {
        /// What was still missing.
        expecting: Expecting,
    },
    /// A quoted string that the file never closes.
    UnterminatedQuote,
    /// A directive tether does not know at all.
    UnknownDirective {
        /// The name as written.
        name: String,
        /// The closest directive tether knows, if one is close enough.
        suggestion: Option<String>,
    },
    /// A known directive in a block where it has no meaning.
    NotAllowedHere {
        /// Directive name.
        name: String,
    },
    /// Too few or too many arguments.
    InvalidArgCount {
        /// Directive name.
        name: String,
    },
    /// A block directive written with `;`.
    NoOpeningBrace {
        /// Directive name.
        name: String,
    },
    /// A simple directive written with a block.
    NotTerminated {
        /// Directive name.
        name: String,
    },
    /// A directive that may appear once per block, written twice.
    DuplicateDirective {
        /// Directive name.
        name: String,
    },
    /// A real nginx directive that tether does not implement.
    NotSupported {
        /// Directive name.
        name: String,
    },
    /// A `location` inside a `location`.
    NestedLocation,
    /// A value that should be a non-negative integer.
    InvalidNumber {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be a time like `30s` or `1m30s`.
    InvalidTime {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be a size like `512`, `4k`, `1m`.
    InvalidSize {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be `on` or `off`.
    InvalidFlag {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A keyword argument outside the directive's closed set.
    InvalidValue {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// An optional parameter (`weight=`, `default_server`, ...) that is unknown or malformed.
    InvalidParameter {
        /// Directive name.
        directive: String,
        /// The parameter as written.
        value: String,
    },
    /// A valid nginx value or parameter that tether does not implement (`gzip on`).
    ValueNotSupported {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A port outside 1..=65535 or not a number.
    InvalidPort {
        /// Directive name.
        directive: String,
        /// The port as written.
        value: String,
    },
    /// `listen` on a host name tether cannot bind (only IP literals, `*` and `localhost`).
    ListenHostNotFound {
        /// The address as written.
        address: String,
    },
    /// An address that is not `host[:port]` or `[v6][:port]`.
    InvalidAddress {
        /// Directive name.
        directive: String,
        /// The address as written.
        address: String,
    },
    /// A `unix:` socket address.
    UnixSocketNotSupported {
        /// Directive name.
        directive: String,
        /// The address as written.
        address: String,
    },
    /// `listen ... ssl` (TLS arrives in a later issue).
    TlsNotSupported,
    /// The same address listed twice in one server.
    DuplicateListen {
        /// The address.
        addr: SocketAddr,
    },
    /// Two servers claiming `default_server` on one address.
    DuplicateDefaultServer {
        /// The address.
        addr: SocketAddr,
    },
    /// A `server_name` with a misplaced `*`.
    InvalidServerName {
        /// The name as written.
        name: String,
    },
    /// `location` with a modifier other than `=`, `^~`, `~`, `~*`.
    InvalidLocationModifier {
        /// The modifier as written.
        modifier: String,
    },
    /// A named location (`@name`): only useful with directives tether does not support.
    NamedLocationNotSupported {
        /// The name as written, with `@`.
        name: String,
    },
    /// Two locations with the same match in one server.
    DuplicateLocation {
        /// The path or pattern.
        path: String,
    },
    /// A `return` code that is not 0..=999 (or not a URL).
    InvalidReturnCode {
        /// The code as written.
        value: String,
    },
    /// A `proxy_pass` URL that does not start with `http://`.
    InvalidUrlPrefix {
        /// The URL as written.
        url: String,
    },
    /// A `proxy_pass` URL without a host.
    NoHost {
        /// The URL as written.
        url: String,
    },
    /// `proxy_pass https://...` (TLS to upstreams arrives in a later issue).
    HttpsNotSupported {
        /// The URL as written.
        url: String,
    },
    /// `proxy_pass http://NAME` where NAME is neither an upstream nor an address with a port.
    UnknownUpstream {
        /// The name as written.
        name: String,
        /// The closest upstream name, if one is close enough.
        suggestion: Option<String>,
    },
    /// `proxy_pass http://NAME:PORT` where NAME is an upstream (which has no port).
    UpstreamWithPort {
        /// The upstream name.
        name: String,
        /// The port written after it.
        port: String,
    },
    /// `proxy_pass` with a URI part inside a regex location.
    UriInRegexLocation,
    /// Two `upstream` blocks with one name.
    DuplicateUpstream {
        /// The name.
        name: String,
    },
    /// An `upstream` block without `server` lines.
    NoServersInUpstream {
        /// The upstream name.
        name: String,
    },
    /// A `map` target or a `sticky route` argument that is not a `$variable`.
    InvalidVariableName {
        /// The word as written.
        value: String,
    },
    /// Two `server` lines of one upstream with the same address as written: tether identifies
    /// a server by its address, so the two would silently merge.
    DuplicateServer {
        /// The address as written.
        address: String,
        /// The upstream name.
        upstream: String,
    },
    /// Two `server` lines of one upstream with the same `route=`.
    DuplicateRoute {
        /// The route as written.
        route: String,
        /// The upstream name.
        upstream: String,
    },
    /// `sticky route` in an upstream where no server has a `route=`.
    StickyRouteWithoutRoutes {
        /// The upstream name.
        upstream: String,
    },
    /// A `sticky cookie` name that is not an RFC 6265 token.
    InvalidCookieName {
        /// The name as written.
        name: String,
    },
    /// `health_check` outside an `upstream` (nginx Plus puts it in a `location`).
    HealthCheckOutsideUpstream,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(span) = &self.span {
            write!(f, " in {span}")?;
        }
        if let Some(hint) = self.kind.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every error found in one config (lowering reports them all, not just the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::SourceFile;

    #[test]
    fn renders_location_then_hint() {
        let file = SourceFile::new("conf/tether.conf", "a\n".repeat(11) + "    proxy_pas x;");
        let error = ConfigError::at(
            &file.span_at(26),
            ErrorKind::UnknownDirective {
                name: "proxy_pas".into(),
                suggestion: Some("proxy_pass".into()),
            },
        );
        assert_eq!(
            error.to_string(),
            "unknown directive \"proxy_pas\" in conf/tether.conf:12:5 (did you mean \"proxy_pass\"?)"
        );
    }

    #[test]
    fn whole_file_errors_have_no_location() {
        let error = ConfigError {
            span: None,
            kind: ErrorKind::OpenFailed {
                path: "x.conf".into(),
                reason: "No such file or directory".into(),
            },
        };
        assert_eq!(
            error.to_string(),
            "open() \"x.conf\" failed (No such file or directory)"
        );
    }
}
