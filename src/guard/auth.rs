//! Digest brute-force throttling (sans-IO): counts failed authentications per source address and per
//! (source, user), and refuses further attempts from a source that failed too often, for a time that
//! doubles with every lock-out. Keyed by source, never by user alone, so a guesser elsewhere can never
//! lock an agent out: the right password from another address still works.
//!
//! It decides only; the registrar asks [`AuthThrottle::locked`] before checking a digest and reports
//! each outcome. Memory is bounded by `max_entries` (least recently touched forgotten first).
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The throttle's settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Failures from one source (any users) before it is locked out; 0 turns throttling off.
    pub max_failures_per_source: u32,
    /// Failures for one user from one source before that source is locked out.
    pub max_failures_per_user: u32,
    /// The first lock-out; each further one doubles, up to `max_lockout`.
    pub lockout: Duration,
    /// The longest lock-out.
    pub max_lockout: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// Most entries tracked.
    pub max_entries: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_failures_per_source: 20,
            max_failures_per_user: 5,
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            window: Duration::from_secs(600),
            max_entries: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    User(IpAddr, u64),
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    first: Instant,
    last: Instant,
    lockouts: u32,
    locked_until: Option<Instant>,
}

/// Failed-authentication bookkeeping. See the module doc.
pub struct AuthThrottle {
    cfg: AuthConfig,
    entries: HashMap<Key, Entry>,
}

impl AuthThrottle {
    /// A throttle with nothing counted.
    pub fn new(cfg: AuthConfig) -> AuthThrottle {
        AuthThrottle {
            cfg,
            entries: HashMap::new(),
        }
    }

    /// How many entries are tracked (bounded).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Whether attempts from `source` for `user` are refused at `now`: the source is locked out, or
    /// it is locked out for this user.
    pub fn locked(&self, now: Instant, source: IpAddr, user: &str) -> bool {
        if self.cfg.max_failures_per_source == 0 {
            return false;
        }
        [Key::Source(source), Key::User(source, user_hash(user))]
            .iter()
            .filter_map(|k| self.entries.get(k))
            .any(|e| e.locked_until.is_some_and(|u| now < u))
    }

    /// A wrong digest from `source` for `user`. Returns the lock-out it starts, if any.
    pub fn failure(&mut self, now: Instant, source: IpAddr, user: &str) -> Option<Duration> {
        if self.cfg.max_failures_per_source == 0 {
            return None;
        }
        let per_source = self.bump(now, Key::Source(source), self.cfg.max_failures_per_source);
        let per_user = self.bump(
            now,
            Key::User(source, user_hash(user)),
            self.cfg.max_failures_per_user,
        );
        per_source.or(per_user)
    }

    /// The right password from `source` for `user`: that pair starts afresh (the source's count of
    /// failures for other users stays).
    pub fn success(&mut self, source: IpAddr, user: &str) {
        self.entries.remove(&Key::User(source, user_hash(user)));
    }

    /// Forgets entries whose failures and lock-outs are over.
    pub fn handle_timeout(&mut self, now: Instant) {
        let window = self.cfg.window;
        self.entries.retain(|_, e| {
            e.locked_until.is_some_and(|u| now < u)
                || now.saturating_duration_since(e.last) < window
        });
    }

    fn bump(&mut self, now: Instant, key: Key, max: u32) -> Option<Duration> {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cfg.max_entries.max(2) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        let window = self.cfg.window;
        let e = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            first: now,
            last: now,
            lockouts: 0,
            locked_until: None,
        });
        if now.saturating_duration_since(e.first) >= window {
            e.failures = 0;
            e.first = now;
        }
        e.last = now;
        e.failures += 1;
        if e.failures < max.max(1) {
            return None;
        }
        // Locked out: the time doubles with every lock-out (60 s, 120 s, 240 s … up to the cap).
        let factor = 1u32.checked_shl(e.lockouts.min(16)).unwrap_or(u32::MAX);
        let lockout = self
            .cfg
            .lockout
            .saturating_mul(factor)
            .min(self.cfg.max_lockout);
        e.lockouts += 1;
        e.failures = 0;
        e.first = now;
        e.locked_until = Some(now + lockout);
        Some(lockout)
    }
}

/// Users are keyed by a hash so a guesser's usernames are not stored as strings (bounded, and
/// nothing from the request is kept verbatim).
fn user_hash(user: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}
