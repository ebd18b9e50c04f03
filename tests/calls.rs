//! Whole calls through helpline's real call layer on a simulated clock (see `tests/common/sim.rs`):
//! answer, menus, routing, CANCEL, missing ACKs, offers in the ACK, re-INVITEs, hold, keys, drain, and
//! one test per call defect of issue 7. Each asserts what a caller observes — the responses and requests
//! helpline sends, the media commands it issues, its CDR — at exact simulated instants; none sleeps.
mod common;

use std::time::Duration;

use common::sim::{sdp, sdp_lines, sdp_port, AnswerMode, CallRef, PhoneId, SimNet, DE, GB};
use helpline::call::EndReason;
use helpline::media::codec::Law;
use helpline::media::session::{DigitMethod, MediaEvent};
use helpline::sip::endpoint::Transport;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Places a call with an SDP offer, checks it is answered at once, and ACKs it.
fn answered(net: &mut SimNet, p: PhoneId, user: &str) -> CallRef {
    let offer = net.offer(p);
    let c = net.phone(p).invite(user, Some(&offer));
    net.drive();
    assert_eq!(
        net.phone(p).codes_to(c, "INVITE"),
        [100, 200],
        "{}",
        net.phone(p).transcript()
    );
    net.phone(p).ack(c, None);
    net.drive();
    c
}

/// Times (since t0, in ms) at which the phone received a response with this code.
fn times_ms(net: &mut SimNet, p: PhoneId, c: CallRef, code: u16) -> Vec<u128> {
    let t0 = net.t0;
    net.phone(p)
        .times_of(c, code)
        .iter()
        .map(|t| (*t - t0).as_millis())
        .collect()
}

// ── whole calls ──

#[test]
fn answer_menu_route_bye() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    let ph = net.phone(p);
    assert_eq!(ph.codes_to(c, "INVITE"), [100, 200], "{}", ph.transcript());
    let ok = ph.responses_to(c, "INVITE")[1].clone();
    assert!(
        ok.to().tag().is_some_and(|t| !t.is_empty()),
        "200 without To tag"
    );
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(!ok.contacts().is_empty(), "200 without Contact");
    let m_line = sdp_lines(&ok.body, "m=audio");
    assert_eq!(m_line.len(), 1, "{m_line:?}");
    assert!(
        m_line[0].ends_with("RTP/AVP 0 101"),
        "answer keeps PCMU + telephone-event: {m_line:?}"
    );

    let m = net.media_id(p, c);
    let rtp = net.rtp_addr(p);
    let s = net.media.session(m);
    assert_eq!(s.configs.len(), 1);
    assert_eq!(
        s.config().remote,
        Some(rtp),
        "media sends to the SDP address"
    );
    assert_eq!(s.config().law, Law::Ulaw);
    assert_eq!(s.config().dtmf_payload_type, Some(101));
    assert!(s.plays.is_empty(), "nothing plays before the ACK");

    net.phone(p).ack(c, None);
    net.drive();
    net.advance(ms(299));
    assert!(
        net.media.session(m).plays.is_empty(),
        "the first prompt waits 300 ms for the caller's RTP"
    );
    net.advance(ms(1));
    let plays = net.media.session(m).plays.clone();
    assert_eq!(plays.len(), 1, "{plays:?}");
    assert_eq!(net.since_t0(plays[0].0), ms(300));

    // Key 3 during the greeting: seller disputes.
    net.advance(ms(400));
    net.key(m, '3');
    net.run_until_idle(secs(60));
    let byes = net.phone(p).requests(c, "BYE");
    assert_eq!(byes.len(), 1, "{}", net.phone(p).transcript());
    assert_eq!(net.calls.call_count(), 0);
    assert!(net.media.session(m).closed_at.is_some(), "media closed");

    let cdr = net.cdr(p, c);
    assert_eq!(cdr.route.as_deref(), Some("europe.seller-disputes"));
    assert_eq!(cdr.region.as_deref(), Some("europe"));
    assert_eq!(cdr.menu_path, ["main"]);
    assert_eq!(cdr.language.as_deref(), Some("en"));
    assert_eq!(cdr.final_status, 200);
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    assert!(cdr.answer.is_some());
    assert_eq!(cdr.dialed, GB);
    let digits: Vec<(char, &str)> = cdr.digits.iter().map(|d| (d.digit, d.method)).collect();
    assert_eq!(digits, [('3', "rfc4733")]);
}

#[test]
fn first_prompt_starts_at_the_callers_first_rtp() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    let acked = net.now;
    net.advance(ms(40));
    let m = net.media_id(p, c);
    assert!(net.media.session(m).plays.is_empty());
    net.first_rtp(p, m);
    let plays = net.media.session(m).plays.clone();
    assert_eq!(
        plays.iter().map(|(at, _)| *at - acked).collect::<Vec<_>>(),
        [ms(40)]
    );
    // Played on the simulated clock by the real media session: 50 packets a second, to the caller.
    net.advance(ms(500));
    let s = net.media.session(m);
    // Frames at 40, 60, …, 540 ms after the ACK.
    assert_eq!(s.packets_between(acked, net.now), 26);
    assert!(s.packets.iter().all(|(_, to)| *to == net.rtp_addr(p)));
}

#[test]
fn silence_on_rtp_and_sip_releases_the_call() {
    let mut net = SimNet::shipped()
        .config(|cfg| cfg.rtp_timeout = secs(5))
        .build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    let m = net.media_id(p, c);
    // The caller still talks SIP (a key by INFO at 3 s): RTP silence at 5 s alone does not end the call.
    net.advance(secs(3));
    net.phone(p).info_dtmf(c, '0');
    net.advance(secs(2));
    net.media_event(m, MediaEvent::RtpTimeout);
    assert!(
        net.phone(p).requests(c, "BYE").is_empty(),
        "{}",
        net.phone(p).transcript()
    );
    // 5 s after its last SIP, it does.
    net.advance(secs(3));
    net.media_event(m, MediaEvent::RtpTimeout);
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    net.run_until_idle(secs(60));
    assert_eq!(net.cdr(p, c).end_reason, Some(EndReason::RtpTimeout));
}

#[test]
fn cancel_before_the_answer_gets_487_and_a_cancel_cdr() {
    let mut net = SimNet::shipped().ring(secs(2)).build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180]);
    net.advance(ms(500));
    net.phone(p).cancel(c);
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "CANCEL"), [200]);
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180, 487]);
    // Past the ring time: the cancelled call is never answered.
    net.run_until_idle(secs(120));
    let ph = net.phone(p);
    assert_eq!(
        ph.codes_to(c, "INVITE"),
        [100, 180, 487],
        "{}",
        ph.transcript()
    );
    assert!(ph.requests(c, "BYE").is_empty());
    assert_eq!(net.calls.call_count(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.final_status, 487);
    assert_eq!(cdr.end_reason, Some(EndReason::Cancel));
    assert!(cdr.answer.is_none());
    for s in net.media.sessions.values() {
        assert!(s.closed_at.is_some(), "media session {:?} left open", s.id);
        assert!(s.plays.is_empty());
    }
}

#[test]
fn cancel_after_the_200_leaves_the_call_to_be_ended_by_bye() {
    let mut net = SimNet::shipped().ring(secs(2)).build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    net.advance(secs(2));
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180, 200]);
    // The CANCEL crossed the 200 on the wire (RFC 3261 §9.2: it has no effect on an answered INVITE).
    net.phone(p).cancel(c);
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "CANCEL"), [200]);
    net.phone(p).ack(c, None);
    net.drive();
    net.advance(secs(1));
    let ph = net.phone(p);
    assert!(
        !ph.codes_to(c, "INVITE").contains(&487),
        "{}",
        ph.transcript()
    );
    assert!(ph.requests(c, "BYE").is_empty(), "the call goes on");
    let m = net.media_id(p, c);
    assert_eq!(net.media.session(m).plays.len(), 1, "the menu runs");
    let bye = net.phone(p).bye(c);
    net.drive();
    assert_eq!(
        net.phone(p).response_to(c, "BYE", bye).map(|r| r.code),
        Some(200)
    );
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.final_status, 200);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert!(net.media.session(m).closed_at.is_some());
}

#[test]
fn no_ack_retransmits_the_2xx_then_releases_with_bye_at_64_t1() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.run_until_idle(secs(120));
    // T1 = 500 ms, doubling up to T2 = 4 s (RFC 3261 §13.3.1.4).
    assert_eq!(
        times_ms(&mut net, p, c, 200)
            .into_iter()
            .filter(|&t| t < 32_000)
            .collect::<Vec<_>>(),
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let t0 = net.t0;
    let byes: Vec<Duration> = net
        .phone(p)
        .requests(c, "BYE")
        .iter()
        .map(|(at, _)| *at - t0)
        .collect();
    assert_eq!(byes, [secs(32)], "{}", net.phone(p).transcript());
    assert!(
        times_ms(&mut net, p, c, 200).iter().all(|&t| t <= 32_000),
        "no 2xx after the BYE"
    );
    let m = net.media_id(p, c);
    assert!(
        net.media.session(m).plays.is_empty(),
        "an unconfirmed call hears nothing"
    );
    assert_eq!(net.calls.call_count(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::NoAck));
    assert_eq!(cdr.final_status, 200);
}

#[test]
fn invite_without_sdp_gets_our_offer_and_the_answer_in_the_ack_configures_media() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = net.phone(p).invite(GB, None);
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    let ok = net.phone(p).responses_to(c, "INVITE")[1].clone();
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    let m_line = sdp_lines(&ok.body, "m=audio");
    assert_eq!(m_line.len(), 1);
    for pt in [" 0", " 8", " 101"] {
        assert!(m_line[0].contains(pt), "offer lacks {pt}: {m_line:?}");
    }
    let m = net.media_id(p, c);
    assert_eq!(net.media.session(m).config().remote, None, "no address yet");

    let rtp = net.rtp_addr(p);
    let answer = sdp(rtp, "8 101", "a=sendrecv");
    net.phone(p).ack(c, Some(&answer));
    net.drive();
    let s = net.media.session(m);
    assert_eq!(
        s.configs.len(),
        2,
        "the ACK's answer configures the session"
    );
    assert_eq!(s.config().remote, Some(rtp));
    assert_eq!(s.config().law, Law::Alaw);
    assert_eq!(s.config().payload_type, 8);
    assert_eq!(s.config().dtmf_payload_type, Some(101));
    net.advance(ms(300));
    assert_eq!(net.media.session(m).plays.len(), 1, "and the menu starts");
    assert!(net.phone(p).requests(c, "BYE").is_empty());
}

#[test]
fn invite_without_sdp_and_ack_without_sdp_is_released() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = net.phone(p).invite(GB, None);
    net.drive();
    net.phone(p).ack(c, None);
    net.drive();
    let t0 = net.t0;
    let byes: Vec<Duration> = net
        .phone(p)
        .requests(c, "BYE")
        .iter()
        .map(|(at, _)| *at - t0)
        .collect();
    assert_eq!(byes, [Duration::ZERO], "{}", net.phone(p).transcript());
    net.run_until_idle(secs(60));
    let m = net.media_id(p, c);
    assert!(net.media.session(m).plays.is_empty());
    assert!(net.media.session(m).closed_at.is_some());
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::Error));
}

#[test]
fn reinvite_to_pcma_reconfigures_media_and_answers_pcma() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    let port = net.media.session(m).port;
    let rtp = net.rtp_addr(p);
    let offer = sdp(rtp, "8 101", "a=sendrecv");
    let cseq = net.phone(p).reinvite(c, Some(&offer));
    net.drive();
    let ok = net
        .phone(p)
        .response_to(c, "INVITE", cseq)
        .cloned()
        .unwrap_or_else(|| panic!("no answer to the re-INVITE"));
    assert_eq!(ok.code, 200);
    assert_eq!(sdp_port(&ok.body), Some(port), "same RTP port");
    assert!(sdp_lines(&ok.body, "m=audio")[0].ends_with("RTP/AVP 8 101"));
    assert!(!ok.contacts().is_empty());
    net.phone(p).ack(c, None);
    net.drive();
    let s = net.media.session(m);
    assert_eq!(s.config().law, Law::Alaw);
    assert_eq!(s.config().payload_type, 8);
    assert_eq!(s.config().remote, Some(rtp));
    assert!(s.stops.is_empty(), "the prompt goes on");
    assert!(net.phone(p).requests(c, "BYE").is_empty());
}

/// Holds the call with `hold_sdp` 500 ms into a 2 s greeting for 10 s, then resumes it.
fn hold_and_resume(hold_sdp: impl Fn(std::net::SocketAddr) -> String) {
    let mut net = SimNet::shipped().prompt_len(secs(2)).build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    assert_eq!(net.media.session(m).plays.len(), 1);
    let greeting = net.media.session(m).plays[0].1.clone();
    net.advance(ms(500));

    let rtp = net.rtp_addr(p);
    let cseq = net.phone(p).reinvite(c, Some(&hold_sdp(rtp)));
    net.drive();
    let ok = net
        .phone(p)
        .response_to(c, "INVITE", cseq)
        .cloned()
        .expect("an answer to the hold");
    assert_eq!(ok.code, 200);
    // RFC 3264 §6.1 / §8.4: the mirror of a held offer, still receiving.
    for other in ["a=sendrecv", "a=sendonly", "a=inactive"] {
        assert!(
            sdp_lines(&ok.body, other).is_empty(),
            "{other} in the hold answer"
        );
    }
    assert_eq!(sdp_lines(&ok.body, "a=recvonly"), ["a=recvonly"]);
    net.phone(p).ack(c, None);
    net.drive();
    let held = net.now;
    // On hold for 10 s: nothing is sent, the prompt neither ends nor starts again, and the call stays.
    net.advance(secs(10));
    let s = net.media.session(m);
    assert!(
        s.packets_between(held - ms(500), held) >= 20,
        "the greeting was streaming before the hold"
    );
    assert_eq!(s.packets_between(held, net.now), 0, "RTP sent while held");
    assert_eq!(s.plays.len(), 1, "{:?}", s.plays);
    assert!(
        s.finished.is_empty(),
        "the greeting is paused, not played to nobody"
    );
    assert!(net.phone(p).requests(c, "BYE").is_empty());

    let cseq = net
        .phone(p)
        .reinvite(c, Some(&sdp(rtp, "0 101", "a=sendrecv")));
    net.drive();
    let ok = net
        .phone(p)
        .response_to(c, "INVITE", cseq)
        .cloned()
        .expect("an answer to the resume");
    assert_eq!(ok.code, 200);
    assert_eq!(sdp_lines(&ok.body, "a=sendrecv"), ["a=sendrecv"]);
    net.phone(p).ack(c, None);
    net.drive();
    let resumed = net.now;
    assert_eq!(net.media.session(m).config().remote, Some(rtp));
    // The greeting continues where it was: 1.5 s of its 2 s were left (give or take the frame that
    // was due at the instant of the hold).
    net.advance(secs(3));
    let s = net.media.session(m);
    assert_eq!(s.plays[0].1, greeting, "not restarted");
    assert!(
        s.packets_between(resumed, resumed + ms(100)) >= 4,
        "streaming again"
    );
    let (at, name) = s
        .finished
        .first()
        .cloned()
        .expect("the greeting ends after the resume");
    assert_eq!(name, greeting);
    let left = at - resumed;
    assert!(
        left >= ms(1480) && left <= ms(1520),
        "the greeting ended {left:?} after the resume, not 1.5 s"
    );
}

#[test]
fn hold_with_sendonly_and_resume() {
    hold_and_resume(|rtp| sdp(rtp, "0 101", "a=sendonly"));
}

#[test]
fn hold_with_zero_address_and_resume() {
    hold_and_resume(|rtp| {
        sdp(rtp, "0 101", "a=sendrecv")
            .replace(&format!("c=IN IP4 {}", rtp.ip()), "c=IN IP4 0.0.0.0")
    });
}

#[test]
fn info_and_rfc4733_keys_navigate_the_menus() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    net.advance(ms(200));
    // 4 by INFO: the tech sub-menu.
    let cseq = net.phone(p).info_dtmf(c, '4');
    net.drive();
    assert_eq!(
        net.phone(p).response_to(c, "INFO", cseq).map(|r| r.code),
        Some(200)
    );
    let s = net.media.session(m);
    assert_eq!(s.stops.len(), 1, "barge-in stops the greeting");
    assert_eq!(
        s.played().last().copied(),
        Some("tech-greeting"),
        "{:?}",
        s.plays
    );
    net.advance(ms(300));
    // 1 by RFC 4733: technical support.
    net.key(m, '1');
    net.run_until_idle(secs(60));
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.route.as_deref(), Some("europe.tech"));
    assert_eq!(cdr.menu_path, ["main", "tech"]);
    // The category the caller chose travels with the call (the agent sees X-Helpline-Category).
    assert_eq!(
        cdr.variables.get("category").map(String::as_str),
        Some("app-and-website")
    );
    let digits: Vec<(char, &str)> = cdr.digits.iter().map(|d| (d.digit, d.method)).collect();
    assert_eq!(digits, [('4', "info"), ('1', "rfc4733")]);
}

#[test]
fn drain_refuses_new_calls_and_ends_every_call_exactly_once() {
    // Queues as the queue machine's defaults (nobody serving a queue → released at once, no
    // overflow prompt), so that the routed caller's BYE falls inside the drain.
    let mut net = SimNet::shipped()
        .ring(secs(2))
        .queue_defaults(helpline::queue::QueueConfig::default())
        .build();
    let menu = net.udp_phone("127.0.0.1:40001");
    let unacked = net.udp_phone("127.0.0.1:40002");
    let ringing = net.udp_phone("127.0.0.1:40003");
    let late = net.udp_phone("127.0.0.1:40004");
    let new = net.udp_phone("127.0.0.1:40005");
    let invite = |net: &mut SimNet, p: PhoneId| {
        let offer = net.offer(p);
        let c = net.phone(p).invite(GB, Some(&offer));
        net.drive();
        c
    };

    // 0 s: in the menu once answered (2 s) and ACKed.
    let c_menu = invite(&mut net, menu);
    net.advance(ms(1500));
    // 1.5 s: answered at 3.5 s, not ACKed until the end.
    let c_unacked = invite(&mut net, unacked);
    net.advance(ms(500));
    net.phone(menu).ack(c_menu, None);
    net.drive();
    net.advance(ms(1600));
    // 3.6 s: ringing when the drain starts, answered (5.6 s) during it.
    let c_ringing = invite(&mut net, ringing);
    net.advance(ms(300));
    // 3.9 s: still ringing (until 5.9 s) when every call is hung up at 5.7 s.
    let c_late = invite(&mut net, late);
    net.advance(ms(100));
    let mut codes = net.phone(unacked).codes_to(c_unacked, "INVITE");
    codes.dedup(); // the unacknowledged 200 is retransmitted
    assert_eq!(codes, [100, 180, 200]);
    assert_eq!(net.phone(ringing).codes_to(c_ringing, "INVITE"), [100, 180]);

    // 4.0 s: drain. A new call is refused with a Retry-After.
    let now = net.now;
    net.calls.handle_drain(now);
    net.drive();
    let c_new = invite(&mut net, new);
    let refused = net
        .phone(new)
        .responses_to(c_new, "INVITE")
        .last()
        .cloned()
        .expect("an answer");
    assert_eq!(refused.code, 503);
    assert!(
        refused.header("Retry-After").is_some(),
        "503 without Retry-After"
    );

    // Calls in progress go on: the ringing one is answered, the menu caller is routed and released.
    net.advance(ms(1600));
    assert_eq!(
        net.phone(ringing).codes_to(c_ringing, "INVITE"),
        [100, 180, 200]
    );
    net.phone(ringing).ack(c_ringing, None);
    net.drive();
    let m = net.media_id(menu, c_menu);
    net.key(m, '3');
    net.advance(ms(100));
    assert_eq!(
        net.phone(menu).requests(c_menu, "BYE").len(),
        1,
        "routed during the drain"
    );
    assert!(net.phone(ringing).requests(c_ringing, "BYE").is_empty());

    // 5.7 s: the drain time is over.
    let now = net.now;
    net.calls.handle_hangup_all(now);
    net.drive();
    assert_eq!(net.phone(ringing).requests(c_ringing, "BYE").len(), 1);
    assert_eq!(
        net.phone(late).codes_to(c_late, "INVITE").last(),
        Some(&480)
    );
    assert!(
        net.phone(unacked).requests(c_unacked, "BYE").is_empty(),
        "no BYE before the ACK (RFC 3261 §15)"
    );
    net.advance(ms(100));
    net.phone(unacked).ack(c_unacked, None);
    net.drive();
    let t0 = net.t0;
    let byes: Vec<Duration> = net
        .phone(unacked)
        .requests(c_unacked, "BYE")
        .iter()
        .map(|(at, _)| *at - t0)
        .collect();
    assert_eq!(byes, [ms(5800)], "BYE right after the ACK");
    net.run_until_idle(secs(120));
    assert_eq!(net.calls.call_count(), 0);
    for (p, c) in [
        (menu, c_menu),
        (unacked, c_unacked),
        (ringing, c_ringing),
        (late, c_late),
        (new, c_new),
    ] {
        assert_eq!(net.cdrs_of(p, c).len(), 1, "{:#?}", net.cdrs);
    }
    assert_eq!(net.cdrs.len(), 5);
    assert_eq!(
        net.cdr(menu, c_menu).route.as_deref(),
        Some("europe.seller-disputes")
    );
    assert_eq!(net.cdr(new, c_new).final_status, 503);
    assert_eq!(net.cdr(late, c_late).final_status, 480);
    assert_eq!(net.cdr(late, c_late).answer, None);
    for s in net.media.sessions.values() {
        assert!(s.closed_at.is_some(), "media session {:?} left open", s.id);
    }
}

// ── the defects of issue 7, one test each ──

#[test]
fn typed_ahead_info_key_before_the_first_prompt_reaches_the_menu() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    let m = net.media_id(p, c);
    // The INFO arrives 300 ms after the ACK, the instant the first prompt is due, and is read first.
    net.advance_racing(ms(300));
    assert!(
        net.media.session(m).plays.is_empty(),
        "the menu has not started"
    );
    let cseq = net.phone(p).info_dtmf(c, '3');
    net.drive();
    assert_eq!(
        net.phone(p).response_to(c, "INFO", cseq).map(|r| r.code),
        Some(200)
    );
    net.run_until_idle(secs(120));
    let t0 = net.t0;
    let bye_at = net
        .phone(p)
        .requests(c, "BYE")
        .first()
        .map(|(at, _)| *at - t0);
    assert!(
        bye_at.is_some_and(|t| t < secs(5)),
        "the caller is routed, not left in the menu (BYE at {bye_at:?})\n{}",
        net.phone(p).transcript()
    );
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.route.as_deref(), Some("europe.seller-disputes"));
    assert_eq!(cdr.digits.len(), 1);
}

#[test]
fn typed_ahead_keys_answer_the_language_question_then_the_menu_in_order() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, DE);
    net.advance(ms(100));
    net.phone(p).info_dtmf(c, '2');
    net.drive();
    net.advance(ms(150));
    net.phone(p).info_dtmf(c, '3');
    net.drive();
    net.run_until_idle(secs(120));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.language.as_deref(), Some("en"), "2 chose English");
    assert_eq!(
        cdr.route.as_deref(),
        Some("europe.seller-disputes"),
        "3 reached the menu"
    );
}

#[test]
fn contact_over_tcp_names_the_transport_and_the_local_address() {
    let mut net = SimNet::shipped().build();
    let p = net.add_phone(
        "127.0.0.9:41000",
        Transport::Tcp(7),
        "127.0.0.5:5060".parse().expect("literal"),
    );
    net.phone(p).dial_host = "helpline.example".to_owned();
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    let ok = net
        .phone(p)
        .responses_to(c, "INVITE")
        .last()
        .cloned()
        .expect("a 200");
    assert_eq!(ok.code, 200);
    let contact = &ok.contacts()[0].uri;
    assert_eq!(contact.host, "127.0.0.5", "Contact: {contact}");
    assert_eq!(contact.port, Some(5060));
    assert_eq!(
        contact.param("transport"),
        Some(Some("tcp")),
        "Contact: {contact}"
    );
    assert_eq!(sdp_lines(&ok.body, "c="), ["c=IN IP4 127.0.0.5"]);
    // The ACK and the BYE follow the Contact, over TCP.
    net.phone(p).ack(c, None);
    net.drive();
    net.advance(ms(300));
    let bye = net.phone(p).bye(c);
    net.drive();
    assert_eq!(
        net.phone(p).response_to(c, "BYE", bye).map(|r| r.code),
        Some(200)
    );
    assert!(net.undelivered.is_empty());
}

#[test]
fn contact_over_udp_names_the_local_address_without_a_transport() {
    // `serve --listen 0.0.0.0:5060`: only the address each request arrived on names helpline.
    let mut net = SimNet::shipped()
        .config(|cfg| cfg.local = "0.0.0.0:5060".parse().expect("literal"))
        .build();
    let p = net.add_phone(
        "127.0.0.9:41000",
        Transport::Udp,
        "127.0.0.5:5060".parse().expect("literal"),
    );
    net.phone(p).dial_host = "helpline.example".to_owned();
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    let ok = net
        .phone(p)
        .responses_to(c, "INVITE")
        .last()
        .cloned()
        .expect("a 200");
    let contact = &ok.contacts()[0].uri;
    assert_eq!(contact.host, "127.0.0.5", "Contact: {contact}");
    assert_ne!(contact.param("transport"), Some(Some("tcp")));
    assert_eq!(sdp_lines(&ok.body, "c="), ["c=IN IP4 127.0.0.5"]);
}

#[test]
fn advertise_ip_is_what_contact_and_sdp_name() {
    let mut net = SimNet::shipped()
        .config(|cfg| cfg.advertise_ip = Some("192.0.2.10".parse().expect("literal")))
        .build();
    let p = net.add_phone(
        "127.0.0.9:41000",
        Transport::Udp,
        "127.0.0.5:5060".parse().expect("literal"),
    );
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    let ok = net
        .phone(p)
        .responses_to(c, "INVITE")
        .last()
        .cloned()
        .expect("a 200");
    assert_eq!(ok.contacts()[0].uri.host, "192.0.2.10");
    assert_eq!(sdp_lines(&ok.body, "c="), ["c=IN IP4 192.0.2.10"]);
}

#[test]
fn ack_with_a_wrong_to_tag_does_not_confirm_the_call() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    net.advance(ms(100));
    net.phone(p).ack_with_to_tag(c, "not-helplines-tag", None);
    net.drive();
    net.advance(ms(1600));
    assert_eq!(
        times_ms(&mut net, p, c, 200),
        [0, 500, 1500],
        "the 2xx is still retransmitted"
    );
    let m = net.media_id(p, c);
    assert!(
        net.media.session(m).plays.is_empty(),
        "the call is not confirmed"
    );
    // The right ACK confirms it.
    net.phone(p).ack(c, None);
    net.drive();
    let acked = net.now;
    net.advance(ms(300));
    let plays = net.media.session(m).plays.clone();
    assert_eq!(
        plays.iter().map(|(at, _)| *at - acked).collect::<Vec<_>>(),
        [ms(300)]
    );
    // … and ends the retransmissions: the call is never released as unacknowledged (it goes on
    // through the menu, which may end it by its own timeouts).
    net.advance(secs(40));
    assert_eq!(times_ms(&mut net, p, c, 200), [0, 500, 1500]);
    assert!(
        net.cdrs_of(p, c)
            .iter()
            .all(|cdr| cdr.end_reason != Some(EndReason::NoAck)),
        "{:?}",
        net.cdrs_of(p, c)
    );
}

#[test]
fn bye_in_the_early_dialog_is_honoured() {
    let mut net = SimNet::shipped().ring(secs(5)).build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180]);
    net.advance(secs(1));
    let bye = net.phone(p).bye(c);
    net.drive();
    assert_eq!(
        net.phone(p).response_to(c, "BYE", bye).map(|r| r.code),
        Some(200),
        "{}",
        net.phone(p).transcript()
    );
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180, 487]);
    net.run_until_idle(secs(120));
    assert_eq!(
        net.phone(p).codes_to(c, "INVITE"),
        [100, 180, 487],
        "never answered"
    );
    assert_eq!(net.calls.call_count(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.final_status, 487);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert!(cdr.answer.is_none());
}

#[test]
fn cdr_keeps_the_first_64_keys_and_counts_the_rest() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    // 0 repeats the menu: the caller can press it forever.
    for i in 0..100 {
        net.advance(ms(250));
        let method = if i % 2 == 0 {
            DigitMethod::Rfc4733
        } else {
            DigitMethod::Inband
        };
        net.key_by(m, '0', method);
    }
    assert!(
        net.phone(p).requests(c, "BYE").is_empty(),
        "still in the menu"
    );
    net.phone(p).bye(c);
    net.drive();
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.digits.len(), 64);
    assert_eq!(cdr.digits_dropped, 36);
    assert_eq!(cdr.digits[0].method, "rfc4733");
    assert_eq!(cdr.digits[1].method, "inband");
    let line = serde_json::to_string(cdr).expect("a CDR serialises");
    assert!(line.len() < 8 * 1024, "CDR line of {} bytes", line.len());
}

#[test]
fn rejected_call_cdr_names_the_region() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    // G.729 only: nothing helpline can use.
    let offer = sdp(net.rtp_addr(p), "18", "a=sendrecv") + "a=rtpmap:18 G729/8000\r\n";
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(
        net.phone(p).codes_to(c, "INVITE"),
        [100, 488],
        "{}",
        net.phone(p).transcript()
    );
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.final_status, 488);
    assert_eq!(cdr.region.as_deref(), Some("europe"));
    assert_eq!(cdr.end_reason, Some(EndReason::Error));
    assert_eq!(net.calls.call_count(), 0);
}

/// Every response the phone got carries `Server: <text>` and no version; every request `User-Agent`.
fn assert_identifies_as(net: &mut SimNet, p: PhoneId, text: &str) {
    let ph = net.phone(p);
    assert!(!ph.inbox.is_empty());
    for m in &ph.inbox {
        let (header, other) = match &m.message {
            helpline::sip::message::SipMessage::Response(_) => ("Server", "User-Agent"),
            helpline::sip::message::SipMessage::Request(_) => ("User-Agent", "Server"),
        };
        let values = match &m.message {
            helpline::sip::message::SipMessage::Response(r) => r.headers.get_all(header),
            helpline::sip::message::SipMessage::Request(r) => r.headers.get_all(header),
        };
        assert_eq!(values, [text], "{header} in:\n{}", m.text);
        assert!(
            !m.text.contains("helpline/"),
            "a versioned {other} or {header} in:\n{}",
            m.text
        );
    }
}

#[test]
fn responses_and_requests_say_helpline_without_a_version() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    net.phone(p).options();
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    net.phone(p).info_dtmf(c, '3');
    net.run_until_idle(secs(60));
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    assert_identifies_as(&mut net, p, "helpline");
}

#[test]
fn server_header_text_is_configurable() {
    let mut net = SimNet::shipped()
        .config(|cfg| cfg.server_header = "Acme IVR".to_owned())
        .build();
    let p = net.udp_phone("127.0.0.1:40000");
    net.phone(p).options();
    let c = answered(&mut net, p, GB);
    net.advance(ms(300));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    assert_identifies_as(&mut net, p, "Acme IVR");
}

// ── the agent phone (used by the agents issue) ──

#[test]
fn scripted_agent_phone_answers_and_declines() {
    use common::sim::ScriptedPhone;
    use helpline::sip::message::{parse_datagram, SipMessage};
    let t0 = std::time::Instant::now();
    let server: std::net::SocketAddr = "127.0.0.1:5060".parse().expect("literal");
    let invite = |branch: &str, call: &str| {
        format!(
            "INVITE sip:agent@127.0.0.1:42000 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n\
             From: <sip:helpline@127.0.0.1:5060>;tag=hl1\r\n\
             To: <sip:agent@127.0.0.1:42000>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:helpline@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut agent = ScriptedPhone::new(
        "127.0.0.1:42000".parse().expect("literal"),
        Transport::Udp,
        server,
        t0,
    );
    let answer = sdp(
        "127.0.0.1:43000".parse().expect("literal"),
        "0 101",
        "a=sendrecv",
    );
    agent.answer_invites = AnswerMode::Answer {
        ring: secs(2),
        sdp: answer.clone(),
    };
    agent.handle_incoming(t0, invite("z9hG4bK-a", "agent-1").as_bytes());
    let codes = |bytes: Vec<u8>| match parse_datagram(&bytes) {
        Ok(SipMessage::Response(r)) => (r.code, r.to().tag().map(str::to_owned), r.body),
        other => panic!("{other:?}"),
    };
    let (code, tag, _) = codes(agent.poll_outgoing().expect("a 180"));
    assert_eq!(code, 180);
    assert!(tag.is_some());
    assert!(agent.poll_outgoing().is_none());
    assert_eq!(agent.poll_timeout(), Some(t0 + secs(2)));
    agent.handle_timeout(t0 + secs(2));
    let (code, tag2, body) = codes(agent.poll_outgoing().expect("a 200"));
    assert_eq!((code, tag2), (200, tag));
    assert_eq!(body, answer.as_bytes());

    agent.answer_invites = AnswerMode::Decline;
    agent.handle_incoming(t0, invite("z9hG4bK-b", "agent-2").as_bytes());
    assert_eq!(codes(agent.poll_outgoing().expect("a 486")).0, 486);
}

// ── RFC 3261 conformance through the call layer ──

/// Responses the phone got to the request with this Call-ID, as (code, wire text).
fn replies_for(net: &mut SimNet, p: PhoneId, call_id: &str) -> Vec<(u16, String)> {
    net.phone(p)
        .inbox
        .iter()
        .filter_map(|m| m.response().map(|r| (r, &m.text)))
        .filter(|(r, _)| r.call_id() == call_id)
        .map(|(r, text)| (r.code, text.clone()))
        .collect()
}

/// A request outside any dialog from the phone at 127.0.0.1:40000, with extra header lines.
fn out_of_dialog(
    net: &mut SimNet,
    p: PhoneId,
    method: &str,
    uri: &str,
    call_id: &str,
    extra: &str,
) {
    let head = format!(
        "{method} {uri} SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{call_id};rport
        Max-Forwards: 70
        From: <sip:caller@127.0.0.1:40000>;tag=t-{call_id}
        To: <sip:helpline@127.0.0.1>
        Call-ID: {call_id}
        CSeq: 1 {method}
        {extra}"
    );
    net.phone(p).send_text(&head, "");
    net.drive();
}

#[test]
fn unserved_uri_schemes_get_416_options_included() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    out_of_dialog(&mut net, p, "OPTIONS", "sips:helpline@127.0.0.1", "s1", "");
    out_of_dialog(&mut net, p, "OPTIONS", "http://helpline.invalid/", "s2", "");
    out_of_dialog(&mut net, p, "OPTIONS", "sip:helpline@127.0.0.1", "s3", "");
    for id in ["s1", "s2"] {
        let replies = replies_for(&mut net, p, id);
        assert_eq!(replies.len(), 1, "{id}: {replies:?}");
        assert!(
            replies[0]
                .1
                .starts_with("SIP/2.0 416 Unsupported URI Scheme\r\n"),
            "{}",
            replies[0].1
        );
    }
    assert_eq!(replies_for(&mut net, p, "s3")[0].0, 200);
}

#[test]
fn unknown_require_gets_420_on_options_but_not_on_cancel() {
    let mut net = SimNet::shipped().ring(secs(5)).build();
    let p = net.udp_phone("127.0.0.1:40000");
    out_of_dialog(
        &mut net,
        p,
        "OPTIONS",
        "sip:helpline@127.0.0.1",
        "r1",
        "Require: 100rel, x-foo",
    );
    let replies = replies_for(&mut net, p, "r1");
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].1.starts_with("SIP/2.0 420 Bad Extension\r\n"));
    assert!(
        replies[0].1.contains("Unsupported: 100rel, x-foo\r\n"),
        "{}",
        replies[0].1
    );
    // A CANCEL is never refused for its Require (RFC 3261 §8.2.2.3): the ringing call is cancelled.
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180]);
    net.phone(p).cancel(c);
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "CANCEL"), [200]);
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 180, 487]);
}

#[test]
fn invite_whose_accept_excludes_sdp_gets_406() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net
        .phone(p)
        .invite_with(GB, Some(&offer), "Accept: text/plain, application/sdp;q=0");
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [406]);
    let ok = net
        .phone(p)
        .invite_with(GB, Some(&offer), "Accept: application/*");
    net.drive();
    assert_eq!(net.phone(p).codes_to(ok, "INVITE"), [100, 200]);
    net.run_until_idle(secs(60));
    assert_eq!(net.cdr(p, c).final_status, 406);
}

#[test]
fn unknown_methods_of_any_token_characters_get_501() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    out_of_dialog(&mut net, p, "FOO", "sip:helpline@127.0.0.1", "m1", "");
    out_of_dialog(
        &mut net,
        p,
        "x-Fo.o!%*_+`'~",
        "sip:helpline@127.0.0.1",
        "m2",
        "",
    );
    for id in ["m1", "m2"] {
        let replies = replies_for(&mut net, p, id);
        assert_eq!(
            replies.iter().map(|r| r.0).collect::<Vec<_>>(),
            [501],
            "{id}: {replies:?}"
        );
    }
}

#[test]
fn rfc2543_invites_without_a_branch_are_two_calls_not_one() {
    let mut net = SimNet::shipped().build();
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    for id in ["old-1", "old-2"] {
        let head = format!(
            "INVITE sip:{GB}@127.0.0.1 SIP/2.0
            Via: SIP/2.0/UDP 127.0.0.1:40000
            Max-Forwards: 70
            From: <sip:caller@127.0.0.1:40000>;tag=t-{id}
            To: <sip:{GB}@127.0.0.1>
            Call-ID: {id}
            CSeq: 1 INVITE
            Contact: <sip:caller@127.0.0.1:40000>
            Content-Type: application/sdp"
        );
        net.phone(p).send_text(&head, &offer);
        net.drive();
    }
    for id in ["old-1", "old-2"] {
        let codes: Vec<u16> = replies_for(&mut net, p, id).iter().map(|r| r.0).collect();
        assert_eq!(&codes[..2], [100, 200], "{id}: {codes:?}");
    }
    assert_eq!(net.calls.call_count(), 2);
}
