//! `/demo/status`, `POST /demo/stop?app=NAME`, `POST /demo/start?app=NAME`: the page's
//! buttons. Any app server answers for the whole farm, because the proxy decides which one
//! gets the request.
//!
//! Stop and start answer with the new status, so the page redraws from one round trip.

use std::{fmt::Write, io, net::SocketAddr};

use http::{Response, StatusCode};

use super::{
    app::{Body, full, query_param, text},
    farm::{Farm, FarmHandle},
};

/// The control requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Status,
    Stop,
    Start,
}

/// Carries out `action` on the farm and answers with the farm's status as JSON.
pub(crate) async fn handle(
    action: Action,
    query: Option<&str>,
    farm: Option<&FarmHandle>,
) -> Response<Body> {
    let Some(farm) = farm.and_then(FarmHandle::farm) else {
        let message = "this app server is not part of a farm\n";
        return text(StatusCode::SERVICE_UNAVAILABLE, message);
    };
    if action != Action::Status {
        let Some(app) = query_param(query, "app") else {
            return text(StatusCode::BAD_REQUEST, "missing ?app=NAME\n");
        };
        let done = match action {
            // With every app server down nobody would be left to answer the page's
            // `/demo/start`, so the last one stays up.
            Action::Stop if is_last_running(&farm, app).await => {
                let message = format!("refusing to stop {app:?}: it is the last one running\n");
                return text(StatusCode::CONFLICT, message);
            }
            Action::Stop => farm.stop(app).await,
            _ => farm.start_again(app).await,
        };
        if let Err(error) = done {
            let status = match error.kind() {
                io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return text(status, format!("{error}\n"));
        }
    }
    full(
        StatusCode::OK,
        "application/json",
        json(&farm.status().await),
    )
}

/// Whether `app` is running and no other app server is.
async fn is_last_running(farm: &Farm, app: &str) -> bool {
    let status = farm.status().await;
    let mut running = status.iter().filter(|(_, _, running)| *running);
    matches!((running.next(), running.next()), (Some((name, _, _)), None) if name == app)
}

/// `[{"name":"a","addr":"127.0.0.1:9101","running":true},...]`
fn json(status: &[(String, SocketAddr, bool)]) -> String {
    let mut out = String::from("[");
    for (i, (name, addr, running)) in status.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_string(&mut out, name);
        // Writing to a String cannot fail.
        let _ = write!(out, ",\"addr\":\"{addr}\",\"running\":{running}}}");
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_has_the_documented_shape() {
        let status = vec![
            ("a".to_owned(), "127.0.0.1:9101".parse().unwrap(), true),
            ("b\"\n".to_owned(), "[::1]:9102".parse().unwrap(), false),
        ];
        assert_eq!(
            json(&status),
            r#"[{"name":"a","addr":"127.0.0.1:9101","running":true},"#.to_owned()
                + r#"{"name":"b\"\u000a","addr":"[::1]:9102","running":false}]"#
        );
        assert_eq!(json(&[]), "[]");
    }
}
