//! `helpline serve --trace-dir` against the real binary: a SIPp call that presses 5 with RFC 4733 (the
//! capture sip-tester ships) leaves one pcap named `<start>-<Call-ID>.pcap` (start on the
//! `--pretend-time` clock) that tshark reads as an ordinary call — INVITE, 200, ACK, BYE, the caller's
//! telephone-events and a sample of our RTP; the same over TCP; and a trace directory that cannot be
//! written leaves calls working and is logged once. The call layer's side is tests/capture_calls.rs.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{run_sipp, sipp_call_id_args, Server};

const WAIT: Duration = Duration::from_secs(20);
const PRETEND: &str = "2026-12-01T10:00:00Z";

fn first_flow() -> PathBuf {
    common::root().join("tests/data/menus/first-flow")
}

/// Runs `calls` SIPp calls of the key-5 scenario over `transport` (`u1`, `t1`) and returns the CDRs.
fn key5_calls(server: &Server, transport: &str, calls: usize) -> Vec<serde_json::Value> {
    let [cid_flag, cid] = sipp_call_id_args("cap");
    let n = calls.to_string();
    let run = run_sipp(
        server.addr,
        "examples/sipp/dtmf_2833_5.xml",
        &[
            "-m",
            &n,
            "-s",
            "08000000001",
            "-t",
            transport,
            &cid_flag,
            &cid,
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.status.success(),
        "sipp failed: {}\n{}\nserver log:\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    let cdrs = server.wait_cdrs(calls, WAIT);
    assert_eq!(cdrs.len(), calls, "{cdrs:?}");
    cdrs
}

/// Stops the server and waits for it: every capture file is complete once it has exited.
fn stop(server: &mut Server) {
    server.signal("TERM");
    let status = server
        .wait_exit(WAIT)
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", server.log_text());
}

/// `tshark -r file ARGS`, its stdout (fails the test on an error).
fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark is installed (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file name the call with this CDR must have: its start (RFC 3339 with milliseconds, on the
/// pretend clock) to the second, then its Call-ID with `@` (the only odd character SIPp's has) as `_`.
fn expected_name(cdr: &serde_json::Value) -> String {
    let start = cdr["start"].as_str().expect("a start time");
    let start: chrono::DateTime<chrono::Utc> = chrono::DateTime::parse_from_rfc3339(start)
        .expect("RFC 3339")
        .into();
    let call_id = cdr["call_id"]
        .as_str()
        .expect("a Call-ID")
        .replace('@', "_");
    format!("{}-{call_id}.pcap", start.format("%Y%m%dT%H%M%SZ"))
}

fn pcaps(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the trace dir exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

/// One column of `tshark -T fields` per line, for the packets matching `filter`.
fn fields(file: &Path, filter: &str, field: &str, rtp: bool) -> Vec<String> {
    let mut args = vec!["-Y", filter, "-T", "fields", "-e", field];
    if rtp {
        args.extend(["-o", "rtp.heuristic_rtp:TRUE"]);
    }
    tshark(file, &args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_udp_call_is_one_pcap_tshark_reads_with_its_sip_and_rfc4733_keys() {
    let dir = common::temp_dir("trace-udp");
    let trace = dir.join("traces");
    let trace_arg = trace.display().to_string();
    let mut server = Server::start(
        &first_flow(),
        &["--trace-dir", &trace_arg, "--pretend-time", PRETEND],
    );
    let cdr = key5_calls(&server, "u1", 1).remove(0);
    stop(&mut server);

    let files = pcaps(&trace);
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, [expected_name(&cdr)]);
    assert!(names[0].starts_with("20261201T1000"), "{names:?}");
    let file = &files[0];

    let methods = fields(file, "sip.Method", "sip.Method", false);
    for m in ["INVITE", "ACK", "BYE"] {
        assert!(methods.iter().any(|x| x == m), "{m} in {methods:?}");
    }
    let codes = fields(file, "sip.Status-Code", "sip.Status-Code", false);
    assert!(
        codes.iter().filter(|c| *c == "200").count() >= 2,
        "200 to INVITE and BYE: {codes:?}"
    );
    let events = fields(file, "rtpevent", "rtpevent.event_id", true);
    assert!(
        !events.is_empty() && events.iter().all(|e| e == "5"),
        "{events:?}"
    );
    // The sample of what helpline sent: its prompt RTP (PCMU), at most the per-call bound.
    let ours = fields(
        file,
        "rtp.p_type == 0 && udp.srcport >= 30000",
        "rtp.seq",
        true,
    );
    assert!(
        !ours.is_empty() && ours.len() <= 1500,
        "{} packets of our RTP",
        ours.len()
    );
    // Every packet in time order, none before the pretend clock's start.
    let times = fields(file, "frame", "frame.time_epoch", false);
    let times: Vec<f64> = times.iter().map(|t| t.parse().expect("epoch")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(times[0] >= 1_796_119_200.0, "pretend time: {}", times[0]);
}

#[test]
fn a_tcp_call_is_written_as_tcp_segments_tshark_reads_as_sip() {
    let dir = common::temp_dir("trace-tcp");
    let trace = dir.join("traces");
    let trace_arg = trace.display().to_string();
    let mut server = Server::start(
        &first_flow(),
        &["--trace-dir", &trace_arg, "--pretend-time", PRETEND],
    );
    let cdr = key5_calls(&server, "t1", 1).remove(0);
    stop(&mut server);
    let files = pcaps(&trace);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(expected_name(&cdr)), "{files:?}");
    let port = server.addr.port().to_string();
    let invite = fields(
        &files[0],
        "tcp && sip.Method == INVITE",
        "tcp.dstport",
        false,
    );
    assert_eq!(invite, std::slice::from_ref(&port));
    let bye = fields(&files[0], "tcp && sip.Method == BYE", "tcp.srcport", false);
    assert_eq!(bye, [port], "helpline's BYE");
    // Sequence numbers add up: tshark finds no gap or overlap in either direction.
    let problems = fields(
        &files[0],
        "tcp.analysis.lost_segment || tcp.analysis.retransmission || tcp.analysis.out_of_order",
        "frame.number",
        false,
    );
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn an_unwritable_trace_dir_leaves_calls_working_and_is_logged_once() {
    let dir = common::temp_dir("trace-bad");
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").expect("write a regular file");
    let trace_arg = file.join("traces").display().to_string();
    let mut server = Server::start(&first_flow(), &["--trace-dir", &trace_arg]);
    let cdrs = key5_calls(&server, "u1", 2);
    for cdr in &cdrs {
        assert_eq!(cdr["final_status"], 200, "{cdr}");
        assert_eq!(cdr["end_reason"], "server-bye", "{cdr}");
    }
    stop(&mut server);
    let log = server.log_text();
    let complaints = log
        .lines()
        .filter(|l| l.contains("cannot write to the trace directory"))
        .count();
    assert_eq!(complaints, 1, "{log}");
}
