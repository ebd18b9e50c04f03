//! Fuzz target: arbitrary UTF-8 through the SDP parser; it must never panic. (`SessionDescription::parse`
//! is written on another branch; this target only calls it.)
//!
//! Run (nightly, from the repository root):
//!   cargo +nightly fuzz run --fuzz-dir tests/fuzz sdp
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = helpline::sdp::SessionDescription::parse(text);
    }
});
