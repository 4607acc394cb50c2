//! The request target sent upstream, by nginx's rules: the client's as received, a location
//! prefix replaced by `proxy_pass`'s URI, `proxy_pass`'s URI rendered when it has variables,
//! or — once a rewrite changed `$uri` or `$args` — the new URI escaped with its arguments.

use http::Uri;

use super::error::ProxyError;
use crate::route::path;
use crate::snapshot::UriRewrite;
use crate::vars::Locals;

/// What the request's target became before it goes upstream.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rewritten<'a> {
    /// The normalised path, when it differs from the one received.
    pub(super) normalised: Option<&'a [u8]>,
    /// `proxy_pass` with variables: its URI part, rendered.
    pub(super) rendered: Option<&'a str>,
    /// What the rewrite phases did (a changed `$uri` or `$args`).
    pub(super) locals: Option<&'a Locals>,
}

/// The URI sent upstream, by nginx's rule (see [`UriRewrite`]).
pub(super) fn upstream_uri(
    uri: &Uri,
    target: Rewritten,
    rewrite: &UriRewrite,
) -> Result<Uri, ProxyError> {
    if let Some(rendered) = target.rendered {
        return Uri::try_from(rendered).map_err(|_| ProxyError::BadRequest);
    }
    if let Some(locals) = target.locals.filter(|locals| locals.changed_target()) {
        return rewritten_uri(uri, target.normalised, locals, rewrite);
    }
    let (prefix, with) = match rewrite {
        // Common case: the client's path and query as they are, shared rather than copied.
        UriRewrite::Keep | UriRewrite::Replace(_) => {
            let original = uri.path_and_query();
            return Ok(original.map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone())));
        }
        UriRewrite::ReplacePrefix { prefix, with } => (prefix, with),
    };
    // nginx: the normalised path with the location prefix replaced, escaped again only if the
    // client's path had escapes (else it is sent as it stands), then the query if not empty.
    let received = uri.path();
    let path = target.normalised.unwrap_or(received.as_bytes());
    let rest = path.strip_prefix(prefix.as_bytes()).unwrap_or(path);
    let query = uri.query().unwrap_or("");
    let mut out = Vec::with_capacity(with.len() + rest.len() * 3 + query.len() + 1);
    out.extend_from_slice(with.as_bytes());
    if received.contains('%') {
        path::escape(rest, &mut out);
    } else {
        out.extend_from_slice(rest);
    }
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    Uri::from_maybe_shared(out).map_err(|_| ProxyError::BadRequest)
}

/// nginx's rule once a rewrite changed `$uri` or `$args`: `$uri` escaped (the location prefix
/// replaced by `proxy_pass`'s URI, unless `rewrite ... break` left the location's match
/// behind, when that URI is ignored), then `?$args` if not empty.
fn rewritten_uri(
    uri: &Uri,
    normalised: Option<&[u8]>,
    locals: &Locals,
    rewrite: &UriRewrite,
) -> Result<Uri, ProxyError> {
    let received = normalised.unwrap_or(uri.path().as_bytes());
    let path = locals.uri().unwrap_or(received);
    let args = locals.args().unwrap_or(uri.query().unwrap_or(""));
    let (prefix, with) = match rewrite {
        UriRewrite::ReplacePrefix { prefix, with } if !locals.left_location() => {
            (prefix.as_bytes(), with.as_bytes())
        }
        _ => (&b""[..], &b""[..]),
    };
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let mut out = Vec::with_capacity(with.len() + rest.len() * 3 + args.len() + 1);
    out.extend_from_slice(with);
    path::escape(rest, &mut out);
    if !args.is_empty() {
        out.push(b'?');
        out.extend_from_slice(args.as_bytes());
    }
    Uri::from_maybe_shared(out).map_err(|_| ProxyError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str, rule: &UriRewrite) -> String {
        let uri: Uri = uri.parse().unwrap();
        let normalised = path::normalise(uri.path()).unwrap();
        let target = Rewritten {
            normalised: Some(&normalised),
            ..Rewritten::default()
        };
        upstream_uri(&uri, target, rule).unwrap().to_string()
    }

    #[test]
    fn nginx_uri_rules() {
        assert_eq!(
            rewrite("/api/users?x=1", &UriRewrite::Keep),
            "/api/users?x=1"
        );
        let prefix = UriRewrite::ReplacePrefix {
            prefix: "/api/".into(),
            with: "/v1/".into(),
        };
        assert_eq!(rewrite("/api/users?x=1", &prefix), "/v1/users?x=1");
        // The normalised path goes up, escaped again only when the client escaped; an empty
        // query is dropped.
        assert_eq!(rewrite("/api/a//b/../c%20d?", &prefix), "/v1/a/c%20d");
        assert_eq!(
            rewrite("/api/a//b/../c\"d?q=%zz", &prefix),
            "/v1/a/c\"d?q=%zz"
        );
        let root = UriRewrite::ReplacePrefix {
            prefix: "/app".into(),
            with: "/".into(),
        };
        assert_eq!(rewrite("/app/x", &root), "//x");
        assert_eq!(rewrite("http://h/p?q", &UriRewrite::Keep), "/p?q");
    }

    #[test]
    fn a_rewritten_target_goes_up_escaped_with_its_arguments() {
        let uri: Uri = "/api/old?x=1".parse().unwrap();
        let prefix = UriRewrite::ReplacePrefix {
            prefix: "/api/".into(),
            with: "/v1/".into(),
        };
        let send = |locals: &Locals, rule: &UriRewrite| {
            let target = Rewritten {
                locals: Some(locals),
                ..Rewritten::default()
            };
            upstream_uri(&uri, target, rule).unwrap().to_string()
        };
        let mut locals = Locals::default();
        // Nothing changed: the client's target as received.
        assert_eq!(send(&locals, &prefix), "/v1/old?x=1");
        locals.set_uri(b"/api/new page".to_vec());
        assert_eq!(send(&locals, &UriRewrite::Keep), "/api/new%20page?x=1");
        assert_eq!(send(&locals, &prefix), "/v1/new%20page?x=1");
        locals.set_args("y=2".into());
        assert_eq!(send(&locals, &UriRewrite::Keep), "/api/new%20page?y=2");
        // `rewrite ... break`: proxy_pass's URI part is ignored.
        locals.leave_location();
        assert_eq!(send(&locals, &prefix), "/api/new%20page?y=2");
        locals.set_args(String::new());
        assert_eq!(send(&locals, &UriRewrite::Keep), "/api/new%20page");
    }
}
