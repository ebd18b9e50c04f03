//! What the signalling core reports to `/metrics` at a scrape, read from `call::Calls`' accessors: a
//! copy, so the HTTP side never touches the registry. It decides nothing and counts nothing itself.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::agent::presence::{AgentState, AgentStatus};
use crate::call::Calls;
use crate::telemetry::metrics::{CoreSnapshot, QueueSnapshot};

const STATUSES: [AgentStatus; 3] = [
    AgentStatus::LoggedOut,
    AgentStatus::Available,
    AgentStatus::OnBreak,
];
const STATES: [AgentState; 4] = [
    AgentState::Idle,
    AgentState::Offered,
    AgentState::InCall,
    AgentState::WrapUp,
];

fn status_label(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::LoggedOut => "logged-out",
        AgentStatus::Available => "available",
        AgentStatus::OnBreak => "on-break",
    }
}

fn state_label(s: AgentState) -> &'static str {
    match s {
        AgentState::Idle => "idle",
        AgentState::Offered => "offered",
        AgentState::InCall => "in-call",
        AgentState::WrapUp => "wrap-up",
    }
}

/// The snapshot of `calls` now.
pub fn of(calls: &Calls) -> CoreSnapshot {
    let mut agents: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
    for status in STATUSES {
        for state in STATES {
            agents.insert((status_label(status), state_label(state)), 0);
        }
    }
    // Every queue an agent serves or a caller waits in: configured names only.
    let mut names = BTreeSet::new();
    for agent in calls.agents().iter() {
        *agents
            .entry((status_label(agent.status()), state_label(agent.state())))
            .or_default() += 1;
        names.extend(agent.queues().iter().cloned());
    }
    let queues = calls.queues();
    for call in queues.queued_calls() {
        names.extend(queues.queue_of(&call).cloned());
    }
    CoreSnapshot {
        active_calls: calls.call_count(),
        transactions: calls.endpoint().transaction_count(),
        ports_in_use: calls.ports_in_use(),
        retransmissions: calls.endpoint().retransmissions(),
        guard: calls.guard_stats(),
        records_full_refusals: calls.records_full_refusals(),
        no_port_refusals: calls.no_port_refusals(),
        admission: calls.admission_stats(),
        agents: agents.into_iter().collect(),
        queues: names
            .into_iter()
            .map(|q| QueueSnapshot {
                waiting: queues.waiting(&q),
                estimated_wait: queues.estimated_wait(&q).unwrap_or(Duration::ZERO),
                name: q.to_string(),
            })
            .collect(),
    }
}
