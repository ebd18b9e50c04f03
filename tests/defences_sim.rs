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
    assert_eq!(
        net.calls.ports_in_use(),
        0,
        "the port is back the instant the 487 leaves"
    );
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
    assert_eq!(
        net.calls.ports_in_use(),
        1,
        "held while the ACK may still come"
    );
    net.advance(ms(100));
    // 64·T1 after the 200: no ACK, our BYE is out and unanswered, the port is already free.
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    assert_eq!(
        net.calls.call_count(),
        1,
        "the BYE is still waiting for its answer"
    );
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

/// An OPTIONS from `p` with this User-Agent line ("" for none); returns its Call-ID.
fn options_with_ua(net: &mut SimNet, p: common::sim::PhoneId, n: u32, ua: &str) -> String {
    let addr = net.phones[p.0].addr;
    let server = net.local;
    let call_id = format!("scan-{n}@{}", addr.ip());
    let head = format!(
        "OPTIONS sip:100@{server} SIP/2.0
        Via: SIP/2.0/UDP {addr};branch=z9hG4bK-scan-{n}
        Max-Forwards: 70
        From: <sip:100@{server}>;tag=s{n}
        To: <sip:100@{server}>
        Call-ID: {call_id}
        CSeq: 1 OPTIONS
        {ua}"
    );
    net.phone(p).send_text(&head, "");
    net.drive();
    call_id
}

fn answered_call_ids(net: &SimNet) -> Vec<String> {
    net.transmits
        .iter()
        .filter(|(_, _, text)| text.starts_with("SIP/2.0 "))
        .filter_map(|(_, _, text)| {
            text.lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn drop_scanners_silences_known_scanner_user_agents_only_when_asked() {
    for drop in [false, true] {
        let mut net = SimNet::shipped()
            .config(|c| c.guard.drop_scanners = drop)
            .build();
        let p = net.udp_phone("192.0.2.50:5060");
        let scan = options_with_ua(&mut net, p, 1, "User-Agent: friendly-scanner");
        let vicious = options_with_ua(&mut net, p, 2, "User-Agent: sipvicious 0.3.4");
        let phone = options_with_ua(&mut net, p, 3, "User-Agent: Linphone/5.2.0");
        let answered = answered_call_ids(&net);
        assert!(answered.contains(&phone), "a phone is always answered");
        assert_eq!(answered.contains(&scan), !drop, "drop_scanners = {drop}");
        assert_eq!(answered.contains(&vicious), !drop, "drop_scanners = {drop}");
        let dropped = net.calls.guard_stats().0.scanners;
        assert_eq!(dropped, if drop { 2 } else { 0 });
    }
}

// ── toll fraud: nothing a caller sends chooses a destination ──

/// Where the menus' transfer goes (key 7 of the main menu) and where an attacker wants calls to go.
const TRANSFER_TO: &str = "127.0.0.1:42000";
const TRANSFER_URI: &str = "sip:support@127.0.0.1:42000";
const PREMIUM: &str = "127.0.0.1:49999";

/// The shipped menus with key 7 of the main menu transferring to [`TRANSFER_URI`].
fn transfer_menus() -> std::sync::Arc<helpline::ivr::MenuSet> {
    let dir = common::menus_with_transfer(TRANSFER_URI);
    common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// A caller tries every way a request could name a destination — an INVITE for an external number at
/// another host with a Route to it, a REFER, a re-INVITE with a new Contact and Refer-To/Diversion
/// headers, digits of a premium number typed into the menus — and then presses the menus' transfer
/// key: the only INVITE helpline ever sends goes to the menus' transfer URI.
#[test]
fn no_request_from_a_caller_chooses_where_helpline_calls_out_to() {
    let mut net = SimNet::with_menus(transfer_menus()).build();
    let premium = net.udp_phone(PREMIUM);
    let far = net.udp_phone(TRANSFER_TO);
    net.phone(far).answer_invites = common::sim::AnswerMode::Answer {
        ring: ms(500),
        sdp: common::sim::sdp(
            "127.0.0.1:43000".parse().expect("literal"),
            "0 101",
            "a=sendrecv",
        ),
    };
    let p = net.udp_phone("192.0.2.60:5060");

    // 1. An INVITE for an international number at another host, routed through the premium line.
    net.phone(p).dial_host = PREMIUM.to_owned();
    let offer = net.offer(p);
    let out = net.phone(p).invite_with(
        "+882355555555",
        Some(&offer),
        &format!("Route: <sip:{PREMIUM};lr>\nDiversion: <sip:+882355555555@{PREMIUM}>"),
    );
    net.advance(ms(500));
    // Answered or refused as helpline sees fit (the dialed number picks a menu at most).
    let codes = net.phone(p).codes_to(out, "INVITE");
    assert!(codes.iter().any(|&c| c >= 200), "{codes:?}");
    net.phone(p).dial_host = net.local.to_string();

    // 2. A real call; then a REFER to the premium number.
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    let refer_to = format!("Refer-To: <sip:+882355555555@{PREMIUM}>");
    let refer = net.phone(p).in_dialog(c, "REFER", &refer_to, "");
    net.drive();
    let answer = net.phone(p).response_to(c, "REFER", refer).map(|r| r.code);
    assert!(
        answer.is_some_and(|code| code >= 400),
        "REFER answered {answer:?}"
    );

    // 3. A re-INVITE naming the premium line as Contact, with transfer headers.
    let offer = net.offer(p);
    let extra = format!("{refer_to}\nDiversion: <sip:x@{PREMIUM}>\nAlso: <sip:x@{PREMIUM}>");
    net.phone(p).in_dialog(c, "INVITE", &extra, &offer);
    net.advance(ms(200));

    // 4. The menus' transfer key, after all that: the call goes to the menus' URI.
    let m = net.media_id(p, c);
    net.key(m, '7');
    net.advance(Duration::from_secs(2));

    // 5. Another caller types the premium number's digits into the menus.
    let offer = net.offer(p);
    let c2 = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    net.phone(p).ack(c2, None);
    net.advance(ms(300));
    let m2 = net.media_id(p, c2);
    for key in "00882355555555#".chars() {
        net.key(m2, key);
        net.advance(ms(100));
    }
    net.advance(Duration::from_secs(20));

    let invites: Vec<(String, String)> = net
        .transmits
        .iter()
        .filter(|(_, _, text)| text.starts_with("INVITE "))
        .map(|(_, to, text)| {
            let line = text.lines().next().unwrap_or_default().to_owned();
            (to.addr.to_string(), line)
        })
        .collect();
    assert_eq!(
        invites.len(),
        1,
        "{invites:?}\n{}",
        net.phone(p).transcript()
    );
    for (to, line) in &invites {
        assert_eq!(to, TRANSFER_TO, "{line}");
        assert_eq!(line, &format!("INVITE {TRANSFER_URI} SIP/2.0"));
    }
    let to_premium: Vec<_> = net
        .transmits
        .iter()
        .filter(|(_, to, text)| to.addr.to_string() == PREMIUM && !text.starts_with("SIP/2.0 "))
        .collect();
    assert!(
        to_premium.is_empty(),
        "requests sent to the premium line: {to_premium:?}"
    );
    assert!(net.phones[premium.0].calls.is_empty());
}
