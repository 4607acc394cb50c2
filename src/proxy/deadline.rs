//! A request's wait for its upstream, timed by its connection's own timer where it has one.
//!
//! Every proxied request waits for a response head under `proxy_read_timeout`. A timer of its
//! own per request is a registration in tokio's timer wheel and a removal again, on the path
//! of every request. An HTTP/1 connection already keeps one timer for its waits between
//! requests, re-armed lazily ([`IdleTimer`](crate::server::http1)); while it runs a request,
//! that timer is idle. So the connection offers it: before polling the request it
//! [`offer`]s, the waiting request says when it must be woken ([`wake_at`]), and the
//! connection takes that ([`Offer::take`]) and sets its timer to it — a store, unless the
//! timer must fire sooner than it would. The request reads the clock itself when it is polled
//! again, so a wake that comes early (or late) never decides anything.
//!
//! Where nothing offers (an HTTP/2 stream, which hyper polls), [`wake_at`] says so and the
//! request keeps a timer of its own. The offer lives in a thread-local for the length of one
//! poll: a connection's task is polled on one thread, and nothing else runs between its
//! offer and its take. Std and tokio's `Instant` only.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    /// None: nothing offers a timer. Some(due): a connection polling its request offers one;
    /// `due` is the soonest wake asked for during this poll.
    static OFFER: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// Offers the caller's timer to what it polls next (a connection, before polling its
/// request), until the offer is taken (or dropped, should the poll panic).
pub fn offer() -> Offer {
    OFFER.with(|offer| offer.set(Some(None)));
    Offer(())
}

/// An offer made by [`offer`].
#[must_use = "an offer is ended by taking it"]
pub struct Offer(());

impl Offer {
    /// Ends the offer: the soonest wake asked for meanwhile (None: none).
    pub fn take(self) -> Option<Instant> {
        OFFER.with(|offer| offer.take()).flatten()
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        OFFER.with(|offer| offer.set(None));
    }
}

/// Asks the connection polling this request to wake it at `due`. False when nothing offers a
/// timer: the caller must keep its own.
pub fn wake_at(due: Instant) -> bool {
    OFFER.with(|offer| match offer.get() {
        None => false,
        Some(asked) => {
            offer.set(Some(Some(asked.map_or(due, |asked| asked.min(due)))));
            true
        }
    })
}

/// Whether a connection offers its timer to the request being polled.
pub fn offered() -> bool {
    OFFER.with(|offer| offer.get().is_some())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_soonest_wake_asked_for_during_an_offer_is_taken_and_the_offer_ends() {
        let now = Instant::now();
        assert!(!wake_at(now), "nothing offers a timer yet");
        let offered_now = offer();
        assert!(offered());
        assert!(wake_at(now + Duration::from_secs(30)));
        assert!(wake_at(now + Duration::from_secs(10)));
        assert!(wake_at(now + Duration::from_secs(20)));
        assert_eq!(offered_now.take(), Some(now + Duration::from_secs(10)));
        assert!(!offered());
        assert!(!wake_at(now), "the offer ended with the take");
        assert_eq!(offer().take(), None, "an offer nobody used");
        let unwound = std::panic::catch_unwind(|| {
            let _offer = offer();
            panic!("a request that panics while polled");
        });
        assert!(unwound.is_err());
        assert!(!offered(), "the offer ends with the poll that made it");
    }
}
