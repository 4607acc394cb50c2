//! The response-header rules of a location compiled for serving: which of the upstream's
//! headers are hidden, `proxy_redirect`/`proxy_cookie_*` patterns as templates or regexes,
//! `expires`, and the `Server` value. `proxy` applies them (`proxy::reply_headers`).
//!
//! Templates with variables are rendered per request while the request is at hand (before it
//! goes upstream); the rest are literal, so most locations render nothing.

use http::HeaderName;
use http::header::HeaderValue;
use regex::Regex;

use crate::config::{
    self, ConfigError, CookieFlag, ErrorKind, Expires, Pattern, ResponseRules, ServerTokens, Span,
};
use crate::vars::{RequestInfo, Template, Vars};

/// The headers nginx hides from a proxied response unless `proxy_pass_header` names them.
/// Indexes are bits of [`ReplyPlan::passed`].
pub static HIDDEN_BY_DEFAULT: [&str; 8] = [
    "date",
    "server",
    "x-pad",
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

/// A location's response-header rules, compiled.
#[derive(Debug)]
pub struct ReplyPlan {
    /// Bits of [`HIDDEN_BY_DEFAULT`] that `proxy_pass_header` lets through.
    pub passed: u8,
    /// `proxy_hide_header` names beyond the default set.
    pub hidden: Vec<HeaderName>,
    /// `expires`.
    pub expires: Expires,
    /// `proxy_redirect` rules in order.
    pub redirects: Vec<TextRewrite>,
    /// `proxy_cookie_domain` rules in order.
    pub cookie_domains: Vec<TextRewrite>,
    /// `proxy_cookie_path` rules in order.
    pub cookie_paths: Vec<TextRewrite>,
    /// `proxy_cookie_flags` rules in order.
    pub cookie_flags: Vec<FlagRule>,
    /// `Server: tether` for `server_tokens off`; None for the default (`tether/VERSION`),
    /// which the writers add themselves.
    pub server: Option<HeaderValue>,
    /// The rules' templates with variables, in slot order (rendered per request).
    pub templates: Vec<Template>,
    /// The lines the rules rewrite when an answer has them (bits of [`Rewritable`]):
    /// `Location` and `Refresh` for `proxy_redirect` (nginx's `default` is on for most
    /// locations), `Set-Cookie` for `proxy_cookie_*`.
    pub rewritten: u8,
}

/// Bits of the headers `proxy_redirect` and `proxy_cookie_*` rewrite.
pub struct Rewritable;

impl Rewritable {
    /// `Location`.
    pub const LOCATION: u8 = 1;
    /// `Refresh`.
    pub const REFRESH: u8 = 2;
    /// `Set-Cookie`.
    pub const SET_COOKIE: u8 = 4;

    /// The bit of `name`, if it is one of them.
    pub fn of(name: &HeaderName) -> u8 {
        match name.as_str() {
            "location" => Rewritable::LOCATION,
            "refresh" => Rewritable::REFRESH,
            "set-cookie" => Rewritable::SET_COOKIE,
            _ => 0,
        }
    }
}

impl ReplyPlan {
    /// Whether the plan leaves an upstream answer's header lines as they came, but for the
    /// default hidden and hop-by-hop ones and those it rewrites ([`ReplyPlan::rewritten`]): no
    /// `proxy_hide_header` beyond them, no `expires`, no `server_tokens` value of its own.
    pub fn leaves_upstream_lines_alone(&self) -> bool {
        self.hidden.is_empty() && self.expires == Expires::Off && self.server.is_none()
    }
}

/// One `FROM TO` rule.
#[derive(Debug)]
pub struct TextRewrite {
    /// What is matched.
    pub matcher: Matcher,
    /// What replaces the match.
    pub replacement: Vec<Segment>,
}

/// The matching half of a rule.
#[derive(Debug)]
pub enum Matcher {
    /// A text (a prefix, or a whole domain, or a cookie name).
    Text(Text),
    /// A regex; its captures feed `$1`.. of the replacement.
    Regex(Regex),
}

/// A piece of a replacement.
#[derive(Debug)]
pub enum Segment {
    /// Text, perhaps with variables.
    Text(Text),
    /// `$N` of the rule's regex.
    Capture(usize),
}

/// A template known literally at build time, or rendered per request into slot `slot`.
#[derive(Debug)]
pub enum Text {
    /// Fixed.
    Literal(String),
    /// Index into the request's rendered values.
    Rendered(usize),
}

/// One `proxy_cookie_flags` rule.
#[derive(Debug)]
pub struct FlagRule {
    /// The cookie name.
    pub cookie: Matcher,
    /// The changes.
    pub flags: Vec<CookieFlag>,
}

/// The `Server` header `server_tokens` asks for.
pub fn server_value(tokens: ServerTokens) -> HeaderValue {
    match tokens {
        ServerTokens::On => HeaderValue::from_static(concat!("tether/", env!("CARGO_PKG_VERSION"))),
        ServerTokens::Off => HeaderValue::from_static("tether"),
    }
}

/// What `proxy_redirect default` stands for: the `proxy_pass` URL and the location.
pub struct DefaultRedirect {
    /// `proxy_pass`'s URL up to and including its URI (`http://backend/uri/`), or with `/`
    /// added when it has none.
    pub from: String,
    /// The location's name (its prefix), or `/` when `proxy_pass` has no URI.
    pub to: String,
}

/// Compiles templates into [`Text`]s, numbering the ones with variables.
pub struct Compiler<'a> {
    /// The config's variables.
    pub vars: &'a Vars,
    /// Where errors go.
    pub errors: &'a mut Vec<ConfigError>,
    /// Templates with variables, in slot order.
    pub templates: Vec<Template>,
}

impl Compiler<'_> {
    /// Compiles `rules`; `default` is what `proxy_redirect default` means here (None: a
    /// `proxy_pass` with variables, or no `proxy_pass`); `variables`: `proxy_pass` has
    /// variables, where nginx refuses an explicit `proxy_redirect default`.
    pub fn plan(
        &mut self,
        rules: &ResponseRules,
        default: Option<DefaultRedirect>,
        variables: bool,
    ) -> ReplyPlan {
        let mut passed = 0u8;
        for name in rules.pass.iter() {
            if let Some(index) = HIDDEN_BY_DEFAULT.iter().position(|h| h == name) {
                passed |= 1 << index;
            }
        }
        let hidden = rules
            .hide
            .iter()
            .filter(|name| !HIDDEN_BY_DEFAULT.contains(&name.as_str()))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        let redirects = match &rules.redirects {
            None => default.into_iter().map(literal_rewrite).collect(),
            Some(list) => {
                let mut compiled = Vec::new();
                for redirect in list.iter() {
                    match redirect {
                        config::Redirect::Default { span } => match &default {
                            Some(default) => compiled.push(literal_rewrite(DefaultRedirect {
                                from: default.from.clone(),
                                to: default.to.clone(),
                            })),
                            None => {
                                if let (Some(span), true) = (span, variables) {
                                    self.errors.push(ConfigError {
                                        span: Some(span.clone()),
                                        kind: ErrorKind::RedirectDefaultWithVariables,
                                    });
                                }
                            }
                        },
                        config::Redirect::Rewrite(rule) => compiled.extend(self.rewrite(rule)),
                    }
                }
                compiled
            }
        };
        let cookie_domains: Vec<_> = rules
            .cookie_domains
            .iter()
            .filter_map(|r| self.rewrite(r))
            .collect();
        let cookie_paths: Vec<_> = rules
            .cookie_paths
            .iter()
            .filter_map(|r| self.rewrite(r))
            .collect();
        let cookie_flags: Vec<FlagRule> = rules
            .cookie_flags
            .iter()
            .filter_map(|rule| {
                Some(FlagRule {
                    cookie: self.matcher(&rule.cookie, &rule.span)?,
                    flags: rule.flags.clone(),
                })
            })
            .collect();
        let rewritten = match redirects.is_empty() {
            true => 0,
            false => Rewritable::LOCATION | Rewritable::REFRESH,
        } | match cookie_domains.is_empty()
            && cookie_paths.is_empty()
            && cookie_flags.is_empty()
        {
            true => 0,
            false => Rewritable::SET_COOKIE,
        };
        ReplyPlan {
            passed,
            hidden,
            expires: rules.expires,
            redirects,
            cookie_domains,
            cookie_paths,
            cookie_flags,
            server: (rules.server_tokens == ServerTokens::Off)
                .then(|| server_value(ServerTokens::Off)),
            templates: std::mem::take(&mut self.templates),
            rewritten,
        }
    }

    fn rewrite(&mut self, rule: &config::ValueRewrite) -> Option<TextRewrite> {
        let matcher = self.matcher(&rule.pattern, &rule.span)?;
        let captures = matches!(matcher, Matcher::Regex(_));
        let replacement = self.segments(&rule.replacement, captures, &rule.span)?;
        Some(TextRewrite {
            matcher,
            replacement,
        })
    }

    fn matcher(&mut self, pattern: &Pattern, span: &Span) -> Option<Matcher> {
        match pattern {
            Pattern::Text(text) => Some(Matcher::Text(self.text(text, span)?)),
            Pattern::Regex { source, caseless } => {
                let built = regex::RegexBuilder::new(source)
                    .case_insensitive(*caseless)
                    .build();
                match built {
                    Ok(regex) => Some(Matcher::Regex(regex)),
                    Err(error) => {
                        self.errors.push(ConfigError {
                            span: Some(span.clone()),
                            kind: ErrorKind::InvalidRegex {
                                pattern: source.clone(),
                                message: error.to_string(),
                            },
                        });
                        None
                    }
                }
            }
        }
    }

    /// A replacement: `$1`..`$9` (after a regex) are captures, the rest a template.
    fn segments(&mut self, text: &str, captures: bool, span: &Span) -> Option<Vec<Segment>> {
        let mut segments = Vec::new();
        let mut rest = text;
        while captures && let Some(at) = find_capture(rest) {
            if at > 0 {
                segments.push(Segment::Text(self.text(&rest[..at], span)?));
            }
            let (group, skip) = match rest.as_bytes()[at + 1] {
                b'{' => (rest.as_bytes()[at + 2] - b'0', 4),
                digit => (digit - b'0', 2),
            };
            segments.push(Segment::Capture(usize::from(group)));
            rest = &rest[at + skip..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(self.text(rest, span)?));
        }
        Some(segments)
    }

    fn text(&mut self, text: &str, span: &Span) -> Option<Text> {
        let template = match self.vars.compile(text, span) {
            Ok(template) => template,
            Err(error) => {
                self.errors.push(error);
                return None;
            }
        };
        Some(match template.literal() {
            Some(text) => Text::Literal(text.to_string()),
            None => {
                self.templates.push(template);
                Text::Rendered(self.templates.len() - 1)
            }
        })
    }
}

/// Where `$N` or `${N}` (N a digit) starts in `text`.
fn find_capture(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find(|&i| {
        bytes[i] == b'$'
            && match bytes.get(i + 1) {
                Some(b'0'..=b'9') => true,
                Some(b'{') => {
                    matches!(bytes.get(i + 2), Some(b'0'..=b'9')) && bytes.get(i + 3) == Some(&b'}')
                }
                _ => false,
            }
    })
}

fn literal_rewrite(default: DefaultRedirect) -> TextRewrite {
    TextRewrite {
        matcher: Matcher::Text(Text::Literal(default.from)),
        replacement: vec![Segment::Text(Text::Literal(default.to))],
    }
}

/// The templates of one plan, rendered for one request (empty when it has none).
#[derive(Debug, Default)]
pub struct Rendered(pub Vec<String>);

/// Renders `templates` (a route's, in slot order) against the request.
pub fn render(templates: &[Template], vars: &Vars, req: &RequestInfo) -> Rendered {
    Rendered(
        templates
            .iter()
            .map(|template| {
                let mut out = String::new();
                template.render(vars, req, &mut out);
                out
            })
            .collect(),
    )
}

impl Text {
    /// The text for a request whose templates rendered to `rendered`.
    pub fn get<'a>(&'a self, rendered: &'a Rendered) -> &'a str {
        match self {
            Text::Literal(text) => text,
            Text::Rendered(slot) => rendered.0.get(*slot).map_or("", String::as_str),
        }
    }
}
