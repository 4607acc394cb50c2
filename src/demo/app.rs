//! One demo app server: accept loop, per-connection HTTP/1.1 with upgrades, and routing each
//! request to the transport or control endpoint that answers it.
//!
//! Stopping must make the server look dead to a proxy, not merely quiet: the listener is
//! dropped (new connections are refused), idle keep-alive connections close, and every
//! long-lived exchange (WebSocket, SSE, long poll) is cut without a goodbye. Only a request
//! already being answered, such as the `/demo/stop` that stopped this very server, finishes.

use std::{io, sync::Arc, time::Duration};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

use super::control::{self, FarmControl};
use super::reply::{Body, full, text};
use super::state::{AppState, stopped};
use super::{poll, sse, ws};

/// The demo page, served at `/` and `/index.html`.
const PAGE: &str = include_str!("page.html");

/// How long a stopping server lets an in-flight ordinary request finish. Long-lived exchanges
/// abort on their own; this only bounds a client that stops reading its response.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves one app server named `name` on an already bound `listener` until `stop` turns `true`
/// (or its sender is dropped). Returns once the listener is closed; open connections are being
/// cut by then. A lone server answers `/demo/*` with 503: only a [`Farm`](super::Farm) has them.
pub async fn serve(listener: TcpListener, name: Arc<str>, stop: watch::Receiver<bool>) {
    run(listener, name, stop, None).await;
}

/// [`serve`] for a member of a farm, whose control endpoints act on the whole farm through
/// `farm`.
pub(crate) async fn serve_in_farm(
    listener: TcpListener,
    name: Arc<str>,
    stop: watch::Receiver<bool>,
    farm: FarmControl,
) {
    run(listener, name, stop, Some(farm)).await;
}

async fn run(
    listener: TcpListener,
    name: Arc<str>,
    stop: watch::Receiver<bool>,
    farm: Option<FarmControl>,
) {
    let header = HeaderValue::from_str(&name).ok();
    let state = Arc::new(AppState {
        name,
        header,
        stop,
        farm,
    });
    let mut stop = state.stop.clone();
    loop {
        tokio::select! {
            // Stop wins over a pending accept, so `Farm::stop` returning means refused connects.
            biased;
            () = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, state.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(app = %state.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// One client connection, HTTP/1.1 with upgrades, cut short when the server stops.
async fn connection(stream: TcpStream, state: Arc<AppState>) {
    let mut stop = state.stop.clone();
    let service = service_fn(move |req| handle(req, state.clone()));
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "app connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            // Closes an idle connection now and a busy one after its current response; the
            // long-lived responses see the same signal and abort, so this ends promptly.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// The closed set of things an app server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    WhoAmI,
    WebSocket,
    Events,
    Poll,
    Page,
    Control(control::Action),
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/whoami" => Route::WhoAmI,
            "/ws" => Route::WebSocket,
            "/sse" => Route::Events,
            "/poll" => Route::Poll,
            "/" | "/index.html" => Route::Page,
            "/demo/status" => Route::Control(control::Action::Status),
            "/demo/stop" => Route::Control(control::Action::Stop),
            "/demo/start" => Route::Control(control::Action::Start),
            _ => return None,
        })
    }

    /// The one method the route takes: control actions change the farm, so they want POST;
    /// everything else is a GET.
    fn method(self) -> &'static str {
        match self {
            Route::Control(control::Action::Stop | control::Action::Start) => "POST",
            _ => "GET",
        }
    }
}

/// Answers one request. An `Err` makes hyper drop the connection without a response, which is
/// how a long poll caught by a stop dies.
async fn handle(req: Request<Incoming>, state: Arc<AppState>) -> io::Result<Response<Body>> {
    let mut response = match Route::of(req.uri().path()) {
        None => text(StatusCode::NOT_FOUND, "not found\n"),
        Some(route) if req.method().as_str() != route.method() => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = HeaderValue::from_static(route.method());
            response.headers_mut().insert(header::ALLOW, allow);
            response
        }
        Some(Route::WhoAmI) => text(StatusCode::OK, format!("{}\n", state.name)),
        Some(Route::WebSocket) => ws::upgrade(req, &state),
        Some(Route::Events) => sse::events(&state),
        Some(Route::Poll) => poll::hold(req.uri().query(), &state).await?,
        Some(Route::Page) => full(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        Some(Route::Control(action)) => {
            control::handle(action, req.uri().query(), state.farm.as_ref()).await
        }
    };
    if let Some(value) = &state.header {
        response.headers_mut().insert("x-app-server", value.clone());
    }
    Ok(response)
}
