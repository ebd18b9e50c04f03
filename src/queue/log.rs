//! The queue event log's records (like Asterisk's queue_log): what happened to which caller, agent and
//! queue, and when, as [`Queues::poll_log`](super::Queues::poll_log) yields them. It does not write
//! files or read a clock: the shell turns a record's [`Instant`] into wall-clock time and the call
//! layer's key into the SIP Call-ID, then writes [`LogRecord::line`] as one JSON line
//! (`--queue-log PATH`).
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agent::presence::{AgentState, AgentStatus};
use crate::agent::{AgentId, QueueName};

use super::{OverflowReason, OverflowTarget};

/// One logged event, with what it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord<C> {
    /// When it happened (the `now` of the input that caused it).
    pub at: Instant,
    /// The queue, for caller events.
    pub queue: Option<QueueName>,
    /// The caller's call.
    pub call: Option<C>,
    /// The agent, for offers, answers and agent changes.
    pub agent: Option<AgentId>,
    /// What happened, with its own fields.
    pub event: LogEvent,
}

/// What happened; `event` in the JSON line, the variant's fields beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LogEvent {
    /// A caller joined the line.
    Join {
        /// 1-based place on joining.
        position: usize,
        /// The caller's priority (higher first).
        priority: i32,
    },
    /// An agent's phones were rung with the caller.
    Offer {
        /// How long they will ring at most.
        ring_timeout_ms: u64,
    },
    /// An offer ended without the agent taking the call.
    RingNoAnswer {
        /// How long it rang.
        ring_ms: u64,
        /// `no-answer`, `busy`, `declined`, `failed` or `withdrawn` (the agent logged out).
        reason: &'static str,
    },
    /// The agent answered.
    Answer {
        /// From joining to the answer.
        wait_ms: u64,
        /// How long that agent's phone rang.
        ring_ms: u64,
    },
    /// The caller hung up (or was taken out) while waiting.
    Abandon {
        /// Their place when they left.
        position: usize,
        /// Their place on joining.
        joined_position: usize,
        /// From joining to leaving.
        wait_ms: u64,
    },
    /// The caller left without ever being offered, while no agent of the queue was available.
    NoAgents {
        /// From joining to leaving.
        wait_ms: u64,
    },
    /// The caller was moved on: the line was full, or no agent was there (`when_no_agents`).
    Overflow {
        /// Why.
        reason: OverflowReason,
        /// Where to: a queue name, `hang-up`, or null (released as without agents).
        target: Option<String>,
        /// From joining to leaving (0 when turned away on joining).
        wait_ms: u64,
    },
    /// The caller waited `max_wait`.
    Timeout {
        /// Where to next (as for `overflow`).
        target: Option<String>,
        /// From joining to leaving.
        wait_ms: u64,
    },
    /// The caller was told their place and the estimated wait.
    Announce {
        /// The place announced, or null when it did not change since the last announcement.
        position: Option<usize>,
        /// The estimate announced, if the queue has one.
        estimated_wait_ms: Option<u64>,
    },
    /// An agent's status changed (logged out, available, on break).
    AgentStatus {
        /// The new status.
        status: AgentStatus,
    },
    /// An agent's state changed (idle, offered, in call, wrap-up).
    AgentState {
        /// The new state.
        state: AgentState,
    },
}

/// One JSON line of the queue log: `time`, `event`, `queue`, `call_id`, `agent`, and the event's fields.
#[derive(Debug, Serialize)]
pub struct LogLine<'a> {
    /// Wall-clock time, as the shell formats it (RFC 3339).
    pub time: &'a str,
    /// The event and its fields.
    #[serde(flatten)]
    pub event: &'a LogEvent,
    /// The queue, or null.
    pub queue: Option<&'a QueueName>,
    /// The caller's SIP Call-ID, or null.
    pub call_id: Option<&'a str>,
    /// The agent, or null.
    pub agent: Option<&'a AgentId>,
}

impl<C> LogRecord<C> {
    /// The record as a JSON-line value, at wall-clock `time`, the caller's call known as `call_id`.
    pub fn line<'a>(&'a self, time: &'a str, call_id: Option<&'a str>) -> LogLine<'a> {
        LogLine {
            time,
            event: &self.event,
            queue: self.queue.as_ref(),
            call_id,
            agent: self.agent.as_ref(),
        }
    }
}

/// Milliseconds for a log field.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An overflow target as the log spells it.
pub(crate) fn target_name(target: Option<&OverflowTarget>) -> Option<String> {
    target.map(|t| match t {
        OverflowTarget::Queue(q) => q.to_string(),
        OverflowTarget::HangUp { .. } => "hang-up".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_flat_json_object() {
        let record = LogRecord {
            at: Instant::now(),
            queue: Some(QueueName::from("china.orders")),
            call: Some(7u32),
            agent: None,
            event: LogEvent::Overflow {
                reason: OverflowReason::MaxLength,
                target: Some("english.orders".to_owned()),
                wait_ms: 0,
            },
        };
        let json =
            serde_json::to_value(record.line("2026-12-01T12:00:00Z", Some("abc@x"))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time": "2026-12-01T12:00:00Z",
                "event": "overflow",
                "reason": "max-length",
                "target": "english.orders",
                "wait_ms": 0,
                "queue": "china.orders",
                "call_id": "abc@x",
                "agent": null,
            })
        );
        let state = LogRecord::<u32> {
            at: Instant::now(),
            queue: None,
            call: None,
            agent: Some(AgentId::from("li")),
            event: LogEvent::AgentState {
                state: AgentState::WrapUp,
            },
        };
        let json = serde_json::to_value(state.line("t", None)).unwrap();
        assert_eq!(json["event"], "agent-state");
        assert_eq!(json["state"], "wrap-up");
        assert_eq!(json["agent"], "li");
    }
}
