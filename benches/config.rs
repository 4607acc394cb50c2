//! Cost of a (re)load of a large config: parsing and lowering it, then building its snapshot.
//!
//! The config has one upstream of 1,000 servers (consistent hash, sticky cookie: the most a
//! group precomputes), a few maps and a few locations. Servers are `127.0.0.1:PORT`, so
//! resolving them never leaves the process. The `hostile` group loads texts built to be slow
//! (a megabyte-long name, a megabyte of `${`, 100,000 directives or words): each must take time
//! linear in its size. Run: `cargo bench --bench config`.

use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use tether::config::load_str;
use tether::peer::PeerRegistry;
use tether::snapshot::Snapshot;

/// Servers in the one big upstream.
const SERVERS: usize = 1_000;

/// A config like a large real-time farm's: what a reload of it must parse, check and build.
fn config_text(servers: usize) -> String {
    let mut text = String::from(
        r#"worker_processes auto;
events { worker_connections 4096; }
http {
    keepalive_timeout 75s;
    map $http_upgrade $connection_upgrade { default upgrade; "" close; }
    map $http_host $tenant {
        hostnames;
        default shared;
        api.example.com api;
        *.eu.example.com eu;
        www.example.* www;
        "~^([a-z]+)\.apps\.example\.com$" $1;
    }
    map $request_uri $cacheable { default 0; "~*\.(css|js|png|svg)$" 1; }
    upstream farm {
        hash $cookie_session consistent;
        sticky cookie srv_id expires=1h path=/ httponly secure samesite=lax;
        keepalive 32;
"#,
    );
    for i in 0..servers {
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "        server 127.0.0.1:{} weight={} max_fails=2 fail_timeout=10s;",
            10_000 + i,
            1 + i % 3
        );
    }
    text.push_str(
        r#"    }
    server {
        listen 127.0.0.1:8080 default_server;
        server_name example.com *.example.com;
        location / {
            proxy_pass http://farm;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 100s;
        }
        location ^~ /static/ { return 404; }
        location ~* \.(png|jpg|svg)$ { return 404; }
        location = /healthz { return 200 "ok\n"; }
    }
}
"#,
    );
    text
}

fn load(c: &mut Criterion) {
    let path = Path::new("bench.conf");
    let prefix = Path::new(".");
    let text = config_text(SERVERS);
    let config = match load_str(path, &text, prefix) {
        Ok(config) => config,
        Err(errors) => panic!("bench config does not load:\n{errors}"),
    };
    // Built once up front: it checks the config builds, so no case times an error path, and
    // it is the live snapshot whose peers the reload case finds again.
    let registry = PeerRegistry::default();
    let live = match Snapshot::build(&config, &registry, 1) {
        Ok(snapshot) => snapshot,
        Err(errors) => panic!("bench config does not build:\n{errors}"),
    };

    let mut group = c.benchmark_group("config");
    group.bench_function(BenchmarkId::new("load_str", SERVERS), |b| {
        b.iter(|| load_str(path, black_box(&text), prefix))
    });
    // A first load: every peer is new. The registry and the snapshot are made and dropped
    // outside the timing, so only building counts.
    group.bench_function(BenchmarkId::new("snapshot_build", SERVERS), |b| {
        b.iter_batched(
            PeerRegistry::default,
            |registry| {
                let snapshot = Snapshot::build(black_box(&config), &registry, 1);
                (snapshot, registry)
            },
            BatchSize::SmallInput,
        )
    });
    // A reload of the same config: the previous snapshot still holds every peer, so each
    // server is found in the registry instead of created.
    group.bench_function(BenchmarkId::new("snapshot_rebuild", SERVERS), |b| {
        b.iter_with_large_drop(|| Snapshot::build(black_box(&config), &registry, 2))
    });
    group.finish();
    drop(live);
}

/// Texts built to find super-linear steps in parse and lowering, each about 1 MB or 100,000
/// tokens. All but the last are errors: the error path is what a hostile text takes.
fn hostile_texts() -> Vec<(&'static str, String)> {
    let directives = "    keepalive_requests 100;\n".repeat(100_000);
    vec![
        // One unknown directive name: the "did you mean" distance was quadratic in it.
        ("name_1mb", "x".repeat(1 << 20) + ";\n"),
        // Nested blocks (`$` then `{`) until the nesting limit; every `${` scanned ahead.
        (
            "dollar_braces_1mb",
            "a ".to_string() + &"${".repeat(1 << 19) + ";\n",
        ),
        // 100,000 words on one line: each word's column was counted from the line's start.
        ("words_on_one_line_100k", "a ".repeat(100_000) + ";\n"),
        // 100,000 braced variables, a template's worth of `${...}` each.
        (
            "braced_variables_100k",
            format!("a {};\n", "${host}${uri} ".repeat(100_000)),
        ),
        // 100,000 unknown directives: one "did you mean" each.
        ("unknown_directives_100k", "lisen 80;\n".repeat(100_000)),
        // 100,000 known directives, all accepted (and recorded as ignored).
        ("directives_100k", format!("http {{\n{directives}}}\n")),
    ]
}

fn hostile(c: &mut Criterion) {
    let path = Path::new("hostile.conf");
    let prefix = Path::new(".");
    let mut group = c.benchmark_group("hostile");
    group.sample_size(10);
    for (name, text) in hostile_texts() {
        group.bench_function(name, |b| {
            b.iter(|| load_str(path, black_box(&text), prefix))
        });
    }
    group.finish();
}

criterion_group!(benches, load, hostile);
criterion_main!(benches);
