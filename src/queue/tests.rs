//! The queue machine on a simulated clock, driven in the module doc's run order by a small harness.
use super::*;
use crate::agent::presence::{AgentError, AgentProfile, AgentState, AgentsConfig};

const Q: &str = "china.orders";
const EN: &str = "english.orders";

fn name(q: &str) -> QueueName {
    QueueName::from(q)
}

fn id(a: &str) -> AgentId {
    AgentId::from(a)
}

/// Presence and queues in the run order, calls as numbers, time advanced by hand.
struct Centre {
    now: Instant,
    agents: Agents<u32>,
    queues: Queues<u32>,
    /// Offers made, in order: (call, agent).
    offers: Vec<(u32, String)>,
    /// Agent events seen: (agent, call, outcome) of every OfferEnded.
    ended: Vec<(String, u32, OfferOutcome)>,
    timeouts: Vec<(u32, String)>,
    exits: Vec<QueueExit<u32>>,
    announced: Vec<(Instant, Announce<u32>)>,
}

impl Centre {
    fn new(wrap_up: u64, profiles: Vec<AgentProfile>, config: QueueConfig) -> Self {
        let agents_config = AgentsConfig {
            wrap_up: Duration::from_secs(wrap_up),
            max_no_answer: 0,
        };
        let mut queues = Queues::with_seed(config, 42);
        queues.enable_log();
        let mut c = Centre {
            now: Instant::now(),
            agents: Agents::new(agents_config, profiles),
            queues,
            offers: Vec::new(),
            ended: Vec::new(),
            timeouts: Vec::new(),
            exits: Vec::new(),
            announced: Vec::new(),
        };
        let ids: Vec<AgentId> = c.agents.iter().map(|a| a.id().clone()).collect();
        for agent in ids {
            c.input(AgentInput::LoggedIn(agent));
        }
        c
    }

    fn pump(&mut self) {
        loop {
            while let Some(ev) = self.agents.poll_event() {
                self.queues
                    .handle_agent_event_with(self.now, &mut self.agents, &ev);
                if let AgentEvent::OfferEnded {
                    agent,
                    call,
                    outcome,
                } = ev
                {
                    self.ended.push((agent.to_string(), call, outcome));
                }
            }
            while let Some(ev) = self.queues.poll_event() {
                match ev {
                    QueueEvent::RingTimeout { call, agent } => {
                        self.timeouts.push((call, agent.to_string()))
                    }
                    QueueEvent::Left(exit) => self.exits.push(exit),
                }
            }
            while let Some(a) = self.queues.poll_announce() {
                self.announced.push((self.now, a));
            }
            let mut offered = false;
            while let Some(offer) = self.queues.poll_offer(self.now, &mut self.agents) {
                self.offers.push((offer.call, offer.agent.to_string()));
                offered = true;
            }
            if !offered {
                break;
            }
        }
    }

    fn input(&mut self, input: AgentInput<u32>) {
        self.agents.handle(self.now, input).expect("input fits");
        self.pump();
    }

    fn join(&mut self, call: u32, queue: &str, priority: i32) -> Option<usize> {
        let join = Join {
            language: "zh".into(),
            priority,
        };
        let r = self
            .queues
            .enqueue_with(self.now, &self.agents, call, name(queue), join)
            .expect("not queued yet");
        self.pump();
        r
    }

    /// Advances the clock by `secs`, firing every deadline on the way at its own instant.
    fn advance(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        loop {
            let next = [self.agents.poll_timeout(), self.queues.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.agents.handle_timeout(self.now);
                    self.queues.handle_timeout(self.now, &mut self.agents);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn answer(&mut self, agent: &str, call: u32) {
        self.input(AgentInput::Answered {
            agent: id(agent),
            call,
        });
    }

    fn hang_up(&mut self, agent: &str, call: u32) {
        self.input(AgentInput::CallEnded {
            agent: id(agent),
            call,
        });
    }

    fn reject(&mut self, agent: &str, call: u32, why: RejectReason) {
        self.input(AgentInput::OfferRejected {
            agent: id(agent),
            call,
            why,
        });
    }

    fn state(&self, agent: &str) -> AgentState {
        self.agents.get(&id(agent)).expect("configured").state()
    }

    /// The last offer's agent.
    fn last_offer(&self) -> (u32, &str) {
        let (c, a) = self.offers.last().expect("an offer was made");
        (*c, a.as_str())
    }

    /// Serves `calls` callers one after the other, each answered by whoever is offered and ended at
    /// once; returns who took each.
    fn serve_one_by_one(&mut self, calls: std::ops::Range<u32>) -> Vec<String> {
        let mut took = Vec::new();
        for call in calls {
            self.join(call, Q, 0);
            let (c, agent) = self.last_offer();
            assert_eq!(c, call);
            let agent = agent.to_owned();
            self.answer(&agent, call);
            self.advance(30);
            self.hang_up(&agent, call);
            took.push(agent);
        }
        took
    }

    fn log(&mut self) -> Vec<LogRecord<u32>> {
        std::iter::from_fn(|| self.queues.poll_log()).collect()
    }
}

fn three(strategy: Strategy) -> Centre {
    let config = QueueConfig {
        strategy,
        ..QueueConfig::default()
    };
    let p = |a| AgentProfile::new(a, &[Q], &["zh"]);
    Centre::new(0, vec![p("wang"), p("li"), p("zhao")], config)
}

#[test]
fn enqueue_twice_is_refused_and_positions_count_from_one() {
    let mut q: Queues<u32> = Queues::new(QueueConfig::default());
    let t0 = Instant::now();
    let name = QueueName::from("europe.refunds");
    assert_eq!(q.enqueue(t0, 1, name.clone(), "en"), Ok(1));
    assert_eq!(q.enqueue(t0, 2, name.clone(), "en"), Ok(2));
    assert_eq!(
        q.enqueue(t0, 1, name.clone(), "en"),
        Err(QueueError::AlreadyQueued)
    );
    assert_eq!((q.position(&2), q.waiting(&name)), (Some(2), 2));
}

#[test]
fn round_robin_remembers_its_place_across_calls() {
    let mut c = three(Strategy::RoundRobin);
    // Configured order wang, li, zhao (not the IDs' order); each is idle again before the next call.
    let took = c.serve_one_by_one(1..8);
    assert_eq!(took, ["wang", "li", "zhao", "wang", "li", "zhao", "wang"]);
}

#[test]
fn longest_idle_and_top_down_differ_on_the_same_calls() {
    let mut c = three(Strategy::LongestIdleAgent);
    assert_eq!(c.serve_one_by_one(1..5), ["li", "wang", "zhao", "li"]);
    let mut c = three(Strategy::TopDown);
    assert_eq!(c.serve_one_by_one(1..4), ["wang", "wang", "wang"]);
    // wang busy: the next from the top, then the top again once wang is free.
    c.join(10, Q, 0);
    c.answer("wang", 10);
    c.join(11, Q, 0);
    assert_eq!(c.last_offer(), (11, "li"));
    c.hang_up("wang", 10);
    c.join(12, Q, 0);
    assert_eq!(c.last_offer(), (12, "wang"));
}

#[test]
fn fewest_calls_counts_the_calls_of_today() {
    let mut c = three(Strategy::FewestCalls);
    // Same idle times (all logged in at t0) and no calls: the tie goes to the ID, li.
    assert_eq!(c.serve_one_by_one(1..4), ["li", "wang", "zhao"]);
    // zhao takes a second call while the others are on break, and is then the longest idle.
    for a in ["li", "wang"] {
        c.input(AgentInput::Break(id(a)));
    }
    c.join(4, Q, 0);
    c.answer("zhao", 4);
    c.hang_up("zhao", 4);
    c.advance(10);
    for a in ["li", "wang"] {
        c.input(AgentInput::Back(id(a)));
    }
    // Fewest today beats longest idle: li (1 call), not zhao (2).
    c.join(5, Q, 0);
    assert_eq!(c.last_offer(), (5, "li"));
    c.answer("li", 5);
    c.hang_up("li", 5);
    // A new day: everyone at zero again, so the longest idle, zhao, though the most in total.
    c.agents.start_new_day();
    assert_eq!(c.agents.get(&id("li")).unwrap().calls_today(), 0);
    c.join(6, Q, 0);
    assert_eq!(c.last_offer(), (6, "zhao"));
    assert_eq!(c.agents.get(&id("zhao")).unwrap().calls_taken(), 2);
}

#[test]
fn random_is_the_same_for_the_same_seed() {
    let picks = || three(Strategy::Random).serve_one_by_one(1..13);
    let first = picks();
    assert_eq!(first, picks());
    let distinct: std::collections::BTreeSet<_> = first.iter().collect();
    assert!(distinct.len() > 1, "{first:?}");
}

#[test]
fn ring_all_offers_everyone_and_the_first_answer_frees_the_rest_at_once() {
    let mut c = three(Strategy::RingAll);
    c.join(1, Q, 0);
    let rung: Vec<_> = c.offers.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(rung, ["li", "wang", "zhao"]);
    let mut offered = c.queues.offered_to(&1);
    offered.sort();
    assert_eq!(offered, [id("li"), id("wang"), id("zhao")]);
    c.answer("wang", 1);
    assert_eq!(c.exits[0].result, QueueResult::Answered);
    assert_eq!(c.exits[0].agent, Some(id("wang")));
    // The two others: withdrawn (their legs get CANCEL) and idle at once, not reserved.
    let withdrawn: Vec<_> = c
        .ended
        .iter()
        .filter(|e| e.2 == OfferOutcome::Withdrawn)
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(withdrawn, ["li", "zhao"]);
    assert_eq!(
        (c.state("li"), c.state("zhao"), c.state("wang")),
        (AgentState::Idle, AgentState::Idle, AgentState::InCall)
    );
    // zhao's phone answered before the CANCEL got there: refused (the call layer BYEs it), still idle.
    let late = c.agents.handle(
        c.now,
        AgentInput::Answered {
            agent: id("zhao"),
            call: 1,
        },
    );
    assert_eq!(late, Err(AgentError::NoSuchOffer(id("zhao"))));
    assert_eq!(c.state("zhao"), AgentState::Idle);
    // The freed agents take the next caller at once.
    c.join(2, Q, 0);
    let rung: Vec<_> = c.offers[3..].iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(rung, ["li", "zhao"]);
}

#[test]
fn ring_all_caller_hang_up_and_ring_timeout_release_every_agent() {
    let mut c = three(Strategy::RingAll);
    c.join(1, Q, 0);
    c.queues.remove(c.now, &mut c.agents, &1);
    c.pump();
    let exit = &c.exits[0];
    assert_eq!(exit.result, QueueResult::Abandoned);
    assert_eq!(exit.ringing_all, [id("li"), id("wang"), id("zhao")]);
    assert_eq!(exit.ringing, Some(id("li")));
    for a in ["li", "wang", "zhao"] {
        assert_eq!(c.state(a), AgentState::Idle);
    }
    // Nobody answers the next caller: every agent times out together, and the caller is rung again.
    c.join(2, Q, 0);
    c.advance(15);
    let mut timed_out: Vec<_> = c.timeouts.iter().map(|(_, a)| a.as_str()).collect();
    timed_out.sort();
    assert_eq!(timed_out, ["li", "wang", "zhao"]);
    assert_eq!(c.offers.len(), 9, "all rung again at once (zero wrap-up)");
    // One declines while the others ring: the caller stays offered to the others.
    c.reject("li", 2, RejectReason::Declined);
    assert_eq!(c.queues.offered_to(&2).len(), 2);
    assert!(c.exits.len() == 1);
}

#[test]
fn the_lowest_penalty_is_offered_first_but_never_makes_a_caller_wait() {
    let config = QueueConfig::default();
    let agents = vec![
        AgentProfile::new("senior", &[Q], &["zh"]).with_penalty(Q, 2),
        AgentProfile::new("junior", &[Q], &["zh"]),
    ];
    let mut c = Centre::new(0, agents, config);
    c.advance(100);
    // senior has been idle just as long, but has the higher penalty here.
    c.join(1, Q, 0);
    assert_eq!(c.last_offer(), (1, "junior"));
    c.answer("junior", 1);
    // junior busy: the next caller does not wait for them.
    c.join(2, Q, 0);
    assert_eq!(c.last_offer(), (2, "senior"));
    assert_eq!(c.agents.get(&id("senior")).unwrap().penalty(&name(Q)), 2);
}

#[test]
fn higher_priority_goes_first_and_each_priority_is_first_come_first_served() {
    let mut c = three(Strategy::LongestIdleAgent);
    for a in ["wang", "li", "zhao"] {
        c.input(AgentInput::Break(id(a)));
    }
    assert_eq!(c.join(1, Q, 0), Some(1));
    assert_eq!(c.join(2, Q, 0), Some(2));
    assert_eq!(c.join(3, Q, 5), Some(1));
    assert_eq!(c.join(4, Q, 5), Some(2));
    assert_eq!(c.join(5, Q, -1), Some(5));
    assert_eq!(c.queues.position(&1), Some(3));
    let mut served = Vec::new();
    for a in ["wang", "li", "zhao"] {
        c.input(AgentInput::Back(id(a)));
        let (call, agent) = c.last_offer();
        served.push(call);
        let agent = agent.to_owned();
        c.answer(&agent, call);
    }
    assert_eq!(served, [3, 4, 1]);
    // The old `enqueue` is priority 0: behind the 5s, ahead of the -1.
    c.queues.enqueue(c.now, 6, name(Q), "zh").unwrap();
    assert_eq!(c.queues.position(&6), Some(2));
}

fn one_agent(config: QueueConfig) -> Centre {
    let agents = vec![AgentProfile::new("li", &[Q], &["zh"])];
    Centre::new(0, agents, config)
}

#[test]
fn max_wait_times_out_to_the_overflow_queue_but_not_while_an_agent_rings() {
    let config = QueueConfig {
        max_wait: Some(Duration::from_secs(60)),
        overflow: Some(OverflowTarget::Queue(name(EN))),
        ..QueueConfig::default()
    };
    let mut c = one_agent(config);
    c.answer_first_caller_busy();
    c.join(2, Q, 3);
    c.advance(59);
    assert!(c.exits.len() == 1 && c.queues.is_queued(&2));
    // li frees up at 59 s and rings for caller 2 past the 60 s max wait.
    c.hang_up("li", 1);
    assert_eq!(c.last_offer(), (2, "li"));
    c.advance(10);
    assert!(c.queues.is_queued(&2), "not cut while li's phone rings");
    c.reject("li", 2, RejectReason::Busy);
    let exit = c.exits.last().unwrap();
    assert_eq!((exit.call, exit.result), (2, QueueResult::Timeout));
    assert_eq!(exit.reason, Some(OverflowReason::MaxWait));
    assert_eq!(exit.overflow_to, Some(OverflowTarget::Queue(name(EN))));
    assert_eq!((exit.priority, exit.queue_wait_ms()), (3, 69_000));
    // Without an agent ringing, the timeout comes on time.
    c.input(AgentInput::Break(id("li")));
    c.join(3, Q, 0);
    c.advance(59);
    assert!(c.queues.is_queued(&3));
    c.advance(1);
    assert_eq!(c.exits.last().unwrap().result, QueueResult::Timeout);
    assert_eq!(c.exits.last().unwrap().queue_wait_ms(), 60_000);
}

impl Centre {
    /// Caller 1 joins and li answers: li is busy.
    fn answer_first_caller_busy(&mut self) {
        self.join(1, Q, 0);
        self.answer("li", 1);
    }
}

#[test]
fn a_full_line_overflows_on_joining() {
    let hang_up = OverflowTarget::HangUp {
        prompts: vec!["sorry-busy".into()],
    };
    let config = QueueConfig {
        max_length: Some(2),
        overflow: Some(hang_up.clone()),
        ..QueueConfig::default()
    };
    let mut c = one_agent(config);
    c.answer_first_caller_busy();
    assert_eq!(c.join(2, Q, 0), Some(1));
    assert_eq!(c.join(3, Q, 0), Some(2));
    assert_eq!(c.join(4, Q, 9), None, "full, whatever the priority");
    let exit = c.exits.last().unwrap();
    assert_eq!((exit.call, exit.result), (4, QueueResult::Overflow));
    assert_eq!(exit.reason, Some(OverflowReason::MaxLength));
    assert_eq!(exit.overflow_to, Some(hang_up));
    assert!(!c.queues.is_queued(&4));
    // The old enqueue overflows too, returning position 0.
    assert_eq!(c.queues.enqueue(c.now, 5, name(Q), "zh"), Ok(0));
}

#[test]
fn when_no_agents_overflow_applies_on_joining_and_when_the_last_agent_leaves() {
    let config = QueueConfig {
        when_no_agents: WhenNoAgents::Overflow,
        overflow: Some(OverflowTarget::Queue(name(EN))),
        ..QueueConfig::default()
    };
    let mut c = one_agent(config);
    c.answer_first_caller_busy();
    // li is in a call but available: callers wait for them.
    assert_eq!(c.join(2, Q, 0), Some(1));
    assert_eq!(c.join(3, Q, 0), Some(2));
    c.input(AgentInput::Break(id("li")));
    let left: Vec<_> = c.exits[1..].iter().map(|e| (e.call, e.result)).collect();
    assert_eq!(
        left,
        [(2, QueueResult::Overflow), (3, QueueResult::Overflow)]
    );
    assert_eq!(c.exits[2].reason, Some(OverflowReason::NoAgents));
    assert_eq!(c.join(4, Q, 0), None);
    // `wait` (the default) keeps them.
    let mut c = one_agent(QueueConfig::default());
    c.input(AgentInput::LoggedOut(id("li")));
    assert_eq!(c.join(1, Q, 0), Some(1));
}

#[test]
fn a_queue_wrap_up_follows_a_call_from_that_queue_only() {
    let config = QueueConfig {
        wrap_up: Some(Duration::from_secs(30)),
        ..QueueConfig::default()
    };
    let agents = vec![AgentProfile::new("li", &[Q, EN], &["zh"])];
    let mut c = Centre::new(5, agents, config.clone());
    c.queues
        .set_configs(QueueConfig::default(), HashMap::from([(name(Q), config)]));
    c.answer_first_caller_busy();
    c.hang_up("li", 1);
    let until = c.agents.get(&id("li")).unwrap().wrap_up_until();
    assert_eq!(until, Some(c.now + Duration::from_secs(30)));
    c.advance(30);
    assert_eq!(c.state("li"), AgentState::Idle);
    c.join(2, EN, 0);
    c.answer("li", 2);
    c.hang_up("li", 2);
    let until = c.agents.get(&id("li")).unwrap().wrap_up_until();
    assert_eq!(
        until,
        Some(c.now + Duration::from_secs(5)),
        "presence's own"
    );
    // A refused offer takes presence's own too.
    c.advance(5);
    c.join(3, Q, 0);
    c.reject("li", 3, RejectReason::Busy);
    let until = c.agents.get(&id("li")).unwrap().wrap_up_until();
    assert_eq!(until, Some(c.now + Duration::from_secs(5)));
}

#[test]
fn announcements_come_on_time_never_while_ringing_and_say_a_position_once() {
    let config = QueueConfig {
        announce_every: Some(Duration::from_secs(20)),
        ..QueueConfig::default()
    };
    let agents = vec![AgentProfile::new("li", &[Q], &["zh"])];
    let mut c = Centre::new(5, agents, config);
    let t0 = c.now;
    let at = |s| t0 + Duration::from_secs(s);
    c.answer_first_caller_busy();
    c.join(2, Q, 0);
    c.join(3, Q, 0);
    c.advance(20);
    let said: Vec<_> = c
        .announced
        .iter()
        .map(|(t, a)| (*t, a.call, a.position, a.estimated_wait))
        .collect();
    // One caller answered at once so far: the estimate is 0 s.
    let zero = Some(Duration::ZERO);
    assert_eq!(
        said,
        [(at(20), 2, Some(1), zero), (at(20), 3, Some(2), zero)]
    );
    c.advance(20);
    let said: Vec<_> = c.announced[2..].iter().map(|(_, a)| a.position).collect();
    assert_eq!(said, [None, None], "same places: not repeated");
    // li hangs up at 50 s, wraps up until 55 s, then rings for caller 2 through the 60 s mark.
    c.advance(10);
    c.hang_up("li", 1);
    c.advance(5);
    assert_eq!(c.last_offer(), (2, "li"));
    // Nobody answers by 70 s: li wraps up again, and caller 2's postponed announcement comes then.
    c.advance(15);
    let said: Vec<_> = c.announced[4..].iter().map(|(t, a)| (*t, a.call)).collect();
    assert_eq!(said, [(at(60), 3), (at(70), 2)]);
    // li answers caller 2 at 75 s: caller 3 is now first, and is told so at 80 s.
    c.advance(5);
    c.answer("li", 2);
    c.advance(5);
    let (t, a) = c.announced.last().unwrap();
    assert_eq!((*t, a.call, a.position), (at(80), 3, Some(1)));
    // Waits so far: 0 s and 75 s.
    assert_eq!(a.estimated_wait, Some(Duration::from_millis(37_500)));
    assert_eq!(c.queues.poll_timeout(), Some(at(100)));
}

#[test]
fn estimated_wait_averages_the_recent_answered_waits() {
    let mut c = one_agent(QueueConfig::default());
    assert_eq!(c.queues.estimated_wait(&name(Q)), None);
    c.answer_first_caller_busy();
    c.join(2, Q, 0);
    c.advance(40);
    c.hang_up("li", 1);
    c.answer("li", 2);
    assert_eq!(
        c.queues.estimated_wait(&name(Q)),
        Some(Duration::from_secs(20))
    );
}

#[test]
fn the_log_tells_the_story_of_a_caller() {
    let mut c = one_agent(QueueConfig::default());
    c.log();
    c.join(1, Q, 2);
    c.advance(15);
    c.answer("li", 1);
    let events: Vec<_> = c
        .log()
        .into_iter()
        .map(|r| {
            let call = r.call;
            let agent = r.agent.map(|a| a.to_string());
            (
                serde_json::to_value(&r.event).unwrap()["event"].clone(),
                call,
                agent,
            )
        })
        .map(|(e, c, a)| (e.as_str().unwrap().to_owned(), c, a))
        .collect();
    let li = || Some("li".to_owned());
    let expected = [
        ("join", Some(1), None),
        ("offer", Some(1), li()),
        ("agent-state", None, li()),
        ("agent-state", None, li()),
        ("ring-no-answer", Some(1), li()),
        ("offer", Some(1), li()),
        ("agent-state", None, li()),
        ("agent-state", None, li()),
        ("answer", Some(1), li()),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(e, c, a)| (e.to_owned(), c, a))
        .collect();
    assert_eq!(events, expected);
}
