//! What one request gives itself in nginx's rewrite phases: the values of `set` variables (and
//! of named captures), the captures of the last regex that matched, and the URI and arguments
//! a `rewrite` or `set $args` changed. Read by templates through [`RequestInfo::locals`].
//!
//! An empty [`Locals`] allocates nothing: a request that meets no `set`, no capture and no
//! `rewrite` pays for none of this. Pure: std only.
//!
//! [`RequestInfo::locals`]: super::RequestInfo::locals

/// Capture groups `$0`..`$9` of the last match, as byte ranges of the text it matched.
type Groups = [Option<(usize, usize)>; 10];

/// The per-request variable store of the rewrite phases.
#[derive(Clone, Debug, Default)]
pub struct Locals {
    /// `set` variables by slot ([`super::Settable::Slot`]); None: never set.
    values: Vec<Option<Box<str>>>,
    /// The text the last successful regex matched (a copy: the URI it came from may change).
    matched: Vec<u8>,
    groups: Groups,
    /// `$uri` once a `rewrite` changed it.
    uri: Option<Vec<u8>>,
    /// `$args` once a `rewrite` or `set $args` changed them.
    args: Option<String>,
    /// A `rewrite ... break` changed the URI in the location the request stays in (nginx's
    /// `valid_location = 0`: a `proxy_pass` URI then has no matched prefix to replace).
    left_location: bool,
}

impl Locals {
    /// The value of `set` variable `slot`, if it was set.
    pub fn value(&self, slot: usize) -> Option<&str> {
        self.values.get(slot)?.as_deref()
    }

    /// Gives `set` variable `slot` its value.
    pub fn set(&mut self, slot: usize, value: &str) {
        if self.values.len() <= slot {
            self.values.resize(slot + 1, None);
        }
        self.values[slot] = Some(value.into());
    }

    /// Keeps the captures of a regex that matched `subject` (`$1`..`$9` read them until the
    /// next successful match, as in nginx). `groups` are byte ranges of `subject`.
    pub fn capture(
        &mut self,
        subject: &[u8],
        groups: impl Iterator<Item = Option<(usize, usize)>>,
    ) {
        self.matched.clear();
        self.matched.extend_from_slice(subject);
        self.groups = [None; 10];
        for (slot, group) in self.groups.iter_mut().zip(groups) {
            *slot = group;
        }
    }

    /// A copy whose captures are escaped by `escape` (the rest as it is): what a replacement
    /// renders its captures from where nginx escapes them.
    pub fn with_escaped_captures(&self, escape: fn(&[u8], &mut Vec<u8>)) -> Locals {
        let mut copy = self.clone();
        copy.matched.clear();
        for (slot, group) in copy.groups.iter_mut().zip(&self.groups) {
            *slot = group.map(|(start, end)| {
                let from = copy.matched.len();
                escape(&self.matched[start..end], &mut copy.matched);
                (from, copy.matched.len())
            });
        }
        copy
    }

    /// Capture `n` of the last match (`$n`), if it took part in the match.
    pub fn group(&self, n: usize) -> Option<&[u8]> {
        let (start, end) = (*self.groups.get(n)?)?;
        self.matched.get(start..end)
    }

    /// `$uri` as a rewrite left it (None: unchanged).
    pub fn uri(&self) -> Option<&[u8]> {
        self.uri.as_deref()
    }

    /// `$args` as a rewrite or `set $args` left them (None: unchanged).
    pub fn args(&self) -> Option<&str> {
        self.args.as_deref()
    }

    /// A rewrite's new `$uri`.
    pub fn set_uri(&mut self, uri: Vec<u8>) {
        self.uri = Some(uri);
    }

    /// New `$args` (a rewrite's, or `set $args`).
    pub fn set_args(&mut self, args: String) {
        self.args = Some(args);
    }

    /// Records that a `rewrite ... break` changed the URI of the location it stays in.
    pub fn leave_location(&mut self) {
        self.left_location = true;
    }

    /// A location was found for the current URI: its match is valid again.
    pub fn enter_location(&mut self) {
        self.left_location = false;
    }

    /// Whether the URI no longer matches the location as found (see [`Locals::leave_location`]).
    pub fn left_location(&self) -> bool {
        self.left_location
    }

    /// Whether the URI or the arguments were changed: the request then goes upstream as
    /// `$uri` (escaped) and `$args`, not as the client sent it (nginx's rule).
    pub fn changed_target(&self) -> bool {
        self.uri.is_some() || self.args.is_some()
    }
}
