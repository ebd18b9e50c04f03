//! The serde model of one `ivr-menus/*.toml` file, exactly as an admin writes it.
//!
//! Every struct keeps `toml::Spanned` positions so `compile` can point at the offending line; unknown
//! keys are refused by the shared strict loader ([`crate::strict_toml`]), which finds all of them in one
//! pass (so the structs do not `deny_unknown_fields`, which stops at the first). Values that need
//! checking (times, dates, durations, time zones, names) stay text here and are parsed in `compile`,
//! so one file with many mistakes reports all of them, not just the first. This module does not validate references or meaning; `compile` does. Every key is documented in
//! `ivr-menus/README.md`.
//!
//! Why actions are one flat struct and not `#[serde(tag = "action")] enum`: serde buffers internally
//! tagged enums before picking the variant, which drops the toml spans (an unknown key inside an action
//! could then only be reported at the enclosing table) and does not reliably deny unknown keys
//! (serde-rs/serde#2123). `compile` turns the flat struct into the typed `Action` enum and rejects keys
//! that do not belong to the chosen action.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A text value with its position in the file.
pub type Text = Spanned<String>;

/// One TOML file under `ivr-menus/`. Any file may hold any of its sections.
#[derive(Debug, Deserialize)]
pub struct MenuFile {
    /// `[routing]`: helpline-wide routing settings; exactly one file must have it.
    pub routing: Option<Spanned<RoutingModel>>,
    /// `[regions.NAME]`: one table per region.
    #[serde(default)]
    pub regions: BTreeMap<Text, Spanned<RegionModel>>,
    /// `[menus.NAME]`: one table per menu; names are global across files.
    #[serde(default)]
    pub menus: BTreeMap<Text, Spanned<MenuModel>>,
    /// `[agents.ID]`: one table per agent; IDs are global across files.
    #[serde(default)]
    pub agents: BTreeMap<Text, Spanned<AgentModel>>,
    /// `[queue_defaults]`: settings every queue shares; at most one file may have it.
    pub queue_defaults: Option<Spanned<QueueDefaultsModel>>,
    /// `[queues."REGION.DEPARTMENT"]`: one queue's settings over `[queue_defaults]`; names are global.
    #[serde(default)]
    pub queues: BTreeMap<Text, Spanned<QueueModel>>,
    /// `[supervisors.NAME]`: who may log in to the supervisor web view; names are global.
    #[serde(default)]
    pub supervisors: BTreeMap<Text, Spanned<SupervisorModel>>,
}

/// `[supervisors.NAME]`: a person who may log in to the supervisor web view (`serve --http`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorModel {
    /// The Argon2 PHC string of their password (`helpline passwd --supervisor NAME` prints it).
    pub password_hash: Text,
}

/// `[queue_defaults]`: the same keys as a queue's table.
pub type QueueDefaultsModel = QueueModel;

/// `[queue_defaults]` and `[queues."REGION.DEPARTMENT"]`; every key is optional (a queue's table falls
/// back to the defaults, the defaults to the built-in ones).
#[derive(Debug, Deserialize)]
pub struct QueueModel {
    /// How an agent is chosen: `ring-all`, `longest-idle-agent` (default), `round-robin`,
    /// `fewest-calls`, `random`, `top-down`.
    pub strategy: Option<Text>,
    /// How long an agent's phones ring before the caller is offered to the next agent. Default `"15s"`.
    pub ring_timeout: Option<Text>,
    /// Longest wait before the caller overflows with result `timeout`; `"0s"` none (the default).
    pub max_wait: Option<Text>,
    /// Most callers in the line; one more overflows on joining. 0 no limit (the default).
    pub max_length: Option<Spanned<i64>>,
    /// Time after each call (and refused offer) before the agent is offered another. Default `"10s"`.
    pub wrap_up: Option<Text>,
    /// `wait` (default) or `overflow` (at once) when no agent of the queue is available.
    pub when_no_agents: Option<Text>,
    /// Where overflowing callers go: a queue `"REGION.DEPARTMENT"`, or
    /// `{ action = "hangup", prompts = [...] }`. Values stay raw so `compile` can say what is wrong.
    pub overflow: Option<Spanned<toml::Value>>,
    /// How often a waiting caller hears their place and estimated wait; `"0s"` never (the default).
    pub announce_every: Option<Text>,
    /// The hold music: a prompt name, in `prompts/tones/` or in every language the queue's callers hear.
    pub music: Option<Text>,
}

/// `[routing]`.
#[derive(Debug, Deserialize)]
pub struct RoutingModel {
    /// Region for dialed numbers that no region lists; absent means such calls are refused (404).
    pub default_region: Option<Text>,
    /// The departments a `route` action may name; a region's queue is `REGION.DEPARTMENT`.
    #[serde(default)]
    pub departments: Vec<Text>,
    /// Digest realm agents' phones authenticate in; every `ha1` is computed with it. Default `helpline`.
    pub realm: Option<Text>,
    /// Digest challenges offered, in this order: `"MD5"`, `"SHA-256"`. Default `["MD5", "SHA-256"]`.
    pub auth_algorithms: Option<Spanned<Vec<Text>>>,
    /// Shortest registration accepted, seconds (shorter gets `423 Interval Too Brief`). Default 60.
    pub min_expires: Option<Spanned<i64>>,
    /// Longest registration granted, seconds (longer is shortened). Default 3600.
    pub max_expires: Option<Spanned<i64>>,
    /// Unanswered offers in a row after which an agent is put on break; 0 never. Default 3.
    pub max_no_answer: Option<Spanned<i64>>,
}

/// `[agents.ID]`: a person who answers routed calls; ID is the SIP user its phone registers.
#[derive(Debug, Deserialize)]
pub struct AgentModel {
    /// Display name.
    pub name: Text,
    /// Lowercase hex MD5 of `ID:REALM:password` (the `htdigest` format; `helpline passwd` prints it).
    pub ha1: Text,
    /// Lowercase hex SHA-256 of `ID:REALM:password`, for phones that answer the SHA-256 challenge.
    pub ha1_sha256: Option<Text>,
    /// Queues served, `REGION.DEPARTMENT`.
    pub queues: Spanned<Vec<Text>>,
    /// Languages the agent speaks (ISO 639 codes some region declares). Default: none declared.
    pub languages: Option<Spanned<Vec<Text>>>,
    /// `[agents.ID.penalty]`: per served queue, a non-negative penalty (lower is offered first; absent 0).
    pub penalty: Option<Spanned<BTreeMap<Text, Spanned<i64>>>>,
}

/// `[regions.NAME]`.
#[derive(Debug, Deserialize)]
pub struct RegionModel {
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: Text,
    /// Languages in order of preference; the first is the default.
    pub languages: Spanned<Vec<Text>>,
    /// Language whose prompts are played for a declared language that has no prompts at all (no voice).
    /// Default: the next language in `languages` that has prompts.
    pub voice_fallback: Option<Text>,
    /// Menu that runs during opening hours.
    pub open_menu: Text,
    /// Menu that runs outside opening hours and on holidays.
    pub closed_menu: Text,
    /// How long the language choice waits for a key, e.g. `"5s"`. Default 5 s.
    pub language_select_timeout: Option<Text>,
    /// Local dates (`YYYY-MM-DD`) on which the region is closed all day.
    #[serde(default)]
    pub holidays: Vec<Text>,
    /// `[[regions.NAME.numbers]]`: the dialed numbers that reach this region.
    #[serde(default)]
    pub numbers: Vec<Spanned<NumberModel>>,
    /// `[[regions.NAME.hours]]`: weekly opening hours.
    #[serde(default)]
    pub hours: Vec<Spanned<WindowModel>>,
    /// `[[regions.NAME.special]]`: windows that run another menu (checked before `hours`).
    #[serde(default)]
    pub special: Vec<Spanned<SpecialModel>>,
    /// Whether `serve --trace-dir` captures this region's calls. Default true.
    pub trace: Option<bool>,
}

/// `[[regions.NAME.numbers]]`.
#[derive(Debug, Deserialize)]
pub struct NumberModel {
    /// ISO 3166 country code the number is published in, e.g. `GB`.
    pub country: Text,
    /// The number as published: national format, or international starting with `+`.
    pub number: Text,
    /// Languages offered to callers of this number (default: the region's); each must be a region language.
    pub languages: Option<Spanned<Vec<Text>>>,
    /// Whether `serve --trace-dir` captures calls to this number. Default: the region's `trace`.
    pub trace: Option<bool>,
}

/// `[[regions.NAME.hours]]`.
#[derive(Debug, Deserialize)]
pub struct WindowModel {
    /// Days the window starts on: `mon-fri`, `sat,sun`, `daily`.
    pub days: Text,
    /// Local opening time `HH:MM`.
    pub open: Text,
    /// Local closing time `HH:MM` (`24:00` allowed); earlier than `open` means past midnight.
    pub close: Text,
}

/// `[[regions.NAME.special]]`.
#[derive(Debug, Deserialize)]
pub struct SpecialModel {
    /// Days the window starts on.
    pub days: Text,
    /// Local start `HH:MM`.
    pub open: Text,
    /// Local end `HH:MM`.
    pub close: Text,
    /// Menu that runs in this window instead of `open_menu`.
    pub menu: Text,
}

/// `[menus.NAME]`: FreeSWITCH-style menu.
#[derive(Debug, Deserialize)]
pub struct MenuModel {
    /// Prompts played on first entry (long greeting).
    pub greeting: Vec<Text>,
    /// Prompts played when the menu repeats (default: `greeting`).
    pub short_greeting: Option<Vec<Text>>,
    /// Prompts played after an invalid entry (default: none).
    #[serde(default)]
    pub invalid: Vec<Text>,
    /// Prompts played before the caller leaves the menu by max failures/timeouts (default: none).
    #[serde(default)]
    pub exit: Vec<Text>,
    /// Wait for the first key after the greeting ends, e.g. `"5s"` (default 5 s).
    pub first_key_timeout: Option<Text>,
    /// Wait between keys of a multi-digit entry (default: the first-key timeout; required when a key is
    /// both an option and the prefix of a longer one).
    pub inter_digit_timeout: Option<Text>,
    /// Invalid entries before `on_max_failures` (default 3).
    pub max_failures: Option<Spanned<u32>>,
    /// Timeouts before `on_max_timeouts` (default 3).
    pub max_timeouts: Option<Spanned<u32>>,
    /// Whether a key stops the greeting (default true).
    pub barge_in: Option<bool>,
    /// Key that ends a multi-digit entry (default `#`; `""` for none).
    pub terminator: Option<Text>,
    /// What happens after too many invalid entries (default: hang up).
    pub on_max_failures: Option<Box<Spanned<ActionModel>>>,
    /// What happens after too many timeouts (default: hang up).
    pub on_max_timeouts: Option<Box<Spanned<ActionModel>>>,
    /// `[menus.NAME.keys.DIGITS]`: what each key sequence does.
    #[serde(default)]
    pub keys: BTreeMap<Text, Spanned<ActionModel>>,
}

/// One action table; `action` picks the kind, the other keys are its parameters.
#[derive(Debug, Deserialize)]
pub struct ActionModel {
    /// `menu`, `back`, `top`, `repeat`, `route`, `collect`, `language`, `play`, `hangup`, `transfer`.
    pub action: Text,
    /// `menu`: the menu to enter.
    pub menu: Option<Text>,
    /// `route`: the department.
    pub department: Option<Text>,
    /// `language`: the language to switch to.
    pub language: Option<Text>,
    /// `transfer`: a `sip:`/`sips:` URI.
    pub uri: Option<Text>,
    /// `play`, `hangup`, `collect`: prompts to play.
    pub prompt: Option<Spanned<Vec<Text>>>,
    /// `hangup`: reason recorded for the call (default `menu-hangup`).
    pub reason: Option<Text>,
    /// `collect`: variable the digits are stored in.
    pub variable: Option<Text>,
    /// `collect`: fewest digits accepted (default 1).
    pub min_length: Option<Spanned<u32>>,
    /// `collect`: most digits accepted; reaching it ends entry.
    pub max_length: Option<Spanned<u32>>,
    /// `collect`: key that ends entry (default `#`).
    pub terminator: Option<Text>,
    /// `collect`: regular expression the whole entry must match.
    pub pattern: Option<Text>,
    /// `collect`: prompts played after an invalid entry.
    pub invalid: Option<Spanned<Vec<Text>>>,
    /// `collect`: entries allowed before `on_failure` (default 3).
    pub max_attempts: Option<Spanned<u32>>,
    /// `collect`: wait for the first digit after the prompt (default 5 s).
    pub first_key_timeout: Option<Text>,
    /// `collect`: wait between digits (default 3 s).
    pub inter_digit_timeout: Option<Text>,
    /// `collect`, `language`, `play`: what happens next.
    pub then: Option<Box<Spanned<ActionModel>>>,
    /// `collect`: what happens after `max_attempts` invalid entries (default: hang up).
    pub on_failure: Option<Box<Spanned<ActionModel>>>,
    /// `route`: variables to set before routing, `{ name = "text" }`; the agent sees each as
    /// `X-Helpline-<Name>` like a collected one. Values stay raw here so `compile` can say which is not
    /// a string.
    pub set: Option<Spanned<BTreeMap<Text, Spanned<toml::Value>>>>,
    /// `route`: the caller's priority in the queue, higher first (default 0).
    pub priority: Option<Spanned<i64>>,
}

/// Parses one file's text: every unknown key, then the first other error; spans are byte ranges into
/// `src`.
pub fn parse(src: &str) -> Result<MenuFile, Vec<crate::strict_toml::Problem>> {
    crate::strict_toml::parse(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_in_a_file_is_reported() {
        let src = "[menus.a]\ngreeting = [\"x\"]\nbogus = [1,\n 2]\n[menus.a.keys.1]\naction = \"top\"\nextra = { q = \"}\" }\n";
        let errs = parse(src).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|p| &src[p.span.clone()]).collect();
        assert_eq!(keys, ["bogus", "extra"]);
    }

    #[test]
    fn unknown_key_in_inline_table_is_reported() {
        let src = "[menus.a]\ngreeting = []\non_max_failures = { action = \"top\", nope = 1 }\n";
        let errs = parse(src).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(&src[errs[0].span.clone()], "nope");
    }
}
