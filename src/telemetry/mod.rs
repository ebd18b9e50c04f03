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
