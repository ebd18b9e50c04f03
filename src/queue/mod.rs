//! Queues: one line of waiting callers per queue name (`REGION.DEPARTMENT`) — higher priority first,
//! first come first served within a priority — and the decisions of which caller is offered to which
//! agent, when an offer has rung long enough, when a caller has waited too long or cannot join, and when
//! a caller is told their place in line. It also keeps the queue event log's records.
//!
//! It is a sans-IO machine over [`Agents`]: it reads who is free and marks the chosen agents offered,
//! but keeps no presence of its own. It does not ring phones, play hold music or speak positions; the
//! call layer does what the [`Offer`]s, [`QueueEvent`]s and [`Announce`]s say.
//!
//! # Polling order (the call layer's run loop)
//!
//! After every input to [`Agents`] or [`Queues`] at `now`:
//! 1. drain [`Agents::poll_event`], passing each event to [`Queues::handle_agent_event_with`] (or
//!    [`Queues::handle_agent_event`], which cannot overflow a line whose last agent left nor release
//!    the other agents of a ring-all); an [`OfferOutcome::Withdrawn`] also means: CANCEL that agent's
//!    legs;
//! 2. drain [`Queues::poll_event`] (a [`QueueEvent::RingTimeout`] means: CANCEL that agent leg; a
//!    [`QueueEvent::Left`] carries the CDR fields, and for results `overflow` and `timeout` where the
//!    caller goes next), then [`Queues::poll_announce`] and [`Queues::poll_log`];
//! 3. take every [`Queues::poll_offer`] and ring each agent (ring-all gives several offers for one
//!    call), then go back to 1 for the `Offered` events;
//! 4. sleep until the earlier of [`Agents::poll_timeout`] and [`Queues::poll_timeout`], then call both
//!    `handle_timeout`s.
//!
//! Nothing is decided by polling a clock in a loop: offers follow from inputs (a caller enqueued, an agent
//! freed, an offer refused); ring timeouts, `max_wait` and announcements from deadlines.
//!
//! # Decisions
//!
//! - A caller being offered (an agent's phone rings for them) is neither timed out nor announced to:
//!   both wait until the offer ends unanswered, then happen at once.
//! - Overflow to another queue is a new wait there (as in mod_callcenter): the call layer enqueues the
//!   caller again with [`QueueExit::priority`]; that queue's `max_wait` counts from then. The call layer
//!   keeps `queues_tried` from the exits and must not send a caller back to a queue already tried
//!   (treat that as a hang-up), so that two queues overflowing into each other cannot loop.
//! - `when_no_agents = "overflow"` applies on joining (no agent of the queue logged in and available)
//!   and, with [`Queues::handle_agent_event_with`], the moment the last available agent of the queue
//!   logs out or goes on break: every caller waiting there (not being offered) overflows.
//! - The estimated wait is the mean of the last [`RECENT_WAITS`] answered waits of that queue, not scaled
//!   by position; unknown until one caller was answered there.
//! - An announcement whose position did not change since the last one still comes, with position
//!   `None` (the call layer may say only the estimated wait, or nothing).
pub mod log;
pub mod strategy;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::agent::presence::{
    Agent, AgentEvent, AgentInput, AgentStatus, Agents, OfferOutcome, RejectReason,
};
use crate::agent::{AgentId, QueueName};
use crate::sip::CallId;
pub use log::{LogEvent, LogLine, LogRecord};
pub use strategy::{Candidate, Strategy};

/// How many answered waits the estimated wait averages.
pub const RECENT_WAITS: usize = 10;

/// What a queue does when no agent of it is logged in and available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenNoAgents {
    /// Callers join and wait (`max_wait` still applies).
    #[default]
    Wait,
    /// Callers overflow at once ([`QueueConfig::overflow`]).
    Overflow,
}

/// Where an overflowing or timed-out caller goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowTarget {
    /// Into another queue (e.g. the English team, the Singapore hub).
    Queue(QueueName),
    /// Play these prompts, then hang up.
    HangUp {
        /// Prompt names, in order.
        prompts: Vec<String>,
    },
}

/// Why a caller overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowReason {
    /// They waited `max_wait` (the result is [`QueueResult::Timeout`]).
    MaxWait,
    /// The line was full (`max_length`) when they came.
    MaxLength,
    /// No agent of the queue was available (`when_no_agents = "overflow"`).
    NoAgents,
}

/// One queue's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// How an agent is chosen; default longest-idle-agent.
    pub strategy: Strategy,
    /// How long an agent's phones ring before the offer moves on; default 15 s.
    pub ring_timeout: Duration,
    /// Longest wait before the caller leaves with [`QueueResult::Timeout`]; default none.
    pub max_wait: Option<Duration>,
    /// Most callers in the line (being offered included); one more overflows on joining. Default none.
    pub max_length: Option<usize>,
    /// The agent's wrap-up after a call answered from this queue; default none: presence's own.
    pub wrap_up: Option<Duration>,
    /// What happens without agents; default wait.
    pub when_no_agents: WhenNoAgents,
    /// Where overflowing and timed-out callers go; default none: released like a caller without agents.
    pub overflow: Option<OverflowTarget>,
    /// How often a waiting caller hears their place and estimated wait; default never.
    pub announce_every: Option<Duration>,
    /// The hold-music prompt; default none (the call layer's default).
    pub music: Option<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            strategy: Strategy::LongestIdleAgent,
            ring_timeout: Duration::from_secs(15),
            max_wait: None,
            max_length: None,
            wrap_up: None,
            when_no_agents: WhenNoAgents::Wait,
            overflow: None,
            announce_every: None,
            music: None,
        }
    }
}

/// A decision: ring `agent` with `call`. The agent is already marked offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer<C = CallId> {
    /// The caller's call.
    pub call: C,
    /// The agent to ring (every registered contact of theirs).
    pub agent: AgentId,
    /// The queue the caller waits in.
    pub queue: QueueName,
    /// The caller's language, for `X-Helpline-Language`.
    pub language: String,
    /// When the offer gives up if nobody answered ([`QueueEvent::RingTimeout`]).
    pub ring_until: Instant,
}

/// How a caller's wait ended, for the CDR's `queue_result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueResult {
    /// An agent answered.
    Answered,
    /// The caller left (hung up, or was taken out) while agents were there to wait for.
    Abandoned,
    /// The caller left without ever being offered, and no agent of the queue was available then.
    NoAgents,
    /// The caller was moved on: the line was full, or no agent was available (`when_no_agents`).
    Overflow,
    /// The caller waited the queue's `max_wait`.
    Timeout,
}

impl QueueResult {
    /// The CDR spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueResult::Answered => "answered",
            QueueResult::Abandoned => "abandoned",
            QueueResult::NoAgents => "no-agents",
            QueueResult::Overflow => "overflow",
            QueueResult::Timeout => "timeout",
        }
    }
}

/// A caller out of the line, with what the CDR records (`queues_tried` gets `(queue, result)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueExit<C = CallId> {
    /// The caller's call.
    pub call: C,
    /// The queue they waited in (the CDR's `queue`).
    pub queue: QueueName,
    /// How it ended.
    pub result: QueueResult,
    /// From enqueue to answer or departure.
    pub wait: Duration,
    /// The agent who answered.
    pub agent: Option<AgentId>,
    /// The agent whose phones were still ringing when the caller left: CANCEL that leg. With ring-all,
    /// the first of [`QueueExit::ringing_all`].
    pub ringing: Option<AgentId>,
    /// Every agent still ringing when the caller left (ring-all rings several): CANCEL their legs.
    pub ringing_all: Vec<AgentId>,
    /// Agents offered the caller before, in order, who did not take them.
    pub tried: Vec<AgentId>,
    /// The caller's priority, to carry into an overflow queue.
    pub priority: i32,
    /// For [`QueueResult::Overflow`] and [`QueueResult::Timeout`]: why.
    pub reason: Option<OverflowReason>,
    /// For [`QueueResult::Overflow`] and [`QueueResult::Timeout`]: where the caller goes next (the
    /// queue's `overflow`); `None` releases them as a caller without agents is released.
    pub overflow_to: Option<OverflowTarget>,
}

impl<C> QueueExit<C> {
    /// The CDR's `queue_wait_ms`.
    pub fn queue_wait_ms(&self) -> u64 {
        log::ms(self.wait)
    }
}

/// What [`Queues::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent<C = CallId> {
    /// `agent` did not answer within the ring timeout; they are already charged a no-answer. CANCEL the
    /// agent leg; the caller stays at the head of the line. (Ring-all: one per agent rung.)
    RingTimeout {
        /// The caller's call.
        call: C,
        /// The agent.
        agent: AgentId,
    },
    /// A caller left the line.
    Left(QueueExit<C>),
}

/// What [`Queues::poll_announce`] reports: tell a waiting caller their place and wait. Never for a caller
/// whose agent's phone is ringing; the call layer stops it the instant an agent answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce<C = CallId> {
    /// The caller's call.
    pub call: C,
    /// The queue.
    pub queue: QueueName,
    /// The 1-based place, or `None` when it is the one announced last time.
    pub position: Option<usize>,
    /// The queue's estimated wait, once a caller was answered there.
    pub estimated_wait: Option<Duration>,
}

/// How a caller joins, for [`Queues::enqueue_with`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Join {
    /// The caller's language.
    pub language: String,
    /// Higher first; within a priority, first come first served. The menus' default is 0.
    pub priority: i32,
}

/// One caller in a line, as [`Queues::line`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineEntry<'a, C> {
    /// The caller's call.
    pub call: &'a C,
    /// When they joined this queue.
    pub enqueued_at: Instant,
    /// Their language.
    pub language: &'a str,
    /// The agents whose phones ring for them.
    pub ringing: Vec<&'a AgentId>,
}

/// A queue operation that does not fit the present lines; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The call already waits in a queue.
    #[error("call is already queued")]
    AlreadyQueued,
}

#[derive(Debug)]
struct Member {
    queue: QueueName,
    language: String,
    priority: i32,
    enqueued_at: Instant,
    /// Global arrival order: across queues, the longest-waiting caller of a priority is served first.
    seq: u64,
    /// The agents ringing (ring-all: several), until each offer's outcome comes back.
    trying: Vec<Trying>,
    tried: Vec<AgentId>,
    joined_position: usize,
    /// The last announcement (joining counts as one, so the first comes `announce_every` after).
    announced_at: Instant,
    announced_position: Option<usize>,
}

impl Member {
    fn is_waiting(&self) -> bool {
        self.trying.is_empty()
    }
}

#[derive(Debug)]
struct Trying {
    agent: AgentId,
    since: Instant,
    ring_until: Instant,
    /// The ring timeout already fired; waiting for the agent's outcome to come back.
    timed_out: bool,
}

/// What one queue remembers across callers.
#[derive(Debug, Default)]
struct QueueStats {
    memory: strategy::Memory,
    recent_waits: VecDeque<Duration>,
}

/// Every queue's line of waiting callers. `C` identifies a call as the call layer does.
///
/// A caller keeps their place while offered: a refused, unanswered, withdrawn or failed offer leaves them
/// at the head of the line, and the next agent is tried. An agent who did not take a caller is not offered
/// that caller again while another agent is free; when only they are left, they may be, once free again.
#[derive(Debug)]
pub struct Queues<C = CallId> {
    default: QueueConfig,
    configs: HashMap<QueueName, QueueConfig>,
    /// Ordered by name, so that scans come out in the same order every run.
    lines: BTreeMap<QueueName, VecDeque<C>>,
    members: HashMap<C, Member>,
    next_seq: u64,
    events: VecDeque<QueueEvent<C>>,
    /// Ring-all's further offers for the call just chosen.
    offers: VecDeque<Offer<C>>,
    announcements: VecDeque<Announce<C>>,
    /// `None` until [`Queues::enable_log`]: nobody drains it otherwise.
    log: Option<VecDeque<LogRecord<C>>>,
    stats: BTreeMap<QueueName, QueueStats>,
    rng: StdRng,
}

impl<C: Clone + Eq + Hash + fmt::Debug> Queues<C> {
    /// No one waiting; every queue uses `default` unless given its own settings. The random strategy's
    /// generator is seeded with 0 ([`Queues::with_seed`] to choose).
    pub fn new(default: QueueConfig) -> Self {
        Queues::with_seed(default, 0)
    }

    /// As [`Queues::new`], the random strategy drawing from a generator seeded with `seed`, so that a
    /// replayed trace picks the same agents.
    pub fn with_seed(default: QueueConfig, seed: u64) -> Self {
        Queues {
            default,
            configs: HashMap::new(),
            lines: BTreeMap::new(),
            members: HashMap::new(),
            next_seq: 0,
            events: VecDeque::new(),
            offers: VecDeque::new(),
            announcements: VecDeque::new(),
            log: None,
            stats: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Starts keeping queue log records for [`Queues::poll_log`] (off by default, so that records do
    /// not pile up where nobody drains them).
    pub fn enable_log(&mut self) {
        self.log.get_or_insert_with(VecDeque::new);
    }

    /// Replaces every queue's settings on reload: callers keep their place, running offers their
    /// deadline; a new `max_wait` or `announce_every` counts from the caller's join or last announcement.
    /// A queue switched to `when_no_agents = "overflow"` while nobody serves it overflows its waiting
    /// callers at the next agent status change (this takes no presence to look at).
    pub fn set_configs(&mut self, default: QueueConfig, configs: HashMap<QueueName, QueueConfig>) {
        self.default = default;
        self.configs = configs;
    }

    /// The settings of `queue`.
    pub fn config(&self, queue: &QueueName) -> QueueConfig {
        self.config_ref(queue).clone()
    }

    /// The settings of `queue`, borrowed.
    pub fn config_ref(&self, queue: &QueueName) -> &QueueConfig {
        self.configs.get(queue).unwrap_or(&self.default)
    }

    /// Puts `call` in `queue`'s line at priority 0; returns its 1-based position, or 0 when the line was
    /// full (`max_length`) and the caller overflowed at once (a [`QueueEvent::Left`] says where to).
    /// It does not apply `when_no_agents` (it cannot see the agents): see [`Queues::enqueue_with`].
    pub fn enqueue(
        &mut self,
        now: Instant,
        call: C,
        queue: QueueName,
        language: &str,
    ) -> Result<usize, QueueError> {
        let join = Join {
            language: language.to_owned(),
            priority: 0,
        };
        Ok(self.join(now, None, call, queue, join)?.unwrap_or(0))
    }

    /// Puts `call` in `queue`'s line, behind every caller of its priority or higher; returns its 1-based
    /// position, or `None` when it overflowed at once — the line was full, or no agent of the queue was
    /// available under `when_no_agents = "overflow"` — and a [`QueueEvent::Left`] says where to.
    pub fn enqueue_with(
        &mut self,
        now: Instant,
        agents: &Agents<C>,
        call: C,
        queue: QueueName,
        join: Join,
    ) -> Result<Option<usize>, QueueError> {
        self.join(now, Some(agents), call, queue, join)
    }

    fn join(
        &mut self,
        now: Instant,
        agents: Option<&Agents<C>>,
        call: C,
        queue: QueueName,
        join: Join,
    ) -> Result<Option<usize>, QueueError> {
        if self.members.contains_key(&call) {
            return Err(QueueError::AlreadyQueued);
        }
        let config = self.config_ref(&queue);
        let full = config
            .max_length
            .is_some_and(|max| self.waiting(&queue) >= max);
        let empty = config.when_no_agents == WhenNoAgents::Overflow
            && agents.is_some_and(|a| a.available_for(&queue) == 0);
        let mut member = Member {
            queue: queue.clone(),
            language: join.language,
            priority: join.priority,
            enqueued_at: now,
            seq: self.next_seq,
            trying: Vec::new(),
            tried: Vec::new(),
            joined_position: 0,
            announced_at: now,
            announced_position: None,
        };
        self.next_seq += 1;
        if full || empty {
            let reason = if full {
                OverflowReason::MaxLength
            } else {
                OverflowReason::NoAgents
            };
            debug!(%queue, ?reason, "caller overflowed on joining");
            self.overflow(now, call, member, reason);
            return Ok(None);
        }
        let line = self.lines.entry(queue.clone()).or_default();
        let members = &self.members;
        let at = line
            .iter()
            .position(|c| members.get(c).is_some_and(|m| m.priority < join.priority))
            .unwrap_or(line.len());
        line.insert(at, call.clone());
        let position = at + 1;
        member.joined_position = position;
        debug!(%queue, position, priority = join.priority, "caller enqueued");
        self.log_call(
            now,
            &queue,
            &call,
            None,
            LogEvent::Join {
                position,
                priority: join.priority,
            },
        );
        self.members.insert(call, member);
        Ok(Some(position))
    }

    /// Whether `call` waits in a queue.
    pub fn is_queued(&self, call: &C) -> bool {
        self.members.contains_key(call)
    }

    /// The queue `call` waits in.
    pub fn queue_of(&self, call: &C) -> Option<&QueueName> {
        self.members.get(call).map(|m| &m.queue)
    }

    /// Every queued call, by queue name then place in line.
    pub fn queued_calls(&self) -> Vec<C> {
        self.lines.values().flatten().cloned().collect()
    }

    /// The agents whose phones ring (or whose outcome is awaited) for `call`: empty while it waits.
    pub fn offered_to(&self, call: &C) -> Vec<AgentId> {
        self.members
            .get(call)
            .map(|m| m.trying.iter().map(|t| t.agent.clone()).collect())
            .unwrap_or_default()
    }

    /// `call`'s 1-based position in its line (a caller being offered keeps theirs).
    pub fn position(&self, call: &C) -> Option<usize> {
        let member = self.members.get(call)?;
        let line = self.lines.get(&member.queue)?;
        line.iter().position(|c| c == call).map(|i| i + 1)
    }

    /// `queue`'s line in order, for a live view: each caller with when they joined, their language and
    /// the agents ringing for them (empty while they wait).
    pub fn line(&self, queue: &QueueName) -> Vec<LineEntry<'_, C>> {
        let Some(line) = self.lines.get(queue) else {
            return Vec::new();
        };
        line.iter()
            .filter_map(|call| {
                let m = self.members.get(call)?;
                Some(LineEntry {
                    call,
                    enqueued_at: m.enqueued_at,
                    language: &m.language,
                    ringing: m.trying.iter().map(|t| &t.agent).collect(),
                })
            })
            .collect()
    }

    /// Every queue that has a line now (callers waiting or being offered), by name.
    pub fn lines(&self) -> impl Iterator<Item = &QueueName> {
        self.lines
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(q, _)| q)
    }

    /// Callers waiting in `queue`.
    pub fn waiting(&self, queue: &QueueName) -> usize {
        self.lines.get(queue).map_or(0, VecDeque::len)
    }

    /// The estimated wait in `queue`: the mean of its last [`RECENT_WAITS`] answered waits.
    pub fn estimated_wait(&self, queue: &QueueName) -> Option<Duration> {
        let waits = &self.stats.get(queue)?.recent_waits;
        let n = u32::try_from(waits.len()).ok().filter(|n| *n > 0)?;
        Some(waits.iter().sum::<Duration>() / n)
    }

    /// Takes `call` out of its line (the caller hung up, or the call layer gives up). Ringing agents are
    /// released at once; the [`QueueEvent::Left`] names them in `ringing`/`ringing_all` so that their
    /// legs get CANCEL. Returns whether the call was queued.
    pub fn remove(&mut self, now: Instant, agents: &mut Agents<C>, call: &C) -> bool {
        let position = self.position(call).unwrap_or(0);
        let Some(member) = self.take_member(call) else {
            return false;
        };
        let ringing = release_ringing(now, agents, call, &member.trying);
        let offered = !member.trying.is_empty() || !member.tried.is_empty();
        let (result, event) = if !offered && agents.available_for(&member.queue) == 0 {
            let wait_ms = log::ms(now.saturating_duration_since(member.enqueued_at));
            (QueueResult::NoAgents, LogEvent::NoAgents { wait_ms })
        } else {
            let event = LogEvent::Abandon {
                position,
                joined_position: member.joined_position,
                wait_ms: log::ms(now.saturating_duration_since(member.enqueued_at)),
            };
            (QueueResult::Abandoned, event)
        };
        self.log_call(now, &member.queue, call, None, event);
        self.leave(now, call.clone(), member, result, None, ringing);
        true
    }

    /// Feeds an event from [`Agents::poll_event`]: offer outcomes move the line on, status and state
    /// changes go to the log. Prefer [`Queues::handle_agent_event_with`].
    pub fn handle_agent_event(&mut self, now: Instant, event: &AgentEvent<C>) {
        self.on_agent_event(now, None, event);
    }

    /// [`Queues::handle_agent_event`], with presence at hand so that a line whose last available agent
    /// left overflows (`when_no_agents = "overflow"`) and a caller who hung up while several agents
    /// rang (ring-all) releases all of them.
    pub fn handle_agent_event_with(
        &mut self,
        now: Instant,
        agents: &mut Agents<C>,
        event: &AgentEvent<C>,
    ) {
        self.on_agent_event(now, Some(agents), event);
    }

    fn on_agent_event(
        &mut self,
        now: Instant,
        agents: Option<&mut Agents<C>>,
        event: &AgentEvent<C>,
    ) {
        match event {
            AgentEvent::StatusChanged { agent, status } => {
                self.log_agent(now, agent, LogEvent::AgentStatus { status: *status });
                if *status != AgentStatus::Available {
                    if let Some(agents) = agents {
                        let queues: Vec<QueueName> = self.lines.keys().cloned().collect();
                        for queue in queues {
                            self.overflow_if_no_agents(now, agents, &queue);
                        }
                    }
                }
            }
            AgentEvent::StateChanged { agent, state } => {
                self.log_agent(now, agent, LogEvent::AgentState { state: *state });
            }
            AgentEvent::MaxNoAnswer { .. } => {}
            AgentEvent::OfferEnded {
                agent,
                call,
                outcome,
            } => self.on_offer_ended(now, agents, agent, call, *outcome),
        }
    }

    fn on_offer_ended(
        &mut self,
        now: Instant,
        agents: Option<&mut Agents<C>>,
        agent: &AgentId,
        call: &C,
        outcome: OfferOutcome,
    ) {
        let Some(member) = self.members.get_mut(call) else {
            return;
        };
        let Some(i) = member.trying.iter().position(|t| t.agent == *agent) else {
            return;
        };
        let trying = member.trying.remove(i);
        let ring_ms = log::ms(now.saturating_duration_since(trying.since));
        let queue = member.queue.clone();
        match outcome {
            OfferOutcome::Answered => {
                let member = self.take_member(call).expect("member looked up above");
                let wait = now.saturating_duration_since(member.enqueued_at);
                let waits = &mut self.stats.entry(queue.clone()).or_default().recent_waits;
                waits.push_back(wait);
                if waits.len() > RECENT_WAITS {
                    waits.pop_front();
                }
                let wait_ms = log::ms(wait);
                self.log_call(
                    now,
                    &queue,
                    call,
                    Some(agent),
                    LogEvent::Answer { wait_ms, ring_ms },
                );
                // Ring-all: presence already withdrew the others (their OfferEnded follow).
                let agent = Some(agent.clone());
                self.leave(
                    now,
                    call.clone(),
                    member,
                    QueueResult::Answered,
                    agent,
                    Vec::new(),
                );
            }
            OfferOutcome::Rejected(_) | OfferOutcome::Withdrawn => {
                // The caller never left their place: they are still at the head for the next agent.
                if !member.tried.contains(agent) {
                    member.tried.push(agent.clone());
                }
                debug!(%queue, %agent, ?outcome, "offer not taken");
                let reason = not_taken(outcome);
                let event = LogEvent::RingNoAnswer { ring_ms, reason };
                self.log_call(now, &queue, call, Some(agent), event);
                self.after_offer(now, agents, call);
            }
            OfferOutcome::CallerGone => {
                let position = self.position(call).unwrap_or(0);
                let member = self.take_member(call).expect("member looked up above");
                let mut ringing = vec![agent.clone()];
                if let Some(agents) = agents {
                    ringing.extend(release_ringing(now, agents, call, &member.trying));
                }
                let event = LogEvent::Abandon {
                    position,
                    joined_position: member.joined_position,
                    wait_ms: log::ms(now.saturating_duration_since(member.enqueued_at)),
                };
                self.log_call(now, &queue, call, None, event);
                self.leave(
                    now,
                    call.clone(),
                    member,
                    QueueResult::Abandoned,
                    None,
                    ringing,
                );
            }
        }
    }

    /// An offer of `call` ended untaken: once no agent rings for it any more, a `max_wait` that passed
    /// meanwhile, or a queue left without agents, takes the caller out.
    fn after_offer(&mut self, now: Instant, agents: Option<&mut Agents<C>>, call: &C) {
        let Some(member) = self.members.get(call).filter(|m| m.is_waiting()) else {
            return;
        };
        let queue = member.queue.clone();
        let max_wait = self.config_ref(&queue).max_wait;
        if max_wait.is_some_and(|w| member.enqueued_at + w <= now) {
            self.time_out(now, call);
        } else if let Some(agents) = agents {
            self.overflow_if_no_agents(now, agents, &queue);
        }
    }

    /// `when_no_agents = "overflow"` and nobody available serves `queue`: every caller waiting there
    /// (not being offered) overflows.
    fn overflow_if_no_agents(&mut self, now: Instant, agents: &Agents<C>, queue: &QueueName) {
        if self.config_ref(queue).when_no_agents != WhenNoAgents::Overflow
            || agents.available_for(queue) > 0
        {
            return;
        }
        let waiting: Vec<C> = self
            .lines
            .get(queue)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for call in waiting {
            if self.members.get(&call).is_some_and(Member::is_waiting) {
                let member = self.take_member(&call).expect("listed in the line");
                self.overflow(now, call, member, OverflowReason::NoAgents);
            }
        }
    }

    /// The next decision to ring an agent, if a caller waits and an agent of their queue is free; the
    /// agent is marked offered in `agents`. Ring-all gives one offer per free agent of the queue for the
    /// same call, one after the other. Call until `None` after every input.
    pub fn poll_offer(&mut self, now: Instant, agents: &mut Agents<C>) -> Option<Offer<C>> {
        if let Some(offer) = self.offers.pop_front() {
            return Some(offer);
        }
        // Only the first caller not being offered in each line can be served: if no agent suits them,
        // none suits those behind (they see the same free agents), so the line is never jumped.
        let mut heads: Vec<(Reverse<i32>, u64, C)> = self
            .lines
            .values()
            .filter_map(|line| line.iter().find(|c| self.members[*c].is_waiting()))
            .map(|c| {
                let m = &self.members[c];
                (Reverse(m.priority), m.seq, c.clone())
            })
            .collect();
        heads.sort_by_key(|a| (a.0, a.1));
        for (_, _, call) in heads {
            let picked = self.pick(agents, &call);
            for agent in picked {
                self.offer(now, agents, &call, agent);
            }
            if let Some(offer) = self.offers.pop_front() {
                return Some(offer);
            }
        }
        None
    }

    /// Marks `agent` offered `call` in both machines and lines up the [`Offer`].
    fn offer(&mut self, now: Instant, agents: &mut Agents<C>, call: &C, agent: AgentId) {
        let member = &self.members[call];
        let config = self.config_ref(&member.queue);
        let ring_timeout = config.ring_timeout;
        if let Err(e) = agents.offer(&agent, call.clone(), config.wrap_up) {
            // `pick` chose free agents from the same `agents` a moment ago.
            warn!(error = %e, "chosen agent refused the offer");
            return;
        }
        let ring_until = now + ring_timeout;
        let member = self.members.get_mut(call).expect("head is a member");
        member.trying.push(Trying {
            agent: agent.clone(),
            since: now,
            ring_until,
            timed_out: false,
        });
        let queue = member.queue.clone();
        debug!(%queue, %agent, "offer");
        self.offers.push_back(Offer {
            call: call.clone(),
            agent: agent.clone(),
            queue: queue.clone(),
            language: member.language.clone(),
            ring_until,
        });
        let ring_timeout_ms = log::ms(ring_timeout);
        self.log_call(
            now,
            &queue,
            call,
            Some(&agent),
            LogEvent::Offer { ring_timeout_ms },
        );
    }

    /// Fires every due deadline: ring timeouts (the agent is charged a no-answer in `agents` and a
    /// [`QueueEvent::RingTimeout`] asks for the CANCEL), `max_wait`s ([`QueueResult::Timeout`]) and
    /// announcements. A call at any other time is a no-op.
    pub fn handle_timeout(&mut self, now: Instant, agents: &mut Agents<C>) {
        self.ring_timeouts(now, agents);
        for call in self.queued_calls() {
            let Some(member) = self.members.get(&call).filter(|m| m.is_waiting()) else {
                continue;
            };
            let config = self.config_ref(&member.queue);
            if config
                .max_wait
                .is_some_and(|w| member.enqueued_at + w <= now)
            {
                self.time_out(now, &call);
            } else if config
                .announce_every
                .is_some_and(|e| member.announced_at + e <= now)
            {
                self.announce(now, &call);
            }
        }
    }

    fn ring_timeouts(&mut self, now: Instant, agents: &mut Agents<C>) {
        let mut due: Vec<(C, AgentId)> = Vec::new();
        for call in self.lines.values().flatten() {
            for t in &self.members[call].trying {
                if !t.timed_out && t.ring_until <= now {
                    due.push((call.clone(), t.agent.clone()));
                }
            }
        }
        for (call, agent) in due {
            let Some(trying) = self
                .members
                .get_mut(&call)
                .and_then(|m| m.trying.iter_mut().find(|t| t.agent == agent))
            else {
                continue;
            };
            trying.timed_out = true;
            let input = AgentInput::OfferRejected {
                agent: agent.clone(),
                call: call.clone(),
                why: RejectReason::NoAnswer,
            };
            // The caller goes back in line when the agent's OfferEnded comes back through
            // `handle_agent_event`. An Err means the offer already ended otherwise: nothing to cancel.
            if agents.handle(now, input).is_ok() {
                self.events
                    .push_back(QueueEvent::RingTimeout { call, agent });
            }
        }
    }

    fn time_out(&mut self, now: Instant, call: &C) {
        let Some(member) = self.take_member(call) else {
            return;
        };
        let overflow_to = self.config_ref(&member.queue).overflow.clone();
        let event = LogEvent::Timeout {
            target: log::target_name(overflow_to.as_ref()),
            wait_ms: log::ms(now.saturating_duration_since(member.enqueued_at)),
        };
        self.log_call(now, &member.queue, call, None, event);
        self.leave_for(
            now,
            call.clone(),
            member,
            QueueResult::Timeout,
            OverflowReason::MaxWait,
        );
    }

    fn overflow(&mut self, now: Instant, call: C, member: Member, reason: OverflowReason) {
        let target = self.config_ref(&member.queue).overflow.as_ref();
        let event = LogEvent::Overflow {
            reason,
            target: log::target_name(target),
            wait_ms: log::ms(now.saturating_duration_since(member.enqueued_at)),
        };
        self.log_call(now, &member.queue, &call, None, event);
        self.leave_for(now, call, member, QueueResult::Overflow, reason);
    }

    fn announce(&mut self, now: Instant, call: &C) {
        let position = self.position(call);
        let Some(member) = self.members.get_mut(call) else {
            return;
        };
        member.announced_at = now;
        let changed = position.filter(|p| member.announced_position != Some(*p));
        if changed.is_some() {
            member.announced_position = changed;
        }
        let queue = member.queue.clone();
        let estimated_wait = self.estimated_wait(&queue);
        let event = LogEvent::Announce {
            position: changed,
            estimated_wait_ms: estimated_wait.map(log::ms),
        };
        self.log_call(now, &queue, call, None, event);
        self.announcements.push_back(Announce {
            call: call.clone(),
            queue,
            position: changed,
            estimated_wait,
        });
    }

    /// The earliest ring timeout, `max_wait` or announcement (the latter two only for callers not being
    /// offered: theirs wait for the offer's end).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rings = self
            .members
            .values()
            .flat_map(|m| &m.trying)
            .filter(|t| !t.timed_out)
            .map(|t| t.ring_until);
        let waits = self
            .members
            .values()
            .filter(|m| m.is_waiting())
            .flat_map(|m| {
                let config = self.config_ref(&m.queue);
                let max_wait = config.max_wait.map(|w| m.enqueued_at + w);
                let announce = config.announce_every.map(|e| m.announced_at + e);
                [max_wait, announce].into_iter().flatten()
            });
        rings.chain(waits).min()
    }

    /// The next ring timeout or departure, in the order they happened.
    pub fn poll_event(&mut self) -> Option<QueueEvent<C>> {
        self.events.pop_front()
    }

    /// The next announcement to play.
    pub fn poll_announce(&mut self) -> Option<Announce<C>> {
        self.announcements.pop_front()
    }

    /// The next queue log record, once [`Queues::enable_log`] was called.
    pub fn poll_log(&mut self) -> Option<LogRecord<C>> {
        self.log.as_mut()?.pop_front()
    }

    /// The agents to offer `call` to: for ring-all every free agent of the queue; otherwise one, chosen
    /// by the strategy among the free agents of the queue who have not been offered this caller yet —
    /// if every free one has, among all free ones.
    fn pick(&mut self, agents: &Agents<C>, call: &C) -> Vec<AgentId> {
        let member = &self.members[call];
        let free: Vec<&Agent<C>> = agents
            .iter()
            .filter(|a| a.is_free() && a.serves(&member.queue))
            .collect();
        let strategy = self.config_ref(&member.queue).strategy;
        if strategy == Strategy::RingAll {
            return free.iter().map(|a| a.id().clone()).collect();
        }
        let untried: Vec<&Agent<C>> = free
            .iter()
            .copied()
            .filter(|a| !member.tried.contains(a.id()))
            .collect();
        let pool = if untried.is_empty() { free } else { untried };
        let candidates: Vec<Candidate<'_>> = pool
            .iter()
            .map(|a| Candidate {
                agent: a.id(),
                // A free agent always has one (set on login, back, end of wrap-up); the fallback is
                // never used.
                idle_since: a.idle_since().unwrap_or(member.enqueued_at),
                speaks_language: a.speaks(&member.language),
                calls_taken: a.calls_taken(),
                calls_today: a.calls_today(),
                penalty: a.penalty(&member.queue),
                order: a.order(),
            })
            .collect();
        let memory = &mut self.stats.entry(member.queue.clone()).or_default().memory;
        strategy::choose(strategy, &candidates, memory, &mut self.rng)
            .cloned()
            .into_iter()
            .collect()
    }

    fn take_member(&mut self, call: &C) -> Option<Member> {
        let member = self.members.remove(call)?;
        if let Some(line) = self.lines.get_mut(&member.queue) {
            line.retain(|c| c != call);
            if line.is_empty() {
                self.lines.remove(&member.queue);
            }
        }
        Some(member)
    }

    /// Leaves for the queue's overflow target, with `result` and `reason`.
    fn leave_for(
        &mut self,
        now: Instant,
        call: C,
        member: Member,
        result: QueueResult,
        reason: OverflowReason,
    ) {
        let overflow_to = self.config_ref(&member.queue).overflow.clone();
        self.leave(now, call, member, result, None, Vec::new());
        if let Some(QueueEvent::Left(exit)) = self.events.back_mut() {
            exit.reason = Some(reason);
            exit.overflow_to = overflow_to;
        }
    }

    fn leave(
        &mut self,
        now: Instant,
        call: C,
        member: Member,
        result: QueueResult,
        agent: Option<AgentId>,
        ringing_all: Vec<AgentId>,
    ) {
        let wait = now.saturating_duration_since(member.enqueued_at);
        debug!(queue = %member.queue, result = result.as_str(), wait_ms = log::ms(wait), "caller left queue");
        self.events.push_back(QueueEvent::Left(QueueExit {
            call,
            queue: member.queue,
            result,
            wait,
            agent,
            ringing: ringing_all.first().cloned(),
            ringing_all,
            tried: member.tried,
            priority: member.priority,
            reason: None,
            overflow_to: None,
        }));
    }

    fn log_call(
        &mut self,
        now: Instant,
        queue: &QueueName,
        call: &C,
        agent: Option<&AgentId>,
        event: LogEvent,
    ) {
        if let Some(log) = self.log.as_mut() {
            log.push_back(LogRecord {
                at: now,
                queue: Some(queue.clone()),
                call: Some(call.clone()),
                agent: agent.cloned(),
                event,
            });
        }
    }

    fn log_agent(&mut self, now: Instant, agent: &AgentId, event: LogEvent) {
        if let Some(log) = self.log.as_mut() {
            log.push_back(LogRecord {
                at: now,
                queue: None,
                call: None,
                agent: Some(agent.clone()),
                event,
            });
        }
    }
}

/// Ends the offers of `call` still ringing (not yet timed out) in presence; returns those agents, whose
/// legs the call layer CANCELs.
fn release_ringing<C: Clone + PartialEq + fmt::Debug>(
    now: Instant,
    agents: &mut Agents<C>,
    call: &C,
    trying: &[Trying],
) -> Vec<AgentId> {
    let ringing: Vec<AgentId> = trying
        .iter()
        .filter(|t| !t.timed_out)
        .map(|t| t.agent.clone())
        .collect();
    for agent in &ringing {
        let input = AgentInput::CallEnded {
            agent: agent.clone(),
            call: call.clone(),
        };
        // An Err means the offer already ended (its outcome is on its way): nothing to release.
        let _ = agents.handle(now, input);
    }
    ringing
}

/// The log's word for an offer not taken.
fn not_taken(outcome: OfferOutcome) -> &'static str {
    match outcome {
        OfferOutcome::Rejected(RejectReason::NoAnswer) => "no-answer",
        OfferOutcome::Rejected(RejectReason::Busy) => "busy",
        OfferOutcome::Rejected(RejectReason::Declined) => "declined",
        OfferOutcome::Rejected(RejectReason::Failed) => "failed",
        OfferOutcome::Withdrawn => "withdrawn",
        OfferOutcome::Answered | OfferOutcome::CallerGone => "other",
    }
}
