//! One HTTP/1 client connection, request after request: read a head, hand the request to the
//! proxy while feeding its body on demand, write the response as it streams, then keep the
//! connection for the next request, close it, or hand the socket to a tunnel after a `101`.
//!
//! The task owns the socket for the connection's whole life (until an upgrade hands it over):
//! the head, the request body and the response all pass through here, so every limit and
//! timeout of the exchange lives in one place — `client_header_timeout` and
//! `keepalive_timeout` while a head is awaited, `client_body_timeout` while the body is,
//! `send_timeout` while the client does not read.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::stream::{ClientStream, MaybeTls};
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::time::{Instant, Sleep, sleep_until, timeout_at};

use super::READ_CHUNK;
use super::decode::Decoder;
use super::head::{self, Framing, HeadScanner, Rejection, RequestHead};
use super::pump::Pump;
use super::timer::IdleTimer;
use super::write::{BodyFraming, HeadPlan, Outbox, framing_for};
use crate::proxy::body::client::{ClientBody, FeedSender};
use crate::proxy::request::{Parts, Request};
use crate::proxy::upgrade::{ClientUpgrade, UpgradeSender, Upgraded};
use crate::proxy::{self, ConnInfo, ResponseBody};
use crate::server::ceiling::ConnSlot;
use crate::snapshot::{ClientSettings, Snapshot};

/// Body bytes queued for the client before the body is asked for more (backpressure).
const HIGH_WATER: usize = 64 * 1024;
/// How long a closing connection keeps reading (and dropping) what the client still sends,
/// so that the kernel does not answer that data with a reset that destroys the response.
const LINGER: Duration = Duration::from_secs(2);

/// What a connection does after an exchange.
enum Next {
    KeepAlive,
    Close { linger: bool },
    Upgrade(UpgradeSender),
}

struct Connection<'a> {
    stream: ClientStream,
    read_buf: BytesMut,
    outbox: Outbox,
    info: Arc<ConnInfo>,
    /// What the ceiling and the listener say: shed, retired.
    slot: &'a ConnSlot,
}

/// Serves `stream` (whose first bytes are known to be HTTP/1) until the client closes, a limit
/// or timeout ends it, it is shed or retired, or a tunnel takes it over. A fast stop aborts the
/// task. `read` holds what was read of the connection already (the sniff's first read): the
/// connection's read buffer goes on from it. `timer` is the connection's, standing for the
/// first head's deadline, which `accepted_with` (the settings in force at the accept) set.
pub async fn serve(
    stream: ClientStream,
    read: BytesMut,
    info: Arc<ConnInfo>,
    live: Arc<ArcSwap<Snapshot>>,
    slot: &ConnSlot,
    (mut timer, accepted_with): (IdleTimer<'_>, ClientSettings),
) {
    let mut connection = Connection {
        stream,
        read_buf: read,
        outbox: Outbox::for_connection(),
        info,
        slot,
    };
    let mut first = true;
    let mut settings = accepted_with;
    let next = loop {
        // The config in force when the request arrives answers it: a reload applies to a
        // keep-alive connection from its next request. The first head is read under the
        // settings its deadline was set from, loaded once at the accept.
        if !first {
            settings = live.load().client;
            slot.idle();
        }
        let head = match connection.read_head(&settings, first, &mut timer).await {
            HeadRead::Head(head) => head,
            HeadRead::Quiet => return,
            HeadRead::Rejected(rejection) => {
                connection.reject(rejection, &settings).await;
                break Next::Close { linger: true };
            }
        };
        first = false;
        slot.busy();
        let snapshot = live.load_full();
        match connection.exchange(head, snapshot, &mut timer).await {
            Next::KeepAlive => {}
            next => break next,
        }
    };
    match next {
        Next::KeepAlive => {}
        Next::Close { linger } => connection.close(linger).await,
        Next::Upgrade(sender) => {
            let Connection {
                stream, read_buf, ..
            } = connection;
            sender.send(Upgraded {
                stream,
                read_buf: read_buf.freeze(),
            });
        }
    }
}

/// Answers a connection that must not be served with one error page, then closes it
/// (lingering, so the page is not lost to a reset): plain HTTP sent to a TLS address gets
/// nginx's "400 The plain HTTP request was sent to HTTPS port".
pub async fn refuse(
    stream: ClientStream,
    info: Arc<ConnInfo>,
    slot: &ConnSlot,
    rejection: Rejection,
    settings: &ClientSettings,
) {
    let mut connection = Connection {
        stream,
        read_buf: BytesMut::new(),
        outbox: Outbox::default(),
        info,
        slot,
    };
    connection.reject(rejection, settings).await;
    connection.close(true).await;
}

/// What a response is written for: the request it answers and the connection's terms.
#[derive(Clone, Copy)]
struct Answering {
    client_version: Version,
    /// A HEAD request: the response has no body, whatever its headers say.
    head_request: bool,
    /// The connection stays open after the response.
    keep_alive: bool,
    /// `send_timeout`: how long the client may leave the response unread.
    send_timeout: Duration,
}

/// The outcome of waiting for a head.
enum HeadRead {
    Head(RequestHead),
    /// Nothing to answer: the client closed, went quiet, or the connection was told to go.
    Quiet,
    Rejected(Rejection),
}

impl Connection<'_> {
    /// Reads the next head. Until it is complete the connection is idle, and the ceiling may
    /// shed it: a client in keep-alive, or one dribbling its head in (a slowloris). A retired
    /// connection goes only while nothing of a head has arrived.
    async fn read_head(
        &mut self,
        settings: &ClientSettings,
        first: bool,
        timer: &mut IdleTimer<'_>,
    ) -> HeadRead {
        let mut scanner = HeadScanner::default();
        // The first head's clock started when the connection did (its first byte was awaited
        // by the sniff); a later one waits keepalive_timeout for its first byte, then
        // client_header_timeout for the rest.
        let mut started = first || !self.read_buf.is_empty();
        if !first {
            let timeout = if started {
                settings.header_timeout
            } else {
                settings.keepalive_timeout
            };
            timer.set(Instant::now() + timeout);
        }
        loop {
            if !self.read_buf.is_empty() {
                // Usually the whole head came in one read: httparse reads it at once, and the
                // scanner walks only a head that comes in pieces (or that httparse refuses).
                if scanner.is_fresh()
                    && let Some(parsed) = head::parse_read(&mut self.read_buf, &settings.head)
                {
                    return match parsed {
                        Ok(head) => HeadRead::Head(head),
                        Err(rejection) => HeadRead::Rejected(rejection),
                    };
                }
                match scanner.scan(&self.read_buf, &settings.head) {
                    Ok(Some(len)) => {
                        let bytes = self.read_buf.split_to(len).freeze();
                        return match head::parse(&bytes, &settings.head) {
                            Ok(head) => HeadRead::Head(head),
                            Err(rejection) => HeadRead::Rejected(rejection),
                        };
                    }
                    Ok(None) => {}
                    Err(rejection) => return HeadRead::Rejected(rejection),
                }
                if !started {
                    started = true;
                    timer.set(Instant::now() + settings.header_timeout);
                }
            }
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 2 {
                self.read_buf.reserve(READ_CHUNK);
            }
            let slot = self.slot;
            let read = poll_fn(|cx| {
                let told = slot.poll_told(cx);
                if told.shed || (told.retired && !started) || timer.poll_expired(cx) {
                    return Poll::Ready(None);
                }
                // A plain socket is read with the bare system call (`MaybeTls::poll_read_direct`).
                self.stream
                    .poll_read_buf_direct(cx, &mut self.read_buf)
                    .map(Some)
            });
            match read.await {
                Some(Ok(n)) if n > 0 => {}
                // EOF, an error, a timeout, told to go: nothing worth answering (nginx closes
                // a timed-out head silently too).
                _ => return HeadRead::Quiet,
            }
        }
    }

    /// Answers a head that cannot be served, and logs why (nginx logs these at `info`).
    async fn reject(&mut self, rejection: Rejection, settings: &ClientSettings) {
        tracing::info!(client = %self.info.client.ip(), status = rejection.status.as_u16(), "{}", rejection.reason);
        let response = proxy::error::error_page_titled(rejection.status, rejection.title);
        let to = Answering {
            client_version: Version::HTTP_11,
            head_request: false,
            keep_alive: false,
            send_timeout: settings.send_timeout,
        };
        let _ = self.write_response(response, &to, None).await;
    }

    /// One request and its response.
    /// `timer` is the connection's, offered to the request for its wait on the upstream
    /// (see [`proxy::deadline`]).
    async fn exchange(
        &mut self,
        head: RequestHead,
        snapshot: Arc<Snapshot>,
        timer: &mut IdleTimer<'_>,
    ) -> Next {
        let RequestHead {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            dropped_headers,
        } = head;
        if dropped_headers > 0 {
            tracing::info!(client = %self.info.client.ip(), count = dropped_headers, "client sent invalid header line(s), ignored");
        }
        let settings = snapshot.client;
        let head_request = method == Method::HEAD;
        let (mut pump, body) = match framing {
            Framing::Empty => (None, ClientBody::Empty),
            Framing::Length(length) => {
                let (feed, body) = FeedSender::channel(Some(length));
                (
                    Some(Pump::new(feed, Decoder::length(length), expect_continue)),
                    body,
                )
            }
            Framing::Chunked => {
                let (feed, body) = FeedSender::channel(None);
                (
                    Some(Pump::new(feed, Decoder::chunked(), expect_continue)),
                    body,
                )
            }
        };
        let (upgrade_sender, upgrade) = if upgrade {
            let (sender, upgrade) = ClientUpgrade::pair();
            (Some(sender), Some(upgrade))
        } else {
            (None, None)
        };
        let request = Request::from_parts(
            Parts {
                method,
                uri,
                version,
                headers,
                extensions: http::Extensions::new(),
            },
            body,
        );

        // The proxy works out the response while the body is fed to whoever reads it.
        let mut service = pin!(proxy::serve(request, upgrade, self.info.clone(), snapshot));
        let response = poll_fn(|cx| {
            loop {
                if let Some(pump) = pump.as_mut() {
                    let _ = pump.poll(
                        cx,
                        &mut self.stream,
                        &mut self.read_buf,
                        &mut self.outbox,
                        false,
                    );
                }
                let offer = proxy::deadline::offer();
                let polled = service.as_mut().poll(cx);
                let wake_at = offer.take();
                if polled.is_ready() {
                    return polled;
                }
                match wake_at {
                    Some(due) => timer.set(due),
                    None => return Poll::Pending,
                }
                if !timer.poll_expired(cx) {
                    return Poll::Pending;
                }
                // The time the request asked for came: it looks at the clock itself.
            }
        })
        .await;

        // `return 444`: nothing is written, the connection just closes (nginx).
        if response
            .extensions()
            .get::<proxy::CloseWithoutAnswer>()
            .is_some()
        {
            return Next::Close { linger: false };
        }
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let body_settled = pump.as_ref().is_none_or(Pump::is_complete);
        // A retired connection finishes this exchange and says it closes.
        let retired = self.slot.told().retired;
        let keep = keep_alive && settings.keep_alive && !retired && body_settled && !switching;
        let to = Answering {
            client_version: version,
            head_request,
            keep_alive: keep,
            send_timeout: response
                .body()
                .send_timeout()
                .unwrap_or(settings.send_timeout),
        };
        let written = self.write_response(response, &to, pump.as_mut()).await;
        let Ok(framing) = written else {
            return Next::Close { linger: false };
        };
        if switching {
            return match upgrade_sender {
                Some(sender) if body_settled => Next::Upgrade(sender),
                _ => Next::Close { linger: false },
            };
        }
        let body_done = pump.as_ref().is_none_or(Pump::is_complete);
        if keep && body_done && framing != BodyFraming::UntilClose {
            Next::KeepAlive
        } else {
            Next::Close { linger: !body_done }
        }
    }

    /// Writes a response; `Ok(framing)` when all of it reached the socket. The request body
    /// keeps being fed meanwhile (an upstream may answer while still reading an upload).
    async fn write_response(
        &mut self,
        response: Response<ResponseBody>,
        to: &Answering,
        mut pump: Option<&mut Pump>,
    ) -> Result<BodyFraming, ()> {
        let Answering {
            client_version,
            head_request,
            keep_alive,
            send_timeout,
        } = *to;
        let (parts, body) = response.into_parts();
        let framing = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            BodyFraming::None
        } else {
            framing_for(
                parts.status,
                head_request,
                &parts.headers,
                body.size_hint().exact(),
                client_version,
            )
        };
        let reason = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|reason| reason.as_bytes());
        self.outbox.push_head(&HeadPlan {
            status: parts.status,
            reason,
            headers: &parts.headers,
            framing,
            keep_alive: keep_alive && framing != BodyFraming::UntilClose,
            client_version,
            upstream: body.upstream_lines(),
        });
        // Written: the map goes now, without its drop glue when it is empty.
        proxy::headers::discard(parts.headers);
        // Nothing follows this response on the connection (a tunnel follows a 101): once all
        // of it is queued, its last segment may wait for the FIN and leave with it.
        let closes_after = !(keep_alive && framing != BodyFraming::UntilClose)
            && parts.status != StatusCode::SWITCHING_PROTOCOLS;
        let mut body = pin!(body);
        let mut stream_state = StreamState::new(framing);
        // Made only when a write first waits: a response that leaves at once (most) never
        // touches the timer.
        let mut stall: Option<Pin<Box<Sleep>>> = None;
        // The written total when the send_timeout clock was last started.
        let mut stalled_at: Option<u64> = None;
        poll_fn(|cx| {
            loop {
                if let Some(pump) = pump.as_deref_mut() {
                    let _ = pump.poll(cx, &mut self.stream, &mut self.read_buf, &mut self.outbox, true);
                }
                // The body said it has nothing at hand (and holds the task's waker for when it
                // has), as against stopping because the outbox is full.
                let mut body_waits = false;
                while !stream_state.done && self.outbox.len() < HIGH_WATER {
                    match body.as_mut().poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                stream_state.data(data, &mut self.outbox);
                            }
                        }
                        Poll::Ready(None) => stream_state.end(&mut self.outbox),
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(%error, "response body failed; closing the connection");
                            stream_state.fail();
                        }
                        Poll::Pending => {
                            body_waits = true;
                            break;
                        }
                    }
                }
                if stream_state.done && closes_after {
                    self.outbox.mark_last();
                }
                if self.outbox.is_empty() {
                    return match (stream_state.done, stream_state.broken) {
                        (false, _) => Poll::Pending,
                        (true, false) => Poll::Ready(Ok(framing)),
                        (true, true) => Poll::Ready(Err(())),
                    };
                }
                match self.outbox.poll_flush(cx, &mut self.stream) {
                    Poll::Ready(Ok(())) => {
                        stalled_at = None;
                        // All of it went out. A body that waits would only say so again (an
                        // SSE event's second ask, every event): its waker brings the task back.
                        if body_waits {
                            return Poll::Pending;
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                    Poll::Pending => {
                        // send_timeout: the time between two writes that moved something.
                        let written = self.outbox.written();
                        let due = Instant::now() + send_timeout;
                        let stall = stall.get_or_insert_with(|| Box::pin(sleep_until(due)));
                        if stalled_at != Some(written) {
                            stalled_at = Some(written);
                            stall.as_mut().reset(due);
                        }
                        if stall.as_mut().poll(cx).is_ready() {
                            tracing::info!(client = %self.info.client.ip(), "client timed out (110: Connection timed out) while sending response to client (send_timeout)");
                            return Poll::Ready(Err(()));
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await
    }

    /// Closes the connection; with `linger`, first reads and drops what the client may still
    /// be sending (an unread upload), so the response is not lost to a reset.
    async fn close(mut self, linger: bool) {
        use tokio::io::AsyncWriteExt as _;
        // Without lingering, plain text needs no shutdown(): dropping the socket sends the same
        // FIN (nginx just closes too), and data still unread draws a reset either way. TLS says
        // close_notify first.
        if !linger && !matches!(self.stream, MaybeTls::Tls(_)) {
            return;
        }
        let _ = self.stream.shutdown().await;
        if !linger {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut sink = [0u8; 4096];
        loop {
            match timeout_at(
                deadline,
                tokio::io::AsyncReadExt::read(&mut self.stream, &mut sink),
            )
            .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}

/// Where a response body's writing is.
struct StreamState {
    framing: BodyFraming,
    /// Bytes of body queued so far (checked against `Content-Length`).
    sent: u64,
    done: bool,
    /// The body did not end as announced: the connection cannot carry another response.
    broken: bool,
}

impl StreamState {
    fn new(framing: BodyFraming) -> StreamState {
        StreamState {
            framing,
            sent: 0,
            done: false,
            broken: false,
        }
    }

    fn data(&mut self, mut data: Bytes, outbox: &mut Outbox) {
        match self.framing {
            // A body where HTTP allows none (HEAD, 204, 304): read and dropped.
            BodyFraming::None => return,
            BodyFraming::Length(length) => {
                let left = length - self.sent;
                if data.len() as u64 > left {
                    // More than announced: what fits is sent, and the connection ends.
                    data.truncate(left as usize);
                    self.fail();
                }
            }
            BodyFraming::Chunked | BodyFraming::UntilClose => {}
        }
        self.sent += data.len() as u64;
        outbox.push_data(data, self.framing);
    }

    fn end(&mut self, outbox: &mut Outbox) {
        self.done = true;
        match self.framing {
            BodyFraming::Chunked => outbox.push_last_chunk(),
            BodyFraming::Length(length) if self.sent != length => self.broken = true,
            _ => {}
        }
    }

    fn fail(&mut self) {
        self.done = true;
        self.broken = true;
    }
}
