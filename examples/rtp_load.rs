//! RTP pacing load test: N prompt streams from the real media engine to loopback sinks, measuring how
//! late (or early) every packet leaves against its schedule. Loopback only, bounded in time.
//!
//! `cargo run --release --example rtp_load -- --streams 3000 --seconds 10`
//!
//! Each session needs two descriptors (RTP, RTCP): raise `ulimit -n` above 2·N + 100. Stream start phases are spread evenly over one 20 ms frame, as calls arriving at random
//! times would be; `--aligned` starts them all at once instead (worst case: every stream due together).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use helpline::call::{MediaId, PortPool};
use helpline::media::codec::Law;
use helpline::media::session::MediaConfig;
use helpline::prompts::Prompt;
use helpline::server::media_engine::{MediaEngine, MediaEngineConfig};

#[derive(Parser, Debug)]
#[command(
    about = "pace N G.711 prompt streams through the media engine and report send-time error"
)]
struct Args {
    /// Concurrent streams.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Measured seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Sink sockets the streams are spread over.
    #[arg(long, default_value_t = 16)]
    sinks: usize,
    /// First port of the engine's RTP range.
    #[arg(long, default_value_t = 20000)]
    port_base: u16,
    /// Start every stream at the same instant instead of spreading phases over 20 ms.
    #[arg(long)]
    aligned: bool,
}

/// CPU time (user + system) consumed so far by this process's thread named `name`, read from
/// `/proc/self/task/*/stat` (Linux; clock ticks assumed to be the usual 100 Hz). Under a shared,
/// busy machine this, not the wall-clock error, tells how many streams one core can carry.
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

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let n = args.streams;
    let span = u16::try_from(n * 2 + 64).unwrap_or(u16::MAX);
    let (events, mut events_rx) = helpline::server::media_engine::event_channel();
    let engine = MediaEngine::start(
        MediaEngineConfig::new("127.0.0.1".parse().expect("literal address")),
        events,
    )?;
    // Ports are chosen as the call layer chooses them; the engine binds what it is told.
    let mut ports = PortPool::new((args.port_base, args.port_base.saturating_add(span)), 0);

    // Sinks: non-blocking sockets drained by ONE thread every millisecond. A blocking reader per
    // socket would be woken for every packet, and those wake-ups (not the sending) would dominate two
    // cores; polling keeps the receive side cheap and away from the media thread.
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sinks = Vec::new();
    for _ in 0..args.sinks.max(1) {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        sinks.push(sock);
    }
    let sink_addrs: Vec<SocketAddr> = sinks
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<Result<_, _>>()?;
    let sink_thread = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                for sock in &sinks {
                    while sock.recv_from(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // Control: a plain thread sleeping 2 ms at a time records how late the OS wakes it. On a shared
    // machine this is the floor under any pacer's error, so it is printed next to the engine's numbers.
    let control = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut late = Vec::with_capacity(10_000);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                next += Duration::from_millis(2);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                late.push(Instant::now().saturating_duration_since(next));
            }
            late.sort();
            late
        })
    };

    // One long tone prompt shared by every stream (Arc: frames are not copied per stream).
    let total = Duration::from_secs(args.seconds + 3);
    let samples = (total.as_millis() as usize) * 8;
    let pcm: Vec<i16> = (0..samples)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let prompt = Arc::new(Prompt::from_samples("en", "load-tone", &pcm));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stats = engine.send_stats();
    let (ids, opened_in, media_cpu) = rt.block_on(async {
        // Drain events so the channel does not grow for the whole run.
        tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
        let mut busy = 0u32;
        let t_open = Instant::now();
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let now = Instant::now();
            let Some(port) = ports.allocate(now) else {
                return Err(std::io::Error::other("port range too small"));
            };
            let id = MediaId(i as u64);
            let opened = engine.open(
                id,
                port,
                MediaConfig {
                    law: Law::Ulaw,
                    payload_type: 0,
                    dtmf_payload_type: Some(101),
                    remote: Some(sink_addrs[i % sink_addrs.len()]),
                    send: true,
                    rtp_timeout: Duration::from_secs(3600),
                    seed: i as u64,
                },
            );
            if opened.is_err() {
                // Another program holds it: as the call layer does, rest it and take the next one.
                ports.quarantine(now, port);
                busy += 1;
                continue;
            }
            ids.push(id);
        }
        let opened_in = t_open.elapsed();
        if busy > 0 {
            println!("{busy} streams not started: their ports were busy");
        }
        let t0 = tokio::time::Instant::now();
        for (i, &id) in ids.iter().enumerate() {
            if !args.aligned {
                tokio::time::sleep_until(
                    t0 + Duration::from_micros((20_000 * i / n.max(1)) as u64),
                )
                .await;
            }
            engine.play(id, prompt.clone());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats.reset();
        received.store(0, Ordering::Relaxed);
        let cpu_before = thread_cpu("helpline-media");
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let cpu = cpu_before
            .zip(thread_cpu("helpline-media"))
            .map(|(a, b)| b.saturating_sub(a));
        std::io::Result::Ok((ids, opened_in, cpu))
    })?;
    let snap = stats.snapshot();
    let got = received.load(Ordering::Relaxed);
    for id in ids {
        engine.close(id);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();
    let control = control.join().unwrap_or_default();
    let pick = |q: f64| {
        control
            .get(((control.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };

    let expected = (n as u64) * 50 * args.seconds;
    println!(
        "streams            {n} ({})",
        if args.aligned {
            "aligned phases"
        } else {
            "phases spread over 20 ms"
        }
    );
    println!("opened in          {opened_in:?}");
    println!("measured           {} s", args.seconds);
    println!("packets sent       {} (expected {expected})", snap.packets);
    println!("packets received   {got}");
    println!("send errors        {}", snap.send_errors);
    println!("|error| p50        {:?}", snap.quantile(0.50));
    println!("|error| p99        {:?}", snap.quantile(0.99));
    println!("|error| p99.9      {:?}", snap.quantile(0.999));
    println!("max late           {:?}", snap.max_late);
    println!(
        "max early          {:?} ({} packets early)",
        snap.max_early, snap.early
    );
    println!(
        "within 1 ms        {:.3} %",
        100.0 * snap.fraction_within(Duration::from_millis(1))
    );
    if let Some(cpu) = media_cpu {
        let per_packet = cpu.as_secs_f64() / (snap.packets.max(1) as f64);
        println!(
            "media thread CPU   {:.1} % of one core, {:.2} µs per packet (=> about {:.0} streams per core)",
            100.0 * cpu.as_secs_f64() / args.seconds as f64,
            per_packet * 1e6,
            1.0 / (per_packet * 50.0)
        );
    }
    println!(
        "control sleeper    late p50 {:?} p99 {:?} max {:?} (OS wake-up jitter on this machine meanwhile)",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    Ok(())
}
