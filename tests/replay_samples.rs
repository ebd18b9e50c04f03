//! Every sample trace in examples/traces/ (foreign SIPp captures, a SIPp message log, calls helpline
//! captured itself) replays offline and live — the live route read from the server's own
//! `GET /calls/{call-id}` — to the route examples/traces/expected.toml gives it, and both agree.
mod common;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use helpline::replay::live::{LiveSetup, RecordSource};
use helpline::replay::offline::OfflineSetup;
use helpline::replay::report::{CallReport, Verdict};
use helpline::replay::trace::{read_trace, TraceCall};
use helpline::replay::Mode;

#[derive(serde::Deserialize)]
struct Expected {
    trace: Vec<Sample>,
}

#[derive(serde::Deserialize)]
struct Sample {
    file: String,
    /// The route a replay must reach; "" = the call ends without one.
    route: String,
    at: DateTime<Utc>,
}

fn traces_dir() -> PathBuf {
    common::root().join("examples/traces")
}

fn samples() -> Vec<Sample> {
    let text = std::fs::read_to_string(traces_dir().join("expected.toml")).expect("expected.toml");
    let expected: Expected = toml::from_str(&text).expect("expected.toml parses");
    assert!(expected.trace.len() >= 6, "fewer samples than shipped");
    expected.trace
}

fn calls_of(sample: &Sample) -> Vec<TraceCall> {
    let bytes = std::fs::read(traces_dir().join(&sample.file)).expect("sample trace");
    let trace = read_trace(&bytes).unwrap_or_else(|e| panic!("{}: {e}", sample.file));
    let callers: Vec<_> = trace
        .calls
        .into_iter()
        .filter(|c| c.leg_of.is_none())
        .collect();
    assert_eq!(callers.len(), 1, "{}: one caller's call", sample.file);
    callers
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The expectation a sample states: its route, or none.
fn expect(sample: &Sample) -> Option<&str> {
    (!sample.route.is_empty()).then_some(sample.route.as_str())
}

fn check(sample: &Sample, how: &str, r: &CallReport) {
    assert_eq!(
        r.route.as_deref(),
        expect(sample),
        "{} {how}: {r:#?}",
        sample.file
    );
    if expect(sample).is_some() {
        assert_eq!(r.verdict, Verdict::Pass, "{} {how}: {r:#?}", sample.file);
    }
}

fn offline(sample: &Sample, calls: &[TraceCall]) -> CallReport {
    let prompts = helpline::prompts::PromptStore::load_dir(&common::root().join("prompts"))
        .expect("shipped prompts");
    let menus = helpline::config::load_menus(&common::root().join("ivr-menus"), &prompts)
        .expect("shipped menus");
    let setup = OfflineSetup {
        menus,
        prompts,
        wall: sample.at,
        seed: 3,
    };
    let mode = Mode::Offline {
        setup: &setup,
        at_given: true,
    };
    let mut reports = runtime().block_on(helpline::replay::run(calls, None, mode, expect(sample)));
    reports.remove(0)
}

#[test]
fn every_sample_replays_offline_and_live_to_its_expected_route() {
    let mut server_hung_up = 0;
    for sample in samples() {
        let calls = calls_of(&sample);
        // A trace in which the server hung up is replayed the same way: the replay waits for the
        // server's BYE instead of hanging up after the caller's last packet. (Where the traced caller
        // hung up, either side may end the replay: helpline's no-agents overflow hangs up first.)
        let script = helpline::replay::script::script(&calls[0]).expect("a caller's call");
        let ended = (!script.hangs_up).then_some("server-hung-up");
        let off = offline(&sample, &calls);
        check(&sample, "offline", &off);
        if let Some(ended) = ended {
            assert_eq!(off.ended.as_deref(), Some(ended), "{} offline", sample.file);
            server_hung_up += 1;
        }

        let at = sample.at.to_rfc3339();
        let server = common::Server::start(
            &common::root().join("ivr-menus"),
            &["--pretend-time", &at, "--http", "127.0.0.1:0"],
        );
        let setup = LiveSetup {
            target: server.addr,
            bind: None,
            record: RecordSource::Http(server.http_addr()),
            seed: 4,
        };
        let mut live = runtime().block_on(helpline::replay::run(
            &calls,
            None,
            Mode::Live(&setup),
            expect(&sample),
        ));
        let live = live.remove(0);
        check(&sample, "live", &live);
        if let Some(ended) = ended {
            assert_eq!(live.ended.as_deref(), Some(ended), "{} live", sample.file);
        }
        // Live and offline agree on where the call went and what the server heard.
        assert_eq!(live.menu_path, off.menu_path, "{}", sample.file);
        assert_eq!(live.server_digits, off.server_digits, "{}", sample.file);
    }
    // helpline-after-hours.pcap: the closed message, then helpline's BYE.
    assert!(server_hung_up >= 1, "no sample in which the server hung up");
}
