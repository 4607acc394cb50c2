//! tether's log lines, captured for one test: a `tracing` subscriber set as the default of the
//! calling thread only, so tests running side by side do not see each other's lines.
//!
//! It sees what tether logs only while tether's tasks run on that same thread, which is what
//! `#[tokio::test]` (a current-thread runtime) gives; a multi-thread test would see nothing.

use std::io;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// The lines logged on this thread (at `info` and above) since [`Logs::capture`].
pub struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: DefaultGuard,
}

impl Logs {
    /// Starts capturing; stops when dropped.
    pub fn capture() -> Logs {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        Logs {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        String::from_utf8_lossy(&lines)
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
