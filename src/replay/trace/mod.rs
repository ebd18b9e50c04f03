//! Trace reading: turns the bytes of a pcap, pcapng or SIPp `-trace_msg` log into calls — each call's SIP
//! messages (both directions) and RTP, with capture times. It does not replay, rewrite or judge anything.
//!
//! The reading is pure (bytes in, calls out: no files, sockets or clock) and split by layer:
//! `container` (pcap, pcapng) → `link` (Ethernet, SLL, SLL2, raw IP, BSD loopback) → `ip`
//! (IPv4/IPv6, fragments) → `decode` (UDP; TCP via `tcp` stream reassembly) → `calls` (Call-ID,
//! caller/server, RTP by the SDP's audio addresses while the call lives). SIPp `-trace_msg` logs enter at `calls` through `sipp_log`. A damaged
//! packet is skipped; any input gives calls or an error, never a panic.
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

mod calls;
mod container;
mod decode;
mod ip;
mod link;
mod sip;
mod sipp_log;
mod tcp;
#[cfg(test)]
mod tests;

/// Everything found in one trace file.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Every call (by Call-ID) that has an INVITE, in the order their first INVITE was captured.
    pub calls: Vec<TraceCall>,
    /// Wall time of the first packet of the trace, when the format records one.
    pub start: Option<DateTime<Utc>>,
}

/// One call of a trace: its Call-ID's SIP and the RTP/RTCP between the addresses its SDP named.
#[derive(Clone, Debug)]
pub struct TraceCall {
    /// The Call-ID as captured.
    pub call_id: String,
    /// Who sent the first INVITE: the caller, whose side a replay plays.
    pub caller: SocketAddr,
    /// Where the first INVITE went: the server (helpline, another PBX, a SIPp UAS).
    pub server: SocketAddr,
    /// The transport of the first INVITE.
    pub transport: TraceTransport,
    /// Wall time of the first INVITE, when the format records one.
    pub start: Option<DateTime<Utc>>,
    /// Set when this call's INVITE was sent by the server of another call of the trace (an agent or
    /// transfer leg helpline placed): the Call-ID of that call. Such legs are not replayed.
    pub leg_of: Option<String>,
    /// SIP and RTP of this call in capture order, times relative to the first INVITE.
    pub packets: Vec<TracePacket>,
}

/// How the call's SIP travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceTransport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// One captured packet of a call.
#[derive(Clone, Debug)]
pub struct TracePacket {
    /// Capture time, relative to the call's first INVITE (packets before it have none: they are dropped).
    pub at: Duration,
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// What it carried.
    pub kind: PacketKind,
}

/// The payload of a captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// One whole SIP message (reassembled from IP fragments or a TCP stream, framed by Content-Length).
    Sip(Vec<u8>),
    /// One RTP packet (the UDP payload) between the media addresses the call's SDP named.
    Rtp(Vec<u8>),
    /// One RTCP packet (to or from RTP port + 1).
    Rtcp(Vec<u8>),
}

/// Why a trace could not be read at all (a damaged packet inside a readable file is skipped instead).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Neither pcap, pcapng nor a SIPp message log.
    #[error("not a pcap, pcapng or SIPp message log (first bytes {0:02x?})")]
    UnknownFormat(Vec<u8>),
    /// The file's structure is broken beyond the point of reading.
    #[error("{0}")]
    Malformed(String),
    /// A link type the reader does not know.
    #[error("unsupported link type {0} (Ethernet, Linux cooked SLL/SLL2, raw IP and BSD loopback are read)")]
    UnsupportedLinkType(u32),
}

/// Reads a whole trace: sniffs the format (pcap, pcapng, SIPp `-trace_msg` log), finds every call.
///
/// Pure: the caller reads the file. Packets that cannot be decoded are skipped; an error means the file
/// as a whole is not a trace this reader knows.
pub fn read_trace(bytes: &[u8]) -> Result<Trace, TraceError> {
    let (captured, first) = if container::is_pcap(bytes) || container::is_pcapng(bytes) {
        let frames = if container::is_pcap(bytes) {
            container::read_pcap(bytes)?
        } else {
            container::read_pcapng(bytes)?
        };
        let first = frames.iter().map(|f| f.ts).min();
        (decode::decode(frames)?, first)
    } else if sipp_log::is_sipp_log(bytes) {
        let captured = sipp_log::read(bytes);
        let first = captured.first().map(|c| c.ts);
        (captured, first)
    } else {
        return Err(TraceError::UnknownFormat(
            bytes.iter().take(8).copied().collect(),
        ));
    };
    Ok(Trace {
        calls: calls::build(&captured),
        start: first.and_then(calls::wall_time),
    })
}
