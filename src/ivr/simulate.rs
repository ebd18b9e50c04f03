//! `helpline simulate`: walks the real engine on a simulated clock and returns a transcript.
//!
//! Keys are given as comma-separated groups (`"2,123456#"`): each group is typed at the next point
//! where the engine waits for input (after its prompts end), one key every 200 ms. Prompts last their
//! real duration when the caller of this function knows it, else one second. It does not print or
//! read files; the CLI formats the result (plain lines or `--json`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::compile::MenuSet;
use super::engine::{CallSummary, IvrAction, IvrInput, IvrSession};

/// Gap between simulated key presses.
const KEY_GAP: Duration = Duration::from_millis(200);
/// Duration of a prompt whose length is unknown.
const DEFAULT_PROMPT: Duration = Duration::from_secs(1);
/// Stop a runaway simulation (e.g. a menu that loops forever) after this much simulated time.
const MAX_SIMULATED: Duration = Duration::from_secs(3600);

/// One transcript line: seconds since answer and what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimEvent {
    /// Seconds since the call was answered.
    pub t: f64,
    /// `play en/welcome`, `key 2`, `timer first-key fired`, `stop playback`, `route europe.refunds`, …
    pub event: String,
}

impl fmt::Display for SimEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:.3} {}", self.t, self.event)
    }
}

/// The outcome of a simulated call.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationResult {
    /// Everything that happened, in order.
    pub transcript: Vec<SimEvent>,
    /// Queue or transfer URI the call ended at.
    pub route: Option<String>,
    /// True when the call was refused, hung up in the IVR, or never finished.
    pub ended_nowhere: bool,
    /// The call record data, when the number was routed.
    pub summary: Option<CallSummary>,
}

/// Simulates a call to `dialed` placed at `at`, typing `keys`. `start` is any instant (the simulated
/// clock's origin: the engine is sans-IO and never reads the clock); `prompt_duration(lang, name)`
/// gives real prompt lengths when known.
pub fn simulate(
    set: &Arc<MenuSet>,
    dialed: &str,
    at: DateTime<Utc>,
    keys: &str,
    start: Instant,
    prompt_duration: &dyn Fn(&str, &str) -> Option<Duration>,
) -> SimulationResult {
    let mut out = Vec::new();
    let log = |out: &mut Vec<SimEvent>, now: Instant, event: String| log(out, start, now, event);
    let mut session = match IvrSession::new(set.clone(), dialed, at, start) {
        Ok(s) => s,
        Err(e) => {
            log(&mut out, start, format!("refused 404: {e}"));
            return SimulationResult {
                transcript: out,
                route: None,
                ended_nowhere: true,
                summary: None,
            };
        }
    };
    log(
        &mut out,
        start,
        format!("answered region {}", session.summary().region),
    );
    let mut groups: VecDeque<&str> = keys.split(',').filter(|g| !g.trim().is_empty()).collect();
    let mut now = start;
    let mut playing: VecDeque<Duration> = VecDeque::new();
    let mut at_collect_point = false;
    session.handle(now, IvrInput::Answered);
    loop {
        drain(
            &mut session,
            &mut playing,
            &mut out,
            now,
            start,
            prompt_duration,
        );
        if session.is_ended() || now.duration_since(start) > MAX_SIMULATED {
            break;
        }
        if let Some(d) = playing.pop_front() {
            now += d;
            session.handle(now, IvrInput::PromptFinished);
            at_collect_point = !session.is_playing() && session.poll_timeout().is_some();
            continue;
        }
        if at_collect_point {
            if let Some(group) = groups.pop_front() {
                at_collect_point = false;
                for key in group.trim().chars() {
                    now += KEY_GAP;
                    log(&mut out, now, format!("key {key}"));
                    session.handle(now, IvrInput::Digit(key));
                    drain(
                        &mut session,
                        &mut playing,
                        &mut out,
                        now,
                        start,
                        prompt_duration,
                    );
                    if session.is_ended() {
                        break;
                    }
                }
                continue;
            }
        }
        match session.pending_timer() {
            Some((t, kind)) => {
                now = now.max(t);
                log(&mut out, now, format!("timer {} fired", kind.name()));
                session.handle(now, IvrInput::Timeout);
            }
            None => break,
        }
    }
    if !session.is_ended() {
        log(&mut out, now, "simulation stopped: call never ended".into());
    }
    let summary = session.summary();
    SimulationResult {
        transcript: out,
        route: summary.route.clone(),
        ended_nowhere: summary.route.is_none(),
        summary: Some(summary),
    }
}

fn log(out: &mut Vec<SimEvent>, start: Instant, now: Instant, event: String) {
    out.push(SimEvent {
        t: now.duration_since(start).as_secs_f64(),
        event,
    });
}

/// Takes every pending action: prompts join the playout queue, the rest go to the transcript.
fn drain(
    session: &mut IvrSession,
    playing: &mut VecDeque<Duration>,
    out: &mut Vec<SimEvent>,
    now: Instant,
    start: Instant,
    prompt_duration: &dyn Fn(&str, &str) -> Option<Duration>,
) {
    while let Some(a) = session.poll_action() {
        let event = match a {
            IvrAction::Play { lang, prompt, .. } => {
                playing.push_back(prompt_duration(&lang, &prompt).unwrap_or(DEFAULT_PROMPT));
                format!("play {lang}/{prompt}")
            }
            IvrAction::StopPlayback => {
                playing.clear();
                "stop playback".to_owned()
            }
            IvrAction::Route { queue, .. } => format!("route {queue}"),
            IvrAction::Transfer { uri } => format!("transfer {uri}"),
            IvrAction::Hangup { reason } => format!("hangup {reason}"),
        };
        log(out, start, now, event);
    }
}
