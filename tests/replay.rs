//! `helpline replay`: a traced call replayed offline (real call layer and media sessions on a simulated
//! clock) and live (against the real binary) reaches the route the shipped menus give; both agree; a
//! menu edit makes the same trace fail naming the menu and the key; the CLI refuses bad arguments.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use helpline::ivr::MenuSet;
use helpline::prompts::PromptStore;
use helpline::replay::live::{LiveSetup, RecordSource};
use helpline::replay::offline::OfflineSetup;
use helpline::replay::report::{CallReport, Verdict};
use helpline::replay::synth::CallBuilder;
use helpline::replay::trace::TraceCall;
use helpline::replay::Mode;

/// Wednesday 10:00 in Paris: europe is open.
const OPEN: &str = "2026-11-25T09:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("literal time")
        .with_timezone(&Utc)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A GB caller (08000289999) who presses 2 (refunds) during the greeting, then types the order
/// number 112233 — every key with sip-tester's one timestamp, as a trace of SIPp playing its
/// captures holds them, and only 220 ms between a key's last packet and the next key's first, less
/// than the 250 ms after which helpline's detector takes a repeated timestamp for a new press: the
/// repeated keys only count if the replay re-stamps them — and hangs up 15 s after the ACK.
fn refunds_trace() -> TraceCall {
    let mut b = CallBuilder::udp("08000289999");
    b.invite(ms(0));
    b.response(ms(5), 100);
    b.ok(ms(50));
    b.ack(ms(60));
    b.key_rfc4733(ms(60 + 2000), '2', 0x33e0);
    for (i, key) in "112233".chars().enumerate() {
        b.key_rfc4733(ms(60 + 5000 + 400 * i as u64), key, 0x33e0);
    }
    b.bye(ms(60 + 15000));
    b.build()
}

fn menus(dir: &Path, prompts: &PromptStore) -> Arc<MenuSet> {
    helpline::config::load_menus(dir, prompts)
        .unwrap_or_else(|d| panic!("menus in {} do not compile: {d:#?}", dir.display()))
}

fn prompts() -> PromptStore {
    PromptStore::load_dir(&common::root().join("prompts")).expect("shipped prompts load")
}

/// A copy of the shipped menus where key 2 of `main` routes to orders instead of refunds.
fn edited_menus() -> PathBuf {
    let dir = common::temp_dir("replay-menus");
    for entry in std::fs::read_dir(common::root().join("ivr-menus")).expect("ivr-menus/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).expect("menu file");
            let from = "[menus.main.keys.2.then]\naction = \"route\"\ndepartment = \"refunds\"";
            let text = if text.contains(from) {
                text.replace(
                    from,
                    "[menus.main.keys.2.then]\naction = \"route\"\ndepartment = \"orders\"",
                )
            } else {
                text
            };
            std::fs::write(dir.join(path.file_name().expect("name")), text).expect("write");
        }
    }
    let edited = std::fs::read_to_string(dir.join("menus.toml")).expect("menus.toml");
    assert!(edited.contains("department = \"orders\"\n\n[menus.main.keys.2.on_failure]"));
    dir
}

fn offline(calls: &[TraceCall], menus_dir: &Path, expect: Option<&str>) -> Vec<CallReport> {
    let prompts = prompts();
    let setup = OfflineSetup {
        menus: menus(menus_dir, &prompts),
        prompts,
        wall: at(OPEN),
        seed: 11,
    };
    let mode = Mode::Offline {
        setup: &setup,
        at_given: true,
    };
    runtime().block_on(helpline::replay::run(calls, None, mode, expect))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn keys(r: &CallReport) -> String {
    r.keys.iter().map(|k| k.key.as_str()).collect()
}

#[test]
fn offline_replay_of_a_refunds_call_reaches_europe_refunds() {
    let wall = Instant::now();
    let reports = offline(
        &[refunds_trace()],
        &common::root().join("ivr-menus"),
        Some("europe.refunds"),
    );
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(r.route.as_deref(), Some("europe.refunds"));
    assert_eq!(r.menu_path, ["main"]);
    // Seven presses sent, and the server heard all seven: the repeated keys with one captured
    // timestamp were re-stamped into separate presses.
    assert_eq!(keys(r), "2112233");
    assert!(r.keys.iter().all(|k| k.method == "rfc4733" && k.after_ack));
    assert_eq!(r.server_digits.concat(), "2112233");
    assert_eq!(r.keys[0].offset_s, 2.0);
    assert!(r.responses.contains(&200), "{:?}", r.responses);
    assert_ne!(
        r.replay_call_id.as_deref(),
        Some(r.original_call_id.as_str())
    );
    // A simulated clock: well under the 15 s the call lasts.
    assert!(wall.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_menu_edit_makes_the_same_trace_fail_naming_the_menu_and_the_key() {
    let reports = offline(&[refunds_trace()], &edited_menus(), Some("europe.refunds"));
    let r = &reports[0];
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.route.as_deref(), Some("europe.orders"));
    assert_eq!(
        r.failure.as_deref(),
        Some("call 1: expected europe.refunds, reached europe.orders — in menu main after key 2")
    );
}

#[test]
fn info_keys_are_replayed_and_a_trace_without_bye_is_hung_up_after_its_last_packet() {
    let mut b = CallBuilder::udp("08000289999");
    b.invite(ms(0)).ok(ms(30)).ack(ms(40));
    b.info(ms(40 + 1500), '3'); // seller disputes: routed at once
    b.caller_rtp(
        ms(40 + 1600),
        helpline::replay::synth::audio_packet(0, 1, 0, &[0xff; 160]),
    );
    let reports = offline(
        &[b.build()],
        &common::root().join("ivr-menus"),
        Some("europe.seller-disputes"),
    );
    let r = &reports[0];
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    assert_eq!(keys(r), "3");
    assert_eq!(r.keys[0].method, "info");
    assert_eq!(r.server_digits, ["3"]);
    assert!(r.ended.is_some());
}

#[test]
fn live_replay_against_the_binary_reaches_the_same_route_as_offline() {
    let server =
        common::Server::start(&common::root().join("ivr-menus"), &["--pretend-time", OPEN]);
    let setup = LiveSetup {
        target: server.addr,
        bind: None,
        record: RecordSource::Cdr(server.cdr.clone()),
        seed: 5,
    };
    let calls = [refunds_trace()];
    let live = runtime().block_on(helpline::replay::run(
        &calls,
        None,
        Mode::Live(&setup),
        Some("europe.refunds"),
    ));
    let off = offline(
        &calls,
        &common::root().join("ivr-menus"),
        Some("europe.refunds"),
    );
    let (l, o) = (&live[0], &off[0]);
    assert_eq!(l.verdict, Verdict::Pass, "{l:#?}\n{}", server.log_text());
    assert_eq!(l.route, o.route);
    assert_eq!(l.menu_path, o.menu_path);
    assert_eq!(l.server_digits, o.server_digits);
    assert_eq!(keys(l), keys(o));
    let cdr = server.cdr_for(l.replay_call_id.as_deref().expect("replayed"), ms(1000));
    assert_eq!(cdr["route"], "europe.refunds");
}

#[test]
fn a_call_traced_over_tcp_replays_live_over_a_tcp_connection_to_its_route() {
    let server =
        common::Server::start(&common::root().join("ivr-menus"), &["--pretend-time", OPEN]);
    let mut b = CallBuilder::tcp("08000289999");
    b.invite(ms(0)).ok(ms(30)).ack(ms(40));
    b.info(ms(40 + 1500), '3');
    b.bye(ms(40 + 3000));
    let setup = LiveSetup {
        target: server.addr,
        bind: None,
        record: RecordSource::Cdr(server.cdr.clone()),
        seed: 9,
    };
    let calls = [b.build()];
    let live = runtime().block_on(helpline::replay::run(
        &calls,
        None,
        Mode::Live(&setup),
        Some("europe.seller-disputes"),
    ));
    let r = &live[0];
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}\n{}", server.log_text());
    let cdr = server.cdr_for(r.replay_call_id.as_deref().expect("replayed"), ms(1000));
    assert_eq!(cdr["route"], "europe.seller-disputes");
}

fn helpline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("run helpline")
}

#[test]
fn replay_needs_exactly_one_of_target_and_offline() {
    let none = helpline(&["replay", "x.pcap"]);
    assert_eq!(none.status.code(), Some(2));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("--target") && err.contains("--offline"),
        "{err}"
    );

    let both = helpline(&[
        "replay",
        "x.pcap",
        "--target",
        "127.0.0.1:5060",
        "--offline",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));

    let cdr_offline = helpline(&["replay", "x.pcap", "--offline", "--cdr", "c.jsonl"]);
    assert_eq!(cdr_offline.status.code(), Some(2));

    let bad_at = helpline(&["replay", "x.pcap", "--offline", "--at", "yesterday"]);
    assert_eq!(bad_at.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_at.stderr).contains("RFC 3339"));
}

#[test]
fn an_unreadable_trace_is_a_usage_error() {
    let missing = helpline(&["replay", "/nonexistent/trace.pcap", "--offline"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));

    let dir = common::temp_dir("replay-cli");
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture").expect("write");
    let out = helpline(&["replay", junk.to_str().expect("utf-8"), "--offline"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A SIPp caller's call to `sipp -sn uas` (not helpline), captured by dumpcap on loopback
/// (tests/data/replay/make_sipp_trace.sh): GB number, key 2, order number 112233 from sip-tester's
/// RFC 4733 captures, whose repeated keys carry identical timestamps and sequence numbers.
const SIPP_TRACE: &str = "tests/data/replay/sipp_gb_refunds.pcapng";

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn route_and_keys(v: &serde_json::Value) -> (String, String, String) {
    let keys = v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["key"].as_str().expect("key").to_owned())
        .collect::<String>();
    let digits = v["server_digits"]
        .as_array()
        .expect("server_digits")
        .iter()
        .map(|k| k.as_str().expect("digit").to_owned())
        .collect::<String>();
    (
        v["route"].as_str().unwrap_or("none").to_owned(),
        keys,
        digits,
    )
}

#[test]
fn a_sipp_capture_of_a_call_to_another_uas_replays_offline_and_live_to_the_same_route() {
    let offline = helpline(&[
        "replay",
        SIPP_TRACE,
        "--offline",
        "--expect-route",
        "europe.refunds",
        "--json",
    ]);
    assert_eq!(
        offline.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let off = json_lines(&offline);
    assert_eq!(off.len(), 1);
    assert_eq!(off[0]["verdict"], "pass");
    // Every press arrived, the repeated ones included: re-stamped from their capture times.
    let expected = (
        "europe.refunds".to_owned(),
        "2112233".to_owned(),
        "2112233".to_owned(),
    );
    assert_eq!(route_and_keys(&off[0]), expected);
    assert_eq!(off[0]["menu_path"], serde_json::json!(["main"]));

    let server =
        common::Server::start(&common::root().join("ivr-menus"), &["--pretend-time", OPEN]);
    let live = helpline(&[
        "replay",
        SIPP_TRACE,
        "--target",
        &server.addr.to_string(),
        "--cdr",
        server.cdr.to_str().expect("utf-8 path"),
        "--expect-route",
        "europe.refunds",
        "--json",
    ]);
    assert_eq!(
        live.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&live.stdout),
        server.log_text()
    );
    let on = json_lines(&live);
    assert_eq!(route_and_keys(&on[0]), expected);
    assert_eq!(on[0]["menu_path"], off[0]["menu_path"]);
    let replay_id = on[0]["replay_call_id"].as_str().expect("replayed");
    assert_eq!(
        server.cdr_for(replay_id, ms(1000))["route"],
        "europe.refunds"
    );
}

#[test]
fn at_sets_the_offline_wall_clock_so_a_night_call_is_judged_against_the_night_menu() {
    let night = helpline(&[
        "replay",
        SIPP_TRACE,
        "--offline",
        "--at",
        "2026-11-25T23:30:00Z",
        "--expect-route",
        "europe.refunds",
    ]);
    assert_eq!(night.status.code(), Some(1));
    let text = String::from_utf8_lossy(&night.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("call 1: expected europe.refunds, reached ")),
        "{text}"
    );
    assert!(!text.contains("reached europe.refunds"), "{text}");
}

#[test]
fn the_call_option_picks_one_call_and_rejects_a_number_beyond_the_trace() {
    let beyond = helpline(&["replay", SIPP_TRACE, "--offline", "--call", "2"]);
    assert_eq!(beyond.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&beyond.stderr).contains("has 1 call"));
    let one = helpline(&["replay", SIPP_TRACE, "--offline", "--call", "1", "--json"]);
    assert_eq!(one.status.code(), Some(0));
    assert_eq!(json_lines(&one)[0]["call"], 1);
}

/// A stand-in for `serve --http`: answers `GET /calls/...` with 404 `not_yet` times, then the record.
fn fake_calls_endpoint(
    not_yet: usize,
    record: serde_json::Value,
) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let mut conn = conn.expect("accept");
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            seen.push(line.trim_end().to_owned());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).expect("header") <= 2 {
                    break;
                }
            }
            let (status, body) = if i < not_yet {
                ("404 Not Found", "{\"error\":\"unknown call\"}".to_owned())
            } else {
                ("200 OK", record.to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).expect("write");
            if i >= not_yet {
                break;
            }
        }
        seen
    });
    (addr, handle)
}

#[test]
fn the_route_is_read_from_get_calls_by_percent_encoded_call_id_retrying_on_404() {
    let record = serde_json::json!({
        "call_id": "replay-1@127.0.0.1",
        "route": "europe.refunds",
        "menu_path": ["main"],
        "digits": [{"digit": "2", "method": "rfc4733", "at": "2026-11-25T09:00:02.000Z"}],
        "queue": "europe.refunds",
    });
    let (addr, server) = fake_calls_endpoint(2, record);
    let found = runtime().block_on(helpline::replay::live::fetch_record(
        &RecordSource::Http(addr),
        "replay-1@127.0.0.1",
    ));
    let found = found.expect("the record after two 404s");
    assert_eq!(found.route.as_deref(), Some("europe.refunds"));
    assert_eq!(found.queue.as_deref(), Some("europe.refunds"));
    assert_eq!(found.digits, [("2".to_owned(), "rfc4733".to_owned())]);
    let requests = server.join().expect("fake server");
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r == "GET /calls/replay-1%40127.0.0.1 HTTP/1.1"));
}

#[test]
fn a_call_helpline_captured_replays_offline_and_live_to_the_route_it_reached() {
    // The original call: SIPp presses 2 and types 112233 (sip-tester's RFC 4733 captures) on a
    // server that captures every call; it hangs up once routed (no agents: overflow, goodbye).
    let dir = common::temp_dir("replay-capture");
    let traces = dir.join("traces");
    let traces_arg = traces.display().to_string();
    let menus = common::root().join("ivr-menus");
    let mut server = common::Server::start(
        &menus,
        &["--trace-dir", &traces_arg, "--pretend-time", OPEN],
    );
    let scenario = common::sipp_dtmf_scenario(
        &dir,
        "gb_refunds",
        &[
            common::SippStep::Pause(1000),
            common::SippStep::Keys("2", 0),
            common::SippStep::Pause(1500),
            common::SippStep::Keys("112233", 400),
        ],
        60_000,
    );
    let [cid_flag, cid] = common::sipp_call_id_args("cap");
    let run = common::run_sipp(
        server.addr,
        scenario.to_str().expect("utf-8 path"),
        &["-m", "1", "-s", "08000289999", &cid_flag, &cid],
        Duration::from_secs(90),
    );
    assert!(
        run.status.success(),
        "{}\n{}",
        run.output,
        server.log_text()
    );
    let original = server.wait_cdrs(1, Duration::from_secs(20)).remove(0);
    assert_eq!(original["route"], "europe.refunds", "{original}");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    let pcap = std::fs::read_dir(&traces)
        .expect("trace dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "pcap"))
        .expect("one pcap");
    let pcap_arg = pcap.to_str().expect("utf-8 path");

    // tshark reads it as an ordinary call: the INVITE and the caller's telephone-events.
    let tshark = |filter: &str, field: &str| -> Vec<String> {
        let out = Command::new("tshark")
            .args(["-r", pcap_arg, "-o", "rtp.heuristic_rtp:TRUE", "-Y", filter])
            .args(["-T", "fields", "-e", field])
            .output()
            .expect("tshark is installed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert!(tshark("sip.Method == \"INVITE\"", "sip.Method").contains(&"INVITE".to_owned()));
    let mut events = tshark("rtpevent", "rtpevent.event_id");
    events.dedup();
    assert_eq!(events.concat(), "2123", "{events:?}");

    // Offline, at the capture's own time (the server's pretend clock), and live on a fresh server.
    let offline = helpline(&[
        "replay",
        pcap_arg,
        "--offline",
        "--expect-route",
        "europe.refunds",
        "--json",
    ]);
    assert_eq!(
        offline.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&offline.stdout),
        String::from_utf8_lossy(&offline.stderr)
    );
    let off = json_lines(&offline);
    let expected = (
        "europe.refunds".to_owned(),
        "2112233".to_owned(),
        "2112233".to_owned(),
    );
    assert_eq!(route_and_keys(&off[0]), expected);

    let fresh = common::Server::start(&menus, &["--pretend-time", OPEN]);
    let live = helpline(&[
        "replay",
        pcap_arg,
        "--target",
        &fresh.addr.to_string(),
        "--cdr",
        fresh.cdr.to_str().expect("utf-8 path"),
        "--expect-route",
        "europe.refunds",
        "--json",
    ]);
    assert_eq!(
        live.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&live.stdout),
        fresh.log_text()
    );
    let on = json_lines(&live);
    assert_eq!(route_and_keys(&on[0]), expected);
    assert_eq!(on[0]["menu_path"], off[0]["menu_path"]);
    assert_eq!(
        original["digits"].as_array().map(Vec::len),
        Some(7),
        "the original call heard seven keys too"
    );
}
