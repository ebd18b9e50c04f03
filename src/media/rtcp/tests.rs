//! Tests of the RTCP statistics, schedule and wire format on a simulated clock.
use super::*;

const OURS: u32 = 0x1111_1111;
const THEIRS: u32 = 0x2222_2222;

fn rtp(seq: u16, ts: u32) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: ts,
        ssrc: THEIRS,
    }
}

fn ntp(t0: Instant) -> NtpClock {
    NtpClock::from_unix(t0, Duration::from_secs(1_800_000_000))
}

/// Feeds `seqs` as audio packets 20 ms apart (timestamps 160 apart, arrivals on time).
fn feed(r: &mut Rtcp, t0: Instant, seqs: impl IntoIterator<Item = u16>) {
    for (i, seq) in seqs.into_iter().enumerate() {
        let at = t0 + Duration::from_millis(20 * i as u64);
        r.on_rtp_received(at, &rtp(seq, 1000 + 160 * i as u32), true);
    }
}

#[test]
fn a_gap_is_exact_loss_and_fraction() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    feed(&mut r, t0, (100..110).filter(|s| *s != 103 && *s != 104));
    let s = r.stats(ReportCause::Sent, OURS);
    assert_eq!((s.packets_received, s.lost), (8, 2));
    let rx = r.receiver.as_mut().expect("a source");
    assert_eq!(rx.extended_max(), 109);
    assert_eq!(rx.expected(), 10);
    // 2 of 10 lost in the interval: 2·256/10 = 51; the next interval starts clean.
    assert_eq!(rx.take_fraction_lost(), 51);
    assert_eq!(rx.take_fraction_lost(), 0);
}

#[test]
fn sequence_wraparound_counts_a_cycle_and_keeps_loss_exact() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    let seqs = (65530..=65535u16)
        .chain(0..=5)
        .filter(|s| *s != 65534 && *s != 2);
    feed(&mut r, t0, seqs);
    let rx = r.receiver.as_ref().expect("a source");
    assert_eq!(rx.extended_max(), 65536 + 5);
    assert_eq!(rx.expected(), 12);
    assert_eq!(rx.lost(), 2);
}

#[test]
fn late_and_duplicate_packets_do_not_move_the_highest_number() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    feed(&mut r, t0, [10, 12, 11, 12]);
    let rx = r.receiver.as_ref().expect("a source");
    assert_eq!(rx.extended_max(), 12);
    // Three expected, four received (one duplicate): A.3 says −1.
    assert_eq!(rx.lost(), -1);
}

#[test]
fn a_huge_jump_is_a_restart_only_when_the_next_packet_follows_it() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    feed(&mut r, t0, [1, 2, 3, 30_000]);
    let rx = r.receiver.as_ref().expect("a source");
    assert_eq!(rx.extended_max(), 3, "a lone jump is set aside");
    feed(&mut r, t0, [30_001, 30_002]);
    let rx = r.receiver.as_ref().expect("a source");
    assert_eq!((rx.extended_max(), rx.lost()), (30_002, 0));
}

#[test]
fn jitter_follows_rfc3550_a8_on_a_known_arrival_pattern() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    // On time: transit constant, jitter 0.
    feed(&mut r, t0, 0..10);
    assert_eq!(r.receiver.as_ref().map(ReceiverStats::jitter), Some(0));
    // Packet 10 arrives 10 ms (80 units) late, packet 11 on time: |D| = 80 twice.
    let late = t0 + Duration::from_millis(200 + 10);
    r.on_rtp_received(late, &rtp(10, 1000 + 1600), true);
    let on_time = t0 + Duration::from_millis(220);
    r.on_rtp_received(on_time, &rtp(11, 1000 + 1760), true);
    // J16: 0 + 80 − 0 = 80, then 80 + 80 − ((80 + 8) >> 4) = 155; J = 155 >> 4 = 9
    // (the float form gives 80/16 = 5, then 5 + 75/16 = 9.69).
    assert_eq!(r.receiver.as_ref().map(ReceiverStats::jitter), Some(9));
    // Telephone-event packets (one timestamp per event) do not count.
    let t = t0 + Duration::from_millis(500);
    r.on_rtp_received(t, &rtp(12, 1), false);
    assert_eq!(r.stats(ReportCause::Sent, OURS).jitter, 9);
}

#[test]
fn steady_jitter_converges_to_the_mean_deviation() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    // Every other packet 5 ms (40 units) late: |D| = 40 each time, so J converges to 40.
    for i in 0..400u32 {
        let late = if i % 2 == 1 { 5 } else { 0 };
        let at = t0 + Duration::from_millis(u64::from(20 * i + late));
        r.on_rtp_received(at, &rtp(i as u16, 160 * i), true);
    }
    let j = r.stats(ReportCause::Sent, OURS).jitter;
    assert!((38..=40).contains(&j), "jitter {j}");
}

#[test]
fn reports_are_scheduled_from_the_first_media_and_randomised() {
    let t0 = Instant::now();
    let interval = Duration::from_secs(5);
    let mut r = Rtcp::new(t0, interval, 7);
    assert_eq!(r.poll_timeout(), None, "nothing before media");
    let start = t0 + Duration::from_secs(1);
    r.on_rtp_sent(start, 0, 160);
    let first = r.poll_timeout().expect("scheduled") - start;
    assert!(
        first >= interval / 4 && first < interval * 3 / 4,
        "{first:?}"
    );
    let clock = ntp(t0);
    let mut now = start + first;
    let mut gaps = Vec::new();
    let mut buf = [0u8; 256];
    for _ in 0..50 {
        assert!(r.due(now));
        r.write_report(now, &clock, OURS, false, &mut buf)
            .expect("fits");
        let next = r.poll_timeout().expect("rescheduled");
        assert!(!r.due(next - Duration::from_nanos(1)));
        gaps.push(next - now);
        now = next;
    }
    assert!(gaps
        .iter()
        .all(|g| *g >= interval / 2 && *g < interval * 3 / 2));
    let min = gaps.iter().min().expect("50");
    let max = gaps.iter().max().expect("50");
    assert!(
        *max - *min > Duration::from_secs(1),
        "randomised: {min:?}..{max:?}"
    );
    assert_eq!(r.stats(ReportCause::Sent, OURS).reports_sent, 50);
}

#[test]
fn sr_while_sending_rr_after_two_silent_intervals() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let mut r = Rtcp::new(t0, Duration::from_secs(5), 3);
    for i in 0..50u32 {
        r.on_rtp_sent(
            t0 + Duration::from_millis(u64::from(20 * i)),
            5000 + 160 * i,
            160,
        );
    }
    let mut buf = [0u8; 256];
    let at = t0 + Duration::from_millis(1000);
    let n = r
        .write_report(at, &clock, OURS, false, &mut buf)
        .expect("fits");
    let mut seen = None;
    parse(&buf[..n], |p| {
        if let RtcpPacket::Report {
            ssrc,
            sender,
            blocks: raw,
        } = p
        {
            seen = Some((ssrc, sender, raw.len()));
        }
    })
    .expect("valid");
    let (ssrc, sender, blocks) = seen.expect("a report");
    let sender = sender.expect("an SR while sending");
    assert_eq!((ssrc, blocks), (OURS, 0), "no block before the peer sends");
    assert_eq!((sender.packets, sender.octets), (50, 8000));
    // The last packet (ts 5000 + 49·160) was sampled at 980 ms; 20 ms later is 160 units on.
    assert_eq!(sender.rtp_timestamp, 5000 + 50 * 160);
    assert_eq!(sender.ntp, clock.at(at));
    let later = t0 + Duration::from_secs(11);
    let n = r
        .write_report(later, &clock, OURS, false, &mut buf)
        .expect("fits");
    assert_eq!(buf[1], 201, "an RR once we stopped sending");
    assert!(n >= 8);
}

#[test]
fn round_trip_from_lsr_and_dlsr() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let ms = Duration::from_millis;
    let mut us = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    let mut them = Rtcp::new(t0, DEFAULT_INTERVAL, 2);
    let mut buf = [0u8; 256];
    us.on_rtp_sent(t0, 0, 160);
    them.on_rtp_received(t0 + ms(10), &rtp(1, 0), true);
    let n = us
        .write_report(t0 + ms(100), &clock, OURS, false, &mut buf)
        .expect("fits");
    // 15 ms one way; they hold it 200 ms; 15 ms back: RTT 30 ms.
    them.handle(t0 + ms(115), &clock, THEIRS, &buf[..n])
        .expect("valid");
    them.on_rtp_received(
        t0 + ms(200),
        &RtpHeader {
            ssrc: OURS,
            ..rtp(2, 160)
        },
        true,
    );
    let n = them
        .write_report(t0 + ms(315), &clock, THEIRS, false, &mut buf)
        .expect("fits");
    us.handle(t0 + ms(330), &clock, OURS, &buf[..n])
        .expect("valid");
    let rtt = us.stats(ReportCause::Received, OURS).rtt.expect("an rtt");
    let err = rtt.abs_diff(ms(30));
    assert!(err < Duration::from_micros(100), "{rtt:?}");
}

/// An RR from `reporter` with `blocks`, built by hand (as a phone would send it).
fn rr(reporter: u32, blocks: &[ReportBlock]) -> Vec<u8> {
    let mut out = vec![0x80 | blocks.len() as u8, 201, 0, 0];
    out.extend_from_slice(&reporter.to_be_bytes());
    for b in blocks {
        let mut w = [0u8; 24];
        let mut writer = Writer {
            buf: &mut w,
            pos: 0,
        };
        b.write(&mut writer).expect("24 bytes");
        out.extend_from_slice(&w);
    }
    let words = (out.len() / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    out
}

#[test]
fn the_block_about_our_stream_is_taken_from_a_compound_with_several() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let mut us = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    let other = ReportBlock {
        ssrc: 0x3333_3333,
        fraction_lost: 200,
        cumulative_lost: 999,
        ..ReportBlock::default()
    };
    let mine = ReportBlock {
        ssrc: OURS,
        fraction_lost: 25,
        cumulative_lost: -3,
        highest_seq: 70_000,
        jitter: 80,
        lsr: 0,
        dlsr: 0,
    };
    let mut packet = rr(THEIRS, &[other, mine]);
    // An SDES after it (compound), which is skipped.
    packet.extend_from_slice(&[0x81, 202, 0, 2, 0x22, 0x22, 0x22, 0x22, 1, 1, b'x', 0]);
    us.handle(t0, &clock, OURS, &packet).expect("valid");
    let s = us.stats(ReportCause::Received, OURS);
    assert_eq!(
        s.remote,
        Some(RemoteReport {
            fraction_lost: 25,
            cumulative_lost: -3,
            jitter: 80
        })
    );
    assert_eq!((s.reports_received, s.malformed, s.rtt), (1, 0, None));
}

#[test]
fn malformed_datagrams_are_counted_and_change_nothing() {
    let t0 = Instant::now();
    let clock = ntp(t0);
    let mut us = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    let good = rr(
        THEIRS,
        &[ReportBlock {
            ssrc: OURS,
            jitter: 8,
            ..ReportBlock::default()
        }],
    );
    let mut bad_version = good.clone();
    bad_version[0] = 0x40 | 1;
    let mut too_many_blocks = good.clone();
    too_many_blocks[0] = 0x80 | 2;
    let sdes_first = [0x81, 202, 0, 1, 0, 0, 0, 1];
    let mut overlong = good.clone();
    overlong[3] = 20;
    let bads: [&[u8]; 6] = [
        &[],
        &good[..3],
        &good[..good.len() - 4],
        &bad_version,
        &sdes_first,
        &overlong,
    ];
    for bad in bads {
        assert!(us.handle(t0, &clock, OURS, bad).is_err(), "{bad:?}");
    }
    assert!(us.handle(t0, &clock, OURS, &too_many_blocks).is_err());
    let s = us.stats(ReportCause::Received, OURS);
    assert_eq!((s.malformed, s.reports_received, s.remote), (7, 0, None));
    us.handle(t0, &clock, OURS, &good).expect("valid");
    assert_eq!(
        us.stats(ReportCause::Received, OURS)
            .remote
            .map(|r| r.jitter),
        Some(8)
    );
}

#[test]
fn written_compounds_parse_back_with_cname_and_bye() {
    let t0 = Instant::now();
    let block = ReportBlock {
        ssrc: THEIRS,
        fraction_lost: 1,
        cumulative_lost: -0x90_0000, // clamps to the 24-bit minimum
        highest_seq: 5,
        jitter: 6,
        lsr: 7,
        dlsr: 8,
    };
    let sender = SenderInfo {
        ntp: ntp(t0).at(t0),
        rtp_timestamp: 9,
        packets: 10,
        octets: 11,
    };
    let mut buf = [0u8; 128];
    let n = write_compound(
        &mut buf,
        OURS,
        Some(sender),
        Some(block),
        b"0123456789abcdef",
        true,
    )
    .expect("fits");
    assert_eq!(n % 4, 0);
    let mut kinds = Vec::new();
    parse(&buf[..n], |p| match p {
        RtcpPacket::Report {
            ssrc,
            sender: s,
            blocks: raw,
        } => {
            let got: Vec<ReportBlock> = blocks(raw).collect();
            assert_eq!((ssrc, s), (OURS, Some(sender)));
            assert_eq!(
                got,
                vec![ReportBlock {
                    cumulative_lost: -0x80_0000,
                    ..block
                }]
            );
            kinds.push("sr");
        }
        RtcpPacket::Bye => kinds.push("bye"),
        RtcpPacket::Other(202) => kinds.push("sdes"),
        RtcpPacket::Other(_) => kinds.push("other"),
    })
    .expect("valid");
    assert_eq!(kinds, ["sr", "sdes", "bye"]);
    // The CNAME item: type 1, length 16, the text, then at least one zero octet.
    let sdes = &buf[52..];
    assert_eq!(&sdes[8..10], &[1, 16]);
    assert_eq!(&sdes[10..26], b"0123456789abcdef");
    assert_eq!(sdes[26], 0);
    assert_eq!(
        write_compound(&mut [0u8; 40], OURS, Some(sender), Some(block), b"x", false),
        Err(RtcpError::BufferTooSmall)
    );
}

proptest::proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let t0 = Instant::now();
        let mut us = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
        let _ = us.handle(t0, &ntp(t0), OURS, &bytes);
        let mut v = bytes.clone();
        if v.len() >= 2 {
            v[0] = 0x80 | (v[0] & 0x3F);
            v[1] = 201;
        }
        let _ = us.handle(t0, &ntp(t0), OURS, &v);
    }
}

#[test]
fn snapshots_hand_out_each_loss_once() {
    let t0 = Instant::now();
    let mut r = Rtcp::new(t0, DEFAULT_INTERVAL, 1);
    feed(&mut r, t0, [1, 2, 5]);
    let s = r.snapshot(ReportCause::Sent, OURS);
    assert_eq!((s.lost, s.new_lost), (2, 2));
    assert_eq!(
        r.snapshot(ReportCause::Sent, OURS).new_lost,
        0,
        "nothing new"
    );
    // A late packet brings the cumulative count down: nothing new until it passes 2 again.
    feed(&mut r, t0, [3]);
    assert_eq!(r.snapshot(ReportCause::Sent, OURS).new_lost, 0);
    feed(&mut r, t0, [8]);
    let s = r.snapshot(ReportCause::Sent, OURS);
    assert_eq!((s.lost, s.new_lost), (3, 1));
}
