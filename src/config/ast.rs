//! The generic directive tree that `parse` produces and `lower` consumes.
//!
//! The grammar types no directive: `listen 80;` and `proxy_pass http://b;` are both just a name,
//! some words and maybe a block. Giving them meaning is `lower`'s job, which keeps the grammar
//! small and lets lowering report every semantic error with a span.
//!
//! Must not import anything but `source` (no nom, no model).

use super::source::Span;

/// One directive: `name args...;` or `name args... { block }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// The first word.
    pub name: Word,
    /// The remaining words, in order.
    pub args: Vec<Word>,
    /// `Some` when the directive ended with `{ ... }` (possibly empty), `None` when with `;`.
    pub block: Option<Vec<Directive>>,
    /// Where the directive starts (its name).
    pub span: Span,
}

/// One word of a directive, bare or quoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text with quotes removed and escapes (`\"`, `\'`, `\\`, `\n`, `\t`, `\r`) resolved;
    /// any other `\x` is kept as written, as nginx does, so regexes like `\.php$` survive.
    pub text: String,
    /// Written in single or double quotes (so `""` is an empty word, not a missing one).
    pub quoted: bool,
    /// Where the word starts (its opening quote, if quoted).
    pub span: Span,
}

impl Directive {
    /// The directive name as text.
    pub fn name(&self) -> &str {
        &self.name.text
    }

    /// The argument texts, for matching on shapes like `["two", "least_conn"]`.
    pub fn arg_texts(&self) -> Vec<&str> {
        self.args.iter().map(|word| word.text.as_str()).collect()
    }
}
