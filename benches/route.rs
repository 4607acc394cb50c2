//! Cost of routing one request in a large config: `Locations::find` among 1,000 locations and
//! `VirtualHosts::find` among 1,000 server names, per kind of match; and of normalising the
//! request path first (`path::normalise`), for a path that is already normal and one that is not.
//!
//! Both tables are built straight from the config model (no file), so only the lookup is
//! measured. Prefixes are scanned longest first and regexes in file order, so where a path
//! lands in those lists is what it pays: the cases name their worst spots.
//! Run: `cargo bench --bench route`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tether::config::{Handler, Location, LocationMatch, ProxySettings, ServerName, Span};
use tether::route::{Locations, VirtualHosts, path};

/// Entries in each table.
const COUNT: usize = 1_000;
/// One entry in this many is a regex (about 20 of 1,000).
const REGEX_EVERY: usize = 50;

/// The i-th location: mostly prefixes of varying depth, every third an exact path, and
/// every 50th a regex.
fn matcher(i: usize) -> LocationMatch {
    if i % REGEX_EVERY == REGEX_EVERY - 1 {
        LocationMatch::Regex {
            pattern: format!(r"^/r{i}/[a-z]+/\d+\.(json|xml)$"),
            case_insensitive: i.is_multiple_of(2),
        }
    } else if i.is_multiple_of(3) {
        LocationMatch::Exact(format!("/svc{i}/status"))
    } else {
        // Depth 1 to 4, so the prefix list has lengths to sort by.
        let path = [
            "/svc{i}/",
            "/svc{i}/api/",
            "/svc{i}/api/v1/",
            "/svc{i}/api/v1/items/",
        ][i % 4]
            .replace("{i}", &i.to_string());
        LocationMatch::Prefix {
            path,
            no_regex: false,
        }
    }
}

fn locations(c: &mut Criterion) {
    let list: Vec<Location> = (0..COUNT)
        .map(|i| Location {
            matcher: matcher(i),
            handler: Handler::NotFound,
            rewrite: Vec::new(),
            proxy: ProxySettings::default(),
            internal: false,
            nested: Vec::new(),
            span: Span::builtin(),
        })
        .collect();
    let table = match Locations::build(&list) {
        Ok(table) => table,
        Err(errors) => panic!("bench locations do not build:\n{errors}"),
    };
    let last_regex = COUNT - 1;
    let cases = [
        // `=`: one hash lookup, nothing else.
        ("exact", "/svc996/status".to_string(), Some(996)),
        // The longest prefix is the first in the scan, then every regex is tried.
        (
            "long_prefix",
            "/svc103/api/v1/items/42".to_string(),
            Some(103),
        ),
        // The shortest prefixes sit at the end of the scan.
        ("short_prefix", "/svc4/index.html".to_string(), Some(4)),
        // No prefix matches; the last regex does.
        (
            "regex",
            format!("/r{last_regex}/orders/17.json"),
            Some(last_regex),
        ),
        // Every prefix and every regex tried, for a 404.
        ("miss", "/nowhere/at/all".to_string(), None),
    ];
    let mut group = c.benchmark_group("locations_find");
    for (label, path, want) in cases {
        assert_eq!(table.find(path.as_bytes()), want, "{label}: {path}");
        group.bench_function(BenchmarkId::new(label, COUNT), |b| {
            b.iter(|| table.find(black_box(path.as_bytes())))
        });
    }
    group.finish();
}

/// The i-th server's name: mostly exact, then `*.` and `.*` wildcards, and every 50th a regex.
fn server_name(i: usize) -> ServerName {
    match i % REGEX_EVERY {
        n if n == REGEX_EVERY - 1 => {
            ServerName::Regex(format!(r"^app(\d+)\.region{i}\.example\.org$"))
        }
        n if n % 4 == 1 => ServerName::WildcardPrefix {
            suffix: format!(".tenant{i}.example.net"),
            include_bare: false,
        },
        n if n % 4 == 2 => ServerName::WildcardSuffix(format!("www.brand{i}.")),
        _ => ServerName::Exact(format!("host{i}.example.com")),
    }
}

fn virtual_hosts(c: &mut Criterion) {
    let names: Vec<[ServerName; 1]> = (0..COUNT).map(|i| [server_name(i)]).collect();
    let servers: Vec<(&[ServerName], bool)> =
        names.iter().map(|name| (name.as_slice(), false)).collect();
    let hosts = match VirtualHosts::build(&servers) {
        Ok(hosts) => hosts,
        Err(errors) => panic!("bench server names do not build:\n{errors}"),
    };
    let last_regex = COUNT - 1;
    let cases = [
        ("exact", "host997.example.com".to_string(), 997),
        // One hash lookup per dot, left to right, until `tenant995.example.net`.
        (
            "wildcard_prefix",
            "a.b.tenant995.example.net".to_string(),
            995,
        ),
        // Every `*.` candidate first, then the `.*` ones right to left.
        ("wildcard_suffix", "www.brand996.co.uk".to_string(), 996),
        // No name matches; the last regex does.
        (
            "regex",
            format!("app7.region{last_regex}.example.org"),
            last_regex,
        ),
        // Every lookup and every regex tried, then the default server.
        ("miss", "unknown.example.io".to_string(), 0),
    ];
    let mut group = c.benchmark_group("virtual_hosts_find");
    for (label, host, want) in cases {
        assert_eq!(hosts.find(&host), want, "{label}: {host}");
        group.bench_function(BenchmarkId::new(label, COUNT), |b| {
            b.iter(|| hosts.find(black_box(&host)))
        });
    }
    group.finish();
}

fn normalise(c: &mut Criterion) {
    let cases = [
        // Nearly every request: one scan, the path borrowed, nothing allocated.
        ("clean", "/api/v1/tenants/4711/users/42/profile.json"),
        // Escapes, doubled slashes, `.` and `..`: decoded into a new buffer.
        (
            "messy",
            "/api//v1/./tenants/%34%37%31%31/users/x/../42/profile%2Ejson",
        ),
    ];
    let mut group = c.benchmark_group("path_normalise");
    for (label, raw) in cases {
        let normal = path::normalise(raw).map(|p| p.into_owned());
        assert_eq!(
            normal.as_deref(),
            Ok(&b"/api/v1/tenants/4711/users/42/profile.json"[..]),
            "{label}"
        );
        group.bench_function(label, |b| b.iter(|| path::normalise(black_box(raw))));
    }
    group.finish();
}

criterion_group!(benches, locations, virtual_hosts, normalise);
criterion_main!(benches);
