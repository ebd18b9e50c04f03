//! Compiles `[queue_defaults]` and the `[queues."REGION.DEPARTMENT"]` tables of `ivr-menus/` into the
//! queues' [`QueueConfig`]s, reporting every mistake at its position: unknown strategies (with a
//! did-you-mean), durations, lengths, `when_no_agents`, overflow targets that no region × department
//! makes, and overflow or music prompts missing in a language the queue's callers hear. It does not run
//! queues: the call layer hands the result to `Queues::set_configs` at start and on every reload.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use toml::Spanned;

use crate::agent::QueueName;
use crate::queue::{OverflowTarget, QueueConfig, Strategy, WhenNoAgents};

use super::compile::{loc, Ctx, Loc, PromptCheck};
use super::diag::{did_you_mean, line_col};
use super::menu::{MenuFile, QueueModel, Text};
use super::settings::{ring_timeout, wrap_up, AgentSettings};

/// Strategy names as `strategy = "…"` spells them (mod_callcenter's).
pub const STRATEGIES: [(&str, Strategy); 6] = [
    ("ring-all", Strategy::RingAll),
    ("longest-idle-agent", Strategy::LongestIdleAgent),
    ("round-robin", Strategy::RoundRobin),
    ("fewest-calls", Strategy::FewestCalls),
    ("random", Strategy::Random),
    ("top-down", Strategy::TopDown),
];

/// Longest `max_wait` (a caller on hold longer than this has been forgotten, not served).
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// Shortest `announce_every` other than off: an announcement takes a few seconds to say, and callers
/// should hear some music between two.
pub const MIN_ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

/// Most `max_length` may be.
pub const MAX_LENGTH_LIMIT: i64 = 10_000;

/// The one action an overflow table may name.
const OVERFLOW_HANGUP: &str = "hangup";

/// What queue checks need to know of the rest of the configuration.
pub(super) struct Known<'a> {
    /// Region name → the languages its callers hear prompts in (voices, after fallbacks).
    pub regions: Vec<(&'a str, Vec<String>)>,
    /// Departments of `[routing]`.
    pub departments: &'a [String],
    /// Prompt availability.
    pub prompts: &'a dyn PromptCheck,
}

impl Known<'_> {
    fn is_queue(&self, q: &QueueName) -> bool {
        self.regions.iter().any(|(r, _)| *r == q.region())
            && self.departments.iter().any(|d| d == q.department())
    }

    fn queue_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (r, _) in &self.regions {
            for d in self.departments {
                out.push(format!("{r}.{d}"));
            }
        }
        out
    }

    /// The voices callers of `scope` hear (every region's for the defaults).
    fn voices(&self, scope: Option<&QueueName>) -> BTreeSet<String> {
        self.regions
            .iter()
            .filter(|(r, _)| scope.is_none_or(|q| q.region() == *r))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }
}

/// The compiled queue settings: the defaults every queue uses, and the queues with settings of their own.
pub type QueueConfigs = (QueueConfig, HashMap<QueueName, QueueConfig>);

/// Every queue's settings. `settings` holds the already-checked `[queue_defaults]` `ring_timeout` and
/// `wrap_up`; the prompts the queues may play are added to `used` (for preloading).
pub(super) fn compile_queues(
    cx: &mut Ctx,
    parsed: &[(usize, MenuFile)],
    settings: &AgentSettings,
    known: &Known,
    used: &mut BTreeSet<(String, String)>,
) -> QueueConfigs {
    let mut default = QueueConfig {
        ring_timeout: settings.ring_timeout,
        // The presence's wrap-up is the defaults' already; `None` keeps it.
        wrap_up: None,
        ..QueueConfig::default()
    };
    // The second [queue_defaults] is reported by `settings`.
    if let Some((file, q)) = parsed
        .iter()
        .find_map(|(file, f)| f.queue_defaults.as_ref().map(|q| (*file, q)))
    {
        apply(cx, file, q.get_ref(), None, known, used, &mut default);
    }
    let mut configs = HashMap::new();
    let mut first_seen: BTreeMap<QueueName, Loc> = BTreeMap::new();
    for (file, f) in parsed {
        for (name, q) in &f.queues {
            let Some(queue) = queue_name(cx, *file, name, known) else {
                // Its keys are still checked, so that one run reports every mistake.
                let mut scratch = default.clone();
                let mut unused = BTreeSet::new();
                apply(
                    cx,
                    *file,
                    q.get_ref(),
                    None,
                    known,
                    &mut unused,
                    &mut scratch,
                );
                continue;
            };
            let here = loc(*file, name);
            if let Some(prev) = first_seen.get(&queue) {
                let (path, src) = &cx.files[prev.file];
                let (pl, _) = line_col(src, prev.span.start);
                let hint = format!("first definition is at {}:{pl}", path.display());
                cx.err(
                    &here,
                    format!("queue `{queue}` is configured twice"),
                    Some(hint),
                );
                continue;
            }
            first_seen.insert(queue.clone(), here);
            let mut config = default.clone();
            apply(
                cx,
                *file,
                q.get_ref(),
                Some(&queue),
                known,
                used,
                &mut config,
            );
            configs.insert(queue, config);
        }
    }
    // The defaults' overflow queue does not overflow into itself: it keeps its callers, also when its
    // own table inherits that overflow (a table naming itself was an error above).
    if let Some(OverflowTarget::Queue(target)) = &default.overflow {
        let own = configs
            .entry(target.clone())
            .or_insert_with(|| QueueConfig {
                when_no_agents: WhenNoAgents::Wait,
                ..default.clone()
            });
        if own.overflow.as_ref() == default.overflow.as_ref() {
            own.overflow = None;
        }
    }
    (default, configs)
}

/// A `[queues."…"]` name some region × department makes.
fn queue_name(cx: &mut Ctx, file: usize, name: &Text, known: &Known) -> Option<QueueName> {
    let text = name.get_ref();
    match QueueName::parse(text) {
        Some(q) if known.is_queue(&q) => Some(q),
        _ => {
            unknown_queue(cx, &loc(file, name), text, known);
            None
        }
    }
}

fn unknown_queue(cx: &mut Ctx, at: &Loc, text: &str, known: &Known) {
    let names = known.queue_names();
    let hint = did_you_mean(text, names.iter().map(String::as_str)).or_else(|| {
        let regions: Vec<&str> = known.regions.iter().map(|(r, _)| *r).collect();
        Some(format!(
            "queues are REGION.DEPARTMENT; regions: {}; departments: {}",
            regions.join(", "),
            known.departments.join(", ")
        ))
    });
    cx.err(
        at,
        format!("`{text}` is not a queue: no region and department make it"),
        hint,
    );
}

/// Applies the keys `q` sets onto `c`; `scope` is the queue (`None` for the defaults).
fn apply(
    cx: &mut Ctx,
    file: usize,
    q: &QueueModel,
    scope: Option<&QueueName>,
    known: &Known,
    used: &mut BTreeSet<(String, String)>,
    c: &mut QueueConfig,
) {
    if let Some(s) = &q.strategy {
        if let Some(s) = strategy(cx, file, s) {
            c.strategy = s;
        }
    }
    // The defaults' ring_timeout and wrap_up were checked (and applied to presence) by `settings`.
    if scope.is_some() {
        if let Some(d) = q
            .ring_timeout
            .as_ref()
            .and_then(|t| ring_timeout(cx, file, t))
        {
            c.ring_timeout = d;
        }
        if let Some(t) = &q.wrap_up {
            if let Some(d) = wrap_up(cx, file, t) {
                c.wrap_up = Some(d);
            }
        }
    }
    if let Some(t) = &q.max_wait {
        if let Some(d) = long_duration(cx, file, t, "max_wait", MAX_WAIT_LIMIT) {
            c.max_wait = (!d.is_zero()).then_some(d);
        }
    }
    if let Some(t) = &q.announce_every {
        if let Some(d) = long_duration(cx, file, t, "announce_every", MAX_WAIT_LIMIT) {
            if !d.is_zero() && d < MIN_ANNOUNCE_EVERY {
                cx.err(
                    &loc(file, t),
                    format!(
                        "announce_every must be at least {}s (or \"0s\" for never)",
                        MIN_ANNOUNCE_EVERY.as_secs()
                    ),
                    Some("an announcement takes a few seconds itself".into()),
                );
            } else {
                c.announce_every = (!d.is_zero()).then_some(d);
            }
        }
    }
    if let Some(n) = &q.max_length {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if i64::try_from(v).is_ok_and(|v| v <= MAX_LENGTH_LIMIT) => {
                c.max_length = (v > 0).then_some(v);
            }
            _ => cx.err(
                &loc(file, n),
                format!(
                    "max_length must be from 0 (no limit) to {MAX_LENGTH_LIMIT}, not {}",
                    n.get_ref()
                ),
                None,
            ),
        }
    }
    if let Some(w) = &q.when_no_agents {
        match w.get_ref().as_str() {
            "wait" => c.when_no_agents = WhenNoAgents::Wait,
            "overflow" => c.when_no_agents = WhenNoAgents::Overflow,
            other => cx.err(
                &loc(file, w),
                format!("unknown when_no_agents `{other}`"),
                did_you_mean(other, ["wait", "overflow"])
                    .or(Some("use \"wait\" or \"overflow\"".into())),
            ),
        }
    }
    if let Some(o) = &q.overflow {
        if let Some(t) = overflow(cx, file, o, scope, known, used) {
            c.overflow = Some(t);
        }
    }
    if let Some(m) = &q.music {
        if music(cx, file, m, scope, known, used) {
            c.music = Some(m.get_ref().clone());
        }
    }
}

fn strategy(cx: &mut Ctx, file: usize, s: &Text) -> Option<Strategy> {
    let name = s.get_ref().as_str();
    let found = STRATEGIES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    if found.is_none() {
        let names = STRATEGIES.map(|(n, _)| n);
        let hint = ASTERISK_STRATEGIES
            .iter()
            .find(|(a, _)| *a == name)
            .map(|(a, ours)| format!("Asterisk's `{a}` is `{ours}` here"))
            .or_else(|| did_you_mean(name, names))
            .or_else(|| {
                // A shortened name (`longest-idle`, `fewest`): the one strategy it begins.
                let mut starts = names.iter().filter(|n| n.starts_with(name));
                match (starts.next(), starts.next()) {
                    (Some(n), None) if !name.is_empty() => Some(format!("did you mean `{n}`?")),
                    _ => None,
                }
            })
            .or(Some(format!("strategies: {}", names.join(", "))));
        cx.err(&loc(file, s), format!("unknown strategy `{name}`"), hint);
    }
    found
}

/// app_queue's strategy names an admin may bring along, and ours.
const ASTERISK_STRATEGIES: [(&str, &str); 6] = [
    ("ringall", "ring-all"),
    ("leastrecent", "longest-idle-agent"),
    ("rrmemory", "round-robin"),
    ("rrordered", "round-robin"),
    ("fewestcalls", "fewest-calls"),
    ("linear", "top-down"),
];

/// A duration that may also be written in minutes or hours (`"90s"`, `"5m"`, `"1h"`), at most `limit`.
pub(crate) fn parse_long_duration(text: &str, limit: Duration) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}` (write e.g. \"90s\", \"5m\" or \"1h\")");
    let (n, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        return Err(bad());
    };
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    match n.checked_mul(unit_ms).map(Duration::from_millis) {
        Some(d) if d <= limit => Ok(d),
        _ => Err(format!(
            "duration `{text}` is longer than {} hours",
            limit.as_secs() / 3600
        )),
    }
}

fn long_duration(
    cx: &mut Ctx,
    file: usize,
    t: &Text,
    key: &str,
    limit: Duration,
) -> Option<Duration> {
    match parse_long_duration(t.get_ref(), limit) {
        Ok(d) => Some(d),
        Err(m) => {
            cx.err(&loc(file, t), format!("{key}: {m}"), None);
            None
        }
    }
}

/// `overflow = "REGION.DEPARTMENT"` or `overflow = { action = "hangup", prompts = [...] }`.
fn overflow(
    cx: &mut Ctx,
    file: usize,
    o: &Spanned<toml::Value>,
    scope: Option<&QueueName>,
    known: &Known,
    used: &mut BTreeSet<(String, String)>,
) -> Option<OverflowTarget> {
    let at = loc(file, o);
    let shape = || {
        Some(
            "write overflow = \"REGION.DEPARTMENT\" or overflow = { action = \"hangup\", prompts = [\"…\"] }"
                .to_owned(),
        )
    };
    match o.get_ref() {
        toml::Value::String(text) => {
            let queue = QueueName::parse(text).filter(|q| known.is_queue(q));
            let Some(queue) = queue else {
                unknown_queue(cx, &at, text, known);
                return None;
            };
            if scope == Some(&queue) {
                cx.err(
                    &at,
                    format!("queue `{queue}` overflows into itself"),
                    Some("name another queue, e.g. the English team's".into()),
                );
                return None;
            }
            Some(OverflowTarget::Queue(queue))
        }
        toml::Value::Table(t) => {
            let mut ok = true;
            for key in t
                .keys()
                .filter(|k| !["action", "prompts"].contains(&k.as_str()))
            {
                cx.err(
                    &at,
                    format!("unknown key `{key}` in overflow"),
                    did_you_mean(key, ["action", "prompts"]).or_else(shape),
                );
                ok = false;
            }
            match t.get("action").map(|a| a.as_str()) {
                Some(Some(OVERFLOW_HANGUP)) => {}
                Some(Some(other)) => {
                    cx.err(
                        &at,
                        format!("unknown overflow action `{other}`"),
                        Some(
                            "the one action is \"hangup\"; to move callers on, name a queue".into(),
                        ),
                    );
                    ok = false;
                }
                _ => {
                    cx.err(&at, "overflow table needs action = \"hangup\"", shape());
                    ok = false;
                }
            }
            let prompts = overflow_prompts(cx, &at, t.get("prompts"), scope, known, used)?;
            ok.then_some(OverflowTarget::HangUp { prompts })
        }
        _ => {
            cx.err(&at, "overflow must be a queue name or a table", shape());
            None
        }
    }
}

/// An overflow table's `prompts`: names each present in every voice of `scope`.
fn overflow_prompts(
    cx: &mut Ctx,
    at: &Loc,
    value: Option<&toml::Value>,
    scope: Option<&QueueName>,
    known: &Known,
    used: &mut BTreeSet<(String, String)>,
) -> Option<Vec<String>> {
    let Some(value) = value else {
        return Some(Vec::new());
    };
    let names: Option<Vec<String>> = value
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
    let Some(names) = names else {
        cx.err(
            at,
            "overflow prompts must be a list of prompt names",
            Some("e.g. prompts = [\"sorry-busy\", \"goodbye\"]".into()),
        );
        return None;
    };
    let voices = known.voices(scope);
    let mut ok = true;
    for p in &names {
        let missing: Vec<&str> = voices
            .iter()
            .filter(|l| known.prompts.check(l, p).is_err())
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            used.extend(voices.iter().map(|l| (l.clone(), p.clone())));
        } else {
            cx.err(
                at,
                format!("overflow prompt `{p}` is missing in {}", missing.join(", ")),
                Some(format!("add prompts/{}/{p}.wav", missing[0])),
            );
            ok = false;
        }
    }
    ok.then_some(names)
}

/// `music`: a tone under `prompts/tones/`, or a prompt in every voice of `scope`.
fn music(
    cx: &mut Ctx,
    file: usize,
    m: &Text,
    scope: Option<&QueueName>,
    known: &Known,
    used: &mut BTreeSet<(String, String)>,
) -> bool {
    let name = m.get_ref();
    let tones = crate::prompts::TONES;
    if known.prompts.check(tones, name).is_ok() {
        used.insert((tones.to_owned(), name.clone()));
        return true;
    }
    let voices = known.voices(scope);
    let missing: Vec<&str> = voices
        .iter()
        .filter(|l| known.prompts.check(l, name).is_err())
        .map(String::as_str)
        .collect();
    if missing.is_empty() && !voices.is_empty() {
        used.extend(voices.iter().map(|l| (l.clone(), name.clone())));
        return true;
    }
    cx.err(
        &loc(file, m),
        format!(
            "music `{name}` is neither a tone (prompts/{tones}/{name}.wav) nor a prompt in {}",
            missing.join(", ")
        ),
        Some(format!(
            "the shipped hold music is \"hold-music\" (prompts/{tones}/hold-music.wav, scripts/gen-prompts.sh)"
        )),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    struct AllPrompts;
    impl PromptCheck for AllPrompts {
        fn check(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    fn compiled(extra: &str) -> QueueConfigs {
        let src = format!(
            "[routing]\ndepartments = [\"orders\", \"english\"]\n\
             [regions.r]\ntime_zone = \"UTC\"\nlanguages = [\"en\"]\nopen_menu = \"m\"\nclosed_menu = \"m\"\n\
             [menus.m]\ngreeting = [\"g\"]\n[menus.m.keys.1]\naction = \"route\"\ndepartment = \"orders\"\n\
             [menus.m.keys.2]\naction = \"route\"\ndepartment = \"english\"\n{extra}"
        );
        let files = vec![(PathBuf::from("t.toml"), src)];
        let (set, _) =
            super::super::compile(&files, &AllPrompts).unwrap_or_else(|d| panic!("{d:#?}"));
        set.queue_configs()
    }

    #[test]
    fn the_defaults_overflow_queue_does_not_overflow_into_itself() {
        let english = QueueName::from("r.english");
        let to_english = Some(OverflowTarget::Queue(english.clone()));
        let (default, queues) =
            compiled("[queue_defaults]\noverflow = \"r.english\"\nwhen_no_agents = \"overflow\"\n");
        assert_eq!(default.overflow, to_english);
        assert_eq!(queues[&english].overflow, None);
        assert_eq!(queues[&english].when_no_agents, WhenNoAgents::Wait);
        // Also when its own table inherits the overflow.
        let (_, queues) = compiled(
            "[queue_defaults]\noverflow = \"r.english\"\n[queues.\"r.english\"]\nstrategy = \"random\"\n\
             [queues.\"r.orders\"]\nmax_length = 3\n",
        );
        assert_eq!(queues[&english].overflow, None);
        assert_eq!(queues[&english].strategy, Strategy::Random);
        let orders = &queues[&QueueName::from("r.orders")];
        assert_eq!(
            (orders.max_length, &orders.overflow),
            (Some(3), &to_english)
        );
    }

    #[test]
    fn long_durations_take_minutes_and_hours_within_the_limit() {
        let limit = MAX_WAIT_LIMIT;
        assert_eq!(
            parse_long_duration("90s", limit),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            parse_long_duration("5m", limit),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_long_duration("2h", limit),
            Ok(Duration::from_secs(7200))
        );
        assert_eq!(parse_long_duration("0s", limit), Ok(Duration::ZERO));
        assert!(parse_long_duration("5h", limit).is_err());
        assert!(parse_long_duration("5 minutes", limit).is_err());
        assert!(parse_long_duration("m", limit).is_err());
    }
}
