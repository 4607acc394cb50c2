//! nginx's rewrite phases for one request: the server's rewrite directives, then the location
//! search, the location's rewrite directives, and the search again for as long as they change
//! the URI (at most [`MAX_URI_CHANGES`] times; one more is a 500, as nginx's "rewrite or
//! internal redirection cycle"). Also the answers the phases give: `return` and redirects,
//! with nginx's absolute `Location`.
//!
//! Error pages re-enter here: a redirect to a URI runs [`rewrite`] again for the new request
//! (with `internal` locations allowed), a redirect to `@name` starts at [`named`].

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::response::ResponseBody;
use super::error;
use crate::config::RedirectRules;
use crate::rewrite::{End, MAX_URI_CHANGES, ReturnAction};
use crate::snapshot::{Route, Snapshot, VirtualServer};
use crate::vars::{Locals, RequestInfo};

/// Where the rewrite phases leave a request.
pub enum Phased<'s> {
    /// Handle it with this route: its location's, or the configuration of the `if` that held.
    Route(&'s Route),
    /// No location matches the (possibly rewritten) URI.
    NoLocation,
    /// The location found is `internal` and the request came from outside (not redirected,
    /// its URI not rewritten): a 404, as nginx answers it.
    Internal(&'s Route),
    /// Answer now; `route` is the location whose directives answered (None: the server's).
    Answer {
        /// What to answer.
        answer: Answer<'s>,
        /// The location that answered (for its access log), if any.
        route: Option<&'s Route>,
    },
}

/// An answer the rewrite phases give.
pub enum Answer<'s> {
    /// `return`.
    Return(&'s ReturnAction),
    /// A redirecting `rewrite`.
    Redirect {
        /// 301 or 302.
        code: StatusCode,
        /// The `Location`.
        location: String,
    },
    /// More than [`MAX_URI_CHANGES`] location searches: a 500.
    Cycle,
}

/// Runs the server's rewrite directives, then finds the location (again for as long as its
/// directives change the URI). `base` is the request as variables see it; what the directives
/// set, capture and rewrite goes to `locals`.
pub(super) fn rewrite<'s>(
    server: &'s VirtualServer,
    snapshot: &Snapshot,
    base: &RequestInfo,
    locals: &mut Locals,
    redirected: bool,
) -> Phased<'s> {
    if !server.rewrite.is_empty() {
        let ran = server.rewrite.run(&snapshot.vars, base, locals);
        if let Some(answer) = answer_of(ran.end) {
            return Phased::Answer {
                answer,
                route: None,
            };
        }
    }
    let search = Search {
        changes: 0,
        internal_ok: redirected,
    };
    enter(server, None, snapshot, base, locals, search)
}

/// Enters a named location (`error_page ... @name`): nginx starts there at the location's
/// rewrite phase — the server's directives do not run again — and searches by URI only if
/// the location's own directives change it.
pub(super) fn named<'s>(
    server: &'s VirtualServer,
    route: &'s Route,
    snapshot: &Snapshot,
    base: &RequestInfo,
    locals: &mut Locals,
) -> Phased<'s> {
    let search = Search {
        changes: 0,
        internal_ok: true,
    };
    enter(server, Some(route), snapshot, base, locals, search)
}

/// Where a location search starts from.
#[derive(Clone, Copy)]
struct Search {
    /// How many searches the request already had (toward [`MAX_URI_CHANGES`]).
    changes: usize,
    /// The request was redirected internally (`error_page`): `internal` locations answer it.
    internal_ok: bool,
}

/// The location search and rewrite loop, starting at `named` if given, else by the URI.
fn enter<'s>(
    server: &'s VirtualServer,
    mut named: Option<&'s Route>,
    snapshot: &Snapshot,
    base: &RequestInfo,
    locals: &mut Locals,
    search: Search,
) -> Phased<'s> {
    let Search {
        mut changes,
        internal_ok,
    } = search;
    loop {
        let route = match named.take() {
            Some(route) => {
                locals.enter_location();
                route
            }
            None => {
                let current = RequestInfo {
                    locals: Some(locals),
                    ..*base
                };
                let path = current.current_path();
                let Some(route) = server.route(path) else {
                    return Phased::NoLocation;
                };
                // nginx: requests redirected or rewritten are internal; others get a 404.
                if route.internal && !internal_ok && locals.uri().is_none() {
                    return Phased::Internal(route);
                }
                // A regex location's captures are copied only when something reads them.
                let captured = route
                    .captures
                    .as_ref()
                    .map(|capture| (capture, path.to_vec()));
                locals.enter_location();
                if let Some((captures, path)) = captured {
                    captures.capture(&path, locals);
                }
                route
            }
        };
        if route.rewrite.is_empty() {
            return Phased::Route(route);
        }
        let ran = route.rewrite.run(&snapshot.vars, base, locals);
        // The configuration of the last `if` with settings that held, else the location's:
        // also what an answer from inside that `if` is given (its `add_header`s, its log).
        let chosen = ran.config.and_then(|index| route.alternatives.get(index));
        let chosen = chosen.unwrap_or(route);
        let search_again = match ran.end {
            End::Done { search_again } => search_again,
            end => {
                let answer = answer_of(end).unwrap_or(Answer::Cycle);
                let route = Some(chosen);
                return Phased::Answer { answer, route };
            }
        };
        if !search_again {
            return Phased::Route(chosen);
        }
        changes += 1;
        if changes > MAX_URI_CHANGES {
            return Phased::Answer {
                answer: Answer::Cycle,
                route: Some(route),
            };
        }
    }
}

/// The answer a program's end gives, if it gives one.
fn answer_of(end: End<'_>) -> Option<Answer<'_>> {
    match end {
        End::Done { .. } => None,
        End::Return(action) => Some(Answer::Return(action)),
        End::Redirect { code, location } => Some(Answer::Redirect { code, location }),
    }
}

impl Answer<'_> {
    /// The response (`info`: the request as the phases left it; `rules`: the redirect rules
    /// where it was answered, the location's or the server's).
    pub fn respond(
        self,
        snapshot: &Snapshot,
        info: &RequestInfo,
        rules: &RedirectRules,
    ) -> Response<ResponseBody> {
        match self {
            Answer::Return(action) => super::answer_return(action, snapshot, info, rules),
            Answer::Redirect { code, location } => respond(code, Some(location), info, rules),
            Answer::Cycle => error::error_page(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// Marks a response that must not be sent: the server closes the connection (HTTP/1) or
/// resets the stream (HTTP/2) instead, as nginx does for `return 444`.
#[derive(Clone, Copy, Debug)]
pub struct CloseWithoutAnswer;

/// `return CODE [TEXT]` rendered: a redirect for 301/302/303/307/308 (a relative `Location`
/// made absolute, as nginx's `absolute_redirect on`), nothing at all for 444, else a body (or
/// an error page).
pub(super) fn respond(
    code: StatusCode,
    text: Option<String>,
    info: &RequestInfo,
    rules: &RedirectRules,
) -> Response<ResponseBody> {
    // nginx's own code: close the connection (reset the stream) without any answer.
    if code.as_u16() == 444 {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = code;
        response.extensions_mut().insert(CloseWithoutAnswer);
        return response;
    }
    // A 2xx would tell an HTTP/2 WebSocket client its stream is now a tunnel: it is not.
    if info.method == Method::CONNECT && code.is_success() {
        return error::error_page(StatusCode::METHOD_NOT_ALLOWED);
    }
    let redirect = matches!(code.as_u16(), 301 | 302 | 303 | 307 | 308);
    let mut response = match (text, redirect) {
        (Some(location), true) => {
            let mut response = error::error_page(code);
            let location = absolute(location, info, rules);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        (Some(text), false) => {
            let mut response = Response::new(ResponseBody::full(text));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
        (None, _) if code.is_client_error() || code.is_server_error() => error::error_page(code),
        (None, _) => Response::new(ResponseBody::empty()),
    };
    *response.status_mut() = code;
    response
}

/// nginx's `absolute_redirect` (default on): a `Location` starting with `/` gets the scheme,
/// the request's host (the server's name with `server_name_in_redirect on`, or when the
/// request names none) and, with `port_in_redirect` (default on), the port it arrived on
/// unless that is the scheme's own.
fn absolute(location: String, info: &RequestInfo, rules: &RedirectRules) -> String {
    if !rules.absolute || !location.starts_with('/') {
        return location;
    }
    let host = if info.host.is_empty() || rules.server_name {
        info.server_name
    } else {
        info.host
    };
    let port = info.local.port();
    let default_port = if info.scheme == "https" { 443 } else { 80 };
    let mut absolute = format!("{}://{host}", info.scheme);
    if rules.port && port != default_port {
        absolute.push(':');
        absolute.push_str(&port.to_string());
    }
    absolute.push_str(&location);
    absolute
}
