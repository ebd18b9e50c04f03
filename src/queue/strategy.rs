//! How a queue picks one agent among those free to take its head caller. Only the choice lives here;
//! which agents are free, and which ones this caller already tried, is decided by `queue` before.
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::agent::AgentId;

/// A queue's agent-selection strategy (mod_callcenter names, `strategy = "longest-idle-agent"`).
///
/// Only the longest-idle agent is implemented in this issue; ring-all, round-robin, fewest-calls,
/// random, top-down, tiers and penalties are variants to come, chosen in [`choose`] alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent free for the longest time; agents speaking the caller's language first.
    #[default]
    LongestIdleAgent,
}

/// One agent free to take the caller, as a strategy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The agent.
    pub agent: &'a AgentId,
    /// Since when the agent has been free for calls.
    pub idle_since: Instant,
    /// Whether the agent speaks the caller's language.
    pub speaks_language: bool,
    /// Calls the agent answered so far (for fewest-calls, later).
    pub calls_taken: u64,
}

/// The agent to offer the caller to, among `candidates` (never empty when called from the queue).
pub fn choose<'a>(strategy: Strategy, candidates: &[Candidate<'a>]) -> Option<&'a AgentId> {
    match strategy {
        // The ID breaks ties so that a replayed trace picks the same agent every time.
        Strategy::LongestIdleAgent => candidates
            .iter()
            .min_by_key(|c| (!c.speaks_language, c.idle_since, c.agent))
            .map(|c| c.agent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn language_beats_idle_time_and_id_breaks_ties() {
        let t0 = Instant::now();
        let (a, b, c) = (AgentId::from("a"), AgentId::from("b"), AgentId::from("c"));
        let cand = |agent, secs, speaks_language| Candidate {
            agent,
            idle_since: t0 + Duration::from_secs(secs),
            speaks_language,
            calls_taken: 0,
        };
        let all = [cand(&c, 5, true), cand(&a, 0, false), cand(&b, 5, true)];
        assert_eq!(choose(Strategy::LongestIdleAgent, &all), Some(&b));
        assert_eq!(choose(Strategy::LongestIdleAgent, &all[1..2]), Some(&a));
        assert_eq!(choose(Strategy::LongestIdleAgent, &[]), None);
    }

    #[test]
    fn strategy_names_are_mod_callcenter_ones() {
        #[derive(Deserialize)]
        struct Q {
            strategy: Strategy,
        }
        let q: Q = toml::from_str(r#"strategy = "longest-idle-agent""#).unwrap();
        assert_eq!(q.strategy, Strategy::LongestIdleAgent);
        assert!(toml::from_str::<Q>(r#"strategy = "ring-all""#).is_err());
    }
}
