//! RFC 4733 telephone-event decoding and per-press de-duplication; it does not parse RTP headers or pace.
//!
//! # Reporting rule
//!
//! Each key press is reported **once, at the first packet seen of its event** — the start packet, or an
//! update or end packet when the start was lost. Reporting at the start gives the fastest barge-in. Every
//! later packet of the same event (updates, the three end retransmissions of RFC 4733 §2.5.1.4,
//! duplicates, late reordered packets) is absorbed.
//!
//! # Telling events apart
//!
//! RFC 4733 §2.5.1.2: every packet of one event carries the event's start timestamp, and a new event
//! gets a new timestamp. So the detector keeps the last [`HISTORY`] events keyed by (RTP timestamp, event
//! code); a packet matching one of them belongs to it, which also absorbs a late packet of an older
//! event arriving after the next key has started.
//!
//! Test tools replay one capture per key, and the sip-tester captures all carry the **same timestamp and
//! sequence numbers** every time (`8888` is the `8` capture played four times). So a packet with the
//! timestamp of a known event starts a **new press** when it arrives at least [`REPLAY_GAP`] (250 ms)
//! after the last packet of that event, and either that event had ended, or the new packet's duration
//! is shorter than the longest duration already seen (the counter started again). This cannot
//! double-count a real press: a sender emits its end retransmissions back to back (the captures show
//! them within 0.2 ms; RFC 4733 §2.5.1.4 allows one packet interval between them) and updates every
//! 50 ms at most, and every arriving packet moves the event's "last seen" forward, so the gap is measured
//! between consecutive packets, never from the first one. Only a single packet delayed by a quarter
//! second behind its predecessor could be mistaken for a replay. A long key with lost updates keeps a
//! growing duration, so it stays one press even across a gap.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Quiet time after an event's last packet from which a packet with the same timestamp is a new press.
pub const REPLAY_GAP: Duration = Duration::from_millis(250);

/// How many recent events are remembered for de-duplication.
pub const HISTORY: usize = 4;

/// Why a telephone-event payload was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rfc4733Error {
    /// Fewer than the 4 octets of RFC 4733 §2.3.
    #[error("telephone-event payload shorter than 4 octets")]
    TooShort,
}

/// One decoded telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (§3.2: 0–9, 10 = `*`, 11 = `#`, 12–15 = `A`–`D`).
    pub event: u8,
    /// E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

/// Decodes the first 4 octets of a telephone-event payload; longer payloads keep only the first event.
pub fn parse_payload(payload: &[u8]) -> Result<TelephoneEvent, Rfc4733Error> {
    let b = payload.get(..4).ok_or(Rfc4733Error::TooShort)?;
    Ok(TelephoneEvent {
        event: b[0],
        end: b[1] & 0x80 != 0,
        volume: b[1] & 0x3F,
        duration: u16::from_be_bytes([b[2], b[3]]),
    })
}

/// The key for a DTMF event code (RFC 4733 §3.2), or `None` for non-DTMF events (flash, tones).
pub fn event_to_char(code: u8) -> Option<char> {
    const KEYS: &[u8; 16] = b"0123456789*#ABCD";
    KEYS.get(usize::from(code)).map(|&b| char::from(b))
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    timestamp: u32,
    event: u8,
    ended: bool,
    max_duration: u16,
    last_seen: Instant,
}

/// Turns a stream of telephone-event packets into one report per key press (see the module doc).
#[derive(Debug, Default)]
pub struct Rfc4733Detector {
    recent: [Option<Seen>; HISTORY],
    /// Next slot to overwrite when the history is full (oldest first).
    next_slot: usize,
}

impl Rfc4733Detector {
    /// A detector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet: its RTP `timestamp` and payload. Returns the key when this
    /// packet is the first one seen of a new press; `None` for the rest, for non-DTMF events and for
    /// malformed payloads.
    pub fn handle(&mut self, now: Instant, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = parse_payload(payload).ok()?;
        let key = event_to_char(ev.event)?;
        let known = self
            .recent
            .iter_mut()
            .flatten()
            .find(|s| s.timestamp == timestamp && s.event == ev.event);
        if let Some(seen) = known {
            let quiet = now.saturating_duration_since(seen.last_seen) >= REPLAY_GAP;
            let restarted = seen.ended || ev.duration < seen.max_duration;
            if quiet && restarted {
                *seen = Seen {
                    timestamp,
                    event: ev.event,
                    ended: ev.end,
                    max_duration: ev.duration,
                    last_seen: now,
                };
                return Some(key);
            }
            seen.ended |= ev.end;
            seen.max_duration = seen.max_duration.max(ev.duration);
            seen.last_seen = seen.last_seen.max(now);
            return None;
        }
        self.recent[self.next_slot] = Some(Seen {
            timestamp,
            event: ev.event,
            ended: ev.end,
            max_duration: ev.duration,
            last_seen: now,
        });
        self.next_slot = (self.next_slot + 1) % HISTORY;
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_payload_fields() {
        let ev = parse_payload(&[0x0b, 0x8a, 0x08, 0xc0]).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 11,
                end: true,
                volume: 10,
                duration: 2240
            }
        );
        assert_eq!(parse_payload(&[1, 2, 3]), Err(Rfc4733Error::TooShort));
    }

    #[test]
    fn maps_event_codes() {
        assert_eq!(event_to_char(0), Some('0'));
        assert_eq!(event_to_char(10), Some('*'));
        assert_eq!(event_to_char(11), Some('#'));
        assert_eq!(event_to_char(15), Some('D'));
        assert_eq!(event_to_char(16), None);
    }
}
