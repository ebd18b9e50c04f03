//! `helpline report` on a known CDR file (tests/data/report/cdr.jsonl, written by hand): the funnel it
//! prints as text and as JSON, and the bad lines it names and skips.

mod common;

use common::root;
use std::process::Command;

const CDR: &str = "tests/data/report/cdr.jsonl";

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run helpline");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_prints_the_funnel_per_region_and_dialed_number() {
    let (code, stdout, stderr) = run(&["report", CDR]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let expected = "\
6 calls
region -
  calls 1, routed 0
  left at -: 1 (median 0.0 s; <10s 1; error 1)
region uk
  calls 4, routed 2
  routes: uk.orders 1, uk.refunds 1
  left at uk-main: 2 (median 12.5 s; <10s 1, 10-30s 1; caller-bye 1, server-bye 1)
region us
  calls 1, routed 0
  left at us-orders: 1 (median 200.0 s; >=180s 1; rtp-timeout 1)
dialed +12125550100
  calls 1, routed 0
  left at us-orders: 1 (median 200.0 s; >=180s 1; rtp-timeout 1)
dialed +442071234567
  calls 3, routed 1
  routes: uk.orders 1
  left at uk-main: 2 (median 12.5 s; <10s 1, 10-30s 1; caller-bye 1, server-bye 1)
dialed +442079999999
  calls 1, routed 1
  routes: uk.refunds 1
dialed 999
  calls 1, routed 0
  left at -: 1 (median 0.0 s; <10s 1; error 1)
";
    assert_eq!(stdout, expected);
}

#[test]
fn report_names_bad_lines_and_skips_them() {
    let (code, _, stderr) = run(&["report", CDR]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(CDR)).collect();
    assert_eq!(lines.len(), 2, "stderr: {stderr}");
    assert!(lines[0].starts_with(&format!("{CDR}:4: ")), "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{CDR}:7: `end` is not an RFC 3339 time")),
        "{}",
        lines[1]
    );
}

#[test]
fn report_json_has_the_same_funnel() {
    let (code, stdout, stderr) = run(&["report", "--json", CDR]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("report --json prints JSON");
    assert_eq!(json["calls"], 6);
    let uk = &json["regions"]["uk"];
    assert_eq!(uk["calls"], 4);
    assert_eq!(uk["routed"], 2);
    assert_eq!(uk["routes"]["uk.orders"], 1);
    assert_eq!(uk["routes"]["uk.refunds"], 1);
    let main = &uk["left"]["uk-main"];
    assert_eq!(main["calls"], 2);
    assert_eq!(main["median_secs"], 12.5);
    assert_eq!(
        main["after"],
        serde_json::json!([{"bucket": "<10s", "calls": 1}, {"bucket": "10-30s", "calls": 1}])
    );
    assert_eq!(main["end_reasons"]["caller-bye"], 1);
    assert_eq!(main["end_reasons"]["server-bye"], 1);
    assert_eq!(
        json["dialed"]["+12125550100"]["left"]["us-orders"]["median_secs"],
        200.0
    );
    assert_eq!(
        json["dialed"]["999"]["left"]["-"]["end_reasons"]["error"],
        1
    );
}

#[test]
fn report_on_a_missing_file_exits_1() {
    let (code, _, stderr) = run(&["report", "tests/data/report/no-such.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no-such.jsonl"), "{stderr}");
}
