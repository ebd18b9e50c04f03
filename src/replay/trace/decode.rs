//! From captured frames to transport payloads: link layer, IP (reassembled), then UDP datagrams (SIP
//! when their first line is, otherwise kept as candidate RTP/RTCP) and TCP streams (SIP messages framed
//! by Content-Length). UDP's 8-byte header is read here; IP and TCP headers by etherparse. It does not
//! group anything into calls.
use std::net::SocketAddr;
use std::time::Duration;

use etherparse::TcpSlice;

use super::container::Frame;
use super::ip::{Datagram, Reassembler};
use super::tcp::{Segment, Streams};
use super::{link, sip, TraceError, TraceTransport};

const UDP: u8 = 17;
const TCP: u8 = 6;

/// One transport payload with its capture time and addresses.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub transport: TraceTransport,
    pub payload: Payload,
}

/// What a transport payload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// A whole SIP message.
    Sip(Vec<u8>),
    /// A UDP datagram that is not SIP (RTP, RTCP, anything else).
    Udp(Vec<u8>),
}

/// Decodes frames in capture-time order. Errors only when no frame has a link type the reader knows.
pub(crate) fn decode(mut frames: Vec<Frame<'_>>) -> Result<Vec<Captured>, TraceError> {
    if let Some(unknown) = frames
        .first()
        .map(|f| f.link)
        .filter(|_| !frames.iter().any(|f| link::is_known(f.link)))
    {
        return Err(TraceError::UnsupportedLinkType(unknown));
    }
    // Interfaces of a pcapng (or a merged pcap) may interleave: reassembly wants capture order.
    frames.sort_by_key(|f| f.ts);
    let mut ip = Reassembler::default();
    let mut streams = Streams::default();
    let mut out = Vec::new();
    for frame in &frames {
        let Some(packet) = link::ip_packet(frame.link, &frame.data) else {
            continue;
        };
        let Some(datagram) = ip.handle(frame.ts, packet) else {
            continue;
        };
        match datagram.proto {
            UDP => out.extend(udp(frame.ts, &datagram)),
            TCP => tcp(frame.ts, &datagram, &mut streams, &mut out),
            _ => {}
        }
    }
    Ok(out)
}

fn udp(ts: Duration, d: &Datagram) -> Option<Captured> {
    let h = d.payload.get(..8)?;
    let (sport, dport) = (
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[2], h[3]]),
    );
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let body = match len {
        // Zero: an IPv6 jumbogram's UDP length; the IP layer bounded the payload.
        0 => &d.payload[8..],
        8.. => d.payload.get(8..len)?, // shorter than the UDP length: truncated by the capture
        _ => return None,
    };
    let (from, to) = (SocketAddr::new(d.src, sport), SocketAddr::new(d.dst, dport));
    let payload = if sip::looks_like_sip(body) {
        Payload::Sip(sip::datagram_message(body).to_vec())
    } else if body.iter().all(|b| b.is_ascii_whitespace()) {
        return None; // keep-alive
    } else {
        Payload::Udp(body.to_vec())
    };
    Some(Captured {
        ts,
        from,
        to,
        transport: TraceTransport::Udp,
        payload,
    })
}

fn tcp(ts: Duration, d: &Datagram, streams: &mut Streams, out: &mut Vec<Captured>) {
    let Ok(seg) = TcpSlice::from_slice(&d.payload) else {
        return;
    };
    let (from, to) = (
        SocketAddr::new(d.src, seg.source_port()),
        SocketAddr::new(d.dst, seg.destination_port()),
    );
    let segment = Segment {
        seq: seg.sequence_number(),
        syn: seg.syn(),
        rst: seg.rst(),
        payload: seg.payload(),
    };
    for message in streams.handle(ts, from, to, &segment) {
        out.push(Captured {
            ts,
            from,
            to,
            transport: TraceTransport::Tcp,
            payload: Payload::Sip(message),
        });
    }
}
