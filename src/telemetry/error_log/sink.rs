//! Where error-log lines are written: stderr or a file opened for appending, reopened on
//! demand (logrotate renames the file, then SIGUSR1 makes tether write to a new one).
//!
//! Each line is one `write(2)` on a file opened `O_APPEND`, so lines from several threads
//! never interleave and an outside reader sees whole lines. Writes are synchronous: error
//! events are rare next to requests, and nginx writes its error log the same way. A line that
//! cannot be written (a full disk) is counted and dropped; logging never fails a request.
//! Imports std and the config model.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::ErrorLogDestination;

/// One destination of error-log lines.
#[derive(Debug)]
pub struct Sink {
    destination: ErrorLogDestination,
    /// The open file (None for stderr).
    file: Mutex<Option<File>>,
    /// Lines that could not be written.
    dropped: AtomicU64,
    /// Test sinks keep their lines in memory.
    #[cfg(test)]
    memory: Option<Mutex<Vec<u8>>>,
}

impl Sink {
    /// Opens `destination` (creating a file, appending to it).
    pub fn open(destination: &ErrorLogDestination) -> io::Result<Sink> {
        let file = match destination {
            ErrorLogDestination::Stderr => None,
            ErrorLogDestination::File(path) => Some(open_append(path)?),
        };
        Ok(Sink {
            destination: destination.clone(),
            file: Mutex::new(file),
            dropped: AtomicU64::new(0),
            #[cfg(test)]
            memory: None,
        })
    }

    /// A sink that keeps what is written, for tests.
    #[cfg(test)]
    pub fn memory() -> Sink {
        Sink {
            destination: ErrorLogDestination::Stderr,
            file: Mutex::new(None),
            dropped: AtomicU64::new(0),
            memory: Some(Mutex::new(Vec::new())),
        }
    }

    /// What a memory sink holds.
    #[cfg(test)]
    pub fn written(&self) -> String {
        let memory = self.memory.as_ref().expect("a memory sink");
        String::from_utf8_lossy(&memory.lock().expect("memory sink")).into_owned()
    }

    /// Writes one whole line (ending in `\n`).
    pub fn write_line(&self, line: &[u8]) {
        #[cfg(test)]
        if let Some(memory) = &self.memory {
            memory.lock().expect("memory sink").extend_from_slice(line);
            return;
        }
        let written = match &mut *self.lock() {
            Some(file) => file.write_all(line),
            None => io::stderr().lock().write_all(line),
        };
        if written.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Opens the file again by its name (after logrotate renamed it); stderr stays. On
    /// failure the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let ErrorLogDestination::File(path) = &self.destination else {
            return Ok(());
        };
        let fresh = open_append(path)?;
        *self.lock() = Some(fresh);
        Ok(())
    }

    /// Lines that could not be written so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Where it writes.
    pub fn destination(&self) -> &ErrorLogDestination {
        &self.destination
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        // Held for one write or one swap: nothing panics while it is held.
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_after_rename_writes_to_a_new_file_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let sink = Sink::open(&ErrorLogDestination::File(path.clone())).unwrap();
        sink.write_line(b"one\n");
        let rotated = dir.path().join("error.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, lines follow the renamed file, as with nginx.
        sink.write_line(b"two\n");
        sink.reopen().unwrap();
        sink.write_line(b"three\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("logs");
        std::fs::create_dir(&folder).unwrap();
        let path = folder.join("error.log");
        let sink = Sink::open(&ErrorLogDestination::File(path.clone())).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&folder, &moved).unwrap();
        assert!(sink.reopen().is_err(), "the folder is gone");
        sink.write_line(b"kept\n");
        let kept = std::fs::read_to_string(moved.join("error.log")).unwrap();
        assert_eq!(kept, "kept\n");
    }
}
