//! The media engine: the I/O shell that owns every call's RTP sockets and paces all prompt streams from
//! one timer on a dedicated thread; it decides nothing about calls (that is `MediaSession` and the call).
//!
//! # Why one thread and one timer
//!
//! Measured on this class of machine, one tokio task per call for 20 ms pacing collapses near 3,500
//! streams per core, while one timer over all streams on a dedicated media thread held 99 % of
//! intervals within 1 ms at 5,000 streams. So:
//!
//! * [`MediaEngine::start`] spawns one OS thread running a current-thread tokio runtime with a
//!   `LocalSet`. Every [`MediaSession`] lives in a slab owned by that thread (`Rc<RefCell<…>>`: one
//!   thread, no locks).
//! * One pacer loop keeps a `BinaryHeap` of `(deadline, slot)` built from each session's
//!   `poll_timeout()` and wakes at the earliest one. When it wakes it runs every session that is due,
//!   sends each packet with a non-blocking `send_to` from one reused buffer (a full socket buffer
//!   drops the packet, as RTP allows, and counts it), forwards events, and re-arms.
//! * **The wake-up comes from a ticker thread, not from tokio's timer.** tokio's timer ticks in whole
//!   milliseconds, rounds deadlines up, and its `epoll_wait` timeout rounds up again, so packets left
//!   0.5–1.5 ms late (measured: p50 0.74 ms, p99 2.7 ms at 1,000 streams). The media thread publishes
//!   its next deadline in an atomic; a tiny ticker thread sleeps on it with `park_timeout`
//!   (nanosecond futex timeout), is unparked whenever the deadline changes, and wakes the media
//!   thread through a `Notify` ([`EARLY`] / 2 ahead, to absorb the wake-up latency). The media thread
//!   then sends every frame due within [`EARLY`] (250 µs), which also batches dense deadlines so the
//!   ticker wakes at most a few thousand times a second. A quarter millisecond early is invisible to
//!   a caller's jitter buffer. A tokio sleep 2 ms past the deadline stays armed as a safety net.
//! * One small receive task per session socket: on readiness, `recv_from` into the engine's one
//!   receive buffer (borrowed until the datagram is handled, never across an `await`), then
//!   `handle_rtp`; every session's events go, tagged with its [`MediaId`], into the one channel given
//!   to [`MediaEngine::start`]. RTCP on port+1 is read by a task of its own and handed to the
//!   session (`MediaSession::handle_rtcp`; copied when captured); the session's reports are due from the
//!   same heap (`MediaSession::poll_rtcp_timeout`) and leave from the RTCP socket, and a session closed
//!   sends its last report with a BYE.
//!   Receiving never makes a session's next deadline earlier (it only pushes the RTP timeout back), so
//!   receive tasks never need to wake the pacer; a deadline that moved later is found stale and
//!   re-armed when it pops.
//!
//! Cost, measured with `examples/rtp_load.rs` on loopback: 5.7–7 µs of media-thread CPU per packet
//! (≈ 3,000–3,500 streams per core), almost all of it in the kernel's `sendto` (on loopback that
//! includes the receiver's softirq work); the pacer's own bookkeeping is a few per cent.
//!
//! Each session holds two descriptors (RTP, RTCP): 5,000 sessions need `ulimit -n` above 10,000.
//!
//! # More than one media thread (`serve --media-threads N`)
//!
//! With `MediaEngineConfig::threads` above one, each thread is the engine above for its share of the
//! sessions, with its own slab, heap, ticker and command channel; the stats are shared atomics. A
//! session's commands go to thread [`media_thread_of`] its id, which is its id's *call group*
//! ([`MediaId::group`]): the call layer gives all of a call's sessions one group, so the two legs of a
//! bridge always share a thread and relaying stays lock-free; a bridge asked across groups is refused
//! (logged). One thread paces about 2,000 streams with their callers' audio on this class of machine
//! (the kernel's loopback send and receive are most of it); a second thread on a second core took the
//! harness's G4 stage from 2,000 to 2,500 clean streams (BENCHMARKS.md).
//!
//! # Bridging two sessions
//!
//! [`MediaHandle::bridge`] joins two sessions (a caller's leg and an agent's) with a
//! [`media::bridge::Bridge`](crate::media::bridge::Bridge): both stop their playout, and from then on
//! the receive task of each leg hands every datagram to its session first (latching, DTMF: keys
//! pressed during the conversation are still reported) and, if the session accepted it from its
//! latched source, to the relay toward the other leg, whose output is sent at once from the other
//! leg's socket to that leg's [`MediaSession::destination`]. Relaying is not paced (the sender's
//! timing is kept) and touches neither the heap nor the ticker. Per packet nothing is allocated or
//! locked: the output goes into the engine's one send buffer (shared by the pacer and every receive
//! task: one thread, and no borrow of it lives across an `await`), the bridge sits in an
//! `Rc<RefCell<…>>` shared by the two legs. A `configure` of a bridged leg updates the bridge (hold
//! from either side stops the audio toward the held leg), `play` on a bridged leg is refused (logged
//! once per bridge), and [`MediaHandle::unbridge`] or a `close` of either leg ends it and hands each
//! surviving session its stream back, so later prompts continue the SSRC, sequence and timestamp the
//! leg was hearing. Each session's RTP timeout keeps running while bridged.
//!
//! Cost, measured with `examples/bridge_load.rs` on loopback (PCMU↔PCMA, shared 2-core machine):
//! 6.7–7.3 µs of media-thread CPU per relayed packet at 1,000 pairs (100,000 packets a second),
//! 10.6–12.8 µs at 250 pairs (fewer packets per wake-up); the example's doc has the table.
//!
//! # Capture (`serve --trace-dir`)
//!
//! [`MediaHandle::capture`] gives a session a `Tap`: from then on every datagram its RTP and RTCP
//! sockets receive is copied, and of what it sends the first [`PROMPT_SAMPLE_PACKETS`] of each prompt
//! and of relayed audio, at most [`MAX_SENT_PACKETS_PER_CALL`] per call; every session of one call
//! shares one budget of [`MAX_CALL_RTP_BYTES`], after which that call's media capture stops (counted).
//! Copies go to the capture writer by `try_send` (a full channel drops the copy, never waits). A
//! session without a tap pays one `RefCell` check per packet: no allocation, no lock.
//!
//! # Bounded both ways
//!
//! Events go to the core on a bounded channel ([`MEDIA_EVENT_QUEUE`]) by `try_send`: the media
//! thread never waits for the core. What a session emits is bounded already (`media::session` limits
//! keys and received-report statistics per session); what the channel has no room for waits in the
//! session's [`Outbox`] (in order; lifecycle events kept, statistics merged, keys bounded), and the
//! engine flushes every waiting outbox as soon as the channel has room again. Commands come on a
//! bounded channel too ([`MediaEngineConfig::command_queue`]): the core refuses new calls (`503`)
//! once it is half full ([`MediaHandle::is_busy`]), so the rest serves calls in progress; a command
//! that still finds it full is dropped, counted and logged, except `close`, which waits in a list of
//! its own (at most one per open session) so that no session and its ports outlive their call.
//! Everything shed is counted in [`SendStats`] and logged when its count reaches a power of two.
//!
//! The signalling task talks to the engine only through a [`MediaHandle`] (`Send + Clone`), by message,
//! fire-and-forget. Which port a session uses is decided by the call layer (`call::PortPool`); the engine
//! binds what it is told and reports a port it cannot bind as [`MediaEvent::BindFailed`].

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, LocalSet};

pub use crate::call::CaptureId;
use crate::media::bridge::Bridge;
use crate::media::rtcp::NtpClock;
use crate::media::session::{MediaConfig, MediaEvent, MediaSession};
pub use crate::media::MediaId;
use crate::prompts::Prompt;
use crate::server::capture::{
    CaptureMsg, CaptureSink, CapturedRtp, MAX_CALL_RTP_BYTES, MAX_SENT_PACKETS_PER_CALL,
    PROMPT_SAMPLE_PACKETS,
};
use crate::server::media_outbox::{Outbox, Refused};

/// Frames due within this much of the wake-up are sent in the same batch (see the module doc).
pub const EARLY: Duration = Duration::from_micros(250);

/// Published deadline meaning "nothing scheduled".
const NO_DEADLINE: u64 = u64::MAX;

/// Shared between the media thread and its ticker thread.
struct Ticker {
    /// Next deadline as nanoseconds since `base`, or [`NO_DEADLINE`].
    deadline_ns: AtomicU64,
    base: Instant,
    notify: tokio::sync::Notify,
    stop: std::sync::atomic::AtomicBool,
}

impl Ticker {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Sleeps until each published deadline (less half of [`EARLY`]) and wakes the media thread.
    fn run(&self) {
        let lead = (EARLY / 2).as_nanos() as u64;
        let mut fired = NO_DEADLINE;
        while !self.stop.load(Ordering::Acquire) {
            let target = self.deadline_ns.load(Ordering::Acquire);
            if target == NO_DEADLINE || target == fired {
                // Nothing new to wait for; the media thread unparks us when it publishes.
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            let now = self.ns(Instant::now());
            let wake_at = target.saturating_sub(lead);
            if wake_at <= now {
                self.notify.notify_one();
                fired = target;
            } else {
                std::thread::park_timeout(Duration::from_nanos(wake_at - now));
            }
        }
    }
}

/// Whether the ticker must be unparked after the published deadline changed from `old` to `new`
/// (nanoseconds since its base, `now` likewise). A later deadline can wait when the ticker is still
/// sleeping toward `old` (it fires [`EARLY`] / 2 ahead, so not before `old − EARLY`): it wakes then,
/// reads `new`, and sleeps again. An earlier one cannot, nor any after `old` fired (the ticker then
/// parks for up to 50 ms) or after there was none.
fn ticker_must_know(old: u64, new: u64, now: u64) -> bool {
    let early = EARLY.as_nanos() as u64;
    new != old && (old == NO_DEADLINE || new < old || old <= now.saturating_add(early))
}

/// Largest datagram read from a media socket; longer ones are truncated by the kernel and then
/// rejected or mis-parsed harmlessly by the session.
const RECV_BUF: usize = 2048;

/// The engine's send buffer: prompt frames and relayed packets are written here before `send_to`.
/// A relayed packet longer than this (never G.711 at any sane ptime) is dropped by the relay.
const SEND_BUF: usize = 1500;

/// The one send buffer, shared by the pacer and every receive task of the media thread.
type SendBuf = Rc<RefCell<Box<[u8; SEND_BUF]>>>;

/// The one receive buffer of every session's receive tasks: a datagram is read and handled before the
/// task awaits again, so no borrow of it lives across an `await` (two 2 kB buffers per call before).
type RecvBuf = Rc<RefCell<Box<[u8; RECV_BUF]>>>;

/// Commands handled per wake-up before the pacer gets its turn again, so a flood of commands cannot
/// delay packets by more than a few microseconds.
const COMMAND_BATCH: usize = 64;

/// Room in the events channel to the core: at a few events per call a second, seconds of events
/// of thousands of calls (a slot costs memory only while used).
pub const MEDIA_EVENT_QUEUE: usize = 8192;

/// Room in the command channel by default ([`MediaEngineConfig::command_queue`]).
pub const DEFAULT_COMMAND_QUEUE: usize = 4096;

/// Where the engine binds its media sockets, and how often sessions report RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaEngineConfig {
    /// Local address for every RTP/RTCP socket.
    pub bind_ip: IpAddr,
    /// RTCP report interval before randomisation (`serve --rtcp-interval-ms`; RFC 3550's 5 s).
    pub rtcp_interval: Duration,
    /// Commands the channel from the core to each media thread holds (`serve` sizes it from
    /// `--max-calls`); new calls are refused once half of one is taken (module doc).
    pub command_queue: usize,
    /// Media threads (`serve --media-threads`); the sessions of one call share one (module doc).
    pub threads: usize,
    /// How the media threads and their tickers are scheduled; the normal scheduler by default.
    pub scheduling: MediaScheduling,
}

/// Real-time scheduling and CPU pinning of the media threads and their tickers (`serve
/// --media-rt-priority`, `--media-cpus`): options for pacing on a busy machine, off by default, and
/// never a requirement (what the system refuses is logged once per thread and the thread runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaScheduling {
    /// `SCHED_FIFO` at this priority (1–98) for each media thread, one above for its ticker (which
    /// must preempt a busy media thread to wake it); `None`: the normal scheduler.
    pub fifo_priority: Option<u8>,
    /// The CPUs they may run on, a bit per CPU (bit k = CPU k); 0: any.
    pub cpus: u64,
}

impl MediaScheduling {
    /// Applies the options to the calling thread (`ticker`: one priority above).
    fn apply_here(self, ticker: bool) {
        if self.cpus != 0 {
            let mut set = nix::sched::CpuSet::new();
            for k in (0..64).filter(|k| self.cpus >> k & 1 == 1) {
                // Only CPUs above the set's size fail, and the mask stops at 64.
                let _ = set.set(k);
            }
            if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
                tracing::warn!(%e, "media thread not pinned (--media-cpus)");
            }
        }
        if let Some(p) = self.fifo_priority {
            use thread_priority::unix::{
                set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
                ThreadSchedulePolicy,
            };
            let p = if ticker { p.saturating_add(1) } else { p };
            let priority =
                thread_priority::ThreadPriority::from_posix(thread_priority::ScheduleParams {
                    sched_priority: i32::from(p.min(99)),
                });
            let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
            if let Err(e) = set_thread_priority_and_policy(thread_native_id(), priority, fifo) {
                tracing::warn!(
                    ?e,
                    priority = p,
                    "media thread left on the normal scheduler: SCHED_FIFO needs CAP_SYS_NICE or \
                     a LimitRTPRIO of at least this (--media-rt-priority)"
                );
            }
        }
    }
}

impl MediaEngineConfig {
    /// Sockets on `bind_ip`, RTCP every 5 s.
    pub fn new(bind_ip: IpAddr) -> MediaEngineConfig {
        MediaEngineConfig {
            bind_ip,
            rtcp_interval: crate::media::rtcp::DEFAULT_INTERVAL,
            command_queue: DEFAULT_COMMAND_QUEUE,
            threads: 1,
            scheduling: MediaScheduling::default(),
        }
    }
}

/// Where a session lives in the engine's slab; stale ones (after `close`) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SlotId {
    index: u32,
    generation: u32,
}

/// Every session's events, tagged with its id, in one bounded channel (see the module doc).
pub type MediaEvents = mpsc::Sender<(MediaId, MediaEvent)>;

/// The events channel for [`MediaEngine::start`], of [`MEDIA_EVENT_QUEUE`] slots.
pub fn event_channel() -> (MediaEvents, mpsc::Receiver<(MediaId, MediaEvent)>) {
    mpsc::channel(MEDIA_EVENT_QUEUE)
}

/// Number of 10 µs histogram buckets (0–10 ms); larger errors land in the last bucket.
const STAT_BUCKETS: usize = 1001;
const STAT_BUCKET_NS: u64 = 10_000;

/// Send-time error statistics of every RTP packet the engine sent: actual send instant minus the
/// frame's scheduled instant. Lock-free counters written by the media thread only; no allocation per
/// packet.
#[derive(Debug)]
pub struct SendStats {
    /// |error| histogram in 10 µs buckets.
    buckets: Box<[AtomicU64]>,
    packets: AtomicU64,
    relayed: AtomicU64,
    early: AtomicU64,
    send_errors: AtomicU64,
    max_late_ns: AtomicU64,
    max_early_ns: AtomicU64,
    /// RTP datagrams read from every session's socket, and their bytes (for `/metrics`).
    received: AtomicU64,
    received_bytes: AtomicU64,
    /// Bytes of every packet handed to the kernel (prompt packets and relayed ones).
    sent_bytes: AtomicU64,
    /// What was shed on the way to and from the core (module doc "Bounded both ways").
    reports_folded: AtomicU64,
    keys_over_rate: AtomicU64,
    stats_merged: AtomicU64,
    keys_dropped: AtomicU64,
    lifecycle_dropped: AtomicU64,
    commands_dropped: AtomicU64,
    calls_refused: AtomicU64,
}

/// A copy of [`SendStats`] at one moment.
#[derive(Debug, Clone)]
pub struct SendStatsSnapshot {
    /// Prompt packets handed to the kernel successfully.
    pub packets: u64,
    /// Packets relayed between bridged legs and handed to the kernel (not in the error histogram:
    /// they have no schedule, they leave when they arrive).
    pub relayed: u64,
    /// Of those, how many left before their scheduled instant (at most [`EARLY`] by design).
    pub early: u64,
    /// Packets the kernel refused (socket buffer full or unreachable); RTP just drops them.
    pub send_errors: u64,
    /// Largest lateness seen.
    pub max_late: Duration,
    /// Largest earliness seen.
    pub max_early: Duration,
    /// RTP datagrams read from the sessions' sockets.
    pub received: u64,
    /// Their bytes (UDP payload).
    pub received_bytes: u64,
    /// Bytes of the packets in `packets` and `relayed` (UDP payload).
    pub sent_bytes: u64,
    /// Received RTCP reports whose statistics were folded into the next event (per-session rate).
    pub reports_folded: u64,
    /// Keys dropped by the per-session key rate.
    pub keys_over_rate: u64,
    /// Statistics events merged into a newer one while the events channel was full.
    pub stats_merged: u64,
    /// Keys dropped while the events channel and the session's backlog were full.
    pub keys_dropped: u64,
    /// Lifecycle events dropped likewise (the core stuck for long).
    pub lifecycle_dropped: u64,
    /// Commands for calls in progress dropped because the command channel was full.
    pub commands_dropped: u64,
    /// New calls the core refused (`503`) because the command channel was half full.
    pub calls_refused: u64,
    buckets: Vec<u64>,
}

impl SendStats {
    fn new() -> Self {
        SendStats {
            buckets: (0..STAT_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            packets: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            early: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            max_late_ns: AtomicU64::new(0),
            max_early_ns: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            reports_folded: AtomicU64::new(0),
            keys_over_rate: AtomicU64::new(0),
            stats_merged: AtomicU64::new(0),
            keys_dropped: AtomicU64::new(0),
            lifecycle_dropped: AtomicU64::new(0),
            commands_dropped: AtomicU64::new(0),
            calls_refused: AtomicU64::new(0),
        }
    }

    /// Adds `n` to a shed counter, logging when the total reaches a power of two (a flood logs a
    /// handful of lines, not one per packet).
    fn shed(counter: &AtomicU64, n: u64, what: &str) {
        if n == 0 {
            return;
        }
        let before = counter.fetch_add(n, Ordering::Relaxed);
        let total = before.saturating_add(n);
        if before.leading_zeros() != total.leading_zeros() {
            tracing::warn!(total, "{what}");
        }
    }

    /// A new call refused because the command channel is half full (counted here, logged by
    /// [`SendStats::shed`]'s rule).
    pub fn call_refused(&self) {
        Self::shed(
            &self.calls_refused,
            1,
            "media command queue half full: new calls get 503",
        );
    }

    fn record(&self, sent: Instant, due: Instant) {
        let (ns, max) = match sent.checked_duration_since(due) {
            Some(late) => (late.as_nanos() as u64, &self.max_late_ns),
            None => {
                self.early.fetch_add(1, Ordering::Relaxed);
                ((due - sent).as_nanos() as u64, &self.max_early_ns)
            }
        };
        let bucket = ((ns / STAT_BUCKET_NS) as usize).min(STAT_BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.packets.fetch_add(1, Ordering::Relaxed);
        max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Clears every counter (e.g. after a warm-up).
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        for c in [
            &self.packets,
            &self.relayed,
            &self.early,
            &self.send_errors,
            &self.max_late_ns,
            &self.max_early_ns,
            &self.received,
            &self.received_bytes,
            &self.sent_bytes,
            &self.reports_folded,
            &self.keys_over_rate,
            &self.stats_merged,
            &self.keys_dropped,
            &self.lifecycle_dropped,
            &self.commands_dropped,
            &self.calls_refused,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> SendStatsSnapshot {
        SendStatsSnapshot {
            packets: self.packets.load(Ordering::Relaxed),
            relayed: self.relayed.load(Ordering::Relaxed),
            early: self.early.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            max_late: Duration::from_nanos(self.max_late_ns.load(Ordering::Relaxed)),
            max_early: Duration::from_nanos(self.max_early_ns.load(Ordering::Relaxed)),
            received: self.received.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            reports_folded: self.reports_folded.load(Ordering::Relaxed),
            keys_over_rate: self.keys_over_rate.load(Ordering::Relaxed),
            stats_merged: self.stats_merged.load(Ordering::Relaxed),
            keys_dropped: self.keys_dropped.load(Ordering::Relaxed),
            lifecycle_dropped: self.lifecycle_dropped.load(Ordering::Relaxed),
            commands_dropped: self.commands_dropped.load(Ordering::Relaxed),
            calls_refused: self.calls_refused.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl SendStatsSnapshot {
    /// The `q` quantile (0.0–1.0) of |send error|, as the upper edge of its 10 µs bucket; errors of
    /// 10 ms or more report 10 ms.
    pub fn quantile(&self, q: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        let target = ((total as f64) * q.clamp(0.0, 1.0)).ceil() as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return Duration::from_nanos((i as u64 + 1) * STAT_BUCKET_NS);
            }
        }
        Duration::ZERO
    }

    /// Share of packets whose |send error| was below `limit` (bucket resolution).
    pub fn fraction_within(&self, limit: Duration) -> f64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 1.0;
        }
        let upto = ((limit.as_nanos() as u64) / STAT_BUCKET_NS) as usize;
        let within: u64 = self.buckets.iter().take(upto.min(STAT_BUCKETS)).sum();
        within as f64 / total as f64
    }
}

enum Command {
    Open(MediaId, UdpSocket, UdpSocket, MediaConfig),
    Configure(MediaId, MediaConfig),
    Play(MediaId, Arc<Prompt>),
    Stop(MediaId),
    Close(MediaId),
    Bridge(MediaId, MediaId),
    Unbridge(MediaId),
    Capture(MediaId, CaptureId, SocketAddr, CaptureSink),
}

impl Command {
    /// The session it is for (a bridge: its first leg; both legs share a media thread).
    fn id(&self) -> MediaId {
        match self {
            Command::Open(id, ..)
            | Command::Configure(id, _)
            | Command::Play(id, _)
            | Command::Stop(id)
            | Command::Close(id)
            | Command::Bridge(id, _)
            | Command::Unbridge(id)
            | Command::Capture(id, ..) => *id,
        }
    }
}

/// Starts the media thread; see the module doc.
#[derive(Debug)]
pub struct MediaEngine;

impl MediaEngine {
    /// Spawns the media threads (`cfg.threads`, at least one) and returns the handle the signalling
    /// task uses; every session's events go to `events`. The threads end when every handle is dropped
    /// (all sessions are closed then).
    pub fn start(cfg: MediaEngineConfig, events: MediaEvents) -> io::Result<MediaHandle> {
        let stats = Arc::new(SendStats::new());
        let shards = (0..cfg.threads.max(1))
            .map(|k| start_thread(k, &cfg, events.clone(), stats.clone()))
            .collect::<io::Result<Vec<Shard>>>()?;
        Ok(MediaHandle {
            shards: shards.into(),
            stats,
            bind_ip: cfg.bind_ip,
            held: Arc::new(Held::default()),
        })
    }
}

/// Spawns media thread `k` (named `helpline-media`, then `helpline-media1`, …: Linux keeps 15
/// characters) and returns its end of the command channel once its runtime is up.
fn start_thread(
    k: usize,
    cfg: &MediaEngineConfig,
    events: MediaEvents,
    stats: Arc<SendStats>,
) -> io::Result<Shard> {
    let (tx, rx) = mpsc::channel(cfg.command_queue.max(2));
    let late_closes = Arc::new(LateCloses::default());
    let thread_closes = late_closes.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rtcp_interval = cfg.rtcp_interval;
    let scheduling = cfg.scheduling;
    let name = if k == 0 {
        "helpline-media".to_owned()
    } else {
        format!("helpline-media{k}")
    };
    std::thread::Builder::new().name(name).spawn(move || {
        scheduling.apply_here(false);
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        let local = LocalSet::new();
        let engine = Engine::new(events, stats, rtcp_interval);
        local.block_on(&rt, engine.run(rx, thread_closes, scheduling));
    })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("media thread died while starting"))??;
    Ok(Shard { tx, late_closes })
}

/// One media thread as the handle sees it: its command channel and its late closes.
#[derive(Debug)]
struct Shard {
    tx: mpsc::Sender<Command>,
    late_closes: Arc<LateCloses>,
}

/// The media thread of session `id` among `threads`: by the id's call group, so that the sessions
/// of one call (which a bridge joins) share a thread.
pub fn media_thread_of(id: MediaId, threads: usize) -> usize {
    (id.group() % threads.max(1) as u64) as usize
}

/// Binds `port` and `port + 1` on `ip`, non-blocking.
fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtcp_port = port
        .checked_add(1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port above 65535"))?;
    let bind = |port| -> io::Result<UdpSocket> {
        let s = UdpSocket::bind(SocketAddr::new(ip, port))?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    Ok((bind(port)?, bind(rtcp_port)?))
}

/// `close` commands that found the command channel full (module doc): at most one per open session.
#[derive(Debug, Default)]
struct LateCloses {
    /// Set while `ids` is not empty, so the media thread looks without locking.
    any: AtomicBool,
    ids: Mutex<Vec<MediaId>>,
}

impl LateCloses {
    fn push(&self, id: MediaId) {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.push(id);
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<MediaId> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.any.store(false, Ordering::Release);
        std::mem::take(&mut *ids)
    }
}

/// The signalling task's handle to the media threads: cheap to clone, `Send`, fire-and-forget.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    /// One per media thread; a session's commands go to [`media_thread_of`] its id.
    shards: Arc<[Shard]>,
    stats: Arc<SendStats>,
    bind_ip: IpAddr,
    /// Commands kept between [`MediaHandle::hold`] and [`MediaHandle::release`], in order (shared by
    /// the clones: the shell holds, the core sends).
    held: Arc<Held>,
}

/// [`MediaHandle`]'s held commands (`None`: not holding).
#[derive(Default)]
struct Held(std::sync::Mutex<Option<Vec<Command>>>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.lock().map(|h| h.as_ref().map(Vec::len)).ok();
        f.debug_tuple("Held").field(&held).finish()
    }
}

/// Commands one hold keeps at most; more are sent at once (a burst of datagrams makes a few each).
const HELD_COMMANDS: usize = 256;

impl MediaHandle {
    /// Binds RTP on `port` and RTCP on `port + 1` and starts session `id` with `cfg` (not async: the
    /// session starts on the media thread without an answer). A pair that cannot be bound is returned
    /// as the error, for the caller to report to the call layer as [`MediaEvent::BindFailed`] at once;
    /// a failure later on the media thread arrives as that event on the events channel. Callable from
    /// any runtime or thread.
    ///
    /// The two sockets are bound here, on the caller's thread (two non-blocking syscalls), and handed
    /// to the media thread: so the port is bound before the 200 naming it leaves, RTP the caller sends
    /// at once waits in the kernel instead of meeting a closed port while the media thread catches up,
    /// and a busy port is known before the SDP naming it is sent.
    pub fn open(&self, id: MediaId, port: u16, cfg: MediaConfig) -> io::Result<()> {
        let (rtp, rtcp) = bind_pair(self.bind_ip, port)?;
        let cmd = Command::Open(id, rtp, rtcp, cfg);
        let shard = self.shard(id);
        // Held only with room for it and every command held before it: the release cannot fail it.
        let cmd = match self.hold_if(cmd, |held| held < shard.tx.capacity()) {
            None => return Ok(()),
            Some(cmd) => cmd,
        };
        match shard.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            // Not reached while the core refuses new calls at half full ([`MediaHandle::is_busy`]);
            // the sockets close here and the call is released as for a port that cannot be bound.
            Err(_) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "media command queue full",
            )),
        }
    }

    /// A media thread's command channel is half full or more: the core refuses new calls (`503`) so
    /// that the rest of it serves the calls in progress (module doc).
    pub fn is_busy(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.tx.capacity() < s.tx.max_capacity() / 2)
    }

    /// Media threads.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, id: MediaId) -> &Shard {
        &self.shards[media_thread_of(id, self.shards.len())]
    }

    /// From now until [`MediaHandle::release`], commands wait here instead of going one by one: the
    /// shell holds them over a burst of datagrams, so the media thread is woken once for the burst
    /// (at 2,000 calls/s it was woken once or twice per call, a few µs of both threads each time).
    pub fn hold(&self) {
        if let Ok(mut held) = self.held.0.lock() {
            held.get_or_insert_with(|| Vec::with_capacity(16));
        }
    }

    /// Sends what was held, in order, and stops holding.
    pub fn release(&self) {
        let held = match self.held.0.lock() {
            Ok(mut held) => held.take(),
            Err(_) => None,
        };
        for cmd in held.into_iter().flatten() {
            self.send_now(cmd);
        }
    }

    /// Keeps `cmd` when holding and `room(number held)` allows it; gives it back otherwise.
    fn hold_if(&self, cmd: Command, room: impl FnOnce(usize) -> bool) -> Option<Command> {
        let Ok(mut held) = self.held.0.lock() else {
            return Some(cmd);
        };
        let Some(held) = held.as_mut() else {
            return Some(cmd);
        };
        if held.len() >= HELD_COMMANDS {
            // Full: what waits goes first, so a session's commands keep their order.
            for earlier in std::mem::take(held) {
                self.send_now(earlier);
            }
        }
        if room(held.len()) {
            held.push(cmd);
            None
        } else {
            Some(cmd)
        }
    }

    /// Sends (or holds) a command for a session already open; see the module doc for a full channel.
    fn send(&self, cmd: Command) {
        if let Some(cmd) = self.hold_if(cmd, |_| true) {
            self.send_now(cmd);
        }
    }

    /// Sends what is held, then `cmd`, now (holding goes on for what follows).
    fn send_through(&self, cmd: Command) {
        let earlier = match self.held.0.lock() {
            Ok(mut held) => held.as_mut().map(std::mem::take),
            Err(_) => None,
        };
        for earlier in earlier.into_iter().flatten() {
            self.send_now(earlier);
        }
        self.send_now(cmd);
    }

    fn send_now(&self, cmd: Command) {
        let shard = self.shard(cmd.id());
        match shard.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Command::Close(id))) => shard.late_closes.push(id),
            Err(mpsc::error::TrySendError::Full(_)) => SendStats::shed(
                &self.stats.commands_dropped,
                1,
                "media command queue full: commands for calls in progress dropped",
            ),
            // The media thread is gone (shutdown): nothing to do.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Updates (re-INVITE, hold, the answer in an ACK) the session's negotiated media.
    pub fn configure(&self, id: MediaId, cfg: MediaConfig) {
        self.send(Command::Configure(id, cfg));
    }

    /// Plays a prompt, replacing anything playing.
    pub fn play(&self, id: MediaId, prompt: Arc<Prompt>) {
        self.send(Command::Play(id, prompt));
    }

    /// Barge-in: stops the current prompt.
    pub fn stop_playout(&self, id: MediaId) {
        self.send(Command::Stop(id));
    }

    /// Ends the session and frees its ports; a bridge it is in ends too (the other leg gets its stream
    /// back, as with [`MediaHandle::unbridge`]).
    pub fn close(&self, id: MediaId) {
        self.send(Command::Close(id));
    }

    /// Bridges sessions `a` and `b` (module doc): both stop playing, and every RTP packet each one
    /// accepts from its latched source is relayed to the other (SSRC, sequence and timestamp each
    /// leg was hearing continue; PCMU↔PCMA transcoded; RFC 4733 passed with the other leg's payload
    /// type). DTMF and RTP timeouts are still reported per session. A leg already bridged leaves its
    /// old bridge first. Ignored if either session is not open, or `a == b`.
    pub fn bridge(&self, a: MediaId, b: MediaId) {
        if a.group() != b.group() && self.shards.len() > 1 {
            // The call layer gives a call's sessions one group; a caller of the engine that does
            // not cannot have them relayed between two threads.
            tracing::warn!(
                ?a,
                ?b,
                "bridge refused: the sessions are not of one call group"
            );
            return;
        }
        // Never held: the SIP of the same burst (the agent's ACK) lets both sides talk at once, and a
        // packet that reaches a session before its bridge is not relayed.
        self.send_through(Command::Bridge(a, b));
    }

    /// Ends the bridge session `id` (either leg) is in; each leg's session takes its stream back, so
    /// a prompt played next continues it. Ignored if `id` is not bridged.
    pub fn unbridge(&self, id: MediaId) {
        self.send(Command::Unbridge(id));
    }

    /// Captures session `id` into capture `capture` (see the module doc); `local` is the session's
    /// RTP address as announced (its socket may be bound to the wildcard). Ignored if not open.
    pub fn capture(&self, id: MediaId, capture: CaptureId, local: SocketAddr, sink: CaptureSink) {
        self.send(Command::Capture(id, capture, local, sink));
    }

    /// Send-time statistics over all sessions (for telemetry and the load benchmark).
    pub fn send_stats(&self) -> Arc<SendStats> {
        self.stats.clone()
    }
}

struct Entry {
    session: RefCell<Option<MediaSession>>,
    /// The RTP socket, non-blocking and registered for READABLE only. Sends are direct `send_to`
    /// calls: with tokio's `UdpSocket` the socket is also registered for WRITABLE, so every packet
    /// sent raised a write-space epoll event for the reactor to process (measurable at thousands of
    /// streams), and `try_send_to` refuses to send until the reactor has seen the socket writable
    /// once, which dropped the first packet of a session opened and played within one reactor turn.
    socket: Rc<AsyncFd<UdpSocket>>,
    /// The RTCP socket (port + 1), read by its own task; reports are sent from it directly.
    rtcp_socket: Rc<AsyncFd<UdpSocket>>,
    /// Wall time for the sessions' RTCP (the engine's one clock mapping).
    ntp: NtpClock,
    id: MediaId,
    events: MediaEvents,
    /// Deadline this session is armed for in the heap; other heap entries for it are stale.
    scheduled: Cell<Option<Instant>>,
    tasks: [JoinHandle<()>; 2],
    /// The bridge this leg is in, if any.
    link: RefCell<Option<Link>>,
    /// The engine's send buffer (relayed packets are written there).
    send_buf: SendBuf,
    stats: Arc<SendStats>,
    /// Set when the session's call is captured.
    tap: RefCell<Option<Tap>>,
    /// Events the channel had no room for (module doc "Bounded both ways").
    outbox: RefCell<Outbox>,
    /// This entry, to put itself on `backlogged` when its outbox starts to fill.
    me: std::rc::Weak<Entry>,
    /// The engine's list of entries whose outbox waits for room.
    backlogged: Backlogged,
}

/// Entries whose outbox is not empty, oldest first.
type Backlogged = Rc<RefCell<Vec<std::rc::Weak<Entry>>>>;

/// `try_send` of one event, as an [`Outbox`] wants it.
fn try_send(events: &MediaEvents, id: MediaId, e: MediaEvent) -> Result<(), Refused> {
    events.try_send((id, e)).map_err(|err| match err {
        mpsc::error::TrySendError::Full((_, e)) => Refused::Full(e),
        mpsc::error::TrySendError::Closed(_) => Refused::Closed,
    })
}

/// What one call may still capture, shared by its sessions.
#[derive(Debug)]
struct Budget {
    bytes_left: Cell<u64>,
    sent_left: Cell<u32>,
    capped: Cell<bool>,
}

/// A captured session's copier.
struct Tap {
    id: CaptureId,
    /// The session's RTP address as announced; RTCP is the next port.
    local: SocketAddr,
    sink: CaptureSink,
    budget: Rc<Budget>,
    /// Packets of the current prompt still to be sampled.
    prompt_left: Cell<u32>,
}

impl Tap {
    fn received(&self, at: Instant, from: SocketAddr, packet: &[u8]) {
        self.copy(at, from, self.local, packet);
    }

    fn received_rtcp(&self, at: Instant, from: SocketAddr, packet: &[u8]) {
        self.copy(at, from, self.local_rtcp(), packet);
    }

    /// A report we sent (few: every few seconds), outside the budget of sent packets.
    fn sent_rtcp(&self, at: Instant, to: SocketAddr, packet: &[u8]) {
        self.copy(at, self.local_rtcp(), to, packet);
    }

    fn local_rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.local.ip(), self.local.port().wrapping_add(1))
    }

    /// A paced prompt packet: the first few of each prompt.
    fn sent_prompt(&self, at: Instant, to: SocketAddr, packet: &[u8]) {
        let left = self.prompt_left.get();
        if left > 0 {
            self.prompt_left.set(left - 1);
            self.sent(at, to, packet);
        }
    }

    /// Anything we send, under the call's budget of sent packets.
    fn sent(&self, at: Instant, to: SocketAddr, packet: &[u8]) {
        let left = self.budget.sent_left.get();
        if left > 0 {
            self.budget.sent_left.set(left - 1);
            self.copy(at, self.local, to, packet);
        }
    }

    fn copy(&self, at: Instant, from: SocketAddr, to: SocketAddr, packet: &[u8]) {
        let n = packet.len() as u64;
        let left = self.budget.bytes_left.get();
        if left < n {
            if !self.budget.capped.replace(true) {
                self.sink.stats().capped();
            }
            return;
        }
        self.budget.bytes_left.set(left - n);
        self.sink.offer(CaptureMsg::Rtp(CapturedRtp {
            id: self.id,
            at,
            from,
            to,
            bytes: packet.to_vec(),
        }));
    }
}

/// Which leg of its [`Bridge`] a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    A,
    B,
}

/// One leg's view of the bridge it is in.
struct Link {
    bridge: Rc<RefCell<Bridge>>,
    leg: Leg,
    /// The other leg (weak: the slab owns entries; a closed leg ends the bridge before it goes).
    peer: std::rc::Weak<Entry>,
    /// A refused `play` was logged already.
    play_refused: Cell<bool>,
}

impl Entry {
    /// Sends one RTCP compound from this session's RTCP socket (a full buffer drops it, as for RTP).
    fn send_rtcp(&self, now: Instant, dst: SocketAddr, packet: &[u8]) {
        match self.rtcp_socket.get_ref().send_to(packet, dst) {
            Ok(_) => {
                if let Some(tap) = self.tap.borrow().as_ref() {
                    tap.sent_rtcp(now, dst, packet);
                }
            }
            Err(err) => tracing::trace!(%err, "rtcp report dropped"),
        }
    }

    /// Hands the session's events to the core, through its outbox (module doc). A call that has
    /// gone away no longer needs its events: a closed channel drops them.
    fn forward_events(&self, session: &mut MediaSession) {
        let shed = session.take_shed();
        let stats = &self.stats;
        SendStats::shed(
            &stats.reports_folded,
            shed.reports_folded,
            "RTCP reports received faster than one a second per session: folded into the next",
        );
        SendStats::shed(
            &stats.keys_over_rate,
            shed.keys_over_rate,
            "keys faster than the per-session key rate dropped",
        );
        let mut outbox = self.outbox.borrow_mut();
        let was_empty = outbox.is_empty();
        let mut send = |e| try_send(&self.events, self.id, e);
        while let Some(e) = session.poll_event() {
            outbox.offer(e, &mut send);
        }
        let shed = outbox.take_shed();
        SendStats::shed(
            &stats.stats_merged,
            shed.stats_merged,
            "media events queue full: statistics merged",
        );
        SendStats::shed(
            &stats.keys_dropped,
            shed.keys_dropped,
            "media events queue full: keys dropped",
        );
        SendStats::shed(
            &stats.lifecycle_dropped,
            shed.lifecycle_dropped,
            "media events queue full for long: session events dropped",
        );
        if was_empty && !outbox.is_empty() {
            self.backlogged.borrow_mut().push(self.me.clone());
        }
    }

    /// Sends what waits in the outbox while the channel has room; true when nothing waits.
    fn flush_outbox(&self) -> bool {
        self.outbox
            .borrow_mut()
            .flush(&mut |e| try_send(&self.events, self.id, e))
    }

    /// Bridged: sends `packet`, which this leg's session accepted, on the other leg as this leg's
    /// relay rewrites it. No allocation, no lock: RefCell borrows on the media thread only.
    fn relay(&self, now: Instant, packet: &[u8]) {
        let link = self.link.borrow();
        let Some(link) = link.as_ref() else { return };
        let Some(peer) = link.peer.upgrade() else {
            return;
        };
        let mut bridge = link.bridge.borrow_mut();
        let relay = match link.leg {
            Leg::A => &mut bridge.a_to_b,
            Leg::B => &mut bridge.b_to_a,
        };
        let mut buf = self.send_buf.borrow_mut();
        let Some(n) = relay.relay(now, packet, &mut buf[..]) else {
            return;
        };
        // None only on hold, which the relay already honoured; kept as a guard.
        let dst = peer
            .session
            .borrow()
            .as_ref()
            .and_then(MediaSession::destination);
        let (Some(dst), Some(out)) = (dst, buf.get(..n)) else {
            return;
        };
        match peer.socket.get_ref().send_to(out, dst) {
            Ok(_) => {
                self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = peer.session.borrow_mut().as_mut() {
                    // The other leg's sender report counts what we relayed into its stream.
                    s.on_relayed(now, out);
                }
                if let Some(tap) = peer.tap.borrow().as_ref() {
                    tap.sent(now, dst, out);
                }
                self.stats
                    .sent_bytes
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::trace!(%err, "relayed rtp packet dropped");
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Slot {
    generation: u32,
    entry: Option<Rc<Entry>>,
}

struct Engine {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    ids: HashMap<MediaId, SlotId>,
    events: MediaEvents,
    stats: Arc<SendStats>,
    buf: SendBuf,
    recv_buf: RecvBuf,
    /// Each captured call's budget, while a session of it is open.
    budgets: HashMap<CaptureId, std::rc::Weak<Budget>>,
    rtcp_interval: Duration,
    /// Instants to wall time, read once at start (RTCP sender reports).
    ntp: NtpClock,
    /// Entries whose outbox waits for room in the events channel.
    backlogged: Backlogged,
    /// Events of sessions that never opened (`BindFailed`), waiting for room likewise; at most one
    /// per `open` command.
    unsent: std::collections::VecDeque<(MediaId, MediaEvent)>,
}

impl Engine {
    fn new(events: MediaEvents, stats: Arc<SendStats>, rtcp_interval: Duration) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Engine {
            rtcp_interval,
            ntp: NtpClock::from_unix(Instant::now(), unix),
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            ids: HashMap::new(),
            events,
            stats,
            buf: Rc::new(RefCell::new(Box::new([0u8; SEND_BUF]))),
            recv_buf: Rc::new(RefCell::new(Box::new([0u8; RECV_BUF]))),
            budgets: HashMap::new(),
            backlogged: Rc::new(RefCell::new(Vec::new())),
            unsent: std::collections::VecDeque::new(),
        }
    }

    /// Whether some event waits for room in the events channel.
    fn waiting(&self) -> bool {
        !self.unsent.is_empty() || !self.backlogged.borrow().is_empty()
    }

    /// Sends waiting events, oldest first, until the channel is full again.
    fn flush_waiting(&mut self) {
        while let Some((id, e)) = self.unsent.pop_front() {
            match try_send(&self.events, id, e) {
                Ok(()) => {}
                Err(Refused::Full(e)) => {
                    self.unsent.push_front((id, e));
                    return;
                }
                Err(Refused::Closed) => self.unsent.clear(),
            }
        }
        let list = std::mem::take(&mut *self.backlogged.borrow_mut());
        let mut still = Vec::new();
        let mut full = false;
        for weak in list {
            // A closed session's outbox went with it.
            let Some(e) = weak.upgrade() else { continue };
            if full || !e.flush_outbox() {
                full = true;
                still.push(weak);
            }
        }
        self.backlogged.borrow_mut().splice(0..0, still);
    }

    /// An event of no open session (it goes behind anything waiting).
    fn report(&mut self, id: MediaId, e: MediaEvent) {
        if self.unsent.is_empty() {
            match try_send(&self.events, id, e) {
                Ok(()) | Err(Refused::Closed) => {}
                Err(Refused::Full(e)) => self.unsent.push_back((id, e)),
            }
        } else {
            self.unsent.push_back((id, e));
        }
    }

    /// Closes that found the command channel full, after every command sent before them: those
    /// are all in the channel by now (at most its capacity), so it is read to the end first.
    fn late_closes(&mut self, rx: &mut mpsc::Receiver<Command>, late: &LateCloses) {
        let ids = late.take();
        if ids.is_empty() {
            return;
        }
        for _ in 0..rx.max_capacity() {
            match rx.try_recv() {
                Ok(cmd) => self.handle(cmd),
                Err(_) => break,
            }
        }
        for id in ids {
            self.handle(Command::Close(id));
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        late: Arc<LateCloses>,
        scheduling: MediaScheduling,
    ) {
        // A clone, so that waiting for room does not borrow the engine.
        let events = self.events.clone();
        let ticker = Arc::new(Ticker {
            deadline_ns: AtomicU64::new(NO_DEADLINE),
            base: Instant::now(),
            notify: tokio::sync::Notify::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let ticker_thread = {
            let ticker = ticker.clone();
            std::thread::Builder::new()
                .name("helpline-media-tick".into())
                .spawn(move || {
                    scheduling.apply_here(true);
                    ticker.run()
                })
        };
        let ticker_thread = match ticker_thread {
            Ok(t) => Some(t),
            Err(e) => {
                // The safety-net sleep still paces, only with tokio's millisecond accuracy.
                tracing::warn!(%e, "media ticker thread not started; pacing at 1 ms resolution");
                None
            }
        };
        // Safety net, re-armed with `reset`, never re-created.
        const BACKUP: Duration = Duration::from_millis(2);
        let idle = || Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(idle().into());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            // The ticker is armed for a live deadline only: a closed session's entries would wake
            // both threads for nothing (at 2,000 short calls/s, about one wake-up per call).
            self.discard_stale_top();
            let next = self.heap.peek().map(|Reverse((t, _, _))| *t);
            if next != armed {
                sleep
                    .as_mut()
                    .reset(next.map_or_else(idle, |t| t + BACKUP).into());
                let new = next.map_or(NO_DEADLINE, |t| ticker.ns(t));
                let old = ticker.deadline_ns.swap(new, Ordering::AcqRel);
                if ticker_must_know(old, new, ticker.ns(Instant::now())) {
                    if let Some(t) = &ticker_thread {
                        t.thread().unpark();
                    }
                }
                armed = next;
            }
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    for _ in 1..COMMAND_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                () = ticker.notify.notified() => {}
                () = &mut sleep => {}
                // Room again (or the core is gone: the flush then drops what waits).
                permit = events.reserve(), if self.waiting() => {
                    drop(permit);
                    self.flush_waiting();
                }
            }
            self.late_closes(&mut rx, &late);
            self.run_due(Instant::now() + EARLY);
        }
        ticker.stop.store(true, Ordering::Release);
        if let Some(t) = ticker_thread {
            t.thread().unpark();
            let _ = t.join();
        }
        for index in 0..self.slots.len() {
            self.remove(index);
        }
        self.ids.clear();
    }

    fn entry(&self, id: MediaId) -> Option<(SlotId, Rc<Entry>)> {
        let slot = *self.ids.get(&id)?;
        self.slot_entry(slot).map(|e| (slot, e))
    }

    fn slot_entry(&self, id: SlotId) -> Option<Rc<Entry>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.clone()
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Open(id, rtp, rtcp, cfg) => {
                let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
                if let Err(err) = self.open(now, id, rtp, rtcp, cfg) {
                    tracing::warn!(%err, port, "rtp sockets could not be registered");
                    self.report(id, MediaEvent::BindFailed { port });
                }
            }
            Command::Configure(id, cfg) => self.configure(now, id, &cfg),
            Command::Play(id, prompt) => {
                if !self.refuse_play_if_bridged(id) {
                    if let Some((_, e)) = self.entry(id) {
                        if let Some(tap) = e.tap.borrow().as_ref() {
                            tap.prompt_left.set(PROMPT_SAMPLE_PACKETS);
                        }
                    }
                    self.with_session(id, |s| s.play(now, prompt));
                }
            }
            Command::Stop(id) => self.with_session(id, |s| s.stop_playout(now)),
            Command::Close(id) => {
                self.unbridge(now, id);
                self.send_bye(now, id);
                if let Some(slot) = self.ids.remove(&id) {
                    if self.slot_entry(slot).is_some() {
                        self.remove(slot.index as usize);
                    }
                }
            }
            Command::Bridge(a, b) => self.bridge(now, a, b),
            Command::Unbridge(id) => self.unbridge(now, id),
            Command::Capture(id, capture, local, sink) => self.tap(id, capture, local, sink),
        }
    }

    /// Starts copying session `id`'s packets into `capture` (one budget per call).
    fn tap(&mut self, id: MediaId, capture: CaptureId, local: SocketAddr, sink: CaptureSink) {
        let Some((_, e)) = self.entry(id) else {
            return;
        };
        self.budgets.retain(|_, b| b.strong_count() > 0);
        let budget = match self.budgets.get(&capture).and_then(std::rc::Weak::upgrade) {
            Some(b) => b,
            None => {
                let b = Rc::new(Budget {
                    bytes_left: Cell::new(MAX_CALL_RTP_BYTES),
                    sent_left: Cell::new(MAX_SENT_PACKETS_PER_CALL),
                    capped: Cell::new(false),
                });
                self.budgets.insert(capture, Rc::downgrade(&b));
                b
            }
        };
        *e.tap.borrow_mut() = Some(Tap {
            id: capture,
            local,
            sink,
            budget,
            prompt_left: Cell::new(PROMPT_SAMPLE_PACKETS),
        });
    }

    /// Applies a re-INVITE's media to the session, and to its bridge if it is in one.
    fn configure(&mut self, now: Instant, id: MediaId, cfg: &MediaConfig) {
        let Some((slot, e)) = self.entry(id) else {
            return;
        };
        let mut s = e.session.borrow_mut();
        match s.as_mut() {
            Some(session) => {
                session.update_remote(now, cfg);
                if let Some(link) = e.link.borrow().as_ref() {
                    let mut bridge = link.bridge.borrow_mut();
                    match link.leg {
                        Leg::A => bridge.update_a(session.config()),
                        Leg::B => bridge.update_b(session.config()),
                    }
                }
            }
            None => {
                *s = Some(MediaSession::with_rtcp_interval(
                    now,
                    cfg.clone(),
                    self.rtcp_interval,
                ))
            }
        }
        drop(s);
        self.arm(slot, &e);
    }

    /// True if `id` is bridged: the relay writes its stream, so a prompt may not (logged once).
    fn refuse_play_if_bridged(&self, id: MediaId) -> bool {
        let Some((_, e)) = self.entry(id) else {
            return false;
        };
        let link = e.link.borrow();
        let Some(link) = link.as_ref() else {
            return false;
        };
        if !link.play_refused.replace(true) {
            tracing::warn!(media = id.0, "play on a bridged session refused");
        }
        true
    }

    /// Bridges `a` and `b` (see [`MediaHandle::bridge`]).
    fn bridge(&mut self, now: Instant, a: MediaId, b: MediaId) {
        if a == b {
            tracing::warn!(media = a.0, "a session cannot be bridged with itself");
            return;
        }
        let (Some((slot_a, ea)), Some((slot_b, eb))) = (self.entry(a), self.entry(b)) else {
            tracing::debug!(a = a.0, b = b.0, "bridge of a session not open ignored");
            return;
        };
        // A leg bridged elsewhere (a transfer to another agent) leaves that bridge first.
        self.unbridge(now, a);
        self.unbridge(now, b);
        let bridge = {
            let mut sa = ea.session.borrow_mut();
            let mut sb = eb.session.borrow_mut();
            let (Some(sa), Some(sb)) = (sa.as_mut(), sb.as_mut()) else {
                return;
            };
            sa.stop_playout(now);
            sb.stop_playout(now);
            let (sa, sb) = (&*sa, &*sb);
            Bridge::between(now, sa, sa.config(), sb, sb.config())
        };
        let bridge = Rc::new(RefCell::new(bridge));
        let link = |leg, peer: &Rc<Entry>| Link {
            bridge: bridge.clone(),
            leg,
            peer: Rc::downgrade(peer),
            play_refused: Cell::new(false),
        };
        *ea.link.borrow_mut() = Some(link(Leg::A, &eb));
        *eb.link.borrow_mut() = Some(link(Leg::B, &ea));
        tracing::debug!(a = a.0, b = b.0, "sessions bridged");
        self.arm(slot_a, &ea);
        self.arm(slot_b, &eb);
    }

    /// Ends the bridge `id` is in, handing each leg the stream the relay toward it wrote.
    fn unbridge(&mut self, now: Instant, id: MediaId) {
        let Some((_, e)) = self.entry(id) else {
            return;
        };
        let Some(link) = e.link.borrow_mut().take() else {
            return;
        };
        let peer = link.peer.upgrade();
        if let Some(p) = &peer {
            p.link.borrow_mut().take();
        }
        let (a, b) = match link.leg {
            Leg::A => (Some(e), peer),
            Leg::B => (peer, Some(e)),
        };
        let bridge = link.bridge.borrow();
        tracing::debug!(
            a_to_b = ?bridge.a_to_b.stats(),
            b_to_a = ?bridge.b_to_a.stats(),
            "bridge ended"
        );
        for (leg, relay) in [(a, &bridge.b_to_a), (b, &bridge.a_to_b)] {
            let Some(leg) = leg else { continue };
            if let Some(s) = leg.session.borrow_mut().as_mut() {
                s.set_rtp_continuation(now, relay.continuation(now));
            }
            if let Some(&slot) = self.ids.get(&leg.id) {
                self.arm(slot, &leg);
            }
        }
    }

    fn with_session(&mut self, id: MediaId, f: impl FnOnce(&mut MediaSession)) {
        let Some((slot, e)) = self.entry(id) else {
            return;
        };
        match e.session.borrow_mut().as_mut() {
            Some(s) => f(s),
            None => {
                tracing::debug!("media command before configure ignored");
                return;
            }
        }
        self.arm(slot, &e);
    }

    /// A closing session's last RTCP report, with its BYE.
    fn send_bye(&mut self, now: Instant, id: MediaId) {
        let Some((_, e)) = self.entry(id) else {
            return;
        };
        let mut session = e.session.borrow_mut();
        let Some(s) = session.as_mut() else { return };
        let mut buf = self.buf.borrow_mut();
        if let Some((dst, n)) = s.bye(now, &self.ntp, &mut buf[..]) {
            if let Some(packet) = buf.get(..n) {
                e.send_rtcp(now, dst, packet);
            }
        }
    }

    /// Puts the session's next deadline (RTP or RTCP) in the heap unless it is already armed for
    /// exactly that.
    fn arm(&mut self, id: SlotId, e: &Entry) {
        let next = e.session.borrow().as_ref().and_then(|s| {
            match (s.poll_timeout(), s.poll_rtcp_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        if next != e.scheduled.get() {
            e.scheduled.set(next);
            if let Some(t) = next {
                self.heap.push(Reverse((t, id.index, id.generation)));
            }
        }
    }

    /// Pops heap entries that no longer name a live deadline (session closed, or re-armed), down to
    /// the first one that does; [`Engine::run_due`] would skip them the same way when they came due.
    fn discard_stale_top(&mut self) {
        while let Some(&Reverse((deadline, index, generation))) = self.heap.peek() {
            let id = SlotId { index, generation };
            match self.slot_entry(id) {
                Some(e) if e.scheduled.get() == Some(deadline) => return,
                _ => {
                    self.heap.pop();
                }
            }
        }
    }

    fn run_due(&mut self, horizon: Instant) {
        while let Some(&Reverse((deadline, index, generation))) = self.heap.peek() {
            if deadline > horizon {
                break;
            }
            self.heap.pop();
            let id = SlotId { index, generation };
            let Some(e) = self.slot_entry(id) else {
                continue;
            };
            if e.scheduled.get() != Some(deadline) {
                continue;
            }
            e.scheduled.set(None);
            if let Some(s) = e.session.borrow_mut().as_mut() {
                s.handle_timeout(horizon);
                let mut buf = self.buf.borrow_mut();
                while let Some((dst, n)) = s.poll_transmit(horizon, &mut buf[..]) {
                    let Some(packet) = buf.get(..n) else {
                        break;
                    };
                    let result = e.socket.get_ref().send_to(packet, dst);
                    let sent = Instant::now();
                    if result.is_ok() {
                        if let Some(tap) = e.tap.borrow().as_ref() {
                            tap.sent_prompt(sent, dst, packet);
                        }
                        self.stats
                            .sent_bytes
                            .fetch_add(packet.len() as u64, Ordering::Relaxed);
                    }
                    match (result, s.last_sent_due()) {
                        (Ok(_), Some(due)) => self.stats.record(sent, due),
                        (Ok(_), None) => {}
                        (Err(err), _) => {
                            tracing::trace!(%err, "rtp packet dropped");
                            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                while let Some((dst, n)) = s.poll_rtcp(horizon, &self.ntp, &mut buf[..]) {
                    if let Some(packet) = buf.get(..n) {
                        e.send_rtcp(horizon, dst, packet);
                    }
                }
                e.forward_events(s);
            }
            self.arm(id, &e);
        }
    }

    /// Starts session `id` on sockets bound by [`MediaHandle::open`], configured with `cfg`.
    fn open(
        &mut self,
        now: Instant,
        id: MediaId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        cfg: MediaConfig,
    ) -> io::Result<()> {
        if self.ids.contains_key(&id) {
            return Ok(()); // a repeated command for a live session
        }
        let rtp = Rc::new(register_readable(rtp)?);
        let rtcp = Rc::new(register_readable(rtcp)?);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(io::Error::other("media slab index out of range"));
        };
        let slot_id = SlotId {
            index,
            generation: slot.generation,
        };
        let events = self.events.clone();
        let entry = Rc::new_cyclic(|weak: &std::rc::Weak<Entry>| {
            let rtp_task = tokio::task::spawn_local(receive_rtp(
                rtp.clone(),
                weak.clone(),
                self.recv_buf.clone(),
            ));
            let rtcp_task = tokio::task::spawn_local(receive_rtcp(
                rtcp.clone(),
                weak.clone(),
                self.recv_buf.clone(),
            ));
            Entry {
                session: RefCell::new(Some(MediaSession::with_rtcp_interval(
                    now,
                    cfg,
                    self.rtcp_interval,
                ))),
                socket: rtp,
                rtcp_socket: rtcp,
                ntp: self.ntp,
                id,
                events,
                scheduled: Cell::new(None),
                tasks: [rtp_task, rtcp_task],
                link: RefCell::new(None),
                send_buf: self.buf.clone(),
                stats: self.stats.clone(),
                tap: RefCell::new(None),
                outbox: RefCell::new(Outbox::new()),
                me: weak.clone(),
                backlogged: self.backlogged.clone(),
            }
        });
        slot.entry = Some(entry.clone());
        self.ids.insert(id, slot_id);
        self.arm(slot_id, &entry);
        Ok(())
    }

    fn remove(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(e) = slot.entry.take() {
            for t in &e.tasks {
                t.abort();
            }
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index as u32);
        }
    }
}

/// Reads the session's RTP socket until the session is closed.
async fn receive_rtp(socket: Rc<AsyncFd<UdpSocket>>, entry: std::rc::Weak<Entry>, buf: RecvBuf) {
    loop {
        let mut ready = match socket.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::debug!(%e, "rtp socket failed");
                return;
            }
        };
        let mut buf = buf.borrow_mut();
        let (n, src) = match ready.try_io(|s| s.get_ref().recv_from(&mut buf[..])) {
            Ok(Ok(x)) => x,
            Ok(Err(e)) if is_transient(&e) => continue,
            Ok(Err(e)) => {
                tracing::debug!(%e, "rtp socket failed");
                return;
            }
            // Readiness was stale (another read drained it): wait for the next edge.
            Err(_would_block) => continue,
        };
        drop(ready);
        let Some(strong) = entry.upgrade() else {
            return;
        };
        strong.stats.received.fetch_add(1, Ordering::Relaxed);
        strong
            .stats
            .received_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let Some(packet) = buf.get(..n) else { continue };
        if let Some(tap) = strong.tap.borrow().as_ref() {
            tap.received(now, src, packet);
        }
        let mut session = strong.session.borrow_mut();
        let accepted = session.as_mut().is_some_and(|s| {
            let accepted = s.handle_rtp(now, src, packet);
            strong.forward_events(s);
            accepted
        });
        drop(session);
        // Only what the session took from its latched source crosses the bridge (symmetric RTP).
        if accepted {
            strong.relay(now, packet);
        }
    }
}

/// Reads the RTCP socket until the session is closed and hands each datagram to the session.
async fn receive_rtcp(socket: Rc<AsyncFd<UdpSocket>>, entry: std::rc::Weak<Entry>, buf: RecvBuf) {
    loop {
        let Ok(mut ready) = socket.readable().await else {
            return;
        };
        let mut buf = buf.borrow_mut();
        let (n, src) = match ready.try_io(|s| s.get_ref().recv_from(&mut buf[..])) {
            Ok(Ok(x)) => x,
            Ok(Err(e)) if is_transient(&e) => continue,
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        };
        drop(ready);
        let Some(strong) = entry.upgrade() else {
            return;
        };
        let now = Instant::now();
        if let (Some(tap), Some(packet)) = (strong.tap.borrow().as_ref(), buf.get(..n)) {
            tap.received_rtcp(now, src, packet);
        }
        let mut session = strong.session.borrow_mut();
        if let (Some(s), Some(packet)) = (session.as_mut(), buf.get(..n)) {
            s.handle_rtcp(now, &strong.ntp, src, packet);
            strong.forward_events(s);
        }
    }
}

/// Registers a socket with the media thread's reactor for READABLE only.
///
/// tokio 1.54 deprecated the safe `AsyncFd::with_interest` because a generic `T: AsRawFd` might
/// close or swap its descriptor while registered; its replacement is `unsafe`, which this crate
/// forbids. The deprecation's concern cannot arise here: `std::net::UdpSocket` owns its descriptor
/// for its whole life and the `AsyncFd` owns the socket, so the descriptor stays open and the same
/// until the registration is dropped.
#[allow(deprecated)]
fn register_readable(socket: UdpSocket) -> io::Result<AsyncFd<UdpSocket>> {
    AsyncFd::with_interest(socket, Interest::READABLE)
}

/// Errors a UDP socket reports for one datagram (e.g. ICMP port unreachable) rather than for itself.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Law;

    fn cfg(remote: SocketAddr) -> MediaConfig {
        MediaConfig {
            law: Law::Ulaw,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            remote: Some(remote),
            send: true,
            rtp_timeout: Duration::from_secs(30),
            seed: 3,
        }
    }

    #[test]
    fn held_commands_reach_the_media_thread_only_at_release_and_in_order() {
        let (tx, mut rx) = mpsc::channel(16);
        let handle = MediaHandle {
            shards: vec![Shard {
                tx,
                late_closes: Arc::new(LateCloses::default()),
            }]
            .into(),
            stats: Arc::new(SendStats::new()),
            bind_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            held: Arc::new(Held::default()),
        };
        let id = |c: &Command| match c {
            Command::Stop(id) | Command::Close(id) => Some(*id),
            _ => None,
        };
        handle.stop_playout(MediaId(1));
        assert_eq!(rx.try_recv().ok().as_ref().and_then(id), Some(MediaId(1)));
        handle.hold();
        handle.stop_playout(MediaId(2));
        handle.close(MediaId(3));
        assert!(rx.try_recv().is_err(), "nothing leaves while held");
        handle.release();
        assert_eq!(rx.try_recv().ok().as_ref().and_then(id), Some(MediaId(2)));
        assert_eq!(rx.try_recv().ok().as_ref().and_then(id), Some(MediaId(3)));
        // Released: sent at once again.
        handle.close(MediaId(4));
        assert_eq!(rx.try_recv().ok().as_ref().and_then(id), Some(MediaId(4)));
    }

    #[test]
    fn ticker_is_unparked_only_when_it_would_wake_too_late() {
        let early = EARLY.as_nanos() as u64;
        let now = 1_000_000_000;
        let old = now + 10 * early;
        // Sleeping toward `old`: a later deadline is read when it wakes; an earlier one is not.
        assert!(!ticker_must_know(old, old + early, now));
        assert!(!ticker_must_know(old, NO_DEADLINE, now));
        assert!(ticker_must_know(old, old - 1, now));
        // `old` fired (or is about to): the ticker parks, so any new deadline must be told.
        assert!(ticker_must_know(now + early, now + 20 * early, now));
        assert!(ticker_must_know(now - 5, now + 20 * early, now));
        assert!(ticker_must_know(NO_DEADLINE, old, now));
        assert!(!ticker_must_know(old, old, now));
    }

    #[test]
    fn handle_can_move_to_call_tasks_on_other_threads() {
        fn send_clone<T: Send + Sync + Clone + 'static>() {}
        send_clone::<MediaHandle>();
        send_clone::<MediaId>();
    }

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

    fn start() -> (MediaHandle, mpsc::Receiver<(MediaId, MediaEvent)>) {
        let (tx, rx) = event_channel();
        let engine =
            MediaEngine::start(MediaEngineConfig::new("127.0.0.1".parse().unwrap()), tx).unwrap();
        (engine, rx)
    }

    async fn next_event(
        rx: &mut mpsc::Receiver<(MediaId, MediaEvent)>,
    ) -> Option<(MediaId, MediaEvent)> {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
    }

    #[test]
    fn plays_to_a_socket_latches_and_reports_events_tagged_with_the_id() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (engine, mut ev_rx) = start();
            let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = free_pair();
            let id = MediaId(7);
            engine
                .open(id, port, cfg(caller.local_addr().unwrap()))
                .expect("a free pair binds");
            let pcm = vec![1000i16; 160 * 5];
            engine.play(id, Arc::new(Prompt::from_samples("en", "five", &pcm)));
            let mut buf = [0u8; 1500];
            let mut seqs = Vec::new();
            for _ in 0..5 {
                let (n, from) =
                    tokio::time::timeout(Duration::from_secs(2), caller.recv_from(&mut buf))
                        .await
                        .unwrap()
                        .unwrap();
                assert_eq!(from.port(), port, "sent from the port it was told");
                let (h, payload) = crate::media::rtp::parse(&buf[..n]).unwrap();
                assert_eq!(payload.len(), 160);
                seqs.push(h.sequence);
            }
            assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
            assert_eq!(
                next_event(&mut ev_rx).await,
                Some((
                    id,
                    MediaEvent::PromptFinished {
                        name: "five".into()
                    }
                ))
            );

            // RTP from the caller: FirstRtp, then an RFC 4733 key.
            let mut pkt = vec![0x80, 0xe5, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7];
            pkt.extend_from_slice(&[5, 0x0a, 0, 0]);
            caller.send_to(&pkt, ("127.0.0.1", port)).await.unwrap();
            assert_eq!(
                next_event(&mut ev_rx).await,
                Some((
                    id,
                    MediaEvent::FirstRtp {
                        from: caller.local_addr().unwrap()
                    }
                ))
            );
            let key = next_event(&mut ev_rx).await;
            assert!(matches!(key, Some((i, MediaEvent::Digit(d))) if i == id && d.digit == '5'));
            assert!(engine.send_stats().snapshot().packets >= 5);
            engine.close(id);
        });
    }

    #[test]
    fn a_port_it_cannot_bind_is_refused_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (engine, mut ev_rx) = start();
            // Someone else holds the RTCP half of one pair and the RTP half of another.
            let rtcp_taken = free_pair();
            let _squat_rtcp = std::net::UdpSocket::bind(("127.0.0.1", rtcp_taken + 1)).unwrap();
            let rtp_taken = free_pair();
            let _squat_rtp = std::net::UdpSocket::bind(("127.0.0.1", rtp_taken)).unwrap();
            let to = "127.0.0.1:9".parse().unwrap();
            assert!(engine.open(MediaId(1), rtcp_taken, cfg(to)).is_err());
            assert!(engine.open(MediaId(2), rtp_taken, cfg(to)).is_err());
            // The half that was free is not kept bound: the squatted pair can be opened once free.
            drop(_squat_rtp);
            engine
                .open(MediaId(3), rtp_taken, cfg(to))
                .expect("free again");
            // Commands for a session that never opened are ignored, and the engine goes on serving.
            engine.play(
                MediaId(1),
                Arc::new(Prompt::from_samples("en", "x", &[0; 160])),
            );
            engine.close(MediaId(1));
            let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = free_pair();
            engine
                .open(MediaId(4), port, cfg(caller.local_addr().unwrap()))
                .expect("a free pair binds");
            engine.play(
                MediaId(4),
                Arc::new(Prompt::from_samples("en", "one", &[0; 160])),
            );
            let mut buf = [0u8; 1500];
            let (_, from) =
                tokio::time::timeout(Duration::from_secs(2), caller.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(from.port(), port);
            assert!(ev_rx.try_recv().is_err(), "no event for refused opens");
        });
    }
}
