//! The load harness (`examples/load`, `scripts/load.sh`) in `--smoke` mode, so it cannot rot: one low
//! step of every stage against the real binary and Kamailio, then the RTP sink. It asserts only that the
//! harness completed and printed its report, never a timing or a pass (benchmarks are not tests).
#[path = "../examples/load/bridge_sink.rs"]
mod bridge_sink;
#[path = "../examples/load/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../examples/load/rtp_sink.rs"]
mod rtp_sink;

use clap::Parser;

#[test]
fn smoke_run_completes_and_prints_its_report() {
    let args = harness::Args::parse_from(["load", "--smoke"]);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_helpline"));
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let result = harness::run(&args, bin, repo, &mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let report = result.unwrap_or_else(|e| panic!("the harness failed: {e}\n{text}"));
    assert!(text.contains("LOAD REPORT COMPLETE"), "{text}");
    assert!(
        !report.summary.iter().any(|l| l.contains("stage failed")),
        "{text}"
    );
    for stage in [
        "G1 ",
        "G5 ",
        "G5b",
        "G1c",
        "G8 ",
        "kamailio-stateless",
        "kamailio-stateful",
        "G4 ",
        "G7 ",
    ] {
        assert!(
            report.summary.iter().any(|l| l.starts_with(stage)),
            "no summary line for {stage}:\n{text}"
        );
    }
    // G8 accounts for every offered call (refusals by the cause their CDR names); G4 for every echo.
    for part in [
        "G8  ",
        "refused (",
        "unaccounted",
        "caller audio:",
        "after it (its backlog)",
    ] {
        assert!(
            report.summary.iter().any(|l| l.contains(part)),
            "no `{part}` in the summary:\n{text}"
        );
    }
    assert!(text.contains("allocator: "), "{text}");
}
