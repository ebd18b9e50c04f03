//! DTMF from the three carriers (RFC 4733 events, in-band tones, SIP INFO) and the merger that reports a
//! key once when a phone sends it by two carriers; it does not decide what a key means.

pub mod inband;
pub mod info;
pub mod rfc4733;

use std::time::{Duration, Instant};

/// How a key press reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitMethod {
    /// RTP telephone-event (RFC 4733).
    Rfc4733,
    /// Tones in the audio, found by the Goertzel detector.
    Inband,
    /// A SIP INFO request body.
    Info,
}

/// One key press, reported once by its detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedDigit {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// The carrier it came by.
    pub method: DigitMethod,
    /// When it was detected.
    pub at: Instant,
}

/// How long after a key by one method the same key by another method counts as the same press.
///
/// 200 ms: a phone that sends both RFC 4733 and INFO emits them within a few tens of milliseconds of
/// each other, while a person pressing the same key twice needs well over 200 ms between presses (a
/// press plus the gap is ~100–150 ms at the fastest, and phones send at least 40 ms of tone and 40 ms
/// of silence; real repeat rates are 3–5 keys per second).
pub const MERGE_WINDOW: Duration = Duration::from_millis(200);

const MERGE_SLOTS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Recent {
    digit: DetectedDigit,
    /// A press already used to absorb a copy from another method cannot absorb a second one, so two
    /// real presses of `5` sent by both RFC 4733 and INFO still give two reports.
    absorbed: bool,
}

/// Reports a key once when it arrives by two methods within [`MERGE_WINDOW`]; the same key by the same
/// method always passes (each detector already de-duplicates its own carrier).
#[derive(Debug, Default)]
pub struct DigitMerger {
    recent: [Option<Recent>; MERGE_SLOTS],
    next_slot: usize,
}

impl DigitMerger {
    /// An empty merger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one detected key at `now`; returns it unless it duplicates a key from another method.
    ///
    /// The window is measured between the keys' detection times (`digit.at`), not between the times they
    /// reach the merger: the two carriers travel different paths (RTP through the media engine, INFO
    /// through the signalling core), so a thread that runs late must not split one press into two.
    pub fn handle(&mut self, _now: Instant, digit: DetectedDigit) -> Option<DetectedDigit> {
        let gap = |a: Instant, b: Instant| a.max(b) - a.min(b);
        let twin = self.recent.iter_mut().flatten().find(|r| {
            !r.absorbed
                && r.digit.digit == digit.digit
                && r.digit.method != digit.method
                && gap(r.digit.at, digit.at) < MERGE_WINDOW
        });
        if let Some(twin) = twin {
            twin.absorbed = true;
            return None;
        }
        self.recent[self.next_slot] = Some(Recent {
            digit,
            absorbed: false,
        });
        self.next_slot = (self.next_slot + 1) % MERGE_SLOTS;
        Some(digit)
    }
}
