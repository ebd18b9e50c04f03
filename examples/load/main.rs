//! The load harness (issue 11), one command: helpline (release, loopback, free ports, the load source on
//! the allow-list) and Kamailio (stateless responder and stateful proxy, configs in this directory)
//! driven by SIPp at stepped rates in one run, then the RTP sink against the real media engine. It
//! prints every step and a summary of the targets G1–G8 (see BENCHMARKS.md). It asserts nothing:
//! benchmarks are not tests (tests/load_smoke.rs only checks that `--smoke` completes).
//!
//! ```sh
//! scripts/load.sh                      # full run (about 15 minutes on 2 cores)
//! scripts/load.sh --smoke              # a few seconds per stage
//! scripts/load.sh --only helpline --start 2000 --max 8000 --step-secs 10
//! ```
mod bridge_sink;
mod harness;
mod rtp_sink;

// The RTP stage runs the media engine in this process: it gets the same
// allocator as `helpline` (the same features pick it, see Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = harness::Args::parse();
    // The helpline binary built next to this example (target/<profile>/helpline).
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("helpline")))
        .unwrap_or_else(|| PathBuf::from("target/release/helpline"));
    let bin = args.helpline.clone().unwrap_or(bin);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match harness::run(&args, &bin, &repo, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
