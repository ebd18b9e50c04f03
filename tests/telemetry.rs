//! The shell's metrics (`telemetry::metrics::CoreMetrics`) on a simulated clock: what a scrape shows
//! after scripted SIP messages, media events and CDRs — latencies measured from the instants given,
//! configured numbers as labels and unknown ones as `unknown`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::call::{Cdr, CdrDigit, EndReason, MediaId};
use helpline::telemetry::metrics::{CoreMetrics, Metrics};

fn invite(call_id: &str) -> String {
    format!("INVITE sip:08000000001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\r\n")
}

fn response(call_id: &str, code: u16) -> String {
    format!("SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\r\n")
}

/// The line of `text` that starts with `prefix`, its value.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[test]
fn invite_to_200_is_timed_from_the_first_arrival_and_refusals_are_not() {
    let metrics = Arc::new(Metrics::new());
    let mut m = CoreMetrics::new(
        metrics.clone(),
        common::sim::load_menus("tests/data/menus/first-flow"),
    );
    let t0 = Instant::now();
    m.sip(t0, true, invite("a").as_bytes());
    // A retransmission does not restart the clock.
    m.sip(
        t0 + Duration::from_millis(500),
        true,
        invite("a").as_bytes(),
    );
    m.sip(
        t0 + Duration::from_millis(10),
        false,
        response("a", 100).as_bytes(),
    );
    m.sip(
        t0 + Duration::from_millis(700),
        false,
        response("a", 200).as_bytes(),
    );
    m.sip(t0, true, invite("b").as_bytes());
    m.sip(
        t0 + Duration::from_secs(3),
        false,
        response("b", 486).as_bytes(),
    );
    let text = metrics.render();
    assert_eq!(sample(&text, "helpline_invite_answer_seconds_count"), 1.0);
    assert!(
        (sample(&text, "helpline_invite_answer_seconds_sum") - 0.7).abs() < 1e-9,
        "{text}"
    );
    assert_eq!(
        sample(&text, "helpline_invite_answer_seconds_bucket{le=\"0.5\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "helpline_invite_answer_seconds_bucket{le=\"1\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "helpline_sip_requests_total{direction=\"in\",method=\"INVITE\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "helpline_sip_responses_total{direction=\"out\",method=\"INVITE\",code=\"486\"}"
        ),
        1.0
    );
}

#[test]
fn first_prompt_and_key_to_action_follow_the_media_events() {
    let metrics = Arc::new(Metrics::new());
    let mut m = CoreMetrics::new(
        metrics.clone(),
        common::sim::load_menus("tests/data/menus/first-flow"),
    );
    let t0 = Instant::now();
    let (early, late) = (MediaId(1), MediaId(2));
    // RTP first: measured up to the first prompt only.
    m.first_rtp(t0, early);
    m.action(t0 + Duration::from_millis(3), early, true);
    m.action(t0 + Duration::from_millis(900), early, true);
    // The prompt started before any RTP: no measure, not even when RTP comes later.
    m.action(t0, late, true);
    m.first_rtp(t0 + Duration::from_millis(100), late);
    m.action(t0 + Duration::from_millis(200), late, true);
    // Two keys, then the action: timed from the last key.
    m.key(t0 + Duration::from_secs(1), early);
    m.key(t0 + Duration::from_secs(2), early);
    m.action(t0 + Duration::from_millis(2_040), early, false);
    // A key after which the call is closed: nothing.
    m.key(t0, late);
    m.closed(late);
    m.action(t0 + Duration::from_secs(5), late, true);
    let text = metrics.render();
    assert_eq!(
        sample(&text, "helpline_first_prompt_seconds_count"),
        1.0,
        "{text}"
    );
    assert!((sample(&text, "helpline_first_prompt_seconds_sum") - 0.003).abs() < 1e-9);
    assert_eq!(
        sample(&text, "helpline_key_action_seconds_count"),
        1.0,
        "{text}"
    );
    assert!((sample(&text, "helpline_key_action_seconds_sum") - 0.04).abs() < 1e-9);
}

#[test]
fn call_labels_name_configured_numbers_and_count_the_rest_as_unknown() {
    let metrics = Arc::new(Metrics::new());
    let mut m = CoreMetrics::new(metrics.clone(), common::sim::shipped_menus());
    let mut known = Cdr {
        call_id: "k".into(),
        dialed: "+44 800 028 9999".replace(' ', ""),
        region: Some("europe".into()),
        route: Some("europe.refunds".into()),
        end_reason: Some(EndReason::CallerBye),
        queue_wait_ms: Some(12_000),
        ..Cdr::default()
    };
    known.push_digit(CdrDigit {
        digit: '2',
        method: "rfc4733",
        at: String::new(),
        menu: None,
    });
    known.push_digit(CdrDigit {
        digit: '#',
        method: "info",
        at: String::new(),
        menu: None,
    });
    m.cdr(&known);
    for n in 0..3 {
        m.cdr(&Cdr {
            call_id: format!("u{n}"),
            dialed: format!("0999{n}"),
            final_status: 404,
            ..Cdr::default()
        });
    }
    let text = metrics.render();
    let label = text
        .lines()
        .find(|l| l.starts_with("helpline_calls_total{region=\"europe\""))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        label.contains("end_reason=\"caller-bye\"") && label.contains("route=\"europe.refunds\""),
        "{label}"
    );
    assert!(
        label.contains("dialed=\"+448000289999\""),
        "a shipped number is configured: {label}"
    );
    assert_eq!(
        sample(&text, "helpline_calls_total{region=\"none\",dialed=\"unknown\",end_reason=\"none\",route=\"none\"}"),
        3.0
    );
    assert_eq!(
        sample(&text, "helpline_dtmf_keys_total{method=\"rfc4733\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "helpline_dtmf_keys_total{method=\"info\"}"),
        1.0
    );
    assert_eq!(sample(&text, "helpline_queue_wait_seconds_count"), 1.0);
    assert_eq!(
        sample(&text, "helpline_queue_wait_seconds_bucket{le=\"10\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "helpline_queue_wait_seconds_bucket{le=\"30\"}"),
        1.0
    );
}
