//! Observability: logging setup for the binary (tracing + env filter; text or JSON lines, stamped by
//! the server's clock), the metrics every process exports (`metrics`), the HTTP endpoints (`http`),
//! the recent calls' records (`recent`), the IVR funnel from a CDR file (`report`) and the glance at
//! SIP messages the counters need (`peek`). It decides nothing about calls.
pub mod http;
pub mod logs;
pub mod metrics;
pub mod peek;
pub mod recent;
pub mod report;
pub mod supervisor;

pub use logs::{init, init_with, LogFormat};
use tracing_subscriber::EnvFilter;

/// Swaps the level filter of the subscriber [`init_with`] installed (`serve --log-level`, `[log] level`).
pub(crate) type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
pub(crate) static SET_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Whether `directive` is a level filter `set_level` takes (`info`, `debug`, `warn,helpline=debug` …).
pub fn parse_level(directive: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(directive)
        .map(|_| directive.to_owned())
        .map_err(|e| format!("`{directive}` is not a log level filter: {e}"))
}

/// Sets the log level filter from now on (a no-op when [`init_with`] installed no subscriber).
pub fn set_level(directive: &str) -> Result<(), String> {
    let filter = EnvFilter::builder()
        .parse(directive)
        .map_err(|e| format!("`{directive}` is not a log level filter: {e}"))?;
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Ok(()),
    }
}
