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
    load_for_check(path, prefix).map_err(|rejected| rejected.errors)
}

/// Same from text already in memory; `path` names it in messages and its folder is the include
/// base.
pub fn load_str(path: &Path, text: &str, prefix: &Path) -> Result<Config, ConfigErrors> {
    load_str_for_check(path, text, prefix).map_err(|rejected| rejected.errors)
}

/// A config with errors: every error, in file order, and — unless the text did not even parse
/// — the config made of the directives that had none, which `tether -t` checks further (a
/// snapshot finds unknown variables and unresolvable hosts) so that one run reports all.
#[derive(Debug)]
pub struct Rejected {
    /// Every error lowering found.
    pub errors: ConfigErrors,
    /// What the directives without errors make; `None` after a syntax error.
    pub partial: Option<Box<Config>>,
}

/// As [`load`], keeping what lowered cleanly when there are errors (see [`Rejected`]).
pub fn load_for_check(path: &Path, prefix: &Path) -> Result<Config, Rejected> {
    match fs::read_to_string(path) {
        Ok(text) => load_str_for_check(path, &text, prefix),
        Err(e) => Err(Rejected {
            errors: ConfigErrors(vec![ConfigError {
                span: None,
                kind: ErrorKind::OpenFailed {
                    path: path.to_path_buf(),
                    reason: parse::os_reason(&e),
                },
            }]),
            partial: None,
        }),
    }
}

fn load_str_for_check(path: &Path, text: &str, prefix: &Path) -> Result<Config, Rejected> {
    let parsed = parse::parse_main(path, text.to_string());
    // Lowering a tree with holes (a file that failed to parse or include) would only add
    // confusing follow-up errors, so syntax errors stop here, as in nginx.
    if !parsed.errors.is_empty() {
        return Err(Rejected {
            errors: ConfigErrors(parsed.errors),
            partial: None,
        });
    }
    let (files, globs) = (parsed.files, parsed.include_globs);
    let (config, errors) = lower::lower(&parsed.directives, path, files, globs, prefix);
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(Rejected {
            errors,
            partial: Some(Box::new(config)),
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod property_tests;
