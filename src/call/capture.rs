//! What `serve --trace-dir` captures, decided here (sans-IO): which calls are captured (every call to a
//! helpline number unless the menus say `trace = false` for its number or region, refused calls
//! included), the file stem of each, every SIP message of every leg of a captured call in both
//! directions (agent and transfer legs go into the caller's capture), the media sessions that belong
//! to it and its end. The shell only carries this out (`server::capture` writes the pcaps, the media
//! engine copies RTP); this module writes nothing, reads no clock and copies no RTP.
//!
//! Calls are tracked by the caller's Call-ID; other legs join their call's capture the first time a
//! message of theirs is seen (their INVITE, which we send). A capture ends [`LINGER`] after the call's
//! CDR, so the answers to our last BYEs (an agent's 200 arriving after the caller's leg is gone) still
//! go into the file.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::call::cdr::WallClock;
use crate::media::MediaId;
use crate::sip::endpoint::{Peer, Transport};
use crate::sip::CallId;

/// How long a capture stays open after its call's CDR, for the last answers of its legs.
pub const LINGER: Duration = Duration::from_secs(2);

/// One capture (one future pcap file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaptureId(pub u64);

/// One SIP message of a captured call, as it crossed the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedSip {
    /// The capture it belongs to.
    pub id: CaptureId,
    /// When it was received, or handed to the shell for sending.
    pub at: Instant,
    /// Its sender's address (ours for what we send: the `Peer::local` of the leg).
    pub from: SocketAddr,
    /// Its receiver's address.
    pub to: SocketAddr,
    /// UDP, or the TCP connection it travelled on.
    pub transport: Transport,
    /// The message, as sent or received.
    pub bytes: Vec<u8>,
}

/// What the shell must capture, from [`crate::call::Calls::poll_capture`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureEvent {
    /// A captured call begins (before any of its messages).
    Start {
        /// The new capture.
        id: CaptureId,
        /// The file name without extension: `<start as 20261201T100000Z>-<caller's Call-ID, with
        /// characters outside [A-Za-z0-9._-] as _>`.
        stem: String,
        /// When the call's first INVITE arrived.
        at: Instant,
    },
    /// A SIP message of a captured call.
    Sip(CapturedSip),
    /// Media session `media` belongs to capture `id` (copy its RTP).
    Media {
        /// The capture.
        id: CaptureId,
        /// The session.
        media: MediaId,
        /// Its RTP address as announced in our SDP (the socket may be bound to the wildcard).
        local: SocketAddr,
    },
    /// The capture is complete: nothing more will be added to it.
    End {
        /// The capture.
        id: CaptureId,
    },
}

/// The capture bookkeeping of [`crate::call::Calls`]; inert (and free) unless enabled.
#[derive(Debug, Default)]
pub(crate) struct Captures {
    enabled: bool,
    next: u64,
    /// Every leg's Call-ID of a capture still open.
    by_call_id: HashMap<CallId, CaptureId>,
    /// Captures whose call ended, with the instant they close and the Call-IDs to forget then (in
    /// the order they ended; `LINGER` is constant, so this is also their closing order).
    ending: VecDeque<(Instant, CaptureId)>,
    call_ids: HashMap<CaptureId, Vec<CallId>>,
    out: VecDeque<CaptureEvent>,
    /// The instant of the last input: outputs (SIP to send) are stamped with it.
    now: Option<Instant>,
}

/// The file stem of a call that started at `at` with the caller's Call-ID `call_id`.
pub fn file_stem(wall: &WallClock, at: Instant, call_id: &str) -> String {
    let start = wall.at(at).format("%Y%m%dT%H%M%SZ");
    let id: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{start}-{id}")
}

/// The Call-ID header of a SIP message (`Call-ID` or its compact form `i`), found without parsing the
/// rest; `None` if the bytes have none (a malformed message, which belongs to no call).
pub fn sniff_call_id(bytes: &[u8]) -> Option<&str> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            let value = value.trim();
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

impl Captures {
    pub(crate) fn new(enabled: bool) -> Captures {
        Captures {
            enabled,
            ..Captures::default()
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Every input calls this first: closes the captures whose linger is over.
    pub(crate) fn tick(&mut self, now: Instant) {
        if !self.enabled {
            return;
        }
        self.now = Some(now);
        while let Some(&(at, id)) = self.ending.front() {
            if at > now {
                break;
            }
            self.ending.pop_front();
            for call_id in self.call_ids.remove(&id).unwrap_or_default() {
                self.by_call_id.remove(&call_id);
            }
            self.out.push_back(CaptureEvent::End { id });
        }
    }

    /// A new call (its first INVITE) with the caller's Call-ID; `traced` is the menus' `trace`.
    pub(crate) fn begin(&mut self, wall: &WallClock, now: Instant, call_id: &CallId, traced: bool) {
        if !self.enabled || !traced || self.by_call_id.contains_key(call_id) {
            return;
        }
        let id = CaptureId(self.next);
        self.next += 1;
        self.by_call_id.insert(call_id.clone(), id);
        self.call_ids.insert(id, vec![call_id.clone()]);
        let stem = file_stem(wall, now, call_id.as_str());
        self.out
            .push_back(CaptureEvent::Start { id, stem, at: now });
    }

    /// The capture of the caller's Call-ID `caller`, if it is captured and still open.
    pub(crate) fn of(&self, caller: &CallId) -> Option<CaptureId> {
        self.by_call_id.get(caller).copied()
    }

    /// Another leg's Call-ID joins capture `id`.
    pub(crate) fn join(&mut self, id: CaptureId, call_id: &str) {
        let call_id = CallId::from(call_id);
        if let Some(ids) = self.call_ids.get_mut(&id) {
            if !ids.contains(&call_id) {
                ids.push(call_id.clone());
            }
            self.by_call_id.insert(call_id, id);
        }
    }

    /// The call with the caller's Call-ID `caller` has its CDR: its capture closes after [`LINGER`].
    pub(crate) fn end(&mut self, now: Instant, caller: &str) {
        if !self.enabled {
            return;
        }
        if let Some(&id) = self.by_call_id.get(&CallId::from(caller)) {
            if !self.ending.iter().any(|&(_, e)| e == id) {
                self.ending.push_back((now + LINGER, id));
            }
        }
    }

    /// A SIP message of capture `id` received from `peer`.
    pub(crate) fn received(&mut self, id: CaptureId, now: Instant, peer: &Peer, bytes: &[u8]) {
        self.out.push_back(CaptureEvent::Sip(CapturedSip {
            id,
            at: now,
            from: peer.addr,
            to: peer.local,
            transport: peer.transport,
            bytes: bytes.to_vec(),
        }));
    }

    /// A SIP message of capture `id` about to be sent to `peer`.
    pub(crate) fn sent(&mut self, id: CaptureId, peer: &Peer, bytes: &[u8]) {
        let Some(at) = self.now else {
            return; // nothing is sent before the first input
        };
        self.out.push_back(CaptureEvent::Sip(CapturedSip {
            id,
            at,
            from: peer.local,
            to: peer.addr,
            transport: peer.transport,
            bytes: bytes.to_vec(),
        }));
    }

    /// Media session `media` belongs to capture `id`.
    pub(crate) fn media(&mut self, id: CaptureId, media: MediaId, local: SocketAddr) {
        self.out.push_back(CaptureEvent::Media { id, media, local });
    }

    /// When the next capture closes (for `poll_timeout`).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.ending.front().map(|&(at, _)| at)
    }

    pub(crate) fn poll(&mut self) -> Option<CaptureEvent> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stem_is_the_start_time_and_the_call_id_with_odd_characters_replaced() {
        let t0 = Instant::now();
        let wall = WallClock {
            instant: t0,
            wall: chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .expect("a valid literal")
                .into(),
        };
        assert_eq!(
            file_stem(&wall, t0 + Duration::from_millis(1500), "a1@b/c:d.e_f-g"),
            "20261201T100001Z-a1_b_c_d.e_f-g"
        );
    }

    #[test]
    fn the_call_id_is_found_in_long_and_compact_form_and_not_in_the_body() {
        let long = b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h\r\ncall-ID :  abc@h \r\n\r\n";
        assert_eq!(sniff_call_id(long), Some("abc@h"));
        let compact = b"SIP/2.0 200 OK\r\ni: q\r\n\r\n";
        assert_eq!(sniff_call_id(compact), Some("q"));
        let body_only = b"BYE sip:x SIP/2.0\r\nVia: v\r\n\r\nCall-ID: no\r\n";
        assert_eq!(sniff_call_id(body_only), None);
        assert_eq!(sniff_call_id(b"\xff\xfe garbage"), None);
    }
}
