//! Session stickiness of one group: which member a request's cookie or route names, and
//! whether the answer must set the cookie.
//!
//! `sticky cookie`: values are keyed hashes of the servers' identities (`balance/sticky.rs`,
//! pure), written and read by the precompiled [`CookieIssuer`]. `sticky route`: the first
//! non-empty variable is matched against the servers' `route=` as written, and tether sets no
//! cookie (the application carries the route).
//!
//! The cookie rule, in one place: a request the cookie did not place — a new session, or one
//! whose cookie named no usable server (forged, removed, down) — gets `Set-Cookie` for the
//! server it got, so it does not flap back later; a request the cookie placed gets one only
//! when the expiry slides (`expires=TIME`), to renew it. `sticky learn` keeps the cookie's
//! values and sets no cookie: its sessions are in a zone (`learn.rs`). Imports no hyper.

use std::collections::HashMap;

use http::HeaderValue;

use super::Member;
use super::cookie::CookieIssuer;
use super::learn::{Learn, LearnMode, Presented};
use crate::balance::Key;
use crate::balance::sticky::{StickyKey, StickyTable};
use crate::config::StickyCookie;
use crate::sessions::clock;
use crate::vars::{RequestInfo, Template, Vars};

/// How a group pins sessions, as its `upstream` block says.
#[derive(Clone, Debug)]
pub enum StickyMode {
    /// `sticky cookie NAME ...`; values keyed by its `sticky_secret`, else by the group name.
    Cookie(StickyCookie),
    /// `sticky route $a $b ...`: the variables, compiled, in order.
    Route(Vec<Template>),
    /// `sticky learn ...`.
    Learn(LearnMode),
}

/// A group's stickiness, built for its members.
#[derive(Debug)]
pub(super) enum Sticky {
    /// `sticky cookie`.
    Cookie {
        /// Value <-> member.
        table: StickyTable,
        /// The `Set-Cookie` values, and the cookie's name for reading it.
        issuer: CookieIssuer,
        /// Per member, [`Key::stale`] of its value (see [`Sticky::pinned`]).
        stale: Box<[u64]>,
    },
    /// `sticky route`.
    Route {
        /// What to read from the request.
        variables: Vec<Template>,
        /// `route=` value -> member.
        routes: HashMap<String, usize>,
        /// Per member, [`Key::stale`] of its `route=` (0 without one: no value names it).
        stale: Box<[u64]>,
    },
    /// `sticky learn`.
    Learn {
        /// Value <-> member: what a session's value names.
        table: StickyTable,
        /// The zone and its sources.
        mode: LearnMode,
    },
}

/// The `Set-Cookie` a choice calls for: which cookie, for which member. The header is made
/// when the answer is, so a sliding expiry counts from the response.
#[derive(Clone, Copy, Debug)]
pub struct SetCookie<'g> {
    issuer: &'g CookieIssuer,
    member: usize,
}

impl SetCookie<'_> {
    /// The header value (None only for a cookie that cannot be a header, which a validated
    /// config never gives).
    pub fn value(&self) -> Option<HeaderValue> {
        self.issuer.set_cookie(self.member)
    }
}

impl Sticky {
    /// Stickiness for `members` (primaries first) of group `name`. None only when the cookie
    /// cannot be written as a header, which config validation rules out: the group then
    /// balances every request.
    pub(super) fn new(mode: StickyMode, name: &str, members: &[Member]) -> Option<Sticky> {
        let table = |secret: Option<&str>| {
            let key = match secret {
                Some(secret) => StickyKey::from_secret(secret),
                None => StickyKey::for_group(name),
            };
            let identities: Vec<&str> = members
                .iter()
                .map(|m| m.spec.route.as_deref().unwrap_or(&m.peer.key.address))
                .collect();
            StickyTable::new(&key, &identities)
        };
        match mode {
            StickyMode::Learn(mode) => Some(Sticky::Learn {
                table: table(mode.secret.as_deref()),
                mode,
            }),
            StickyMode::Cookie(spec) => {
                let table = table(spec.secret.as_deref());
                let values = (0..members.len()).map(|i| table.value(i));
                let issuer = CookieIssuer::new(&spec, values)?;
                let stale = (0..members.len())
                    .map(|i| Key::stale(table.value(i).as_bytes()))
                    .collect();
                Some(Sticky::Cookie {
                    table,
                    issuer,
                    stale,
                })
            }
            StickyMode::Route(variables) => Some(Sticky::Route {
                variables,
                routes: members
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| Some((m.spec.route.clone()?, i)))
                    .collect(),
                stale: members
                    .iter()
                    .map(|m| {
                        m.spec
                            .route
                            .as_deref()
                            .map_or(0, |r| Key::stale(r.as_bytes()))
                    })
                    .collect(),
            }),
        }
    }

    /// The member `request` is pinned to — its cookie's, or the first non-empty `sticky route`
    /// variable's — and the value it brought, hashed ([`Key::stale`]; one naming no member
    /// included). Borrows the cookie from the request's headers; copies nothing.
    /// `sticky learn`: the member its session names, the key hashed, and the key itself when
    /// the session is known (to re-pin it).
    ///
    /// A value that names a member is that member's value byte for byte (a cookie is found
    /// only by its exact 16 hex digits, a route by its exact text), so its hash was taken
    /// when the group was built; only a value that names nobody is hashed per request.
    pub(super) fn pinned(
        &self,
        request: &RequestInfo<'_>,
        vars: &Vars,
    ) -> (Option<usize>, Option<u64>, Presented) {
        let unlearned = |(member, presented)| (member, presented, Presented::default());
        match self {
            Sticky::Cookie { issuer, .. } => unlearned(match issuer.read(request.headers) {
                Some(value) => self.placed_by(value),
                None => (None, None),
            }),
            Sticky::Learn { table, mode } => {
                let handshake = mode.handshake_of(request);
                let Some(key) = mode.key_of(request, vars) else {
                    let presented = Presented {
                        known: None,
                        handshake,
                    };
                    return (None, None, presented);
                };
                let found =
                    (mode.zone).lookup_with(key.as_bytes(), clock::now_ms(), |v| table.find(v));
                // A known session comes with its key's hash, and is kept for a re-pin in place
                // of its key: nothing of the request is copied or hashed.
                let (member, stale, known) = match found {
                    Some((member, session)) => (member, session.placement(), Some(session)),
                    None => (None, Key::stale(key.as_bytes()), None),
                };
                let presented = Presented { known, handshake };
                (member, Some(stale), presented)
            }
            Sticky::Route { variables, .. } => {
                let mut value = String::new();
                for template in variables {
                    value.clear();
                    template.render(vars, request, &mut value);
                    if !value.is_empty() {
                        return unlearned(self.placed_by(&value));
                    }
                }
                unlearned((None, None))
            }
        }
    }

    /// The member `value` names, if any, and the value's [`Key::stale`].
    pub(super) fn placed_by(&self, value: &str) -> (Option<usize>, Option<u64>) {
        let stale: &[u64] = match self {
            Sticky::Cookie { stale, .. } | Sticky::Route { stale, .. } => stale,
            // Learned keys are hashed where they are read (`pinned`).
            Sticky::Learn { .. } => &[],
        };
        match self.find(value) {
            // `find` answers from the same members, so `get` always finds it.
            Some(index) => {
                let key = stale.get(index).copied();
                (
                    Some(index),
                    key.or_else(|| Some(Key::stale(value.as_bytes()))),
                )
            }
            None => (None, Some(Key::stale(value.as_bytes()))),
        }
    }

    /// The member a cookie or route value names.
    pub(super) fn find(&self, value: &str) -> Option<usize> {
        match self {
            Sticky::Cookie { table, .. } | Sticky::Learn { table, .. } => table.find(value),
            Sticky::Route { routes, .. } => routes.get(value).copied(),
        }
    }

    /// The cookie the answer to a request placed on `member` carries, `by_sticky` when its own
    /// cookie or route placed it (the module doc has the rule).
    pub(super) fn set_cookie(&self, member: usize, by_sticky: bool) -> Option<SetCookie<'_>> {
        match self {
            Sticky::Cookie { issuer, .. } if !by_sticky || issuer.is_sliding() => {
                Some(SetCookie { issuer, member })
            }
            _ => None,
        }
    }

    /// Member `index`'s cookie value (`sticky cookie` only).
    pub(super) fn cookie_value(&self, index: usize) -> Option<&str> {
        match self {
            Sticky::Cookie { table, .. } => Some(table.value(index)),
            Sticky::Route { .. } | Sticky::Learn { .. } => None,
        }
    }

    /// After a request was placed on `member`, `by_sticky` when its session placed it: a known
    /// session that did not is re-pinned to `member`; and what the answer may create.
    pub(super) fn learn_on<'g>(
        &'g self,
        member: usize,
        by_sticky: bool,
        presented: &Presented,
    ) -> Option<Learn<'g>> {
        let Sticky::Learn { table, mode } = self else {
            return None;
        };
        let value = table.value(member);
        if let Some(session) = presented.known.filter(|_| !by_sticky) {
            mode.repin(session, value);
        }
        Some(mode.on_answer(value, presented))
    }
}
