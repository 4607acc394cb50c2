//! `error_page` lines of one level, compiled: the status each replaces, what the client's
//! status becomes, and the target as a template (rendered per use: nginx decides by the
//! rendered text whether it is a URI, a named location or a URL to redirect to).

use std::sync::Arc;

use crate::config::{self, ConfigError, PageStatus};
use crate::vars::{Template, Vars};

/// The error pages in effect at one level (a location, or a server before any location).
#[derive(Default)]
pub struct ErrorPageTable {
    pages: Vec<CompiledPage>,
    /// `proxy_intercept_errors on`.
    pub intercept: bool,
    /// `recursive_error_pages on`.
    pub recursive: bool,
}

/// One `error_page` line, compiled.
pub struct CompiledPage {
    codes: Vec<u16>,
    /// What the client's status becomes.
    pub status: PageStatus,
    /// `/uri?args`, `@name` or a URL, once rendered.
    pub target: Template,
}

impl ErrorPageTable {
    /// Compiles `settings`, recording template errors in `errors`.
    pub(super) fn build(
        settings: &config::ErrorPages,
        vars: &Vars,
        errors: &mut Vec<ConfigError>,
    ) -> Arc<ErrorPageTable> {
        let mut pages = Vec::with_capacity(settings.pages.len());
        for page in settings.pages.iter() {
            match vars.compile(&page.target, &page.span) {
                Ok(target) => pages.push(CompiledPage {
                    codes: page.codes.clone(),
                    status: page.status,
                    target,
                }),
                Err(error) => errors.push(error),
            }
        }
        Arc::new(ErrorPageTable {
            pages,
            intercept: settings.intercept,
            recursive: settings.recursive,
        })
    }

    /// True when no `error_page` is in effect (the common case: nothing to look up).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The page for `status`: the first line naming it, as nginx.
    pub fn page_for(&self, status: u16) -> Option<&CompiledPage> {
        self.pages.iter().find(|page| page.codes.contains(&status))
    }
}
