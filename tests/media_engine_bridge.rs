//! The media engine bridging two of its sessions over real sockets on 127.0.0.1: a "caller" and an
//! "agent" socket stand for the two phones. Packets are counted at both ends; the caller keeps the
//! stream it heard the prompt on; RFC 4733 crosses with the agent's payload type and is still
//! reported; hold, unbridge, close and the RTP timeout behave per session.
//!
//! Ordering without sleeps: engine commands are handled in order, so a one-frame prompt played on a
//! spare "fence" session and its `PromptFinished` prove every earlier command was applied; packets
//! of one socket are handled in order, so a key press and its `Digit` event prove every earlier
//! packet from that phone was handled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline::media::codec::{alaw_to_linear, ulaw_to_linear, Law};
use helpline::media::rtp::{self, RtpHeader};
use helpline::media::session::{MediaConfig, MediaEvent};
use helpline::media::MediaId;
use helpline::prompts::Prompt;
use helpline::server::media_engine::{MediaEngine, MediaEngineConfig, MediaHandle, EARLY};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::Receiver;

const CALLER: MediaId = MediaId(1);
const AGENT: MediaId = MediaId(2);
const FENCE: MediaId = MediaId(9);
const WAIT: Duration = Duration::from_secs(2);

type Events = Receiver<(MediaId, MediaEvent)>;

/// An even port whose successor is free too, found by asking the OS (then released for the engine).
fn free_pair() -> u16 {
    for _ in 0..200 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port() & !1;
        drop(s);
        if p > 1024
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free even port pair on 127.0.0.1");
}

fn cfg(law: Law, pt: u8, dtmf: u8, remote: SocketAddr, seed: u64) -> MediaConfig {
    MediaConfig {
        law,
        payload_type: pt,
        dtmf_payload_type: Some(dtmf),
        remote: Some(remote),
        send: true,
        rtp_timeout: Duration::from_secs(30),
        seed,
    }
}

fn prompt(name: &str, frames: usize, level: i16) -> Arc<Prompt> {
    let pcm: Vec<i16> = (0..frames * 160)
        .map(|i| ((i % 20) as i16 - 10) * level)
        .collect();
    Arc::new(Prompt::from_samples("en", name, &pcm))
}

/// A remote phone: its socket, the engine port it talks to, and its own RTP stream.
struct Phone {
    sock: UdpSocket,
    engine_port: u16,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Phone {
    async fn new(ssrc: u32) -> Phone {
        Phone {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            engine_port: 0,
            ssrc,
            seq: ssrc as u16,
            ts: ssrc.wrapping_mul(7),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&mut self, pt: u8, ts: u32, payload: &[u8]) {
        let mut buf = [0u8; 1500];
        let h = RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        };
        let n = rtp::write(&mut buf, &h, payload).unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.sock
            .send_to(&buf[..n], ("127.0.0.1", self.engine_port))
            .await
            .unwrap();
    }

    /// The next 20 ms audio packet.
    async fn audio(&mut self, pt: u8, payload: &[u8]) {
        self.send(pt, self.ts, payload).await;
        self.ts = self.ts.wrapping_add(160);
    }

    /// One RFC 4733 key press: two packets of the event and its end, sharing one timestamp.
    async fn key(&mut self, pt: u8, code: u8) {
        let ts = self.ts;
        for (end, duration) in [(false, 160u16), (false, 320), (true, 480)] {
            let d = duration.to_be_bytes();
            self.send(pt, ts, &[code, if end { 0x8a } else { 0x0a }, d[0], d[1]])
                .await;
        }
        self.ts = self.ts.wrapping_add(480);
    }

    /// The next packet the engine sent this phone, within [`WAIT`].
    async fn recv(&self) -> (RtpHeader, Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 2048];
        let (n, from) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .expect("a packet within the wait")
            .unwrap();
        let (h, payload) = rtp::parse(&buf[..n]).expect("the engine sends valid rtp");
        (h, payload.to_vec(), from)
    }
}

fn start() -> (MediaHandle, Events) {
    let (tx, rx) = helpline::server::media_engine::event_channel();
    let engine =
        MediaEngine::start(MediaEngineConfig::new("127.0.0.1".parse().unwrap()), tx).unwrap();
    (engine, rx)
}

/// Waits (bounded) for the first event matching `want`; returns it and every event seen before it.
async fn wait_for(
    rx: &mut Events,
    want: impl Fn(&(MediaId, MediaEvent)) -> bool,
) -> ((MediaId, MediaEvent), Vec<(MediaId, MediaEvent)>) {
    let mut before = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("the event within the wait")
            .expect("engine running");
        if want(&ev) {
            return (ev, before);
        }
        before.push(ev);
    }
}

fn digit(ev: &(MediaId, MediaEvent), id: MediaId, key: char) -> bool {
    matches!(ev, (i, MediaEvent::Digit(d)) if *i == id && d.digit == key)
}

fn finished(ev: &(MediaId, MediaEvent), id: MediaId, name: &str) -> bool {
    matches!(ev, (i, MediaEvent::PromptFinished { name: n }) if *i == id && n == name)
}

/// Every command sent before this has been applied when it returns (module doc).
async fn fence(engine: &MediaHandle, rx: &mut Events) -> Vec<(MediaId, MediaEvent)> {
    engine.play(FENCE, prompt("fence", 1, 10));
    wait_for(rx, |e| finished(e, FENCE, "fence")).await.1
}

fn ulaw_speech(k: u8) -> Vec<u8> {
    (0..160u8)
        .map(|i| i.wrapping_mul(5).wrapping_add(k))
        .collect()
}

fn alaw_speech(k: u8) -> Vec<u8> {
    (0..160u8)
        .map(|i| i.wrapping_mul(3).wrapping_add(k))
        .collect()
}

fn encode(law: Law, pcm: &[i16]) -> Vec<u8> {
    let mut out = vec![0u8; pcm.len()];
    law.encode_into(pcm, &mut out);
    out
}

fn ulaw_as_alaw(b: &[u8]) -> Vec<u8> {
    let pcm: Vec<i16> = b.iter().map(|&c| ulaw_to_linear(c)).collect();
    encode(Law::Alaw, &pcm)
}

fn alaw_as_ulaw(b: &[u8]) -> Vec<u8> {
    let pcm: Vec<i16> = b.iter().map(|&c| alaw_to_linear(c)).collect();
    encode(Law::Ulaw, &pcm)
}

/// A PCMU caller (telephone-event 101) and a PCMA agent (telephone-event 96), both opened, plus the
/// fence session.
struct Call {
    engine: MediaHandle,
    events: Events,
    caller: Phone,
    agent: Phone,
    _fence_peer: UdpSocket,
    agent_cfg: MediaConfig,
}

async fn call(rtp_timeout: Duration) -> Call {
    let (engine, events) = start();
    let mut caller = Phone::new(0x0CA1_1E55).await;
    let mut agent = Phone::new(0x0A6E_0007).await;
    let fence_peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller_cfg = MediaConfig {
        rtp_timeout,
        ..cfg(Law::Ulaw, 0, 101, caller.addr(), 11)
    };
    let agent_cfg = MediaConfig {
        rtp_timeout,
        ..cfg(Law::Alaw, 8, 96, agent.addr(), 22)
    };
    caller.engine_port = free_pair();
    engine.open(CALLER, caller.engine_port, caller_cfg).unwrap();
    agent.engine_port = free_pair();
    engine
        .open(AGENT, agent.engine_port, agent_cfg.clone())
        .unwrap();
    let fence_cfg = cfg(Law::Ulaw, 0, 101, fence_peer.local_addr().unwrap(), 33);
    engine.open(FENCE, free_pair(), fence_cfg).unwrap();
    Call {
        engine,
        events,
        caller,
        agent,
        _fence_peer: fence_peer,
        agent_cfg,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Plays a prompt of `frames` frames to the caller and returns the headers the caller heard, each
/// checked to carry that prompt's frame, and the events seen before its `PromptFinished`.
async fn prompt_to_caller(
    c: &mut Call,
    name: &str,
    frames: usize,
) -> (Vec<RtpHeader>, Vec<(MediaId, MediaEvent)>) {
    let p = prompt(name, frames, 300);
    c.engine.play(CALLER, p.clone());
    let mut heard = Vec::new();
    for i in 0..frames {
        let (h, payload, from) = c.caller.recv().await;
        assert_eq!(from.port(), c.caller.engine_port);
        assert_eq!(
            Some(&payload[..]),
            p.frame(Law::Ulaw, i),
            "frame {i} of {name}"
        );
        heard.push(h);
    }
    let before = wait_for(&mut c.events, |e| finished(e, CALLER, name))
        .await
        .1;
    (heard, before)
}

#[test]
fn caller_and_agent_talk_through_the_bridge() {
    runtime().block_on(async {
        let mut c = call(Duration::from_secs(30)).await;
        let (heard, _) = prompt_to_caller(&mut c, "connecting-you", 5).await;
        let prompt_ssrc = heard[0].ssrc;
        let mut caller_next_seq = heard[4].sequence.wrapping_add(1);

        c.engine.bridge(CALLER, AGENT);
        fence(&c.engine, &mut c.events).await;

        // 100 packets each way, alternating; every one arrives, from the other leg's engine port,
        // transcoded to the receiver's law, in the stream the receiver knows.
        let (mut to_agent, mut to_caller) = (0, 0);
        let mut agent_stream: Option<(u32, u16)> = None;
        for k in 0..100u8 {
            let spoken = ulaw_speech(k);
            c.caller.audio(0, &spoken).await;
            let (h, payload, from) = c.agent.recv().await;
            assert_eq!(
                from.port(),
                c.agent.engine_port,
                "sent from the agent's leg"
            );
            assert_eq!(h.payload_type, 8, "the agent's PCMA payload type");
            assert_eq!(payload, ulaw_as_alaw(&spoken), "PCMU transcoded to PCMA");
            let (ssrc, seq) = *agent_stream.get_or_insert((h.ssrc, h.sequence));
            assert_eq!(h.ssrc, ssrc, "one SSRC toward the agent");
            assert_eq!(h.sequence, seq.wrapping_add(u16::from(k)));
            assert_eq!(h.marker, k == 0);
            to_agent += 1;

            let spoken = alaw_speech(k);
            c.agent.audio(8, &spoken).await;
            let (h, payload, from) = c.caller.recv().await;
            assert_eq!(
                from.port(),
                c.caller.engine_port,
                "sent from the caller's leg"
            );
            assert_eq!(h.payload_type, 0);
            assert_eq!(payload, alaw_as_ulaw(&spoken), "PCMA transcoded to PCMU");
            assert_eq!(
                h.ssrc, prompt_ssrc,
                "the SSRC the caller heard the prompt with"
            );
            assert_eq!(
                h.sequence, caller_next_seq,
                "sequence continues +1 from the prompt"
            );
            assert_eq!(h.marker, k == 0, "marker on the switch only");
            caller_next_seq = caller_next_seq.wrapping_add(1);
            to_caller += 1;
        }
        assert_eq!((to_agent, to_caller), (100, 100));
        let (mut agent_seq, agent_ssrc) = {
            let (ssrc, seq) = agent_stream.unwrap();
            (seq.wrapping_add(100), ssrc)
        };

        // A key pressed during the conversation: the agent gets it with its own payload type (96),
        // payload untouched, and the call still hears about it.
        c.caller.key(101, 5).await;
        let mut event_ts = None;
        for (i, end) in [(0, false), (1, false), (2, true)] {
            let (h, payload, _) = c.agent.recv().await;
            assert_eq!(h.payload_type, 96, "telephone-event with the agent's PT");
            assert_eq!(h.sequence, agent_seq, "packet {i}");
            assert_eq!(payload[0], 5);
            assert_eq!(payload[1] & 0x80 != 0, end);
            assert_eq!(
                *event_ts.get_or_insert(h.timestamp),
                h.timestamp,
                "one event"
            );
            agent_seq = agent_seq.wrapping_add(1);
        }
        wait_for(&mut c.events, |e| digit(e, CALLER, '5')).await;

        // Hold from the agent's side: nothing goes toward the agent, the agent is still heard.
        let held = MediaConfig {
            send: false,
            ..c.agent_cfg.clone()
        };
        c.engine.configure(AGENT, held);
        fence(&c.engine, &mut c.events).await;
        for k in 0..10 {
            c.caller.audio(0, &ulaw_speech(k)).await;
        }
        c.caller.key(101, 7).await;
        // The key is reported, so the caller's ten packets before it were handled (while held).
        wait_for(&mut c.events, |e| digit(e, CALLER, '7')).await;
        c.agent.audio(8, &alaw_speech(200)).await;
        let (h, payload, _) = c.caller.recv().await;
        assert_eq!(
            payload,
            alaw_as_ulaw(&alaw_speech(200)),
            "held agent still heard"
        );
        assert_eq!(h.sequence, caller_next_seq);
        caller_next_seq = caller_next_seq.wrapping_add(1);

        // Resume: the first packet the agent receives is the one sent after it, anchored anew.
        c.engine.configure(AGENT, c.agent_cfg.clone());
        fence(&c.engine, &mut c.events).await;
        let after = ulaw_speech(99);
        c.caller.audio(0, &after).await;
        let (h, payload, _) = c.agent.recv().await;
        assert_eq!(
            payload,
            ulaw_as_alaw(&after),
            "nothing from the hold was relayed"
        );
        assert_eq!(h.ssrc, agent_ssrc);
        assert_eq!(h.sequence, agent_seq, "no sequence number used while held");
        assert!(h.marker, "a talkspurt after the hold");

        // A prompt while bridged is refused: nothing of it reaches the caller, no PromptFinished.
        c.engine.play(CALLER, prompt("refused", 3, 50));
        c.engine.unbridge(AGENT);
        let (heard, before) = prompt_to_caller(&mut c, "after-the-agent", 3).await;
        assert_eq!(heard[0].ssrc, prompt_ssrc, "the caller's stream continues");
        assert_eq!(
            heard[0].sequence, caller_next_seq,
            "sequence +1 after the bridge"
        );
        assert!(heard[0].marker);
        assert!(heard
            .windows(2)
            .all(|w| w[1].sequence == w[0].sequence.wrapping_add(1)));
        assert!(
            !before.iter().any(|e| finished(e, CALLER, "refused")),
            "the refused prompt never played: {before:?}"
        );
    });
}

#[test]
fn closing_one_leg_ends_the_bridge_and_the_other_continues_its_stream() {
    runtime().block_on(async {
        let mut c = call(Duration::from_secs(30)).await;
        let (heard, _) = prompt_to_caller(&mut c, "welcome", 2).await;
        c.engine.bridge(CALLER, AGENT);
        fence(&c.engine, &mut c.events).await;
        c.agent.audio(8, &alaw_speech(1)).await;
        let (h, _, _) = c.caller.recv().await;
        assert_eq!(h.sequence, heard[1].sequence.wrapping_add(1));

        c.engine.close(AGENT);
        // The caller's leg plays again (a bridged one would refuse), continuing its stream.
        let (after, _) = prompt_to_caller(&mut c, "agent-left", 2).await;
        assert_eq!(after[0].ssrc, heard[0].ssrc);
        assert_eq!(after[0].sequence, h.sequence.wrapping_add(1));
        assert!(after[0].marker);
    });
}

#[test]
fn rtp_timeout_still_fires_per_session_while_bridged() {
    runtime().block_on(async {
        let timeout = Duration::from_millis(300);
        let opened = Instant::now();
        let mut c = call(timeout).await;
        c.engine.bridge(CALLER, AGENT);
        // The caller talks every 20 ms, the agent says nothing: only the agent's leg times out.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut k = 0u8;
        let seen = loop {
            tokio::select! {
                _ = tick.tick() => {
                    c.caller.audio(0, &ulaw_speech(k)).await;
                    k = k.wrapping_add(1);
                    assert!(opened.elapsed() < Duration::from_secs(3), "no RtpTimeout in 3 s");
                }
                ev = c.events.recv() => {
                    let ev = ev.expect("engine running");
                    if ev == (AGENT, MediaEvent::RtpTimeout) {
                        break k;
                    }
                    assert_ne!(ev, (CALLER, MediaEvent::RtpTimeout), "the caller keeps talking");
                }
            }
        };
        // The engine may act up to `EARLY` (250 µs) ahead of a deadline.
        assert!(opened.elapsed() + EARLY >= timeout, "not before its period");
        assert!(
            seen >= 5,
            "the caller was talking meanwhile ({seen} packets)"
        );
        // Its packets crossed the bridge the whole time.
        let (h, _, _) = c.agent.recv().await;
        assert_eq!(h.payload_type, 8);
    });
}

/// Bridged legs report RTCP too: the agent's leg counts the relayed packets as its own sent ones
/// (its SR's packet count), the caller's leg the packets it received.
#[test]
fn bridged_legs_report_rtcp_with_relayed_packets_counted() {
    runtime().block_on(async {
        let (tx, mut events) = helpline::server::media_engine::event_channel();
        let engine = MediaEngine::start(
            MediaEngineConfig {
                rtcp_interval: Duration::from_millis(100),
                ..MediaEngineConfig::new("127.0.0.1".parse().unwrap())
            },
            tx,
        )
        .unwrap();
        let mut caller = Phone::new(0x0CA1_1E55).await;
        let mut agent = Phone::new(0x0A6E_0007).await;
        caller.engine_port = free_pair();
        engine
            .open(
                CALLER,
                caller.engine_port,
                cfg(Law::Ulaw, 0, 101, caller.addr(), 11),
            )
            .unwrap();
        agent.engine_port = free_pair();
        engine
            .open(
                AGENT,
                agent.engine_port,
                cfg(Law::Ulaw, 0, 101, agent.addr(), 22),
            )
            .unwrap();
        engine.bridge(CALLER, AGENT);
        // The agent phone sends first, so its leg has latched and the relay has a destination.
        agent.audio(0, &ulaw_speech(1)).await;
        let _ = caller.recv().await;
        for k in 0..10 {
            caller.audio(0, &ulaw_speech(k)).await;
            let _ = agent.recv().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let quiet = Instant::now();
        let stats = |id: MediaId, ev: &(MediaId, MediaEvent)| match ev {
            (i, MediaEvent::Rtcp(s)) if *i == id => Some(*s),
            _ => None,
        };
        // A report taken after the last packet (the interval is 100 ms, randomised).
        let (ev, _) = wait_for(&mut events, |e| {
            stats(AGENT, e).is_some_and(|s| s.packets_sent >= 10) && Instant::now() > quiet
        })
        .await;
        let agent_side = stats(AGENT, &ev).unwrap();
        assert_eq!(
            agent_side.packets_sent, 10,
            "relayed toward the agent: {agent_side:?}"
        );
        assert_eq!(agent_side.packets_received, 1);
        let (ev, _) = wait_for(&mut events, |e| {
            stats(CALLER, e).is_some_and(|s| s.packets_received >= 10)
        })
        .await;
        let caller_side = stats(CALLER, &ev).unwrap();
        assert_eq!((caller_side.packets_received, caller_side.lost), (10, 0));
        assert_eq!(
            caller_side.packets_sent, 1,
            "the agent's one packet, relayed"
        );
    });
}

/// A peer flooding one session with RFC 4733 key events (each a new key) and RTCP reports while the
/// core reads nothing (an events channel of 4): what reaches the core is bounded, every key is either
/// delivered or counted as shed, the statistics are folded, the lifecycle events still arrive in
/// order, and afterwards the session reports a key again.
#[test]
fn a_flood_of_keys_and_reports_reaches_the_core_bounded_and_lifecycle_events_survive() {
    use helpline::server::media_outbox::KEY_BACKLOG;
    const KEYS: u16 = 200;
    const REPORTS: u64 = 200;
    runtime().block_on(async {
        let (tx, mut events) = tokio::sync::mpsc::channel(4);
        let engine =
            MediaEngine::start(MediaEngineConfig::new("127.0.0.1".parse().unwrap()), tx).unwrap();
        let mut caller = Phone::new(0x0F10_0D00).await;
        caller.engine_port = free_pair();
        engine
            .open(
                CALLER,
                caller.engine_port,
                cfg(Law::Ulaw, 0, 101, caller.addr(), 7),
            )
            .unwrap();
        engine.play(CALLER, prompt("short", 2, 10));
        caller.audio(0, &ulaw_speech(1)).await;
        for _ in 0..KEYS {
            // A start packet of a new event each time (a new timestamp).
            let ts = caller.ts;
            caller.send(101, ts, &[5, 0x0a, 0, 160]).await;
            caller.ts = caller.ts.wrapping_add(800);
        }
        let rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rr = [
            0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0,
        ];
        for _ in 0..REPORTS {
            rtcp.send_to(&rr, ("127.0.0.1", caller.engine_port + 1))
                .await
                .unwrap();
        }
        // The engine has read the whole flood when its counters say so (nothing to await but them).
        let stats = engine.send_stats();
        let deadline = Instant::now() + WAIT;
        let read_all = || {
            let s = stats.snapshot();
            s.received == u64::from(KEYS) + 1 && s.reports_folded + s.stats_merged >= REPORTS - 1
        };
        while !read_all() {
            assert!(Instant::now() < deadline, "{:?}", stats.snapshot());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The core reads now: the prompt's end comes, behind everything earlier, in order.
        let (_, before) = wait_for(&mut events, |e| finished(e, CALLER, "short")).await;
        assert!(
            matches!(before.first(), Some((CALLER, MediaEvent::FirstRtp { .. }))),
            "{before:?}"
        );
        // The flood is over: after a key's worth of refill, a key is reported again; it also brings
        // whatever the flood left behind the prompt's end.
        tokio::time::sleep(Duration::from_millis(120)).await;
        caller.key(101, 9).await;
        let (_, after) = wait_for(&mut events, |e| digit(e, CALLER, '9')).await;
        let flood: Vec<_> = before.iter().chain(&after).collect();
        let keys = flood.iter().filter(|e| digit(e, CALLER, '5')).count();
        let reports = flood
            .iter()
            .filter(|e| matches!(e, (_, MediaEvent::Rtcp(_))))
            .count();
        // The channel's 4 slots and the outbox's bounds, whatever the peer sent.
        assert!(flood.len() <= 4 + 1 + 1 + KEY_BACKLOG, "{}", flood.len());
        assert!(keys <= 4 + KEY_BACKLOG, "{keys}");
        // More than the channel holds arrived: they waited in the session's outbox.
        assert!(keys >= KEY_BACKLOG, "{keys}");
        assert!(reports <= 1, "{reports}");
        let s = stats.snapshot();
        assert_eq!(
            keys as u64 + s.keys_over_rate + s.keys_dropped,
            u64::from(KEYS),
            "every key delivered or counted: {s:?}"
        );
        assert!(s.keys_over_rate > 0 && s.reports_folded > 0, "{s:?}");
    });
}

/// With two media threads, the engine keeps each call's sessions on one thread (by the id's call
/// group): two calls on different threads each relay between their own legs.
#[test]
fn two_media_threads_each_bridge_the_legs_of_their_own_call() {
    use helpline::server::media_engine::media_thread_of;
    runtime().block_on(async {
        let (tx, mut events) = helpline::server::media_engine::event_channel();
        let engine = MediaEngine::start(
            MediaEngineConfig {
                threads: 2,
                ..MediaEngineConfig::new("127.0.0.1".parse().unwrap())
            },
            tx,
        )
        .unwrap();
        assert_eq!(engine.threads(), 2);
        let groups = [1u64, 2];
        assert_ne!(
            media_thread_of(MediaId::in_group(groups[0], 0), 2),
            media_thread_of(MediaId::in_group(groups[1], 0), 2),
            "the two calls are on different threads"
        );
        let fence_peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut phones = Vec::new();
        for (g, &group) in groups.iter().enumerate() {
            let (caller_id, agent_id) = (MediaId::in_group(group, 0), MediaId::in_group(group, 1));
            let mut caller = Phone::new(0x100 + g as u32).await;
            let mut agent = Phone::new(0x200 + g as u32).await;
            caller.engine_port = free_pair();
            let caller_cfg = cfg(Law::Ulaw, 0, 101, caller.addr(), 40 + g as u64);
            engine
                .open(caller_id, caller.engine_port, caller_cfg)
                .unwrap();
            agent.engine_port = free_pair();
            let agent_cfg = cfg(Law::Ulaw, 0, 101, agent.addr(), 50 + g as u64);
            engine.open(agent_id, agent.engine_port, agent_cfg).unwrap();
            let fence_cfg = cfg(Law::Ulaw, 0, 101, fence_peer.local_addr().unwrap(), 60);
            engine
                .open(MediaId::in_group(group, 9), free_pair(), fence_cfg)
                .unwrap();
            phones.push((caller_id, agent_id, caller, agent));
        }
        for &(caller_id, agent_id, ..) in &phones {
            engine.bridge(caller_id, agent_id);
        }
        for &group in &groups {
            let fence_id = MediaId::in_group(group, 9);
            engine.play(fence_id, prompt("fence", 1, 10));
            wait_for(&mut events, |e| finished(e, fence_id, "fence")).await;
        }
        for (g, (_, _, caller, agent)) in phones.iter_mut().enumerate() {
            for k in 0..20u8 {
                let spoken = ulaw_speech(k);
                caller.audio(0, &spoken).await;
                let (_, payload, from) = agent.recv().await;
                assert_eq!(
                    from.port(),
                    agent.engine_port,
                    "call {g}: from its agent leg"
                );
                assert_eq!(payload, spoken, "call {g}, packet {k}: relayed as spoken");
            }
        }
    });
}
