//! The replay's report: per call, what the replaying caller saw, where the server's record says the
//! call went, and pass/fail against an expected route — as text lines or one JSON object per call.
//! It neither replays nor reads files.
use serde::Serialize;

use crate::replay::caller::{CallEnd, CallerReport, KeyDelivered};

/// The parts of the server's CDR the report uses (read from its JSON: the CDR file line, the
/// `/calls/{call-id}` object, or the offline call layer's own record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The Call-ID.
    pub call_id: String,
    /// `REGION.DEPARTMENT` reached, if any.
    pub route: Option<String>,
    /// Menus visited, in order.
    pub menu_path: Vec<String>,
    /// Keys the server received (key, method).
    pub digits: Vec<(String, String)>,
    /// The region.
    pub region: Option<String>,
    /// The queue the call waited in.
    pub queue: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// Why the call ended.
    pub end_reason: Option<String>,
}

impl CallRecord {
    /// Reads a CDR JSON object; `None` when it has no `call_id`. An object wrapping the CDR under
    /// `cdr` is accepted too.
    pub fn from_json(v: &serde_json::Value) -> Option<CallRecord> {
        let v = match v.get("cdr") {
            Some(inner) if inner.is_object() => inner,
            _ => v,
        };
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let digits = v
            .get("digits")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        let key = match d.get("digit")? {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let method = d.get("method").and_then(|m| m.as_str()).unwrap_or("");
                        Some((key, method.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(CallRecord {
            call_id: text("call_id")?,
            route: text("route"),
            menu_path: v
                .get("menu_path")
                .and_then(|m| m.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            digits,
            region: text("region"),
            queue: text("queue"),
            agent: text("agent"),
            end_reason: text("end_reason"),
        })
    }
}

/// One key in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportKey {
    /// The key.
    pub key: String,
    /// `rfc4733`, `info` or `inband`.
    pub method: &'static str,
    /// Seconds from the ACK, or from the INVITE when `after_ack` is false.
    pub offset_s: f64,
    /// Whether `offset_s` counts from the ACK (else from the INVITE).
    pub after_ack: bool,
}

impl From<&KeyDelivered> for ReportKey {
    fn from(k: &KeyDelivered) -> Self {
        ReportKey {
            key: k.key.to_string(),
            method: k.method.as_str(),
            offset_s: (k.offset.as_millis() as f64) / 1000.0,
            after_ack: k.after_ack,
        }
    }
}

/// Pass, fail or nothing to judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The expected route was reached (or, without `--expect-route`, the call was replayed and the
    /// server's record found).
    Pass,
    /// Another route, no record, or the call could not be replayed.
    Fail,
}

/// The report of one call (the JSON object of `--json`; fields documented in README "Replaying
/// traces").
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    /// 1-based index of the call in the trace (what `--call N` selects).
    pub call: usize,
    /// The Call-ID in the trace.
    pub original_call_id: String,
    /// The Call-ID of the replay (`null` when the call was not replayed).
    pub replay_call_id: Option<String>,
    /// Status codes of the responses the replay saw, in order.
    pub responses: Vec<u16>,
    /// Keys delivered.
    pub keys: Vec<ReportKey>,
    /// How the replayed call ended: `server-hung-up`, `we-hung-up`, `rejected`, `timed-out`.
    pub ended: Option<String>,
    /// The route in the server's record (`null`: none reached, or no record).
    pub route: Option<String>,
    /// The menus visited, from the server's record.
    pub menu_path: Vec<String>,
    /// The keys the server recorded, in order.
    pub server_digits: Vec<String>,
    /// The queue, when the record has one.
    pub queue: Option<String>,
    /// The agent, when the record has one.
    pub agent: Option<String>,
    /// `--expect-route`.
    pub expected_route: Option<String>,
    /// `pass` or `fail`.
    pub verdict: Verdict,
    /// Why it failed, in one line (`null` on pass).
    pub failure: Option<String>,
    /// Set for a call that was not replayed (a leg the server placed, an unreadable call).
    pub skipped: Option<String>,
}

fn end_name(e: &CallEnd) -> &'static str {
    match e {
        CallEnd::InProgress => "in-progress",
        CallEnd::ServerHungUp => "server-hung-up",
        CallEnd::WeHungUp => "we-hung-up",
        CallEnd::Rejected(_) => "rejected",
        CallEnd::TimedOut => "timed-out",
    }
}

/// Where a call that reached the wrong place went elsewhere: the last menu of its path and the key
/// it took there (the key pressed in the n-th menu of the path, one key per menu before a collect).
fn divergence(record: &CallRecord) -> String {
    let Some(menu) = record.menu_path.last() else {
        return "before any menu".to_owned();
    };
    let index = record.menu_path.len() - 1;
    match record.digits.get(index).or(record.digits.last()) {
        Some((key, _)) => format!("in menu {menu} after key {key}"),
        None => format!("in menu {menu} with no key"),
    }
}

/// Judges one replayed call.
pub fn judge(
    call: usize,
    original_call_id: &str,
    caller: &CallerReport,
    record: Option<&CallRecord>,
    expected: Option<&str>,
) -> CallReport {
    let route = record.and_then(|r| r.route.clone());
    let failure = match (record, expected) {
        (None, _) => Some(format!(
            "call {call}: no record of call {} from the server",
            caller.call_id
        )),
        (Some(r), Some(exp)) if r.route.as_deref() != Some(exp) => Some(format!(
            "call {call}: expected {exp}, reached {} — {}",
            r.route.as_deref().unwrap_or("no route"),
            divergence(r)
        )),
        _ => None,
    };
    CallReport {
        call,
        original_call_id: original_call_id.to_owned(),
        replay_call_id: Some(caller.call_id.clone()),
        responses: caller.responses.clone(),
        keys: caller.keys.iter().map(ReportKey::from).collect(),
        ended: Some(end_name(&caller.end).to_owned()),
        route,
        menu_path: record.map(|r| r.menu_path.clone()).unwrap_or_default(),
        server_digits: record
            .map(|r| r.digits.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
        queue: record.and_then(|r| r.queue.clone()),
        agent: record.and_then(|r| r.agent.clone()),
        expected_route: expected.map(str::to_owned),
        verdict: if failure.is_some() {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
        failure,
        skipped: None,
    }
}

/// The report of a call that was not replayed: a leg the server placed passes (nothing to judge), an
/// unreadable call fails.
pub fn skipped(call: usize, original_call_id: &str, why: &str, fails: bool) -> CallReport {
    CallReport {
        call,
        original_call_id: original_call_id.to_owned(),
        replay_call_id: None,
        responses: Vec::new(),
        keys: Vec::new(),
        ended: None,
        route: None,
        menu_path: Vec::new(),
        server_digits: Vec::new(),
        queue: None,
        agent: None,
        expected_route: None,
        verdict: if fails { Verdict::Fail } else { Verdict::Pass },
        failure: fails.then(|| format!("call {call}: not replayed: {why}")),
        skipped: Some(why.to_owned()),
    }
}

fn secs(d: f64) -> String {
    format!("{d:.2}s")
}

/// The human-readable lines of one call's report (the failure line last).
pub fn text(r: &CallReport) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(why) = &r.skipped {
        lines.push(format!(
            "call {} ({}): skipped: {why}",
            r.call, r.original_call_id
        ));
        if let Some(f) = &r.failure {
            lines.push(f.clone());
        }
        return lines;
    }
    let codes: Vec<String> = r.responses.iter().map(u16::to_string).collect();
    let keys: Vec<String> = r
        .keys
        .iter()
        .map(|k| {
            let from = if k.after_ack { "" } else { " from INVITE" };
            format!("{} ({} at {}{from})", k.key, k.method, secs(k.offset_s))
        })
        .collect();
    lines.push(format!(
        "call {} ({} replayed as {}): responses [{}], keys [{}], ended {}",
        r.call,
        r.original_call_id,
        r.replay_call_id.as_deref().unwrap_or("-"),
        codes.join(" "),
        keys.join(", "),
        r.ended.as_deref().unwrap_or("-"),
    ));
    let mut route = format!(
        "  route {}, menus [{}]",
        r.route.as_deref().unwrap_or("none"),
        r.menu_path.join(" > ")
    );
    if let Some(q) = &r.queue {
        route.push_str(&format!(", queue {q}"));
    }
    if let Some(a) = &r.agent {
        route.push_str(&format!(", agent {a}"));
    }
    match (&r.expected_route, r.verdict) {
        (Some(e), Verdict::Pass) => route.push_str(&format!(": PASS (expected {e})")),
        (_, Verdict::Pass) => route.push_str(": PASS"),
        (_, Verdict::Fail) => route.push_str(": FAIL"),
    }
    lines.push(route);
    if let Some(f) = &r.failure {
        lines.push(f.clone());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> CallerReport {
        CallerReport {
            call_id: "replay-1".into(),
            responses: vec![100, 200, 200],
            keys: Vec::new(),
            end: CallEnd::WeHungUp,
            server_requests: Vec::new(),
            rtp_sent: 0,
            rtp_skipped: 0,
            rtp_received: 0,
        }
    }

    #[test]
    fn a_wrong_route_names_the_menu_and_the_key_where_the_call_went_elsewhere() {
        let rec = CallRecord::from_json(&serde_json::json!({
            "call_id": "replay-1",
            "route": "europe.orders",
            "menu_path": ["main"],
            "digits": [{"digit": "1", "method": "rfc4733", "at": "x"},
                       {"digit": "1", "method": "rfc4733", "at": "x"}],
        }))
        .expect("record");
        let r = judge(1, "orig", &caller(), Some(&rec), Some("europe.refunds"));
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(
            r.failure.as_deref(),
            Some(
                "call 1: expected europe.refunds, reached europe.orders — in menu main after key 1"
            )
        );
        let ok = judge(1, "orig", &caller(), Some(&rec), Some("europe.orders"));
        assert_eq!(ok.verdict, Verdict::Pass);
        assert!(text(&ok)[1].ends_with("PASS (expected europe.orders)"));
    }

    #[test]
    fn no_record_fails() {
        let r = judge(2, "orig", &caller(), None, None);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.failure.expect("failure").contains("no record"));
    }
}
