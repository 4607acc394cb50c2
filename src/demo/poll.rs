//! `GET /poll?wait=MS`: a long poll, held open for `wait` milliseconds, then answered.
//!
//! This is the transport that tests a proxy's `proxy_read_timeout`: nothing moves on the
//! connection while the request is held.

use std::{io, time::Duration};

use http::{Response, StatusCode};

use super::reply::{Body, query_param, text};
use super::state::{AppState, stopped};

/// How long a poll is held when the client does not say.
const DEFAULT_WAIT: Duration = Duration::from_millis(20_000);

/// The longest hold a client may ask for.
const MAX_WAIT: Duration = Duration::from_millis(60_000);

/// Holds the request, then answers `NAME poll`. A stop during the hold is an error, so the
/// connection is dropped without an answer, as a dead server would.
pub(crate) async fn hold(query: Option<&str>, state: &AppState) -> io::Result<Response<Body>> {
    let mut stop = state.stop.clone();
    tokio::select! {
        biased;
        () = stopped(&mut stop) => Err(io::Error::other("app server stopped")),
        () = tokio::time::sleep(wait(query)) => {
            Ok(text(StatusCode::OK, format!("{} poll\n", state.name)))
        }
    }
}

/// The hold asked for by `wait=MS`, defaulted when absent or unreadable, capped.
fn wait(query: Option<&str>) -> Duration {
    query_param(query, "wait")
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_read_defaulted_and_capped() {
        assert_eq!(wait(Some("wait=250")), Duration::from_millis(250));
        assert_eq!(wait(Some("x=1&wait=3000")), Duration::from_millis(3000));
        assert_eq!(wait(None), DEFAULT_WAIT);
        assert_eq!(wait(Some("wait=soon")), DEFAULT_WAIT);
        assert_eq!(wait(Some("wait=999999")), MAX_WAIT);
    }
}
