//! What every exchange of one app server knows: the server's name, the signal that stops it,
//! and, for a member of a farm, the line to the farm's control.
//!
//! Its own file so that the transports (`ws`, `sse`, `poll`) and the accept loop that routes
//! to them (`app`) share it without importing each other.

use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::watch;

use super::control::FarmControl;

/// What every connection of one app server shares.
pub(crate) struct AppState {
    /// The app server's name, as the page shows it.
    pub(crate) name: Arc<str>,
    /// `X-App-Server` value, built once; `None` if the name is not a valid header value.
    pub(crate) header: Option<HeaderValue>,
    /// Turns `true` (or its sender is dropped) when the server must stop.
    pub(crate) stop: watch::Receiver<bool>,
    /// The farm this server belongs to, for `/demo/*`; `None` for a lone server.
    pub(crate) farm: Option<FarmControl>,
}

/// Resolves once the server must stop: the flag turned `true` or its owner went away.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which also means stop.
    let _ = stop.wait_for(|&stop| stop).await;
}
