//! The agents' side of the call layer: REGISTER answered by the digest [`Registrar`], logins and logouts
//! fed to agent presence ([`Agents`]) and the queues ([`Queues`]), their timers joined to the registry's,
//! and all re-read from the menus on reload. It does not authenticate or keep bindings itself (the
//! registrar does) nor decide who is offered a caller (`queue` does); ringing agents is `agent_leg`.
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use crate::agent::presence::{AgentInput, AgentProfile, Agents, AgentsConfig};
use crate::agent::{AgentDirectory, AgentEvent, Registrar, RegistrarConfig};
use crate::call::{CallKey, Calls};
use crate::ivr::MenuSet;
use crate::queue::{QueueConfig, Queues};
use crate::sip::endpoint::{Peer, TxId};
use crate::sip::message::Request;

/// The registrar and presence machines a [`Calls`] owns.
pub(crate) struct AgentSide {
    pub(crate) registrar: Registrar,
    pub(crate) presence: Agents<CallKey>,
    pub(crate) queues: Queues<CallKey>,
}

/// What presence needs of each declared agent, in the order the files declare them (the configured
/// order top-down and round-robin follow).
fn profiles(menus: &MenuSet) -> Vec<AgentProfile> {
    menus
        .agents_in_file_order()
        .map(|a| AgentProfile {
            id: a.id.clone(),
            queues: a.queues.clone(),
            languages: a.languages.clone(),
            penalties: a.penalties.clone(),
        })
        .collect()
}

fn directory(menus: &Arc<MenuSet>) -> Arc<dyn AgentDirectory + Send + Sync> {
    menus.clone()
}

/// The registrar's settings from the menus' `[routing]`; what the menus do not set keeps its default.
/// The expiry used when a REGISTER names none is kept inside the configured bounds.
fn registrar_config(menus: &MenuSet) -> RegistrarConfig {
    let s = menus.agent_settings();
    let d = RegistrarConfig::default();
    RegistrarConfig {
        algorithms: s.auth_algorithms.clone(),
        min_expires: s.min_expires,
        max_expires: s.max_expires,
        default_expires: d
            .default_expires
            .clamp(s.min_expires, s.max_expires.max(s.min_expires)),
        ..d
    }
}

fn presence_config(menus: &MenuSet) -> AgentsConfig {
    let s = menus.agent_settings();
    AgentsConfig {
        wrap_up: s.wrap_up,
        max_no_answer: s.max_no_answer,
    }
}

/// The queues over `[queue_defaults]` and every `[queues."REGION.DEPARTMENT"]`.
fn queues(menus: &MenuSet) -> Queues<CallKey> {
    let (default, configs) = menus.queue_configs();
    let mut queues = Queues::new(default.clone());
    queues.set_configs(default, configs);
    queues
}

impl AgentSide {
    /// Both machines over the declared agents, everyone logged out. The registrar's 32-byte seed is
    /// derived from the registry's `seed`, so a replayed trace gives the same nonces.
    pub(crate) fn new(menus: &Arc<MenuSet>, seed: u64) -> AgentSide {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x7265_6769_7374_6572);
        let registrar_seed: [u8; 32] = rng.gen();
        AgentSide {
            registrar: Registrar::new(registrar_config(menus), directory(menus), registrar_seed),
            presence: Agents::new(presence_config(menus), profiles(menus)),
            queues: queues(menus),
        }
    }

    /// When either machine next wants `handle_timeout`.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.registrar.poll_timeout(),
            self.presence.poll_timeout(),
            self.queues.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Calls {
    /// A REGISTER (in or out of a dialog: registrars ignore To tags) gets the registrar's answer.
    pub(crate) fn on_register(&mut self, now: Instant, tx: TxId, request: &Request, peer: &Peer) {
        let outcome = self.agents.registrar.handle_register(now, request, peer);
        self.respond(now, tx, outcome.response);
        self.drain_registrar(now);
    }

    /// Expired bindings and finished wrap-ups.
    pub(crate) fn agents_timeout(&mut self, now: Instant) {
        if self.agents.poll_timeout().is_some_and(|at| at <= now) {
            self.agents.registrar.handle_timeout(now);
            self.drain_registrar(now);
            self.agents.presence.handle_timeout(now);
            let AgentSide {
                presence, queues, ..
            } = &mut self.agents;
            queues.handle_timeout(now, presence);
            self.run_queues(now);
        }
    }

    /// Reload: the registrar reads the new directory (bindings of agents still declared are kept),
    /// presence the new profiles (status and state kept; removed agents are logged out), and all three
    /// take the new settings (a running wrap-up or ringing offer keeps the end it had).
    pub(crate) fn agents_reload(&mut self, now: Instant, menus: &Arc<MenuSet>) {
        self.agents.registrar.set_config(registrar_config(menus));
        self.agents.registrar.set_directory(directory(menus));
        self.agents.presence.set_config(presence_config(menus));
        self.agents.presence.set_agents(now, profiles(menus));
        let (default, configs) = menus.queue_configs();
        self.agents.queues.set_configs(default, configs);
        self.drain_registrar(now);
    }

    /// Logins and logouts become presence inputs.
    fn drain_registrar(&mut self, now: Instant) {
        while let Some(event) = self.agents.registrar.poll_event() {
            let input = match event {
                AgentEvent::LoggedIn(id) => {
                    tracing::info!(agent = %id, "agent logged in");
                    AgentInput::LoggedIn(id)
                }
                AgentEvent::LoggedOut(id) => {
                    tracing::info!(agent = %id, "agent logged out");
                    AgentInput::LoggedOut(id)
                }
            };
            if let Err(e) = self.agents.presence.handle(now, input) {
                // An agent the registrar knows and presence does not: the two read the same menus,
                // so this is a reload race at worst; nothing to undo.
                tracing::debug!(error = %e, "presence refused a registrar event");
            }
        }
        self.run_queues(now);
    }
}

impl Calls {
    /// Starts keeping queue log lines for [`Calls::poll_queue_log`] (`--queue-log PATH`); off by
    /// default so that nothing piles up where nobody drains it.
    pub fn enable_queue_log(&mut self) {
        self.agents.queues.enable_log();
        self.queue_log.get_or_insert_with(Default::default);
    }

    /// The next queue log line: one JSON object, no newline — `time` (RFC 3339, the CDRs' wall
    /// clock), `event`, `queue`, `call_id` (the caller's SIP Call-ID), `agent` and the event's fields.
    pub fn poll_queue_log(&mut self) -> Option<String> {
        self.queue_log.as_mut()?.pop_front()
    }

    /// Local midnight (the shell's timer): today's call counts (`fewest-calls`) start again.
    pub fn handle_new_day(&mut self, now: Instant) {
        tracing::debug!(?now, "new day: agents' call counts reset");
        self.agents.presence.start_new_day();
        self.live.new_day();
    }

    /// Every queue's settings: `default` for a queue without its own. Waiting callers keep their
    /// place (see `Queues::set_configs`). The menus' `[queue_defaults]` and `[queues.*]` tables set
    /// them on start and reload; tests set them directly.
    pub fn set_queue_configs(
        &mut self,
        now: Instant,
        default: QueueConfig,
        configs: std::collections::HashMap<crate::agent::QueueName, QueueConfig>,
    ) {
        self.agents.queues.set_configs(default, configs);
        self.run_queues(now);
    }

    /// The queues (for metrics and tests: who waits where).
    pub fn queues(&self) -> &Queues<CallKey> {
        &self.agents.queues
    }

    /// Turns the queue machine's log records into lines (the call's key into its SIP Call-ID).
    pub(crate) fn drain_queue_log(&mut self) {
        let Some(lines) = self.queue_log.as_mut() else {
            return;
        };
        while let Some(record) = self.agents.queues.poll_log() {
            let time = self.cfg.wall.format(record.at);
            let call_id = record
                .call
                .and_then(|k| self.calls.get(&k))
                .map(|c| c.call_id.to_string());
            let line = record.line(&time, call_id.as_deref());
            match serde_json::to_string(&line) {
                Ok(text) => lines.push_back(text),
                Err(e) => tracing::warn!(error = %e, "queue log record not serialisable"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The menus' queue settings reach presence and the queues at start and on reload.
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::agent::presence::AgentStatus;
    use crate::agent::{AgentId, QueueName};
    use crate::call::tests::{AllPrompts, MENUS};
    use crate::call::{CallsConfig, WallClock};
    use crate::ivr::compile;
    use crate::prompts::PromptStore;
    use crate::queue::{Join, Strategy};

    /// `bob` is declared before `ana` (IDs sort the other way), with a penalty elsewhere.
    fn menus(strategy: &str) -> Arc<MenuSet> {
        let hex = "0".repeat(32);
        let text = format!(
            "{MENUS}\n[queues.\"test.orders\"]\nstrategy = \"{strategy}\"\n\
             \n[agents.bob]\nname = \"Bob\"\nha1 = \"{hex}\"\nqueues = [\"test.orders\", \"test.refunds\"]\n\
             \n[agents.bob.penalty]\n\"test.refunds\" = 3\n\
             \n[agents.ana]\nname = \"Ana\"\nha1 = \"{hex}\"\nqueues = [\"test.orders\"]\n"
        );
        let files = vec![(PathBuf::from("test.toml"), text)];
        compile(&files, &AllPrompts).expect("menus compile").0
    }

    /// A registry over `menus("longest-idle-agent")` with ana logged in at `t0` and bob 10 s later, so
    /// that ana has been idle longest.
    fn calls(t0: Instant) -> Calls {
        let wall = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let cfg = CallsConfig::new(
            "127.0.0.1:5060".parse().expect("addr"),
            WallClock { instant: t0, wall },
        );
        let mut calls = Calls::new(cfg, menus("longest-idle-agent"), PromptStore::default(), 1);
        let presence = &mut calls.agents.presence;
        presence
            .handle(t0, AgentInput::LoggedIn("ana".into()))
            .expect("ana declared");
        presence
            .handle(
                t0 + Duration::from_secs(10),
                AgentInput::LoggedIn("bob".into()),
            )
            .expect("bob declared");
        calls
    }

    /// Whom the queue offers a new caller of `test.orders` to at `now`.
    fn first_offer(calls: &mut Calls, now: Instant) -> AgentId {
        let AgentSide {
            presence, queues, ..
        } = &mut calls.agents;
        let queue = QueueName::from("test.orders");
        queues
            .enqueue_with(now, presence, CallKey(99), queue, Join::default())
            .expect("not queued yet");
        queues
            .poll_offer(now, presence)
            .expect("an agent is free")
            .agent
    }

    #[test]
    fn profiles_keep_file_order_and_penalties() {
        let p = profiles(&menus("round-robin"));
        let ids: Vec<&str> = p.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["bob", "ana"]);
        assert_eq!(
            p[0].penalties.get(&QueueName::from("test.refunds")),
            Some(&3)
        );
    }

    #[test]
    fn a_changed_strategy_applies_on_reload_and_agents_stay_logged_in() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(20);
        // Without a reload: longest idle, ana.
        let mut control = calls(t0);
        assert_eq!(first_offer(&mut control, now).as_str(), "ana");

        let mut c = calls(t0);
        c.set_menus(t0 + Duration::from_secs(15), menus("top-down"));
        let queue = QueueName::from("test.orders");
        assert_eq!(
            c.agents.queues.config_ref(&queue).strategy,
            Strategy::TopDown
        );
        for id in ["ana", "bob"] {
            let agent = c.agents.presence.get(&id.into()).expect("still declared");
            assert_eq!(agent.status(), AgentStatus::Available, "{id} logged in");
        }
        // Top-down: the first declared agent, bob, although ana has been idle longer.
        assert_eq!(first_offer(&mut c, now).as_str(), "bob");
    }
}
