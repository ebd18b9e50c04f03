//! The load harness's bridge stage (G7): N bridged calls in helpline's real media engine (in this
//! process, as `examples/bridge_load.rs` drives it), each leg's phone sending 50 packets a second, and
//! per relayed packet the time from the phone's `send` to the kernel's arrival stamp at the other
//! phone (`SO_TIMESTAMPNS`), with loss. It does not place SIP calls (the bridge's signalling is the
//! live tests' business) and does not transcode: both legs are PCMU, so the payload arrives as sent
//! and carries its own send time.
//!
//! The figure includes both loopback hops (phone → engine, engine → phone), so it bounds what the
//! engine adds from above; the same run measures the direct hop (phone → phone, same sockets, same
//! rate beside the load) and prints it too.
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use helpline::call::{MediaId, PortPool};
use helpline::media::codec::Law;
use helpline::media::rtp::{self, RtpHeader};
use helpline::media::session::MediaConfig;
use helpline::server::media_engine::{MediaEngine, MediaEngineConfig, MediaScheduling};

use crate::rtp_sink::{media_cpu, prepare_sink, recv_stamped, DRAIN_EVERY};

/// Phone sockets per side the streams are spread over (as calls behind an SBC would be).
const PEERS: usize = 8;
/// Latency histogram: 1 µs bins up to 100 ms (the last holds everything above).
const BINS: usize = 100_000;
/// Marks a direct (phone → phone) probe packet, which the engine never relays.
const DIRECT: u32 = u32::MAX;

/// What the stage measured.
pub struct BridgeReport {
    pairs: usize,
    threads: usize,
    seconds: u64,
    /// Packets the phones sent toward the engine in the window, and what arrived at the other phone.
    sent: u64,
    relayed: u64,
    through: [Duration; 4],
    direct: [Duration; 3],
    direct_count: u64,
    media_cpu: Option<f64>,
    dropped_at_phones: u64,
}

impl BridgeReport {
    /// The report, line by line.
    pub fn lines(&self) -> Vec<String> {
        let lost = self.sent.saturating_sub(self.relayed);
        let mut v = vec![
            format!(
                "pairs {} (PCMU both legs), {} media threads, measured {} s",
                self.pairs, self.threads, self.seconds
            ),
            format!(
                "sent by the phones in the window {}; arrived at the other phone {}; lost {lost} ({:.3} %); the phones' own sockets dropped {}",
                self.sent,
                self.relayed,
                100.0 * lost as f64 / self.sent.max(1) as f64,
                self.dropped_at_phones
            ),
            format!(
                "phone send → other phone's arrival through the engine: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
                self.through[0], self.through[1], self.through[2], self.through[3]
            ),
            format!(
                "direct hop (phone → phone, {} probes beside the load): p50 {:?}  p99 {:?}  p99.9 {:?}",
                self.direct_count, self.direct[0], self.direct[1], self.direct[2]
            ),
        ];
        if let Some(cpu) = self.media_cpu {
            v.push(format!(
                "media threads ({}) CPU {:.0} % of one core",
                self.threads,
                cpu * 100.0
            ));
        }
        v
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let lost = self.sent.saturating_sub(self.relayed);
        format!(
            "G7  {} bridged calls {} s ({} media threads): lost {lost} of {}; phone → phone through the engine p99 {:?} p99.9 {:?} (direct hop p99 {:?}; target ≤ 1 ms added p99, 0 loss at 1,000)",
            self.pairs, self.seconds, self.threads, self.sent, self.through[1], self.through[2], self.direct[1]
        )
    }
}

/// Realtime nanoseconds: the clock `SO_TIMESTAMPNS` stamps arrivals with.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One leg's stream from its phone toward the engine.
struct Stream {
    peer: usize,
    to: SocketAddr,
    seq: u16,
    ts: u32,
    index: u32,
}

/// Sends each stream's packet when its 20 ms phase comes round, payload = send time (ns) and stream
/// index; every 20 ms one direct probe to `direct_to`. Counts what it sent while `phase` is 1.
fn send_loop(
    socks: &[UdpSocket],
    streams: &mut [Stream],
    direct_to: SocketAddr,
    stop: &AtomicBool,
    phase: &AtomicU8,
    sent: &AtomicU64,
) {
    let mut buf = [0u8; 172];
    let mut payload = [0xffu8; 160];
    let t0 = Instant::now();
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(tick);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let slot = (tick % 20) as usize;
        for s in streams.iter_mut().skip(slot).step_by(20) {
            let h = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: s.seq,
                timestamp: s.ts,
                ssrc: s.index + 1,
            };
            payload[8..12].copy_from_slice(&s.index.to_be_bytes());
            let measuring = phase.load(Ordering::Relaxed) == 1;
            payload[12] = u8::from(measuring);
            payload[..8].copy_from_slice(&now_ns().to_be_bytes());
            let Ok(n) = rtp::write(&mut buf, &h, &payload) else {
                continue;
            };
            if socks[s.peer].send_to(&buf[..n], s.to).is_ok() && measuring {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(160);
        }
        if slot == 0 {
            payload[8..12].copy_from_slice(&DIRECT.to_be_bytes());
            payload[12] = u8::from(phase.load(Ordering::Relaxed) == 1);
            payload[..8].copy_from_slice(&now_ns().to_be_bytes());
            let h = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: 0,
                timestamp: 0,
                ssrc: DIRECT,
            };
            if let Ok(n) = rtp::write(&mut buf, &h, &payload) {
                let _ = socks[0].send_to(&buf[..n], direct_to);
            }
        }
        tick += 1;
    }
}

/// What one side's receiver measured: relayed packets sent in the window, their latency histogram,
/// and the direct probes'.
struct Heard {
    relayed: u64,
    through: Vec<u64>,
    direct: Vec<u64>,
}

/// Drains the side's sockets every [`DRAIN_EVERY`] until `stop`, timing each packet by its kernel
/// arrival stamp against the send time it carries.
fn receive_loop(socks: &[UdpSocket], stop: &AtomicBool) -> Heard {
    let mut heard = Heard {
        relayed: 0,
        through: vec![0; BINS],
        direct: vec![0; BINS],
    };
    let mut buf = [0u8; 2048];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        next = (next + DRAIN_EVERY).max(Instant::now());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for sock in socks {
            while let Some((len, _, at)) = recv_stamped(sock, &mut buf) {
                let Ok((_, payload)) = rtp::parse(&buf[..len]) else {
                    continue;
                };
                if payload.len() < 13 || payload[12] != 1 {
                    continue; // not sent in the window
                }
                let mut sent = [0u8; 8];
                sent.copy_from_slice(&payload[..8]);
                let us = (at.saturating_sub(u64::from_be_bytes(sent)) / 1_000) as usize;
                let index = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
                if index == DIRECT {
                    heard.direct[us.min(BINS - 1)] += 1;
                } else {
                    heard.relayed += 1;
                    heard.through[us.min(BINS - 1)] += 1;
                }
            }
        }
    }
    heard
}

fn bind_peers() -> std::io::Result<Vec<UdpSocket>> {
    (0..PEERS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            prepare_sink(&s)?;
            Ok(s)
        })
        .collect()
}

/// Quantiles of a 1 µs histogram, and its largest value.
fn quantiles(hist: &[u64]) -> ([Duration; 3], Duration, u64) {
    let total: u64 = hist.iter().sum();
    let q = |q: f64| {
        let mut acc = 0;
        for (i, c) in hist.iter().enumerate() {
            acc += c;
            if total > 0 && acc as f64 >= q * total as f64 {
                return Duration::from_micros(i as u64);
            }
        }
        Duration::ZERO
    };
    let max = hist.iter().rposition(|&c| c > 0).unwrap_or(0);
    (
        [q(0.5), q(0.99), q(0.999)],
        Duration::from_micros(max as u64),
        total,
    )
}

/// Bridges `pairs` calls for a warm-up second plus `measure` on `threads` media threads, and reports.
pub fn run(
    pairs: usize,
    measure: Duration,
    threads: usize,
    scheduling: MediaScheduling,
) -> std::io::Result<BridgeReport> {
    let (events, mut events_rx) = helpline::server::media_engine::event_channel();
    let engine = MediaEngine::start(
        MediaEngineConfig {
            threads,
            scheduling,
            ..MediaEngineConfig::new("127.0.0.1".parse().expect("literal address"))
        },
        events,
    )?;
    // Events are not this stage's business; drained so the engine never waits on them.
    let drain_events = std::thread::spawn(move || while events_rx.blocking_recv().is_some() {});
    let span = u16::try_from(pairs * 4 + 256).unwrap_or(u16::MAX - 40_000);
    let mut ports = PortPool::new((40_000, 40_000u16.saturating_add(span)), 1);
    let callers = Arc::new(bind_peers()?);
    let agents = Arc::new(bind_peers()?);
    let mut open = |id: MediaId, remote: SocketAddr| -> std::io::Result<u16> {
        for _ in 0..16 {
            let now = Instant::now();
            let port = ports
                .allocate(now)
                .ok_or_else(|| std::io::Error::other("port range too small"))?;
            let cfg = MediaConfig {
                law: Law::Ulaw,
                payload_type: 0,
                dtmf_payload_type: Some(101),
                remote: Some(remote),
                send: true,
                rtp_timeout: Duration::from_secs(3600),
                seed: id.0,
            };
            match engine.open(id, port, cfg) {
                Ok(()) => return Ok(port),
                // Another program holds it: rest it and take the next one, as the call layer does.
                Err(_) => ports.quarantine(now, port),
            }
        }
        Err(std::io::Error::other("no bindable port pair"))
    };
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (mut to_callers_leg, mut to_agents_leg) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = (
            MediaId::in_group(i as u64 + 1, 0),
            MediaId::in_group(i as u64 + 1, 1),
        );
        let peer = i % PEERS;
        let pa = open(a, callers[peer].local_addr()?)?;
        let pb = open(b, agents[peer].local_addr()?)?;
        engine.bridge(a, b);
        let stream = |to, index| Stream {
            peer,
            to,
            seq: i as u16,
            ts: i as u32 * 1000,
            index,
        };
        to_callers_leg.push(stream(local(pa), 2 * i as u32));
        to_agents_leg.push(stream(local(pb), 2 * i as u32 + 1));
    }

    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    // Each side's phones send toward their own leg; the other side's phones hear it, and a direct
    // probe goes from this side's first socket to the other side's.
    for (socks, streams, other) in [
        (callers.clone(), to_callers_leg, agents[0].local_addr()?),
        (agents.clone(), to_agents_leg, callers[0].local_addr()?),
    ] {
        let (stop, phase, sent) = (stop_send.clone(), phase.clone(), sent.clone());
        let mut streams = streams;
        senders.push(std::thread::spawn(move || {
            send_loop(&socks, &mut streams, other, &stop, &phase, &sent)
        }));
    }
    let receivers: Vec<_> = [callers.clone(), agents.clone()]
        .into_iter()
        .map(|socks| {
            let stop = stop_recv.clone();
            std::thread::spawn(move || receive_loop(&socks, &stop))
        })
        .collect();

    std::thread::sleep(Duration::from_secs(1));
    let secs = measure.as_secs().max(1);
    phase.store(1, Ordering::Relaxed);
    let cpu0 = media_cpu();
    std::thread::sleep(Duration::from_secs(secs));
    phase.store(2, Ordering::Relaxed);
    let cpu = cpu0.zip(media_cpu()).map(|(a, b)| (b - a) / secs as f64);
    // What was sent in the window and is still on its way arrives within this.
    std::thread::sleep(Duration::from_millis(500));
    stop_send.store(true, Ordering::Relaxed);
    for t in senders {
        let _ = t.join();
    }
    let phone_ports: Vec<u16> = callers
        .iter()
        .chain(agents.iter())
        .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
        .collect();
    let dropped_at_phones = crate::harness::udp_drops(&phone_ports);
    stop_recv.store(true, Ordering::Relaxed);
    let mut relayed = 0;
    let (mut through, mut direct) = (vec![0u64; BINS], vec![0u64; BINS]);
    for heard in receivers.into_iter().filter_map(|t| t.join().ok()) {
        relayed += heard.relayed;
        for (t, h) in through.iter_mut().zip(&heard.through) {
            *t += h;
        }
        for (d, h) in direct.iter_mut().zip(&heard.direct) {
            *d += h;
        }
    }
    for i in 0..pairs {
        engine.close(MediaId::in_group(i as u64 + 1, 0));
        engine.close(MediaId::in_group(i as u64 + 1, 1));
    }
    drop(engine);
    let _ = drain_events.join();
    let (t, tmax, _) = quantiles(&through);
    let (d, _, direct_count) = quantiles(&direct);
    Ok(BridgeReport {
        pairs,
        threads,
        seconds: secs,
        sent: sent.load(Ordering::Relaxed),
        relayed,
        through: [t[0], t[1], t[2], tmax],
        direct: d,
        direct_count,
        media_cpu: cpu,
        dropped_at_phones,
    })
}
