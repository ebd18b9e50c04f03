//! The agents' registrar (RFC 3261 §10.3) with digest authentication (§22, RFC 7616/8760, `qop=auth`),
//! sans-IO: [`Registrar::handle_register`] turns one REGISTER into one response, bindings lapse on the
//! caller's clock through [`Registrar::handle_timeout`], and [`Registrar::poll_event`] reports agents
//! logging in and out.
//!
//! It does not send anything, own transactions (the server non-INVITE transaction above it absorbs
//! retransmissions, so a retransmitted REGISTER never reaches it) or decide what an agent does once
//! logged in.
//!
//! Nonces are random (from the seeded RNG handed in), live `nonce_lifetime`, and carry a nonce count
//! that must rise with every use; the store forgets the oldest when more than `max_nonces` are out.
//! A response to a nonce that is unknown (expired, forgotten, never issued) or already used with that
//! count is challenged again, with `stale=true` when its digest was right; a wrong digest to a live
//! nonce gets `403`. Unknown usernames are checked against a dummy HA1, so they get exactly the answers
//! (and cost) of a known agent with a wrong password.
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::sip::endpoint::Peer;
use crate::sip::message::{Method, NameAddr, Request, Response};
use crate::sip::{CallId, Reply};

use super::digest::{hex, Algorithm, Challenge, Credentials, Ha1};
use super::directory::AgentDirectory;
use super::store::{AgentStore, Binding, MemoryStore, NonceState};
use super::AgentId;
use crate::guard::{AuthConfig, AuthThrottle};

/// Registrar settings.
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Challenges offered, in this order (default MD5 then SHA-256: clients take the first they speak,
    /// and SIPp 3.6 and baresip 1.0 speak only MD5). Empty means MD5 only.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce may be answered (default 30 s).
    pub nonce_lifetime: Duration,
    /// Most nonces remembered at once (default 4096); beyond it the oldest is forgotten.
    pub max_nonces: usize,
    /// Shortest registration accepted, seconds; shorter ones get `423` (default 60).
    pub min_expires: u32,
    /// Longest registration granted, seconds; longer ones are shortened (default 3600).
    pub max_expires: u32,
    /// Registration time when the REGISTER names none (default 3600, RFC 3261 §10.2.1.1).
    pub default_expires: u32,
    /// Most contacts per agent (default 8); a new one beyond it replaces the binding that expires
    /// first, so a phone that re-registers from a new port after each restart is never locked out.
    pub max_contacts: usize,
    /// Brute-force throttling: failures per source and per (source, user) before that source is
    /// refused (`403`, as for a wrong password) for a growing time.
    pub auth: AuthConfig,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            nonce_lifetime: Duration::from_secs(30),
            max_nonces: 4096,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 8,
            auth: AuthConfig::default(),
        }
    }
}

/// What the registrar reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent's first binding appeared: it is logged in.
    LoggedIn(AgentId),
    /// The agent's last binding was removed or expired: it is logged out.
    LoggedOut(AgentId),
}

/// The answer to one REGISTER.
#[derive(Clone, Debug)]
pub struct RegisterOutcome {
    /// What was decided (for logs and metrics).
    pub reply: Reply,
    /// The response to send through the REGISTER's server transaction.
    pub response: Response,
    /// The agent, when the request authenticated.
    pub agent: Option<AgentId>,
}

/// Result of checking a request's credentials.
enum Auth {
    /// Send a fresh challenge.
    Challenge { stale: bool },
    /// Refuse with this reply.
    Refuse(Reply),
    /// Authenticated as this agent.
    Agent(AgentId),
}

/// The sans-IO registrar. Call [`Registrar::handle_register`] for each REGISTER,
/// [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`] is due (a spurious call is harmless),
/// then drain [`Registrar::poll_event`].
pub struct Registrar<S: AgentStore = MemoryStore> {
    config: RegistrarConfig,
    directory: Arc<dyn AgentDirectory + Send + Sync>,
    store: S,
    rng: StdRng,
    /// Key of the dummy HA1 that unknown usernames are checked against.
    dummy_secret: String,
    events: VecDeque<AgentEvent>,
    /// Failed digests per source and (source, user); see `crate::guard::auth`.
    throttle: AuthThrottle,
    /// Wrong digests and throttled attempts so far (for the metrics).
    auth_failures: u64,
}

impl Registrar<MemoryStore> {
    /// A registrar over `directory` with an in-memory store. `seed` seeds the nonce and tag RNG: the
    /// shell passes 32 bytes of OS randomness, tests a constant.
    pub fn new(
        config: RegistrarConfig,
        directory: Arc<dyn AgentDirectory + Send + Sync>,
        seed: [u8; 32],
    ) -> Self {
        let store = MemoryStore::new(config.max_nonces);
        Registrar::with_store(config, directory, seed, store)
    }
}

impl<S: AgentStore> Registrar<S> {
    /// A registrar keeping its state in `store`.
    pub fn with_store(
        mut config: RegistrarConfig,
        directory: Arc<dyn AgentDirectory + Send + Sync>,
        seed: [u8; 32],
        store: S,
    ) -> Self {
        if config.algorithms.is_empty() {
            config.algorithms.push(Algorithm::Md5);
        }
        let mut rng = StdRng::from_seed(seed);
        let dummy_secret = hex(&rng.gen::<[u8; 16]>());
        let throttle = AuthThrottle::new(config.auth.clone());
        Registrar {
            throttle,
            auth_failures: 0,
            config,
            directory,
            store,
            rng,
            dummy_secret,
            events: VecDeque::new(),
        }
    }

    /// Replaces the settings after a reload: new challenges use the new algorithms and bounds;
    /// bindings and nonces already out are kept (an empty algorithm list means MD5, as at creation).
    pub fn set_config(&mut self, mut config: RegistrarConfig) {
        if config.algorithms.is_empty() {
            config.algorithms.push(Algorithm::Md5);
        }
        self.config = config;
    }

    /// The settings in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Replaces the agent directory after a reload. Bindings of agents still declared are kept (a
    /// reload logs nobody out); agents no longer declared are logged out.
    pub fn set_directory(&mut self, directory: Arc<dyn AgentDirectory + Send + Sync>) {
        self.directory = directory;
        for id in self.store.agents() {
            if self.directory.agent(id.as_str()).is_none() {
                self.store.put_bindings(&id, Vec::new());
                self.events.push_back(AgentEvent::LoggedOut(id));
            }
        }
    }

    /// Answers one REGISTER that arrived from `source`.
    pub fn handle_register(
        &mut self,
        now: Instant,
        request: &Request,
        source: &Peer,
    ) -> RegisterOutcome {
        self.store.forget_expired_nonces(now);
        let auth = if request.method == Method::Register {
            self.authenticate(now, request, Some(source.addr.ip()))
        } else {
            Auth::Refuse(Reply::ServerInternalError {
                why: format!("registrar handed a {}", request.method),
            })
        };
        // §10.3 step 5: an agent registers only its own address of record.
        let auth = match auth {
            Auth::Agent(id) if request.to().uri.user.as_deref() != Some(id.as_str()) => {
                Auth::Refuse(Reply::Forbidden)
            }
            other => other,
        };
        let (reply, agent, bindings) = match auth {
            Auth::Challenge { stale } => (self.challenge(now, stale), None, Vec::new()),
            Auth::Refuse(reply) => (reply, None, Vec::new()),
            Auth::Agent(id) => match self.update_bindings(now, &id, request, source) {
                Ok(bindings) => (Reply::Ok, Some(id), bindings),
                Err(reply) => (reply, Some(id), Vec::new()),
            },
        };
        if reply.code() >= 300 {
            tracing::debug!(code = reply.code(), why = ?reply.why(), "register refused");
        }
        let tag = hex(&self.rng.gen::<[u8; 8]>());
        let mut response = reply.to_response(request, Some(&tag));
        for b in bindings {
            let mut contact = NameAddr::new(b.contact);
            contact.set_param("expires", Some(&remaining_secs(now, b.expires).to_string()));
            response.push_contact(contact);
        }
        RegisterOutcome {
            reply,
            response,
            agent,
        }
    }

    /// Authenticates a request other than REGISTER (an agent's INVITE to a feature code) with the same
    /// realm, challenges and nonces: `Ok` is the agent named by the credentials' username (the only
    /// identity trusted; From says nothing), `Err` the reply to send — a fresh `401` challenge, `403`
    /// for a wrong digest, `400` for unusable credentials — exactly as a REGISTER would get, so it
    /// tells unknown users from known ones no better.
    ///
    /// Failures count against `source` in the same throttle as REGISTER's: a source guessing through
    /// `*50` is locked out of REGISTER too, and the other way round.
    pub fn authorize(
        &mut self,
        now: Instant,
        request: &Request,
        source: IpAddr,
    ) -> Result<AgentId, Reply> {
        self.store.forget_expired_nonces(now);
        match self.authenticate(now, request, Some(source)) {
            Auth::Challenge { stale } => Err(self.challenge(now, stale)),
            Auth::Refuse(reply) => Err(reply),
            Auth::Agent(id) => Ok(id),
        }
    }

    /// Wrong digests and throttled attempts so far.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures
    }

    /// Expires bindings and nonces due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.store.forget_expired_nonces(now);
        self.throttle.handle_timeout(now);
        for id in self.store.agents_due(now) {
            self.drop_expired(now, &id);
        }
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.store.next_expiry()
    }

    /// The next login or logout, in the order they happened.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// The agent's bindings that are live at `now`, in registration order.
    pub fn bindings(&self, now: Instant, agent: &AgentId) -> Vec<Binding> {
        let mut v = self.store.bindings(agent);
        v.retain(|b| b.expires > now);
        v
    }

    /// The store (for inspection).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Removes the agent's expired bindings; reports a logout when none are left.
    fn drop_expired(&mut self, now: Instant, id: &AgentId) {
        let stored = self.store.bindings(id);
        if stored.iter().all(|b| b.expires > now) {
            return;
        }
        let live: Vec<Binding> = stored.into_iter().filter(|b| b.expires > now).collect();
        let out = live.is_empty();
        self.store.put_bindings(id, live);
        if out {
            self.events.push_back(AgentEvent::LoggedOut(id.clone()));
        }
    }

    fn challenge(&mut self, now: Instant, stale: bool) -> Reply {
        let nonce = hex(&self.rng.gen::<[u8; 16]>());
        self.store
            .issue_nonce(&nonce, now + self.config.nonce_lifetime);
        let realm = self.directory.realm().to_owned();
        let challenges = self
            .config
            .algorithms
            .iter()
            .map(|&algorithm| {
                Challenge {
                    realm: realm.clone(),
                    nonce: nonce.clone(),
                    algorithm,
                    stale,
                }
                .to_header_value()
            })
            .collect();
        Reply::Unauthorized { challenges }
    }

    /// RFC 3261 §10.3 steps 3–4 (§22 for any request): who sent this. An unknown user, or a known one
    /// with a wrong digest, never gets `Auth::Agent`.
    fn authenticate(&mut self, now: Instant, request: &Request, source: Option<IpAddr>) -> Auth {
        let realm = self.directory.realm().to_owned();
        let mut found = None;
        for value in request.headers.get_all("Authorization") {
            match Credentials::parse(value) {
                Ok(Some(c)) if c.realm == realm => {
                    found = Some(c);
                    break;
                }
                // Another scheme, or credentials for another realm: not ours to check.
                Ok(_) => {}
                Err(e) => {
                    return Auth::Refuse(Reply::BadRequest {
                        why: format!("Bad Authorization: {e}"),
                    })
                }
            }
        }
        let Some(c) = found else {
            return Auth::Challenge { stale: false };
        };
        // A source that failed too often is refused before any digest is checked, with the answer a
        // wrong password gets (so it cannot tell a lock-out from a miss, nor a user from another).
        if let Some(ip) = source.filter(|ip| self.throttle.locked(now, *ip, &c.username)) {
            self.auth_failures += 1;
            tracing::info!(source = %ip, user = %c.username, "auth refused: source throttled");
            return Auth::Refuse(Reply::Forbidden);
        }
        if !self.config.algorithms.contains(&c.algorithm) {
            return Auth::Refuse(Reply::BadRequest {
                why: format!("Bad Authorization: algorithm {} not offered", c.algorithm),
            });
        }
        // RFC 7616 §3.4.6: the digest-uri must name the request's target.
        if c.uri != request.uri.to_string() {
            return Auth::Refuse(Reply::BadRequest {
                why: "Bad Authorization: uri is not the Request-URI".into(),
            });
        }
        // The same work for every username: an unknown one (or an agent without an HA1 for this
        // algorithm) is checked against a dummy HA1 that no password produces.
        let dummy = Ha1::compute(c.algorithm, &c.username, &realm, &self.dummy_secret);
        let agent = self.directory.agent(&c.username);
        let stored = agent.and_then(|a| a.ha1_for(c.algorithm));
        let matches = c.verify(stored.unwrap_or(&dummy), request.method.as_str());
        let good = matches && stored.is_some();
        if agent.is_some() && stored.is_none() {
            tracing::warn!(
                agent = %c.username,
                algorithm = %c.algorithm,
                "agent answered a challenge it has no HA1 for; add ha1_sha256 (helpline passwd)"
            );
        }
        let id = agent.map(|a| a.id.clone());
        match self.store.nonce_state(now, &c.nonce) {
            NonceState::Unknown => Auth::Challenge { stale: good },
            NonceState::Live { .. } if !good => {
                self.auth_failures += 1;
                let lockout = source.and_then(|ip| self.throttle.failure(now, ip, &c.username));
                let src = source.map(|ip| ip.to_string()).unwrap_or_default();
                tracing::info!(source = %src, user = %c.username, "auth failure: wrong digest");
                if let Some(d) = lockout {
                    tracing::warn!(source = %src, user = %c.username, secs = d.as_secs(),
                        "auth throttled: too many failures from this source");
                }
                Auth::Refuse(Reply::Forbidden)
            }
            NonceState::Live { .. } => {
                if !self.store.advance_nonce(now, &c.nonce, c.nc_value()) {
                    // A replayed (or re-counted) response: right digest, spent nonce count.
                    return Auth::Challenge { stale: true };
                }
                match id {
                    Some(id) => {
                        if let Some(ip) = source {
                            self.throttle.success(ip, &c.username);
                        }
                        let src = source.map(|ip| ip.to_string()).unwrap_or_default();
                        tracing::info!(source = %src, user = %c.username, "auth success");
                        Auth::Agent(id)
                    }
                    // `good` needs a stored HA1, so an agent: unreachable, but refused all the same.
                    None => Auth::Refuse(Reply::Forbidden),
                }
            }
        }
    }

    /// RFC 3261 §10.3 steps 6–7: apply the Contacts; the bindings to list in the 200.
    fn update_bindings(
        &mut self,
        now: Instant,
        id: &AgentId,
        request: &Request,
        source: &Peer,
    ) -> Result<Vec<Binding>, Reply> {
        self.drop_expired(now, id);
        let before = self.store.bindings(id);
        let call_id = request.call_id();
        let cseq = request.cseq().seq;
        // §10.3 step 7: a binding refreshed in this Call-ID must be refreshed by a higher CSeq.
        let out_of_order = |b: &Binding| b.call_id == *call_id && cseq <= b.cseq;
        let header_expires = request.header("Expires").map(|v| self.parse_expires(v));
        let mut list = before.clone();
        if request.contact_is_star() {
            if header_expires != Some(0) || !request.contacts().is_empty() {
                return Err(Reply::BadRequest {
                    why: "Contact * needs Expires: 0 and no other Contact".into(),
                });
            }
            if list.iter().any(out_of_order) {
                return Err(cseq_error());
            }
            list.clear();
        } else {
            let mut requested = Vec::new();
            for c in request.contacts() {
                let e = match c.param("expires") {
                    Some(v) => self.parse_expires(v.unwrap_or("")),
                    None => header_expires.unwrap_or(self.config.default_expires),
                };
                if e > 0 && e < self.config.min_expires {
                    return Err(Reply::IntervalTooBrief {
                        min: self.config.min_expires,
                    });
                }
                requested.push((c.uri.clone(), e.min(self.config.max_expires)));
            }
            let mut touched = Vec::new();
            for (contact, e) in requested {
                let key = contact.to_string();
                let pos = list.iter().position(|b| b.key() == key);
                if pos.is_some_and(|p| out_of_order(&list[p])) {
                    return Err(cseq_error());
                }
                if e == 0 {
                    if let Some(p) = pos {
                        list.remove(p);
                    }
                    continue;
                }
                let binding = Binding {
                    contact,
                    source: *source,
                    expires: now + Duration::from_secs(u64::from(e)),
                    call_id: CallId::new(call_id),
                    cseq,
                };
                match pos {
                    Some(p) => list[p] = binding,
                    None => list.push(binding),
                }
                touched.push(key);
            }
            self.enforce_max_contacts(&mut list, &touched);
        }
        self.store.put_bindings(id, list.clone());
        match (before.is_empty(), list.is_empty()) {
            (true, false) => self.events.push_back(AgentEvent::LoggedIn(id.clone())),
            (false, true) => self.events.push_back(AgentEvent::LoggedOut(id.clone())),
            _ => {}
        }
        Ok(list)
    }

    /// Drops the bindings that expire first, those this request did not name before those it did.
    fn enforce_max_contacts(&self, list: &mut Vec<Binding>, touched: &[String]) {
        let max = self.config.max_contacts.max(1);
        while list.len() > max {
            let victim = list
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| (touched.contains(&b.key()), b.expires))
                .map(|(i, _)| i);
            match victim {
                Some(i) => {
                    list.remove(i);
                }
                None => break,
            }
        }
    }

    /// An `Expires` value in seconds; RFC 3261 §20.19 and §10.2.1.1: a malformed one counts as the
    /// default, and one beyond 2³²−1 saturates (then gets shortened to `max_expires`).
    fn parse_expires(&self, text: &str) -> u32 {
        let t = text.trim();
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return self.config.default_expires;
        }
        t.parse::<u32>().unwrap_or(u32::MAX)
    }
}

fn cseq_error() -> Reply {
    Reply::ServerInternalError {
        why: "CSeq not above the binding's".into(),
    }
}

/// Whole seconds left until `expires`, rounded up (what the 200's `expires=` says).
fn remaining_secs(now: Instant, expires: Instant) -> u64 {
    let left = expires.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
