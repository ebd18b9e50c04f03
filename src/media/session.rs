//! `MediaSession`: one call leg's RTP — paced prompt playout out, latching and DTMF detection in; sans-IO.
//!
//! It never reads the clock, sleeps or touches a socket: time comes in as `now`, datagrams through
//! [`MediaSession::handle_rtp`], packets leave through [`MediaSession::poll_transmit`] and the next
//! wake-up is [`MediaSession::poll_timeout`]. It does not negotiate SDP, choose ports or interpret keys.
//!
//! # RTP out (RFC 3550)
//!
//! * SSRC, initial sequence number and initial timestamp come from the seed (RFC 3550 §5.1 wants them
//!   random); each packet carries one 20 ms G.711 frame, sequence +1, timestamp +160.
//! * **Pacing from the start time**: frame `k` of a prompt is due at `start + k·20 ms`, computed from the
//!   prompt's start, never from the previous send, so late polls never accumulate drift.
//! * **Catch-up bound**: if the driver polls late, overdue frames are sent back to back, but at most
//!   [`MAX_CATCHUP`] (3) of them: a frame 60 ms (`MAX_CATCHUP` frames) or more overdue at the poll is
//!   skipped, and its timestamp with it, so the caller's jitter buffer stays aligned with real time
//!   instead of receiving a burst. Sequence numbers stay contiguous (nothing was lost in transit). A
//!   driver less than 60 ms late therefore never skips; exactly 60 ms late on every wake, it loses one
//!   frame in four. Pacing stays anchored to the start, so a prompt still ends on time.
//! * **Between prompts nothing is sent.** The timestamp keeps running with wall time across the gap
//!   (the next prompt's first timestamp = last timestamp + 160 + the elapsed gap in samples), the
//!   sequence number simply continues, and the first packet of every prompt carries the marker bit
//!   (RFC 3551 §4.1: first packet of a talkspurt after silence). The same holds after a barge-in
//!   ([`MediaSession::stop_playout`]); a new prompt never starts before the slot the old one would have
//!   used next, so the caller never receives audio faster than real time.
//! * `PromptFinished` is emitted when the last frame's 20 ms have elapsed (the caller has heard it all),
//!   not when the last packet leaves. A prompt stopped by `stop_playout` or replaced by `play` emits
//!   nothing: the call asked for it and already knows.
//! * **Hold pauses the prompt.** While we may not send ([`MediaConfig::send`] is false: the caller's
//!   offer was `a=sendonly` or `a=inactive`) or have nowhere to send ([`MediaConfig::remote`] is `None`:
//!   RFC 2543 hold with `c=0.0.0.0`), nothing at all is sent and the prompt stops where it was: the
//!   next frame index is kept, no `PromptFinished` fires, and a prompt started meanwhile waits at its
//!   first frame. When [`MediaSession::update_remote`] allows sending again, playback continues with
//!   that frame, paced from the resume instant (never earlier than the slot it would have had), marker
//!   bit set, SSRC the same, sequence +1, and the timestamp jumped forward by the time held (the
//!   between-prompts rule above). The caller does not miss any of the menu while held.
//!
//! # RTP in
//!
//! * Version 2 and lengths are validated ([`rtp::parse`]); RTCP multiplexed on the port (payload types
//!   72–76, RFC 5761 §4) and unknown payload types are ignored. Nothing here panics on garbage.
//! * **Symmetric RTP / latching**: the source of the first valid packet is where we send from then on,
//!   even if it differs from the SDP address (NAT); later packets from any other source are ignored.
//!   [`MediaSession::update_remote`] (re-INVITE) re-opens the latch: the next valid packet latches
//!   again. `FirstRtp` is emitted whenever the session latches onto a new address (the first packet,
//!   and after a re-INVITE if the source changed). On hold nothing is sent, even to a latched source.
//! * **DTMF**: telephone-event packets go to the RFC 4733 detector. Audio is decoded into a stack
//!   buffer and fed to the in-band detector **only while no telephone-event has been seen from this
//!   caller**: a phone that sends RFC 4733 usually also leaves remnants of the tone in the audio, and
//!   listening to both would double-count or mis-hear keys. Before in-band detection the audio passes a
//!   [`REORDER_SLOTS`]-packet reorder window ordered by sequence number.
//! * **RTP timeout**: while a remote is configured, no valid RTP for `rtp_timeout` emits
//!   [`MediaEvent::RtpTimeout`] once per period (again after another silent period); the call decides
//!   whether SIP activity keeps the call alive. A pause for `a=sendonly`/`a=inactive` hold does not
//!   stop it (the call decides what silence on hold means); with no remote (`c=0.0.0.0`) it is off.
//!
//! # RTCP (RFC 3550 §6, on the RTP port + 1)
//!
//! * Every RTP packet in (accepted) and out (prompts; relayed audio through
//!   [`MediaSession::on_relayed`]) updates the [`Rtcp`] statistics: plain arithmetic, no allocation.
//! * From the moment the session knows its peer (a remote in its configuration), a report (SR while we
//!   send, else RR; SDES CNAME) is due every interval, randomised ([`rtcp`](crate::media::rtcp)); [`MediaSession::poll_rtcp`] writes it and
//!   [`MediaSession::bye`] writes the last one with a BYE when the session closes. It goes to the
//!   source the peer's RTCP came from, else to the RTP destination's port + 1; with no remote
//!   (`c=0.0.0.0`) nothing is sent (RFC 3264 §8.4), on `a=sendonly`/`a=inactive` hold reports go on.
//! * [`MediaSession::handle_rtcp`] reads the peer's compound packets from the latched source's or the
//!   SDP's IP (others are counted as malformed, as are packets that do not parse).
//! * Each report sent emits [`MediaEvent::Rtcp`] with the statistics so far; so does a valid one
//!   received, at most once per [`RTCP_EVENT_GAP`]: a peer may send reports as fast as it likes, but
//!   the call needs only the latest figures. A report in between updates the statistics silently, and
//!   the next event carries its effect (the loss deltas are taken from snapshot to snapshot, so nothing
//!   is counted twice or lost); each one folded so is counted ([`MediaSession::take_shed`]).
//!
//! # Bounded events
//!
//! Keys are limited per session by a token bucket ([`KEY_BURST`] keys, then one per [`KEY_EVERY`]):
//! a person pressing keys, or a phone sending a dial string at the fastest rate ITU-T Q.24 allows
//! (40 ms tone, 40 ms pause: 12.5 a second), never meets it; a peer flooding RFC 4733 events with
//! new timestamps (each one a key) or crafted audio does, and its extra keys are dropped and counted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::media::codec::Law;
use crate::media::dtmf::inband::InbandDetector;
use crate::media::dtmf::rfc4733::Rfc4733Detector;
pub use crate::media::dtmf::{DetectedDigit, DigitMethod};
use crate::media::rtcp::{self, NtpClock, ReportCause, Rtcp, RtcpStats};
use crate::media::rtp::{self, RtpContinuation, RtpHeader};
use crate::prompts::{Prompt, FRAME_SAMPLES};

/// Duration of one G.711 frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// Most overdue frames sent back to back after a late poll; older ones are skipped.
pub const MAX_CATCHUP: usize = 3;

/// Packets held by the audio reorder window before in-band detection.
pub const REORDER_SLOTS: usize = 4;

/// Largest audio payload buffered for reordering (60 ms of G.711); larger ones are truncated.
const MAX_AUDIO_PAYLOAD: usize = 480;

/// A backwards sequence jump larger than this, or this long without audio, restarts the reorder window
/// (a restarted or replayed stream rather than a late packet).
const REORDER_RESTART_JUMP: i16 = 32;
const REORDER_RESTART_GAP: Duration = Duration::from_millis(250);

/// A received RTCP report yields a [`MediaEvent::Rtcp`] at most this often (module doc).
pub const RTCP_EVENT_GAP: Duration = Duration::from_secs(1);

/// Keys a session may report back to back before the rate limit applies (module doc).
pub const KEY_BURST: u32 = 20;

/// After a burst, one more key per this long (20 a second).
pub const KEY_EVERY: Duration = Duration::from_millis(50);

/// What a session left out of its events since [`MediaSession::take_shed`] was last asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionShed {
    /// Received RTCP reports folded into the next statistics event (sooner than [`RTCP_EVENT_GAP`]).
    pub reports_folded: u64,
    /// Keys dropped by the rate limit.
    pub keys_over_rate: u64,
}

/// The token bucket of keys (module doc).
#[derive(Debug)]
struct KeyRate {
    credit: u32,
    /// When `credit` was last topped up.
    refilled: Instant,
    dropped: u64,
}

impl KeyRate {
    fn new(now: Instant) -> Self {
        KeyRate {
            credit: KEY_BURST,
            refilled: now,
            dropped: 0,
        }
    }

    /// Whether a key detected at `now` may be reported (counted when not).
    fn admit(&mut self, now: Instant) -> bool {
        let steps = now.saturating_duration_since(self.refilled).as_nanos() / KEY_EVERY.as_nanos();
        if steps > 0 {
            let steps = u32::try_from(steps).unwrap_or(u32::MAX);
            self.credit = self.credit.saturating_add(steps).min(KEY_BURST);
            // Whole steps only: the part of a step already elapsed still counts toward the next key.
            self.refilled += KEY_EVERY * steps;
            if self.credit == KEY_BURST {
                self.refilled = now;
            }
        }
        if self.credit == 0 {
            self.dropped += 1;
            return false;
        }
        self.credit -= 1;
        true
    }
}

/// Negotiated media parameters for the session (from SDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// G.711 law of the audio payload type.
    pub law: Law,
    /// Audio payload type: 0 (PCMU), 8 (PCMA) or a dynamic one.
    pub payload_type: u8,
    /// Payload type of `telephone-event`, if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// Address from the SDP; `None` = on hold (`c=0.0.0.0`) or unknown. Nothing is sent without it.
    pub remote: Option<SocketAddr>,
    /// Whether our negotiated direction sends RTP (`sdp::Negotiated::direction.sends()`): false when
    /// the caller's offer was `a=sendonly` or `a=inactive` (hold). While false nothing is sent and the
    /// prompt is paused where it was (see the module doc).
    pub send: bool,
    /// Silence after which [`MediaEvent::RtpTimeout`] fires (typically 30 s).
    pub rtp_timeout: Duration,
    /// Seed for SSRC, initial sequence number and timestamp.
    pub seed: u64,
}

/// What the session reports to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The session latched onto `from`: the first valid packet, or a new source after a re-INVITE.
    FirstRtp {
        /// Source address now used as destination.
        from: SocketAddr,
    },
    /// A key press.
    Digit(DetectedDigit),
    /// A prompt played to its end.
    PromptFinished {
        /// The prompt's name.
        name: String,
    },
    /// No RTP for `rtp_timeout`.
    RtpTimeout,
    /// The media engine could not bind the RTP/RTCP port pair it was told to use (reported by the
    /// engine, never by a session): the call is released and the port kept out of use for a while.
    BindFailed {
        /// The RTP port that could not be bound.
        port: u16,
    },
    /// An RTCP report was sent or received: the leg's statistics so far (for the CDR and metrics).
    Rtcp(RtcpStats),
}

#[derive(Debug)]
struct Playing {
    prompt: Arc<Prompt>,
    /// Frame the pacing is anchored at: 0 when the prompt starts, the next frame after a resume.
    base: usize,
    /// Due time of frame `base`; frame k (k ≥ `base`) is due at `start + (k − base)·FRAME`.
    start: Instant,
    /// Timestamp of frame `base`.
    ts0: u32,
    /// Next frame index to send (== frame count once all are out).
    next_frame: usize,
}

impl Playing {
    /// (due time, timestamp) of frame `index`; `index` is never below `base` (frames only move on).
    fn slot(&self, index: usize) -> (Instant, u32) {
        let k = index.saturating_sub(self.base);
        (
            self.start + FRAME * k as u32,
            self.ts0.wrapping_add((FRAME_SAMPLES * k) as u32),
        )
    }

    /// Re-anchors pacing so that the next frame is due at `start` with timestamp `ts0`.
    fn rebase(&mut self, (start, ts0): (Instant, u32)) {
        self.base = self.next_frame;
        self.start = start;
        self.ts0 = ts0;
    }
}

/// Where audio continues after a silence that would have used `slot` (due time, timestamp) next: at
/// that slot if it is still ahead (never faster than real time), else now, with the timestamp moved on
/// by the samples that elapsed since the slot, so it keeps running with wall time.
fn continue_at((slot, ts): (Instant, u32), now: Instant) -> (Instant, u32) {
    if now <= slot {
        return (slot, ts);
    }
    let gap_samples = (now - slot).as_nanos() * 8_000 / 1_000_000_000;
    (now, ts.wrapping_add(gap_samples as u32))
}

/// The packets a [`ReorderWindow`] holds: slot `seq % REORDER_SLOTS` of `data` has room for
/// `slot_bytes`, the longest payload held so far (20 ms of G.711 is 160 bytes; at most
/// [`MAX_AUDIO_PAYLOAD`], longer payloads are cut there).
#[derive(Debug)]
struct HeldAudio {
    slot_bytes: usize,
    /// Each slot's (sequence number, length), `None` when free.
    held: [Option<(u16, usize)>; REORDER_SLOTS],
    data: Box<[u8]>,
}

impl HeldAudio {
    fn new(slot_bytes: usize) -> HeldAudio {
        let slot_bytes = slot_bytes.clamp(1, MAX_AUDIO_PAYLOAD);
        HeldAudio {
            slot_bytes,
            held: [None; REORDER_SLOTS],
            data: vec![0; REORDER_SLOTS * slot_bytes].into_boxed_slice(),
        }
    }

    fn put(&mut self, seq: u16, payload: &[u8]) {
        let len = payload.len().min(MAX_AUDIO_PAYLOAD);
        if len > self.slot_bytes {
            // Longer frames than before (a new ptime): the slots grow, at most to MAX_AUDIO_PAYLOAD.
            let mut grown = HeldAudio::new(len);
            for (i, slot) in self.held.iter().enumerate() {
                if let Some((seq, len)) = *slot {
                    let from = i * self.slot_bytes;
                    grown.put(seq, &self.data[from..from + len]);
                }
            }
            *self = grown;
        }
        let i = usize::from(seq) % REORDER_SLOTS;
        let from = i * self.slot_bytes;
        self.data[from..from + len].copy_from_slice(&payload[..len]);
        self.held[i] = Some((seq, len));
    }

    /// Hands the packet `seq` to `deliver` and frees its slot, if it is held.
    fn release(&mut self, seq: u16, deliver: &mut impl FnMut(&[u8])) -> bool {
        let i = usize::from(seq) % REORDER_SLOTS;
        match self.held[i] {
            Some((s, len)) if s == seq => {
                self.held[i] = None;
                let from = i * self.slot_bytes;
                deliver(&self.data[from..from + len]);
                true
            }
            _ => false,
        }
    }
}

/// Reorder window for received audio, by RTP sequence number, ahead of in-band DTMF detection: holds
/// up to [`REORDER_SLOTS`] packets after a gap, releases them in order, gives up on a lost packet when
/// the window is full, and drops duplicates and packets too late to place. A large backwards jump or
/// 250 ms without audio restarts it (a restarted or replayed stream). Its slots are allocated on the
/// first packet out of order, sized to the payloads seen, and kept for the session: a stream that never
/// loses or reorders a packet needs none.
#[derive(Debug)]
pub struct ReorderWindow {
    expected: Option<u16>,
    held: Option<Box<HeldAudio>>,
    last_rx: Option<Instant>,
}

impl Default for ReorderWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReorderWindow {
    /// An empty window.
    pub fn new() -> Self {
        ReorderWindow {
            expected: None,
            held: None,
            last_rx: None,
        }
    }

    /// Accepts one audio packet and hands every payload that is now in order to `deliver`.
    pub fn push(
        &mut self,
        now: Instant,
        seq: u16,
        payload: &[u8],
        deliver: &mut impl FnMut(&[u8]),
    ) {
        let stale = self
            .last_rx
            .is_some_and(|t| now.saturating_duration_since(t) >= REORDER_RESTART_GAP);
        self.last_rx = Some(now);
        let Some(mut expected) = self.expected.filter(|_| !stale) else {
            self.flush(deliver);
            deliver(payload);
            self.expected = Some(seq.wrapping_add(1));
            return;
        };
        let ahead = seq.wrapping_sub(expected) as i16;
        if ahead < 0 {
            if ahead < -REORDER_RESTART_JUMP {
                self.flush(deliver);
                deliver(payload);
                self.expected = Some(seq.wrapping_add(1));
            }
            // Otherwise a duplicate or a packet later than the window: its moment has passed.
            return;
        }
        if ahead as usize >= REORDER_SLOTS {
            // The packet we wait for is lost: release what is held, in order, until `seq` fits.
            if ahead as usize >= 2 * REORDER_SLOTS {
                self.flush(deliver);
                expected = seq;
            } else {
                while seq.wrapping_sub(expected) as usize >= REORDER_SLOTS {
                    self.release(expected, deliver);
                    expected = expected.wrapping_add(1);
                }
            }
        }
        if seq == expected {
            deliver(payload);
            expected = expected.wrapping_add(1);
        } else {
            self.held
                .get_or_insert_with(|| Box::new(HeldAudio::new(payload.len())))
                .put(seq, payload);
        }
        // Whatever is now contiguous (held packets after the gap closed or was given up) goes out.
        while self.release(expected, deliver) {
            expected = expected.wrapping_add(1);
        }
        self.expected = Some(expected);
    }

    fn release(&mut self, seq: u16, deliver: &mut impl FnMut(&[u8])) -> bool {
        self.held
            .as_mut()
            .is_some_and(|held| held.release(seq, deliver))
    }

    /// Delivers everything held, in sequence order, and forgets the expected number.
    fn flush(&mut self, deliver: &mut impl FnMut(&[u8])) {
        if let Some(mut e) = self.expected.filter(|_| self.held.is_some()) {
            for _ in 0..REORDER_SLOTS * 2 {
                self.release(e, deliver);
                e = e.wrapping_add(1);
            }
        }
        if let Some(held) = &mut self.held {
            held.held = [None; REORDER_SLOTS];
        }
        self.expected = None;
    }
}

/// The sans-IO media state machine of one call leg (see the module doc for the rules it follows).
#[derive(Debug)]
pub struct MediaSession {
    cfg: MediaConfig,
    ssrc: u32,
    next_seq: u16,
    /// (due time, timestamp) of the slot after the last one used, when nothing is playing.
    resume_slot: Option<(Instant, u32)>,
    initial_ts: u32,
    playing: Option<Playing>,
    marker_pending: bool,
    last_sent_due: Option<Instant>,
    latched: Option<SocketAddr>,
    /// Set by `update_remote`: the next valid packet latches, whatever its source.
    relatch: bool,
    /// Start of the current RTP-timeout period: last valid packet, configuration or timeout.
    rx_base: Instant,
    events: VecDeque<MediaEvent>,
    rfc4733: Rfc4733Detector,
    seen_telephone_event: bool,
    inband: InbandDetector,
    reorder: ReorderWindow,
    rtcp: Rtcp,
    /// Where the peer's RTCP comes from (symmetric RTCP); reports go there once known.
    rtcp_peer: Option<SocketAddr>,
    /// When a received report last yielded an event (module doc).
    rtcp_event_at: Option<Instant>,
    reports_folded: u64,
    keys: KeyRate,
}

impl MediaSession {
    /// A session with nothing playing and nothing received yet, reporting RTCP every 5 s.
    pub fn new(now: Instant, cfg: MediaConfig) -> Self {
        Self::with_rtcp_interval(now, cfg, rtcp::DEFAULT_INTERVAL)
    }

    /// A session whose RTCP reports go out every `interval` (randomised, see [`rtcp`]).
    pub fn with_rtcp_interval(now: Instant, cfg: MediaConfig, interval: Duration) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let mut rtcp = Rtcp::new(now, interval, cfg.seed);
        if cfg.remote.is_some() {
            rtcp.start(now);
        }
        MediaSession {
            rtcp,
            rtcp_peer: None,
            rtcp_event_at: None,
            reports_folded: 0,
            keys: KeyRate::new(now),
            ssrc: rng.gen(),
            next_seq: rng.gen(),
            initial_ts: rng.gen(),
            cfg,
            resume_slot: None,
            playing: None,
            marker_pending: false,
            last_sent_due: None,
            latched: None,
            relatch: false,
            rx_base: now,
            // Grown on the first event, then reused: most sessions queue one or two at a time.
            events: VecDeque::new(),
            rfc4733: Rfc4733Detector::new(),
            seen_telephone_event: false,
            inband: InbandDetector::new(),
            reorder: ReorderWindow::new(),
        }
    }

    /// Applies a re-INVITE's result: new remote, codec or hold. The next valid packet latches again,
    /// from whatever source. Until it arrives, packets keep going to the old latched source if the SDP
    /// address is unchanged (a session refresh behind NAT must not detour to a private address), or to
    /// the new SDP address if it changed. The RTP-timeout period restarts. SSRC, sequence and timestamp
    /// continue.
    ///
    /// This is also how hold starts and ends: a configuration that may not send pauses the prompt, one
    /// that may send again resumes it (module doc).
    pub fn update_remote(&mut self, now: Instant, cfg: &MediaConfig) {
        let was_paused = self.paused();
        if cfg.remote != self.cfg.remote {
            self.latched = None;
            self.rtcp_peer = None;
        }
        self.relatch = true;
        self.cfg = MediaConfig {
            seed: self.cfg.seed,
            ..cfg.clone()
        };
        self.rx_base = now;
        self.reorder = ReorderWindow::new();
        if self.cfg.remote.is_some() {
            // Scheduled here, not at the first packet: a receive task cannot re-arm the engine's
            // timer, and a bridged leg plays nothing that would.
            self.rtcp.start(now);
        }
        if was_paused && !self.paused() {
            self.resume(now);
        }
    }

    /// Where packets go: the latched source, else the SDP address; nothing while on hold (no SDP
    /// remote, or a direction that does not send), even if the caller keeps sending.
    pub fn destination(&self) -> Option<SocketAddr> {
        if self.paused() {
            return None;
        }
        self.latched.or(self.cfg.remote)
    }

    /// On hold: nothing may be sent and the prompt stands still.
    fn paused(&self) -> bool {
        !self.cfg.send || self.cfg.remote.is_none()
    }

    /// End of hold: the paused prompt continues with its next frame from `now` (module doc).
    fn resume(&mut self, now: Instant) {
        if let Some(p) = self.playing.as_mut() {
            let slot = continue_at(p.slot(p.next_frame), now);
            p.rebase(slot);
        }
        self.marker_pending = true;
    }

    /// Handles one datagram from the RTP port. Invalid, foreign or unknown packets are dropped silently.
    ///
    /// Returns whether the packet was accepted: valid RTP (not multiplexed RTCP) from the latched
    /// source, or the packet that just latched. Only accepted packets may be relayed by a bridge
    /// (symmetric RTP: a third party cannot inject audio into the other leg). An accepted packet of a
    /// payload type the session does not know is still accepted; the bridge decides what it relays.
    pub fn handle_rtp(&mut self, now: Instant, src: SocketAddr, packet: &[u8]) -> bool {
        let Ok((header, payload)) = rtp::parse(packet) else {
            tracing::trace!("dropping invalid rtp packet");
            return false;
        };
        // RFC 5761 §4: RTCP packet types 200–204 appear as payload types 72–76 when multiplexed.
        if (72..=76).contains(&header.payload_type) {
            return false;
        }
        let is_dtmf = Some(header.payload_type) == self.cfg.dtmf_payload_type;
        let is_audio = header.payload_type == self.cfg.payload_type;
        match self.latched {
            Some(latched) if latched == src => self.relatch = false,
            Some(_) if !self.relatch => return false,
            _ => {
                self.latched = Some(src);
                self.relatch = false;
                self.events.push_back(MediaEvent::FirstRtp { from: src });
            }
        }
        self.rx_base = now;
        self.rtcp.on_rtp_received(now, &header, is_audio);
        if is_dtmf {
            self.seen_telephone_event = true;
            let digit = self.rfc4733.handle(now, header.timestamp, payload);
            if let Some(digit) = digit.filter(|_| self.keys.admit(now)) {
                self.events.push_back(MediaEvent::Digit(DetectedDigit {
                    digit,
                    method: DigitMethod::Rfc4733,
                    at: now,
                }));
            }
        } else if is_audio && !self.seen_telephone_event {
            let law = self.cfg.law;
            let inband = &mut self.inband;
            let events = &mut self.events;
            let keys = &mut self.keys;
            self.reorder
                .push(now, header.sequence, payload, &mut |bytes: &[u8]| {
                    let mut pcm = [0i16; FRAME_SAMPLES];
                    for chunk in bytes.chunks(FRAME_SAMPLES) {
                        let pcm = &mut pcm[..chunk.len()];
                        law.decode_into(chunk, pcm);
                        let key = inband.process(pcm);
                        if let Some(d) = key.filter(|_| keys.admit(now)) {
                            events.push_back(MediaEvent::Digit(DetectedDigit {
                                digit: d.digit,
                                method: DigitMethod::Inband,
                                at: now,
                            }));
                        }
                    }
                });
        }
        true
    }

    /// Handles one datagram from the RTCP port (module doc): a valid compound from the peer's IP
    /// updates what it reports about our stream and emits [`MediaEvent::Rtcp`]; anything else is
    /// counted as malformed. `ntp` maps `now` to wall time (for the round trip).
    pub fn handle_rtcp(&mut self, now: Instant, ntp: &NtpClock, src: SocketAddr, packet: &[u8]) {
        let ip = Some(src.ip());
        if ip != self.latched.map(|a| a.ip()) && ip != self.cfg.remote.map(|a| a.ip()) {
            self.rtcp.count_ignored();
            return;
        }
        if self.rtcp.handle(now, ntp, self.ssrc, packet).is_ok() {
            self.rtcp_peer = Some(src);
            let recent = self
                .rtcp_event_at
                .is_some_and(|at| now.saturating_duration_since(at) < RTCP_EVENT_GAP);
            if recent {
                // No snapshot: the next one (received or sent) carries this report's effect.
                self.reports_folded += 1;
                return;
            }
            self.rtcp_event_at = Some(now);
            let stats = self.rtcp.snapshot(ReportCause::Received, self.ssrc);
            self.events.push_back(MediaEvent::Rtcp(stats));
        }
    }

    /// What the session left out of its events since the last call (module doc), for the shell's
    /// counters; the counts start again from zero.
    pub fn take_shed(&mut self) -> SessionShed {
        SessionShed {
            reports_folded: std::mem::take(&mut self.reports_folded),
            keys_over_rate: std::mem::take(&mut self.keys.dropped),
        }
    }

    /// Where our RTCP goes: the peer's RTCP source, else the RTP destination's port + 1; nowhere
    /// without a remote (`c=0.0.0.0`).
    fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.cfg.remote?;
        self.rtcp_peer.or_else(|| {
            let rtp = self.latched.or(self.cfg.remote)?;
            Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
        })
    }

    /// Writes the RTCP report due at `now` into `buf` and returns its destination and length; `None`
    /// when none is due (call until `None`). Emits [`MediaEvent::Rtcp`] for a report written.
    pub fn poll_rtcp(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        if !self.rtcp.due(now) {
            return None;
        }
        let Some(dst) = self.rtcp_destination() else {
            self.rtcp.skip(now);
            return None;
        };
        let n = self.rtcp.write_report(now, ntp, self.ssrc, false, buf)?;
        let stats = self.rtcp.snapshot(ReportCause::Sent, self.ssrc);
        self.events.push_back(MediaEvent::Rtcp(stats));
        Some((dst, n))
    }

    /// The session is closing: the last report, with a BYE (RFC 3550 §6.6), if media ever flowed.
    pub fn bye(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        buf: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        self.rtcp.poll_timeout()?;
        let dst = self.rtcp_destination()?;
        let n = self.rtcp.write_report(now, ntp, self.ssrc, true, buf)?;
        Some((dst, n))
    }

    /// A relayed packet (already rewritten into this leg's stream) left this leg's socket at `now`:
    /// counted as ours for the sender report.
    pub fn on_relayed(&mut self, now: Instant, packet: &[u8]) {
        if let Ok((h, payload)) = rtp::parse(packet) {
            self.rtcp.on_rtp_sent(now, h.timestamp, payload.len());
        }
    }

    /// The RTCP statistics now.
    pub fn rtcp_stats(&self, cause: ReportCause) -> RtcpStats {
        self.rtcp.stats(cause, self.ssrc)
    }

    /// Advances timers: RTP timeout and end of the current prompt. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cfg.remote.is_some() && now >= self.rx_base + self.cfg.rtp_timeout {
            self.events.push_back(MediaEvent::RtpTimeout);
            self.rx_base = now;
        }
        self.check_finished(now);
    }

    /// Starts `prompt`, replacing anything playing (see the module doc for timing and marker rules).
    /// On hold it waits at its first frame until sending is allowed again.
    pub fn play(&mut self, now: Instant, prompt: Arc<Prompt>) {
        self.stop_playout(now);
        let (start, ts0) = match self.resume_slot {
            None => (now, self.initial_ts),
            Some(slot) => continue_at(slot, now),
        };
        self.marker_pending = true;
        self.playing = Some(Playing {
            prompt,
            base: 0,
            start,
            ts0,
            next_frame: 0,
        });
        self.check_finished(now);
    }

    /// Barge-in: stops the current prompt at once, without a `PromptFinished` event.
    pub fn stop_playout(&mut self, _now: Instant) {
        if let Some(p) = self.playing.take() {
            self.resume_slot = Some(p.slot(p.next_frame));
        }
    }

    /// Writes the next due RTP packet into `buf` and returns its destination and length; `None` when
    /// nothing is due (or `buf` is too small). Call until `None`. Does not allocate.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        // On hold the prompt stands still: no frame is sent, skipped or counted as played.
        let dst = self.destination()?;
        loop {
            let p = self.playing.as_mut()?;
            let count = p.prompt.frame_count();
            if p.next_frame >= count {
                break;
            }
            let (due, ts) = p.slot(p.next_frame);
            if due > now {
                return None;
            }
            let behind = ((now - due).as_nanos() / FRAME.as_nanos()) as usize;
            if behind >= MAX_CATCHUP {
                p.next_frame = (p.next_frame + behind + 1 - MAX_CATCHUP).min(count);
                continue;
            }
            let index = p.next_frame;
            p.next_frame += 1;
            let Some(payload) = p.prompt.frame(self.cfg.law, index) else {
                continue;
            };
            let header = RtpHeader {
                marker: self.marker_pending,
                payload_type: self.cfg.payload_type,
                sequence: self.next_seq,
                timestamp: ts,
                ssrc: self.ssrc,
            };
            let n = rtp::write(buf, &header, payload).ok()?;
            self.rtcp.on_rtp_sent(due, ts, payload.len());
            self.next_seq = self.next_seq.wrapping_add(1);
            self.marker_pending = false;
            self.last_sent_due = Some(due);
            return Some((dst, n));
        }
        self.check_finished(now);
        None
    }

    /// Where this session's outgoing stream stands at `now`: SSRC, next sequence number and the
    /// timestamp its next packet would carry (the rules of the module doc: the slot after the last
    /// frame, moved on with wall time if that slot has passed). A bridge continues the stream from here.
    pub fn rtp_continuation(&self, now: Instant) -> RtpContinuation {
        let slot = match &self.playing {
            Some(p) => Some(p.slot(p.next_frame)),
            None => self.resume_slot,
        };
        let (at, timestamp) = match slot {
            Some(slot) => continue_at(slot, now),
            None => (now, self.initial_ts),
        };
        RtpContinuation {
            ssrc: self.ssrc,
            next_sequence: self.next_seq,
            timestamp,
            at,
        }
    }

    /// Takes the outgoing stream back from a bridge that wrote it meanwhile (`Relay::continuation` of
    /// the relay toward this leg): SSRC, next sequence number and the timestamp slot. Anything playing
    /// is stopped first (a bridged session plays nothing); the next prompt continues from `c` by the
    /// between-prompts rule of the module doc (marker set, sequence +1, timestamp with wall time).
    pub fn set_rtp_continuation(&mut self, now: Instant, c: RtpContinuation) {
        self.stop_playout(now);
        self.ssrc = c.ssrc;
        self.next_seq = c.next_sequence;
        self.resume_slot = Some((c.at, c.timestamp));
    }

    /// The negotiated media in force (the last `update_remote`, else the one it was created with).
    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    /// Scheduled instant of the packet most recently returned by `poll_transmit` (for send-jitter stats).
    pub fn last_sent_due(&self) -> Option<Instant> {
        self.last_sent_due
    }

    /// Next queued event for the call.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// When the next RTCP report is due ([`MediaSession::poll_rtcp`]); a driver wakes at the earlier
    /// of this and [`MediaSession::poll_timeout`]. Kept apart so that a driver of RTP alone (the
    /// session tests, the load examples) never sees a deadline it does not serve.
    pub fn poll_rtcp_timeout(&self) -> Option<Instant> {
        self.rtcp.poll_timeout()
    }

    /// When `handle_timeout`/`poll_transmit` next have work: the next frame, the end of the prompt or
    /// the RTP timeout. A prompt paused by hold has no deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let play = self
            .playing
            .as_ref()
            .filter(|_| !self.paused())
            .map(|p| p.slot(p.next_frame).0);
        let rx = self.cfg.remote.map(|_| self.rx_base + self.cfg.rtp_timeout);
        match (play, rx) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_finished(&mut self, now: Instant) {
        if self.paused() {
            // The caller has not heard the end yet (or the last frame's 20 ms are not over).
            return;
        }
        let done = self.playing.as_ref().is_some_and(|p| {
            p.next_frame >= p.prompt.frame_count() && now >= p.slot(p.prompt.frame_count()).0
        });
        if done {
            if let Some(p) = self.playing.take() {
                self.resume_slot = Some(p.slot(p.next_frame));
                self.events.push_back(MediaEvent::PromptFinished {
                    name: p.prompt.name.clone(),
                });
            }
        }
    }
}
