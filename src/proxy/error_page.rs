//! `error_page` at run time: whether an answer is replaced by a page, and what happens next —
//! an internal redirect to a URI (asked with GET, HEAD staying HEAD), a named location (the
//! request as it is), or a redirect to a URL — with nginx's bookkeeping: one page per request
//! unless `recursive_error_pages`, at most 10 internal redirects (then 500), and the status the
//! client finally gets (`=` / `=CODE` / the original error's).
//!
//! `handle` owns the loop; this module owns the decisions. Knows the snapshot's compiled
//! tables and http types; never touches a connection.

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode, Uri, Version};

use super::request::{Parts, Request};
use crate::header_list::HeaderList;
use http_body::Body as _;

use crate::config::PageStatus;
use crate::proxy::body::client::ClientBody;
use crate::proxy::body::response::ResponseBody;
use crate::proxy::error;
use crate::snapshot::{CompiledPage, ErrorPageTable, ReturnAction};

/// nginx's `NGX_HTTP_MAX_URI_CHANGES`: internal redirects allowed per request.
const MAX_REDIRECTS: u8 = 10;

/// Who made an answer, which decides whether an `error_page` may replace it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// tether's own error (no location, no handler, `deny`, a body too large, an upstream that
    /// failed, `return CODE` without text): replaced when a page names its status.
    Tether,
    /// The upstream's answer: replaced only with `proxy_intercept_errors on`, from 300 up.
    Upstream,
    /// An answer that is what the config asked for (`return` with text, a status page).
    Final,
}

impl Origin {
    /// nginx: `return CODE` without text from 400 up is an error (a page may replace it);
    /// with a text, or below 400, it answers as written.
    pub(super) fn of_return(r: &ReturnAction) -> Origin {
        match r.text.is_none() && r.code.as_u16() >= 400 {
            true => Origin::Tether,
            false => Origin::Final,
        }
    }
}

/// A request's head, kept to ask again after an error (the request itself moved on).
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderList,
    /// The request came with a body: asked again with its method, it needs that body back.
    had_body: bool,
}

impl Head {
    /// A copy of `request`'s head.
    pub(super) fn of(request: &Request<ClientBody>) -> Head {
        Head {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            had_body: !request.body().is_end_stream(),
        }
    }

    /// The request again, as it was (for a named location), with `body`: the client's body
    /// if no server took it. None when it had a body and that body is gone (tether streams
    /// bodies instead of buffering them as nginx does: one already sent cannot be sent again).
    pub(super) fn request(&self, body: Option<ClientBody>) -> Option<Request<ClientBody>> {
        if self.had_body && body.is_none() {
            return None;
        }
        Some(self.build(self.method.clone(), self.uri.clone(), body))
    }

    /// The request at `target` (`/path[?args]`), asked with GET unless it was HEAD, as nginx's
    /// `error_page` does, and without a body. None if `target` is no valid request target.
    pub(super) fn redirected(&self, target: &str) -> Option<Request<ClientBody>> {
        // The target must be a URI; the request keeps the client's (its `$request_uri`), the
        // target becomes `$uri` and `$args` through the rewrite phases' locals.
        PathAndQuery::try_from(target).ok()?;
        let method = match self.method {
            Method::HEAD => Method::HEAD,
            _ => Method::GET,
        };
        Some(self.build(method, self.uri.clone(), None))
    }

    /// The request to render a page's target against: the head alone.
    pub(super) fn bodiless(&self) -> Request<ClientBody> {
        self.build(self.method.clone(), self.uri.clone(), None)
    }

    fn build(&self, method: Method, uri: Uri, body: Option<ClientBody>) -> Request<ClientBody> {
        let mut headers = self.headers.clone();
        if body.is_none() {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRANSFER_ENCODING);
        }
        let head = Parts {
            method,
            uri,
            version: self.version,
            headers,
            extensions: http::Extensions::new(),
        };
        Request::from_parts(head, body.unwrap_or(ClientBody::Empty))
    }
}

/// What to do after an `error_page` was chosen.
pub(super) enum Step {
    /// Go on at this URI (path and query), asking with GET (HEAD stays HEAD).
    Uri(String),
    /// Go on at the named location (`@name`), the request unchanged.
    Named(String),
    /// Answer with this (a redirect to a URL, or the 500 of a redirect cycle).
    Answer(Box<Response<ResponseBody>>),
}

/// One request's error-page history.
#[derive(Debug)]
pub(super) struct Redirects {
    left: u8,
    /// A page was used where `recursive_error_pages` was off: later errors get default pages.
    closed: bool,
    /// nginx's `err_status`: the status the client gets whatever the last answer said.
    status: Option<StatusCode>,
    /// An intercepted 401's `WWW-Authenticate` challenges, which nginx keeps for the page.
    challenges: Vec<HeaderValue>,
}

impl Redirects {
    /// A request that has not been redirected.
    pub(super) fn new() -> Redirects {
        Redirects {
            left: MAX_REDIRECTS,
            closed: false,
            status: None,
            challenges: Vec::new(),
        }
    }

    /// The page that replaces `answer`, made by `origin` where `table` is in effect, if any;
    /// its use is recorded.
    pub(super) fn page<'t>(
        &mut self,
        table: &'t ErrorPageTable,
        answer: &Response<ResponseBody>,
        origin: Origin,
    ) -> Option<&'t CompiledPage> {
        let status = answer.status();
        let eligible = match origin {
            Origin::Tether => status.as_u16() >= 300,
            Origin::Upstream => table.intercept && status.as_u16() >= 300,
            Origin::Final => false,
        };
        if !eligible || self.closed || table.is_empty() {
            return None;
        }
        let page = table.page_for(status.as_u16())?;
        self.closed = !table.recursive;
        // nginx: an intercepted 401 hands its challenge on to the page.
        if origin == Origin::Upstream && status == StatusCode::UNAUTHORIZED {
            let challenges = answer.headers().get_all(header::WWW_AUTHENTICATE);
            self.challenges.extend(challenges.iter().cloned());
        }
        self.status = match page.status {
            PageStatus::Original => Some(status),
            PageStatus::FromPage => None,
            PageStatus::Code(code) => StatusCode::from_u16(code).ok(),
        };
        Some(page)
    }

    /// What `page`'s target, rendered as `target`, asks for.
    pub(super) fn step(&mut self, page: &CompiledPage, target: String) -> Step {
        if target.starts_with('/') || target.starts_with('@') {
            let Some(left) = self.left.checked_sub(1) else {
                // nginx: "rewrite or internal redirection cycle"; no page for this 500.
                self.status = Some(StatusCode::INTERNAL_SERVER_ERROR);
                return Step::Answer(Box::new(error::error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                )));
            };
            self.left = left;
            return match target.starts_with('@') {
                true => Step::Named(target),
                false => Step::Uri(target),
            };
        }
        // A URL: a redirect with the `=CODE` given if it is one, else 302.
        let code = match page.status {
            PageStatus::Code(code @ (301 | 302 | 303 | 307 | 308)) => code,
            _ => 302,
        };
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
        self.status = Some(code);
        let mut response = error::error_page(code);
        if let Ok(location) = HeaderValue::from_str(&target) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Step::Answer(Box::new(response))
    }

    /// `response` after all, when the page chosen for it cannot be used: the status the page
    /// would have set is forgotten.
    pub(super) fn unreplaced(
        &mut self,
        response: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        self.status = None;
        self.challenges.clear();
        response
    }

    /// The final answer with the status an `error_page` decided. A `101` stays one: its
    /// connection is already a tunnel (nginx would send the page's status on it).
    pub(super) fn finish(&mut self, response: &mut Response<ResponseBody>) {
        if let Some(status) = self.status
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            *response.status_mut() = status;
        }
        for challenge in self.challenges.drain(..) {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, challenge);
        }
    }
}
