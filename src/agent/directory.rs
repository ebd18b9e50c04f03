//! The declared agents as the registrar and the call layer read them: [`AgentConfig`] (one
//! `[agents.ID]` table, compiled) and [`AgentDirectory`], implemented by the compiled `MenuSet` (so
//! agents hot-reload with the menus) and by [`StaticDirectory`] for tests and tools. It holds
//! configuration only; who is registered lives in the registrar's store.
use std::collections::BTreeMap;

use super::digest::{Algorithm, Ha1};
use super::{AgentId, QueueName};

/// One declared agent (`[agents.ID]` in `ivr-menus/`), checked by `helpline check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The ID: SIP user part and digest username.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// `ha1`: MD5 of `ID:REALM:password`.
    pub ha1: Ha1,
    /// `ha1_sha256`: SHA-256 of the same; without it the agent must answer the MD5 challenge.
    pub ha1_sha256: Option<Ha1>,
    /// The queues the agent serves, in the order declared.
    pub queues: Vec<QueueName>,
    /// Languages the agent speaks (empty: not declared).
    pub languages: Vec<String>,
    /// `[agents.ID.penalty]`: per served queue, the agent's penalty there (absent: 0).
    pub penalties: BTreeMap<QueueName, u32>,
}

impl AgentConfig {
    /// The stored HA1 for `algorithm`, if the agent has one.
    pub fn ha1_for(&self, algorithm: Algorithm) -> Option<&Ha1> {
        match algorithm {
            Algorithm::Md5 => Some(&self.ha1),
            Algorithm::Sha256 => self.ha1_sha256.as_ref(),
        }
    }
}

/// Read access to the declared agents and the realm their HA1s were computed for.
pub trait AgentDirectory {
    /// The digest realm (`[routing] realm`, default `helpline`).
    fn realm(&self) -> &str;
    /// The agent declared with this ID.
    fn agent(&self, id: &str) -> Option<&AgentConfig>;
}

/// A fixed directory (tests, tools).
#[derive(Clone, Debug, Default)]
pub struct StaticDirectory {
    realm: String,
    agents: BTreeMap<AgentId, AgentConfig>,
}

impl StaticDirectory {
    /// A directory for `realm` holding `agents`.
    pub fn new(realm: &str, agents: impl IntoIterator<Item = AgentConfig>) -> Self {
        StaticDirectory {
            realm: realm.to_owned(),
            agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
        }
    }
}

impl AgentDirectory for StaticDirectory {
    fn realm(&self) -> &str {
        &self.realm
    }

    fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.get(id)
    }
}

impl AgentDirectory for crate::ivr::MenuSet {
    fn realm(&self) -> &str {
        crate::ivr::MenuSet::realm(self)
    }

    fn agent(&self, id: &str) -> Option<&AgentConfig> {
        crate::ivr::MenuSet::agent(self, id)
    }
}
