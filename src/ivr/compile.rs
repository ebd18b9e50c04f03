//! Compiles parsed `ivr-menus/*.toml` files into an immutable [`MenuSet`] and reports every mistake.
//!
//! Resolves menu, region and department names to indices, parses times, dates, durations and time zones,
//! compiles collect patterns, normalises dialed numbers, and checks reachability, ways out, key
//! ambiguity and prompt availability (through the injected [`PromptCheck`]). It collects all diagnostics
//! before failing. It does not read files (the caller hands in the sources) and does not run calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use super::diag::{did_you_mean, line_col, Diagnostic, Severity};
use super::hours::{self, Schedule, WeeklySpan};
use super::menu::{self, ActionModel, MenuFile, MenuModel, RegionModel, Text};
use super::number::{self, Dialed};
use super::settings::AgentSettings;
use crate::agent::{AgentConfig, AgentId, QueueName};
use crate::queue::QueueConfig;

/// Tells whether a prompt can be played: implemented by the server over `prompts/` (file exists and
/// decodes) and by tests over an in-memory list.
pub trait PromptCheck {
    /// `Ok(())` when prompt `name` exists in language `lang`, else a short reason (missing/undecodable).
    fn check(&self, lang: &str, name: &str) -> Result<(), String>;
}

/// Index of a region in a [`MenuSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId(pub(crate) usize);

/// Why a dialed number reaches no region; the call is refused with `404 Not Found`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrouted {
    /// The user part is not a phone number.
    #[error("dialed user part is not a phone number")]
    NotANumber,
    /// No region lists the number and no default region is configured.
    #[error("no region serves the dialed number")]
    UnknownNumber,
}

/// A compiled collect-digits step.
#[derive(Debug)]
pub(crate) struct Collect {
    pub variable: String,
    pub prompt: Vec<String>,
    pub invalid: Vec<String>,
    pub min_len: usize,
    pub max_len: usize,
    pub terminator: Option<char>,
    pub pattern: Option<Regex>,
    pub max_attempts: u32,
    pub first_key_timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub then: Action,
    pub on_failure: Action,
}

/// A compiled action; menu names are already indices.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Menu(usize),
    Back,
    Top,
    Repeat,
    Route {
        department: String,
        /// Variables the route sets (`set = { category = "…" }`), in name order.
        set: Vec<(String, String)>,
        /// The caller's place in the line: higher first (`priority = 10`; default 0).
        priority: i32,
    },
    Collect(Arc<Collect>),
    Language {
        language: String,
        then: Option<Box<Action>>,
    },
    Play {
        prompts: Vec<String>,
        then: Option<Box<Action>>,
    },
    Hangup {
        prompts: Vec<String>,
        reason: String,
    },
    Transfer {
        uri: String,
    },
}

/// A compiled menu.
#[derive(Debug)]
pub(crate) struct Menu {
    pub name: String,
    pub greeting: Vec<String>,
    pub short_greeting: Vec<String>,
    pub invalid: Vec<String>,
    pub exit: Vec<String>,
    pub first_key_timeout: Duration,
    pub inter_digit_timeout: Option<Duration>,
    pub max_failures: u32,
    pub max_timeouts: u32,
    pub barge_in: bool,
    pub terminator: Option<char>,
    pub keys: BTreeMap<String, Action>,
    pub on_max_failures: Action,
    pub on_max_timeouts: Action,
}

/// A compiled region.
#[derive(Debug)]
pub(crate) struct Region {
    pub name: String,
    pub schedule: Schedule,
    /// Declared languages (first is the default).
    pub languages: Vec<String>,
    /// Declared language → language whose prompts are played (itself unless it has no voice).
    pub voice: HashMap<String, String>,
    pub open_menu: usize,
    pub closed_menu: usize,
    pub special: Vec<(WeeklySpan, usize)>,
    /// Per configured number: languages offered to its callers.
    pub number_languages: Vec<Vec<String>>,
    pub language_select_timeout: Duration,
    /// Whether `serve --trace-dir` captures the region's calls (`trace`, default true) …
    pub trace: bool,
    /// … and per configured number, its own `trace` (the region's when it has none).
    pub number_trace: Vec<bool>,
}

/// The immutable, compiled helpline menu configuration; shared by every call through an `Arc`.
#[derive(Debug)]
pub struct MenuSet {
    version: String,
    pub(crate) regions: Vec<Region>,
    pub(crate) menus: Vec<Menu>,
    e164: HashMap<String, (usize, usize)>,
    national: HashMap<String, (usize, usize)>,
    default_region: Option<usize>,
    prompts_used: BTreeSet<(String, String)>,
    realm: String,
    agents: BTreeMap<AgentId, AgentConfig>,
    /// Agent IDs in the order the files declare them (file, then position).
    agent_order: Vec<AgentId>,
    /// `[supervisors.NAME]`: name → Argon2 PHC string of their password.
    supervisors: BTreeMap<String, String>,
    settings: AgentSettings,
    queues: super::queues::QueueConfigs,
}

/// The digest realm when `[routing]` names none.
pub const DEFAULT_REALM: &str = "helpline";

/// Prompts the automatic language choice plays: `for-language` ("For English, press") then `digit-N`.
pub(crate) const LANGUAGE_PROMPT: &str = "for-language";

/// The digit prompt name for `d`.
pub(crate) fn digit_prompt(d: usize) -> String {
    format!("digit-{d}")
}

impl MenuSet {
    /// The region serving `dialed_user` (Request-URI user part, `tel:`/`sip:` URI or bare number), or
    /// the configured default region.
    pub fn route_dialed(&self, dialed_user: &str) -> Result<RegionId, Unrouted> {
        self.resolve(dialed_user).map(|(r, _)| RegionId(r))
    }

    /// Region index and, when the number is configured, the number's index in that region.
    pub(crate) fn resolve(&self, dialed_user: &str) -> Result<(usize, Option<usize>), Unrouted> {
        let found = match number::parse_dialed(dialed_user) {
            Some(Dialed::International(d)) => self.e164.get(&d),
            Some(Dialed::Digits(d)) => self
                .national
                .get(&d)
                .or_else(|| number::international_candidates(&d).find_map(|c| self.e164.get(c))),
            None => match self.default_region {
                Some(r) => return Ok((r, None)),
                None => return Err(Unrouted::NotANumber),
            },
        };
        match (found, self.default_region) {
            (Some(&(r, n)), _) => Ok((r, Some(n))),
            (None, Some(r)) => Ok((r, None)),
            (None, None) => Err(Unrouted::UnknownNumber),
        }
    }

    /// Whether `serve --trace-dir` captures a call to `dialed_user`: the number's `trace`, else its
    /// region's, default true; a number no region serves (refused 404) is captured too.
    pub fn traced(&self, dialed_user: &str) -> bool {
        match self.resolve(dialed_user) {
            Ok((r, n)) => self.regions.get(r).is_none_or(|region| {
                n.and_then(|n| region.number_trace.get(n).copied())
                    .unwrap_or(region.trace)
            }),
            Err(_) => true,
        }
    }

    /// The configured number (`+` and E.164 digits) `dialed_user` reaches, or `None` when no region
    /// lists it (a caller of the default region included): a label set callers cannot grow.
    pub fn configured_number(&self, dialed_user: &str) -> Option<String> {
        let (region, Some(number)) = self.resolve(dialed_user).ok()? else {
            return None;
        };
        self.e164
            .iter()
            .find(|(_, &(r, n))| r == region && n == number)
            .map(|(digits, _)| format!("+{digits}"))
    }

    /// Name of region `id`.
    pub fn region_name(&self, id: RegionId) -> &str {
        self.regions.get(id.0).map_or("", |r| r.name.as_str())
    }

    /// Every menu's name (the closed set the per-menu analytics label with).
    pub fn menu_names(&self) -> impl Iterator<Item = &str> {
        self.menus.iter().map(|m| m.name.as_str())
    }

    /// A content hash of the sources this set was compiled from (changes whenever any file changes).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every `(language, prompt)` pair a call may play, for preloading audio.
    pub fn prompts_used(&self) -> Vec<(String, String)> {
        self.prompts_used.iter().cloned().collect()
    }

    /// Names of all regions, in configuration order.
    pub fn region_names(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.name.as_str()).collect()
    }

    /// The digest realm agents authenticate in (`[routing] realm`, default `helpline`).
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The agent declared with this ID.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.get(id)
    }

    /// Every declared agent, by ID.
    pub fn agents(&self) -> impl Iterator<Item = &AgentConfig> {
        self.agents.values()
    }

    /// Every declared agent in the order the files declare them (files in name order, then top to
    /// bottom): the configured order top-down and round-robin follow.
    pub fn agents_in_file_order(&self) -> impl Iterator<Item = &AgentConfig> {
        self.agent_order.iter().filter_map(|id| self.agents.get(id))
    }

    /// The queues' settings: `[queue_defaults]` for every queue, and each `[queues."REGION.DEPARTMENT"]`
    /// (over the defaults) for the queues that have one, as `Queues::set_configs` takes them.
    pub fn queue_configs(&self) -> (QueueConfig, HashMap<QueueName, QueueConfig>) {
        self.queues.clone()
    }

    /// The Argon2 PHC string of supervisor `name`'s password (`[supervisors.NAME]`).
    pub fn supervisor_hash(&self, name: &str) -> Option<&str> {
        self.supervisors.get(name).map(String::as_str)
    }

    /// The registrar's, presence's and queues' settings (`[routing]`, `[queue_defaults]`).
    pub fn agent_settings(&self) -> &AgentSettings {
        &self.settings
    }
}

/// 64-bit FNV-1a: stable across Rust versions, unlike `DefaultHasher`, so versions compare across runs.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Parses `"5s"`, `"1500ms"`, `"0s"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}` (write e.g. \"5s\" or \"1500ms\")");
    let (n, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else {
        return Err(bad());
    };
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(ms) if ms <= 600_000 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("duration `{text}` is longer than 10 minutes")),
    }
}

/// Where a value came from: file index and byte span.
#[derive(Debug, Clone)]
pub(super) struct Loc {
    pub file: usize,
    pub span: Range<usize>,
}

pub(super) struct Ctx<'a> {
    pub files: &'a [(PathBuf, String)],
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn push(&mut self, sev: Severity, loc: &Loc, message: String, hint: Option<String>) {
        let (path, src) = match self.files.get(loc.file) {
            Some((p, s)) => (p.clone(), s.as_str()),
            None => (PathBuf::new(), ""),
        };
        let (line, col) = line_col(src, loc.span.start);
        self.diags.push(Diagnostic {
            file: path,
            line,
            col,
            message,
            hint,
            severity: sev,
        });
    }
    pub(super) fn err(&mut self, loc: &Loc, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Error, loc, message.into(), hint);
    }
}

pub(super) fn loc<T>(file: usize, s: &Spanned<T>) -> Loc {
    Loc {
        file,
        span: s.span(),
    }
}

/// A menu before its actions are compiled, with what the whole-set checks need.
struct MenuSrc<'a> {
    name: String,
    file: usize,
    name_loc: Loc,
    model: &'a MenuModel,
}

/// Compiles sources (`(path, text)` pairs, in the order to report them) into a [`MenuSet`].
/// Warnings are returned alongside a successful set; any error fails with every diagnostic found.
pub fn compile(
    files: &[(PathBuf, String)],
    prompts: &dyn PromptCheck,
) -> Result<(Arc<MenuSet>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Ctx {
        files,
        diags: Vec::new(),
    };
    let mut version = 0xcbf2_9ce4_8422_2325;
    let mut parsed: Vec<(usize, MenuFile)> = Vec::new();
    for (i, (path, src)) in files.iter().enumerate() {
        version = fnv1a(path.to_string_lossy().as_bytes(), version);
        version = fnv1a(src.as_bytes(), version);
        match menu::parse(src) {
            Ok(f) => parsed.push((i, f)),
            Err(errors) => {
                for p in errors {
                    let hint = p.hint();
                    cx.err(
                        &Loc {
                            file: i,
                            span: p.span,
                        },
                        p.message,
                        hint,
                    );
                }
            }
        }
    }

    // Names first, so references in any file resolve regardless of file order.
    let mut menu_srcs: Vec<MenuSrc> = Vec::new();
    let mut menu_index: HashMap<String, usize> = HashMap::new();
    let mut region_srcs: Vec<(usize, Loc, String, &RegionModel)> = Vec::new();
    let mut routing = None;
    for (file, f) in &parsed {
        if let Some(r) = &f.routing {
            if routing.is_some() {
                cx.err(
                    &loc(*file, r),
                    "second [routing] table",
                    Some("keep exactly one [routing] table across all files".into()),
                );
            } else {
                routing = Some((*file, r));
            }
        }
        for (name, m) in &f.menus {
            let name_loc = loc(*file, name);
            if let Some(&prev) = menu_index.get(name.get_ref()) {
                let p = &menu_srcs[prev];
                let (pl, _) = line_col(&files[p.file].1, p.name_loc.span.start);
                cx.err(
                    &name_loc,
                    format!("menu `{}` is defined twice", name.get_ref()),
                    Some(format!(
                        "first definition is at {}:{pl}",
                        files[p.file].0.display()
                    )),
                );
                continue;
            }
            menu_index.insert(name.get_ref().clone(), menu_srcs.len());
            menu_srcs.push(MenuSrc {
                name: name.get_ref().clone(),
                file: *file,
                name_loc,
                model: m.get_ref(),
            });
        }
        for (name, r) in &f.regions {
            if region_srcs.iter().any(|(_, _, n, _)| n == name.get_ref()) {
                cx.err(
                    &loc(*file, name),
                    format!("region `{}` is defined twice", name.get_ref()),
                    None,
                );
                continue;
            }
            region_srcs.push((*file, loc(*file, name), name.get_ref().clone(), r.get_ref()));
        }
    }
    if routing.is_none() && !parsed.is_empty() {
        cx.err(
            &Loc {
                file: parsed[0].0,
                span: 0..0,
            },
            "no [routing] table in any file",
            Some("add [routing] with `departments = [...]`".into()),
        );
    }
    let departments: Vec<String> = routing
        .map(|(_, r)| {
            r.get_ref()
                .departments
                .iter()
                .map(|d| d.get_ref().clone())
                .collect()
        })
        .unwrap_or_default();

    let mut comp = Compiler {
        menu_index: &menu_index,
        departments: &departments,
        prompt_refs: vec![Vec::new(); menu_srcs.len()],
        edges: vec![Vec::new(); menu_srcs.len()],
        languages_used: Vec::new(),
    };

    // Menus.
    let mut menus = Vec::with_capacity(menu_srcs.len());
    let mut explicit_exit = vec![false; menu_srcs.len()];
    let mut way_out_local = vec![false; menu_srcs.len()];
    for (id, src) in menu_srcs.iter().enumerate() {
        let (menu, exits) = comp.menu(&mut cx, id, src);
        way_out_local[id] = exits;
        explicit_exit[id] =
            src.model.on_max_failures.is_some() || src.model.on_max_timeouts.is_some();
        menus.push(menu);
    }

    // Regions.
    let mut regions = Vec::new();
    let mut e164: HashMap<String, (usize, usize)> = HashMap::new();
    let mut national: HashMap<String, (usize, usize)> = HashMap::new();
    let mut number_locs: HashMap<String, Loc> = HashMap::new();
    let mut region_prompts: Vec<BTreeSet<usize>> = Vec::new();
    let mut region_lang_locs: Vec<Vec<Loc>> = Vec::new();
    for (rid, (file, _name_loc, name, r)) in region_srcs.iter().enumerate() {
        let file = *file;
        let tz = hours::parse_tz(r.time_zone.get_ref()).unwrap_or_else(|m| {
            let hint = did_you_mean(
                r.time_zone.get_ref(),
                chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()),
            );
            cx.err(
                &loc(file, &r.time_zone),
                m,
                hint.or(Some("use an IANA name such as Europe/Paris".into())),
            );
            chrono_tz::UTC
        });
        let mut languages = Vec::new();
        let mut lang_locs = Vec::new();
        for l in r.languages.get_ref() {
            let _ = check_language(&mut cx, file, l);
            if languages.contains(l.get_ref()) {
                cx.err(
                    &loc(file, l),
                    format!("language `{}` is listed twice", l.get_ref()),
                    None,
                );
                continue;
            }
            languages.push(l.get_ref().clone());
            lang_locs.push(loc(file, l));
        }
        if languages.is_empty() {
            cx.err(
                &loc(file, &r.languages),
                "a region needs at least one language",
                None,
            );
        }
        let mut holidays = BTreeSet::new();
        for h in &r.holidays {
            match hours::parse_date(h.get_ref()) {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(m) => cx.err(&loc(file, h), m, Some("write dates as YYYY-MM-DD".into())),
            }
        }
        let mut open = Vec::new();
        for w in &r.hours {
            let w = w.get_ref();
            if let Some(span) = window(&mut cx, file, &w.days, &w.open, &w.close) {
                open.push(span);
            }
        }
        let mut special = Vec::new();
        let mut entry = BTreeSet::new();
        for s in &r.special {
            let s = s.get_ref();
            let span = window(&mut cx, file, &s.days, &s.open, &s.close);
            if let (Some(span), Some(m)) = (span, comp.menu_ref(&mut cx, file, &s.menu)) {
                special.push((span, m));
                entry.insert(m);
            }
        }
        let open_menu = comp.menu_ref(&mut cx, file, &r.open_menu);
        let closed_menu = comp.menu_ref(&mut cx, file, &r.closed_menu);
        entry.extend(open_menu);
        entry.extend(closed_menu);
        let language_select_timeout = match &r.language_select_timeout {
            Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|m| {
                cx.err(&loc(file, t), m, None);
                Duration::from_secs(5)
            }),
            None => Duration::from_secs(5),
        };
        let mut number_languages = Vec::new();
        let trace = r.trace.unwrap_or(true);
        let mut number_trace = Vec::new();
        for n in &r.numbers {
            let n = n.get_ref();
            number_trace.push(n.trace.unwrap_or(trace));
            let langs = match &n.languages {
                Some(ls) => {
                    for l in ls.get_ref() {
                        if !languages.contains(l.get_ref()) {
                            cx.err(
                                &loc(file, l),
                                format!(
                                    "language `{}` is not one of region `{name}`'s languages",
                                    l.get_ref()
                                ),
                                did_you_mean(l.get_ref(), languages.iter().map(String::as_str)),
                            );
                        }
                    }
                    ls.get_ref().iter().map(|l| l.get_ref().clone()).collect()
                }
                None => languages.clone(),
            };
            let idx = number_languages.len();
            number_languages.push(langs);
            match number::normalise_published(n.country.get_ref(), n.number.get_ref()) {
                Ok(p) => {
                    let here = loc(file, &n.number);
                    if let Some(prev) = number_locs.get(&p.e164) {
                        let (pl, _) = line_col(&files[prev.file].1, prev.span.start);
                        cx.err(
                            &here,
                            format!("dialed number +{} is listed twice", p.e164),
                            Some(format!(
                                "first listed at {}:{pl}",
                                files[prev.file].0.display()
                            )),
                        );
                        continue;
                    }
                    number_locs.insert(p.e164.clone(), here.clone());
                    e164.insert(p.e164.clone(), (rid, idx));
                    for nat in p.national {
                        match national.get(&nat) {
                            Some(&(other, _)) if other != rid => cx.err(
                                &here,
                                format!(
                                    "national form `{nat}` of +{} is also a number of region `{}`",
                                    p.e164, region_srcs[other].2
                                ),
                                Some(
                                    "callers dialing it nationally could reach either region"
                                        .into(),
                                ),
                            ),
                            _ => {
                                national.insert(nat, (rid, idx));
                            }
                        }
                    }
                }
                Err(e @ number::NumberError::UnknownCountry(_)) => cx.err(
                    &loc(file, &n.country),
                    e.to_string(),
                    did_you_mean(n.country.get_ref(), number::known_countries())
                        .or(Some("countries are ISO 3166 codes such as GB".into())),
                ),
                Err(e) => cx.err(&loc(file, &n.number), e.to_string(), None),
            }
        }
        region_prompts.push(entry);
        region_lang_locs.push(lang_locs);
        regions.push(Region {
            name: name.clone(),
            schedule: Schedule { tz, open, holidays },
            languages,
            voice: HashMap::new(),
            open_menu: open_menu.unwrap_or(0),
            closed_menu: closed_menu.unwrap_or(0),
            special,
            number_languages,
            language_select_timeout,
            trace,
            number_trace,
        });
    }
    // A `language` action must name a language some region declares; in a region that does not speak
    // it the engine skips the switch, so shared menus may offer it.
    for (l, lc) in std::mem::take(&mut comp.languages_used) {
        if !regions.iter().any(|r| r.languages.contains(&l)) {
            cx.err(
                &lc,
                format!("language `{l}` is not declared by any region"),
                None,
            );
        }
    }

    let realm = match routing.and_then(|(file, r)| Some((file, r.get_ref().realm.as_ref()?))) {
        Some((file, realm)) => {
            if !crate::agent::digest::is_valid_realm(realm.get_ref()) {
                cx.err(
                    &loc(file, realm),
                    format!("invalid realm `{}`", realm.get_ref()),
                    Some("use printable text without quotes or backslashes, e.g. helpline.example.org".into()),
                );
            }
            realm.get_ref().clone()
        }
        None => DEFAULT_REALM.to_owned(),
    };
    let known = super::agents::Known {
        regions: regions
            .iter()
            .map(|r| (r.name.as_str(), r.languages.as_slice()))
            .collect(),
        departments: &departments,
    };
    let (agents, agent_order) = super::agents::compile_agents(&mut cx, &parsed, &known);
    let settings = super::settings::compile_settings(&mut cx, &parsed, routing);
    let supervisors = super::supervisors::compile_supervisors(&mut cx, &parsed);

    let default_region = routing.and_then(|(file, r)| {
        let d = r.get_ref().default_region.as_ref()?;
        let found = regions.iter().position(|r| &r.name == d.get_ref());
        if found.is_none() {
            cx.err(
                &loc(file, d),
                format!("unknown region `{}`", d.get_ref()),
                did_you_mean(d.get_ref(), regions.iter().map(|r| r.name.as_str())),
            );
        }
        found
    });

    // Reachability from every region's entry menus.
    let mut reached = vec![false; menus.len()];
    let mut region_menus: Vec<BTreeSet<usize>> = Vec::new();
    for entry in &region_prompts {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = entry.iter().copied().collect();
        while let Some(m) = stack.pop() {
            if m < menus.len() && seen.insert(m) {
                reached[m] = true;
                stack.extend(comp.edges[m].iter().copied());
            }
        }
        region_menus.push(seen);
    }
    for (id, src) in menu_srcs.iter().enumerate() {
        if !reached[id] && !region_srcs.is_empty() {
            cx.err(
                &src.name_loc,
                format!("menu `{}` is unreachable", menus[id].name),
                Some(
                    "no region's open, closed or special menu leads to it; remove it or add a key"
                        .into(),
                ),
            );
        }
    }

    // Ways out: a menu is fine if a route, transfer or hang-up is reachable through its keys and
    // explicitly configured max-failure/timeout actions; the implicit default hang-up does not count,
    // because a caller who presses nothing wrong could never leave.
    let mut exits = way_out_local.clone();
    loop {
        let mut changed = false;
        for m in 0..menus.len() {
            if !exits[m] && comp.edges[m].iter().any(|&n| exits.get(n) == Some(&true)) {
                exits[m] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (id, src) in menu_srcs.iter().enumerate() {
        if !exits[id] {
            let hint = if explicit_exit[id] {
                "add a key or max-failure action that routes, transfers or hangs up"
            } else {
                "add a key that routes, transfers or hangs up, or set on_max_timeouts"
            };
            cx.err(
                &src.name_loc,
                format!("menu `{}` has no way out", menus[id].name),
                Some(hint.into()),
            );
        }
    }

    // Prompts, per region and declared language.
    let mut prompts_used = BTreeSet::new();
    // Missing prompts, grouped by reference so a typo shared by every region is one line, not one per
    // language: (prompt, file, offset) → (where, languages, first reason).
    type Missing = (Loc, BTreeSet<String>, String);
    let mut missing_prompts: BTreeMap<(String, usize, usize), Missing> = BTreeMap::new();
    for (rid, region) in regions.iter_mut().enumerate() {
        let mut needed: Vec<(String, Option<Loc>)> = Vec::new();
        let mut names = BTreeSet::new();
        for &m in &region_menus[rid] {
            for (p, l) in &comp.prompt_refs[m] {
                if names.insert(p.clone()) {
                    needed.push((p.clone(), Some(l.clone())));
                }
            }
        }
        let max_choice = region
            .number_languages
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        if max_choice > 1 {
            for p in std::iter::once(LANGUAGE_PROMPT.to_owned())
                .chain((1..=max_choice).map(digit_prompt))
            {
                if names.insert(p.clone()) {
                    needed.push((p, None));
                }
            }
        }
        let region_loc = &region_srcs[rid].1;
        let mut voiced = Vec::new();
        let mut missing: HashMap<String, Vec<(String, Option<Loc>, String)>> = HashMap::new();
        for lang in &region.languages {
            let miss: Vec<_> = needed
                .iter()
                .filter_map(|(p, l)| {
                    prompts
                        .check(lang, p)
                        .err()
                        .map(|e| (p.clone(), l.clone(), e))
                })
                .collect();
            if needed.is_empty() || miss.len() < needed.len() {
                voiced.push(lang.clone());
            }
            missing.insert(lang.clone(), miss);
        }
        let explicit_fallback = region_srcs[rid].3.voice_fallback.as_ref();
        if let Some(f) = explicit_fallback {
            if !region.languages.contains(f.get_ref()) {
                cx.err(
                    &loc(region_srcs[rid].0, f),
                    format!(
                        "voice_fallback `{}` is not one of the region's languages",
                        f.get_ref()
                    ),
                    None,
                );
            }
        }
        for (i, lang) in region.languages.clone().iter().enumerate() {
            let lang_loc = region_lang_locs[rid].get(i).unwrap_or(region_loc);
            if voiced.contains(lang) {
                region.voice.insert(lang.clone(), lang.clone());
                for (p, l, e) in missing.remove(lang).unwrap_or_default() {
                    let at = l.unwrap_or_else(|| lang_loc.clone());
                    missing_prompts
                        .entry((p, at.file, at.span.start))
                        .or_insert_with(|| (at, BTreeSet::new(), e))
                        .1
                        .insert(lang.clone());
                }
                continue;
            }
            // No prompt at all in this language: the language has no voice; fall back.
            let fallback = explicit_fallback
                .map(|f| f.get_ref().clone())
                .filter(|f| voiced.contains(f))
                .or_else(|| {
                    let n = region.languages.len();
                    (1..n)
                        .map(|k| &region.languages[(i + k) % n])
                        .find(|l| voiced.contains(l))
                        .cloned()
                });
            match fallback {
                Some(f) => {
                    cx.push(
                        Severity::Warning,
                        lang_loc,
                        format!(
                            "language `{lang}` of region `{}` has no prompts; callers will hear `{f}` instead",
                            region.name
                        ),
                        Some(format!("generate prompts/{lang}/ if a voice becomes available")),
                    );
                    region.voice.insert(lang.clone(), f);
                }
                None => cx.err(
                    lang_loc,
                    format!("no language of region `{}` has its prompts", region.name),
                    Some("generate the prompts (scripts/gen-prompts.sh)".into()),
                ),
            }
        }
        for voice in region.voice.values() {
            for (p, _) in &needed {
                prompts_used.insert((voice.clone(), p.clone()));
            }
        }
    }

    for ((p, _, _), (at, langs, reason)) in missing_prompts {
        let langs: Vec<String> = langs.into_iter().collect();
        cx.err(
            &at,
            format!("prompt `{p}` is {reason} in {}", langs.join(", ")),
            Some(format!(
                "add prompts/<lang>/{p}.wav, e.g. prompts/{}/{p}.wav",
                langs[0]
            )),
        );
    }
    let queue_known = super::queues::Known {
        regions: regions
            .iter()
            .map(|r| {
                let mut voices: Vec<String> = r.voice.values().cloned().collect();
                voices.sort();
                voices.dedup();
                (r.name.as_str(), voices)
            })
            .collect(),
        departments: &departments,
        prompts,
    };
    let queues =
        super::queues::compile_queues(&mut cx, &parsed, &settings, &queue_known, &mut prompts_used);
    feature_prompts(&agents, prompts, &mut prompts_used);
    cx.diags
        .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    if cx.diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(cx.diags);
    }
    let set = MenuSet {
        version: format!("{version:016x}"),
        regions,
        menus,
        e164,
        national,
        default_region,
        prompts_used,
        realm,
        agents,
        agent_order,
        supervisors,
        settings,
        queues,
    };
    Ok((Arc::new(set), cx.diags))
}

/// Whether `name` can name a variable: lowercase letters, digits and `_`, starting with a letter.
fn is_variable_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Variables whose `X-Helpline-<Name>` header helpline writes itself for every routed call.
const RESERVED_VARIABLES: [&str; 3] = ["region", "queue", "language"];

/// Longest value a `set` may give (it travels in a SIP header and the CDR).
const MAX_SET_VALUE: usize = 64;

/// A `route`'s `set = { name = "value" }`: names as `collect` allows (not the reserved ones), values
/// non-empty printable strings (they become SIP header values, so no control characters).
fn route_set(
    cx: &mut Ctx,
    file: usize,
    set: &Spanned<BTreeMap<Text, Spanned<toml::Value>>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in set.get_ref() {
        let n = name.get_ref();
        if !is_variable_name(n) {
            cx.err(
                &loc(file, name),
                format!("invalid variable name `{n}`"),
                Some("use lowercase letters, digits and _".into()),
            );
        } else if RESERVED_VARIABLES.contains(&n.as_str()) {
            cx.err(
                &loc(file, name),
                format!("variable `{n}` is set by helpline itself"),
                Some("choose another name, e.g. category".into()),
            );
        }
        let Some(v) = value.get_ref().as_str() else {
            cx.err(
                &loc(file, value),
                format!("`set.{n}` must be a string"),
                Some(format!("write {n} = \"…\"")),
            );
            continue;
        };
        let printable = !v.trim().is_empty() && !v.chars().any(char::is_control);
        if !printable || v.chars().count() > MAX_SET_VALUE {
            cx.err(
                &loc(file, value),
                format!("`set.{n}` must be 1 to {MAX_SET_VALUE} printable characters"),
                None,
            );
            continue;
        }
        out.push((n.clone(), v.to_owned()));
    }
    out
}

/// Largest `priority` a `route` may give (either sign): a bound so that a typo does not go unnoticed.
pub const MAX_ROUTE_PRIORITY: i64 = 1000;

/// A `route`'s `priority`: an integer within ±[`MAX_ROUTE_PRIORITY`].
fn route_priority(cx: &mut Ctx, file: usize, p: &Spanned<i64>) -> i32 {
    match i32::try_from(*p.get_ref()) {
        Ok(n) if i64::from(n).abs() <= MAX_ROUTE_PRIORITY => n,
        _ => {
            cx.err(
                &loc(file, p),
                format!(
                    "priority must be between -{MAX_ROUTE_PRIORITY} and {MAX_ROUTE_PRIORITY}, not {}",
                    p.get_ref()
                ),
                Some("higher is served first; the default is 0".into()),
            );
            0
        }
    }
}

/// Prompts an agent's feature codes play (`*50`, `*51`), in the agent's language.
pub const FEATURE_PROMPTS: [&str; 2] = ["agent-on-break", "agent-available"];

/// Adds the feature-code prompts to the preloaded set, in every voice the menus use and every language
/// an agent speaks, where they exist. Not an error when absent: the call layer falls back to English
/// and, without any, the code still takes effect and only the confirmation is silent.
fn feature_prompts(
    agents: &BTreeMap<AgentId, AgentConfig>,
    prompts: &dyn PromptCheck,
    used: &mut BTreeSet<(String, String)>,
) {
    if agents.is_empty() {
        return;
    }
    let mut langs: BTreeSet<String> = used.iter().map(|(l, _)| l.clone()).collect();
    langs.insert("en".to_owned());
    langs.extend(agents.values().flat_map(|a| a.languages.iter().cloned()));
    for lang in langs {
        for p in FEATURE_PROMPTS {
            if prompts.check(&lang, p).is_ok() {
                used.insert((lang.clone(), p.to_owned()));
            }
        }
    }
}

/// Reports a language code that is not 2–3 lowercase letters; returns whether it is one.
pub(super) fn check_language(cx: &mut Ctx, file: usize, l: &Text) -> bool {
    let ok =
        (2..=3).contains(&l.get_ref().len()) && l.get_ref().chars().all(|c| c.is_ascii_lowercase());
    if !ok {
        cx.err(
            &loc(file, l),
            format!("invalid language code `{}`", l.get_ref()),
            Some("use a lowercase ISO 639 code such as en, zh, es".into()),
        );
    }
    ok
}

fn window(cx: &mut Ctx, file: usize, days: &Text, open: &Text, close: &Text) -> Option<WeeklySpan> {
    let d = hours::parse_days(days.get_ref()).map_err(|m| cx.err(&loc(file, days), m, None));
    let o = hours::parse_time(open.get_ref()).map_err(|m| {
        cx.err(
            &loc(file, open),
            m,
            Some("write times as HH:MM, 00:00 to 24:00".into()),
        )
    });
    let c = hours::parse_time(close.get_ref()).map_err(|m| {
        cx.err(
            &loc(file, close),
            m,
            Some("write times as HH:MM, 00:00 to 24:00".into()),
        )
    });
    let (days, open_m, close_m) = (d.ok()?, o.ok()?, c.ok()?);
    if open_m == 1440 {
        cx.err(
            &loc(file, open),
            "a window cannot open at 24:00",
            Some("use 00:00".into()),
        );
        return None;
    }
    Some(WeeklySpan {
        days,
        open: open_m,
        close: close_m,
    })
}

struct Compiler<'a> {
    menu_index: &'a HashMap<String, usize>,
    departments: &'a [String],
    /// Per menu: prompts it (and its actions) plays, with where they are named.
    prompt_refs: Vec<Vec<(String, Loc)>>,
    /// Per menu: menus its actions lead to.
    edges: Vec<Vec<usize>>,
    /// `language` actions, checked against regions once those are compiled.
    languages_used: Vec<(String, Loc)>,
}

const ACTIONS: [&str; 10] = [
    "menu", "back", "top", "repeat", "route", "collect", "language", "play", "hangup", "transfer",
];

impl Compiler<'_> {
    fn menu_ref(&mut self, cx: &mut Ctx, file: usize, name: &Text) -> Option<usize> {
        let found = self.menu_index.get(name.get_ref()).copied();
        if found.is_none() {
            cx.err(
                &loc(file, name),
                format!("unknown menu `{}`", name.get_ref()),
                did_you_mean(name.get_ref(), self.menu_index.keys().map(String::as_str)),
            );
        }
        found
    }

    fn prompts(&mut self, menu: usize, file: usize, list: &[Text]) -> Vec<String> {
        for p in list {
            self.prompt_refs[menu].push((p.get_ref().clone(), loc(file, p)));
        }
        list.iter().map(|p| p.get_ref().clone()).collect()
    }

    fn duration(cx: &mut Ctx, file: usize, t: &Option<Text>, default: Duration) -> Duration {
        match t {
            Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|m| {
                cx.err(&loc(file, t), m, None);
                default
            }),
            None => default,
        }
    }

    fn terminator(cx: &mut Ctx, file: usize, t: &Option<Text>) -> Option<char> {
        let t = match t {
            None => return Some('#'),
            Some(t) => t,
        };
        let mut chars = t.get_ref().chars();
        match (chars.next(), chars.next()) {
            (None, _) => None,
            (Some(c), None) if matches!(c, '0'..='9' | '*' | '#') => Some(c),
            _ => {
                cx.err(
                    &loc(file, t),
                    format!("invalid terminator `{}`", t.get_ref()),
                    Some("use one key: `#`, `*`, a digit, or \"\" for none".into()),
                );
                Some('#')
            }
        }
    }

    /// Compiles a menu; the bool says whether the menu itself holds a terminal action.
    fn menu(&mut self, cx: &mut Ctx, id: usize, src: &MenuSrc) -> (Menu, bool) {
        let (m, file) = (src.model, src.file);
        let greeting = self.prompts(id, file, &m.greeting);
        if greeting.is_empty() {
            cx.err(
                &src.name_loc,
                "a menu needs at least one greeting prompt",
                None,
            );
        }
        let short_greeting = match &m.short_greeting {
            Some(s) => self.prompts(id, file, s),
            None => greeting.clone(),
        };
        let invalid = self.prompts(id, file, &m.invalid);
        let exit = self.prompts(id, file, &m.exit);
        let first_key_timeout =
            Self::duration(cx, file, &m.first_key_timeout, Duration::from_secs(5));
        let inter_digit_timeout = m.inter_digit_timeout.as_ref().map(|t| {
            parse_duration(t.get_ref()).unwrap_or_else(|e| {
                cx.err(&loc(file, t), e, None);
                Duration::from_secs(2)
            })
        });
        let count = |cx: &mut Ctx, v: &Option<Spanned<u32>>| match v {
            Some(n) if *n.get_ref() == 0 => {
                cx.err(&loc(file, n), "must be at least 1", None);
                1
            }
            Some(n) => *n.get_ref(),
            None => 3,
        };
        let max_failures = count(cx, &m.max_failures);
        let max_timeouts = count(cx, &m.max_timeouts);
        let terminator = Self::terminator(cx, file, &m.terminator);
        let mut exits = false;
        let mut keys = BTreeMap::new();
        for (k, a) in &m.keys {
            let kl = loc(file, k);
            let key = k.get_ref();
            if key.is_empty() || !key.chars().all(|c| matches!(c, '0'..='9' | '*' | '#')) {
                cx.err(
                    &kl,
                    format!("invalid key `{key}`"),
                    Some("keys are digits, `*` and `#`".into()),
                );
                continue;
            }
            if let Some(t) = terminator {
                if key.contains(t) {
                    cx.err(
                        &kl,
                        format!("key `{key}` contains the terminator `{t}`"),
                        Some("pick another key or set `terminator`".into()),
                    );
                }
            }
            if m.inter_digit_timeout.is_none() {
                if let Some(longer) = m.keys.keys().find(|o| {
                    o.get_ref().len() > key.len() && o.get_ref().starts_with(key.as_str())
                }) {
                    cx.err(
                        &kl,
                        format!("key `{key}` is both an option and the prefix of `{}`", longer.get_ref()),
                        Some("set inter_digit_timeout so the menu knows how long to wait for more keys".into()),
                    );
                }
            }
            let (action, terminal) = self.action(cx, id, file, a);
            exits |= terminal;
            keys.insert(key.clone(), action);
        }
        let default_exit = |reason: &str| Action::Hangup {
            prompts: Vec::new(),
            reason: reason.to_owned(),
        };
        let on_max_failures = match &m.on_max_failures {
            Some(a) => {
                let (action, terminal) = self.action(cx, id, file, a);
                exits |= terminal;
                action
            }
            None => default_exit("max-failures"),
        };
        let on_max_timeouts = match &m.on_max_timeouts {
            Some(a) => {
                let (action, terminal) = self.action(cx, id, file, a);
                exits |= terminal;
                action
            }
            None => default_exit("max-timeouts"),
        };
        let menu = Menu {
            name: src.name.clone(),
            greeting,
            short_greeting,
            invalid,
            exit,
            first_key_timeout,
            inter_digit_timeout,
            max_failures,
            max_timeouts,
            barge_in: m.barge_in.unwrap_or(true),
            terminator,
            keys,
            on_max_failures,
            on_max_timeouts,
        };
        (menu, exits)
    }

    /// Compiles one action table; the bool says whether it (or what follows it) ends the IVR part of
    /// the call (route, transfer, hang-up) or leaves to another menu that is checked on its own.
    fn action(
        &mut self,
        cx: &mut Ctx,
        menu: usize,
        file: usize,
        a: &Spanned<ActionModel>,
    ) -> (Action, bool) {
        let m = a.get_ref();
        let kind = m.action.get_ref().as_str();
        let here = loc(file, &m.action);
        let fallback = (Action::Repeat, true);
        if !ACTIONS.contains(&kind) {
            cx.err(
                &here,
                format!("unknown action `{kind}`"),
                did_you_mean(kind, ACTIONS).or(Some(format!("actions: {}", ACTIONS.join(", ")))),
            );
            return fallback;
        }
        // Which parameters each action takes; anything else is reported so a typo like
        // `action = "route"` + `menu = ...` does not silently do nothing.
        let allowed: &[&str] = match kind {
            "menu" => &["menu"],
            "route" => &["department", "set", "priority"],
            "language" => &["language", "then"],
            "play" => &["prompt", "then"],
            "hangup" => &["prompt", "reason"],
            "transfer" => &["uri"],
            "collect" => &[
                "variable",
                "prompt",
                "min_length",
                "max_length",
                "terminator",
                "pattern",
                "invalid",
                "max_attempts",
                "first_key_timeout",
                "inter_digit_timeout",
                "then",
                "on_failure",
            ],
            _ => &[],
        };
        let present: [(&str, Option<Range<usize>>); 20] = [
            ("set", m.set.as_ref().map(Spanned::span)),
            ("priority", m.priority.as_ref().map(Spanned::span)),
            ("menu", m.menu.as_ref().map(Spanned::span)),
            ("department", m.department.as_ref().map(Spanned::span)),
            ("language", m.language.as_ref().map(Spanned::span)),
            ("uri", m.uri.as_ref().map(Spanned::span)),
            ("prompt", m.prompt.as_ref().map(Spanned::span)),
            ("reason", m.reason.as_ref().map(Spanned::span)),
            ("variable", m.variable.as_ref().map(Spanned::span)),
            ("min_length", m.min_length.as_ref().map(Spanned::span)),
            ("max_length", m.max_length.as_ref().map(Spanned::span)),
            ("terminator", m.terminator.as_ref().map(Spanned::span)),
            ("pattern", m.pattern.as_ref().map(Spanned::span)),
            ("invalid", m.invalid.as_ref().map(Spanned::span)),
            ("max_attempts", m.max_attempts.as_ref().map(Spanned::span)),
            (
                "first_key_timeout",
                m.first_key_timeout.as_ref().map(Spanned::span),
            ),
            (
                "inter_digit_timeout",
                m.inter_digit_timeout.as_ref().map(Spanned::span),
            ),
            ("then", m.then.as_ref().map(|t| t.span())),
            ("on_failure", m.on_failure.as_ref().map(|t| t.span())),
            ("action", None),
        ];
        for (key, span) in present {
            if let Some(span) = span {
                if !allowed.contains(&key) {
                    cx.err(
                        &Loc { file, span },
                        format!("key `{key}` does nothing for action `{kind}`"),
                        Some(if allowed.is_empty() {
                            format!("action `{kind}` takes no parameters")
                        } else {
                            format!("action `{kind}` takes: {}", allowed.join(", "))
                        }),
                    );
                }
            }
        }
        let required = |cx: &mut Ctx, v: &Option<Text>, key: &str| -> Option<String> {
            if v.is_none() {
                cx.err(&here, format!("action `{kind}` needs `{key}`"), None);
            }
            v.as_ref().map(|v| v.get_ref().clone())
        };
        let then = |this: &mut Self, cx: &mut Ctx, t: &Option<Box<Spanned<ActionModel>>>| {
            t.as_ref().map(|t| {
                let (a, terminal) = this.action(cx, menu, file, t);
                (Box::new(a), terminal)
            })
        };
        match kind {
            "menu" => {
                let Some(target) = m.menu.as_ref() else {
                    cx.err(&here, "action `menu` needs `menu`", None);
                    return fallback;
                };
                match self.menu_ref(cx, file, target) {
                    Some(t) => {
                        self.edges[menu].push(t);
                        (Action::Menu(t), false)
                    }
                    None => fallback,
                }
            }
            "back" => (Action::Back, true),
            "top" => (Action::Top, true),
            "repeat" => (Action::Repeat, false),
            "route" => {
                let Some(d) = required(cx, &m.department, "department") else {
                    return fallback;
                };
                if !self.departments.contains(&d) {
                    if let Some(t) = &m.department {
                        cx.err(
                            &loc(file, t),
                            format!("unknown department `{d}`"),
                            did_you_mean(&d, self.departments.iter().map(String::as_str)).or(Some(
                                format!("departments: {}", self.departments.join(", ")),
                            )),
                        );
                    }
                }
                let set = m
                    .set
                    .as_ref()
                    .map(|s| route_set(cx, file, s))
                    .unwrap_or_default();
                if let Some(t) = &m.department {
                    // A routed caller hears it as they join the line: wanted in every language.
                    self.prompt_refs[menu]
                        .push((super::CONNECTING_PROMPT.to_owned(), loc(file, t)));
                }
                let priority = m
                    .priority
                    .as_ref()
                    .map_or(0, |p| route_priority(cx, file, p));
                (
                    Action::Route {
                        department: d,
                        set,
                        priority,
                    },
                    true,
                )
            }
            "transfer" => {
                let Some(uri) = required(cx, &m.uri, "uri") else {
                    return fallback;
                };
                if let Some(t) = &m.uri {
                    if let Err(e) = super::transfer::transfer_target(&uri) {
                        cx.err(&loc(file, t), e.message, Some(e.hint));
                    }
                    // A failed transfer plays this prompt: `check` wants it in every language.
                    self.prompt_refs[menu].push((
                        super::transfer::TRANSFER_FAILED_PROMPT.to_owned(),
                        loc(file, t),
                    ));
                }
                (Action::Transfer { uri }, true)
            }
            "hangup" => {
                let prompts = m
                    .prompt
                    .as_ref()
                    .map(|p| self.prompts(menu, file, p.get_ref()))
                    .unwrap_or_default();
                let reason = m
                    .reason
                    .as_ref()
                    .map_or_else(|| "menu-hangup".to_owned(), |r| r.get_ref().clone());
                (Action::Hangup { prompts, reason }, true)
            }
            "play" => {
                let prompts = match &m.prompt {
                    Some(p) if !p.get_ref().is_empty() => self.prompts(menu, file, p.get_ref()),
                    _ => {
                        cx.err(&here, "action `play` needs `prompt`", None);
                        Vec::new()
                    }
                };
                let t = then(self, cx, &m.then);
                let terminal = t.as_ref().is_some_and(|(_, x)| *x);
                (
                    Action::Play {
                        prompts,
                        then: t.map(|(a, _)| a),
                    },
                    terminal,
                )
            }
            "language" => {
                let Some(l) = required(cx, &m.language, "language") else {
                    return fallback;
                };
                if let Some(t) = &m.language {
                    self.languages_used.push((l.clone(), loc(file, t)));
                }
                let t = then(self, cx, &m.then);
                let terminal = t.as_ref().is_some_and(|(_, x)| *x);
                (
                    Action::Language {
                        language: l,
                        then: t.map(|(a, _)| a),
                    },
                    terminal,
                )
            }
            _ => self.collect(cx, menu, file, m, &here),
        }
    }

    fn collect(
        &mut self,
        cx: &mut Ctx,
        menu: usize,
        file: usize,
        m: &ActionModel,
        here: &Loc,
    ) -> (Action, bool) {
        if m.variable.is_none() {
            cx.err(here, "action `collect` needs `variable`", None);
        }
        let variable = m.variable.as_ref().map_or_else(String::new, |v| {
            if !is_variable_name(v.get_ref()) {
                cx.err(
                    &loc(file, v),
                    format!("invalid variable name `{}`", v.get_ref()),
                    Some("use lowercase letters, digits and _".into()),
                );
            }
            v.get_ref().clone()
        });
        let prompt = match &m.prompt {
            Some(p) if !p.get_ref().is_empty() => self.prompts(menu, file, p.get_ref()),
            _ => {
                cx.err(here, "action `collect` needs `prompt`", None);
                Vec::new()
            }
        };
        let invalid = m
            .invalid
            .as_ref()
            .map(|p| self.prompts(menu, file, p.get_ref()))
            .unwrap_or_default();
        let min_len = m.min_length.as_ref().map_or(1, |v| *v.get_ref() as usize);
        let max_len = m.max_length.as_ref().map_or(20, |v| *v.get_ref() as usize);
        if max_len == 0 || min_len > max_len {
            let l = m.max_length.as_ref().or(m.min_length.as_ref());
            let at = l.map_or(here.clone(), |l| loc(file, l));
            cx.err(
                &at,
                format!("min_length {min_len} and max_length {max_len} allow no entry"),
                None,
            );
        }
        let pattern = m.pattern.as_ref().and_then(|p| {
            // Anchored: the whole entry must match, as FreeSWITCH's digit regexes are written.
            Regex::new(&format!("^(?:{})$", p.get_ref()))
                .map_err(|e| {
                    let last = e.to_string().lines().last().unwrap_or("").trim().to_owned();
                    let first = last.strip_prefix("error: ").unwrap_or(&last).to_owned();
                    cx.err(
                        &loc(file, p),
                        format!("invalid pattern `{}`: {first}", p.get_ref()),
                        None,
                    );
                })
                .ok()
        });
        let max_attempts = match &m.max_attempts {
            Some(n) if *n.get_ref() == 0 => {
                cx.err(&loc(file, n), "must be at least 1", None);
                1
            }
            Some(n) => *n.get_ref(),
            None => 3,
        };
        let terminator = Self::terminator(cx, file, &m.terminator);
        let first_key_timeout =
            Self::duration(cx, file, &m.first_key_timeout, Duration::from_secs(5));
        let inter_digit_timeout =
            Self::duration(cx, file, &m.inter_digit_timeout, Duration::from_secs(3));
        let (then, t1) = match &m.then {
            Some(t) => self.action(cx, menu, file, t),
            None => {
                cx.err(here, "action `collect` needs `then`", Some("say what happens with the digits, e.g. a [..then] table with action = \"route\"".into()));
                (Action::Repeat, true)
            }
        };
        let (on_failure, t2) = match &m.on_failure {
            Some(t) => self.action(cx, menu, file, t),
            None => (
                Action::Hangup {
                    prompts: Vec::new(),
                    reason: "collect-failed".into(),
                },
                false,
            ),
        };
        let c = Collect {
            variable,
            prompt,
            invalid,
            min_len,
            max_len,
            terminator,
            pattern,
            max_attempts,
            first_key_timeout,
            inter_digit_timeout,
            then,
            on_failure,
        };
        (Action::Collect(Arc::new(c)), t1 || t2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AllPrompts;
    impl PromptCheck for AllPrompts {
        fn check(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    const BASE: &str = r#"
[routing]
departments = ["orders"]

[regions.r]
time_zone = "UTC"
languages = ["en"]
open_menu = "main"
closed_menu = "main"

[[regions.r.numbers]]
country = "GB"
number = "0800 000 0001"

[menus.main]
greeting = ["hello"]

[menus.main.keys.1]
action = "route"
department = "orders"
"#;

    fn diags(extra: &str) -> Vec<String> {
        let src = format!("{BASE}{extra}");
        match compile(&[("t.toml".into(), src)], &AllPrompts) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn trace_is_per_number_over_per_region_and_must_be_a_boolean() {
        let with = |region: &str, number: &str| {
            let src = BASE.replace(
                "closed_menu = \"main\"\n",
                &format!("closed_menu = \"main\"\n{region}\n"),
            );
            let src = src.replace(
                "number = \"0800 000 0001\"\n",
                &format!("number = \"0800 000 0001\"\n{number}\n"),
            );
            compile(&[("t.toml".into(), src)], &AllPrompts)
        };
        let traced = |region: &str, number: &str| {
            let (set, _) = with(region, number).expect("compiles");
            (set.traced("08000000001"), set.traced("+448000000009"))
        };
        assert_eq!(traced("", ""), (true, true));
        assert_eq!(traced("trace = false", ""), (false, true));
        assert_eq!(traced("trace = false", "trace = true"), (true, true));
        assert_eq!(traced("", "trace = false"), (false, true));
        let d: Vec<String> = match with("", "trace = \"no\"") {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        };
        assert!(
            d == ["t.toml:15:9: error: invalid type: string \"no\", expected a boolean"],
            "{d:#?}"
        );
    }

    #[test]
    fn base_compiles() {
        assert_eq!(diags(""), Vec::<String>::new());
    }

    #[test]
    fn transfer_uris_must_be_ip_literals_over_udp_and_are_reported_where_written() {
        let d = diags(
            r#"
[menus.main.keys.2]
action = "transfer"
uri = "sip:queue@cc.example.com"

[menus.main.keys.3]
action = "transfer"
uri = "sip:queue@192.0.2.10:5070;transport=tcp"

[menus.main.keys.4]
action = "transfer"
uri = "sip:queue@192.0.2.10:5070"
"#,
        );
        let expect = [
            "t.toml:24:7: error: transfer uri `sip:queue@cc.example.com` names the host `cc.example.com`: helpline does not resolve names (hint: write the contact centre's IP address, e.g. sip:queue@192.0.2.10:5060)",
            "t.toml:28:7: error: transfer uri `sip:queue@192.0.2.10:5070;transport=tcp` asks for transport=tcp: transfers go over UDP only",
        ];
        for e in expect {
            assert!(d.iter().any(|l| l.starts_with(e)), "missing {e}\n{d:#?}");
        }
        assert_eq!(d.len(), expect.len(), "{d:#?}");
    }

    #[test]
    fn a_route_needs_the_connecting_prompt_in_every_language() {
        struct NoConnecting;
        impl PromptCheck for NoConnecting {
            fn check(&self, _: &str, name: &str) -> Result<(), String> {
                match name {
                    "connecting" => Err("missing".into()),
                    _ => Ok(()),
                }
            }
        }
        let d: Vec<String> = match compile(&[("t.toml".into(), BASE.to_owned())], &NoConnecting) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        };
        assert!(
            !d.is_empty()
                && d.iter()
                    .all(|l| l.contains("error: prompt `connecting` is missing in en")),
            "{d:#?}"
        );
    }

    #[test]
    fn a_transfer_needs_the_transfer_failed_prompt_in_every_language() {
        struct NoTransferFailed;
        impl PromptCheck for NoTransferFailed {
            fn check(&self, _: &str, name: &str) -> Result<(), String> {
                match name {
                    "transfer-failed" => Err("missing".into()),
                    _ => Ok(()),
                }
            }
        }
        let src = format!(
            "{BASE}\n[menus.main.keys.2]\naction = \"transfer\"\nuri = \"sip:q@192.0.2.10\"\n"
        );
        let d: Vec<String> = match compile(&[("t.toml".into(), src)], &NoTransferFailed) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        };
        assert!(
            d.iter()
                .any(|l| l
                    .starts_with("t.toml:24:7: error: prompt `transfer-failed` is missing in en")),
            "{d:#?}"
        );
    }

    #[test]
    fn every_semantic_error_in_one_file_is_reported() {
        let d = diags(
            r#"
[menus.main.keys.2]
action = "rout"

[menus.main.keys.3]
action = "route"
department = "orders"
menu = "main"

[menus.main.keys.4]
action = "collect"
variable = "Order"
prompt = ["p"]
pattern = "(["

[menus.main.keys.5]
action = "transfer"
uri = "tech@example.invalid"

[menus.main.keys.6]
action = "language"
language = "xx"
"#,
        );
        let expect = [
            "t.toml:23:10: error: unknown action `rout` (hint: did you mean `route`?)",
            "t.toml:28:8: error: key `menu` does nothing for action `route` (hint: action `route` takes: department, set, priority)",
            "t.toml:31:10: error: action `collect` needs `then`",
            "t.toml:32:12: error: invalid variable name `Order`",
            "t.toml:34:11: error: invalid pattern `([`: unclosed character class",
            "t.toml:38:7: error: invalid transfer uri `tech@example.invalid`",
            "t.toml:42:12: error: language `xx` is not declared by any region",
        ];
        for e in expect {
            assert!(d.iter().any(|l| l.starts_with(e)), "missing {e}\n{d:#?}");
        }
        assert_eq!(d.len(), expect.len(), "{d:#?}");
    }

    #[test]
    fn a_menu_only_reachable_by_repeat_loops_has_no_way_out() {
        let d = diags(
            r#"
[menus.main.keys.9]
action = "menu"
menu = "loop"

[menus.loop]
greeting = ["x"]

[menus.loop.keys.0]
action = "repeat"
"#,
        );
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].contains("menu `loop` has no way out"), "{d:#?}");
    }

    #[test]
    fn misspelled_keys_get_a_suggestion_and_all_are_reported() {
        let d = diags("\n[menus.other]\ngreting = [\"x\"]\nmax_failure = 2\n");
        assert!(
            d.iter().any(|l| l
                .starts_with("t.toml:23:1: error: unknown field `greting`, expected one of")
                && l.ends_with("(hint: did you mean `greeting`?)")),
            "{d:#?}"
        );
        assert!(
            d.iter().any(
                |l| l.starts_with("t.toml:24:1: error: unknown field `max_failure`")
                    && l.ends_with("(hint: did you mean `max_failures`?)")
            ),
            "{d:#?}"
        );
    }

    #[test]
    fn durations_and_versions() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("11m").is_err());
        assert!(parse_duration("601s").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        let a = compile(&[("t.toml".into(), BASE.into())], &AllPrompts)
            .unwrap()
            .0;
        let b = compile(&[("t.toml".into(), format!("{BASE}\n"))], &AllPrompts)
            .unwrap()
            .0;
        assert_ne!(a.version(), b.version());
        assert_eq!(a.version().len(), 16);
    }

    /// `printf 'alice:helpline:correct horse' | md5sum` and `sha256sum`.
    const ALICE_MD5: &str = "b5e76893f4140dd5a5838cad7b58cf3b";
    const ALICE_SHA256: &str = "a2d853ea78ff06e3647367d773fd19b8903f7b27c9193e486b12881cb3c75e49";

    #[test]
    fn agents_compile_into_typed_entries_with_the_default_realm() {
        let src = format!(
            "{BASE}\n[agents.alice]\nname = \"Alice\"\nha1 = \"{ALICE_MD5}\"\nha1_sha256 = \"{ALICE_SHA256}\"\nqueues = [\"r.orders\"]\nlanguages = [\"en\"]\n\n[agents.bob]\nname = \"Bob\"\nha1 = \"{ALICE_MD5}\"\nqueues = [\"r.orders\"]\n"
        );
        let (set, warnings) = compile(&[("t.toml".into(), src)], &AllPrompts).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.realm(), "helpline");
        let alice = set.agent("alice").expect("alice");
        assert_eq!(alice.id.as_str(), "alice");
        assert_eq!(alice.name, "Alice");
        assert_eq!(alice.ha1.as_hex(), ALICE_MD5);
        assert_eq!(
            alice.ha1_sha256.as_ref().map(|h| h.as_hex()),
            Some(ALICE_SHA256)
        );
        assert_eq!(alice.queues, [crate::agent::QueueName::new("r", "orders")]);
        assert_eq!(alice.languages, ["en"]);
        assert_eq!(set.agent("bob").and_then(|b| b.ha1_sha256.as_ref()), None);
        let ids: Vec<&str> = set.agents().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["alice", "bob"]);
        assert!(set.agent("carol").is_none());
    }

    #[test]
    fn every_agent_error_is_reported_at_its_position() {
        let d = diags(
            r#"
[agents.alice]
name = " "
ha1 = "B5E76893F4140DD5A5838CAD7B58CF3B"
ha1_sha256 = "b5e76893f4140dd5a5838cad7b58cf3b"
queues = ["r.orders", "x.orders", "r.order", "orders", "r.orders"]
languages = ["en", "fr", "EN"]

[agents."bob smith"]
name = "Bob"
ha1 = "b5e76893f4140dd5a5838cad7b58cf3"
queues = []
"#,
        );
        let expect = [
            "t.toml:23:8: error: agent name is empty",
            "t.toml:24:7: error: `ha1` must be 32 lowercase hex digits (hint: write it in lowercase)",
            "t.toml:25:14: error: `ha1_sha256` must be 64 lowercase hex digits (hint: paste the line `helpline passwd alice` prints (the SHA-256 of ID:REALM:password))",
            "t.toml:26:23: error: unknown region `x` in queue `x.orders` (hint: did you mean `r`?)",
            "t.toml:26:35: error: unknown department `order` in queue `r.order` (hint: did you mean `orders`?)",
            "t.toml:26:46: error: queue `orders` is not REGION.DEPARTMENT",
            "t.toml:26:56: error: queue `r.orders` is listed twice",
            "t.toml:27:20: error: language `fr` is not declared by any region",
            "t.toml:27:26: error: invalid language code `EN`",
            "t.toml:29:9: error: invalid agent ID `bob smith`",
            "t.toml:31:7: error: `ha1` must be 32 lowercase hex digits",
            "t.toml:32:10: warning: agent `bob smith` serves no queue",
        ];
        for e in expect {
            assert!(d.iter().any(|l| l.starts_with(e)), "missing {e}\n{d:#?}");
        }
        assert_eq!(d.len(), expect.len(), "{d:#?}");
    }

    #[test]
    fn an_agent_declared_in_two_files_is_reported_with_the_first_place() {
        let agents = |name: &str| {
            format!("\n[agents.alice]\nname = \"{name}\"\nha1 = \"{ALICE_MD5}\"\nqueues = [\"r.orders\"]\n")
        };
        let files = [
            ("a.toml".into(), format!("{BASE}{}", agents("Alice"))),
            ("b.toml".into(), agents("Alice again")),
        ];
        let d: Vec<String> = compile(&files, &AllPrompts)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            ["b.toml:2:9: error: agent `alice` is defined twice (hint: first definition is at a.toml:22)"]
        );
    }

    #[test]
    fn the_realm_comes_from_routing_and_is_checked() {
        let with_realm = |realm: &str| {
            BASE.replacen(
                "[routing]\n",
                &format!("[routing]\nrealm = \"{realm}\"\n"),
                1,
            )
        };
        let (set, _) = compile(
            &[("t.toml".into(), with_realm("helpline.example.org"))],
            &AllPrompts,
        )
        .unwrap();
        assert_eq!(set.realm(), "helpline.example.org");
        let d = compile(&[("t.toml".into(), with_realm(r"a\\b"))], &AllPrompts).unwrap_err();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].to_string()
                .starts_with(r"t.toml:3:9: error: invalid realm `a\b`"),
            "{}",
            d[0]
        );
    }
}
