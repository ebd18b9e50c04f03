//! IVR analytics on the simulated clock (tests/common/sim.rs): the per-menu events the call layer
//! exposes through `Calls::poll_menu_event` — entered, keys, invalid entries, timeouts, max-failure
//! exits and callers who hung up in a menu — for calls whose every step happens at a known instant.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::sim::{CallRef, PhoneId, SimNet, GB};
use helpline::ivr::MenuEventKind;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn answered(net: &mut SimNet, p: PhoneId) -> CallRef {
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.phone(p).ack(c, None);
    net.drive();
    c
}

/// Every event polled so far, counted per (menu, event name or `key:K`).
fn counts(net: &mut SimNet) -> BTreeMap<(String, String), u32> {
    let mut out = BTreeMap::new();
    while let Some(e) = net.calls.poll_menu_event() {
        let name = match e.kind {
            MenuEventKind::Key(k) => format!("key:{k}"),
            other => other.name().to_owned(),
        };
        *out.entry((e.menu, name)).or_default() += 1;
    }
    out
}

fn pairs(list: &[(&str, &str, u32)]) -> BTreeMap<(String, String), u32> {
    list.iter()
        .map(|(m, e, n)| ((m.to_string(), e.to_string()), *n))
        .collect()
}

#[test]
fn invalid_key_then_timeout_then_hangup_moves_the_main_menus_counters() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p);
    let m = net.media_id(p, c);
    // The first prompt starts 300 ms after the ACK; enter the menu.
    net.advance(Duration::from_millis(300));
    assert_eq!(counts(&mut net), pairs(&[("main", "entered", 1)]));

    // `9` is no option of the main menu: one invalid entry, the menu re-prompts.
    net.advance(secs(1));
    net.key(m, '9');
    net.drive();
    assert_eq!(
        counts(&mut net),
        pairs(&[("main", "key:9", 1), ("main", "invalid", 1)])
    );

    // Silence: the re-prompt ends, then 5 s without a key is one timeout (the menu allows three).
    let mut waited = Duration::ZERO;
    let after_silence = loop {
        net.advance(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        let seen = counts(&mut net);
        if !seen.is_empty() || waited > secs(30) {
            break seen;
        }
    };
    assert_eq!(after_silence, pairs(&[("main", "timeout", 1)]));
    assert!(waited >= secs(5), "the first-key timer is 5 s: {waited:?}");

    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.calls.call_count(), 0);
    assert_eq!(counts(&mut net), pairs(&[("main", "hangup", 1)]));
}

#[test]
fn three_invalid_entries_are_a_max_failures_exit_not_a_hangup_by_the_caller() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p);
    let m = net.media_id(p, c);
    net.advance(Duration::from_millis(300));
    for key in ['9', '7', '6'] {
        net.advance(Duration::from_millis(200));
        net.key(m, key);
        net.drive();
    }
    net.run_until_idle(secs(60));
    assert_eq!(net.calls.call_count(), 0, "max_failures hangs up");
    assert_eq!(
        counts(&mut net),
        pairs(&[
            ("main", "entered", 1),
            ("main", "key:6", 1),
            ("main", "key:7", 1),
            ("main", "key:9", 1),
            ("main", "invalid", 3),
            ("main", "max_failures", 1),
        ])
    );
}

#[test]
fn a_routed_caller_counts_the_key_and_no_hangup() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p);
    let m = net.media_id(p, c);
    net.advance(Duration::from_millis(700));
    net.key(m, '3');
    net.run_until_idle(secs(60));
    assert_eq!(
        net.cdr(p, c).route.as_deref(),
        Some("europe.seller-disputes")
    );
    assert_eq!(
        counts(&mut net),
        pairs(&[("main", "entered", 1), ("main", "key:3", 1)])
    );
}
