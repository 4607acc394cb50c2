//! A template read in place: when it is one variable the request holds as text, its value
//! borrowed from the request instead of rendered into a buffer. `sticky learn` reads its
//! session key this way on every request, as the sticky cookie is read ([`find_cookie`]).
//! Pure: `http` only.

use super::header_values::find_cookie;
use super::{Part, RequestInfo, Template, Var, arg_value};

impl Template {
    /// The text this template renders to, borrowed from `req`, when the template is one
    /// `$cookie_NAME`, `$arg_NAME`, or `$http_NAME` with at most one value of visible ASCII;
    /// None when it must be rendered ([`Template::render`]). What is absent reads as `""`, as
    /// it renders.
    #[inline]
    pub fn read_in_place<'r>(&self, req: &RequestInfo<'r>) -> Option<&'r str> {
        let [Part::Var(var)] = &*self.parts else {
            return None;
        };
        match var {
            Var::Cookie(name) => Some(
                find_cookie(req.headers, |found, _| found.eq_ignore_ascii_case(name)).unwrap_or(""),
            ),
            Var::Arg(name) => Some(arg_value(req.current_args(), name).unwrap_or("")),
            Var::Header(name) => {
                let mut values = req.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => Some(""),
                    // Anything else (bytes past ASCII, values to join) renders.
                    (Some(value), None) => value.to_str().ok(),
                    (Some(_), Some(_)) => None,
                }
            }
            _ => None,
        }
    }
}
