//! The rewrite module's directives as configured: `return`, `rewrite`, `set`, `break` and
//! `if`, in the order written at server or location level (nginx runs them in that order, in
//! its rewrite phases). Pure data, as the rest of `model`; `rewrite` compiles it.

use super::proxy::ProxySettings;
use super::proxy_pass::ProxyPass;
use crate::config::source::Span;

/// One rewrite-module directive, in the order it was written.
#[derive(Clone, Debug)]
pub enum RewriteStep {
    /// `return CODE [TEXT|URL];` / `return URL;`: ends the request with this answer.
    Return(Return),
    /// `rewrite REGEX REPLACEMENT [FLAG];`
    Rewrite(Rewrite),
    /// `set $NAME VALUE;`
    Set(SetVar),
    /// `break;`: no further rewrite directives run at this level.
    Break,
    /// `if (CONDITION) { ... }`
    If(Box<IfBlock>),
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent];`
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// The regex, matched against `$uri` (case-sensitive, as nginx: `(?i)` makes it not).
    pub pattern: String,
    /// The new URI (a template; may use the regex's captures). `?` starts new arguments; a
    /// final `?` drops the old ones.
    pub replacement: String,
    /// What happens after a match.
    pub flag: RewriteFlag,
    /// Where it was written.
    pub span: Span,
}

/// The last argument of `rewrite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: the URI changes and the following directives run; the location is searched
    /// again afterwards.
    None,
    /// `last`: stop here and search the location again for the new URI.
    Last,
    /// `break`: stop here and stay in this location with the new URI.
    Break,
    /// `redirect`: answer 302 with the new URI as `Location`.
    Redirect,
    /// `permanent`: answer 301 with the new URI as `Location`.
    Permanent,
}

/// `set $NAME VALUE;`
#[derive(Clone, Debug)]
pub struct SetVar {
    /// The variable's name, without `$`.
    pub name: String,
    /// Its value (a template).
    pub value: String,
    /// Where it was written.
    pub span: Span,
}

/// `if (CONDITION) { ... }`.
#[derive(Clone, Debug)]
pub struct IfBlock {
    /// When the block applies.
    pub condition: Condition,
    /// The rewrite directives inside, in order.
    pub steps: Vec<RewriteStep>,
    /// In a location, when the block sets any of `proxy_pass`, `proxy_set_header`,
    /// `add_header`: the configuration a request is handled with when the condition held (the
    /// location's, with the block's settings over it, as nginx's nameless location is). None
    /// when the block only holds rewrite directives.
    pub config: Option<IfConfig>,
    /// Where it was written.
    pub span: Span,
}

/// The handling an `if` block gives a request whose condition held.
#[derive(Clone, Debug)]
pub struct IfConfig {
    /// The block's `proxy_pass`, else None (the location's handler stays).
    pub proxy_pass: Option<ProxyPass>,
    /// The location's settings with the block's over them.
    pub proxy: ProxySettings,
}

/// The condition of an `if`, with nginx's operators.
#[derive(Clone, Debug)]
pub enum Condition {
    /// `($var)`: true unless the value is empty or `0`.
    Value(String),
    /// `($var = text)` / `($var != text)`: both sides are templates.
    Equals {
        /// The left side.
        left: String,
        /// The right side.
        right: String,
        /// `!=`.
        negate: bool,
    },
    /// `($var ~ re)`, `~*`, `!~`, `!~*`: the left side matched against a regex whose captures
    /// are usable afterwards.
    Matches {
        /// The left side.
        left: String,
        /// The regex as written.
        pattern: String,
        /// `~*` / `!~*`.
        case_insensitive: bool,
        /// `!~` / `!~*`.
        negate: bool,
    },
}

/// A `-t` warning: a construct that works, but not as a reader of the config may think.
#[derive(Clone, Debug)]
pub struct Warning {
    /// What to say.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// How tether writes the `Location` of its own redirects (`return 301 /x`, `rewrite ...
/// redirect`): nginx's `absolute_redirect`, `port_in_redirect`, `server_name_in_redirect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectRules {
    /// `absolute_redirect` (default on): a `Location` starting with `/` gets the scheme, host
    /// and port; off, it is sent as written.
    pub absolute: bool,
    /// `port_in_redirect` (default on): the port the request came in on is written unless it
    /// is the scheme's own.
    pub port: bool,
    /// `server_name_in_redirect` (default off): the server's first name rather than the
    /// request's host.
    pub server_name: bool,
}

impl Default for RedirectRules {
    fn default() -> RedirectRules {
        RedirectRules {
            absolute: true,
            port: true,
            server_name: false,
        }
    }
}

/// `return CODE [TEXT|URL];` or `return URL;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    /// Status code (302 for the `return URL;` form).
    pub code: u16,
    /// Body text template, or the `Location` URL template for 301/302/303/307/308.
    pub text: Option<String>,
    /// Where it was written.
    pub span: Span,
}
