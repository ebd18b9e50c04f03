//! The IVR engine on a simulated clock: timers and retries, option-vs-extension, digit collection,
//! barge-in, sub-menu navigation, language choice, and opening hours at their edges.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use helpline::ivr::{self, IvrAction, IvrInput, IvrSession, MenuSet, PromptCheck};

struct AllPrompts;

impl PromptCheck for AllPrompts {
    fn check(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

fn set() -> Arc<MenuSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ivr/basic");
    helpline::config::load_menus(&dir, &AllPrompts).unwrap_or_else(|d| panic!("{d:#?}"))
}

const UK: &str = "+448000000001";
const US: &str = "+18000000002";

/// Wednesday 2026-11-18 12:00 UTC: open in London and New York.
fn open_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 18, 12, 0, 0).unwrap()
}

struct Call {
    s: IvrSession,
    t0: Instant,
    now: Instant,
    /// Prompts sent and not yet finished.
    playing: usize,
}

impl Call {
    fn new(dialed: &str, at: DateTime<Utc>) -> Call {
        let t0 = Instant::now();
        let s = IvrSession::new(set(), dialed, at, t0).unwrap();
        Call {
            s,
            t0,
            now: t0,
            playing: 0,
        }
    }

    fn input(&mut self, i: IvrInput) -> Vec<IvrAction> {
        self.s.handle(self.now, i);
        let mut out = Vec::new();
        while let Some(a) = self.s.poll_action() {
            match &a {
                IvrAction::Play { .. } => self.playing += 1,
                IvrAction::StopPlayback => self.playing = 0,
                _ => {}
            }
            out.push(a);
        }
        out
    }

    fn answer(&mut self) -> Vec<IvrAction> {
        self.input(IvrInput::Answered)
    }

    /// Lets every queued prompt finish, one second each.
    fn finish_prompts(&mut self) -> Vec<IvrAction> {
        let mut out = Vec::new();
        while self.playing > 0 {
            self.playing -= 1;
            self.now += Duration::from_secs(1);
            out.extend(self.input(IvrInput::PromptFinished));
        }
        out
    }

    fn keys(&mut self, keys: &str) -> Vec<IvrAction> {
        let mut out = Vec::new();
        for k in keys.chars() {
            self.now += Duration::from_millis(200);
            out.extend(self.input(IvrInput::Digit(k)));
        }
        out
    }

    /// Advances to the armed timer and fires it.
    fn fire(&mut self) -> Vec<IvrAction> {
        let at = self.s.poll_timeout().expect("a timer is armed");
        self.now = at;
        self.input(IvrInput::Timeout)
    }

    fn since_start(&self, at: Instant) -> Duration {
        at - self.t0
    }
}

fn play(p: &str) -> IvrAction {
    play_in("en", p)
}

fn play_in(lang: &str, p: &str) -> IvrAction {
    IvrAction::Play {
        lang: lang.into(),
        prompt: p.into(),
        barge_in: true,
    }
}

fn route(queue: &str, department: &str) -> IvrAction {
    IvrAction::Route {
        queue: queue.into(),
        department: department.into(),
        priority: 0,
    }
}

fn hangup(reason: &str) -> IvrAction {
    IvrAction::Hangup {
        reason: reason.into(),
    }
}

#[test]
fn first_key_timer_starts_when_the_last_greeting_prompt_ends() {
    let mut c = Call::new(UK, open_time());
    assert_eq!(c.answer(), [play("main-long-1"), play("main-long-2")]);
    assert_eq!(c.s.poll_timeout(), None);
    c.now += Duration::from_secs(3);
    c.input(IvrInput::PromptFinished);
    assert_eq!(
        c.s.poll_timeout(),
        None,
        "one greeting prompt still playing"
    );
    c.now += Duration::from_secs(2);
    c.input(IvrInput::PromptFinished);
    c.playing = 0;
    let at = c.s.poll_timeout().unwrap();
    assert_eq!(c.since_start(at), Duration::from_secs(10));
}

#[test]
fn timeouts_replay_the_short_greeting_then_run_on_max_timeouts() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    // A spurious wake-up before the deadline changes nothing.
    c.now += Duration::from_secs(1);
    assert_eq!(c.input(IvrInput::Timeout), []);
    assert!(c.s.poll_timeout().is_some());
    assert_eq!(c.fire(), [play("main-short")]);
    assert_eq!(c.since_start(c.now), Duration::from_secs(7));
    c.finish_prompts();
    // Second timeout = max_timeouts: the exit prompt, then the configured action.
    assert_eq!(c.fire(), [play_plain("goodbye")]);
    assert_eq!(c.finish_prompts(), [route("test.english", "english")]);
    assert!(c.s.is_ended());
    assert_eq!(c.s.poll_timeout(), None);
}

/// Exit and `play` prompts cannot be interrupted.
fn play_plain(p: &str) -> IvrAction {
    IvrAction::Play {
        lang: "en".into(),
        prompt: p.into(),
        barge_in: false,
    }
}

#[test]
fn invalid_keys_play_invalid_then_short_greeting_and_hang_up_after_max_failures() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("5"), [play("invalid"), play("main-short")]);
    c.finish_prompts();
    assert_eq!(c.keys("6"), [play_plain("goodbye")]);
    assert_eq!(c.finish_prompts(), [hangup("too-many-failures")]);
    assert_eq!(c.s.summary().route, None);
}

#[test]
fn option_that_prefixes_an_extension_waits_the_inter_digit_timeout() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("8"), []);
    let at = c.s.poll_timeout().unwrap();
    assert_eq!(at - c.now, Duration::from_secs(2));
    assert_eq!(c.fire(), [route("test.tech", "tech")]);
}

#[test]
fn full_extension_routes_at_its_last_digit() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("888"), []);
    assert_eq!(c.keys("8"), [route("test.english", "english")]);
}

#[test]
fn terminator_decides_an_ambiguous_prefix_at_once() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("8#"), [route("test.tech", "tech")]);
}

#[test]
fn partial_extension_then_silence_is_a_failure() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    c.keys("88");
    assert_eq!(c.fire(), [play("invalid"), play("main-short")]);
}

#[test]
fn key_during_greeting_barges_in() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    assert_eq!(
        c.keys("1"),
        [
            IvrAction::StopPlayback,
            IvrAction::Route {
                queue: "test.orders".into(),
                department: "orders".into(),
                priority: 7,
            }
        ]
    );
}

#[test]
fn collect_with_terminator_stores_the_variable_and_continues() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("2"), [play("enter-order")]);
    c.finish_prompts();
    assert_eq!(
        c.s.poll_timeout().map(|t| t - c.now),
        Some(Duration::from_secs(4))
    );
    assert_eq!(c.keys("1234"), []);
    assert_eq!(c.keys("#"), [route("test.refunds", "refunds")]);
    let s = c.s.summary();
    assert_eq!(
        s.variables.get("order_id").map(String::as_str),
        Some("1234")
    );
    assert_eq!(s.route.as_deref(), Some("test.refunds"));
    assert_eq!(s.region, "test");
}

#[test]
fn collect_ends_at_max_length_and_after_inter_digit_timeout() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    c.keys("2");
    c.finish_prompts();
    assert_eq!(c.keys("123456"), [route("test.refunds", "refunds")]);

    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    c.keys("2");
    c.finish_prompts();
    c.keys("98765");
    assert_eq!(
        c.s.poll_timeout().map(|t| t - c.now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(c.fire(), [route("test.refunds", "refunds")]);
    assert_eq!(c.s.summary().variables["order_id"], "98765");
}

#[test]
fn invalid_collect_entry_reprompts_then_runs_on_failure() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    c.keys("2");
    c.finish_prompts();
    // Too short.
    assert_eq!(c.keys("12#"), [play("bad-order"), play("enter-order")]);
    c.finish_prompts();
    // Long enough but fails the pattern (leading zero): second attempt = max_attempts.
    assert_eq!(c.keys("0123#"), [hangup("no-order")]);
    assert!(c.s.summary().variables.is_empty());
}

#[test]
fn sub_menu_back_top_repeat_and_no_barge_in() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("3"), [play_plain("sub")]);
    // barge_in = false: keys during the greeting are ignored.
    assert_eq!(c.keys("1"), []);
    c.finish_prompts();
    assert_eq!(c.keys("3"), [play_plain("sub")]); // repeat
    c.finish_prompts();
    assert_eq!(c.keys("1"), [play("main-long-1"), play("main-long-2")]); // back
    c.finish_prompts();
    c.keys("3");
    c.finish_prompts();
    assert_eq!(c.keys("2"), [play("main-long-1"), play("main-long-2")]); // top
    assert_eq!(
        c.s.summary().menu_path,
        ["main", "sub", "main", "sub", "main"]
    );
}

#[test]
fn play_action_returns_to_the_menu_and_transfer_ends_the_session() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    c.keys("3");
    c.finish_prompts();
    assert_eq!(c.keys("5"), [play_plain("info")]);
    assert_eq!(c.finish_prompts(), [play_plain("sub")]);
    c.finish_prompts();
    assert_eq!(
        c.keys("4"),
        [IvrAction::Transfer {
            uri: "sip:tech@192.0.2.10".into()
        }]
    );
    assert!(c.s.is_ended());
    // Input after the end is ignored.
    assert_eq!(c.keys("1"), []);
}

#[test]
fn caller_chooses_a_language_and_hears_the_menu_in_it() {
    let mut c = Call::new(US, open_time());
    assert_eq!(
        c.answer(),
        [
            play_in("en", "for-language"),
            play_in("en", "digit-1"),
            play_in("es", "for-language"),
            play_in("es", "digit-2"),
        ]
    );
    assert_eq!(
        c.keys("2"),
        [
            IvrAction::StopPlayback,
            play_in("es", "main-long-1"),
            play_in("es", "main-long-2")
        ]
    );
    c.finish_prompts();
    assert_eq!(
        c.keys("1"),
        [IvrAction::Route {
            queue: "bilingual.orders".into(),
            department: "orders".into(),
            priority: 7,
        }]
    );
    assert_eq!(c.s.summary().language, "es");
}

#[test]
fn language_choice_times_out_to_the_default_and_can_change_later() {
    let mut c = Call::new(US, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.fire(), [play("main-long-1"), play("main-long-2")]);
    c.finish_prompts();
    // Key 7: switch to Spanish, menu repeats in Spanish.
    assert_eq!(
        c.keys("7"),
        [play_in("es", "main-long-1"), play_in("es", "main-long-2")]
    );
}

fn first_prompt(dialed: &str, at: DateTime<Utc>) -> String {
    let mut c = Call::new(dialed, at);
    match c.answer().first() {
        Some(IvrAction::Play { prompt, .. }) => prompt.clone(),
        other => panic!("{other:?}"),
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn language_action_is_skipped_where_the_region_does_not_speak_it() {
    let mut c = Call::new(UK, open_time());
    c.answer();
    c.finish_prompts();
    assert_eq!(c.keys("7"), [play("main-long-1"), play("main-long-2")]);
    assert_eq!(c.s.summary().language, "en");
}

#[test]
fn opening_hours_at_their_boundaries() {
    // November: London is on GMT (UTC+0).
    assert_eq!(first_prompt(UK, utc(2026, 11, 18, 8, 59, 59)), "closed");
    assert_eq!(first_prompt(UK, utc(2026, 11, 18, 9, 0, 0)), "main-long-1");
    assert_eq!(
        first_prompt(UK, utc(2026, 11, 18, 16, 59, 59)),
        "main-long-1"
    );
    assert_eq!(first_prompt(UK, utc(2026, 11, 18, 17, 0, 0)), "closed");
}

#[test]
fn friday_late_window_runs_past_midnight() {
    assert_eq!(first_prompt(UK, utc(2026, 11, 20, 21, 59, 0)), "closed");
    assert_eq!(
        first_prompt(UK, utc(2026, 11, 20, 23, 30, 0)),
        "main-long-1"
    );
    // Saturday 01:59 still belongs to Friday's window; 02:00 does not.
    assert_eq!(first_prompt(UK, utc(2026, 11, 21, 1, 59, 0)), "main-long-1");
    assert_eq!(first_prompt(UK, utc(2026, 11, 21, 2, 0, 0)), "closed");
    // Thursday night has no late window.
    assert_eq!(first_prompt(UK, utc(2026, 11, 19, 23, 30, 0)), "closed");
}

#[test]
fn daylight_saving_change_shifts_opening_in_utc() {
    // London moves to BST (UTC+1) on Sunday 2026-03-29.
    // Friday 2026-03-27 08:30 UTC = 08:30 GMT: closed.
    assert_eq!(first_prompt(UK, utc(2026, 3, 27, 8, 30, 0)), "closed");
    // Monday 2026-03-30 08:30 UTC = 09:30 BST: open.
    assert_eq!(first_prompt(UK, utc(2026, 3, 30, 8, 30, 0)), "main-long-1");
    assert_eq!(first_prompt(UK, utc(2026, 3, 30, 15, 59, 0)), "main-long-1");
    assert_eq!(first_prompt(UK, utc(2026, 3, 30, 16, 0, 0)), "closed");
}

#[test]
fn holiday_closes_a_working_day() {
    // Friday 2026-12-25 10:00 is inside weekday hours but a holiday.
    assert_eq!(first_prompt(UK, utc(2026, 12, 25, 10, 0, 0)), "closed");
    assert_eq!(first_prompt(UK, utc(2026, 12, 24, 10, 0, 0)), "main-long-1");
}

#[test]
fn closed_menu_says_goodbye_and_hangs_up() {
    let mut c = Call::new(UK, utc(2026, 11, 22, 12, 0, 0));
    assert_eq!(c.answer(), [play("closed")]);
    c.finish_prompts();
    assert_eq!(c.fire(), [play_plain("goodbye")]);
    assert_eq!(c.finish_prompts(), [hangup("closed")]);
}

#[test]
fn unknown_numbers_are_refused_unless_a_default_region_is_set() {
    let t0 = Instant::now();
    assert_eq!(
        IvrSession::new(set(), "+4930000000", open_time(), t0).err(),
        Some(ivr::Unrouted::UnknownNumber)
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ivr/basic/engine.toml");
    let text = std::fs::read_to_string(dir)
        .unwrap()
        .replace("[routing]\n", "[routing]\ndefault_region = \"bilingual\"\n");
    let (set, _) = ivr::compile(&[("engine.toml".into(), text)], &AllPrompts).unwrap();
    let id = set.route_dialed("+4930000000").unwrap();
    assert_eq!(set.region_name(id), "bilingual");
}

#[test]
fn simulate_reports_timers_and_the_route() {
    let r = ivr::simulate(&set(), UK, open_time(), "", Instant::now(), &|_, p| {
        (p == "main-long-1").then_some(Duration::from_millis(2500))
    });
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            "t=0.000 answered region test",
            "t=0.000 play en/main-long-1",
            "t=0.000 play en/main-long-2",
            "t=8.500 timer first-key fired",
            "t=8.500 play en/main-short",
            "t=14.500 timer first-key fired",
            "t=14.500 play en/goodbye",
            "t=15.500 route test.english",
        ]
    );
    assert!(!r.ended_nowhere);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["route"], "test.english");
}

/// Golden transcripts: each `tests/data/ivr/scripts/NAME.script` (lines `dialed …`, `at RFC3339`,
/// `keys …`) is simulated against `tests/data/ivr/basic/` and compared with `NAME.expected`.
/// Set `BLESS=1` to rewrite the expected files after an intended change.
#[test]
fn golden_scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ivr/scripts");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "script"))
        .collect();
    names.sort();
    assert!(names.len() >= 4);
    let set = set();
    for script in names {
        let text = std::fs::read_to_string(&script).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let at = DateTime::parse_from_rfc3339(&field("at"))
            .unwrap()
            .with_timezone(&Utc);
        let r = ivr::simulate(
            &set,
            &field("dialed"),
            at,
            &field("keys"),
            Instant::now(),
            &|_, _| None,
        );
        let mut got: String = r.transcript.iter().map(|e| format!("{e}\n")).collect();
        got.push_str(&format!(
            "ended_nowhere {}\nsummary {}\n",
            r.ended_nowhere,
            serde_json::to_string(&r.summary).unwrap()
        ));
        let expected_path = script.with_extension("expected");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} missing (run with BLESS=1)", expected_path.display()));
        assert_eq!(got, expected, "{}", script.display());
    }
}
