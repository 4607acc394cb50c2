//! The `location` blocks of one server, nested ones included, compiled for nginx's lookup
//! (`ngx_http_core_find_location`): at each level the exact match wins at once; else the
//! longest prefix, and if it has nested locations the search goes on inside it (an exact or a
//! regex match there ends it); then, unless that level's longest prefix was `^~`, the level's
//! regexes in file order (a match ends the search, after a look inside the regex location's own
//! nested ones); else the deepest prefix found. So a nested regex is tried before the server's,
//! and a nested `^~` stops only its own level's regexes, as in nginx. Named locations
//! (`@name`) are never matched by path: [`Locations::named`] finds them for `error_page`.
//!
//! Every location, nested ones too, has an index: its place in [`all_locations`], which is
//! how the snapshot lays out its routes. Plain strings and bytes only: no http, hyper or tokio.

use std::collections::HashMap;

use crate::config::{ConfigErrors, Location, LocationMatch, all_locations};

use super::regex_error;

/// The `location` blocks of one server, compiled.
///
/// Paths are bytes: a normalised path is percent-decoded, and `%FF` decodes to no UTF-8. So
/// regexes are byte regexes (on valid UTF-8 they match exactly as text regexes do).
#[derive(Clone, Debug, Default)]
pub struct Locations {
    top: Level,
    /// `@name` (with the `@`) -> index.
    named: HashMap<Box<str>, usize>,
}

/// The locations written side by side in one block (the server, or one location).
#[derive(Clone, Debug, Default)]
struct Level {
    exact: HashMap<Box<[u8]>, usize>,
    /// Prefix locations, longest first (ties in file order), so the first that matches is the
    /// longest: a plain scan, cheap for the handful of locations a block has.
    prefixes: Vec<Prefix>,
    /// Regex locations in file order, with their entry.
    regexes: Vec<(regex::bytes::Regex, Entry)>,
}

/// A location of a level: its index, and the level of its nested locations, if any.
#[derive(Clone, Debug)]
struct Entry {
    index: usize,
    nested: Option<Box<Level>>,
}

/// One prefix location.
#[derive(Clone, Debug)]
struct Prefix {
    path: String,
    /// `^~`: when this is the longest match, this level's regexes are not consulted.
    no_regex: bool,
    entry: Entry,
}

/// What a level's search found: the location (if any), and whether the search ends there.
struct Found {
    index: Option<usize>,
    done: bool,
}

impl Locations {
    /// Compiles a server's locations (in file order, nested ones inside). Errors are the
    /// regexes that do not compile, all of them. A repeated `=` path, prefix or name keeps its
    /// first location.
    pub fn build(locations: &[Location]) -> Result<Locations, ConfigErrors> {
        let mut errors = Vec::new();
        let mut next = 0;
        let mut named = HashMap::new();
        for location in locations {
            // Lowering allows named locations at server level only.
            if let LocationMatch::Named(name) = &location.matcher {
                named.entry(name.as_str().into()).or_insert(next);
            }
            next += all_locations(std::slice::from_ref(location)).len();
        }
        let mut next = 0;
        let top = Level::build(locations, &mut next, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Locations { top, named })
    }

    /// Index of the matching location for a normalised request path, or None (-> 404).
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.top.find(path).index
    }

    /// Index of the named location `@name` (`name` with its `@`), or None.
    pub fn named(&self, name: &str) -> Option<usize> {
        self.named.get(name).copied()
    }
}

impl Level {
    /// Compiles one block's locations; `next` is the index of the first, counted in
    /// [`all_locations`].
    fn build(
        locations: &[Location],
        next: &mut usize,
        errors: &mut Vec<crate::config::ConfigError>,
    ) -> Level {
        let mut level = Level::default();
        for location in locations {
            let index = *next;
            *next += 1;
            let nested = (!location.nested.is_empty())
                .then(|| Box::new(Level::build(&location.nested, next, errors)));
            let entry = Entry { index, nested };
            match &location.matcher {
                LocationMatch::Exact(path) => {
                    level.exact.entry(path.as_bytes().into()).or_insert(index);
                }
                LocationMatch::Prefix { path, no_regex } => level.prefixes.push(Prefix {
                    path: path.clone(),
                    no_regex: *no_regex,
                    entry,
                }),
                LocationMatch::Regex {
                    pattern,
                    case_insensitive,
                } => {
                    let regex = regex::bytes::RegexBuilder::new(pattern)
                        .case_insensitive(*case_insensitive)
                        .build()
                        .map_err(|error| regex_error(pattern, &error, Some(&location.span)));
                    match regex {
                        Ok(regex) => level.regexes.push((regex, entry)),
                        Err(error) => errors.push(error),
                    }
                }
                LocationMatch::Named(_) => {}
            }
        }
        // Stable sort: equal lengths keep file order, so a duplicate prefix resolves to the first.
        level
            .prefixes
            .sort_by_key(|p| std::cmp::Reverse(p.path.len()));
        level
    }

    fn find(&self, path: &[u8]) -> Found {
        if let Some(index) = self.exact.get(path) {
            return Found {
                index: Some(*index),
                done: true,
            };
        }
        let mut index = None;
        let mut no_regex = false;
        let longest = self
            .prefixes
            .iter()
            .find(|p| path.starts_with(p.path.as_bytes()));
        if let Some(prefix) = longest {
            index = Some(prefix.entry.index);
            no_regex = prefix.no_regex;
            if let Some(nested) = &prefix.entry.nested {
                let inner = nested.find(path);
                index = inner.index.or(index);
                if inner.done {
                    return Found { index, done: true };
                }
            }
        }
        if !no_regex
            && let Some((_, entry)) = self.regexes.iter().find(|(regex, _)| regex.is_match(path))
        {
            let inner = entry.nested.as_ref().and_then(|n| n.find(path).index);
            return Found {
                index: inner.or(Some(entry.index)),
                done: true,
            };
        }
        Found { index, done: false }
    }
}
