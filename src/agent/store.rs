//! Where the registrar keeps agent bindings and nonce use: the [`AgentStore`] trait and the bounded
//! in-memory [`MemoryStore`] one helpline node uses. It stores and indexes; it does not authenticate,
//! decide expiry rules or emit events (the registrar does). See the `agent` module docs for how a
//! shared store maps onto this trait.
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use crate::sip::endpoint::Peer;
use crate::sip::message::Uri;
use crate::sip::CallId;

use super::AgentId;

/// One registered contact of an agent (RFC 3261 §10.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI the phone registered: where an offer to the agent goes.
    pub contact: Uri,
    /// Where the REGISTER came from (transport, address, our local address): behind NAT, requests to
    /// the phone must go here rather than to the Contact's host.
    pub source: Peer,
    /// When the binding lapses unless refreshed.
    pub expires: Instant,
    /// Call-ID of the REGISTER that made or last refreshed it (§10.3 step 7).
    pub call_id: CallId,
    /// CSeq of that REGISTER.
    pub cseq: u32,
}

impl Binding {
    /// The key bindings are matched on: the Contact URI as printed. RFC 3261 §19.1.4 comparison is
    /// looser, but phones repeat their Contact byte for byte, and a near-duplicate only costs one
    /// extra binding until it expires.
    pub fn key(&self) -> String {
        self.contact.to_string()
    }
}

/// What the store knows of a nonce when a response arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceState {
    /// Issued, not expired; the highest nonce count accepted with it so far (0: none yet).
    Live {
        /// Highest `nc` accepted.
        last_nc: u32,
    },
    /// Never issued, expired, or forgotten to stay within bounds.
    Unknown,
}

/// Agent bindings and nonce use, behind one interface so a store shared by several helpline nodes can
/// replace the in-memory one without touching the registrar.
///
/// Instants are this process's clock; a shared implementation converts them to wall-clock times at its
/// edge.
pub trait AgentStore {
    /// The bindings of `agent`, in the order they were first made (expired ones included until removed).
    fn bindings(&self, agent: &AgentId) -> Vec<Binding>;
    /// Replaces the bindings of `agent`; an empty list removes the agent.
    fn put_bindings(&mut self, agent: &AgentId, bindings: Vec<Binding>);
    /// Agents with at least one binding.
    fn agents(&self) -> Vec<AgentId>;
    /// Agents with a binding that expires at or before `now`.
    fn agents_due(&self, now: Instant) -> Vec<AgentId>;
    /// The earliest binding expiry.
    fn next_expiry(&self) -> Option<Instant>;
    /// Records a nonce handed out in a challenge, usable until `expires`. May forget the oldest nonces
    /// to stay within its bound.
    fn issue_nonce(&mut self, nonce: &str, expires: Instant);
    /// What is known of `nonce` at `now`.
    fn nonce_state(&self, now: Instant, nonce: &str) -> NonceState;
    /// Accepts nonce count `nc` for a live `nonce` only if it is higher than every count accepted
    /// before (atomically: check and set). Returns whether it did; false means a replay.
    fn advance_nonce(&mut self, now: Instant, nonce: &str, nc: u32) -> bool;
    /// Forgets nonces that expired at or before `now`.
    fn forget_expired_nonces(&mut self, now: Instant);
}

/// The in-memory store: bindings per agent with an expiry index, and at most `max_nonces` nonces
/// (oldest forgotten first, so a flood of unauthenticated REGISTERs costs bounded memory).
#[derive(Debug)]
pub struct MemoryStore {
    bindings: HashMap<AgentId, Vec<Binding>>,
    /// (earliest expiry, agent) for every agent with bindings.
    expiry: BTreeSet<(Instant, AgentId)>,
    nonces: HashMap<String, NonceEntry>,
    /// Nonces in issue order. Every nonce has the same lifetime, so this is also expiry order.
    nonce_order: VecDeque<(Instant, String)>,
    max_nonces: usize,
}

#[derive(Debug)]
struct NonceEntry {
    expires: Instant,
    last_nc: u32,
}

impl MemoryStore {
    /// An empty store holding at most `max_nonces` (at least 1) nonces.
    pub fn new(max_nonces: usize) -> Self {
        MemoryStore {
            bindings: HashMap::new(),
            expiry: BTreeSet::new(),
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            max_nonces: max_nonces.max(1),
        }
    }

    /// How many nonces are remembered (for tests of the bound).
    pub fn nonce_count(&self) -> usize {
        self.nonces.len()
    }

    fn earliest(bindings: &[Binding]) -> Option<Instant> {
        bindings.iter().map(|b| b.expires).min()
    }
}

impl AgentStore for MemoryStore {
    fn bindings(&self, agent: &AgentId) -> Vec<Binding> {
        self.bindings.get(agent).cloned().unwrap_or_default()
    }

    fn put_bindings(&mut self, agent: &AgentId, bindings: Vec<Binding>) {
        if let Some(old) = self.bindings.get(agent).and_then(|b| Self::earliest(b)) {
            self.expiry.remove(&(old, agent.clone()));
        }
        match Self::earliest(&bindings) {
            Some(new) => {
                self.expiry.insert((new, agent.clone()));
                self.bindings.insert(agent.clone(), bindings);
            }
            None => {
                self.bindings.remove(agent);
            }
        }
    }

    fn agents(&self) -> Vec<AgentId> {
        let mut v: Vec<AgentId> = self.bindings.keys().cloned().collect();
        v.sort();
        v
    }

    fn agents_due(&self, now: Instant) -> Vec<AgentId> {
        self.expiry
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, a)| a.clone())
            .collect()
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _)| *t)
    }

    fn issue_nonce(&mut self, nonce: &str, expires: Instant) {
        while self.nonces.len() >= self.max_nonces {
            let Some((_, old)) = self.nonce_order.pop_front() else {
                break;
            };
            self.nonces.remove(&old);
        }
        self.nonces.insert(
            nonce.to_owned(),
            NonceEntry {
                expires,
                last_nc: 0,
            },
        );
        self.nonce_order.push_back((expires, nonce.to_owned()));
    }

    fn nonce_state(&self, now: Instant, nonce: &str) -> NonceState {
        match self.nonces.get(nonce) {
            Some(e) if e.expires > now => NonceState::Live { last_nc: e.last_nc },
            _ => NonceState::Unknown,
        }
    }

    fn advance_nonce(&mut self, now: Instant, nonce: &str, nc: u32) -> bool {
        match self.nonces.get_mut(nonce) {
            Some(e) if e.expires > now && nc > e.last_nc => {
                e.last_nc = nc;
                true
            }
            _ => false,
        }
    }

    fn forget_expired_nonces(&mut self, now: Instant) {
        while let Some((t, _)) = self.nonce_order.front() {
            if *t > now {
                break;
            }
            if let Some((_, n)) = self.nonce_order.pop_front() {
                self.nonces.remove(&n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nonces_are_bounded_oldest_first_and_counts_only_rise() {
        let t0 = Instant::now();
        let mut s = MemoryStore::new(3);
        for i in 0..5 {
            s.issue_nonce(&format!("n{i}"), t0 + Duration::from_secs(30));
        }
        assert_eq!(s.nonce_count(), 3);
        assert_eq!(s.nonce_state(t0, "n1"), NonceState::Unknown);
        assert_eq!(s.nonce_state(t0, "n4"), NonceState::Live { last_nc: 0 });
        assert!(s.advance_nonce(t0, "n4", 1));
        assert!(!s.advance_nonce(t0, "n4", 1));
        assert!(s.advance_nonce(t0, "n4", 5));
        assert!(!s.advance_nonce(t0, "n4", 3));
        assert_eq!(s.nonce_state(t0, "n4"), NonceState::Live { last_nc: 5 });
        let later = t0 + Duration::from_secs(30);
        assert_eq!(s.nonce_state(later, "n4"), NonceState::Unknown);
        assert!(!s.advance_nonce(later, "n4", 6));
        s.forget_expired_nonces(later);
        assert_eq!(s.nonce_count(), 0);
    }
}
