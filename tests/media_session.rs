//! `MediaSession` on a simulated clock: paced prompt playout (exact slots, the documented skip rule),
//! RTP continuity, hold and resume, latching, RTCP, RTP timeout and robustness against garbage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::media::codec::Law;
use helpline::media::rtcp::{NtpClock, ReportCause};
use helpline::media::rtp;
use helpline::media::session::{
    MediaConfig, MediaEvent, MediaSession, ReorderWindow, SessionShed, FRAME, KEY_BURST, KEY_EVERY,
    RTCP_EVENT_GAP,
};
use helpline::prompts::Prompt;

const SDP_REMOTE: &str = "198.51.100.7:4000";
const NAT_SOURCE: &str = "203.0.113.9:61000";
const THIRD_PARTY: &str = "192.0.2.66:5004";

fn ntp(t0: Instant) -> NtpClock {
    NtpClock::from_unix(t0, Duration::from_secs(1_800_000_000))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(law: Law, pt: u8) -> MediaConfig {
    MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: Some(101),
        remote: Some(addr(SDP_REMOTE)),
        send: true,
        rtp_timeout: Duration::from_secs(30),
        seed: 42,
    }
}

/// A prompt of `frames` frames whose frames all differ (the first two samples of frame k encode k), so a
/// packet's payload says which frame it is.
fn prompt(name: &str, frames: usize) -> Arc<Prompt> {
    assert!(
        frames <= 24 * 24,
        "frame numbers fit the two marker samples"
    );
    let pcm: Vec<i16> = (0..frames * 160)
        .map(|i| {
            let (k, j) = ((i / 160) as i16, i % 160);
            match j {
                0 => (k % 24) * 1000 - 12000,
                1 => (k / 24) * 1000 - 12000,
                _ => ((j % 40) as i16 - 20) * 500,
            }
        })
        .collect();
    let p = Prompt::from_samples("en", name, &pcm);
    for law in [Law::Ulaw, Law::Alaw] {
        let all: std::collections::HashSet<_> = (0..frames).map(|k| p.frame(law, k)).collect();
        assert_eq!(all.len(), frames, "fixture: every frame is distinct");
    }
    Arc::new(p)
}

/// A packet we sent, with the instant the driver sent it.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    dst: SocketAddr,
    header: rtp::RtpHeader,
    len: usize,
    payload: Vec<u8>,
}

/// Drives the session like the shell does: wake at `poll_timeout`, `handle_timeout`, drain transmits
/// and events. Stops at `until`.
fn run(
    s: &mut MediaSession,
    from: Instant,
    until: Instant,
    sent: &mut Vec<Sent>,
    events: &mut Vec<(Instant, MediaEvent)>,
) {
    drive(s, from, until, Duration::ZERO, None, sent, events);
}

/// The caller's own RTP stream (one audio packet every 20 ms from `NAT_SOURCE`), for tests where the
/// caller keeps talking.
struct CallerStream {
    next_at: Instant,
    seq: u16,
}

/// [`run`] with a driver that wakes `late` after every deadline (as a busy media thread does) and,
/// with `caller`, the caller's packets arriving in between.
fn drive(
    s: &mut MediaSession,
    from: Instant,
    until: Instant,
    late: Duration,
    mut caller: Option<&mut CallerStream>,
    sent: &mut Vec<Sent>,
    events: &mut Vec<(Instant, MediaEvent)>,
) {
    let mut now = from;
    let mut buf = [0u8; 1500];
    loop {
        if let Some(c) = caller.as_deref_mut().filter(|c| c.next_at <= now) {
            s.handle_rtp(now, addr(NAT_SOURCE), &audio_packet(c.seq, 0));
            c.seq = c.seq.wrapping_add(1);
            c.next_at = now + FRAME;
        }
        s.handle_timeout(now);
        while let Some((dst, n)) = s.poll_transmit(now, &mut buf) {
            let (header, payload) = rtp::parse(&buf[..n]).expect("we emit valid rtp");
            sent.push(Sent {
                at: now,
                dst,
                header,
                len: n,
                payload: payload.to_vec(),
            });
        }
        while let Some(e) = s.poll_event() {
            events.push((now, e));
        }
        let wake = s.poll_timeout().map(|t| t + late);
        let next = match (wake, caller.as_deref().map(|c| c.next_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(t) if t <= until => now = t.max(now),
            _ => return,
        }
    }
}

/// Which frame of `p` (in `law`) a payload is.
fn frame_index(p: &Prompt, law: Law, payload: &[u8]) -> Option<usize> {
    (0..p.frame_count()).find(|&k| p.frame(law, k) == Some(payload))
}

/// The names of the prompts that reported finished, with when.
fn finished(events: &[(Instant, MediaEvent)]) -> Vec<(Instant, &str)> {
    events
        .iter()
        .filter_map(|(t, e)| match e {
            MediaEvent::PromptFinished { name } => Some((*t, name.as_str())),
            _ => None,
        })
        .collect()
}

fn audio_packet(seq: u16, pt: u8) -> Vec<u8> {
    let mut buf = [0u8; 200];
    let h = rtp::RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 9,
    };
    let n = rtp::write(&mut buf, &h, &[0xFF; 160]).unwrap();
    buf[..n].to_vec()
}

fn assert_contiguous(sent: &[Sent]) {
    for w in sent.windows(2) {
        assert_eq!(
            w[1].header.sequence,
            w[0].header.sequence.wrapping_add(1),
            "sequence +1"
        );
        assert_eq!(w[1].header.ssrc, w[0].header.ssrc);
    }
}

#[test]
fn whole_prompt_is_paced_with_right_headers() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Alaw, 8));
    s.play(t0, prompt("welcome", 50));
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(
        &mut s,
        t0,
        t0 + Duration::from_secs(2),
        &mut sent,
        &mut events,
    );

    assert_eq!(sent.len(), 50);
    for (k, p) in sent.iter().enumerate() {
        assert_eq!(
            p.at,
            t0 + FRAME * k as u32,
            "frame {k} due at start + k*20ms"
        );
        assert_eq!(p.dst, addr(SDP_REMOTE));
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.len, 12 + 160);
        assert_eq!(p.header.marker, k == 0, "marker only on the first packet");
    }
    assert_contiguous(&sent);
    for w in sent.windows(2) {
        assert_eq!(
            w[1].header.timestamp,
            w[0].header.timestamp.wrapping_add(160)
        );
    }
    let finished: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, MediaEvent::PromptFinished { .. }))
        .collect();
    assert_eq!(finished.len(), 1);
    // Finished when the last frame's 20 ms are over, i.e. 1 s after the start.
    assert_eq!(finished[0].0, t0 + Duration::from_secs(1));
    assert_eq!(
        finished[0].1,
        MediaEvent::PromptFinished {
            name: "welcome".into()
        }
    );
}

#[test]
fn seed_decides_ssrc_sequence_and_timestamp() {
    let t0 = Instant::now();
    let first = |seed| {
        let mut s = MediaSession::new(
            t0,
            MediaConfig {
                seed,
                ..config(Law::Ulaw, 0)
            },
        );
        s.play(t0, prompt("p", 1));
        let mut buf = [0u8; 200];
        let (_, n) = s.poll_transmit(t0, &mut buf).unwrap();
        rtp::parse(&buf[..n]).unwrap().0
    };
    assert_eq!(first(7), first(7));
    let (a, b) = (first(7), first(8));
    assert_ne!(
        (a.ssrc, a.sequence, a.timestamp),
        (b.ssrc, b.sequence, b.timestamp)
    );
}

#[test]
fn two_prompts_keep_sequence_and_timestamp_running_across_the_gap() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    s.play(t0, prompt("one", 10));
    run(
        &mut s,
        t0,
        t0 + Duration::from_secs(1),
        &mut sent,
        &mut events,
    );
    // 300 ms of silence after the first prompt ended (at 200 ms), then the second prompt.
    let t1 = t0 + Duration::from_millis(500);
    s.play(t1, prompt("two", 10));
    run(
        &mut s,
        t1,
        t1 + Duration::from_secs(1),
        &mut sent,
        &mut events,
    );

    assert_eq!(sent.len(), 20);
    assert_contiguous(&sent);
    let (last, next) = (&sent[9], &sent[10]);
    assert!(next.header.marker, "marker on the talkspurt after silence");
    assert_eq!(next.at, t1);
    // Last frame sampled at 180 ms, next at 500 ms: 320 ms = 2560 samples.
    assert_eq!(
        next.header.timestamp.wrapping_sub(last.header.timestamp),
        2560
    );
    assert_eq!(
        events
            .iter()
            .filter(|(_, e)| matches!(e, MediaEvent::PromptFinished { .. }))
            .count(),
        2
    );
}

#[test]
fn barge_in_then_play_continues_without_overlap_or_event() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    s.play(t0, prompt("menu", 100));
    // Run 5 frames (0..=80 ms), then the caller presses a key at 90 ms: barge-in and new prompt.
    run(
        &mut s,
        t0,
        t0 + Duration::from_millis(90),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 5);
    let t_key = t0 + Duration::from_millis(90);
    s.stop_playout(t_key);
    s.play(t_key, prompt("confirm", 3));
    run(
        &mut s,
        t_key,
        t0 + Duration::from_secs(1),
        &mut sent,
        &mut events,
    );

    assert_eq!(sent.len(), 8);
    assert_contiguous(&sent);
    let next = &sent[5];
    assert!(next.header.marker);
    // The new prompt takes the old prompt's next slot (100 ms), never earlier: no faster than real time.
    assert_eq!(next.at, t0 + Duration::from_millis(100));
    assert_eq!(
        next.header.timestamp,
        sent[4].header.timestamp.wrapping_add(160)
    );
    let names: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::PromptFinished { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        ["confirm"],
        "a stopped prompt does not report finished"
    );
}

#[test]
fn late_poll_catches_up_with_a_bounded_burst() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.play(t0, prompt("long", 100));
    let mut buf = [0u8; 1500];
    let (_, n) = s.poll_transmit(t0, &mut buf).unwrap();
    let first_ts = rtp::parse(&buf[..n]).unwrap().0.timestamp;
    // The driver stalls for 205 ms: frames 1..=10 are due.
    let late = t0 + Duration::from_millis(205);
    let mut burst = Vec::new();
    while let Some((_, n)) = s.poll_transmit(late, &mut buf) {
        burst.push(rtp::parse(&buf[..n]).unwrap().0);
    }
    assert_eq!(burst.len(), 3, "at most MAX_CATCHUP packets back to back");
    // The burst is the three most recent frames (8, 9, 10); older ones were skipped with their timestamps.
    let offsets: Vec<u32> = burst
        .iter()
        .map(|h| h.timestamp.wrapping_sub(first_ts) / 160)
        .collect();
    assert_eq!(offsets, [8, 9, 10]);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(220)));
}

#[test]
fn latches_to_nat_source_and_ignores_a_third_party() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.play(t0, prompt("p", 100));
    let mut buf = [0u8; 1500];
    assert_eq!(
        s.poll_transmit(t0, &mut buf).map(|x| x.0),
        Some(addr(SDP_REMOTE)),
        "before RTP: SDP address"
    );

    let t1 = t0 + Duration::from_millis(20);
    assert!(
        s.handle_rtp(t1, addr(NAT_SOURCE), &audio_packet(1, 0)),
        "the latching packet is accepted"
    );
    assert_eq!(
        s.poll_event(),
        Some(MediaEvent::FirstRtp {
            from: addr(NAT_SOURCE)
        })
    );
    assert_eq!(
        s.poll_transmit(t1, &mut buf).map(|x| x.0),
        Some(addr(NAT_SOURCE))
    );

    let t2 = t0 + Duration::from_millis(40);
    assert!(
        !s.handle_rtp(t2, addr(THIRD_PARTY), &audio_packet(2, 0)),
        "a third party's packet is not accepted (a bridge must not relay it)"
    );
    assert!(s.handle_rtp(t2, addr(NAT_SOURCE), &audio_packet(3, 0)));
    assert_eq!(s.poll_event(), None);
    assert_eq!(
        s.poll_transmit(t2, &mut buf).map(|x| x.0),
        Some(addr(NAT_SOURCE))
    );

    // A re-INVITE drops the latch; the next sender latches again.
    let t3 = t0 + Duration::from_millis(60);
    s.update_remote(t3, &config(Law::Ulaw, 0));
    assert!(s.handle_rtp(t3, addr(THIRD_PARTY), &audio_packet(4, 0)));
    assert_eq!(
        s.poll_event(),
        Some(MediaEvent::FirstRtp {
            from: addr(THIRD_PARTY)
        })
    );
    assert_eq!(
        s.poll_transmit(t3, &mut buf).map(|x| x.0),
        Some(addr(THIRD_PARTY))
    );
}

#[test]
fn reinvite_keeps_the_nat_latch_until_a_packet_says_otherwise() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.play(t0, prompt("p", 100));
    let mut buf = [0u8; 1500];
    s.handle_rtp(t0, addr(NAT_SOURCE), &audio_packet(1, 0));
    assert_eq!(
        s.poll_event(),
        Some(MediaEvent::FirstRtp {
            from: addr(NAT_SOURCE)
        })
    );

    // Session refresh with the same SDP address: still to the NAT source, not the private SDP one.
    let t1 = t0 + FRAME;
    s.update_remote(t1, &config(Law::Ulaw, 0));
    assert_eq!(
        s.poll_transmit(t1, &mut buf).map(|x| x.0),
        Some(addr(NAT_SOURCE))
    );
    s.handle_rtp(t1, addr(NAT_SOURCE), &audio_packet(2, 0));
    assert_eq!(s.poll_event(), None, "same source: no new FirstRtp");

    // The caller moves: new SDP address, used until its first packet arrives.
    let moved: SocketAddr = "198.51.100.8:4010".parse().unwrap();
    let t2 = t0 + FRAME * 2;
    s.update_remote(
        t2,
        &MediaConfig {
            remote: Some(moved),
            ..config(Law::Ulaw, 0)
        },
    );
    assert_eq!(s.poll_transmit(t2, &mut buf).map(|x| x.0), Some(moved));
}

#[test]
fn on_hold_nothing_is_sent_even_to_a_latched_caller() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.handle_rtp(t0, addr(NAT_SOURCE), &audio_packet(1, 0));
    let hold = MediaConfig {
        remote: None,
        ..config(Law::Ulaw, 0)
    };
    s.update_remote(t0, &hold);
    s.play(t0, prompt("p", 5));
    for i in 0..5u32 {
        let now = t0 + FRAME * i;
        s.handle_rtp(now, addr(NAT_SOURCE), &audio_packet(i as u16 + 2, 0));
        assert_eq!(s.poll_transmit(now, &mut [0u8; 1500]), None);
    }
}

#[test]
fn third_party_packets_do_not_keep_the_call_alive() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.handle_rtp(t0, addr(NAT_SOURCE), &audio_packet(1, 0));
    assert!(matches!(s.poll_event(), Some(MediaEvent::FirstRtp { .. })));
    for i in 1..=40u16 {
        s.handle_rtp(
            t0 + Duration::from_secs(u64::from(i)),
            addr(THIRD_PARTY),
            &audio_packet(i, 0),
        );
    }
    s.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(s.poll_event(), Some(MediaEvent::RtpTimeout));
}

#[test]
fn rtcp_from_a_stranger_is_counted_and_never_latches() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    // A receiver report (PT 201), on the RTCP port and multiplexed on the RTP port.
    let rr = [
        0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0,
    ];
    s.handle_rtcp(t0, &clock, addr(THIRD_PARTY), &rr);
    assert!(
        !s.handle_rtp(t0, addr(THIRD_PARTY), &rr),
        "RTCP is not accepted"
    );
    assert_eq!(s.poll_event(), None, "no latch on RTCP");
    assert_eq!(
        s.rtcp_stats(ReportCause::Received).malformed,
        1,
        "a stranger's report is ignored"
    );
    s.handle_rtp(t0, addr(NAT_SOURCE), &audio_packet(1, 0));
    assert_eq!(
        s.poll_event(),
        Some(MediaEvent::FirstRtp {
            from: addr(NAT_SOURCE)
        })
    );
}

#[test]
fn rtp_timeout_after_30s_of_silence_once_per_period() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_millis(29_999));
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(s.poll_event(), Some(MediaEvent::RtpTimeout));
    s.handle_timeout(t0 + Duration::from_secs(31));
    assert_eq!(s.poll_event(), None, "once per period");
    s.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(s.poll_event(), Some(MediaEvent::RtpTimeout));
}

#[test]
fn no_timeout_while_rtp_flows() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    // 2 minutes of caller audio, one packet every 20 ms; the shell wakes on poll_timeout as well.
    for i in 0..6000u32 {
        let now = t0 + FRAME * i;
        s.handle_rtp(now, addr(NAT_SOURCE), &audio_packet(i as u16, 0));
        s.handle_timeout(now);
    }
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        events,
        [MediaEvent::FirstRtp {
            from: addr(NAT_SOURCE)
        }]
    );
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + FRAME * 5999 + Duration::from_secs(30))
    );
}

#[test]
fn on_hold_with_no_address_a_prompt_waits_and_no_timeout_fires() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        t0,
        MediaConfig {
            remote: None,
            ..config(Law::Ulaw, 0)
        },
    );
    s.play(t0, prompt("hold-music", 10));
    assert_eq!(s.poll_timeout(), None, "nothing to wake for on hold");
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(
        &mut s,
        t0,
        t0 + Duration::from_secs(120),
        &mut sent,
        &mut events,
    );
    assert!(sent.is_empty());
    assert_eq!(
        events,
        [],
        "no PromptFinished (nobody heard it), no RtpTimeout"
    );
}

#[test]
fn garbage_never_panics() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.play(t0, prompt("p", 5));
    // Deterministic pseudo-random bytes of every length 0..300, plus crafted headers.
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let src = addr(NAT_SOURCE);
    for len in 0..300usize {
        for _ in 0..20 {
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = p.first_mut() {
                *b = (*b & 0x3F) | 0x80; // mostly version 2, so the deeper checks run
            }
            if let Some(b) = p.get_mut(1) {
                *b = [0u8, 8, 101, 13, 0x80 | 101][len % 5];
            }
            s.handle_rtp(t0, src, &p);
            s.handle_rtcp(t0, &ntp(t0), src, &p);
        }
    }
    // Audio payloads of odd sizes (0, 1, 161, 1000 bytes) and wrapped sequence numbers.
    for (i, size) in [0usize, 1, 161, 1000, 160, 80].into_iter().enumerate() {
        let mut buf = vec![0u8; 12 + size];
        let h = rtp::RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 65534u16.wrapping_add(i as u16 * 7),
            timestamp: 0,
            ssrc: 1,
        };
        let payload = vec![0x7F; size];
        rtp::write(&mut buf, &h, &payload).unwrap();
        s.handle_rtp(t0, src, &buf);
    }
    // The session still works afterwards.
    let mut out = [0u8; 1500];
    assert!(s.poll_transmit(t0, &mut out).is_some());
    // A buffer too small for a packet does not panic either.
    assert!(s.poll_transmit(t0 + FRAME, &mut [0u8; 10]).is_none());
}

// ── the audio reorder window ahead of in-band detection ──

/// Pushes (ms, seq) packets whose payload is the sequence number; returns the delivered order.
fn order(pkts: &[(u64, u16)]) -> Vec<u16> {
    let t0 = Instant::now();
    let mut r = ReorderWindow::new();
    let mut out = Vec::new();
    for &(ms, seq) in pkts {
        r.push(
            t0 + Duration::from_millis(ms),
            seq,
            &seq.to_be_bytes(),
            &mut |b: &[u8]| {
                out.push(u16::from_be_bytes([b[0], b[1]]));
            },
        );
    }
    out
}

#[test]
fn reorder_window_restores_order() {
    assert_eq!(
        order(&[(0, 10), (20, 12), (40, 11), (60, 13)]),
        [10, 11, 12, 13]
    );
    assert_eq!(
        order(&[(0, 65535), (20, 1), (40, 0), (60, 2)]),
        [65535, 0, 1, 2]
    );
}

#[test]
fn reorder_window_drops_duplicates_and_too_late() {
    assert_eq!(
        order(&[(0, 10), (20, 11), (40, 11), (60, 10), (80, 12)]),
        [10, 11, 12]
    );
}

#[test]
fn reorder_window_gives_up_on_a_lost_packet() {
    // 11 is lost: 12..=14 wait in the window until 15 arrives, then all go out in order.
    assert_eq!(order(&[(0, 10), (20, 12), (40, 13), (60, 14)]), [10]);
    assert_eq!(
        order(&[(0, 10), (20, 12), (40, 13), (60, 14), (80, 15)]),
        [10, 12, 13, 14, 15]
    );
    // A jump far ahead flushes and restarts at the new number.
    assert_eq!(
        order(&[(0, 10), (20, 12), (40, 500), (60, 501)]),
        [10, 12, 500, 501]
    );
}

#[test]
fn reorder_window_restarts_on_a_replayed_stream() {
    // Test tools replay the same capture: sequence numbers go back after a pause.
    assert_eq!(
        order(&[(0, 100), (20, 101), (400, 100), (420, 101)]),
        [100, 101, 100, 101]
    );
    // And a large backwards jump without a pause restarts too.
    assert_eq!(
        order(&[(0, 1000), (20, 1001), (40, 10), (60, 11)]),
        [1000, 1001, 10, 11]
    );
}

// ── pacing: exact slots, and the documented skip rule ──

/// Asserts `sent` is frames `indices` of `p` in `law`, one packet each: payload the frame's bytes,
/// timestamp `ts0 + 160·k` for frame k (skipped frames take their timestamps with them), sequence +1
/// per packet, one SSRC.
fn assert_frames(sent: &[Sent], p: &Prompt, law: Law, ts0: u32, indices: &[usize]) {
    let got: Vec<Option<usize>> = sent
        .iter()
        .map(|x| frame_index(p, law, &x.payload))
        .collect();
    let want: Vec<Option<usize>> = indices.iter().map(|&k| Some(k)).collect();
    assert_eq!(got, want, "frames sent, in order");
    for (x, &k) in sent.iter().zip(indices) {
        assert_eq!(
            x.header.timestamp,
            ts0.wrapping_add(160 * k as u32),
            "timestamp of frame {k}"
        );
    }
    assert_contiguous(sent);
}

#[test]
fn every_frame_of_a_prompt_goes_out_once_on_its_slot() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    // Started 7 ms after the session, off any 20 ms grid; 500 frames = 10 s.
    let start = t0 + Duration::from_millis(7);
    let p = prompt("menu", 500);
    s.play(start, p.clone());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(
        &mut s,
        start,
        start + Duration::from_secs(20),
        &mut sent,
        &mut events,
    );

    assert_eq!(sent.len(), 500, "every frame once, none skipped");
    let ts0 = sent[0].header.timestamp;
    assert_frames(&sent, &p, Law::Ulaw, ts0, &(0..500).collect::<Vec<_>>());
    for (k, x) in sent.iter().enumerate() {
        assert_eq!(
            x.at,
            start + FRAME * k as u32,
            "frame {k} at start + k·20 ms"
        );
        assert_eq!(x.header.marker, k == 0, "marker on frame 0 only");
    }
    assert_eq!(
        finished(&events),
        [(start + Duration::from_secs(10), "menu")]
    );
}

#[test]
fn a_driver_less_than_60ms_late_skips_nothing() {
    for late_us in [0u64, 1_500, 19_999, 20_000, 45_000, 59_999] {
        let late = Duration::from_micros(late_us);
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, config(Law::Alaw, 8));
        let p = prompt("menu", 100);
        s.play(t0, p.clone());
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        drive(
            &mut s,
            t0,
            t0 + Duration::from_secs(5),
            late,
            None,
            &mut sent,
            &mut events,
        );
        let ts0 = sent[0].header.timestamp;
        assert_frames(&sent, &p, Law::Alaw, ts0, &(0..100).collect::<Vec<_>>());
        for (k, x) in sent.iter().enumerate() {
            let due = t0 + FRAME * k as u32;
            assert!(
                x.at >= due && x.at - due < Duration::from_millis(60),
                "{late:?} late: frame {k} sent {:?} after its slot",
                x.at - due
            );
        }
        assert_eq!(finished(&events).len(), 1, "{late:?} late");
    }
}

#[test]
fn a_driver_exactly_60ms_late_loses_every_fourth_frame() {
    // The rule's boundary: a frame 60 ms overdue is skipped; the three after it (40, 20, 0 ms overdue)
    // go out back to back, and the next wake is again 60 ms after the next slot.
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let p = prompt("menu", 20);
    s.play(t0, p.clone());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    drive(
        &mut s,
        t0,
        t0 + Duration::from_secs(2),
        Duration::from_millis(60),
        None,
        &mut sent,
        &mut events,
    );
    let first_ts = sent[0].header.timestamp;
    // Frame 0 is sent at once by the first poll at t0; frame 1's wake is 60 ms after its slot.
    let kept = [0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19];
    assert_frames(&sent, &p, Law::Ulaw, first_ts, &kept);
}

/// Plays a 100-frame prompt on time to frame 10 (sent at 200 ms), lets the clock jump to `t0 + jump`,
/// then drives on time again. Returns the frames sent after frame 10, and the finish events.
fn jump_and_resume(jump: Duration) -> (Vec<usize>, Vec<(Duration, String)>) {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let p = prompt("menu", 100);
    s.play(t0, p.clone());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(
        &mut s,
        t0,
        t0 + Duration::from_millis(200),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 11);
    run(
        &mut s,
        t0 + jump,
        t0 + Duration::from_secs(5),
        &mut sent,
        &mut events,
    );
    let ts0 = sent[0].header.timestamp;
    let indices: Vec<usize> = sent
        .iter()
        .map(|x| frame_index(&p, Law::Ulaw, &x.payload).expect("a frame of the prompt"))
        .collect();
    assert_frames(&sent, &p, Law::Ulaw, ts0, &indices);
    // After the jump every packet still leaves at (or, in the catch-up burst, after) its own slot.
    for (x, &k) in sent.iter().zip(&indices) {
        assert!(x.at >= t0 + FRAME * k as u32);
    }
    let fin = finished(&events)
        .into_iter()
        .map(|(t, n)| (t - t0, n.to_string()))
        .collect();
    (indices[11..].to_vec(), fin)
}

#[test]
fn a_clock_jump_skips_exactly_the_frames_60ms_or_more_overdue() {
    let from = |a: usize| (a..100).collect::<Vec<_>>();
    let done = vec![(Duration::from_secs(2), "menu".to_string())];

    // Frame 11 (due 220 ms) is 59.999 ms overdue: nothing skipped, 11, 12, 13 back to back.
    let (after, fin) = jump_and_resume(Duration::from_micros(279_999));
    assert_eq!(after, from(11));
    assert_eq!(fin, done);

    // Exactly 60 ms overdue: frame 11 is skipped; 12, 13, 14 (40, 20, 0 ms overdue) go out.
    let (after, fin) = jump_and_resume(Duration::from_millis(280));
    assert_eq!(after, from(12));
    assert_eq!(fin, done);

    // A 805 ms stall (to 1005 ms): frames due at or before 945 ms (11..=47) are skipped; 48, 49, 50
    // are the burst, and 51 follows on its slot. Pacing stays anchored: the end is still at 2 s.
    let (after, fin) = jump_and_resume(Duration::from_millis(1005));
    assert_eq!(after, from(48));
    assert_eq!(fin, done);
}

// ── hold and resume ──

/// `a=sendonly` from the caller (our answer is `recvonly`): real address, but we may not send.
fn sendonly_hold() -> MediaConfig {
    MediaConfig {
        send: false,
        ..config(Law::Ulaw, 0)
    }
}

/// RFC 2543 hold: `c=0.0.0.0`, nowhere to send.
fn no_address_hold() -> MediaConfig {
    MediaConfig {
        remote: None,
        ..config(Law::Ulaw, 0)
    }
}

/// A 100-frame menu plays for 990 ms (frames 0..=49), the caller holds with `hold` for 2 s while still
/// sending RTP, then resumes 7 ms later; checks nothing went out on hold and the menu went on with
/// frame 50.
fn hold_and_resume(hold: MediaConfig) {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let p = prompt("menu", 100);
    let mut caller = CallerStream {
        next_at: t0,
        seq: 1,
    };
    s.play(t0, p.clone());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    let t_hold = t0 + Duration::from_millis(990);
    let z = Duration::ZERO;
    drive(
        &mut s,
        t0,
        t_hold,
        z,
        Some(&mut caller),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 50);
    assert!(sent.iter().all(|x| x.dst == addr(NAT_SOURCE)), "latched");

    s.update_remote(t_hold, &hold);
    let t_end = t_hold + Duration::from_secs(2);
    drive(
        &mut s,
        t_hold,
        t_end,
        z,
        Some(&mut caller),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 50, "{hold:?}: not one packet in 2 s on hold");
    assert_eq!(
        finished(&events),
        [],
        "{hold:?}: the menu would have ended at 2 s; on hold it has not"
    );

    let t_res = t_end + Duration::from_millis(7);
    s.update_remote(t_res, &config(Law::Ulaw, 0));
    drive(
        &mut s,
        t_res,
        t_res + Duration::from_secs(3),
        z,
        Some(&mut caller),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 100, "{hold:?}: the rest of the menu, once");
    let ts0 = sent[0].header.timestamp;
    let (before, after) = sent.split_at(50);
    assert_frames(before, &p, Law::Ulaw, ts0, &(0..50).collect::<Vec<_>>());
    // Frames 50..=99 in order from the resume instant, marker on the first, sequence continuing.
    let held_ts = {
        // Frame 50's slot was 1000 ms; it goes out at t_res: the timestamp runs on with wall time.
        let elapsed = t_res - (t0 + Duration::from_millis(1000));
        (elapsed.as_micros() * 8 / 1000) as u32
    };
    assert_frames(
        after,
        &p,
        Law::Ulaw,
        ts0.wrapping_add(held_ts),
        &(50..100).collect::<Vec<_>>(),
    );
    assert_contiguous(&sent);
    for (i, x) in after.iter().enumerate() {
        assert_eq!(
            x.at,
            t_res + FRAME * i as u32,
            "{hold:?}: paced from the resume"
        );
        assert_eq!(
            x.header.marker,
            i == 0,
            "{hold:?}: marker on the first after resume"
        );
        // Back from `c=0.0.0.0` the SDP address is new again: used until the caller's next packet
        // (at t_end + 20 ms) re-latches; a sendonly hold never dropped the latch.
        let relatching = hold.remote.is_none() && x.at < t_end + FRAME;
        let want = if relatching { SDP_REMOTE } else { NAT_SOURCE };
        assert_eq!(x.dst, addr(want), "{hold:?}: frame {}", 50 + i);
    }
    assert_eq!(
        finished(&events),
        [(t_res + Duration::from_secs(1), "menu")]
    );
}

#[test]
fn sendonly_hold_sends_nothing_and_resume_continues_at_the_next_frame() {
    hold_and_resume(sendonly_hold());
}

#[test]
fn no_address_hold_sends_nothing_and_resume_continues_at_the_next_frame() {
    hold_and_resume(no_address_hold());
}

#[test]
fn a_prompt_started_on_hold_waits_for_the_resume() {
    for hold in [sendonly_hold(), no_address_hold()] {
        // The INVITE itself was a hold offer; the call plays its welcome anyway.
        let t0 = Instant::now();
        let mut s = MediaSession::new(t0, hold.clone());
        let p = prompt("welcome", 30);
        s.play(t0 + Duration::from_millis(100), p.clone());
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        let t_res = t0 + Duration::from_millis(10_003);
        run(&mut s, t0, t_res, &mut sent, &mut events);
        assert!(sent.is_empty(), "{hold:?}");
        assert_eq!(finished(&events), [], "{hold:?}");

        s.update_remote(t_res, &config(Law::Ulaw, 0));
        run(
            &mut s,
            t_res,
            t_res + Duration::from_secs(2),
            &mut sent,
            &mut events,
        );
        let ts0 = sent[0].header.timestamp;
        assert_frames(&sent, &p, Law::Ulaw, ts0, &(0..30).collect::<Vec<_>>());
        for (k, x) in sent.iter().enumerate() {
            assert_eq!(x.at, t_res + FRAME * k as u32, "{hold:?}: frame {k}");
            assert_eq!(x.header.marker, k == 0);
        }
        assert_eq!(
            finished(&events),
            [(t_res + Duration::from_millis(600), "welcome")]
        );
    }
}

#[test]
fn a_prompt_queued_during_hold_keeps_the_timestamp_on_wall_time() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    s.play(t0, prompt("one", 10));
    run(
        &mut s,
        t0,
        t0 + Duration::from_millis(500),
        &mut sent,
        &mut events,
    );
    s.update_remote(t0 + Duration::from_millis(500), &sendonly_hold());
    let two = prompt("two", 10);
    s.play(t0 + Duration::from_millis(800), two.clone());
    run(
        &mut s,
        t0 + Duration::from_millis(800),
        t0 + Duration::from_millis(1500),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 10, "only `one`, before the hold");
    let t_res = t0 + Duration::from_millis(1500);
    s.update_remote(t_res, &config(Law::Ulaw, 0));
    run(
        &mut s,
        t_res,
        t_res + Duration::from_secs(1),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 20);
    assert_contiguous(&sent);
    let next = &sent[10];
    assert_eq!(next.at, t_res);
    assert!(next.header.marker);
    assert_eq!(frame_index(&two, Law::Ulaw, &next.payload), Some(0));
    // `one`'s last frame was sampled at 180 ms, `two`'s first at 1500 ms: 1320 ms = 10560 samples.
    assert_eq!(
        next.header.timestamp.wrapping_sub(sent[9].header.timestamp),
        10_560
    );
    let names: Vec<_> = finished(&events).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn rtp_timeout_still_runs_while_held_sendonly() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.play(t0, prompt("menu", 100));
    let t_hold = t0 + Duration::from_millis(90);
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(&mut s, t0, t_hold, &mut sent, &mut events);
    s.update_remote(t_hold, &sendonly_hold());
    // Paused: the only deadline is the RTP timeout, counted from the re-INVITE.
    assert_eq!(s.poll_timeout(), Some(t_hold + Duration::from_secs(30)));
    run(
        &mut s,
        t_hold,
        t_hold + Duration::from_secs(40),
        &mut sent,
        &mut events,
    );
    assert_eq!(sent.len(), 5, "nothing after the hold");
    let evs: Vec<_> = events
        .iter()
        .map(|(t, e)| (*t - t_hold, e.clone()))
        .collect();
    assert_eq!(
        evs,
        [(Duration::from_secs(30), MediaEvent::RtpTimeout)],
        "a silent held caller still times out (the call decides); the menu does not finish"
    );
}

#[test]
fn rtcp_reports_go_to_the_latched_source_port_plus_one_and_the_peers_come_back_as_events() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let interval = Duration::from_millis(1000);
    let mut s = MediaSession::with_rtcp_interval(t0, config(Law::Ulaw, 0), interval);
    let mut buf = [0u8; 1500];
    let unanswered = MediaConfig {
        remote: None,
        ..config(Law::Ulaw, 0)
    };
    let silent = MediaSession::with_rtcp_interval(t0, unanswered, interval);
    assert_eq!(
        silent.poll_rtcp_timeout(),
        None,
        "no report before a remote is known"
    );
    let mut seq = 0u16;
    let mut now = t0;
    let mut ssrc = None;
    s.play(now, prompt("welcome", 200));
    let mut report = None;
    // 20 ms pacing both ways until the first report.
    while report.is_none() {
        s.handle_rtp(now, addr(NAT_SOURCE), &audio_packet(seq, 0));
        seq += 1;
        while let Some((_, n)) = s.poll_transmit(now, &mut buf) {
            ssrc = Some(u32::from_be_bytes(buf[8..12].try_into().unwrap()));
            assert!(n > 12);
        }
        if let Some((dst, n)) = s.poll_rtcp(now, &clock, &mut buf) {
            report = Some((now, dst, buf[..n].to_vec()));
        }
        now += FRAME;
    }
    let (at, dst, packet) = report.unwrap();
    let first = at - t0;
    assert!(
        first >= interval / 4 && first <= interval * 3 / 4,
        "{first:?}"
    );
    let nat = addr(NAT_SOURCE);
    assert_eq!(
        dst,
        SocketAddr::new(nat.ip(), nat.port() + 1),
        "RTP source's port + 1"
    );
    assert_eq!(packet[1], 200, "an SR while prompts play");
    assert_eq!(
        Some(u32::from_be_bytes(packet[4..8].try_into().unwrap())),
        ssrc
    );
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let stats = events
        .iter()
        .find_map(|e| match e {
            MediaEvent::Rtcp(st) => Some(*st),
            _ => None,
        })
        .expect("an Rtcp event for the report sent");
    assert_eq!(stats.cause, ReportCause::Sent);
    assert_eq!(stats.packets_received, u64::from(seq));
    assert_eq!((stats.lost, stats.reports_sent), (0, 1));

    // The peer's RR from another port of its IP: read, and its source becomes our RTCP destination.
    let peer_rtcp = SocketAddr::new(nat.ip(), 61_555);
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 9];
    rr.extend_from_slice(&ssrc.unwrap().to_be_bytes());
    rr.extend_from_slice(&[64, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.handle_rtcp(now, &clock, peer_rtcp, &rr);
    let Some(MediaEvent::Rtcp(got)) = s.poll_event() else {
        panic!("an Rtcp event for the report received");
    };
    assert_eq!(got.cause, ReportCause::Received);
    let remote = got.remote.expect("their view of our stream");
    assert_eq!(
        (remote.fraction_lost, remote.cumulative_lost, remote.jitter),
        (64, 3, 40)
    );
    let next = s.poll_rtcp_timeout().expect("scheduled");
    let (dst, _) = s.poll_rtcp(next, &clock, &mut buf).expect("due");
    assert_eq!(dst, peer_rtcp, "symmetric RTCP");
    // Closing: the last report carries a BYE.
    let (_, n) = s.bye(next, &clock, &mut buf).expect("a bye");
    assert!(
        buf[..n].windows(2).any(|w| w == [0x81, 203]),
        "{:02x?}",
        &buf[..n]
    );
}

/// An RFC 4733 packet: `key` (event code) starting at `timestamp`, a start packet (not the end).
fn key_packet(seq: u16, timestamp: u32, key: u8) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let h = rtp::RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: seq,
        timestamp,
        ssrc: 9,
    };
    let n = rtp::write(&mut buf, &h, &[key, 0x0a, 0x00, 0xa0]).unwrap();
    buf[..n].to_vec()
}

fn keys(s: &mut MediaSession) -> usize {
    std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, MediaEvent::Digit(_)))
        .count()
}

#[test]
fn a_flood_of_rfc4733_keys_is_cut_to_the_key_rate_and_a_dial_string_is_not() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    // 200 distinct events 5 ms apart: a new key per packet, 200 a second.
    for i in 0..200u16 {
        let at = t0 + Duration::from_millis(5 * u64::from(i));
        s.handle_rtp(at, addr(NAT_SOURCE), &key_packet(i, u32::from(i) * 800, 1));
    }
    // The burst, then one per KEY_EVERY over the 995 ms the flood lasted.
    let reported = keys(&mut s);
    let expected = KEY_BURST as usize + (995 / KEY_EVERY.as_millis()) as usize;
    assert_eq!(reported, expected);
    assert_eq!(s.take_shed().keys_over_rate, 200 - expected as u64);
    assert_eq!(
        s.take_shed(),
        SessionShed::default(),
        "the counts start again"
    );

    // After a pause, a dial string at Q.24's fastest rate (one key per 80 ms) loses nothing.
    let t1 = t0 + Duration::from_secs(3);
    for i in 0..40u16 {
        let at = t1 + Duration::from_millis(80 * u64::from(i));
        let seq = 1000 + i;
        s.handle_rtp(
            at,
            addr(NAT_SOURCE),
            &key_packet(seq, u32::from(seq) * 800, 2),
        );
    }
    assert_eq!(keys(&mut s), 40);
    assert_eq!(s.take_shed().keys_over_rate, 0);
}

#[test]
fn a_flood_of_rtcp_reports_yields_one_statistics_event_per_gap() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    s.handle_rtp(t0, addr(NAT_SOURCE), &audio_packet(1, 0));
    assert!(matches!(s.poll_event(), Some(MediaEvent::FirstRtp { .. })));
    let rr = [
        0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0,
    ];
    let received = |s: &mut MediaSession| {
        std::iter::from_fn(|| s.poll_event())
            .filter(|e| matches!(e, MediaEvent::Rtcp(r) if r.cause == ReportCause::Received))
            .count()
    };
    // 100 reports in half a second from the peer's address.
    for i in 0..100u64 {
        s.handle_rtcp(
            t0 + Duration::from_millis(5 * i),
            &clock,
            addr(NAT_SOURCE),
            &rr,
        );
    }
    assert_eq!(received(&mut s), 1);
    assert_eq!(s.take_shed().reports_folded, 99);
    // Every one of them was read: the statistics count them all.
    assert_eq!(s.rtcp_stats(ReportCause::Received).reports_received, 100);
    // A gap later, the next report is an event again.
    s.handle_rtcp(t0 + RTCP_EVENT_GAP, &clock, addr(NAT_SOURCE), &rr);
    assert_eq!(received(&mut s), 1);
    assert_eq!(s.take_shed().reports_folded, 0);
}

#[test]
fn reorder_window_keeps_held_payloads_whole_when_longer_frames_follow() {
    // 20 ms frames are held after a gap, then a 60 ms one (a new ptime) is held beside them: every
    // payload comes out whole and in order once the gap closes.
    let t0 = Instant::now();
    let mut r = ReorderWindow::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let frame = |seq: u16, len: usize| vec![seq as u8; len];
    let pkts = [(10u16, 160usize), (12, 160), (13, 480), (11, 160)];
    for (i, &(seq, len)) in pkts.iter().enumerate() {
        r.push(
            t0 + Duration::from_millis(20 * i as u64),
            seq,
            &frame(seq, len),
            &mut |b: &[u8]| out.push(b.to_vec()),
        );
    }
    assert_eq!(
        out,
        [
            frame(10, 160),
            frame(11, 160),
            frame(12, 160),
            frame(13, 480)
        ]
    );
}
