//! What one relayed RTP packet costs in `media::bridge`: relays 1,000,000 packets of 20 ms G.711 per case
//! and prints nanoseconds per packet. CPU only: no sockets, the clock is read twice per case.
//!
//! `cargo run --release --example bridge_cost [-- --packets N]`
//!
//! Cases: same law (header rewrite + copy), PCMU→PCMA (header rewrite + table lookup per byte), and
//! a mix with one RFC 4733 packet in ten. Packet `k` is stamped `start + k·20 ms` on a simulated clock.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use helpline::media::bridge::Relay;
use helpline::media::codec::Law;
use helpline::media::rtp::{self, RtpContinuation, RtpHeader};
use helpline::media::session::MediaConfig;

#[derive(Parser, Debug)]
#[command(about = "measure the CPU cost of relaying one RTP packet through media::bridge")]
struct Args {
    /// Packets relayed per case.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u32,
}

fn config(law: Law, pt: u8) -> MediaConfig {
    MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: Some(101),
        remote: Some(SocketAddr::from(([127, 0, 0, 1], 40_000))),
        send: true,
        rtp_timeout: Duration::from_secs(30),
        seed: 1,
    }
}

/// Pre-built input packets (built before timing, so only the relay is measured); sequence numbers
/// are patched in the loop, which is two byte stores.
fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 12 + payload.len()];
    let h = RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: 0,
        timestamp: 0,
        ssrc: 0x1234,
    };
    let n = rtp::write(&mut buf, &h, payload).expect("buffer sized for the packet");
    buf.truncate(n);
    buf
}

fn run(name: &str, packets: u32, out_law: Law, event_every: Option<u32>) {
    let start = Instant::now();
    let out = RtpContinuation {
        ssrc: 0xABCD,
        next_sequence: 1,
        timestamp: 0,
        at: start,
    };
    let mut relay = Relay::new(&config(Law::Ulaw, 0), &config(out_law, 8), out);
    let payload: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
    let mut audio = packet(0, &payload);
    let mut event = packet(101, &[5, 10, 0, 160]);
    let mut buf = [0u8; 1500];
    let mut written = 0usize;
    let t = Instant::now();
    for k in 0..packets {
        let now = start + Duration::from_millis(20) * k;
        let pkt = if event_every.is_some_and(|e| k % e == 0) {
            &mut event
        } else {
            &mut audio
        };
        let seq = (k as u16).to_be_bytes();
        pkt[2] = seq[0];
        pkt[3] = seq[1];
        let ts = (k.wrapping_mul(160)).to_be_bytes();
        pkt[4..8].copy_from_slice(&ts);
        if let Some(n) = relay.relay(black_box(now), black_box(pkt), &mut buf) {
            written += n;
        }
        black_box(&buf);
    }
    let elapsed = t.elapsed();
    let stats = relay.stats();
    println!(
        "{name:<28} {:>7.1} ns/packet  ({} relayed, {} bytes out)",
        elapsed.as_nanos() as f64 / f64::from(packets),
        stats.relayed,
        written
    );
}

fn main() {
    let args = Args::parse();
    run("PCMU -> PCMU (copy)", args.packets, Law::Ulaw, None);
    run("PCMU -> PCMA (transcode)", args.packets, Law::Alaw, None);
    run(
        "PCMU -> PCMA + 1/10 events",
        args.packets,
        Law::Alaw,
        Some(10),
    );
}
