//! IVR: the menu language of `ivr-menus/`, its compiler and `check` diagnostics, and the sans-IO engine.
//!
//! `load_dir` reads every `*.toml` in a directory (sorted) and hands the texts to `compile`, which
//! returns an immutable [`MenuSet`] or every diagnostic at once. [`IvrSession`] walks one caller through
//! a `MenuSet`; [`simulate`] drives it on a simulated clock for `helpline simulate` and tests. Nothing
//! here knows about SIP or RTP, and apart from `load_dir` nothing touches files or the clock.

pub mod compile;
pub mod diag;
pub mod engine;
pub mod hours;
pub mod menu;
pub mod number;
pub mod simulate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compile::{compile, MenuSet, PromptCheck, RegionId, Unrouted};
pub use diag::{Diagnostic, Severity};
pub use engine::{CallSummary, IvrAction, IvrInput, IvrSession, TimerKind};
pub use simulate::{simulate, SimEvent, SimulationResult};

/// Reads every `*.toml` in `dir` (sorted by name), compiles and validates them with `prompts` as the
/// prompt-file check. Errors are every diagnostic found (warnings included, so `check` can print them
/// together); on success, warnings are dropped — use [`load_dir_with_warnings`] to keep them.
///
/// This is the one file-reading function of the module: the directory read is the I/O edge, everything
/// after it is `compile` on in-memory text.
pub fn load_dir(dir: &Path, prompts: &dyn PromptCheck) -> Result<Arc<MenuSet>, Vec<Diagnostic>> {
    load_dir_with_warnings(dir, prompts).map(|(set, _)| set)
}

/// Like [`load_dir`], also returning the warnings (e.g. language voice fallbacks) on success.
pub fn load_dir_with_warnings(
    dir: &Path,
    prompts: &dyn PromptCheck,
) -> Result<(Arc<MenuSet>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let io_error = |path: &Path, e: std::io::Error| Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
        hint: None,
        severity: Severity::Error,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| vec![io_error(dir, e)])?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(vec![Diagnostic {
            message: "no *.toml menu files in directory".into(),
            ..io_error(dir, std::io::Error::other("empty"))
        }]);
    }
    let mut sources = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => sources.push((p, text)),
            Err(e) => errors.push(io_error(&p, e)),
        }
    }
    match compile(&sources, prompts) {
        Ok(ok) if errors.is_empty() => Ok(ok),
        Ok((_, warnings)) => {
            errors.extend(warnings);
            Err(errors)
        }
        Err(diags) => {
            errors.extend(diags);
            Err(errors)
        }
    }
}
