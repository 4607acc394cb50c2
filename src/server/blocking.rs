//! Blocking work that must not take tether down: loading a config and building a snapshot
//! (which reads files and resolves host names) run off the async threads, and a panic in them
//! — a bug, but one a config file could trip — comes back as an error carrying the panic's
//! message. A reload that fails that way is logged and the old config keeps serving; a start
//! that fails that way is a clean start error. Memory exhaustion and stack overflow abort the
//! process whatever we do; everything else is caught here.
//!
//! std + tokio only: callers decide what a caught panic means.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// A panic caught in blocking work, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// The panic's message (`panic!("...")` text), or a note that it had none.
    pub message: String,
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl std::error::Error for Panic {}

impl Panic {
    fn from_payload(payload: Box<dyn Any + Send>) -> Panic {
        // `panic!` with a literal carries a &str, with format arguments a String.
        let message = match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(message) => (*message).to_string(),
                Err(_) => "(a panic without a message)".to_string(),
            },
        };
        Panic { message }
    }
}

/// Runs `work` on tokio's blocking pool and waits for it; a panic in it is an `Err`.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Panic> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => Err(Panic::from_payload(error.into_panic())),
        // A blocking task is only cancelled when the runtime shuts down before it started.
        Err(_) => Err(Panic {
            message: "cancelled: the runtime is shutting down".to_string(),
        }),
    }
}

/// Runs `work` on this thread; a panic in it is an `Err`. For the command line's checks,
/// which run before there is a runtime.
pub fn catching<T>(work: impl FnOnce() -> T) -> Result<T, Panic> {
    // Unwind safety: the callers' work reads files and builds values it returns; on a panic
    // those values are dropped and nothing half-updated is looked at again (the one shared
    // structure a build touches, the peer registry, is used through a poison-tolerant lock).
    panic::catch_unwind(AssertUnwindSafe(work)).map_err(Panic::from_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_comes_back() {
        assert_eq!(run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn a_panic_with_a_literal_is_an_error_with_its_message() {
        let caught = run(|| -> u32 { panic!("lexer lost its place") }).await;
        assert_eq!(caught.unwrap_err().message, "lexer lost its place");
    }

    #[tokio::test]
    async fn a_panic_with_format_arguments_is_an_error_with_its_message() {
        let depth = 3;
        let caught = run(move || -> u32 { panic!("nesting {depth} deep") }).await;
        assert_eq!(caught.unwrap_err().to_string(), "panicked: nesting 3 deep");
    }

    #[tokio::test]
    async fn a_panic_with_another_payload_is_an_error_too() {
        let caught = run(|| -> u32 { std::panic::panic_any(17_u8) }).await;
        assert_eq!(caught.unwrap_err().message, "(a panic without a message)");
    }

    #[test]
    fn catching_on_this_thread_works_the_same() {
        assert_eq!(catching(|| "fine"), Ok("fine"));
        let index = std::hint::black_box(9);
        let caught = catching(|| [1, 2, 3][index]);
        assert!(
            caught.unwrap_err().message.contains("index out of bounds"),
            "the runtime's own panics keep their message"
        );
    }
}
