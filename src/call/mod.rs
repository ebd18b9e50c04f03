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
        timing: CallTiming,
        cdr: Cdr,
    ) -> Call {
        Call {
            ivr,
            prompts,
            merger: DigitMerger::default(),
            phase: Phase::AwaitingAck,
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
            MediaEvent::PromptFinished { name } => {
                // A prompt that ended just as the IVR replaced it (the media thread runs on its own)
                // must not count as the end of the new one.
                if self.playing.as_ref().is_none_or(|p| p.name != name) {
                    return;
                }
                self.playing = None;
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
        self.ivr_deadline = Some(now + self.max_ivr);
        self.ivr.handle(now, IvrInput::Answered);
        self.drain_ivr(now);
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
                    if self.playing.take().is_some() {
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
        if self.playing.is_none() && self.queued.is_empty() {
            self.end(EndReason::ServerBye);
        } else {
            self.phase = Phase::Ending;
        }
    }

    fn next_prompt_if_idle(&mut self) {
        if self.playing.is_none() {
            if let Some(p) = self.queued.pop_front() {
                self.playing = Some(p.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::{compile, PromptCheck};
    use crate::media::session::DetectedDigit;
    use std::path::PathBuf;

    struct AllPrompts;
    impl PromptCheck for AllPrompts {
        fn check(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    const MENUS: &str = r#"
[routing]
departments = ["orders", "refunds"]

[regions.test]
time_zone = "UTC"
languages = ["en"]
open_menu = "main"
closed_menu = "main"

[[regions.test.numbers]]
country = "GB"
number = "0800 000 0001"

[[regions.test.hours]]
days = "daily"
open = "00:00"
close = "24:00"

[menus.main]
greeting = ["welcome", "main-short"]
first_key_timeout = "5s"
max_timeouts = 1

[menus.main.on_max_timeouts]
action = "hangup"
prompt = ["goodbye"]

[menus.main.keys.1]
action = "route"
department = "orders"

[menus.main.keys.2]
action = "repeat"
"#;

    /// A prompt of `frames` 20 ms frames.
    fn prompt(name: &str, frames: usize) -> Prompt {
        Prompt::from_samples("en", name, &vec![0i16; frames * 160])
    }

    fn call(t0: Instant) -> Call {
        let files = vec![(PathBuf::from("test.toml"), MENUS.to_owned())];
        let (set, _) = compile(&files, &AllPrompts).expect("test menus compile");
        let wall = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let ivr = IvrSession::new(set, "08000000001", wall, t0).expect("routed");
        let mut prompts = PromptStore::default();
        for (name, frames) in [("welcome", 50), ("main-short", 25), ("goodbye", 10)] {
            prompts.insert(prompt(name, frames));
        }
        Call::new(
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
        )
    }

    fn outputs(call: &mut Call) -> Vec<String> {
        std::iter::from_fn(|| call.poll_output())
            .map(|o| match o {
                CallOutput::Media(MediaCommand::Play(p)) => format!("play {}", p.name),
                CallOutput::Media(MediaCommand::Stop) => "stop".to_owned(),
                CallOutput::Hangup => "hangup".to_owned(),
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
    fn routed_call_is_recorded_and_released() {
        let t0 = Instant::now();
        let mut c = call(t0);
        c.handle(t0, CallInput::Acked);
        c.handle_timeout(t0 + Duration::from_millis(300));
        outputs(&mut c);
        let at = t0 + Duration::from_secs(1);
        c.handle(at, key('1', DigitMethod::Info, at));
        assert_eq!(outputs(&mut c), ["stop", "hangup"]);
        let cdr = c.finish(at, EndReason::Error);
        assert_eq!(cdr.route.as_deref(), Some("test.orders"));
        assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
        assert_eq!(cdr.region.as_deref(), Some("test"));
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
}
