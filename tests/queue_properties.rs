//! Properties of presence and queues together, over random sequences of logins, breaks, offer outcomes,
//! caller joins and hang-ups, time passing and reloads, driven in the run order of `queue`'s module doc
//! on a simulated clock: no caller waits while a free agent of their queue exists, no agent is offered
//! two calls, and in the end every caller has left the line one way or another and no agent is stuck
//! offered.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use helpline::agent::presence::{
    AgentInput, AgentProfile, AgentState, Agents, AgentsConfig, RejectReason,
};
use helpline::agent::{AgentId, QueueName};
use helpline::queue::{
    Join, OverflowTarget, QueueConfig, QueueEvent, QueueResult, Queues, Strategy as Pick,
    WhenNoAgents,
};
use proptest::prelude::*;

const AGENTS: [&str; 4] = ["ann", "bo", "cy", "di"];
const QUEUES: [&str; 2] = ["china.orders", "english.orders"];
const STRATEGIES: [Pick; 6] = [
    Pick::RingAll,
    Pick::LongestIdleAgent,
    Pick::RoundRobin,
    Pick::FewestCalls,
    Pick::Random,
    Pick::TopDown,
];

#[derive(Clone, Debug)]
enum Step {
    LogIn(usize),
    LogOut(usize),
    Break(usize),
    Back(usize),
    /// The agent's phone answers whatever it rings with (or a stale call: must be refused).
    Answer(usize),
    Refuse(usize, RejectReason),
    /// The agent hangs up their call.
    AgentHangUp(usize),
    Join {
        queue: usize,
        priority: i32,
    },
    /// The n-th caller so far hangs up, wherever they are.
    CallerHangUp(usize),
    Advance(u64),
    /// New strategies per queue, and which queues each agent serves (bit 0, bit 1; none = removed).
    Reload {
        strategies: [usize; 2],
        serves: [u8; 4],
    },
}

fn step() -> impl Strategy<Value = Step> {
    let agent = 0..AGENTS.len();
    let reason = prop_oneof![
        Just(RejectReason::Busy),
        Just(RejectReason::Declined),
        Just(RejectReason::NoAnswer),
        Just(RejectReason::Failed),
    ];
    prop_oneof![
        3 => agent.clone().prop_map(Step::LogIn),
        1 => agent.clone().prop_map(Step::LogOut),
        1 => agent.clone().prop_map(Step::Break),
        1 => agent.clone().prop_map(Step::Back),
        4 => agent.clone().prop_map(Step::Answer),
        2 => (agent.clone(), reason).prop_map(|(a, r)| Step::Refuse(a, r)),
        2 => agent.clone().prop_map(Step::AgentHangUp),
        4 => (0..QUEUES.len(), -1..3i32).prop_map(|(queue, priority)| Step::Join { queue, priority }),
        2 => (0..40usize).prop_map(Step::CallerHangUp),
        3 => (1..60u64).prop_map(Step::Advance),
        1 => (
            [0..STRATEGIES.len(), 0..STRATEGIES.len()],
            [0..4u8, 0..4u8, 0..4u8, 0..4u8]
        )
            .prop_map(|(strategies, serves)| Step::Reload { strategies, serves }),
    ]
    .boxed()
}

/// Where a caller is, as the call layer would know it.
#[derive(Clone, Debug, PartialEq)]
enum Caller {
    Queued,
    InCall(AgentId),
    /// Left the line (answered and hung up, or any other way) with the results of each queue tried.
    Done,
}

struct World {
    now: Instant,
    agents: Agents<usize>,
    queues: Queues<usize>,
    callers: Vec<Caller>,
    /// Per caller, the queues tried in order with their results (the CDR's `queues_tried`).
    tried: Vec<Vec<(QueueName, QueueResult)>>,
    priorities: Vec<i32>,
}

fn profiles(serves: [u8; 4]) -> Vec<AgentProfile> {
    AGENTS
        .iter()
        .zip(serves)
        .filter(|(_, s)| *s != 0)
        .map(|(a, s)| {
            let queues: Vec<&str> = (0..2)
                .filter(|q| s & (1 << q) != 0)
                .map(|q| QUEUES[q])
                .collect();
            AgentProfile::new(a, &queues, &["zh"]).with_penalty(QUEUES[0], u32::from(s))
        })
        .collect()
}

fn configs(strategies: [usize; 2]) -> HashMap<QueueName, QueueConfig> {
    let first = QueueConfig {
        strategy: STRATEGIES[strategies[0]],
        max_wait: Some(Duration::from_secs(150)),
        overflow: Some(OverflowTarget::Queue(QueueName::from(QUEUES[1]))),
        announce_every: Some(Duration::from_secs(20)),
        wrap_up: Some(Duration::from_secs(3)),
        ..QueueConfig::default()
    };
    let second = QueueConfig {
        strategy: STRATEGIES[strategies[1]],
        ring_timeout: Duration::from_secs(10),
        max_length: Some(3),
        when_no_agents: WhenNoAgents::Overflow,
        overflow: Some(OverflowTarget::HangUp {
            prompts: vec!["sorry".into()],
        }),
        ..QueueConfig::default()
    };
    HashMap::from([
        (QueueName::from(QUEUES[0]), first),
        (QueueName::from(QUEUES[1]), second),
    ])
}

impl World {
    fn new() -> World {
        let config = AgentsConfig {
            wrap_up: Duration::from_secs(5),
            max_no_answer: 2,
        };
        let mut queues = Queues::with_seed(QueueConfig::default(), 9);
        queues.set_configs(QueueConfig::default(), configs([0, 2]));
        queues.enable_log();
        World {
            now: Instant::now(),
            agents: Agents::new(config, profiles([1, 3, 2, 3])),
            queues,
            callers: Vec::new(),
            tried: Vec::new(),
            priorities: Vec::new(),
        }
    }

    /// The run order: presence events to the queues, queue events, offers, until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(ev) = self.agents.poll_event() {
                self.queues
                    .handle_agent_event_with(self.now, &mut self.agents, &ev);
                moved = true;
            }
            while let Some(ev) = self.queues.poll_event() {
                if let QueueEvent::Left(exit) = ev {
                    self.left(exit);
                }
                moved = true;
            }
            while let Some(a) = self.queues.poll_announce() {
                assert!(
                    self.queues.offered_to(&a.call).is_empty(),
                    "announced while ringing"
                );
            }
            while let Some(record) = self.queues.poll_log() {
                let line = serde_json::to_string(&record.line("t", None)).expect("serialises");
                assert!(line.contains("\"event\":"));
            }
            while let Some(offer) = self.queues.poll_offer(self.now, &mut self.agents) {
                let agent = self.agents.get(&offer.agent).expect("offered agent exists");
                assert_eq!(agent.state(), AgentState::Offered);
                assert_eq!(agent.call(), Some(&offer.call));
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn left(&mut self, exit: helpline::queue::QueueExit<usize>) {
        let call = exit.call;
        assert_eq!(self.callers[call], Caller::Queued, "left twice: {exit:?}");
        self.tried[call].push((exit.queue.clone(), exit.result));
        self.callers[call] = match (exit.result, &exit.overflow_to) {
            (QueueResult::Answered, _) => Caller::InCall(exit.agent.expect("answered by someone")),
            // The call layer's overflow: into the next queue unless already tried there.
            (QueueResult::Overflow | QueueResult::Timeout, Some(OverflowTarget::Queue(next)))
                if !self.tried[call].iter().any(|(q, _)| q == next) =>
            {
                let join = Join {
                    language: "zh".into(),
                    priority: exit.priority,
                };
                let r = self
                    .queues
                    .enqueue_with(self.now, &self.agents, call, next.clone(), join)
                    .expect("no longer queued");
                // Queued again, or a Left for it is on its way.
                let _ = r;
                Caller::Queued
            }
            _ => Caller::Done,
        };
    }

    fn input(&mut self, input: AgentInput<usize>) {
        // Inputs that do not fit (a break while logged out, an answer to no offer) change nothing.
        let _ = self.agents.handle(self.now, input);
        self.pump();
    }

    fn advance(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        while let Some(at) = [self.agents.poll_timeout(), self.queues.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .filter(|at| *at <= end)
        {
            self.now = self.now.max(at);
            self.agents.handle_timeout(self.now);
            self.queues.handle_timeout(self.now, &mut self.agents);
            self.pump();
        }
        self.now = end;
    }

    fn agent_call(&self, agent: &AgentId) -> Option<(AgentState, usize)> {
        let a = self.agents.get(agent)?;
        a.call().map(|c| (a.state(), *c))
    }

    fn run(&mut self, step: Step) {
        let id = |i: usize| AgentId::from(AGENTS[i]);
        match step {
            Step::LogIn(a) => self.input(AgentInput::LoggedIn(id(a))),
            Step::LogOut(a) => self.input(AgentInput::LoggedOut(id(a))),
            Step::Break(a) => self.input(AgentInput::Break(id(a))),
            Step::Back(a) => self.input(AgentInput::Back(id(a))),
            Step::Answer(a) => {
                let agent = id(a);
                match self.agent_call(&agent) {
                    Some((AgentState::Offered, call)) => {
                        self.input(AgentInput::Answered { agent, call })
                    }
                    _ => {
                        // A late 2xx (raced a CANCEL): refused, and nothing changes.
                        let before = self.agents.get(&agent).map(|a| a.state());
                        let r = self.agents.handle(
                            self.now,
                            AgentInput::Answered {
                                agent: agent.clone(),
                                call: 999,
                            },
                        );
                        assert!(r.is_err() || before.is_none());
                        assert_eq!(self.agents.get(&agent).map(|a| a.state()), before);
                    }
                }
            }
            Step::Refuse(a, why) => {
                let agent = id(a);
                if let Some((AgentState::Offered, call)) = self.agent_call(&agent) {
                    self.input(AgentInput::OfferRejected { agent, call, why });
                }
            }
            Step::AgentHangUp(a) => {
                let agent = id(a);
                if let Some((AgentState::InCall, call)) = self.agent_call(&agent) {
                    self.hang_up_call(call);
                }
            }
            Step::Join { queue, priority } => {
                let call = self.callers.len();
                self.callers.push(Caller::Queued);
                self.tried.push(Vec::new());
                self.priorities.push(priority);
                let join = Join {
                    language: "zh".into(),
                    priority,
                };
                let name = QueueName::from(QUEUES[queue]);
                let r = self
                    .queues
                    .enqueue_with(self.now, &self.agents, call, name, join);
                assert!(r.is_ok());
                self.pump();
            }
            Step::CallerHangUp(n) => {
                if !self.callers.is_empty() {
                    self.hang_up_call(n % self.callers.len());
                }
            }
            Step::Advance(secs) => self.advance(secs),
            Step::Reload { strategies, serves } => {
                self.queues
                    .set_configs(QueueConfig::default(), configs(strategies));
                self.agents.set_agents(self.now, profiles(serves));
                self.pump();
            }
        }
    }

    /// Either side hangs up `call`: out of the line, or the end of its agent call.
    fn hang_up_call(&mut self, call: usize) {
        match self.callers[call].clone() {
            Caller::Queued => {
                assert!(self.queues.remove(self.now, &mut self.agents, &call));
                self.pump();
            }
            Caller::InCall(agent) => {
                self.callers[call] = Caller::Done;
                self.input(AgentInput::CallEnded { agent, call });
            }
            Caller::Done => {}
        }
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        let mut offered: BTreeMap<AgentId, usize> = BTreeMap::new();
        for call in self.queues.queued_calls() {
            assert_eq!(self.callers[call], Caller::Queued);
            let queue = self.queues.queue_of(&call).expect("queued").clone();
            let ringing = self.queues.offered_to(&call);
            if ringing.is_empty() {
                let free: Vec<_> = self
                    .agents
                    .iter()
                    .filter(|a| a.is_free() && a.serves(&queue))
                    .map(|a| a.id().clone())
                    .collect();
                assert!(
                    free.is_empty(),
                    "caller {call} waits in {queue} while {free:?} are free"
                );
            }
            for agent in ringing {
                if let Some(other) = offered.insert(agent.clone(), call) {
                    panic!("{agent} offered calls {other} and {call}");
                }
                assert_eq!(self.agent_call(&agent), Some((AgentState::Offered, call)));
            }
        }
        for agent in self.agents.iter() {
            match agent.state() {
                AgentState::Offered => {
                    assert_eq!(
                        offered.get(agent.id()),
                        agent.call(),
                        "{} stuck offered",
                        agent.id()
                    )
                }
                AgentState::InCall => {
                    let call = *agent.call().expect("in a call");
                    assert_eq!(self.callers[call], Caller::InCall(agent.id().clone()));
                }
                AgentState::Idle | AgentState::WrapUp => assert_eq!(agent.call(), None),
            }
        }
    }

    /// Hang everyone up and let every timer run.
    fn finish(&mut self) {
        self.advance(1_000);
        for call in 0..self.callers.len() {
            self.hang_up_call(call);
        }
        self.advance(1_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn callers_never_wait_for_a_free_agent_and_nobody_is_stuck(steps in prop::collection::vec(step(), 1..80)) {
        let mut world = World::new();
        for step in steps {
            world.run(step);
            world.check();
        }
        world.finish();
        world.check();
        prop_assert!(world.queues.queued_calls().is_empty());
        for (call, caller) in world.callers.iter().enumerate() {
            prop_assert_eq!(caller, &Caller::Done, "caller {}", call);
            let (_, last) = world.tried[call].last().expect("left a queue");
            prop_assert!(matches!(
                last,
                QueueResult::Answered
                    | QueueResult::Abandoned
                    | QueueResult::NoAgents
                    | QueueResult::Overflow
                    | QueueResult::Timeout
            ));
        }
        for agent in world.agents.iter() {
            prop_assert!(agent.state() != AgentState::Offered, "{} stuck offered", agent.id());
            prop_assert!(agent.state() != AgentState::InCall, "{} still in a call", agent.id());
        }
    }
}
