//! `MediaSession` on a simulated clock: paced prompt playout, RTP continuity, latching, RTCP, RTP
//! timeout and robustness against garbage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::media::codec::Law;
use helpline::media::rtp;
use helpline::media::session::{MediaConfig, MediaEvent, MediaSession, ReorderWindow, FRAME};
use helpline::prompts::Prompt;

const SDP_REMOTE: &str = "198.51.100.7:4000";
const NAT_SOURCE: &str = "203.0.113.9:61000";
const THIRD_PARTY: &str = "192.0.2.66:5004";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(law: Law, pt: u8) -> MediaConfig {
    MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: Some(101),
        remote: Some(addr(SDP_REMOTE)),
        rtp_timeout: Duration::from_secs(30),
        seed: 42,
    }
}

fn prompt(name: &str, frames: usize) -> Arc<Prompt> {
    let pcm: Vec<i16> = (0..frames * 160)
        .map(|i| ((i % 40) as i16 - 20) * 500)
        .collect();
    Arc::new(Prompt::from_samples("en", name, &pcm))
}

/// A packet we sent, with the instant the driver sent it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    dst: SocketAddr,
    header: rtp::RtpHeader,
    len: usize,
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
    let mut now = from;
    let mut buf = [0u8; 1500];
    loop {
        s.handle_timeout(now);
        while let Some((dst, n)) = s.poll_transmit(now, &mut buf) {
            let (header, _) = rtp::parse(&buf[..n]).expect("we emit valid rtp");
            sent.push(Sent {
                at: now,
                dst,
                header,
                len: n,
            });
        }
        while let Some(e) = s.poll_event() {
            events.push((now, e));
        }
        match s.poll_timeout() {
            Some(t) if t <= until => now = t.max(now),
            _ => return,
        }
    }
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
    let (last, next) = (sent[9], sent[10]);
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
    let next = sent[5];
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
    s.handle_rtp(t1, addr(NAT_SOURCE), &audio_packet(1, 0));
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
    s.handle_rtp(t2, addr(THIRD_PARTY), &audio_packet(2, 0));
    assert_eq!(s.poll_event(), None);
    assert_eq!(
        s.poll_transmit(t2, &mut buf).map(|x| x.0),
        Some(addr(NAT_SOURCE))
    );

    // A re-INVITE drops the latch; the next sender latches again.
    let t3 = t0 + Duration::from_millis(60);
    s.update_remote(t3, &config(Law::Ulaw, 0));
    s.handle_rtp(t3, addr(THIRD_PARTY), &audio_packet(3, 0));
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
fn rtcp_is_accepted_and_ignored() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, config(Law::Ulaw, 0));
    // A receiver report (PT 201), on the RTCP port and multiplexed on the RTP port.
    let rr = [
        0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0,
    ];
    s.handle_rtcp(t0, addr(THIRD_PARTY), &rr);
    s.handle_rtp(t0, addr(THIRD_PARTY), &rr);
    assert_eq!(s.poll_event(), None, "no latch on RTCP");
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
fn on_hold_prompt_still_finishes_without_sending_and_no_timeout() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(
        t0,
        MediaConfig {
            remote: None,
            ..config(Law::Ulaw, 0)
        },
    );
    s.play(t0, prompt("hold-music", 10));
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    run(
        &mut s,
        t0,
        t0 + Duration::from_secs(120),
        &mut sent,
        &mut events,
    );
    assert!(sent.is_empty());
    let evs: Vec<_> = events.into_iter().map(|(t, e)| (t - t0, e)).collect();
    assert_eq!(
        evs,
        [(
            Duration::from_millis(200),
            MediaEvent::PromptFinished {
                name: "hold-music".into()
            }
        )]
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
            s.handle_rtcp(t0, src, &p);
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
