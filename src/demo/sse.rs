//! `GET /sse`: an endless server-sent event stream, one tick a second.
//!
//! The headers are the ones a real-time app sends so that no proxy buffers the stream:
//! `Cache-Control: no-cache` and nginx's `X-Accel-Buffering: no`.

use std::{io, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::{
    sync::watch,
    time::{Interval, MissedTickBehavior},
};

use super::reply::Body;
use super::state::{AppState, stopped};

/// Time between two events.
const TICK: Duration = Duration::from_secs(1);

/// Where one event stream is.
struct Ticks {
    name: Arc<str>,
    /// Number of the next event, from 1.
    next: u64,
    interval: Interval,
    stop: watch::Receiver<bool>,
    /// Set once the stream has failed; the next poll ends it.
    done: bool,
}

/// The event stream response: `data: NAME tick N` now and then once a second, until the
/// client goes away (hyper drops the body) or the server stops (the body fails, which cuts
/// the connection mid-stream, as a dying server would).
pub(crate) fn events(state: &AppState) -> Response<Body> {
    let mut interval = tokio::time::interval(TICK);
    // After a stall, carry on at the normal pace rather than bursting the missed ticks.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ticks = Ticks {
        name: state.name.clone(),
        next: 1,
        interval,
        stop: state.stop.clone(),
        done: false,
    };
    let stream = futures_util::stream::unfold(ticks, |mut ticks| async move {
        if ticks.done {
            return None;
        }
        tokio::select! {
            biased;
            () = stopped(&mut ticks.stop) => {
                ticks.done = true;
                Some((Err(io::Error::other("app server stopped")), ticks))
            }
            _ = ticks.interval.tick() => {
                let event = format!("data: {} tick {}\n\n", ticks.name, ticks.next);
                ticks.next += 1;
                Some((Ok(Frame::data(Bytes::from(event))), ticks))
            }
        }
    });

    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    let event_stream = HeaderValue::from_static("text/event-stream");
    headers.insert(header::CONTENT_TYPE, event_stream);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
