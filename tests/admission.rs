//! Server-wide admission control (`serve --max-calls`, `--max-cps`, `--overload-answer`) through the
//! real call layer on a simulated clock: the call over a limit gets `503` + `Retry-After` (or `486`)
//! at once, with a CDR, and the calls admitted before it go on to be routed as if nothing happened.
mod common;

use std::time::Duration;

use common::sim::{CallRef, PhoneId, SimNet, GB};
use helpline::call::{AdmissionConfig, EndReason, OverloadAnswer};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn limited(cfg: AdmissionConfig) -> SimNet {
    SimNet::shipped().config(|c| c.admission = cfg).build()
}

/// A new phone at its own address places a call to the GB number with an offer.
fn call(net: &mut SimNet, n: usize) -> (PhoneId, CallRef) {
    let p = net.udp_phone(&format!("127.0.0.{}:40000", n + 1));
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    (p, c)
}

/// An answered call: ACK, key 3 at the greeting, routed (helpline hangs up).
fn route(net: &mut SimNet, p: PhoneId, c: CallRef) {
    net.phone(p).ack(c, None);
    net.drive();
    net.advance(ms(300));
    let m = net.media_id(p, c);
    net.key(m, '3');
}

#[test]
fn call_over_max_calls_gets_503_with_retry_after_and_the_admitted_calls_are_routed() {
    let mut net = limited(AdmissionConfig::new(2, 0));
    let admitted = [call(&mut net, 1), call(&mut net, 2)];
    for (p, c) in admitted {
        assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    }
    let (p3, c3) = call(&mut net, 3);
    let refused = net.phone(p3).responses_to(c3, "INVITE");
    assert_eq!(
        refused.iter().map(|r| r.code).collect::<Vec<_>>(),
        [503],
        "{}",
        net.phone(p3).transcript()
    );
    assert_eq!(refused[0].header("Retry-After"), Some("5"));
    assert_eq!(net.cdr(p3, c3).final_status, 503);
    assert_eq!(net.calls.admission_stats().max_calls, 1);

    for (p, c) in admitted {
        route(&mut net, p, c);
    }
    net.run_until_idle(Duration::from_secs(60));
    for (p, c) in admitted {
        let cdr = net.cdr(p, c);
        assert_eq!(cdr.route.as_deref(), Some("europe.seller-disputes"));
        assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    }
    // With the house empty again, a new call is answered.
    let (p4, c4) = call(&mut net, 4);
    assert_eq!(net.phone(p4).codes_to(c4, "INVITE"), [100, 200]);
}

#[test]
fn calls_over_max_cps_get_503_until_the_bucket_refills() {
    // 10/s with a burst of 3: three at once, then one per 100 ms.
    let mut net = limited(AdmissionConfig {
        burst: 3,
        ..AdmissionConfig::new(0, 10)
    });
    let first: Vec<_> = (0..4).map(|n| call(&mut net, n)).collect();
    let codes: Vec<Vec<u16>> = first
        .iter()
        .map(|(p, c)| net.phone(*p).codes_to(*c, "INVITE"))
        .collect();
    assert_eq!(
        codes,
        [vec![100, 200], vec![100, 200], vec![100, 200], vec![503]]
    );
    let (p, c) = first[3];
    assert_eq!(
        net.phone(p).responses_to(c, "INVITE")[0].header("Retry-After"),
        Some("1")
    );
    net.advance(ms(99));
    let (p, c) = call(&mut net, 5);
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [503]);
    net.advance(ms(1));
    let (p, c) = call(&mut net, 6);
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    assert_eq!(net.calls.admission_stats().max_cps, 2);
    // The admitted calls are untouched by the refusals around them.
    for &(p, c) in &first[..3] {
        route(&mut net, p, c);
    }
    net.run_until_idle(Duration::from_secs(60));
    for &(p, c) in &first[..3] {
        assert_eq!(
            net.cdr(p, c).route.as_deref(),
            Some("europe.seller-disputes")
        );
    }
}

#[test]
fn overload_answer_486_is_busy_without_retry_after() {
    let mut net = limited(AdmissionConfig {
        answer: OverloadAnswer::Busy,
        ..AdmissionConfig::new(1, 0)
    });
    let (p1, c1) = call(&mut net, 1);
    assert_eq!(net.phone(p1).codes_to(c1, "INVITE"), [100, 200]);
    let (p2, c2) = call(&mut net, 2);
    let refused = net.phone(p2).responses_to(c2, "INVITE");
    assert_eq!(refused.iter().map(|r| r.code).collect::<Vec<_>>(), [486]);
    assert_eq!(refused[0].header("Retry-After"), None);
}
