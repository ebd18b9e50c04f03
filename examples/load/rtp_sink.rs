//! The load harness's RTP sink (G4/G4b): N sessions of helpline's real media engine (in this process, as
//! `examples/rtp_load.rs` drives it) play a prompt to a few sink sockets; the sink tells the streams
//! apart by SSRC, echoes each one back to its session as the caller's 50 packets a second, and reports
//! per-stream inter-arrival deviation from 20 ms (percentiles over every interval, and the worst
//! stream's p99), loss, and sequence and timestamp continuity. It does not place SIP calls: the
//! signalling cost is the G1 stages' business; this is the media engine's pacing under load.
//!
//! The echo is accounted for to the packet: every packet the sink echoed is either read by the engine
//! (during the measured window, or after it: the sink stops echoing when the window ends and waits
//! until the engine's count stops growing, so a receive backlog shows as such) or dropped by the
//! kernel on the engine's sockets (their `drops` in /proc/net/udp, read before they close).
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::call::{MediaId, PortPool};
use helpline::media::codec::Law;
use helpline::media::session::MediaConfig;
use helpline::prompts::Prompt;
use helpline::server::media_engine::{MediaEngine, MediaEngineConfig, MediaScheduling};

/// Sink sockets (one receiving thread each; the streams are spread over them).
const SINKS: usize = 4;
/// Global deviation histogram: 1 µs bins up to 100 ms (the last bin holds everything above).
const FINE_BINS: usize = 100_000;
/// Per-stream histogram: 100 µs bins up to 20 ms.
const COARSE_BINS: usize = 200;

/// One stream as the sink saw it.
struct Stream {
    first_seq: u64,
    last_seq: u64,
    last_ts: u32,
    /// Kernel arrival time of the last packet, ns (CLOCK_REALTIME: only differences are used).
    last_at: u64,
    received: u64,
    seq_breaks: u64,
    ts_breaks: u64,
    hist: Box<[u32; COARSE_BINS]>,
    /// The echo's own sequence number and timestamp (the "caller's" stream).
    echo_seq: u16,
    echo_ts: u32,
}

/// What one receiving thread measured.
struct Part {
    fine: Vec<u64>,
    streams: HashMap<u32, Stream>,
    /// Echoes sent in the warm-up and in the measured window.
    echoed: [u64; 2],
    echo_errors: u64,
}

/// The engine's receive side, read from its counters and its sockets.
#[derive(Debug, Default, Clone, Copy)]
struct EngineReceived {
    /// Datagrams the engine read before the window (the counters are reset when it begins) …
    warm_up: u64,
    /// … during it …
    window: u64,
    /// … and after it (the sink echoes no more then): the backlog in its sockets when the window ended.
    after: u64,
    /// Datagrams the kernel dropped on the engine's RTP sockets (receive buffer full).
    dropped: u64,
    /// How long the engine took to read its backlog after the window.
    drain: Duration,
}

/// The result of a run.
pub struct RtpReport {
    streams: usize,
    started: usize,
    seconds: u64,
    expected: u64,
    received: u64,
    lost: u64,
    seq_breaks: u64,
    ts_breaks: u64,
    echoed: [u64; 2],
    echo_errors: u64,
    engine: EngineReceived,
    dev: [Duration; 3],
    worst_p99: Duration,
    send_late: [Duration; 3],
    max_late: Duration,
    send_errors: u64,
    media_cpu: Option<f64>,
    threads: usize,
    /// Datagrams the kernel dropped on the sink's own sockets (the sink, not the engine, fell behind).
    sink_dropped: u64,
}

impl RtpReport {
    /// The report, line by line.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("streams {} started of {}, measured {} s", self.started, self.streams, self.seconds),
            format!(
                "received {} of {} expected packets; lost {} (from sequence numbers); the kernel dropped {} on the sink's own sockets (the sink fell behind, not the engine)",
                self.received, self.expected, self.lost, self.sink_dropped
            ),
            format!("sequence breaks {}  timestamp breaks (Δts ≠ 160·Δseq) {}", self.seq_breaks, self.ts_breaks),
            format!(
                "inter-arrival deviation from 20 ms: p50 {}  p99 {}  p99.9 {}; worst stream's p99 {}",
                top(self.dev[0], FINE_BINS as u64),
                top(self.dev[1], FINE_BINS as u64),
                top(self.dev[2], FINE_BINS as u64),
                if self.worst_p99 >= Duration::from_micros(COARSE_BINS as u64 * 100) {
                    "≥ 20 ms (the histogram's top)".to_owned()
                } else {
                    format!("≤ {:?}", self.worst_p99)
                }
            ),
            self.echo_line(),
            format!(
                "engine send lateness p50 {}  p99 {}  p99.9 {}; largest {:?}; send errors {}",
                late(self.send_late[0]),
                late(self.send_late[1]),
                late(self.send_late[2]),
                self.max_late,
                self.send_errors
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

    /// Where the echoed packets went: the sink's count against the engine's, and the difference's reason.
    fn echo_line(&self) -> String {
        let e = &self.engine;
        let [warm, window] = self.echoed;
        let sent = warm + window;
        let read = e.warm_up + e.window + e.after;
        let unaccounted = sent as i64 - read as i64 - e.dropped as i64;
        format!(
            "echoed to the engine {sent} packets ({warm} in the warm-up, {window} in the window; {} send errors): the engine read {} in the warm-up, {} in the window, {} after it (its receive backlog when the window ended, read in {:?}); the kernel dropped {} on its sockets (receive buffer full); unaccounted {unaccounted}",
            self.echo_errors, e.warm_up, e.window, e.after, e.drain, e.dropped
        )
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        format!(
            "G4  {} streams {} s: lost {} (sink's own sockets dropped {}), seq breaks {}, ts breaks {}; G4b deviation p99 {:?} p99.9 {:?} (target at 3,000: p99 ≤ 2 ms, p99.9 ≤ 5 ms; 0 lost); caller audio: {} echoed in the window, the engine read {} during it and {} after it (its backlog), the kernel dropped {}",
            self.started, self.seconds, self.lost, self.sink_dropped, self.seq_breaks, self.ts_breaks, self.dev[1], self.dev[2],
            self.echoed[1], self.engine.window, self.engine.after, self.engine.dropped
        )
    }
}

/// An engine send-lateness quantile; its histogram (10 µs buckets) ends at 10 ms, and a quantile in the
/// last bucket says so instead of reading 10.01 ms.
fn late(d: Duration) -> String {
    if d >= Duration::from_micros(10_010) {
        "≥ 10 ms (the histogram's top)".to_owned()
    } else {
        format!("{d:?}")
    }
}

/// A deviation, or "≥ top" when it sits in the histogram's last bin (`bins` µs).
fn top(d: Duration, bins: u64) -> String {
    if d >= Duration::from_micros(bins - 1) {
        format!("≥ {:?}", Duration::from_micros(bins))
    } else {
        format!("{d:?}")
    }
}

/// Plays `n` streams for a warm-up second plus `measure`, and reports.
/// `threads` media threads share the streams (each stream a call of its own).
pub fn run(
    n: usize,
    measure: Duration,
    threads: usize,
    scheduling: MediaScheduling,
) -> std::io::Result<RtpReport> {
    let (events, mut events_rx) = helpline::server::media_engine::event_channel();
    let engine = MediaEngine::start(
        MediaEngineConfig {
            threads,
            scheduling,
            ..MediaEngineConfig::new("127.0.0.1".parse().expect("literal address"))
        },
        events,
    )?;
    let span = u16::try_from(n * 2 + 256).unwrap_or(u16::MAX - 40_000);
    let mut ports = PortPool::new((40_000, 40_000u16.saturating_add(span)), 1);
    let mut sinks = Vec::new();
    for _ in 0..SINKS {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        prepare_sink(&sock)?;
        sinks.push(sock);
    }
    let addrs: Vec<SocketAddr> = sinks
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    // 0: warm-up, 1: measuring, 2: done (packets are echoed, not counted).
    let measuring = Arc::new(AtomicU8::new(0));
    let threads: Vec<_> = sinks
        .into_iter()
        .map(|sock| {
            let (stop, measuring) = (stop.clone(), measuring.clone());
            std::thread::spawn(move || receive(&sock, &stop, &measuring))
        })
        .collect();
    let sink_ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();

    let secs = measure.as_secs().max(1);
    let total = Duration::from_secs(secs + 4);
    let pcm: Vec<i16> = (0..(total.as_millis() as usize) * 8)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let prompt = Arc::new(Prompt::from_samples("en", "load-tone", &pcm));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stats = engine.send_stats();
    let (ids, cpu, snap, received) = rt.block_on(async {
        tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
        let mut ids = Vec::with_capacity(n);
        let mut bound = Vec::with_capacity(n);
        for i in 0..n {
            let now = Instant::now();
            let Some(port) = ports.allocate(now) else {
                break;
            };
            let id = MediaId::in_group(i as u64, 0);
            let cfg = MediaConfig {
                law: Law::Ulaw,
                payload_type: 0,
                dtmf_payload_type: Some(101),
                remote: Some(addrs[i % addrs.len()]),
                send: true,
                rtp_timeout: Duration::from_secs(3600),
                seed: i as u64 + 1,
            };
            if engine.open(id, port, cfg).is_err() {
                ports.quarantine(now, port);
                continue;
            }
            ids.push(id);
            bound.push(port);
        }
        // Phases spread over one frame, as calls arriving at random times would be.
        let t0 = tokio::time::Instant::now();
        for (i, &id) in ids.iter().enumerate() {
            tokio::time::sleep_until(
                t0 + Duration::from_micros((20_000 * i / ids.len().max(1)) as u64),
            )
            .await;
            engine.play(id, prompt.clone());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The sink's phase and the engine's counters change together (a packet or two read between
        // the two loads may fall on the other side: it shows as "unaccounted").
        let warm_up = stats.snapshot().received;
        stats.reset();
        measuring.store(1, Ordering::Relaxed);
        let cpu0 = media_cpu();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        measuring.store(2, Ordering::Relaxed);
        let snap = stats.snapshot();
        let cpu = cpu0.zip(media_cpu()).map(|(a, b)| (b - a) / secs as f64);
        let (after, drain) = drain_backlog(&stats, snap.received).await;
        let received = EngineReceived {
            warm_up,
            window: snap.received,
            after,
            dropped: crate::harness::udp_drops(&bound),
            drain,
        };
        (ids, cpu, snap, received)
    });
    for &id in &ids {
        engine.close(id);
    }
    let sink_dropped = crate::harness::udp_drops(&sink_ports);
    stop.store(true, Ordering::Relaxed);
    let parts: Vec<Part> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    let mut report = summarise(n, ids.len(), secs, &parts, &snap, received, cpu);
    report.threads = engine.threads();
    report.sink_dropped = sink_dropped;
    Ok(report)
}

/// After the window (the sink echoes no more): waits until the engine's receive count has not grown
/// for 300 ms (at most 5 s); returns what it read meanwhile and how long that took.
async fn drain_backlog(
    stats: &helpline::server::media_engine::SendStats,
    at_end: u64,
) -> (u64, Duration) {
    let t0 = tokio::time::Instant::now();
    let (mut last, mut grew) = (at_end, t0);
    while t0.elapsed() < Duration::from_secs(5) && grew.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = stats.snapshot().received;
        if now != last {
            (last, grew) = (now, tokio::time::Instant::now());
        }
    }
    (last - at_end, grew - t0)
}

fn summarise(
    n: usize,
    started: usize,
    secs: u64,
    parts: &[Part],
    snap: &helpline::server::media_engine::SendStatsSnapshot,
    engine: EngineReceived,
    media_cpu: Option<f64>,
) -> RtpReport {
    let mut fine = vec![0u64; FINE_BINS];
    let (mut received, mut lost, mut seq_breaks, mut ts_breaks, mut echo_errors) = (0, 0, 0, 0, 0);
    let mut echoed = [0u64; 2];
    let mut worst = 0usize;
    for p in parts {
        for (i, c) in p.fine.iter().enumerate() {
            fine[i] += c;
        }
        echoed[0] += p.echoed[0];
        echoed[1] += p.echoed[1];
        echo_errors += p.echo_errors;
        for s in p.streams.values() {
            received += s.received;
            let expected = s.last_seq - s.first_seq + 1;
            lost += expected.saturating_sub(s.received);
            seq_breaks += s.seq_breaks;
            ts_breaks += s.ts_breaks;
            let total: u64 = s.hist.iter().map(|c| u64::from(*c)).sum();
            let mut acc = 0u64;
            for (i, c) in s.hist.iter().enumerate() {
                acc += u64::from(*c);
                if total > 0 && acc as f64 >= 0.99 * total as f64 {
                    worst = worst.max(i + 1);
                    break;
                }
            }
        }
    }
    let total: u64 = fine.iter().sum();
    let q = |q: f64| {
        let mut acc = 0;
        for (i, c) in fine.iter().enumerate() {
            acc += c;
            if total > 0 && acc as f64 >= q * total as f64 {
                return Duration::from_micros(i as u64);
            }
        }
        Duration::ZERO
    };
    RtpReport {
        streams: n,
        started,
        seconds: secs,
        expected: started as u64 * 50 * secs,
        received,
        lost,
        seq_breaks,
        ts_breaks,
        echoed,
        echo_errors,
        engine,
        dev: [q(0.5), q(0.99), q(0.999)],
        worst_p99: Duration::from_micros(worst as u64 * 100),
        send_late: [
            snap.quantile(0.5),
            snap.quantile(0.99),
            snap.quantile(0.999),
        ],
        max_late: snap.max_late,
        send_errors: snap.send_errors,
        media_cpu,
        threads: 1,
        sink_dropped: 0,
    }
}

/// How often a sink thread drains its socket. The sink does not block in `recv`: on loopback the
/// sender wakes a blocked receiver itself, so a blocking sink charged a thread wake-up per packet to
/// the engine's `sendto` (a third of the media thread's samples at 3,000 streams). Arrival times are
/// the kernel's (`SO_TIMESTAMPNS`), so draining late does not move them.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(1);
/// Receive buffer asked for on each sink socket: several drain periods of its share of the streams,
/// with room for the scheduler's late wake-ups on a shared machine.
const SINK_RCVBUF: usize = 8 << 20;

/// One sink socket's loop: every [`DRAIN_EVERY`], reads what arrived (each packet with its kernel
/// arrival time), accounts for it and echoes it.
fn receive(sock: &UdpSocket, stop: &AtomicBool, measuring: &AtomicU8) -> Part {
    let mut part = Part {
        fine: vec![0; FINE_BINS],
        streams: HashMap::new(),
        echoed: [0; 2],
        echo_errors: 0,
    };
    let mut buf = [0u8; 2048];
    let mut echo = [0u8; 172];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        next = (next + DRAIN_EVERY).max(Instant::now());
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        while let Some((len, from, at)) = recv_stamped(sock, &mut buf) {
            let Some(packet) = buf.get(..len) else {
                continue;
            };
            let phase = measuring.load(Ordering::Relaxed);
            if let Some(n) = heard(&mut part, packet, at, phase, &mut echo) {
                match sock.send_to(&echo[..n], from) {
                    Ok(_) => part.echoed[usize::from(phase)] += 1,
                    Err(_) => part.echo_errors += 1,
                }
            }
        }
    }
    part
}

/// Sets a sink socket up for [`receive`]: non-blocking, kernel receive timestamps, a large buffer
/// (`SO_RCVBUFFORCE` when allowed, else what `net.core.rmem_max` grants).
pub(crate) fn prepare_sink(sock: &UdpSocket) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    sock.set_nonblocking(true)?;
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
    if setsockopt(sock, sockopt::RcvBufForce, &SINK_RCVBUF).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &SINK_RCVBUF).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// One datagram if one is waiting: its length, source and kernel arrival time (ns, CLOCK_REALTIME).
pub(crate) fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let from = SocketAddr::from(std::net::SocketAddrV4::from(msg.address?));
    let at = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => {
            Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        }
        _ => None,
    })?;
    Some((msg.bytes, from, at))
}

/// A packet the sink heard at `at` (ns) in `phase` (0 warm-up, 1 window, 2 over): follows or accounts
/// for its stream, and writes the caller's echo into `echo`, returning its length (`None`: not RTP, or
/// the window is over).
fn heard(
    part: &mut Part,
    packet: &[u8],
    at: u64,
    phase: u8,
    echo: &mut [u8; 172],
) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let fresh = !part.streams.contains_key(&ssrc);
    let s = part.streams.entry(ssrc).or_insert_with(|| Stream {
        first_seq: u64::from(seq),
        last_seq: u64::from(seq),
        last_ts: ts,
        last_at: at,
        received: 0,
        seq_breaks: 0,
        ts_breaks: 0,
        hist: Box::new([0; COARSE_BINS]),
        echo_seq: 0,
        echo_ts: 0,
    });
    if phase == 0 {
        // Warm-up: follow the stream so the first measured interval is right.
        s.last_seq = u64::from(seq);
        s.last_ts = ts;
        s.last_at = at;
    } else if phase == 1 && fresh {
        s.received = 1;
    } else if phase == 1 {
        account(s, &mut part.fine, seq, ts, at);
    } else {
        // The window is over: no more echoes, so the engine's late reads are its backlog.
        return None;
    }
    // Echo: the caller's own PCMU stream, one packet per packet heard.
    s.echo_seq = s.echo_seq.wrapping_add(1);
    s.echo_ts = s.echo_ts.wrapping_add(160);
    echo[0] = 0x80;
    echo[1] = 0;
    echo[2..4].copy_from_slice(&s.echo_seq.to_be_bytes());
    echo[4..8].copy_from_slice(&s.echo_ts.to_be_bytes());
    echo[8..12].copy_from_slice(&(!ssrc).to_be_bytes());
    echo[12..].fill(0xff);
    Some(echo.len())
}

/// One measured packet of a known stream: continuity, then the interval since the last one.
fn account(s: &mut Stream, fine: &mut [u64], seq: u16, ts: u32, at: u64) {
    // Extend the 16-bit sequence number to the nearest value after the last one.
    let step = seq.wrapping_sub(s.last_seq as u16);
    if step == 0 || step > 0x8000 {
        s.seq_breaks += 1; // duplicate or reordered
        return;
    }
    let ext = s.last_seq + u64::from(step);
    if s.received == 0 {
        s.first_seq = ext;
    }
    if step != 1 {
        s.seq_breaks += 1;
    }
    if ts.wrapping_sub(s.last_ts) != 160 * u32::from(step) {
        s.ts_breaks += 1;
    }
    if step == 1 {
        let gap = (at.saturating_sub(s.last_at) / 1_000) as i64;
        let dev = (gap - 20_000).unsigned_abs() as usize;
        fine[dev.min(FINE_BINS - 1)] += 1;
        s.hist[(dev / 100).min(COARSE_BINS - 1)] += 1;
    }
    s.last_seq = ext;
    s.last_ts = ts;
    s.last_at = at;
    s.received += 1;
}

/// CPU seconds (user + system) of this process's media threads (`helpline-media`,
/// `helpline-media1`, …; not their tickers), Linux, 100 Hz ticks.
pub(crate) fn media_cpu() -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let Some((_, name)) = head.split_once('(') else {
            continue;
        };
        let Some(suffix) = name.strip_prefix("helpline-media") else {
            continue;
        };
        if !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        found = true;
    }
    found.then(|| ticks as f64 / 100.0)
}
