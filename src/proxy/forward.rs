//! Sending one request to the server the group chose: reuse or open a connection, send, wait
//! for the response head within the timeouts, and ask the group for the next server when moving
//! on is safe (`proxy_next_upstream`).
//!
//! "Safe" means nothing reached the upstream (connect failed, or hyper handed the request back
//! unsent), or the request is idempotent and has no body, so it can be sent again whole.

use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Level;

use crate::config::ProxySettings;
use crate::peer::{ActiveGuard, LONG_POLL_AFTER, Transport};
use crate::proxy::body::BodyError;
use crate::proxy::body::client::ClientBodyError;
use crate::proxy::body::request::{RequestBody, SendProgress};
use crate::proxy::connect::{ConnectError, connect};
use crate::proxy::context::{self, RequestContext, request_event};
use crate::proxy::error::{ProxyError, TimeoutKind, UpstreamFailure};
use crate::proxy::headers::is_idempotent;
use crate::proxy::pool::Sender;
use crate::telemetry::access_log::Record;
use crate::tls::upstream::TlsTarget;
use crate::upstream::{Affinity, Choice, Group, Learn, NoPeer, SetCookie, Tried};

/// A response head from an upstream, with what is needed to finish the exchange.
pub struct Answer<'g> {
    /// The response (body still streaming).
    pub response: Response<Incoming>,
    /// Counts the exchange on the server that answered, from the moment it was chosen until
    /// the response body (or tunnel) ends.
    pub guard: ActiveGuard,
    /// The connection, to return to the pool once the body is read.
    pub sender: Sender,
    /// What the connection is secured with (None: plain), the key it is pooled under.
    pub tls: Option<Arc<TlsTarget>>,
    /// The sticky cookie the response carries, as the choice of the server that answered said.
    pub set_cookie: Option<SetCookie<'g>>,
    /// `sticky learn`: what the response may create a session from.
    pub learn: Option<Learn<'g>>,
    /// How long getting a connection ready took (0 for a pooled one, as nginx counts it).
    pub connect_time: std::time::Duration,
    /// The upstream's spelling of its header names.
    pub spellings: Option<crate::proxy::spelling::Spellings>,
}

/// No server to choose: 502 when every one is out, 503 when the healthy ones are full.
impl From<NoPeer> for ProxyError {
    fn from(no_peer: NoPeer) -> ProxyError {
        match no_peer {
            NoPeer::AllBusy => ProxyError::AllBusy,
            NoPeer::AllDown => ProxyError::NoLiveUpstream,
        }
    }
}

/// How one exchange reaches its upstream: the location's settings, the TLS its connections
/// are secured with (None: plain HTTP), and what the error log says of the request.
#[derive(Clone, Copy)]
pub struct Route<'a> {
    /// The location's proxy settings.
    pub settings: &'a ProxySettings,
    /// `proxy_pass https://`: the TLS to open (or find pooled) connections with.
    pub tls: Option<&'a Arc<TlsTarget>>,
    /// The request as an error line names it (client, server, request line, host).
    pub cx: &'a RequestContext<'a>,
}

/// Sends the request in `unsent` to `first`, the server `group` chose for it, then — as
/// `route.settings` allow — to the next ones the group chooses for the same `affinity`. The
/// request waits in the caller's slot until an attempt sends it: after a failure it is still
/// there if no server took it (an `error_page` may ask again with its body).
pub async fn forward<'g>(
    group: &'g Group,
    affinity: &Affinity,
    first: Choice<'g>,
    unsent: &mut Option<Request<RequestBody>>,
    route: Route<'_>,
    progress: Option<&SendProgress>,
    mut log: Option<&mut Record>,
) -> Result<Answer<'g>, ProxyError> {
    let settings = route.settings;
    let cx = route.cx;
    // A bodyless idempotent request can be replayed after it was sent; keep its head only when
    // a retry is possible at all, so the common case copies nothing.
    let replay = unsent
        .as_ref()
        .filter(|request| {
            group.len() > 1
                && request.body().is_end_stream()
                && (is_idempotent(request.method()) || settings.next_upstream.non_idempotent)
        })
        .map(head_of);
    let max_tries = match settings.next_upstream_tries {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut tried = Tried::default();
    let mut choice = first;
    loop {
        if unsent.is_none() {
            *unsent = replay.as_ref().map(rebuild);
        }
        if let Some(log) = log.as_deref_mut() {
            log.try_started(choice.peer.endpoint.first_inet(), choice.sticky.as_str());
        }
        let attempted = attempt(&choice, group, unsent, route, progress).await;
        if let Some(log) = log.as_deref_mut() {
            match &attempted {
                Ok(answer) => {
                    log.try_connected(answer.connect_time);
                    log.try_answered(answer.response.status().as_u16());
                }
                Err(error) => log.try_failed(error.status().as_u16()),
            }
        }
        let error = match attempted {
            Ok(answer) => {
                let status = answer.response.status().as_u16();
                if !settings.next_upstream.statuses.contains(&status) || replay.is_none() {
                    group.record_success(choice.member);
                    return Ok(answer);
                }
                ProxyError::UpstreamStatus(status)
            }
            // The client's fault, not the server's: neither counted against it nor retried.
            Err(error) if error.is_client_fault() => return Err(error),
            Err(error) => error,
        };
        log_failed_try(cx, group, &choice, &error);
        tried.add(choice.member);
        let allowed = if error.is_timeout() {
            settings.next_upstream.timeout
        } else {
            settings.next_upstream.error
        };
        let can_resend = unsent.is_some() || replay.is_some();
        if !allowed || !can_resend || tried.count() >= max_tries || tried.count() >= group.len() {
            return Err(error);
        }
        choice = group
            .choose(affinity, &tried)
            .inspect_err(|no_peer| context::log_no_peer(cx, &group.name, *no_peer))?;
    }
}

/// Counts a failed try against its server and logs it as nginx does: the failure (an error;
/// an answer `proxy_next_upstream` moves on from, a warning), then, if this failure took the
/// server out, "upstream server temporarily disabled".
fn log_failed_try(cx: &RequestContext<'_>, group: &Group, choice: &Choice<'_>, error: &ProxyError) {
    let address = &choice.peer.key.address;
    let upstream = cx.upstream(address);
    let group_name: &str = &group.name;
    let message = context::attempt_failure(error);
    if matches!(error, ProxyError::UpstreamStatus(_)) {
        request_event!(
            Level::WARN,
            cx,
            upstream = upstream,
            group = group_name,
            "{message}"
        );
    } else {
        request_event!(
            Level::ERROR,
            cx,
            upstream = upstream,
            group = group_name,
            "{message}"
        );
    }
    if group.record_failure(choice.member) {
        request_event!(
            Level::WARN,
            cx,
            upstream = upstream,
            group = group_name,
            "upstream server temporarily disabled while connecting to upstream"
        );
    }
}

/// One try on one server, taking the request out of `unsent` only to send it: when it fails
/// before the request left, the request is still there for the next server. A stale pooled
/// connection that hyper could not even write to is replaced by a fresh one on the same server,
/// without counting as a failure.
///
/// The request stays in the caller's slot instead of moving through each future by value:
/// every move of it is a 280-byte copy, on the path of every request.
async fn attempt<'g>(
    choice: &Choice<'g>,
    group: &Group,
    unsent: &mut Option<Request<RequestBody>>,
    route: Route<'_>,
    progress: Option<&SendProgress>,
) -> Result<Answer<'g>, ProxyError> {
    let settings = route.settings;
    let tls = route.tls.map(Arc::as_ref);
    let peer = choice.peer;
    let mut guard = peer.begin();
    let mut pooled = peer.pool.take(group.keepalive_timeout, tls);
    let started = Instant::now();
    loop {
        let reused = pooled.is_some();
        let mut sender = match pooled.take() {
            Some(sender) => sender,
            // Boxed: opening a connection (TCP, TLS, handshake) is a large future that every
            // request would otherwise carry and copy as its futures move, though a kept-alive
            // connection never opens one; a new connection's cost dwarfs one allocation.
            None => match Box::pin(connect(peer, settings.connect_timeout, tls)).await {
                Ok(sender) => sender,
                Err(error) => {
                    peer.state.traffic().record_connect_error();
                    return Err(match error {
                        ConnectError::Timeout => ProxyError::Timeout(TimeoutKind::Connect),
                        ConnectError::Io(io) => ProxyError::Upstream(UpstreamFailure::Connect(io)),
                    });
                }
            },
        };
        if sender.ready().await.is_err() {
            if reused {
                continue;
            }
            peer.state.traffic().record_connect_error();
            return Err(ProxyError::Upstream(UpstreamFailure::Connect(
                std::io::Error::other("connection closed before the request was sent"),
            )));
        }
        let connect_time = if reused {
            std::time::Duration::ZERO
        } else {
            started.elapsed()
        };
        let request = unsent
            .take()
            .expect("forward puts a request in the slot before every attempt");
        let sending = std::pin::pin!(sender.try_send_request(request));
        match wait_for_head(sending, settings, progress, &mut guard).await {
            Ok(Ok(response)) => {
                let spellings = sender.take_spellings();
                return Ok(Answer {
                    spellings,
                    response,
                    guard,
                    sender,
                    tls: route.tls.cloned(),
                    set_cookie: choice.set_cookie,
                    learn: choice.learn,
                    connect_time,
                });
            }
            Ok(Err(mut failure)) => {
                *unsent = failure.take_message();
                if unsent.is_none() || !reused {
                    return Err(exchange_error(failure.into_error()));
                }
            }
            Err(kind) => return Err(ProxyError::Timeout(kind)),
        }
    }
}

/// An exchange that failed after the request left. A body cut off past
/// `client_max_body_size` (one whose size was not announced up front) fails the exchange from
/// our side: nginx answers that with 413.
fn exchange_error(error: hyper::Error) -> ProxyError {
    let cause =
        std::error::Error::source(&error).and_then(|cause| cause.downcast_ref::<BodyError>());
    match cause {
        Some(BodyError::TooLarge) => ProxyError::BodyTooLarge,
        Some(BodyError::Client(ClientBodyError::Timeout)) => ProxyError::ClientTimeout,
        Some(BodyError::Client(ClientBodyError::Malformed(_))) => ProxyError::BadRequest,
        Some(BodyError::Client(_)) => ProxyError::ClientAborted,
        _ => ProxyError::Upstream(UpstreamFailure::Exchange(error)),
    }
}

/// Waits for the response head: `proxy_read_timeout` once the request is sent, and
/// `proxy_send_timeout` while an upload is stuck on the upstream's side. `sending` stays where
/// the caller pinned it, so its state is not copied into each future on the way.
///
/// A request without a body still waiting after [`LONG_POLL_AFTER`] is marked a long poll on
/// `guard`: the one timer the wait needs anyway fires first at that mark, then at the deadline.
async fn wait_for_head<F, T>(
    mut sending: Pin<&mut F>,
    settings: &ProxySettings,
    progress: Option<&SendProgress>,
    guard: &mut ActiveGuard,
) -> Result<T, TimeoutKind>
where
    F: Future<Output = T>,
{
    let Some(progress) = progress else {
        let now = Instant::now();
        let deadline = now + settings.read_timeout;
        let mark = now + LONG_POLL_AFTER;
        if deadline <= mark {
            return timeout(settings.read_timeout, sending)
                .await
                .map_err(|_| TimeoutKind::Read);
        }
        let mut timer = std::pin::pin!(sleep_until(mark));
        loop {
            tokio::select! {
                biased;
                result = &mut sending => return Ok(result),
                () = &mut timer => {
                    if Instant::now() >= deadline {
                        return Err(TimeoutKind::Read);
                    }
                    guard.mark(Transport::LongPoll);
                    timer.as_mut().reset(deadline);
                }
            }
        }
    };
    let deadline = |progress: &SendProgress| {
        if progress.is_done() {
            (
                progress.last_frame() + settings.read_timeout,
                TimeoutKind::Read,
            )
        } else if progress.is_waiting_on_client() {
            // A slow client is not the upstream's fault: look again a full period later.
            (Instant::now() + settings.send_timeout, TimeoutKind::Send)
        } else {
            (
                progress.last_frame() + settings.send_timeout,
                TimeoutKind::Send,
            )
        }
    };
    loop {
        let (at, _) = deadline(progress);
        tokio::select! {
            result = &mut sending => return Ok(result),
            () = sleep_until(at) => {
                // Only a deadline that still stands counts: the upload may have moved meanwhile.
                let (now_due, kind) = deadline(progress);
                if now_due <= Instant::now() {
                    return Err(kind);
                }
            }
        }
    }
}

/// The parts of a bodyless request needed to send it again.
fn head_of(request: &Request<RequestBody>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

fn rebuild(head: &Request<()>) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = head.method().clone();
    *request.uri_mut() = head.uri().clone();
    *request.version_mut() = head.version();
    *request.headers_mut() = head.headers().clone();
    request
}
