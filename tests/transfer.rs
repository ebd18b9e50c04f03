//! A menu `transfer` to an external SIP URI (issue 8), as whole calls through helpline's real call layer
//! on a simulated clock (`tests/common/sim.rs`): a scripted phone plays the external contact centre. It
//! answers → the caller is bridged to it (the Bridge command, the far side's session configured from
//! its answer) → each side hangs up in turn; it declines, never answers or cannot be reached → the
//! caller hears `transfer-failed` and is released; the caller hangs up while it rings → CANCEL (also when the CANCEL had to wait for a 1xx). The
//! shipped menus get one extra key, 7, transferring to the scripted phone. RTP through the bridge is
//! counted in `tests/live_transfer.rs` (the real binary); the fake media engine relays nothing.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::sim::{sdp, AnswerMode, CallRef, PhoneId, SimNet, GB};
use helpline::call::{EndReason, TransferResult};
use helpline::ivr::MenuSet;
use helpline::media::codec::Law;
use helpline::sip::message::Request;
use helpline::sip::transaction::TimerConfig;

/// Where the scripted contact centre listens.
const FAR_END: &str = "127.0.0.1:42000";
const URI: &str = "sip:support@127.0.0.1:42000";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The shipped menus with key 7 of the main menu transferring to `uri`.
fn menus(uri: &str) -> Arc<MenuSet> {
    let dir = common::menus_with_transfer(uri);
    common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

fn net() -> SimNet {
    SimNet::with_menus(menus(URI)).build()
}

/// The contact centre: a phone at [`FAR_END`] answering helpline's INVITE as `mode`.
fn far_end(net: &mut SimNet, mode: AnswerMode) -> PhoneId {
    let p = net.udp_phone(FAR_END);
    net.phone(p).answer_invites = mode;
    p
}

/// Answers after `ring` with PCMA (the caller speaks PCMU) from the far end's RTP port.
fn answers_pcma_after(ring: Duration) -> AnswerMode {
    AnswerMode::Answer {
        ring,
        sdp: sdp(far_rtp(), "8 101", "a=sendrecv"),
    }
}

fn far_rtp() -> SocketAddr {
    "127.0.0.1:43000".parse().expect("literal")
}

/// A GB caller who presses 7 in the main menu: transferred at this instant.
fn transferred_caller(net: &mut SimNet) -> (PhoneId, CallRef) {
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    net.key(m, '7');
    (p, c)
}

/// The INVITEs helpline sent the far end (one per call it placed there).
fn invites(net: &mut SimNet, far: PhoneId) -> Vec<Request> {
    net.phone(far)
        .calls
        .iter()
        .filter_map(|c| c.incoming.clone())
        .collect()
}

fn requests_of(net: &mut SimNet, far: PhoneId, method: &str) -> usize {
    let ph = net.phone(far);
    (0..ph.calls.len())
        .map(|i| ph.requests(CallRef(i), method).len())
        .sum()
}

#[test]
fn a_transfer_calls_the_uri_bridges_on_answer_and_the_caller_hangs_up_first() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(2)));
    let (p, c) = transferred_caller(&mut net);

    let inv = invites(&mut net, far);
    assert_eq!(inv.len(), 1, "{}", net.phone(far).transcript());
    let invite = &inv[0];
    assert_eq!(invite.uri.to_string(), URI);
    assert_eq!(invite.from().uri.user.as_deref(), Some("caller"));
    assert!(invite
        .header("P-Asserted-Identity")
        .is_some_and(|v| v.contains("sip:caller@")));
    assert_eq!(invite.header("X-Helpline-Region"), Some("europe"));
    assert_eq!(invite.header("X-Helpline-Language"), Some("en"));
    assert_eq!(invite.header("X-Helpline-Queue"), None, "not a queue call");
    let side_port = common::sim::sdp_port(&invite.body).expect("an SDP offer");
    let caller_port =
        common::sim::sdp_port(&net.phone(p).responses_to(c, "INVITE")[1].body).expect("caller SDP");
    assert_ne!(side_port, caller_port, "the far side has its own RTP port");
    assert!(net.media.bridges.is_empty(), "no bridge while it rings");

    net.advance(secs(2));
    assert_eq!(
        net.phone(far).requests(CallRef(0), "ACK").len(),
        1,
        "{}",
        net.phone(far).transcript()
    );
    let caller_media = net.media_id(p, c);
    let side = net.media.by_port(side_port).expect("far side session").id;
    assert_eq!(net.media.bridges.len(), 1);
    assert_eq!(
        (net.media.bridges[0].1, net.media.bridges[0].2),
        (caller_media, side)
    );
    let cfg = net.media.session(side).config();
    assert_eq!(cfg.law, Law::Alaw, "the far side speaks what it answered");
    assert_eq!(cfg.remote, Some(far_rtp()));
    assert!(cfg.send);
    assert_eq!(net.media.session(caller_media).config().law, Law::Ulaw);

    net.advance(secs(10));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.phone(far).requests(CallRef(0), "BYE").len(), 1);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.route.as_deref(), Some(URI));
    assert_eq!(cdr.transfer_result, Some(TransferResult::Answered));
    assert_eq!(cdr.transfer_status, Some(200));
    assert_eq!(cdr.talk_ms, Some(10_000));
    assert_eq!(cdr.agent, None);
    assert!(net.media.session(side).closed_at.is_some());
    assert_eq!(net.calls.ports_in_use(), 0);
    assert_eq!(net.calls.call_count(), 0);
}

#[test]
fn the_far_end_hangs_up_first_and_the_caller_gets_bye() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(1)));
    let (p, c) = transferred_caller(&mut net);
    net.advance(secs(1));
    assert_eq!(net.media.bridges.len(), 1);
    net.advance(secs(5));
    net.phone(far).bye(CallRef(0));
    net.drive();
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    let bye_answer = net
        .phone(far)
        .responses_to(CallRef(0), "BYE")
        .iter()
        .map(|r| r.code)
        .collect::<Vec<_>>();
    assert_eq!(bye_answer, [200]);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::TransferBye));
    assert_eq!(cdr.talk_ms, Some(5_000));
    let line = serde_json::to_string(cdr).expect("serialisable");
    assert!(line.contains("\"end_reason\":\"transfer-bye\""), "{line}");
    assert!(line.contains("\"transfer_result\":\"answered\""), "{line}");
    assert_eq!(net.calls.ports_in_use(), 0);
}

/// The caller's session played `transfer-failed` and then got BYE, at the prompt's end.
#[test]
fn a_far_side_port_found_busy_is_replaced_before_the_invite_and_the_transfer_goes_on() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(2)));
    let (p, c) = transferred_caller_with_busy_side_ports(&mut net, 1);
    let busy: Vec<u16> = net.media.refused.iter().map(|(_, port)| *port).collect();
    assert_eq!(busy.len(), 1, "{:?}", net.media.log);
    let inv = invites(&mut net, far);
    assert_eq!(inv.len(), 1, "one INVITE, on the port that was bound");
    let side_port = common::sim::sdp_port(&inv[0].body).expect("an SDP offer");
    assert!(!busy.contains(&side_port), "offered busy port {side_port}");
    net.advance(secs(2));
    let side = net.media.by_port(side_port).expect("far side session").id;
    assert_eq!(net.media.bridges.len(), 1);
    assert_eq!(net.media.bridges[0].2, side);
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    assert_eq!(
        net.cdr(p, c).transfer_result,
        Some(TransferResult::Answered)
    );
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn a_transfer_whose_far_side_gets_no_port_fails_without_an_invite() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(2)));
    let (p, c) = transferred_caller_with_busy_side_ports(&mut net, 4);
    assert_eq!(net.media.refused.len(), 4, "{:?}", net.media.log);
    net.run_until_idle(secs(60));
    assert!(invites(&mut net, far).is_empty());
    assert_released_after_the_prompt(&mut net, p, c);
    assert_eq!(net.cdr(p, c).transfer_result, Some(TransferResult::Failed));
    assert_eq!(net.calls.ports_in_use(), 0);
}

/// `transferred_caller`, with the next `refused` Opens once the caller's session is up (the far
/// side's) finding their port busy.
fn transferred_caller_with_busy_side_ports(net: &mut SimNet, refused: usize) -> (PhoneId, CallRef) {
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    net.media.refuse_opens = refused;
    let m = net.media_id(p, c);
    net.key(m, '7');
    (p, c)
}

fn assert_released_after_the_prompt(net: &mut SimNet, p: PhoneId, c: CallRef) {
    let session = net.session(p, c);
    let played = session.played();
    assert_eq!(played.last(), Some(&"transfer-failed"), "{played:?}");
    let (started, _) = *session.plays.last().expect("a prompt played");
    let byes = net.phone(p).requests(c, "BYE");
    assert_eq!(byes.len(), 1, "{}", net.phone(p).transcript());
    // The prompt's 50 frames go out on the session's 20 ms packet clock, whose phase is the session's.
    let after = byes[0].0 - started;
    assert!(
        (secs(1)..=secs(1) + ms(20)).contains(&after),
        "BYE when the 1 s prompt has played, not {after:?} after it started"
    );
    assert!(net.media.bridges.is_empty());
}

#[test]
fn a_declined_transfer_plays_transfer_failed_and_releases_the_caller() {
    let mut net = net();
    let far = far_end(&mut net, AnswerMode::Decline);
    let (p, c) = transferred_caller(&mut net);
    assert_eq!(invites(&mut net, far).len(), 1);
    net.run_until_idle(secs(60));
    assert_released_after_the_prompt(&mut net, p, c);
    // The 486 was acknowledged (by the INVITE client transaction, RFC 3261 §17.1.1.3).
    assert_eq!(requests_of(&mut net, far, "ACK"), 1);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    assert_eq!(cdr.route.as_deref(), Some(URI));
    assert_eq!(cdr.transfer_result, Some(TransferResult::Rejected));
    assert_eq!(cdr.transfer_status, Some(486));
    assert_eq!(cdr.talk_ms, None);
    let line = serde_json::to_string(cdr).expect("serialisable");
    assert!(line.contains("\"transfer_result\":\"rejected\""), "{line}");
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn caller_hanging_up_while_the_transfer_rings_cancels_it() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(10)));
    let (p, c) = transferred_caller(&mut net);
    net.advance(secs(1));
    assert_eq!(requests_of(&mut net, far, "CANCEL"), 0);
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(
        requests_of(&mut net, far, "CANCEL"),
        1,
        "{}",
        net.phone(far).transcript()
    );
    net.run_until_idle(secs(60));
    assert!(net.media.bridges.is_empty());
    assert_eq!(net.phone(far).requests(CallRef(0), "BYE").len(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.transfer_result, Some(TransferResult::Abandoned));
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn an_unanswered_transfer_is_cancelled_at_the_15_s_ring_timeout() {
    let mut net = net();
    let far = far_end(&mut net, answers_pcma_after(secs(60)));
    let (p, c) = transferred_caller(&mut net);
    let transferred = net.now;
    net.run_until(transferred + secs(15) - ms(1));
    assert_eq!(requests_of(&mut net, far, "CANCEL"), 0);
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 0);
    net.run_until(transferred + secs(15));
    assert_eq!(
        requests_of(&mut net, far, "CANCEL"),
        1,
        "{}",
        net.phone(far).transcript()
    );
    net.run_until_idle(secs(120));
    assert_released_after_the_prompt(&mut net, p, c);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.transfer_result, Some(TransferResult::NoAnswer));
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn an_unreachable_transfer_fails_at_timer_b() {
    // Nobody listens at the URI; T1 = 100 ms puts Timer B (64·T1) at 6.4 s, before the ring timeout.
    let mut net = SimNet::with_menus(menus("sip:support@127.0.0.1:42999"))
        .config(|c| {
            c.timers = TimerConfig {
                t1: ms(100),
                ..TimerConfig::default()
            }
        })
        .build();
    let (p, c) = transferred_caller(&mut net);
    let transferred = net.now;
    net.run_until(transferred + ms(6399));
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 0);
    let sent: Vec<_> = net
        .undelivered
        .iter()
        .filter(|(_, t)| t.to.addr.port() == 42999)
        .map(|(at, _)| net.since_t0(*at) - net.since_t0(transferred))
        .collect();
    // Timer A: the INVITE and its retransmissions 100, 300, 700 ms … after it.
    assert_eq!(&sent[..4], [ms(0), ms(100), ms(300), ms(700)]);
    net.run_until_idle(secs(60));
    assert_released_after_the_prompt(&mut net, p, c);
    let started = net.session(p, c).plays.last().expect("prompt").0;
    assert_eq!(net.since_t0(started) - net.since_t0(transferred), ms(6400));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.transfer_result, Some(TransferResult::Unreachable));
    assert_eq!(cdr.transfer_status, None);
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn a_transfer_answering_after_the_caller_hung_up_gets_cancel_then_ack_and_bye() {
    let mut net = net();
    // Silent so far (not even 100 from its UA core): the CANCEL must wait for a 1xx (RFC 3261 §9.1).
    let far = far_end(&mut net, AnswerMode::Ignore);
    let (p, c) = transferred_caller(&mut net);
    net.advance(secs(1));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.calls.call_count(), 0);
    assert_eq!(requests_of(&mut net, far, "CANCEL"), 0);

    // It rings and answers at once: our CANCEL (sent on the 180) crosses its 200.
    common::sim::agent::reply_to_invite(&mut net, far, CallRef(0), 180, "");
    let answer = sdp(far_rtp(), "8 101", "a=sendrecv");
    common::sim::agent::reply_to_invite(&mut net, far, CallRef(0), 200, &answer);
    net.drive();
    assert_eq!(
        requests_of(&mut net, far, "CANCEL"),
        1,
        "the CANCEL that waited for the 1xx goes out:\n{}",
        net.phone(far).transcript()
    );
    let ph = net.phone(far);
    assert_eq!(
        ph.requests(CallRef(0), "ACK").len(),
        1,
        "{}",
        ph.transcript()
    );
    assert_eq!(
        ph.requests(CallRef(0), "BYE").len(),
        1,
        "{}",
        ph.transcript()
    );
    assert!(net.media.bridges.is_empty());
    net.run_until_idle(secs(120));
    assert_eq!(net.calls.late_leg_count(), 0);
    assert_eq!(net.calls.endpoint().transaction_count(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.transfer_result, Some(TransferResult::Abandoned));
    assert_eq!(net.calls.ports_in_use(), 0);
}
