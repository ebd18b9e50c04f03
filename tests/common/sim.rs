//! The call test harness: helpline's real call layer (`call::Calls`, hence the real `sip::Endpoint`,
//! dialogs, SDP negotiation and IVR engine) on a simulated clock, wired to scripted SIP phones and a fake
//! media engine. Nothing here sleeps or opens a socket: a whole call runs in microseconds of wall time.
//! It does not test the tokio shell, sockets or RTP (the loopback and SIPp suites do).
//!
//! # Adding a test
//!
//! ```text
//! let mut net = SimNet::shipped().ring(Duration::ZERO).build();   // shipped ivr-menus/, 1 s prompts
//! let p = net.udp_phone("127.0.0.1:40000");                        // a caller (tcp_phone for TCP)
//! let offer = net.offer(p);                                       // PCMU + telephone-event
//! let c = net.phone(p).invite(GB, Some(&offer));                   // queue an INVITE …
//! net.drive();                                                     // … and deliver everything
//! assert_eq!(net.phone(p).codes(c), [100, 200]);
//! net.phone(p).ack(c, None);
//! net.advance(Duration::from_millis(300));                         // first prompt after the delay
//! let m = net.media_id(p, c);                                      // the call's media session
//! net.key(m, '3');                                                 // an RFC 4733 key (or info_dtmf)
//! net.run_until_idle(Duration::from_secs(60));                     // prompts end, BYE, 200, CDR
//! let cdr = net.cdr(p, c);
//! ```
//!
//! `now` starts at `net.t0` and moves only in `advance`/`run_until`/`step`, which jump to the earliest
//! `poll_timeout()` of the call layer, the fake media engine (a prompt ends at start + frames · 20 ms) or
//! a phone (an agent phone's delayed answer) — so timer-driven behaviour (2xx retransmission, 64·T1,
//! IVR timeouts) happens at exact simulated instants that a test can assert with `net.since_t0(at)`.
//! Phones queue what they send; `drive()` delivers it and everything it causes until nothing moves.
//! Assert on what a caller observes: `phone(p).responses(c)` / `requests(c, "BYE")` (parsed with
//! helpline's own parser, and with `rsip`), `net.media.session(m)` (the media commands) and `net.cdr(p, c)`.
//!
//! Agents: `agent::agent_phone` registers a phone with MD5 digest as a sample agent, `agent::refunds_caller`
//! places a caller routed to europe.refunds, `agent::reply_to_invite` answers helpline's INVITE by hand.
//! Besides the menus' prompts the net synthesizes `connecting` in every language the menus use and the
//! 6 s ringback tone (`tones/ringback`); for queues, the announcement phrases, `digit-0`…`digit-9` and
//! `queue-full` in every language and 8 s of hold music (`tones/hold-music`). `SimBuilder::queue` sets
//! a queue's settings directly.
pub mod agent;
pub mod media;
pub mod phone;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use helpline::agent::QueueName;
use helpline::call::{
    Calls, CallsConfig, CaptureEvent, Cdr, MediaId, WallClock, CONNECTING_PROMPT,
    QUEUE_ANNOUNCE_PROMPTS, RINGBACK_TONE,
};
use helpline::ivr::{MenuSet, PromptCheck};
use helpline::media::session::{DetectedDigit, DigitMethod, MediaEvent};
use helpline::prompts::{Prompt, PromptStore, TONES};
use helpline::queue::QueueConfig;
use helpline::sip::endpoint::{Peer, Transmit, Transport};
use helpline::sip::transaction::TimerConfig;

// Re-exported for the test files; a test binary that uses none of them must not warn.
#[allow(unused_imports)]
pub use media::{FakeMedia, MediaLog};
#[allow(unused_imports)]
pub use phone::{sdp, AnswerMode, CallRef, ScriptedPhone};

/// The GB number of the shipped menus (region `europe`, English only).
pub const GB: &str = "08000289999";
/// The DE number of the shipped menus (region `europe`, German or English: a language question first).
pub const DE: &str = "08001839999";

/// A Wednesday 10:00 in Paris: the shipped `europe` region is open.
pub fn open_hours() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T09:00:00Z")
        .expect("literal time")
        .with_timezone(&chrono::Utc)
}

/// Accepts every prompt name: the harness synthesizes the prompts the menus use.
struct AnyPrompt;
impl PromptCheck for AnyPrompt {
    fn check(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Compiles a menu directory (relative to the crate root), panicking with the diagnostics.
pub fn load_menus(dir: &str) -> Arc<MenuSet> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    helpline::config::load_menus(&path, &AnyPrompt)
        .unwrap_or_else(|d| panic!("menus in {dir} do not compile: {d:#?}"))
}

/// The shipped `ivr-menus/`, compiled once per test binary.
pub fn shipped_menus() -> Arc<MenuSet> {
    static SET: OnceLock<Arc<MenuSet>> = OnceLock::new();
    SET.get_or_init(|| load_menus("ivr-menus")).clone()
}

/// The shipped menus plus the sample agents of `examples/agents/` (`ana`, `li.wei`, `sam`).
pub fn sample_agent_menus() -> Arc<MenuSet> {
    static SET: OnceLock<Arc<MenuSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = super::menus_with_sample_agents(str::to_owned);
        load_menus(dir.to_str().expect("temp dir path is UTF-8"))
    })
    .clone()
}

/// Builds a [`SimNet`].
pub struct SimBuilder {
    menus: Arc<MenuSet>,
    prompt_len: Duration,
    prompt_lens: Vec<(String, Duration)>,
    cfg: CallsConfig,
    seed: u64,
    queue_default: Option<QueueConfig>,
    queues: HashMap<QueueName, QueueConfig>,
}

/// The hold music the harness synthesizes among the tones (8 s), for a queue's `music`.
pub const HOLD_MUSIC: &str = "hold-music";
/// A prompt the harness synthesizes in every language, for an overflow's `HangUp { prompts }`.
pub const QUEUE_FULL: &str = "queue-full";

impl SimBuilder {
    /// How long helpline rings (180) before it answers.
    pub fn ring(mut self, ring: Duration) -> Self {
        self.cfg.ring = ring;
        self
    }

    /// The length of every synthesized prompt (default 1 s).
    pub fn prompt_len(mut self, len: Duration) -> Self {
        self.prompt_len = len;
        self
    }

    /// The length of one prompt, by name, in every language.
    pub fn prompt(mut self, name: &str, len: Duration) -> Self {
        self.prompt_lens.push((name.to_owned(), len));
        self
    }

    /// One queue's settings (set on the call layer before the first call; until the menus carry
    /// them, this is how a test configures a queue).
    pub fn queue(mut self, name: &str, cfg: QueueConfig) -> Self {
        self.queues.insert(QueueName::from(name), cfg);
        self
    }

    /// The settings of every queue not given its own.
    pub fn queue_defaults(mut self, cfg: QueueConfig) -> Self {
        self.queue_default = Some(cfg);
        self
    }

    /// Any other call-layer setting.
    pub fn config(mut self, f: impl FnOnce(&mut CallsConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// The net, with the clock at `t0`.
    pub fn build(self) -> SimNet {
        let mut prompts = PromptStore::default();
        // The menus' prompts, the call layer's own (`connecting`) in every language the menus use, and
        // the language-neutral ringback tone (6 s like the shipped one: 2 s on, 4 s off).
        let mut wanted = self.menus.prompts_used();
        let langs: std::collections::BTreeSet<String> =
            wanted.iter().map(|(l, _)| l.clone()).collect();
        for lang in langs {
            wanted.push((lang.clone(), CONNECTING_PROMPT.to_owned()));
            // A waiting caller's announcements and an overflow's prompt.
            for name in QUEUE_ANNOUNCE_PROMPTS.iter().chain([&QUEUE_FULL]) {
                wanted.push((lang.clone(), (*name).to_owned()));
            }
            for d in 0..10 {
                wanted.push((lang.clone(), format!("digit-{d}")));
            }
        }
        wanted.push((TONES.to_owned(), RINGBACK_TONE.to_owned()));
        wanted.push((TONES.to_owned(), HOLD_MUSIC.to_owned()));
        wanted.sort();
        wanted.dedup();
        for (lang, name) in wanted {
            let default = match name.as_str() {
                RINGBACK_TONE => Duration::from_secs(6),
                HOLD_MUSIC => Duration::from_secs(8),
                _ => self.prompt_len,
            };
            let len = self
                .prompt_lens
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default, |(_, l)| *l);
            let frames = (len.as_millis() / 20) as usize;
            prompts.insert(Prompt::from_samples(
                &lang,
                &name,
                &vec![0i16; frames * 160],
            ));
        }
        let t0 = self.cfg.wall.instant;
        let local = self.cfg.local;
        let mut calls = Calls::new(self.cfg, self.menus, prompts.clone(), self.seed);
        if self.queue_default.is_some() || !self.queues.is_empty() {
            let default = self.queue_default.unwrap_or_default();
            calls.set_queue_configs(t0, default, self.queues);
        }
        SimNet {
            calls,
            t0,
            now: t0,
            local,
            prompts,
            media: FakeMedia::default(),
            phones: Vec::new(),
            cdrs: Vec::new(),
            undelivered: Vec::new(),
            transmits: Vec::new(),
            captures: Vec::new(),
        }
    }
}

/// Which phone of the net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhoneId(pub usize);

/// helpline's call layer + phones + fake media on one simulated clock.
pub struct SimNet {
    /// The system under test.
    pub calls: Calls,
    /// Simulated start.
    pub t0: Instant,
    /// Simulated now.
    pub now: Instant,
    /// helpline's own address (what phones dial unless told otherwise).
    pub local: SocketAddr,
    /// The synthesized prompts.
    pub prompts: PromptStore,
    /// The fake media engine.
    pub media: FakeMedia,
    /// Every phone.
    pub phones: Vec<ScriptedPhone>,
    /// Every CDR, in the order the call layer wrote them.
    pub cdrs: Vec<Cdr>,
    /// Transmits to an address no phone has (e.g. a Contact the test did not expect).
    pub undelivered: Vec<(Instant, Transmit)>,
    /// Every transmit, with its time.
    pub transmits: Vec<(Instant, Peer, String)>,
    /// Everything the call layer said to capture (`CallsConfig::capture`), in order.
    pub captures: Vec<CaptureEvent>,
}

impl SimNet {
    /// A net with helpline's defaults (T1 500 ms, 300 ms first-prompt delay, 30 s RTP timeout, no ring)
    /// on the shipped menus, during the europe region's opening hours.
    pub fn shipped() -> SimBuilder {
        SimNet::with_menus(shipped_menus())
    }

    /// The same on another menu set.
    pub fn with_menus(menus: Arc<MenuSet>) -> SimBuilder {
        // The only wall-clock read: a base for the simulated `Instant`s, never looked at again.
        let t0 = Instant::now();
        let local: SocketAddr = "127.0.0.1:5060".parse().expect("literal address");
        SimBuilder {
            menus,
            prompt_len: Duration::from_secs(1),
            prompt_lens: Vec::new(),
            cfg: CallsConfig {
                timers: TimerConfig::default(),
                rtp_ports: (20000, 20999),
                rtp_timeout: Duration::from_secs(30),
                first_prompt_delay: Duration::from_millis(300),
                max_ivr: Duration::from_secs(15 * 60),
                ring: Duration::ZERO,
                advertise_ip: None,
                wall: WallClock {
                    instant: t0,
                    wall: open_hours(),
                },
                local,
                server_header: "helpline".to_owned(),
                capture: false,
                // Scripted phones send whole bursts at one simulated instant from one address: the
                // per-source limits (tests/defences.rs, src/guard) are not what these tests are about.
                guard: helpline::guard::GuardConfig::off(),
                // Nor are the server-wide limits (tests/admission.rs turns them on).
                admission: helpline::call::AdmissionConfig::unlimited(),
            },
            seed: 7,
            queue_default: None,
            queues: HashMap::new(),
        }
    }

    // ── phones ──

    /// A caller over UDP at `addr`, dialing helpline's address.
    pub fn udp_phone(&mut self, addr: &str) -> PhoneId {
        let local = self.local;
        self.add_phone(addr, Transport::Udp, local)
    }

    /// A caller over TCP connection `conn` from `addr`.
    pub fn tcp_phone(&mut self, addr: &str, conn: u64) -> PhoneId {
        let local = self.local;
        self.add_phone(addr, Transport::Tcp(conn), local)
    }

    /// A phone that reaches helpline at `server` (the local address its packets arrive on).
    pub fn add_phone(&mut self, addr: &str, transport: Transport, server: SocketAddr) -> PhoneId {
        let addr: SocketAddr = addr.parse().expect("phone address literal");
        self.phones
            .push(ScriptedPhone::new(addr, transport, server, self.now));
        PhoneId(self.phones.len() - 1)
    }

    /// A phone, to script or inspect.
    pub fn phone(&mut self, p: PhoneId) -> &mut ScriptedPhone {
        let now = self.now;
        let phone = &mut self.phones[p.0];
        phone.set_now(now);
        phone
    }

    /// An SDP offer (PCMU + telephone-event, sendrecv) from the phone's RTP port (its SIP port + 1000).
    pub fn offer(&self, p: PhoneId) -> String {
        sdp(self.rtp_addr(p), "0 101", "a=sendrecv")
    }

    /// The phone's RTP address in the SDP [`SimNet::offer`] builds.
    pub fn rtp_addr(&self, p: PhoneId) -> SocketAddr {
        let a = self.phones[p.0].addr;
        SocketAddr::new(a.ip(), a.port().wrapping_add(1000))
    }

    // ── the clock ──

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// `at` as time since the start.
    pub fn since_t0(&self, at: Instant) -> Duration {
        at - self.t0
    }

    /// The earliest instant anything wants to run.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        let phones = self.phones.iter().filter_map(ScriptedPhone::poll_timeout);
        [self.calls.poll_timeout(), self.media.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(phones)
            .min()
    }

    /// Jumps to the earliest timeout (never backwards) and runs it; false when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        self.drive();
        let Some(at) = self.next_timeout() else {
            return false;
        };
        self.now = self.now.max(at);
        self.fire();
        true
    }

    fn fire(&mut self) {
        let now = self.now;
        self.calls.handle_timeout(now);
        self.media.handle_timeout(now);
        for phone in &mut self.phones {
            if phone.poll_timeout().is_some_and(|t| t <= now) {
                phone.handle_timeout(now);
            }
        }
        self.drive();
    }

    /// Runs every timeout up to `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        self.drive();
        let mut steps = 0;
        while let Some(at) = self.next_timeout().filter(|&at| at <= until) {
            self.now = self.now.max(at);
            self.fire();
            steps += 1;
            assert!(
                steps < 1_000_000,
                "timeouts do not advance: stuck at {at:?}"
            );
        }
        self.now = self.now.max(until);
        self.fire();
    }

    /// Runs every timeout strictly before `now + d` and sets the clock to `now + d`, leaving the ones due
    /// exactly then: models a message that arrives the instant a timer is due and is read first (the
    /// shell's `select!` may take the packet before the sleep).
    pub fn advance_racing(&mut self, d: Duration) {
        self.drive();
        let until = self.now + d;
        while let Some(at) = self.next_timeout().filter(|&at| at < until) {
            self.now = self.now.max(at);
            self.fire();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of simulated time.
    pub fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until nothing is scheduled, at most `limit` of simulated time; returns the time taken.
    pub fn run_until_idle(&mut self, limit: Duration) -> Duration {
        self.drive();
        let start = self.now;
        let end = start + limit;
        while let Some(at) = self.next_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.fire();
        }
        self.now - start
    }

    /// Delivers every queued message and every output it causes, until nothing moves.
    pub fn drive(&mut self) {
        for round in 0.. {
            assert!(round < 100_000, "the net does not settle");
            let mut moved = false;
            for i in 0..self.phones.len() {
                while let Some(bytes) = self.phones[i].poll_outgoing() {
                    moved = true;
                    let phone = &self.phones[i];
                    let peer = Peer {
                        transport: phone.transport,
                        addr: phone.addr,
                        local: phone.server,
                    };
                    self.calls.handle_sip(self.now, peer, &bytes);
                }
            }
            while let Some(t) = self.calls.poll_transmit() {
                moved = true;
                self.deliver(t);
            }
            while let Some(cmd) = self.calls.poll_media() {
                moved = true;
                self.media.handle(self.now, cmd);
            }
            while let Some(cdr) = self.calls.poll_cdr() {
                moved = true;
                self.cdrs.push(cdr);
            }
            while let Some(event) = self.calls.poll_capture() {
                moved = true;
                self.captures.push(event);
            }
            while let Some((id, event)) = self.media.poll_event() {
                moved = true;
                self.calls.handle_media(self.now, id, event);
            }
            if !moved {
                break;
            }
        }
    }

    fn deliver(&mut self, t: Transmit) {
        self.transmits.push((
            self.now,
            t.to,
            String::from_utf8_lossy(&t.bytes).into_owned(),
        ));
        let now = self.now;
        match self
            .phones
            .iter_mut()
            .find(|p| p.addr == t.to.addr && p.transport == t.to.transport)
        {
            Some(phone) => phone.handle_incoming(now, &t.bytes),
            None => self.undelivered.push((now, t)),
        }
    }

    // ── media ──

    /// The media session of a call: the one opened on the RTP port helpline's SDP names.
    pub fn media_id(&self, p: PhoneId, c: CallRef) -> MediaId {
        let phone = &self.phones[p.0];
        let port = phone
            .responses(c)
            .iter()
            .find_map(|r| sdp_port(&r.body))
            .unwrap_or_else(|| {
                panic!(
                    "helpline sent no SDP for this call:\n{}",
                    phone.transcript()
                )
            });
        self.media
            .by_port(port)
            .unwrap_or_else(|| panic!("no media session opened on port {port}"))
            .id
    }

    /// The media session's record.
    pub fn session(&self, p: PhoneId, c: CallRef) -> &MediaLog {
        self.media.session(self.media_id(p, c))
    }

    /// Feeds a media event as the engine would report it now, then drives.
    pub fn media_event(&mut self, id: MediaId, event: MediaEvent) {
        self.calls.handle_media(self.now, id, event);
        self.drive();
    }

    /// A key detected by the media engine (RFC 4733 by default).
    pub fn key(&mut self, id: MediaId, digit: char) {
        self.key_by(id, digit, DigitMethod::Rfc4733);
    }

    /// A key by a given carrier.
    pub fn key_by(&mut self, id: MediaId, digit: char, method: DigitMethod) {
        let at = self.now;
        self.media_event(id, MediaEvent::Digit(DetectedDigit { digit, method, at }));
    }

    /// The caller's first RTP packet.
    pub fn first_rtp(&mut self, p: PhoneId, id: MediaId) {
        let from = self.rtp_addr(p);
        self.media_event(id, MediaEvent::FirstRtp { from });
    }

    // ── CDRs ──

    /// The CDRs of a call.
    pub fn cdrs_of(&self, p: PhoneId, c: CallRef) -> Vec<&Cdr> {
        let id = &self.phones[p.0].call(c).call_id;
        self.cdrs.iter().filter(|r| &r.call_id == id).collect()
    }

    /// The one CDR of a call (panics if there is none or more than one).
    pub fn cdr(&self, p: PhoneId, c: CallRef) -> &Cdr {
        match self.cdrs_of(p, c).as_slice() {
            [one] => one,
            other => panic!(
                "expected exactly one CDR for the call, found {}: {other:#?}\n{}",
                other.len(),
                self.phones[p.0].transcript()
            ),
        }
    }
}

/// The port of the `m=audio` line of an SDP body.
pub fn sdp_port(body: &[u8]) -> Option<u16> {
    std::str::from_utf8(body)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The SDP lines of a body that start with `prefix` (e.g. `a=` or `c=`).
pub fn sdp_lines<'a>(body: &'a [u8], prefix: &str) -> Vec<&'a str> {
    std::str::from_utf8(body)
        .map(|s| {
            s.lines()
                .map(str::trim_end)
                .filter(|l| l.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
