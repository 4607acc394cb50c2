//! Fifty reloads under load: 200 WebSockets held open and HTTP clients running non-stop while
//! servers are added and removed, by `Tether::apply` and through the watched config file. No
//! request may fail and no WebSocket may drop — on a server that stayed or on one the config
//! removed. Prints reload latencies and memory.
//!
//! `measure_reload_rss` (ignored: a measurement, not a check) does the same with 1,000
//! WebSockets against the real binary and against real nginx with a master and workers,
//! reporting memory, lingering processes and the time from a file write to the new config
//! serving.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::harness::load::{
    Held, Load, echo, echo_all, median_max, ms, open_websockets, until_answered_by,
};
use crate::harness::nginx::NginxFleet;
use crate::harness::process::{TetherProcess, signal, tether_binary, write_atomically};
use crate::harness::procfs::{own_rss_kib, rss_kib};
use crate::harness::proxy::fill;
use crate::harness::session::eventually;
use crate::harness::{Backend, Proxy};

/// Always in the config.
const PERMANENT: [&str; 2] = ["p0", "p1"];
/// Two at a time in the config; each reload adds the next and removes the oldest.
const ROTATING: [&str; 4] = ["r0", "r1", "r2", "r3"];

/// The servers of config number `i`: both permanent ones, `r[i%4]` and `r[(i+1)%4]`. Going
/// from `i-1` to `i` adds `r[(i+1)%4]` and removes `r[(i-1)%4]`.
fn members(i: usize) -> Vec<&'static str> {
    let mut names = PERMANENT.to_vec();
    names.push(ROTATING[i % 4]);
    names.push(ROTATING[(i + 1) % 4]);
    names
}

/// tether's config over `names` (placeholders for the backends' addresses).
fn tether_conf(names: &[&str]) -> String {
    let servers: String = names.iter().map(|n| format!("server {{{n}}}; ")).collect();
    format!(
        "events {{ worker_connections 8192; }}\nhttp {{\n  upstream up {{ {servers}}}\n  server {{ listen {{listen}}; location / {{ proxy_pass http://up; }} }}\n}}\n"
    )
}

/// How many held WebSockets each backend answered.
fn spread(held: &[Held]) -> BTreeMap<String, usize> {
    let mut by_backend = BTreeMap::new();
    for h in held {
        *by_backend.entry(h.backend.clone()).or_default() += 1;
    }
    by_backend
}

/// Closes every WebSocket cleanly (close, then read to the end), `batch` at a time.
async fn close_all(held: Vec<Held>, batch: usize) {
    let mut held = held;
    while !held.is_empty() {
        let chunk: Vec<Held> = held.drain(..batch.min(held.len())).collect();
        futures_util::future::join_all(chunk.into_iter().map(|mut h| async move {
            let _ = h.ws.close(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = h.ws.next().await {}
            })
            .await;
        }))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_drop_nothing() {
    let mut backends = Vec::new();
    for name in PERMANENT.iter().chain(ROTATING.iter()) {
        backends.push(Backend::start(name).await);
    }
    let addrs: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    let proxy = Proxy::start_watched(&tether_conf(&members(0)), &addrs).await;
    let tether = proxy.tether().clone();

    let mut held = open_websockets(proxy.addr, 200, 25).await;
    let by_backend = spread(&held);
    assert_eq!(
        by_backend,
        members(0).iter().map(|n| (n.to_string(), 50)).collect(),
        "round robin spreads the WebSockets evenly"
    );
    assert_eq!(tether.open_tunnels(), 200);
    let rss_before = own_rss_kib();

    let load = Load::start(proxy.addr, 50_000);
    load.advance(20).await;
    let mut removed_ever = BTreeSet::new();
    let (mut by_apply, mut by_file) = (Vec::new(), Vec::new());
    let soak = Instant::now();
    for i in 1..=50 {
        let names = members(i);
        let added = ROTATING[(i + 1) % 4];
        removed_ever.insert(ROTATING[(i - 1) % 4]);
        let conf = tether_conf(&names);
        let generation = proxy.snapshot().generation;
        if i % 10 == 0 {
            // Through the watched file: from the write to an answer by the server it added.
            let written = Instant::now();
            write_atomically(&proxy.watched().path, &fill(&conf, proxy.addr, &addrs));
            until_answered_by(proxy.addr, added, Duration::from_secs(5)).await;
            by_file.push(written.elapsed());
        } else {
            let started = Instant::now();
            proxy
                .apply(&conf, &addrs)
                .await
                .expect("the reload applies");
            by_apply.push(started.elapsed());
            until_answered_by(proxy.addr, added, Duration::from_secs(2)).await;
        }
        assert_eq!(proxy.snapshot().generation, generation + 1, "reload {i}");
        // Traffic under this config, and a few WebSockets proving themselves alive.
        load.advance(20).await;
        for k in 0..4 {
            let index = (i * 4 + k) % held.len();
            echo(
                &mut held[index].ws,
                &format!("reload {i}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("WebSocket #{index} after reload {i}: {e}"));
        }
    }
    let soak = soak.elapsed();

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} failed HTTP requests: {failures:?}",
        failures.len()
    );
    let failed = echo_all(&mut held, "after the last reload", 50).await;
    assert!(
        failed.is_empty(),
        "WebSockets that no longer echo: {failed:?}"
    );
    assert_eq!(
        tether.open_tunnels(),
        200,
        "tether still counts every tunnel"
    );
    let rss_after = own_rss_kib();

    let kept: BTreeSet<&str> = members(50).into_iter().collect();
    let on_removed = held
        .iter()
        .filter(|h| removed_ever.contains(h.backend.as_str()))
        .count();
    let on_kept = held
        .iter()
        .filter(|h| kept.contains(h.backend.as_str()) && !removed_ever.contains(h.backend.as_str()))
        .count();
    assert_eq!((on_kept, on_removed), (100, 100));

    let (apply_median, apply_max) = median_max(&by_apply);
    let (file_median, file_max) = median_max(&by_file);
    println!(
        "reload soak: 50 reloads in {soak:?}, {ok} HTTP requests, 0 failed; 200 WebSockets all \
         echo ({on_kept} on servers always present, {on_removed} on servers removed)\n  \
         apply(): median {}, max {} (n={})\n  file write -> new server answering: median {}, \
         max {} (n={})\n  test process RSS: {rss_before} KiB before, {rss_after} KiB after",
        ms(apply_median),
        ms(apply_max),
        by_apply.len(),
        ms(file_median),
        ms(file_max),
        by_file.len(),
    );

    close_all(held, 50).await;
    eventually(Duration::from_secs(5), "every tunnel to end", || async {
        tether.open_tunnels() == 0
    })
    .await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Measurements against the real binary and real nginx.

/// The four servers holding the WebSockets, plus one of two markers: config `i` names
/// `m[i%2]`, so an answer from it proves config `i` is serving.
fn measured_members(i: usize) -> Vec<&'static str> {
    vec!["p0", "p1", "p2", "p3", ["m0", "m1"][i % 2]]
}

fn nginx_upstream(names: &[&str], addrs: &[(&str, SocketAddr)]) -> String {
    names
        .iter()
        .map(|n| {
            let addr = addrs
                .iter()
                .find(|(name, _)| name == n)
                .expect("a backend")
                .1;
            format!("server {addr}; ")
        })
        .collect()
}

/// What one run measured.
struct Measured {
    rss_before: u64,
    rss_after: u64,
    latencies: Vec<(&'static str, Duration)>,
    echo_failures: usize,
}

fn report(what: &str, m: &Measured, extra: &str) {
    let mut by_trigger: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (trigger, latency) in &m.latencies {
        by_trigger.entry(trigger).or_default().push(*latency);
    }
    let all: Vec<Duration> = m.latencies.iter().map(|(_, d)| *d).collect();
    let (median, max) = median_max(&all);
    println!(
        "{what}: RSS {} KiB before, {} KiB after 50 reloads ({:+} KiB); write -> serving: \
         median {}, max {}; WebSockets not echoing after: {}{extra}",
        m.rss_before,
        m.rss_after,
        m.rss_after as i64 - m.rss_before as i64,
        ms(median),
        ms(max),
        m.echo_failures
    );
    for (trigger, samples) in by_trigger {
        let (median, max) = median_max(&samples);
        println!(
            "    {trigger}: median {}, max {} (n={})",
            ms(median),
            ms(max),
            samples.len()
        );
    }
}

/// `upfront` WebSockets opened before the reloads, `per_reload` more after each one.
async fn measure_tether(addrs: &[(&str, SocketAddr)], upfront: usize, per_reload: usize) {
    // One worker thread, as nginx gets one worker process; `{listen}` is filled at start.
    let conf = |i: usize| {
        let mut text = format!("worker_processes 1;\n{}", tether_conf(&measured_members(i)));
        for (name, addr) in addrs {
            text = text.replace(&format!("{{{name}}}"), &addr.to_string());
        }
        text
    };
    let tether = TetherProcess::start(&conf(0)).await;
    let pid = tether.process.pid();
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let mut held = open_websockets(tether.addr, upfront, 50).await;
    let rss_before = rss_kib(pid).expect("tether's RSS");
    let mut latencies = Vec::new();
    for i in 1..=50 {
        let written = Instant::now();
        tether.rewrite(&conf(i));
        // Odd reloads are also signalled; even ones rely on the file watch alone.
        let trigger = if i % 2 == 1 {
            signal(pid, libc::SIGHUP);
            "file write + SIGHUP"
        } else {
            "file write (watch)"
        };
        until_answered_by(tether.addr, measured_members(i)[4], Duration::from_secs(10)).await;
        latencies.push((trigger, written.elapsed()));
        if per_reload > 0 {
            held.extend(open_websockets(tether.addr, per_reload, per_reload).await);
        }
    }
    let echo_failures = echo_all(&mut held, "after", 100).await.len();
    let rss_after = rss_kib(pid).expect("tether's RSS");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    report(
        &format!(
            "tether ({} WebSockets: {upfront} before, {per_reload} after each reload)",
            held.len()
        ),
        &Measured {
            rss_before,
            rss_after,
            latencies,
            echo_failures,
        },
        &format!("; RSS with no WebSocket {idle_rss} KiB; 1 process, {threads} threads"),
    );
    drop(held);
}

async fn measure_nginx(addrs: &[(&str, SocketAddr)], upfront: usize, per_reload: usize) {
    let Some(nginx) = NginxFleet::start(&nginx_upstream(&measured_members(0), addrs)).await else {
        println!("nginx: SKIPPED, not installed");
        return;
    };
    let idle_rss = nginx.total_rss_kib();
    let mut held = open_websockets(nginx.addr, upfront, 50).await;
    let rss_before = nginx.total_rss_kib();
    let workers_before = nginx.workers().len();
    let mut latencies = Vec::new();
    let mut series = Vec::new();
    for i in 1..=50 {
        let written = Instant::now();
        nginx.rewrite(&nginx_upstream(&measured_members(i), addrs));
        nginx.reload();
        until_answered_by(nginx.addr, measured_members(i)[4], Duration::from_secs(10)).await;
        latencies.push(("file write + nginx -s reload", written.elapsed()));
        if per_reload > 0 {
            held.extend(open_websockets(nginx.addr, per_reload, per_reload).await);
        }
        series.push(nginx.workers().len());
    }
    let workers_right_after = nginx.workers().len();
    let echo_failures = echo_all(&mut held, "after", 100).await.len();
    // Old workers with no connection left exit on their own; give them a bounded moment.
    let settle = Instant::now();
    let mut workers = nginx.workers().len();
    while settle.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        workers = nginx.workers().len();
    }
    let rss_after = nginx.total_rss_kib();
    // Which workers hold the connections: open descriptors per worker.
    let fds: Vec<usize> = nginx
        .workers()
        .iter()
        .map(|w| std::fs::read_dir(format!("/proc/{w}/fd")).map_or(0, |d| d.count()))
        .collect();
    println!("nginx workers after each reload: {series:?}; open fds per worker now: {fds:?}");
    report(
        &format!(
            "nginx ({} WebSockets: {upfront} before, {per_reload} after each reload)",
            held.len()
        ),
        &Measured {
            rss_before,
            rss_after,
            latencies,
            echo_failures,
        },
        &format!(
            "; RSS with no WebSocket {idle_rss} KiB; worker processes: {workers_before} before, \
             {workers_right_after} right after the 50th reload, {workers} 3 s later \
             ({} lingering old workers)",
            workers.saturating_sub(1)
        ),
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for the report: cargo test --test e2e -- --ignored measure_reload_rss --nocapture (TETHER_BIN=target/release/tether for a release build)"]
async fn measure_reload_rss() {
    let count: usize = std::env::var("WS_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut backends = Vec::new();
    for name in ["p0", "p1", "p2", "p3", "m0", "m1"] {
        backends.push(Backend::start(name).await);
    }
    let addrs: Vec<(&str, SocketAddr)> = backends.iter().map(|b| (b.name, b.addr)).collect();
    println!("tether binary: {}", tether_binary().display());
    let only = std::env::var("MEASURE_ONLY").unwrap_or_default();
    if only != "nginx" {
        measure_tether(&addrs, count, 0).await;
    }
    if only != "tether" {
        measure_nginx(&addrs, count, 0).await;
    }
    // Clients that keep arriving: each generation of config gets its own WebSockets.
    if only != "nginx" {
        measure_tether(&addrs, count / 2, count / 100).await;
    }
    if only != "tether" {
        measure_nginx(&addrs, count / 2, count / 100).await;
    }
}
