//! The shell's clock and seed source: the only `Instant::now()` / wall-clock / entropy reads besides
//! tests; the sans-IO cores receive what this module reads.
use std::time::Instant;

use chrono::{DateTime, Utc};

/// Monotonic time for timers and pacing.
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock time for CDRs and opening hours.
pub fn wall() -> DateTime<Utc> {
    Utc::now()
}

/// A fresh seed for one call's tags, branches and SSRC (the cores take seeds, never an RNG of their own).
pub fn seed() -> u64 {
    use rand::RngCore;
    rand::rngs::OsRng.next_u64()
}
