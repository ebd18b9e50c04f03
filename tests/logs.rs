//! Issue 14's logs against the real binary: `--log-format json` prints one JSON object per line
//! (time, level, call_id, message, fields) and a call's lines carry its Call-ID; text logs piped to a
//! file carry no colour escapes and name the call's span; with `--pretend-time` a log line and the CDR
//! of the same moment carry the same time.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::Server;

const WAIT: Duration = Duration::from_secs(10);

fn first_flow() -> PathBuf {
    common::root().join("tests/data/menus/first-flow")
}

/// One whole call: INVITE, 200, ACK, our BYE and its 200; returns its Call-ID once its CDR is out.
fn call(server: &Server) -> String {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let call_id = common::whole_call(server, &rtp, WAIT);
    server.cdr_for(&call_id, WAIT);
    call_id
}

fn parse_time(v: &serde_json::Value) -> DateTime<Utc> {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// Every stderr line, parsed: each must be one JSON object of the documented shape.
fn json_lines(server: &Server) -> Vec<serde_json::Value> {
    server
        .log_text()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            parse_time(&v["time"]);
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&v["level"].as_str().unwrap_or("")),
                "{line}"
            );
            assert!(v["message"].is_string(), "{line}");
            assert!(v["fields"].is_object(), "{line}");
            assert!(v["call_id"].is_string() || v["call_id"].is_null(), "{line}");
            v
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_and_a_calls_lines_carry_its_call_id() {
    let server = Server::start(&first_flow(), &["--no-watch", "--log-format", "json"]);
    let call_id = call(&server);
    server
        .wait_log("call ended", WAIT)
        .unwrap_or_else(|| panic!("no call ended line:\n{}", server.log_text()));
    let lines = json_lines(&server);
    let of_call: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["call_id"] == call_id.as_str())
        .collect();
    let ended = of_call
        .iter()
        .find(|v| v["message"] == "call ended")
        .unwrap_or_else(|| panic!("the call's end without its call_id:\n{}", server.log_text()));
    assert!(ended["fields"]["reason"].is_string(), "{ended}");
    // The INVITE's answer (sent when the shell polls, outside the INVITE's event) is the call's too.
    assert!(
        of_call
            .iter()
            .any(|v| v["message"] == "invite server transaction" && v["fields"]["to"] == "Accepted"),
        "the 200's transaction line without the call_id:\n{}",
        server.log_text()
    );
    assert!(
        of_call.len() >= 3,
        "only {} line(s) of the call carry its call_id:\n{}",
        of_call.len(),
        server.log_text()
    );
    assert!(
        lines.iter().any(|v| v["call_id"].is_null()
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on udp:"))),
        "lines of no call carry call_id null"
    );
}

#[test]
fn piped_text_logs_have_no_colour_escapes_and_name_the_calls_span() {
    let server = Server::start(&first_flow(), &["--no-watch"]);
    let call_id = call(&server);
    let line = server
        .wait_log("call ended", WAIT)
        .unwrap_or_else(|| panic!("no call ended line:\n{}", server.log_text()));
    let text = server.log_text();
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a piped log:\n{text}"
    );
    assert!(
        line.contains(&format!("call{{call_id={call_id}}}")),
        "{line}"
    );
}

#[test]
fn with_pretend_time_the_log_and_the_cdr_carry_the_same_clock() {
    let server = Server::start(
        &first_flow(),
        &[
            "--no-watch",
            "--log-format",
            "json",
            "--pretend-time",
            "2031-05-06T07:08:09Z",
        ],
    );
    let call_id = call(&server);
    let cdr = server.cdr_for(&call_id, WAIT);
    server.wait_log("call ended", WAIT);
    let lines = json_lines(&server);
    let ended = lines
        .iter()
        .find(|v| v["message"] == "call ended" && v["call_id"] == call_id.as_str())
        .unwrap_or_else(|| panic!("no call ended line:\n{}", server.log_text()));
    let logged = parse_time(&ended["time"]);
    let recorded = parse_time(&cdr["end"]);
    assert!(
        logged.to_rfc3339().starts_with("2031-05-06"),
        "the log runs on the pretended clock: {logged}"
    );
    let gap = (logged - recorded).num_milliseconds().abs();
    assert!(
        gap < 1000,
        "log {logged} vs CDR end {recorded}: {gap} ms apart"
    );
    // Every line of the run is on the pretended clock, the first included.
    let first = parse_time(&lines[0]["time"]);
    assert!(first.to_rfc3339().starts_with("2031-05-06"), "{}", lines[0]);
}
