//! RFC 4733 telephone-event conformance: one report per key press, whatever the network does to the
//! packets, with packets shaped exactly like sip-tester's `dtmf_2833_*.pcap` captures; and the
//! `DigitMerger` that reports a key once when it also arrives by SIP INFO or in-band.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpline::media::codec::Law;
use helpline::media::dtmf::rfc4733::Rfc4733Detector;
use helpline::media::dtmf::{DetectedDigit, DigitMerger, DigitMethod};
use helpline::media::session::{MediaConfig, MediaEvent, MediaSession};

/// One packet of a capture: (ms after capture start, sequence, end bit, duration).
type CapturePacket = (u64, u16, bool, u16);

/// The packet train of `dtmf_2833_8.pcap`: seq 8253..=8260, all with timestamp 60800, updates every
/// 20 ms, the end packet (duration 2240) sent three times within 0.2 ms.
const CAPTURE_8: [CapturePacket; 10] = [
    (0, 8253, false, 0),
    (20, 8254, false, 320),
    (40, 8255, false, 640),
    (60, 8256, false, 960),
    (80, 8257, false, 1280),
    (100, 8258, false, 1600),
    (120, 8259, false, 1920),
    (140, 8260, true, 2240),
    (140, 8260, true, 2240),
    (140, 8260, true, 2240),
];
const CAPTURE_TS: u32 = 60800;

fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x8a } else { 0x0a }, d[0], d[1]]
}

/// A full RTP packet (PT 101, SSRC of the capture), marker on the first packet as in the capture.
fn rtp_packet(seq: u16, ts: u32, marker: bool, event: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut p = vec![0x80, if marker { 0xe5 } else { 0x65 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0e05_384eu32.to_be_bytes());
    p.extend_from_slice(&payload(event, end, duration));
    p
}

fn feed(
    det: &mut Rfc4733Detector,
    t: Instant,
    ts: u32,
    event: u8,
    pkts: &[CapturePacket],
) -> String {
    pkts.iter()
        .filter_map(|&(ms, _, end, dur)| {
            det.handle(t + Duration::from_millis(ms), ts, &payload(event, end, dur))
        })
        .collect()
}

#[test]
fn full_press_is_one_key() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    assert_eq!(feed(&mut det, t0, CAPTURE_TS, 8, &CAPTURE_8), "8");
}

#[test]
fn lost_start_packet_still_reports_once() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    assert_eq!(feed(&mut det, t0, CAPTURE_TS, 8, &CAPTURE_8[2..]), "8");
}

#[test]
fn only_the_three_end_packets() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    assert_eq!(feed(&mut det, t0, CAPTURE_TS, 8, &CAPTURE_8[7..]), "8");
}

#[test]
fn duplicated_packets_are_one_key() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    let doubled: Vec<_> = CAPTURE_8.iter().flat_map(|&p| [p, p]).collect();
    assert_eq!(feed(&mut det, t0, CAPTURE_TS, 8, &doubled), "8");
}

#[test]
fn reordered_packets_are_one_key() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    let order = [1, 0, 3, 2, 7, 4, 5, 8, 6, 9];
    let shuffled: Vec<_> = order.iter().map(|&i| CAPTURE_8[i]).collect();
    assert_eq!(feed(&mut det, t0, CAPTURE_TS, 8, &shuffled), "8");
}

#[test]
fn two_keys_in_a_row_even_with_a_late_packet_of_the_first() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    let mut out = feed(&mut det, t0, 1000, 1, &CAPTURE_8);
    let t1 = t0 + Duration::from_millis(200);
    out += &feed(&mut det, t1, 3000, 2, &CAPTURE_8[..3]);
    // A straggler of key 1 (its last end retransmission) arrives after key 2 started: absorbed.
    out += &det
        .handle(
            t1 + Duration::from_millis(45),
            1000,
            &payload(1, true, 2240),
        )
        .map(String::from)
        .unwrap_or_default();
    out += &feed(&mut det, t1, 3000, 2, &CAPTURE_8[3..]);
    assert_eq!(out, "12");
}

#[test]
fn same_timestamp_capture_replayed_is_two_presses() {
    // sipp sends "88" by playing dtmf_2833_8.pcap twice: same timestamp, same sequence numbers.
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    let mut out = feed(&mut det, t0, CAPTURE_TS, 8, &CAPTURE_8);
    // Replayed 500 ms after the first started (360 ms after its end packets).
    out += &feed(
        &mut det,
        t0 + Duration::from_millis(500),
        CAPTURE_TS,
        8,
        &CAPTURE_8,
    );
    assert_eq!(out, "88");
}

#[test]
fn four_replays_make_8888_and_late_end_retransmits_do_not_add() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    let mut out = String::new();
    for i in 0..4 {
        // sipp scenarios pause between plays; 600 ms apart leaves > 250 ms of quiet after each press.
        let start = t0 + Duration::from_millis(600 * i);
        out += &feed(&mut det, start, CAPTURE_TS, 8, &CAPTURE_8);
        // A jittered end retransmission 100 ms behind: still the same press.
        out += &feed(
            &mut det,
            start + Duration::from_millis(100),
            CAPTURE_TS,
            8,
            &CAPTURE_8[9..],
        );
    }
    assert_eq!(out, "8888");
}

#[test]
fn long_key_with_many_updates_is_one_key() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    // 3 s press, update every 50 ms (duration grows by 400), with a 300 ms hole from lost updates.
    let mut pkts: Vec<CapturePacket> = (0..60u16)
        .filter(|i| !(20..26).contains(i))
        .map(|i| (u64::from(i) * 50, i, false, i * 400))
        .collect();
    pkts.extend([(3000, 60, true, 24000); 3]);
    assert_eq!(feed(&mut det, t0, 5000, 5, &pkts), "5");
}

#[test]
fn non_dtmf_events_and_short_payloads_report_nothing() {
    let t0 = Instant::now();
    let mut det = Rfc4733Detector::new();
    assert_eq!(det.handle(t0, 1, &payload(16, false, 0)), None); // flash
    assert_eq!(det.handle(t0, 2, &[5, 0x0a]), None);
}

#[test]
fn session_reports_replayed_captures_and_stops_inband_listening() {
    let t0 = Instant::now();
    let caller: SocketAddr = "192.0.2.10:49176".parse().unwrap();
    let cfg = MediaConfig {
        law: Law::Ulaw,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        remote: Some(caller),
        send: true,
        rtp_timeout: Duration::from_secs(30),
        seed: 1,
    };
    let mut s = MediaSession::new(t0, cfg);
    for rep in 0..2u64 {
        for (i, &(ms, seq, end, dur)) in CAPTURE_8.iter().enumerate() {
            let at = t0 + Duration::from_millis(rep * 600 + ms);
            s.handle_rtp(
                at,
                caller,
                &rtp_packet(seq, CAPTURE_TS, i == 0, 8, end, dur),
            );
        }
    }
    let digits: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            MediaEvent::Digit(d) => Some((d.digit, d.method)),
            _ => None,
        })
        .collect();
    assert_eq!(
        digits,
        vec![('8', DigitMethod::Rfc4733), ('8', DigitMethod::Rfc4733)]
    );
}

// ── DigitMerger: the same key by two methods ──

fn d(digit: char, method: DigitMethod, at: Instant) -> DetectedDigit {
    DetectedDigit { digit, method, at }
}

#[test]
fn same_key_by_two_methods_within_window_is_reported_once() {
    let t0 = Instant::now();
    let mut m = DigitMerger::new();
    assert!(m.handle(t0, d('5', DigitMethod::Rfc4733, t0)).is_some());
    let t1 = t0 + Duration::from_millis(40);
    assert_eq!(m.handle(t1, d('5', DigitMethod::Info, t1)), None);
}

#[test]
fn different_keys_both_pass() {
    let t0 = Instant::now();
    let mut m = DigitMerger::new();
    assert!(m.handle(t0, d('5', DigitMethod::Rfc4733, t0)).is_some());
    let t1 = t0 + Duration::from_millis(40);
    assert_eq!(
        m.handle(t1, d('6', DigitMethod::Info, t1)),
        Some(d('6', DigitMethod::Info, t1))
    );
}

#[test]
fn same_key_same_method_passes_and_late_twin_passes() {
    let t0 = Instant::now();
    let mut m = DigitMerger::new();
    let t1 = t0 + Duration::from_millis(120);
    assert!(m.handle(t0, d('5', DigitMethod::Rfc4733, t0)).is_some());
    assert!(m.handle(t1, d('5', DigitMethod::Rfc4733, t1)).is_some());
    // 250 ms after the second RFC 4733 press: outside the window, so a separate press.
    let t2 = t1 + Duration::from_millis(250);
    assert!(m.handle(t2, d('5', DigitMethod::Info, t2)).is_some());
}

#[test]
fn two_presses_by_two_methods_give_two_reports() {
    let t0 = Instant::now();
    let mut m = DigitMerger::new();
    let ms = |n| t0 + Duration::from_millis(n);
    let out: Vec<_> = [
        (0, DigitMethod::Rfc4733),
        (20, DigitMethod::Info),
        (150, DigitMethod::Rfc4733),
        (170, DigitMethod::Info),
    ]
    .into_iter()
    .filter_map(|(t, method)| m.handle(ms(t), d('5', method, ms(t))))
    .collect();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|x| x.method == DigitMethod::Rfc4733));
}

#[test]
fn twin_reaching_the_merger_late_is_still_merged() {
    // INFO and RFC 4733 detected in the same millisecond, but the RTP copy reaches the merger 300 ms later
    // because the thread carrying it ran late: still one press.
    let t0 = Instant::now();
    let mut m = DigitMerger::new();
    assert!(m.handle(t0, d('5', DigitMethod::Info, t0)).is_some());
    let late = t0 + Duration::from_millis(300);
    assert_eq!(m.handle(late, d('5', DigitMethod::Rfc4733, t0)), None);
}
