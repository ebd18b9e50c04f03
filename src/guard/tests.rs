//! The guard and the auth throttle on a simulated clock.
use super::*;
use std::net::Ipv4Addr;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn cfg(rate: u32, burst: u32) -> GuardConfig {
    GuardConfig {
        rate,
        burst,
        ban: Duration::from_secs(10),
        ..GuardConfig::default()
    }
}

#[test]
fn a_source_within_its_rate_always_passes() {
    let mut g = Guard::new(cfg(10, 10));
    let t0 = Instant::now();
    // 10/s sustained for a minute (one every 100 ms) never trips a 10/s limit.
    for i in 0..600u64 {
        let now = t0 + Duration::from_millis(100 * i);
        assert_eq!(g.check(now, ip(1), "INVITE"), Verdict::Pass, "request {i}");
    }
    assert_eq!(g.poll_event(), None);
}

#[test]
fn a_burst_above_the_rate_bans_once_and_the_ban_expires() {
    let mut g = Guard::new(cfg(10, 20));
    let t0 = Instant::now();
    let verdicts: Vec<_> = (0..50).map(|_| g.check(t0, ip(1), "INVITE")).collect();
    assert!(verdicts[..20].iter().all(|v| *v == Verdict::Pass));
    assert!(verdicts[20..].iter().all(|v| *v == Verdict::Drop));
    // Reported once, not per packet.
    match g.poll_event() {
        Some(GuardEvent::Banned {
            source,
            secs,
            reason,
        }) => {
            assert_eq!(source, ip(1));
            assert_eq!(secs, 10);
            assert!(reason.contains("INVITE"), "{reason}");
        }
        other => panic!("expected a ban, got {other:?}"),
    }
    assert_eq!(g.poll_event(), None);
    // Every method of the source is refused while banned; other sources are untouched.
    assert_eq!(
        g.check(t0 + Duration::from_secs(9), ip(1), "OPTIONS"),
        Verdict::Drop
    );
    assert_eq!(
        g.check(t0 + Duration::from_secs(9), ip(2), "INVITE"),
        Verdict::Pass
    );
    assert!(g.is_banned(t0 + Duration::from_secs(9), ip(1)));
    // After the ban it passes again, and the expiry is reported.
    let later = t0 + Duration::from_secs(10);
    assert_eq!(g.check(later, ip(1), "INVITE"), Verdict::Pass);
    assert_eq!(
        g.poll_event(),
        Some(GuardEvent::BanExpired { source: ip(1) })
    );
}

#[test]
fn methods_have_separate_budgets() {
    let mut g = Guard::new(cfg(5, 5));
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(g.check(t0, ip(1), "REGISTER"), Verdict::Pass);
        assert_eq!(g.check(t0, ip(1), "INVITE"), Verdict::Pass);
        assert_eq!(g.check(t0, ip(1), "ACK"), Verdict::Pass);
    }
    assert_eq!(g.check(t0, ip(1), "REGISTER"), Verdict::Drop);
}

#[test]
fn banned_sources_get_503_with_the_time_left_when_configured() {
    let mut c = cfg(1, 1);
    c.banned_answer = BannedAnswer::Unavailable;
    let mut g = Guard::new(c);
    let t0 = Instant::now();
    assert_eq!(g.check(t0, ip(1), "INVITE"), Verdict::Pass);
    assert_eq!(
        g.check(t0, ip(1), "INVITE"),
        Verdict::Refuse { retry_after: 10 }
    );
    let t = t0 + Duration::from_secs(7);
    assert_eq!(
        g.check(t, ip(1), "INVITE"),
        Verdict::Refuse { retry_after: 3 }
    );
    // ACKs of our 503s pass, so its retransmission stops.
    assert_eq!(g.check(t, ip(1), "ACK"), Verdict::Pass);
}

#[test]
fn allow_listed_sources_are_never_limited_or_capped() {
    let mut c = cfg(1, 1);
    c.allow = parse_list("127.0.0.1/32, 10.0.0.0/8").expect("valid list");
    c.max_calls_per_source = 2;
    let mut g = Guard::new(c);
    let t0 = Instant::now();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let carrier = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    for _ in 0..1000 {
        assert_eq!(g.check(t0, local, "INVITE"), Verdict::Pass);
        assert_eq!(g.check(t0, carrier, "INVITE"), Verdict::Pass);
    }
    assert_eq!(g.tracked(), 0);
    assert!(!g.over_call_cap(carrier, 100));
    assert!(g.over_call_cap(ip(1), 2));
    assert!(!g.over_call_cap(ip(1), 1));
}

#[test]
fn the_number_of_tracked_sources_is_capped_oldest_forgotten() {
    let mut c = cfg(10, 1);
    c.max_sources = 100;
    let mut g = Guard::new(c);
    let t0 = Instant::now();
    for i in 0..1000u64 {
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
        g.check(t0 + Duration::from_millis(i), src, "OPTIONS");
        assert!(g.tracked() <= 100);
    }
    // The most recent source is remembered (its burst of one is spent), the first one forgotten.
    let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 999));
    let first = IpAddr::V4(Ipv4Addr::from(0x0a00_0000));
    let t = t0 + Duration::from_millis(999);
    assert_eq!(g.check(t, last, "OPTIONS"), Verdict::Drop);
    assert_eq!(g.check(t, first, "OPTIONS"), Verdict::Pass);
}

#[test]
fn idle_sources_are_swept_and_expired_bans_reported() {
    let mut g = Guard::new(cfg(1, 1));
    let t0 = Instant::now();
    g.check(t0, ip(1), "INVITE");
    g.check(t0, ip(1), "INVITE"); // banned
    g.check(t0, ip(2), "INVITE");
    let _ = g.poll_event();
    g.handle_timeout(t0 + Duration::from_secs(11));
    assert_eq!(
        g.poll_event(),
        Some(GuardEvent::BanExpired { source: ip(1) })
    );
    assert_eq!(g.tracked(), 0);
}

#[test]
fn cidr_parsing_and_membership() {
    let c: Cidr = "192.0.2.128/25".parse().expect("valid");
    assert!(c.contains(ip(200)));
    assert!(!c.contains(ip(1)));
    let one: Cidr = "::1".parse().expect("valid");
    assert!(one.contains("::1".parse().expect("valid")));
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("valid");
    assert!("127.0.0.0/8"
        .parse::<Cidr>()
        .expect("valid")
        .contains(mapped));
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("nonsense".parse::<Cidr>().is_err());
}

fn auth() -> AuthThrottle {
    AuthThrottle::new(AuthConfig {
        max_failures_per_source: 10,
        max_failures_per_user: 3,
        lockout: Duration::from_secs(60),
        max_lockout: Duration::from_secs(300),
        window: Duration::from_secs(600),
        max_entries: 100,
    })
}

#[test]
fn failures_for_one_user_lock_that_source_out_with_growing_times() {
    let mut a = auth();
    let t0 = Instant::now();
    assert_eq!(a.failure(t0, ip(1), "alice"), None);
    assert_eq!(a.failure(t0, ip(1), "alice"), None);
    assert_eq!(a.failure(t0, ip(1), "alice"), Some(Duration::from_secs(60)));
    assert!(a.locked(t0, ip(1), "alice"));
    // Another source is never locked out for that user: the agent can still log in.
    assert!(!a.locked(t0, ip(2), "alice"));
    assert!(!a.locked(t0 + Duration::from_secs(60), ip(1), "alice"));
    // The next lock-out is twice as long, then capped.
    let t1 = t0 + Duration::from_secs(61);
    a.failure(t1, ip(1), "alice");
    a.failure(t1, ip(1), "alice");
    assert_eq!(
        a.failure(t1, ip(1), "alice"),
        Some(Duration::from_secs(120))
    );
    let t2 = t1 + Duration::from_secs(121);
    for _ in 0..2 {
        a.failure(t2, ip(1), "alice");
    }
    assert_eq!(
        a.failure(t2, ip(1), "alice"),
        Some(Duration::from_secs(240))
    );
    let t3 = t2 + Duration::from_secs(241);
    for _ in 0..2 {
        a.failure(t3, ip(1), "alice");
    }
    assert_eq!(
        a.failure(t3, ip(1), "alice"),
        Some(Duration::from_secs(300))
    );
}

#[test]
fn guessing_many_users_locks_the_source_out() {
    let mut a = auth();
    let t0 = Instant::now();
    for i in 0..9 {
        assert_eq!(a.failure(t0, ip(1), &format!("user{i}")), None);
    }
    assert!(a.failure(t0, ip(1), "user9").is_some());
    assert!(a.locked(t0, ip(1), "anyone"));
    assert!(!a.locked(t0, ip(2), "anyone"));
}

#[test]
fn a_success_clears_that_users_failures_from_that_source() {
    let mut a = auth();
    let t0 = Instant::now();
    a.failure(t0, ip(1), "alice");
    a.failure(t0, ip(1), "alice");
    a.success(ip(1), "alice");
    assert_eq!(a.failure(t0, ip(1), "alice"), None);
}

#[test]
fn the_throttle_is_bounded_and_forgets_old_failures() {
    let mut a = auth();
    let t0 = Instant::now();
    for i in 0..1000u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        a.failure(t0 + Duration::from_millis(u64::from(i)), src, "u");
        assert!(a.tracked() <= 100);
    }
    a.handle_timeout(t0 + Duration::from_secs(700));
    assert_eq!(a.tracked(), 0);
}
