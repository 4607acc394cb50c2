//! Config text -> [`Config`]: `source` (spans) -> `parse` (nom grammar, generic directive tree,
//! includes) -> `lower` (meaning, every semantic check, all errors collected) -> `model`.
//!
//! std + nom (+ glob, strsim, regex) only: no tokio, no hyper, no sockets. Nothing outside this
//! module needs more than [`load`], [`load_str`], the model and the errors.

pub mod ast;
pub mod error;
mod lower;
pub mod model;
pub mod parse;
pub mod source;

use std::fs;
use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ErrorKind, TlsFileRole};
pub use model::*;

/// Reads `path` (and its includes), parses and lowers it. `prefix` resolves relative non-include
/// paths (pid).
pub fn load(path: &Path, prefix: &Path) -> Result<Config, ConfigErrors> {
    match fs::read_to_string(path) {
        Ok(text) => load_str(path, &text, prefix),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            span: None,
            kind: ErrorKind::OpenFailed {
                path: path.to_path_buf(),
                reason: parse::os_reason(&e),
            },
        }])),
    }
}

/// Same from text already in memory; `path` names it in messages and its folder is the include
/// base.
pub fn load_str(path: &Path, text: &str, prefix: &Path) -> Result<Config, ConfigErrors> {
    let parsed = parse::parse_main(path, text.to_string());
    // Lowering a tree with holes (a file that failed to parse or include) would only add
    // confusing follow-up errors, so syntax errors stop here, as in nginx.
    if !parsed.errors.is_empty() {
        return Err(ConfigErrors(parsed.errors));
    }
    let (files, globs) = (parsed.files, parsed.include_globs);
    lower::lower(&parsed.directives, path, files, globs, prefix).map_err(ConfigErrors)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod property_tests;
