//! Config text -> [`Config`]: `source` (spans) -> `parse` (nom grammar, generic directive tree,
//! includes) -> `lower` (meaning, every semantic check, all errors collected) -> `model`.
//!
//! std + nom only: no tokio, no hyper, no sockets.

pub mod error;
pub mod model;
pub mod source;

pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use model::*;
