//! Compiling a level's [`RewriteStep`]s into a [`Program`]: regexes built, templates compiled
//! against the snapshot's [`Vars`], every error collected with its span. Also finds the
//! variables a config declares (`set` names, named captures), which [`Vars`] must know before
//! anything is compiled.

use http::StatusCode;
use regex::bytes::{Regex, RegexBuilder};

use super::{AfterMatch, IfStep, Program, ReturnAction, RewriteRule, Step, Test};
use crate::config::{
    self, Condition, ConfigError, ErrorKind, Location, LocationMatch, RewriteFlag, RewriteStep,
    Span,
};
use crate::vars::{Settable, Template, Vars};

/// Compiles programs against one snapshot's variables, recording every error.
pub struct Compiler<'a> {
    /// The snapshot's variables.
    pub vars: &'a Vars,
    /// Where errors go.
    pub errors: &'a mut Vec<ConfigError>,
}

impl Compiler<'_> {
    /// A level's program. The `if` blocks with a configuration get indexes 0, 1, ... in file
    /// order (the order of [`if_configs`]).
    pub fn program(&mut self, steps: &[RewriteStep]) -> Program {
        let mut next_config = 0;
        self.steps(steps, &mut next_config)
    }

    fn steps(&mut self, steps: &[RewriteStep], next_config: &mut usize) -> Program {
        let mut compiled = Vec::with_capacity(steps.len());
        for step in steps {
            let step = match step {
                RewriteStep::Return(r) => Some(Step::Return(self.return_action(r))),
                RewriteStep::Break => Some(Step::Break),
                RewriteStep::Set(set) => self.vars.settable(&set.name).and_then(|target| {
                    let value = self.template(&set.value, &set.span)?;
                    Some(Step::Set { target, value })
                }),
                RewriteStep::Rewrite(rule) => self.rewrite(rule).map(Box::new).map(Step::Rewrite),
                RewriteStep::If(block) => {
                    let config = block.config.as_ref().map(|_| {
                        *next_config += 1;
                        *next_config - 1
                    });
                    let test = self.test(&block.condition, &block.span);
                    let body = self.steps(&block.steps, next_config);
                    test.map(|test| Step::If(Box::new(IfStep { test, body, config })))
                }
            };
            compiled.extend(step);
        }
        Program {
            steps: compiled.into(),
        }
    }

    /// `return`, compiled (also what a server- or location-level answer needs).
    pub fn return_action(&mut self, r: &config::Return) -> ReturnAction {
        let code = StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = r
            .text
            .as_ref()
            .and_then(|text| self.template(text, &r.span));
        ReturnAction { code, text }
    }

    fn rewrite(&mut self, rule: &config::Rewrite) -> Option<RewriteRule> {
        let regex = self.regex(&rule.pattern, false, &rule.span)?;
        let mut text = rule.replacement.as_str();
        // A final `?` drops the old arguments (and is not part of the URI).
        let keep_args = match text.strip_suffix('?') {
            Some(rest) => {
                text = rest;
                false
            }
            None => true,
        };
        let (uri, args) = match text.split_once('?') {
            Some((uri, args)) => (uri, Some(args)),
            None => (text, None),
        };
        let absolute = ["http://", "https://", "$scheme"]
            .iter()
            .any(|prefix| text.starts_with(prefix));
        let redirect = match rule.flag {
            RewriteFlag::Permanent => Some(StatusCode::MOVED_PERMANENTLY),
            RewriteFlag::Redirect => Some(StatusCode::FOUND),
            _ if absolute => Some(StatusCode::FOUND),
            _ => None,
        };
        let then = match rule.flag {
            RewriteFlag::Last => AfterMatch::Last,
            RewriteFlag::Break => AfterMatch::Break,
            _ => AfterMatch::GoOn,
        };
        let uri = self.template(uri, &rule.span)?;
        let args = match args {
            Some(args) => Some(self.template(args, &rule.span)?),
            None => None,
        };
        Some(RewriteRule {
            names: named_groups(&regex, self.vars),
            regex,
            uri,
            args,
            keep_args,
            redirect,
            then,
        })
    }

    fn test(&mut self, condition: &Condition, span: &Span) -> Option<Test> {
        Some(match condition {
            Condition::Value(value) => Test::Value(self.template(value, span)?),
            Condition::Equals {
                left,
                right,
                negate,
            } => Test::Equals {
                left: self.template(left, span)?,
                right: self.template(right, span)?,
                negate: *negate,
            },
            Condition::Matches {
                left,
                pattern,
                case_insensitive,
                negate,
            } => {
                let regex = self.regex(pattern, *case_insensitive, span)?;
                Test::Matches {
                    left: self.template(left, span)?,
                    names: named_groups(&regex, self.vars),
                    regex,
                    negate: *negate,
                }
            }
        })
    }

    fn template(&mut self, text: &str, span: &Span) -> Option<Template> {
        self.vars
            .compile(text, span)
            .map_err(|error| self.errors.push(error))
            .ok()
    }

    fn regex(&mut self, pattern: &str, case_insensitive: bool, span: &Span) -> Option<Regex> {
        let built = RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .build();
        built
            .map_err(|error| {
                let kind = ErrorKind::InvalidRegex {
                    pattern: pattern.to_string(),
                    message: error.to_string(),
                };
                self.errors.push(ConfigError::at(span, kind));
            })
            .ok()
    }
}

/// The `if` configurations of a level's steps, in the order [`Compiler::program`] numbers
/// them.
pub fn if_configs(steps: &[RewriteStep]) -> impl Iterator<Item = &config::IfConfig> {
    steps.iter().filter_map(|step| match step {
        RewriteStep::If(block) => block.config.as_ref(),
        _ => None,
    })
}

/// The named groups of `regex` that are variables, as (group index, slot).
pub fn named_groups(regex: &Regex, vars: &Vars) -> Box<[(usize, usize)]> {
    let names = regex.capture_names().enumerate();
    let slots = names.filter_map(|(group, name)| match vars.settable(name?) {
        Some(Settable::Slot(slot)) => Some((group, slot)),
        _ => None,
    });
    slots.collect()
}

/// Every variable the config declares: `set` names and the named captures of `rewrite`,
/// `if` and regex location patterns (nginx makes each a variable).
pub fn declared_names(config: &config::Config) -> Vec<(String, Span)> {
    let mut names = Vec::new();
    for server in &config.http.servers {
        declared_in(&server.rewrite, &mut names);
        for location in &server.locations {
            declared_in(&location.rewrite, &mut names);
            location_groups(location, &mut names);
        }
    }
    names
}

fn declared_in(steps: &[RewriteStep], names: &mut Vec<(String, Span)>) {
    for step in steps {
        match step {
            RewriteStep::Set(set) => names.push((set.name.clone(), set.span.clone())),
            RewriteStep::Rewrite(rule) => groups_of(&rule.pattern, false, &rule.span, names),
            RewriteStep::If(block) => {
                if let Condition::Matches {
                    pattern,
                    case_insensitive,
                    ..
                } = &block.condition
                {
                    groups_of(pattern, *case_insensitive, &block.span, names);
                }
                declared_in(&block.steps, names);
            }
            RewriteStep::Return(_) | RewriteStep::Break => {}
        }
    }
}

fn location_groups(location: &Location, names: &mut Vec<(String, Span)>) {
    if let LocationMatch::Regex {
        pattern,
        case_insensitive,
    } = &location.matcher
    {
        groups_of(pattern, *case_insensitive, &location.span, names);
    }
}

fn groups_of(pattern: &str, case_insensitive: bool, span: &Span, names: &mut Vec<(String, Span)>) {
    // A pattern that does not compile is reported where it is compiled.
    let Ok(regex) = RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
    else {
        return;
    };
    for name in regex.capture_names().flatten() {
        names.push((name.to_string(), span.clone()));
    }
}
