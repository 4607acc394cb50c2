//! What makes tether reload, and what does not: an editor's save, `cp`, a Kubernetes ConfigMap
//! swap, an included file, a new file matching an include glob, the target of a symlinked
//! config, SIGHUP and `tether -s reload` — each once per change, at once for the signals, within
//! the debounce's maximum wait when the file never stops changing — and never a file that is
//! not part of the config, however busy it is.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{answered_by, switched_text, switched_to, watched_on};
use crate::harness::edit::{ConfigMap, OpenCounter, copy_over, save_like_editor};
use crate::harness::process::Binary;
use crate::harness::proxy::{fill, upstream_up};
use crate::harness::session::eventually;
use crate::harness::watching::Watching;
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
async fn unrelated_files_in_the_folder_are_not_even_looked_at() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    let dir = proxy.watched().dir.path().to_path_buf();
    let reads = OpenCounter::start(&proxy.watched().path);
    // A log appended beside the config, and what an editor leaves next to the file it opens
    // (vim's swap file and its `4913` probe, a backup `~` file), none of them the config.
    let log = Churn::append(&dir.join("access.log"), Duration::from_millis(20));
    for name in [".tether.conf.swp", "4913", "tether.conf~", "notes.txt"] {
        std::fs::write(dir.join(name), "not a config").expect("write an unrelated file");
        std::fs::remove_file(dir.join(name)).expect("remove it");
    }
    // Proving that something does NOT happen: there is no condition to wait for, so this wait
    // is fixed and kept short. 400 ms of churn is over twice the 150 ms debounce: a watcher
    // that let these events in would have compared contents (read tether.conf) by now.
    log.goes_on(10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        proxy.snapshot().generation,
        1,
        "no reload for unrelated files"
    );
    assert_eq!(
        reads.opens(),
        0,
        "tether.conf was read after changes to other files only"
    );
    assert_eq!(answered_by(proxy.addr, "/").await, "a");

    // The watcher was listening all along: a real change is one reload, churn or not.
    save_like_editor(&proxy.watched().path, &switched_text(&proxy, &b, "real"));
    switched_to(proxy.addr, "b").await;
    assert_eq!(proxy.snapshot().generation, 2);
}

#[tokio::test]
async fn an_edit_is_applied_while_a_log_beside_the_config_is_written() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    let log = Churn::append(
        &proxy.watched().dir.path().join("access.log"),
        Duration::from_millis(50),
    );
    log.goes_on(3).await;
    save_like_editor(&proxy.watched().path, &switched_text(&proxy, &b, "edited"));
    switched_to(proxy.addr, "b").await;
    // Applied while the log was still being written, not once it stopped.
    log.goes_on(1).await;
    assert_eq!(proxy.snapshot().generation, 2);
}

#[tokio::test]
async fn a_config_saved_over_and_over_is_applied_within_the_maximum_wait() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = watched_on(&a).await;
    let (path, on_b) = (
        proxy.watched().path.clone(),
        switched_text(&proxy, &b, "saved"),
    );
    // Saved every 50 ms, each time with a new comment: the events never pause for the 150 ms
    // the debounce waits for, so only its maximum wait (1 s) lets a reload through.
    let saves = Churn::start(Duration::from_millis(50), move |i| {
        save_like_editor(&path, &format!("# save {i}\n{on_b}"))
    });
    switched_to(proxy.addr, "b").await;
    saves.goes_on(1).await;
    let generation = proxy.snapshot().generation;
    assert!(
        generation >= 2,
        "b answers, so a reload happened: {generation}"
    );
}

#[tokio::test]
async fn a_new_file_matching_an_include_glob_reloads() {
    let [a, b, c] = Backend::start_all(["a", "b", "c"]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("temporary folder");
    // conf.d does not even exist yet: no file in it was read, yet new ones must be seen.
    let main = dir.path().join("tether.conf");
    let text = "events {} http { \
                upstream a { server {a}; } upstream b { server {b}; } upstream c { server {c}; } \
                server { listen {listen}; location / { proxy_pass http://a; } \
                         include conf.d/*.conf; } }";
    let names = [("a", a.addr), ("b", b.addr), ("c", c.addr)];
    std::fs::write(&main, fill(text, addr, &names)).expect("write the main file");
    let tether = Watching::start(&main, listener).await;
    assert_eq!(answered_by(tether.addr, "/b/").await, "a");

    // Dropped in by a deployment tool (`mkdir -p conf.d && cp`); nothing else changes.
    let location = |name: &str| format!("location /{name}/ {{ proxy_pass http://{name}; }}\n");
    std::fs::create_dir(dir.path().join("conf.d")).expect("conf.d folder");
    std::fs::write(dir.path().join("conf.d/b.conf"), location("b")).expect("write b.conf");
    switched_to_on(tether.addr, "/b/", "b").await;
    assert_eq!(tether.generation(), 2);

    // And the next one, in a folder that now has a file tether read.
    save_like_editor(&dir.path().join("conf.d/c.conf"), &location("c"));
    switched_to_on(tether.addr, "/c/", "c").await;
    assert_eq!(tether.generation(), 3);
    assert_eq!(answered_by(tether.addr, "/b/").await, "b");
}

/// Waits until `GET path` reaches backend `name`.
async fn switched_to_on(addr: SocketAddr, path: &str, name: &str) {
    let what = format!("{path} reaching {name}");
    eventually(Duration::from_secs(5), &what, || async move {
        answered_by(addr, path).await == name
    })
    .await;
}

/// A config given as `conf/tether.conf`, a symlink to `real/tether.conf` in another folder.
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

#[tokio::test]
async fn the_file_a_symlinked_config_points_at_is_watched_too() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let text =
        |server: &Backend| fill(&upstream_up("server {x};", ""), addr, &[("x", server.addr)]);
    let files = LinkedConf::new(&text(&a));
    let tether = Watching::start(&files.link, listener).await;
    assert_eq!(answered_by(tether.addr, "/").await, "a");

    // Edited in place where it really lives, a folder away from the link.
    copy_over(&files.real, &text(&b));
    switched_to(tether.addr, "b").await;
    assert_eq!(tether.generation(), 2);
}

/// The binary serving a linked config while a log beside the link is appended to every 50 ms;
/// `trigger` must make it reload at once. Nothing in the config changes, and a file event that
/// changes no content is no reload: only the signal can explain generation 2.
async fn binary_reloads_on(trigger: impl FnOnce(&Binary, &LinkedConf)) {
    let a = Backend::start("a").await;
    let listen = free_addr();
    let files = LinkedConf::new(&fill(
        &upstream_up("server {a};", ""),
        listen,
        &[("a", a.addr)],
    ));
    let tether = Binary::start(&files.link, listen).await;
    assert_eq!(answered_by(listen, "/").await, "a");
    let log = Churn::append(
        &files.link.with_file_name("access.log"),
        Duration::from_millis(50),
    );
    log.goes_on(3).await;

    trigger(&tether, &files);
    let applied = tether.lines_with("reload applied", 1, 0).await;
    assert!(applied[0].contains("generation: 2"), "{applied:?}");
    assert!(
        applied[0].contains("no server or listener changed"),
        "{applied:?}"
    );
    log.goes_on(1).await;
    assert_eq!(answered_by(listen, "/").await, "a");
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

/// A file written again and again in the background until dropped: a log appended to, or a
/// config saved over and over. Each write is paced, not awaited by anyone.
pub struct Churn {
    writes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Churn {
    /// Calls `write(i)` for i = 0, 1, 2, ... every `every`, starting now.
    pub fn start(every: Duration, mut write: impl FnMut(usize) + Send + 'static) -> Churn {
        let writes = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let writes = writes.clone();
            async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    write(writes.load(Ordering::SeqCst));
                    writes.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Churn { writes, task }
    }

    /// Appends a line to `path` every `every`, as a busy access log is written.
    pub fn append(path: &Path, every: Duration) -> Churn {
        use std::io::Write;
        let path = path.to_path_buf();
        Churn::start(every, move |i| {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open the log");
            writeln!(log, "127.0.0.1 - - GET /{i} 200").expect("append to the log");
        })
    }

    /// Writes done so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Waits until `more` writes beyond the ones done so far have happened: the churn is still
    /// going on.
    pub async fn goes_on(&self, more: usize) {
        let target = self.writes() + more;
        let what = format!("{more} more writes of the churning file");
        eventually(Duration::from_secs(5), &what, || {
            let done = self.writes() >= target;
            async move { done }
        })
        .await;
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
