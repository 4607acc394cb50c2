//! What makes tether reload, and what does not: an editor's save, `cp`, a Kubernetes ConfigMap
//! swap, an included file, SIGHUP and `tether -s reload` — each once per change — and never a
//! file that is not part of the config.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::{answered_by, switched_text, switched_to, watched_on};
use crate::harness::edit::{Binary, ConfigMap, OpenCounter, Watching, copy_over, save_like_editor};
use crate::harness::proxy::{fill, upstream_up};
use crate::harness::{Backend, free_addr};

#[tokio::test]
async fn an_editors_save_by_rename_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    save_like_editor(&proxy.watched().path, &switched_text(&proxy, &b, "saved"));
    switched_to(proxy.addr, "b").await;
    // One save, one reload: the temporary file's events and the rename's are one burst.
    assert_eq!(proxy.snapshot().generation, 2);

    // And the next save too: a watch on the replaced file itself would have gone deaf.
    let back = fill(
        &upstream_up("server {a};", ""),
        proxy.addr,
        &[("a", a.addr)],
    );
    save_like_editor(&proxy.watched().path, &back);
    switched_to(proxy.addr, "a").await;
    assert_eq!(proxy.snapshot().generation, 3);
}

#[tokio::test]
async fn cp_over_the_file_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    copy_over(&proxy.watched().path, &switched_text(&proxy, &b, "copied"));
    switched_to(proxy.addr, "b").await;
    assert_eq!(proxy.snapshot().generation, 2);
}

#[tokio::test]
async fn a_kubernetes_configmap_symlink_swap_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut map = ConfigMap::create(
        dir.path(),
        &fill(&upstream_up("server {a};", ""), addr, &[("a", a.addr)]),
    );
    // tether is given the symlink, as a pod mounting the ConfigMap would give it.
    let tether = Watching::start(&map.path(), listener).await;
    assert_eq!(answered_by(tether.addr, "/").await, "a");

    map.update(&fill(
        &upstream_up("server {b};", ""),
        addr,
        &[("b", b.addr)],
    ));
    switched_to(tether.addr, "b").await;
    assert_eq!(tether.generation(), 2);
    // And the next update too: the watch survives the swap of what it watched through.
    map.update(&fill(
        &upstream_up("server {a};", ""),
        addr,
        &[("a", a.addr)],
    ));
    switched_to(tether.addr, "a").await;
    assert_eq!(tether.generation(), 3);
}

#[tokio::test]
async fn a_change_to_an_included_file_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::create_dir(dir.path().join("upstreams")).expect("upstreams folder");
    let included = dir.path().join("upstreams/up.conf");
    std::fs::write(&included, format!("upstream up {{ server {}; }}\n", a.addr))
        .expect("write the included file");
    let main = dir.path().join("tether.conf");
    let text = "events {} http { include upstreams/*.conf; \
                server { listen {listen}; location / { proxy_pass http://up; } } }";
    std::fs::write(&main, fill(text, addr, &[])).expect("write the main file");
    let tether = Watching::start(&main, listener).await;
    assert_eq!(answered_by(tether.addr, "/").await, "a");

    // The main file does not change at all.
    let upstream = |server: &Backend| format!("upstream up {{ server {}; }}\n", server.addr);
    save_like_editor(&included, &upstream(&b));
    switched_to(tether.addr, "b").await;
    assert_eq!(tether.generation(), 2);
    save_like_editor(&included, &upstream(&a));
    switched_to(tether.addr, "a").await;
    assert_eq!(tether.generation(), 3);
}

#[tokio::test]
async fn a_burst_of_writes_is_one_reload() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    let path = &proxy.watched().path;
    let on_a = fill(
        &upstream_up("server {a};", ""),
        proxy.addr,
        &[("a", a.addr)],
    );
    // Ten different contents, the last one switching to b: reloading on any but the last would
    // take a generation of its own.
    let mut widest_gap = Duration::ZERO;
    let mut last = Instant::now();
    for i in 0..9 {
        copy_over(path, &format!("# burst write {i}\n{on_a}"));
        // Pacing the writer (10 writes in about 50 ms), not waiting for anything.
        tokio::time::sleep(Duration::from_millis(5)).await;
        widest_gap = widest_gap.max(last.elapsed());
        last = Instant::now();
    }
    copy_over(path, &switched_text(&proxy, &b, "burst write 9"));
    // The burst is only one burst if no gap came near the 150 ms debounce; on a machine so
    // loaded that one did, this test cannot say anything.
    assert!(
        widest_gap < Duration::from_millis(75),
        "the writer stalled {widest_gap:?} between two writes; the burst was not a burst"
    );

    switched_to(proxy.addr, "b").await;
    // Reloads run one after the other, so once b answers every earlier one has happened.
    assert_eq!(proxy.snapshot().generation, 2, "ten writes, one reload");
}

#[tokio::test]
async fn touching_an_unrelated_file_in_the_folder_does_not_reload() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    let notes = proxy.watched().dir.path().join("notes.txt");
    let reads = OpenCounter::start(&proxy.watched().path);
    std::fs::write(&notes, "not a config").expect("write an unrelated file");
    // Proving that something does NOT happen: there is no condition to wait for, so this one
    // wait is fixed. 600 ms is four times the 150 ms debounce, plenty for the watcher to see
    // the events, settle and compare contents.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(proxy.snapshot().generation, 1, "no reload for notes.txt");
    // Comparing contents reads the config once; its own read must not wake the watcher again
    // (that would re-read the file every 150 ms forever, about four times in this wait).
    assert!(
        reads.opens() <= 1,
        "tether.conf read {} times after one unrelated change",
        reads.opens()
    );
    assert_eq!(answered_by(proxy.addr, "/").await, "a");

    // The watcher was listening all along: a real change is one reload.
    save_like_editor(&proxy.watched().path, &switched_text(&proxy, &b, "real"));
    switched_to(proxy.addr, "b").await;
    assert_eq!(proxy.snapshot().generation, 2);
}

/// A folder for the real binary: the config it is given is `conf/tether.conf`, a symlink to
/// `real/tether.conf`. Edited in place there, the file changes in a folder tether does not
/// watch (it watches the link's), so only a signal can make it reload.
struct LinkedConf {
    _dir: tempfile::TempDir,
    link: std::path::PathBuf,
    real: std::path::PathBuf,
}

impl LinkedConf {
    fn new(text: &str) -> LinkedConf {
        let dir = tempfile::tempdir().expect("temporary folder");
        for folder in ["conf", "real"] {
            std::fs::create_dir(dir.path().join(folder)).expect("folder");
        }
        let real = dir.path().join("real/tether.conf");
        std::fs::write(&real, text).expect("write the config");
        let link = dir.path().join("conf/tether.conf");
        std::os::unix::fs::symlink("../real/tether.conf", &link).expect("symlink");
        LinkedConf {
            _dir: dir,
            link,
            real,
        }
    }
}

/// The binary serving `server {a}` from a linked config; the real file switched to
/// `server {b}`, then `trigger` run: b must take over and the log say generation 2.
async fn binary_reloads_on(trigger: impl FnOnce(&Binary, &LinkedConf)) {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let listen = free_addr();
    let files = LinkedConf::new(&fill(
        &upstream_up("server {a};", ""),
        listen,
        &[("a", a.addr)],
    ));
    let tether = Binary::start(&files.link, listen).await;
    assert_eq!(answered_by(listen, "/").await, "a");

    copy_over(
        &files.real,
        &fill(&upstream_up("server {b};", ""), listen, &[("b", b.addr)]),
    );
    trigger(&tether, &files);
    switched_to(listen, "b").await;
    let applied = tether.lines_with("reload applied", 1, 0).await;
    assert!(applied[0].contains("generation=2"), "{applied:?}");
}

#[tokio::test]
async fn sighup_makes_the_binary_reload() {
    binary_reloads_on(|tether, _| tether.hangup()).await;
}

#[tokio::test]
async fn tether_s_reload_makes_the_binary_reload() {
    binary_reloads_on(|tether, files| {
        // The pid file is found where `-s` looks for it: beside the config.
        let pid_file = files.link.with_file_name("tether.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("the pid file beside the config");
        assert_eq!(pid.trim(), tether.pid().to_string());
        tether.send_reload();
    })
    .await;
}
