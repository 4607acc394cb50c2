//! `map` blocks: compiling their entries into lookup tables, rendering one per request, and
//! finding cycles between maps when a config is built.
//!
//! Part of `vars`, under the same rule: no hyper, no tokio.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::{CaptureLocations, Regex};

use super::{
    Captures, NO_CAPTURES, RequestInfo, Scope, Template, Vars, error_at, parse, render_parts,
};
use crate::config::{self, ConfigError, ErrorKind, MapPattern, Span};
use crate::route::{HostnameTable, compile_regex};

/// One compiled `map` block.
#[derive(Debug)]
pub(super) struct CompiledMap {
    source: Template,
    hostnames: bool,
    /// Exact entries (and, with `hostnames`, wildcards) -> index into `values`.
    names: HostnameTable<usize>,
    /// Regex entries in file order.
    regexes: Vec<RegexEntry>,
    /// Every entry's value, by entry index.
    values: Vec<Template>,
    default: Template,
}

#[derive(Debug)]
struct RegexEntry {
    regex: Regex,
    /// Index into `values`.
    value: usize,
    /// Capture slots for values that use `$1`..: kept between requests so that matching does
    /// not allocate. None when the value needs no captures (a plain `is_match` then).
    slots: Option<Mutex<Vec<CaptureLocations>>>,
}

impl CompiledMap {
    pub(super) fn compile(
        map: &config::Map,
        names: &HashMap<String, usize>,
        sets: &HashMap<String, usize>,
        errors: &mut Vec<ConfigError>,
    ) -> CompiledMap {
        let plain = Scope {
            maps: names,
            sets,
            captures: false,
        };
        let value_scope = Scope {
            maps: names,
            sets,
            captures: true,
        };
        let mut compile = |text: &str, scope: &Scope, span: &Span| {
            parse(text, scope).unwrap_or_else(|kind| {
                errors.push(error_at(span, kind));
                Template::default()
            })
        };
        let source = compile(&map.source, &plain, &map.span);
        let default = compile(&map.default, &value_scope, &map.span);
        let values: Vec<Template> = map
            .entries
            .iter()
            .map(|entry| compile(&entry.value, &value_scope, &entry.span))
            .collect();

        let mut table = HostnameTable::new();
        let mut regexes = Vec::new();
        for (index, entry) in map.entries.iter().enumerate() {
            match &entry.pattern {
                MapPattern::Exact(text) => {
                    let inserted = if map.hostnames {
                        insert_hostname(&mut table, text, index)
                    } else {
                        table.insert_exact(text, index)
                    };
                    if !inserted {
                        errors.push(error_at(
                            &entry.span,
                            ErrorKind::DuplicateMapEntry {
                                pattern: text.clone(),
                            },
                        ));
                    }
                }
                MapPattern::Regex {
                    pattern,
                    case_insensitive,
                } => match compile_regex(pattern, *case_insensitive, Some(&entry.span)) {
                    Ok(regex) => regexes.push(RegexEntry {
                        regex,
                        value: index,
                        slots: values[index]
                            .uses_captures()
                            .then(|| Mutex::new(Vec::new())),
                    }),
                    Err(error) => errors.push(error),
                },
            }
        }
        CompiledMap {
            source,
            hostnames: map.hostnames,
            names: table,
            regexes,
            values,
            default,
        }
    }

    /// The entry for a source value: exact (and wildcards), then regexes in file order.
    /// `offset` is where `key` sits in the render buffer, to record captures there.
    fn lookup(&self, key: &str, offset: usize, captures: &mut Captures) -> Option<usize> {
        if let Some(index) = self.names.find(key) {
            return Some(index);
        }
        for entry in &self.regexes {
            let Some(slots) = &entry.slots else {
                if entry.regex.is_match(key) {
                    return Some(entry.value);
                }
                continue;
            };
            let mut locations = slots
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_else(|| entry.regex.capture_locations());
            let found = entry.regex.captures_read(&mut locations, key).is_some();
            if found {
                for (group, slot) in captures.iter_mut().enumerate() {
                    *slot = locations
                        .get(group)
                        .map(|(start, end)| (offset + start, offset + end));
                }
            }
            if let Ok(mut pool) = slots.lock() {
                pool.push(locations);
            }
            if found {
                return Some(entry.value);
            }
        }
        None
    }

    /// Every template of the map: its source, default and values.
    pub(super) fn templates(&self) -> impl Iterator<Item = &Template> + '_ {
        std::iter::once(&self.source)
            .chain(std::iter::once(&self.default))
            .chain(&self.values)
    }

    fn references(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(&self.source)
            .chain(std::iter::once(&self.default))
            .chain(&self.values)
            .flat_map(Template::map_references)
    }
}

/// Adds a `hostnames` map pattern: `*.example.com`, `.example.com`, `www.example.*` or exact,
/// lowercased. Returns false if it was already there.
fn insert_hostname(table: &mut HostnameTable<usize>, pattern: &str, index: usize) -> bool {
    let name = pattern.to_ascii_lowercase();
    if let Some(suffix) = name
        .strip_prefix('*')
        .filter(|s| s.len() > 1 && s.starts_with('.'))
    {
        table.insert_wildcard_prefix(suffix, false, index)
    } else if name.len() > 1 && name.starts_with('.') {
        table.insert_wildcard_prefix(&name, true, index)
    } else if let Some(prefix) = name
        .strip_suffix('*')
        .filter(|p| p.len() > 1 && p.ends_with('.'))
    {
        table.insert_wildcard_suffix(prefix, index)
    } else {
        table.insert_exact(&name, index)
    }
}

/// Renders map `index` into `out`: the source is rendered in place, matched, and replaced by the
/// chosen value (whose `$1`.. read the source text while it is still there).
pub(super) fn render_map(index: usize, vars: &Vars, req: &RequestInfo, out: &mut String) {
    let Some(map) = vars.maps.get(index) else {
        return;
    };
    let start = out.len();
    render_parts(&map.source.parts, vars, req, &NO_CAPTURES, out);
    let source_end = out.len();
    let mut key_end = source_end;
    if map.hostnames {
        // nginx compares hostnames lowercase and ignores a trailing dot.
        out[start..].make_ascii_lowercase();
        if out[start..].ends_with('.') {
            key_end -= 1;
        }
    }
    let mut captures = NO_CAPTURES;
    let chosen = map.lookup(&out[start..key_end], start, &mut captures);
    let value = chosen
        .and_then(|entry| map.values.get(entry))
        .unwrap_or(&map.default);
    render_parts(&value.parts, vars, req, &captures, out);
    out.replace_range(start..source_end, "");
}

/// Reports every cycle between maps, at the map where it closes. nginx only finds these at run
/// time ("cycle while evaluating variable"); here rendering can then never loop.
pub(super) fn find_cycles(
    maps: &[config::Map],
    compiled: &[CompiledMap],
    errors: &mut Vec<ConfigError>,
) {
    let edges: Vec<Vec<usize>> = compiled
        .iter()
        .map(|map| {
            let mut next: Vec<usize> = map.references().collect();
            next.sort_unstable();
            next.dedup();
            next
        })
        .collect();
    let mut marks = vec![Mark::New; compiled.len()];
    let mut path = Vec::new();
    for root in 0..compiled.len() {
        visit(root, &edges, &mut marks, &mut path, &mut |cycle| {
            let names = cycle.iter().map(|&i| maps[i].variable.clone()).collect();
            errors.push(error_at(
                &maps[cycle[0]].span,
                ErrorKind::MapCycle { cycle: names },
            ));
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    OnPath,
    Done,
}

/// Depth-first walk; `on_cycle` gets the maps of a cycle, first one repeated at the end.
fn visit(
    node: usize,
    edges: &[Vec<usize>],
    marks: &mut [Mark],
    path: &mut Vec<usize>,
    on_cycle: &mut dyn FnMut(&[usize]),
) {
    match marks[node] {
        Mark::Done => return,
        Mark::OnPath => {
            // `node` is on the path (it is marked so): the cycle is the path from it.
            let from = path.iter().position(|&n| n == node).unwrap_or(0);
            let mut cycle = path[from..].to_vec();
            cycle.push(node);
            on_cycle(&cycle);
            return;
        }
        Mark::New => {}
    }
    marks[node] = Mark::OnPath;
    path.push(node);
    for &next in &edges[node] {
        visit(next, edges, marks, path, on_cycle);
    }
    path.pop();
    marks[node] = Mark::Done;
}
