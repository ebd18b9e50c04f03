//! The shell's clock and seed source: the only `Instant::now()` / wall-clock / entropy reads besides
//! tests; the sans-IO cores receive what this module reads. It also holds the server's wall clock
//! (`serve --pretend-time` shifts it), so that log lines and CDRs carry the same times.
use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};

/// The server's wall clock: this instant was that wall time (set once by [`start`]).
static ORIGIN: OnceLock<(Instant, DateTime<Utc>)> = OnceLock::new();

/// Monotonic time for timers and pacing.
pub fn now() -> Instant {
    Instant::now()
}

/// Fixes the server's wall clock: it reads `pretend` now (the system's time without it) and runs at
/// normal speed from there. The first call wins: `serve` calls it before its first log line.
pub fn start(pretend: Option<DateTime<Utc>>) {
    ORIGIN.get_or_init(|| (Instant::now(), pretend.unwrap_or_else(Utc::now)));
}

/// Wall-clock time for CDRs, opening hours and log lines: the server's clock once [`start`]ed
/// (`--pretend-time`), else the system's.
pub fn wall() -> DateTime<Utc> {
    wall_at(Instant::now())
}

/// The server's wall time of `at` (see [`wall`]).
pub fn wall_at(at: Instant) -> DateTime<Utc> {
    match ORIGIN.get() {
        Some(&(instant, wall)) => {
            let shift = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or_default();
            if at >= instant {
                wall + shift(at - instant)
            } else {
                wall - shift(instant - at)
            }
        }
        None => {
            Utc::now()
                - chrono::Duration::from_std(Instant::now().saturating_duration_since(at))
                    .unwrap_or_default()
        }
    }
}

/// A fresh seed for one call's tags, branches and SSRC (the cores take seeds, never an RNG of their own).
pub fn seed() -> u64 {
    use rand::RngCore;
    rand::rngs::OsRng.next_u64()
}
