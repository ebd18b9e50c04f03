//! Compiles the agent-side settings of `ivr-menus/` into [`AgentSettings`], reporting each mistake at
//! its position: from `[routing]` the digest algorithms offered (`auth_algorithms`), the registration
//! bounds (`min_expires`, `max_expires`) and `max_no_answer`; from `[queue_defaults]` the `ring_timeout`
//! and `wrap_up` every queue uses. It does not apply them: the call layer hands them to the registrar,
//! agent presence and the queues at start and on every reload.
use std::time::Duration;

use toml::Spanned;

use crate::agent::Algorithm;

use super::compile::{loc, parse_duration, Ctx};
use super::menu::{MenuFile, QueueDefaultsModel, RoutingModel, Text};

/// Longest registration `max_expires` may grant: a phone that vanished stays logged in at most this long.
pub const MAX_EXPIRES_LIMIT: u32 = 86_400;

/// Most `max_no_answer` may be (a larger count only delays the break of an agent who left the phone).
pub const MAX_NO_ANSWER_LIMIT: u32 = 100;

/// The agents' and queues' settings the menus declare, with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSettings {
    /// Digest challenges offered, in order (`[routing] auth_algorithms`; default MD5 then SHA-256).
    pub auth_algorithms: Vec<Algorithm>,
    /// Shortest registration accepted, seconds (`[routing] min_expires`; default 60).
    pub min_expires: u32,
    /// Longest registration granted, seconds (`[routing] max_expires`; default 3600).
    pub max_expires: u32,
    /// Unanswered offers in a row before an agent is put on break, 0 never (`[routing] max_no_answer`;
    /// default 3).
    pub max_no_answer: u32,
    /// How long an offer rings (`[queue_defaults] ring_timeout`; default 15 s).
    pub ring_timeout: Duration,
    /// Pause after each call or refused offer (`[queue_defaults] wrap_up`; default 10 s).
    pub wrap_up: Duration,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            auth_algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            min_expires: 60,
            max_expires: 3600,
            max_no_answer: 3,
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
        }
    }
}

/// The settings of `[routing]` (already found, at most one) and of the one `[queue_defaults]` table.
pub(super) fn compile_settings(
    cx: &mut Ctx,
    parsed: &[(usize, MenuFile)],
    routing: Option<(usize, &Spanned<RoutingModel>)>,
) -> AgentSettings {
    let mut s = AgentSettings::default();
    if let Some((file, r)) = routing {
        routing_settings(cx, file, r.get_ref(), &mut s);
    }
    let mut seen = false;
    for (file, f) in parsed {
        let Some(q) = &f.queue_defaults else {
            continue;
        };
        if seen {
            let hint = "keep exactly one [queue_defaults] table across all files".to_owned();
            cx.err(&loc(*file, q), "second [queue_defaults] table", Some(hint));
            continue;
        }
        seen = true;
        queue_defaults(cx, *file, q.get_ref(), &mut s);
    }
    s
}

fn routing_settings(cx: &mut Ctx, file: usize, r: &RoutingModel, s: &mut AgentSettings) {
    if let Some(list) = &r.auth_algorithms {
        s.auth_algorithms = algorithms(cx, file, list);
    }
    let min = r
        .min_expires
        .as_ref()
        .and_then(|v| bounded(cx, file, v, "min_expires", 1, MAX_EXPIRES_LIMIT));
    let max = r
        .max_expires
        .as_ref()
        .and_then(|v| bounded(cx, file, v, "max_expires", 1, MAX_EXPIRES_LIMIT));
    s.min_expires = min.unwrap_or(s.min_expires);
    s.max_expires = max.unwrap_or(s.max_expires);
    if s.min_expires > s.max_expires {
        // Point at whichever of the two the admin wrote (both, at the maximum).
        let at = r.max_expires.as_ref().or(r.min_expires.as_ref());
        if let Some(at) = at {
            cx.err(
                &loc(file, at),
                format!(
                    "min_expires ({}) is above max_expires ({})",
                    s.min_expires, s.max_expires
                ),
                Some("registrations could never be accepted: lower min_expires".into()),
            );
        }
    }
    if let Some(v) = &r.max_no_answer {
        if let Some(n) = bounded(cx, file, v, "max_no_answer", 0, MAX_NO_ANSWER_LIMIT) {
            s.max_no_answer = n;
        }
    }
}

/// `auth_algorithms`: known names, each once, at least one.
fn algorithms(cx: &mut Ctx, file: usize, list: &Spanned<Vec<Text>>) -> Vec<Algorithm> {
    let mut out = Vec::new();
    for name in list.get_ref() {
        match Algorithm::parse(name.get_ref()) {
            Some(a) if out.contains(&a) => cx.err(
                &loc(file, name),
                format!("algorithm `{}` is listed twice", name.get_ref()),
                None,
            ),
            Some(a) => out.push(a),
            None => cx.err(
                &loc(file, name),
                format!("unknown digest algorithm `{}`", name.get_ref()),
                Some("use \"MD5\" or \"SHA-256\"".into()),
            ),
        }
    }
    if list.get_ref().is_empty() {
        cx.err(
            &loc(file, list),
            "auth_algorithms is empty",
            Some("list at least one, e.g. [\"MD5\", \"SHA-256\"]".into()),
        );
    }
    if out.is_empty() {
        out.push(Algorithm::Md5);
    }
    out
}

/// An integer key within `min..=max`.
fn bounded(
    cx: &mut Ctx,
    file: usize,
    v: &Spanned<i64>,
    key: &str,
    min: u32,
    max: u32,
) -> Option<u32> {
    match u32::try_from(*v.get_ref()) {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            cx.err(
                &loc(file, v),
                format!("{key} must be between {min} and {max}, not {}", v.get_ref()),
                None,
            );
            None
        }
    }
}

/// A `ring_timeout` (any non-zero duration), or `None` with the error reported.
pub(super) fn ring_timeout(cx: &mut Ctx, file: usize, t: &Text) -> Option<Duration> {
    match parse_duration(t.get_ref()) {
        Ok(d) if d.is_zero() => {
            cx.err(
                &loc(file, t),
                "ring_timeout cannot be zero",
                Some("agents need time to answer, e.g. \"15s\"".into()),
            );
            None
        }
        Ok(d) => Some(d),
        Err(m) => {
            cx.err(&loc(file, t), m, None);
            None
        }
    }
}

/// A `wrap_up` (any duration), or `None` with the error reported.
pub(super) fn wrap_up(cx: &mut Ctx, file: usize, t: &Text) -> Option<Duration> {
    match parse_duration(t.get_ref()) {
        Ok(d) => Some(d),
        Err(m) => {
            cx.err(&loc(file, t), m, None);
            None
        }
    }
}

fn queue_defaults(cx: &mut Ctx, file: usize, q: &QueueDefaultsModel, s: &mut AgentSettings) {
    if let Some(d) = q
        .ring_timeout
        .as_ref()
        .and_then(|t| ring_timeout(cx, file, t))
    {
        s.ring_timeout = d;
    }
    if let Some(t) = &q.wrap_up {
        if let Some(d) = wrap_up(cx, file, t) {
            s.wrap_up = d;
        }
    }
}
