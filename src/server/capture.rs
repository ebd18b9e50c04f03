//! `serve --trace-dir DIR`: carries out what the call layer decided to capture (`call::capture`) —
//! one pcap per call in DIR, `<stem>.pcap`, holding the call's SIP (every leg, both directions) and the
//! RTP/RTCP copies the media engine hands over (`media_engine`'s `Tap`: everything the phones send, a
//! bounded sample of what helpline sends, all of it under a per-call byte cap). It decides nothing.
//!
//! Written with `pcap-file` (the pcap container: header, per-packet records) and `etherparse`
//! (`PacketBuilder`: Ethernet + IPv4/IPv6 + UDP/TCP headers with correct lengths and checksums), both
//! widely used and maintained, so the files are ordinary captures Wireshark, tshark and sngrep open.
//!
//! Capture never slows or breaks a call: the signalling task and the media thread hand copies to
//! [`CaptureSink::offer`], a `try_send` on a bounded channel (a full channel drops the copy, counted),
//! and one writer thread does every file operation. A write error (full or slow disk, unwritable DIR)
//! closes that call's file and is counted; each kind of trouble is logged once, not per packet.
//! At most [`MAX_OPEN_FILES`] captures are open at once (a call beyond that is not captured, counted).
//!
//! SIP over TCP is written as TCP segments with per-connection, per-direction sequence numbers that
//! add up (no handshake: a capture starts mid-connection, as tcpdump's often do), so tshark and
//! sngrep reassemble them; SIP over UDP as one datagram each, however large. Timestamps are the call
//! layer's wall clock (`--pretend-time` shifts them); within a file they never go backwards (a copy
//! that reaches the writer after a later one — the media thread and the signalling task race by
//! microseconds — is stamped with the later time).
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use crate::call::{CaptureId, CapturedSip, WallClock};
use crate::sip::endpoint::Transport;

/// Copies in flight between the call paths and the writer; more are dropped (and counted).
pub const CHANNEL: usize = 8192;
/// Captures open at once (calls in progress); a call beyond this is not captured.
pub const MAX_OPEN_FILES: usize = 2048;
/// RTP and RTCP bytes captured per call (every session of it together): about 25 minutes of a G.711
/// caller plus the sample of ours. The call's media capture stops there (its SIP goes on).
pub const MAX_CALL_RTP_BYTES: u64 = 16 * 1024 * 1024;
/// Packets captured of each prompt helpline plays (the first 2 s at 20 ms a packet).
pub const PROMPT_SAMPLE_PACKETS: u32 = 100;
/// Packets helpline sends (prompts and relayed audio together) captured per call: 30 s at 20 ms.
pub const MAX_SENT_PACKETS_PER_CALL: u32 = 1500;
/// Largest TCP segment written; a longer SIP message over TCP is written as several.
const MAX_SEGMENT: usize = 32 * 1024;
/// Snap length of the files: every packet is written whole (a UDP datagram may reach 64 KiB).
const SNAPLEN: u32 = 262_144;

/// An RTP or RTCP packet of a captured call, copied by the media engine.
#[derive(Debug, Clone)]
pub struct CapturedRtp {
    /// The capture.
    pub id: CaptureId,
    /// When it was received or sent.
    pub at: Instant,
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// The UDP payload.
    pub bytes: Vec<u8>,
}

/// What the writer is handed.
#[derive(Debug)]
pub enum CaptureMsg {
    /// Open `DIR/<stem>.pcap` for capture `id`.
    Start {
        /// The capture.
        id: CaptureId,
        /// The file name without `.pcap`.
        stem: String,
    },
    /// A SIP message.
    Sip(CapturedSip),
    /// An RTP/RTCP packet.
    Rtp(CapturedRtp),
    /// Close the file of capture `id`.
    End {
        /// The capture.
        id: CaptureId,
    },
    /// Close every file and stop (server exit).
    Shutdown,
}

/// The kinds of trouble, each logged once.
#[derive(Clone, Copy, Debug)]
enum Trouble {
    ChannelFull = 0,
    Write = 1,
    TooManyOpen = 2,
    Capped = 3,
}

/// Counters of what capture dropped (for logs and metrics).
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Copies dropped because the writer's channel was full.
    pub dropped_full: AtomicU64,
    /// Calls whose RTP capture stopped at [`MAX_CALL_RTP_BYTES`].
    pub calls_capped: AtomicU64,
    /// Write errors (each closes one file).
    pub write_errors: AtomicU64,
    /// Calls not captured because [`MAX_OPEN_FILES`] were open.
    pub refused_open: AtomicU64,
    /// Files completed.
    pub files_written: AtomicU64,
    logged: [AtomicBool; 4],
}

impl CaptureStats {
    fn trouble(&self, kind: Trouble, detail: &dyn std::fmt::Display) {
        let counter = match kind {
            Trouble::ChannelFull => &self.dropped_full,
            Trouble::Write => &self.write_errors,
            Trouble::TooManyOpen => &self.refused_open,
            Trouble::Capped => &self.calls_capped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.logged[kind as usize].swap(true, Ordering::Relaxed) {
            return;
        }
        match kind {
            Trouble::ChannelFull => tracing::warn!(
                "capture: the writer is behind, packets are being dropped from captures (logged once)"
            ),
            Trouble::Write => tracing::warn!(
                "capture: cannot write to the trace directory: {detail}; calls go on uncaptured \
                 (logged once)"
            ),
            Trouble::TooManyOpen => tracing::warn!(
                "capture: {MAX_OPEN_FILES} captures open, new calls are not captured (logged once)"
            ),
            Trouble::Capped => tracing::info!(
                "capture: a call reached {MAX_CALL_RTP_BYTES} bytes of RTP; the rest of its media \
                 is not captured (logged once)"
            ),
        }
    }

    /// A call's RTP capture stopped at the cap (the media engine reports it once per call).
    pub fn capped(&self) {
        self.trouble(Trouble::Capped, &"");
    }
}

/// Where copies go: `Clone + Send`, never blocks.
#[derive(Debug, Clone)]
pub struct CaptureSink {
    tx: SyncSender<CaptureMsg>,
    stats: Arc<CaptureStats>,
}

impl CaptureSink {
    /// Hands `msg` to the writer if the channel has room; a full channel drops it (counted, logged
    /// once). False when it was not taken.
    pub fn offer(&self, msg: CaptureMsg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.stats.trouble(Trouble::ChannelFull, &"");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<CaptureStats> {
        &self.stats
    }
}

/// The running writer.
#[derive(Debug)]
pub struct CaptureWriter {
    sink: CaptureSink,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CaptureWriter {
    /// Starts the writer thread for `dir` (created if missing; if that fails, each file's creation
    /// fails too and is reported once), stamping packets with `wall`.
    pub fn start(dir: PathBuf, wall: WallClock) -> std::io::Result<CaptureWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
        let stats = Arc::new(CaptureStats::default());
        let writer = Writer {
            dir,
            wall,
            files: HashMap::new(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("helpline-capture".into())
            .spawn(move || writer.run(rx))?;
        Ok(CaptureWriter {
            sink: CaptureSink { tx, stats },
            thread: Some(thread),
        })
    }

    /// A sink for the signalling task and the media engine.
    pub fn sink(&self) -> CaptureSink {
        self.sink.clone()
    }

    /// Closes every file and waits for the writer (blocking: call it off the async threads).
    pub fn finish(mut self) {
        // Blocking send: at exit the writer may take the time it needs to drain.
        let _ = self.sink.tx.send(CaptureMsg::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let s = &self.sink.stats;
        tracing::info!(
            files = s.files_written.load(Ordering::Relaxed),
            dropped_channel_full = s.dropped_full.load(Ordering::Relaxed),
            calls_capped = s.calls_capped.load(Ordering::Relaxed),
            write_errors = s.write_errors.load(Ordering::Relaxed),
            refused_open = s.refused_open.load(Ordering::Relaxed),
            "capture finished"
        );
    }
}

/// One open pcap.
struct OpenFile {
    pcap: PcapWriter<BufWriter<File>>,
    /// The latest timestamp written (packets never go backwards in a file).
    last: Duration,
    /// Next sequence number per TCP connection and direction (conn, from, to).
    tcp: HashMap<(u64, SocketAddr, SocketAddr), u32>,
}

struct Writer {
    dir: PathBuf,
    wall: WallClock,
    files: HashMap<CaptureId, OpenFile>,
    stats: Arc<CaptureStats>,
}

/// Initial sequence number of each TCP direction in a file (any value works; Wireshark shows relative).
const TCP_ISN: u32 = 1;

impl Writer {
    fn run(mut self, rx: Receiver<CaptureMsg>) {
        if let Err(err) = std::fs::create_dir_all(&self.dir) {
            let what = format!("{}: {err}", self.dir.display());
            self.stats.trouble(Trouble::Write, &what);
        }
        while let Ok(msg) = rx.recv() {
            match msg {
                CaptureMsg::Start { id, stem } => self.open(id, &stem),
                CaptureMsg::Sip(sip) => {
                    let frames = match sip.transport {
                        Transport::Udp => udp_frame(sip.from, sip.to, &sip.bytes)
                            .into_iter()
                            .collect(),
                        Transport::Tcp(conn) => self.tcp_frames(sip.id, conn, &sip),
                    };
                    for frame in frames {
                        self.write(sip.id, sip.at, &frame);
                    }
                }
                CaptureMsg::Rtp(rtp) => {
                    if let Some(frame) = udp_frame(rtp.from, rtp.to, &rtp.bytes) {
                        self.write(rtp.id, rtp.at, &frame);
                    }
                }
                CaptureMsg::End { id } => self.close(id),
                CaptureMsg::Shutdown => break,
            }
        }
        let ids: Vec<CaptureId> = self.files.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }

    fn open(&mut self, id: CaptureId, stem: &str) {
        if self.files.len() >= MAX_OPEN_FILES {
            self.stats.trouble(Trouble::TooManyOpen, &"");
            return;
        }
        let path = self.dir.join(format!("{stem}.pcap"));
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let opened = File::create(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                PcapWriter::with_header(BufWriter::new(f), header).map_err(|e| e.to_string())
            });
        match opened {
            Ok(pcap) => {
                self.files.insert(
                    id,
                    OpenFile {
                        pcap,
                        last: Duration::ZERO,
                        tcp: HashMap::new(),
                    },
                );
            }
            Err(err) => {
                let what = format!("{}: {err}", path.display());
                self.stats.trouble(Trouble::Write, &what);
            }
        }
    }

    /// The TCP segments carrying one SIP message, numbered on from the connection's earlier ones.
    fn tcp_frames(&mut self, id: CaptureId, conn: u64, sip: &CapturedSip) -> Vec<Vec<u8>> {
        let Some(file) = self.files.get_mut(&id) else {
            return Vec::new();
        };
        let ack = *file.tcp.get(&(conn, sip.to, sip.from)).unwrap_or(&TCP_ISN);
        let seq = file.tcp.entry((conn, sip.from, sip.to)).or_insert(TCP_ISN);
        let mut frames = Vec::new();
        for chunk in sip.bytes.chunks(MAX_SEGMENT) {
            if let Some(frame) = tcp_frame(sip.from, sip.to, *seq, ack, chunk) {
                frames.push(frame);
            }
            // Sequence numbers wrap (RFC 9293 §3.4); a chunk is at most MAX_SEGMENT bytes.
            *seq = seq.wrapping_add(chunk.len() as u32);
        }
        frames
    }

    fn write(&mut self, id: CaptureId, at: Instant, frame: &[u8]) {
        let Some(file) = self.files.get_mut(&id) else {
            return; // a capture that was never opened (refused, or its start dropped)
        };
        let wall = self.wall.at(at);
        let ts = Duration::new(
            u64::try_from(wall.timestamp()).unwrap_or(0),
            wall.timestamp_subsec_nanos().min(999_999_999),
        );
        let ts = ts.max(file.last);
        file.last = ts;
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if let Err(err) = file.pcap.write_packet(&PcapPacket::new(ts, len, frame)) {
            self.files.remove(&id);
            self.stats.trouble(Trouble::Write, &err);
        }
    }

    fn close(&mut self, id: CaptureId) {
        let Some(file) = self.files.remove(&id) else {
            return;
        };
        match file.pcap.into_writer().flush() {
            Ok(()) => {
                self.stats.files_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => self.stats.trouble(Trouble::Write, &err),
        }
    }
}

/// Both ends as the same IP version (an IPv4 end facing an IPv6 one is written v4-mapped).
fn ip_pair(from: SocketAddr, to: SocketAddr) -> (IpAddr, IpAddr) {
    match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V6(b)) => (IpAddr::V6(a.to_ipv6_mapped()), IpAddr::V6(b)),
        (IpAddr::V6(a), IpAddr::V4(b)) => (IpAddr::V6(a), IpAddr::V6(b.to_ipv6_mapped())),
        pair => pair,
    }
}

/// Locally administered, the same for every host: the captures are of IP traffic, not of a LAN.
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn ip_builder(
    from: SocketAddr,
    to: SocketAddr,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(MAC, MAC);
    match ip_pair(from, to) {
        (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
        (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
        (IpAddr::V4(a), IpAddr::V6(b)) | (IpAddr::V6(b), IpAddr::V4(a)) => {
            // ip_pair never returns mixed versions; kept total without a panic.
            eth.ipv6(a.to_ipv6_mapped().octets(), b.octets(), 64)
        }
    }
}

/// An Ethernet frame carrying `payload` in one UDP datagram; `None` if it cannot be one (over 64 KiB).
pub fn udp_frame(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let builder = ip_builder(from, to).udp(from.port(), to.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).ok()?;
    Some(frame)
}

/// An Ethernet frame carrying `payload` in one TCP segment (ACK, PSH).
pub fn tcp_frame(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let builder = ip_builder(from, to)
        .tcp(from.port(), to.port(), seq, 65_535)
        .ack(ack)
        .psh();
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).ok()?;
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_the_copy_and_counts_it_without_waiting() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let sink = CaptureSink {
            tx,
            stats: Arc::new(CaptureStats::default()),
        };
        assert!(sink.offer(CaptureMsg::End { id: CaptureId(1) }));
        assert!(!sink.offer(CaptureMsg::End { id: CaptureId(2) }));
        assert!(!sink.offer(CaptureMsg::End { id: CaptureId(3) }));
        assert_eq!(sink.stats().dropped_full.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn frames_parse_back_with_their_addresses_ports_and_payload() {
        let a: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
        let b: SocketAddr = "[2001:db8::2]:5070".parse().expect("literal");
        let frame = udp_frame(a, b, b"hello").expect("small datagram");
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
        let Some(etherparse::TransportSlice::Udp(udp)) = &parsed.transport else {
            panic!("a udp datagram");
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (5060, 5070));
        assert_eq!(udp.payload(), b"hello");
        let Some(etherparse::NetSlice::Ipv6(ip)) = parsed.net else {
            panic!("v4 facing v6 is written v4-mapped in IPv6");
        };
        assert_eq!(
            ip.header().source_addr(),
            "::ffff:192.0.2.1"
                .parse::<std::net::Ipv6Addr>()
                .expect("literal")
        );
        let frame = tcp_frame(a, a, 7, 9, b"INVITE").expect("small segment");
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).expect("parses");
        let Some(etherparse::TransportSlice::Tcp(tcp)) = parsed.transport else {
            panic!("a tcp segment");
        };
        assert_eq!((tcp.sequence_number(), tcp.acknowledgment_number()), (7, 9));
        assert_eq!(tcp.payload(), b"INVITE");
    }
}
