//! The demo farm: small stateful real-time app servers of the kind tether balances, and the
//! page that watches them through tether.
//!
//! `tether demo` starts a [`Farm`] of the three [`DEMO_APPS`] with `conf/demo.conf` in front.
//! Each app server answers `/whoami`, a WebSocket echo (`/ws`), server-sent events (`/sse`),
//! long polling (`/poll`), the page (`/`), and the farm's control endpoints (`/demo/*`), so the
//! page can stop and start any app server through whichever one tether routes it to.
//!
//! ```text
//! browser ──> tether :8080 ──cookie───┬──> app a :9101 ─┐
//!                                     ├──> app b :9102 ─┼── orders ──> the farm's task
//!                                     └──> app c :9103 ─┘  (a channel)   (owns a, b, c)
//! ```
//!
//! Inside, nothing imports back up: `app` (accept loop, routing) hands each request to a
//! transport (`ws`, `sse`, `poll`) or to `control` (the channel's sending end and the
//! `/demo/*` endpoints over it); `farm` owns the app servers and obeys the channel; all share
//! `reply` (response builders) and `state` (name, stop signal, control line).
//!
//! This module stands beside the proxy: it imports nothing of tether (a test in
//! `tests/layering.rs` checks), so the demo stays an honest stand-in for someone else's app
//! servers. It stays in the library rather than moving beside the binary: it
//! is already a room of its own (nothing of tether imports it but `main`), and as a library
//! module its public face (`serve`, [`Farm`]) is what its tests drive and what other tests or
//! benches may reuse, where inside the binary all but `main`'s use of it would be dead code.

mod app;
mod control;
mod farm;
mod poll;
mod reply;
mod sse;
mod state;
mod ws;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use app::serve;
pub use farm::Farm;

/// The three app servers of `conf/demo.conf`: name and loopback address.
pub const DEMO_APPS: [(&str, &str); 3] = [
    ("a", "127.0.0.1:9101"),
    ("b", "127.0.0.1:9102"),
    ("c", "127.0.0.1:9103"),
];

/// [`DEMO_APPS`] in the shape [`Farm::start`] takes.
pub fn demo_apps() -> Vec<(String, SocketAddr)> {
    DEMO_APPS
        .iter()
        .map(|&(name, addr)| {
            // The addresses are literals above, checked by a unit test.
            let addr = addr
                .parse()
                .expect("DEMO_APPS holds valid socket addresses");
            (name.to_owned(), addr)
        })
        .collect()
}
