//! The IVR side of one call: wires the media session's events (keys, prompt ends, silence) into the IVR
//! engine and the engine's actions back out as prompt commands and hang-ups, and keeps the call detail
//! record. Keys that arrive before the menu runs are kept and delivered once it starts. Once the caller is
//! routed it sequences what they hear while they wait: the `connecting` prompt, then the queue's hold
//! music looped, position and wait announcements over it (never while an agent's phone rings), ringback
//! while one rings, until the bridge; or, leaving the line without an agent, the overflow's prompts
//! and the hang-up. It does not speak SIP (the call registry does) nor touch RTP
//! (the media engine does).
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::cdr::{Cdr, CdrDigit, EndReason, WallClock};
use crate::ivr::transfer::TRANSFER_FAILED_PROMPT;
use crate::ivr::{IvrAction, IvrInput, IvrSession, MenuEvent};
use crate::media::dtmf::DigitMerger;
use crate::media::session::{DetectedDigit, DigitMethod, MediaEvent};
use crate::prompts::{Prompt, PromptStore};

pub use crate::ivr::CONNECTING_PROMPT;
/// The ringback tone (in [`crate::prompts::TONES`]) a routed caller hears, looped, while an agent's
/// phone rings: their own leg is already answered, so the ringing can only be heard in band.
pub const RINGBACK_TONE: &str = "ringback";

/// The announcement's phrase before a caller's place in line ("You are number"); may be absent.
pub const QUEUE_POSITION_BEFORE: &str = "queue-position-before";
/// The phrase after the place ("in line."); may be absent.
pub const QUEUE_POSITION_AFTER: &str = "queue-position-after";
/// The phrase before the estimated wait in minutes ("Your estimated wait is about"); may be absent.
pub const QUEUE_WAIT_BEFORE: &str = "queue-wait-before";
/// The phrase after the minutes ("minutes."); may be absent.
pub const QUEUE_WAIT_MINUTES: &str = "queue-wait-minutes";
/// The whole sentence for a wait under a minute.
pub const QUEUE_WAIT_UNDER_MINUTE: &str = "queue-wait-under-minute";
/// Every prompt an announcement may use besides `digit-0` … `digit-9`.
pub const QUEUE_ANNOUNCE_PROMPTS: [&str; 5] = [
    QUEUE_POSITION_BEFORE,
    QUEUE_POSITION_AFTER,
    QUEUE_WAIT_BEFORE,
    QUEUE_WAIT_MINUTES,
    QUEUE_WAIT_UNDER_MINUTE,
];

/// What the IVR side of a call asks of the call layer.
#[derive(Clone, Debug)]
pub enum CallOutput {
    /// Play this prompt now on the call's media session (it replaces anything playing).
    Play(Arc<Prompt>),
    /// Stop the prompt being played (barge-in).
    Stop,
    /// End the call from our side (BYE).
    Hangup,
    /// The caller is routed to this queue (`REGION.DEPARTMENT`); the menus are done.
    Route {
        /// The queue.
        queue: String,
        /// The caller's priority there (the menu's `priority`, default 0; higher first).
        priority: i32,
    },
    /// The caller is to be transferred to this SIP URI (a menu `transfer`); the menus are done.
    Transfer {
        /// The URI, as the menu wrote it.
        uri: String,
    },
}

/// Inputs from the call registry.
#[derive(Clone, Debug)]
pub enum CallInput {
    /// Our 200 went out.
    Answered,
    /// The caller acknowledged our 2xx.
    Acked,
    /// An event from the call's media session.
    Media(MediaEvent),
    /// A key sent by SIP INFO.
    InfoDigit(char),
    /// Any request from the caller inside the dialog (proves the caller is alive).
    SipActivity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The INVITE is accepted, no 200 yet (ringing).
    Ringing,
    /// 200 sent, waiting for the ACK.
    AwaitingAck,
    /// Acknowledged: waiting for the caller's first RTP (or the delay) so the first words are heard.
    AwaitingMedia { deadline: Instant },
    /// The IVR is running.
    Running,
    /// Routed to a queue or transferred: prompts already asked for still play, then (queued only)
    /// `connecting`, then what a waiting caller hears (see `waiting_audio`); no IVR timer runs.
    Queued,
    /// Bridged to an agent: nothing of ours plays any more.
    Bridged,
    /// We asked for a hang-up; nothing more happens.
    Ending,
}

/// The call's timing settings (from the server configuration).
#[derive(Clone, Copy, Debug)]
pub struct CallTiming {
    /// How long to wait after the ACK for the caller's first RTP before the first prompt.
    pub first_prompt_delay: Duration,
    /// No RTP and no SIP from the caller for this long releases the call.
    pub rtp_timeout: Duration,
    /// The longest a caller may stay in the menus.
    pub max_ivr: Duration,
}

/// Keys kept while the menu is not running yet (typed ahead); more are recorded in the CDR only.
pub const MAX_TYPED_AHEAD: usize = 64;

/// One call's IVR side: IVR + digit de-duplication + prompt sequencing + CDR (sans-IO).
pub struct IvrCall {
    ivr: IvrSession,
    prompts: PromptStore,
    merger: DigitMerger,
    phase: Phase,
    /// The caller's RTP has arrived (it may come before the ACK).
    rtp_seen: bool,
    first_prompt_delay: Duration,
    rtp_timeout: Duration,
    /// A caller cannot stay in the menus longer than this (a menu set to `repeat` forever would
    /// otherwise hold the line and an RTP port indefinitely).
    max_ivr: Duration,
    ivr_deadline: Option<Instant>,
    last_sip_activity: Instant,
    /// Prompts the IVR asked for that wait for the one playing to finish.
    queued: VecDeque<Arc<Prompt>>,
    /// The prompt playing on the media engine now, if any.
    playing: Option<Arc<Prompt>>,
    /// Prompts asked for that do not exist (counted as finished at once); logged by the shell.
    missing_prompts: Vec<String>,
    outputs: VecDeque<CallOutput>,
    /// Keys pressed before the IVR ran, in order, for the first step that waits for keys.
    typed_ahead: VecDeque<char>,
    /// Queued, and an agent's phone is ringing with this caller (180/183 came): ringback plays.
    agent_ringing: bool,
    /// The queue's hold-music prompt, looped while the caller waits with nobody ringing.
    hold_music: Option<String>,
    /// The rest of a position/wait announcement, played over (instead of) the music.
    announcing: VecDeque<Arc<Prompt>>,
    /// What plays is waiting audio (music, an announcement, ringback), not a prompt asked for: it
    /// gives way at once to ringing, an announcement or a release.
    waiting_playing: bool,
    clock: WallClock,
    cdr: Cdr,
}

impl IvrCall {
    /// A call whose INVITE was accepted (not answered yet: feed [`CallInput::Answered`] when the 200
    /// goes out). `cdr` holds what the registry already knows (Call-ID, From, dialed number, source,
    /// start, region, menu version).
    pub fn new(
        now: Instant,
        clock: WallClock,
        ivr: IvrSession,
        prompts: PromptStore,
        timing: CallTiming,
        cdr: Cdr,
    ) -> IvrCall {
        IvrCall {
            ivr,
            prompts,
            merger: DigitMerger::default(),
            phase: Phase::Ringing,
            rtp_seen: false,
            first_prompt_delay: timing.first_prompt_delay,
            rtp_timeout: timing.rtp_timeout,
            max_ivr: timing.max_ivr,
            ivr_deadline: None,
            last_sip_activity: now,
            queued: VecDeque::new(),
            playing: None,
            missing_prompts: Vec::new(),
            outputs: VecDeque::new(),
            typed_ahead: VecDeque::new(),
            agent_ringing: false,
            hold_music: None,
            announcing: VecDeque::new(),
            waiting_playing: false,
            clock,
            cdr,
        }
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::Answered => {
                if self.phase == Phase::Ringing {
                    self.phase = Phase::AwaitingAck;
                    self.cdr.final_status = 200;
                    self.cdr.answer = Some(self.clock.format(now));
                }
            }
            CallInput::Acked => {
                self.last_sip_activity = now;
                if self.phase == Phase::AwaitingAck {
                    if self.rtp_seen {
                        self.start_ivr(now);
                    } else {
                        self.phase = Phase::AwaitingMedia {
                            deadline: now + self.first_prompt_delay,
                        };
                    }
                }
            }
            CallInput::SipActivity => self.last_sip_activity = now,
            CallInput::InfoDigit(digit) => {
                self.last_sip_activity = now;
                self.on_digit(
                    now,
                    DetectedDigit {
                        digit,
                        method: DigitMethod::Info,
                        at: now,
                    },
                );
            }
            CallInput::Media(event) => self.on_media(now, event),
        }
    }

    fn on_media(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::FirstRtp { .. } => {
                self.rtp_seen = true;
                if let Phase::AwaitingMedia { .. } = self.phase {
                    self.start_ivr(now);
                }
            }
            MediaEvent::Digit(digit) => self.on_digit(now, digit),
            MediaEvent::PromptFinished { name } => {
                // A prompt that ended just as the IVR replaced it (the media thread runs on its own)
                // must not count as the end of the new one.
                if self.playing.as_ref().is_none_or(|p| p.name != name) {
                    return;
                }
                self.playing = None;
                self.waiting_playing = false;
                if self.phase == Phase::Running {
                    self.ivr.handle(now, IvrInput::PromptFinished);
                    self.drain_ivr(now);
                } else {
                    // Queued or transferred: the next prompt, or the ringback again; ending: hang up
                    // once done.
                    self.next_prompt_if_idle();
                }
            }
            // The registry handles the engine's own report and the RTCP statistics; they never
            // reach here.
            MediaEvent::BindFailed { .. } | MediaEvent::Rtcp(_) => {}
            MediaEvent::RtpTimeout => {
                // Silence on RTP alone does not end a call whose caller still talks SIP (e.g. on hold).
                if now.saturating_duration_since(self.last_sip_activity) >= self.rtp_timeout
                    && self.phase != Phase::Ending
                {
                    self.end(EndReason::RtpTimeout);
                }
            }
        }
    }

    fn on_digit(&mut self, now: Instant, digit: DetectedDigit) {
        let Some(digit) = self.merger.handle(now, digit) else {
            return;
        };
        self.cdr.push_digit(CdrDigit {
            digit: digit.digit,
            method: match digit.method {
                DigitMethod::Rfc4733 => "rfc4733",
                DigitMethod::Info => "info",
                DigitMethod::Inband => "inband",
            },
            at: self.clock.format(digit.at),
            menu: self.ivr.choosing_in().map(str::to_owned),
        });
        match self.phase {
            Phase::Running => {
                self.ivr.handle(now, IvrInput::Digit(digit.digit));
                self.drain_ivr(now);
            }
            // Typed ahead (e.g. an INFO right after the ACK, before the first prompt): kept for the
            // first step that waits for keys, which applies its own barge-in rule.
            Phase::Ringing | Phase::AwaitingAck | Phase::AwaitingMedia { .. } => {
                if self.typed_ahead.len() < MAX_TYPED_AHEAD {
                    self.typed_ahead.push_back(digit.digit);
                }
            }
            // Routed: the menus are done; keys are recorded only.
            Phase::Queued | Phase::Bridged | Phase::Ending => {}
        }
    }

    fn start_ivr(&mut self, now: Instant) {
        self.phase = Phase::Running;
        self.ivr_deadline = Some(now + self.max_ivr);
        self.ivr.handle(now, IvrInput::Answered);
        self.drain_ivr(now);
        while let Some(key) = self.typed_ahead.pop_front() {
            if self.phase != Phase::Running {
                break; // a typed-ahead key already ended the menu
            }
            self.ivr.handle(now, IvrInput::Digit(key));
            self.drain_ivr(now);
        }
        self.typed_ahead.clear();
    }

    /// Turns every pending IVR action into call outputs.
    fn drain_ivr(&mut self, now: Instant) {
        while let Some(action) = self.ivr.poll_action() {
            match action {
                IvrAction::Play { lang, prompt, .. } => match self.prompts.get(&lang, &prompt) {
                    Some(p) => {
                        if self.playing.is_some() {
                            self.queued.push_back(p);
                        } else {
                            self.playing = Some(p.clone());
                            self.outputs.push_back(CallOutput::Play(p));
                        }
                    }
                    None => {
                        // `check` refuses menus whose prompts are missing, so this is a prompt file
                        // deleted under a running server: skip it rather than leave the caller in silence.
                        self.missing_prompts.push(format!("{lang}/{prompt}"));
                        self.ivr.handle(now, IvrInput::PromptFinished);
                    }
                },
                IvrAction::StopPlayback => {
                    self.queued.clear();
                    if self.playing.take().is_some() {
                        self.outputs.push_back(CallOutput::Stop);
                    }
                }
                IvrAction::Route {
                    queue, priority, ..
                } => {
                    // The registry puts the caller in the queue, or releases the call (see
                    // `release_after_prompts`) when nobody serves it.
                    self.cdr.route = Some(queue.clone());
                    self.phase = Phase::Queued;
                    self.outputs
                        .push_back(CallOutput::Route { queue, priority });
                }
                IvrAction::Transfer { uri } => {
                    // The registry places the call (see `transfer_failed` when it cannot).
                    self.cdr.route = Some(uri.clone());
                    self.phase = Phase::Queued;
                    self.outputs.push_back(CallOutput::Transfer { uri });
                }
                IvrAction::Hangup { .. } => self.finish_after_prompts(),
            }
        }
        self.next_prompt_if_idle();
    }

    /// Ends the call (BYE) once the prompts asked for have played: a routed caller nobody can serve.
    pub fn release_after_prompts(&mut self) {
        self.finish_after_prompts();
    }

    /// A transfer failed: the caller hears `transfer-failed` in their language (after any prompt still
    /// playing), then is released with BYE.
    pub fn transfer_failed(&mut self) {
        let lang = self.ivr.summary().language;
        match self.prompts.get(&lang, TRANSFER_FAILED_PROMPT) {
            Some(p) if self.playing.is_some() => self.queued.push_back(p),
            Some(p) => {
                self.playing = Some(p.clone());
                self.outputs.push_back(CallOutput::Play(p));
            }
            None => self
                .missing_prompts
                .push(format!("{lang}/{TRANSFER_FAILED_PROMPT}")),
        }
        self.finish_after_prompts();
    }

    /// Region, language, menus, variables and route so far (the supervisor view).
    pub fn summary(&self) -> crate::ivr::CallSummary {
        self.ivr.summary()
    }

    /// The menu waiting for the caller's choice now, if any.
    pub fn choosing_in(&self) -> Option<&str> {
        self.ivr.choosing_in()
    }

    /// The caller's region, for the `X-Helpline-Region` header of a transfer.
    pub fn region(&self) -> String {
        self.ivr.summary().region
    }

    /// The caller's language and collected variables, for the agent's `X-Helpline-*` headers.
    pub fn context(&self) -> (String, std::collections::BTreeMap<String, String>) {
        let summary = self.ivr.summary();
        (summary.language, summary.variables)
    }

    /// The caller is in the queue's line: `connecting` plays once the prompts already asked for have.
    pub fn enter_queue(&mut self) {
        let lang = self.ivr.summary().language;
        match self.prompts.get(&lang, CONNECTING_PROMPT) {
            Some(p) => self.queued.push_back(p),
            None => self
                .missing_prompts
                .push(format!("{lang}/{CONNECTING_PROMPT}")),
        }
        self.next_prompt_if_idle();
    }

    /// An agent's phone rings with this caller (`true`: its 180/183 came), or no longer does (the
    /// offer ended unanswered). Ringback loops while it rings, after any prompt still playing; it
    /// stops at once when the ringing does. Ignored once bridged or ending.
    pub fn set_agent_ringing(&mut self, ringing: bool) {
        if self.phase != Phase::Queued || self.agent_ringing == ringing {
            return;
        }
        self.agent_ringing = ringing;
        if ringing {
            // Music and any announcement give way to the ringing (an announcement never plays while
            // an agent's phone rings, so that it cannot run into the agent's hello).
            self.announcing.clear();
            self.stop_waiting_audio();
        } else if self
            .playing
            .as_ref()
            .is_some_and(|p| p.name == RINGBACK_TONE)
        {
            self.stop_waiting_audio();
        }
        self.next_prompt_if_idle();
    }

    /// The queue the caller waits in plays `music` (a prompt name, looked up in the caller's language,
    /// then among the tones) while nobody rings for them; `None`: silence.
    pub fn set_hold_music(&mut self, music: Option<String>) {
        if self.hold_music == music {
            return;
        }
        self.hold_music = music;
        if !self.agent_ringing && self.announcing.is_empty() {
            self.stop_waiting_audio();
        }
        self.next_prompt_if_idle();
    }

    /// The queue's announcement: "You are number N in line." (when the place changed) and "Your
    /// estimated wait is about M minutes." / "… less than a minute" (once known), spoken over the
    /// music, which resumes after. Ignored while an agent's phone rings or once the wait is over.
    pub fn announce(&mut self, position: Option<usize>, estimated_wait: Option<Duration>) {
        if self.phase != Phase::Queued || self.agent_ringing {
            return;
        }
        let parts = self.announcement(position, estimated_wait);
        if parts.is_empty() {
            return;
        }
        self.announcing = parts.into();
        self.stop_waiting_audio();
        self.next_prompt_if_idle();
    }

    /// The prompts of an announcement in the caller's language. The phrase around a number may be
    /// missing in a language that needs no words there (number first or last).
    fn announcement(
        &mut self,
        position: Option<usize>,
        wait: Option<Duration>,
    ) -> Vec<Arc<Prompt>> {
        let lang = self.ivr.summary().language;
        let mut parts = Vec::new();
        if let Some(n) = position {
            parts.extend(self.prompts.get(&lang, QUEUE_POSITION_BEFORE));
            parts.extend(self.number(&lang, n));
            parts.extend(self.prompts.get(&lang, QUEUE_POSITION_AFTER));
        }
        match wait {
            Some(w) if w < Duration::from_secs(60) => {
                parts.extend(self.required(&lang, QUEUE_WAIT_UNDER_MINUTE));
            }
            Some(w) => {
                // "about" M minutes: rounded to the nearest minute.
                let minutes = usize::try_from((w.as_secs() + 30) / 60).unwrap_or(usize::MAX);
                parts.extend(self.prompts.get(&lang, QUEUE_WAIT_BEFORE));
                parts.extend(self.number(&lang, minutes));
                parts.extend(self.prompts.get(&lang, QUEUE_WAIT_MINUTES));
            }
            None => {}
        }
        parts
    }

    /// `n` spoken digit by digit from the language's `digit-N` prompts.
    fn number(&mut self, lang: &str, n: usize) -> Vec<Arc<Prompt>> {
        n.to_string()
            .chars()
            .filter_map(|d| self.required(lang, &format!("digit-{d}")))
            .collect()
    }

    /// A prompt that must exist (noted as missing otherwise).
    fn required(&mut self, lang: &str, name: &str) -> Option<Arc<Prompt>> {
        let p = self.prompts.get(lang, name);
        if p.is_none() {
            self.missing_prompts.push(format!("{lang}/{name}"));
        }
        p
    }

    /// The caller leaves the line without an agent (overflow to prompts, a timeout, nowhere to go):
    /// the waiting audio stops, `prompts` play in the caller's language, then the call is released.
    pub fn release_with_prompts(&mut self, prompts: &[String]) {
        self.hold_music = None;
        self.announcing.clear();
        self.agent_ringing = false;
        self.stop_waiting_audio();
        let lang = self.ivr.summary().language;
        for name in prompts {
            if let Some(p) = self.required(&lang, name) {
                self.queued.push_back(p);
            }
        }
        self.finish_after_prompts();
        self.next_prompt_if_idle();
    }

    /// Stops the music, announcement or ringback playing (a prompt asked for plays on).
    fn stop_waiting_audio(&mut self) {
        if self.waiting_playing && self.playing.take().is_some() {
            self.outputs.push_back(CallOutput::Stop);
        }
        self.waiting_playing = false;
    }

    /// What a queued caller hears when no prompt is due: ringback while an agent's phone rings, else
    /// the rest of an announcement, else the queue's music looped (silence without one).
    fn waiting_audio(&mut self) -> Option<Arc<Prompt>> {
        if self.agent_ringing {
            return self.required(crate::prompts::TONES, RINGBACK_TONE);
        }
        if let Some(p) = self.announcing.pop_front() {
            return Some(p);
        }
        let music = self.hold_music.clone()?;
        let lang = self.ivr.summary().language;
        let p = self
            .prompts
            .get(&lang, &music)
            .or_else(|| self.prompts.get(crate::prompts::TONES, &music));
        if p.is_none() {
            // Noted once: the music is not tried again for this caller.
            self.missing_prompts.push(format!("{lang}/{music}"));
            self.hold_music = None;
        }
        p
    }

    /// The bridge to an agent is up: nothing of the IVR plays any more.
    pub fn bridged(&mut self) {
        self.queued.clear();
        self.playing = None;
        self.agent_ringing = false;
        self.announcing.clear();
        self.hold_music = None;
        self.waiting_playing = false;
        self.phase = Phase::Bridged;
    }

    fn finish_after_prompts(&mut self) {
        if self.playing.is_none() && self.queued.is_empty() {
            self.end(EndReason::ServerBye);
        } else {
            self.phase = Phase::Ending;
        }
    }

    fn next_prompt_if_idle(&mut self) {
        if self.playing.is_some() {
            return;
        }
        let next = match self.queued.pop_front() {
            Some(p) => Some(p),
            None if self.phase == Phase::Queued => {
                let audio = self.waiting_audio();
                self.waiting_playing = audio.is_some();
                audio
            }
            None => None,
        };
        if let Some(p) = next {
            self.playing = Some(p.clone());
            self.outputs.push_back(CallOutput::Play(p));
        } else if self.phase == Phase::Ending && self.cdr.end_reason.is_none() {
            self.end(EndReason::ServerBye);
        }
    }

    fn end(&mut self, reason: EndReason) {
        self.phase = Phase::Ending;
        if self.cdr.end_reason.is_none() {
            self.cdr.end_reason = Some(reason);
            self.outputs.push_back(CallOutput::Hangup);
        }
    }

    /// Fires the call's timers that are due (first-prompt delay, IVR timeouts); spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::AwaitingMedia { deadline } = self.phase {
            if now >= deadline {
                self.start_ivr(now);
            }
            return;
        }
        if self.phase == Phase::Running {
            if self.ivr_deadline.is_some_and(|d| now >= d) {
                tracing::info!("caller stayed in the menus past the limit: hanging up");
                self.end(EndReason::ServerBye);
                return;
            }
            if let Some(at) = self.ivr.poll_timeout() {
                if now >= at {
                    self.ivr.handle(now, IvrInput::Timeout);
                    self.drain_ivr(now);
                }
            }
        }
    }

    /// The earliest instant the call wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingMedia { deadline } => Some(deadline),
            Phase::Running => match (self.ivr.poll_timeout(), self.ivr_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        }
    }

    /// The next output for the shell.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// The IVR's analytics events so far (see [`crate::ivr::MenuEventKind`]).
    pub fn take_menu_events(&mut self) -> Vec<MenuEvent> {
        std::iter::from_fn(|| self.ivr.poll_menu_event()).collect()
    }

    /// The call ends with the caller gone: the menu they were in, if any, records it.
    pub fn caller_hung_up(&mut self) {
        self.ivr.caller_hung_up();
    }

    /// Why the IVR side ended the call, if it did (the registry's reason applies otherwise).
    pub fn own_end_reason(&self) -> Option<EndReason> {
        self.cdr.end_reason
    }

    /// Prompt names the menus asked for that were not loaded (for the shell to log once).
    pub fn take_missing_prompts(&mut self) -> Vec<String> {
        std::mem::take(&mut self.missing_prompts)
    }

    /// The call record so far (the registry fills in what only SIP knows, e.g. the final status).
    pub fn cdr_mut(&mut self) -> &mut Cdr {
        &mut self.cdr
    }

    /// Whether the call asked to be hung up.
    pub fn is_ending(&self) -> bool {
        self.phase == Phase::Ending
    }

    /// Completes the CDR: the shell calls it once when the dialog is gone. `reason` is used when the call
    /// has not recorded its own (e.g. the caller's BYE).
    pub fn finish(mut self, now: Instant, reason: EndReason) -> Cdr {
        let summary = self.ivr.summary();
        // An announcement (an agent's feature code) runs in no region: keep what the registry knew.
        if !summary.region.is_empty() {
            self.cdr.region = Some(summary.region);
        }
        self.cdr.language = Some(summary.language);
        self.cdr.menu_path = summary.menu_path;
        self.cdr.variables = summary.variables;
        if self.cdr.route.is_none() {
            self.cdr.route = summary.route;
        }
        if self.cdr.end_reason.is_none() {
            self.cdr.end_reason = Some(reason);
        }
        self.cdr.end = self.clock.format(now);
        self.cdr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::tests::{AllPrompts, MENUS};
    use crate::ivr::compile;
    use crate::media::session::DetectedDigit;
    use chrono::Utc;
    use std::path::PathBuf;

    /// A prompt of `frames` 20 ms frames.
    fn prompt(name: &str, frames: usize) -> Prompt {
        Prompt::from_samples("en", name, &vec![0i16; frames * 160])
    }

    fn call(t0: Instant) -> IvrCall {
        let files = vec![(PathBuf::from("test.toml"), MENUS.to_owned())];
        let (set, _) = compile(&files, &AllPrompts).expect("test menus compile");
        let wall = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let ivr = IvrSession::new(set, "08000000001", wall, t0).expect("routed");
        let mut prompts = PromptStore::default();
        for (name, frames) in [
            ("welcome", 50),
            ("main-short", 25),
            ("goodbye", 10),
            (CONNECTING_PROMPT, 50),
        ] {
            prompts.insert(prompt(name, frames));
        }
        prompts.insert(Prompt::from_samples(
            crate::prompts::TONES,
            RINGBACK_TONE,
            &vec![0i16; 300 * 160],
        ));
        for name in QUEUE_ANNOUNCE_PROMPTS
            .into_iter()
            .map(str::to_owned)
            .chain((0..10).map(|d| format!("digit-{d}")))
        {
            prompts.insert(prompt(&name, 25));
        }
        prompts.insert(Prompt::from_samples(
            crate::prompts::TONES,
            "music",
            &vec![0i16; 400 * 160],
        ));
        let mut c = IvrCall::new(
            t0,
            WallClock { instant: t0, wall },
            ivr,
            prompts,
            CallTiming {
                first_prompt_delay: Duration::from_millis(300),
                rtp_timeout: Duration::from_secs(30),
                max_ivr: Duration::from_secs(600),
            },
            Cdr::default(),
        );
        c.handle(t0, CallInput::Answered);
        c
    }

    fn outputs(call: &mut IvrCall) -> Vec<String> {
        std::iter::from_fn(|| call.poll_output())
            .map(|o| match o {
                CallOutput::Play(p) => format!("play {}", p.name),
                CallOutput::Stop => "stop".to_owned(),
                CallOutput::Hangup => "hangup".to_owned(),
                CallOutput::Route { queue, .. } => format!("route {queue}"),
                CallOutput::Transfer { uri } => format!("transfer {uri}"),
            })
            .collect()
    }

    fn finished(name: &str) -> CallInput {
        CallInput::Media(MediaEvent::PromptFinished {
            name: name.to_owned(),
        })
    }

    fn key(digit: char, method: DigitMethod, at: Instant) -> CallInput {
        CallInput::Media(MediaEvent::Digit(DetectedDigit { digit, method, at }))
    }

    #[test]
    fn first_prompt_waits_for_the_callers_rtp() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        assert!(
            outputs(&mut c).is_empty(),
            "nothing plays before the caller can hear it"
        );
        let rtp = CallInput::Media(MediaEvent::FirstRtp {
            from: "127.0.0.1:4000".parse().expect("addr"),
        });
        c.handle(t0 + Duration::from_millis(40), rtp);
        assert_eq!(outputs(&mut c), ["play welcome"]);
    }

    #[test]
    fn first_prompt_starts_after_the_delay_without_rtp() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(300)));
        c.handle_timeout(t0 + Duration::from_millis(299));
        assert!(outputs(&mut c).is_empty());
        c.handle_timeout(t0 + Duration::from_millis(300));
        assert_eq!(outputs(&mut c), ["play welcome"]);
    }

    #[test]
    fn rtp_before_the_ack_starts_the_prompt_at_the_ack() {
        let t0 = Instant::now();
        let mut c = call(t0);
        let rtp = CallInput::Media(MediaEvent::FirstRtp {
            from: "127.0.0.1:4000".parse().expect("addr"),
        });
        c.handle(t0, rtp);
        assert!(outputs(&mut c).is_empty());
        c.handle(t0 + Duration::from_millis(10), CallInput::Acked);
        assert_eq!(outputs(&mut c), ["play welcome"]);
    }

    #[test]
    fn prompts_play_one_after_another_and_barge_in_stops_them() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        assert_eq!(outputs(&mut c), ["play welcome"]);
        // A late end of some earlier prompt is not the end of this one.
        c.handle(t0 + Duration::from_millis(400), finished("goodbye"));
        assert!(outputs(&mut c).is_empty());
        c.handle(t0 + Duration::from_secs(1), finished("welcome"));
        assert_eq!(outputs(&mut c), ["play main-short"]);
        // Key 2 repeats the menu: the playing prompt stops and the greeting starts again.
        c.handle(
            t0 + Duration::from_millis(1200),
            key('2', DigitMethod::Rfc4733, t0),
        );
        assert_eq!(outputs(&mut c), ["stop", "play welcome"]);
    }

    #[test]
    fn same_key_by_two_methods_counts_once() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        let at = t0 + Duration::from_secs(1);
        c.handle(at, key('2', DigitMethod::Rfc4733, at));
        c.handle(at + Duration::from_millis(50), CallInput::InfoDigit('2'));
        let cdr = c.finish(at + Duration::from_secs(2), EndReason::CallerBye);
        assert_eq!(cdr.digits.len(), 1, "{:?}", cdr.digits);
        assert_eq!(cdr.digits[0].method, "rfc4733");
        assert_eq!(cdr.digits[0].at, "2026-11-27T12:00:01.000Z");
    }

    #[test]
    fn routed_call_asks_for_its_queue_and_is_released_when_nobody_serves_it() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        let at = t0 + Duration::from_secs(1);
        c.handle(at, key('1', DigitMethod::Info, at));
        assert_eq!(outputs(&mut c), ["stop", "route test.orders"]);
        c.release_after_prompts();
        assert_eq!(outputs(&mut c), ["hangup"]);
        let cdr = c.finish(at, EndReason::Error);
        assert_eq!(cdr.route.as_deref(), Some("test.orders"));
        assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
        assert_eq!(cdr.region.as_deref(), Some("test"));
    }

    /// A call routed to `test.orders` by key 1 at 1 s.
    fn routed(t0: Instant) -> IvrCall {
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        let at = t0 + Duration::from_secs(1);
        c.handle(at, key('1', DigitMethod::Info, at));
        assert_eq!(outputs(&mut c), ["stop", "route test.orders"]);
        c
    }

    #[test]
    fn a_queued_caller_hears_connecting_then_ringback_only_while_an_agent_rings() {
        let t0 = Instant::now();
        let mut c = routed(t0);
        let at = t0 + Duration::from_secs(2);
        c.enter_queue();
        assert_eq!(outputs(&mut c), ["play connecting"]);
        // The agent's 180 during `connecting`: the sentence is not cut.
        c.set_agent_ringing(true);
        assert!(outputs(&mut c).is_empty());
        c.handle(at, finished(CONNECTING_PROMPT));
        assert_eq!(outputs(&mut c), ["play ringback"]);
        c.handle(at, finished(RINGBACK_TONE));
        assert_eq!(outputs(&mut c), ["play ringback"], "looped");
        // The offer ends unanswered: the ringing stops at once, and nothing else plays yet.
        c.set_agent_ringing(false);
        assert_eq!(outputs(&mut c), ["stop"]);
        c.handle(at, finished(RINGBACK_TONE));
        assert!(outputs(&mut c).is_empty());
        c.set_agent_ringing(true);
        assert_eq!(outputs(&mut c), ["play ringback"]);
        // Bridged: nothing of ours plays over the agent's hello, whatever comes late.
        c.bridged();
        c.handle(at, finished(RINGBACK_TONE));
        c.set_agent_ringing(true);
        assert!(outputs(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn a_release_after_prompts_waits_for_the_prompt_playing_then_hangs_up() {
        let t0 = Instant::now();
        let mut c = routed(t0);
        c.enter_queue();
        assert_eq!(outputs(&mut c), ["play connecting"]);
        c.release_after_prompts();
        assert!(outputs(&mut c).is_empty());
        c.handle(t0 + Duration::from_secs(3), finished(CONNECTING_PROMPT));
        assert_eq!(outputs(&mut c), ["hangup"]);
    }

    #[test]
    fn silence_on_rtp_alone_keeps_a_call_whose_caller_talks_sip() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle(t0 + Duration::from_secs(20), CallInput::SipActivity);
        c.handle(
            t0 + Duration::from_secs(30),
            CallInput::Media(MediaEvent::RtpTimeout),
        );
        assert!(!outputs(&mut c).contains(&"hangup".to_owned()));
        c.handle(
            t0 + Duration::from_secs(60),
            CallInput::Media(MediaEvent::RtpTimeout),
        );
        assert!(outputs(&mut c).contains(&"hangup".to_owned()));
        let cdr = c.finish(t0 + Duration::from_secs(60), EndReason::ServerBye);
        assert_eq!(cdr.end_reason, Some(EndReason::RtpTimeout));
    }

    #[test]
    fn timeout_plays_the_goodbye_then_hangs_up() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        c.handle(t0 + Duration::from_secs(1), finished("welcome"));
        c.handle(t0 + Duration::from_millis(1500), finished("main-short"));
        outputs(&mut c);
        let at = c.poll_timeout().expect("first-key timer");
        assert_eq!(at, t0 + Duration::from_millis(6500));
        c.handle_timeout(at);
        assert_eq!(outputs(&mut c), ["play goodbye"]);
        c.handle(at + Duration::from_millis(200), finished("goodbye"));
        assert_eq!(outputs(&mut c), ["hangup"]);
    }

    #[test]
    fn a_caller_cannot_stay_in_the_menus_forever() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        let limit = t0 + Duration::from_millis(300) + Duration::from_secs(600);
        // Keep repeating the menu: the IVR alone would never end.
        for i in 1..=1000u64 {
            let at = t0 + Duration::from_secs(i);
            if at >= limit {
                break;
            }
            c.handle(at, key('2', DigitMethod::Rfc4733, at));
            outputs(&mut c);
        }
        assert!(c.poll_timeout().is_some_and(|t| t <= limit));
        c.handle_timeout(limit);
        assert_eq!(outputs(&mut c), ["hangup"]);
    }

    /// A caller routed to test.orders and in its line, hearing `connecting`.
    fn queued_call(t0: Instant) -> (IvrCall, Instant) {
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        let at = t0 + Duration::from_secs(1);
        c.handle(at, key('1', DigitMethod::Info, at));
        assert_eq!(outputs(&mut c), ["stop", "route test.orders"]);
        c.enter_queue();
        c.set_hold_music(Some("music".to_owned()));
        assert_eq!(outputs(&mut c), ["play connecting"]);
        c.handle(at, finished(CONNECTING_PROMPT));
        assert_eq!(outputs(&mut c), ["play music"]);
        (c, at)
    }

    #[test]
    fn an_announcement_speaks_each_digit_over_the_music_then_the_music_resumes() {
        let t0 = Instant::now();
        let (mut c, at) = queued_call(t0);
        // Place 12, about 3 minutes (2 min 40 s rounds to 3).
        c.announce(Some(12), Some(Duration::from_secs(160)));
        assert_eq!(outputs(&mut c), ["stop", "play queue-position-before"]);
        let mut said = vec!["queue-position-before".to_owned()];
        loop {
            let name = said.last().expect("something plays").clone();
            c.handle(at, finished(&name));
            let out = outputs(&mut c);
            let next = out[0]
                .strip_prefix("play ")
                .expect("the next part")
                .to_owned();
            if next == "music" {
                break;
            }
            said.push(next);
        }
        assert_eq!(
            said,
            [
                "queue-position-before",
                "digit-1",
                "digit-2",
                "queue-position-after",
                "queue-wait-before",
                "digit-3",
                "queue-wait-minutes"
            ]
        );
    }

    #[test]
    fn ringing_cuts_the_announcement_and_none_starts_while_it_rings() {
        let t0 = Instant::now();
        let (mut c, at) = queued_call(t0);
        c.announce(Some(1), None);
        assert_eq!(outputs(&mut c), ["stop", "play queue-position-before"]);
        c.set_agent_ringing(true);
        assert_eq!(outputs(&mut c), ["stop", "play ringback"]);
        c.announce(Some(1), Some(Duration::from_secs(10)));
        assert!(outputs(&mut c).is_empty(), "nothing over the ringing");
        c.set_agent_ringing(false);
        assert_eq!(outputs(&mut c), ["stop", "play music"]);
        c.bridged();
        c.announce(Some(1), None);
        c.handle(at, finished("music"));
        assert!(outputs(&mut c).is_empty(), "nothing once bridged");
    }

    #[test]
    fn a_release_stops_the_music_plays_the_prompts_then_hangs_up() {
        let t0 = Instant::now();
        let (mut c, at) = queued_call(t0);
        c.release_with_prompts(&["goodbye".to_owned()]);
        assert_eq!(outputs(&mut c), ["stop", "play goodbye"]);
        c.handle(at, finished("goodbye"));
        assert_eq!(outputs(&mut c), ["hangup"]);
    }
}
