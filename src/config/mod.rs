//! Config text -> [`Config`]: `source` (spans) -> `parse` (nom grammar, generic directive tree,
//! includes) -> `lower` (meaning, every semantic check, all errors collected) -> `model`.
//!
//! std + nom only: no tokio, no hyper, no sockets.

pub mod error;
pub mod model;
pub mod source;

pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use model::*;

use std::path::Path;

/// STUB until the parser lands.
pub fn load(_path: &Path, _prefix: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![]))
}

/// STUB until the parser lands.
pub fn load_str(_path: &Path, _text: &str, _prefix: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(vec![]))
}
