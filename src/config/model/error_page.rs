//! `error_page`, `proxy_intercept_errors` and `recursive_error_pages` as configured: which
//! statuses a level replaces, with what, and when. Pure data, as the rest of `model`; the
//! targets stay template strings (`vars` compiles them when a snapshot is built).

use std::sync::Arc;

use crate::config::source::Span;

/// The error-page settings in effect at one level (inheritance resolved, as nginx: the list is
/// inherited as a whole by a level that writes no `error_page`; the two flags one by one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// `error_page` lines in file order; for a status, the first line naming it wins.
    pub pages: Arc<Vec<ErrorPage>>,
    /// `proxy_intercept_errors on` (default off): an upstream's answer with a status of 300 or
    /// more that an `error_page` names is replaced by that page.
    pub intercept: bool,
    /// `recursive_error_pages on` (default off): an error while serving an error page may go
    /// to another error page (else it gets the default page).
    pub recursive: bool,
}

/// `error_page CODE... [=[RESPONSE]] URI|@name|URL;`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// The statuses replaced (each 300..=599).
    pub codes: Vec<u16>,
    /// What status the client gets.
    pub status: PageStatus,
    /// The target as written (a template): `/uri[?args]`, `@name`, or a URL to redirect to.
    pub target: String,
    /// Where it was written.
    pub span: Span,
}

/// The status an error page answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStatus {
    /// No `=`: the original error's status, whatever the page answers.
    Original,
    /// `=` alone: the status the page itself answers with.
    FromPage,
    /// `=CODE`.
    Code(u16),
}
