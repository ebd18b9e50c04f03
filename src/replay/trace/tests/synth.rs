//! Synthetic traces for the reader's tests: SIP and RTP of a call, IP/UDP/TCP headers (etherparse's
//! builder), link-layer headers and pcap/pcapng containers written here byte by byte (so the tests control
//! byte order, resolution and block kinds independently of the reader's crate).
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};

/// The two sides of a synthetic call.
pub(super) struct Call {
    pub call_id: String,
    pub caller: SocketAddr,
    pub server: SocketAddr,
    pub caller_media: SocketAddr,
    pub server_media: SocketAddr,
}

impl Call {
    pub(super) fn v4(call_id: &str) -> Self {
        Call {
            call_id: call_id.to_string(),
            caller: "10.0.0.1:5062".parse().expect("literal"),
            server: "10.0.0.2:5060".parse().expect("literal"),
            caller_media: "10.0.0.1:40000".parse().expect("literal"),
            server_media: "10.0.0.2:30000".parse().expect("literal"),
        }
    }

    fn headers(&self, first: &str, cseq: &str, extra: &str, body: &str) -> Vec<u8> {
        format!(
            "{first}\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bK-{cseq_num}\r\nFrom: <sip:caller@{caller_ip}>;tag=a\r\n\
             To: <sip:100@{server_ip}>\r\nCall-ID: {id}\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            caller = self.caller,
            caller_ip = self.caller.ip(),
            server_ip = self.server.ip(),
            cseq_num = cseq.split(' ').next().unwrap_or("1"),
            id = self.call_id,
            len = body.len(),
        )
        .into_bytes()
    }

    pub(super) fn invite(&self) -> Vec<u8> {
        self.invite_with(self.caller_media, 1, "")
    }

    /// An INVITE (CSeq `cseq`) offering `media`, with `padding` appended to its SDP.
    pub(super) fn invite_with(&self, media: SocketAddr, cseq: u32, padding: &str) -> Vec<u8> {
        let uri = match self.server {
            SocketAddr::V4(a) => format!("sip:100@{a}"),
            SocketAddr::V6(a) => format!("sip:100@[{}]:{}", a.ip(), a.port()),
        };
        let extra = format!(
            "Contact: <sip:caller@{}>\r\nContent-Type: application/sdp\r\n",
            self.caller
        );
        self.headers(
            &format!("INVITE {uri} SIP/2.0"),
            &format!("{cseq} INVITE"),
            &extra,
            &(sdp(media) + padding),
        )
    }

    pub(super) fn ok_invite(&self) -> Vec<u8> {
        self.response(200, "1 INVITE", &sdp(self.server_media))
    }

    pub(super) fn response(&self, code: u16, cseq: &str, body: &str) -> Vec<u8> {
        let extra = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        self.headers(&format!("SIP/2.0 {code} Whatever"), cseq, &extra, body)
    }

    pub(super) fn request(&self, method: &str, cseq: u32) -> Vec<u8> {
        self.headers(
            &format!("{method} sip:100@{} SIP/2.0", self.server),
            &format!("{cseq} {method}"),
            "",
            "",
        )
    }

    /// INVITE, 200, ACK, media both ways, RTCP, BYE, 200: (ms, from, to, payload).
    pub(super) fn udp_timeline(&self) -> Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)> {
        let (c, s) = (self.caller, self.server);
        let rtcp = |a: SocketAddr| SocketAddr::new(a.ip(), a.port() + 1);
        vec![
            (0, c, s, self.invite()),
            (50, s, c, self.ok_invite()),
            (60, c, s, self.request("ACK", 1)),
            (
                100,
                self.caller_media,
                self.server_media,
                rtp(1, 101, &[5, 0x0a, 0, 160]),
            ),
            (
                120,
                self.caller_media,
                self.server_media,
                rtp(2, 101, &[5, 0x8a, 1, 64]),
            ),
            (
                130,
                self.server_media,
                self.caller_media,
                rtp(1, 0, &[0xff; 160]),
            ),
            (
                140,
                rtcp(self.caller_media),
                rtcp(self.server_media),
                rtcp_sr(),
            ),
            (1000, c, s, self.request("BYE", 2)),
            (1010, s, c, self.response(200, "2 BYE", "")),
        ]
    }
}

fn sdp(media: SocketAddr) -> String {
    let family = if media.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// An RTP packet (version 2).
pub(super) fn rtp(seq: u16, payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, payload_type];
    p.extend(seq.to_be_bytes());
    p.extend(1000u32.to_be_bytes());
    p.extend(0x1234_5678u32.to_be_bytes());
    p.extend(payload);
    p
}

fn rtcp_sr() -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend([0; 24]);
    p
}

/// An IP packet carrying one UDP datagram.
pub(super) fn ip_udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let builder = match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => PacketBuilder::ipv4(a.octets(), b.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(b)) => PacketBuilder::ipv6(a.octets(), b.octets(), 64),
        _ => panic!("one family per packet"),
    }
    .udp(from.port(), to.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("writing to a Vec");
    out
}

/// An IP packet carrying one TCP segment.
pub(super) fn ip_tcp(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (from.ip(), to.ip()) else {
        panic!("IPv4 only here")
    };
    let mut builder =
        PacketBuilder::ipv4(a.octets(), b.octets(), 64).tcp(from.port(), to.port(), seq, 65535);
    builder = if syn {
        builder.syn()
    } else {
        builder.ack(1).psh()
    };
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("writing to a Vec");
    out
}

/// The UDP datagram (header and payload) as IPv4 fragments of at most `chunk` payload bytes (a multiple
/// of 8), in order.
pub(super) fn ipv4_fragments(
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
    id: u16,
    chunk: usize,
) -> Vec<Vec<u8>> {
    let (IpAddr::V4(a), IpAddr::V4(b)) = (from.ip(), to.ip()) else {
        panic!("IPv4 only")
    };
    let whole = ip_udp(from, to, payload);
    let udp = &whole[20..];
    udp.chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let mut h = Ipv4Header::new(
                piece.len() as u16,
                64,
                IpNumber::UDP,
                a.octets(),
                b.octets(),
            )
            .expect("small");
            h.identification = id;
            h.more_fragments = (i + 1) * chunk < udp.len();
            h.fragment_offset =
                etherparse::IpFragOffset::try_new((i * chunk / 8) as u16).expect("in range");
            h.header_checksum = h.calc_header_checksum();
            let mut out = Vec::new();
            h.write(&mut out).expect("writing to a Vec");
            out.extend(piece);
            out
        })
        .collect()
}

/// The UDP datagram as IPv6 fragments (fragment extension header, RFC 8200 4.5), in order.
pub(super) fn ipv6_fragments(
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
    id: u32,
    chunk: usize,
) -> Vec<Vec<u8>> {
    let whole = ip_udp(from, to, payload);
    let udp = &whole[40..];
    udp.chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let mut out = whole[..40].to_vec();
            out[4..6].copy_from_slice(&((piece.len() + 8) as u16).to_be_bytes());
            out[6] = 44; // next header: fragment
            let more = u16::from((i + 1) * chunk < udp.len());
            out.extend([17, 0]);
            out.extend((((i * chunk / 8) as u16) << 3 | more).to_be_bytes());
            out.extend(id.to_be_bytes());
            out.extend(piece);
            out
        })
        .collect()
}

/// A link-layer frame around an IP packet.
pub(super) fn framed(link: u32, ip: &[u8]) -> Vec<u8> {
    let v6 = ip[0] >> 4 == 6;
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut f = match link {
        // Ethernet with an 802.1Q tag (VLAN 42).
        1 => [
            &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0, 42][..],
            &ethertype,
        ]
        .concat(),
        // BSD loopback: host byte order (little-endian here) for NULL, network order for LOOP.
        0 => (if v6 { 30u32 } else { 2 }).to_le_bytes().to_vec(),
        108 => (if v6 { 24u32 } else { 2 }).to_be_bytes().to_vec(),
        113 => [&[0, 0, 3, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0][..], &ethertype].concat(),
        276 => [
            &ethertype[..],
            &[0, 0, 0, 0, 0, 1, 3, 4, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat(),
        _ => Vec::new(),
    };
    f.extend(ip);
    f
}

/// A pcap file: `frames` are (time since the epoch, frame bytes).
pub(super) fn pcap(
    link: u32,
    big_endian: bool,
    nanos: bool,
    frames: &[(Duration, Vec<u8>)],
) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(w16(2));
    out.extend(w16(4));
    out.extend(w32(0));
    out.extend(w32(0));
    out.extend(w32(262_144));
    out.extend(w32(link));
    for (ts, data) in frames {
        let frac = if nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_micros()
        };
        out.extend(w32(ts.as_secs() as u32));
        out.extend(w32(frac));
        out.extend(w32(data.len() as u32));
        out.extend(w32(data.len() as u32));
        out.extend(data);
    }
    out
}

/// One pcapng block to write.
pub(super) enum Ng {
    /// An interface: link type and `if_tsresol` (None: the default, microseconds).
    Interface(u16, Option<u8>),
    /// An EPB: interface, raw timestamp (in that interface's units), frame.
    Packet(u32, u64, Vec<u8>),
    /// An SPB (interface 0, no timestamp).
    Simple(Vec<u8>),
    /// A block of a type the reader does not know.
    Unknown(u32),
}

/// A pcapng file of one section in the given byte order.
pub(super) fn pcapng(big_endian: bool, blocks: &[Ng]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        out.extend(w32(kind));
        out.extend(w32(len));
        out.extend(body);
        out.extend(vec![0; pad]);
        out.extend(w32(len));
    };
    let mut out = Vec::new();
    let mut shb = w32(0x1a2b_3c4d).to_vec();
    shb.extend(w16(1));
    shb.extend(w16(0));
    shb.extend(u64::MAX.to_le_bytes()); // section length unknown (-1)
    block(&mut out, 0x0a0d_0d0a, &shb);
    for b in blocks {
        match b {
            Ng::Interface(link, resol) => {
                let mut body = w16(*link).to_vec();
                body.extend(w16(0));
                body.extend(w32(262_144));
                if let Some(r) = resol {
                    body.extend(w16(9));
                    body.extend(w16(1));
                    body.extend([*r, 0, 0, 0]);
                    body.extend([0; 4]); // opt_endofopt
                }
                block(&mut out, 1, &body);
            }
            Ng::Packet(iface, ts, data) => {
                let mut body = w32(*iface).to_vec();
                body.extend(w32((ts >> 32) as u32));
                body.extend(w32(*ts as u32));
                body.extend(w32(data.len() as u32));
                body.extend(w32(data.len() as u32));
                body.extend(data);
                body.extend(vec![0; (4 - data.len() % 4) % 4]);
                block(&mut out, 6, &body);
            }
            Ng::Simple(data) => {
                let mut body = w32(data.len() as u32).to_vec();
                body.extend(data);
                block(&mut out, 3, &body);
            }
            Ng::Unknown(kind) => block(&mut out, *kind, &[1, 2, 3, 4, 5, 6, 7, 8]),
        }
    }
    out
}

/// A capture of `timeline` (ms after `t0`) with `link` framing, as a little-endian µs pcap.
pub(super) fn pcap_of(
    link: u32,
    t0: Duration,
    timeline: &[(u64, SocketAddr, SocketAddr, Vec<u8>)],
) -> Vec<u8> {
    let frames: Vec<(Duration, Vec<u8>)> = timeline
        .iter()
        .map(|(ms, from, to, payload)| {
            (
                t0 + Duration::from_millis(*ms),
                framed(link, &ip_udp(*from, *to, payload)),
            )
        })
        .collect();
    pcap(link, false, false, &frames)
}
