//! Testers' replay: read a SIP trace (pcap, pcapng, SIPp message log), replay each call's caller side
//! against a live server or in-process on a simulated clock, and report where each call ended.
//!
//! The path of a call: [`trace`] (bytes → calls) → [`script`] (what the caller did, when) →
//! [`caller`] (the sans-IO replaying caller) → [`live`] (sockets, real time) or [`offline`] (the real
//! call layer on a simulated clock) → the server's record → [`report`]. This module only strings them
//! together; it reads no file (the CLI does).
pub mod caller;
pub mod live;
pub mod offline;
pub mod report;
pub mod script;
pub mod synth;
pub mod trace;

use report::CallReport;
use trace::TraceCall;

/// How the calls of a trace are replayed.
pub enum Mode<'a> {
    /// In-process (the setup's `wall` is used unless the call's own start applies, see [`run`]).
    Offline {
        /// Menus, prompts, seed and the `--at` wall time.
        setup: &'a offline::OfflineSetup,
        /// Whether `--at` was given (else each call runs at its own captured start, when known).
        at_given: bool,
    },
    /// Against a running server.
    Live(&'a live::LiveSetup),
}

/// Replays `calls` (numbered from 1 in trace order; `only` picks one number) one after another and
/// judges each against `expect`.
pub async fn run(
    calls: &[TraceCall],
    only: Option<usize>,
    mode: Mode<'_>,
    expect: Option<&str>,
) -> Vec<CallReport> {
    let mut reports = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let n = i + 1;
        if only.is_some_and(|o| o != n) {
            continue;
        }
        let script = match script::script(call) {
            Ok(s) => s,
            Err(err @ script::ScriptError::Leg { .. }) => {
                reports.push(report::skipped(n, &call.call_id, &err.to_string(), false));
                continue;
            }
            Err(err) => {
                reports.push(report::skipped(n, &call.call_id, &err.to_string(), true));
                continue;
            }
        };
        let outcome = match &mode {
            Mode::Offline { setup, at_given } => {
                let mut setup = (*setup).clone();
                if !at_given {
                    if let Some(start) = call.start {
                        setup.wall = start;
                    }
                }
                setup.seed = setup.seed.wrapping_add(n as u64);
                offline::replay(&script, &setup, crate::clock::now())
            }
            Mode::Live(setup) => {
                let mut setup = (*setup).clone();
                setup.seed = setup.seed.wrapping_add(n as u64);
                match live::replay(&script, &setup).await {
                    Ok(o) => o,
                    Err(err) => {
                        let mut why = err.to_string();
                        if let Some(s) = std::error::Error::source(&err) {
                            why.push_str(&format!(": {s}"));
                        }
                        reports.push(report::skipped(n, &call.call_id, &why, true));
                        continue;
                    }
                }
            }
        };
        reports.push(report::judge(
            n,
            &call.call_id,
            &outcome.caller,
            outcome.record.as_ref(),
            expect,
        ));
    }
    reports
}
