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

mod soup;
mod synth;
mod synthetic;
