//! Sending one request to the server the group chose: reuse or open a connection, send, wait
//! for the response head within the timeouts, and ask the group for the next server when moving
//! on is safe (`proxy_next_upstream`).
//!
//! "Safe" means nothing reached the upstream (connect failed, or nothing of the request was
//! written), or the request is idempotent and has no body, so it can be sent again whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use http_body::Body as _;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Level;

use crate::config::ProxySettings;
use crate::peer::{ActiveGuard, LONG_POLL_AFTER, Transport};
use crate::proxy::body::BodyError;
use crate::proxy::body::client::ClientBodyError;
use crate::proxy::body::request::{RequestBody, SendProgress};
use crate::proxy::connect::{ConnectError, connect};
use crate::proxy::context::{self, RequestContext, request_event};
// The module's name would read as the local `deadline`s below.
use crate::proxy::deadline as connection_timer;
use crate::proxy::error::{ProxyError, TimeoutKind, UpstreamFailure};
use crate::proxy::headers::is_idempotent;
use crate::proxy::origin::{Exchange, Keeping, OriginBody, OriginError, ResponseHead};
use crate::proxy::request::Request;
use crate::telemetry::access_log::Record;
use crate::tls::upstream::TlsTarget;
use crate::upstream::{Affinity, Choice, Group, Learn, NoPeer, SetCookie, Tried};

/// A response head from an upstream, with what is needed to finish the exchange.
pub struct Answer<'g> {
    /// The response head, as parsed (boxed: the answer stays small as it moves).
    pub head: Box<ResponseHead>,
    /// The response body: it streams from the connection, which it hands back at its end.
    pub body: OriginBody,
    /// Counts the exchange on the server that answered, from the moment it was chosen until
    /// the response body (or tunnel) ends.
    pub guard: ActiveGuard,
    /// What the connection is secured with (None: plain), the key it is pooled under.
    pub tls: Option<Arc<TlsTarget>>,
    /// The sticky cookie the response carries, as the choice of the server that answered said.
    pub set_cookie: Option<SetCookie<'g>>,
    /// `sticky learn`: what the response may create a session from.
    pub learn: Option<Learn<'g>>,
    /// How long getting a connection ready took (0 for a pooled one, as nginx counts it).
    pub connect_time: std::time::Duration,
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
    /// What of the answer's head is kept as it is parsed: the lines the client would not see
    /// and nothing reads are left out, and a map is built only where something needs one.
    pub keeping: Keeping,
}

/// Sends the request in `unsent` to `first`, the server `group` chose for it, then — as
/// `route.settings` allow — to the next ones the group chooses for the same `affinity`. The
/// request waits in the caller's slot until an attempt sends it: after a failure it is still
/// there if no server took it (an `error_page` may ask again with its body).
///
/// The answer is put in the caller's slot `answered` too, where the attempt builds it: it is a
/// few hundred bytes that would be copied by each frame it was returned through (or boxed, an
/// allocation per request).
pub async fn forward<'g>(
    group: &'g Group,
    affinity: &Affinity,
    first: Choice<'g>,
    (unsent, answered): (&mut Option<Request<RequestBody>>, &mut Option<Answer<'g>>),
    route: Route<'_>,
    progress: Option<&SendProgress>,
    mut log: Option<&mut Record>,
) -> Result<(), ProxyError> {
    let settings = route.settings;
    let cx = route.cx;
    // Whether the request may go to a server after one that may have acted on it: an
    // idempotent one, or any with `proxy_next_upstream non_idempotent`. A bodyless request stays
    // whole in `unsent` while it is sent (the upstream client borrows it), so sending it again
    // copies nothing.
    let resend = unsent.as_ref().is_some_and(|request| {
        is_idempotent(request.method()) || settings.next_upstream.non_idempotent
    });
    let max_tries = match settings.next_upstream_tries {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut tried = Tried::default();
    let mut choice = first;
    loop {
        if let Some(log) = log.as_deref_mut() {
            log.try_started(choice.peer.endpoint.first_inet(), choice.sticky.as_str());
        }
        let slots = (&mut *unsent, &mut *answered);
        let attempted = attempt(&choice, group, slots, (route, resend), progress).await;
        if let Some(log) = log.as_deref_mut() {
            match &attempted {
                Ok(answer) => {
                    log.try_connected(answer.connect_time);
                    log.try_answered(answer.head.status.as_u16());
                }
                Err(error) => log.try_failed(error.status().as_u16()),
            }
        }
        let error = match attempted {
            Ok(answer) => {
                let status = answer.head.status.as_u16();
                let again = group.len() > 1 && unsent.is_some();
                if !again || !settings.next_upstream.statuses.contains(&status) {
                    group.record_success(choice.member);
                    return Ok(());
                }
                // Let go before the next try: its server is no longer busy with this request.
                *answered = None;
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
        let can_resend = unsent.is_some();
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

/// One try on one server. The request stays in `unsent` while it is sent (only its body is
/// taken, to be uploaded): when the try fails before any of the body was taken, the request is
/// still whole there for the next server. A pooled connection the server had closed in the
/// meantime (nothing of an answer arrived) is replaced by a fresh one on the same server
/// without counting as a failure, when the request can be sent again: it is still whole and
/// idempotent (nginx retries a cached connection so too).
///
/// The request stays in the caller's slot instead of moving through each future by value:
/// every move of it is a 280-byte copy, on the path of every request. The answer is built in
/// the caller's slot `answered` for the same reason.
async fn attempt<'g, 's>(
    choice: &Choice<'g>,
    group: &Group,
    (unsent, answered): (
        &mut Option<Request<RequestBody>>,
        &'s mut Option<Answer<'g>>,
    ),
    (route, resend): (Route<'_>, bool),
    progress: Option<&SendProgress>,
) -> Result<&'s mut Answer<'g>, ProxyError> {
    let settings = route.settings;
    let tls = route.tls.map(Arc::as_ref);
    let peer = choice.peer;
    let mut guard = peer.begin();
    let mut pooled = peer.pool.take(group.keepalive_timeout, tls);
    loop {
        let reused = pooled.is_some();
        // A pooled connection took no time to get ready (as nginx counts it): the clock is
        // read only around opening one.
        let (connection, connect_time) = match pooled.take() {
            Some(connection) => (connection, std::time::Duration::ZERO),
            // Boxed: opening a connection (TCP, TLS) is a large future that every request would
            // otherwise carry and copy as its futures move, though a kept-alive connection
            // never opens one; a new connection's cost dwarfs one allocation.
            None => {
                let started = Instant::now();
                match Box::pin(connect(peer, settings.connect_timeout, tls)).await {
                    Ok(connection) => (connection, started.elapsed()),
                    Err(error) => {
                        peer.state.traffic().record_connect_error();
                        return Err(match error {
                            ConnectError::Timeout => ProxyError::Timeout(TimeoutKind::Connect),
                            ConnectError::Io(io) => {
                                ProxyError::Upstream(UpstreamFailure::Connect(io))
                            }
                        });
                    }
                }
            }
        };
        let request = unsent
            .as_mut()
            .expect("forward puts a request in the slot before every attempt");
        let bodyless = request.body().is_end_stream();
        let exchange = Exchange::start(connection, request, route.keeping);
        let sending = std::pin::pin!(exchange);
        match wait_for_head(sending, settings, progress, &mut guard).await {
            Ok(Ok(sent)) => {
                // Kept only for a retry on the answer's status (`proxy_next_upstream http_502`).
                if !(bodyless && resend) {
                    *unsent = None;
                }
                return Ok(answered.insert(Answer {
                    head: sent.head,
                    body: sent.body,
                    guard,
                    tls: route.tls.cloned(),
                    set_cookie: choice.set_cookie,
                    learn: choice.learn,
                    connect_time,
                }));
            }
            Ok(Err(failure)) => {
                // Still whole, and safe to send again: nothing of it reached the upstream, or
                // it is idempotent.
                let whole = match (failure.body, unsent.as_mut()) {
                    (Ok(Some(body)), Some(request)) => {
                        *request.body_mut() = body;
                        true
                    }
                    (Ok(None), Some(_)) => true,
                    (Err(()), _) | (_, None) => false,
                } && (!failure.sent || resend);
                if !whole {
                    *unsent = None;
                }
                let error = match failure.error {
                    Ok(error) => error,
                    Err(body) => return Err(body_error(body)),
                };
                let stale = reused && failure.unanswered && whole && resend;
                if !stale {
                    return Err(ProxyError::Upstream(UpstreamFailure::Exchange(error)));
                }
            }
            Err(kind) => {
                // The body went with the exchange; a bodyless request was sent.
                if !(bodyless && resend) {
                    *unsent = None;
                }
                return Err(ProxyError::Timeout(kind));
            }
        }
    }
}

/// A request body that failed on the client's side: the client's fault, answered as nginx
/// does (413 past `client_max_body_size`, 408 too slow, 400 malformed; gone, 499).
fn body_error(error: BodyError) -> ProxyError {
    match error {
        BodyError::TooLarge => ProxyError::BodyTooLarge,
        BodyError::Client(ClientBodyError::Timeout) => ProxyError::ClientTimeout,
        BodyError::Client(ClientBodyError::Malformed(_)) => ProxyError::BadRequest,
        BodyError::Client(_) => ProxyError::ClientAborted,
        BodyError::Upstream(error) => ProxyError::Upstream(UpstreamFailure::Exchange(error)),
        other => ProxyError::Upstream(UpstreamFailure::Exchange(OriginError::Io(
            std::io::Error::other(other.to_string()),
        ))),
    }
}

/// [`wait_for_head`] for a bodyless request on a connection that offers its timer
/// ([`connection_timer`]): woken by it at `mark` (a long poll from then on) and at
/// `deadline`, the clock read only when polled while still waiting after a wake.
async fn wait_on_connection_timer<F, T>(
    mut sending: Pin<&mut F>,
    (deadline, mark): (Instant, Instant),
    guard: &mut ActiveGuard,
) -> Result<T, TimeoutKind>
where
    F: Future<Output = T>,
{
    let mut first = true;
    let mut marked = mark >= deadline;
    let mut own: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = sending.as_mut().poll(cx) {
            return Poll::Ready(Ok(result));
        }
        // The first poll follows the clock read that set both times.
        if !std::mem::take(&mut first) {
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Err(TimeoutKind::Read));
            }
            if !marked && now >= mark {
                marked = true;
                guard.mark(Transport::LongPoll);
            }
        }
        let due = if marked { deadline } else { mark };
        if !connection_timer::wake_at(due) {
            // Polled where no connection offers its timer (never today): one of its own.
            let sleep = own.get_or_insert_with(|| Box::pin(sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await
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
        if connection_timer::offered() {
            return wait_on_connection_timer(sending, (deadline, mark), guard).await;
        }
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
