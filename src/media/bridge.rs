//! RTP relay between the two legs of a bridged call (helpline as a B2BUA); sans-IO, and per packet it
//! neither allocates nor locks.
//!
//! A [`Relay`] handles one direction: it takes a packet received on its *in* leg and writes the packet
//! to send on its *out* leg into a buffer the caller provides. A [`Bridge`] is the pair of relays of
//! one call. It does not receive or send datagrams, check where a packet came from (the driver hands
//! it only packets from the in leg's latched source, after `MediaSession::handle_rtp` has seen them for
//! latching and DTMF), pick the destination (the out leg's `MediaSession::destination`), mix,
//! resample, buffer for jitter, or relay RTCP (each leg's session sends and reads its own reports).
//!
//! # What the receiver on the out leg sees
//!
//! * **One stream, continued.** The out leg has been hearing helpline's prompts with helpline's SSRC;
//!   the relay keeps that SSRC and continues that sequence and timestamp ([`RtpContinuation`], taken
//!   from the out leg's session with `MediaSession::rtp_continuation`). The session must stop its own
//!   playout when the bridge starts, and not play while bridged: both would write the same stream.
//! * **Anchor.** The first packet written after the bridge starts, after the out leg comes back from
//!   hold, or after the in stream restarts (a new SSRC, or a sequence jump beyond RFC 3550 A.1's
//!   `MAX_DROPOUT` = 3000 forward or `MAX_MISORDER` = 100 backward) gets the next sequence number, the
//!   timestamp of the continuation moved on with the wall time elapsed since its slot, and the marker
//!   bit (RFC 3551 §4.1: a talkspurt after silence).
//! * **After the anchor the in stream's shape is kept**: out sequence = in sequence + a fixed offset,
//!   so gaps stay gaps and reordered or duplicated packets stay as they came; out timestamp = in
//!   timestamp + a fixed offset, so the sender's timestamp deltas are kept and the packets of one
//!   RFC 4733 event keep one timestamp (they are not re-stamped from wall time). The in marker is kept.
//!   A late packet older than the anchor is dropped: its sequence number was already used.
//! * **Packets not relayed leave no gap.** An in-order packet that is not forwarded (comfort noise or
//!   any payload type that is neither the in leg's audio nor its telephone-event; a telephone-event
//!   toward a leg that negotiated none) gives its sequence number to the next packet, so the receiver
//!   sees a silence (timestamps jump) rather than loss. Late packets from before such a packet are
//!   dropped too, since their numbers may have been reused.
//! * **Payload type** is the out leg's negotiated one, for audio and telephone-event alike (dynamic
//!   ones included). Audio is transcoded byte by byte through a 256-entry table (μ-law ↔ A-law via
//!   linear, [`codec::transcode_table`]) when the legs' laws differ, else copied. Telephone-event
//!   payloads are copied as they are: event code, end bit, volume and duration untouched.
//!   **A telephone-event toward a leg without telephone-event is dropped** (the key is not turned into
//!   an in-band tone). CSRCs, header extensions and padding are not copied: toward the out leg helpline
//!   is the source, and header extensions are negotiated per leg.
//! * **Hold.** While the out leg may not receive (its `MediaConfig::send` is false or its `remote` is
//!   `None`), nothing is written and the packets are forgotten; the first packet after the resume is an
//!   anchor (marker set, sequence +1, timestamp moved on by the time held).

use std::time::{Duration, Instant};

use crate::media::codec::{self, Law};
use crate::media::rtp::{self, RtpContinuation, RtpHeader, RTP_HEADER_LEN};
use crate::media::session::{MediaConfig, MediaSession};

/// RFC 3550 A.1: a forward sequence jump larger than this is a restarted stream, not a gap.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a backward sequence jump larger than this is a restarted stream, not a late packet.
pub const MAX_MISORDER: u16 = 100;

/// What a relay counted since it was created; for logs and metrics, read when convenient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Packets written.
    pub relayed: u64,
    /// Dropped because the out leg is on hold.
    pub held: u64,
    /// Dropped because the payload type is neither audio nor telephone-event of the in leg.
    pub not_media: u64,
    /// Telephone-events dropped because the out leg negotiated no telephone-event.
    pub no_event_pt: u64,
    /// Late packets dropped because they are older than the anchor or a skipped packet.
    pub late: u64,
    /// Not RTP, or the output buffer was too small for the packet.
    pub invalid: u64,
    /// Anchors after the in stream restarted (new SSRC or sequence jump), not counting the first one.
    pub restarts: u64,
}

/// The payload types and law of one leg, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Side {
    law: Law,
    audio_pt: u8,
    event_pt: Option<u8>,
}

impl From<&MediaConfig> for Side {
    fn from(cfg: &MediaConfig) -> Self {
        Side {
            law: cfg.law,
            audio_pt: cfg.payload_type,
            event_pt: cfg.dtmf_payload_type,
        }
    }
}

/// The mapping from the in stream to the out stream since the last anchor.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    in_ssrc: u32,
    /// out sequence = in sequence + `seq_offset` (wrapping).
    seq_offset: u16,
    /// out timestamp = in timestamp + `ts_offset` (wrapping).
    ts_offset: u32,
    /// Highest in sequence number seen (forwarded or skipped).
    max_in: u16,
    /// How far behind `max_in` a late packet may be and still map after the anchor (≤ MAX_MISORDER).
    reach: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Event,
}

/// Where a packet goes in the out stream.
#[derive(Debug, Clone, Copy)]
struct Placed {
    sequence: u16,
    timestamp: u32,
    anchor: bool,
    /// The packet is the newest so far: the out stream's next sequence and slot move past it.
    advances: bool,
}

/// One direction of a bridge: packets from the in leg rewritten for the out leg (module doc).
#[derive(Debug, Clone)]
pub struct Relay {
    input: Side,
    output: Side,
    /// The out leg may receive (not on hold).
    sending: bool,
    /// μ-law ↔ A-law code table when the legs' laws differ.
    table: Option<&'static [u8; 256]>,
    /// The out stream: SSRC, next sequence, and the slot after the newest audio written.
    out: RtpContinuation,
    anchor: Option<Anchor>,
    stats: RelayStats,
}

impl Relay {
    /// A relay from the leg negotiated as `input` to the leg negotiated as `output`, continuing the
    /// out leg's stream `out` (from its session's `rtp_continuation`). Nothing is written before the
    /// first [`Relay::relay`] call.
    pub fn new(input: &MediaConfig, output: &MediaConfig, out: RtpContinuation) -> Relay {
        let mut relay = Relay {
            input: Side::from(input),
            output: Side::from(output),
            sending: false,
            table: None,
            out,
            anchor: None,
            stats: RelayStats::default(),
        };
        relay.update_output(output);
        relay
    }

    /// The in leg was renegotiated (re-INVITE): new law or payload types. The mapping is kept; if
    /// the in stream restarts with a new SSRC, the next packet anchors again.
    pub fn update_input(&mut self, cfg: &MediaConfig) {
        self.input = Side::from(cfg);
        self.table = codec::transcode_table(self.input.law, self.output.law);
    }

    /// The out leg was renegotiated (re-INVITE): new law or payload types, or hold and resume. Going
    /// on hold forgets the mapping, so the first packet after the resume anchors again.
    pub fn update_output(&mut self, cfg: &MediaConfig) {
        self.output = Side::from(cfg);
        self.sending = cfg.send && cfg.remote.is_some();
        if !self.sending {
            self.anchor = None;
        }
        self.table = codec::transcode_table(self.input.law, self.output.law);
    }

    /// Rewrites `packet`, received on the in leg, into `out` as the packet to send on the out leg and
    /// returns its length; `None` when nothing is to be sent (module doc: hold, payload types, late
    /// packets) or `out` is too small. Never panics on garbage; does not allocate.
    pub fn relay(&mut self, now: Instant, packet: &[u8], out: &mut [u8]) -> Option<usize> {
        let Ok((header, payload)) = rtp::parse(packet) else {
            self.stats.invalid += 1;
            return None;
        };
        // The session checks telephone-event first too: that is what it detects DTMF on.
        let kind = if Some(header.payload_type) == self.input.event_pt {
            Kind::Event
        } else if header.payload_type == self.input.audio_pt {
            Kind::Audio
        } else {
            self.skip(&header);
            self.stats.not_media += 1;
            return None;
        };
        if !self.sending {
            // `update_output` forgot the mapping when the hold began.
            self.stats.held += 1;
            return None;
        }
        let payload_type = match kind {
            Kind::Audio => self.output.audio_pt,
            Kind::Event => {
                let Some(pt) = self.output.event_pt else {
                    self.skip(&header);
                    self.stats.no_event_pt += 1;
                    return None;
                };
                pt
            }
        };
        let len = RTP_HEADER_LEN + payload.len();
        let Some(out) = out.get_mut(..len) else {
            self.stats.invalid += 1;
            return None;
        };
        let Some(placed) = self.place(now, &header) else {
            self.stats.late += 1;
            return None;
        };
        let out_header = RtpHeader {
            marker: placed.anchor || header.marker,
            payload_type,
            sequence: placed.sequence,
            timestamp: placed.timestamp,
            ssrc: self.out.ssrc,
        };
        rtp::write(out, &out_header, &[]).ok()?;
        let body = &mut out[RTP_HEADER_LEN..];
        match (kind, self.table) {
            (Kind::Audio, Some(table)) => {
                for (o, &c) in body.iter_mut().zip(payload) {
                    *o = table[usize::from(c)];
                }
            }
            _ => body.copy_from_slice(payload),
        }
        if placed.advances {
            self.advance(now, &placed, kind, payload.len());
        }
        self.stats.relayed += 1;
        Some(len)
    }

    /// Where the out stream stands at `now`, to hand back to the out leg's session when the bridge
    /// ends (or to start another relay toward the same leg).
    pub fn continuation(&self, now: Instant) -> RtpContinuation {
        RtpContinuation {
            timestamp: self.out.timestamp_at(now),
            at: self.out.at.max(now),
            ..self.out
        }
    }

    /// What this relay counted so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Maps an in packet that will be written; `None` for a late packet that may not be.
    fn place(&mut self, now: Instant, h: &RtpHeader) -> Option<Placed> {
        let Some(a) = self.anchor.as_mut().filter(|a| a.in_ssrc == h.ssrc) else {
            if self.anchor.is_some() {
                self.stats.restarts += 1;
            }
            return Some(self.anchor_at(now, h));
        };
        let ahead = h.sequence.wrapping_sub(a.max_in);
        let behind = a.max_in.wrapping_sub(h.sequence);
        let advances = if (1..=MAX_DROPOUT).contains(&ahead) {
            a.max_in = h.sequence;
            a.reach = a.reach.saturating_add(ahead).min(MAX_MISORDER);
            true
        } else if ahead == 0 || behind <= a.reach {
            // A duplicate, or a late packet after the anchor: it keeps its place.
            false
        } else if behind <= MAX_MISORDER {
            return None;
        } else {
            self.stats.restarts += 1;
            return Some(self.anchor_at(now, h));
        };
        Some(Placed {
            sequence: h.sequence.wrapping_add(a.seq_offset),
            timestamp: h.timestamp.wrapping_add(a.ts_offset),
            anchor: false,
            advances,
        })
    }

    /// Starts a new mapping at `h`: next sequence number, timestamp continued with wall time.
    fn anchor_at(&mut self, now: Instant, h: &RtpHeader) -> Placed {
        let sequence = self.out.next_sequence;
        let timestamp = self.out.timestamp_at(now);
        self.anchor = Some(Anchor {
            in_ssrc: h.ssrc,
            seq_offset: sequence.wrapping_sub(h.sequence),
            ts_offset: timestamp.wrapping_sub(h.timestamp),
            max_in: h.sequence,
            reach: 0,
        });
        Placed {
            sequence,
            timestamp,
            anchor: true,
            advances: true,
        }
    }

    /// An in-order packet that is not forwarded hands its sequence number to the next one (module doc).
    fn skip(&mut self, h: &RtpHeader) {
        let Some(a) = self.anchor.as_mut().filter(|a| a.in_ssrc == h.ssrc) else {
            return;
        };
        let ahead = h.sequence.wrapping_sub(a.max_in);
        if (1..=MAX_DROPOUT).contains(&ahead) {
            a.max_in = h.sequence;
            a.seq_offset = a.seq_offset.wrapping_sub(1);
            a.reach = 0;
            self.out.next_sequence = h.sequence.wrapping_add(a.seq_offset).wrapping_add(1);
        }
    }

    /// The newest packet so far was written: the next sequence follows it, and after audio the slot
    /// (where a later anchor's timestamp continues) is the end of its samples. Events do not move the
    /// slot: their timestamp is the event's start, not the present.
    fn advance(&mut self, now: Instant, placed: &Placed, kind: Kind, samples: usize) {
        self.out.next_sequence = placed.sequence.wrapping_add(1);
        if kind != Kind::Audio {
            return;
        }
        // G.711: one byte per 8 kHz sample, 125 µs each.
        let end = placed.timestamp.wrapping_add(samples as u32);
        // Never move the slot backwards (a sender whose timestamps go back must not make a later
        // anchor reuse timestamps already sent).
        if end.wrapping_sub(self.out.timestamp) as i32 >= 0 {
            self.out.timestamp = end;
            self.out.at = now + Duration::from_nanos(samples as u64 * 125_000);
        }
    }
}

/// The two relays of a bridged call between legs `a` and `b`.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// Packets received on leg `a`, sent on leg `b` (continuing `b`'s stream).
    pub a_to_b: Relay,
    /// Packets received on leg `b`, sent on leg `a` (continuing `a`'s stream).
    pub b_to_a: Relay,
}

impl Bridge {
    /// Bridges legs `a` and `b` (negotiated as `a_cfg`, `b_cfg`), continuing the stream each one has
    /// been receiving from helpline (`a_out`, `b_out`: each session's `rtp_continuation`).
    pub fn new(
        a_cfg: &MediaConfig,
        a_out: RtpContinuation,
        b_cfg: &MediaConfig,
        b_out: RtpContinuation,
    ) -> Bridge {
        Bridge {
            a_to_b: Relay::new(a_cfg, b_cfg, b_out),
            b_to_a: Relay::new(b_cfg, a_cfg, a_out),
        }
    }

    /// [`Bridge::new`] with each leg's stream taken from its session at `now`. The caller stops both
    /// sessions' playout (`MediaSession::stop_playout`) first, and plays nothing on them while bridged.
    pub fn between(
        now: Instant,
        a: &MediaSession,
        a_cfg: &MediaConfig,
        b: &MediaSession,
        b_cfg: &MediaConfig,
    ) -> Bridge {
        Bridge::new(
            a_cfg,
            a.rtp_continuation(now),
            b_cfg,
            b.rtp_continuation(now),
        )
    }

    /// Leg `a` was renegotiated (re-INVITE: codec, payload types, hold or resume).
    pub fn update_a(&mut self, cfg: &MediaConfig) {
        self.a_to_b.update_input(cfg);
        self.b_to_a.update_output(cfg);
    }

    /// Leg `b` was renegotiated (re-INVITE: codec, payload types, hold or resume).
    pub fn update_b(&mut self, cfg: &MediaConfig) {
        self.b_to_a.update_input(cfg);
        self.a_to_b.update_output(cfg);
    }
}
