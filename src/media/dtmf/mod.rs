//! DTMF detection: in-band tones found in decoded audio.
//!
//! Detectors here are sans-IO: they see samples or packets and report digits; they do not read clocks.

pub mod inband;
