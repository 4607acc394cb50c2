//! The wording of each [`ErrorKind`], nginx's where nginx has the error, and its hint.
//!
//! Text the user wrote is shown shortened ([`shown`]): a config may hold a megabyte-long word,
//! and an error message that repeats it whole would bury the message (and the log). The place
//! (`file:line:col`) says where the whole text is. Must not import anything but `error`.

use std::fmt;
use std::path::Path;

use super::{ErrorKind, Expecting};

/// How many characters of a word the user wrote an error message shows.
const SHOWN_CHARS: usize = 60;

/// How many characters of a path an error message shows: real paths are longer than words,
/// and a path is only ever as long as an `include` pattern (bounded by the OS's `PATH_MAX`).
const SHOWN_PATH_CHARS: usize = 512;

/// A piece of user text as an error message shows it: its first characters, then `...` if
/// there was more.
pub(super) struct Shown<'a> {
    text: &'a str,
    limit: usize,
}

/// `text` shortened to [`SHOWN_CHARS`] characters.
pub(super) fn shown(text: &str) -> Shown<'_> {
    Shown {
        text,
        limit: SHOWN_CHARS,
    }
}

/// A path, shortened to [`SHOWN_PATH_CHARS`] characters.
fn shown_path(path: &Path) -> impl fmt::Display + '_ {
    PathShown(path)
}

struct PathShown<'a>(&'a Path);

impl fmt::Display for PathShown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string_lossy();
        let shown = Shown {
            text: &text,
            limit: SHOWN_PATH_CHARS,
        };
        write!(f, "{shown}")
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text.char_indices().nth(self.limit) {
            Some((end, _)) => write!(f, "{}...", &self.text[..end]),
            None => f.write_str(self.text),
        }
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
            ErrorKind::DuplicateServer { .. } => Some(
                "tether identifies servers by address; give one line a larger weight= instead"
                    .to_string(),
            ),
            ErrorKind::InvalidCookieName { .. } => {
                Some("a cookie name is letters, digits and any of !#$%&'*+-.^_`|~".to_string())
            }
            ErrorKind::HealthCheckOutsideUpstream => {
                Some("health_check belongs in the upstream block in tether".to_string())
            }
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind as K;
        match self {
            K::UnknownVariable { name } => write!(f, "unknown \"{}\" variable", shown(name)),
            K::InvalidRegex { pattern, message } => {
                write!(f, "invalid regex \"{}\": {message}", shown(pattern))
            }
            K::InvalidVariableSyntax { template } => {
                write!(f, "invalid variable syntax in \"{}\"", shown(template))
            }
            K::DuplicateVariable { name } => {
                write!(f, "variable \"{}\" is already defined", shown(name))
            }
            K::DuplicateMapEntry { pattern } => {
                write!(f, "conflicting parameter \"{}\" in map", shown(pattern))
            }
            K::MapCycle { cycle } => write!(
                f,
                "cycle in map variables: {}",
                cycle
                    .iter()
                    .map(|v| format!("${}", shown(v)))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
            K::InvalidHeaderName { name } => write!(f, "invalid header name \"{}\"", shown(name)),
            K::InvalidHeaderValue { value } => {
                write!(f, "invalid header value \"{}\"", shown(value))
            }
            K::HostNotFound { address } => {
                write!(f, "host not found in upstream \"{}\"", shown(address))
            }
            K::OpenFailed { path, reason } => {
                write!(f, "open() \"{}\" failed ({reason})", shown_path(path))
            }
            K::IncludeCycle { path } => {
                write!(f, "include cycle: \"{}\" includes itself", shown_path(path))
            }
            K::InvalidGlob { pattern, message } => {
                write!(
                    f,
                    "invalid include pattern \"{}\": {message}",
                    shown(pattern)
                )
            }
            K::Unexpected { found } => write!(f, "unexpected \"{found}\""),
            K::BlocksTooDeep { limit } => write!(f, "blocks nested deeper than {limit} levels"),
            K::IncludesTooDeep { limit } => {
                write!(f, "includes nested deeper than {limit} levels")
            }
            K::UnexpectedEof { expecting } => match expecting {
                Expecting::SemicolonOrBrace => {
                    write!(f, "unexpected end of file, expecting \";\" or \"}}\"")
                }
                Expecting::CloseBrace => write!(f, "unexpected end of file, expecting \"}}\""),
            },
            K::UnterminatedQuote => write!(f, "unterminated quoted string"),
            K::UnknownDirective { name, .. } => write!(f, "unknown directive \"{}\"", shown(name)),
            K::NotAllowedHere { name } => {
                write!(f, "\"{}\" directive is not allowed here", shown(name))
            }
            K::InvalidArgCount { name } => {
                write!(
                    f,
                    "invalid number of arguments in \"{}\" directive",
                    shown(name)
                )
            }
            K::NoOpeningBrace { name } => {
                write!(f, "directive \"{}\" has no opening \"{{\"", shown(name))
            }
            K::NotTerminated { name } => {
                write!(
                    f,
                    "directive \"{}\" is not terminated by \";\"",
                    shown(name)
                )
            }
            K::DuplicateDirective { name } => {
                write!(f, "\"{}\" directive is duplicate", shown(name))
            }
            K::NotSupported { name } => {
                write!(
                    f,
                    "directive \"{}\" is not supported by tether",
                    shown(name)
                )
            }
            K::NestedLocation => write!(f, "nested \"location\" is not supported by tether"),
            K::InvalidNumber { directive, value } => {
                write!(
                    f,
                    "invalid number \"{}\" in \"{}\" directive",
                    shown(value),
                    shown(directive)
                )
            }
            K::InvalidTime { directive, value } => {
                write!(
                    f,
                    "invalid time \"{}\" in \"{}\" directive",
                    shown(value),
                    shown(directive)
                )
            }
            K::InvalidSize { directive, value } => {
                write!(
                    f,
                    "invalid size \"{}\" in \"{}\" directive",
                    shown(value),
                    shown(directive)
                )
            }
            K::InvalidFlag { directive, value } => write!(
                f,
                "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                shown(value),
                shown(directive)
            ),
            K::InvalidValue { directive, value } => {
                write!(
                    f,
                    "invalid value \"{}\" in \"{}\" directive",
                    shown(value),
                    shown(directive)
                )
            }
            K::InvalidParameter { directive, value } => {
                write!(
                    f,
                    "invalid parameter \"{}\" in \"{}\" directive",
                    shown(value),
                    shown(directive)
                )
            }
            K::ValueNotSupported { directive, value } => write!(
                f,
                "\"{}\" in \"{}\" directive is not supported by tether",
                shown(value),
                shown(directive)
            ),
            K::InvalidPort { directive, value } => {
                write!(
                    f,
                    "invalid port in \"{}\" directive: \"{}\"",
                    shown(directive),
                    shown(value)
                )
            }
            K::ListenHostNotFound { address } => {
                write!(
                    f,
                    "host not found in \"{}\" of the \"listen\" directive",
                    shown(address)
                )
            }
            K::InvalidAddress { directive, address } => {
                write!(
                    f,
                    "invalid address \"{}\" in \"{}\" directive",
                    shown(address),
                    shown(directive)
                )
            }
            K::UnixSocketNotSupported { directive, address } => write!(
                f,
                "unix socket \"{}\" in \"{}\" directive is not supported by tether",
                shown(address),
                shown(directive)
            ),
            K::TlsNotSupported => write!(f, "\"listen ... ssl\": TLS is not supported yet"),
            K::DuplicateListen { addr } => write!(f, "duplicate listen {addr}"),
            K::DuplicateDefaultServer { addr } => {
                write!(f, "a duplicate default server for {addr}")
            }
            K::InvalidServerName { name } => {
                write!(f, "invalid server name or wildcard \"{}\"", shown(name))
            }
            K::InvalidLocationModifier { modifier } => {
                write!(f, "invalid location modifier \"{}\"", shown(modifier))
            }
            K::NamedLocationNotSupported { name } => {
                write!(
                    f,
                    "named location \"{}\" is not supported by tether",
                    shown(name)
                )
            }
            K::DuplicateLocation { path } => write!(f, "duplicate location \"{}\"", shown(path)),
            K::InvalidReturnCode { value } => write!(f, "invalid return code \"{}\"", shown(value)),
            K::InvalidUrlPrefix { url } => write!(f, "invalid URL prefix in \"{}\"", shown(url)),
            K::NoHost { url } => write!(
                f,
                "no host in \"{}\" of the \"proxy_pass\" directive",
                shown(url)
            ),
            K::HttpsNotSupported { url } => {
                write!(
                    f,
                    "proxy_pass to \"{}\": https upstreams are not supported yet",
                    shown(url)
                )
            }
            K::UnknownUpstream { name, .. } => {
                write!(f, "no upstream \"{}\" for proxy_pass", shown(name))
            }
            K::UpstreamWithPort { name, port } => {
                write!(
                    f,
                    "upstream \"{}\" may not have port {}",
                    shown(name),
                    shown(port)
                )
            }
            K::UriInRegexLocation => write!(
                f,
                "\"proxy_pass\" cannot have URI part in location given by regular expression"
            ),
            K::DuplicateUpstream { name } => write!(f, "duplicate upstream \"{}\"", shown(name)),
            K::NoServersInUpstream { name } => {
                write!(f, "no servers are inside upstream \"{}\"", shown(name))
            }
            K::InvalidVariableName { value } => {
                write!(f, "invalid variable name \"{}\"", shown(value))
            }
            K::DuplicateServer { address, upstream } => {
                write!(
                    f,
                    "duplicate server \"{}\" in upstream \"{}\"",
                    shown(address),
                    shown(upstream)
                )
            }
            K::DuplicateRoute { route, upstream } => {
                write!(
                    f,
                    "duplicate route \"{}\" in upstream \"{}\"",
                    shown(route),
                    shown(upstream)
                )
            }
            K::StickyRouteWithoutRoutes { upstream } => write!(
                f,
                "\"sticky route\" needs servers with \"route=\" in upstream \"{}\"",
                shown(upstream)
            ),
            K::InvalidCookieName { name } => write!(f, "invalid cookie name \"{}\"", shown(name)),
            K::HealthCheckOutsideUpstream => {
                write!(f, "\"health_check\" directive is not allowed here")
            }
        }
    }
}
