//! Log files and the threads that write them, off the request path.
//!
//! Each open file has one writer thread and one pending buffer behind a mutex. A request
//! appends its finished line to the buffer (a copy into memory that is already there) and
//! wakes the thread only if it sleeps and the line is due (no `buffer=`, or the buffer is
//! full); the thread swaps the buffer for its spare and writes outside the lock. So a slow or
//! full disk holds up the thread, never a request: once 4 MiB (or 4 × `buffer=`) wait, new lines
//! are dropped and counted ([`dropped_lines`]), with a warning at most once a second. The
//! threads run in Linux's batch scheduling class, so waking one never preempts a request.
//!
//! Files are shared by path across snapshots (a reload keeps the file and its buffer) through
//! a registry of weak references: the last snapshot to drop a file ends its thread, which
//! writes what is left first. [`reopen_all`] makes every thread write what it has to the file
//! it has open, then open the path afresh (logrotate's rename + signal): a line is in the old
//! file or the new one, never lost. Std only; must not import tokio.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most bytes one file keeps waiting for its thread; past it, lines are dropped. Big enough
/// for a burst of ~20,000 lines while the disk hesitates, small enough not to matter in RSS
/// (a file holds at most twice this: the buffer being written and the one filling).
const MIN_PENDING: usize = 4 << 20;

/// Without `buffer=`, how long the thread gathers lines after the first before it writes
/// them: one write (and one wake-up) per burst instead of per line, lines in the file within
/// a few milliseconds.
const COALESCE: Duration = Duration::from_millis(2);

static DROPPED: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// Access log lines dropped since start because a file's writer had fallen behind (slow or
/// full disk) and its pending buffer was full.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// One access log file, shared by every `access_log` naming its path.
#[derive(Debug)]
pub struct LogFile {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled by the thread each time it finished a write (for [`LogFile::flush`]).
    written: Condvar,
}

#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    /// `buffer=`: lines wait until this many bytes are pending (0: written at once).
    buffer: usize,
    /// `flush=`: pending lines are written at least this often.
    flush: Option<Duration>,
    max_pending: usize,
    /// The thread waits for work.
    sleeping: bool,
    reopen: bool,
    closed: bool,
    /// Write now, whatever `buffer=` says (a flush waits).
    urgent: bool,
    /// The thread holds lines it is writing.
    writing: bool,
    /// Writes finished so far (a flush waits for the count to move past its own).
    rounds: u64,
}

impl LogFile {
    /// The file at `path`, opened (created, appended to) by its writer thread; the one already
    /// open if a snapshot has it. `buffer` and `flush` are the `access_log` parameters, which
    /// the newest snapshot sets for the file.
    pub fn open(
        path: &Path,
        buffer: Option<usize>,
        flush: Option<Duration>,
    ) -> std::io::Result<Arc<LogFile>> {
        let mut files = registry();
        if let Some(file) = files.get(path).and_then(Weak::upgrade) {
            file.shared.configure(buffer, flush);
            return Ok(file);
        }
        let out = open_append(path)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                pending: Vec::new(),
                buffer: 0,
                flush: None,
                max_pending: MIN_PENDING,
                sleeping: false,
                reopen: false,
                closed: false,
                urgent: false,
                writing: false,
                rounds: 0,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        shared.configure(buffer, flush);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("tether-access-log".into())
            .spawn(move || thread_shared.run(out))?;
        let file = Arc::new(LogFile { shared });
        files.retain(|_, weak| weak.strong_count() > 0);
        files.insert(path.to_path_buf(), Arc::downgrade(&file));
        Ok(file)
    }

    /// Queues one finished line (newline included). Never blocks on the disk.
    pub fn push(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > state.max_pending {
            drop(state);
            dropped_one(&self.shared.path);
            return;
        }
        let first = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        // The thread sleeps without a deadline only while nothing waits: the first line wakes
        // it (it then gathers lines for `COALESCE`), and so does a full `buffer=`. Every other
        // line costs a lock and a copy, no system call.
        let full = state.buffer > 0 && state.pending.len() >= state.buffer;
        if (first || full) && state.sleeping {
            state.sleeping = false;
            drop(state);
            self.shared.wake.notify_one();
        }
    }

    /// Waits (at most `limit`) until what was pushed before this call has been written.
    pub fn flush(&self, limit: Duration) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.pending.is_empty() && !state.writing {
            return;
        }
        let target = state.rounds + 1;
        state.urgent = true;
        state.sleeping = false;
        shared.wake.notify_one();
        let deadline = Instant::now() + limit;
        while state.rounds < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = match shared.written.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        drop(state);
        self.shared.wake.notify_one();
    }
}

/// Puts the calling thread (a writer) in Linux's batch class: woken by a request's first
/// line, it no longer preempts the worker that is serving requests, but waits for the
/// worker's next pause (an `epoll_wait`) or the end of its time slice. A writer only ever
/// delays lines it gathers for milliseconds anyway; the requests it interrupted paid with two
/// context switches and a cold cache, ~800 times a second under load.
fn yield_to_requests() {
    let normal = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the parameter struct, which lives across the call;
    // pid 0 is the calling thread.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &normal) };
    if set != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "access log writer: no batch scheduling");
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done worth refusing to log for.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn configure(&self, buffer: Option<usize>, flush: Option<Duration>) {
        let mut state = self.lock();
        state.buffer = buffer.unwrap_or(0);
        state.flush = flush;
        state.max_pending = MIN_PENDING.max(buffer.unwrap_or(0).saturating_mul(4));
    }

    /// The writer thread: waits for due lines, writes them outside the lock, reopens on
    /// request; ends once its `LogFile` is gone and everything is written.
    fn run(&self, mut out: File) {
        yield_to_requests();
        let mut spare = Vec::new();
        let mut first_pending: Option<Instant> = None;
        loop {
            let mut state = self.lock();
            loop {
                if state.closed || state.reopen || state.urgent {
                    break;
                }
                let wait = if state.pending.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    let since = *first_pending.get_or_insert_with(Instant::now);
                    let every = state.flush.unwrap_or(if state.buffer > 0 {
                        // Buffered lines without `flush=` still go out within a second of
                        // their first: nginx keeps them until the buffer fills, but a quiet
                        // server's log would then lag by hours.
                        Duration::from_secs(1)
                    } else {
                        COALESCE
                    });
                    let waited = since.elapsed();
                    let full = state.buffer > 0 && state.pending.len() >= state.buffer;
                    if full || waited >= every {
                        break;
                    }
                    every - waited
                };
                state.sleeping = true;
                state = match self.wake.wait_timeout(state, wait) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
                state.sleeping = false;
            }
            state.urgent = false;
            state.writing = true;
            std::mem::swap(&mut state.pending, &mut spare);
            let reopen = std::mem::take(&mut state.reopen);
            let closed = state.closed;
            drop(state);
            first_pending = None;
            if !spare.is_empty()
                && let Err(error) = out.write_all(&spare)
            {
                // A full disk: what did not go out is lost, and counted as dropped (a write cut
                // short may have left part of it; the file then has a torn line).
                let lost = memchr::memchr_iter(b'\n', &spare).count() as u64;
                DROPPED.fetch_add(lost, Ordering::Relaxed);
                warn_at_most_every_second(&self.path, &error.to_string());
            }
            spare.clear();
            if reopen {
                match open_append(&self.path) {
                    Ok(file) => out = file,
                    Err(error) => {
                        tracing::error!(path = %self.path.display(), %error, "access log reopen failed; still writing the old file");
                    }
                }
            }
            let mut state = self.lock();
            state.rounds += 1;
            state.writing = false;
            drop(state);
            self.written.notify_all();
            if closed && self.lock().pending.is_empty() {
                return;
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn dropped_one(path: &Path) {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    warn_at_most_every_second(path, "the writer is behind (slow or full disk)");
}

/// A warning about lost lines, at most one a second for the whole process.
fn warn_at_most_every_second(path: &Path, why: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now > last
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            path = %path.display(),
            dropped = dropped_lines(),
            "access log lines lost: {why}"
        );
    }
}

fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<LogFile>>> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Weak<LogFile>>>> = OnceLock::new();
    FILES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every open access log file.
fn open_files() -> Vec<Arc<LogFile>> {
    registry().values().filter_map(Weak::upgrade).collect()
}

/// Makes every access log file's thread write what it holds and open its path afresh.
pub fn reopen_all() {
    for file in open_files() {
        let mut state = file.shared.lock();
        state.reopen = true;
        state.sleeping = false;
        drop(state);
        file.shared.wake.notify_one();
    }
}

/// Writes what every access log file holds, waiting at most `limit` for each (at exit).
pub fn flush_all(limit: Duration) {
    for file in open_files() {
        file.flush(limit);
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::time::Instant;

    use super::*;

    /// A disk that stops taking data (a pipe nobody reads, once its 64 KiB are full) holds up
    /// the writer thread, never the caller: pushing stays instant, and what cannot wait is
    /// dropped and counted.
    #[test]
    fn a_stalled_file_drops_lines_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stalled.fifo");
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A reader that never reads: opening for writing then succeeds and writes block.
        // SAFETY: as above; the descriptor is closed at the end of the test.
        let reader = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        assert!(reader >= 0);
        let file = LogFile::open(&path, None, None).unwrap();
        let before = dropped_lines();
        let line = [b'x'; 1023];
        let started = Instant::now();
        // 16 MiB: the pipe takes 64 KiB, the buffer being written and the pending one 4 MiB
        // each; the rest must be dropped.
        for _ in 0..16 * 1024 {
            file.push(&line);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "pushing blocked: {:?}",
            started.elapsed()
        );
        let dropped = dropped_lines() - before;
        assert!(dropped >= 7 * 1024, "dropped {dropped}");
        // SAFETY: the descriptor opened above; closing it unblocks the writer (EPIPE).
        unsafe { libc::close(reader) };
    }

    /// A full disk (`/dev/full` fails every write with ENOSPC): the lines are lost, and counted.
    #[test]
    fn lines_a_full_disk_refuses_are_counted() {
        let file = LogFile::open(Path::new("/dev/full"), None, None).unwrap();
        let before = dropped_lines();
        for _ in 0..10 {
            file.push(b"a line\n");
        }
        file.flush(Duration::from_secs(5));
        // Other tests may drop lines at the same time: at least these ten are counted.
        assert!(dropped_lines() - before >= 10);
    }

    /// The writer thread must not preempt the thread serving requests: it runs in Linux's
    /// batch class (without it, a keep-alive load saw the worker switched out ~830 times a
    /// second, against ~200 with it).
    #[test]
    fn the_writer_thread_runs_in_the_batch_class() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile::open(&dir.path().join("access.log"), None, None).unwrap();
        file.push(b"a line\n");
        file.flush(Duration::from_secs(5));
        // Other tests' writers may be starting now: wait (bounded) until every one is batch.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let policies = writer_policies();
            assert!(!policies.is_empty(), "no writer thread found");
            if policies.iter().all(|&policy| policy == libc::SCHED_BATCH) {
                break;
            }
            assert!(Instant::now() < deadline, "writer policies: {policies:?}");
            std::thread::yield_now();
        }
    }

    /// The scheduling policy of each of this process's access log writer threads.
    fn writer_policies() -> Vec<i32> {
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            // The kernel keeps 15 bytes of a thread's name.
            if comm.trim_end() != "tether-access-l" {
                continue;
            }
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // SAFETY: reads the policy of a thread id; a thread that ended since gives -1.
            let policy = unsafe { libc::sched_getscheduler(tid) };
            if policy >= 0 {
                policies.push(policy);
            }
        }
        policies
    }
}
