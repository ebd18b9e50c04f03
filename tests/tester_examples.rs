//! The testers' examples (examples/sipp/, listed in examples/README.md) do what their comments claim:
//! each scenario runs with SIPp against the real binary on the SHIPPED `ivr-menus/`, at the wall-clock
//! time its comment gives (`--pretend-time`), and the call's CDR shows the route, menu path, keys,
//! collected variables and end its comment names; where the comment says when a key was pressed (during
//! a prompt, after it), the CDR's key times are checked against the shipped prompts' lengths. It does
//! not test the queues behind a route (no agent is logged in: each routed call overflows and helpline
//! hangs up) nor what the caller hears (tests/sipp_media.rs does).
mod common;

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use common::{root, run_sipp, sipp_call_id_args, Server};
use serde_json::{json, Value};

/// A Friday 19:00 in Paris: the UK number (region europe, open Monday to Saturday 08:00-22:00) is open.
const OPEN: &str = "2026-11-27T19:00:00+01:00";
/// The same Friday at 23:30 in Paris: closed.
const NIGHT: &str = "2026-11-27T23:30:00+01:00";
/// The shipped UK number, as the scenarios' commands dial it.
const UK: &str = "08000289999";

/// What a scenario's comment claims about its call.
struct Claim {
    route: Option<&'static str>,
    menu_path: &'static [&'static str],
    digits: &'static str,
    variables: Value,
    end_reason: &'static str,
    /// How every key arrived: `rfc4733` or `info`.
    keys_by: &'static str,
}

/// Runs `examples/sipp/{scenario}.xml` once against a server whose clock reads `at`, dialing the UK
/// number, and returns the call's CDR after checking it against `claim`.
fn run_example(scenario: &str, at: &str, claim: Claim) -> Value {
    let server = Server::start(&root().join("ivr-menus"), &["--pretend-time", at]);
    let cid = sipp_call_id_args(scenario);
    let path = format!("examples/sipp/{scenario}.xml");
    // The longest scenario (caller_timeout) lasts about 70 s.
    let run = run_sipp(
        server.addr,
        &path,
        &["-s", UK, "-m", "1", &cid[0], &cid[1]],
        Duration::from_secs(120),
    );
    assert!(
        run.status.success(),
        "{scenario}: sipp failed ({:?}):\n{}\nserver log:\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    let cdrs = server.wait_cdrs(1, Duration::from_secs(10));
    let cdr = cdrs
        .iter()
        .find(|c| {
            c["call_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(scenario))
        })
        .unwrap_or_else(|| {
            panic!(
                "{scenario}: no CDR in {cdrs:?}\nlog:\n{}",
                server.log_text()
            )
        })
        .clone();
    let ctx = format!("{scenario}: CDR {cdr:#}");
    assert_eq!(cdr["final_status"], 200, "{ctx}");
    assert_eq!(cdr["dialed"], UK, "{ctx}");
    assert_eq!(cdr["region"], "europe", "{ctx}");
    assert_eq!(cdr["language"], "en", "{ctx}");
    assert_eq!(cdr["route"], json!(claim.route), "{ctx}");
    assert_eq!(cdr["menu_path"], json!(claim.menu_path), "{ctx}");
    assert_eq!(digits(&cdr), claim.digits, "{ctx}");
    assert_eq!(cdr["variables"], claim.variables, "{ctx}");
    assert_eq!(cdr["end_reason"], claim.end_reason, "{ctx}");
    for d in cdr["digits"].as_array().into_iter().flatten() {
        assert_eq!(d["method"], claim.keys_by, "{ctx}");
    }
    if claim.route.is_some() {
        // No agent is logged in: the queue (and its overflow, if any) gave up on the caller.
        assert_eq!(cdr["queue_result"], "overflow", "{ctx}");
    }
    cdr
}

/// The keys of a CDR, in order.
fn digits(cdr: &Value) -> String {
    cdr["digits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["digit"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A CDR time.
fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("CDR time {v}: {e}"))
}

/// When the `i`th key arrived, counted from the answer.
fn key_at(cdr: &Value, i: usize) -> Duration {
    let d = time(&cdr["digits"][i]["at"]) - time(&cdr["answer"]);
    d.to_std()
        .unwrap_or_else(|_| panic!("key {i} before the answer: {cdr:#}"))
}

/// From the answer to the end of the call.
fn call_length(cdr: &Value) -> Duration {
    (time(&cdr["end"]) - time(&cdr["answer"]))
        .to_std()
        .unwrap_or_else(|_| panic!("call ended before its answer: {cdr:#}"))
}

/// How long a shipped English prompt plays.
fn prompt(name: &str) -> Duration {
    let path = root().join("prompts/en").join(format!("{name}.wav"));
    let reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let rate = f64::from(reader.spec().sample_rate);
    Duration::from_secs_f64(f64::from(reader.duration()) / rate)
}

/// How the scenarios press keys (all but caller_info_refunds): RFC 4733 events.
const KEYS_BY: &str = "rfc4733";

/// Routed calls: helpline's BYE after the overflow's goodbye.
const ROUTED_END: &str = "server-bye";

#[test]
fn orders_with_the_order_number_after_its_prompt() {
    let cdr = run_example(
        "caller_orders",
        OPEN,
        Claim {
            route: Some("europe.orders"),
            menu_path: &["main"],
            digits: "120261127#",
            variables: json!({"order_id": "20261127"}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    // The number was typed after enter-order-number had played out, not into it.
    let gap = key_at(&cdr, 1) - key_at(&cdr, 0);
    assert!(
        gap > prompt("enter-order-number"),
        "first digit {gap:?} after the 1: {cdr:#}"
    );
}

#[test]
fn refunds_with_the_order_number_typed_into_the_prompts() {
    let cdr = run_example(
        "caller_uk_refunds",
        OPEN,
        Claim {
            route: Some("europe.refunds"),
            menu_path: &["main"],
            digits: "212345678#",
            variables: json!({"order_id": "12345678"}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    // Barge-in: 2 cut the greeting, the first digit cut enter-order-number.
    assert!(key_at(&cdr, 0) < prompt("main-greeting"), "{cdr:#}");
    assert!(
        key_at(&cdr, 1) - key_at(&cdr, 0) < prompt("enter-order-number"),
        "{cdr:#}"
    );
    // europe.refunds overflows to the English team's queue, which has nobody either.
    assert_eq!(
        cdr["queues_tried"],
        json!([
            {"queue": "europe.refunds", "result": "overflow"},
            {"queue": "english-line.refunds", "result": "overflow"},
        ]),
        "{cdr:#}"
    );
}

#[test]
fn refunds_with_keys_sent_as_sip_info() {
    run_example(
        "caller_info_refunds",
        OPEN,
        Claim {
            route: Some("europe.refunds"),
            menu_path: &["main"],
            digits: "212345678#",
            variables: json!({"order_id": "12345678"}),
            end_reason: ROUTED_END,
            keys_by: "info",
        },
    );
}

#[test]
fn seller_disputes_during_the_greeting() {
    let cdr = run_example(
        "caller_seller_disputes",
        OPEN,
        Claim {
            route: Some("europe.seller-disputes"),
            menu_path: &["main"],
            digits: "3",
            variables: json!({}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    assert!(key_at(&cdr, 0) < prompt("main-greeting"), "{cdr:#}");
}

#[test]
fn tech_submenu_key_after_its_greeting() {
    let cdr = run_example(
        "caller_tech",
        OPEN,
        Claim {
            route: Some("europe.tech"),
            menu_path: &["main", "tech"],
            digits: "41",
            variables: json!({"category": "app-and-website"}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    // 1 came after the sub-menu's greeting, within its 5 s first-key timeout.
    let gap = key_at(&cdr, 1) - key_at(&cdr, 0);
    let greeting = prompt("tech-greeting");
    assert!(
        gap > greeting && gap < greeting + Duration::from_secs(5),
        "1 came {gap:?} after the 4 (tech-greeting {greeting:?}): {cdr:#}"
    );
}

#[test]
fn extension_8888_reaches_the_english_team() {
    run_example(
        "dtmf_2833_8888",
        OPEN,
        Claim {
            route: Some("europe.english"),
            menu_path: &["main"],
            digits: "8888",
            variables: json!({}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
}

#[test]
fn invalid_key_then_a_retry() {
    let cdr = run_example(
        "caller_invalid_retry",
        OPEN,
        Claim {
            route: Some("europe.seller-disputes"),
            menu_path: &["main"],
            digits: "73",
            variables: json!({}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    // The retry came while the short greeting played, after invalid-option.
    let gap = key_at(&cdr, 1) - key_at(&cdr, 0);
    let invalid = prompt("invalid-option");
    assert!(
        gap > invalid && gap < invalid + prompt("main-short"),
        "retry {gap:?} after the 7: {cdr:#}"
    );
}

#[test]
fn keys_typed_ahead_through_two_greetings() {
    let cdr = run_example(
        "caller_typed_ahead",
        OPEN,
        Claim {
            route: Some("europe.tech"),
            menu_path: &["main", "tech"],
            digits: "42",
            variables: json!({"category": "account-and-login"}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
    // 2 arrived in the first second of the tech greeting, and it was taken.
    let gap = key_at(&cdr, 1) - key_at(&cdr, 0);
    assert!(
        gap < Duration::from_secs(1),
        "2 came {gap:?} after the 4: {cdr:#}"
    );
    assert!(key_at(&cdr, 0) < prompt("main-greeting"), "{cdr:#}");
}

#[test]
fn after_hours_closed_message_then_hang_up() {
    let cdr = run_example(
        "caller_after_hours",
        NIGHT,
        Claim {
            route: None,
            menu_path: &["closed"],
            digits: "",
            variables: json!({}),
            end_reason: "server-bye",
            keys_by: KEYS_BY,
        },
    );
    // closed, the menu's 2 s wait, goodbye — then the BYE (plus the first-prompt delay and scheduling).
    let expected = prompt("closed") + Duration::from_secs(2) + prompt("goodbye");
    let length = call_length(&cdr);
    assert!(
        length >= expected && length < expected + Duration::from_secs(3),
        "call lasted {length:?}, expected about {expected:?}: {cdr:#}"
    );
}

#[test]
fn no_key_at_all_hangs_up_after_three_timeouts() {
    let cdr = run_example(
        "caller_timeout",
        OPEN,
        Claim {
            route: None,
            menu_path: &["main"],
            digits: "",
            variables: json!({}),
            end_reason: "server-bye",
            keys_by: KEYS_BY,
        },
    );
    // The greeting, then the short greeting twice, each followed by the 5 s first-key timeout, then
    // goodbye: well past the 30 s RTP timeout, which the caller's audio kept away.
    let timeout = Duration::from_secs(5);
    let expected =
        prompt("main-greeting") + 2 * prompt("main-short") + 3 * timeout + prompt("goodbye");
    let length = call_length(&cdr);
    assert!(
        length >= expected && length < expected + Duration::from_secs(4),
        "call lasted {length:?}, expected about {expected:?}: {cdr:#}"
    );
}

#[test]
fn hold_and_resume_mid_menu_then_a_key() {
    // The scenario itself fails unless the hold is answered recvonly and the resume two-way.
    run_example(
        "caller_hold",
        OPEN,
        Claim {
            route: Some("europe.seller-disputes"),
            menu_path: &["main"],
            digits: "3",
            variables: json!({}),
            end_reason: ROUTED_END,
            keys_by: KEYS_BY,
        },
    );
}

/// Every caller scenario in examples/sipp/ that examples/README.md lists is run by a test here, and the
/// README names each with the route its test checks.
#[test]
fn the_readme_lists_every_example_with_its_route() {
    let readme =
        std::fs::read_to_string(root().join("examples/README.md")).expect("examples/README.md");
    for (scenario, outcome) in [
        ("caller_orders.xml", "europe.orders"),
        ("caller_uk_refunds.xml", "europe.refunds"),
        ("caller_info_refunds.xml", "europe.refunds"),
        ("caller_seller_disputes.xml", "europe.seller-disputes"),
        ("caller_tech.xml", "europe.tech"),
        ("dtmf_2833_8888.xml", "europe.english"),
        ("caller_invalid_retry.xml", "europe.seller-disputes"),
        ("caller_typed_ahead.xml", "europe.tech"),
        ("caller_after_hours.xml", "no route"),
        ("caller_timeout.xml", "no route"),
        ("caller_hold.xml", "europe.seller-disputes"),
    ] {
        let row = readme
            .lines()
            .find(|l| l.starts_with('|') && l.contains(scenario))
            .unwrap_or_else(|| panic!("examples/README.md has no table row for {scenario}"));
        assert!(
            row.contains(outcome),
            "{scenario}: row {row:?} does not name {outcome}"
        );
        let xml = std::fs::read_to_string(root().join("examples/sipp").join(scenario))
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
        assert!(
            xml.contains("Proves:") && xml.contains(&format!("sipp -sf examples/sipp/{scenario}")),
            "{scenario}: its first comment must say what it proves and how to run it"
        );
    }
}
