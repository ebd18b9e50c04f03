//! Issue 3 interop with SIPp against the real binary: keys from the RFC 4733 captures Debian's sip-tester
//! ships (`/usr/share/sip-tester/dtmf_2833_*.pcap`, replayed with `play_pcap_audio`) reach the CDR, the
//! 8888 extension built from four captures routes the call, a BYE in the middle of the welcome stops the
//! prompt's RTP, and a silent caller is released with `rtp-timeout`. Scenarios: `examples/sipp/dtmf_*.xml`.
//! The test-UA side of issue 3 (packet-level checks) is `tests/media_calls.rs`.
//!
//! `play_pcap_audio` sends from an ordinary UDP socket here (no capability needed); CI runs as root too.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{run_sipp, Server};

const WAIT: Duration = Duration::from_secs(15);

fn menus(name: &str) -> PathBuf {
    common::root().join("tests/data/menus").join(name)
}

/// Runs one SIPp call of `scenario` and returns the single CDR it produced; fails with SIPp's output.
fn sipp_call(server: &Server, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["-m", "1", "-s", "08000000001"];
    args.extend_from_slice(extra);
    let run = run_sipp(server.addr, scenario, &args, Duration::from_secs(40));
    assert!(
        run.status.success(),
        "sipp {scenario} failed: {}\n{}\nserver log:\n{}",
        run.status,
        run.output,
        server.log_text()
    );
    let cdrs = server.wait_cdrs(1, WAIT);
    assert_eq!(cdrs.len(), 1, "one CDR line: {cdrs:?}");
    cdrs.into_iter().next().expect("one CDR")
}

/// The CDR's digits as (digit, method) pairs.
fn digits(cdr: &serde_json::Value) -> Vec<(String, String)> {
    cdr["digits"]
        .as_array()
        .expect("digits array")
        .iter()
        .map(|d| {
            (
                d["digit"].as_str().unwrap_or_default().to_string(),
                d["method"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn key_5_from_the_rfc4733_capture() {
    let server = Server::start(&menus("first-flow"), &[]);
    let cdr = sipp_call(&server, "examples/sipp/dtmf_2833_5.xml", &[]);
    assert_eq!(
        digits(&cdr),
        vec![("5".into(), "rfc4733".into())],
        "CDR: {cdr}"
    );
    assert_eq!(cdr["end_reason"], "server-bye", "CDR: {cdr}");
    assert_eq!(cdr["final_status"], 200);
}

#[test]
fn extension_8888_from_four_captures_routes_to_english() {
    let server = Server::start(&menus("extension-8888"), &[]);
    let cdr = sipp_call(&server, "examples/sipp/dtmf_2833_8888.xml", &[]);
    let eights: Vec<(String, String)> = (0..4).map(|_| ("8".into(), "rfc4733".into())).collect();
    assert_eq!(digits(&cdr), eights, "CDR: {cdr}");
    assert_eq!(cdr["route"], "test.english", "CDR: {cdr}");
    assert_eq!(cdr["end_reason"], "server-bye", "CDR: {cdr}");
}

#[test]
fn bye_in_the_middle_of_the_welcome_stops_the_prompt() {
    let server = Server::start(&menus("first-flow"), &[]);
    // The scenario's SDP names this socket, so we see the RTP SIPp would have received.
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
    let port = rtp.local_addr().expect("addr").port().to_string();
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let addr = server.addr;
    let sipp = std::thread::spawn(move || {
        run_sipp(
            addr,
            "examples/sipp/dtmf_bye_mid_prompt.xml",
            &["-m", "1", "-s", "08000000001", "-key", "rtp_port", &port],
            Duration::from_secs(40),
        )
    });
    // Count the prompt's packets while SIPp runs (bounded: the scenario lasts about 2 s).
    let mut buf = [0u8; 2048];
    let mut before = 0usize;
    let deadline = Instant::now() + Duration::from_secs(40);
    while !sipp.is_finished() && Instant::now() < deadline {
        if rtp.recv_from(&mut buf).is_ok() {
            before += 1;
        }
    }
    let run = sipp.join().expect("sipp thread");
    assert!(
        run.status.success(),
        "sipp failed: {}\n{}",
        run.status,
        run.output
    );
    // SIPp has its 200 for the BYE. Let what was in flight arrive, then nothing more may come.
    let settle = Instant::now() + Duration::from_millis(150);
    while Instant::now() < settle {
        let _ = rtp.recv_from(&mut buf);
    }
    rtp.set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    let late = rtp.recv_from(&mut buf).is_ok();
    assert!(!late, "RTP still arrives after the BYE was answered");
    // The welcome (4.9 s, 246 frames) was cut short: the BYE came about 1.5 s after the ACK.
    assert!(
        before > 10,
        "the welcome was playing when the BYE came ({before} packets)"
    );
    assert!(before < 200, "the prompt stopped early ({before} packets)");
    let cdrs = server.wait_cdrs(1, WAIT);
    let cdr = cdrs.first().expect("one CDR");
    assert_eq!(cdr["end_reason"], "caller-bye", "CDR: {cdr}");
    assert_eq!(cdr["final_status"], 200);
}

#[test]
fn silent_caller_is_released_with_rtp_timeout() {
    let server = Server::start(&menus("first-flow"), &["--rtp-timeout-secs", "2"]);
    let cdr = sipp_call(&server, "examples/sipp/dtmf_silent.xml", &[]);
    assert_eq!(cdr["end_reason"], "rtp-timeout", "CDR: {cdr}");
    assert!(digits(&cdr).is_empty(), "CDR: {cdr}");
}
