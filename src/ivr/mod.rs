//! IVR: the menu language of `ivr-menus/`, its compiler and `check` diagnostics, and the sans-IO engine.
//! The `[agents.ID]` tables are compiled here too (in `agents`), so agents reload with the menus; their
//! types live in `crate::agent`.
//!
//! `config::load_menus` reads every `*.toml` in a directory (sorted) and hands the texts to `compile`, which
//! returns an immutable [`MenuSet`] or every diagnostic at once. [`IvrSession`] walks one caller through
//! a `MenuSet`; [`simulate`] drives it on a simulated clock for `helpline simulate` and tests. Nothing
//! here knows about SIP or RTP, and nothing here touches files or the clock.

mod agents;
pub mod compile;
pub mod diag;
pub mod engine;
pub mod hours;
pub mod menu;
pub mod number;
pub mod queues;
pub mod settings;
pub mod simulate;
pub mod supervisors;
pub mod transfer;

/// The prompt a routed caller hears as they are put in the queue ("Please hold while we connect you to
/// an agent."), in the caller's language; `check` wants it wherever a `route` can play.
pub const CONNECTING_PROMPT: &str = "connecting";

pub use compile::{compile, MenuSet, PromptCheck, RegionId, Unrouted, DEFAULT_REALM};
pub use diag::{Diagnostic, Severity};
pub use engine::{
    CallSummary, IvrAction, IvrInput, IvrSession, MenuEvent, MenuEventKind, TimerKind,
};
pub use settings::AgentSettings;
pub use simulate::{simulate, SimEvent, SimulationResult};
