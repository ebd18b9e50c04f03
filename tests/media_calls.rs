//! Issue 3 over loopback with the project's test UA and a plain RTP socket against the real binary and the
//! `first-flow` menu: what the caller hears (every packet of the welcome compared with the prompt's G.711
//! frames), when the first prompt starts, symmetric RTP, a key pressed each of the three ways (RFC 4733,
//! SIP INFO, in-band tones) with the confirmation prompts, the BYE and the CDR, de-duplication of one key
//! sent two ways, and a re-INVITE to PCMA mid-prompt. SIPp interop lives in `tests/sipp_media.rs`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{parse_rtp, rtp_packet, sdp_offer, RtpSeen, Server, TestCall, Ua};
use helpline::media::codec::Law;
use helpline::prompts::{Prompt, PromptStore};

const WAIT: Duration = Duration::from_secs(10);

fn menus() -> PathBuf {
    common::root().join("tests/data/menus/first-flow")
}

/// The shipped prompts, loaded once with the library's own loader (the same bytes the server sends).
fn store() -> &'static PromptStore {
    static STORE: OnceLock<PromptStore> = OnceLock::new();
    STORE.get_or_init(|| {
        PromptStore::load_dir(&common::root().join("prompts")).unwrap_or_else(|e| panic!("{e:?}"))
    })
}

fn prompt(name: &str) -> std::sync::Arc<Prompt> {
    store()
        .get("en", name)
        .unwrap_or_else(|| panic!("no prompt en/{name}"))
}

/// The G.711 frames of a prompt, in order.
fn frames(name: &str, law: Law) -> Vec<Vec<u8>> {
    let p = prompt(name);
    (0..p.frame_count())
        .map(|i| p.frame(law, i).expect("frame in range").to_vec())
        .collect()
}

/// One received RTP packet: header fields and the payload bytes.
#[derive(Clone, Debug)]
struct Pkt {
    h: RtpSeen,
    payload: Vec<u8>,
}

/// A call answered by the server, with the caller's RTP socket.
struct Caller {
    ua: Ua,
    call: TestCall,
    rtp: UdpSocket,
    /// The server's RTP address from its SDP answer.
    server_rtp: SocketAddr,
    /// Our RTP state for what we send.
    seq: u16,
    ts: u32,
}

const SSRC: u32 = 0x1234_5678;

/// The `c=` address and `m=audio` port of an SDP body.
fn sdp_addr(body: &str) -> SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line in answer")
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .expect("m=audio port in answer");
    format!("{ip}:{port}").parse().expect("rtp address")
}

/// Places a call from a fresh RTP socket offering `payloads` (with `attrs` lines), answers the 200 with ACK.
/// `sdp_port` overrides the port named in the SDP (symmetric RTP test).
fn place_call(server: &Server, payloads: &str, attrs: &str, sdp_port: Option<u16>) -> Caller {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
    let port = sdp_port.unwrap_or_else(|| rtp.local_addr().expect("addr").port());
    let mut ua = Ua::udp(server.addr);
    let mut call = ua.invite("08000000001", &sdp_offer(port, payloads, attrs));
    let ok = ua.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("to tag on 200");
    let server_rtp = sdp_addr(ok.body());
    ua.ack(&call, "");
    Caller {
        ua,
        call,
        rtp,
        server_rtp,
        seq: 100,
        ts: 8000,
    }
}

impl Caller {
    /// Receives one RTP packet within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Pkt> {
        let mut buf = [0u8; 2048];
        self.rtp
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .ok()?;
        let (n, _) = self.rtp.recv_from(&mut buf).ok()?;
        let h = parse_rtp(Instant::now(), &buf[..n])?;
        Some(Pkt {
            h,
            payload: buf[12..n].to_vec(),
        })
    }

    /// Receives packets until none arrives for `idle` (bounded by `max` in total).
    fn recv_until_idle(&self, idle: Duration, max: Duration) -> Vec<Pkt> {
        let deadline = Instant::now() + max;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match self.recv(idle) {
                Some(p) => out.push(p),
                None => break,
            }
        }
        out
    }

    /// Sends one RTP packet to the server.
    fn send_rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let p = rtp_packet(pt, marker, self.seq, ts, SSRC, payload);
        self.seq = self.seq.wrapping_add(1);
        self.rtp.send_to(&p, self.server_rtp).expect("send rtp");
    }

    /// One 20 ms μ-law silence packet.
    fn send_silence(&mut self) {
        let ts = self.ts;
        self.send_rtp(0, false, ts, &[Law::Ulaw.silence(); 160]);
        self.ts = self.ts.wrapping_add(160);
    }

    /// Key `event` as RFC 4733 telephone-events at payload type `pt`: start (marker), updates, and the end
    /// packet three times (RFC 4733 §2.5.1.4), all with the event's start timestamp, 20 ms apart.
    fn press_rfc4733(&mut self, pt: u8, event: u8) {
        let ts = self.ts;
        for (i, dur) in [160u16, 320, 480, 640].into_iter().enumerate() {
            self.send_rtp(pt, i == 0, ts, &event_payload(event, false, dur));
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..3 {
            self.send_rtp(pt, false, ts, &event_payload(event, true, 800));
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ts = self.ts.wrapping_add(800);
    }

    /// Key '5' as in-band tones (770 + 1336 Hz, 80 ms; 697 + 1336 Hz would be '2') in μ-law between stretches of silence, paced as
    /// real 20 ms packets.
    fn press_inband_5(&mut self) {
        let total = 160 * 4;
        let pcm: Vec<i16> = (0..total)
            .map(|n| {
                let t = n as f64 / 8000.0;
                let s = (2.0 * std::f64::consts::PI * 770.0 * t).sin()
                    + (2.0 * std::f64::consts::PI * 1336.0 * t).sin();
                (s * 6000.0) as i16
            })
            .collect();
        let mut ulaw = vec![0u8; total];
        Law::Ulaw.encode_into(&pcm, &mut ulaw);
        for _ in 0..3 {
            self.send_silence();
            std::thread::sleep(Duration::from_millis(20));
        }
        for chunk in ulaw.chunks(160) {
            let ts = self.ts;
            self.send_rtp(0, false, ts, chunk);
            self.ts = self.ts.wrapping_add(160);
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..8 {
            self.send_silence();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Key `5` by SIP INFO, `application/dtmf-relay`; expects the 200.
    fn press_info_5(&mut self) {
        self.ua.in_dialog(
            &mut self.call,
            "INFO",
            "Content-Type: application/dtmf-relay\n",
            "Signal=5\r\nDuration=160\r\n",
        );
        self.ua.expect_response(200, WAIT);
    }

    /// Waits for the server's BYE, answers 200 and returns the BYE.
    fn expect_bye(&mut self) -> common::Msg {
        let bye = self.ua.expect_request("BYE", WAIT);
        self.ua.reply_ok(&bye);
        bye
    }
}

/// An RFC 4733 §2.3 payload: event, E bit + volume 10, duration.
fn event_payload(event: u8, end: bool, duration: u16) -> Vec<u8> {
    let d = duration.to_be_bytes();
    vec![event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

/// Asserts the packets are one talkspurt of `name` as the caller hears it: one SSRC, sequence +1 each,
/// marker on the first only, timestamps advancing 160 per frame, each payload exactly the prompt frame its
/// timestamp names (in the law of its payload type), and every frame of the prompt, none skipped.
///
/// Exact pacing is proved on the simulated clock (`tests/media_session.rs`); here the only loss the
/// engine's documented rule could produce is a frame skipped because the media thread woke 60 ms or more
/// after its slot, which does not happen on an idle machine. So none is allowed, and a failure says how
/// late the engine was (arrival times relative to the first packet, so receive jitter is included).
fn assert_whole_prompt(pkts: &[Pkt], name: &str) {
    let ulaw = frames(name, Law::Ulaw);
    let alaw = frames(name, Law::Alaw);
    let first = &pkts[0].h;
    assert!(first.marker, "first packet of a prompt carries the marker");
    for w in pkts.windows(2) {
        let (a, b) = (&w[0].h, &w[1].h);
        assert_eq!(b.ssrc, first.ssrc, "one SSRC");
        assert_eq!(b.seq, a.seq.wrapping_add(1), "sequence numbers step by one");
        assert!(!b.marker, "marker only on the first packet (seq {})", b.seq);
    }
    let mut last: Option<(usize, Instant)> = None;
    let mut skips = Vec::new();
    let mut most_late = Duration::ZERO;
    for p in pkts {
        let off = p.h.ts.wrapping_sub(first.ts);
        assert_eq!(
            off % 160,
            0,
            "timestamps advance in whole frames (seq {})",
            p.h.seq
        );
        let index = (off / 160) as usize;
        assert!(
            last.is_none_or(|(l, _)| index > l),
            "timestamps increase (seq {})",
            p.h.seq
        );
        let slot = pkts[0].h.at + Duration::from_millis(20) * index as u32;
        most_late = most_late.max(p.h.at.saturating_duration_since(slot));
        if let Some((l, at)) = last.filter(|(l, _)| index > l + 1) {
            let overdue = p.h.at.saturating_duration_since(
                pkts[0].h.at + Duration::from_millis(20) * (l + 1) as u32,
            );
            skips.push(format!(
                "frames {}..={} skipped: nothing arrived for {:?} after frame {l}, and frame {} \
                 was {overdue:?} overdue when frame {index} came",
                l + 1,
                index - 1,
                p.h.at - at,
                l + 1
            ));
        }
        last = Some((index, p.h.at));
        let want = match p.h.pt {
            8 => alaw.get(index),
            _ => ulaw.get(index),
        };
        assert!(
            want == Some(&p.payload),
            "{name}: packet seq {} (pt {}) is not frame {index}: it is {}",
            p.h.seq,
            p.h.pt,
            describe(&p.payload, if p.h.pt == 8 { Law::Alaw } else { Law::Ulaw })
        );
    }
    assert_eq!(
        last.map(|(l, _)| l),
        Some(ulaw.len() - 1),
        "{name} plays to its last frame"
    );
    assert!(
        skips.is_empty() && pkts.len() == ulaw.len(),
        "{name}: {} of {} frames skipped; the engine skips only frames 60 ms or more overdue, so its \
         media thread stalled (latest packet {most_late:?} after its slot): {skips:?}",
        ulaw.len() - pkts.len(),
        ulaw.len()
    );
}

/// The live check itself: a welcome the way an engine stalled until 100 ms after frame 10's slot sends
/// it (frames 10..=12, 60 ms or more overdue, skipped; 13..=15 in one burst) fails, and says how late.
#[test]
#[should_panic(expected = "frame 10 was 100ms overdue")]
fn a_skipped_frame_fails_the_prompt_check_and_says_how_late() {
    let t0 = Instant::now();
    let welcome = frames("welcome", Law::Ulaw);
    let kept = (0..welcome.len()).filter(|k| !(10..13).contains(k));
    let pkts: Vec<Pkt> = kept
        .enumerate()
        .map(|(i, k)| {
            let at = match k {
                13..=15 => t0 + Duration::from_millis(300),
                _ => t0 + Duration::from_millis(20) * k as u32,
            };
            let p = rtp_packet(0, i == 0, i as u16, 160 * k as u32, SSRC, &welcome[k]);
            Pkt {
                h: parse_rtp(at, &p).expect("valid rtp"),
                payload: welcome[k].clone(),
            }
        })
        .collect();
    assert_whole_prompt(&pkts, "welcome");
}

/// From `pkts[start..]`, the talkspurts (split at the marker bit) are exactly these prompts in order, each
/// whole (see [`assert_whole_prompt`]). Returns the index after the last one.
fn assert_prompts_follow(pkts: &[Pkt], start: usize, names: &[&str]) -> usize {
    let mut i = start;
    for name in names {
        let seg = pkts.get(i..).unwrap_or_default();
        assert!(
            !seg.is_empty(),
            "{name} never started ({} packets)",
            pkts.len()
        );
        let len = 1 + seg[1..].iter().take_while(|p| !p.h.marker).count();
        assert_whole_prompt(&seg[..len], name);
        i += len;
    }
    i
}

/// Which prompt frame a payload is (for failure messages).
fn describe(payload: &[u8], law: Law) -> String {
    for name in store().names("en") {
        if let Some(i) = frames(name, law).iter().position(|f| f == payload) {
            return format!("{name}[{i}]");
        }
    }
    "unknown".into()
}

/// The CDR's digits as (digit, method) pairs.
fn cdr_digits(cdr: &serde_json::Value) -> Vec<(String, String)> {
    cdr["digits"]
        .as_array()
        .expect("digits array")
        .iter()
        .map(|d| {
            assert!(
                d["at"]
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z') && s.contains('.')),
                "digit time is RFC 3339 with ms: {d}"
            );
            (
                d["digit"].as_str().unwrap_or_default().to_string(),
                d["method"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn whole_welcome(payloads: &str, attrs: &str, pt: u8) {
    let server = Server::start(&menus(), &[]);
    let c = place_call(&server, payloads, attrs, None);
    // The welcome is followed by 5 s of waiting for a key: a 1 s gap ends the stream.
    let pkts = c.recv_until_idle(Duration::from_secs(1), Duration::from_secs(15));
    assert!(!pkts.is_empty(), "the welcome plays");
    assert!(
        pkts.iter().all(|p| p.h.pt == pt),
        "payload type {pt} on every packet"
    );
    assert!(pkts.iter().all(|p| p.h.len == 160), "160-byte payloads");
    // One packet per frame of the prompt, each the prompt's own G.711 bytes in the negotiated law.
    assert_whole_prompt(&pkts, "welcome");
    // Paced at 20 ms: the whole prompt takes about its duration (loose bounds for a loaded machine).
    let took = pkts[pkts.len() - 1].h.at - pkts[0].h.at;
    let dur = prompt("welcome").duration() - Duration::from_millis(20);
    assert!(
        took >= dur.mul_f64(0.9) && took <= dur.mul_f64(1.3),
        "welcome of {dur:?} arrived over {took:?}"
    );
}

#[test]
fn whole_welcome_pcmu_matches_the_prompt_frames() {
    whole_welcome(
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        0,
    );
}

#[test]
fn whole_welcome_pcma_matches_the_prompt_frames() {
    whole_welcome(
        "8 101",
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        8,
    );
}

const PCMU_TE: &str = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn first_prompt_starts_on_the_callers_first_rtp() {
    let server = Server::start(&menus(), &["--first-prompt-delay-ms", "3000"]);

    // Caller sends RTP right after the ACK: the welcome starts long before the 3 s delay.
    let mut c = place_call(&server, "0 101", PCMU_TE, None);
    let sent = Instant::now();
    c.send_silence();
    let first = c.recv(Duration::from_secs(10)).expect("welcome starts");
    let after = first.h.at - sent;
    assert!(
        after < Duration::from_millis(1500),
        "welcome started {after:?} after our RTP"
    );
    assert!(first.h.marker);
    assert_eq!(first.payload, frames("welcome", Law::Ulaw)[0]);

    // A silent caller: the welcome starts after the configured delay, not before.
    let c = place_call(&server, "0 101", PCMU_TE, None);
    let acked = Instant::now();
    let first = c
        .recv(Duration::from_secs(10))
        .expect("welcome starts after the delay");
    let after = first.h.at - acked;
    assert!(
        after >= Duration::from_millis(2700),
        "welcome started {after:?} after the ACK, before the 3 s delay"
    );
    assert_eq!(first.payload, frames("welcome", Law::Ulaw)[0]);
}

#[test]
fn symmetric_rtp_sends_to_the_callers_source() {
    let server = Server::start(&menus(), &["--first-prompt-delay-ms", "3000"]);
    // The SDP names socket A's port, but the caller sends (and listens) on socket B.
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind a");
    let a_port = a.local_addr().expect("addr").port();
    let mut c = place_call(&server, "0 101", PCMU_TE, Some(a_port));
    c.send_silence();
    let first = c
        .recv(Duration::from_secs(10))
        .expect("prompt goes to our source");
    assert_eq!(first.payload, frames("welcome", Law::Ulaw)[0]);
    let more = c.recv_until_idle(Duration::from_millis(300), Duration::from_secs(1));
    assert!(
        !more.is_empty(),
        "the prompt keeps coming to the source address"
    );
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(
        a.recv_from(&mut buf).is_err(),
        "nothing goes to the SDP address once latched"
    );
}

/// Presses '5' one way mid-welcome, then checks the confirmation, the BYE and the CDR.
fn key_call(payloads: &str, attrs: &str, press: impl FnOnce(&mut Caller), method: &str) {
    let server = Server::start(&menus(), &[]);
    let mut c = place_call(&server, payloads, attrs, None);
    // Wait until the welcome plays (the IVR is listening for keys), then press.
    let first = c.recv(WAIT).expect("welcome starts");
    assert_eq!(first.payload, frames("welcome", Law::Ulaw)[0]);
    press(&mut c);
    let pkts = c.recv_until_idle(Duration::from_millis(1500), Duration::from_secs(20));
    // Barge-in: the new talkspurt starts with the first frame of you-pressed, marker set.
    let you = frames("you-pressed", Law::Ulaw);
    let start = pkts
        .iter()
        .position(|p| p.h.marker && p.payload == you[0])
        .unwrap_or_else(|| panic!("you-pressed never started ({} packets)", pkts.len()));
    assert!(
        pkts[..start]
            .iter()
            .all(|p| frames("welcome", Law::Ulaw).contains(&p.payload)),
        "only welcome frames before the confirmation"
    );
    let end = assert_prompts_follow(&pkts, start, &["you-pressed", "digit-5", "goodbye"]);
    assert_eq!(end, pkts.len(), "nothing after goodbye");
    let bye = c.expect_bye();
    assert_eq!(
        bye.header("Call-ID").as_deref(),
        Some(c.call.call_id.as_str())
    );
    let cdr = server.cdr_for(&c.call.call_id, WAIT);
    assert_eq!(
        cdr_digits(&cdr),
        vec![("5".to_string(), method.to_string())],
        "CDR: {cdr}"
    );
    assert_eq!(cdr["end_reason"], "server-bye");
    assert_cdr_fields(&cdr, &c);
}

/// The CDR fields: who called what from where, and RFC 3339 UTC times with milliseconds in order.
fn assert_cdr_fields(cdr: &serde_json::Value, c: &Caller) {
    assert_eq!(cdr["call_id"], c.call.call_id.as_str());
    assert_eq!(cdr["dialed"], "08000000001");
    assert_eq!(
        cdr["from"],
        format!("sip:caller@{}", c.ua.local).as_str(),
        "CDR: {cdr}"
    );
    assert_eq!(cdr["source"], c.ua.local.to_string().as_str(), "CDR: {cdr}");
    assert_eq!(cdr["final_status"], 200);
    let time = |k: &str| {
        let v = cdr[k]
            .as_str()
            .unwrap_or_else(|| panic!("CDR {k} missing: {cdr}"));
        let t = chrono::DateTime::parse_from_rfc3339(v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        // `…:SS.mmmZ`: milliseconds, UTC.
        assert!(
            v.ends_with('Z') && v.rsplit('.').next().is_some_and(|f| f.len() == 4),
            "{k}={v}"
        );
        t
    };
    let (start, answer, end) = (time("start"), time("answer"), time("end"));
    assert!(
        start <= answer && answer < end,
        "start {start} answer {answer} end {end}"
    );
}

#[test]
fn key_by_rfc4733_pt101() {
    key_call("0 101", PCMU_TE, |c| c.press_rfc4733(101, 5), "rfc4733");
}

#[test]
fn key_by_rfc4733_pt96() {
    key_call(
        "0 96",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\n",
        |c| c.press_rfc4733(96, 5),
        "rfc4733",
    );
}

#[test]
fn key_by_sip_info() {
    key_call("0 101", PCMU_TE, |c| c.press_info_5(), "info");
}

#[test]
fn key_in_band() {
    key_call(
        "0",
        "a=rtpmap:0 PCMU/8000\r\n",
        |c| c.press_inband_5(),
        "inband",
    );
}

#[test]
fn same_key_two_ways_is_recorded_once() {
    let server = Server::start(&menus(), &[]);
    let mut c = place_call(&server, "0 101", PCMU_TE, None);
    c.recv(WAIT).expect("welcome starts");
    // RFC 4733 start packet, then the INFO for the same key straight after (well within 100 ms).
    let ts = c.ts;
    c.send_rtp(101, true, ts, &event_payload(5, false, 160));
    c.press_info_5();
    for _ in 0..3 {
        c.send_rtp(101, false, ts, &event_payload(5, true, 480));
    }
    c.recv_until_idle(Duration::from_millis(1500), Duration::from_secs(20));
    c.expect_bye();
    let cdr = server.cdr_for(&c.call.call_id, WAIT);
    let digits = cdr_digits(&cdr);
    assert_eq!(digits.len(), 1, "one key, once: {cdr}");
    assert_eq!(digits[0].0, "5");
}

#[test]
fn reinvite_to_pcma_switches_codec_mid_prompt() {
    let server = Server::start(&menus(), &[]);
    let mut c = place_call(&server, "0 8 101", PCMU_TE, None);
    let mut pkts = vec![c.recv(WAIT).expect("welcome starts")];
    pkts.extend(c.recv_until_idle(Duration::from_millis(1000), Duration::from_millis(600)));
    assert!(pkts.iter().all(|p| p.h.pt == 0), "PCMU first");
    // re-INVITE offering PCMA only, same address.
    let port = c.rtp.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=test 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    c.ua.in_dialog(
        &mut c.call,
        "INVITE",
        "Content-Type: application/sdp\n",
        &sdp,
    );
    let ok = c.ua.expect_response(200, WAIT);
    assert!(
        ok.body().contains("RTP/AVP 8"),
        "answer picks PCMA:\n{}",
        ok.text
    );
    let (server_addr, local, cseq) = (c.ua.server, c.ua.local, c.call.cseq);
    let branch = c.ua.branch();
    c.ua.send(
        &format!(
            "ACK sip:helpline@{server_addr} SIP/2.0
            Via: SIP/2.0/UDP {local};branch={branch};rport
            Max-Forwards: 70
            From: <sip:caller@{local}>;tag={}
            To: <sip:08000000001@{server_addr}>;tag={}
            Call-ID: {}
            CSeq: {cseq} ACK",
            c.call.from_tag, c.call.to_tag, c.call.call_id
        ),
        "",
    );
    pkts.extend(c.recv_until_idle(Duration::from_secs(1), Duration::from_secs(15)));
    let switch = pkts
        .iter()
        .position(|p| p.h.pt == 8)
        .expect("packets switch to PT 8");
    assert!(
        pkts[switch..].iter().all(|p| p.h.pt == 8),
        "PCMA after the switch"
    );
    assert!(switch > 0, "PCMU before the switch");
    // The welcome plays on across the switch: seq and ts continue, every packet is the frame its
    // timestamp names, μ-law before and A-law after.
    assert_whole_prompt(&pkts, "welcome");
}
