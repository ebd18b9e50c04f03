//! One caller's call after it is answered: wires the media session's events (keys, prompt ends, silence)
//! into the IVR engine and the engine's actions back out as media commands and hang-ups, and keeps the
//! call detail record. It does not speak SIP (the server does) nor touch RTP (the media engine does).
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::ivr::{IvrAction, IvrInput, IvrSession};
use crate::media::dtmf::DigitMerger;
use crate::media::session::{DetectedDigit, DigitMethod, MediaEvent};
use crate::prompts::{Prompt, PromptStore};

/// Why a call ended, as written to the CDR's `end_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The caller sent BYE.
    CallerBye,
    /// helpline sent BYE (menu finished, routed, shutdown).
    ServerBye,
    /// The caller cancelled before the answer.
    Cancel,
    /// The 2xx was never acknowledged (RFC 3261 §13.3.1.4: released with BYE after 64·T1).
    NoAck,
    /// No RTP and no SIP from the caller for the configured time.
    RtpTimeout,
    /// The call could not be set up or continued (refused, bad SDP, internal fault).
    Error,
}

/// One key press as recorded in the CDR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CdrDigit {
    /// The key: `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// How it arrived: `rfc4733`, `info` or `inband`.
    pub method: &'static str,
    /// When it arrived (RFC 3339 with milliseconds).
    pub at: String,
}

/// The call detail record: one JSON line per call.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cdr {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The caller's From URI.
    pub from: String,
    /// The dialed number (Request-URI user part).
    pub dialed: String,
    /// Where the INVITE came from (ip:port).
    pub source: String,
    /// When the INVITE arrived.
    pub start: String,
    /// When the call was answered (200 sent), if it was.
    pub answer: Option<String>,
    /// When the call ended.
    pub end: String,
    /// Every key the caller pressed, once each.
    pub digits: Vec<CdrDigit>,
    /// The final response code sent to the INVITE (200, 404, 487, 488, 503 …).
    pub final_status: u16,
    /// Why the call ended.
    pub end_reason: Option<EndReason>,
    /// The region the dialed number belongs to.
    pub region: Option<String>,
    /// The language the caller heard.
    pub language: Option<String>,
    /// The menus the caller went through, in order.
    pub menu_path: Vec<String>,
    /// Digits collected into named variables (e.g. `order_id`).
    pub variables: BTreeMap<String, String>,
    /// The queue the call was routed to (`europe.refunds`) or the transfer target.
    pub route: Option<String>,
    /// The menu set version the call ran on.
    pub menu_version: Option<String>,
}

/// Maps wall-clock time onto the monotonic clock the call runs on, so the CDR can show RFC 3339 times
/// while every decision is taken on `Instant`s (and so on a simulated clock in tests).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// A monotonic instant …
    pub instant: Instant,
    /// … and the wall time it corresponds to.
    pub wall: DateTime<Utc>,
}

impl WallClock {
    /// The wall time of `at`, formatted as RFC 3339 with milliseconds.
    pub fn format(&self, at: Instant) -> String {
        let wall = if at >= self.instant {
            self.wall + chrono::Duration::from_std(at - self.instant).unwrap_or_default()
        } else {
            self.wall - chrono::Duration::from_std(self.instant - at).unwrap_or_default()
        };
        wall.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

/// What the call asks the media engine to do.
#[derive(Clone, Debug)]
pub enum MediaCommand {
    /// Play this prompt now (it replaces anything playing).
    Play(Arc<Prompt>),
    /// Stop the prompt being played (barge-in).
    Stop,
}

/// What the call asks of the server shell.
#[derive(Clone, Debug)]
pub enum CallOutput {
    /// A media command for this call's session on the media engine.
    Media(MediaCommand),
    /// End the call from our side with BYE.
    Hangup,
}

/// Inputs from the shell.
#[derive(Clone, Debug)]
pub enum CallInput {
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
    /// 200 sent, waiting for the ACK.
    AwaitingAck,
    /// Acknowledged: waiting for the caller's first RTP (or the delay) so the first words are heard.
    AwaitingMedia { deadline: Instant },
    /// The IVR is running.
    Running,
    /// We asked for a hang-up; nothing more happens.
    Ending,
}

/// One answered call: IVR + digit de-duplication + prompt sequencing + CDR (sans-IO).
pub struct Call {
    ivr: IvrSession,
    prompts: PromptStore,
    merger: DigitMerger,
    phase: Phase,
    /// The caller's RTP has arrived (it may come before the ACK).
    rtp_seen: bool,
    first_prompt_delay: Duration,
    rtp_timeout: Duration,
    last_sip_activity: Instant,
    /// Prompts the IVR asked for that wait for the one playing to finish.
    queued: VecDeque<Arc<Prompt>>,
    /// Whether a prompt is playing on the media engine now.
    playing: bool,
    /// Prompts asked for that do not exist (counted as finished at once); logged by the shell.
    missing_prompts: Vec<String>,
    outputs: VecDeque<CallOutput>,
    clock: WallClock,
    cdr: Cdr,
}

impl Call {
    /// A call whose 200 OK has just been sent. `cdr` holds what the server already knows (Call-ID, From,
    /// dialed number, source, start, answer time).
    pub fn new(
        now: Instant,
        clock: WallClock,
        ivr: IvrSession,
        prompts: PromptStore,
        first_prompt_delay: Duration,
        rtp_timeout: Duration,
        cdr: Cdr,
    ) -> Call {
        Call {
            ivr,
            prompts,
            merger: DigitMerger::default(),
            phase: Phase::AwaitingAck,
            rtp_seen: false,
            first_prompt_delay,
            rtp_timeout,
            last_sip_activity: now,
            queued: VecDeque::new(),
            playing: false,
            missing_prompts: Vec::new(),
            outputs: VecDeque::new(),
            clock,
            cdr,
        }
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: CallInput) {
        match input {
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
            MediaEvent::PromptFinished { .. } => {
                self.playing = false;
                if self.phase == Phase::Running {
                    self.ivr.handle(now, IvrInput::PromptFinished);
                    self.drain_ivr(now);
                }
            }
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
        self.cdr.digits.push(CdrDigit {
            digit: digit.digit,
            method: match digit.method {
                DigitMethod::Rfc4733 => "rfc4733",
                DigitMethod::Info => "info",
                DigitMethod::Inband => "inband",
            },
            at: self.clock.format(digit.at),
        });
        if self.phase == Phase::Running {
            self.ivr.handle(now, IvrInput::Digit(digit.digit));
            self.drain_ivr(now);
        }
    }

    fn start_ivr(&mut self, now: Instant) {
        self.phase = Phase::Running;
        self.ivr.handle(now, IvrInput::Answered);
        self.drain_ivr(now);
    }

    /// Turns every pending IVR action into call outputs.
    fn drain_ivr(&mut self, now: Instant) {
        while let Some(action) = self.ivr.poll_action() {
            match action {
                IvrAction::Play { lang, prompt, .. } => match self.prompts.get(&lang, &prompt) {
                    Some(p) => {
                        if self.playing {
                            self.queued.push_back(p);
                        } else {
                            self.playing = true;
                            self.outputs
                                .push_back(CallOutput::Media(MediaCommand::Play(p)));
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
                    if self.playing {
                        self.playing = false;
                        self.outputs
                            .push_back(CallOutput::Media(MediaCommand::Stop));
                    }
                }
                IvrAction::Route { queue, .. } => {
                    // Queues and agents arrive with the queues issue; until then a routed call is recorded
                    // and released once its last prompt has played.
                    self.cdr.route = Some(queue);
                    self.finish_after_prompts();
                }
                IvrAction::Transfer { uri } => {
                    self.cdr.route = Some(uri);
                    self.finish_after_prompts();
                }
                IvrAction::Hangup { .. } => self.finish_after_prompts(),
            }
        }
        self.next_prompt_if_idle();
    }

    fn finish_after_prompts(&mut self) {
        if !self.playing && self.queued.is_empty() {
            self.end(EndReason::ServerBye);
        } else {
            self.phase = Phase::Ending;
        }
    }

    fn next_prompt_if_idle(&mut self) {
        if !self.playing {
            if let Some(p) = self.queued.pop_front() {
                self.playing = true;
                self.outputs
                    .push_back(CallOutput::Media(MediaCommand::Play(p)));
            } else if self.phase == Phase::Ending && self.cdr.end_reason.is_none() {
                self.end(EndReason::ServerBye);
            }
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
            Phase::Running => self.ivr.poll_timeout(),
            _ => None,
        }
    }

    /// The next output for the shell.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// Prompt names the menus asked for that were not loaded (for the shell to log once).
    pub fn take_missing_prompts(&mut self) -> Vec<String> {
        std::mem::take(&mut self.missing_prompts)
    }

    /// Whether the call asked to be hung up.
    pub fn is_ending(&self) -> bool {
        self.phase == Phase::Ending
    }

    /// Completes the CDR: the shell calls it once when the dialog is gone. `reason` is used when the call
    /// has not recorded its own (e.g. the caller's BYE).
    pub fn finish(mut self, now: Instant, reason: EndReason) -> Cdr {
        let summary = self.ivr.summary();
        self.cdr.region = Some(summary.region);
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
