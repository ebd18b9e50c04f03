//! Issue 4 over SIP: the SHIPPED `ivr-menus/` answer calls to seven regions' numbers, SIPp presses keys
//! by replaying its RFC 4733 captures, and each call's CDR carries the region, language, menu path,
//! collected variables, route and digits. It does not test opening-hours edge cases (the ivr unit tests
//! do) nor the queues behind a route (a later issue): after routing the server hangs up with BYE.
mod common;

use std::time::Duration;

use common::{run_sipp, sipp_call_id_args, sipp_dtmf_scenario, temp_dir, Server, SippStep};
use serde_json::{json, Value};

/// What one region's call must show in its CDR.
struct Expect {
    region: &'static str,
    language: &'static str,
    menu_path: &'static [&'static str],
    variables: Value,
    route: &'static str,
    digits: &'static str,
}

/// Gap between key presses (start to start); each capture lasts 140 ms.
const GAP_MS: u64 = 400;

/// Places one SIPp call to `dialed` on a server whose wall clock reads `at`, pressing `steps`, and checks
/// the call's CDR against `expect`.
fn call_region(name: &str, at: &str, dialed: &str, steps: &[SippStep], expect: Expect) {
    let server = Server::start(&common::root().join("ivr-menus"), &["--pretend-time", at]);
    let dir = temp_dir(name);
    // The first key waits for the answer's media to be up (first prompt after 300 ms by default).
    let mut all = vec![SippStep::Pause(1200)];
    all.extend_from_slice(steps);
    let scenario = sipp_dtmf_scenario(&dir, name, &all, 15_000);
    let cid = sipp_call_id_args(name);
    let run = run_sipp(
        server.addr,
        &scenario.display().to_string(),
        &["-s", dialed, "-m", "1", "-l", "1", &cid[0], &cid[1]],
        Duration::from_secs(60),
    );
    assert!(
        run.status.success(),
        "{name}: sipp failed ({:?}):\n{}\nserver log:\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    let cdrs = server.wait_cdrs(1, Duration::from_secs(10));
    let cdr = cdrs
        .iter()
        .find(|c| c["call_id"].as_str().is_some_and(|id| id.starts_with(name)))
        .unwrap_or_else(|| panic!("{name}: no CDR; have {cdrs:?}\nlog:\n{}", server.log_text()));
    let ctx = format!("{name}: CDR {cdr:#}");
    assert_eq!(cdr["final_status"], 200, "{ctx}");
    assert_eq!(cdr["dialed"], dialed, "{ctx}");
    assert_eq!(cdr["region"], expect.region, "{ctx}");
    assert_eq!(cdr["language"], expect.language, "{ctx}");
    assert_eq!(cdr["menu_path"], json!(expect.menu_path), "{ctx}");
    assert_eq!(cdr["variables"], expect.variables, "{ctx}");
    assert_eq!(cdr["route"], expect.route, "{ctx}");
    let digits: String = cdr["digits"]
        .as_array()
        .unwrap_or_else(|| panic!("{ctx}"))
        .iter()
        .map(|d| d["digit"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(digits, expect.digits, "{ctx}");
    for d in cdr["digits"].as_array().into_iter().flatten() {
        assert_eq!(d["method"], "rfc4733", "{ctx}");
    }
    assert!(cdr["menu_version"].is_string(), "{ctx}");
}

/// The issue's example: the UK number at 19:00 on a Friday (Paris time), English, 2 for refunds, an order
/// number ended by `#`, queue `europe.refunds`. Keys barge into the greeting and the order prompt.
#[test]
fn europe_uk_refund_with_order_number() {
    call_region(
        "europe-uk",
        "2026-11-27T19:00:00+01:00",
        "08000289999",
        &[
            SippStep::Keys("2", GAP_MS),
            SippStep::Keys("12345678#", GAP_MS),
        ],
        Expect {
            region: "europe",
            language: "en",
            menu_path: &["main"],
            variables: json!({"order_id": "12345678"}),
            route: "europe.refunds",
            digits: "212345678#",
        },
    );
}

/// North America offers English and Spanish: the language question comes first; `2` picks Spanish,
/// then `1` for orders and an order number with repeated keys (each replay of the same capture is a
/// separate press).
#[test]
fn north_america_spanish_orders() {
    call_region(
        "north-america",
        "2026-11-27T13:00:00-05:00",
        "18008810888",
        &[
            SippStep::Keys("2", GAP_MS),
            SippStep::Keys("1", GAP_MS),
            SippStep::Keys("20261127#", GAP_MS),
        ],
        Expect {
            region: "north-america",
            language: "es",
            menu_path: &["main"],
            variables: json!({"order_id": "20261127"}),
            route: "north-america.orders",
            digits: "2120261127#",
        },
    );
}

/// China answers in Chinese around the clock; 4 enters the tech sub-menu, 2 routes to tech.
#[test]
fn china_tech_submenu() {
    call_region(
        "china",
        "2026-11-28T03:00:00+08:00",
        "4000009999",
        &[SippStep::Keys("42", GAP_MS)],
        Expect {
            region: "china",
            language: "zh",
            menu_path: &["main", "tech"],
            variables: json!({"category": "account-and-login"}),
            route: "china.tech",
            digits: "42",
        },
    );
}

/// Oceania (Sydney business hours): the AU number, refunds with an order number.
#[test]
fn oceania_au_refund() {
    call_region(
        "oceania-au",
        "2026-11-27T14:00:00+11:00",
        "1800639999",
        &[
            SippStep::Keys("2", GAP_MS),
            SippStep::Keys("876543#", GAP_MS),
        ],
        Expect {
            region: "oceania",
            language: "en",
            menu_path: &["main"],
            variables: json!({"order_id": "876543"}),
            route: "oceania.refunds",
            digits: "2876543#",
        },
    );
}

/// South Asia: the Indian number offers English and Hindi; `2` picks Hindi, then 3 for seller disputes.
#[test]
fn south_asia_india_hindi_seller_disputes() {
    call_region(
        "south-asia-in",
        "2026-11-27T11:00:00+08:00",
        "18002009999",
        &[SippStep::Keys("2", GAP_MS), SippStep::Keys("3", GAP_MS)],
        Expect {
            region: "south-asia",
            language: "hi",
            menu_path: &["main"],
            variables: json!({}),
            route: "south-asia.seller-disputes",
            digits: "23",
        },
    );
}

/// Latin America: the Brazilian number speaks Portuguese only; 5 asks for an 8-digit ticket number,
/// which ends the entry by its length (no `#`) and escalates.
#[test]
fn latin_america_brazil_ticket_escalation() {
    call_region(
        "latin-america-br",
        "2026-11-27T11:00:00+08:00",
        "08008919999",
        &[
            SippStep::Keys("5", GAP_MS),
            SippStep::Keys("90817263", GAP_MS),
        ],
        Expect {
            region: "latin-america",
            language: "pt",
            menu_path: &["main"],
            variables: json!({"ticket_id": "90817263"}),
            route: "latin-america.escalation",
            digits: "590817263",
        },
    );
}

/// The international number answers in Chinese; 8888 reaches the English team.
#[test]
fn international_8888_english_team() {
    call_region(
        "international",
        "2026-11-27T11:00:00+08:00",
        "+862161959999",
        &[SippStep::Keys("8888", GAP_MS)],
        Expect {
            region: "international",
            language: "zh",
            menu_path: &["main"],
            variables: json!({}),
            route: "international.english",
            digits: "8888",
        },
    );
}
