//! Ending an event stream (`text/event-stream`) when its server drains or tether stops: after
//! a complete event, never inside one, so the client's `EventSource` sees a clean end and
//! reconnects rather than half an event it would have to throw away.
//!
//! The stream's bytes are followed line by line, as the SSE grammar has it: an event ends with
//! an empty line, lines end with CRLF, LF or CR. Once the stream's [`CloseSignal`] fires, the
//! stream ends at the next point where the bytes sent end an event — at once if they already
//! do, else within the frame that completes the event (the frame is cut right there). Nothing
//! is buffered: each frame is looked at as it passes.
//!
//! Knows bodies (`http_body`) and `drain`'s signal; not the upstream or the client.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::BodyError;
use crate::drain::CloseSignal;

/// Follows where the events of a stream end (the SSE grammar's blank lines).
#[derive(Debug)]
pub struct EventBoundaries {
    /// Everything so far ends an event (or nothing came yet).
    at_boundary: bool,
    /// The current line has nothing in it so far.
    line_empty: bool,
    /// The last byte was a CR: an LF right behind it belongs to the same line end.
    after_cr: bool,
}

impl Default for EventBoundaries {
    fn default() -> Self {
        EventBoundaries {
            at_boundary: true,
            line_empty: true,
            after_cr: false,
        }
    }
}

impl EventBoundaries {
    /// True when the bytes fed so far end exactly after an event.
    pub fn at_boundary(&self) -> bool {
        self.at_boundary
    }

    /// Feeds `bytes`; with `stop_at_boundary`, stops right after the first byte that ends an
    /// event and returns how many were fed (all of them otherwise).
    pub fn feed(&mut self, bytes: &[u8], stop_at_boundary: bool) -> usize {
        if !stop_at_boundary {
            // Where the bytes stand after them depends only on what follows their last byte
            // that is not a line end: that byte leaves a line with something in it, whatever
            // came before. So only the line ends behind it are stepped through — for an event
            // (`data: ...\n\n`), two bytes instead of all of them.
            if let Some(last) = bytes.iter().rposition(|&b| b != b'\r' && b != b'\n') {
                self.at_boundary = false;
                self.line_empty = false;
                self.after_cr = false;
                self.step_through(&bytes[last + 1..], false);
                return bytes.len();
            }
        }
        self.step_through(bytes, stop_at_boundary)
    }

    /// `feed`, byte by byte.
    fn step_through(&mut self, bytes: &[u8], stop_at_boundary: bool) -> usize {
        for (at, &byte) in bytes.iter().enumerate() {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => continue,
                b'\r' | b'\n' => {
                    // A line ends; an empty one ends the event.
                    self.at_boundary = self.line_empty;
                    self.line_empty = true;
                    self.after_cr = byte == b'\r';
                    if self.at_boundary && stop_at_boundary {
                        return at + 1;
                    }
                }
                _ => {
                    self.line_empty = false;
                    self.at_boundary = false;
                }
            }
        }
        bytes.len()
    }
}

/// An event stream's end on its close signal. Boxed in the response body that carries one.
///
/// The signal is looked at only when it woke the task: asking the token (a mutex) and polling
/// its wait (another lock) at every event was ~400 of ~4,100 instructions per event. The wait
/// is polled with a waker of its own that marks that it fired, so a pass over an event costs one
/// atomic load.
#[derive(Debug)]
pub struct EndAfterEvent {
    boundaries: EventBoundaries,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker `closed` was last polled with (None: not polled yet, or it fired).
    watch: Option<Arc<SignalWaker>>,
    /// Kept alive here: the server's drain list holds it weakly, to find the stream by.
    _signal: Arc<CloseSignal>,
    /// The signal fired: the stream ends at the next event boundary.
    closing: bool,
    /// The stream was cut after an event: nothing more goes out.
    ended: bool,
}

/// The waker the close signal's wait is polled with: notes that it fired and wakes the task.
#[derive(Debug)]
struct SignalWaker {
    fired: AtomicBool,
    task: Waker,
}

impl Wake for SignalWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl EndAfterEvent {
    /// Ends the stream after a complete event once `signal` fires.
    pub fn new(signal: Arc<CloseSignal>) -> EndAfterEvent {
        EndAfterEvent {
            boundaries: EventBoundaries::default(),
            closed: Box::pin(signal.closed_owned()),
            watch: None,
            _signal: signal,
            closing: false,
            ended: false,
        }
    }

    /// Whether the close signal fired. Its wait is polled only when its waker was woken, or
    /// when the task's waker is not the one it holds (the first time; a body moved between
    /// tasks); otherwise nothing changed since the last look.
    fn signal_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(watch) = &self.watch
            && watch.task.will_wake(cx.waker())
            && !watch.fired.load(Ordering::Acquire)
        {
            return false;
        }
        let watch = Arc::new(SignalWaker {
            fired: AtomicBool::new(false),
            task: cx.waker().clone(),
        });
        let waker = Waker::from(watch.clone());
        let fired = (self.closed.as_mut())
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        self.watch = (!fired).then_some(watch);
        fired
    }

    /// Polls `body` for its next frame, ending the stream where the signal says.
    pub fn poll_frame<B>(
        &mut self,
        body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>
    where
        B: Body<Data = Bytes, Error = BodyError>,
    {
        if self.ended || (self.closing && self.boundaries.at_boundary()) {
            self.ended = true;
            return Poll::Ready(None);
        }
        let frame = match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Pending => {
                // Woken by the signal too: a quiet stream between events ends at once. (A
                // stream that never pauses still gets here: tokio's budget makes its reads
                // wait now and then.)
                if !self.closing && self.signal_fired(cx) {
                    self.closing = true;
                    return self.poll_frame_after_signal();
                }
                return Poll::Pending;
            }
            other => return other,
        };
        let Ok(mut data) = frame.into_data() else {
            // Trailers: the stream's own end.
            return Poll::Ready(None);
        };
        let fed = self.boundaries.feed(&data, self.closing);
        if fed < data.len() {
            data.truncate(fed);
            self.ended = true;
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// The signal fired while the upstream was quiet: end now if between events, else wait
    /// for the event's rest (the caller is polled again when it comes).
    fn poll_frame_after_signal(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.boundaries.at_boundary() {
            self.ended = true;
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a stream of `chunks` may end: the offsets right after each event.
    fn boundaries(text: &str) -> Vec<usize> {
        let mut tracker = EventBoundaries::default();
        let mut ends = Vec::new();
        for (at, byte) in text.bytes().enumerate() {
            tracker.feed(&[byte], false);
            if tracker.at_boundary() {
                ends.push(at + 1);
            }
        }
        ends
    }

    #[test]
    fn events_end_at_blank_lines_whatever_the_line_ends() {
        assert_eq!(boundaries("data: a\n\n"), [9]);
        assert_eq!(boundaries("data: a\r\n\r\n"), [10, 11]);
        assert_eq!(boundaries("data: a\r\rdata: b\n\n"), [9, 18]);
        assert_eq!(
            boundaries("id: 1\ndata: a\ndata: b\n\n: ping\n\n"),
            [23, 31]
        );
        assert_eq!(boundaries("data: a\ndata: b\n"), Vec::<usize>::new());
    }

    /// Fed whole (the quick way: only the line ends after the last other byte) or byte by
    /// byte, any bytes leave the tracker in the same place.
    #[test]
    fn feeding_whole_or_byte_by_byte_ends_in_the_same_place() {
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..20_000 {
            let len = rng.usize(0..12);
            let bytes: Vec<u8> = (0..len).map(|_| b"a\r\n"[rng.usize(0..3)]).collect();
            let mut whole = EventBoundaries::default();
            let mut stepped = EventBoundaries::default();
            // From wherever an earlier piece left them.
            let before: Vec<u8> = (0..rng.usize(0..4))
                .map(|_| b"a\r\n"[rng.usize(0..3)])
                .collect();
            whole.step_through(&before, false);
            stepped.step_through(&before, false);
            assert_eq!(whole.feed(&bytes, false), bytes.len());
            for byte in &bytes {
                stepped.step_through(std::slice::from_ref(byte), false);
            }
            let state = |t: &EventBoundaries| (t.at_boundary, t.line_empty, t.after_cr);
            assert_eq!(state(&whole), state(&stepped), "{before:?} then {bytes:?}");
        }
    }

    #[test]
    fn feeding_stops_right_after_the_first_complete_event() {
        let mut tracker = EventBoundaries::default();
        assert_eq!(tracker.feed(b"data: a\n", true), 8);
        assert_eq!(tracker.feed(b"\ndata: b\n\n", true), 1);
        assert!(tracker.at_boundary());
    }

    /// A body that hands out `steps` in order: bytes, or None for "nothing yet".
    struct Script(std::collections::VecDeque<Option<&'static [u8]>>);

    impl Body for Script {
        type Data = Bytes;
        type Error = BodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
            match self.0.pop_front() {
                Some(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(bytes))))),
                Some(None) => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    /// Counts the task's wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What polling `events` over `body` gives: the bytes, "pending" or "end".
    fn step(events: &mut EndAfterEvent, body: &mut Script, waker: &Waker) -> String {
        let mut cx = Context::from_waker(waker);
        match events.poll_frame(Pin::new(body), &mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                String::from_utf8_lossy(frame.data_ref().unwrap()).into_owned()
            }
            Poll::Ready(Some(Err(_))) => "error".into(),
            Poll::Ready(None) => "end".into(),
            Poll::Pending => "pending".into(),
        }
    }

    #[test]
    fn a_signal_wakes_the_task_and_ends_the_stream_after_the_event_in_flight() {
        let signal = CloseSignal::under(&tokio_util::sync::CancellationToken::new());
        let mut events = EndAfterEvent::new(signal.clone());
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let steps = [
            Some(&b"data: a\n"[..]),
            None,
            None,
            None,
            Some(b"\ndata: b\n\n"),
        ];
        let mut body = Script(steps.into_iter().collect());
        assert_eq!(step(&mut events, &mut body, &waker), "data: a\n");
        assert_eq!(step(&mut events, &mut body, &waker), "pending");
        // Quiet, not told: the signal is not looked at again, and nothing ends.
        assert_eq!(step(&mut events, &mut body, &waker), "pending");
        signal.close(crate::drain::CloseReason::Drain);
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "the signal woke the task"
        );
        // Told mid-event: the stream waits for the event's rest, and ends right after it.
        assert_eq!(step(&mut events, &mut body, &waker), "pending");
        assert_eq!(step(&mut events, &mut body, &waker), "\n");
        assert_eq!(step(&mut events, &mut body, &waker), "end");
    }

    #[test]
    fn a_signal_while_between_events_ends_the_stream_at_once() {
        let parent = tokio_util::sync::CancellationToken::new();
        let mut events = EndAfterEvent::new(CloseSignal::under(&parent));
        let waker = Waker::from(Arc::new(Wakes::default()));
        let steps = [Some(&b"data: a\n\n"[..]), None, None];
        let mut body = Script(steps.into_iter().collect());
        assert_eq!(step(&mut events, &mut body, &waker), "data: a\n\n");
        assert_eq!(step(&mut events, &mut body, &waker), "pending");
        // A stop cancels the connection's token, the signal's parent.
        parent.cancel();
        assert_eq!(step(&mut events, &mut body, &waker), "end");
    }
}
