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
