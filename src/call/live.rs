//! The supervisor view's side of the call layer (sans-IO): a read-only snapshot of every queue, agent
//! and call ([`Calls::live_view`]), today's per-queue counts it needs (answered, abandoned, answered
//! within the service level), and a supervisor's break/back request ([`Calls::handle_supervisor`]),
//! which applies the same presence transitions as the `*50`/`*51` feature codes.
//!
//! It does not serve HTTP, authenticate supervisors or decide when to publish the snapshot (the shell
//! does), and it reads no clock: `now` is an argument, so waiting times are exact on a simulated clock.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agent::presence::{AgentEvent, AgentInput, AgentState, AgentStatus};
use crate::agent::{AgentId, QueueName};
use crate::call::{CallKey, Calls};
use crate::queue::{QueueExit, QueueResult};

/// The service level's default threshold: answered within 20 s (the call-centre industry's usual
/// "80/20" target is stated against it).
pub const DEFAULT_SERVICE_LEVEL: Duration = Duration::from_secs(20);

/// The variable the menus collect an order number into (`ivr-menus/menus.toml`).
const ORDER_VARIABLE: &str = "order_id";

/// What a supervisor asks of the call layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorCommand {
    /// Put the agent on break (as `*50` from their phone).
    Break(AgentId),
    /// Take the agent off break (as `*51`).
    Back(AgentId),
}

/// One queue's counts since the last local midnight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct QueueDay {
    answered: u64,
    abandoned: u64,
    /// Answered within the service level's threshold.
    answered_in_time: u64,
}

/// What the live view remembers between snapshots.
#[derive(Debug)]
pub(crate) struct LiveStats {
    service_level: Duration,
    days: BTreeMap<QueueName, QueueDay>,
    /// When each agent's status or state last changed (the view's "time in it").
    agent_since: HashMap<AgentId, Instant>,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            service_level: DEFAULT_SERVICE_LEVEL,
            days: BTreeMap::new(),
            agent_since: HashMap::new(),
        }
    }
}

impl LiveStats {
    /// A caller left a line: counted under the queue they left.
    pub(crate) fn left(&mut self, exit: &QueueExit<CallKey>) {
        let day = self.days.entry(exit.queue.clone()).or_default();
        match exit.result {
            QueueResult::Answered => {
                day.answered += 1;
                if exit.wait <= self.service_level {
                    day.answered_in_time += 1;
                }
            }
            QueueResult::Abandoned => day.abandoned += 1,
            // Moved on or released by the queue's own rules: neither answered nor given up by the caller.
            QueueResult::NoAgents | QueueResult::Overflow | QueueResult::Timeout => {}
        }
    }

    /// Presence reported a change: the agent's time in their state starts again.
    pub(crate) fn agent_event(&mut self, now: Instant, event: &AgentEvent<CallKey>) {
        match event {
            AgentEvent::StatusChanged { agent, .. } | AgentEvent::StateChanged { agent, .. } => {
                self.agent_since.insert(agent.clone(), now);
            }
            AgentEvent::MaxNoAnswer { .. } | AgentEvent::OfferEnded { .. } => {}
        }
    }

    /// Local midnight: today's counts start again.
    pub(crate) fn new_day(&mut self) {
        self.days.clear();
    }
}

/// The snapshot the supervisor view renders (`GET /api/live`); the field names are an interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveView {
    /// The wall time of the snapshot (RFC 3339, UTC).
    pub at: String,
    /// The service level's threshold, seconds: `service_level` counts answers within it.
    pub service_level_secs: u64,
    /// Every region, with its IANA time zone (the page shows each region's times in it).
    pub regions: Vec<LiveRegion>,
    /// Queues with agents, callers or calls today, by name.
    pub queues: Vec<LiveQueue>,
    /// Every declared agent, in the order the menus declare them.
    pub agents: Vec<LiveAgent>,
    /// Every call in progress, longest first.
    pub calls: Vec<LiveCall>,
}

/// A region.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveRegion {
    /// Its name.
    pub name: String,
    /// Its IANA time zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
}

/// One queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveQueue {
    /// `REGION.DEPARTMENT`.
    pub name: String,
    /// The region part of the name.
    pub region: String,
    /// Callers in line, first first (a caller whose agent's phone rings keeps their place).
    pub waiting: Vec<LiveWaiting>,
    /// The longest wait of those in line, milliseconds (0: nobody).
    pub longest_wait_ms: u64,
    /// Callers answered today.
    pub answered: u64,
    /// Callers who hung up while waiting today.
    pub abandoned: u64,
    /// Of `answered`, those answered within `service_level_secs`.
    pub answered_within: u64,
    /// `answered_within / (answered + abandoned)`, 0 to 1; `None` before the first such call today.
    pub service_level: Option<f64>,
    /// Agents serving the queue who are available now (idle or not).
    pub agents_available: usize,
}

/// One caller in line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveWaiting {
    /// The caller's SIP Call-ID.
    pub call_id: String,
    /// How long they have waited in this queue, milliseconds.
    pub waiting_ms: u64,
    /// Their language.
    pub language: String,
    /// The order number they entered, if the menus collected one.
    pub order: Option<String>,
    /// The agents whose phones ring for them now.
    pub ringing: Vec<String>,
}

/// One agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveAgent {
    /// The agent ID (the SIP user their phone registers).
    pub id: String,
    /// Their display name.
    pub name: String,
    /// `logged-out`, `available` or `on-break`.
    pub status: AgentStatus,
    /// `idle`, `offered`, `in-call` or `wrap-up`.
    pub state: AgentState,
    /// How long since their status or state last changed, milliseconds; `None` when unchanged since the
    /// server started.
    pub since_ms: Option<u64>,
    /// Calls answered since local midnight.
    pub calls_today: u64,
    /// The SIP Call-ID of the caller offered to or talking with them.
    pub caller: Option<String>,
    /// The queues they serve.
    pub queues: Vec<String>,
}

/// One call in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    /// The caller's SIP Call-ID.
    pub call_id: String,
    /// Where the call is: `menu:NAME`, `queue:NAME`, `agent:ID` (talking), `transfer`, or `ivr` (not in
    /// a menu choice: ringing, a prompt, a goodbye).
    #[serde(rename = "where")]
    pub place: String,
    /// How long since the call came in, milliseconds.
    pub since_ms: u64,
    /// The region (empty when the number reached none).
    pub region: String,
    /// The caller's language.
    pub language: String,
    /// The order number they entered, if any.
    pub order: Option<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn region_of(queue: &QueueName) -> String {
    queue
        .as_str()
        .split_once('.')
        .map_or(queue.as_str(), |(r, _)| r)
        .to_owned()
}

impl Calls {
    /// Sets the service level's threshold (`serve --service-level-secs`); counts already made keep
    /// the threshold they were made with.
    pub fn set_service_level(&mut self, threshold: Duration) {
        self.live.service_level = threshold;
    }

    /// A supervisor's break or back for an agent: the same transition as `*50`/`*51`, then the queues
    /// run (an agent back from break may be offered a waiting caller at once).
    pub fn handle_supervisor(
        &mut self,
        now: Instant,
        command: SupervisorCommand,
    ) -> Result<(), crate::agent::presence::AgentError> {
        let input = match &command {
            SupervisorCommand::Break(agent) => AgentInput::Break(agent.clone()),
            SupervisorCommand::Back(agent) => AgentInput::Back(agent.clone()),
        };
        self.agents.presence.handle(now, input)?;
        tracing::info!(?command, "supervisor changed an agent's status");
        self.run_queues(now);
        Ok(())
    }

    /// The live snapshot at `now`.
    pub fn live_view(&self, now: Instant) -> LiveView {
        LiveView {
            at: self.cfg.wall.format(now),
            service_level_secs: self.live.service_level.as_secs(),
            regions: self
                .menus
                .regions
                .iter()
                .map(|r| LiveRegion {
                    name: r.name.clone(),
                    time_zone: r.schedule.tz.name().to_owned(),
                })
                .collect(),
            queues: self.live_queues(now),
            agents: self.live_agents(now),
            calls: self.live_calls(now),
        }
    }

    fn call_id_of(&self, key: &CallKey) -> Option<String> {
        self.calls.get(key).map(|c| c.call_id.to_string())
    }

    fn order_of(&self, key: &CallKey) -> Option<String> {
        let call = self.calls.get(key)?;
        call.ivr.summary().variables.get(ORDER_VARIABLE).cloned()
    }

    fn live_queues(&self, now: Instant) -> Vec<LiveQueue> {
        let queues = &self.agents.queues;
        let presence = &self.agents.presence;
        let mut names: BTreeSet<QueueName> = self.live.days.keys().cloned().collect();
        names.extend(queues.lines().cloned());
        for agent in presence.iter() {
            names.extend(agent.queues().iter().cloned());
        }
        names
            .into_iter()
            .map(|name| {
                let waiting: Vec<LiveWaiting> = queues
                    .line(&name)
                    .into_iter()
                    .map(|e| LiveWaiting {
                        call_id: self.call_id_of(e.call).unwrap_or_default(),
                        waiting_ms: ms(now.saturating_duration_since(e.enqueued_at)),
                        language: e.language.to_owned(),
                        order: self.order_of(e.call),
                        ringing: e.ringing.iter().map(|a| a.to_string()).collect(),
                    })
                    .collect();
                let day = self.live.days.get(&name).copied().unwrap_or_default();
                let finished = day.answered + day.abandoned;
                LiveQueue {
                    region: region_of(&name),
                    longest_wait_ms: waiting.iter().map(|w| w.waiting_ms).max().unwrap_or(0),
                    waiting,
                    answered: day.answered,
                    abandoned: day.abandoned,
                    answered_within: day.answered_in_time,
                    service_level: (finished > 0)
                        .then(|| day.answered_in_time as f64 / finished as f64),
                    agents_available: presence.available_for(&name),
                    name: name.to_string(),
                }
            })
            .collect()
    }

    fn live_agents(&self, now: Instant) -> Vec<LiveAgent> {
        let presence = &self.agents.presence;
        self.menus
            .agents_in_file_order()
            .filter_map(|config| {
                let agent = presence.get(&config.id)?;
                Some(LiveAgent {
                    id: config.id.to_string(),
                    name: config.name.clone(),
                    status: agent.status(),
                    state: agent.state(),
                    since_ms: self
                        .live
                        .agent_since
                        .get(&config.id)
                        .map(|&at| ms(now.saturating_duration_since(at))),
                    calls_today: agent.calls_today(),
                    caller: agent.call().and_then(|k| self.call_id_of(k)),
                    queues: agent.queues().iter().map(|q| q.to_string()).collect(),
                })
            })
            .collect()
    }

    fn live_calls(&self, now: Instant) -> Vec<LiveCall> {
        let mut calls: Vec<(Instant, LiveCall)> = self
            .calls
            .iter()
            .map(|(key, call)| {
                let summary = call.ivr.summary();
                let answered = call.queued.as_ref().and_then(|q| q.answered.as_ref());
                let place = if let Some((agent, _)) = answered {
                    format!("agent:{agent}")
                } else if let Some(queue) = self.agents.queues.queue_of(key) {
                    format!("queue:{queue}")
                } else if call.transfer.is_some() {
                    "transfer".to_owned()
                } else if let Some(menu) = call.ivr.choosing_in() {
                    format!("menu:{menu}")
                } else {
                    "ivr".to_owned()
                };
                let live = LiveCall {
                    call_id: call.call_id.to_string(),
                    place,
                    since_ms: ms(now.saturating_duration_since(call.started)),
                    region: summary.region,
                    language: summary.language,
                    order: summary.variables.get(ORDER_VARIABLE).cloned(),
                };
                (call.started, live)
            })
            .collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.call_id.cmp(&b.1.call_id)));
        calls.into_iter().map(|(_, c)| c).collect()
    }
}
