//! `Set-Cookie` for `sticky cookie`, precompiled once per group.
//!
//! A session cookie or `expires=max` gives one fixed header value per server, built when the
//! snapshot is; only `expires=TIME` (sliding, re-issued on every response) formats a date per
//! response. Reading the client's cookie is here too, so both directions agree on the name.
//! Which value a response gets, and whether it gets one, is `sticky.rs`'s to say. `http` types
//! only: no hyper.

use std::time::{Duration, SystemTime};

use crate::header_list::HeaderList;
use http::HeaderValue;

use crate::config::{CookieExpiry, SameSite, StickyCookie};
use crate::vars::find_cookie;

/// nginx's `expires=max` date and age.
const MAX_EXPIRES: &str = "Thu, 31-Dec-37 23:55:55 GMT";
const MAX_AGE: u64 = 315_360_000;

/// Issues and reads one group's sticky cookie.
#[derive(Debug)]
pub struct CookieIssuer {
    name: String,
    /// `; domain=..; path=..; HttpOnly; Secure; SameSite=..` (everything after the expiry).
    attributes: String,
    sliding: Option<Duration>,
    /// Per member, when the header value does not depend on the time of the response.
    fixed: Vec<HeaderValue>,
    /// Per member, `NAME=VALUE` (for sliding cookies).
    pairs: Vec<String>,
}

impl CookieIssuer {
    /// Precompiles the cookie for members whose values are `values` (index = member index).
    /// Returns None if a value cannot be a header (not for hex values and a validated name).
    pub fn new<'a>(
        spec: &StickyCookie,
        values: impl Iterator<Item = &'a str>,
    ) -> Option<CookieIssuer> {
        let mut attributes = String::new();
        if let Some(domain) = &spec.domain {
            attributes.push_str("; domain=");
            attributes.push_str(domain);
        }
        attributes.push_str("; path=");
        attributes.push_str(&spec.path);
        if spec.http_only {
            attributes.push_str("; HttpOnly");
        }
        if spec.secure {
            attributes.push_str("; Secure");
        }
        match spec.same_site {
            Some(SameSite::Strict) => attributes.push_str("; SameSite=Strict"),
            Some(SameSite::Lax) => attributes.push_str("; SameSite=Lax"),
            Some(SameSite::None) => attributes.push_str("; SameSite=None"),
            None => {}
        }
        let pairs: Vec<String> = values
            .map(|value| format!("{}={value}", spec.name))
            .collect();
        let (sliding, fixed) = match spec.expires {
            Some(CookieExpiry::After(duration)) => (Some(duration), Vec::new()),
            expires => {
                let expiry = match expires {
                    Some(CookieExpiry::Max) => {
                        format!("; expires={MAX_EXPIRES}; max-age={MAX_AGE}")
                    }
                    _ => String::new(),
                };
                let fixed = pairs
                    .iter()
                    .map(|pair| HeaderValue::from_str(&format!("{pair}{expiry}{attributes}")).ok())
                    .collect::<Option<Vec<_>>>()?;
                (None, fixed)
            }
        };
        Some(CookieIssuer {
            name: spec.name.clone(),
            attributes,
            sliding,
            fixed,
            pairs,
        })
    }

    /// True when every response re-issues the cookie (`expires=TIME`: the expiry slides).
    pub fn is_sliding(&self) -> bool {
        self.sliding.is_some()
    }

    /// The `Set-Cookie` value pinning a client to member `index`.
    pub fn set_cookie(&self, index: usize) -> Option<HeaderValue> {
        match self.sliding {
            None => self.fixed.get(index).cloned(),
            Some(duration) => {
                let expires = httpdate::fmt_http_date(SystemTime::now() + duration);
                let text = format!(
                    "{}; expires={expires}; max-age={}{}",
                    self.pairs.get(index)?,
                    duration.as_secs(),
                    self.attributes
                );
                HeaderValue::from_str(&text).ok()
            }
        }
    }

    /// The value of this cookie in a request's `Cookie` headers, if present: the first pair
    /// of this exact name, its surrounding quotes taken off. Borrowed, nothing allocated.
    pub fn read<'h>(&self, headers: &'h HeaderList) -> Option<&'h str> {
        find_cookie(headers, |name, _| name == self.name).map(|value| value.trim_matches('"'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;
    use http::header;

    fn spec(expires: Option<CookieExpiry>) -> StickyCookie {
        StickyCookie {
            name: "srv".into(),
            expires,
            domain: Some("example.com".into()),
            path: "/".into(),
            http_only: true,
            secure: true,
            same_site: Some(SameSite::Lax),
            secret: None,
            span: Span::builtin(),
        }
    }

    #[test]
    fn session_and_max_cookies_are_fixed_per_member() {
        let issuer = CookieIssuer::new(&spec(None), ["aa", "bb"].into_iter()).unwrap();
        assert!(!issuer.is_sliding());
        assert_eq!(
            issuer.set_cookie(1).unwrap(),
            "srv=bb; domain=example.com; path=/; HttpOnly; Secure; SameSite=Lax"
        );
        let issuer = CookieIssuer::new(&spec(Some(CookieExpiry::Max)), ["aa"].into_iter()).unwrap();
        assert_eq!(
            issuer.set_cookie(0).unwrap(),
            "srv=aa; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000; domain=example.com; path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert!(issuer.set_cookie(5).is_none());
    }

    #[test]
    fn sliding_cookies_carry_a_fresh_expiry() {
        let issuer = CookieIssuer::new(
            &spec(Some(CookieExpiry::After(Duration::from_secs(3600)))),
            ["aa"].into_iter(),
        )
        .unwrap();
        assert!(issuer.is_sliding());
        let value = issuer.set_cookie(0).unwrap();
        let value = value.to_str().unwrap();
        assert!(value.starts_with("srv=aa; expires="), "{value}");
        assert!(
            value.contains(" GMT; max-age=3600; domain=example.com"),
            "{value}"
        );
    }

    #[test]
    fn reads_the_named_cookie_among_others() {
        let issuer = CookieIssuer::new(&spec(None), ["aa"].into_iter()).unwrap();
        let mut headers = HeaderList::new();
        headers.append(header::COOKIE, "a=1; srvx=2".parse().unwrap());
        assert_eq!(issuer.read(&headers), None);
        headers.append(header::COOKIE, "b=3; srv=\"abc\"".parse().unwrap());
        assert_eq!(issuer.read(&headers), Some("abc"));
    }
}
