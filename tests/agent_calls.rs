//! The caller↔agent path in whole calls on the simulated clock (see `tests/common/sim.rs`), where it can
//! go wrong: what a routed caller hears before the agent's hello (the `connecting` prompt, then in-band
//! ringback only while an agent's phone rings), an agent leg that fails (the caller stays first in
//! line), answers that come after the call is over (ACK and BYE, or the CANCEL that waited for a 1xx),
//! RTP timeouts on either leg of a bridged call, and the agent's phone putting the caller on hold. Each
//! test checks the CDR fields of its outcome.
mod common;

use std::time::Duration;

use common::sim::agent::{
    agent_phone, answers_after, invites, menus_with_bob, refunds_caller, reply_to_invite,
    requests_of, ANA, BOB,
};
use common::sim::{sample_agent_menus, sdp_port, AnswerMode, CallRef, PhoneId, SimNet};
use helpline::agent::presence::AgentState;
use helpline::agent::AgentId;
use helpline::call::EndReason;
use helpline::media::session::MediaEvent;
use helpline::queue::QueueResult;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn agent_state(net: &SimNet, id: &str) -> Option<AgentState> {
    net.calls
        .agents()
        .get(&AgentId::from(id))
        .map(|a| a.state())
}

/// The prompts the caller's session was told to play from `since` on, as (ms after `since`, name).
fn plays_since(
    net: &SimNet,
    p: PhoneId,
    c: CallRef,
    since: std::time::Instant,
) -> Vec<(u128, String)> {
    net.session(p, c)
        .plays
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(at, name)| ((*at - since).as_millis(), name.clone()))
        .collect()
}

fn named(list: &[(u64, &str)]) -> Vec<(u128, String)> {
    list.iter()
        .map(|(t, n)| (u128::from(*t), (*n).to_owned()))
        .collect()
}

/// The agent side's media session of the agent leg whose INVITE this is.
fn agent_media(net: &SimNet, invite: &helpline::sip::message::Request) -> helpline::call::MediaId {
    let port = sdp_port(&invite.body).expect("our INVITE carries an SDP offer");
    net.media.by_port(port).expect("agent session opened").id
}

// ── what the caller hears ──

#[test]
fn a_routed_caller_hears_connecting_then_ringback_looped_until_the_agent_answers() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let mode = answers_after(secs(14), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.advance(secs(20));

    // `connecting` (1 s in the harness), then the 6 s ringback tone again and again while ana's phone
    // rings, and nothing once she answers at 14 s.
    assert_eq!(
        plays_since(&net, p, c, routed),
        named(&[
            (0, "connecting"),
            (1000, "ringback"),
            (7000, "ringback"),
            (13000, "ringback")
        ]),
        "{:#?}",
        net.session(p, c).plays
    );
    let bridged = net.media.bridges.first().expect("bridged").0;
    assert_eq!(bridged - routed, secs(14));
    let s = net.session(p, c);
    assert!(
        s.stops.contains(&bridged),
        "the ringback stops the moment the agent answers: {:?}",
        s.stops
    );
    assert_eq!(s.playing(), None);

    net.advance(secs(4));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.queue.as_deref(), Some("europe.refunds"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.queue_wait_ms, Some(14_000));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.talk_ms, Some(10_000));
}

#[test]
fn ringback_stops_when_the_offer_ends_and_a_waiting_caller_hears_hold_music_instead() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    // ana's phone rings but she never answers within the 15 s ring timeout.
    let mode = answers_after(secs(600), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    net.run_until(routed + secs(30));
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 1);
    // Ringing until the ring timeout at 15 s; then 10 s of wrap-up with nobody ringing: the shipped
    // hold music (the harness's is 8.02 s long), cut when ana is offered the caller again at 25 s.
    assert_eq!(
        plays_since(&net, p, c, routed),
        named(&[
            (0, "connecting"),
            (1000, "ringback"),
            (7000, "ringback"),
            (13000, "ringback"),
            (15000, "hold-music"),
            (23020, "hold-music"),
            (25000, "ringback"),
        ]),
        "{:#?}",
        net.session(p, c).plays
    );
    assert!(
        net.session(p, c).stops.contains(&(routed + secs(15))),
        "the ringback stops with the offer: {:?}",
        net.session(p, c).stops
    );
    net.phone(p).bye(c);
    net.run_until_idle(secs(120));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    assert_eq!(cdr.queue_wait_ms, Some(30_000));
    assert_eq!(cdr.agent, None);
    assert_eq!(cdr.talk_ms, None);
}

// ── an agent leg that fails ──

/// Two callers wait for europe.refunds; only ana is logged in and is offered the first, and `fail`
/// makes her leg fail. Then bob logs in: he must get the FIRST caller. Returns the net and both callers.
fn first_caller_keeps_the_head(
    ana_mode: AnswerMode,
    fail: impl FnOnce(&mut SimNet, PhoneId),
) -> (SimNet, PhoneId, PhoneId) {
    let mut net = SimNet::with_menus(menus_with_bob()).build();
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, ana_mode);
    let (first, c1) = refunds_caller(&mut net, "127.0.0.1:40000");
    let first_routed = net.now;
    let (second, c2) = refunds_caller(&mut net, "127.0.0.1:40002");
    assert_eq!(invites(&mut net, ana).len(), 1, "ana rings for the first");
    fail(&mut net, ana);
    assert!(net.media.bridges.is_empty(), "{:?}", net.media.bridges);
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::WrapUp));

    let mode = answers_after(secs(1), "127.0.0.1:41020");
    let bob = agent_phone(&mut net, "127.0.0.1:41020", BOB, mode);
    assert_eq!(invites(&mut net, bob).len(), 1);
    net.advance(secs(1));
    let first_media = net.media_id(first, c1);
    let bob_log = net.phones[bob.0].transcript();
    let bridge = net
        .media
        .bridges
        .first()
        .unwrap_or_else(|| panic!("bob answered: bridged\n{bob_log}"));
    assert_eq!(
        bridge.1, first_media,
        "bob is bridged with the first caller"
    );
    let answered_at = net.now;

    net.advance(secs(2));
    net.phone(first).bye(c1);
    net.phone(second).bye(c2);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(first, c1);
    assert_eq!(cdr.agent.as_deref(), Some("bob"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.queue.as_deref(), Some("europe.refunds"));
    let wait = u64::try_from((answered_at - first_routed).as_millis()).expect("small");
    assert_eq!(cdr.queue_wait_ms, Some(wait));
    assert_eq!(cdr.talk_ms, Some(2_000));
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    let cdr = net.cdr(second, c2);
    assert_eq!(cdr.agent, None);
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    (net, ana, bob)
}

#[test]
fn an_agent_whose_200_has_no_sdp_is_hung_up_and_the_first_caller_gets_the_next_agent() {
    let no_sdp = AnswerMode::Answer {
        ring: secs(5),
        sdp: String::new(),
    };
    let (mut net, ana, _) = first_caller_keeps_the_head(no_sdp, |net, ana| {
        net.advance(secs(5));
        let ph = net.phone(ana);
        assert_eq!(
            ph.requests(CallRef(0), "ACK").len(),
            1,
            "the 200 is acknowledged:\n{}",
            ph.transcript()
        );
        assert_eq!(
            ph.requests(CallRef(0), "BYE").len(),
            1,
            "then hung up:\n{}",
            ph.transcript()
        );
    });
    assert_eq!(invites(&mut net, ana).len(), 1);
}

#[test]
fn an_agent_phone_answering_503_keeps_the_first_caller_first_in_line() {
    first_caller_keeps_the_head(AnswerMode::Ignore, |net, ana| {
        net.advance(ms(500));
        reply_to_invite(net, ana, CallRef(0), 503, "");
        net.drive();
    });
}

#[test]
fn an_offer_unanswered_at_the_ring_timeout_keeps_the_first_caller_first_in_line() {
    first_caller_keeps_the_head(AnswerMode::Ignore, |net, ana| {
        net.advance(secs(15));
        let _ = ana;
    });
}

// ── the agent side's RTP port ──

/// A net with ana's phone logged in, answering 1 s after it rings.
fn ana_answering_after_1_s() -> (SimNet, PhoneId) {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let mode = answers_after(secs(1), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    (net, ana)
}

/// The steps of `refunds_caller`, with the next `refused` Opens (the agent side's, once the caller's
/// session is up) finding their port busy.
fn refunds_caller_with_busy_side_ports(net: &mut SimNet, refused: usize) -> (PhoneId, CallRef) {
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(common::sim::GB, Some(&offer));
    net.drive();
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    net.media.refuse_opens = refused;
    for key in "2123456#".chars() {
        net.key(m, key);
        net.advance(ms(200));
    }
    (p, c)
}

#[test]
fn an_agent_side_port_found_busy_is_replaced_before_the_agent_phone_is_offered_it() {
    let (mut net, ana) = ana_answering_after_1_s();
    let (p, c) = refunds_caller_with_busy_side_ports(&mut net, 2);
    net.advance(secs(2));
    let busy: Vec<u16> = net.media.refused.iter().map(|(_, port)| *port).collect();
    assert_eq!(busy.len(), 2, "{:?}", net.media.log);
    let invites = invites(&mut net, ana);
    assert_eq!(invites.len(), 1, "one INVITE, on the port that was bound");
    let port = sdp_port(&invites[0].body).expect("our offer");
    assert!(!busy.contains(&port), "offered busy port {port}: {busy:?}");
    let side = net.media.by_port(port).expect("the side's session").id;
    let bridge = net.media.bridges.first().expect("bridged");
    assert_eq!((bridge.1, bridge.2), (net.media_id(p, c), side));

    net.advance(secs(3));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn an_agent_side_with_no_port_that_binds_fails_the_offer_and_the_caller_waits_for_the_next() {
    let (mut net, ana) = ana_answering_after_1_s();
    // Every port the first offer tries is busy: ana's phone is never rung with one.
    let (p, c) = refunds_caller_with_busy_side_ports(&mut net, 4);
    net.advance(ms(500));
    assert_eq!(net.media.refused.len(), 4, "{:?}", net.media.log);
    assert!(invites(&mut net, ana).is_empty());
    assert!(net.media.bridges.is_empty());
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::WrapUp));
    assert!(
        net.phone(p).requests(c, "BYE").is_empty(),
        "the caller waits on"
    );

    // After her wrap-up (10 s) ana is offered the caller again, on a port that binds.
    net.advance(secs(12));
    let invites = invites(&mut net, ana);
    assert_eq!(invites.len(), 1);
    let port = sdp_port(&invites[0].body).expect("our offer");
    assert!(net.media.refused.iter().all(|(_, busy)| *busy != port));
    assert_eq!(net.media.bridges.len(), 1, "bridged on the second offer");
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(net.calls.ports_in_use(), 0);
}

// ── answers after the call is over ──

#[test]
fn an_agent_phone_answering_after_the_caller_hung_up_gets_ack_and_bye() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    // A phone that has not even said 180 yet: the CANCEL must wait for a 1xx (RFC 3261 §9.1).
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, AnswerMode::Ignore);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.advance(secs(2));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.calls.call_count(), 0);
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 0);

    net.advance(secs(1));
    let answer = common::sim::agent::agent_sdp("127.0.0.1:41000");
    reply_to_invite(&mut net, ana, CallRef(0), 200, &answer);
    net.drive();
    let ph = net.phone(ana);
    assert_eq!(
        ph.requests(CallRef(0), "ACK").len(),
        1,
        "the late 200 is acknowledged:\n{}",
        ph.transcript()
    );
    assert_eq!(
        ph.requests(CallRef(0), "BYE").len(),
        1,
        "then hung up:\n{}",
        ph.transcript()
    );
    // The phone did not hear our ACK and sends its 200 again: ACKed again, no second BYE.
    net.advance(ms(500));
    reply_to_invite(&mut net, ana, CallRef(0), 200, &answer);
    net.drive();
    let ph = net.phone(ana);
    assert_eq!(
        ph.requests(CallRef(0), "ACK").len(),
        2,
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
    assert_ne!(agent_state(&net, "ana"), Some(AgentState::InCall));
    net.run_until_idle(secs(120));
    assert_eq!(net.calls.endpoint().transaction_count(), 0);
    assert_eq!(net.calls.late_leg_count(), 0);
    assert_eq!(net.calls.ports_in_use(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    assert_eq!(cdr.queue_wait_ms, Some(2_000));
    assert_eq!(cdr.agent, None);
}

#[test]
fn a_180_after_the_caller_hung_up_gets_the_cancel_that_waited_for_it() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, AnswerMode::Ignore);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(2));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 0);
    net.advance(secs(1));
    reply_to_invite(&mut net, ana, CallRef(0), 180, "");
    net.drive();
    let ph = net.phone(ana);
    assert_eq!(
        ph.requests(CallRef(0), "CANCEL").len(),
        1,
        "{}",
        ph.transcript()
    );
    // The phone answers the CANCEL 200 and the INVITE 487, which the endpoint acknowledges.
    assert_eq!(
        ph.requests(CallRef(0), "ACK").len(),
        1,
        "{}",
        ph.transcript()
    );
    net.run_until_idle(secs(120));
    assert_eq!(net.calls.endpoint().transaction_count(), 0);
    assert_eq!(net.calls.late_leg_count(), 0);
    assert_eq!(net.cdr(p, c).queue_result, Some(QueueResult::Abandoned));
}

#[test]
fn the_other_phone_answering_after_the_call_ended_gets_ack_and_bye() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    // ana's desk phone has not said 180 when her mobile answers: its CANCEL waits for a 1xx.
    let desk = agent_phone(&mut net, "127.0.0.1:41000", ANA, AnswerMode::Ignore);
    let quick = answers_after(secs(1), "127.0.0.1:41010");
    let mobile = agent_phone(&mut net, "127.0.0.1:41010", ANA, quick);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(1));
    assert_eq!(net.media.bridges.len(), 1);
    net.advance(secs(2));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.phone(mobile).requests(CallRef(0), "BYE").len(), 1);
    assert_eq!(net.calls.call_count(), 0);

    net.advance(secs(1));
    let answer = common::sim::agent::agent_sdp("127.0.0.1:41000");
    reply_to_invite(&mut net, desk, CallRef(0), 200, &answer);
    net.drive();
    let ph = net.phone(desk);
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
    assert_eq!(net.media.bridges.len(), 1, "the late phone never joins");
    net.run_until_idle(secs(120));
    assert_eq!(net.calls.late_leg_count(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.talk_ms, Some(2_000));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
}

// ── RTP timeouts while bridged ──

/// A caller bridged to ana, who answered 1 s after the routing; returns the caller, ana's phone and
/// the instant of the bridge.
fn bridged_call(net: &mut SimNet) -> (PhoneId, CallRef, PhoneId, std::time::Instant) {
    let mode = answers_after(secs(1), "127.0.0.1:41000");
    let ana = agent_phone(net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(net, "127.0.0.1:40000");
    net.advance(secs(1));
    let at = net.media.bridges.first().expect("bridged").0;
    (p, c, ana, at)
}

#[test]
fn an_rtp_timeout_on_the_agent_leg_ends_the_bridged_call_on_both_sides() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let (p, c, ana, bridged) = bridged_call(&mut net);
    let invite = invites(&mut net, ana).remove(0);
    let agent = agent_media(&net, &invite);
    net.run_until(bridged + secs(30));
    net.media_event(agent, MediaEvent::RtpTimeout);
    assert_eq!(
        net.phone(ana).requests(CallRef(0), "BYE").len(),
        1,
        "{}",
        net.phone(ana).transcript()
    );
    assert_eq!(
        net.phone(p).requests(c, "BYE").len(),
        1,
        "{}",
        net.phone(p).transcript()
    );
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::RtpTimeout));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.talk_ms, Some(30_000));
    let line = serde_json::to_string(cdr).expect("serialisable");
    assert!(line.contains("\"end_reason\":\"rtp-timeout\""), "{line}");
    assert_eq!(net.calls.ports_in_use(), 0);
    // Free again after the wrap-up: the call is over for presence too.
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::Idle));
}

#[test]
fn an_rtp_timeout_on_the_caller_leg_hangs_up_the_agent_at_once() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let (p, c, ana, bridged) = bridged_call(&mut net);
    // The caller is gone: nothing answers our BYE any more.
    net.phone(p).answer_bye = false;
    let caller = net.media_id(p, c);
    net.run_until(bridged + secs(40));
    net.media_event(caller, MediaEvent::RtpTimeout);
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    assert_eq!(
        net.phone(ana).requests(CallRef(0), "BYE").len(),
        1,
        "the agent is not left listening to a dead line:\n{}",
        net.phone(ana).transcript()
    );
    net.run_until_idle(secs(120));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::RtpTimeout));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    // The talk ended with the bridge, not when our unanswered BYE to the caller gave up 32 s later.
    assert_eq!(cdr.talk_ms, Some(40_000));
}

// ── nobody to wait for ──

#[test]
fn a_caller_routed_to_a_queue_nobody_serves_overflows_at_once_and_hears_goodbye() {
    // The sample agents are declared but nobody is logged in. The shipped `when_no_agents = "overflow"`
    // sends the caller on at once: europe.refunds overflows to english-line.refunds, where nobody is
    // either, whose overflow is the defaults' goodbye and hang-up. No "connecting", no music.
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    net.run_until_idle(secs(60));
    assert_eq!(
        plays_since(&net, p, c, routed)
            .iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>(),
        ["goodbye"],
        "nothing promises an agent: {:?}",
        net.session(p, c).plays
    );
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    let cdr = net.cdr(p, c);
    let tried: Vec<(String, QueueResult)> = cdr
        .queues_tried
        .iter()
        .map(|t| (t.queue.clone(), t.result))
        .collect();
    assert_eq!(
        tried,
        [
            ("europe.refunds".to_owned(), QueueResult::Overflow),
            ("english-line.refunds".to_owned(), QueueResult::Overflow),
        ]
    );
    assert_eq!(cdr.queue_result, Some(QueueResult::Overflow));
    assert_eq!(cdr.queue_wait_ms, Some(0));
    assert_eq!(cdr.agent, None);
    assert_eq!(cdr.talk_ms, None);
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
}

// ── the agent's phone renegotiates ──

#[test]
fn an_agent_putting_the_caller_on_hold_gets_an_sdp_answer_and_the_call_goes_on() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let (p, c, ana, _) = bridged_call(&mut net);
    let invite = invites(&mut net, ana).remove(0);
    let agent = agent_media(&net, &invite);
    let rtp: std::net::SocketAddr = "127.0.0.1:42000".parse().expect("literal");
    let hold = common::sim::sdp(rtp, "0 101", "a=sendonly");
    net.advance(secs(2));
    let cseq = net.phone(ana).reinvite(CallRef(0), Some(&hold));
    net.drive();
    let ph = net.phone(ana);
    let ok = ph
        .response_to(CallRef(0), "INVITE", cseq)
        .unwrap_or_else(|| panic!("no answer to the re-INVITE:\n{}", ph.transcript()))
        .clone();
    assert_eq!(ok.code, 200);
    assert!(!ok.contacts().is_empty(), "a 200 to INVITE has a Contact");
    assert_eq!(
        common::sim::sdp_lines(&ok.body, "a=recvonly"),
        ["a=recvonly"],
        "the answer to a hold is recvonly: {}",
        String::from_utf8_lossy(&ok.body)
    );
    assert_eq!(sdp_port(&ok.body), sdp_port(&invite.body), "same port");
    let cfg = net.media.session(agent).config();
    assert!(!cfg.send, "nothing is sent to the agent who holds");
    assert_eq!(cfg.remote, Some(rtp));

    let resume = common::sim::sdp(rtp, "0 101", "a=sendrecv");
    net.advance(secs(2));
    net.phone(ana).reinvite(CallRef(0), Some(&resume));
    net.drive();
    assert!(net.media.session(agent).config().send);
    assert!(net.phone(p).requests(c, "BYE").is_empty());
    assert!(net.phone(ana).requests(CallRef(0), "BYE").is_empty());
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.talk_ms, Some(4_000));
}
