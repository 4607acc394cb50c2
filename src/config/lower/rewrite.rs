//! The rewrite module's directives at server and location level: `return`, `rewrite`, `set`,
//! `break` and `if (CONDITION) { ... }`, lowered into [`RewriteStep`]s in file order.
//!
//! An `if` in a location may also hold `proxy_pass`, `proxy_set_header` and `add_header`: as in
//! nginx, those make the block a nameless location whose settings replace the location's when
//! the condition holds. They are resolved over the location's own settings once the whole
//! location has been read ([`PendingIf`]), and `-t` warns about them (nginx's "if is evil").
//! Must not import anything outside `config`.

use super::Lowering;
use super::directives::Context;
use super::proxy::ProxyLayer;
use crate::config::ast::{Directive, Word};
use crate::config::error::ErrorKind;
use crate::config::model::{
    Condition, IfBlock, IfConfig, ProxyPass, Rewrite, RewriteFlag, RewriteStep, SetVar, Warning,
};

/// The directives of the rewrite module.
pub(super) const REWRITE_DIRECTIVES: [&str; 5] = ["return", "rewrite", "set", "break", "if"];

/// Directives a location's `if` may hold besides the rewrite module's.
const IF_SETTINGS: [&str; 3] = ["proxy_pass", "proxy_set_header", "add_header"];

/// A location `if` whose own settings wait for the location's to be known.
pub(super) struct PendingIf {
    /// Its index in the location's steps.
    index: usize,
    /// What the block sets.
    layer: ProxyLayer,
    /// Its `proxy_pass` (inner None: written but invalid, already reported).
    proxy_pass: Option<Option<ProxyPass>>,
}

impl Lowering {
    /// Lowers one rewrite-module directive (one of [`REWRITE_DIRECTIVES`], already accepted)
    /// onto `steps`. `pending` is Some in a location: an `if` there may carry settings.
    pub(super) fn rewrite_step(
        &mut self,
        d: &Directive,
        steps: &mut Vec<RewriteStep>,
        pending: Option<&mut Vec<PendingIf>>,
    ) {
        let step = match d.name() {
            "return" => self.return_(d).map(RewriteStep::Return),
            "rewrite" => self.rewrite(d).map(RewriteStep::Rewrite),
            "set" => self.set(d).map(RewriteStep::Set),
            "break" => Some(RewriteStep::Break),
            "if" => {
                let index = steps.len();
                self.if_block(d, index, pending)
                    .map(|block| RewriteStep::If(Box::new(block)))
            }
            _ => None,
        };
        steps.extend(step);
    }

    /// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]`.
    fn rewrite(&mut self, d: &Directive) -> Option<Rewrite> {
        let pattern = &d.args[0];
        self.check_regex(&pattern.span, &pattern.text, false);
        let flag = match d.args.get(2).map(|w| w.text.as_str()) {
            None => RewriteFlag::None,
            Some("last") => RewriteFlag::Last,
            Some("break") => RewriteFlag::Break,
            Some("redirect") => RewriteFlag::Redirect,
            Some("permanent") => RewriteFlag::Permanent,
            Some(other) => {
                let kind = ErrorKind::InvalidParameter {
                    directive: d.name().into(),
                    value: other.into(),
                };
                self.error(&d.args[2].span, kind);
                return None;
            }
        };
        Some(Rewrite {
            pattern: pattern.text.clone(),
            replacement: d.args[1].text.clone(),
            flag,
            span: d.span.clone(),
        })
    }

    /// `set $NAME VALUE`.
    fn set(&mut self, d: &Directive) -> Option<SetVar> {
        let word = &d.args[0];
        let name = word.text.strip_prefix('$').filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        let Some(name) = name else {
            let template = word.text.clone();
            self.error(&word.span, ErrorKind::InvalidVariableSyntax { template });
            return None;
        };
        Some(SetVar {
            name: name.to_string(),
            value: d.args[1].text.clone(),
            span: d.span.clone(),
        })
    }

    /// `if (CONDITION) { ... }`; `index` is where it goes among its level's steps.
    fn if_block(
        &mut self,
        d: &Directive,
        index: usize,
        pending: Option<&mut Vec<PendingIf>>,
    ) -> Option<IfBlock> {
        let condition = self.condition(d);
        let in_location = pending.is_some();
        let mut steps = Vec::new();
        let mut layer = ProxyLayer::default();
        let mut proxy_pass = None;
        let mut settings = Vec::new();
        for inner in d.block.as_deref().unwrap_or_default() {
            let name = inner.name();
            let allowed = REWRITE_DIRECTIVES.contains(&name) && name != "if"
                || in_location && IF_SETTINGS.contains(&name);
            if !self.accepts(Context::Location, inner) {
                continue;
            }
            if !allowed {
                let kind = ErrorKind::NotAllowedInIf { name: name.into() };
                self.error(&inner.span, kind);
                continue;
            }
            match name {
                "proxy_pass" if proxy_pass.is_some() => self.duplicate(inner),
                "proxy_pass" => {
                    settings.push(inner);
                    proxy_pass = Some(self.proxy_pass(inner, Some(ErrorKind::UriInIf)));
                }
                "proxy_set_header" | "add_header" => {
                    settings.push(inner);
                    self.proxy_setting(&mut layer, inner);
                }
                _ => self.rewrite_step(inner, &mut steps, None),
            }
        }
        for setting in settings {
            self.warn_if_is_evil(setting);
        }
        let has_settings = proxy_pass.is_some() || layer.sets_header_lists();
        if let Some(pending) = pending.filter(|_| has_settings) {
            pending.push(PendingIf {
                index,
                layer,
                proxy_pass,
            });
        }
        Some(IfBlock {
            condition: condition?,
            steps,
            config: None,
            span: d.span.clone(),
        })
    }

    /// Gives each pending `if` of a location its settings: the block's over `location`'s.
    pub(super) fn resolve_ifs(
        &mut self,
        steps: &mut [RewriteStep],
        pending: Vec<PendingIf>,
        location: &ProxyLayer,
    ) {
        for pending in pending {
            if let Some(RewriteStep::If(block)) = steps.get_mut(pending.index) {
                block.config = Some(IfConfig {
                    proxy_pass: pending.proxy_pass.flatten(),
                    proxy: pending.layer.over(location).resolve(),
                });
            }
        }
    }

    /// Records nginx's "if is evil" trap for a setting written inside a location's `if`.
    fn warn_if_is_evil(&mut self, d: &Directive) {
        let message = format!(
            "\"{}\" inside \"if\": when the condition holds, the request is handled with the \
             if block's settings instead of the location's (its add_header and \
             proxy_set_header lists replace the location's, they are not merged), and when \
             several if blocks hold only the last one's settings apply, as in nginx",
            d.name()
        );
        self.warnings.push(Warning {
            message,
            span: d.span.clone(),
        });
    }

    /// The condition in `if (...)`, its parentheses taken off as nginx does.
    fn condition(&mut self, d: &Directive) -> Option<Condition> {
        let written = || d.arg_texts().join(" ");
        let invalid = |cx: &mut Lowering| {
            let kind = ErrorKind::InvalidCondition {
                condition: written(),
            };
            cx.error(&d.span, kind);
            None
        };
        let mut words: Vec<Word> = d.args.clone();
        let opens = words.first().is_some_and(|w| w.text.starts_with('('));
        let closes = words.last().is_some_and(|w| w.text.ends_with(')'));
        if !opens || !closes {
            return invalid(self);
        }
        words[0].text.remove(0);
        let last = words.len() - 1;
        words[last].text.pop();
        words.retain(|w| !w.text.is_empty() || w.quoted);
        match words.as_slice() {
            [only] if only.text.starts_with('$') => Some(Condition::Value(only.text.clone())),
            [test, _] if is_file_test(&test.text) => {
                let operator = test.text.clone();
                self.error(&test.span, ErrorKind::FileTestNotSupported { operator });
                None
            }
            [left, operator, right] if left.text.starts_with('$') => {
                let (left, right) = (left.text.clone(), right.text.clone());
                match operator.text.as_str() {
                    "=" | "!=" => Some(Condition::Equals {
                        left,
                        right,
                        negate: operator.text == "!=",
                    }),
                    "~" | "~*" | "!~" | "!~*" => {
                        let case_insensitive = operator.text.ends_with('*');
                        self.check_regex(&words[2].span, &right, case_insensitive);
                        Some(Condition::Matches {
                            left,
                            pattern: right,
                            case_insensitive,
                            negate: operator.text.starts_with('!'),
                        })
                    }
                    _ => invalid(self),
                }
            }
            _ => invalid(self),
        }
    }
}

/// `-f`, `!-f`, `-d`, `!-d`, `-e`, `!-e`, `-x`, `!-x`.
fn is_file_test(text: &str) -> bool {
    matches!(
        text.strip_prefix('!').unwrap_or(text),
        "-f" | "-d" | "-e" | "-x"
    )
}
