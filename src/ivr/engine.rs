//! The IVR engine: a sans-IO state machine that walks one caller through the compiled menus.
//!
//! Inputs arrive through [`IvrSession::handle`] (`Answered`, `PromptFinished`, `Digit`, `Timeout`),
//! outputs leave through [`IvrSession::poll_action`], and [`IvrSession::poll_timeout`] says when the
//! caller must be woken for a timer. Time is only ever the `now` passed in; the wall clock is read once,
//! at creation, to pick the open/closed/special menu. It knows nothing of SIP or RTP: the call plays the
//! prompts, detects keys and carries out the final route, transfer or hang-up.
//!
//! Semantics follow FreeSWITCH's `switch_ivr_menu`: the long greeting on entry, the short greeting on
//! repeat, an invalid prompt after a wrong entry, a first-key timer that starts when the last greeting
//! prompt ends, an inter-digit timer between keys of a multi-digit entry, and separate failure and
//! timeout counters each with its own final action.
//!
//! Polling order: after every `handle`, drain `poll_action` until `None`, then sleep until
//! `poll_timeout`. A `Timeout` before that instant is a no-op (spurious wake-ups are harmless).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::compile::{digit_prompt, Action, Collect, MenuSet, Unrouted, LANGUAGE_PROMPT};
use super::hours::{is_holiday, is_open, span_contains};

/// Inputs the call feeds into the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvrInput {
    /// The caller's leg is answered: start the menu.
    Answered,
    /// One prompt from an earlier `Play` finished playing (not sent for prompts stopped by `StopPlayback`).
    PromptFinished,
    /// The caller pressed a key: `0`–`9`, `*`, `#`.
    Digit(char),
    /// The instant from `poll_timeout` has come.
    Timeout,
}

/// What the engine asks the call to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum IvrAction {
    /// Queue one prompt for playback after those already queued; report `PromptFinished` when done.
    Play {
        /// Language directory of the prompt (already resolved through voice fallback).
        lang: String,
        /// Prompt name.
        prompt: String,
        /// Whether a key may interrupt it (the engine answers a key with `StopPlayback`).
        barge_in: bool,
    },
    /// Stop the current prompt and drop every queued one; no `PromptFinished` follows for them.
    StopPlayback,
    /// Hand the caller to a queue; the engine is finished.
    Route {
        /// Queue name `REGION.DEPARTMENT`, e.g. `europe.refunds`.
        queue: String,
        /// The department.
        department: String,
        /// The caller's priority in the line (higher first; the menus' default 0).
        priority: i32,
    },
    /// Transfer the caller to a SIP URI; the engine is finished.
    Transfer {
        /// Validated `sip:`/`sips:` URI.
        uri: String,
    },
    /// Hang up; the engine is finished.
    Hangup {
        /// Why, for the call record (`max-timeouts`, `collect-failed`, `menu-hangup`, …).
        reason: String,
    },
}

/// What a call record needs from the IVR part of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    /// Region name.
    pub region: String,
    /// Language the caller heard (after choice and voice fallback).
    pub language: String,
    /// Menus entered, in order.
    pub menu_path: Vec<String>,
    /// Collected variables, e.g. `order_id`.
    pub variables: BTreeMap<String, String>,
    /// Queue routed to, or transfer URI; `None` when the call ended in the IVR.
    pub route: Option<String>,
}

/// What happened to a caller in a menu, for the per-menu analytics (the shell counts them; the engine
/// only says what it saw). Every event names the menu, a name from the menu files, and keys are
/// `0`–`9`, `*`, `#`: a closed set callers cannot grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuEventKind {
    /// The caller entered the menu (first time or again).
    Entered,
    /// The caller pressed this key while the menu waited for a choice (keys typed into a `collect`
    /// are not counted: they are order numbers, not choices).
    Key(char),
    /// An entry matched no option.
    Invalid,
    /// No key before the first-key timer.
    Timeout,
    /// Too many invalid entries: the menu's `on_max_failures` action ran.
    MaxFailures,
    /// Too many timeouts: the menu's `on_max_timeouts` action ran.
    MaxTimeouts,
    /// The caller hung up while in this menu.
    HungUp,
}

impl MenuEventKind {
    /// The names of every kind but `Key` (keys are counted per key, in their own metric).
    pub const EVENT_NAMES: [&'static str; 6] = [
        "entered",
        "invalid",
        "timeout",
        "max_failures",
        "max_timeouts",
        "hangup",
    ];

    /// The label value: `entered`, `key`, `invalid`, `timeout`, `max_failures`, `max_timeouts`,
    /// `hangup`.
    pub fn name(self) -> &'static str {
        match self {
            MenuEventKind::Entered => "entered",
            MenuEventKind::Key(_) => "key",
            MenuEventKind::Invalid => "invalid",
            MenuEventKind::Timeout => "timeout",
            MenuEventKind::MaxFailures => "max_failures",
            MenuEventKind::MaxTimeouts => "max_timeouts",
            MenuEventKind::HungUp => "hangup",
        }
    }
}

/// One analytics event: what happened, in which menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEvent {
    /// The menu's name (as in `menu_path`).
    pub menu: String,
    /// What happened.
    pub kind: MenuEventKind,
}

/// Analytics events kept per session before the call drains them; a caller mashing keys faster than
/// the call drains cannot grow memory past this (older events are dropped).
const MAX_MENU_EVENTS: usize = 256;

/// Which timer is armed, for transcripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Waiting for the first key after a greeting or collect prompt.
    FirstKey,
    /// Waiting for the next key of a multi-digit entry.
    InterDigit,
    /// Waiting for the language choice.
    LanguageSelect,
}

impl TimerKind {
    /// Short name used in transcripts: `first-key`, `inter-digit`, `language-select`.
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::FirstKey => "first-key",
            TimerKind::InterDigit => "inter-digit",
            TimerKind::LanguageSelect => "language-select",
        }
    }
}

/// What the engine is doing between inputs.
#[derive(Debug)]
enum Mode {
    /// Before `Answered`.
    Idle,
    /// Before `Answered` of an announcement: play these, then hang up with `reason`.
    Announce {
        prompts: Vec<String>,
        reason: String,
    },
    /// Asking the caller to choose among `choices`.
    LanguageSelect,
    /// In the current menu, waiting for keys once prompts end.
    Menu,
    /// Collecting digits into a variable.
    Collect { c: Arc<Collect>, attempts: u32 },
    /// Playing prompts of a `play` action; then run the action (or re-enter the menu).
    Playing { then: Option<Action> },
    /// Playing final prompts, then hang up.
    HangingUp { reason: String },
    /// Routed, transferred or hung up.
    Ended,
}

/// Menu stack depth kept for `back`; older entries are dropped (a caller bouncing between two menus
/// must not grow memory without bound).
const MAX_STACK: usize = 32;

/// One caller's walk through the menus. See the module docs for the polling contract.
#[derive(Debug)]
pub struct IvrSession {
    set: Arc<MenuSet>,
    region: usize,
    /// Languages the caller may choose, already limited to languages with a voice.
    choices: Vec<String>,
    language: String,
    entry_menu: usize,
    menu: usize,
    stack: Vec<usize>,
    failures: u32,
    timeouts: u32,
    mode: Mode,
    buf: String,
    /// Prompts sent with `Play` and not yet reported finished.
    outstanding: usize,
    barge_in: bool,
    timer: Option<(Instant, TimerKind)>,
    actions: VecDeque<IvrAction>,
    menu_path: Vec<String>,
    variables: BTreeMap<String, String>,
    route: Option<String>,
    menu_events: VecDeque<MenuEvent>,
}

impl IvrSession {
    /// Starts a session for a call to `dialed_user` placed at wall-clock time `wall_clock`; refuses
    /// numbers no region serves (answer `404`).
    pub fn new(
        set: Arc<MenuSet>,
        dialed_user: &str,
        wall_clock: DateTime<Utc>,
        now: Instant,
    ) -> Result<IvrSession, Unrouted> {
        let _ = now; // nothing is timed before `Answered`; kept for the uniform sans-IO signature
        let (region, number) = set.resolve(dialed_user)?;
        let r = set.regions.get(region).ok_or(Unrouted::UnknownNumber)?;
        let declared = number
            .and_then(|n| r.number_languages.get(n))
            .unwrap_or(&r.languages);
        // Offer each voice once: a language without prompts would only repeat its fallback's.
        let mut choices: Vec<String> = Vec::new();
        for l in declared {
            if r.voice.get(l) == Some(l) && !choices.contains(l) {
                choices.push(l.clone());
            }
        }
        if choices.is_empty() {
            let first = declared.first().or(r.languages.first());
            choices.extend(first.and_then(|l| r.voice.get(l)).cloned());
        }
        let language = choices.first().cloned().unwrap_or_default();
        let s = &r.schedule;
        let entry_menu = if is_holiday(s, wall_clock) {
            r.closed_menu
        } else if let Some((_, m)) = r
            .special
            .iter()
            .find(|(w, _)| span_contains(w, s.tz, wall_clock))
        {
            *m
        } else if is_open(s, wall_clock) {
            r.open_menu
        } else {
            r.closed_menu
        };
        Ok(IvrSession {
            set,
            region,
            choices,
            language,
            entry_menu,
            menu: entry_menu,
            stack: Vec::new(),
            failures: 0,
            timeouts: 0,
            mode: Mode::Idle,
            buf: String::new(),
            outstanding: 0,
            barge_in: true,
            timer: None,
            actions: VecDeque::new(),
            menu_path: Vec::new(),
            variables: BTreeMap::new(),
            route: None,
            menu_events: VecDeque::new(),
        })
    }

    /// A session that walks no menu: on `Answered` it plays `prompts` in `language` (no barge-in), then
    /// hangs up with `reason`. For calls that are not callers' (an agent's feature code), so that they
    /// share the call layer's answer, prompt and BYE path without ever entering a region's menus. Its
    /// summary names no region.
    pub fn announcement(
        set: Arc<MenuSet>,
        language: &str,
        prompts: Vec<String>,
        reason: &str,
    ) -> IvrSession {
        IvrSession {
            set,
            // No region: `summary` and `voice` fall back to nothing and to `language`.
            region: usize::MAX,
            choices: vec![language.to_owned()],
            language: language.to_owned(),
            entry_menu: usize::MAX,
            menu: usize::MAX,
            stack: Vec::new(),
            failures: 0,
            timeouts: 0,
            mode: Mode::Announce {
                prompts,
                reason: reason.to_owned(),
            },
            buf: String::new(),
            outstanding: 0,
            barge_in: false,
            timer: None,
            actions: VecDeque::new(),
            menu_path: Vec::new(),
            variables: BTreeMap::new(),
            route: None,
            menu_events: VecDeque::new(),
        }
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Instant, input: IvrInput) {
        match input {
            IvrInput::Answered => match std::mem::replace(&mut self.mode, Mode::Idle) {
                Mode::Idle => self.start(now),
                Mode::Announce { prompts, reason } => {
                    self.mode = Mode::HangingUp { reason };
                    self.play(&prompts, false, now);
                }
                other => self.mode = other,
            },
            IvrInput::PromptFinished => {
                if self.outstanding > 0 {
                    self.outstanding -= 1;
                    if self.outstanding == 0 {
                        self.prompts_done(now);
                    }
                }
            }
            IvrInput::Digit(d) => self.digit(now, d),
            IvrInput::Timeout => match self.timer {
                Some((at, kind)) if now >= at => {
                    self.timer = None;
                    self.timeout(now, kind);
                }
                // Spurious or early wake-up: nothing is due.
                _ => {}
            },
        }
    }

    /// Next analytics event, in order (see [`MenuEventKind`]).
    pub fn poll_menu_event(&mut self) -> Option<MenuEvent> {
        self.menu_events.pop_front()
    }

    /// The caller hung up: if a menu was waiting on them, that menu records a [`MenuEventKind::HungUp`].
    /// Once, at the end of the call; a session already routed, transferred or hung up records nothing.
    pub fn caller_hung_up(&mut self) {
        if matches!(
            self.mode,
            Mode::Menu | Mode::Collect { .. } | Mode::Playing { .. }
        ) {
            self.menu_event(MenuEventKind::HungUp);
        }
        self.mode = Mode::Ended;
    }

    fn menu_event(&mut self, kind: MenuEventKind) {
        let Some(m) = self.set.menus.get(self.menu) else {
            return;
        };
        if self.menu_events.len() >= MAX_MENU_EVENTS {
            self.menu_events.pop_front();
        }
        let menu = m.name.clone();
        self.menu_events.push_back(MenuEvent { menu, kind });
    }

    /// Next action for the call, in order.
    pub fn poll_action(&mut self) -> Option<IvrAction> {
        self.actions.pop_front()
    }

    /// When the engine next needs `Timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|(at, _)| at)
    }

    /// The armed timer and its kind (for transcripts).
    pub fn pending_timer(&self) -> Option<(Instant, TimerKind)> {
        self.timer
    }

    /// Whether the engine has finished (routed, transferred or hung up).
    pub fn is_ended(&self) -> bool {
        matches!(self.mode, Mode::Ended)
    }

    /// Whether prompts sent with `Play` are still playing.
    pub fn is_playing(&self) -> bool {
        self.outstanding > 0
    }

    /// The menu whose choice the next key makes: the current menu while it waits for a choice, `None`
    /// while digits are collected into a variable, a language is chosen or no menu has started.
    pub fn choosing_in(&self) -> Option<&str> {
        match self.mode {
            Mode::Menu => self.set.menus.get(self.menu).map(|m| m.name.as_str()),
            _ => None,
        }
    }

    /// Region, language, menus, variables and route so far.
    pub fn summary(&self) -> CallSummary {
        CallSummary {
            region: self
                .set
                .regions
                .get(self.region)
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            language: self.voice(),
            menu_path: self.menu_path.clone(),
            variables: self.variables.clone(),
            route: self.route.clone(),
        }
    }

    fn voice(&self) -> String {
        self.set
            .regions
            .get(self.region)
            .and_then(|r| r.voice.get(&self.language))
            .cloned()
            .unwrap_or_else(|| self.language.clone())
    }

    fn start(&mut self, now: Instant) {
        if self.choices.len() > 1 {
            self.mode = Mode::LanguageSelect;
            let mut prompts = Vec::new();
            for (i, l) in self.choices.iter().enumerate() {
                prompts.push((l.clone(), LANGUAGE_PROMPT.to_owned()));
                prompts.push((l.clone(), digit_prompt(i + 1)));
            }
            self.play_in(prompts, true, now);
        } else {
            self.enter(self.entry_menu, true, now);
        }
    }

    /// Sends prompts in the current language.
    fn play(&mut self, prompts: &[String], barge_in: bool, now: Instant) {
        let voice = self.voice();
        let list = prompts.iter().map(|p| (voice.clone(), p.clone())).collect();
        self.play_in(list, barge_in, now);
    }

    /// Sends `(voice, prompt)` pairs; with none, the continuation runs at once.
    fn play_in(&mut self, prompts: Vec<(String, String)>, barge_in: bool, now: Instant) {
        self.timer = None;
        self.barge_in = barge_in;
        self.outstanding = prompts.len();
        for (lang, prompt) in prompts {
            self.actions.push_back(IvrAction::Play {
                lang,
                prompt,
                barge_in,
            });
        }
        if self.outstanding == 0 {
            self.prompts_done(now);
        }
    }

    fn current(&self) -> Option<&super::compile::Menu> {
        self.set.menus.get(self.menu)
    }

    /// Enters `menu` (long greeting, counters reset).
    fn enter(&mut self, menu: usize, record: bool, now: Instant) {
        self.menu = menu;
        self.failures = 0;
        self.timeouts = 0;
        self.buf.clear();
        self.mode = Mode::Menu;
        let set = Arc::clone(&self.set);
        let Some(m) = set.menus.get(self.menu) else {
            return self.end_hangup("no-menu");
        };
        if record {
            self.menu_path.push(m.name.clone());
        }
        self.menu_event(MenuEventKind::Entered);
        let (greeting, barge) = (m.greeting.clone(), m.barge_in);
        self.play(&greeting, barge, now);
    }

    /// Plays `first` then the short greeting, staying in the menu.
    fn reprompt(&mut self, first: Vec<String>, now: Instant) {
        self.buf.clear();
        self.mode = Mode::Menu;
        let set = Arc::clone(&self.set);
        let Some(m) = set.menus.get(self.menu) else {
            return self.end_hangup("no-menu");
        };
        let mut prompts = first;
        prompts.extend(m.short_greeting.iter().cloned());
        let barge = m.barge_in;
        self.play(&prompts, barge, now);
    }

    fn prompts_done(&mut self, now: Instant) {
        match std::mem::replace(&mut self.mode, Mode::Ended) {
            Mode::LanguageSelect => {
                self.mode = Mode::LanguageSelect;
                let r = self.set.regions.get(self.region);
                let t = r.map_or(Duration::from_secs(5), |r| r.language_select_timeout);
                self.timer = Some((now + t, TimerKind::LanguageSelect));
            }
            Mode::Menu => {
                self.mode = Mode::Menu;
                // FreeSWITCH semantics: the first-key timer starts when the last greeting prompt ends.
                if let Some(m) = self.current() {
                    self.timer = Some((now + m.first_key_timeout, TimerKind::FirstKey));
                }
            }
            Mode::Collect { c, attempts } => {
                self.timer = Some((now + c.first_key_timeout, TimerKind::FirstKey));
                self.mode = Mode::Collect { c, attempts };
            }
            Mode::Playing { then } => {
                self.mode = Mode::Menu;
                match then {
                    Some(a) => self.exec(a, now),
                    None => self.reprompt(Vec::new(), now),
                }
            }
            Mode::HangingUp { reason } => self.end_hangup(&reason),
            m @ (Mode::Idle | Mode::Announce { .. } | Mode::Ended) => self.mode = m,
        }
    }

    fn digit(&mut self, now: Instant, d: char) {
        if !matches!(d, '0'..='9' | '*' | '#') {
            return;
        }
        match self.mode {
            Mode::LanguageSelect | Mode::Menu | Mode::Collect { .. } => {}
            // Keys during a `play` action, final prompts, or before answer are ignored.
            _ => return,
        }
        if self.outstanding > 0 {
            if !self.barge_in {
                return;
            }
            self.outstanding = 0;
            self.actions.push_back(IvrAction::StopPlayback);
        }
        self.timer = None;
        match std::mem::replace(&mut self.mode, Mode::Menu) {
            Mode::LanguageSelect => {
                let chosen = d
                    .to_digit(10)
                    .and_then(|n| (n as usize).checked_sub(1))
                    .and_then(|i| self.choices.get(i));
                // An invalid key keeps the default language rather than trapping the caller.
                if let Some(l) = chosen {
                    self.language = l.clone();
                }
                self.enter(self.entry_menu, true, now);
            }
            Mode::Collect { c, attempts } => self.collect_digit(c, attempts, d, now),
            _ => self.menu_digit(d, now),
        }
    }

    fn menu_digit(&mut self, d: char, now: Instant) {
        let set = Arc::clone(&self.set);
        let Some(m) = set.menus.get(self.menu) else {
            return self.end_hangup("no-menu");
        };
        self.menu_event(MenuEventKind::Key(d));
        if Some(d) == m.terminator {
            // `#` ends a multi-digit entry: decide on what was typed so far.
            let found = m.keys.get(&self.buf).cloned();
            return match found {
                Some(a) if !self.buf.is_empty() => self.exec(a, now),
                _ => self.fail(now),
            };
        }
        self.buf.push(d);
        let exact = m.keys.get(&self.buf).cloned();
        let longer = m
            .keys
            .range(self.buf.clone()..)
            .take_while(|(k, _)| k.starts_with(self.buf.as_str()))
            .any(|(k, _)| k.len() > self.buf.len());
        let wait = m.inter_digit_timeout.unwrap_or(m.first_key_timeout);
        match (exact, longer) {
            (Some(a), false) => self.exec(a, now),
            // Option and prefix of a longer key (`8` vs `8888`), or only a prefix: wait for more.
            (_, true) => self.timer = Some((now + wait, TimerKind::InterDigit)),
            (None, false) => self.fail(now),
        }
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.buf.clear();
        let set = Arc::clone(&self.set);
        let Some(m) = set.menus.get(self.menu) else {
            return self.end_hangup("no-menu");
        };
        self.menu_event(MenuEventKind::Invalid);
        if self.failures >= m.max_failures {
            self.menu_event(MenuEventKind::MaxFailures);
            let (exit, action) = (m.exit.clone(), m.on_max_failures.clone());
            self.leave(exit, action, now);
        } else {
            let invalid = m.invalid.clone();
            self.reprompt(invalid, now);
        }
    }

    /// Plays the menu's exit prompts (if any), then runs `action`.
    fn leave(&mut self, exit: Vec<String>, action: Action, now: Instant) {
        if exit.is_empty() {
            self.exec(action, now);
        } else {
            self.mode = Mode::Playing { then: Some(action) };
            self.play(&exit, false, now);
        }
    }

    fn timeout(&mut self, now: Instant, kind: TimerKind) {
        match std::mem::replace(&mut self.mode, Mode::Menu) {
            Mode::LanguageSelect => self.enter(self.entry_menu, true, now),
            Mode::Collect { c, attempts } => self.collect_finish(c, attempts, now),
            Mode::Menu if kind == TimerKind::InterDigit => {
                let found = self.current().and_then(|m| m.keys.get(&self.buf).cloned());
                match found {
                    Some(a) => self.exec(a, now),
                    None => self.fail(now),
                }
            }
            Mode::Menu => {
                self.timeouts += 1;
                self.menu_event(MenuEventKind::Timeout);
                let set = Arc::clone(&self.set);
                let Some(m) = set.menus.get(self.menu) else {
                    return self.end_hangup("no-menu");
                };
                if self.timeouts >= m.max_timeouts {
                    self.menu_event(MenuEventKind::MaxTimeouts);
                    let (exit, action) = (m.exit.clone(), m.on_max_timeouts.clone());
                    self.leave(exit, action, now);
                } else {
                    self.reprompt(Vec::new(), now);
                }
            }
            other => self.mode = other,
        }
    }

    fn collect_digit(&mut self, c: Arc<Collect>, attempts: u32, d: char, now: Instant) {
        if Some(d) == c.terminator {
            return self.collect_finish(c, attempts, now);
        }
        self.buf.push(d);
        if self.buf.len() >= c.max_len {
            return self.collect_finish(c, attempts, now);
        }
        self.timer = Some((now + c.inter_digit_timeout, TimerKind::InterDigit));
        self.mode = Mode::Collect { c, attempts };
    }

    fn collect_finish(&mut self, c: Arc<Collect>, attempts: u32, now: Instant) {
        let entry = std::mem::take(&mut self.buf);
        let len_ok = (c.min_len..=c.max_len).contains(&entry.len());
        let valid = len_ok
            && match &c.pattern {
                Some(p) => p.is_match(&entry),
                None => entry.chars().all(|ch| ch.is_ascii_digit()),
            };
        self.mode = Mode::Menu;
        if valid {
            self.variables.insert(c.variable.clone(), entry);
            return self.exec(c.then.clone(), now);
        }
        let attempts = attempts + 1;
        if attempts >= c.max_attempts {
            return self.exec(c.on_failure.clone(), now);
        }
        // Re-prompt on invalid input: the invalid prompt, then the collect prompt again.
        let mut prompts = c.invalid.clone();
        prompts.extend(c.prompt.iter().cloned());
        self.mode = Mode::Collect {
            c: c.clone(),
            attempts,
        };
        self.play(&prompts, true, now);
    }

    fn exec(&mut self, action: Action, now: Instant) {
        self.buf.clear();
        match action {
            Action::Menu(target) => {
                if self.stack.len() == MAX_STACK {
                    self.stack.remove(0);
                }
                self.stack.push(self.menu);
                self.enter(target, true, now);
            }
            Action::Back => match self.stack.pop() {
                Some(prev) => self.enter(prev, true, now),
                None => self.enter(self.menu, false, now),
            },
            Action::Top => {
                self.stack.clear();
                self.enter(self.entry_menu, true, now);
            }
            Action::Repeat => self.enter(self.menu, false, now),
            Action::Route {
                department,
                set,
                priority,
            } => {
                // What the route sets reaches the agent like a collected variable.
                for (name, value) in set {
                    self.variables.insert(name, value);
                }
                let region = self.summary().region;
                let queue = format!("{region}.{department}");
                self.route = Some(queue.clone());
                self.actions.push_back(IvrAction::Route {
                    queue,
                    department,
                    priority,
                });
                self.finish();
            }
            Action::Transfer { uri } => {
                self.route = Some(uri.clone());
                self.actions.push_back(IvrAction::Transfer { uri });
                self.finish();
            }
            Action::Hangup { prompts, reason } => {
                if prompts.is_empty() {
                    self.end_hangup(&reason);
                } else {
                    self.mode = Mode::HangingUp { reason };
                    self.play(&prompts, false, now);
                }
            }
            Action::Collect(c) => {
                let prompts = c.prompt.clone();
                self.mode = Mode::Collect { c, attempts: 0 };
                self.play(&prompts, true, now);
            }
            Action::Language { language, then } => {
                // A shared menu may offer a language this caller's region does not speak: keep the
                // current one rather than play prompts that do not exist for the region.
                let spoken = self
                    .set
                    .regions
                    .get(self.region)
                    .is_some_and(|r| r.voice.contains_key(&language));
                if spoken {
                    self.language = language;
                }
                match then {
                    Some(a) => self.exec(*a, now),
                    None => self.enter(self.menu, false, now),
                }
            }
            Action::Play { prompts, then } => {
                self.mode = Mode::Playing {
                    then: then.map(|a| *a),
                };
                self.play(&prompts, false, now);
            }
        }
    }

    fn end_hangup(&mut self, reason: &str) {
        self.actions.push_back(IvrAction::Hangup {
            reason: reason.to_owned(),
        });
        self.finish();
    }

    fn finish(&mut self) {
        self.mode = Mode::Ended;
        self.timer = None;
        self.outstanding = 0;
    }
}
