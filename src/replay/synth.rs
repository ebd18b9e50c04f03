//! Builds [`TraceCall`]s by hand from SIP text and RTP packets, as a capture of that call would hold
//! them: for tests of the replay and for tools that make traces without a network. It reads no file.
use std::net::SocketAddr;
use std::time::Duration;

use crate::media::codec::Law;
use crate::media::rtp::{self, RtpHeader};
use crate::replay::trace::{PacketKind, TraceCall, TracePacket, TraceTransport};

/// Writes one RTP packet.
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 12 + payload.len()];
    let header = RtpHeader {
        marker,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc,
    };
    let n = rtp::write(&mut buf, &header, payload).expect("buffer sized for header + payload");
    buf.truncate(n);
    buf
}

/// One audio packet (SSRC 0x1234).
pub fn audio_packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    rtp_packet(pt, false, seq, ts, 0x1234, payload)
}

/// The ten packets of one RFC 4733 key press as sip-tester's `dtmf_2833_*.pcap` hold them: seven with
/// growing duration (the first with the marker bit), then three end packets; all with timestamp `ts`,
/// sequence numbers from `seq`, 20 ms apart when sent.
pub fn event_packets(key: char, ts: u32, seq: u16, pt: u8) -> Vec<Vec<u8>> {
    let code = "0123456789*#ABCD"
        .find(key.to_ascii_uppercase())
        .unwrap_or(0) as u8;
    (0..10u16)
        .map(|i| {
            let end = i >= 7;
            let duration = 160 * (i.min(6) + 1);
            let payload = [
                code,
                if end { 0x80 | 10 } else { 10 },
                (duration >> 8) as u8,
                duration as u8,
            ];
            rtp_packet(pt, i == 0, seq.wrapping_add(i), ts, 0x5678, &payload)
        })
        .collect()
}

/// `ms` of the DTMF tone of `key` in G.711 (`law`), cut into 20 ms payloads.
pub fn tone_payloads(key: char, ms: u32, law: Law) -> Vec<Vec<u8>> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let pos = "123A456B789C*0#D"
        .find(key.to_ascii_uppercase())
        .unwrap_or(0);
    let (r, c) = (ROWS[pos / 4], COLS[pos % 4]);
    let n = (ms * 8) as usize;
    let pcm: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let v = 6000.0 * (2.0 * std::f64::consts::PI * r * t).sin()
                + 6000.0 * (2.0 * std::f64::consts::PI * c * t).sin();
            v as i16
        })
        .collect();
    pcm.chunks(160)
        .map(|chunk| {
            let mut out = vec![0u8; chunk.len()];
            law.encode_into(chunk, &mut out);
            out
        })
        .collect()
}

/// A call being written: the caller at 192.0.2.10 (SIP 5060, RTP 49170) calls the server at
/// 192.0.2.1 (SIP 5060, RTP 10000). Methods add packets at given times from the first INVITE.
pub struct CallBuilder {
    dialed: String,
    call_id: String,
    transport: TraceTransport,
    caller: SocketAddr,
    server: SocketAddr,
    caller_rtp: SocketAddr,
    server_rtp: SocketAddr,
    cseq: u32,
    branch: u32,
    packets: Vec<TracePacket>,
}

const FROM: &str = "\"Replay\" <sip:+441632960001@192.0.2.10>;tag=orig-from";
const TO_TAG: &str = "orig-to";

impl CallBuilder {
    /// A call over UDP to `dialed`.
    pub fn udp(dialed: &str) -> CallBuilder {
        CallBuilder {
            dialed: dialed.to_owned(),
            call_id: format!("orig-{dialed}@192.0.2.10"),
            transport: TraceTransport::Udp,
            caller: "192.0.2.10:5060".parse().expect("literal"),
            server: "192.0.2.1:5060".parse().expect("literal"),
            caller_rtp: "192.0.2.10:49170".parse().expect("literal"),
            server_rtp: "192.0.2.1:10000".parse().expect("literal"),
            cseq: 1,
            branch: 1,
            packets: Vec::new(),
        }
    }

    /// The same over TCP.
    pub fn tcp(dialed: &str) -> CallBuilder {
        CallBuilder {
            transport: TraceTransport::Tcp,
            ..CallBuilder::udp(dialed)
        }
    }

    /// Sets the Call-ID.
    pub fn call_id(&mut self, id: &str) -> &mut Self {
        self.call_id = id.to_owned();
        self
    }

    fn via(&self) -> String {
        let t = match self.transport {
            TraceTransport::Udp => "UDP",
            TraceTransport::Tcp => "TCP",
        };
        format!(
            "SIP/2.0/{t} {};branch=z9hG4bK-orig-{}",
            self.caller, self.branch
        )
    }

    /// The caller's SDP offer (PCMU + telephone-event 101).
    pub fn offer(&self) -> String {
        format!(
            "v=0\r\no=caller 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n",
            ip = self.caller_rtp.ip(),
            port = self.caller_rtp.port()
        )
    }

    fn answer(&self) -> String {
        format!(
            "v=0\r\no=server 2 2 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            ip = self.server_rtp.ip(),
            port = self.server_rtp.port()
        )
    }

    fn push_sip(&mut self, at: Duration, from_caller: bool, text: String) {
        let (from, to) = if from_caller {
            (self.caller, self.server)
        } else {
            (self.server, self.caller)
        };
        self.packets.push(TracePacket {
            at,
            from,
            to,
            kind: PacketKind::Sip(text.into_bytes()),
        });
    }

    fn request(
        &self,
        method: &str,
        cseq: u32,
        to_tag: bool,
        extra: &str,
        ct: &str,
        body: &str,
    ) -> String {
        let tag = if to_tag {
            format!(";tag={TO_TAG}")
        } else {
            String::new()
        };
        let ct = if ct.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ct}\r\n")
        };
        format!(
            "{method} sip:{d}@{s} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {FROM}\r\nTo: <sip:{d}@{s}>{tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:+441632960001@{c}>\r\n{extra}{ct}Content-Length: {len}\r\n\r\n{body}",
            d = self.dialed,
            s = self.server,
            via = self.via(),
            cid = self.call_id,
            c = self.caller,
            len = body.len(),
        )
    }

    /// The INVITE with the offer (called again with nothing in between: its retransmission).
    pub fn invite(&mut self, at: Duration) -> &mut Self {
        let text = self.request("INVITE", 1, false, "", "application/sdp", &self.offer());
        self.push_sip(at, true, text);
        self
    }

    /// A response of the server to the INVITE (with the answer when 2xx or 183).
    pub fn response(&mut self, at: Duration, code: u16) -> &mut Self {
        let body = if code == 183 || (200..300).contains(&code) {
            self.answer()
        } else {
            String::new()
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        let tag = if code > 100 {
            format!(";tag={TO_TAG}")
        } else {
            String::new()
        };
        let text = format!(
            "SIP/2.0 {code} Whatever\r\nVia: {via}\r\nFrom: {FROM}\r\nTo: <sip:{d}@{s}>{tag}\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:{s}>\r\n{ct}Content-Length: {len}\r\n\r\n{body}",
            via = self.via(),
            d = self.dialed,
            s = self.server,
            cid = self.call_id,
            len = body.len(),
        );
        self.push_sip(at, false, text);
        self
    }

    /// The server's 200 OK with its answer.
    pub fn ok(&mut self, at: Duration) -> &mut Self {
        self.response(at, 200)
    }

    /// The caller's ACK of the 2xx.
    pub fn ack(&mut self, at: Duration) -> &mut Self {
        self.branch += 1;
        let text = self.request("ACK", 1, true, "", "", "");
        self.push_sip(at, true, text);
        self
    }

    /// An in-dialog request of the caller (INFO, BYE, UPDATE, …) with an optional body.
    pub fn in_dialog(&mut self, at: Duration, method: &str, ct: &str, body: &str) -> &mut Self {
        self.branch += 1;
        self.cseq += 1;
        let text = self.request(method, self.cseq, true, "", ct, body);
        self.push_sip(at, true, text);
        self
    }

    /// A SIP INFO key (`application/dtmf-relay`).
    pub fn info(&mut self, at: Duration, key: char) -> &mut Self {
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.in_dialog(at, "INFO", "application/dtmf-relay", &body)
    }

    /// The caller's BYE (a second call with the same state is its retransmission).
    pub fn bye(&mut self, at: Duration) -> &mut Self {
        let retransmit = self.packets.last().is_some_and(|p| match &p.kind {
            PacketKind::Sip(b) => b.starts_with(b"BYE "),
            _ => false,
        });
        if retransmit {
            let text = self.request("BYE", self.cseq, true, "", "", "");
            self.push_sip(at, true, text);
            return self;
        }
        self.in_dialog(at, "BYE", "", "")
    }

    /// The caller's CANCEL of the INVITE.
    pub fn cancel(&mut self, at: Duration) -> &mut Self {
        let text = self.request("CANCEL", 1, false, "", "", "");
        self.push_sip(at, true, text);
        self
    }

    /// One RTP packet from the caller's media address to the server's.
    pub fn caller_rtp(&mut self, at: Duration, packet: Vec<u8>) -> &mut Self {
        self.packets.push(TracePacket {
            at,
            from: self.caller_rtp,
            to: self.server_rtp,
            kind: PacketKind::Rtp(packet),
        });
        self
    }

    /// One RTP packet from the server to the caller (a prompt).
    pub fn server_rtp(&mut self, at: Duration, packet: Vec<u8>) -> &mut Self {
        self.packets.push(TracePacket {
            at,
            from: self.server_rtp,
            to: self.caller_rtp,
            kind: PacketKind::Rtp(packet),
        });
        self
    }

    /// An RFC 4733 key press (ten packets, 20 ms apart) starting at `at`, timestamp `ts`.
    pub fn key_rfc4733(&mut self, at: Duration, key: char, ts: u32) -> &mut Self {
        for (i, p) in event_packets(key, ts, 100, 101).into_iter().enumerate() {
            self.caller_rtp(at + Duration::from_millis(20 * i as u64), p);
        }
        self
    }

    /// The call.
    pub fn build(&self) -> TraceCall {
        let mut packets = self.packets.clone();
        packets.sort_by_key(|p| p.at);
        TraceCall {
            call_id: self.call_id.clone(),
            caller: self.caller,
            server: self.server,
            transport: self.transport,
            start: None,
            leg_of: None,
            packets,
        }
    }
}
