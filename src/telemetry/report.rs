//! `helpline report`: the IVR funnel computed from CDR lines — per region and per dialed number, how many
//! calls reached a route (and which), and where the others left (last menu, after how long, why). Pure
//! over the text it is given: it reads no file and prints nothing (the CLI does both).
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Label for a call whose CDR has no region / no menu / no end reason.
const NONE: &str = "-";

/// The upper bounds (seconds, exclusive) of the "left after" buckets; the last bucket is open.
pub const BUCKETS_SECS: [u64; 4] = [10, 30, 60, 180];

/// The fields of a CDR line the funnel needs (other fields are ignored, so older and newer CDRs read).
#[derive(Clone, Debug, Deserialize)]
pub struct CdrLine {
    /// The dialed number.
    #[serde(default)]
    pub dialed: String,
    /// The region, if the number was known.
    #[serde(default)]
    pub region: Option<String>,
    /// When the INVITE arrived (RFC 3339).
    pub start: String,
    /// When the call was answered, if it was.
    #[serde(default)]
    pub answer: Option<String>,
    /// When the call ended.
    pub end: String,
    /// Why it ended (kebab-case).
    #[serde(default)]
    pub end_reason: Option<String>,
    /// The menus the caller went through.
    #[serde(default)]
    pub menu_path: Vec<String>,
    /// The route the call reached.
    #[serde(default)]
    pub route: Option<String>,
}

/// One call, reduced to what the funnel counts. The names are shared (`Arc<str>`): the supervisor view
/// keeps [`FUNNEL_CALLS`](crate::server::live::FUNNEL_CALLS) of them, whose names repeat, and
/// [`Names`] lets them share one copy.
#[derive(Clone, Debug, PartialEq)]
pub struct FunnelCall {
    /// Region (or `-`).
    pub region: Arc<str>,
    /// Dialed number.
    pub dialed: Arc<str>,
    /// The route reached, if any.
    pub route: Option<Arc<str>>,
    /// The last menu (or `-`).
    pub last_menu: Arc<str>,
    /// Why it ended (or `-`).
    pub end_reason: Arc<str>,
    /// Seconds from the answer (or the start, if never answered) to the end.
    pub secs: f64,
}

/// A bounded set of names that funnel calls share (the dialed number comes from outside: past
/// `capacity` names, new ones are kept per call, not added).
#[derive(Debug)]
pub struct Names {
    set: HashSet<Arc<str>>,
    capacity: usize,
}

impl Names {
    /// A set of at most `capacity` names.
    pub fn new(capacity: usize) -> Names {
        Names {
            set: HashSet::new(),
            capacity,
        }
    }

    fn share(&mut self, name: &mut Arc<str>) {
        if let Some(known) = self.set.get(&**name) {
            *name = known.clone();
        } else if self.set.len() < self.capacity {
            self.set.insert(name.clone());
        }
    }
}

impl FunnelCall {
    /// Points this call's names at the copies in `names`.
    pub fn share_names(&mut self, names: &mut Names) {
        names.share(&mut self.region);
        names.share(&mut self.dialed);
        if let Some(route) = &mut self.route {
            names.share(route);
        }
        names.share(&mut self.last_menu);
        names.share(&mut self.end_reason);
    }

    /// Reduces one parsed CDR line; an error names the field that does not make sense.
    pub fn from_line(line: &CdrLine) -> Result<FunnelCall, String> {
        let time = |name: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("`{name}` is not an RFC 3339 time: {e}"))
        };
        let from = match &line.answer {
            Some(answer) => time("answer", answer)?,
            None => time("start", &line.start)?,
        };
        let end = time("end", &line.end)?;
        // A clock step could make end < answer: count it as 0 s rather than refuse the line.
        let secs = ((end - from).num_milliseconds().max(0) as f64) / 1000.0;
        Ok(FunnelCall {
            region: Arc::from(line.region.as_deref().unwrap_or(NONE)),
            dialed: Arc::from(line.dialed.as_str()),
            route: line.route.as_deref().map(Arc::from),
            last_menu: Arc::from(line.menu_path.last().map_or(NONE, String::as_str)),
            end_reason: Arc::from(line.end_reason.as_deref().unwrap_or(NONE)),
            secs,
        })
    }
}

/// Parses CDR text (one JSON object per line); returns the calls and one `name:line: message` per bad
/// line (blank lines are skipped silently).
pub fn parse(name: &str, text: &str) -> (Vec<FunnelCall>, Vec<String>) {
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<CdrLine>(raw)
            .map_err(|e| e.to_string())
            .and_then(|line| FunnelCall::from_line(&line));
        match parsed {
            Ok(call) => calls.push(call),
            Err(message) => errors.push(format!("{name}:{}: {message}", index + 1)),
        }
    }
    (calls, errors)
}

/// Where the callers who reached no route left: one menu.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Exit {
    /// Calls that left here.
    pub calls: u64,
    /// Median seconds from answer to end.
    pub median_secs: f64,
    /// Calls per bucket, in order, empty buckets left out: `<10s`, `10-30s`, `30-60s`, `60-180s`,
    /// `>=180s`.
    pub after: Vec<After>,
    /// Calls per end reason.
    pub end_reasons: BTreeMap<String, u64>,
}

/// One "left after" bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct After {
    /// Its name (`10-30s`).
    pub bucket: String,
    /// Calls in it.
    pub calls: u64,
}

/// The funnel of one group of calls (a region or a dialed number).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Funnel {
    /// Every call.
    pub calls: u64,
    /// Calls that reached a route.
    pub routed: u64,
    /// Calls per route reached.
    pub routes: BTreeMap<String, u64>,
    /// The others, per last menu.
    pub left: BTreeMap<String, Exit>,
}

/// The whole report: one funnel per region and one per dialed number.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Calls counted.
    pub calls: u64,
    /// Per region (`-` when the number was unknown).
    pub regions: BTreeMap<String, Funnel>,
    /// Per dialed number.
    pub dialed: BTreeMap<String, Funnel>,
}

/// The index of the bucket a duration falls in (0..=BUCKETS_SECS.len()).
fn bucket_index(secs: f64) -> usize {
    BUCKETS_SECS
        .iter()
        .position(|&high| secs < high as f64)
        .unwrap_or(BUCKETS_SECS.len())
}

/// The name of bucket `index`, as in [`Exit::after`].
fn bucket_name(index: usize) -> String {
    match (
        index.checked_sub(1).map(|i| BUCKETS_SECS[i]),
        BUCKETS_SECS.get(index),
    ) {
        (None, Some(high)) => format!("<{high}s"),
        (Some(low), Some(high)) => format!("{low}-{high}s"),
        (Some(low), None) => format!(">={low}s"),
        (None, None) => unreachable!("BUCKETS_SECS is not empty"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn funnel<'a>(calls: impl Iterator<Item = &'a FunnelCall>) -> Funnel {
    let mut out = Funnel::default();
    let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for call in calls {
        out.calls += 1;
        if let Some(route) = &call.route {
            out.routed += 1;
            *out.routes.entry(route.to_string()).or_default() += 1;
            continue;
        }
        let exit = out.left.entry(call.last_menu.to_string()).or_default();
        exit.calls += 1;
        *exit
            .end_reasons
            .entry(call.end_reason.to_string())
            .or_default() += 1;
        durations
            .entry(call.last_menu.to_string())
            .or_default()
            .push(call.secs);
    }
    for (menu, secs) in durations {
        if let Some(exit) = out.left.get_mut(&menu) {
            let mut counts = [0u64; BUCKETS_SECS.len() + 1];
            for &s in &secs {
                counts[bucket_index(s)] += 1;
            }
            exit.after = (0..counts.len())
                .filter(|&i| counts[i] > 0)
                .map(|i| After {
                    bucket: bucket_name(i),
                    calls: counts[i],
                })
                .collect();
            exit.median_secs = median(secs);
        }
    }
    out
}

/// Builds the report from the calls.
pub fn report(calls: &[FunnelCall]) -> Report {
    let mut regions: BTreeMap<&str, Vec<&FunnelCall>> = BTreeMap::new();
    let mut dialed: BTreeMap<&str, Vec<&FunnelCall>> = BTreeMap::new();
    for call in calls {
        regions.entry(&*call.region).or_default().push(call);
        dialed.entry(&*call.dialed).or_default().push(call);
    }
    let group = |groups: BTreeMap<&str, Vec<&FunnelCall>>| {
        groups
            .into_iter()
            .map(|(key, calls)| (key.to_string(), funnel(calls.into_iter())))
            .collect()
    };
    Report {
        calls: calls.len() as u64,
        regions: group(regions),
        dialed: group(dialed),
    }
}

fn join_counts(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Funnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  calls {}, routed {}", self.calls, self.routed)?;
        if !self.routes.is_empty() {
            writeln!(f, "  routes: {}", join_counts(&self.routes))?;
        }
        for (menu, exit) in &self.left {
            writeln!(
                f,
                "  left at {menu}: {} (median {:.1} s; {}; {})",
                exit.calls,
                exit.median_secs,
                exit.after
                    .iter()
                    .map(|a| format!("{} {}", a.bucket, a.calls))
                    .collect::<Vec<_>>()
                    .join(", "),
                join_counts(&exit.end_reasons)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} calls", self.calls)?;
        for (region, funnel) in &self.regions {
            writeln!(f, "region {region}")?;
            write!(f, "{funnel}")?;
        }
        for (dialed, funnel) in &self.dialed {
            writeln!(f, "dialed {dialed}")?;
            write!(f, "{funnel}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(secs: f64) -> String {
        bucket_name(bucket_index(secs))
    }

    #[test]
    fn buckets_have_closed_low_and_open_high_bounds() {
        assert_eq!(bucket(0.0), "<10s");
        assert_eq!(bucket(9.99), "<10s");
        assert_eq!(bucket(10.0), "10-30s");
        assert_eq!(bucket(179.0), "60-180s");
        assert_eq!(bucket(180.0), ">=180s");
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn calls_share_their_names_up_to_the_set_bound() {
        let line = |dialed: &str| CdrLine {
            dialed: dialed.into(),
            region: Some("uk".into()),
            start: "2026-12-02T10:00:00Z".into(),
            answer: None,
            end: "2026-12-02T10:00:05Z".into(),
            end_reason: Some("caller-bye".into()),
            menu_path: vec!["main".into()],
            route: None,
        };
        let mut names = Names::new(3);
        let mut calls: Vec<FunnelCall> = ["0800", "0800", "0801"]
            .iter()
            .map(|d| FunnelCall::from_line(&line(d)).expect("a valid line"))
            .collect();
        for call in &mut calls {
            call.share_names(&mut names);
        }
        assert!(Arc::ptr_eq(&calls[0].region, &calls[2].region));
        assert!(Arc::ptr_eq(&calls[0].dialed, &calls[1].dialed));
        assert!(Arc::ptr_eq(&calls[0].last_menu, &calls[2].last_menu));
        // "uk", "0800", "main" fill the set: "caller-bye" and "0801" stay each call's own.
        assert!(!Arc::ptr_eq(&calls[0].end_reason, &calls[1].end_reason));
        assert_eq!(&*calls[2].dialed, "0801");
        assert_eq!(calls[0], calls[1]);
    }
}
