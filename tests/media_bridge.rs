//! `media::bridge` on a simulated clock, byte by byte: each side keeps hearing the stream it already knew
//! (SSRC, sequence, timestamp) when the prompts give way to the other side's audio; gaps, reordering,
//! PCMU↔PCMA, RFC 4733 events, hold and resume, payload types that are not relayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::media::bridge::{Bridge, Relay};
use helpline::media::codec::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear, Law};
use helpline::media::rtp::{self, RtpHeader};
use helpline::media::session::{MediaConfig, MediaSession, FRAME};
use helpline::prompts::Prompt;

fn config(law: Law, pt: u8, dtmf: Option<u8>, remote: &str, seed: u64) -> MediaConfig {
    MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: dtmf,
        remote: Some(remote.parse::<SocketAddr>().unwrap()),
        send: true,
        rtp_timeout: Duration::from_secs(30),
        seed,
    }
}

fn caller_cfg() -> MediaConfig {
    config(Law::Ulaw, 0, Some(101), "198.51.100.7:4000", 1)
}

fn agent_cfg() -> MediaConfig {
    config(Law::Ulaw, 0, Some(101), "192.0.2.20:16000", 2)
}

fn prompt(name: &str, frames: usize) -> Arc<Prompt> {
    let pcm: Vec<i16> = (0..frames * 160)
        .map(|i| ((i % 40) as i16 - 20) * 300)
        .collect();
    Arc::new(Prompt::from_samples("en", name, &pcm))
}

/// A packet a session or relay produced.
#[derive(Debug, Clone)]
struct Out {
    at: Instant,
    header: RtpHeader,
    payload: Vec<u8>,
}

fn parse_out(at: Instant, bytes: &[u8]) -> Out {
    let (header, payload) = rtp::parse(bytes).expect("we emit valid rtp");
    Out {
        at,
        header,
        payload: payload.to_vec(),
    }
}

/// Plays `p` on `s` from `from`, driving it like the media engine (wake at `poll_timeout`) until
/// `until`; returns what it sent.
fn play_prompt(s: &mut MediaSession, p: Arc<Prompt>, from: Instant, until: Instant) -> Vec<Out> {
    s.play(from, p);
    let mut now = from;
    let mut buf = [0u8; 1500];
    let mut sent = Vec::new();
    loop {
        s.handle_timeout(now);
        while let Some((_, n)) = s.poll_transmit(now, &mut buf) {
            sent.push(parse_out(now, &buf[..n]));
        }
        while s.poll_event().is_some() {}
        match s.poll_timeout() {
            Some(t) if t <= until => now = t.max(now),
            _ => return sent,
        }
    }
}

/// A remote phone's own RTP stream.
struct Phone {
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Phone {
    fn packet(&self, seq: u16, ts: u32, pt: u8, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 1500];
        let h = RtpHeader {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: self.ssrc,
        };
        let n = rtp::write(&mut buf, &h, payload).unwrap();
        buf[..n].to_vec()
    }

    /// The next 20 ms audio packet (sequence +1, timestamp +160).
    fn audio(&mut self, pt: u8, payload: &[u8]) -> Vec<u8> {
        let p = self.packet(self.seq, self.ts, pt, false, payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        p
    }
}

fn relay(r: &mut Relay, now: Instant, packet: &[u8]) -> Option<Out> {
    let mut buf = [0u8; 1500];
    r.relay(now, packet, &mut buf)
        .map(|n| parse_out(now, &buf[..n]))
}

/// Samples elapsed between two instants at 8 kHz.
fn samples(from: Instant, to: Instant) -> u32 {
    ((to - from).as_micros() / 125) as u32
}

fn speech(k: u8) -> Vec<u8> {
    (0..160u8)
        .map(|i| i.wrapping_mul(3).wrapping_add(k))
        .collect()
}

/// The caller heard a 10-frame prompt from t0; the agent answers at t0 + 500 ms and the bridge starts.
struct Scene {
    t0: Instant,
    bridged_at: Instant,
    caller: MediaSession,
    agent: MediaSession,
    caller_heard: Vec<Out>,
    bridge: Bridge,
}

fn scene(caller_cfg: MediaConfig, agent_cfg: MediaConfig) -> Scene {
    let t0 = Instant::now();
    let mut caller = MediaSession::new(t0, caller_cfg.clone());
    let mut agent = MediaSession::new(t0, agent_cfg.clone());
    let caller_heard = play_prompt(&mut caller, prompt("hold-on", 10), t0, t0 + FRAME * 20);
    assert_eq!(caller_heard.len(), 10, "fixture: the whole prompt went out");
    let bridged_at = t0 + Duration::from_millis(500);
    caller.stop_playout(bridged_at);
    agent.stop_playout(bridged_at);
    let bridge = Bridge::between(bridged_at, &caller, &caller_cfg, &agent, &agent_cfg);
    Scene {
        t0,
        bridged_at,
        caller,
        agent,
        caller_heard,
        bridge,
    }
}

#[test]
fn caller_keeps_the_prompt_stream_when_the_agent_speaks() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let last = s.caller_heard.last().unwrap().clone();
    let mut phone = Phone {
        ssrc: 0xA6E7,
        seq: 40_000,
        ts: 123_456,
    };
    let first_at = s.bridged_at + Duration::from_millis(30);
    let mut heard = Vec::new();
    for k in 0..5u8 {
        let now = first_at + FRAME * u32::from(k);
        let pkt = phone.audio(0, &speech(k));
        // The engine feeds the agent's session first (latching, DTMF); it must not change the relay.
        s.agent
            .handle_rtp(now, "192.0.2.20:16000".parse().unwrap(), &pkt);
        heard.push(relay(&mut s.bridge.b_to_a, now, &pkt).expect("relayed"));
    }
    // The prompt's last frame was due at t0 + 180 ms, so its slot ended at t0 + 200 ms.
    let slot_end = s.t0 + FRAME * 10;
    assert_eq!(last.at, s.t0 + FRAME * 9);
    for (k, o) in heard.iter().enumerate() {
        assert_eq!(o.header.ssrc, last.header.ssrc, "the caller's SSRC stays");
        assert_eq!(
            o.header.sequence,
            last.header.sequence.wrapping_add(1 + k as u16),
            "sequence continues +1 from the prompt"
        );
        assert_eq!(
            o.header.timestamp,
            last.header
                .timestamp
                .wrapping_add(160 + samples(slot_end, first_at) + 160 * k as u32),
            "timestamp continues with the elapsed time, then the agent's deltas"
        );
        assert_eq!(
            o.header.marker,
            k == 0,
            "marker on the first bridged packet"
        );
        assert_eq!(o.header.payload_type, 0);
        assert_eq!(
            o.payload,
            speech(k as u8),
            "same law: the payload is copied"
        );
    }
    // Nothing else is sent toward the caller: its session plays nothing while bridged.
    let mut buf = [0u8; 1500];
    assert!(s
        .caller
        .poll_transmit(first_at + FRAME * 5, &mut buf)
        .is_none());
}

#[test]
fn agent_keeps_the_whisper_stream_when_the_caller_speaks() {
    // The agent heard a whisper ("order 1234") from helpline when answering; then the caller speaks.
    let t0 = Instant::now();
    let (ccfg, acfg) = (caller_cfg(), agent_cfg());
    let mut caller = MediaSession::new(t0, ccfg.clone());
    let mut agent = MediaSession::new(t0, acfg.clone());
    // The bridge starts while the whisper's last slot is still running (t0 + 75 ms < t0 + 80 ms).
    let at = t0 + Duration::from_millis(75);
    let whisper = play_prompt(&mut agent, prompt("whisper", 4), t0, at);
    assert_eq!(whisper.len(), 4);
    let last = whisper.last().unwrap().clone();
    caller.stop_playout(at);
    agent.stop_playout(at);
    let mut bridge = Bridge::between(at, &caller, &ccfg, &agent, &acfg);
    let mut phone = Phone {
        ssrc: 77,
        seq: 65_534, // wraps during the test
        ts: u32::MAX - 200,
    };
    let first_at = t0 + Duration::from_millis(77);
    for k in 0..4u8 {
        let now = first_at + FRAME * u32::from(k);
        let o = relay(&mut bridge.a_to_b, now, &phone.audio(0, &speech(k))).expect("relayed");
        assert_eq!(o.header.ssrc, last.header.ssrc);
        assert_eq!(
            o.header.sequence,
            last.header.sequence.wrapping_add(1 + u16::from(k))
        );
        // The caller's packet arrived before the whisper's slot ended: no wall-time jump, just +160.
        assert_eq!(
            o.header.timestamp,
            last.header.timestamp.wrapping_add(160 * (1 + u32::from(k)))
        );
        assert_eq!(o.header.marker, k == 0);
    }
}

#[test]
fn rtp_continuation_predicts_the_sessions_next_packet() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, caller_cfg());
    // Mid-prompt: the next frame's slot lies ahead of `now`.
    let sent = play_prompt(&mut s, prompt("a", 10), t0, t0 + Duration::from_millis(50));
    assert_eq!(sent.len(), 3, "frames at 0, 20, 40 ms");
    let now = t0 + Duration::from_millis(50);
    let c = s.rtp_continuation(now);
    assert_eq!(c.at, t0 + Duration::from_millis(60));
    s.stop_playout(now);
    let next = play_prompt(&mut s, prompt("b", 1), now, now + FRAME * 3);
    assert_eq!(
        (
            next[0].header.ssrc,
            next[0].header.sequence,
            next[0].header.timestamp,
            next[0].at
        ),
        (c.ssrc, c.next_sequence, c.timestamp, c.at)
    );
    // Long after the prompt: the timestamp has moved on with wall time.
    let later = next[0].at + Duration::from_secs(3);
    let c = s.rtp_continuation(later);
    assert_eq!(c.at, later);
    assert_eq!(
        c.timestamp,
        next[0]
            .header
            .timestamp
            .wrapping_add(160 + samples(next[0].at + FRAME, later))
    );
    let again = play_prompt(&mut s, prompt("c", 1), later, later + FRAME * 3);
    assert_eq!(
        (again[0].header.sequence, again[0].header.timestamp),
        (c.next_sequence, c.timestamp)
    );
}

#[test]
fn agent_gaps_stay_gaps_and_reordering_is_kept() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let last = s.caller_heard.last().unwrap().header;
    let phone = Phone {
        ssrc: 5,
        seq: 0,
        ts: 0,
    };
    let base_seq = 1000u16;
    let base_ts = 8000u32;
    let mut now = s.bridged_at + FRAME;
    let mut got = Vec::new();
    // 1003 is lost, 1005 arrives after 1006.
    for d in [0u16, 1, 2, 4, 6, 5, 7] {
        let pkt = phone.packet(
            base_seq + d,
            base_ts + 160 * u32::from(d),
            0,
            false,
            &speech(0),
        );
        got.push(relay(&mut s.bridge.b_to_a, now, &pkt).expect("relayed"));
        now += FRAME;
    }
    let first = got[0].header;
    assert_eq!(first.sequence, last.sequence.wrapping_add(1));
    let seq: Vec<u16> = got
        .iter()
        .map(|o| o.header.sequence.wrapping_sub(first.sequence))
        .collect();
    assert_eq!(
        seq,
        [0, 1, 2, 4, 6, 5, 7],
        "the gap and the order are the agent's"
    );
    let ts: Vec<u32> = got
        .iter()
        .map(|o| o.header.timestamp.wrapping_sub(first.timestamp))
        .collect();
    assert_eq!(ts, [0, 160, 320, 640, 960, 800, 1120]);
    // A packet from before the switch, arriving late: its number was the prompt's; dropped.
    let stale = phone.packet(base_seq - 1, base_ts - 160, 0, false, &speech(0));
    assert!(relay(&mut s.bridge.b_to_a, now, &stale).is_none());
    assert_eq!(s.bridge.b_to_a.stats().late, 1);
    // The lost one arriving now is still placed in its gap.
    let lost = phone.packet(base_seq + 3, base_ts + 480, 0, false, &speech(0));
    let o = relay(&mut s.bridge.b_to_a, now, &lost).expect("late but after the anchor");
    assert_eq!(o.header.sequence, first.sequence.wrapping_add(3));
    assert_eq!(o.header.timestamp, first.timestamp.wrapping_add(480));
}

#[test]
fn pcmu_and_pcma_are_transcoded_byte_for_byte_with_dynamic_payload_types() {
    let every_code: Vec<u8> = (0..=255u8).collect();
    // Caller PCMU/0, agent PCMA on dynamic payload type 110.
    let acfg = config(Law::Alaw, 110, Some(101), "192.0.2.20:16000", 2);
    let mut s = scene(caller_cfg(), acfg);
    let mut caller_phone = Phone {
        ssrc: 1,
        seq: 1,
        ts: 1,
    };
    let now = s.bridged_at + FRAME;
    let o = relay(
        &mut s.bridge.a_to_b,
        now,
        &caller_phone.audio(0, &every_code),
    )
    .unwrap();
    assert_eq!(o.header.payload_type, 110);
    let want: Vec<u8> = every_code
        .iter()
        .map(|&c| linear_to_alaw(ulaw_to_linear(c)))
        .collect();
    assert_eq!(o.payload, want);
    let mut agent_phone = Phone {
        ssrc: 2,
        seq: 1,
        ts: 1,
    };
    let o = relay(
        &mut s.bridge.b_to_a,
        now,
        &agent_phone.audio(110, &every_code),
    )
    .unwrap();
    assert_eq!(o.header.payload_type, 0);
    let want: Vec<u8> = every_code
        .iter()
        .map(|&c| linear_to_ulaw(alaw_to_linear(c)))
        .collect();
    assert_eq!(o.payload, want);
    // PCMU/0 on the caller, PCMU on dynamic 96 toward the agent: the payload type changes, not the bytes.
    let acfg = config(Law::Ulaw, 96, Some(101), "192.0.2.20:16000", 2);
    let mut s = scene(caller_cfg(), acfg);
    let o = relay(
        &mut s.bridge.a_to_b,
        now,
        &caller_phone.audio(0, &every_code),
    )
    .unwrap();
    assert_eq!((o.header.payload_type, o.payload), (96, every_code.clone()));
    // The agent's PCMU on 96 is not mistaken for anything else either.
    assert!(relay(
        &mut s.bridge.b_to_a,
        now,
        &agent_phone.audio(96, &every_code)
    )
    .is_some());
    assert!(relay(
        &mut s.bridge.b_to_a,
        now,
        &agent_phone.audio(0, &every_code)
    )
    .is_none());
}

/// RFC 4733 §2.3: payload = event, E|R|volume, duration (16 bits).
fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, (u8::from(end) << 7) | 10, d[0], d[1]]
}

#[test]
fn rfc4733_event_keeps_one_timestamp_and_gets_the_out_payload_type() {
    // Caller sends telephone-event on 101, the agent negotiated it on 96.
    let acfg = config(Law::Ulaw, 0, Some(96), "192.0.2.20:16000", 2);
    let mut s = scene(caller_cfg(), acfg);
    let mut phone = Phone {
        ssrc: 9,
        seq: 300,
        ts: 50_000,
    };
    let mut now = s.bridged_at + FRAME;
    let mut out = Vec::new();
    let mut sent_payloads = Vec::new();
    for k in 0..2 {
        out.push(relay(&mut s.bridge.a_to_b, now, &phone.audio(0, &speech(k))).unwrap());
        now += FRAME;
    }
    // Key 5 starts at the next sample position and lasts 480 samples, then three end packets.
    let ev_ts = phone.ts;
    let durations = [
        (160, false),
        (320, false),
        (480, false),
        (640, true),
        (640, true),
        (640, true),
    ];
    for (i, &(d, end)) in durations.iter().enumerate() {
        let payload = event(5, end, d);
        let pkt = phone.packet(phone.seq, ev_ts, 101, i == 0, &payload);
        phone.seq += 1;
        sent_payloads.push(payload.to_vec());
        out.push(relay(&mut s.bridge.a_to_b, now, &pkt).expect("event relayed"));
        now += FRAME;
    }
    // Were the stream to be anchored again now, it would continue after the audio and the event's
    // wall time (the event's packets do not pull the timestamp back to the event's start).
    let c = s.bridge.a_to_b.continuation(now);
    assert_eq!(
        c.timestamp,
        out[0]
            .header
            .timestamp
            .wrapping_add(320 + samples(out[1].at + FRAME, now))
    );
    phone.ts = ev_ts + 640;
    out.push(relay(&mut s.bridge.a_to_b, now, &phone.audio(0, &speech(9))).unwrap());

    let first = out[0].header;
    let events = &out[2..8];
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.header.payload_type, 96,
            "the agent's telephone-event type"
        );
        assert_eq!(
            e.header.timestamp,
            first.timestamp.wrapping_add(320),
            "one timestamp for the whole event, offset as the caller sent it"
        );
        assert_eq!(
            e.payload, sent_payloads[i],
            "event, end bit, volume, duration untouched"
        );
        assert_eq!(
            e.header.marker,
            i == 0,
            "marker on the event's first packet only"
        );
        assert_eq!(e.header.ssrc, first.ssrc);
    }
    for (k, o) in out.iter().enumerate() {
        assert_eq!(o.header.sequence, first.sequence.wrapping_add(k as u16));
    }
    let after = out[8].header;
    assert_eq!(
        (after.payload_type, after.timestamp),
        (0, first.timestamp.wrapping_add(960))
    );
}

#[test]
fn events_toward_a_leg_without_telephone_event_and_other_types_are_dropped_without_a_gap() {
    let acfg = config(Law::Ulaw, 0, None, "192.0.2.20:16000", 2);
    let mut s = scene(caller_cfg(), acfg);
    let mut phone = Phone {
        ssrc: 9,
        seq: 10,
        ts: 0,
    };
    let mut now = s.bridged_at;
    let mut out = Vec::new();
    out.push(relay(&mut s.bridge.a_to_b, now, &phone.audio(0, &speech(0))).unwrap());
    now += FRAME;
    // A telephone-event (the agent cannot take it), comfort noise (13) and an unknown type (18).
    for pt in [101, 13, 18] {
        let payload: &[u8] = if pt == 101 {
            &[1, 0x8A, 0, 160]
        } else {
            &[0x40]
        };
        assert!(relay(&mut s.bridge.a_to_b, now, &phone.audio(pt, payload)).is_none());
        now += FRAME;
    }
    out.push(relay(&mut s.bridge.a_to_b, now, &phone.audio(0, &speech(1))).unwrap());
    assert_eq!(
        out[1].header.sequence,
        out[0].header.sequence.wrapping_add(1),
        "the agent sees a silence, not lost packets"
    );
    assert_eq!(
        out[1].header.timestamp,
        out[0].header.timestamp.wrapping_add(4 * 160),
        "the silence keeps its length"
    );
    let st = s.bridge.a_to_b.stats();
    assert_eq!((st.relayed, st.no_event_pt, st.not_media), (2, 1, 2));
}

#[test]
fn hold_on_the_out_side_writes_nothing_and_resume_sets_the_marker() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let mut caller_phone = Phone {
        ssrc: 3,
        seq: 7,
        ts: 0,
    };
    let mut agent_phone = Phone {
        ssrc: 4,
        seq: 9,
        ts: 0,
    };
    // After a network stall the caller's first three packets arrive in one burst: their timestamps run
    // ahead of the wall clock, and the resume below must continue after them, not from wall time alone.
    let mut now = s.bridged_at;
    let mut before = Vec::new();
    for k in 0..3 {
        before.push(
            relay(
                &mut s.bridge.a_to_b,
                now,
                &caller_phone.audio(0, &speech(k)),
            )
            .unwrap(),
        );
    }
    now += FRAME;
    let last = before.last().unwrap().clone();
    // The agent puts the call on hold: `a=sendonly` from the agent, so we may not send to it.
    let mut held = agent_cfg();
    held.send = false;
    s.bridge.update_b(&held);
    for k in 0..10 {
        assert!(relay(
            &mut s.bridge.a_to_b,
            now,
            &caller_phone.audio(0, &speech(k))
        )
        .is_none());
        // The agent's music on hold still reaches the caller.
        assert!(relay(&mut s.bridge.b_to_a, now, &agent_phone.audio(0, &speech(k))).is_some());
        now += FRAME;
    }
    // An RFC 2543 hold (c=0.0.0.0) from the caller instead: nothing toward the caller either.
    let mut no_remote = caller_cfg();
    no_remote.remote = None;
    s.bridge.update_a(&no_remote);
    assert!(relay(&mut s.bridge.b_to_a, now, &agent_phone.audio(0, &speech(0))).is_none());
    assert_eq!(s.bridge.b_to_a.stats().held, 1);
    assert_eq!(s.bridge.a_to_b.stats().held, 10);
    // Resume toward the agent.
    s.bridge.update_b(&agent_cfg());
    now += Duration::from_millis(5);
    let o = relay(
        &mut s.bridge.a_to_b,
        now,
        &caller_phone.audio(0, &speech(1)),
    )
    .unwrap();
    assert!(o.header.marker, "marker after the resume");
    assert_eq!(o.header.ssrc, last.header.ssrc);
    assert_eq!(
        o.header.sequence,
        last.header.sequence.wrapping_add(1),
        "no jump"
    );
    assert_eq!(
        o.header.timestamp,
        last.header
            .timestamp
            .wrapping_add(160 + samples(last.at + FRAME, now)),
        "timestamp moved on by the time held"
    );
    let o2 = relay(
        &mut s.bridge.a_to_b,
        now + FRAME,
        &caller_phone.audio(0, &speech(2)),
    )
    .unwrap();
    assert!(!o2.header.marker);
    assert_eq!(o2.header.sequence, o.header.sequence.wrapping_add(1));
}

#[test]
fn a_restarted_in_stream_is_anchored_again() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let mut phone = Phone {
        ssrc: 100,
        seq: 1,
        ts: 1,
    };
    let mut now = s.bridged_at;
    let a = relay(&mut s.bridge.b_to_a, now, &phone.audio(0, &speech(0))).unwrap();
    now += FRAME;
    // The agent's phone restarts its stream after a re-INVITE: new SSRC, new numbers.
    let mut phone = Phone {
        ssrc: 200,
        seq: 9000,
        ts: 777,
    };
    now += Duration::from_millis(100);
    let b = relay(&mut s.bridge.b_to_a, now, &phone.audio(0, &speech(1))).unwrap();
    assert!(b.header.marker);
    assert_eq!(b.header.ssrc, a.header.ssrc);
    assert_eq!(b.header.sequence, a.header.sequence.wrapping_add(1));
    assert_eq!(
        b.header.timestamp,
        a.header
            .timestamp
            .wrapping_add(160 + samples(a.at + FRAME, now))
    );
    // Same SSRC, sequence jumping back by more than MAX_MISORDER: a restart too.
    phone.seq = phone.seq.wrapping_sub(500);
    let c = relay(
        &mut s.bridge.b_to_a,
        now + FRAME,
        &phone.audio(0, &speech(2)),
    )
    .unwrap();
    assert!(c.header.marker);
    assert_eq!(c.header.sequence, b.header.sequence.wrapping_add(1));
    assert_eq!(s.bridge.b_to_a.stats().restarts, 2);
}

#[test]
fn continuation_hands_the_stream_back() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let mut phone = Phone {
        ssrc: 1,
        seq: 1,
        ts: 1,
    };
    let mut last = None;
    for k in 0..3u32 {
        let now = s.bridged_at + FRAME * k;
        last = relay(&mut s.bridge.b_to_a, now, &phone.audio(0, &speech(0)));
    }
    let last = last.unwrap();
    let later = last.at + Duration::from_secs(1);
    let c = s.bridge.b_to_a.continuation(later);
    assert_eq!(c.ssrc, last.header.ssrc);
    assert_eq!(c.next_sequence, last.header.sequence.wrapping_add(1));
    assert_eq!(
        c.timestamp,
        last.header
            .timestamp
            .wrapping_add(160 + samples(last.at + FRAME, later))
    );
    assert_eq!(c.at, later);
}

#[test]
fn garbage_and_small_buffers_write_nothing() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let now = s.bridged_at;
    let mut buf = [0u8; 1500];
    for junk in [&[][..], &[0x80; 5], &[0x40; 20], &[0x8F; 12]] {
        assert_eq!(s.bridge.a_to_b.relay(now, junk, &mut buf), None);
    }
    let mut phone = Phone {
        ssrc: 1,
        seq: 1,
        ts: 1,
    };
    let pkt = phone.audio(0, &speech(0));
    assert_eq!(s.bridge.a_to_b.relay(now, &pkt, &mut buf[..100]), None);
    assert_eq!(s.bridge.a_to_b.stats().invalid, 5);
    // The packet that did not fit used no sequence number: it is still the first bridged packet.
    let o = relay(&mut s.bridge.a_to_b, now, &pkt).unwrap();
    assert!(o.header.marker);
    assert_eq!(
        o.header.sequence,
        s.agent.rtp_continuation(now).next_sequence
    );
    assert_eq!(s.bridge.a_to_b.stats().relayed, 1);
}

#[test]
fn the_session_takes_its_stream_back_when_the_bridge_ends() {
    let mut s = scene(caller_cfg(), agent_cfg());
    let mut phone = Phone {
        ssrc: 5,
        seq: 9,
        ts: 900,
    };
    let first_at = s.bridged_at + Duration::from_millis(10);
    let mut last = None;
    for k in 0..3u8 {
        let now = first_at + FRAME * u32::from(k);
        last = relay(&mut s.bridge.b_to_a, now, &phone.audio(0, &speech(k)));
    }
    let last = last.expect("relayed");
    // The bridge ends 100 ms after the last relayed packet's slot; a prompt follows at once.
    let slot_end = last.at + FRAME;
    let ended = slot_end + Duration::from_millis(100);
    s.caller
        .set_rtp_continuation(ended, s.bridge.b_to_a.continuation(ended));
    let again = play_prompt(
        &mut s.caller,
        prompt("anything-else", 2),
        ended,
        ended + FRAME * 4,
    );
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].header.ssrc, last.header.ssrc);
    assert_eq!(
        again[0].header.sequence,
        last.header.sequence.wrapping_add(1)
    );
    assert_eq!(
        again[0].header.timestamp,
        last.header
            .timestamp
            .wrapping_add(160 + samples(slot_end, ended)),
        "timestamp runs on with the time since the last relayed frame"
    );
    assert!(again[0].header.marker);
    assert_eq!(again[0].at, ended, "the prompt starts when asked");
}
