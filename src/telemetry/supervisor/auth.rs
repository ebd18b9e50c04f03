//! The supervisor view's authentication state, without I/O: server-side sessions (random 128-bit
//! tokens, each with its own CSRF token, a bounded map with idle expiry), the per-source throttle of
//! failed logins, and Argon2 password hashing and checking. Time is an argument everywhere, so the
//! rules are tested on a simulated clock; tokens come in from the caller ([`random_token`] in the shell).
//!
//! It does not read cookies or forms (the handlers in `supervisor` do) and keeps nothing on disk: a
//! restart logs every supervisor out.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// How long a session lives without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions at once; a new login beyond it ends the session idle longest.
pub const MAX_SESSIONS: usize = 256;
/// Failed logins one source may make within [`FAILURE_WINDOW`] before it is locked out.
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// How long a source that failed [`MAX_FAILURES`] times may not try again.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Most sources the throttle remembers; beyond it the one seen longest ago is forgotten.
pub const MAX_SOURCES: usize = 4096;

/// A new random 128-bit token, as 32 lowercase hex digits (from the OS's generator).
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Argon2id PHC string of `password`, with a random salt and the crate's default cost
/// (19 MiB, 2 passes: OWASP's minimum for Argon2id).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Equal-length comparison that takes the same time wherever the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One logged-in supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Their name (`[supervisors.NAME]`).
    pub user: String,
    /// The token every state-changing request of this session must carry.
    pub csrf: String,
    expires: Instant,
}

/// What a state-changing request's credentials amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No session (or an expired one): 401, the login form.
    NoSession,
    /// A session, but the request's CSRF token is missing or wrong: 403.
    BadCsrf,
    /// Allowed, for this supervisor.
    Granted(String),
}

/// Every live session, by token.
#[derive(Debug)]
pub struct Sessions {
    map: HashMap<String, Session>,
    max: usize,
    idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(MAX_SESSIONS, SESSION_IDLE)
    }
}

impl Sessions {
    /// At most `max` sessions, each ending after `idle` without a request.
    pub fn new(max: usize, idle: Duration) -> Sessions {
        Sessions {
            map: HashMap::new(),
            max: max.max(1),
            idle,
        }
    }

    /// Sessions alive (expired ones not swept yet included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Starts a session for `user` under `token` with CSRF token `csrf` (both random, from the caller).
    pub fn create(&mut self, now: Instant, user: &str, token: String, csrf: String) {
        self.map.retain(|_, s| s.expires > now);
        while self.map.len() >= self.max {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone());
            match oldest {
                Some(t) => self.map.remove(&t),
                None => break,
            };
        }
        let session = Session {
            user: user.to_owned(),
            csrf,
            expires: now + self.idle,
        };
        self.map.insert(token, session);
    }

    /// The session of `token`, its idle time starting again; an expired one is removed.
    pub fn get(&mut self, now: Instant, token: &str) -> Option<Session> {
        let session = self.map.get_mut(token)?;
        if session.expires <= now {
            self.map.remove(token);
            return None;
        }
        session.expires = now + self.idle;
        Some(session.clone())
    }

    /// Whether a state-changing request with session `token` and CSRF token `csrf` may go ahead.
    pub fn check(&mut self, now: Instant, token: Option<&str>, csrf: Option<&str>) -> Access {
        let Some(session) = token.and_then(|t| self.get(now, t)) else {
            return Access::NoSession;
        };
        match csrf {
            Some(c) if same(c, &session.csrf) => Access::Granted(session.user),
            _ => Access::BadCsrf,
        }
    }

    /// Ends the session of `token` (logout).
    pub fn remove(&mut self, token: &str) {
        self.map.remove(token);
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Failed logins per source address.
#[derive(Debug)]
pub struct Throttle {
    sources: HashMap<IpAddr, Failures>,
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    max_sources: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(MAX_FAILURES, FAILURE_WINDOW, LOCKOUT, MAX_SOURCES)
    }
}

impl Throttle {
    /// `max_failures` per `window` and source, then `lockout`; at most `max_sources` remembered.
    pub fn new(max_failures: u32, window: Duration, lockout: Duration, max_sources: usize) -> Self {
        Throttle {
            sources: HashMap::new(),
            max_failures: max_failures.max(1),
            window,
            lockout,
            max_sources: max_sources.max(1),
        }
    }

    /// May `source` try a password now? `Err(wait)`: not for `wait` more (the password is not even
    /// checked, so a locked-out guesser learns nothing).
    pub fn check(&mut self, now: Instant, source: IpAddr) -> Result<(), Duration> {
        match self.sources.get(&source).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// `source` gave a wrong name or password.
    pub fn failed(&mut self, now: Instant, source: IpAddr) {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            self.forget_some(now);
        }
        let f = self.sources.entry(source).or_insert(Failures {
            count: 0,
            window_start: now,
            locked_until: None,
            last: now,
        });
        if now.saturating_duration_since(f.window_start) >= self.window
            || f.locked_until.is_some_and(|u| u <= now)
        {
            *f = Failures {
                count: 0,
                window_start: now,
                locked_until: None,
                last: now,
            };
        }
        f.count += 1;
        f.last = now;
        if f.count >= self.max_failures {
            f.locked_until = Some(now + self.lockout);
        }
    }

    /// `source` logged in: its failures are forgotten.
    pub fn succeeded(&mut self, source: IpAddr) {
        self.sources.remove(&source);
    }

    /// Room for one more source: those whose window and lockout are over, else the one seen longest ago.
    fn forget_some(&mut self, now: Instant) {
        let (window, before) = (self.window, self.sources.len());
        self.sources.retain(|_, f| {
            now.saturating_duration_since(f.window_start) < window
                || f.locked_until.is_some_and(|u| u > now)
        });
        if self.sources.len() == before {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.sources.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn five_failures_lock_one_source_out_for_a_minute_and_not_the_others() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..4 {
            t.failed(t0 + Duration::from_secs(i), A);
            assert_eq!(t.check(t0 + Duration::from_secs(i), A), Ok(()), "{i}");
        }
        t.failed(t0 + Duration::from_secs(4), A);
        assert_eq!(
            t.check(t0 + Duration::from_secs(5), A),
            Err(Duration::from_secs(59))
        );
        assert_eq!(t.check(t0 + Duration::from_secs(5), B), Ok(()));
        // After the lockout one more failure does not lock again: the count starts over.
        assert_eq!(t.check(t0 + Duration::from_secs(64), A), Ok(()));
        t.failed(t0 + Duration::from_secs(64), A);
        assert_eq!(t.check(t0 + Duration::from_secs(65), A), Ok(()));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock_and_a_login_forgets_them() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..20u64 {
            // One every 80 s: never five within 300 s of the window's start.
            t.failed(t0 + Duration::from_secs(80 * i), A);
        }
        assert_eq!(t.check(t0 + Duration::from_secs(1600), A), Ok(()));
        for _ in 0..4 {
            t.failed(t0 + Duration::from_secs(1601), B);
        }
        t.succeeded(B);
        t.failed(t0 + Duration::from_secs(1602), B);
        assert_eq!(t.check(t0 + Duration::from_secs(1602), B), Ok(()));
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_sources() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1, FAILURE_WINDOW, LOCKOUT, 3);
        for i in 0..10u8 {
            t.failed(t0, IpAddr::from([10, 0, 0, i]));
        }
        assert!(t.sources.len() <= 3);
        // The newest is still locked out.
        assert!(t.check(t0, IpAddr::from([10, 0, 0, 9])).is_err());
    }

    #[test]
    fn a_state_change_needs_the_sessions_own_csrf_token() {
        let t0 = Instant::now();
        let mut s = Sessions::default();
        s.create(t0, "mei", "tok-1".into(), "csrf-1".into());
        s.create(t0, "raj", "tok-2".into(), "csrf-2".into());
        assert_eq!(
            s.check(t0, Some("tok-1"), Some("csrf-1")),
            Access::Granted("mei".into())
        );
        // Another session's token, a wrong one, none at all: refused.
        assert_eq!(s.check(t0, Some("tok-1"), Some("csrf-2")), Access::BadCsrf);
        assert_eq!(s.check(t0, Some("tok-1"), Some("csrf-x")), Access::BadCsrf);
        assert_eq!(s.check(t0, Some("tok-1"), None), Access::BadCsrf);
        assert_eq!(s.check(t0, None, Some("csrf-1")), Access::NoSession);
        assert_eq!(
            s.check(t0, Some("tok-3"), Some("csrf-1")),
            Access::NoSession
        );
        s.remove("tok-1");
        assert_eq!(
            s.check(t0, Some("tok-1"), Some("csrf-1")),
            Access::NoSession
        );
    }

    #[test]
    fn sessions_expire_when_idle_and_their_number_is_bounded() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(100);
        let mut s = Sessions::new(2, idle);
        s.create(t0, "a", "1".into(), "c1".into());
        // Used at 90 s: lives until 190 s.
        assert!(s.get(t0 + Duration::from_secs(90), "1").is_some());
        assert!(s.get(t0 + Duration::from_secs(189), "1").is_some());
        assert!(s.get(t0 + Duration::from_secs(289), "1").is_none());
        let t1 = t0 + Duration::from_secs(300);
        s.create(t1, "a", "1".into(), "c1".into());
        s.create(t1 + Duration::from_secs(1), "b", "2".into(), "c2".into());
        s.create(t1 + Duration::from_secs(2), "c", "3".into(), "c3".into());
        assert_eq!(s.len(), 2);
        // The session idle longest made room.
        assert!(s.get(t1 + Duration::from_secs(3), "1").is_none());
        assert!(s.get(t1 + Duration::from_secs(3), "3").is_some());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").expect("hashing works");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(crate::ivr::supervisors::is_argon2_phc(&hash));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse ", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_128_bit_hex_and_differ() {
        let a = random_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_token());
    }
}
