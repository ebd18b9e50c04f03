//! Per-source defences (sans-IO): request-rate limits per source address and method with short bans
//! (Kamailio pike/htable style, token buckets over the caller's `now`), an allow-list of addresses and
//! CIDRs that are never limited, the per-source concurrent-call cap's arithmetic, and the
//! authentication throttle the registrar consults ([`AuthThrottle`]).
//!
//! It decides only; it does not parse SIP, answer, log or count: the call layer asks [`Guard::check`]
//! before a request reaches the endpoint and drains [`Guard::poll_event`] (a ban is reported once, not
//! per packet) for the shell to log and count. Memory is bounded: at most `max_sources` sources are
//! tracked, the one seen least recently is forgotten first.
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

mod auth;
mod cidr;
pub mod scanner;
pub use cidr::parse_list;

pub use auth::{AuthConfig, AuthThrottle};
pub use cidr::Cidr;

/// What a banned source gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BannedAnswer {
    /// Nothing at all: the packet is dropped (the default; a flooder learns nothing and costs nothing).
    Silence,
    /// `503 Service Unavailable` with `Retry-After` (the seconds left of the ban).
    Unavailable,
}

impl FromStr for BannedAnswer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "silence" => Ok(BannedAnswer::Silence),
            "503" => Ok(BannedAnswer::Unavailable),
            other => Err(format!("`{other}`: expected silence or 503")),
        }
    }
}

/// The guard's settings (flags of `serve`).
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Requests per second one source may send of one method (sustained); 0 turns rate limits off.
    pub rate: u32,
    /// How many requests of one method a source may send at once before the rate applies.
    pub burst: u32,
    /// How long a source that exceeded a rate is banned.
    pub ban: Duration,
    /// What a banned source gets.
    pub banned_answer: BannedAnswer,
    /// Sources never limited, banned or capped (carriers, a Kamailio in front, test harnesses).
    pub allow: Vec<Cidr>,
    /// Most concurrent calls from one source; 0 means no cap.
    pub max_calls_per_source: usize,
    /// Most sources tracked at once; beyond it the one seen least recently is forgotten.
    pub max_sources: usize,
    /// Drop requests whose User-Agent names a known scanner ([`scanner::is_scanner`]) without a word
    /// (`--drop-scanners`; off by default: a weak signal, any scanner can change its User-Agent).
    pub drop_scanners: bool,
}

impl Default for GuardConfig {
    /// The defaults of `helpline serve`: generous enough for every test suite and load run from one
    /// address (50 calls/s), strict enough that one flooding address is banned within a second.
    fn default() -> Self {
        GuardConfig {
            rate: 100,
            burst: 200,
            ban: Duration::from_secs(60),
            banned_answer: BannedAnswer::Silence,
            allow: Vec::new(),
            max_calls_per_source: 500,
            max_sources: 10_000,
            drop_scanners: false,
        }
    }
}

impl GuardConfig {
    /// No limits at all (in-process tests that send many requests at one simulated instant).
    pub fn off() -> GuardConfig {
        GuardConfig {
            rate: 0,
            max_calls_per_source: 0,
            ..GuardConfig::default()
        }
    }

    /// Whether `ip` is on the allow-list.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

/// The methods limited separately (a burst of REGISTERs does not eat a source's INVITE budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodClass {
    /// INVITE.
    Invite,
    /// REGISTER.
    Register,
    /// OPTIONS (scanners' favourite).
    Options,
    /// Everything else (ACK, BYE, CANCEL, INFO …).
    Other,
}

impl MethodClass {
    /// The class of a request's method token.
    pub fn of(method: &str) -> MethodClass {
        match method {
            "INVITE" => MethodClass::Invite,
            "REGISTER" => MethodClass::Register,
            "OPTIONS" => MethodClass::Options,
            _ => MethodClass::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MethodClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MethodClass::Invite => "INVITE",
            MethodClass::Register => "REGISTER",
            MethodClass::Options => "OPTIONS",
            MethodClass::Other => "other",
        })
    }
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it as usual.
    Pass,
    /// Drop it without a word.
    Drop,
    /// Answer `503` with `Retry-After` seconds.
    Refuse {
        /// Seconds left of the ban (at least 1).
        retry_after: u32,
    },
}

/// What the guard reports, once per occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardEvent {
    /// `source` exceeded a rate and is banned for `secs` seconds.
    Banned {
        /// The banned address.
        source: IpAddr,
        /// Why, e.g. "INVITE rate above 100/s".
        reason: String,
        /// Length of the ban.
        secs: u64,
    },
    /// `source`'s ban ran out (reported when it is next seen or swept).
    BanExpired {
        /// The address.
        source: IpAddr,
    },
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Source {
    buckets: [Option<Bucket>; 4],
    banned_until: Option<Instant>,
    last_seen: Instant,
}

/// The per-source limiter and ban list. See the module doc.
pub struct Guard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    events: VecDeque<GuardEvent>,
}

impl Guard {
    /// A guard with nothing tracked.
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            cfg,
            sources: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// New settings from now on (a server config reload); bans and buckets already running stay.
    pub fn set_config(&mut self, cfg: GuardConfig) {
        self.cfg = cfg;
    }

    /// How many sources are tracked (bounded by `max_sources`).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| now < until)
    }

    /// One request of `method` from `ip` at `now`: counts it and says what to do with it. ACKs of a
    /// banned source in `503` mode pass (they stop our 503's retransmissions) but still count.
    pub fn check(&mut self, now: Instant, ip: IpAddr, method: &str) -> Verdict {
        if self.cfg.rate == 0 || self.cfg.allowed(ip) {
            return Verdict::Pass;
        }
        let class = MethodClass::of(method);
        if !self.sources.contains_key(&ip) {
            self.make_room();
        }
        let cfg = &self.cfg;
        let source = self.sources.entry(ip).or_insert_with(|| Source {
            buckets: [None; 4],
            banned_until: None,
            last_seen: now,
        });
        source.last_seen = now;
        if let Some(until) = source.banned_until {
            if now < until {
                return banned_verdict(cfg.banned_answer, until - now, method);
            }
            source.banned_until = None;
            self.events.push_back(GuardEvent::BanExpired { source: ip });
        }
        let burst = f64::from(cfg.burst.max(1));
        let bucket = source.buckets[class.index()].get_or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * f64::from(cfg.rate);
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Pass;
        }
        // Over the rate: banned from now on, reported once.
        source.banned_until = Some(now + cfg.ban);
        source.buckets = [None; 4];
        self.events.push_back(GuardEvent::Banned {
            source: ip,
            reason: format!("{class} rate above {}/s (burst {})", cfg.rate, cfg.burst),
            secs: cfg.ban.as_secs(),
        });
        banned_verdict(cfg.banned_answer, cfg.ban, method)
    }

    /// Whether one more call from `ip`, which already has `current` calls, is over the cap.
    pub fn over_call_cap(&self, ip: IpAddr, current: usize) -> bool {
        self.cfg.max_calls_per_source != 0
            && current >= self.cfg.max_calls_per_source
            && !self.cfg.allowed(ip)
    }

    /// Forgets sources idle for longer than a ban (their buckets are full again); reports expired bans.
    pub fn handle_timeout(&mut self, now: Instant) {
        let idle = self.cfg.ban.max(Duration::from_secs(1));
        let events = &mut self.events;
        self.sources.retain(|ip, s| {
            if let Some(until) = s.banned_until {
                if now >= until {
                    events.push_back(GuardEvent::BanExpired { source: *ip });
                    s.banned_until = None;
                }
            }
            s.banned_until.is_some() || now.saturating_duration_since(s.last_seen) < idle
        });
    }

    /// The next ban or expiry to report.
    pub fn poll_event(&mut self) -> Option<GuardEvent> {
        self.events.pop_front()
    }

    /// At the cap, forgets the source seen least recently (an O(n) scan, only when a new source comes
    /// in at the cap).
    fn make_room(&mut self) {
        if self.sources.len() < self.cfg.max_sources.max(1) {
            return;
        }
        let oldest = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.sources.remove(&ip);
        }
    }
}

fn banned_verdict(answer: BannedAnswer, left: Duration, method: &str) -> Verdict {
    match answer {
        BannedAnswer::Silence => Verdict::Drop,
        // An ACK is never answered; letting it through stops the retransmission of our 503.
        BannedAnswer::Unavailable if method == "ACK" => Verdict::Pass,
        BannedAnswer::Unavailable => Verdict::Refuse {
            retry_after: u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX),
        },
    }
}

#[cfg(test)]
mod tests;
