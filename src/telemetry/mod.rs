//! Observability: logging setup for the binary (tracing + env filter), the metrics every process
//! exports (`metrics`), the HTTP endpoints (`http`), the recent calls' records (`recent`), the IVR funnel from a CDR file (`report`) and the
//! glance at SIP messages the counters need (`peek`). It decides nothing about calls.
pub mod http;
pub mod metrics;
pub mod peek;
pub mod recent;
pub mod report;
pub mod supervisor;

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
