//! Call-centre queues in whole calls on the simulated clock (see `tests/common/sim.rs`): ring-all
//! (every free agent rings, the first answer wins, the others get CANCEL and are free at once, an answer
//! racing the CANCEL is hung up), round-robin across calls, overflow on max length, max wait and no
//! agents (with `queues_tried` in the CDR), hold music and position announcements (never over ringing
//! or an answer), the menus' route priority ahead of a longer wait, and the queue log. Queue settings
//! are set directly (`SimBuilder::queue`).
mod common;

use std::time::{Duration, Instant};

use common::sim::agent::{
    agent_phone, agent_sdp, answers_after, invites, menus_with_team, refunds_caller,
    reply_to_invite, requests_of, ANA, BOB, CY, DAN,
};
use common::sim::{AnswerMode, CallRef, PhoneId, SimNet, HOLD_MUSIC, QUEUE_FULL};
use helpline::agent::presence::AgentState;
use helpline::agent::{AgentId, QueueName};
use helpline::call::{EndReason, QueueTried};
use helpline::queue::{OverflowTarget, QueueConfig, QueueResult, Strategy, WhenNoAgents};

const REFUNDS: &str = "europe.refunds";
const ORDERS: &str = "europe.orders";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn state(net: &SimNet, id: &str) -> Option<AgentState> {
    net.calls
        .agents()
        .get(&AgentId::from(id))
        .map(|a| a.state())
}

fn tried(list: &[(&str, QueueResult)]) -> Vec<QueueTried> {
    list.iter()
        .map(|(q, r)| QueueTried {
            queue: (*q).to_owned(),
            result: *r,
        })
        .collect()
}

/// The prompts the caller's session was told to play from `since` on, as (ms after `since`, name).
fn plays_since(net: &SimNet, p: PhoneId, c: CallRef, since: Instant) -> Vec<(u128, String)> {
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

fn ring_all() -> QueueConfig {
    QueueConfig {
        strategy: Strategy::RingAll,
        ..QueueConfig::default()
    }
}

// ── ring-all ──

#[test]
fn ring_all_rings_three_agents_the_first_answer_wins_and_the_others_are_cancelled_and_free_at_once()
{
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(REFUNDS, ring_all())
        .build();
    let ana = agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(3), "127.0.0.1:41000"),
    );
    let bob = agent_phone(
        &mut net,
        "127.0.0.1:41020",
        BOB,
        answers_after(secs(600), "127.0.0.1:41020"),
    );
    let cy = agent_phone(
        &mut net,
        "127.0.0.1:41040",
        CY,
        answers_after(secs(600), "127.0.0.1:41040"),
    );
    let (p1, c1) = refunds_caller(&mut net, "127.0.0.1:40000");
    for phone in [ana, bob, cy] {
        assert_eq!(invites(&mut net, phone).len(), 1, "every agent rings");
    }
    net.advance(secs(3));
    assert_eq!(net.media.bridges.len(), 1, "ana answered: bridged");
    assert_eq!(state(&net, "ana"), Some(AgentState::InCall));
    for (phone, id) in [(bob, "bob"), (cy, "cy")] {
        assert_eq!(
            requests_of(&mut net, phone, "CANCEL"),
            1,
            "{id} gets CANCEL"
        );
        assert_eq!(
            state(&net, id),
            Some(AgentState::Idle),
            "{id} is free at once, no wrap-up"
        );
    }
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 0);

    // The next caller rings bob and cy at once (ana talks).
    let (p2, c2) = refunds_caller(&mut net, "127.0.0.1:40002");
    assert_eq!(invites(&mut net, bob).len(), 2);
    assert_eq!(invites(&mut net, cy).len(), 2);
    assert_eq!(invites(&mut net, ana).len(), 1);

    net.phone(p1).bye(c1);
    net.phone(p2).bye(c2);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p1, c1);
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.queues_tried, tried(&[(REFUNDS, QueueResult::Answered)]));
    assert_eq!(cdr.queue_wait_ms, Some(3_000));
    let cdr = net.cdr(p2, c2);
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    for (phone, id) in [(bob, "bob"), (cy, "cy")] {
        assert_eq!(
            requests_of(&mut net, phone, "CANCEL"),
            2,
            "{id}: the abandoned caller's CANCEL"
        );
        assert_eq!(state(&net, id), Some(AgentState::Idle));
    }
}

#[test]
fn ring_all_an_answer_racing_the_cancel_is_hung_up_with_bye_and_that_agent_is_idle() {
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(REFUNDS, ring_all())
        .build();
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, AnswerMode::Ignore);
    let bob = agent_phone(&mut net, "127.0.0.1:41020", BOB, AnswerMode::Ignore);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    for phone in [ana, bob] {
        reply_to_invite(&mut net, phone, CallRef(0), 180, "");
    }
    net.advance(secs(2));
    // Both phones answer at the same instant: ana's 200 arrives first, bob's crosses our CANCEL.
    reply_to_invite(
        &mut net,
        ana,
        CallRef(0),
        200,
        &agent_sdp("127.0.0.1:41000"),
    );
    reply_to_invite(
        &mut net,
        bob,
        CallRef(0),
        200,
        &agent_sdp("127.0.0.1:41020"),
    );
    net.advance(Duration::from_millis(100));
    assert_eq!(net.media.bridges.len(), 1, "only ana is bridged");
    assert_eq!(state(&net, "ana"), Some(AgentState::InCall));
    assert_eq!(requests_of(&mut net, bob, "CANCEL"), 1);
    assert_eq!(
        requests_of(&mut net, bob, "ACK"),
        1,
        "bob's 200 is acknowledged …"
    );
    assert_eq!(requests_of(&mut net, bob, "BYE"), 1, "… and hung up");
    assert_eq!(requests_of(&mut net, ana, "BYE"), 0);
    assert_eq!(state(&net, "bob"), Some(AgentState::Idle));

    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(state(&net, "bob"), Some(AgentState::Idle));
}

// ── round-robin ──

#[test]
fn round_robin_serves_the_agents_in_turn_across_calls() {
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(
            REFUNDS,
            QueueConfig {
                strategy: Strategy::RoundRobin,
                ..QueueConfig::default()
            },
        )
        .build();
    let team = [
        ("127.0.0.1:41000", ANA),
        ("127.0.0.1:41020", BOB),
        ("127.0.0.1:41040", CY),
    ];
    for (addr, agent) in team {
        agent_phone(&mut net, addr, agent, answers_after(secs(1), addr));
    }
    let mut served = Vec::new();
    for i in 0..6u16 {
        let (p, c) = refunds_caller(&mut net, &format!("127.0.0.1:{}", 40000 + 2 * i));
        net.advance(secs(5));
        net.phone(p).bye(c);
        // Past the 10 s wrap-up: every agent is free for the next caller.
        net.advance(secs(15));
        let cdr = net.cdr(p, c);
        assert_eq!(cdr.queue_result, Some(QueueResult::Answered), "caller {i}");
        served.push(cdr.agent.clone().expect("answered by an agent"));
    }
    let first_round = &served[..3];
    let mut sorted = first_round.to_vec();
    sorted.sort();
    assert_eq!(
        sorted,
        ["ana", "bob", "cy"],
        "each agent once per round: {served:?}"
    );
    assert_eq!(
        &served[3..],
        first_round,
        "the second round in the same order: {served:?}"
    );
}

// ── overflow ──

/// europe.refunds overflowing to europe.orders, where dan answers after 1 s.
fn refunds_overflowing(cfg: QueueConfig) -> SimNet {
    let cfg = QueueConfig {
        overflow: Some(OverflowTarget::Queue(QueueName::from(ORDERS))),
        ..cfg
    };
    SimNet::with_menus(menus_with_team())
        .queue(REFUNDS, cfg)
        .build()
}

#[test]
fn a_full_line_overflows_the_next_caller_to_the_other_queue_where_dan_answers() {
    let mut net = refunds_overflowing(QueueConfig {
        max_length: Some(1),
        ..QueueConfig::default()
    });
    // bob's phone rings and rings: the first caller stays in line.
    agent_phone(
        &mut net,
        "127.0.0.1:41020",
        BOB,
        answers_after(secs(600), "127.0.0.1:41020"),
    );
    let dan = agent_phone(
        &mut net,
        "127.0.0.1:41060",
        DAN,
        answers_after(secs(1), "127.0.0.1:41060"),
    );
    let (p1, c1) = refunds_caller(&mut net, "127.0.0.1:40000");
    let (p2, c2) = refunds_caller(&mut net, "127.0.0.1:40002");
    assert_eq!(
        invites(&mut net, dan).len(),
        1,
        "the second caller rings dan"
    );
    net.advance(secs(4));
    net.phone(p2).bye(c2);
    net.phone(p1).bye(c1);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p2, c2);
    assert_eq!(cdr.agent.as_deref(), Some("dan"));
    assert_eq!(cdr.queue.as_deref(), Some(ORDERS));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(
        cdr.queues_tried,
        tried(&[
            (REFUNDS, QueueResult::Overflow),
            (ORDERS, QueueResult::Answered)
        ])
    );
    assert_eq!(
        cdr.queue_wait_ms,
        Some(1_000),
        "0 in refunds, 1 s in orders"
    );
    let json = serde_json::to_string(cdr).expect("serialisable");
    assert!(
        json.contains(
            r#""queues_tried":[{"queue":"europe.refunds","result":"overflow"},{"queue":"europe.orders","result":"answered"}]"#
        ),
        "{json}"
    );
    let cdr = net.cdr(p1, c1);
    assert_eq!(
        cdr.queues_tried,
        tried(&[(REFUNDS, QueueResult::Abandoned)])
    );
}

#[test]
fn no_agents_with_overflow_sends_the_caller_on_at_once() {
    let mut net = refunds_overflowing(QueueConfig {
        when_no_agents: WhenNoAgents::Overflow,
        ..QueueConfig::default()
    });
    let dan = agent_phone(
        &mut net,
        "127.0.0.1:41060",
        DAN,
        answers_after(secs(2), "127.0.0.1:41060"),
    );
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    assert_eq!(invites(&mut net, dan).len(), 1);
    net.advance(secs(5));
    assert_eq!(
        plays_since(&net, p, c, routed)[0].1,
        "connecting",
        "the caller hears what a waiting caller hears"
    );
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("dan"));
    assert_eq!(
        cdr.queues_tried,
        tried(&[
            (REFUNDS, QueueResult::Overflow),
            (ORDERS, QueueResult::Answered)
        ])
    );
}

#[test]
fn the_last_agent_going_on_break_overflows_the_waiting_caller() {
    let mut net = refunds_overflowing(QueueConfig {
        when_no_agents: WhenNoAgents::Overflow,
        ..QueueConfig::default()
    });
    // bob's phone rings and is never answered: after three unanswered offers (15 s ring, 10 s
    // wrap-up: at 15, 40 and 65 s) presence puts him on break, the last refunds agent gone.
    let bob = agent_phone(
        &mut net,
        "127.0.0.1:41020",
        BOB,
        answers_after(secs(600), "127.0.0.1:41020"),
    );
    let dan = agent_phone(
        &mut net,
        "127.0.0.1:41060",
        DAN,
        answers_after(secs(1), "127.0.0.1:41060"),
    );
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    net.run_until(routed + secs(64));
    assert_eq!(invites(&mut net, bob).len(), 3);
    assert_eq!(invites(&mut net, dan).len(), 0, "dan serves orders only");
    net.run_until(routed + secs(65));
    assert_eq!(
        invites(&mut net, dan).len(),
        1,
        "the caller overflowed to dan"
    );
    assert_eq!(requests_of(&mut net, bob, "CANCEL"), 3);
    net.advance(secs(3));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("dan"));
    assert_eq!(
        cdr.queues_tried,
        tried(&[
            (REFUNDS, QueueResult::Overflow),
            (ORDERS, QueueResult::Answered)
        ])
    );
    assert_eq!(
        cdr.queue_wait_ms,
        Some(66_000),
        "65 s in refunds, 1 s in orders"
    );
}

#[test]
fn max_wait_times_the_caller_out_after_hold_music_then_the_overflow_prompts_and_a_hang_up() {
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(
            REFUNDS,
            QueueConfig {
                max_wait: Some(secs(30)),
                music: Some(HOLD_MUSIC.to_owned()),
                overflow: Some(OverflowTarget::HangUp {
                    prompts: vec![QUEUE_FULL.to_owned()],
                }),
                ..QueueConfig::default()
            },
        )
        .build();
    // Nobody is logged in, but the queue waits (when_no_agents = wait, with a max_wait).
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    net.run_until_idle(secs(120));
    assert_eq!(
        plays_since(&net, p, c, routed),
        named(&[
            (0, "connecting"),
            (1000, HOLD_MUSIC),
            (9000, HOLD_MUSIC),
            (17000, HOLD_MUSIC),
            (25000, HOLD_MUSIC),
            (30000, QUEUE_FULL),
        ])
    );
    assert!(
        net.session(p, c).stops.contains(&(routed + secs(30))),
        "the music stops at 30 s"
    );
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.queue_result, Some(QueueResult::Timeout));
    assert_eq!(cdr.queues_tried, tried(&[(REFUNDS, QueueResult::Timeout)]));
    assert_eq!(cdr.queue_wait_ms, Some(30_000));
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
}

#[test]
fn nobody_logged_in_and_an_endless_wait_releases_the_caller_as_before() {
    // `when_no_agents = "wait"` with no `max_wait` (the queue machine's defaults; the shipped menus
    // overflow instead): nobody would ever come, so the caller is released at once.
    let mut net = SimNet::with_menus(menus_with_team())
        .queue_defaults(QueueConfig::default())
        .build();
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.queue_result, Some(QueueResult::NoAgents));
    assert_eq!(cdr.queues_tried, tried(&[(REFUNDS, QueueResult::NoAgents)]));
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
}

// ── what a waiting caller hears ──

#[test]
fn a_waiting_caller_hears_music_and_their_place_then_ringback_and_nothing_over_the_answer() {
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(
            REFUNDS,
            QueueConfig {
                max_wait: Some(secs(600)),
                music: Some(HOLD_MUSIC.to_owned()),
                announce_every: Some(secs(20)),
                ..QueueConfig::default()
            },
        )
        .build();
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    net.run_until(routed + secs(50));
    // ana logs in at 50 s; her phone rings 12 s: the announcement due at 60 s never starts.
    agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(12), "127.0.0.1:41000"),
    );
    net.run_until(routed + secs(70));
    assert_eq!(
        plays_since(&net, p, c, routed),
        named(&[
            (0, "connecting"),
            (1000, HOLD_MUSIC),
            (9000, HOLD_MUSIC),
            (17000, HOLD_MUSIC),
            // At 20 s the announcement replaces the music: "You are number one in line."
            // (What starts after a stop runs on the media engine's 20 ms frame clock.)
            (20000, "queue-position-before"),
            (21020, "digit-1"),
            (22020, "queue-position-after"),
            (23020, HOLD_MUSIC),
            (31020, HOLD_MUSIC),
            // At 40 s the place has not changed and no wait is known yet: nothing is said.
            (39020, HOLD_MUSIC),
            (47020, HOLD_MUSIC),
            (50000, "ringback"),
            (56020, "ringback"),
        ]),
        "{:#?}",
        net.session(p, c).plays
    );
    let s = net.session(p, c);
    assert!(
        s.stops.contains(&(routed + secs(20))),
        "the music stops for the announcement"
    );
    assert!(
        s.stops.contains(&(routed + secs(50))),
        "the music stops for the ringing"
    );
    let bridged = net.media.bridges.first().expect("bridged").0;
    assert_eq!(bridged - routed, secs(62));
    assert!(s.stops.contains(&bridged), "ringback stops at the answer");
    assert_eq!(s.playing(), None);
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    assert_eq!(net.cdr(p, c).queue_result, Some(QueueResult::Answered));
}

#[test]
fn the_estimated_wait_is_spoken_once_a_caller_was_answered() {
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(
            REFUNDS,
            QueueConfig {
                max_wait: Some(secs(600)),
                music: Some(HOLD_MUSIC.to_owned()),
                announce_every: Some(secs(30)),
                ..QueueConfig::default()
            },
        )
        .build();
    // ana answers the first caller after 2 s and talks for 10 min: the second caller waits.
    agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(2), "127.0.0.1:41000"),
    );
    let (p1, c1) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(5));
    let (p2, c2) = refunds_caller(&mut net, "127.0.0.1:40002");
    let routed = net.now;
    net.run_until(routed + secs(35));
    let said: Vec<String> = plays_since(&net, p2, c2, routed + secs(30))
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        said,
        [
            "queue-position-before",
            "digit-1",
            "queue-position-after",
            "queue-wait-under-minute",
            HOLD_MUSIC
        ]
    );
    net.phone(p2).bye(c2);
    net.phone(p1).bye(c1);
    net.run_until_idle(secs(60));
    assert_eq!(net.cdr(p2, c2).queue_result, Some(QueueResult::Abandoned));
}

// ── the queue log ──

#[test]
fn the_queue_log_has_one_json_line_per_event_with_the_callers_call_id_and_wall_time() {
    let mut net = SimNet::with_menus(menus_with_team()).build();
    net.calls.enable_queue_log();
    agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(2), "127.0.0.1:41000"),
    );
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(3));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let call_id = net.cdr(p, c).call_id.clone();
    let mut lines = Vec::new();
    while let Some(line) = net.calls.poll_queue_log() {
        assert!(!line.contains('\n'));
        lines.push(serde_json::from_str::<serde_json::Value>(&line).expect("JSON"));
    }
    let of_call: Vec<&str> = lines
        .iter()
        .filter(|l| l["call_id"] == call_id.as_str())
        .map(|l| l["event"].as_str().expect("event"))
        .collect();
    assert_eq!(of_call, ["join", "offer", "answer"], "{lines:#?}");
    let answer = lines
        .iter()
        .find(|l| l["event"] == "answer")
        .expect("answer");
    assert_eq!(answer["queue"], REFUNDS);
    assert_eq!(answer["agent"], "ana");
    assert_eq!(answer["wait_ms"], 2000);
    let time = answer["time"].as_str().expect("time");
    let at = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339");
    assert!(at > common::sim::open_hours(), "{time}");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "agent-status" && l["agent"] == "ana"),
        "{lines:#?}"
    );
}

#[test]
fn two_queues_overflowing_into_each_other_release_the_caller_instead_of_looping() {
    let to = |q: &str| QueueConfig {
        when_no_agents: WhenNoAgents::Overflow,
        overflow: Some(OverflowTarget::Queue(QueueName::from(q))),
        ..QueueConfig::default()
    };
    let mut net = SimNet::with_menus(menus_with_team())
        .queue(REFUNDS, to(ORDERS))
        .queue(ORDERS, to(REFUNDS))
        .build();
    net.calls.enable_queue_log();
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(
        cdr.queues_tried,
        tried(&[
            (REFUNDS, QueueResult::Overflow),
            (ORDERS, QueueResult::Overflow)
        ])
    );
    assert_eq!(cdr.queue.as_deref(), Some(ORDERS));
    assert_eq!(cdr.queue_result, Some(QueueResult::Overflow));
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    let overflows: Vec<(String, String)> = std::iter::from_fn(|| net.calls.poll_queue_log())
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).expect("JSON"))
        .filter(|l| l["event"] == "overflow")
        .map(|l| (l["queue"].to_string(), l["target"].to_string()))
        .collect();
    assert_eq!(
        overflows,
        [
            (format!("\"{REFUNDS}\""), format!("\"{ORDERS}\"")),
            (format!("\"{ORDERS}\""), format!("\"{REFUNDS}\""))
        ]
    );
}

// ── priority ──

/// The sample agents plus `esc`, serving both europe.refunds and the escalation queue.
fn menus_with_escalation_agent() -> std::sync::Arc<helpline::ivr::MenuSet> {
    use md5::{Digest, Md5};
    let ha1: String = Md5::digest(b"esc:helpline:esc-pw")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = common::menus_with_sample_agents(|text| {
        format!(
            "{text}\n[agents.esc]\nname = \"Esc\"\nha1 = \"{ha1}\"\n\
             queues = [\"europe.refunds\", \"europe.escalation\"]\nlanguages = [\"en\"]\n"
        )
    });
    common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// A GB caller who presses 5 and enters a ticket number: the shipped menus route them to the
/// escalation queue with `priority = 10`.
fn escalation_caller(net: &mut SimNet, addr: &str) -> (PhoneId, CallRef) {
    let p = net.udp_phone(addr);
    let offer = net.offer(p);
    let c = net.phone(p).invite(common::sim::GB, Some(&offer));
    net.drive();
    net.phone(p).ack(c, None);
    net.advance(Duration::from_millis(300));
    let m = net.media_id(p, c);
    for key in "512345678".chars() {
        net.key(m, key);
        net.advance(Duration::from_millis(200));
    }
    (p, c)
}

#[test]
fn an_escalated_caller_with_the_menus_priority_is_served_before_one_who_waited_longer() {
    // Queue settings from the menus, but no overflow: both callers wait for the one agent.
    let mut net = SimNet::with_menus(menus_with_escalation_agent())
        .queue_defaults(QueueConfig::default())
        .build();
    let esc = agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ("esc", "esc-pw"),
        answers_after(secs(1), "127.0.0.1:41000"),
    );
    // esc takes a first caller; then a refunds caller (priority 0) and, later, an escalated one
    // (priority 10) wait for her.
    let (p1, c1) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(2));
    assert_eq!(state(&net, "esc"), Some(AgentState::InCall));
    let (p2, c2) = refunds_caller(&mut net, "127.0.0.1:40002");
    net.advance(secs(5));
    let (p3, c3) = escalation_caller(&mut net, "127.0.0.1:40004");
    net.advance(secs(5));
    assert_eq!(invites(&mut net, esc).len(), 1, "esc still talks");
    net.phone(p1).bye(c1);
    net.drive();
    // After her wrap-up, esc is offered the escalated caller, not the one who waited longer.
    net.advance(secs(11));
    let offered = invites(&mut net, esc);
    assert_eq!(offered.len(), 2, "{}", net.phone(esc).transcript());
    let second = &offered[1];
    assert_eq!(
        second.headers.get("X-Helpline-Queue"),
        Some("europe.escalation")
    );
    assert_eq!(second.headers.get("X-Helpline-Ticket-Id"), Some("12345678"));
    for (p, c) in [(p2, c2), (p3, c3)] {
        net.phone(p).bye(c);
    }
    net.run_until_idle(secs(120));
    let escalated = net.cdr(p3, c3);
    assert_eq!(escalated.agent.as_deref(), Some("esc"));
    assert_eq!(escalated.queue.as_deref(), Some("europe.escalation"));
    let waited_longer = net.cdr(p2, c2);
    assert_eq!(waited_longer.agent, None);
    assert_eq!(waited_longer.queue_result, Some(QueueResult::Abandoned));
}
