//! RTCP for one RTP session (RFC 3550 §6): statistics of the peer's stream (A.1/A.3 loss, A.8 jitter),
//! our sender counters, the peer's reports about our stream with the round trip from LSR/DLSR, the
//! report schedule (§6.3.1), and SR/RR + SDES CNAME (+ BYE) on the wire; sans-IO: time is an argument.
//! It does not pick addresses or sockets (`MediaSession` and the media engine do) and keeps no history.
//!
//! The wire format is written by hand rather than with webrtc-rs's `rtcp` crate: that crate brings
//! webrtc-util (tokio, nix, a second `rand`) and unmarshals into boxed trait objects, while helpline
//! needs four packet types written into the media engine's one reused buffer.
//!
//! Per RTP packet ([`Rtcp::on_rtp_received`], [`Rtcp::on_rtp_sent`]) only integer arithmetic on this
//! struct happens: no allocation, no lock. Simplifications, each harmless with two participants:
//! no probation on a new source (A.1's `MIN_SEQUENTIAL`: the first packet starts the statistics), no
//! timer reconsideration (§6.3.6) and no e−3/2 compensation; the interval is the configured one
//! (RFC 3550's 5 s by default) times a random factor in [0.5, 1.5), the first report after half of it
//! from [`Rtcp::start`] (the session knows its peer) or the first RTP packet either way.
//! A compound packet that does not begin with SR or RR (A.2), or whose lengths do not add up, is
//! counted as malformed and ignored whole (reduced-size RTCP, RFC 5506, is not negotiated).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::media::rtp::RtpHeader;

/// G.711 and telephone-event both count 8,000 timestamp units a second.
pub const CLOCK_RATE: u64 = 8_000;

/// RFC 3550 §6.2: the recommended minimum report interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// RFC 3550 A.1: a forward jump larger than this is a restarted stream, not loss.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a backward jump larger than this is a restarted stream, not a late packet.
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// How far below zero (1/65536 s: 1 ms) a computed round trip may be and still count, as zero.
const RTT_TOLERANCE: i32 = 66;

/// Length of the CNAME we send (hex digits of 64 random bits, RFC 7022 §4.2: a per-session random
/// CNAME that says nothing about the host).
pub const CNAME_LEN: usize = 16;

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const PT_BYE: u8 = 203;
const SDES_CNAME: u8 = 1;

/// Maps the monotonic clock onto NTP time (RFC 3550 §4: 32.32 fixed point seconds since 1900) for
/// the sender reports. The shell builds one from the wall clock; the round trip only needs it to
/// be the same clock for our reports and their echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpClock {
    /// A monotonic instant …
    pub instant: Instant,
    /// … and its NTP timestamp.
    pub ntp: u64,
}

/// Seconds from 1900 (NTP's epoch) to 1970 (Unix's).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A duration as NTP 32.32 fixed point.
fn ntp_units(d: Duration) -> u64 {
    (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

impl NtpClock {
    /// The clock whose `instant` is the Unix time `since_unix`.
    pub fn from_unix(instant: Instant, since_unix: Duration) -> NtpClock {
        NtpClock {
            instant,
            ntp: ntp_units(since_unix).wrapping_add(NTP_UNIX_OFFSET << 32),
        }
    }

    /// The NTP timestamp of `at`.
    pub fn at(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(d) => self.ntp.wrapping_add(ntp_units(d)),
            None => self.ntp.wrapping_sub(ntp_units(self.instant - at)),
        }
    }

    /// The middle 32 bits of [`NtpClock::at`], the unit of LSR and DLSR (1/65536 s).
    pub fn short(&self, at: Instant) -> u32 {
        (self.at(at) >> 16) as u32
    }
}

/// A duration in 1/65536 s (DLSR, round trip).
fn short_units(d: Duration) -> u32 {
    (ntp_units(d) >> 16).min(u64::from(u32::MAX)) as u32
}

/// Why an RTCP datagram was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// Shorter than a header, or a packet whose length runs past the datagram (or leaves bytes over).
    #[error("rtcp packet lengths do not add up")]
    BadLength,
    /// Version field is not 2.
    #[error("rtcp version is not 2")]
    BadVersion,
    /// The compound does not start with SR or RR (RFC 3550 A.2).
    #[error("rtcp compound does not start with a report")]
    NotAReport,
    /// A report announces more blocks than it holds.
    #[error("rtcp report shorter than its blocks")]
    ShortReport,
    /// The caller's buffer cannot hold the report.
    #[error("output buffer too small for the rtcp report")]
    BufferTooSmall,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of its packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp from that source (0: none yet).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8; 24]) -> ReportBlock {
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // 24-bit two's complement, sign-extended.
        let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
        ReportBlock {
            ssrc: u32_at(0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            highest_seq: u32_at(8),
            jitter: u32_at(12),
            lsr: u32_at(16),
            dlsr: u32_at(20),
        }
    }

    fn write(&self, out: &mut Writer<'_>) -> Option<()> {
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7F_FFFF)
            .to_be_bytes();
        out.put(&self.ssrc.to_be_bytes())?;
        out.put(&[self.fraction_lost, lost[1], lost[2], lost[3]])?;
        out.put(&self.highest_seq.to_be_bytes())?;
        out.put(&self.jitter.to_be_bytes())?;
        out.put(&self.lsr.to_be_bytes())?;
        out.put(&self.dlsr.to_be_bytes())
    }
}

/// The sender info of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp of the report.
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent since the start (mod 2³²).
    pub packets: u32,
    /// Payload octets sent since the start (mod 2³²).
    pub octets: u32,
}

/// One packet of a compound, as [`parse`] hands it out; other packet types (SDES, APP, feedback) are
/// [`RtcpPacket::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// A sender report (SR) or, without `sender`, a receiver report (RR).
    Report {
        /// The reporter's SSRC.
        ssrc: u32,
        /// Its sender info (SR only).
        sender: Option<SenderInfo>,
        /// Its report blocks (24 bytes each); read them with [`blocks`].
        blocks: &'a [u8],
    },
    /// A BYE: the sources leaving.
    Bye,
    /// Any other packet type.
    Other(u8),
}

/// The report blocks of a [`RtcpPacket::Report`].
pub fn blocks(raw: &[u8]) -> impl Iterator<Item = ReportBlock> + '_ {
    raw.chunks_exact(24).filter_map(|c| {
        let b: &[u8; 24] = c.try_into().ok()?;
        Some(ReportBlock::parse(b))
    })
}

/// Checks a compound RTCP datagram (RFC 3550 A.2: version 2 everywhere, first packet SR or RR,
/// lengths adding up to the datagram) and hands each packet to `each`. Nothing is handed out unless
/// the whole datagram is valid. Never panics, never allocates.
pub fn parse<'a>(
    datagram: &'a [u8],
    mut each: impl FnMut(RtcpPacket<'a>),
) -> Result<(), RtcpError> {
    // First pass: the lengths and headers; second pass: the contents.
    walk(datagram, |_, _, _| Ok(()))?;
    walk(datagram, |pt, count, body| {
        let packet = match pt {
            PT_SR | PT_RR => {
                let info = if pt == PT_SR { 20 } else { 0 };
                let fixed = 4 + info;
                let need = fixed + 24 * usize::from(count);
                let body = body.get(..need).ok_or(RtcpError::ShortReport)?;
                let w =
                    |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
                let sender = (pt == PT_SR).then(|| SenderInfo {
                    ntp: (u64::from(w(4)) << 32) | u64::from(w(8)),
                    rtp_timestamp: w(12),
                    packets: w(16),
                    octets: w(20),
                });
                RtcpPacket::Report {
                    ssrc: w(0),
                    sender,
                    blocks: &body[fixed..need],
                }
            }
            PT_BYE => RtcpPacket::Bye,
            other => RtcpPacket::Other(other),
        };
        each(packet);
        Ok(())
    })
}

/// Walks the packets of a compound: (packet type, count field, body after the 4-byte header).
fn walk<'a>(
    datagram: &'a [u8],
    mut each: impl FnMut(u8, u8, &'a [u8]) -> Result<(), RtcpError>,
) -> Result<(), RtcpError> {
    let mut rest = datagram;
    let mut first = true;
    if rest.len() < 4 {
        return Err(RtcpError::BadLength);
    }
    while !rest.is_empty() {
        let header = rest.get(..4).ok_or(RtcpError::BadLength)?;
        if header[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let pt = header[1];
        if first && pt != PT_SR && pt != PT_RR {
            return Err(RtcpError::NotAReport);
        }
        first = false;
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let packet = rest.get(..len).ok_or(RtcpError::BadLength)?;
        let mut body = &packet[4..];
        if header[0] & 0x20 != 0 {
            // Padding: the last octet counts the padding octets, itself included.
            let pad = usize::from(*packet.last().ok_or(RtcpError::BadLength)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadLength);
            }
            body = &body[..body.len() - pad];
        }
        each(pt, header[0] & 0x1F, body)?;
        rest = &rest[len..];
    }
    Ok(())
}

/// Bounds-checked writer into the caller's buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(bytes.len())?;
        self.buf.get_mut(self.pos..end)?.copy_from_slice(bytes);
        self.pos = end;
        Some(())
    }

    /// Writes a packet header whose length is filled in by [`Writer::finish`].
    fn header(&mut self, count: u8, pt: u8) -> Option<usize> {
        let at = self.pos;
        self.put(&[0x80 | (count & 0x1F), pt, 0, 0])?;
        Some(at)
    }

    fn finish(&mut self, header_at: usize) {
        let words = ((self.pos - header_at) / 4).saturating_sub(1) as u16;
        self.buf[header_at + 2..header_at + 4].copy_from_slice(&words.to_be_bytes());
    }
}

/// Writes one compound: SR (with `sender`) or RR with at most one block, SDES CNAME, and a BYE if
/// asked. Returns its length.
pub fn write_compound(
    buf: &mut [u8],
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<ReportBlock>,
    cname: &[u8],
    bye: bool,
) -> Result<usize, RtcpError> {
    let mut w = Writer { buf, pos: 0 };
    write_parts(&mut w, ssrc, sender, block, cname, bye).ok_or(RtcpError::BufferTooSmall)?;
    Ok(w.pos)
}

fn write_parts(
    w: &mut Writer<'_>,
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<ReportBlock>,
    cname: &[u8],
    bye: bool,
) -> Option<()> {
    let count = u8::from(block.is_some());
    let at = w.header(count, if sender.is_some() { PT_SR } else { PT_RR })?;
    w.put(&ssrc.to_be_bytes())?;
    if let Some(s) = sender {
        w.put(&s.ntp.to_be_bytes())?;
        w.put(&s.rtp_timestamp.to_be_bytes())?;
        w.put(&s.packets.to_be_bytes())?;
        w.put(&s.octets.to_be_bytes())?;
    }
    if let Some(b) = block {
        b.write(w)?;
    }
    w.finish(at);
    // SDES (§6.5): one chunk, the CNAME item, a null item, padding to 32 bits.
    let at = w.header(1, PT_SDES)?;
    w.put(&ssrc.to_be_bytes())?;
    let cname = &cname[..cname.len().min(255)];
    w.put(&[SDES_CNAME, cname.len() as u8])?;
    w.put(cname)?;
    let items = 2 + cname.len();
    let pad = 4 - items % 4; // at least one zero octet ends the item list
    w.put(&[0u8; 4][..pad])?;
    w.finish(at);
    if bye {
        let at = w.header(1, PT_BYE)?;
        w.put(&ssrc.to_be_bytes())?;
        w.finish(at);
    }
    Some(())
}

/// Statistics of one incoming stream (RFC 3550 A.1 sequence tracking, A.3 loss, A.8 jitter).
#[derive(Debug, Clone, Copy)]
pub struct ReceiverStats {
    ssrc: u32,
    max_seq: u16,
    /// Shifted count of sequence number wraps (A.1's `cycles`).
    cycles: u32,
    base_seq: u32,
    /// The sequence number after a large jump; the next packet with it restarts the stream.
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// The last audio packet's transit time (arrival minus RTP timestamp, timestamp units).
    transit: Option<u32>,
    /// Interarrival jitter × 16 (A.8's integer form).
    jitter16: u32,
}

impl ReceiverStats {
    /// Statistics starting at the first packet of `ssrc`, numbered `seq`.
    pub fn new(ssrc: u32, seq: u16) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: RTP_SEQ_MOD + 1,
            received: 1,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter16: 0,
        }
    }

    /// The source.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// A.1 `update_seq` for every packet after the first; false when the packet was set aside (a jump
    /// too large to be a gap, until the next packet confirms the new numbering).
    pub fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: a restart if the next packet follows it, else ignored.
            if u32::from(seq) == self.bad_seq {
                let transit = self.transit;
                let jitter16 = self.jitter16;
                *self = ReceiverStats::new(self.ssrc, seq);
                self.transit = transit;
                self.jitter16 = jitter16;
                return true;
            }
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return false;
        }
        // Else a duplicate or reordered packet: counted, nothing else changes.
        self.received += 1;
        true
    }

    /// A.8: one audio packet with RTP timestamp `ts` arrived at `arrival` (timestamp units of the
    /// receiver's clock, any fixed origin).
    pub fn update_jitter(&mut self, arrival: u32, ts: u32) {
        let transit = arrival.wrapping_sub(ts);
        if let Some(prev) = self.transit {
            let d = transit.wrapping_sub(prev) as i32;
            let d = d.unsigned_abs();
            // J += (|D| − J) / 16, in units of 1/16 (A.8's integer form).
            self.jitter16 = self
                .jitter16
                .wrapping_add(d)
                .wrapping_sub((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Extended highest sequence number received (cycles + highest).
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected from the first to the highest sequence number (A.3).
    pub fn expected(&self) -> u64 {
        u64::from(self.extended_max().wrapping_sub(self.base_seq)) + 1
    }

    /// Packets received (duplicates included, as A.3 counts them).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost (A.3; negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// The loss fraction since the previous call (A.3), in 1/256; starts the next interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval as u64 * 256) / expected_interval).min(255) as u8
        }
    }
}

/// What the peer last reported about our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteReport {
    /// Fraction lost in its last interval, 1/256.
    pub fraction_lost: u8,
    /// Our packets it never received, since the start.
    pub cumulative_lost: i32,
    /// Its interarrival jitter of our stream, timestamp units.
    pub jitter: u32,
}

/// Why a [`RtcpStats`] snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportCause {
    /// We sent a report (our view of the peer's stream is fresh).
    Sent,
    /// The peer's report arrived (its view of ours is fresh).
    Received,
}

/// One leg's RTCP statistics at a moment: what the CDR and the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpStats {
    /// Why it was taken.
    pub cause: ReportCause,
    /// Our SSRC.
    pub ssrc: u32,
    /// RTP packets we sent (prompts and relayed audio).
    pub packets_sent: u64,
    /// RTP packets we accepted from the peer.
    pub packets_received: u64,
    /// The peer's packets that never arrived, as we count them (A.3, over every source it used).
    pub lost: i64,
    /// Our interarrival jitter of its stream, timestamp units (8 kHz).
    pub jitter: u32,
    /// The peer's last report about our stream.
    pub remote: Option<RemoteReport>,
    /// The last round trip its reports allowed (LSR/DLSR of our SR).
    pub rtt: Option<Duration>,
    /// Compound packets we sent.
    pub reports_sent: u32,
    /// Valid compound packets we received.
    pub reports_received: u32,
    /// Datagrams on the RTCP port we ignored as malformed.
    pub malformed: u32,
    /// Of `lost`, how much is new since the previous snapshot [`Rtcp::snapshot`] took (0 when it went
    /// down: duplicates, a restarted stream); for counters that must not count a loss twice.
    pub new_lost: u64,
    /// Likewise for the peer's cumulative loss of our stream.
    pub new_remote_lost: u64,
}

/// One session's RTCP state (see the module doc).
#[derive(Debug)]
pub struct Rtcp {
    interval: Duration,
    rng: SmallRng,
    cname: [u8; CNAME_LEN],
    /// Origin of our arrival clock for jitter.
    epoch: Instant,
    receiver: Option<ReceiverStats>,
    /// Loss counted for sources the peer used before its current one.
    lost_before: i64,
    packets_received: u64,
    packets_sent: u64,
    octets_sent: u64,
    /// The last RTP packet we sent: its sampling instant and timestamp.
    last_sent: Option<(Instant, u32)>,
    /// The peer's last SR: its NTP middle bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
    remote: Option<RemoteReport>,
    rtt: Option<Duration>,
    next_report: Option<Instant>,
    reports_sent: u32,
    reports_received: u32,
    malformed: u32,
    /// The highest `lost` and remote loss a snapshot has handed out.
    counted_lost: i64,
    counted_remote_lost: i64,
}

impl Rtcp {
    /// Fresh state: reports every `interval` (randomised), the first once media starts.
    pub fn new(now: Instant, interval: Duration, seed: u64) -> Rtcp {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x7274_6370);
        let mut cname = [0u8; CNAME_LEN];
        let bits: u64 = rng.gen();
        for (i, c) in cname.iter_mut().enumerate() {
            *c = b"0123456789abcdef"[((bits >> (4 * i)) & 0xF) as usize];
        }
        Rtcp {
            interval: interval.max(Duration::from_millis(1)),
            rng,
            cname,
            epoch: now,
            receiver: None,
            lost_before: 0,
            packets_received: 0,
            packets_sent: 0,
            octets_sent: 0,
            last_sent: None,
            last_sr: None,
            remote: None,
            rtt: None,
            next_report: None,
            reports_sent: 0,
            reports_received: 0,
            malformed: 0,
            counted_lost: 0,
            counted_remote_lost: 0,
        }
    }

    /// Our CNAME.
    pub fn cname(&self) -> &[u8] {
        &self.cname
    }

    fn randomised(&mut self, base: Duration) -> Duration {
        base.mul_f64(self.rng.gen_range(0.5..1.5))
    }

    /// The session has begun (a remote to report to, or a packet either way): the first report is
    /// scheduled if none is.
    pub fn start(&mut self, now: Instant) {
        if self.next_report.is_none() {
            let first = self.randomised(self.interval / 2);
            self.next_report = Some(now + first);
        }
    }

    /// One RTP packet accepted from the peer at `now`; `audio` says whether it counts for jitter
    /// (telephone-event packets repeat their event's timestamp, RFC 4733 §2.3.1).
    pub fn on_rtp_received(&mut self, now: Instant, h: &RtpHeader, audio: bool) {
        self.start(now);
        self.packets_received += 1;
        let stats = match &mut self.receiver {
            Some(s) if s.ssrc == h.ssrc => {
                if !s.update_seq(h.sequence) {
                    return;
                }
                s
            }
            other => {
                // A new source (the peer restarted its stream, or a re-INVITE changed phones).
                if let Some(old) = other.as_ref() {
                    self.lost_before += old.lost();
                }
                other.insert(ReceiverStats::new(h.ssrc, h.sequence))
            }
        };
        if audio {
            let elapsed = now.saturating_duration_since(self.epoch);
            let arrival = (elapsed.as_nanos() * u128::from(CLOCK_RATE) / 1_000_000_000) as u32;
            stats.update_jitter(arrival, h.timestamp);
        }
    }

    /// One RTP packet we sent, with timestamp `ts` sampled at `at` and `payload` octets.
    pub fn on_rtp_sent(&mut self, at: Instant, ts: u32, payload: usize) {
        self.start(at);
        self.packets_sent += 1;
        self.octets_sent += payload as u64;
        self.last_sent = Some((at, ts));
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    /// A report was due but had nowhere to go: the next one is scheduled as if it had been sent.
    pub fn skip(&mut self, now: Instant) {
        let next = self.randomised(self.interval);
        self.next_report = Some(now + next);
    }

    /// Whether a report is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_report.is_some_and(|t| t <= now)
    }

    /// Writes our report (SR if we sent RTP in the last two intervals, RR otherwise, with a block for
    /// the peer's stream once it sent any, then SDES CNAME, then BYE if `bye`) and schedules the next
    /// one. Returns its length, or `None` if `buf` is too small.
    pub fn write_report(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        ssrc: u32,
        bye: bool,
        buf: &mut [u8],
    ) -> Option<usize> {
        let next = self.randomised(self.interval);
        self.next_report = Some(now + next);
        // §6.4: an SR only while we are a sender (RTP sent since two intervals ago).
        let sender = self
            .last_sent
            .filter(|(at, _)| now.saturating_duration_since(*at) < 2 * self.interval)
            .map(|(at, ts)| {
                let since = now.saturating_duration_since(at);
                let samples = since.as_nanos() * u128::from(CLOCK_RATE) / 1_000_000_000;
                SenderInfo {
                    ntp: ntp.at(now),
                    rtp_timestamp: ts.wrapping_add(samples as u32),
                    packets: self.packets_sent as u32,
                    octets: self.octets_sent as u32,
                }
            });
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, short_units(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        let block = self.receiver.as_mut().map(|r| ReportBlock {
            ssrc: r.ssrc,
            fraction_lost: r.take_fraction_lost(),
            cumulative_lost: r.lost().clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            highest_seq: r.extended_max(),
            jitter: r.jitter(),
            lsr,
            dlsr,
        });
        let n = write_compound(buf, ssrc, sender, block, &self.cname, bye).ok()?;
        self.reports_sent = self.reports_sent.saturating_add(1);
        Some(n)
    }

    /// One datagram from the peer's RTCP port, received at `now`. A valid compound updates what the
    /// peer reports about our stream `ssrc` (blocks about other sources are ignored) and the round trip;
    /// anything else is counted as malformed and changes nothing else.
    pub fn handle(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        ssrc: u32,
        datagram: &[u8],
    ) -> Result<(), RtcpError> {
        let mut about_us = None;
        let mut their_sr = None;
        let result = parse(datagram, |p| {
            if let RtcpPacket::Report {
                sender,
                blocks: raw,
                ..
            } = p
            {
                if let Some(s) = sender {
                    their_sr = Some((s.ntp >> 16) as u32);
                }
                if let Some(b) = blocks(raw).find(|b| b.ssrc == ssrc) {
                    about_us = Some(b);
                }
            }
        });
        if let Err(e) = result {
            self.malformed = self.malformed.saturating_add(1);
            return Err(e);
        }
        self.reports_received = self.reports_received.saturating_add(1);
        if let Some(lsr) = their_sr {
            self.last_sr = Some((lsr, now));
        }
        if let Some(b) = about_us {
            self.remote = Some(RemoteReport {
                fraction_lost: b.fraction_lost,
                cumulative_lost: b.cumulative_lost,
                jitter: b.jitter,
            });
            if b.lsr != 0 {
                // RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s. Slightly negative is zero (our
                // SR may be stamped up to the media engine's early-send window ahead of its sending,
                // and DLSR is rounded); more negative means the peer's numbers are off: ignored.
                let rtt = ntp.short(now).wrapping_sub(b.lsr).wrapping_sub(b.dlsr) as i32;
                if rtt >= -RTT_TOLERANCE {
                    let units = u64::from(rtt.max(0).unsigned_abs());
                    self.rtt = Some(Duration::from_nanos(units * 1_000_000_000 / 65_536));
                }
            }
        }
        Ok(())
    }

    /// A datagram that was not even looked at (from a stranger): counted as malformed.
    pub fn count_ignored(&mut self) {
        self.malformed = self.malformed.saturating_add(1);
    }

    /// The statistics now.
    pub fn stats(&self, cause: ReportCause, ssrc: u32) -> RtcpStats {
        let (lost, jitter) = self
            .receiver
            .as_ref()
            .map_or((0, 0), |r| (r.lost(), r.jitter()));
        RtcpStats {
            cause,
            ssrc,
            packets_sent: self.packets_sent,
            packets_received: self.packets_received,
            lost: self.lost_before + lost,
            jitter,
            remote: self.remote,
            rtt: self.rtt,
            reports_sent: self.reports_sent,
            reports_received: self.reports_received,
            malformed: self.malformed,
            new_lost: 0,
            new_remote_lost: 0,
        }
    }

    /// The statistics now, with the loss that is new since the previous snapshot (see
    /// [`RtcpStats::new_lost`]).
    pub fn snapshot(&mut self, cause: ReportCause, ssrc: u32) -> RtcpStats {
        let mut s = self.stats(cause, ssrc);
        let remote = s.remote.map_or(0, |r| i64::from(r.cumulative_lost));
        let fresh = |now: i64, counted: &mut i64| {
            let new = now.saturating_sub(*counted).max(0) as u64;
            *counted = (*counted).max(now);
            new
        };
        s.new_lost = fresh(s.lost, &mut self.counted_lost);
        s.new_remote_lost = fresh(remote, &mut self.counted_remote_lost);
        s
    }
}

#[cfg(test)]
mod tests;
