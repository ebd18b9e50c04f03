//! Testers' replay: read a SIP trace (pcap, pcapng, SIPp message log), replay each call's caller side
//! against a live server or in-process on a simulated clock, and report where each call ended.
//!
//! - [`trace`] reads trace bytes into calls (no sockets, no files: the CLI reads the file).
//! - The replaying caller, its live and offline drivers and the report come after it in the call's path:
//!   trace → script (what the caller did, when) → replaying caller → server → CDR → report.
pub mod trace;
