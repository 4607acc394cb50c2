//! The kinds of config error, each variant with its message beside it: nginx's wording where
//! nginx has the error, and a hint for the few that can say how to fix themselves.
//!
//! Text the user wrote reaches a message only through [`shown`], [`shown_path`] or
//! [`shown_cycle`], which shorten it. Must not import anything but `error::shown`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

use super::shown::{shown, shown_cycle, shown_path};

/// What the parser was waiting for when a file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expecting {
    /// Inside a directive: `;` or a block.
    SemicolonOrBrace,
    /// Inside a block: its closing `}`.
    CloseBrace,
}

impl fmt::Display for Expecting {
    /// The end of [`ErrorKind::UnexpectedEof`]'s message, quoted as nginx quotes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expecting::SemicolonOrBrace => "\";\" or \"}\"",
            Expecting::CloseBrace => "\"}\"",
        })
    }
}

/// What went wrong. Each variant's `#[error]` is its message (its `Display`), the text before
/// ` in file:line:col`. Variants used outside `config` (by `vars` and `snapshot`) are marked.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// A `$name` that no built-in or `map` defines (used by vars).
    #[error("unknown \"{}\" variable", shown(.name))]
    UnknownVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// A regex that does not compile (used by vars and route).
    #[error("invalid regex \"{}\": {message}", shown(.pattern))]
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// `$x` or `${x}` written wrongly, e.g. `${host` (used by vars).
    #[error("invalid variable syntax in \"{}\"", shown(.template))]
    InvalidVariableSyntax {
        /// The whole template as written.
        template: String,
    },
    /// A `map` defines a variable that already exists: a built-in or another map's (used by
    /// vars).
    #[error("variable \"{}\" is already defined", shown(.name))]
    DuplicateVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// The same pattern twice in one `map` (nginx: `conflicting parameter`; used by vars).
    #[error("conflicting parameter \"{}\" in map", shown(.pattern))]
    DuplicateMapEntry {
        /// The pattern as written.
        pattern: String,
    },
    /// Maps whose values depend on each other in a loop (used by vars).
    #[error("cycle in map variables: {}", shown_cycle(.cycle))]
    MapCycle {
        /// Variable names along the cycle, the first repeated at the end: `["a", "b", "a"]`.
        cycle: Vec<String>,
    },
    /// A header name that HTTP does not allow (used by snapshot).
    #[error("invalid header name \"{}\"", shown(.name))]
    InvalidHeaderName {
        /// The name as written.
        name: String,
    },
    /// A header value that HTTP does not allow (used by snapshot).
    #[error("invalid header value \"{}\"", shown(.value))]
    InvalidHeaderValue {
        /// The value as written.
        value: String,
    },
    /// An upstream server's host name that does not resolve (used by snapshot).
    #[error("host not found in upstream \"{}\"", shown(.address))]
    HostNotFound {
        /// The address as written.
        address: String,
    },
    /// A file (main or included) could not be read.
    #[error("open() \"{}\" failed ({reason})", shown_path(.path))]
    OpenFailed {
        /// The path tried.
        path: PathBuf,
        /// The operating system's reason, e.g. `No such file or directory`.
        reason: String,
    },
    /// An `include` that (directly or not) includes the file it is in.
    #[error("include cycle: \"{}\" includes itself", shown_path(.path))]
    IncludeCycle {
        /// The file included a second time.
        path: PathBuf,
    },
    /// An `include` pattern that is not a valid glob.
    #[error("invalid include pattern \"{}\": {message}", shown(.pattern))]
    InvalidGlob {
        /// The pattern as written.
        pattern: String,
        /// The glob library's message.
        message: String,
    },
    /// A character that cannot appear here, e.g. `}` where `;` was due.
    #[error("unexpected \"{found}\"")]
    Unexpected {
        /// The character found.
        found: char,
    },
    /// A `{` that would open a block nested deeper than `limit` (counting the blocks around
    /// an `include`).
    #[error("blocks nested deeper than {limit} levels")]
    BlocksTooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// An `include` in a file included `limit` levels deep.
    #[error("includes nested deeper than {limit} levels")]
    IncludesTooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// The file ended inside a directive or a block.
    #[error("unexpected end of file, expecting {expecting}")]
    UnexpectedEof {
        /// What was still missing.
        expecting: Expecting,
    },
    /// A quoted string that the file never closes.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A directive tether does not know at all.
    #[error("unknown directive \"{}\"", shown(.name))]
    UnknownDirective {
        /// The name as written.
        name: String,
        /// The closest directive tether knows, if one is close enough.
        suggestion: Option<String>,
    },
    /// A known directive in a block where it has no meaning.
    #[error("\"{}\" directive is not allowed here", shown(.name))]
    NotAllowedHere {
        /// Directive name.
        name: String,
    },
    /// Too few or too many arguments.
    #[error("invalid number of arguments in \"{}\" directive", shown(.name))]
    InvalidArgCount {
        /// Directive name.
        name: String,
    },
    /// A block directive written with `;`.
    #[error("directive \"{}\" has no opening \"{{\"", shown(.name))]
    NoOpeningBrace {
        /// Directive name.
        name: String,
    },
    /// A simple directive written with a block.
    #[error("directive \"{}\" is not terminated by \";\"", shown(.name))]
    NotTerminated {
        /// Directive name.
        name: String,
    },
    /// A directive that may appear once per block, written twice.
    #[error("\"{}\" directive is duplicate", shown(.name))]
    DuplicateDirective {
        /// Directive name.
        name: String,
    },
    /// Two different balancing methods in one upstream. nginx warns "load balancing method
    /// redefined" and keeps the last; which one the author meant is a guess tether will not
    /// make.
    #[error(
        "\"{}\" and \"{}\" (at {first_at}) are both balancing methods of upstream \"{}\"",
        shown(.second), shown(.first), shown(.upstream)
    )]
    TwoBalancingMethods {
        /// The upstream's name.
        upstream: String,
        /// The method written first.
        first: String,
        /// Where the first was written (`file:line:col`).
        first_at: String,
        /// The method written second (where the error points).
        second: String,
    },
    /// A real nginx directive that tether does not implement.
    #[error("directive \"{}\" is not supported by tether", shown(.name))]
    NotSupported {
        /// Directive name.
        name: String,
    },
    /// `error_log` in a `location`.
    #[error(
        "\"error_log\" in a location is not supported by tether: write it in the server, http \
         or main context"
    )]
    ErrorLogPerLocation,
    /// Servers with the same first name but different `error_log`s: events name their server
    /// by that name, so it cannot tell them apart.
    #[error(
        "servers named \"{}\" have different \"error_log\"s: tether tells a server's events \
         apart by its first server_name",
        shown(.name)
    )]
    ErrorLogNameClash {
        /// The first `server_name` they share.
        name: String,
    },
    /// A location nested in an exact (`=`) location.
    #[error(
        "location \"{}\" cannot be inside the exact location \"{}\"",
        shown(.location),
        shown(.parent)
    )]
    LocationInsideExact {
        /// The nested location's path or pattern.
        location: String,
        /// The exact location's path.
        parent: String,
    },
    /// A location nested in a named location.
    #[error(
        "location \"{}\" cannot be inside the named location \"{}\"",
        shown(.location),
        shown(.parent)
    )]
    LocationInsideNamed {
        /// The nested location's path or pattern.
        location: String,
        /// The named location's name.
        parent: String,
    },
    /// A nested location whose path does not start with its parent's.
    #[error("location \"{}\" is outside location \"{}\"", shown(.location), shown(.parent))]
    LocationOutside {
        /// The nested location's path.
        location: String,
        /// The parent's path or pattern.
        parent: String,
    },
    /// A status in `error_page` outside 300..=599.
    #[error("value \"{}\" must be between 300 and 599", shown(.value))]
    ErrorPageCode {
        /// The value as written.
        value: String,
    },
    /// A value that should be a non-negative integer.
    #[error("invalid number \"{}\" in \"{}\" directive", shown(.value), shown(.directive))]
    InvalidNumber {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be a time like `30s` or `1m30s`.
    #[error("invalid time \"{}\" in \"{}\" directive", shown(.value), shown(.directive))]
    InvalidTime {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be a size like `512`, `4k`, `1m`.
    #[error("invalid size \"{}\" in \"{}\" directive", shown(.value), shown(.directive))]
    InvalidSize {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A value that should be `on` or `off`.
    #[error(
        "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
        shown(.value),
        shown(.directive),
    )]
    InvalidFlag {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A keyword argument outside the directive's closed set.
    #[error("invalid value \"{}\" in \"{}\" directive", shown(.value), shown(.directive))]
    InvalidValue {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// An optional parameter (`weight=`, `default_server`, ...) that is unknown or malformed.
    #[error("invalid parameter \"{}\" in \"{}\" directive", shown(.value), shown(.directive))]
    InvalidParameter {
        /// Directive name.
        directive: String,
        /// The parameter as written.
        value: String,
    },
    /// `proxy_redirect default` where `proxy_pass` has variables (or is missing), as nginx.
    #[error(
        "\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables"
    )]
    RedirectDefaultWithVariables,
    /// A valid nginx value or parameter that tether does not implement (`gzip on`).
    #[error(
        "\"{}\" in \"{}\" directive is not supported by tether",
        shown(.value),
        shown(.directive),
    )]
    ValueNotSupported {
        /// Directive name.
        directive: String,
        /// The value as written.
        value: String,
    },
    /// A port outside 1..=65535 or not a number.
    #[error("invalid port in \"{}\" directive: \"{}\"", shown(.directive), shown(.value))]
    InvalidPort {
        /// Directive name.
        directive: String,
        /// The port as written.
        value: String,
    },
    /// `listen` on a host name tether cannot bind (only IP literals, `*` and `localhost`).
    #[error("host not found in \"{}\" of the \"listen\" directive", shown(.address))]
    ListenHostNotFound {
        /// The address as written.
        address: String,
    },
    /// An address that is not `host[:port]` or `[v6][:port]`.
    #[error("invalid address \"{}\" in \"{}\" directive", shown(.address), shown(.directive))]
    InvalidAddress {
        /// Directive name.
        directive: String,
        /// The address as written.
        address: String,
    },
    /// A `unix:` socket address.
    #[error(
        "unix socket \"{}\" in \"{}\" directive is not supported by tether",
        shown(.address),
        shown(.directive),
    )]
    UnixSocketNotSupported {
        /// Directive name.
        directive: String,
        /// The address as written.
        address: String,
    },
    /// `resolver ... ipv4=off ipv6=off` (nginx's words).
    #[error("\"ipv4\" and \"ipv6\" cannot both be \"off\"")]
    ResolverAsksNothing,
    /// `server NAME resolve` with no `resolver` in force (nginx's words).
    #[error("no resolver defined to resolve {name}")]
    NoResolver {
        /// The server's address as written.
        name: String,
    },
    /// A server on a `listen ... ssl` address with no `ssl_certificate` (nginx's words).
    #[error("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive")]
    NoCertificate,
    /// An `ssl_certificate` without an `ssl_certificate_key` to pair with.
    #[error("no \"ssl_certificate_key\" is defined for certificate \"{}\"", shown_path(.certificate))]
    NoCertificateKey {
        /// The certificate's path.
        certificate: PathBuf,
    },
    /// More `ssl_certificate_key`s than `ssl_certificate`s.
    #[error("no \"ssl_certificate\" is defined for certificate key \"{}\"", shown_path(.key))]
    NoCertificateForKey {
        /// The key's path.
        key: PathBuf,
    },
    /// `ssl_protocols` naming nothing rustls speaks.
    #[error("no protocol tether speaks in \"ssl_protocols\"")]
    NoTlsProtocols,
    /// The old `ssl on;`.
    #[error("the \"ssl\" directive is not supported by tether")]
    SslDirective,
    /// `ssl_verify_client optional_no_ca`.
    #[error("\"ssl_verify_client optional_no_ca\" is not supported by tether")]
    VerifyClientNoCa,
    /// `ssl_verify_client on|optional` with no CA to verify against.
    #[error(
        "no \"ssl_client_certificate\" or \"ssl_trusted_certificate\" for \"ssl_verify_client\""
    )]
    NoClientCertificate,
    /// A TLS file (certificate, key, CA list, OCSP response) that cannot be used (used by tls).
    #[error("cannot load {role} \"{}\": {reason}", shown_path(.path))]
    TlsFile {
        /// What the file is meant to hold.
        role: TlsFileRole,
        /// The file.
        path: PathBuf,
        /// Why: the operating system's reason, or what is wrong in it.
        reason: String,
    },
    /// `ssl_ecdh_curve` naming no group rustls has.
    #[error("no key exchange group tether has in \"ssl_ecdh_curve {}\"", shown(.curves))]
    NoKeyExchangeGroups {
        /// The value as written.
        curves: String,
    },
    /// A key that is not the private key of its certificate (used by tls).
    #[error(
        "certificate key \"{}\" does not match certificate \"{}\"",
        shown_path(.key),
        shown_path(.certificate),
    )]
    KeyMismatch {
        /// The `ssl_certificate`.
        certificate: PathBuf,
        /// The `ssl_certificate_key`.
        key: PathBuf,
    },
    /// `ssl_ciphers` leaving no suite rustls has for the allowed protocols (used by tls).
    #[error("no cipher suite tether has is left by \"ssl_ciphers\" \"{}\"", shown(.ciphers))]
    NoCiphers {
        /// The cipher string as written.
        ciphers: String,
    },
    /// The same address listed twice in one server.
    #[error("duplicate listen {}", crate::config::model::shown_listen(*.addr))]
    DuplicateListen {
        /// The address.
        addr: SocketAddr,
    },
    /// Two servers claiming `default_server` on one address.
    #[error("a duplicate default server for {addr}")]
    DuplicateDefaultServer {
        /// The address.
        addr: SocketAddr,
    },
    /// A `server_name` with a misplaced `*`.
    #[error("invalid server name or wildcard \"{}\"", shown(.name))]
    InvalidServerName {
        /// The name as written.
        name: String,
    },
    /// `location` with a modifier other than `=`, `^~`, `~`, `~*`.
    #[error("invalid location modifier \"{}\"", shown(.modifier))]
    InvalidLocationModifier {
        /// The modifier as written.
        modifier: String,
    },
    /// A named location (`@name`) inside another location.
    #[error("named location \"{}\" can be on the server level only", shown(.name))]
    NamedLocationNotAtServerLevel {
        /// The name as written, with `@`.
        name: String,
    },
    /// Two locations with the same match in one server.
    #[error("duplicate location \"{}\"", shown(.path))]
    DuplicateLocation {
        /// The path or pattern.
        path: String,
    },
    /// A `return` code that is not 0..=999 (or not a URL).
    #[error("invalid return code \"{}\"", shown(.value))]
    InvalidReturnCode {
        /// The code as written.
        value: String,
    },
    /// A `proxy_pass` URL that does not start with `http://`.
    #[error("invalid URL prefix in \"{}\"", shown(.url))]
    InvalidUrlPrefix {
        /// The URL as written.
        url: String,
    },
    /// A `proxy_pass` URL without a host.
    #[error("no host in \"{}\" of the \"proxy_pass\" directive", shown(.url))]
    NoHost {
        /// The URL as written.
        url: String,
    },
    /// `proxy_pass http://NAME` where NAME is no upstream but one typo away from one.
    #[error("no upstream \"{}\" for proxy_pass", shown(.name))]
    UnknownUpstream {
        /// The name as written.
        name: String,
        /// The closest upstream name, if one is close enough.
        suggestion: Option<String>,
    },
    /// `proxy_pass http://NAME:PORT` where NAME is an upstream (which has no port).
    #[error("upstream \"{}\" may not have port {}", shown(.name), shown(.port))]
    UpstreamWithPort {
        /// The upstream name.
        name: String,
        /// The port written after it.
        port: String,
    },
    /// `proxy_pass` with a URI part inside a regex location.
    #[error("\"proxy_pass\" cannot have URI part in location given by regular expression")]
    UriInRegexLocation,
    /// `proxy_pass` with a literal URI part inside `if` (nginx's rule for nameless locations).
    #[error("\"proxy_pass\" cannot have URI part inside \"if\" statement")]
    UriInIf,
    /// An `if` condition nginx would not parse.
    #[error("invalid condition \"{}\"", shown(.condition))]
    InvalidCondition {
        /// The condition as written.
        condition: String,
    },
    /// `if (-f ...)` and the other file tests: tether serves no files.
    #[error("file test \"{}\" in \"if\" is not supported by tether", shown(.operator))]
    FileTestNotSupported {
        /// `-f`, `!-d`, ...
        operator: String,
    },
    /// A directive inside `if` that nginx allows there but tether does not carry over.
    #[error("\"{}\" inside \"if\" is not supported by tether", shown(.name))]
    NotAllowedInIf {
        /// The directive.
        name: String,
    },
    /// `set` on a variable tether computes itself (or a `map`'s).
    #[error("the \"{}\" variable cannot be changed with \"set\"", shown(.name))]
    UnchangeableVariable {
        /// Variable name without `$`.
        name: String,
    },
    /// Two `log_format`s with one name (`combined` is predefined).
    #[error("duplicate \"log_format\" name \"{}\"", shown(.name))]
    DuplicateLogFormat {
        /// The name.
        name: String,
    },
    /// `access_log` names a format no `log_format` defines.
    #[error("unknown log format \"{}\"", shown(.name))]
    UnknownLogFormat {
        /// The name.
        name: String,
    },
    /// Two `upstream` blocks with one name.
    #[error("duplicate upstream \"{}\"", shown(.name))]
    DuplicateUpstream {
        /// The name.
        name: String,
    },
    /// An `upstream` block without `server` lines.
    #[error("no servers are inside upstream \"{}\"", shown(.name))]
    NoServersInUpstream {
        /// The upstream name.
        name: String,
    },
    /// A `map` target or a `sticky route` argument that is not a `$variable`.
    #[error("invalid variable name \"{}\"", shown(.value))]
    InvalidVariableName {
        /// The word as written.
        value: String,
    },
    /// Two `server` lines of one upstream with the same `route=`.
    #[error("duplicate route \"{}\" in upstream \"{}\"", shown(.route), shown(.upstream))]
    DuplicateRoute {
        /// The route as written.
        route: String,
        /// The upstream name.
        upstream: String,
    },
    /// `sticky route` in an upstream where no server has a `route=`.
    #[error("\"sticky route\" needs servers with \"route=\" in upstream \"{}\"", shown(.upstream))]
    StickyRouteWithoutRoutes {
        /// The upstream name.
        upstream: String,
    },
    /// `sticky learn` without one of its required parameters.
    #[error("\"sticky learn\" must have \"{}\" parameter", shown(.parameter))]
    StickyLearnMissing {
        /// `create`, `lookup` or `zone`.
        parameter: &'static str,
    },
    /// A `sticky learn create=` variable tether cannot learn from.
    #[error("\"sticky learn\" cannot create sessions from \"{}\"", shown(.value))]
    StickyLearnSource {
        /// The variable as written.
        value: String,
    },
    /// Two `sticky learn` groups naming one zone: their servers' values would mix.
    #[error("zone \"{}\" is already used by upstream \"{}\"", shown(.name), shown(.upstream))]
    StickyLearnZoneShared {
        /// Zone name.
        name: String,
        /// The upstream that named it first.
        upstream: String,
    },
    /// A `sync=` that is not `redis://HOST[:PORT][/DB]`.
    #[error("invalid sync store \"{}\" (expected redis://HOST[:PORT][/DB])", shown(.value))]
    InvalidSyncUrl {
        /// The URL as written.
        value: String,
    },
    /// A `sticky cookie` name that is not an RFC 6265 token.
    #[error("invalid cookie name \"{}\"", shown(.name))]
    InvalidCookieName {
        /// The name as written.
        name: String,
    },
    /// `health_check` outside an `upstream` (nginx Plus puts it in a `location`).
    #[error("\"health_check\" directive is not allowed here")]
    HealthCheckOutsideUpstream,
    /// `proxy_ssl_protocols` naming no version tether speaks (TLSv1.2, TLSv1.3).
    #[error("\"proxy_ssl_protocols\" names no protocol tether speaks (TLSv1.2, TLSv1.3)")]
    NoTlsVersion,
    /// A `proxy_ssl_*` file that cannot be read or holds nothing usable (used by tls).
    #[error("cannot load \"{}\" of \"{}\": {}", shown_path(.path), shown(.directive), shown(.reason))]
    UpstreamTlsFile {
        /// The directive naming it.
        directive: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `proxy_ssl_verify on` with nothing to verify against (nginx's own error).
    #[error("no \"proxy_ssl_trusted_certificate\" for \"proxy_ssl_verify\"")]
    VerifyWithoutTrustedCertificate,
    /// One of `proxy_ssl_certificate` / `proxy_ssl_certificate_key` without the other.
    #[error("\"{}\" is set without \"{}\"", shown(.set), shown(.missing))]
    ClientCertificateHalf {
        /// The directive in effect.
        set: String,
        /// The one missing.
        missing: String,
    },
    /// A `proxy_ssl_name` that is neither a DNS name nor an IP address (used by tls).
    #[error("invalid \"proxy_ssl_name\" \"{}\"", shown(.name))]
    InvalidSslName {
        /// The name as rendered.
        name: String,
    },
    // limit_req / limit_conn (`lower::limits`)
    /// A `limit_req_zone` or `limit_conn_zone` without its `zone=NAME:SIZE`.
    #[error("\"{}\" must have \"zone\" parameter", shown(.directive))]
    MissingZoneParameter {
        /// Directive name.
        directive: String,
    },
    /// A zone smaller than nginx allows (32k: eight pages).
    #[error("zone \"{}\" is too small", shown(.name))]
    ZoneTooSmall {
        /// Zone name.
        name: String,
    },
    /// Two zones of one kind with the same name.
    #[error("duplicate zone \"{}\"", shown(.name))]
    DuplicateZone {
        /// Zone name.
        name: String,
    },
    /// A `limit_req` or `limit_conn` naming a zone no `*_zone` directive declares.
    #[error("unknown zone \"{}\" in \"{}\" directive", shown(.name), shown(.directive))]
    UnknownZone {
        /// Directive name.
        directive: String,
        /// Zone name.
        name: String,
    },
}

/// What a TLS file is meant to hold, as [`ErrorKind::TlsFile`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFileRole {
    /// `ssl_certificate`.
    Certificate,
    /// `ssl_certificate_key`.
    CertificateKey,
    /// `ssl_client_certificate` or `ssl_trusted_certificate`.
    ClientCertificates,
    /// `ssl_stapling_file`.
    StaplingFile,
}

impl fmt::Display for TlsFileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFileRole::Certificate => "certificate",
            TlsFileRole::CertificateKey => "certificate key",
            TlsFileRole::ClientCertificates => "client certificates",
            TlsFileRole::StaplingFile => "stapling file",
        })
    }
}

impl ErrorKind {
    /// A hint printed after the location, e.g. `did you mean "proxy_pass"?`.
    pub(super) fn hint(&self) -> Option<String> {
        match self {
            ErrorKind::UnknownDirective {
                suggestion: Some(s),
                ..
            }
            | ErrorKind::UnknownUpstream {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean \"{}\"?", shown(s))),
            ErrorKind::ListenHostNotFound { .. } => {
                Some("tether listens on IP addresses, \"*\" or localhost".to_string())
            }
            ErrorKind::InvalidCookieName { .. } => {
                Some("a cookie name is letters, digits and any of !#$%&'*+-.^_`|~".to_string())
            }
            ErrorKind::SslDirective => {
                Some("write the \"ssl\" parameter of \"listen\" instead".to_string())
            }
            ErrorKind::VerifyClientNoCa => {
                Some("tether verifies every client certificate it accepts".to_string())
            }
            ErrorKind::NoTlsProtocols => Some("rustls speaks TLSv1.2 and TLSv1.3".to_string()),
            ErrorKind::NoKeyExchangeGroups { .. } => Some(
                "tether has X25519, prime256v1, secp384r1, X25519MLKEM768, SecP256r1MLKEM768, \
                 MLKEM768 and MLKEM1024"
                    .to_string(),
            ),
            ErrorKind::TwoBalancingMethods { .. } => Some("keep one".to_string()),
            ErrorKind::NotAllowedInIf { .. } => Some(
                "inside \"if\" tether takes return, rewrite, set, break, add_header, proxy_pass \
                 and proxy_set_header; choose other values with a \"map\" instead"
                    .to_string(),
            ),
            ErrorKind::FileTestNotSupported { .. } => {
                Some("tether serves no files; test variables with =, != or ~ instead".to_string())
            }
            ErrorKind::HealthCheckOutsideUpstream => {
                Some("health_check belongs in the upstream block in tether".to_string())
            }
            _ => None,
        }
    }
}
