//! Admission control for new calls: at most `max_calls` in progress and at most `max_cps` new calls per
//! second (a token bucket), whatever their source. It decides only; the call layer answers the refused
//! INVITE (`503` + `Retry-After`, or `486`) and counts it. Sans-IO: time is an argument. It is not the
//! per-source defences (`guard`), which limit one address; this protects the server as a whole.
use std::time::{Duration, Instant};

/// What an INVITE refused for overload is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverloadAnswer {
    /// `503 Service Unavailable` with `Retry-After` (RFC 3261 §21.5.4): a proxy tries elsewhere.
    #[default]
    ServiceUnavailable,
    /// `486 Busy Here`: the caller hears busy at once, nothing retries.
    Busy,
}

impl std::str::FromStr for OverloadAnswer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "503" => Ok(OverloadAnswer::ServiceUnavailable),
            "486" => Ok(OverloadAnswer::Busy),
            other => Err(format!("`{other}` is not an overload answer: 503 or 486")),
        }
    }
}

/// The limits (`serve --max-calls`, `--max-cps`, `--overload-answer`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// Most calls in progress at once; 0: no limit.
    pub max_calls: usize,
    /// Most new calls per second, sustained; 0: no limit.
    pub max_cps: u32,
    /// New calls that may arrive at once above the sustained rate (the bucket's depth; at least 1).
    pub burst: u32,
    /// What a refused INVITE gets.
    pub answer: OverloadAnswer,
}

/// The default concurrent-call limit: the default RTP range (20000–30000) holds 5,000 port pairs.
pub const DEFAULT_MAX_CALLS: usize = 5_000;
/// The default new-call rate: below the clean rate measured on a 2-core machine (BENCHMARKS.md).
pub const DEFAULT_MAX_CPS: u32 = 3_000;

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig::new(DEFAULT_MAX_CALLS, DEFAULT_MAX_CPS)
    }
}

impl AdmissionConfig {
    /// Limits of `max_calls` and `max_cps` with a burst of a tenth of a second's calls (at least 10),
    /// answered `503`.
    pub fn new(max_calls: usize, max_cps: u32) -> AdmissionConfig {
        AdmissionConfig {
            max_calls,
            max_cps,
            burst: (max_cps / 10).max(10),
            answer: OverloadAnswer::ServiceUnavailable,
        }
    }

    /// No limits (tests, and load runs that look for the server's own limit).
    pub fn unlimited() -> AdmissionConfig {
        AdmissionConfig::new(0, 0)
    }
}

/// Why a new call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_calls` calls were in progress.
    MaxCalls,
    /// The new-call rate was over `max_cps`.
    MaxCps,
}

impl Refusal {
    /// Seconds to put in `Retry-After`: a rate clears within a second, a full house takes longer.
    pub fn retry_after(self) -> u32 {
        match self {
            Refusal::MaxCalls => 5,
            Refusal::MaxCps => 1,
        }
    }
}

/// How many calls each limit refused (monotonic, for the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Refused because `max_calls` were in progress.
    pub max_calls: u64,
    /// Refused because the rate was over `max_cps`.
    pub max_cps: u64,
}

/// The limiter: a token bucket in micro-tokens (integer, so a long run does not drift) and counters.
#[derive(Clone, Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    /// Micro-tokens in the bucket (one call costs 1,000,000).
    tokens: u64,
    /// When the bucket was last refilled.
    refilled: Option<Instant>,
    stats: AdmissionStats,
}

const TOKEN: u64 = 1_000_000;

impl Admission {
    /// A limiter with a full bucket.
    pub fn new(cfg: AdmissionConfig) -> Admission {
        Admission {
            tokens: u64::from(cfg.burst.max(1)) * TOKEN,
            cfg,
            refilled: None,
            stats: AdmissionStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    /// What was refused so far.
    pub fn stats(&self) -> AdmissionStats {
        self.stats
    }

    /// A new call arrives at `now` while `active` calls are in progress: `Ok` admits it (and spends
    /// a token), `Err` says why not (and counts it). A refused call spends no token.
    pub fn admit(&mut self, now: Instant, active: usize) -> Result<(), Refusal> {
        if self.cfg.max_calls != 0 && active >= self.cfg.max_calls {
            self.stats.max_calls += 1;
            return Err(Refusal::MaxCalls);
        }
        if self.cfg.max_cps == 0 {
            return Ok(());
        }
        self.refill(now);
        if self.tokens < TOKEN {
            self.stats.max_cps += 1;
            return Err(Refusal::MaxCps);
        }
        self.tokens -= TOKEN;
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        let cap = u64::from(self.cfg.burst.max(1)) * TOKEN;
        let elapsed = match self.refilled {
            Some(at) => now.saturating_duration_since(at),
            None => Duration::ZERO,
        };
        // rate tokens/s = rate micro-tokens/µs.
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let gained = micros.saturating_mul(u64::from(self.cfg.max_cps));
        self.tokens = self.tokens.saturating_add(gained).min(cap);
        // Only whole microseconds were credited; keep the remainder for the next refill.
        let credited = Duration::from_micros(micros);
        self.refilled = Some(match self.refilled {
            Some(at) => at + credited,
            None => now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_calls: usize, max_cps: u32, burst: u32) -> AdmissionConfig {
        AdmissionConfig {
            max_calls,
            max_cps,
            burst,
            answer: OverloadAnswer::ServiceUnavailable,
        }
    }

    #[test]
    fn the_call_limit_refuses_at_max_and_admits_below() {
        let mut a = Admission::new(cfg(3, 0, 1));
        let t0 = Instant::now();
        assert_eq!(a.admit(t0, 2), Ok(()));
        assert_eq!(a.admit(t0, 3), Err(Refusal::MaxCalls));
        assert_eq!(a.admit(t0, 2), Ok(()));
        assert_eq!(
            a.stats(),
            AdmissionStats {
                max_calls: 1,
                max_cps: 0
            }
        );
    }

    #[test]
    fn the_rate_limit_passes_the_burst_then_the_rate() {
        // 100/s, burst 5: five at once, then one every 10 ms.
        let mut a = Admission::new(cfg(0, 100, 5));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(a.admit(t0, 0), Ok(()));
        }
        assert_eq!(a.admit(t0, 0), Err(Refusal::MaxCps));
        assert_eq!(
            a.admit(t0 + Duration::from_millis(9), 0),
            Err(Refusal::MaxCps)
        );
        assert_eq!(a.admit(t0 + Duration::from_millis(10), 0), Ok(()));
        assert_eq!(
            a.admit(t0 + Duration::from_millis(11), 0),
            Err(Refusal::MaxCps)
        );
        // A quiet second refills the bucket to its depth, no further.
        let t1 = t0 + Duration::from_secs(2);
        let admitted = (0..10).filter(|_| a.admit(t1, 0).is_ok()).count();
        assert_eq!(admitted, 5);
        assert_eq!(a.stats().max_cps, 3 + 5);
    }

    #[test]
    fn a_steady_offer_above_the_rate_admits_exactly_the_rate() {
        // 1,000/s offered for 10 s at 300/s: burst 10 + 300 × 10 admitted, the rest refused.
        let mut a = Admission::new(cfg(0, 300, 10));
        let t0 = Instant::now();
        let admitted = (0..10_000u64)
            .filter(|i| a.admit(t0 + Duration::from_millis(*i), 0).is_ok())
            .count();
        // The last offer is at 9.999 s: 2,999 tokens earned (plus the 10 of the burst).
        assert_eq!(admitted, 10 + 2_999);
        assert_eq!(a.stats().max_cps, 10_000 - admitted as u64);
    }

    #[test]
    fn an_odd_rate_does_not_drift_over_a_long_run() {
        // 7/s offered every 1 ms for an hour of simulated time: 7 × 3600 admitted (+ the burst). With a
        // depth of 2 the bucket is never full while the offers keep coming, so no credit is lost to the
        // cap (a depth of 1 would rightly lose the part of each millisecond after it filled).
        let mut a = Admission::new(cfg(0, 7, 2));
        let t0 = Instant::now();
        let mut admitted = 0u64;
        for i in 0..3_600_000u64 {
            if a.admit(t0 + Duration::from_millis(i), 0).is_ok() {
                admitted += 1;
            }
        }
        assert!(
            (7 * 3600 + 1..=7 * 3600 + 2).contains(&admitted),
            "{admitted}"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let mut a = Admission::new(AdmissionConfig::unlimited());
        let t0 = Instant::now();
        assert!((0..100_000).all(|n| a.admit(t0, n).is_ok()));
    }

    #[test]
    fn answers_parse() {
        assert_eq!("486".parse(), Ok(OverloadAnswer::Busy));
        assert_eq!("503".parse(), Ok(OverloadAnswer::ServiceUnavailable));
        assert!("404".parse::<OverloadAnswer>().is_err());
    }
}
