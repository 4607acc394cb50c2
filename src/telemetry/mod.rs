//! Seeing inside a running tether: the error log (tether's own events, nginx's line format)
//! and the throttle that keeps a flood of one condition to a line a second.
//! Serves `runtime` and `proxy`; imports `config` (the model) and nothing that serves requests.

pub mod errno;
pub mod error_log;
pub mod throttle;

pub use throttle::Throttle;
