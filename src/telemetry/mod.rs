//! Observability: logging setup for the binary (tracing + env filter), the metrics every process
//! exports (`metrics`), the HTTP endpoints (`http`), the recent calls' records (`recent`), the IVR funnel from a CDR file (`report`) and the
//! glance at SIP messages the counters need (`peek`). It decides nothing about calls.
pub mod http;
pub mod metrics;
pub mod peek;
pub mod recent;
pub mod report;

use tracing_subscriber::EnvFilter;

/// Swaps the level filter of the subscriber [`init`] installed (`serve --log-level`, `[log] level`).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static SET_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Installs the global tracing subscriber: `RUST_LOG` overrides the default `info` level (until
/// [`set_level`] sets one). Logs go to stderr so that stdout stays free for command output (`check`,
/// `simulate --json`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests that run the CLI in-process) is harmless: keep the first subscriber.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    if builder.try_init().is_ok() {
        let _ = SET_FILTER.set(Box::new(move |f| {
            handle.reload(f).map_err(|e| e.to_string())
        }));
    }
}

/// Whether `directive` is a level filter `set_level` takes (`info`, `debug`, `warn,helpline=debug` …).
pub fn parse_level(directive: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(directive)
        .map(|_| directive.to_owned())
        .map_err(|e| format!("`{directive}` is not a log level filter: {e}"))
}

/// Sets the log level filter from now on (a no-op when [`init`] installed no subscriber).
pub fn set_level(directive: &str) -> Result<(), String> {
    let filter = EnvFilter::builder()
        .parse(directive)
        .map_err(|e| format!("`{directive}` is not a log level filter: {e}"))?;
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Ok(()),
    }
}
