//! The test harness: named backends that count hits and report what they saw, a proxy started
//! from a config string, and small clients. Everything runs on 127.0.0.1 ephemeral ports.

pub mod backend;
pub mod client;
pub mod proxy;

pub use backend::Backend;
pub use client::{Reply, get, send};
pub use proxy::Proxy;

use std::future::Future;
use std::time::Duration;

/// Fails the test if `future` takes longer than `limit`: a bound on a condition, never a sleep.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}
