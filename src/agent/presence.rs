//! Agent presence: who is logged in, on break or available, and what each agent is doing with calls —
//! FreeSWITCH mod_callcenter's *status* (Logged Out / Available / On Break) × *state* (Idle / Offered
//! ("Receiving") / In a queue call / Wrap-up), with the wrap-up timer and the max-no-answer rule.
//!
//! It is a sans-IO machine: the registrar reports logins, the phone's feature codes report breaks, the call
//! layer reports what happened to offers and calls, each with `now`. It does not ring phones, hold SIP
//! bindings or choose agents for callers (`queue` chooses, `call` rings).
//!
//! # Polling
//!
//! After every [`Agents::handle`], [`Agents::set_agents`] and [`Agents::handle_timeout`], drain
//! [`Agents::poll_event`], hand each [`AgentEvent::OfferEnded`] to `queue::Queues::handle_agent_event`,
//! then sleep until [`Agents::poll_timeout`] (the next end of a wrap-up).
//!
//! # Ring-all
//!
//! One call may be offered to several agents at once (the queue's `ring-all` strategy). The first
//! [`AgentInput::Answered`] wins: every other agent offered that call is idle again at once (no wrap-up,
//! no no-answer charged, `idle_since` kept) and gets [`OfferOutcome::Withdrawn`], so the call layer
//! CANCELs their legs. A 2xx from one of them that raced the CANCEL then gets
//! [`AgentError::NoSuchOffer`]: hang that leg up with BYE; the agent is already idle.
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, warn};

use crate::agent::{AgentId, QueueName};
use crate::sip::CallId;

/// Whether an agent takes calls (mod_callcenter's agent *status*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    /// No phone registered: never offered a call.
    LoggedOut,
    /// Registered and willing: offered calls whenever [`AgentState::Idle`].
    Available,
    /// Registered but not taking new calls (`*50`, or max-no-answer reached); `*51` ends it.
    OnBreak,
}

/// What an agent is doing with calls (mod_callcenter's agent *state*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// Free for a call (mod_callcenter "Waiting").
    Idle,
    /// Their phones are ringing with a caller (mod_callcenter "Receiving").
    Offered,
    /// Talking to a caller (mod_callcenter "In a queue call").
    InCall,
    /// After a call or a refused offer, until the wrap-up time has passed; then [`AgentState::Idle`].
    WrapUp,
}

/// Why an offer did not become a call; the agent's side of the story.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// `486 Busy Here` / `600 Busy Everywhere`.
    Busy,
    /// `603 Decline`.
    Declined,
    /// The ring timeout passed, or `480`/`408`: counts towards max-no-answer.
    NoAnswer,
    /// The agent leg failed otherwise (transport error, `5xx`, bad SDP).
    Failed,
}

/// How an offer ended, as reported by [`AgentEvent::OfferEnded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OfferOutcome {
    /// The agent answered: the call is theirs.
    Answered,
    /// The agent or their phone refused, or nobody answered.
    Rejected(RejectReason),
    /// The agent logged out or was removed from the configuration while ringing, or (ring-all) another
    /// agent answered the same call first: the call layer must CANCEL the agent leg; in the first case
    /// the caller goes back to the head of the line.
    Withdrawn,
    /// The caller hung up while the agent was ringing.
    CallerGone,
}

/// Global presence settings (`[routing]`-wide, not per agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentsConfig {
    /// Time after each call (and after each refused offer) before the agent is offered another; default
    /// 10 s. mod_callcenter's separate reject/busy/no-answer delays are folded into this one value so
    /// that a phone answering `486` at once cannot be re-rung in a tight loop.
    pub wrap_up: Duration,
    /// Consecutive unanswered offers after which the agent is put on break; default 3, 0 disables it.
    pub max_no_answer: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            wrap_up: Duration::from_secs(10),
            max_no_answer: 3,
        }
    }
}

/// What presence needs from an `[agents.ID]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProfile {
    /// The agent's ID.
    pub id: AgentId,
    /// Queues the agent serves, `REGION.DEPARTMENT`.
    pub queues: Vec<QueueName>,
    /// Languages the agent speaks (as the IVR names them); callers speaking one of them prefer this agent.
    pub languages: Vec<String>,
    /// `[agents.ID.penalty]`: per queue, the agent's penalty there (absent = 0). Among free agents the
    /// lowest penalty is offered first; a penalty never makes a caller wait for a free agent.
    pub penalties: BTreeMap<QueueName, u32>,
}

impl AgentProfile {
    /// A profile serving `queues` and speaking `languages`.
    pub fn new(id: &str, queues: &[&str], languages: &[&str]) -> Self {
        AgentProfile {
            id: id.into(),
            queues: queues.iter().map(|q| QueueName::from(*q)).collect(),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
            penalties: BTreeMap::new(),
        }
    }

    /// The same profile with `penalty` in `queue`.
    pub fn with_penalty(mut self, queue: &str, penalty: u32) -> Self {
        self.penalties.insert(QueueName::from(queue), penalty);
        self
    }
}

/// An input to [`Agents::handle`]. `C` identifies a call as the call layer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentInput<C = CallId> {
    /// The agent's first contact registered (from the registrar).
    LoggedIn(AgentId),
    /// The agent's last contact was removed or expired (from the registrar).
    LoggedOut(AgentId),
    /// `*50` from the agent's phone.
    Break(AgentId),
    /// `*51` from the agent's phone.
    Back(AgentId),
    /// A caller is being offered to the agent (their phones ring). `queue::Queues::poll_offer` feeds it.
    Offered {
        /// The agent.
        agent: AgentId,
        /// The caller's call.
        call: C,
    },
    /// The offer did not become a call.
    OfferRejected {
        /// The agent.
        agent: AgentId,
        /// The caller's call.
        call: C,
        /// Why.
        why: RejectReason,
    },
    /// One of the agent's phones answered the offer.
    Answered {
        /// The agent.
        agent: AgentId,
        /// The caller's call.
        call: C,
    },
    /// The call ended: either side hung up after the answer, or the caller hung up while it rang.
    CallEnded {
        /// The agent.
        agent: AgentId,
        /// The caller's call.
        call: C,
    },
}

/// What [`Agents::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent<C = CallId> {
    /// The agent's status changed.
    StatusChanged {
        /// The agent.
        agent: AgentId,
        /// The new status.
        status: AgentStatus,
    },
    /// The agent's state changed.
    StateChanged {
        /// The agent.
        agent: AgentId,
        /// The new state.
        state: AgentState,
    },
    /// The agent left `max_no_answer` offers unanswered in a row and was put on break.
    MaxNoAnswer {
        /// The agent.
        agent: AgentId,
    },
    /// An offer ended; `queue::Queues::handle_agent_event` needs every one of these.
    OfferEnded {
        /// The agent.
        agent: AgentId,
        /// The caller's call.
        call: C,
        /// How.
        outcome: OfferOutcome,
    },
}

/// An input that does not fit the agent's present status or state; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No such agent in the configuration.
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    /// A break or return from an agent who is logged out.
    #[error("agent {0} is not logged in")]
    NotLoggedIn(AgentId),
    /// An offer to an agent who is not available and idle.
    #[error("agent {0} is not available and idle")]
    NotAvailable(AgentId),
    /// An offer result for an offer the agent does not have (it was withdrawn, or already ended): an
    /// agent leg that answered it must be hung up.
    #[error("agent {0} has no such offer")]
    NoSuchOffer(AgentId),
    /// A call end for a call the agent is not in.
    #[error("agent {0} is not in that call")]
    NotInCall(AgentId),
}

/// One agent's presence, as [`Agents::get`] shows it.
#[derive(Clone, Debug)]
pub struct Agent<C = CallId> {
    profile: AgentProfile,
    status: AgentStatus,
    state: AgentState,
    /// The call offered to or taken by the agent (state `Offered` or `InCall`).
    call: Option<C>,
    wrap_up_until: Option<Instant>,
    /// Since when the agent has been free for calls; the longest-idle strategy orders by it.
    idle_since: Option<Instant>,
    calls_taken: u64,
    no_answer: u32,
    /// Calls answered since the last [`Agents::start_new_day`] (the fewest-calls strategy).
    calls_today: u64,
    /// The wrap-up after the present call, when its queue sets its own ([`Agents::offer`]).
    call_wrap_up: Option<Duration>,
    /// The agent's position in the profile list last given to [`Agents::new`] / [`Agents::set_agents`]:
    /// the top-down and round-robin strategies go through agents in this order.
    order: usize,
    /// Removed from the configuration while in a call: dropped when the call ends.
    removed: bool,
}

impl<C> Agent<C> {
    fn new(profile: AgentProfile, order: usize) -> Self {
        Agent {
            profile,
            status: AgentStatus::LoggedOut,
            state: AgentState::Idle,
            call: None,
            wrap_up_until: None,
            idle_since: None,
            calls_taken: 0,
            no_answer: 0,
            calls_today: 0,
            call_wrap_up: None,
            order,
            removed: false,
        }
    }

    /// The agent's ID.
    pub fn id(&self) -> &AgentId {
        &self.profile.id
    }

    /// Queues the agent serves.
    pub fn queues(&self) -> &[QueueName] {
        &self.profile.queues
    }

    /// Languages the agent speaks.
    pub fn languages(&self) -> &[String] {
        &self.profile.languages
    }

    /// Whether the agent serves `queue`.
    pub fn serves(&self, queue: &QueueName) -> bool {
        self.profile.queues.contains(queue)
    }

    /// Whether the agent speaks `language`.
    pub fn speaks(&self, language: &str) -> bool {
        self.profile.languages.iter().any(|l| l == language)
    }

    /// The agent's status.
    pub fn status(&self) -> AgentStatus {
        self.status
    }

    /// The agent's state.
    pub fn state(&self) -> AgentState {
        self.state
    }

    /// The call offered to or taken by the agent.
    pub fn call(&self) -> Option<&C> {
        self.call.as_ref()
    }

    /// When the present wrap-up ends.
    pub fn wrap_up_until(&self) -> Option<Instant> {
        self.wrap_up_until
    }

    /// Since when the agent has been free for calls (set on login, return from break, end of wrap-up).
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    /// Calls answered since start.
    pub fn calls_taken(&self) -> u64 {
        self.calls_taken
    }

    /// Calls answered since the last [`Agents::start_new_day`].
    pub fn calls_today(&self) -> u64 {
        self.calls_today
    }

    /// The agent's penalty in `queue` (0 unless configured).
    pub fn penalty(&self, queue: &QueueName) -> u32 {
        self.profile.penalties.get(queue).copied().unwrap_or(0)
    }

    /// The agent's position in the configured profile list (0 first).
    pub fn order(&self) -> usize {
        self.order
    }

    /// Unanswered offers in a row.
    pub fn no_answer_count(&self) -> u32 {
        self.no_answer
    }

    /// Whether a caller may be offered to the agent now: available and idle.
    pub fn is_free(&self) -> bool {
        self.status == AgentStatus::Available && self.state == AgentState::Idle && !self.removed
    }
}

/// Every configured agent's presence. `C` identifies a call as the call layer does (the caller's
/// Call-ID by default).
///
/// Status and state are independent: a status change gates only *new* offers, except that logging out
/// (or being removed from the configuration) withdraws a ringing offer, because the phones being rung are
/// no longer bound. A call in progress is never cut by presence.
#[derive(Debug)]
pub struct Agents<C = CallId> {
    config: AgentsConfig,
    /// Ordered by ID, so that scans and the events of a reload come out in the same order every run.
    agents: BTreeMap<AgentId, Agent<C>>,
    events: VecDeque<AgentEvent<C>>,
}

impl<C: Clone + PartialEq + fmt::Debug> Agents<C> {
    /// Agents from the configuration, all logged out.
    pub fn new(config: AgentsConfig, profiles: Vec<AgentProfile>) -> Self {
        let agents = profiles
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), Agent::new(p, i)))
            .collect();
        Agents {
            config,
            agents,
            events: VecDeque::new(),
        }
    }

    /// The global settings in force.
    pub fn config(&self) -> &AgentsConfig {
        &self.config
    }

    /// Replaces the global settings on reload; a wrap-up already running keeps its end.
    pub fn set_config(&mut self, config: AgentsConfig) {
        self.config = config;
    }

    /// One agent's presence.
    pub fn get(&self, id: &AgentId) -> Option<&Agent<C>> {
        self.agents.get(id).filter(|a| !a.removed)
    }

    /// Every configured agent, by ID.
    pub fn iter(&self) -> impl Iterator<Item = &Agent<C>> {
        self.agents.values().filter(|a| !a.removed)
    }

    /// Available agents (in any state) serving `queue`: zero means a caller there has nobody to wait for.
    pub fn available_for(&self, queue: &QueueName) -> usize {
        self.iter()
            .filter(|a| a.status == AgentStatus::Available && a.serves(queue))
            .count()
    }

    /// Hot reload: agents keep their status, state and counters; new ones start logged out; removed ones
    /// are logged out (a ringing offer is withdrawn, a call in progress runs to its end). `now` is taken
    /// like every input's, though no decision depends on it yet.
    pub fn set_agents(&mut self, _now: Instant, profiles: Vec<AgentProfile>) {
        let mut fresh: BTreeMap<AgentId, (usize, AgentProfile)> = profiles
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), (i, p)))
            .collect();
        let ids: Vec<AgentId> = self.agents.keys().cloned().collect();
        for id in ids {
            match fresh.remove(&id) {
                Some((order, profile)) => {
                    if let Some(agent) = self.agents.get_mut(&id) {
                        agent.profile = profile;
                        agent.order = order;
                        agent.removed = false;
                    }
                }
                None => self.retire(&id),
            }
        }
        for (id, (order, profile)) in fresh {
            debug!(agent = %id, "agent added");
            self.agents.insert(id, Agent::new(profile, order));
        }
    }

    /// Logs out an agent dropped from the configuration; keeps its record while it is in a call.
    fn retire(&mut self, id: &AgentId) {
        // Logging out withdraws a ringing offer; the ID is known, so this cannot fail.
        let _ = self.on_logged_out(id);
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if agent.state == AgentState::InCall {
            agent.removed = true;
            agent.profile.queues.clear();
        } else {
            self.agents.remove(id);
        }
        debug!(agent = %id, "agent removed");
    }

    /// Starts a new day for the fewest-calls strategy: every agent's [`Agent::calls_today`] is 0 again.
    /// The machine has no calendar; the shell calls this at the helpline's local midnight.
    pub fn start_new_day(&mut self) {
        for agent in self.agents.values_mut() {
            agent.calls_today = 0;
        }
    }

    /// [`AgentInput::Offered`], with the wrap-up that follows the call if it is answered (`None`: the
    /// global [`AgentsConfig::wrap_up`]). A refused offer always takes the global one, so that a queue's
    /// zero wrap-up cannot re-ring a phone that answers `486` in a tight loop.
    pub fn offer(
        &mut self,
        agent: &AgentId,
        call: C,
        wrap_up: Option<Duration>,
    ) -> Result<(), AgentError> {
        self.on_offered(agent, call)?;
        if let Some(a) = self.agents.get_mut(agent) {
            a.call_wrap_up = wrap_up;
        }
        Ok(())
    }

    /// Feeds one input. An input that does not fit the agent's status or state changes nothing and says
    /// why; for [`AgentError::NoSuchOffer`] after an answer the call layer hangs that agent leg up.
    pub fn handle(&mut self, now: Instant, input: AgentInput<C>) -> Result<(), AgentError> {
        match input {
            AgentInput::LoggedIn(id) => self.on_logged_in(now, &id),
            AgentInput::LoggedOut(id) => self.on_logged_out(&id),
            AgentInput::Break(id) => self.on_break(&id),
            AgentInput::Back(id) => self.on_back(now, &id),
            AgentInput::Offered { agent, call } => self.on_offered(&agent, call),
            AgentInput::OfferRejected { agent, call, why } => {
                self.on_rejected(now, &agent, &call, why)
            }
            AgentInput::Answered { agent, call } => self.on_answered(&agent, &call),
            AgentInput::CallEnded { agent, call } => self.on_call_ended(now, &agent, &call),
        }
    }

    /// Ends every wrap-up that is due; a call at any other time is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.state == AgentState::WrapUp && a.wrap_up_until.is_some_and(|t| t <= now))
            .map(|a| a.profile.id.clone())
            .collect();
        for id in due {
            if let Some(agent) = self.agents.get_mut(&id) {
                // Idle from the instant the wrap-up ended, however late the shell woke us.
                let end = agent.wrap_up_until.take().unwrap_or(now);
                agent.idle_since = Some(end);
                set_state(&mut self.events, agent, AgentState::Idle);
            }
        }
    }

    /// The earliest end of a wrap-up. A linear scan: a helpline has hundreds of agents, not millions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents
            .values()
            .filter(|a| a.state == AgentState::WrapUp)
            .filter_map(|a| a.wrap_up_until)
            .min()
    }

    /// The next status or state change, in the order they happened.
    pub fn poll_event(&mut self) -> Option<AgentEvent<C>> {
        self.events.pop_front()
    }

    fn on_logged_in(&mut self, now: Instant, id: &AgentId) -> Result<(), AgentError> {
        let agent = live_mut(&mut self.agents, id)?;
        // A second registration (another phone, a refresh) changes nothing, and does not end a break.
        if agent.status == AgentStatus::LoggedOut {
            become_available(now, agent);
            set_status(&mut self.events, agent, AgentStatus::Available);
        }
        Ok(())
    }

    fn on_logged_out(&mut self, id: &AgentId) -> Result<(), AgentError> {
        let events = &mut self.events;
        let agent = self
            .agents
            .get_mut(id)
            .ok_or_else(|| AgentError::UnknownAgent(id.clone()))?;
        if agent.status == AgentStatus::LoggedOut {
            return Ok(());
        }
        set_status(events, agent, AgentStatus::LoggedOut);
        if agent.state == AgentState::Offered {
            // The phones being rung are no longer bound: stop ringing them and give the caller to
            // someone else. The agent keeps its idle_since; it never had the call.
            if let Some(call) = agent.call.take() {
                events.push_back(AgentEvent::OfferEnded {
                    agent: id.clone(),
                    call,
                    outcome: OfferOutcome::Withdrawn,
                });
            }
            set_state(events, agent, AgentState::Idle);
        }
        Ok(())
    }

    fn on_break(&mut self, id: &AgentId) -> Result<(), AgentError> {
        let events = &mut self.events;
        let agent = live_mut(&mut self.agents, id)?;
        match agent.status {
            AgentStatus::LoggedOut => Err(AgentError::NotLoggedIn(id.clone())),
            AgentStatus::OnBreak => Ok(()),
            AgentStatus::Available => {
                // A ringing offer keeps ringing: the agent is at the phone and may still take it.
                set_status(events, agent, AgentStatus::OnBreak);
                Ok(())
            }
        }
    }

    fn on_back(&mut self, now: Instant, id: &AgentId) -> Result<(), AgentError> {
        let events = &mut self.events;
        let agent = live_mut(&mut self.agents, id)?;
        match agent.status {
            AgentStatus::LoggedOut => Err(AgentError::NotLoggedIn(id.clone())),
            AgentStatus::Available => Ok(()),
            AgentStatus::OnBreak => {
                become_available(now, agent);
                set_status(events, agent, AgentStatus::Available);
                Ok(())
            }
        }
    }

    fn on_offered(&mut self, id: &AgentId, call: C) -> Result<(), AgentError> {
        let agent = live_mut(&mut self.agents, id)?;
        if !agent.is_free() {
            return Err(AgentError::NotAvailable(id.clone()));
        }
        agent.call = Some(call);
        agent.call_wrap_up = None;
        set_state(&mut self.events, agent, AgentState::Offered);
        Ok(())
    }

    /// Takes the offer of `call` away from the agent, or says it has no such offer.
    fn take_offer(&mut self, id: &AgentId, call: &C) -> Result<(), AgentError> {
        let agent = live_mut(&mut self.agents, id)?;
        if agent.state != AgentState::Offered || agent.call.as_ref() != Some(call) {
            return Err(AgentError::NoSuchOffer(id.clone()));
        }
        agent.call = None;
        Ok(())
    }

    fn on_rejected(
        &mut self,
        now: Instant,
        id: &AgentId,
        call: &C,
        why: RejectReason,
    ) -> Result<(), AgentError> {
        self.take_offer(id, call)?;
        let (wrap_up, max) = (self.config.wrap_up, self.config.max_no_answer);
        let events = &mut self.events;
        let agent = self.agents.get_mut(id).expect("take_offer found the agent");
        start_wrap_up(events, agent, now, wrap_up);
        events.push_back(AgentEvent::OfferEnded {
            agent: id.clone(),
            call: call.clone(),
            outcome: OfferOutcome::Rejected(why),
        });
        if why == RejectReason::NoAnswer {
            agent.no_answer += 1;
            if max > 0 && agent.no_answer >= max && agent.status == AgentStatus::Available {
                warn!(agent = %id, unanswered = agent.no_answer, "agent put on break: max no-answer reached");
                set_status(events, agent, AgentStatus::OnBreak);
                events.push_back(AgentEvent::MaxNoAnswer { agent: id.clone() });
            }
        }
        Ok(())
    }

    fn on_answered(&mut self, id: &AgentId, call: &C) -> Result<(), AgentError> {
        self.take_offer(id, call)?;
        let events = &mut self.events;
        let agent = self.agents.get_mut(id).expect("take_offer found the agent");
        agent.call = Some(call.clone());
        agent.calls_taken += 1;
        agent.calls_today += 1;
        agent.no_answer = 0;
        set_state(events, agent, AgentState::InCall);
        events.push_back(AgentEvent::OfferEnded {
            agent: id.clone(),
            call: call.clone(),
            outcome: OfferOutcome::Answered,
        });
        self.withdraw_others(id, call);
        Ok(())
    }

    /// Ring-all: `winner` answered `call`, so every other agent still offered it is idle again at once.
    fn withdraw_others(&mut self, winner: &AgentId, call: &C) {
        let events = &mut self.events;
        for agent in self.agents.values_mut() {
            if agent.profile.id == *winner
                || agent.state != AgentState::Offered
                || agent.call.as_ref() != Some(call)
            {
                continue;
            }
            agent.call = None;
            // It never had the call: it keeps its idle_since and its no-answer count.
            set_state(events, agent, AgentState::Idle);
            events.push_back(AgentEvent::OfferEnded {
                agent: agent.profile.id.clone(),
                call: call.clone(),
                outcome: OfferOutcome::Withdrawn,
            });
        }
    }

    fn on_call_ended(&mut self, now: Instant, id: &AgentId, call: &C) -> Result<(), AgentError> {
        let wrap_up = self.config.wrap_up;
        let events = &mut self.events;
        // A removed agent's record lives on until its call ends: look it up removed or not.
        let agent = self
            .agents
            .get_mut(id)
            .ok_or_else(|| AgentError::UnknownAgent(id.clone()))?;
        if agent.call.as_ref() != Some(call) {
            return Err(AgentError::NotInCall(id.clone()));
        }
        agent.call = None;
        match agent.state {
            AgentState::Offered => {
                // The caller gave up while it rang: the agent never worked, so keeps its idle_since.
                set_state(events, agent, AgentState::Idle);
                events.push_back(AgentEvent::OfferEnded {
                    agent: id.clone(),
                    call: call.clone(),
                    outcome: OfferOutcome::CallerGone,
                });
            }
            _ if agent.removed => {
                self.agents.remove(id);
            }
            _ => {
                let wrap_up = agent.call_wrap_up.take().unwrap_or(wrap_up);
                start_wrap_up(events, agent, now, wrap_up);
            }
        }
        Ok(())
    }
}

/// A configured agent (not one removed and kept only until its call ends).
fn live_mut<'a, C>(
    agents: &'a mut BTreeMap<AgentId, Agent<C>>,
    id: &AgentId,
) -> Result<&'a mut Agent<C>, AgentError> {
    agents
        .get_mut(id)
        .filter(|a| !a.removed)
        .ok_or_else(|| AgentError::UnknownAgent(id.clone()))
}

/// Status becomes available: a fresh no-answer count, and idle from now if not busy.
fn become_available<C>(now: Instant, agent: &mut Agent<C>) {
    agent.no_answer = 0;
    if agent.state == AgentState::Idle {
        // Time logged out or on break is not time spent waiting for a caller.
        agent.idle_since = Some(now);
    }
}

fn start_wrap_up<C: Clone>(
    events: &mut VecDeque<AgentEvent<C>>,
    agent: &mut Agent<C>,
    now: Instant,
    wrap_up: Duration,
) {
    agent.call = None;
    if wrap_up.is_zero() {
        agent.wrap_up_until = None;
        agent.idle_since = Some(now);
        set_state(events, agent, AgentState::Idle);
    } else {
        agent.wrap_up_until = Some(now + wrap_up);
        set_state(events, agent, AgentState::WrapUp);
    }
}

fn set_state<C>(events: &mut VecDeque<AgentEvent<C>>, agent: &mut Agent<C>, state: AgentState) {
    if agent.state != state {
        debug!(agent = %agent.profile.id, from = ?agent.state, to = ?state, "agent state");
        agent.state = state;
        events.push_back(AgentEvent::StateChanged {
            agent: agent.profile.id.clone(),
            state,
        });
    }
}

fn set_status<C>(events: &mut VecDeque<AgentEvent<C>>, agent: &mut Agent<C>, status: AgentStatus) {
    if agent.status != status {
        debug!(agent = %agent.profile.id, from = ?agent.status, to = ?status, "agent status");
        agent.status = status;
        events.push_back(AgentEvent::StatusChanged {
            agent: agent.profile.id.clone(),
            status,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents() -> (Agents<u32>, Instant) {
        let a = Agents::new(
            AgentsConfig::default(),
            vec![AgentProfile::new("alice", &["europe.refunds"], &["en"])],
        );
        (a, Instant::now())
    }

    #[test]
    fn login_twice_is_one_status_change() {
        let (mut a, t0) = agents();
        let alice = AgentId::from("alice");
        a.handle(t0, AgentInput::LoggedIn(alice.clone())).unwrap();
        a.handle(t0, AgentInput::LoggedIn(alice.clone())).unwrap();
        assert_eq!(
            a.poll_event(),
            Some(AgentEvent::StatusChanged {
                agent: alice,
                status: AgentStatus::Available
            })
        );
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn result_for_an_offer_not_made_is_refused() {
        let (mut a, t0) = agents();
        let alice = AgentId::from("alice");
        a.handle(t0, AgentInput::LoggedIn(alice.clone())).unwrap();
        let r = a.handle(
            t0,
            AgentInput::Answered {
                agent: alice.clone(),
                call: 7,
            },
        );
        assert_eq!(r, Err(AgentError::NoSuchOffer(alice.clone())));
        assert_eq!(a.get(&alice).unwrap().state(), AgentState::Idle);
        assert_eq!(
            a.handle(t0, AgentInput::Break("bob".into())),
            Err(AgentError::UnknownAgent("bob".into()))
        );
    }

    #[test]
    fn zero_wrap_up_goes_straight_to_idle() {
        let mut a = Agents::new(
            AgentsConfig {
                wrap_up: Duration::ZERO,
                max_no_answer: 0,
            },
            vec![AgentProfile::new("alice", &["q.x"], &[])],
        );
        let t0 = Instant::now();
        let alice = AgentId::from("alice");
        a.handle(t0, AgentInput::LoggedIn(alice.clone())).unwrap();
        a.handle(
            t0,
            AgentInput::Offered {
                agent: alice.clone(),
                call: 1,
            },
        )
        .unwrap();
        a.handle(
            t0,
            AgentInput::Answered {
                agent: alice.clone(),
                call: 1,
            },
        )
        .unwrap();
        let t1 = t0 + Duration::from_secs(30);
        a.handle(
            t1,
            AgentInput::CallEnded {
                agent: alice.clone(),
                call: 1,
            },
        )
        .unwrap();
        let agent = a.get(&alice).unwrap();
        assert_eq!(
            (agent.state(), agent.idle_since()),
            (AgentState::Idle, Some(t1))
        );
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn an_answer_withdraws_the_same_call_from_every_other_agent() {
        let profiles = ["a", "b", "c"].map(|id| AgentProfile::new(id, &["q.x"], &[]));
        let mut a: Agents<u32> = Agents::new(AgentsConfig::default(), profiles.to_vec());
        let t0 = Instant::now();
        for id in ["a", "b", "c"] {
            a.handle(t0, AgentInput::LoggedIn(id.into())).unwrap();
            a.handle(
                t0,
                AgentInput::Offered {
                    agent: id.into(),
                    call: 1,
                },
            )
            .unwrap();
        }
        while a.poll_event().is_some() {}
        a.handle(
            t0,
            AgentInput::Answered {
                agent: "b".into(),
                call: 1,
            },
        )
        .unwrap();
        let ended: Vec<_> = std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                AgentEvent::OfferEnded { agent, outcome, .. } => Some((agent, outcome)),
                _ => None,
            })
            .collect();
        assert_eq!(
            ended,
            [
                ("b".into(), OfferOutcome::Answered),
                ("a".into(), OfferOutcome::Withdrawn),
                ("c".into(), OfferOutcome::Withdrawn),
            ]
        );
        for id in ["a", "c"] {
            let agent = a.get(&id.into()).unwrap();
            // Idle at once, their idle time and no-answer count untouched.
            assert_eq!(agent.state(), AgentState::Idle);
            assert_eq!((agent.idle_since(), agent.no_answer_count()), (Some(t0), 0));
        }
    }

    #[test]
    fn offer_wrap_up_order_and_a_new_day() {
        let profiles = vec![
            AgentProfile::new("zed", &["q.x"], &[]).with_penalty("q.x", 3),
            AgentProfile::new("amy", &["q.x"], &[]),
        ];
        let mut a: Agents<u32> = Agents::new(AgentsConfig::default(), profiles.clone());
        let (zed, amy) = (AgentId::from("zed"), AgentId::from("amy"));
        assert_eq!(
            (a.get(&zed).unwrap().order(), a.get(&amy).unwrap().order()),
            (0, 1)
        );
        assert_eq!(a.get(&zed).unwrap().penalty(&QueueName::from("q.x")), 3);
        assert_eq!(a.get(&zed).unwrap().penalty(&QueueName::from("q.y")), 0);
        let t0 = Instant::now();
        a.handle(t0, AgentInput::LoggedIn(zed.clone())).unwrap();
        a.offer(&zed, 1, Some(Duration::from_secs(60))).unwrap();
        a.handle(
            t0,
            AgentInput::Answered {
                agent: zed.clone(),
                call: 1,
            },
        )
        .unwrap();
        a.handle(
            t0,
            AgentInput::CallEnded {
                agent: zed.clone(),
                call: 1,
            },
        )
        .unwrap();
        let agent = a.get(&zed).unwrap();
        assert_eq!(agent.wrap_up_until(), Some(t0 + Duration::from_secs(60)));
        assert_eq!((agent.calls_today(), agent.calls_taken()), (1, 1));
        a.start_new_day();
        assert_eq!(a.get(&zed).unwrap().calls_today(), 0);
        assert_eq!(a.get(&zed).unwrap().calls_taken(), 1);
        // A reload that lists amy first reorders without touching presence.
        a.set_agents(t0, profiles.into_iter().rev().collect());
        assert_eq!(
            (a.get(&zed).unwrap().order(), a.get(&amy).unwrap().order()),
            (1, 0)
        );
        assert_eq!(a.get(&zed).unwrap().state(), AgentState::WrapUp);
    }
}
