//! Header rewriting in both directions: hop-by-hop headers never cross the proxy blindly,
//! `proxy_set_header` applies in config order (an empty result removes the header, as nginx),
//! `Host` defaults to `$proxy_host`, and an upgrade request is forwarded as an upgrade.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::snapshot::{AddHeader, HeaderPlan, HeaderSource};
use crate::vars::{RequestInfo, Vars};

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the de-facto `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The `Upgrade` token of an HTTP/1.1 upgrade request (`Connection: upgrade` plus `Upgrade`).
pub fn requested_upgrade(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    connection_has(headers, "upgrade").then(|| upgrade.clone())
}

/// True when a `Connection` header lists `token`.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Values rendered from the request before its headers are rewritten (templates read the
/// client's original headers, e.g. `$http_upgrade`, `$proxy_add_x_forwarded_for`).
/// Fixed values need no rendering, so a plan without templates allocates nothing here.
pub struct Rendered {
    /// One entry per `HeaderSource::Template` of the plan, in plan order.
    templates: Vec<Option<HeaderValue>>,
}

/// Renders every `proxy_set_header` template of `plan` against the request as received.
pub fn render_request_headers(
    plan: &HeaderPlan,
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Rendered {
    let templates = plan
        .set
        .iter()
        .filter(|h| matches!(h.value, HeaderSource::Template(_)))
        .map(|h| render(&h.value, vars, req, scratch))
        .collect();
    Rendered { templates }
}

/// Renders `add_header` values for the response (evaluated against the request, as nginx).
pub fn render_response_headers(
    adds: &[AddHeader],
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Vec<(HeaderName, HeaderValue, bool)> {
    adds.iter()
        .filter_map(|add| {
            let value = render(&add.value, vars, req, scratch)?;
            Some((add.name.clone(), value, add.always))
        })
        .collect()
}

fn render(
    source: &HeaderSource,
    vars: &Vars,
    req: &RequestInfo,
    scratch: &mut String,
) -> Option<HeaderValue> {
    match source {
        HeaderSource::Fixed(value) => Some(value.clone()),
        HeaderSource::Remove => None,
        HeaderSource::Template(template) => {
            scratch.clear();
            template.render(vars, req, scratch);
            // An empty value removes the header (nginx); an unrepresentable one is dropped too
            // rather than failing the request.
            (!scratch.is_empty())
                .then(|| HeaderValue::from_str(scratch).ok())
                .flatten()
        }
    }
}

/// Rewrites the client's request headers into the upstream request's.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    plan: &HeaderPlan,
    rendered: Rendered,
    proxy_host: &HeaderValue,
    upgrade: Option<HeaderValue>,
) {
    strip_hop_by_hop(headers);
    if !plan.sets_host {
        headers.insert(header::HOST, proxy_host.clone());
    }
    let mut templates = rendered.templates.into_iter();
    for set in &plan.set {
        let value = match &set.value {
            HeaderSource::Fixed(value) => Some(value.clone()),
            HeaderSource::Remove => None,
            HeaderSource::Template(_) => templates.next().flatten(),
        };
        match value {
            Some(value) => {
                headers.insert(set.name.clone(), value);
            }
            None => {
                headers.remove(&set.name);
            }
        }
    }
    if let Some(upgrade) = upgrade {
        // Forward an upgrade as an upgrade even without the `map $http_upgrade` idiom: the
        // client asked for it, and dropping it would break every WebSocket.
        if !headers.contains_key(header::UPGRADE) {
            headers.insert(header::UPGRADE, upgrade);
        }
        if !connection_has(headers, "upgrade") {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

/// `X-Accel-*` response headers are instructions to the proxy (nginx hides them by default);
/// tether already streams everything, so it only drops them.
const ACCEL: [HeaderName; 5] = [
    HeaderName::from_static("x-accel-buffering"),
    HeaderName::from_static("x-accel-redirect"),
    HeaderName::from_static("x-accel-expires"),
    HeaderName::from_static("x-accel-limit-rate"),
    HeaderName::from_static("x-accel-charset"),
];

/// Cleans an upstream response's headers for the client. A `101` keeps its `Upgrade`.
pub fn rewrite_response(headers: &mut HeaderMap, switching_protocols: bool) {
    let upgrade = switching_protocols
        .then(|| headers.remove(header::UPGRADE))
        .flatten();
    strip_hop_by_hop(headers);
    for name in &ACCEL {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(connection) = headers.get(header::CONNECTION) {
        // Rare: only headers beyond the standard ones need this allocation.
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .filter(|name| !HOP_BY_HOP.contains(name))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Idempotent methods may be retried on another server after the request was sent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn no_plan() -> HeaderPlan {
        HeaderPlan {
            set: vec![],
            sets_host: false,
        }
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_stripped() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ]);
        let plan = no_plan();
        rewrite_request(
            &mut h,
            &plan,
            Rendered { templates: vec![] },
            &HeaderValue::from_static("backend"),
            None,
        );
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["host"], "backend");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn an_upgrade_is_forwarded_without_the_map_idiom() {
        let client = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let upgrade = requested_upgrade(Version::HTTP_11, &client);
        assert_eq!(upgrade.as_ref().unwrap(), "websocket");
        assert!(requested_upgrade(Version::HTTP_10, &client).is_none());
        let mut h = client.clone();
        let plan = no_plan();
        rewrite_request(
            &mut h,
            &plan,
            Rendered { templates: vec![] },
            &HeaderValue::from_static("b"),
            upgrade,
        );
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn a_101_keeps_its_upgrade() {
        let mut h = headers(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", "x"),
        ]);
        rewrite_response(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        let mut h = headers(&[("upgrade", "h2c"), ("connection", "upgrade")]);
        rewrite_response(&mut h, false);
        assert!(h.is_empty());
    }
}
