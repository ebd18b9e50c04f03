//! Defences of the call layer on the simulated clock (see `tests/common/sim.rs`): RTP ports come back
//! the moment a call is known dead (CANCEL, no ACK), a flood of INVITEs that never ACK cannot exhaust
//! a small port range, and nothing a caller sends chooses where helpline calls out to.
mod common;

use std::time::Duration;

use common::sim::{SimNet, GB};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_cancelled_call_returns_its_port_at_once() {
    let mut net = SimNet::shipped().ring(Duration::from_secs(5)).build();
    let p = net.udp_phone("192.0.2.10:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.advance(ms(500));
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180]);
    assert_eq!(net.calls.ports_in_use(), 1);
    net.phone(p).cancel(c);
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180, 487]);
    assert_eq!(net.calls.ports_in_use(), 0, "the port is back the instant the 487 leaves");
}

#[test]
fn an_unacked_answer_returns_its_port_at_timer_h_not_after_the_bye() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("192.0.2.11:40000");
    // A junk caller: never ACKs, never answers our BYE.
    net.phone(p).answer_bye = false;
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.advance(Duration::from_millis(31_900));
    assert_eq!(net.calls.ports_in_use(), 1, "held while the ACK may still come");
    net.advance(ms(100));
    // 64·T1 after the 200: no ACK, our BYE is out and unanswered, the port is already free.
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    assert_eq!(net.calls.call_count(), 1, "the BYE is still waiting for its answer");
    assert_eq!(net.calls.ports_in_use(), 0);
    // The BYE's transaction ends 64·T1 later; no second release, no command for the closed session.
    net.advance(Duration::from_secs(33));
    assert_eq!(net.calls.call_count(), 0);
    assert_eq!(net.calls.ports_in_use(), 0);
}

/// 80 INVITEs a second, each from its own (forged) address, none ever ACKed, against 400 port pairs
/// (80 · 64·T1 would need 2,560): every caller — flood and the legitimate one each second — is
/// answered 200, never 503, because an empty pool takes back the port of the call whose ACK is most
/// overdue (past 8·T1).
#[test]
fn eighty_unacked_invites_a_second_do_not_exhaust_a_small_port_range() {
    let mut net = SimNet::shipped()
        .config(|c| c.rtp_ports = (20000, 20799))
        .build();
    let legit = net.udp_phone("198.51.100.7:5060");
    let junk: Vec<_> = (0..200)
        .map(|i| {
            let p = net.udp_phone(&format!("203.0.113.{}:{}", i % 250 + 1, 5000 + i));
            net.phone(p).answer_bye = false;
            p
        })
        .collect();
    let mut junk_codes = Vec::new();
    let mut legit_calls = Vec::new();
    for tick in 0..800u64 {
        let p = junk[(tick % 200) as usize];
        let offer = net.offer(p);
        let c = net.phone(p).invite(GB, Some(&offer));
        junk_codes.push((p, c));
        if tick % 80 == 40 {
            let offer = net.offer(legit);
            let c = net.phone(legit).invite(GB, Some(&offer));
            net.drive();
            net.phone(legit).ack(c, None);
            legit_calls.push(c);
        }
        net.advance(Duration::from_micros(12_500));
        assert!(net.calls.ports_in_use() <= 400);
    }
    for c in &legit_calls {
        assert_eq!(
            net.phone(legit).codes_to(*c, "INVITE"),
            [100, 200],
            "{}",
            net.phone(legit).transcript()
        );
    }
    let refused = junk_codes
        .iter()
        .filter(|(p, c)| net.phone(*p).codes_to(*c, "INVITE").contains(&503))
        .count();
    assert_eq!(refused, 0, "flood INVITEs refused for want of a port");
    assert!(net.calls.guard_stats().0.unacked_reclaimed > 0);
    // The legitimate calls are up, with their media.
    assert_eq!(legit_calls.len(), 10);
}
