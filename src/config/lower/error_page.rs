//! `error_page`, `proxy_intercept_errors` and `recursive_error_pages` at http, server and
//! location level, with nginx's checks and inheritance. Must not import other `lower`
//! contexts.

use std::sync::Arc;

use super::Lowering;
use crate::config::ast::Directive;
use crate::config::error::ErrorKind;
use crate::config::model::{ErrorPage, ErrorPages, PageStatus};

/// The error-page settings written at one level; `None` means "inherit".
#[derive(Clone, Debug, Default)]
pub(super) struct ErrorPageLayer {
    pages: Option<Arc<Vec<ErrorPage>>>,
    intercept: Option<bool>,
    recursive: Option<bool>,
}

impl ErrorPageLayer {
    /// This level's settings, falling back to `outer`'s: the page list as a whole, as nginx.
    pub(super) fn over(&self, outer: &ErrorPageLayer) -> ErrorPageLayer {
        ErrorPageLayer {
            pages: self.pages.clone().or_else(|| outer.pages.clone()),
            intercept: self.intercept.or(outer.intercept),
            recursive: self.recursive.or(outer.recursive),
        }
    }

    /// The effective settings, nginx's defaults where nothing was written.
    pub(super) fn resolve(&self) -> ErrorPages {
        ErrorPages {
            pages: self.pages.clone().unwrap_or_default(),
            intercept: self.intercept.unwrap_or(false),
            recursive: self.recursive.unwrap_or(false),
        }
    }
}

impl Lowering {
    /// Applies `d` to `layer` if it is an error-page directive; false if it is not one.
    pub(super) fn error_page_setting(&mut self, layer: &mut ErrorPageLayer, d: &Directive) -> bool {
        match d.name() {
            "error_page" => {
                if let Some(page) = self.error_page(d) {
                    let list = layer.pages.get_or_insert_with(Arc::default);
                    Arc::make_mut(list).push(page);
                }
            }
            "proxy_intercept_errors" => {
                self.once(&mut layer.intercept, d, |cx| cx.flag(d, &d.args[0]));
            }
            "recursive_error_pages" => {
                self.once(&mut layer.recursive, d, |cx| cx.flag(d, &d.args[0]));
            }
            _ => return false,
        }
        true
    }

    /// `error_page CODE... [=[RESPONSE]] TARGET`: at least one code (`accepts` checked two
    /// arguments at least), each 300..=599, as nginx.
    fn error_page(&mut self, d: &Directive) -> Option<ErrorPage> {
        let (target, rest) = d.args.split_last()?;
        let (status, codes) = match rest.split_last() {
            Some((last, codes)) if last.text.starts_with('=') => {
                let status = match &last.text[1..] {
                    "" => Some(PageStatus::FromPage),
                    code => code
                        .parse::<u16>()
                        .ok()
                        .filter(|code| (100..=999).contains(code))
                        .map(PageStatus::Code),
                };
                (status, codes)
            }
            _ => (Some(PageStatus::Original), rest),
        };
        let Some(status) = status else {
            let word = &rest[rest.len() - 1];
            let kind = ErrorKind::InvalidValue {
                directive: d.name().into(),
                value: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        };
        // `accepts` let two arguments at least through: only `error_page =X TARGET` has no code,
        // and nginx calls its `=X` invalid.
        if codes.is_empty() {
            let word = &rest[0];
            let kind = ErrorKind::InvalidValue {
                directive: d.name().into(),
                value: word.text.clone(),
            };
            self.error(&word.span, kind);
            return None;
        }
        let mut parsed = Vec::with_capacity(codes.len());
        let mut valid = true;
        for word in codes {
            match word.text.parse::<u16>() {
                Ok(code) if (300..=599).contains(&code) => parsed.push(code),
                _ => {
                    valid = false;
                    let kind = ErrorKind::ErrorPageCode {
                        value: word.text.clone(),
                    };
                    self.error(&word.span, kind);
                }
            }
        }
        valid.then(|| ErrorPage {
            codes: parsed,
            status,
            target: target.text.clone(),
            span: d.span.clone(),
        })
    }
}
