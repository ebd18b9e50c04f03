//! Tests of the trace reader: real captures of SIPp calls (tests/data/traces/) and synthetic traces built
//! here (framings, fragments, TCP segment orders no capture on loopback produces), plus byte soup.
//!
//! The real fixtures are remade by `tests/data/traces/make_fixtures.sh` (as root). Each is one call of
//! `sipp 127.0.0.1:25060 -sf tests/data/traces/uac_dtmf.xml -i 127.0.0.1 -p 25062 -mp 26004 -t u1 -m 1`
//! (INVITE with SDP, ACK, then RFC 4733 key 1 played from /usr/share/sip-tester/dtmf_2833_1.pcap, BYE)
//! against `sipp -sn uas -i 127.0.0.1 -p 25060 -mp 26000 -t u1 -m 1 -bg`, captured with the filter
//! `F='port 25060 or port 25062 or portrange 26000-26009'` by:
//! - udp_lo.pcapng: `dumpcap -q -i lo -f "$F" -w udp_lo.pcapng` (pcapng, Ethernet, ns resolution)
//! - udp_lo.pcap: `tshark -q -i lo -f "$F" -F pcap -w udp_lo.pcap` (pcap, Ethernet, µs)
//! - udp_any.pcapng: `tshark -q -i any -f "$F" -w udp_any.pcapng` (Linux cooked SLL, 113: this tshark's default)
//! - udp_any_sll2.pcapng: `tshark -q -i any -y LINUX_SLL2 -f "$F" -w udp_any_sll2.pcapng` (SLL2, 276)
//! - tcp_lo.pcapng: as udp_lo.pcapng, both SIPp with `-t t1` (SIP over TCP)
//! - udp_v6.pcapng: as udp_lo.pcapng with `-i ::1` on both and the UAC calling `[::1]:25060`
//! - udp_3calls.pcapng: as udp_lo.pcapng with `-m 3` on both and `-l 1` on the UAC: three calls in a row
//!   on the same SIP and media ports
//! - uac_messages.log / uas_messages.log: no capture; both SIPp with `-trace_msg -message_file F`.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/traces")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("fixture {} (made by make_fixtures.sh): {e}", path.display()))
}

/// Each SIP message of a call as its method or status code, in order.
fn sip_summary(call: &TraceCall) -> Vec<String> {
    call.packets
        .iter()
        .filter_map(|p| match &p.kind {
            PacketKind::Sip(bytes) => {
                let message = sip::Message::parse(bytes).expect("the reader keeps only SIP as Sip");
                Some(
                    message
                        .method()
                        .map_or_else(|| message.code().unwrap_or(0).to_string(), str::to_string),
                )
            }
            _ => None,
        })
        .collect()
}

fn rtp(call: &TraceCall) -> Vec<&TracePacket> {
    call.packets
        .iter()
        .filter(|p| matches!(p.kind, PacketKind::Rtp(_)))
        .collect()
}

/// The RFC 4733 events of a call's RTP: (event, end bit).
fn telephone_events(call: &TraceCall) -> Vec<(u8, bool)> {
    rtp(call)
        .iter()
        .filter_map(|p| match &p.kind {
            PacketKind::Rtp(b) if b.len() >= 16 && b[1] & 0x7f == 101 => {
                Some((b[12], b[13] & 0x80 != 0))
            }
            _ => None,
        })
        .collect()
}

/// What every capture of the SIPp UAC call must show.
fn assert_sipp_call(trace: &Trace, ip: IpAddr, transport: TraceTransport) {
    assert_eq!(
        trace.calls.len(),
        1,
        "one call: {:?}",
        trace.calls.iter().map(|c| &c.call_id).collect::<Vec<_>>()
    );
    let call = &trace.calls[0];
    assert!(
        call.call_id.starts_with("1-") && call.call_id.ends_with(&format!("@{ip}")),
        "Call-ID {}",
        call.call_id
    );
    assert_eq!(
        call.caller,
        SocketAddr::new(ip, 25062),
        "the UAC sent the INVITE"
    );
    assert_eq!(call.server, SocketAddr::new(ip, 25060));
    assert_eq!(call.transport, transport);
    assert_eq!(call.leg_of, None);
    assert_eq!(
        sip_summary(call),
        ["INVITE", "180", "200", "ACK", "BYE", "200"]
    );
    // Key 1 from sip-tester's capture: 7 packets, then the end packet three times.
    let mut expected = vec![(1, false); 7];
    expected.extend([(1, true); 3]);
    assert_eq!(telephone_events(call), expected);
    for p in rtp(call) {
        assert_eq!(p.to, SocketAddr::new(ip, 26000), "to the UAS's SDP port");
        assert_eq!(p.from.ip(), ip);
    }
    // Times: the INVITE at 0, in capture order, key ~0.3 s after the ACK, BYE ~1.5 s after the key.
    assert_eq!(call.packets[0].at, Duration::ZERO);
    assert!(
        call.packets.windows(2).all(|w| w[0].at <= w[1].at),
        "capture order"
    );
    let first_rtp = rtp(call)[0].at;
    assert!(
        first_rtp > Duration::from_millis(250) && first_rtp < Duration::from_secs(1),
        "key at {first_rtp:?}"
    );
    let bye = call
        .packets
        .iter()
        .find(|p| matches!(&p.kind, PacketKind::Sip(b) if b.starts_with(b"BYE")))
        .map(|p| p.at);
    assert!(
        bye.is_some_and(|t| t > first_rtp + Duration::from_secs(1) && t < Duration::from_secs(5)),
        "BYE at {bye:?}"
    );
    // Wall times: the fixtures were made on 2026-12-01.
    let start = call.start.expect("pcaps record wall time");
    assert_eq!(start.format("%Y-%m-%d").to_string(), "2026-12-01");
    assert!(trace.start.is_some_and(|t| t <= start));
}

fn v4() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

#[test]
fn pcapng_from_dumpcap_on_loopback() {
    let trace = read_trace(&fixture("udp_lo.pcapng")).expect("readable");
    assert_sipp_call(&trace, v4(), TraceTransport::Udp);
}

#[test]
fn pcap_from_tshark_in_microseconds() {
    let trace = read_trace(&fixture("udp_lo.pcap")).expect("readable");
    assert_sipp_call(&trace, v4(), TraceTransport::Udp);
}

#[test]
fn linux_cooked_from_tshark_on_any() {
    for name in ["udp_any.pcapng", "udp_any_sll2.pcapng"] {
        let trace = read_trace(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_sipp_call(&trace, v4(), TraceTransport::Udp);
    }
}

#[test]
fn ipv6_call_on_loopback() {
    let trace = read_trace(&fixture("udp_v6.pcapng")).expect("readable");
    assert_sipp_call(
        &trace,
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        TraceTransport::Udp,
    );
}

#[test]
fn sip_over_tcp_is_reassembled() {
    let trace = read_trace(&fixture("tcp_lo.pcapng")).expect("readable");
    assert_sipp_call(&trace, v4(), TraceTransport::Tcp);
}

#[test]
fn calls_in_a_row_on_the_same_ports_keep_their_own_rtp() {
    let trace = read_trace(&fixture("udp_3calls.pcapng")).expect("readable");
    let ids: Vec<&str> = trace
        .calls
        .iter()
        .map(|c| c.call_id.split('-').next().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "SIPp numbers its calls");
    let mut starts = Vec::new();
    for call in &trace.calls {
        assert_eq!(
            (
                call.caller.port(),
                call.server.port(),
                call.leg_of.as_deref()
            ),
            (25062, 25060, None)
        );
        assert_eq!(
            sip_summary(call),
            ["INVITE", "180", "200", "ACK", "BYE", "200"]
        );
        assert_eq!(
            telephone_events(call).len(),
            10,
            "{}: its own key only",
            call.call_id
        );
        assert!(rtp(call)
            .iter()
            .all(|p| p.at > Duration::from_millis(250) && p.at < Duration::from_secs(1)));
        starts.push(call.start.expect("wall time"));
    }
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] > chrono::Duration::milliseconds(1500)),
        "one after another"
    );
}

#[test]
fn sipp_message_log_of_the_caller() {
    let trace = read_trace(&fixture("uac_messages.log")).expect("a SIPp log");
    assert_log_call(&trace, TraceTransport::Udp);
}

#[test]
fn sipp_message_log_of_the_server_has_the_same_caller() {
    let trace = read_trace(&fixture("uas_messages.log")).expect("a SIPp log");
    assert_log_call(&trace, TraceTransport::Udp);
}

#[test]
fn sipp_message_log_over_tcp() {
    let trace = read_trace(&fixture("uac_tcp_messages.log")).expect("a SIPp log");
    assert_log_call(&trace, TraceTransport::Tcp);
}

/// A SIPp log: the call's SIP with addresses from the messages, log times, no RTP.
fn assert_log_call(trace: &Trace, transport: TraceTransport) {
    assert_eq!(trace.calls.len(), 1);
    let call = &trace.calls[0];
    assert_eq!(
        call.caller,
        SocketAddr::new(v4(), 25062),
        "the INVITE's Via"
    );
    assert_eq!(
        call.server,
        SocketAddr::new(v4(), 25060),
        "the INVITE's Request-URI"
    );
    assert_eq!(call.transport, transport);
    assert_eq!(
        sip_summary(call),
        ["INVITE", "180", "200", "ACK", "BYE", "200"]
    );
    assert!(
        call.packets
            .iter()
            .all(|p| matches!(p.kind, PacketKind::Sip(_))),
        "no RTP in a message log"
    );
    for p in &call.packets {
        let PacketKind::Sip(bytes) = &p.kind else {
            continue;
        };
        let from_caller =
            bytes.starts_with(b"INVITE") || bytes.starts_with(b"ACK") || bytes.starts_with(b"BYE");
        let (from, to) = if from_caller {
            (call.caller, call.server)
        } else {
            (call.server, call.caller)
        };
        assert_eq!(
            (p.from, p.to),
            (from, to),
            "direction of {:?}",
            String::from_utf8_lossy(&bytes[..20])
        );
        let message = sip::Message::parse(bytes).expect("SIP");
        assert_eq!(
            message.content_length(),
            Some(message.body.len()),
            "the message is whole"
        );
    }
    let bye = call
        .packets
        .iter()
        .find(|p| matches!(&p.kind, PacketKind::Sip(b) if b.starts_with(b"BYE")))
        .map(|p| p.at);
    assert!(
        bye.is_some_and(|t| t > Duration::from_millis(1500) && t < Duration::from_secs(5)),
        "BYE at {bye:?}"
    );
    assert_eq!(
        call.start
            .map(|s| s.format("%Y-%m-%d").to_string())
            .as_deref(),
        Some("2026-12-01")
    );
}

#[test]
fn sipp_log_time_with_epoch_field_uses_the_epoch() {
    let at = sipp_log::parse_time_for_test("2026-12-01\t16:31:25.329086\t1796142685.329086")
        .expect("parses");
    assert_eq!(at, Duration::new(1_796_142_685, 329_086_000));
    let local = sipp_log::parse_time_for_test("2026-12-01 15:31:25.329086").expect("parses");
    assert_eq!(
        local,
        Duration::new(1_796_139_085, 329_086_000),
        "local time taken as UTC"
    );
}

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
fn a_truncated_capture_keeps_the_packets_before_the_cut() {
    let bytes = fixture("udp_lo.pcapng");
    let all = read_trace(&bytes).expect("readable");
    let cut = read_trace(&bytes[..bytes.len() - 200]).expect("the head still reads");
    assert_eq!(cut.calls.len(), 1);
    assert!(cut.calls[0].packets.len() < all.calls[0].packets.len());
    assert_eq!(
        sip_summary(&cut.calls[0])[..4],
        ["INVITE", "180", "200", "ACK"]
    );
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

mod synth;

mod soup {
    //! Byte soup: whatever the bytes, the reader returns, without panicking.
    use proptest::prelude::*;

    use super::*;

    fn real() -> Vec<Vec<u8>> {
        [
            "udp_lo.pcapng",
            "udp_lo.pcap",
            "udp_any_sll2.pcapng",
            "tcp_lo.pcapng",
            "udp_v6.pcapng",
            "uac_messages.log",
        ]
        .iter()
        .map(|n| fixture(n))
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read_trace(&bytes);
        }

        #[test]
        fn random_bytes_behind_each_magic(magic in 0usize..4, bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let heads: [&[u8]; 4] = [
                &[0xd4, 0xc3, 0xb2, 0xa1],
                &[0x0a, 0x0d, 0x0d, 0x0a],
                &[0xa1, 0xb2, 0x3c, 0x4d],
                b"----------------------------------------------- ",
            ];
            let _ = read_trace(&[heads[magic], &bytes].concat());
        }

        #[test]
        fn real_captures_truncated(which in 0usize..6, cut in any::<prop::sample::Index>()) {
            let bytes = &real()[which];
            let cut = cut.index(bytes.len() + 1);
            if let Ok(trace) = read_trace(&bytes[..cut]) {
                prop_assert!(trace.calls.len() <= 1);
            }
        }

        #[test]
        fn real_captures_with_bytes_changed(which in 0usize..6, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
            let mut bytes = real()[which].clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = read_trace(&bytes);
        }
    }
}
