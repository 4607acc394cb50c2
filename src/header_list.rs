//! A request's header lines as a list, in the order they came: what the proxy reads the
//! request's headers from, and writes the upstream request's head from.
//!
//! A request names a handful of headers, each looked up a few times: a scan over a short list
//! is cheaper than a hash map's upkeep (hashing every name on the way in, an index table,
//! dropping it), and the list keeps the client's order, which the upstream then sees as nginx
//! would send it. Lookups mirror `http::HeaderMap`'s (`get`, `get_all`, `insert`, `remove`,
//! by `HeaderName` or by a name in any case), so readers of either read alike. Pure: std and
//! `http`; must not import the rest of tether.

use std::cell::RefCell;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Header lines, in order; names may repeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList {
    lines: Vec<(HeaderName, HeaderValue)>,
}

/// A request's lines outlive its exchange with the upstream (kept to send it again), so a
/// thread serving many connections frees them in bursts, past what the allocator's own
/// per-thread cache holds, and each then cost ~300 instructions in its slow path. Their room
/// is kept here instead, per thread and bounded: at most [`SPARE_LISTS`] lists of at most
/// [`SPARE_LINES`] lines (~70 KiB a thread at worst).
const SPARE_LISTS: usize = 64;
/// The most lines a kept list has room for; a list grown past it is freed.
const SPARE_LINES: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Vec<(HeaderName, HeaderValue)>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for `lines` lines: a kept one if it has the room.
fn spare_room(lines: usize) -> Vec<(HeaderName, HeaderValue)> {
    let kept = SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten();
    match kept {
        Some(mut room) => {
            room.reserve(lines);
            room
        }
        None => Vec::with_capacity(lines),
    }
}

/// Keeps `room`'s allocation for a later list, if there is room for it.
fn keep_room(mut room: Vec<(HeaderName, HeaderValue)>) {
    if room.capacity() == 0 || room.capacity() > SPARE_LINES {
        return;
    }
    // Emptied first: dropping the values runs no code that could come back here.
    room.clear();
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut()
            && spare.len() < SPARE_LISTS
        {
            spare.push(room);
        }
    });
}

impl Drop for HeaderList {
    fn drop(&mut self) {
        keep_room(std::mem::take(&mut self.lines));
    }
}

/// What a header can be looked up by: a [`HeaderName`] (compared as one: standard names by
/// their tag), or its text in any case.
pub trait Key {
    /// Whether `name` is the header this key names.
    fn names(&self, name: &HeaderName) -> bool;
}

impl Key for HeaderName {
    fn names(&self, name: &HeaderName) -> bool {
        self == name
    }
}

impl Key for &HeaderName {
    fn names(&self, name: &HeaderName) -> bool {
        *self == name
    }
}

impl Key for &str {
    fn names(&self, name: &HeaderName) -> bool {
        name.as_str().eq_ignore_ascii_case(self)
    }
}

impl HeaderList {
    /// An empty list (no allocation).
    pub const fn new() -> HeaderList {
        HeaderList { lines: Vec::new() }
    }

    /// An empty list with room for `lines` lines.
    pub fn with_capacity(lines: usize) -> HeaderList {
        HeaderList {
            lines: spare_room(lines),
        }
    }

    /// The number of lines (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// No lines at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The value of the first line named `key`.
    pub fn get(&self, key: impl Key) -> Option<&HeaderValue> {
        self.lines
            .iter()
            .find(|(name, _)| key.names(name))
            .map(|(_, value)| value)
    }

    /// The values of every line named `key`, in order.
    pub fn get_all<K: Key>(&self, key: K) -> Values<'_, K> {
        Values { list: self, key }
    }

    /// Whether a line is named `key`.
    pub fn contains_key(&self, key: impl Key) -> bool {
        self.lines.iter().any(|(name, _)| key.names(name))
    }

    /// Every line, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&HeaderName, &HeaderValue)> {
        self.into_iter()
    }

    /// Adds a line at the end.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.lines.push((name, value));
    }

    /// Sets `name` to `value` alone: the first line so named takes the value (keeping its
    /// place), the others go; a name not there yet is added at the end.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.lines.iter().position(|(line, _)| *line == name) {
            Some(at) => {
                self.lines[at].1 = value;
                if self.lines[at + 1..].iter().any(|(line, _)| *line == name) {
                    let mut index = 0;
                    self.lines.retain(|(line, _)| {
                        index += 1;
                        index <= at + 1 || *line != name
                    });
                }
            }
            None => self.lines.push((name, value)),
        }
    }

    /// Removes every line named `key`; the first one's value, if there was one.
    pub fn remove(&mut self, key: impl Key) -> Option<HeaderValue> {
        let at = self.lines.iter().position(|(name, _)| key.names(name))?;
        let (_, first) = self.lines.remove(at);
        self.lines.retain(|(name, _)| !key.names(name));
        Some(first)
    }

    /// Keeps only the lines `keep` says yes to, in order; `keep` may change a value it keeps.
    pub fn retain(&mut self, mut keep: impl FnMut(&HeaderName, &mut HeaderValue) -> bool) {
        self.lines.retain_mut(|(name, value)| keep(name, value));
    }
}

/// A map's lines as a list: each name's values in the map's order, names in the order the
/// map keeps them.
impl From<HeaderMap> for HeaderList {
    fn from(map: HeaderMap) -> HeaderList {
        let mut lines = spare_room(map.len());
        let mut current: Option<HeaderName> = None;
        for (name, value) in map {
            // The map names a header once, before its first value: the later values follow.
            if let Some(name) = name {
                current = Some(name);
            }
            if let Some(name) = &current {
                lines.push((name.clone(), value));
            }
        }
        HeaderList { lines }
    }
}

/// The first value of the line named `key`, as `HeaderMap` indexes; panics when there is none.
impl<K: Key> std::ops::Index<K> for HeaderList {
    type Output = HeaderValue;

    fn index(&self, key: K) -> &HeaderValue {
        self.get(key).expect("no header line of that name")
    }
}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = (&'a HeaderName, &'a HeaderValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (HeaderName, HeaderValue)>,
        fn(&'a (HeaderName, HeaderValue)) -> (&'a HeaderName, &'a HeaderValue),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.lines.iter().map(|(name, value)| (name, value))
    }
}

impl FromIterator<(HeaderName, HeaderValue)> for HeaderList {
    fn from_iter<T: IntoIterator<Item = (HeaderName, HeaderValue)>>(lines: T) -> HeaderList {
        HeaderList {
            lines: lines.into_iter().collect(),
        }
    }
}

/// The values of the lines one name names, as `HeaderMap::get_all` gives them.
pub struct Values<'a, K> {
    list: &'a HeaderList,
    key: K,
}

impl<'a, K: Key + Clone> Values<'a, K> {
    /// The values, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a HeaderValue> + use<'a, K> {
        let key = self.key.clone();
        self.list
            .lines
            .iter()
            .filter(move |(name, _)| key.names(name))
            .map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_LENGTH, COOKIE, HOST};

    fn list(lines: &[(&str, &str)]) -> HeaderList {
        lines
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    fn lines(list: &HeaderList) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn lookups_find_the_lines_by_name_in_any_case_and_in_order() {
        let list = list(&[
            ("Host", "a"),
            ("Cookie", "x=1"),
            ("X-Id", "7"),
            ("cookie", "y=2"),
        ]);
        assert_eq!(list.get(HOST).unwrap(), "a");
        assert_eq!(list.get("x-ID").unwrap(), "7");
        assert_eq!(list.get(&COOKIE).unwrap(), "x=1");
        let cookies: Vec<_> = list.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["x=1", "y=2"]);
        assert_eq!(list.get_all("cookie").iter().rev().count(), 2);
        assert!(list.contains_key("x-id"));
        assert!(!list.contains_key(CONTENT_LENGTH));
        assert_eq!(list.get("absent"), None);
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn insert_replaces_every_line_of_the_name_at_the_first_ones_place() {
        let mut list = list(&[("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("a", "5")]);
        list.insert(
            HeaderName::from_static("a"),
            HeaderValue::from_static("new"),
        );
        assert_eq!(
            lines(&list),
            [("a", "new"), ("b", "2"), ("c", "4")].map(|(n, v)| (n.into(), v.into()))
        );
        list.insert(HeaderName::from_static("d"), HeaderValue::from_static("6"));
        assert_eq!(lines(&list).last().unwrap(), &("d".into(), "6".into()));
    }

    #[test]
    fn remove_takes_every_line_of_the_name_and_gives_the_first_value() {
        let mut list = list(&[("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(list.remove("A").unwrap(), "1");
        assert_eq!(lines(&list), [("b".into(), "2".into())]);
        assert_eq!(list.remove("a"), None);
    }

    #[test]
    fn a_dropped_lists_room_is_kept_for_the_next_one_on_its_thread_within_bounds() {
        let spare = || SPARE.with(|spare| spare.borrow().len());
        let before = spare();
        let mut small = HeaderList::with_capacity(4);
        small.append(HOST, HeaderValue::from_static("h"));
        let at = small.lines.as_ptr();
        drop(small);
        assert_eq!(spare(), before + 1);
        let again = HeaderList::with_capacity(2);
        assert_eq!(again.lines.as_ptr(), at, "the kept room is used again");
        assert!(again.is_empty(), "and handed out empty");
        assert_eq!(spare(), before);
        // Room past the bound is freed, not kept.
        drop(HeaderList::with_capacity(SPARE_LINES + 1));
        assert_eq!(spare(), before);
        drop(again);
        // However many are dropped at once, at most SPARE_LISTS are kept.
        let many: Vec<_> = (0..SPARE_LISTS + 8)
            .map(|_| HeaderList::with_capacity(1))
            .collect();
        drop(many);
        assert_eq!(spare(), SPARE_LISTS);
    }

    #[test]
    fn a_map_becomes_a_list_with_every_value() {
        let mut map = HeaderMap::new();
        map.append(HOST, HeaderValue::from_static("h"));
        map.append(COOKIE, HeaderValue::from_static("x=1"));
        map.append(COOKIE, HeaderValue::from_static("y=2"));
        let list = HeaderList::from(map.clone());
        assert_eq!(
            lines(&list),
            [("host", "h"), ("cookie", "x=1"), ("cookie", "y=2")]
                .map(|(n, v)| (n.into(), v.into()))
        );
    }
}
