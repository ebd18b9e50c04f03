//! Queues: one first-come-first-served line of waiting callers per queue name (`REGION.DEPARTMENT`), and
//! the decision of which caller is offered to which agent, and when an offer has rung long enough.
//!
//! It is a sans-IO machine over [`Agents`]: it reads who is free and marks the chosen agent offered, but
//! keeps no presence of its own. It does not ring phones, play hold music or announce positions; the call
//! layer does what the [`Offer`]s and [`QueueEvent`]s say.
//!
//! # Polling order (the call layer's run loop)
//!
//! After every input to [`Agents`] or [`Queues`] at `now`:
//! 1. drain [`Agents::poll_event`], passing each event to [`Queues::handle_agent_event`] (an
//!    [`OfferOutcome::Withdrawn`] also means: CANCEL that agent leg);
//! 2. drain [`Queues::poll_event`] (a [`QueueEvent::RingTimeout`] means: CANCEL that agent leg; a
//!    [`QueueEvent::Left`] carries the CDR fields);
//! 3. take every [`Queues::poll_offer`] and ring each agent, then go back to 1 for the `Offered` events;
//! 4. sleep until the earlier of [`Agents::poll_timeout`] and [`Queues::poll_timeout`], then call both
//!    `handle_timeout`s.
//!
//! Nothing is decided by polling a clock in a loop: offers follow from inputs (a caller enqueued, an agent
//! freed, an offer refused) and from the ring-timeout deadline.
pub mod strategy;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, warn};

use crate::agent::presence::{Agent, AgentEvent, AgentInput, Agents, OfferOutcome, RejectReason};
use crate::agent::{AgentId, QueueName};
use crate::sip::CallId;
pub use strategy::{Candidate, Strategy};

/// One queue's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// How an agent is chosen; default longest-idle-agent.
    pub strategy: Strategy,
    /// How long an agent's phones ring before the offer moves on; default 15 s.
    pub ring_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            strategy: Strategy::LongestIdleAgent,
            ring_timeout: Duration::from_secs(15),
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
}

impl QueueResult {
    /// The CDR spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueResult::Answered => "answered",
            QueueResult::Abandoned => "abandoned",
            QueueResult::NoAgents => "no-agents",
        }
    }
}

/// A caller out of the line, with what the CDR records.
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
    /// The agent whose phones were still ringing when the caller left: CANCEL that leg.
    pub ringing: Option<AgentId>,
    /// Agents offered the caller before, in order, who did not take them.
    pub tried: Vec<AgentId>,
}

impl<C> QueueExit<C> {
    /// The CDR's `queue_wait_ms`.
    pub fn queue_wait_ms(&self) -> u64 {
        u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What [`Queues::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent<C = CallId> {
    /// `agent` did not answer within the ring timeout; they are already charged a no-answer. CANCEL the
    /// agent leg; the caller stays at the head of the line.
    RingTimeout {
        /// The caller's call.
        call: C,
        /// The agent.
        agent: AgentId,
    },
    /// A caller left the line.
    Left(QueueExit<C>),
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
    enqueued_at: Instant,
    /// Global arrival order: across queues, the longest-waiting caller is served first.
    seq: u64,
    trying: Option<Trying>,
    tried: Vec<AgentId>,
}

#[derive(Debug)]
struct Trying {
    agent: AgentId,
    ring_until: Instant,
    /// The ring timeout already fired; waiting for the agent's outcome to come back.
    timed_out: bool,
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
}

impl<C: Clone + Eq + Hash + fmt::Debug> Queues<C> {
    /// No one waiting; every queue uses `default` unless given its own settings.
    pub fn new(default: QueueConfig) -> Self {
        Queues {
            default,
            configs: HashMap::new(),
            lines: BTreeMap::new(),
            members: HashMap::new(),
            next_seq: 0,
            events: VecDeque::new(),
        }
    }

    /// Replaces every queue's settings on reload; running offers keep their deadline.
    pub fn set_configs(&mut self, default: QueueConfig, configs: HashMap<QueueName, QueueConfig>) {
        self.default = default;
        self.configs = configs;
    }

    /// The settings of `queue`.
    pub fn config(&self, queue: &QueueName) -> QueueConfig {
        self.configs.get(queue).copied().unwrap_or(self.default)
    }

    /// Puts `call` at the back of `queue`'s line; returns its 1-based position.
    pub fn enqueue(
        &mut self,
        now: Instant,
        call: C,
        queue: QueueName,
        language: &str,
    ) -> Result<usize, QueueError> {
        if self.members.contains_key(&call) {
            return Err(QueueError::AlreadyQueued);
        }
        let line = self.lines.entry(queue.clone()).or_default();
        line.push_back(call.clone());
        let position = line.len();
        debug!(%queue, position, "caller enqueued");
        self.members.insert(
            call,
            Member {
                queue,
                language: language.to_owned(),
                enqueued_at: now,
                seq: self.next_seq,
                trying: None,
                tried: Vec::new(),
            },
        );
        self.next_seq += 1;
        Ok(position)
    }

    /// Whether `call` waits in a queue.
    pub fn is_queued(&self, call: &C) -> bool {
        self.members.contains_key(call)
    }

    /// `call`'s 1-based position in its line (a caller being offered keeps theirs).
    pub fn position(&self, call: &C) -> Option<usize> {
        let member = self.members.get(call)?;
        let line = self.lines.get(&member.queue)?;
        line.iter().position(|c| c == call).map(|i| i + 1)
    }

    /// Callers waiting in `queue`.
    pub fn waiting(&self, queue: &QueueName) -> usize {
        self.lines.get(queue).map_or(0, VecDeque::len)
    }

    /// Takes `call` out of its line (the caller hung up, or the call layer gives up). A ringing agent is
    /// released at once; the [`QueueEvent::Left`] names it in `ringing` so that its leg gets CANCEL.
    /// Returns whether the call was queued.
    pub fn remove(&mut self, now: Instant, agents: &mut Agents<C>, call: &C) -> bool {
        let Some(member) = self.take_member(call) else {
            return false;
        };
        let ringing = member
            .trying
            .as_ref()
            .filter(|t| !t.timed_out)
            .map(|t| t.agent.clone());
        if let Some(agent) = &ringing {
            let input = AgentInput::CallEnded {
                agent: agent.clone(),
                call: call.clone(),
            };
            // An Err means the offer already ended (its outcome is on its way): nothing to release.
            let _ = agents.handle(now, input);
        }
        let offered = member.trying.is_some() || !member.tried.is_empty();
        let result = if !offered && agents.available_for(&member.queue) == 0 {
            QueueResult::NoAgents
        } else {
            QueueResult::Abandoned
        };
        self.leave(now, call.clone(), member, result, None, ringing);
        true
    }

    /// Feeds an event from [`Agents::poll_event`]; only [`AgentEvent::OfferEnded`] matters here.
    pub fn handle_agent_event(&mut self, now: Instant, event: &AgentEvent<C>) {
        let AgentEvent::OfferEnded {
            agent,
            call,
            outcome,
        } = event
        else {
            return;
        };
        let Some(member) = self.members.get_mut(call) else {
            return;
        };
        if member.trying.as_ref().map(|t| &t.agent) != Some(agent) {
            return;
        }
        match outcome {
            OfferOutcome::Answered => {
                let member = self.take_member(call).expect("member looked up above");
                self.leave(
                    now,
                    call.clone(),
                    member,
                    QueueResult::Answered,
                    Some(agent.clone()),
                    None,
                );
            }
            OfferOutcome::Rejected(_) | OfferOutcome::Withdrawn => {
                // The caller never left their place: they are still at the head for the next agent.
                member.trying = None;
                if !member.tried.contains(agent) {
                    member.tried.push(agent.clone());
                }
                debug!(queue = %member.queue, %agent, ?outcome, "offer not taken");
            }
            OfferOutcome::CallerGone => {
                let member = self.take_member(call).expect("member looked up above");
                self.leave(
                    now,
                    call.clone(),
                    member,
                    QueueResult::Abandoned,
                    None,
                    Some(agent.clone()),
                );
            }
        }
    }

    /// The next decision to ring an agent, if a caller waits and an agent of their queue is free; the
    /// agent is marked offered in `agents`. Call until `None` after every input.
    pub fn poll_offer(&mut self, now: Instant, agents: &mut Agents<C>) -> Option<Offer<C>> {
        // Only the first caller not being offered in each line can be served: if no agent suits them,
        // none suits those behind (they see the same free agents), so the line is never jumped.
        let mut heads: Vec<(u64, C)> = self
            .lines
            .values()
            .filter_map(|line| line.iter().find(|c| self.is_waiting(c)))
            .map(|c| (self.members[c].seq, c.clone()))
            .collect();
        heads.sort_by_key(|(seq, _)| *seq);
        for (_, call) in heads {
            let member = &self.members[&call];
            let Some(agent) = self.pick(agents, member) else {
                continue;
            };
            let input = AgentInput::Offered {
                agent: agent.clone(),
                call: call.clone(),
            };
            if let Err(e) = agents.handle(now, input) {
                // `pick` chose a free agent from the same `agents` a moment ago.
                warn!(error = %e, "chosen agent refused the offer");
                return None;
            }
            let ring_until = now + self.config(&member.queue).ring_timeout;
            let member = self.members.get_mut(&call).expect("head is a member");
            member.trying = Some(Trying {
                agent: agent.clone(),
                ring_until,
                timed_out: false,
            });
            debug!(queue = %member.queue, %agent, "offer");
            return Some(Offer {
                call,
                agent,
                queue: member.queue.clone(),
                language: member.language.clone(),
                ring_until,
            });
        }
        None
    }

    /// Fires every due ring timeout: the agent is charged a no-answer in `agents` and a
    /// [`QueueEvent::RingTimeout`] asks for the CANCEL. A call at any other time is a no-op.
    pub fn handle_timeout(&mut self, now: Instant, agents: &mut Agents<C>) {
        let due: Vec<C> = self
            .lines
            .values()
            .flatten()
            .filter(|c| {
                self.members[*c]
                    .trying
                    .as_ref()
                    .is_some_and(|t| !t.timed_out && t.ring_until <= now)
            })
            .cloned()
            .collect();
        for call in due {
            let Some(trying) = self.members.get_mut(&call).and_then(|m| m.trying.as_mut()) else {
                continue;
            };
            trying.timed_out = true;
            let agent = trying.agent.clone();
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

    /// The earliest ring timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.members
            .values()
            .filter_map(|m| m.trying.as_ref())
            .filter(|t| !t.timed_out)
            .map(|t| t.ring_until)
            .min()
    }

    /// The next ring timeout or departure, in the order they happened.
    pub fn poll_event(&mut self) -> Option<QueueEvent<C>> {
        self.events.pop_front()
    }

    fn is_waiting(&self, call: &C) -> bool {
        self.members.get(call).is_some_and(|m| m.trying.is_none())
    }

    /// The agent to offer `member` to: among the free agents of their queue, those who have not been
    /// offered this caller yet; if every free one has, any free one.
    fn pick(&self, agents: &Agents<C>, member: &Member) -> Option<AgentId> {
        let free: Vec<&Agent<C>> = agents
            .iter()
            .filter(|a| a.is_free() && a.serves(&member.queue))
            .collect();
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
            })
            .collect();
        strategy::choose(self.config(&member.queue).strategy, &candidates).cloned()
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

    fn leave(
        &mut self,
        now: Instant,
        call: C,
        member: Member,
        result: QueueResult,
        agent: Option<AgentId>,
        ringing: Option<AgentId>,
    ) {
        let wait = now.saturating_duration_since(member.enqueued_at);
        debug!(queue = %member.queue, result = result.as_str(), wait_ms = wait.as_millis() as u64, "caller left queue");
        self.events.push_back(QueueEvent::Left(QueueExit {
            call,
            queue: member.queue,
            result,
            wait,
            agent,
            ringing,
            tried: member.tried,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
