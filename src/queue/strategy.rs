//! How a queue picks one agent among those free to take its head caller. Only the choice lives here;
//! which agents are free, and which ones this caller already tried, is decided by `queue` before, and
//! ring-all (which offers every free agent at once) is the queue's, not a choice.
//!
//! Every strategy first keeps the best *tier* of candidates — the lowest penalty in the queue, then
//! those speaking the caller's language — and applies its own rule within it. A tier only orders: it
//! never makes a caller wait while a free agent of the queue exists.
use std::time::Instant;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::agent::AgentId;

/// A queue's agent-selection strategy (mod_callcenter names, `strategy = "longest-idle-agent"`); an
/// unknown name does not deserialise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every free agent of the queue rings at once (penalties and languages do not apply); the first
    /// to answer takes the call and the others are idle again at once.
    RingAll,
    /// The agent free for the longest time.
    #[default]
    LongestIdleAgent,
    /// The next agent after the one this queue offered last, in configured order (see
    /// [`Candidate::order`]), wrapping around; the queue remembers its place across calls.
    RoundRobin,
    /// The agent who answered the fewest calls today ([`Candidate::calls_today`]), then longest idle.
    FewestCalls,
    /// Any one, uniformly, from the queue's seeded generator.
    Random,
    /// The first agent in configured order, every time (restarts at the top).
    TopDown,
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
    /// Calls the agent answered since start.
    pub calls_taken: u64,
    /// Calls the agent answered since presence's last `start_new_day`.
    pub calls_today: u64,
    /// The agent's penalty in this queue (lower is offered first).
    pub penalty: u32,
    /// The agent's position in the configured agent list (0 first).
    pub order: usize,
}

impl Candidate<'_> {
    fn tier(&self) -> (u32, bool) {
        (self.penalty, !self.speaks_language)
    }
}

/// What a queue's strategy remembers between calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Round-robin: the [`Candidate::order`] of the agent offered last.
    pub last_offered: Option<usize>,
}

/// The agent to offer the caller to, among `candidates` (never empty when called from the queue);
/// `memory` is the queue's, updated with the choice. Ring-all, asked for one agent, answers as
/// longest-idle does.
pub fn choose<'a, R: Rng>(
    strategy: Strategy,
    candidates: &[Candidate<'a>],
    memory: &mut Memory,
    rng: &mut R,
) -> Option<&'a AgentId> {
    let best = candidates.iter().map(Candidate::tier).min()?;
    let tier: Vec<&Candidate<'a>> = candidates.iter().filter(|c| c.tier() == best).collect();
    // The ID breaks every remaining tie, so that a replayed trace picks the same agent every time.
    let chosen = match strategy {
        Strategy::RingAll | Strategy::LongestIdleAgent => {
            tier.iter().min_by_key(|c| (c.idle_since, c.agent))
        }
        Strategy::RoundRobin => {
            // Those after the last one first, then from the top again.
            let last = memory.last_offered;
            tier.iter()
                .min_by_key(|c| (last.is_some_and(|l| c.order <= l), c.order, c.agent))
        }
        Strategy::FewestCalls => tier
            .iter()
            .min_by_key(|c| (c.calls_today, c.idle_since, c.agent)),
        Strategy::Random => {
            // Drawn over the IDs in order, so that the pick does not depend on the order they came in.
            let mut ids: Vec<&AgentId> = tier.iter().map(|c| c.agent).collect();
            ids.sort();
            let drawn = ids[rng.gen_range(0..ids.len())];
            tier.iter().find(|c| c.agent == drawn)
        }
        Strategy::TopDown => tier.iter().min_by_key(|c| (c.order, c.agent)),
    }?;
    memory.last_offered = Some(chosen.order);
    Some(chosen.agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    struct Fixture {
        t0: Instant,
        ids: Vec<AgentId>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                t0: Instant::now(),
                ids: ["a", "b", "c", "d"].map(AgentId::from).to_vec(),
            }
        }

        /// Agent `i` (configured in that order), idle since `t0 + idle` s.
        fn cand(&self, i: usize, idle: u64) -> Candidate<'_> {
            Candidate {
                agent: &self.ids[i],
                idle_since: self.t0 + Duration::from_secs(idle),
                speaks_language: true,
                calls_taken: 0,
                calls_today: 0,
                penalty: 0,
                order: i,
            }
        }
    }

    fn pick<'a>(s: Strategy, c: &[Candidate<'a>], m: &mut Memory) -> Option<&'a str> {
        let mut rng = StdRng::seed_from_u64(1);
        choose(s, c, m, &mut rng).map(|a| a.as_str())
    }

    #[test]
    fn longest_idle_language_beats_idle_time_and_id_breaks_ties() {
        let f = Fixture::new();
        let mut c = vec![f.cand(2, 5), f.cand(0, 0), f.cand(1, 5)];
        c[1].speaks_language = false;
        let m = &mut Memory::default();
        assert_eq!(pick(Strategy::LongestIdleAgent, &c, m), Some("b"));
        assert_eq!(pick(Strategy::LongestIdleAgent, &c[1..2], m), Some("a"));
        assert_eq!(pick(Strategy::LongestIdleAgent, &[], m), None);
    }

    #[test]
    fn penalty_comes_before_language_and_idle_time() {
        let f = Fixture::new();
        let mut c = vec![f.cand(0, 0), f.cand(1, 9)];
        c[0].penalty = 1;
        c[1].speaks_language = false;
        for s in [
            Strategy::LongestIdleAgent,
            Strategy::RoundRobin,
            Strategy::FewestCalls,
            Strategy::Random,
            Strategy::TopDown,
        ] {
            assert_eq!(pick(s, &c, &mut Memory::default()), Some("b"), "{s:?}");
        }
    }

    #[test]
    fn round_robin_goes_on_after_the_last_one_and_wraps() {
        let f = Fixture::new();
        let all = [f.cand(0, 0), f.cand(1, 0), f.cand(2, 0)];
        let m = &mut Memory::default();
        let picks: Vec<_> = (0..4)
            .map(|_| pick(Strategy::RoundRobin, &all, m))
            .collect();
        assert_eq!(picks, [Some("a"), Some("b"), Some("c"), Some("a")]);
        // b is busy: after a comes c, not a again.
        assert_eq!(pick(Strategy::RoundRobin, &[all[0], all[2]], m), Some("c"));
        assert_eq!(m.last_offered, Some(2));
    }

    #[test]
    fn top_down_restarts_at_the_top_and_fewest_calls_counts_today() {
        let f = Fixture::new();
        let mut all = [f.cand(1, 0), f.cand(0, 9), f.cand(2, 5)];
        let m = &mut Memory::default();
        assert_eq!(pick(Strategy::TopDown, &all, m), Some("a"));
        assert_eq!(pick(Strategy::TopDown, &all, m), Some("a"));
        all[1].calls_today = 3;
        all[0].calls_today = 1;
        all[0].calls_taken = 50;
        assert_eq!(pick(Strategy::FewestCalls, &all, m), Some("c"));
        all[2].calls_today = 1;
        // b and c tie on today's calls: b has been idle longer.
        assert_eq!(pick(Strategy::FewestCalls, &all, m), Some("b"));
    }

    #[test]
    fn random_is_seeded_and_reaches_everyone() {
        let f = Fixture::new();
        let all = [f.cand(0, 0), f.cand(1, 0), f.cand(2, 0), f.cand(3, 0)];
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let m = &mut Memory::default();
            (0..40)
                .map(|_| choose(Strategy::Random, &all, m, &mut rng).map(|a| a.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let seen: std::collections::BTreeSet<_> = run(7).into_iter().flatten().collect();
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn strategy_names_are_mod_callcenter_ones() {
        #[derive(Deserialize)]
        struct Q {
            strategy: Strategy,
        }
        let names = [
            ("ring-all", Strategy::RingAll),
            ("longest-idle-agent", Strategy::LongestIdleAgent),
            ("round-robin", Strategy::RoundRobin),
            ("fewest-calls", Strategy::FewestCalls),
            ("random", Strategy::Random),
            ("top-down", Strategy::TopDown),
        ];
        for (name, strategy) in names {
            let q: Q = toml::from_str(&format!("strategy = \"{name}\"")).unwrap();
            assert_eq!(q.strategy, strategy);
        }
        assert!(toml::from_str::<Q>(r#"strategy = "agent-with-least-talk-time""#).is_err());
        assert!(toml::from_str::<Q>(r#"strategy = "ringall""#).is_err());
    }
}
