//! Transport edge: the SIP sockets (UDP with per-datagram local addresses, TCP connections), stream
//! framing, and the TCP connection policy; it does not parse SIP beyond finding where a message ends.

pub mod framing;
pub mod tcp;
pub mod tcp_policy;
pub mod udp;

use std::sync::atomic::{AtomicU64, Ordering};

/// What the transport refused, closed or dropped to stay within its bounds (monotonic counters for the
/// metrics; shared by the accept loop, the connection tasks and the core).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Connections refused at accept: the total cap.
    pub tcp_total_cap: AtomicU64,
    /// Connections refused at accept: the per-source cap.
    pub tcp_source_cap: AtomicU64,
    /// Connections closed: no complete message within the first-message deadline.
    pub tcp_first_message: AtomicU64,
    /// Connections closed: idle, with no binding and no dialog.
    pub tcp_idle: AtomicU64,
    /// Connections closed: a message that could not be framed or was over the size limit.
    pub unframeable: AtomicU64,
    /// Connections closed: the peer did not read what we sent.
    pub write_queue_full: AtomicU64,
    /// `accept` errors (EMFILE …), each followed by a pause.
    pub accept_errors: AtomicU64,
    /// New INVITEs answered `503` because the core's queue was full.
    pub overload_503: AtomicU64,
    /// Other messages dropped because the core's queue was full.
    pub overload_dropped: AtomicU64,
}

impl TransportStats {
    /// Counts one refusal or close.
    pub fn count(&self, why: tcp_policy::Closed) {
        use tcp_policy::Closed;
        let counter = match why {
            Closed::TotalCap => &self.tcp_total_cap,
            Closed::SourceCap => &self.tcp_source_cap,
            Closed::FirstMessage => &self.tcp_first_message,
            Closed::Idle => &self.tcp_idle,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter with its metrics label, read now.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("tcp-total-cap", read(&self.tcp_total_cap)),
            ("tcp-source-cap", read(&self.tcp_source_cap)),
            ("tcp-first-message", read(&self.tcp_first_message)),
            ("tcp-idle", read(&self.tcp_idle)),
            ("tcp-unframeable", read(&self.unframeable)),
            ("tcp-write-queue-full", read(&self.write_queue_full)),
            ("tcp-accept-error", read(&self.accept_errors)),
            ("queue-full-503", read(&self.overload_503)),
            ("queue-full-dropped", read(&self.overload_dropped)),
        ]
    }
}
