//! Agents (sans-IO): who they are (declared in `ivr-menus/` as `[agents.ID]`, compiled into the
//! `MenuSet` and read through [`AgentDirectory`]), how their phones authenticate (digest, in
//! [`digest`]) and register ([`Registrar`]), and where bindings and nonce use are kept
//! ([`AgentStore`]).
//!
//! Nothing here touches sockets, files or the clock: time is an argument, randomness comes from a
//! seeded RNG handed in. Agent presence (status × state, break/back, wrap-up) is [`presence`]. The call layer
//! (`call::Calls`) owns one registrar and one presence machine and hands them every REGISTER.
//!
//! # The store interface
//!
//! Everything the registrar must remember between requests goes through [`AgentStore`]: the bindings
//! of each agent (get/put a whole list, plus an expiry index: `agents_due`, `next_expiry`) and nonce
//! use (`issue_nonce`, `nonce_state`, and `advance_nonce`, the one operation that must be atomic). One
//! node uses [`MemoryStore`]. Several helpline nodes behind Kamailio would share a Redis store
//! instead, mapped like this: an agent's bindings are one hash `helpline:bindings:{ID}` (field = contact
//! URI, value = the serialized binding with its wall-clock expiry) and the expiry index is one sorted
//! set `helpline:binding-expiry` (member = ID, score = earliest expiry), so `agents_due` is a
//! `ZRANGEBYSCORE -inf now`; a nonce is a key `helpline:nonce:{N}` holding the last nonce count, set
//! with `SET … PX lifetime` (Redis expiry does the forgetting and the bound becomes a memory policy),
//! and `advance_nonce` is a short Lua script that raises the count only if the new one is higher, so two
//! nodes cannot both accept the same count. Logins and logouts seen by one node reach the others by
//! pub/sub. Because the cores are synchronous, a Redis store would sit in the shell as a write-through
//! cache that the shell fills before each `handle_*`; the trait keeps that decision out of the registrar.

pub mod digest;
pub mod directory;
mod ids;
pub mod presence;
pub mod registrar;
pub mod store;

pub use digest::{Algorithm, Ha1};
pub use directory::{AgentConfig, AgentDirectory, StaticDirectory};
pub use ids::{is_valid_agent_id, AgentId, QueueName};
pub use registrar::{AgentEvent, RegisterOutcome, Registrar, RegistrarConfig};
pub use store::{AgentStore, Binding, MemoryStore, NonceState};
