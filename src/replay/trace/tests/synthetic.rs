//! Synthetic traces (built by `synth`): every framing, container variant, fragments, TCP segment orders
//! and media rules that loopback captures of SIPp cannot show.
use std::net::SocketAddr;
use std::time::Duration;

use super::super::*;
use super::{rtp, sip_summary, synth};

/// A synthetic call's trace must give this.
fn assert_synthetic_call(trace: &Trace, call: &synth::Call) {
    assert_eq!(trace.calls.len(), 1);
    let got = &trace.calls[0];
    assert_eq!(got.call_id, call.call_id);
    assert_eq!((got.caller, got.server), (call.caller, call.server));
    assert_eq!(sip_summary(got), ["INVITE", "200", "ACK", "BYE", "200"]);
    let media: Vec<(u64, &str, SocketAddr)> = got
        .packets
        .iter()
        .filter_map(|p| match p.kind {
            PacketKind::Rtp(_) => Some((p.at.as_millis() as u64, "rtp", p.to)),
            PacketKind::Rtcp(_) => Some((p.at.as_millis() as u64, "rtcp", p.to)),
            PacketKind::Sip(_) => None,
        })
        .collect();
    let rtcp_to = SocketAddr::new(call.server_media.ip(), call.server_media.port() + 1);
    assert_eq!(
        media,
        [
            (100, "rtp", call.server_media),
            (120, "rtp", call.server_media),
            (130, "rtp", call.caller_media),
            (140, "rtcp", rtcp_to)
        ]
    );
}

const T0: Duration = Duration::from_secs(1_796_130_000);

#[test]
fn every_link_layer_framing_gives_the_same_call() {
    let call = synth::Call::v4("links@10.0.0.1");
    // Ethernet + VLAN, BSD NULL (little-endian family), OpenBSD LOOP, SLL, SLL2, raw IP (101 and 228).
    for link in [1, 0, 108, 113, 276, 101, 228, 12] {
        let trace = read_trace(&synth::pcap_of(link, T0, &call.udp_timeline()))
            .unwrap_or_else(|e| panic!("link {link}: {e}"));
        assert_synthetic_call(&trace, &call);
    }
}

#[test]
fn bsd_loopback_family_in_either_byte_order() {
    let call = synth::Call::v4("null@10.0.0.1");
    let frames: Vec<(Duration, Vec<u8>)> = call
        .udp_timeline()
        .iter()
        .enumerate()
        .map(|(i, (ms, from, to, payload))| {
            // Alternate: a big-endian writer's NULL header, then a little-endian one.
            let family = if i % 2 == 0 {
                2u32.to_be_bytes()
            } else {
                2u32.to_le_bytes()
            };
            (
                T0 + Duration::from_millis(*ms),
                [&family[..], &synth::ip_udp(*from, *to, payload)].concat(),
            )
        })
        .collect();
    assert_synthetic_call(
        &read_trace(&synth::pcap(0, false, false, &frames)).expect("readable"),
        &call,
    );
}

#[test]
fn ipv6_raw_frames() {
    let mut call = synth::Call::v4("v6@fd00::1");
    call.caller = "[fd00::1]:5062".parse().expect("literal");
    call.server = "[fd00::2]:5060".parse().expect("literal");
    call.caller_media = "[fd00::1]:40000".parse().expect("literal");
    call.server_media = "[fd00::2]:30000".parse().expect("literal");
    for link in [101, 229, 0, 1] {
        let trace = read_trace(&synth::pcap_of(link, T0, &call.udp_timeline()))
            .unwrap_or_else(|e| panic!("link {link}: {e}"));
        assert_synthetic_call(&trace, &call);
    }
    // An IPv6 packet on the IPv4-only link type is not IPv4: nothing is read.
    let trace = read_trace(&synth::pcap_of(228, T0, &call.udp_timeline())).expect("readable");
    assert!(trace.calls.is_empty());
}

#[test]
fn pcap_big_endian_and_nanoseconds_keep_exact_times() {
    let call = synth::Call::v4("ns@10.0.0.1");
    let t0 = T0 + Duration::from_nanos(123_456_789);
    let frames: Vec<(Duration, Vec<u8>)> = call
        .udp_timeline()
        .iter()
        .map(|(ms, from, to, p)| {
            (
                t0 + Duration::from_millis(*ms) + Duration::from_nanos(7),
                synth::ip_udp(*from, *to, p),
            )
        })
        .collect();
    for (big, nanos) in [(true, true), (true, false), (false, true)] {
        let trace = read_trace(&synth::pcap(101, big, nanos, &frames)).expect("readable");
        assert_synthetic_call(&trace, &call);
        let start = trace.calls[0].start.expect("pcap has wall time");
        let expected_nanos = if nanos { 123_456_796 } else { 123_456_000 };
        assert_eq!(start.timestamp(), T0.as_secs() as i64);
        assert_eq!(
            start.timestamp_subsec_nanos(),
            expected_nanos,
            "big-endian {big}, ns {nanos}"
        );
        assert_eq!(trace.start, trace.calls[0].start);
    }
}

#[test]
fn pcapng_interfaces_with_their_own_link_type_and_resolution() {
    let call = synth::Call::v4("ng@10.0.0.1");
    let timeline = call.udp_timeline();
    for big in [false, true] {
        // Interface 0: Ethernet, µs (default); 1: raw IP, ns; 2: SLL2, 2^-10 s. Packets rotate over them,
        // and an unknown block and a name-resolution-like block sit between them.
        let mut blocks = vec![
            synth::Ng::Interface(1, None),
            synth::Ng::Interface(101, Some(9)),
            synth::Ng::Unknown(0x0bad),
        ];
        blocks.push(synth::Ng::Interface(276, Some(0x80 | 10)));
        for (i, (ms, from, to, payload)) in timeline.iter().enumerate() {
            let ip = synth::ip_udp(*from, *to, payload);
            let t = T0 + Duration::from_millis(*ms);
            let block = match i % 3 {
                0 => synth::Ng::Packet(0, t.as_micros() as u64, synth::framed(1, &ip)),
                1 => synth::Ng::Packet(1, t.as_nanos() as u64, ip),
                // 2^-10 s units cannot hold every millisecond: round up so the time read back is not earlier.
                _ => synth::Ng::Packet(
                    2,
                    (t.as_nanos() * 1024).div_ceil(1_000_000_000) as u64,
                    synth::framed(276, &ip),
                ),
            };
            blocks.push(block);
            blocks.push(synth::Ng::Unknown(0x8000_0001));
        }
        let trace = read_trace(&synth::pcapng(big, &blocks)).expect("readable");
        assert_synthetic_call(&trace, &call);
    }
}

#[test]
fn pcapng_sections_in_both_byte_orders_one_after_another() {
    let call = synth::Call::v4("sections@10.0.0.1");
    let timeline = call.udp_timeline();
    let section = |big: bool, link: u16, part: &[(u64, SocketAddr, SocketAddr, Vec<u8>)]| {
        let mut blocks = vec![synth::Ng::Interface(link, Some(9))];
        for (ms, from, to, payload) in part {
            let t = (T0 + Duration::from_millis(*ms)).as_nanos() as u64;
            blocks.push(synth::Ng::Packet(
                0,
                t,
                synth::framed(u32::from(link), &synth::ip_udp(*from, *to, payload)),
            ));
        }
        synth::pcapng(big, &blocks)
    };
    // A new section forgets the old interfaces: its interface 0 is another link type.
    let bytes = [
        section(false, 1, &timeline[..4]),
        section(true, 101, &timeline[4..]),
    ]
    .concat();
    assert_synthetic_call(&read_trace(&bytes).expect("readable"), &call);
}

#[test]
fn pcapng_simple_packet_blocks_take_the_previous_time() {
    let call = synth::Call::v4("spb@10.0.0.1");
    let t = |ms: u64| (T0 + Duration::from_millis(ms)).as_micros() as u64;
    let timeline = call.udp_timeline();
    let mut blocks = vec![synth::Ng::Interface(101, None)];
    for (ms, from, to, payload) in &timeline {
        let ip = synth::ip_udp(*from, *to, payload);
        // RTP as SPBs right after an EPB at the same time.
        if matches!(payload.first(), Some(0x80)) {
            blocks.push(synth::Ng::Packet(
                0,
                t(*ms),
                synth::ip_udp(*to, *from, b"\r\n\r\n"),
            ));
            blocks.push(synth::Ng::Simple(ip));
        } else {
            blocks.push(synth::Ng::Packet(0, t(*ms), ip));
        }
    }
    assert_synthetic_call(
        &read_trace(&synth::pcapng(false, &blocks)).expect("readable"),
        &call,
    );
}

#[test]
fn ipv4_fragments_of_a_big_invite_are_reassembled_in_any_order() {
    let call = synth::Call::v4("frag@10.0.0.1");
    let mut timeline = call.udp_timeline();
    let padding = "a=x-padding:".to_string() + &"z".repeat(3000) + "\r\n";
    let invite = call.invite_with(call.caller_media, 1, &padding);
    timeline[0].3 = invite.clone();
    let mut frames: Vec<(Duration, Vec<u8>)> = Vec::new();
    let mut fragments = synth::ipv4_fragments(call.caller, call.server, &invite, 77, 1480);
    assert_eq!(fragments.len(), 3);
    fragments.swap(0, 2); // last first
                          // Another datagram's lone fragment with the same id from elsewhere, never completed.
    let stray = synth::ipv4_fragments(
        "10.9.9.9:5060".parse().expect("literal"),
        call.server,
        &invite,
        77,
        1480,
    );
    frames.push((T0, stray[0].clone()));
    for f in fragments {
        frames.push((T0, f));
    }
    for (ms, from, to, payload) in &timeline[1..] {
        frames.push((
            T0 + Duration::from_millis(*ms),
            synth::ip_udp(*from, *to, payload),
        ));
    }
    let trace = read_trace(&synth::pcap(101, false, false, &frames)).expect("readable");
    assert_synthetic_call(&trace, &call);
    let PacketKind::Sip(got) = &trace.calls[0].packets[0].kind else {
        panic!("the INVITE first")
    };
    assert_eq!(got, &invite, "reassembled byte for byte");
}

#[test]
fn ipv6_fragments_are_reassembled() {
    let mut call = synth::Call::v4("frag6@fd00::1");
    call.caller = "[fd00::1]:5062".parse().expect("literal");
    call.server = "[fd00::2]:5060".parse().expect("literal");
    call.caller_media = "[fd00::1]:40000".parse().expect("literal");
    call.server_media = "[fd00::2]:30000".parse().expect("literal");
    let mut timeline = call.udp_timeline();
    let invite = call.invite_with(
        call.caller_media,
        1,
        &("a=x-padding:".to_string() + &"y".repeat(2500) + "\r\n"),
    );
    timeline[0].3 = invite.clone();
    let mut frames: Vec<(Duration, Vec<u8>)> =
        synth::ipv6_fragments(call.caller, call.server, &invite, 0xdead_beef, 1232)
            .into_iter()
            .rev()
            .map(|f| (T0, f))
            .collect();
    for (ms, from, to, payload) in &timeline[1..] {
        frames.push((
            T0 + Duration::from_millis(*ms),
            synth::ip_udp(*from, *to, payload),
        ));
    }
    let trace = read_trace(&synth::pcap(229, false, false, &frames)).expect("readable");
    assert_synthetic_call(&trace, &call);
}

#[test]
fn pending_fragments_are_bounded_and_time_out() {
    let mut ip = ip::Reassembler::default();
    let from: SocketAddr = "10.0.0.1:5060".parse().expect("literal");
    let to: SocketAddr = "10.0.0.2:5060".parse().expect("literal");
    let payload = vec![b'x'; 4000];
    for id in 0..2000u16 {
        let first = synth::ipv4_fragments(from, to, &payload, id, 1480).remove(0);
        assert!(
            ip.handle(T0, &first).is_none(),
            "one fragment completes nothing"
        );
    }
    let (sets, bytes) = ip.pending();
    assert!(
        sets <= 256 && bytes <= 8 << 20,
        "{sets} sets, {bytes} bytes pending"
    );
    // A fragment 31 s later (capture time) expires everything before it.
    let late = synth::ipv4_fragments(from, to, &payload, 9999, 1480).remove(0);
    assert!(ip.handle(T0 + Duration::from_secs(31), &late).is_none());
    assert_eq!(ip.pending().0, 1);
    // The rest of a datagram whose first fragment expired completes nothing.
    let rest = synth::ipv4_fragments(from, to, &payload, 5, 1480);
    assert!(rest[1..]
        .iter()
        .all(|f| ip.handle(T0 + Duration::from_secs(32), f).is_none()));
}

/// One TCP segment to capture: (ms, from, to, seq, syn, payload).
type TcpSegment = (u64, SocketAddr, SocketAddr, u32, bool, Vec<u8>);

/// A TCP capture of `segments`.
fn tcp_pcap(segments: &[TcpSegment]) -> Vec<u8> {
    let frames: Vec<(Duration, Vec<u8>)> = segments
        .iter()
        .map(|(ms, from, to, seq, syn, p)| {
            (
                T0 + Duration::from_millis(*ms),
                synth::ip_tcp(*from, *to, *seq, *syn, p),
            )
        })
        .collect();
    synth::pcap(101, false, false, &frames)
}

#[test]
fn tcp_segments_out_of_order_retransmitted_and_split_are_framed_by_content_length() {
    let call = synth::Call::v4("tcp@10.0.0.1");
    let (c, s) = (call.caller, call.server);
    let invite = call.invite();
    // The caller's stream: INVITE in three pieces (sent 3, 1, 2 with piece 1 retransmitted overlapping),
    // then a CRLF keep-alive, then ACK and BYE in one segment (BYE with the compact `l:` form).
    let ack = call.request("ACK", 1);
    let bye = String::from_utf8(call.request("BYE", 2))
        .expect("ascii")
        .replace("Content-Length: 0", "l: 0")
        .into_bytes();
    let isn = 0xffff_ff00u32; // wraps around 2^32 inside the INVITE
    let (a, b) = (200, 400);
    let seq = |offset: usize| isn.wrapping_add(1).wrapping_add(offset as u32);
    let keepalive_at = invite.len();
    let tail = [&b"\r\n\r\n"[..], &ack, &bye].concat();
    let ok = call.ok_invite();
    let ok_bye = call.response(200, "2 BYE", "");
    let server_isn = 5000u32;
    let segments = vec![
        (0, c, s, isn, true, Vec::new()),
        (1, s, c, server_isn, true, Vec::new()),
        (10, c, s, seq(b), false, invite[b..].to_vec()),
        (11, c, s, seq(0), false, invite[..a].to_vec()),
        (12, c, s, seq(0), false, invite[..a + 50].to_vec()),
        (13, c, s, seq(a), false, invite[a..b].to_vec()),
        (20, s, c, server_isn + 1, false, ok.clone()),
        (30, c, s, seq(keepalive_at), false, tail),
        (40, s, c, server_isn + 1 + ok.len() as u32, false, ok_bye),
    ];
    let trace = read_trace(&tcp_pcap(&segments)).expect("readable");
    assert_eq!(trace.calls.len(), 1);
    let got = &trace.calls[0];
    assert_eq!(got.transport, TraceTransport::Tcp);
    assert_eq!((got.caller, got.server), (c, s));
    assert_eq!(sip_summary(got), ["INVITE", "200", "ACK", "BYE", "200"]);
    let PacketKind::Sip(first) = &got.packets[0].kind else {
        panic!("SIP first")
    };
    assert_eq!(first, &invite, "INVITE reassembled byte for byte");
    // The INVITE is complete when its middle piece arrives (13 ms): that is its time; the call starts there.
    let times: Vec<u128> = got.packets.iter().map(|p| p.at.as_millis()).collect();
    assert_eq!(times, [0, 7, 17, 17, 27]);
}

#[test]
fn tcp_stream_resynchronises_after_garbage_and_bounds_its_buffer() {
    let call = synth::Call::v4("garbage@10.0.0.1");
    let (c, s) = (call.caller, call.server);
    let mut segments = vec![(0, c, s, 0, true, Vec::new())];
    let mut seq = 1u32;
    // 3 MB of lines that are not SIP, then a head that never ends, then a whole INVITE.
    for i in 0..3000u64 {
        let junk = format!("junk line {i} {}\r\n", "j".repeat(1000)).into_bytes();
        segments.push((i / 100, c, s, seq, false, junk.clone()));
        seq = seq.wrapping_add(junk.len() as u32);
    }
    let invite = call.invite();
    segments.push((100, c, s, seq, false, invite));
    let trace = read_trace(&tcp_pcap(&segments)).expect("readable");
    assert_eq!(trace.calls.len(), 1);
    assert_eq!(sip_summary(&trace.calls[0]), ["INVITE"]);
}

#[test]
fn sip_on_any_udp_port_and_media_only_while_the_call_lives() {
    let mut call = synth::Call::v4("ports@10.0.0.1");
    call.caller = "10.0.0.1:7777".parse().expect("literal");
    call.server = "10.0.0.2:12345".parse().expect("literal");
    let mut timeline = call.udp_timeline();
    let (cm, sm) = (call.caller_media, call.server_media);
    let other: SocketAddr = "10.7.7.7:30000".parse().expect("literal");
    // Before the INVITE: dropped (at is relative to the INVITE, nothing may precede it).
    timeline.insert(0, (0, cm, sm, synth::rtp(9, 0, &[0; 160])));
    for (ms, ..) in timeline.iter_mut().skip(1) {
        *ms += 10;
    }
    timeline.extend([
        // From the caller's IP but another port (SIPp's pcap playback): the call's RTP.
        (
            500,
            "10.0.0.1:49176".parse().expect("literal"),
            sm,
            synth::rtp(3, 101, &[5, 0x8a, 1, 64]),
        ),
        // From an IP that is neither side: not the call's.
        (510, other, sm, synth::rtp(4, 0, &[0; 160])),
        // Not RTP (version 0) to the media address: not the call's.
        (520, cm, sm, vec![0; 40]),
        // Well after the BYE: not the call's.
        (5000, cm, sm, synth::rtp(5, 0, &[0; 160])),
        // Unrelated UDP.
        (
            600,
            other,
            "10.7.7.8:9".parse().expect("literal"),
            b"hello".to_vec(),
        ),
    ]);
    timeline.sort_by_key(|t| t.0);
    let trace = read_trace(&synth::pcap_of(101, T0, &timeline)).expect("readable");
    assert_eq!(trace.calls.len(), 1);
    let got = &trace.calls[0];
    assert_eq!((got.caller, got.server), (call.caller, call.server));
    let rtp: Vec<(u128, SocketAddr)> = rtp(got)
        .iter()
        .map(|p| (p.at.as_millis(), p.from))
        .collect();
    assert_eq!(
        rtp,
        [
            (100, cm),
            (120, cm),
            (130, sm),
            (490, "10.0.0.1:49176".parse().expect("literal"))
        ]
    );
    assert_eq!(
        trace.start,
        calls::wall_time(T0),
        "the trace starts at its first packet"
    );
    assert_eq!(got.start, calls::wall_time(T0 + Duration::from_millis(10)));
}

#[test]
fn reinvite_moves_the_media() {
    let call = synth::Call::v4("reinvite@10.0.0.1");
    let mut timeline = call.udp_timeline();
    let moved: SocketAddr = "10.0.0.1:41000".parse().expect("literal");
    timeline.retain(|t| t.0 < 1000);
    timeline.extend([
        (
            300,
            call.caller,
            call.server,
            call.invite_with(moved, 3, ""),
        ),
        (
            310,
            call.server,
            call.caller,
            call.response(200, "3 INVITE", ""),
        ),
        (400, call.server_media, moved, synth::rtp(7, 0, &[0; 160])),
        // To the old address after the move: still the call's (the old offer stands).
        (
            410,
            call.server_media,
            call.caller_media,
            synth::rtp(8, 0, &[0; 160]),
        ),
    ]);
    let trace = read_trace(&synth::pcap_of(101, T0, &timeline)).expect("readable");
    let got = &trace.calls[0];
    assert_eq!(sip_summary(got), ["INVITE", "200", "ACK", "INVITE", "200"]);
    let to: Vec<SocketAddr> = rtp(got).iter().map(|p| p.to).collect();
    assert_eq!(to[3..], [moved, call.caller_media]);
}

#[test]
fn a_call_placed_from_another_calls_server_is_its_leg() {
    let caller = synth::Call::v4("caller@10.0.0.1");
    let mut agent = synth::Call::v4("agent@10.0.0.2");
    agent.caller = caller.server; // helpline's SIP socket places the agent leg
    agent.server = "10.0.0.3:5060".parse().expect("literal");
    agent.caller_media = "10.0.0.2:30002".parse().expect("literal");
    agent.server_media = "10.0.0.3:20000".parse().expect("literal");
    let mut timeline = caller.udp_timeline();
    timeline.extend(
        agent
            .udp_timeline()
            .into_iter()
            .map(|(ms, f, t, p)| (ms + 200, f, t, p)),
    );
    timeline.sort_by_key(|t| t.0);
    let trace = read_trace(&synth::pcap_of(1, T0, &timeline)).expect("readable");
    let ids: Vec<(&str, Option<&str>)> = trace
        .calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.leg_of.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            ("caller@10.0.0.1", None),
            ("agent@10.0.0.2", Some("caller@10.0.0.1"))
        ]
    );
    assert_eq!(
        trace.calls[1].packets[0].at,
        Duration::ZERO,
        "each call's times start at its own INVITE"
    );
}

#[test]
fn messages_without_an_invite_make_no_call() {
    let call = synth::Call::v4("options@10.0.0.1");
    let timeline = vec![
        (0, call.caller, call.server, call.request("OPTIONS", 1)),
        (
            5,
            call.server,
            call.caller,
            call.response(200, "1 OPTIONS", ""),
        ),
    ];
    let trace = read_trace(&synth::pcap_of(101, T0, &timeline)).expect("readable");
    assert!(trace.calls.is_empty());
    assert!(trace.start.is_some());
}

#[test]
fn unknown_formats_and_link_types_are_errors() {
    assert!(
        matches!(read_trace(b"hello world"), Err(TraceError::UnknownFormat(b)) if b == b"hello wo")
    );
    assert!(matches!(read_trace(b""), Err(TraceError::UnknownFormat(_))));
    let frames = vec![(T0, vec![0u8; 60])];
    assert!(matches!(
        read_trace(&synth::pcap(147, false, false, &frames)),
        Err(TraceError::UnsupportedLinkType(147))
    ));
    assert!(matches!(
        read_trace(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
        Err(TraceError::Malformed(_))
    ));
    // An empty but valid capture: no calls.
    let empty = read_trace(&synth::pcap(1, false, false, &[])).expect("valid");
    assert!(empty.calls.is_empty() && empty.start.is_none());
}

#[test]
fn a_damaged_packet_is_skipped() {
    let call = synth::Call::v4("damaged@10.0.0.1");
    let mut frames: Vec<(Duration, Vec<u8>)> = call
        .udp_timeline()
        .iter()
        .map(|(ms, f, t, p)| {
            (
                T0 + Duration::from_millis(*ms),
                synth::framed(1, &synth::ip_udp(*f, *t, p)),
            )
        })
        .collect();
    // A truncated IP header, a bogus IP version, a non-IP EtherType, a frame too short for Ethernet.
    frames.insert(1, (T0, frames[1].1[..20].to_vec()));
    frames.insert(
        2,
        (
            T0,
            [&frames[2].1[..18], &[0x75][..], &frames[2].1[19..]].concat(),
        ),
    );
    frames.insert(
        3,
        (
            T0,
            [&frames[3].1[..16], &[0x08, 0x06], &frames[3].1[18..]].concat(),
        ),
    );
    frames.insert(4, (T0, vec![1, 2, 3]));
    let trace = read_trace(&synth::pcap(1, false, false, &frames)).expect("readable");
    assert_synthetic_call(&trace, &call);
}

#[test]
fn sip_is_recognised_by_its_first_line_only() {
    use sip::{start_line, StartLine};
    assert_eq!(
        start_line(b"INVITE sip:100@10.0.0.2 SIP/2.0\r\n"),
        Some(StartLine::Request {
            method: "INVITE".into(),
            uri: "sip:100@10.0.0.2".into()
        })
    );
    assert_eq!(
        start_line(b"SIP/2.0 486 Busy Here"),
        Some(StartLine::Response { code: 486 })
    );
    assert_eq!(
        start_line(b"X-CUSTOM tel:+441234 SIP/2.0"),
        Some(StartLine::Request {
            method: "X-CUSTOM".into(),
            uri: "tel:+441234".into()
        })
    );
    for not_sip in [
        &b"GET / HTTP/1.1"[..],
        b"HTTP/1.1 200 OK",
        b"SIP/2.0 20 Short",
        b"INVITE nouri SIP/2.0",
        b"\x80\x65\x00\x01",
        b"",
    ] {
        assert_eq!(
            start_line(not_sip),
            None,
            "{:?}",
            String::from_utf8_lossy(not_sip)
        );
    }
}

#[test]
fn udp_sip_with_compact_headers_and_no_content_length() {
    let call = synth::Call::v4("compact@10.0.0.1");
    let mut timeline = call.udp_timeline();
    // The INVITE with compact Call-ID and no Content-Length (allowed on UDP: the body runs to the end),
    // sent after two keep-alive CRLFs, with LF-only line ends.
    let invite = String::from_utf8(call.invite()).expect("ascii");
    let head_end = invite.find("\r\n\r\n").expect("a head");
    let (head, body) = invite.split_at(head_end + 4);
    let head: String = head
        .lines()
        .filter(|l| !l.starts_with("Content-Length"))
        .map(|l| l.replace("Call-ID:", "i:") + "\n")
        .collect();
    timeline[0].3 = format!("\r\n\r\n{head}{body}").into_bytes();
    let trace = read_trace(&synth::pcap_of(101, T0, &timeline)).expect("readable");
    assert_synthetic_call(&trace, &call);
    let PacketKind::Sip(got) = &trace.calls[0].packets[0].kind else {
        panic!("the INVITE first")
    };
    assert!(
        got.starts_with(b"INVITE ") && got.ends_with(body.as_bytes()),
        "body kept, keep-alives dropped"
    );
}

#[test]
fn sdp_audio_address() {
    let sdp = |s: &str| sip::sdp_audio(s.replace('|', "\r\n").as_bytes());
    assert_eq!(
        sdp("v=0|c=IN IP4 10.0.0.1|m=audio 4000 RTP/AVP 0|"),
        Some("10.0.0.1:4000".parse().expect("literal"))
    );
    // Media-level c= wins; a video stream first is passed over; port 0 (declined) is no address.
    assert_eq!(
        sdp("v=0|c=IN IP4 10.0.0.1|m=video 5000 RTP/AVP 96|m=audio 4002 RTP/AVP 0|c=IN IP6 fd00::9|"),
        Some("[fd00::9]:4002".parse().expect("literal"))
    );
    assert_eq!(sdp("v=0|c=IN IP4 10.0.0.1|m=audio 0 RTP/AVP 0|"), None);
    assert_eq!(
        sdp("v=0|c=IN IP4 0.0.0.0|m=audio 4000 RTP/AVP 0|"),
        None,
        "old-style hold"
    );
    assert_eq!(
        sdp("v=0|m=audio 4000 RTP/AVP 0|"),
        None,
        "no connection address"
    );
}

#[test]
fn a_tcp_agent_leg_is_known_by_its_via() {
    let caller = synth::Call::v4("tcp-caller@10.0.0.1");
    let mut agent = synth::Call::v4("tcp-agent@10.0.0.2");
    // The leg's INVITE names the server's SIP address in its Via, but its connection comes from 10.0.0.2:40123.
    agent.caller = caller.server;
    agent.server = "10.0.0.3:5060".parse().expect("literal");
    let mut leg_invite = agent.invite();
    agent.caller = "10.0.0.2:40123".parse().expect("literal");
    let ephemeral = agent.caller;
    let mut segments: Vec<TcpSegment> =
        vec![(0, caller.caller, caller.server, 0, true, Vec::new())];
    segments.push((1, caller.caller, caller.server, 1, false, caller.invite()));
    segments.push((2, ephemeral, agent.server, 0, true, Vec::new()));
    segments.push((
        3,
        ephemeral,
        agent.server,
        1,
        false,
        std::mem::take(&mut leg_invite),
    ));
    let trace = read_trace(&tcp_pcap(&segments)).expect("readable");
    let legs: Vec<Option<&str>> = trace.calls.iter().map(|c| c.leg_of.as_deref()).collect();
    assert_eq!(legs, [None, Some("tcp-caller@10.0.0.1")]);
    assert_eq!(
        trace.calls[1].caller, ephemeral,
        "the caller is where the INVITE came from"
    );
}
