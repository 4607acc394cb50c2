//! Config errors, rendered like nginx's: `unknown directive "proxy_pas" in conf/tether.conf:12:5
//! (did you mean "proxy_pass"?)`.
//!
//! PLACEHOLDER: the config helper owns this file and will flesh out `ErrorKind`.

use std::fmt;

use super::source::Span;

/// One problem in a config, with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where; `None` for whole-file problems (e.g. the main file cannot be read).
    pub span: Option<Span>,
    /// What.
    pub kind: ErrorKind,
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(span) = &self.span {
            write!(f, " in {span}")?;
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
