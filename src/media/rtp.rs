//! RTP fixed-header reading and writing (RFC 3550 §5.1), and the hand-over point of an outgoing stream
//! ([`RtpContinuation`]); it does not pace, reorder or track streams.
//!
//! The header is written by hand rather than with `rtp_rs::RtpPacketBuilder`, because the builder's
//! `build()` returns a fresh `Vec` per packet and the media hot path must not allocate per packet.
//! Reading is hand-written too so that every length check is visible here: nothing that arrives from the
//! network can make these functions panic.

use std::time::Instant;

use thiserror::Error;

/// Length of the fixed RTP header without CSRCs (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// Why an incoming datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the header it announces.
    #[error("packet too short for its rtp header")]
    TooShort,
    /// Version field is not 2.
    #[error("rtp version {0} is not 2")]
    BadVersion(u8),
    /// The padding count is zero or runs past the header.
    #[error("rtp padding length is invalid")]
    BadPadding,
    /// The caller's buffer cannot hold the packet being written.
    #[error("output buffer too small for the rtp packet")]
    BufferTooSmall,
}

/// The fields of an RTP header helpline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit (for audio: first packet of a talkspurt, RFC 3551 §4.1).
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp in clock-rate units (8 kHz here).
    pub timestamp: u32,
    /// Synchronisation source identifier.
    pub ssrc: u32,
}

/// Where an outgoing RTP stream stands, so that another writer can continue it without the receiver
/// noticing a new stream: a [`crate::media::session::MediaSession`] hands it to a
/// [`crate::media::bridge::Relay`] when a call is bridged (and a relay hands it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpContinuation {
    /// SSRC the receiver knows.
    pub ssrc: u32,
    /// Sequence number of the next packet (the last one sent + 1).
    pub next_sequence: u16,
    /// Timestamp of the next packet if it is sent at `at`.
    pub timestamp: u32,
    /// The instant `timestamp` belongs to: the slot after the last packet sent, or the hand-over time
    /// if that slot has passed.
    pub at: Instant,
}

impl RtpContinuation {
    /// The timestamp for a packet sent at `now` (8 kHz clock): `timestamp` if `now` is not after `at`
    /// (never ahead of the slot, so never faster than real time), else moved on by the samples elapsed
    /// since `at`, so that it keeps running with wall time across a silence.
    pub fn timestamp_at(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.at);
        let samples = elapsed.as_nanos() * 8_000 / 1_000_000_000;
        self.timestamp.wrapping_add(samples as u32)
    }
}

/// Parses an RTP packet into its header and payload, skipping CSRCs, the header extension and padding.
pub fn parse(packet: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    let fixed = packet.get(..RTP_HEADER_LEN).ok_or(RtpError::TooShort)?;
    let version = fixed[0] >> 6;
    // RFC 3550 §5.1: "This field identifies the version of RTP ... (2)".
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = fixed[0] & 0x20 != 0;
    let extension = fixed[0] & 0x10 != 0;
    let csrc_count = usize::from(fixed[0] & 0x0F);
    let header = RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7F,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
    };
    let mut start = RTP_HEADER_LEN + 4 * csrc_count;
    if extension {
        // RFC 3550 §5.3.1: 16-bit profile word, 16-bit length in 32-bit words, then the data.
        let ext = packet.get(start..start + 4).ok_or(RtpError::TooShort)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if padding {
        // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        let pad = usize::from(*packet.last().ok_or(RtpError::TooShort)?);
        if pad == 0 || pad > end.saturating_sub(start) {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    let payload = packet.get(start..end).ok_or(RtpError::TooShort)?;
    Ok((header, payload))
}

/// Writes a 12-byte RTP header followed by `payload` into `buf`; returns the packet length.
pub fn write(buf: &mut [u8], header: &RtpHeader, payload: &[u8]) -> Result<usize, RtpError> {
    let len = RTP_HEADER_LEN + payload.len();
    let out = buf.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
    out[0] = 0x80; // version 2, no padding, no extension, no CSRC
    out[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7F);
    out[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    out[RTP_HEADER_LEN..].copy_from_slice(payload);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 7,
        };
        let mut buf = [0u8; 64];
        let n = write(&mut buf, &h, &[1, 2, 3]).unwrap();
        assert_eq!(n, 15);
        let (back, payload) = parse(&buf[..n]).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, &[1, 2, 3]);
    }

    #[test]
    fn parses_a_captured_telephone_event_packet() {
        // From sip-tester's dtmf_2833_8.pcap, first packet.
        let pkt = [
            0x80, 0xe5, 0x20, 0x3d, 0x00, 0x00, 0xed, 0x80, 0x0e, 0x05, 0x38, 0x4e, 0x08, 0x0a,
            0x00, 0x00,
        ];
        let (h, payload) = parse(&pkt).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp),
            (101, 8253, 60800)
        );
        assert_eq!(payload, &[0x08, 0x0a, 0x00, 0x00]);
    }

    #[test]
    fn rejects_short_wrong_version_and_bad_padding() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x40; 12]).map(|_| ()), Err(RtpError::BadVersion(1)));
        let mut p = [0u8; 14];
        p[0] = 0xA0;
        p[13] = 9; // pads more than the payload
        assert_eq!(parse(&p).map(|_| ()), Err(RtpError::BadPadding));
        let mut c = [0u8; 12];
        c[0] = 0x8F; // 15 CSRCs announced, none present
        assert_eq!(parse(&c).map(|_| ()), Err(RtpError::TooShort));
        let mut e = [0u8; 16];
        e[0] = 0x90;
        e[14] = 0xFF; // extension longer than the packet
        assert_eq!(parse(&e).map(|_| ()), Err(RtpError::TooShort));
    }

    #[test]
    fn write_reports_small_buffer() {
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 1,
            ssrc: 1,
        };
        assert_eq!(
            write(&mut [0u8; 20], &h, &[0; 160]),
            Err(RtpError::BufferTooSmall)
        );
    }
}
