//! One variable known when a request arrives, as an access log line renders it: straight, not
//! through a template's walk, and telling the log what its text is made of — text that never
//! needs escaping, the request's own bytes (escaped as they are copied, with no UTF-8 check),
//! or anything else (rendered, then checked). A log line renders several on every request.
//! Pure (`http`).

use http::HeaderName;

use super::{NO_CAPTURES, RequestInfo, Var, Vars, protocol, push_remote_user, render_var};

static AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;

/// A variable of a log line known when the request arrives.
#[derive(Clone, Debug)]
pub struct Early(pub(super) Var);

/// What an [`Early`] value is made of for one request.
#[derive(Debug)]
pub enum Raw<'r> {
    /// Text that never needs escaping (digits, addresses, tokens): [`Early::render`] it.
    Safe,
    /// The request's own bytes, whole (not necessarily UTF-8).
    Bytes(&'r [u8]),
    /// `$request`: a method (a token, nothing to escape), the target as received, a protocol.
    Request {
        /// The method.
        method: &'r str,
        /// The request target's bytes.
        target: &'r [u8],
        /// `HTTP/1.1` and the like.
        protocol: &'static str,
    },
    /// Anything else: [`Early::render`] it, then check it.
    Text,
}

impl Early {
    /// Appends the value as text, as a template of this one variable renders it.
    pub fn render(&self, vars: &Vars, req: &RequestInfo, out: &mut String) {
        match &self.0 {
            // The commonest in a log line, taken before the general walk.
            Var::RemoteAddr => super::push_client(out, req.client),
            Var::RemoteUser => push_remote_user(req.headers, out),
            var => render_var(var, vars, req, &NO_CAPTURES, out),
        }
    }

    /// Whether an empty value is a value (nginx logs `$args` empty, an absent header as `-`).
    pub fn empty_is_value(&self) -> bool {
        matches!(self.0, Var::Args | Var::IsArgs | Var::Pipe)
    }

    /// Whether the text never needs escaping: digits, addresses, hex, HTTP tokens (a method
    /// has no `"` or `\`).
    pub fn is_safe(&self) -> bool {
        matches!(
            self.0,
            Var::RemoteAddr
                | Var::RemotePort
                | Var::ServerAddr
                | Var::ServerPort
                | Var::Scheme
                | Var::Https
                | Var::RequestMethod
                | Var::ServerProtocol
                | Var::RequestId
                | Var::Connection
                | Var::ConnectionRequests
                | Var::Pipe
        )
    }

    /// The request header a value is read from: `$http_NAME`'s, `$remote_user`'s
    /// (`Authorization`). A log line finds all of its headers in one pass over the request's.
    pub fn header(&self) -> Option<&HeaderName> {
        match &self.0 {
            Var::Header(name) => Some(name),
            Var::RemoteUser => Some(&AUTHORIZATION),
            _ => None,
        }
    }

    /// Whether this is `$remote_user` (see [`push_basic_user`](super::push_basic_user)).
    pub fn is_remote_user(&self) -> bool {
        matches!(self.0, Var::RemoteUser)
    }

    /// What the value is made of for `req`.
    pub fn raw<'r>(&self, req: &RequestInfo<'r>) -> Raw<'r> {
        if self.is_safe() {
            return Raw::Safe;
        }
        match &self.0 {
            // A header sent once (or not at all) is its value's bytes; repeated ones are joined.
            Var::Header(name) => {
                let mut values = req.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => Raw::Bytes(b""),
                    (Some(value), None) => Raw::Bytes(value.as_bytes()),
                    _ => Raw::Text,
                }
            }
            Var::Uri => Raw::Bytes(req.current_path()),
            Var::RequestUri => Raw::Bytes(req.request_uri().as_bytes()),
            Var::Request => Raw::Request {
                method: req.method.as_str(),
                target: req.request_uri().as_bytes(),
                protocol: protocol(req.version),
            },
            _ => Raw::Text,
        }
    }
}
