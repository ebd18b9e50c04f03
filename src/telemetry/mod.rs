//! Logging setup for the binary (tracing + env filter); it does not decide what is logged.
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: `RUST_LOG` overrides the default `info` level.
/// Logs go to stderr so that stdout stays free for command output (`check`, `simulate --json`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests that run the CLI in-process) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
