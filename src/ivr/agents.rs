//! Compiles the `[agents.ID]` tables of `ivr-menus/` into typed [`AgentConfig`]s and reports every
//! mistake with its position: bad IDs, HA1s that are not lowercase hex of the right length, queues whose
//! region or department does not exist, unknown languages, IDs declared twice. It does not know
//! passwords or who is registered.
use std::collections::BTreeMap;

use crate::agent::{AgentConfig, AgentId, Algorithm, Ha1, QueueName};

use super::compile::{check_language, loc, Ctx, Loc};
use super::diag::{did_you_mean, line_col, Severity};
use super::menu::{AgentModel, MenuFile, Text};

/// What agent checks need to know of the rest of the configuration.
pub(super) struct Known<'a> {
    /// Region name → its declared languages.
    pub regions: Vec<(&'a str, &'a [String])>,
    /// Departments of `[routing]`.
    pub departments: &'a [String],
}

/// Every agent of every file, and their IDs in declaration order (file, then position: the table keys
/// come sorted); on errors the result is incomplete and `cx` holds the diagnostics.
pub(super) fn compile_agents(
    cx: &mut Ctx,
    parsed: &[(usize, MenuFile)],
    known: &Known,
) -> (BTreeMap<AgentId, AgentConfig>, Vec<AgentId>) {
    let mut agents = BTreeMap::new();
    let mut order: Vec<((usize, usize), AgentId)> = Vec::new();
    let mut first_seen: BTreeMap<String, Loc> = BTreeMap::new();
    for (file, f) in parsed {
        for (id, a) in &f.agents {
            let here = loc(*file, id);
            if let Some(prev) = first_seen.get(id.get_ref()) {
                let (path, src) = &cx.files[prev.file];
                let (pl, _) = line_col(src, prev.span.start);
                let hint = format!("first definition is at {}:{pl}", path.display());
                cx.err(
                    &here,
                    format!("agent `{}` is defined twice", id.get_ref()),
                    Some(hint),
                );
                continue;
            }
            first_seen.insert(id.get_ref().clone(), here.clone());
            if AgentId::parse(id.get_ref()).is_none() {
                cx.err(
                    &here,
                    format!("invalid agent ID `{}`", id.get_ref()),
                    Some(
                        "an ID is the SIP user part the phone registers: use letters, digits and - _ . ! ~ * ' ( )"
                            .into(),
                    ),
                );
            }
            if let Some(config) = agent(cx, *file, id, a.get_ref(), known) {
                order.push(((*file, id.span().start), config.id.clone()));
                agents.insert(config.id.clone(), config);
            }
        }
    }
    order.sort();
    (agents, order.into_iter().map(|(_, id)| id).collect())
}

/// One agent; `None` when a part the registrar needs (ID, HA1s) is invalid (already reported).
fn agent(
    cx: &mut Ctx,
    file: usize,
    id: &Text,
    a: &AgentModel,
    known: &Known,
) -> Option<AgentConfig> {
    if a.name.get_ref().trim().is_empty() {
        cx.err(&loc(file, &a.name), "agent name is empty", None);
    }
    let ha1 = hash(cx, file, id, &a.ha1, Algorithm::Md5, "ha1");
    let ha1_sha256 = a
        .ha1_sha256
        .as_ref()
        .map(|h| hash(cx, file, id, h, Algorithm::Sha256, "ha1_sha256"));
    let queues = queues(cx, file, id, a, known);
    let penalties = penalties(cx, file, id, a, &queues);
    let mut languages = Vec::new();
    for l in a.languages.iter().flat_map(|l| l.get_ref()) {
        let code = l.get_ref();
        if !check_language(cx, file, l) {
            continue;
        }
        if languages.contains(code) {
            cx.err(
                &loc(file, l),
                format!("language `{code}` is listed twice"),
                None,
            );
        } else if !known.regions.iter().any(|(_, ls)| ls.contains(code)) {
            cx.err(
                &loc(file, l),
                format!("language `{code}` is not declared by any region"),
                did_you_mean(
                    code,
                    known
                        .regions
                        .iter()
                        .flat_map(|(_, ls)| ls.iter().map(String::as_str)),
                ),
            );
        }
        languages.push(code.clone());
    }
    Some(AgentConfig {
        id: AgentId::parse(id.get_ref())?,
        name: a.name.get_ref().clone(),
        ha1: ha1?,
        ha1_sha256: match ha1_sha256 {
            Some(h) => Some(h?),
            None => None,
        },
        queues,
        languages,
        penalties,
    })
}

/// Most a penalty may be: a bound so that a typo such as `20000` is caught, and far more tiers than any
/// queue needs.
pub const MAX_PENALTY: u32 = 1000;

/// `[agents.ID.penalty]`: one non-negative integer per queue the agent serves (`served`, already
/// checked; a queue that failed its own check is not reported twice).
fn penalties(
    cx: &mut Ctx,
    file: usize,
    id: &Text,
    a: &AgentModel,
    served: &[QueueName],
) -> BTreeMap<QueueName, u32> {
    let mut out = BTreeMap::new();
    let Some(table) = &a.penalty else {
        return out;
    };
    let listed: Vec<&str> = a
        .queues
        .get_ref()
        .iter()
        .map(|q| q.get_ref().as_str())
        .collect();
    for (q, v) in table.get_ref() {
        let at = loc(file, q);
        let name = QueueName::parse(q.get_ref()).filter(|n| served.contains(n));
        let Some(name) = name else {
            if !listed.contains(&q.get_ref().as_str()) {
                let hint = did_you_mean(q.get_ref(), listed.iter().copied())
                    .or(Some(format!("its queues: {}", listed.join(", "))));
                cx.err(
                    &at,
                    format!(
                        "agent `{}` has a penalty in `{}`, a queue it does not serve",
                        id.get_ref(),
                        q.get_ref()
                    ),
                    hint,
                );
            }
            continue;
        };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= MAX_PENALTY => {
                out.insert(name, n);
            }
            _ => cx.err(
                &loc(file, v),
                format!(
                    "penalty must be an integer from 0 to {MAX_PENALTY}, not {}",
                    v.get_ref()
                ),
                Some("lower is offered first; 0 is the default".into()),
            ),
        }
    }
    out
}

fn hash(
    cx: &mut Ctx,
    file: usize,
    id: &Text,
    value: &Text,
    algorithm: Algorithm,
    key: &str,
) -> Option<Ha1> {
    let text = value.get_ref();
    let parsed = Ha1::parse(algorithm, text);
    if parsed.is_none() {
        let digits = algorithm.hex_len();
        let hint = if text.len() == digits && text.bytes().all(|c| c.is_ascii_hexdigit()) {
            "write it in lowercase".to_owned()
        } else {
            format!(
                "paste the line `helpline passwd {}` prints (the {algorithm} of ID:REALM:password)",
                id.get_ref()
            )
        };
        cx.err(
            &loc(file, value),
            format!("`{key}` must be {digits} lowercase hex digits"),
            Some(hint),
        );
    }
    parsed
}

fn queues(cx: &mut Ctx, file: usize, id: &Text, a: &AgentModel, known: &Known) -> Vec<QueueName> {
    let mut out: Vec<QueueName> = Vec::new();
    if a.queues.get_ref().is_empty() {
        cx.push(
            Severity::Warning,
            &loc(file, &a.queues),
            format!("agent `{}` serves no queue", id.get_ref()),
            Some("list queues as \"REGION.DEPARTMENT\", e.g. \"europe.refunds\"".into()),
        );
    }
    for q in a.queues.get_ref() {
        let at = loc(file, q);
        let Some(name) = QueueName::parse(q.get_ref()) else {
            cx.err(
                &at,
                format!("queue `{}` is not REGION.DEPARTMENT", q.get_ref()),
                Some("e.g. \"europe.refunds\"".into()),
            );
            continue;
        };
        let regions = known.regions.iter().map(|(r, _)| *r);
        if !known.regions.iter().any(|(r, _)| *r == name.region()) {
            cx.err(
                &at,
                format!("unknown region `{}` in queue `{name}`", name.region()),
                did_you_mean(name.region(), regions)
                    .or(Some(format!("regions: {}", regions_list(known)))),
            );
        } else if !known.departments.iter().any(|d| d == name.department()) {
            cx.err(
                &at,
                format!(
                    "unknown department `{}` in queue `{name}`",
                    name.department()
                ),
                did_you_mean(
                    name.department(),
                    known.departments.iter().map(String::as_str),
                )
                .or(Some(format!(
                    "departments: {}",
                    known.departments.join(", ")
                ))),
            );
        } else if out.contains(&name) {
            cx.err(&at, format!("queue `{name}` is listed twice"), None);
        } else {
            out.push(name);
        }
    }
    out
}

fn regions_list(known: &Known) -> String {
    known
        .regions
        .iter()
        .map(|(r, _)| *r)
        .collect::<Vec<_>>()
        .join(", ")
}
