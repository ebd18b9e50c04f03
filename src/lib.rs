//! helpline — a SIP/RTP IVR call router for a multi-region order and refund helpline.
//!
//! # Data flow
//!
//! ```text
//! caller UA ── SIP over UDP/TCP ──▶ transport          I/O edge: sockets → datagrams / framed stream messages
//!                                      │
//!                                      ▼
//!                                sip::Endpoint         parse, demux, transactions, stateless 400s
//!                                      │ SipEvent      (the endpoint is owned by call::Calls)
//!                                      ▼
//!                                call::Calls           registry of every call: legs, RTP ports, drain, CDRs
//!                                      │ one call
//!                                      ▼
//!                                call::leg             the caller's leg (dialog::uas IncomingCall: ring /
//!                                      │               answer / reject; SDP via sdp::negotiate); agents'
//!                                      │               UAC legs join here
//!                                      ▼
//!                                call::IvrCall ◀─────▶ media engine     MediaCommand out, MediaEvent in; the
//!                                      │ IvrInput   ▲ IvrAction         engine (server) binds and paces,
//!                                      ▼            │                   media::MediaSession per call
//!                                ivr::IvrSession       menus compiled once from ivr-menus/
//!                                      │ route to a regional queue (queue / agent: later stages)
//!                                      ▼
//! shell (tokio): server::core — wait for one of (packet | timer | media event | signal | reload)
//!                → exactly one Calls::handle_* → drain poll_transmit / poll_media / poll_cdr
//!                → sleep until Calls::poll_timeout
//! ```
//!
//! # Run-loop contract
//!
//! Every protocol core (`sip`, `dialog`, `sdp`, `media`, `call`, `ivr`, `agent`) is sans-IO: time comes in as a
//! `now: Instant` argument, inputs arrive through `handle_*`, outputs leave through `poll_*`, and the
//! earliest instant at which the core wants to be woken is `poll_timeout()`. Only `transport`, `server`,
//! `cli`, `config`, `config_file`, `prompts` and `clock` touch sockets, files or the clock.
//!
//! # Panic policy
//!
//! Nothing that arrives from the network or from a file may panic: malformed input becomes an error value
//! that maps to a SIP response or a config report. An `expect` states the invariant that makes it safe.

#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod prompts;
pub mod strict_toml;

// ── stage 1 · caller's packets (I/O edge) ──
pub mod transport;

// ── stage 2 · SIP (sans-IO) ──
pub mod sip;

// ── stage 3 · dialog, session description and media (sans-IO) ──
pub mod dialog;
pub mod media;
pub mod sdp;

// ── stage 4 · per-call orchestration and the IVR engine (sans-IO) ──
pub mod call;
pub mod ivr;

// ── stage 5 · queue (sans-IO) ──
pub mod queue;

// ── per-source defences: rate limits, bans, auth throttling (sans-IO) ──
pub mod guard;

// ── stage 6 · agents: declarations, digest authentication, registrar, presence (sans-IO) ──
pub mod agent;

// ── testers' tools: trace reading and replay ──
pub mod replay;

// ── the shell that drives every stage (tokio) ──
pub mod server;
pub mod telemetry;
