//! Controlling the farm: the channel its app servers and its owner send orders on
//! ([`FarmControl`], [`Command`]), and the page's buttons over it: `/demo/status`,
//! `POST /demo/stop?app=NAME`, `POST /demo/start?app=NAME`. Any app server answers for the
//! whole farm, because the proxy decides which one gets the request.
//!
//! An app server holds only the sending end of the channel, never the farm: the farm's task
//! owns the app servers and carries the orders out one at a time (`farm`). Stop and start
//! answer with the new status, so the page redraws from one round trip.

use std::{fmt::Write, io, net::SocketAddr};

use http::{Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::reply::{Body, full, query_param, text};

/// The control requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Status,
    Stop,
    Start,
}

/// One app server of the farm as the status shows it: name, address, running.
pub(crate) type AppStatus = (String, SocketAddr, bool);

/// An order to the farm's task, with where to send its answer.
pub(crate) enum Command {
    /// Every app server in the order given at start.
    Status(oneshot::Sender<Vec<AppStatus>>),
    /// Stop the app server `app` (see [`Farm::stop`](super::Farm::stop)).
    Stop {
        app: String,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Start the stopped app server `app` again (see
    /// [`Farm::start_again`](super::Farm::start_again)).
    Start {
        app: String,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// Orders in flight at once; a few clicks on the page at most.
const QUEUE: usize = 16;

/// The sending end of a farm's control channel.
#[derive(Clone)]
pub(crate) struct FarmControl(mpsc::Sender<Command>);

impl FarmControl {
    /// A new channel: this end for the app servers and the owner, the other for the farm's task.
    pub(crate) fn channel() -> (FarmControl, mpsc::Receiver<Command>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        (FarmControl(sender), receiver)
    }

    /// Every app server: name, address, running.
    pub(crate) async fn status(&self) -> io::Result<Vec<AppStatus>> {
        self.ask(Command::Status).await
    }

    /// Stops the app server `app`.
    pub(crate) async fn stop(&self, app: &str) -> io::Result<()> {
        let app = app.to_owned();
        self.ask(|done| Command::Stop { app, done }).await?
    }

    /// Starts the stopped app server `app` again.
    pub(crate) async fn start(&self, app: &str) -> io::Result<()> {
        let app = app.to_owned();
        self.ask(|done| Command::Start { app, done }).await?
    }

    /// Sends one order and waits for its answer. `NotConnected` once the farm is gone (its
    /// owner dropped it; its app servers are stopping).
    async fn ask<T>(&self, order: impl FnOnce(oneshot::Sender<T>) -> Command) -> io::Result<T> {
        let (answer, answered) = oneshot::channel();
        let gone = || io::Error::new(io::ErrorKind::NotConnected, NO_FARM);
        self.0.send(order(answer)).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())
    }
}

/// What a server outside any farm (or left by a dropped one) says to `/demo/*`.
const NO_FARM: &str = "this app server is not part of a farm";

/// Carries out `action` on the farm and answers with the farm's status as JSON.
pub(crate) async fn handle(
    action: Action,
    query: Option<&str>,
    farm: Option<&FarmControl>,
) -> Response<Body> {
    let Some(farm) = farm else {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{NO_FARM}\n"));
    };
    if action != Action::Status {
        let Some(app) = query_param(query, "app") else {
            return text(StatusCode::BAD_REQUEST, "missing ?app=NAME\n");
        };
        let done = match action {
            // With every app server down nobody would be left to answer the page's
            // `/demo/start`, so the last one stays up.
            Action::Stop if is_last_running(farm, app).await => {
                let message = format!("refusing to stop {app:?}: it is the last one running\n");
                return text(StatusCode::CONFLICT, message);
            }
            Action::Stop => farm.stop(app).await,
            _ => farm.start(app).await,
        };
        if let Err(error) = done {
            return failed(&error);
        }
    }
    match farm.status().await {
        Ok(status) => full(StatusCode::OK, "application/json", json(&status)),
        Err(error) => failed(&error),
    }
}

/// The answer to an order that failed: 404 for an unknown app, 503 once the farm is gone.
fn failed(error: &io::Error) -> Response<Body> {
    let status = match error.kind() {
        io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        io::ErrorKind::NotConnected => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, format!("{error}\n"))
}

/// Whether `app` is running and no other app server is.
async fn is_last_running(farm: &FarmControl, app: &str) -> bool {
    let Ok(status) = farm.status().await else {
        return false;
    };
    let mut running = status.iter().filter(|(_, _, running)| *running);
    matches!((running.next(), running.next()), (Some((name, _, _)), None) if name == app)
}

/// `[{"name":"a","addr":"127.0.0.1:9101","running":true},...]`
fn json(status: &[AppStatus]) -> String {
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
