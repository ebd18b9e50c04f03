//! Bridge load test: N bridged pairs in the real media engine, each leg's phone sending 50 packets a
//! second toward the engine, and the media thread's CPU time per relayed packet. Loopback only,
//! bounded in time.
//!
//! `cargo run --release --example bridge_load -- --pairs 1000 --seconds 5`
//!
//! Each pair is two sessions (a PCMU caller and a PCMA agent unless `--same-law`), so two RTP and
//! two RTCP descriptors: raise `ulimit -n` above 4·N + 100. The phones are a few sockets per side
//! (`--peers`), as many calls behind one SBC would be; one sender thread sends every stream's packet
//! each 20 ms, phases spread over the frame, and one receiver thread drains the sockets every
//! millisecond (blocking readers would cost a wake-up per packet on the same two cores).
//!
//! The printed "µs per relayed packet" is the media thread's CPU time over the packets it relayed:
//! the whole receive path (epoll wake-up, `recv_from` and the `WouldBlock` one after it, the session's
//! `handle_rtp`, the relay, `send_to`; on loopback `send_to` includes the receiver's softirq work).
//!
//! Measured on the shared 2-core machine this was written on, release build, `--seconds 5`,
//! PCMU↔PCMA, with other helpers' builds running (`/proc/pressure/cpu` "some" at 55–75 %):
//!
//! | pairs | offered     | media thread      | per relayed packet |
//! |-------|-------------|-------------------|--------------------|
//! | 250   | 25,000 pps  | 27–32 % of a core | 10.6–12.8 µs       |
//! | 1000  | 100,000 pps | 32–60 % of a core | 6.7–7.3 µs         |
//!
//! At 1000 pairs the media thread was starved of CPU by the other load: it relayed only 43–86 % of
//! the window's packets within the window, then drained the backlog after the senders stopped
//! (nothing lost). Fewer packets per wake-up make the cost per packet higher at 250 pairs. For
//! comparison, `rtp_load --streams 2000` paced prompts at 3.9 µs per packet in the same minutes: a
//! relayed packet costs about two prompt packets (it is received as well as sent).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use helpline::call::{MediaId, PortPool};
use helpline::media::codec::Law;
use helpline::media::rtp::{self, RtpHeader};
use helpline::media::session::MediaConfig;
use helpline::server::media_engine::{MediaEngine, MediaEngineConfig};

#[derive(Parser, Debug)]
#[command(about = "relay RTP through N bridged pairs of the media engine and report its CPU cost")]
struct Args {
    /// Bridged pairs (two sessions each).
    #[arg(long, default_value_t = 250)]
    pairs: usize,
    /// Measured seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Phone sockets per side the streams are spread over.
    #[arg(long, default_value_t = 16)]
    peers: usize,
    /// First port of the engine's RTP range.
    #[arg(long, default_value_t = 20000)]
    port_base: u16,
    /// Both legs PCMU (copy) instead of PCMU caller, PCMA agent (transcode).
    #[arg(long)]
    same_law: bool,
}

/// CPU time (user + system) consumed so far by this process's thread named `name`, from
/// `/proc/self/task/*/stat` (Linux; clock ticks assumed to be the usual 100 Hz).
fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        if !head.ends_with(&format!("({name}")) {
            continue;
        }
        // After the command name: state is field 3, utime field 14, stime field 15.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

fn bind_peers(n: usize) -> std::io::Result<Vec<UdpSocket>> {
    (0..n.max(1))
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

/// One phone's stream toward one engine port.
struct Stream {
    peer: usize,
    to: SocketAddr,
    pt: u8,
    seq: u16,
    ts: u32,
}

/// Sends each stream's next packet when its 20 ms phase comes round, until `stop`.
fn send_loop(socks: &[UdpSocket], streams: &mut [Stream], stop: &AtomicBool, sent: &AtomicU64) {
    let mut buf = [0u8; 172];
    let payload = [0x55u8; 160];
    let t0 = Instant::now();
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(tick);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Streams whose phase is this millisecond of the 20 ms frame.
        let phase = (tick % 20) as usize;
        for s in streams.iter_mut().skip(phase).step_by(20) {
            let h = RtpHeader {
                marker: false,
                payload_type: s.pt,
                sequence: s.seq,
                timestamp: s.ts,
                ssrc: s.peer as u32 + 1,
            };
            let Ok(n) = rtp::write(&mut buf, &h, &payload) else {
                continue;
            };
            if socks[s.peer].send_to(&buf[..n], s.to).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(160);
        }
        tick += 1;
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let n = args.pairs;
    let (events, events_rx) = helpline::server::media_engine::event_channel();
    let engine = MediaEngine::start(
        MediaEngineConfig::new("127.0.0.1".parse().expect("literal address")),
        events,
    )?;
    let span = u16::try_from(n * 4 + 64).unwrap_or(u16::MAX);
    let mut ports = PortPool::new((args.port_base, args.port_base.saturating_add(span)), 0);
    let callers = Arc::new(bind_peers(args.peers)?);
    let agents = Arc::new(bind_peers(args.peers)?);
    let addr = |socks: &[UdpSocket], i: usize| socks[i % socks.len()].local_addr();
    let (agent_law, agent_pt) = if args.same_law {
        (Law::Ulaw, 0)
    } else {
        (Law::Alaw, 8)
    };
    let media = |law, pt, remote, seed| MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: Some(101),
        remote: Some(remote),
        send: true,
        rtp_timeout: Duration::from_secs(3600),
        seed,
    };
    let mut open = |id: MediaId, cfg: MediaConfig| -> std::io::Result<u16> {
        loop {
            let now = Instant::now();
            let port = ports
                .allocate(now)
                .ok_or_else(|| std::io::Error::other("port range too small"))?;
            match engine.open(id, port, cfg.clone()) {
                Ok(()) => return Ok(port),
                // Another program holds it: rest it and take the next one, as the call layer does.
                Err(_) => ports.quarantine(now, port),
            }
        }
    };
    let mut to_callers = Vec::with_capacity(n);
    let mut to_agents = Vec::with_capacity(n);
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..n {
        let (a, b) = (MediaId(2 * i as u64), MediaId(2 * i as u64 + 1));
        let pa = open(a, media(Law::Ulaw, 0, addr(&callers, i)?, 2 * i as u64))?;
        let pb = open(
            b,
            media(agent_law, agent_pt, addr(&agents, i)?, 2 * i as u64 + 1),
        )?;
        engine.bridge(a, b);
        let stream = |peer, to, pt| Stream {
            peer,
            to,
            pt,
            seq: i as u16,
            ts: i as u32 * 1000,
        };
        to_callers.push(stream(i % callers.len(), local(pa), 0));
        to_agents.push(stream(i % agents.len(), local(pb), agent_pt));
    }

    // Thread names stay under Linux's 15 characters, or /proc shows them cut and `thread_cpu` misses.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_recv = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (name, socks, mut streams) in [
        ("send-caller", callers.clone(), to_callers),
        ("send-agent", agents.clone(), to_agents),
    ] {
        let (stop, sent) = (stop.clone(), sent.clone());
        threads.push(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || send_loop(&socks, &mut streams, &stop, &sent))?,
        );
    }
    let mut senders = threads;
    let mut threads = Vec::new();
    {
        let (stop, received) = (stop_recv.clone(), received.clone());
        let (callers, agents) = (callers.clone(), agents.clone());
        threads.push(
            std::thread::Builder::new()
                .name("load-recv".into())
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        for sock in callers.iter().chain(agents.iter()) {
                            while sock.recv_from(&mut buf).is_ok() {
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })?,
        );
    }

    std::thread::sleep(Duration::from_secs(1));
    let stats = engine.send_stats();
    stats.reset();
    let (sent0, recv0) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    let cpu = |name| thread_cpu(name).unwrap_or_default();
    let names = ["helpline-media", "send-caller", "send-agent", "load-recv"];
    let before: Vec<Duration> = names.iter().map(|n| cpu(n)).collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let after: Vec<Duration> = names.iter().map(|n| cpu(n)).collect();
    let snap = stats.snapshot();
    let offered = sent.load(Ordering::Relaxed) - sent0;
    let got = received.load(Ordering::Relaxed) - recv0;
    stop.store(true, Ordering::Relaxed);
    for t in senders.drain(..) {
        let _ = t.join();
    }
    // Drain: what the media thread had not read yet is backlog, not loss, if it still comes out.
    let sent_total = sent.load(Ordering::Relaxed) - sent0;
    let drain_start = Instant::now();
    let mut relayed_total = stats.snapshot().relayed;
    while drain_start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        let now = stats.snapshot().relayed;
        if now == relayed_total {
            break;
        }
        relayed_total = now;
    }
    stop_recv.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    for i in 0..2 * n {
        engine.close(MediaId(i as u64));
    }
    drop(events_rx);

    let secs = args.seconds as f64;
    let used: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b).as_secs_f64())
        .collect();
    let per_packet = used[0] / (snap.relayed.max(1) as f64);
    println!(
        "pairs              {n} ({})",
        if args.same_law {
            "PCMU both legs"
        } else {
            "PCMU caller, PCMA agent"
        }
    );
    println!("measured           {} s", args.seconds);
    println!(
        "offered            {offered} packets ({:.0} pps; expected {})",
        offered as f64 / secs,
        n as u64 * 100 * args.seconds
    );
    println!(
        "relayed            {} packets in the window; after the senders stopped and the engine \
         drained: {relayed_total} of {sent_total} sent since the window began ({:.2} % lost)",
        snap.relayed,
        100.0 * (sent_total.saturating_sub(relayed_total)) as f64 / sent_total.max(1) as f64
    );
    println!("received by phones {got}");
    println!("send errors        {}", snap.send_errors);
    println!(
        "media thread CPU   {:.1} % of one core, {:.2} µs per relayed packet (=> about {:.0} pairs per core)",
        100.0 * used[0] / secs,
        per_packet * 1e6,
        1.0 / (per_packet * 100.0)
    );
    println!(
        "load generator     senders {:.1} % + {:.1} %, receiver {:.1} % of one core",
        100.0 * used[1] / secs,
        100.0 * used[2] / secs,
        100.0 * used[3] / secs
    );
    Ok(())
}
