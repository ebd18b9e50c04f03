//! RFC 3261 §17 transaction timers (A…K, plus L and M from RFC 6026) and the table that stores their deadlines.
//!
//! This module only stores deadlines; it never reads the clock. The machines decide which timers to arm and
//! what to do when one fires. The shape follows quinn-proto's `connection/timer.rs`: a `Timer` enum indexes
//! a fixed array of optional deadlines, so arming, stopping and finding the earliest deadline never allocate.

use std::time::{Duration, Instant};

/// The RFC timer values T1, T2 and T4 (RFC 3261 §17.1.1.1 and Table 4), taken from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip time estimate; default 500 ms (RFC 3261 §17.1.1.1).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses; default 4 s.
    pub t2: Duration,
    /// Maximum duration a message will remain in the network; default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1, the transaction timeout used by Timers B, F, H, J, L and M (RFC 3261 Table 4, RFC 6026 §8.11).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Next retransmit interval after `current`: doubled, capped at T2 (RFC 3261 §17.1.2.2, §17.2.1).
    pub(crate) fn backoff_capped(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

/// A transaction timer, keeping the letter the RFC gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client request retransmit (RFC 3261 §17.1.1.2).
    A,
    /// INVITE client transaction timeout (RFC 3261 §17.1.1.2).
    B,
    /// INVITE client wait for response retransmits in Completed (RFC 3261 §17.1.1.2).
    D,
    /// Non-INVITE client request retransmit (RFC 3261 §17.1.2.2).
    E,
    /// Non-INVITE client transaction timeout (RFC 3261 §17.1.2.2).
    F,
    /// INVITE server final response retransmit (RFC 3261 §17.2.1).
    G,
    /// INVITE server wait for ACK (RFC 3261 §17.2.1).
    H,
    /// INVITE server wait for ACK retransmits in Confirmed (RFC 3261 §17.2.1).
    I,
    /// Non-INVITE server wait for request retransmits in Completed (RFC 3261 §17.2.2).
    J,
    /// Non-INVITE client wait for response retransmits in Completed (RFC 3261 §17.1.2.2).
    K,
    /// INVITE server wait in Accepted for INVITE retransmits (RFC 6026 §7.1).
    L,
    /// INVITE client wait in Accepted for 2xx retransmits (RFC 6026 §7.2).
    M,
    /// The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4). The RFC gives it no letter because it belongs
    /// to the TU; helpline runs it inside the INVITE server transaction for locality.
    Retransmit2xx,
}

impl Timer {
    const COUNT: usize = 13;

    fn index(self) -> usize {
        match self {
            Timer::A => 0,
            Timer::B => 1,
            Timer::D => 2,
            Timer::E => 3,
            Timer::F => 4,
            Timer::G => 5,
            Timer::H => 6,
            Timer::I => 7,
            Timer::J => 8,
            Timer::K => 9,
            Timer::L => 10,
            Timer::M => 11,
            Timer::Retransmit2xx => 12,
        }
    }

    const ALL: [Timer; Timer::COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Retransmit2xx,
    ];
}

/// Deadlines of the armed timers of one transaction.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest deadline of any armed timer.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the armed timer with the earliest deadline not after `now`, if any.
    ///
    /// Ties are broken by RFC letter order, so a retransmit timer (A, E, G) due at the same instant as its
    /// timeout timer (B, F, H) fires first — the retransmission still goes out before the transaction gives
    /// up. The unlettered 2xx retransmission sorts last: once Timer L ends `Accepted` it is moot.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).map(|at| (t, at)))
            .filter(|&(_, at)| at <= now)
            .min_by_key(|&(t, at)| (at, t.index()))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::H, t0 + Duration::from_secs(32));
        table.set(Timer::G, t0 + Duration::from_millis(500));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(table.pop_expired(t0), None);
        assert_eq!(
            table.pop_expired(t0 + Duration::from_secs(40)),
            Some(Timer::G)
        );
        assert_eq!(
            table.pop_expired(t0 + Duration::from_secs(40)),
            Some(Timer::H)
        );
        assert_eq!(table.pop_expired(t0 + Duration::from_secs(40)), None);
        assert_eq!(table.next_timeout(), None);
    }

    #[test]
    fn backoff_doubles_then_caps_at_t2() {
        let cfg = TimerConfig::default();
        let mut d = cfg.t1;
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(d.as_millis());
            d = cfg.backoff_capped(d);
        }
        assert_eq!(seen, vec![500, 1000, 2000, 4000, 4000]);
        assert_eq!(cfg.timeout(), Duration::from_secs(32));
    }
}
