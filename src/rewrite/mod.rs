//! The rewrite module at run time: a [`Program`] per server and per location (their `return`,
//! `rewrite`, `set`, `break` and `if` in file order, compiled once per snapshot), run per
//! request over its [`Locals`].
//!
//! Running a program answers what nginx's rewrite phase decides: go on (and whether the
//! location must be searched again for a changed URI), answer with a `return`, or redirect.
//! The caller (`proxy`) owns the phase order and the 10-cycle limit on internal redirects.
//! Pure: `config`, `vars`, `route::path`, `regex` and `http` types only; no hyper, no tokio.

mod compile;

use http::StatusCode;
use regex::bytes::Regex;

use crate::route::path;
use crate::vars::{Locals, RequestInfo, Settable, Template, Vars};

pub use compile::{Compiler, declared_names, if_configs, named_groups};

/// How many times one request may have its location searched again (nginx's
/// `NGX_HTTP_MAX_URI_CHANGES`): one more is "rewrite or internal redirection cycle", a 500.
pub const MAX_URI_CHANGES: usize = 10;

/// A level's rewrite directives, compiled. Empty for a level that has none.
#[derive(Debug, Default)]
pub struct Program {
    steps: Box<[Step]>,
}

#[derive(Debug)]
enum Step {
    Return(ReturnAction),
    Rewrite(Box<RewriteRule>),
    Set { target: Settable, value: Template },
    Break,
    If(Box<IfStep>),
}

/// `return`, compiled.
#[derive(Debug)]
pub struct ReturnAction {
    /// Status code.
    pub code: StatusCode,
    /// Body text, or the redirect URL for 301/302/303/307/308.
    pub text: Option<Template>,
}

#[derive(Debug)]
struct RewriteRule {
    regex: Regex,
    /// Named groups that are variables: (group index, slot).
    names: Box<[(usize, usize)]>,
    /// The replacement before its first `?`.
    uri: Template,
    /// After the first `?`: the new arguments.
    args: Option<Template>,
    /// No final `?`: the old arguments are kept (appended after new ones).
    keep_args: bool,
    /// Some: the answer is this redirect (`redirect`, `permanent`, or a replacement that
    /// starts with `http://`, `https://` or `$scheme`).
    redirect: Option<StatusCode>,
    /// After a match: `last` (search again now), `break` (stay), or go on.
    then: AfterMatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterMatch {
    GoOn,
    Last,
    Break,
}

#[derive(Debug)]
struct IfStep {
    test: Test,
    body: Program,
    /// Which of the location's alternative configurations applies when the test holds.
    config: Option<usize>,
}

#[derive(Debug)]
enum Test {
    Value(Template),
    Equals {
        left: Template,
        right: Template,
        negate: bool,
    },
    Matches {
        left: Template,
        regex: Regex,
        names: Box<[(usize, usize)]>,
        negate: bool,
    },
}

/// How running a program ended.
#[derive(Debug)]
pub enum End<'p> {
    /// Go on with this level's configuration; `search_again` when the URI changed without
    /// `break` (a location's rewrite then sends the request to location matching again).
    Done {
        /// The location must be searched again.
        search_again: bool,
    },
    /// `return`: answer with it.
    Return(&'p ReturnAction),
    /// A redirecting `rewrite`: answer `code` with this `Location`.
    Redirect {
        /// 301 or 302.
        code: StatusCode,
        /// The rewritten URL, arguments appended.
        location: String,
    },
}

/// A program's run: how it ended and which `if` configuration (of the location's) applies.
#[derive(Debug)]
pub struct Ran<'p> {
    /// How it ended.
    pub end: End<'p>,
    /// The last `if` with settings whose condition held (nginx: only that one's apply).
    pub config: Option<usize>,
}

impl Program {
    /// Whether the level has no rewrite directives.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the directives in order for one request. `base` is what variables read about the
    /// request (its `locals` are replaced by `locals` for each step).
    pub fn run<'p>(&'p self, vars: &Vars, base: &RequestInfo, locals: &mut Locals) -> Ran<'p> {
        let mut ran = Ran {
            end: End::Done {
                search_again: false,
            },
            config: None,
        };
        let mut changed = false;
        let flow = run_steps(
            &self.steps,
            vars,
            base,
            locals,
            &mut ran.config,
            &mut changed,
        );
        ran.end = match flow {
            Flow::Next => End::Done {
                search_again: changed,
            },
            Flow::Stop(end) => end,
        };
        ran
    }
}

/// What one step tells the walk.
enum Flow<'p> {
    Next,
    Stop(End<'p>),
}

fn run_steps<'p>(
    steps: &'p [Step],
    vars: &Vars,
    base: &RequestInfo,
    locals: &mut Locals,
    config: &mut Option<usize>,
    changed: &mut bool,
) -> Flow<'p> {
    let mut text = String::new();
    for step in steps {
        match step {
            Step::Return(action) => return Flow::Stop(End::Return(action)),
            Step::Break => {
                return Flow::Stop(End::Done {
                    search_again: false,
                });
            }
            Step::Set { target, value } => {
                text.clear();
                value.render(vars, &with(base, locals), &mut text);
                match target {
                    Settable::Slot(slot) => locals.set(*slot, &text),
                    Settable::Args => locals.set_args(std::mem::take(&mut text)),
                }
            }
            Step::Rewrite(rule) => {
                if let Some(flow) = rule.apply(vars, base, locals, changed) {
                    return flow;
                }
            }
            Step::If(block) => {
                if block.test.holds(vars, base, locals) {
                    if block.config.is_some() {
                        *config = block.config;
                    }
                    let flow = run_steps(&block.body.steps, vars, base, locals, config, changed);
                    if let Flow::Stop(end) = flow {
                        return Flow::Stop(end);
                    }
                }
            }
        }
    }
    Flow::Next
}

/// `base` reading `locals`.
fn with<'a>(base: &RequestInfo<'a>, locals: &'a Locals) -> RequestInfo<'a> {
    RequestInfo {
        locals: Some(locals),
        ..*base
    }
}

/// Appends `bytes`, percent-encoding what nginx's `NGX_ESCAPE_ARGS` encodes: controls,
/// space, `# % & + ; ?`, DEL and every byte above it.
fn escape_args(bytes: &[u8], out: &mut Vec<u8>) {
    let encoded = |byte: u8| byte <= b' ' || byte >= 0x7f || b"#%&+;?".contains(&byte);
    path::percent_encode(bytes, out, encoded);
}

/// Keeps a match's captures, and gives its named groups to their variables.
fn keep(
    locals: &mut Locals,
    subject: &[u8],
    captures: &regex::bytes::Captures,
    names: &[(usize, usize)],
) {
    let groups = captures.iter().map(|m| m.map(|m| (m.start(), m.end())));
    locals.capture(subject, groups);
    for &(group, slot) in names {
        let value = captures.get(group).map_or(&b""[..], |m| m.as_bytes());
        locals.set(slot, &String::from_utf8_lossy(value));
    }
}

impl RewriteRule {
    /// Matches `$uri` and, on a match, rewrites it (or redirects). None: no match, go on.
    fn apply<'p>(
        &self,
        vars: &Vars,
        base: &RequestInfo,
        locals: &mut Locals,
        changed: &mut bool,
    ) -> Option<Flow<'p>> {
        let subject = with(base, locals).current_path().to_vec();
        let captures = self.regex.captures(&subject)?;
        keep(locals, &subject, &captures, &self.names);
        // nginx escapes captures when the client's path was escaped or had a `+`: in a
        // redirect's URL as a URI, in new arguments as arguments.
        let quoted = base.uri.path().bytes().any(|b| b == b'%' || b == b'+');
        let escaped = |escape: fn(&[u8], &mut Vec<u8>)| locals.with_escaped_captures(escape);
        let uri_captures = (quoted && self.redirect.is_some()).then(|| escaped(path::escape));
        let arg_captures = (quoted && self.args.is_some()).then(|| escaped(escape_args));
        let info = with(base, locals);
        let old_args = info.current_args();
        let mut uri = String::new();
        let uri_info = uri_captures.as_ref().map(|escaped| with(base, escaped));
        self.uri
            .render(vars, uri_info.as_ref().unwrap_or(&info), &mut uri);
        let mut args = None;
        if let Some(template) = &self.args {
            let mut new = String::new();
            let arg_info = arg_captures.as_ref().map(|escaped| with(base, escaped));
            template.render(vars, arg_info.as_ref().unwrap_or(&info), &mut new);
            args = Some(new);
        }
        let appended = (self.keep_args && !old_args.is_empty()).then_some(old_args);
        if let Some(code) = self.redirect {
            let mut location = uri;
            let mut separator = '?';
            if let Some(args) = &args {
                location.push('?');
                location.push_str(args);
                separator = '&';
            }
            if let Some(old) = appended {
                location.push(separator);
                location.push_str(old);
            }
            return Some(Flow::Stop(End::Redirect { code, location }));
        }
        let new_args = match (args, appended) {
            (Some(mut args), Some(old)) => {
                args.push('&');
                args.push_str(old);
                Some(args)
            }
            (Some(args), None) => Some(args),
            // A final `?` alone drops the old arguments.
            (None, _) if !self.keep_args => Some(String::new()),
            (None, _) => None,
        };
        locals.set_uri(uri.into_bytes());
        if let Some(args) = new_args {
            locals.set_args(args);
        }
        match self.then {
            AfterMatch::GoOn => {
                *changed = true;
                None
            }
            AfterMatch::Last => Some(Flow::Stop(End::Done { search_again: true })),
            AfterMatch::Break => {
                locals.leave_location();
                Some(Flow::Stop(End::Done {
                    search_again: false,
                }))
            }
        }
    }
}

impl Test {
    fn holds(&self, vars: &Vars, base: &RequestInfo, locals: &mut Locals) -> bool {
        let mut left = String::new();
        match self {
            Test::Value(value) => {
                value.render(vars, &with(base, locals), &mut left);
                !left.is_empty() && left != "0"
            }
            Test::Equals {
                left: l,
                right,
                negate,
            } => {
                let info = with(base, locals);
                l.render(vars, &info, &mut left);
                let mut other = String::new();
                right.render(vars, &info, &mut other);
                (left == other) != *negate
            }
            Test::Matches {
                left: l,
                regex,
                names,
                negate,
            } => {
                l.render(vars, &with(base, locals), &mut left);
                let matched = match regex.captures(left.as_bytes()) {
                    Some(captures) => {
                        keep(locals, left.as_bytes(), &captures, names);
                        true
                    }
                    None => false,
                };
                matched != *negate
            }
        }
    }
}

/// A regex location whose captures the request's variables may read (its `$1`.. and named
/// groups are the request's until another regex matches).
#[derive(Debug)]
pub struct LocationCaptures {
    regex: Regex,
    /// Named groups that are variables: (group index, slot).
    names: Box<[(usize, usize)]>,
}

impl LocationCaptures {
    /// For the location regex `regex`, against the snapshot's variables.
    pub fn new(regex: Regex, vars: &Vars) -> LocationCaptures {
        let names = named_groups(&regex, vars);
        LocationCaptures { regex, names }
    }

    /// Keeps the captures of the location's match on `path`.
    pub fn capture(&self, path: &[u8], locals: &mut Locals) {
        if let Some(captures) = self.regex.captures(path) {
            keep(locals, path, &captures, &self.names);
        }
    }
}

#[cfg(test)]
mod tests;
