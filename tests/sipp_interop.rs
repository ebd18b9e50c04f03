//! SIPp interop: the real `helpline` binary against SIPp 3.6 (`/usr/bin/sipp`), built-in `uac` and the
//! scenarios in `examples/sipp/`, over UDP and TCP, one call at a time and 50 at once. Each test starts its
//! own server on 127.0.0.1:0 with the `first-flow` menus (any number answers) and checks what a caller and
//! the operator observe: SIPp's exit status and counters, its message trace, and the CDR lines.
//! Not covered here: media content (see the media tests) and throughput (measured by hand, see README).
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{root, run_sipp, Server, SippRun};
use serde_json::Value;

/// The menus under test: every number lands on "welcome → one key → you pressed N, goodbye".
fn first_flow() -> PathBuf {
    root().join("tests/data/menus/first-flow")
}

/// Generous bound for one SIPp run on a loaded 2-core machine.
const SIPP_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails with SIPp's own words when it did not exit 0 (0 = every call succeeded).
fn assert_sipp_ok(run: &SippRun, what: &str, server: &Server) {
    assert!(
        run.status.success(),
        "{what}: sipp exited {:?}\n--- sipp ---\n{}\n--- server ---\n{}",
        run.status.code(),
        run.output,
        server.log_text()
    );
}

/// The number SIPp reports in a column of its final statistics screen (`Successful call` / `Failed call`),
/// cumulative figure (the last number on the line).
fn sipp_counter(run: &SippRun, label: &str) -> Option<u64> {
    // The final screen is printed last, so search from the end.
    run.output
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with(label))
        .find_map(|l| l.split('|').rev().find_map(|c| c.trim().parse().ok()))
}

/// Waits for `n` CDRs and checks that each ended for `reason` with final status `status`.
fn assert_cdrs(server: &Server, n: usize, reason: &str, status: u64) -> Vec<Value> {
    let cdrs = server.wait_cdrs(n, Duration::from_secs(30));
    assert_eq!(
        cdrs.len(),
        n,
        "CDR lines: {cdrs:#?}\n--- server ---\n{}",
        server.log_text()
    );
    for c in &cdrs {
        assert_eq!(c["end_reason"], reason, "CDR {c}");
        assert_eq!(c["final_status"], status, "CDR {c}");
    }
    cdrs
}

/// Built-in `uac`, 5 sequential calls: all succeed and all are recorded as ended by the caller.
fn uac_five(transport: &str) {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "sn:uac",
        &["-t", transport, "-m", "5", "-l", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "uac", &server);
    assert_eq!(
        sipp_counter(&run, "Successful call"),
        Some(5),
        "{}",
        run.output
    );
    assert_eq!(sipp_counter(&run, "Failed call"), Some(0), "{}", run.output);
    let cdrs = assert_cdrs(&server, 5, "caller-bye", 200);
    let mut ids: Vec<&str> = cdrs.iter().filter_map(|c| c["call_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one CDR per call: {cdrs:#?}");
}

#[test]
fn builtin_uac_udp() {
    uac_five("u1");
}

#[test]
fn builtin_uac_tcp() {
    uac_five("t1");
}

/// 50 calls started within a second, each held 3 s: 50 calls alive at once, all succeed.
fn fifty_concurrent(transport: &str) {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "sn:uac",
        &[
            "-t",
            transport,
            // SIPp refuses to start while its default socket cap (50000) exceeds the open-file limit;
            // 50 calls need at most 50 connections (tn) plus its listening sockets.
            "-max_socket",
            "200",
            "-l",
            "50",
            "-m",
            "50",
            "-r",
            "50",
            "-d",
            "3000",
            "-buff_size",
            "4194304",
        ],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "50 concurrent", &server);
    assert_eq!(
        sipp_counter(&run, "Successful call"),
        Some(50),
        "{}",
        run.output
    );
    let cdrs = assert_cdrs(&server, 50, "caller-bye", 200);
    // The calls really overlapped: the last call was answered before the first one ended.
    let mut answers: Vec<&str> = cdrs.iter().filter_map(|c| c["answer"].as_str()).collect();
    let mut ends: Vec<&str> = cdrs.iter().filter_map(|c| c["end"].as_str()).collect();
    answers.sort_unstable();
    ends.sort_unstable();
    assert_eq!(answers.len(), 50, "every call answered: {cdrs:#?}");
    assert!(
        answers.last() < ends.first(),
        "calls did not overlap: last answer {:?}, first end {:?}",
        answers.last(),
        ends.first()
    );
}

#[test]
fn fifty_concurrent_calls_udp() {
    fifty_concurrent("u1");
}

/// TCP with one connection carrying all 50 calls (`t1`): the server must demultiplex by Call-ID on one
/// stream, the harder case for its framer and the one a proxy trunk looks like.
#[test]
fn fifty_concurrent_calls_tcp_one_socket() {
    fifty_concurrent("t1");
}

/// TCP with one connection per call (`tn`): 50 connections accepted and served at once, each call's
/// responses and the caller's BYE on its own stream.
#[test]
fn fifty_concurrent_calls_tcp_socket_per_call() {
    fifty_concurrent("tn");
}

/// ACK withheld for 2.2 s: the server retransmits its 200 (RFC 3261 §13.3.1.4, T1 = 500 ms → at 0.5 s and
/// 1.5 s) and the call completes once the ACK comes.
#[test]
fn ack_delay_retransmits_200() {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/ack_delay.xml",
        &["-m", "1", "-trace_msg"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "ack_delay", &server);
    // SIPp's message log: each received message follows a "received ... message" line.
    let invite_200s = run
        .output
        .split("received")
        .filter(|m| m.contains("SIP/2.0 200") && m.contains("CSeq: 1 INVITE"))
        .count();
    assert!(
        invite_200s >= 3,
        "the 200 was sent {invite_200s} time(s); expected the original and at least 2 retransmissions\n{}",
        run.output
    );
    assert_cdrs(&server, 1, "caller-bye", 200);
}

/// No ACK at all: with T1 = 100 ms the server gives up after 64·T1 = 6.4 s and hangs up with BYE (the
/// scenario fails when no BYE comes); the CDR says `no-ack`.
#[test]
fn no_ack_gets_bye() {
    let server = Server::start(&first_flow(), &["--t1-ms", "100"]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/no_ack.xml",
        &["-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "no_ack", &server);
    assert_cdrs(&server, 1, "no-ack", 200);
}

/// CANCEL during a 5 s ring: 180, then 200 to the CANCEL and 487 to the INVITE, and nothing after (the
/// scenario waits 6 s and fails on any unexpected message); the CDR says cancel / 487, never answered.
#[test]
fn cancel_while_ringing() {
    let server = Server::start(&first_flow(), &["--ring-ms", "5000"]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/cancel.xml",
        &["-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "cancel", &server);
    let cdrs = assert_cdrs(&server, 1, "cancel", 487);
    assert!(
        cdrs[0]["answer"].is_null(),
        "a cancelled call has no answer time: {}",
        cdrs[0]
    );
}

/// Every header in its compact form (RFC 3261 §7.3.3): the call completes.
#[test]
fn compact_headers() {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/compact.xml",
        &["-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "compact", &server);
    assert_cdrs(&server, 1, "caller-bye", 200);
}

/// re-INVITE putting the call on hold (`a=sendonly`): answered 200 with `a=recvonly` (checked by the
/// scenario's `ereg check_it`), then the caller hangs up normally.
#[test]
fn reinvite_hold() {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/reinvite.xml",
        &["-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "reinvite", &server);
    assert_cdrs(&server, 1, "caller-bye", 200);
}

/// SIP INFO `Signal=5`: the server confirms the key and hangs up itself with BYE; the CDR records the
/// digit once, as arriving by INFO.
#[test]
fn info_digit_then_server_bye() {
    let server = Server::start(&first_flow(), &[]);
    let run = run_sipp(
        server.addr,
        "examples/sipp/uas_bye_info.xml",
        &["-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "uas_bye_info", &server);
    let cdrs = assert_cdrs(&server, 1, "server-bye", 200);
    let digits = cdrs[0]["digits"].as_array().cloned().unwrap_or_default();
    assert_eq!(digits.len(), 1, "digits: {}", cdrs[0]);
    assert_eq!(digits[0]["digit"], "5");
    assert_eq!(digits[0]["method"], "info");
    assert_eq!(cdrs[0]["menu_path"], serde_json::json!(["welcome"]));
    // The BYE came only after "you pressed five, goodbye" had time to play: the call lasted at least as
    // long as those three prompts, counted from the INFO (which arrives right after the answer).
    let confirmation: Duration = ["you-pressed", "digit-5", "goodbye"]
        .iter()
        .map(|name| prompt_length(&format!("en/{name}.wav")))
        .sum();
    let answered = rfc3339(&cdrs[0]["answer"]);
    let ended = rfc3339(&cdrs[0]["end"]);
    let held = (ended - answered).to_std().unwrap_or_default();
    assert!(
        held >= confirmation,
        "hung up {held:?} after the answer, before the {confirmation:?} confirmation could play: {}",
        cdrs[0]
    );
}

/// How long a shipped prompt plays.
fn prompt_length(name: &str) -> Duration {
    let reader = hound::WavReader::open(root().join("prompts").join(name)).expect("prompt wav");
    let spec = reader.spec();
    Duration::from_secs_f64(f64::from(reader.duration()) / f64::from(spec.sample_rate))
}

/// A CDR time field.
fn rfc3339(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("CDR time {v}: {e}"))
}
