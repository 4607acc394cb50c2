//! When to reload: at once on a hangup (SIGHUP, `tether -s reload`), and for file events once
//! their burst settles — the files quiet for a moment (an editor's save or a `kubectl apply` is
//! several events), but never later than a maximum wait after the first event, so a file that
//! never stops changing cannot hold a reload back forever. A hangup during a burst cuts it
//! short: the signal is served now, never behind the debounce.
//!
//! tokio's time and channels only: what the events and the hangup are is the caller's business.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a burst of file events becomes one reload.
#[derive(Clone, Copy, Debug)]
pub(super) struct Debounce {
    /// The pause in events that ends a burst.
    pub quiet: Duration,
    /// The longest a burst is waited out, from its first event.
    pub max_wait: Duration,
}

/// tether's debounce: 150 ms of quiet (editors and `kubectl` write their events within a few
/// milliseconds), at most 1 s.
pub(super) const DEBOUNCE: Debounce = Debounce {
    quiet: Duration::from_millis(150),
    max_wait: Duration::from_secs(1),
};

/// What asks for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A burst of relevant file events settled: reload if some content changed.
    Files,
    /// SIGHUP or `tether -s reload`: reload now, whatever changed.
    Hangup,
}

impl Debounce {
    /// Waits for a file event, then for its burst to settle. None when `events` has closed
    /// before any event came (no watcher: only hangups can trigger).
    pub async fn settle(&self, events: &mut mpsc::Receiver<()>) -> Option<()> {
        events.recv().await?;
        let deadline = Instant::now() + self.max_wait;
        loop {
            let now = Instant::now();
            // Checked before waiting: events arriving without pause would always be ready,
            // and a wait that finds one ready never looks at its clock.
            if now >= deadline {
                return Some(());
            }
            let until = (now + self.quiet).min(deadline);
            match tokio::time::timeout_at(until, events.recv()).await {
                Ok(Some(())) => continue,
                // Quiet long enough, the deadline, or the watcher gone: the burst is over.
                Ok(None) | Err(_) => return Some(()),
            }
        }
    }

    /// The next trigger: `hangup` as soon as it resolves — also in the middle of a burst,
    /// which is then dropped (the content check after the reload sees what it changed) — or
    /// a settled burst of `events`.
    pub async fn next(
        &self,
        events: &mut mpsc::Receiver<()>,
        hangup: impl Future<Output = ()>,
    ) -> Trigger {
        tokio::select! {
            biased;
            () = hangup => Trigger::Hangup,
            Some(()) = self.settle(events) => Trigger::Files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `future`, failing the test if it takes a minute (of the paused clock, so at once).
    async fn bounded<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("settled within a minute")
    }

    /// Sends an event every `every` from now on, forever (until the test ends).
    fn events_every(every: Duration) -> mpsc::Receiver<()> {
        let (send, events) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                // A full channel already holds an unread event: nothing is lost.
                let _ = send.try_send(());
                tokio::time::sleep(every).await;
            }
        });
        events
    }

    #[tokio::test(start_paused = true)]
    async fn one_event_settles_after_the_quiet_time() {
        let (send, mut events) = mpsc::channel(1);
        send.try_send(()).expect("room for one event");
        let started = Instant::now();
        assert_eq!(
            bounded(DEBOUNCE.next(&mut events, std::future::pending())).await,
            Trigger::Files
        );
        assert_eq!(started.elapsed(), DEBOUNCE.quiet);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_once_it_pauses() {
        let (send, mut events) = mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..5 {
                let _ = send.try_send(());
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        bounded(DEBOUNCE.settle(&mut events))
            .await
            .expect("a burst");
        // The last of five events came at 160 ms; the quiet time runs from there.
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(160) + DEBOUNCE.quiet
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_never_stop_settle_at_the_maximum_wait() {
        let mut events = events_every(Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(
            bounded(DEBOUNCE.next(&mut events, std::future::pending())).await,
            Trigger::Files
        );
        assert_eq!(started.elapsed(), DEBOUNCE.max_wait);
        // And the next burst gets its own maximum wait.
        bounded(DEBOUNCE.settle(&mut events))
            .await
            .expect("the next burst");
        assert!(started.elapsed() <= DEBOUNCE.max_wait * 2 + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hangup_during_a_burst_is_served_at_once() {
        let mut events = events_every(Duration::from_millis(50));
        let started = Instant::now();
        let hangup = tokio::time::sleep(Duration::from_millis(300));
        assert_eq!(
            bounded(DEBOUNCE.next(&mut events, hangup)).await,
            Trigger::Hangup
        );
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hangup_without_a_watcher_is_served_at_once() {
        let (send, mut events) = mpsc::channel::<()>(1);
        drop(send);
        let started = Instant::now();
        let hangup = tokio::time::sleep(Duration::from_millis(10));
        assert_eq!(
            bounded(DEBOUNCE.next(&mut events, hangup)).await,
            Trigger::Hangup
        );
        assert_eq!(started.elapsed(), Duration::from_millis(10));
    }
}
