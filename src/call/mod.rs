//! The call layer (sans-IO): [`Calls`], the registry of every call, owns the SIP endpoint and decides
//! everything that happens to a call — answer, ringing, CANCEL, ACK with or without SDP, re-INVITE and
//! hold, INFO keys, BYE either way, drain, RTP port choice and the CDR. Each call owns its legs
//! ([`leg`]), its media session's settings and its IVR side ([`ivr_call::IvrCall`]).
//!
//! It never reads the clock, sleeps or touches a socket: every input carries `now`, and outputs are
//! pulled by the shell. The contract (quinn-proto's `Connection` shape):
//!
//! * inputs: [`Calls::handle_sip`], [`Calls::handle_media`], [`Calls::handle_timeout`],
//!   [`Calls::handle_drain`], [`Calls::handle_hangup_all`], [`Calls::set_menus`], [`Calls::finish_all`];
//! * after each input, drain [`Calls::poll_transmit`] (SIP to send), [`Calls::poll_media`] (commands
//!   for the media engine, in order), [`Calls::poll_cdr`] (finished calls' records), then sleep until
//!   [`Calls::poll_timeout`]; a spurious `handle_timeout` is a no-op;
//! * with a queue log ([`Calls::enable_queue_log`]), drain [`Calls::poll_queue_log`] too (one JSON
//!   line per record); at local midnight call [`Calls::handle_new_day`].
//!
//! It also owns the agents' machines: REGISTER goes to the digest registrar, logins feed agent
//! presence and the queues (`agents`), a routed caller's offers ring agents' phones as UAC legs
//! of the call, bridged on answer (`agent_leg`), and an agent's INVITE to `*50`/`*51` is a feature
//! code, authenticated and confirmed without the menus (`feature_codes`). A menu `transfer` calls its
//! external URI the same way as an agent (`transfer`); what the two kinds of UAC leg share is `uac_leg`. An agent or transfer leg whose call
//! has ended lives on until its far end is done with it (`late_legs`).
//!
//! It does not bind sockets, pace RTP or write files: the shell (`server`) does.
pub mod admission;
mod agent_leg;
pub(crate) mod agents;
pub mod capture;
pub mod cdr;
mod dialog_requests;
mod feature_codes;
mod invite;
pub mod ivr_call;
mod late_legs;
pub mod leg;
pub mod live;
pub mod ports;
mod state;
mod transfer;
mod uac_leg;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;

pub use crate::media::MediaId;
pub use admission::{Admission, AdmissionConfig, AdmissionStats, OverloadAnswer, Refusal};
pub use capture::{CaptureEvent, CaptureId, CapturedSip};
pub use cdr::{
    Cdr, CdrDigit, CdrRtcp, EndReason, QueueTried, RtcpLeg, TransferResult, WallClock,
    MAX_CDR_DIGITS,
};
pub use ivr_call::{
    CallInput, CallOutput, CallTiming, IvrCall, CONNECTING_PROMPT, QUEUE_ANNOUNCE_PROMPTS,
    RINGBACK_TONE,
};
pub use leg::{Leg, LegId, LegKind, UasLeg, UasState};
pub use live::{LiveView, SupervisorCommand, DEFAULT_SERVICE_LEVEL};
pub use ports::PortPool;

use crate::agent::presence::Agents;
use crate::agent::Registrar;
use crate::guard::{Guard, GuardConfig, GuardEvent, Verdict};
use crate::ivr::MenuSet;
use crate::media::session::{MediaConfig, MediaEvent};
use crate::prompts::{Prompt, PromptStore};
use crate::sip::endpoint::{shrink_after_peak, Endpoint, Peer, SipEvent, Transmit, TxId};
use crate::sip::message::{Method, Response};
use crate::sip::transaction::TimerConfig;
use crate::sip::{CallId, Reply};
use agents::AgentSide;
use state::Call;

/// Seconds a caller is asked to wait (`Retry-After`) when helpline is draining for shutdown.
pub const RETRY_AFTER_DRAINING: u32 = 30;
/// How often the guard forgets idle sources.
const GUARD_SWEEP: Duration = Duration::from_secs(10);
/// Seconds a caller is asked to wait (`Retry-After`) when its source has too many calls.
pub const RETRY_AFTER_CALL_CAP: u32 = 10;
/// Seconds a caller is asked to wait (`Retry-After`) when no RTP port is free.
pub const RETRY_AFTER_NO_PORT: u32 = 5;
/// How many T1 a call answered but not ACKed keeps its RTP port when the pool runs out (8·T1 = 4 s by
/// default: the 2xx has been sent five times by then, RFC 3261 §13.3.1.4).
pub const UNACKED_GRACE_T1: u32 = 8;
/// The span a call's log lines carry: `call{call_id=…}` (the caller's Call-ID). Created once per call
/// (and once per request of no call); entering it allocates nothing. With no subscriber (tests, the
/// offline replay) it is inert.
pub(crate) fn call_span(call_id: &str) -> tracing::Span {
    tracing::info_span!("call", call_id = %call_id)
}

/// Seconds a caller is asked to wait (`Retry-After`) when call records cannot be kept (spool full).
pub const RETRY_AFTER_RECORDS_FULL: u32 = 30;

/// What the call layer needs to know about the server; the shell builds it once at start.
#[derive(Clone, Debug)]
pub struct CallsConfig {
    /// SIP timer values T1/T2/T4.
    pub timers: TimerConfig,
    /// Inclusive RTP port range; each call takes an even port and the next one.
    pub rtp_ports: (u16, u16),
    /// A call with no RTP and no SIP from the caller for this long is released.
    pub rtp_timeout: Duration,
    /// The first prompt starts at the caller's first RTP after the ACK, or after this delay.
    pub first_prompt_delay: Duration,
    /// The longest a caller may stay in the menus.
    pub max_ivr: Duration,
    /// How long helpline rings (180) before it answers (zero: answer at once).
    pub ring: Duration,
    /// The address Contact and SDP announce, when configured (`--advertise-ip`); otherwise the local
    /// address each request arrived on ([`Peer::local`]).
    pub advertise_ip: Option<IpAddr>,
    /// Maps instants to wall time (CDR times, opening hours); `--pretend-time` shifts it.
    pub wall: WallClock,
    /// The address our requests' Via carries (sent-by).
    pub local: SocketAddr,
    /// The text of `Server:` on our responses and `User-Agent:` on our requests (no version).
    pub server_header: String,
    /// Whether calls are captured (`serve --trace-dir`): then drain [`Calls::poll_capture`].
    pub capture: bool,
    /// Per-source rate limits, bans, allow-list and the per-source call cap (`serve --limit-rate` …).
    pub guard: GuardConfig,
    /// Server-wide limits on calls in progress and new calls per second (`serve --max-calls` …).
    pub admission: AdmissionConfig,
}

/// The part of [`CallsConfig`] a running server can change ([`Calls::set_live`]).
#[derive(Clone, Debug)]
pub struct LiveSettings {
    /// See [`CallsConfig::rtp_timeout`].
    pub rtp_timeout: Duration,
    /// See [`CallsConfig::first_prompt_delay`].
    pub first_prompt_delay: Duration,
    /// See [`CallsConfig::max_ivr`].
    pub max_ivr: Duration,
    /// See [`CallsConfig::ring`].
    pub ring: Duration,
    /// See [`CallsConfig::guard`].
    pub guard: GuardConfig,
}

impl CallsConfig {
    /// The server's defaults (as `helpline serve` without options) for a server at `local` whose wall
    /// clock is `wall`.
    pub fn new(local: SocketAddr, wall: WallClock) -> CallsConfig {
        CallsConfig {
            timers: TimerConfig::default(),
            rtp_ports: (20000, 30000),
            rtp_timeout: Duration::from_secs(30),
            first_prompt_delay: Duration::from_millis(300),
            max_ivr: Duration::from_secs(15 * 60),
            ring: Duration::ZERO,
            advertise_ip: None,
            wall,
            local,
            server_header: "helpline".to_owned(),
            capture: false,
            guard: GuardConfig::default(),
            admission: AdmissionConfig::default(),
        }
    }

    fn timing(&self) -> CallTiming {
        CallTiming {
            first_prompt_delay: self.first_prompt_delay,
            rtp_timeout: self.rtp_timeout,
            max_ivr: self.max_ivr,
        }
    }
}

/// What the call layer asks the media engine to do, in order.
#[derive(Clone, Debug)]
pub enum MediaCommand {
    /// Bind RTP on `port` and RTCP on `port + 1` and start a session configured with `cfg`; a port that
    /// cannot be bound is reported back as [`MediaEvent::BindFailed`].
    Open {
        /// The session's id (events come back tagged with it).
        id: MediaId,
        /// The even RTP port.
        port: u16,
        /// The negotiated media.
        cfg: MediaConfig,
    },
    /// New negotiated media (re-INVITE, hold, the answer in the ACK).
    Configure {
        /// The session.
        id: MediaId,
        /// The new settings.
        cfg: MediaConfig,
    },
    /// Play a prompt, replacing anything playing.
    Play {
        /// The session.
        id: MediaId,
        /// The decoded prompt.
        prompt: Arc<Prompt>,
    },
    /// Stop the prompt playing (barge-in, hang-up).
    Stop {
        /// The session.
        id: MediaId,
    },
    /// End the session and close its sockets.
    Close {
        /// The session.
        id: MediaId,
    },
    /// Relay RTP between two open sessions (the caller's and the agent's), both ways; lasts until
    /// either is closed.
    Bridge {
        /// The caller's session.
        a: MediaId,
        /// The agent's session.
        b: MediaId,
    },
}

/// Identifies one call in the registry (a call outlives any one of its legs' Call-IDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// Every call in progress, and the SIP endpoint they share. See the module doc for the polling contract.
pub struct Calls {
    cfg: CallsConfig,
    endpoint: Endpoint,
    menus: Arc<MenuSet>,
    prompts: PromptStore,
    ports: PortPool,
    /// The registrar and agent presence.
    agents: AgentSide,
    /// Session ids and SDP session ids come from here, never from the clock.
    rng: rand::rngs::SmallRng,
    /// Boxed: a `Call` is ~2.7 kB, and a table of them inline held twice its calls' size in empty
    /// buckets (and both tables while it grew): G5, BENCHMARKS.md.
    calls: HashMap<CallKey, Box<Call>>,
    /// Each leg's Call-ID (the caller's today; agents' legs have their own).
    by_call_id: HashMap<CallId, (CallKey, LegId)>,
    /// Each leg's transactions: the caller's INVITE, our BYE.
    by_tx: HashMap<TxId, (CallKey, LegId)>,
    by_media: HashMap<MediaId, CallKey>,
    /// Agent and transfer legs whose call has ended but whose far end may still answer (see `late_legs`).
    late: late_legs::LateLegs,
    /// Calls' wake-ups; an entry whose call is gone or re-armed for another instant is stale and
    /// skipped. Rebuilt when stale entries would outnumber live ones (bounded by the number of calls).
    wakeups: BinaryHeap<Reverse<(Instant, CallKey)>>,
    next_key: u64,
    next_media: u64,
    draining: bool,
    /// The shell's record spools are full (see [`Calls::set_records_full`]): new calls are refused.
    records_full: bool,
    /// New calls refused because the records were full.
    records_full_refusals: u64,
    /// New calls refused `503` because no RTP port could be had (the pool empty, or every port tried
    /// could not be bound).
    no_port_refusals: u64,
    /// Answers decided and not yet handed to the endpoint (see `answer`), with the instant decided.
    answering: VecDeque<(Instant, CallKey)>,
    /// Offers whose INVITEs wait for the agent side's new port to be bound, with the instant decided
    /// (see `ring`).
    rings_waiting_for_port: VecDeque<(Instant, crate::queue::Offer<CallKey>)>,
    /// Transfers (call, URI) whose INVITE waits for the far side's new port to be bound.
    transfers_waiting_for_port: VecDeque<(Instant, CallKey, Box<str>)>,
    media_out: VecDeque<MediaCommand>,
    /// Caller sessions closed early by [`Calls::release_media`] (their call still winding down): true
    /// once their `Close` has been polled, after which any other command for them is dropped.
    released_media: HashMap<MediaId, bool>,
    cdrs: VecDeque<Cdr>,
    /// IVR analytics events of every call, in order, for the shell's per-menu counters.
    menu_events: VecDeque<crate::ivr::MenuEvent>,
    /// Queue log lines for the shell, once [`Calls::enable_queue_log`] was called.
    queue_log: Option<VecDeque<String>>,
    /// What `--trace-dir` captures (inert when `cfg.capture` is off).
    capture: capture::Captures,
    /// Per-source limits and bans, consulted before the endpoint sees a request.
    guard: Guard,
    /// Set while the request being handled comes from a source banned in `503` mode.
    refusing: Option<u32>,
    /// When idle sources were last swept from the guard.
    guard_swept: Option<Instant>,
    /// What the guard did, for the metrics.
    guard_stats: GuardStats,
    /// Today's per-queue counts and agents' state times, for [`Calls::live_view`].
    live: live::LiveStats,
    /// The server-wide call and call-rate limits.
    admission: Admission,
    /// Calls in progress per source address (the per-source call cap).
    sources: SourceCounts,
}

/// Calls in progress per source address, kept as calls come and go so the per-source cap costs one
/// lookup per INVITE. The address is the one the INVITE came from, remembered per call.
#[derive(Debug, Default)]
struct SourceCounts {
    counts: HashMap<IpAddr, usize>,
    of: HashMap<CallKey, IpAddr>,
}

impl SourceCounts {
    fn add(&mut self, key: CallKey, ip: IpAddr) {
        if self.of.insert(key, ip).is_none() {
            *self.counts.entry(ip).or_default() += 1;
        }
    }

    fn remove(&mut self, key: CallKey) {
        let Some(ip) = self.of.remove(&key) else {
            return;
        };
        if let Some(n) = self.counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
    }

    fn count(&self, ip: IpAddr) -> usize {
        self.counts.get(&ip).copied().unwrap_or(0)
    }
}

/// What the per-source defences did so far (monotonic counters for the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Sources banned.
    pub bans: u64,
    /// Requests from sources banned in `503` mode, answered `503`.
    pub banned_refusals: u64,
    /// New calls over the per-source call cap, answered `503`.
    pub call_cap_refusals: u64,
    /// Requests from banned sources dropped silently.
    pub dropped: u64,
    /// Calls whose ACK was overdue released to free an RTP port for a new call (empty pool).
    pub unacked_reclaimed: u64,
    /// Requests from a scanner's User-Agent dropped (`--drop-scanners`).
    pub scanners: u64,
}

impl Calls {
    /// An empty registry with its own SIP endpoint. `seed` makes tags, branches, SDP session ids and
    /// the first RTP port reproducible.
    pub fn new(cfg: CallsConfig, menus: Arc<MenuSet>, prompts: PromptStore, seed: u64) -> Calls {
        let mut endpoint = Endpoint::new(cfg.timers, cfg.local, seed);
        let cfg_capture = cfg.capture;
        let guard_cfg = cfg.guard.clone();
        let admission = Admission::new(cfg.admission);
        endpoint.set_server_header(&cfg.server_header);
        Calls {
            endpoint,
            ports: PortPool::new(cfg.rtp_ports, seed.rotate_left(17)),
            agents: AgentSide::new(&menus, seed),
            rng: rand::rngs::SmallRng::seed_from_u64(seed ^ 0x6361_6c6c_7321),
            cfg,
            menus,
            prompts,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_tx: HashMap::new(),
            by_media: HashMap::new(),
            late: late_legs::LateLegs::default(),
            wakeups: BinaryHeap::new(),
            next_key: 1,
            next_media: 1,
            draining: false,
            records_full: false,
            records_full_refusals: 0,
            no_port_refusals: 0,
            answering: VecDeque::new(),
            rings_waiting_for_port: VecDeque::new(),
            transfers_waiting_for_port: VecDeque::new(),
            media_out: VecDeque::new(),
            released_media: HashMap::new(),
            cdrs: VecDeque::new(),
            menu_events: VecDeque::new(),
            queue_log: None,
            capture: capture::Captures::new(cfg_capture),
            guard: Guard::new(guard_cfg),
            refusing: None,
            guard_swept: None,
            guard_stats: GuardStats::default(),
            live: live::LiveStats::default(),
            admission,
            sources: SourceCounts::default(),
        }
    }

    // ── inputs ──

    /// One SIP message from the network (a UDP datagram or one framed TCP message); processes every
    /// event the endpoint reports for it.
    pub fn handle_sip(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        // The guard sees every request before the endpoint does: a banned source costs no parse.
        if let Some(method) = request_method(bytes) {
            if self.cfg.guard.drop_scanners
                && !self.cfg.guard.allowed(peer.addr.ip())
                && crate::guard::scanner::is_scanner(bytes)
            {
                self.guard_stats.scanners += 1;
                tracing::debug!(source = %peer.addr, method, "scanner User-Agent: dropped");
                return;
            }
            match self.guard.check(now, peer.addr.ip(), method) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.guard_stats.dropped += 1;
                    self.drain_guard();
                    return;
                }
                Verdict::Refuse { retry_after } => self.refusing = Some(retry_after),
            }
            self.drain_guard();
        }
        self.handle_sip_inner(now, peer, bytes);
        self.refusing = None;
    }

    fn handle_sip_inner(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        if !self.capture.enabled() {
            self.endpoint.handle_message(now, peer, bytes);
            self.drain_endpoint(now);
            return;
        }
        self.capture.tick(now);
        // Looked up before (the message may end its call) and after (it may start one).
        let before = self.capture_of(bytes);
        self.endpoint.handle_message(now, peer, bytes);
        self.drain_endpoint(now);
        if let Some(id) = before.or_else(|| self.capture_of(bytes)) {
            self.capture.received(id, now, &peer, bytes);
        }
    }

    /// One event from the media engine for session `id` — the caller's (to the IVR side) or the agent
    /// side's (an RTP timeout while bridged ends the call); stale ids (a call already gone) are ignored.
    pub fn handle_media(&mut self, now: Instant, id: MediaId, event: MediaEvent) {
        self.capture.tick(now);
        let Some(&key) = self.by_media.get(&id) else {
            return;
        };
        let span = self.span_of(key);
        let _in_call = span.enter();
        if let MediaEvent::BindFailed { port } = event {
            self.on_bind_failed(now, key, port);
        } else if let MediaEvent::Rtcp(stats) = event {
            if let Some(call) = self.calls.get_mut(&key) {
                call.record_rtcp(id, stats);
            }
        } else if let Some(call) = self.calls.get_mut(&key) {
            if call.media.id == id {
                call.ivr.handle(now, CallInput::Media(event));
                self.after_call(now, key);
            } else {
                // The agent side's session (the only other one a call has).
                self.on_agent_media(now, key, &event);
            }
        }
        self.drain_endpoint(now);
    }

    /// Fires what is due at `now` (transaction timers, ringing, IVR timers, binding expiry, wrap-ups);
    /// spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.capture.tick(now);
        if self
            .guard_swept
            .is_none_or(|at| now.saturating_duration_since(at) >= GUARD_SWEEP)
        {
            // Idle sources are forgotten now and then (not on every wake-up: the sweep is O(sources)).
            self.guard_swept = Some(now);
            self.guard.handle_timeout(now);
            self.drain_guard();
        }
        self.endpoint.handle_timeout(now);
        self.drain_endpoint(now);
        self.agents_timeout(now);
        self.late_legs_timeout(now);
        while let Some(&Reverse((at, key))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            if call.scheduled != Some(at) {
                continue; // re-armed for another instant since
            }
            call.scheduled = None;
            self.call_timeout(now, key);
        }
        self.drain_endpoint(now);
    }

    /// Shutdown has begun: new INVITEs get `503` with `Retry-After`; calls in progress go on.
    pub fn handle_drain(&mut self, _now: Instant) {
        self.capture.tick(_now);
        self.draining = true;
    }

    /// The shell's record files (CDR, queue log) refuse writes and their spools are full (`true`), or
    /// take records again (`false`). While full, every new INVITE gets `503` with `Retry-After` and
    /// leaves no CDR, so that no record of a call is ever dropped; calls in progress go on (their
    /// records still go to the spool, which holds them beyond its limit).
    pub fn set_records_full(&mut self, full: bool) {
        self.records_full = full;
    }

    /// New calls refused so far because the records were full.
    pub fn records_full_refusals(&self) -> u64 {
        self.records_full_refusals
    }

    /// New calls refused so far because no RTP port could be had (see the CDR's `refusal`).
    pub fn no_port_refusals(&self) -> u64 {
        self.no_port_refusals
    }

    /// The drain time is over: every call is ended from our side — a ringing one with `480`, an
    /// answered one with BYE (once its ACK has come: a BYE never overtakes the ACK).
    pub fn handle_hangup_all(&mut self, now: Instant) {
        self.capture.tick(now);
        self.draining = true;
        let mut keys: Vec<CallKey> = self.calls.keys().copied().collect();
        keys.sort();
        for key in keys {
            let span = self.span_of(key);
            let _in_call = span.enter();
            self.hangup(now, key, EndReason::ServerBye);
        }
        self.drain_endpoint(now);
    }

    /// Hot reload: calls that arrive from now on use `menus`; calls in progress keep theirs. Agents
    /// still declared stay registered and keep their presence; agents no longer declared are logged out.
    pub fn set_menus(&mut self, now: Instant, menus: Arc<MenuSet>) {
        self.capture.tick(now);
        self.agents_reload(now, &menus);
        self.menus = menus;
        self.drain_endpoint(now);
    }

    /// A server config reload: the settings that can change live. Call timings apply to calls set up
    /// from now on; the guard's limits to the next request (bans already running stay).
    pub fn set_live(&mut self, live: LiveSettings) {
        self.cfg.rtp_timeout = live.rtp_timeout;
        self.cfg.first_prompt_delay = live.first_prompt_delay;
        self.cfg.max_ivr = live.max_ivr;
        self.cfg.ring = live.ring;
        self.cfg.guard = live.guard.clone();
        self.guard.set_config(live.guard);
    }

    /// Exit: every call still present gets its CDR (with the reason already recorded, e.g. the BYE that
    /// got no answer, else `server-bye`) and its media closed.
    pub fn finish_all(&mut self, now: Instant) {
        self.capture.tick(now);
        let mut keys: Vec<CallKey> = self.calls.keys().copied().collect();
        keys.sort();
        for key in keys {
            let span = self.span_of(key);
            let _in_call = span.enter();
            if let Some(call) = self.calls.get_mut(&key) {
                call.end_reason.get_or_insert(EndReason::ServerBye);
            }
            self.finish(now, key);
        }
    }

    // ── outputs ──

    /// The next SIP message to send. Drain [`Calls::poll_media`] first: a 200 is handed to the endpoint
    /// here, after the `Open` of its port, so a port the shell could not bind (reported back at once
    /// with `handle_media(.., BindFailed)`) is replaced before the caller ever sees it.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some((at, key)) = self.answering.pop_front() {
            self.answer_now(at, key);
        }
        if !self.rings_waiting_for_port.is_empty() {
            self.ring_when_bound();
        }
        if !self.transfers_waiting_for_port.is_empty() {
            self.dial_when_bound();
        }
        let t = self.endpoint.poll_transmit()?;
        if let Some(id) = self.capture_of(&t.bytes) {
            self.capture.sent(id, &t.to, &t.bytes);
        }
        Some(t)
    }

    /// The next command for the media engine.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        let command = loop {
            let command = self.media_out.pop_front()?;
            if !self.after_early_close(&command) {
                break command;
            }
        };
        if let MediaCommand::Open { id, port, .. } = &command {
            let call = self.by_media.get(id).and_then(|k| self.calls.get(k));
            // Every session of a call (its agent's, its transfer's) is on the caller's media address.
            if let Some((capture, ip)) =
                call.and_then(|c| Some((self.capture.of(&c.call_id)?, c.media.ip)))
            {
                self.capture.media(capture, *id, SocketAddr::new(ip, *port));
            }
        }
        Some(command)
    }

    /// Whether `command` is for a session [`Calls::release_media`] closed and comes after its `Close`
    /// (a hang-up's `Stop`, say): dropped, no engine sees a command for a closed session.
    fn after_early_close(&mut self, command: &MediaCommand) -> bool {
        let closed = |m: &HashMap<MediaId, bool>, id: &MediaId| m.get(id).copied().unwrap_or(false);
        match command {
            MediaCommand::Close { id } => match self.released_media.get_mut(id) {
                Some(seen) if *seen => true,
                Some(seen) => {
                    *seen = true;
                    false
                }
                None => false,
            },
            MediaCommand::Open { .. } => false,
            MediaCommand::Configure { id, .. }
            | MediaCommand::Play { id, .. }
            | MediaCommand::Stop { id } => closed(&self.released_media, id),
            MediaCommand::Bridge { a, b } => {
                closed(&self.released_media, a) || closed(&self.released_media, b)
            }
        }
    }

    /// The next thing to capture (with [`CallsConfig::capture`] on): calls starting and ending, their
    /// SIP and the media sessions whose RTP belongs to them. Drain it after `poll_transmit` and
    /// `poll_media`, in order.
    pub fn poll_capture(&mut self) -> Option<CaptureEvent> {
        self.capture.poll()
    }

    /// The next finished call's record.
    pub fn poll_cdr(&mut self) -> Option<Cdr> {
        self.cdrs.pop_front()
    }

    /// The next IVR analytics event (menu entered, key, invalid entry, timeout, max-failure or
    /// max-timeout exit, caller hung up in the menu), in the order they happened.
    pub fn poll_menu_event(&mut self) -> Option<crate::ivr::MenuEvent> {
        self.menu_events.pop_front()
    }

    /// The earliest instant anything wants [`Calls::handle_timeout`]: the endpoint's transactions, any
    /// call, a binding's expiry or an agent's wrap-up.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, key))) = self.wakeups.peek() {
            if self
                .calls
                .get(&key)
                .is_some_and(|c| c.scheduled == Some(at))
            {
                break;
            }
            self.wakeups.pop();
        }
        let calls = self.wakeups.peek().map(|Reverse((at, _))| *at);
        [
            calls,
            self.endpoint.poll_timeout(),
            self.agents.poll_timeout(),
            self.late.poll_timeout(),
            self.capture.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Whether new calls are refused (shutdown).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// What the per-source defences did so far, with the registrar's failed authentications.
    pub fn guard_stats(&self) -> (GuardStats, u64) {
        (self.guard_stats, self.agents.registrar.auth_failures())
    }

    /// How many new calls the server-wide limits refused so far.
    pub fn admission_stats(&self) -> AdmissionStats {
        self.admission.stats()
    }

    /// Logs the guard's bans and expiries, once each.
    fn drain_guard(&mut self) {
        while let Some(event) = self.guard.poll_event() {
            match event {
                GuardEvent::Banned {
                    source,
                    reason,
                    secs,
                } => {
                    self.guard_stats.bans += 1;
                    tracing::warn!(%source, %reason, secs, "source banned");
                }
                GuardEvent::BanExpired { source } => {
                    tracing::info!(%source, "ban expired");
                }
            }
        }
    }

    /// The SIP endpoint (for metrics and tests: e.g. its live transaction count).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Agent presence (for metrics and tests: who is logged in, on break, in a call).
    pub fn agents(&self) -> &Agents<CallKey> {
        &self.agents.presence
    }

    /// The registrar (for metrics and tests: live bindings, nonces out).
    pub fn registrar(&self) -> &Registrar {
        &self.agents.registrar
    }

    /// Agent and transfer legs kept after their call ended, waiting for their far end (see `late_legs`).
    pub fn late_leg_count(&self) -> usize {
        self.late.len()
    }

    /// RTP ports handed out and not yet released.
    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// The TCP connections a registration binding or a call's leg rides on: the transport does not
    /// close them as idle (see `transport::tcp_policy`). O(calls + bindings): asked only when some
    /// connection has been idle for the idle timeout.
    pub fn tcp_connections_in_use(&self) -> std::collections::HashSet<u64> {
        use crate::agent::AgentStore;
        use crate::sip::endpoint::Transport;
        let mut out = std::collections::HashSet::new();
        let mut add = |peer: &Peer| {
            if let Transport::Tcp(conn) = peer.transport {
                out.insert(conn);
            }
        };
        for call in self.calls.values() {
            for leg in &call.legs {
                match &leg.kind {
                    LegKind::Caller(uas) => add(&uas.peer),
                    LegKind::Agent(uac) => add(&uac.peer),
                    LegKind::Transfer(t) => add(&t.peer),
                }
            }
        }
        let store = self.agents.registrar.store();
        for agent in store.agents() {
            for binding in store.bindings(&agent) {
                add(&binding.source);
            }
        }
        out
    }

    // ── internals shared by the request handlers ──

    /// The open capture a SIP message belongs to: its Call-ID's, or (a leg seen for the first time,
    /// e.g. our INVITE to an agent) its call's, which the leg then joins.
    fn capture_of(&mut self, bytes: &[u8]) -> Option<CaptureId> {
        if !self.capture.enabled() {
            return None;
        }
        let call_id = capture::sniff_call_id(bytes)?;
        let cid = CallId::from(call_id);
        if let Some(id) = self.capture.of(&cid) {
            return Some(id);
        }
        let (key, _) = self.by_call_id.get(&cid)?;
        let id = self.capture.of(&self.calls.get(key)?.call_id)?;
        self.capture.join(id, call_id);
        Some(id)
    }

    /// Records a finished call's CDR (every call has exactly one); its capture winds down.
    fn push_cdr(&mut self, now: Instant, cdr: Cdr) {
        self.capture.end(now, &cdr.call_id);
        self.cdrs.push_back(cdr);
    }

    fn drain_endpoint(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            self.on_sip_event(now, event);
        }
    }

    /// Handles one endpoint event inside its call's span (see [`call_span`]).
    fn on_sip_event(&mut self, now: Instant, event: SipEvent) {
        let span = self.span_of_event(&event);
        let _in_call = span.enter();
        self.on_call_event(now, event);
    }

    /// The span of the call an event belongs to: found by transaction or Call-ID; a request of no
    /// call (a new INVITE, an OPTIONS) gets a span of its own Call-ID; an event of no call, none.
    fn span_of_event(&self, event: &SipEvent) -> tracing::Span {
        let by_tx = |tx: &TxId| self.by_tx.get(tx).map(|&(key, _)| key);
        let key = match event {
            SipEvent::Request { request, .. } | SipEvent::Ack { request, .. } => {
                let call_id = CallId::from(request.call_id());
                match self.by_call_id.get(&call_id) {
                    Some(&(key, _)) => Some(key),
                    None => return call_span(request.call_id()),
                }
            }
            SipEvent::Cancelled { invite_tx } | SipEvent::NoAck { invite_tx } => by_tx(invite_tx),
            SipEvent::Response { tx, .. } | SipEvent::ClientTimeout { tx } => by_tx(tx),
        };
        key.map_or_else(tracing::Span::none, |key| self.span_of(key))
    }

    /// The span of a call (none when it is gone).
    fn span_of(&self, key: CallKey) -> tracing::Span {
        self.calls
            .get(&key)
            .map_or_else(tracing::Span::none, |c| c.span.clone())
    }

    fn on_call_event(&mut self, now: Instant, event: SipEvent) {
        match event {
            SipEvent::Request { tx, request, peer } => self.on_request(now, tx, request, peer),
            SipEvent::Ack { request, .. } => self.on_ack(now, &request),
            SipEvent::Cancelled { invite_tx } => {
                if let Some(&(key, _)) = self.by_tx.get(&invite_tx) {
                    self.on_cancel(now, key);
                }
            }
            SipEvent::NoAck { invite_tx } => {
                if let Some(&(key, _)) = self.by_tx.get(&invite_tx) {
                    tracing::info!(call = ?key, "no ACK for our 2xx within 64*T1: releasing with BYE");
                    self.on_no_ack(now, key);
                }
            }
            SipEvent::Response { tx, response } => match self.by_tx.get(&tx).copied() {
                Some((key, leg)) if self.is_transfer_leg(key, leg) => {
                    self.on_transfer_response(now, key, tx, &response)
                }
                Some((key, leg)) if leg != LegId::CALLER => {
                    self.on_agent_response(now, key, leg, tx, &response)
                }
                Some((key, _)) if response.code >= 200 => {
                    self.by_tx.remove(&tx);
                    self.finish(now, key);
                }
                Some(_) => {}
                None => {
                    self.on_late_response(now, tx, &response);
                }
            },
            SipEvent::ClientTimeout { tx } => match self.by_tx.remove(&tx) {
                Some((key, leg)) if self.is_transfer_leg(key, leg) => {
                    self.on_transfer_timeout(now, key, tx)
                }
                Some((key, leg)) if leg != LegId::CALLER => {
                    self.on_agent_timeout(now, key, leg, tx)
                }
                Some((key, _)) => self.finish(now, key),
                None => self.on_late_timeout(tx),
            },
        }
    }

    /// Sends a response on a server transaction (the endpoint adds our `Server` header).
    fn respond(&mut self, now: Instant, tx: TxId, response: Response) {
        self.endpoint.respond(now, tx, response);
    }

    /// The first session id of a new call's media group (`MediaId`'s doc).
    fn new_media_group(&mut self) -> MediaId {
        let id = MediaId::in_group(self.next_media, 0);
        self.next_media += 1;
        id
    }

    /// The engine could not bind a call's port: the port rests; while the caller has not seen our SDP
    /// the call moves to another port, otherwise it is released (503 before the answer, BYE after it).
    fn on_bind_failed(&mut self, now: Instant, key: CallKey, port: u16) {
        self.ports.quarantine(now, port);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let side_port = |m: Option<&state::AgentMedia>| m.is_some_and(|m| m.port == port);
        if side_port(call.queued.as_ref().and_then(|q| q.media.as_ref())) {
            return self.on_agent_side_bind_failed(now, key);
        }
        if side_port(call.transfer.as_ref().and_then(|t| t.media.as_ref())) {
            return self.on_transfer_side_bind_failed(now, key);
        }
        if call.media.port != port {
            return; // a late report about a port the call already left
        }
        if matches!(call.caller().state, UasState::Proceeding { .. }) && self.rebind(now, key) {
            tracing::debug!(port, "rtp port busy: the call moves to another one");
            return;
        }
        tracing::warn!(port, "rtp port could not be bound: releasing the call");
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.end_reason.get_or_insert(EndReason::Error);
        if matches!(call.caller().state, UasState::Proceeding { .. }) {
            call.ivr.cdr_mut().refusal = Some(cdr::RefusalReason::RtpBindFailed);
            self.no_port_refusals += 1;
            self.reject_call(
                now,
                key,
                Reply::ServiceUnavailable {
                    retry_after: RETRY_AFTER_NO_PORT,
                },
            );
        } else {
            self.hangup(now, key, EndReason::Error);
        }
    }

    fn call_timeout(&mut self, now: Instant, key: CallKey) {
        let span = self.span_of(key);
        let _in_call = span.enter();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let UasState::Proceeding { answer_at, .. } = call.caller().state {
            if now >= answer_at {
                self.answer(now, key);
            } else {
                self.schedule(key);
            }
            return;
        }
        if call
            .transfer
            .as_ref()
            .and_then(|t| t.ring_until)
            .is_some_and(|at| now >= at)
        {
            self.transfer_ring_timeout(now, key);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.ivr.handle_timeout(now);
        self.after_call(now, key);
    }

    /// No ACK within 64·T1 (RFC 3261 §13.3.1.4): BYE now, whatever else was waiting for the ACK.
    fn on_no_ack(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.end_reason = Some(EndReason::NoAck);
        let leg = call.caller_mut();
        if let UasState::Accepted { .. } = leg.state {
            leg.bye_after_ack = false;
            self.send_bye(now, key);
        }
        // Known dead: its ports go back now, not when the BYE's transaction ends (Timer F, 64·T1).
        self.release_media(key);
    }

    /// A call known dead (no ACK for our 2xx, our BYE is out) closes the caller's media session and
    /// returns its RTP port to the pool at once; only its signalling winds down. (An agent's or a
    /// transfer's session, which only a routed call has, still closes when the call is gone.)
    /// Idempotent.
    pub(crate) fn release_media(&mut self, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if std::mem::replace(&mut call.media.released, true) {
            return;
        }
        self.released_media.insert(call.media.id, false);
        self.by_media.remove(&call.media.id);
        self.media_out
            .push_back(MediaCommand::Close { id: call.media.id });
        self.ports.release(call.media.port);
    }

    /// The port pool is empty: the call answered longest ago whose ACK has not come within
    /// [`UNACKED_GRACE_T1`]·T1 (the 2xx was retransmitted four times) is taken for dead — INVITEs from
    /// forged sources never ACK — and its port returned; a BYE follows should its ACK still come.
    /// Returns whether a port was freed. O(calls), only when the pool is empty.
    pub(crate) fn reclaim_unacked(&mut self, now: Instant) -> bool {
        let grace = self.cfg.timers.t1 * UNACKED_GRACE_T1;
        let oldest = self
            .calls
            .iter()
            .filter(|(_, c)| {
                !c.media.released && matches!(c.caller().state, UasState::Accepted { .. })
            })
            .filter_map(|(k, c)| Some((c.media.answered_at?, *k)))
            .filter(|(at, _)| now.saturating_duration_since(*at) >= grace)
            .min();
        let Some((_, key)) = oldest else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        tracing::info!(call_id = %call.call_id, "no RTP port free: releasing a call whose ACK is overdue");
        call.end_reason = Some(EndReason::NoAck);
        call.caller_mut().bye_after_ack = true;
        self.guard_stats.unacked_reclaimed += 1;
        self.release_media(key);
        true
    }

    /// Ends a call from our side: `480` before the answer, BYE after the ACK, and after the answer but
    /// before the ACK a BYE as soon as the ACK comes (a BYE must not overtake the ACK).
    fn hangup(&mut self, now: Instant, key: CallKey, reason: EndReason) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.end_reason.get_or_insert(reason);
        if let Some(q) = call.queued.as_mut().filter(|q| q.answered.is_some()) {
            q.talk_end.get_or_insert(now);
        }
        // A bridged agent is not left on a dead line while the caller's leg winds down.
        self.bye_agent_legs(now, key);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        match call.caller().state {
            UasState::Proceeding { .. } => {
                self.reject_call(now, key, Reply::TemporarilyUnavailable)
            }
            UasState::Accepted { .. } => {
                tracing::debug!(call = ?key, "hang-up before the ACK: BYE once it comes");
                call.caller_mut().bye_after_ack = true;
                self.media_out
                    .push_back(MediaCommand::Stop { id: call.media.id });
            }
            UasState::Confirmed { .. } => self.send_bye(now, key),
            UasState::Ending { .. } | UasState::Terminated => {}
        }
    }

    fn send_bye(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let media = call.media.id;
        let user_agent = self.cfg.server_header.clone();
        let leg = call.caller_mut();
        let state = std::mem::replace(&mut leg.state, UasState::Terminated);
        let (UasState::Accepted { mut dialog } | UasState::Confirmed { mut dialog }) = state else {
            leg.state = state;
            return;
        };
        let bye = dialog.request(Method::Bye, &leg.contact, &user_agent);
        leg.state = UasState::Ending { dialog };
        let peer = leg.peer;
        self.media_out.push_back(MediaCommand::Stop { id: media });
        let tx = self.endpoint.send_request(now, peer, bye);
        leg.bye_tx = Some(tx);
        self.by_tx.insert(tx, (key, LegId::CALLER));
        // Our BYE ends the call whatever its answer: the media is of no more use.
        self.release_media(key);
    }

    /// Carries out the IVR side's outputs and re-arms the call's wake-up.
    fn after_call(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let id = call.media.id;
        let mut hangup = false;
        let mut route = None;
        let mut transfer = None;
        while let Some(output) = call.ivr.poll_output() {
            match output {
                CallOutput::Play(prompt) => {
                    self.media_out.push_back(MediaCommand::Play { id, prompt })
                }
                CallOutput::Stop => self.media_out.push_back(MediaCommand::Stop { id }),
                CallOutput::Hangup => hangup = true,
                CallOutput::Route { queue, priority } => route = Some((queue, priority)),
                CallOutput::Transfer { uri } => transfer = Some(uri),
            }
        }
        for missing in call.ivr.take_missing_prompts() {
            tracing::warn!(prompt = %missing, "prompt not loaded: skipped");
        }
        self.menu_events.extend(call.ivr.take_menu_events());
        self.schedule(key);
        if let Some((queue, priority)) = route {
            self.route_to_queue(now, key, &queue, priority);
        }
        if let Some(uri) = transfer {
            self.start_transfer(now, key, &uri);
        }
        if hangup {
            self.hangup(now, key, EndReason::ServerBye);
        }
    }

    /// Puts the call's next wake-up in the heap unless it is already armed for exactly that instant.
    fn schedule(&mut self, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let next = call.poll_timeout();
        if next == call.scheduled {
            return;
        }
        call.scheduled = next;
        if let Some(at) = next {
            self.wakeups.push(Reverse((at, key)));
        }
        if self.wakeups.len() > 2 * self.calls.len() + 64 {
            self.wakeups = self
                .calls
                .iter()
                .filter_map(|(k, c)| c.scheduled.map(|at| Reverse((at, *k))))
                .collect();
        }
    }

    /// Removes a call: closes its media, frees its port and emits its CDR.
    fn finish(&mut self, now: Instant, key: CallKey) {
        self.leave_queue(now, key);
        self.leave_transfer(now, key);
        let Some(mut call) = self.calls.remove(&key) else {
            return;
        };
        self.sources.remove(key);
        self.by_call_id.remove(&call.call_id);
        for leg in std::mem::take(&mut call.legs) {
            let (invite_tx, bye_tx) = match &leg.kind {
                LegKind::Caller(uas) => (uas.invite_tx, uas.bye_tx),
                LegKind::Agent(uac) => {
                    self.by_call_id.remove(&CallId::from(uac.invite.call_id()));
                    (uac.invite_tx, uac.bye_tx)
                }
                LegKind::Transfer(t) => {
                    self.by_call_id.remove(&CallId::from(t.invite.call_id()));
                    (t.invite_tx, t.bye_tx)
                }
            };
            self.by_tx.remove(&invite_tx);
            if let Some(tx) = bye_tx {
                self.by_tx.remove(&tx);
            }
            // Its far end may still answer, or our BYE is out: the leg outlives the call.
            match leg.kind {
                LegKind::Agent(uac) => self.adopt_late_leg(now, uac),
                LegKind::Transfer(t) => self.adopt_late_leg(now, t),
                LegKind::Caller(_) => {}
            }
        }
        let side_media = [
            call.queued.as_ref().and_then(|q| q.media.as_ref()),
            call.transfer.as_ref().and_then(|t| t.media.as_ref()),
        ];
        for media in side_media.into_iter().flatten() {
            self.by_media.remove(&media.id);
            self.media_out
                .push_back(MediaCommand::Close { id: media.id });
            self.ports.release(media.port);
        }
        if call.media.released {
            // Its Close was queued long ago; nothing more is sent for it once the call is gone.
            self.released_media.remove(&call.media.id);
        } else {
            self.by_media.remove(&call.media.id);
            self.media_out
                .push_back(MediaCommand::Close { id: call.media.id });
            self.ports.release(call.media.port);
        }
        // The IVR side's own reason (rtp-timeout, server-bye after the menu) wins over the registry's.
        let reason = call.end_reason.unwrap_or(EndReason::Error);
        if call.ivr.own_end_reason().unwrap_or(reason) == EndReason::CallerBye {
            call.ivr.caller_hung_up();
        }
        self.menu_events.extend(call.ivr.take_menu_events());
        let answered = call.queued.as_ref().and_then(|q| q.answered.clone());
        let talk_end = call.queued.as_ref().and_then(|q| q.talk_end).unwrap_or(now);
        let mut cdr = call.ivr.finish(now, reason);
        cdr.rtcp = call
            .rtcp
            .iter()
            .map(|(_, leg, stats)| CdrRtcp::new(*leg, stats))
            .collect();
        if let Some((agent, at)) = answered {
            cdr.agent = Some(agent.to_string());
            let talk = talk_end.saturating_duration_since(at);
            cdr.talk_ms = Some(u64::try_from(talk.as_millis()).unwrap_or(u64::MAX));
        }
        if let Some(at) = call.transfer.as_ref().and_then(|t| t.answered) {
            cdr.talk_ms = Some(u64::try_from((now - at).as_millis()).unwrap_or(u64::MAX));
        }
        tracing::info!(call_id = %cdr.call_id, reason = ?cdr.end_reason, route = ?cdr.route, "call ended");
        self.push_cdr(now, cdr);
        self.compact();
    }

    /// Gives back the tables' memory after a peak of calls (a `HashMap` keeps its largest table): a
    /// table shrinks when under a quarter full, to twice what it holds, amortised O(1) per call.
    fn compact(&mut self) {
        shrink_after_peak(&mut self.calls);
        shrink_after_peak(&mut self.by_call_id);
        shrink_after_peak(&mut self.by_tx);
        shrink_after_peak(&mut self.by_media);
    }
}

#[cfg(test)]
mod tests;

/// The method token of a request (`None` for a response, a keep-alive or junk): the guard's cheap look
/// at a message before it is parsed.
fn request_method(bytes: &[u8]) -> Option<&str> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = &bytes[start..];
    let end = rest.iter().take(32).position(|b| *b == b' ')?;
    let method = std::str::from_utf8(&rest[..end]).ok()?;
    (!method.starts_with("SIP/")).then_some(method)
}
