//! Agent presence and queue decisions on a simulated clock: who is offered which caller, when, and what a
//! call record learns. A small harness plays the call layer's run loop (feed one input, drain every
//! `poll_*`, sleep to the earliest `poll_timeout`); calls are plain numbers.
use std::time::{Duration, Instant};

use helpline::agent::presence::{
    AgentError, AgentEvent, AgentInput, AgentProfile, AgentState, AgentStatus, Agents,
    AgentsConfig, OfferOutcome, RejectReason,
};
use helpline::agent::{AgentId, QueueName};
use helpline::queue::{QueueConfig, QueueEvent, QueueExit, QueueResult, Queues};

const REFUNDS: &str = "europe.refunds";
const DISPUTES: &str = "china.seller-disputes";

struct Centre {
    now: Instant,
    agents: Agents<u32>,
    queues: Queues<u32>,
    /// Offers made and not yet looked at by the test: (call, agent).
    offers: Vec<(u32, String)>,
    agent_events: Vec<AgentEvent<u32>>,
    queue_events: Vec<QueueEvent<u32>>,
}

impl Centre {
    fn new(config: AgentsConfig, profiles: Vec<AgentProfile>) -> Self {
        let t0 = Instant::now();
        Centre {
            now: t0,
            agents: Agents::new(config, profiles),
            queues: Queues::new(QueueConfig::default()),
            offers: Vec::new(),
            agent_events: Vec::new(),
            queue_events: Vec::new(),
        }
    }

    fn with(profiles: Vec<AgentProfile>) -> Self {
        Centre::new(AgentsConfig::default(), profiles)
    }

    /// The call layer's drain: agent events to the queues, queue events out, offers until none.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.agents.poll_event() {
                self.queues.handle_agent_event(self.now, &ev);
                self.agent_events.push(ev);
                busy = true;
            }
            while let Some(ev) = self.queues.poll_event() {
                self.queue_events.push(ev);
                busy = true;
            }
            while let Some(offer) = self.queues.poll_offer(self.now, &mut self.agents) {
                assert_eq!(offer.ring_until, self.now + Duration::from_secs(15));
                self.offers.push((offer.call, offer.agent.to_string()));
                busy = true;
            }
            if !busy {
                return;
            }
        }
    }

    fn input(&mut self, input: AgentInput<u32>) -> Result<(), AgentError> {
        let r = self.agents.handle(self.now, input);
        self.pump();
        r
    }

    fn login(&mut self, agent: &str) {
        self.input(AgentInput::LoggedIn(agent.into())).unwrap();
    }

    fn answer(&mut self, agent: &str, call: u32) {
        let input = AgentInput::Answered {
            agent: agent.into(),
            call,
        };
        self.input(input).unwrap();
    }

    fn hang_up(&mut self, agent: &str, call: u32) {
        let input = AgentInput::CallEnded {
            agent: agent.into(),
            call,
        };
        self.input(input).unwrap();
    }

    fn reject(&mut self, agent: &str, call: u32, why: RejectReason) {
        let input = AgentInput::OfferRejected {
            agent: agent.into(),
            call,
            why,
        };
        self.input(input).unwrap();
    }

    fn enqueue(&mut self, call: u32, queue: &str, language: &str) -> usize {
        let position = self
            .queues
            .enqueue(self.now, call, queue.into(), language)
            .unwrap();
        self.pump();
        position
    }

    fn hang_up_caller(&mut self, call: u32) -> bool {
        let removed = self.queues.remove(self.now, &mut self.agents, &call);
        self.pump();
        removed
    }

    /// Sleeps like the shell: to each earliest deadline in turn, until `at`.
    fn run_until(&mut self, at: Instant) {
        loop {
            let next = [self.agents.poll_timeout(), self.queues.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= at => {
                    self.now = self.now.max(t);
                    self.agents.handle_timeout(self.now);
                    self.queues.handle_timeout(self.now, &mut self.agents);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(at);
    }

    fn advance(&mut self, secs: f64) {
        self.run_until(self.now + Duration::from_secs_f64(secs));
    }

    fn take_offers(&mut self) -> Vec<(u32, String)> {
        std::mem::take(&mut self.offers)
    }

    fn state(&self, agent: &str) -> (AgentStatus, AgentState) {
        let a = self.agents.get(&agent.into()).expect("configured agent");
        (a.status(), a.state())
    }

    fn exits(&self) -> Vec<&QueueExit<u32>> {
        self.queue_events
            .iter()
            .filter_map(|e| match e {
                QueueEvent::Left(exit) => Some(exit),
                QueueEvent::RingTimeout { .. } => None,
            })
            .collect()
    }
}

fn offer(call: u32, agent: &str) -> (u32, String) {
    (call, agent.to_owned())
}

fn refunds(id: &str, languages: &[&str]) -> AgentProfile {
    AgentProfile::new(id, &[REFUNDS], languages)
}

#[test]
fn the_agent_idle_longest_gets_the_caller_and_goes_to_the_back_after_a_call() {
    let mut c = Centre::with(vec![
        refunds("alice", &[]),
        refunds("bob", &[]),
        refunds("carol", &[]),
    ]);
    c.login("bob");
    c.advance(2.0);
    c.login("carol");
    c.advance(3.0);
    c.login("alice");
    c.advance(5.0);

    c.enqueue(1, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    assert_eq!(
        c.state("bob"),
        (AgentStatus::Available, AgentState::Offered)
    );
    c.answer("bob", 1);
    c.advance(60.0);
    c.hang_up("bob", 1);
    c.advance(10.0);
    assert_eq!(c.state("bob"), (AgentStatus::Available, AgentState::Idle));
    assert_eq!(c.agents.get(&"bob".into()).unwrap().calls_taken(), 1);

    // Bob was idle longest, but has just been busy: carol, then alice, then bob.
    c.enqueue(2, REFUNDS, "en");
    c.enqueue(3, REFUNDS, "en");
    c.enqueue(4, REFUNDS, "en");
    assert_eq!(
        c.take_offers(),
        vec![offer(2, "carol"), offer(3, "alice"), offer(4, "bob")]
    );
}

#[test]
fn agents_speaking_the_callers_language_come_first() {
    let mut c = Centre::with(vec![
        AgentProfile::new("alice", &[DISPUTES], &["en"]),
        AgentProfile::new("li", &[DISPUTES], &["zh", "en"]),
        AgentProfile::new("wang", &[DISPUTES], &["zh"]),
    ]);
    c.login("alice");
    c.advance(1.0);
    c.login("wang");
    c.advance(1.0);
    c.login("li");
    c.advance(1.0);

    // Alice has waited longest, but speaks no Chinese; of the two who do, wang has waited longer.
    c.enqueue(1, DISPUTES, "zh");
    assert_eq!(c.take_offers(), vec![offer(1, "wang")]);
    // An English caller: alice (longest idle of the English speakers).
    c.enqueue(2, DISPUTES, "en");
    assert_eq!(c.take_offers(), vec![offer(2, "alice")]);
    // Nobody left who speaks French: the longest idle one is chosen anyway.
    c.enqueue(3, DISPUTES, "fr");
    assert_eq!(c.take_offers(), vec![offer(3, "li")]);
}

#[test]
fn break_stops_new_offers_and_back_restarts_them_at_the_back_of_the_idle_order() {
    let mut c = Centre::with(vec![refunds("alice", &[]), refunds("bob", &[])]);
    assert_eq!(
        c.input(AgentInput::Break("alice".into())),
        Err(AgentError::NotLoggedIn("alice".into()))
    );
    c.login("alice");
    c.advance(5.0);
    c.login("bob");
    c.advance(1.0);
    c.input(AgentInput::Break("alice".into())).unwrap();
    assert_eq!(c.state("alice"), (AgentStatus::OnBreak, AgentState::Idle));
    c.advance(4.0);
    c.input(AgentInput::Back("alice".into())).unwrap();
    c.advance(1.0);

    // Alice logged in first, but her idle time restarted when she came back from break.
    c.enqueue(1, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    // A break taken while the phone rings keeps that offer: bob is at his phone and answers it.
    c.input(AgentInput::Break("bob".into())).unwrap();
    c.answer("bob", 1);
    c.hang_up("bob", 1);
    c.enqueue(2, REFUNDS, "en");
    c.enqueue(3, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(2, "alice")]);
    c.answer("alice", 2);
    c.advance(60.0);
    assert!(
        c.take_offers().is_empty(),
        "nobody on break is offered a caller"
    );
    assert_eq!(c.state("bob"), (AgentStatus::OnBreak, AgentState::Idle));

    c.input(AgentInput::Back("bob".into())).unwrap();
    assert_eq!(c.take_offers(), vec![offer(3, "bob")]);
    c.input(AgentInput::Back("bob".into())).unwrap(); // already back: no change
    let statuses: Vec<_> = c
        .agent_events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::StatusChanged { agent, status } => Some((agent.as_str(), *status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("alice", AgentStatus::Available),
            ("bob", AgentStatus::Available),
            ("alice", AgentStatus::OnBreak),
            ("alice", AgentStatus::Available),
            ("bob", AgentStatus::OnBreak),
            ("bob", AgentStatus::Available),
        ]
    );
}

#[test]
fn wrap_up_lasts_its_configured_time_then_the_agent_is_idle_and_offered() {
    let config = AgentsConfig {
        wrap_up: Duration::from_secs(30),
        ..AgentsConfig::default()
    };
    let mut c = Centre::new(config, vec![refunds("alice", &[])]);
    c.login("alice");
    c.enqueue(1, REFUNDS, "en");
    c.answer("alice", 1);
    c.advance(100.0);
    c.hang_up("alice", 1);
    let ended = c.now;
    assert_eq!(
        c.state("alice"),
        (AgentStatus::Available, AgentState::WrapUp)
    );
    assert_eq!(
        c.agents.poll_timeout(),
        Some(ended + Duration::from_secs(30))
    );

    c.enqueue(2, REFUNDS, "en");
    c.take_offers();
    c.run_until(ended + Duration::from_millis(29_999));
    assert!(c.take_offers().is_empty(), "no offer during wrap-up");
    assert_eq!(c.state("alice").1, AgentState::WrapUp);

    c.run_until(ended + Duration::from_secs(31));
    assert_eq!(c.take_offers(), vec![offer(2, "alice")]);
    let alice = c.agents.get(&"alice".into()).unwrap();
    assert_eq!(alice.idle_since(), Some(ended + Duration::from_secs(30)));
}

#[test]
fn three_unanswered_offers_in_a_row_put_the_agent_on_break() {
    let mut c = Centre::with(vec![refunds("alice", &[]), refunds("bob", &[])]);
    c.login("alice");
    c.enqueue(1, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);
    // 15 s of ringing, 10 s of wrap-up, she is the only agent: offered again, three times.
    c.advance(15.0);
    assert_eq!(
        c.queue_events,
        vec![QueueEvent::RingTimeout {
            call: 1,
            agent: "alice".into()
        }]
    );
    assert_eq!(
        c.state("alice"),
        (AgentStatus::Available, AgentState::WrapUp)
    );
    c.advance(10.0);
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);
    c.advance(25.0);
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);
    assert_eq!(c.agents.get(&"alice".into()).unwrap().no_answer_count(), 2);
    c.advance(15.0);

    let alice: AgentId = "alice".into();
    assert!(c.agent_events.contains(&AgentEvent::MaxNoAnswer {
        agent: alice.clone()
    }));
    assert_eq!(c.state("alice"), (AgentStatus::OnBreak, AgentState::WrapUp));
    c.advance(60.0);
    assert!(
        c.take_offers().is_empty(),
        "an agent on break is not offered"
    );

    // Bob logs in and takes the caller, who never lost their place.
    c.login("bob");
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    assert_eq!(c.queues.position(&1), Some(1));
    // Back from break: a fresh count.
    c.input(AgentInput::Back(alice.clone())).unwrap();
    assert_eq!(c.agents.get(&alice).unwrap().no_answer_count(), 0);
}

#[test]
fn an_answer_between_no_answers_resets_the_count() {
    let mut c = Centre::with(vec![refunds("alice", &[])]);
    c.login("alice");
    for call in 1..=2 {
        c.enqueue(call, REFUNDS, "en");
        c.advance(15.0);
        c.hang_up_caller(call);
        c.advance(10.0);
    }
    c.enqueue(3, REFUNDS, "en");
    c.answer("alice", 3);
    c.hang_up("alice", 3);
    c.advance(10.0);
    for call in 4..=5 {
        c.enqueue(call, REFUNDS, "en");
        c.advance(15.0);
        c.hang_up_caller(call);
        c.advance(10.0);
    }
    assert_eq!(c.state("alice"), (AgentStatus::Available, AgentState::Idle));
    assert_eq!(c.agents.get(&"alice".into()).unwrap().no_answer_count(), 2);
}

#[test]
fn a_refused_offer_moves_to_the_next_agent_and_the_caller_keeps_the_head_of_the_line() {
    let mut c = Centre::with(vec![refunds("alice", &[]), refunds("bob", &[])]);
    c.login("alice");
    c.login("bob");
    c.enqueue(1, REFUNDS, "en");
    c.enqueue(2, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "alice"), offer(2, "bob")]);
    c.answer("bob", 2);
    c.enqueue(3, REFUNDS, "en");
    c.advance(2.0);
    c.hang_up("bob", 2);
    c.advance(2.0);

    c.reject("alice", 1, RejectReason::Declined);
    assert_eq!(c.queues.position(&1), Some(1), "caller 1 kept the head");
    assert_eq!(c.queues.position(&3), Some(2));
    // Bob's wrap-up ends first (t = 12 s): he gets caller 1, not 3; alice (t = 14 s) gets caller 3.
    c.advance(10.0);
    assert_eq!(c.take_offers(), vec![offer(1, "bob"), offer(3, "alice")]);

    // A failed agent leg (say, a 500 from the phone) also leaves the caller first in line.
    c.reject("bob", 1, RejectReason::Failed);
    c.answer("alice", 3);
    assert_eq!(c.queues.position(&1), Some(1));
    c.advance(10.0);
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    c.answer("bob", 1);
    let exit = c.exits().into_iter().find(|e| e.call == 1).unwrap().clone();
    assert_eq!(exit.result, QueueResult::Answered);
    assert_eq!(exit.agent, Some("bob".into()));
    assert_eq!(exit.tried, vec![AgentId::from("alice"), "bob".into()]);
    assert_eq!(exit.queue_wait_ms(), 24_000);
}

#[test]
fn an_agent_who_refused_a_caller_is_not_offered_them_again_while_another_is_free() {
    // No wrap-up, so a refusing agent is free again at once and only the rule keeps them out.
    let config = AgentsConfig {
        wrap_up: Duration::ZERO,
        ..AgentsConfig::default()
    };
    let mut c = Centre::new(
        config,
        vec![refunds("alice", &["en"]), refunds("bob", &["de"])],
    );
    c.login("alice");
    c.login("bob");
    c.enqueue(1, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);
    c.reject("alice", 1, RejectReason::Busy);
    // Alice speaks English and is free again, but bob has not had this caller yet.
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    c.reject("bob", 1, RejectReason::Declined);
    // Both tried, both free: the choice starts over (alice speaks the caller's language).
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);
}

#[test]
fn callers_are_served_first_come_first_served_across_queues() {
    let mut c = Centre::with(vec![
        AgentProfile::new("alice", &[REFUNDS, DISPUTES], &[]),
        refunds("bob", &[]),
    ]);
    c.enqueue(10, REFUNDS, "en");
    c.advance(1.0);
    c.enqueue(20, DISPUTES, "zh");
    c.advance(1.0);
    assert_eq!(c.enqueue(30, REFUNDS, "en"), 2);
    assert!(c.take_offers().is_empty());

    // Alice serves both queues: the caller waiting longest overall is hers.
    c.login("alice");
    assert_eq!(c.take_offers(), vec![offer(10, "alice")]);
    c.answer("alice", 10);
    // Bob serves refunds only: the next refunds caller, though 20 came before.
    c.login("bob");
    assert_eq!(c.take_offers(), vec![offer(30, "bob")]);
    c.hang_up("alice", 10);
    c.advance(10.0);
    assert_eq!(c.take_offers(), vec![offer(20, "alice")]);
}

#[test]
fn an_agent_logging_out_while_offered_loses_the_offer_to_the_next_agent() {
    let mut c = Centre::with(vec![refunds("alice", &[]), refunds("bob", &[])]);
    c.login("alice");
    c.advance(1.0);
    c.login("bob");
    c.enqueue(1, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "alice")]);

    c.input(AgentInput::LoggedOut("alice".into())).unwrap();
    assert!(c.agent_events.contains(&AgentEvent::OfferEnded {
        agent: "alice".into(),
        call: 1,
        outcome: OfferOutcome::Withdrawn,
    }));
    assert_eq!(c.state("alice"), (AgentStatus::LoggedOut, AgentState::Idle));
    assert_eq!(c.take_offers(), vec![offer(1, "bob")]);
    // Her phone answering late is refused: the call layer hangs that leg up.
    assert_eq!(
        c.input(AgentInput::Answered {
            agent: "alice".into(),
            call: 1
        }),
        Err(AgentError::NoSuchOffer("alice".into()))
    );
    c.answer("bob", 1);
    c.enqueue(2, REFUNDS, "en");
    c.advance(120.0);
    assert!(
        c.take_offers().is_empty(),
        "a logged-out agent is never offered"
    );
}

#[test]
fn hot_reload_keeps_presence_and_logs_out_only_removed_agents() {
    let mut c = Centre::with(vec![
        refunds("alice", &[]),
        refunds("bob", &[]),
        refunds("carol", &[]),
        refunds("dave", &[]),
    ]);
    for a in ["alice", "bob", "carol", "dave"] {
        c.login(a);
    }
    c.input(AgentInput::Break("alice".into())).unwrap();
    c.enqueue(1, REFUNDS, "en");
    c.enqueue(2, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(1, "bob"), offer(2, "carol")]);
    c.answer("bob", 1);
    c.answer("carol", 2);
    c.agent_events.clear();

    // Alice moves to disputes, bob keeps refunds, carol (in a call) and dave (idle) leave, erin joins.
    c.agents.set_agents(
        c.now,
        vec![
            AgentProfile::new("alice", &[DISPUTES], &[]),
            refunds("bob", &[]),
            refunds("erin", &[]),
        ],
    );
    c.pump();
    assert_eq!(c.state("alice"), (AgentStatus::OnBreak, AgentState::Idle));
    assert_eq!(c.state("bob"), (AgentStatus::Available, AgentState::InCall));
    assert_eq!(c.state("erin"), (AgentStatus::LoggedOut, AgentState::Idle));
    assert!(c.agents.get(&"carol".into()).is_none());
    assert!(c.agents.get(&"dave".into()).is_none());
    assert_eq!(
        c.agent_events,
        vec![
            AgentEvent::StatusChanged {
                agent: "carol".into(),
                status: AgentStatus::LoggedOut
            },
            AgentEvent::StatusChanged {
                agent: "dave".into(),
                status: AgentStatus::LoggedOut
            },
        ]
    );
    // Carol's call runs to its end; bob's call ends and bob goes through wrap-up as before.
    c.hang_up("carol", 2);
    c.hang_up("bob", 1);
    assert_eq!(c.state("bob"), (AgentStatus::Available, AgentState::WrapUp));
    c.input(AgentInput::Back("alice".into())).unwrap();
    c.enqueue(3, DISPUTES, "en");
    assert_eq!(c.take_offers(), vec![offer(3, "alice")]);
    assert_eq!(
        c.input(AgentInput::LoggedIn("dave".into())),
        Err(AgentError::UnknownAgent("dave".into()))
    );
}

#[test]
fn a_caller_hanging_up_leaves_the_line_and_releases_a_ringing_agent() {
    let mut c = Centre::with(vec![refunds("alice", &[])]);
    // Nobody logged in: a caller who gives up had no agent to wait for.
    c.enqueue(1, REFUNDS, "en");
    c.advance(20.0);
    assert!(c.hang_up_caller(1));
    assert!(!c.hang_up_caller(1));

    c.login("alice");
    let idle_since = c.agents.get(&"alice".into()).unwrap().idle_since();
    c.advance(5.0);
    c.enqueue(2, REFUNDS, "en");
    c.enqueue(3, REFUNDS, "en");
    assert_eq!(c.take_offers(), vec![offer(2, "alice")]);
    c.advance(3.0);
    // Caller 2 hangs up while alice's phone rings; caller 3 waits behind. Alice never worked, so she
    // is free at once with her idle time intact, and takes caller 3.
    assert!(c.hang_up_caller(2));
    assert_eq!(c.take_offers(), vec![offer(3, "alice")]);
    assert_eq!(c.queues.waiting(&QueueName::from(REFUNDS)), 1);
    c.answer("alice", 3);
    assert_eq!(
        c.agents.get(&"alice".into()).unwrap().idle_since(),
        idle_since
    );

    let exits: Vec<_> = c
        .exits()
        .into_iter()
        .map(|e| (e.call, e.result, e.queue_wait_ms(), e.ringing.clone()))
        .collect();
    assert_eq!(
        exits,
        vec![
            (1, QueueResult::NoAgents, 20_000, None),
            (2, QueueResult::Abandoned, 3_000, Some("alice".into())),
            (3, QueueResult::Answered, 3_000, None),
        ]
    );
    assert_eq!(c.queues.waiting(&QueueName::from(REFUNDS)), 0);
    assert_eq!(c.queues.poll_timeout(), None, "no ring timer left behind");
}

#[test]
fn a_caller_waiting_for_busy_agents_abandons_rather_than_finds_no_agents() {
    let mut c = Centre::with(vec![refunds("alice", &[])]);
    c.login("alice");
    c.enqueue(1, REFUNDS, "en");
    c.answer("alice", 1);
    c.enqueue(2, REFUNDS, "en");
    c.advance(7.5);
    c.hang_up_caller(2);
    let exit = c.exits().into_iter().find(|e| e.call == 2).unwrap().clone();
    assert_eq!(
        (exit.result, exit.queue_wait_ms()),
        (QueueResult::Abandoned, 7_500)
    );
    assert_eq!(exit.queue.as_str(), REFUNDS);
}

#[test]
fn no_offer_to_an_agent_in_wrap_up_in_a_call_on_break_or_logged_out() {
    let mut c = Centre::with(vec![
        refunds("in-call", &[]),
        refunds("wrap-up", &[]),
        refunds("on-break", &[]),
        refunds("logged-out", &[]),
    ]);
    c.login("in-call");
    c.login("wrap-up");
    c.login("on-break");
    c.input(AgentInput::Break("on-break".into())).unwrap();
    c.enqueue(1, REFUNDS, "en");
    c.enqueue(2, REFUNDS, "en");
    assert_eq!(
        c.take_offers(),
        vec![offer(1, "in-call"), offer(2, "wrap-up")]
    );
    c.answer("in-call", 1);
    c.answer("wrap-up", 2);
    c.hang_up("wrap-up", 2);

    c.enqueue(3, REFUNDS, "en");
    c.advance(9.0);
    assert!(c.take_offers().is_empty());
    assert_eq!(
        [
            c.state("in-call"),
            c.state("wrap-up"),
            c.state("on-break"),
            c.state("logged-out")
        ],
        [
            (AgentStatus::Available, AgentState::InCall),
            (AgentStatus::Available, AgentState::WrapUp),
            (AgentStatus::OnBreak, AgentState::Idle),
            (AgentStatus::LoggedOut, AgentState::Idle),
        ]
    );
    // The agent who was offered is no longer free either: a second caller does not get them.
    c.advance(1.0);
    assert_eq!(c.take_offers(), vec![offer(3, "wrap-up")]);
    c.enqueue(4, REFUNDS, "en");
    c.advance(5.0);
    assert!(c.take_offers().is_empty());
}
