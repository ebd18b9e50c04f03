//! Every metric helpline exports — name, help text, label set — defined here and nowhere else, and the
//! recorder that holds their values. It does not serve HTTP (`telemetry::http`) and never runs inside a
//! sans-IO core: the shell (`server::core`) feeds it what the cores expose (CDRs, counters, snapshots).
//!
//! Library: `metrics` + `metrics-exporter-prometheus`, because its handles are plain atomics the shell
//! can bump without a lock, and the recorder renders Prometheus text on demand (no listener of its own,
//! no global recorder: each server process makes one [`Metrics`]).
//!
//! Label values come only from the configuration (regions, configured numbers, routes, queues) or from
//! closed sets (methods, codes 100–699, end reasons, DTMF methods), so callers cannot grow the label set.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::call::{Cdr, MediaId};
use crate::ivr::MenuSet;
use crate::telemetry::peek::{peek, Kind};

/// What kind of Prometheus metric a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// A value at the moment of the scrape.
    Gauge,
    /// Observations in buckets (seconds).
    Histogram,
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The name, always `helpline_…`.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its label names.
    pub labels: &'static [&'static str],
}

macro_rules! metrics_table {
    ($( $konst:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal; )*) => {
        $(
            #[doc = $help]
            pub const $konst: &str = $name;
        )*
        /// Every metric, in the order README lists them.
        pub const ALL: &[MetricDef] = &[
            $( MetricDef { name: $name, kind: MetricKind::$kind, help: $help, labels: &[$($label),*] }, )*
        ];
    };
}

metrics_table! {
    CALLS = "helpline_calls_total", Counter, ["region", "dialed", "end_reason", "route"],
        "Calls ended, by region (none), configured dialed number (unknown), end reason (none) and route (none).";
    READY = "helpline_ready", Gauge, [],
        "1 when /health/ready would answer 200, 0 when it would answer 503 (set at each scrape).";
    ACTIVE_CALLS = "helpline_active_calls", Gauge, [],
        "Calls in progress.";
    SIP_REQUESTS = "helpline_sip_requests_total", Counter, ["direction", "method"],
        "SIP requests received (in) and sent (out), retransmissions included.";
    SIP_RESPONSES = "helpline_sip_responses_total", Counter, ["direction", "method", "code"],
        "SIP responses received (in) and sent (out), by CSeq method and status code.";
    SIP_RETRANSMISSIONS = "helpline_sip_retransmissions_total", Counter, ["direction"],
        "SIP retransmissions: requests absorbed by their transaction (in), sent again by a timer (out).";
    SIP_TRANSACTIONS = "helpline_sip_transactions", Gauge, [],
        "Live SIP transactions.";
    RTP_PACKETS = "helpline_rtp_packets_total", Counter, ["direction"],
        "RTP packets received (in) and sent (out: prompts and relayed audio).";
    RTP_BYTES = "helpline_rtp_bytes_total", Counter, ["direction"],
        "RTP bytes (UDP payload) received (in) and sent (out).";
    RTP_SEND_ERRORS = "helpline_rtp_send_errors_total", Counter, [],
        "RTP packets the kernel refused (dropped).";
    RTP_LOST = "helpline_rtp_lost_packets_total", Counter, ["direction"],
        "RTP packets lost: callers' and agents' packets that never reached helpline (in, counted by helpline) and helpline's that never reached them (out, from their RTCP reports).";
    RTP_JITTER = "helpline_rtp_jitter_seconds", Histogram, ["direction"],
        "Interarrival jitter (RFC 3550 A.8) of each leg: of the far end's RTP as helpline measures it (in, at each report helpline sends) and of helpline's as the far end reports it (out, at each report received).";
    RTP_PORTS = "helpline_rtp_ports_in_use", Gauge, [],
        "RTP port pairs handed out to calls.";
    DTMF_KEYS = "helpline_dtmf_keys_total", Counter, ["method"],
        "Keys pressed, by method (rfc4733, info, inband; unrecorded: past the CDR's 64), counted at call end.";
    INVITE_ANSWER = "helpline_invite_answer_seconds", Histogram, [],
        "From an INVITE received to the 200 sent for it.";
    FIRST_PROMPT = "helpline_first_prompt_seconds", Histogram, [],
        "From the caller's first RTP packet (as the signalling core learns of it) to the first prompt handed to the media engine.";
    KEY_ACTION = "helpline_key_action_seconds", Histogram, [],
        "From the first RTP packet of a caller's last RFC 4733 or in-band key (its arrival on the media thread) to the next prompt, prompt stop or bridge for that call.";
    QUEUE_WAIT = "helpline_queue_wait_seconds", Histogram, [],
        "Time callers spent in a queue (answered or not), counted at call end.";
    MEDIA_LATENESS = "helpline_media_send_lateness_seconds", Gauge, ["quantile"],
        "Prompt packets' send time minus schedule on the media thread, since start (quantile 1 is the max).";
    MEDIA_PACKETS_PACED = "helpline_media_paced_packets_total", Counter, [],
        "Prompt packets the media thread paced (the lateness quantiles' population).";
    MEDIA_EVENTS_SHED = "helpline_media_events_shed_total", Counter, ["reason"],
        "Media events left out on the way to the signalling core: rtcp-folded (received RTCP reports faster than one a second per session; the next event carries their figures), keys-over-rate (keys beyond a session's 20 a second after a burst of 20), and, while the events queue was full, stats-merged, keys-dropped and lifecycle-dropped.";
    MEDIA_COMMANDS_DROPPED = "helpline_media_commands_dropped_total", Counter, [],
        "Commands for calls in progress (play, stop, configure, bridge) dropped because the media command queue was full.";
    MENU_INFO = "helpline_menu_info", Gauge, ["version"],
        "1 for the live menu set's version, 0 for versions no longer live.";
    MENU_RELOADS = "helpline_menu_reloads_total", Counter, ["result"],
        "Menu reloads: ok (now live) or refused (invalid: the live set stays).";
    CDR_WRITTEN = "helpline_cdr_records_written_total", Counter, [],
        "CDR lines written to the --cdr file.";
    CDR_WRITE_ERRORS = "helpline_cdr_write_errors_total", Counter, [],
        "Writes (and opens) the --cdr file refused; each refused record waits in the spool and is retried.";
    CDR_SPOOLED = "helpline_cdr_spooled_records", Gauge, [],
        "CDR records accepted and not yet in the --cdr file (the spool; it grows while the file refuses writes).";
    AGENTS = "helpline_agents", Gauge, ["status", "state"],
        "Declared agents, by status (logged-out, available, on-break) and state (idle, offered, in-call, wrap-up).";
    QUEUE_WAITING = "helpline_queue_waiting_calls", Gauge, ["queue"],
        "Callers waiting in each queue.";
    QUEUE_ESTIMATED_WAIT = "helpline_queue_estimated_wait_seconds", Gauge, ["queue"],
        "Each queue's estimated wait (mean of its recent answered waits; 0 when none).";
    IVR_MENU_EVENTS = "helpline_ivr_menu_events_total", Counter, ["menu", "event"],
        "Per menu: entered, invalid entries, timeouts, max_failures and max_timeouts exits, and callers who hung up there (hangup).";
    IVR_MENU_KEYS = "helpline_ivr_menu_keys_total", Counter, ["menu", "key"],
        "Per menu: keys (0-9, *, #) pressed while it waited for a choice.";
    BANS = "helpline_bans_total", Counter, [],
        "Source addresses banned for exceeding a request rate (--limit-rate).";
    AUTH_FAILURES = "helpline_auth_failures_total", Counter, [],
        "Digest authentications refused: wrong digest, or a throttled source.";
    OVERLOAD_REFUSALS = "helpline_overload_refusals_total", Counter, ["reason"],
        "Requests refused or dropped by the defences: banned (503), banned-silent (dropped), call-cap (503), no-ack-reclaimed (a call whose ACK was overdue gave up its RTP port), scanner (dropped), tcp-* (connections refused or closed: caps, first-message deadline, idle, unframeable or oversized, unread, accept errors), queue-full-503 and queue-full-dropped (the core's queue was full); media-busy (503: new calls refused because the media command queue was half full); records-full (503: new calls refused because the record spools were full); max-calls and max-cps (the server-wide limits: 503 or 486); no-rtp-port (503: no RTP port free or bindable).";
}

/// Buckets (seconds) of the latency histograms.
/// Fine at the low end (100 µs steps up to a millisecond, then 2, 5, 10, 20, 50 ms), since the
/// performance targets are p99 ≤ 2 ms (INVITE → 200) and ≤ 5 ms (first prompt, key → action).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) of the RTP jitter (a G.711 frame is 0.02).
const JITTER_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5,
];
/// Buckets (seconds) of the queue wait.
const QUEUE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0];

const METADATA: Metadata<'static> = Metadata::new(
    "helpline::telemetry",
    metrics::Level::INFO,
    Some(module_path!()),
);

/// The recorder of one server process; `Send + Sync`, shared by the core and the HTTP handlers.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The transport's refusals and drops (TCP caps and deadlines, full queues), read at scrape time.
    transport: Arc<crate::transport::TransportStats>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

impl Metrics {
    /// A recorder with every metric described and the unlabelled (or fixed-label) series at zero, so
    /// each name in [`ALL`] is on `/metrics` from the start (labelled ones once a value exists).
    pub fn new() -> Metrics {
        let mut builder = PrometheusBuilder::new();
        for def in ALL.iter().filter(|d| d.kind == MetricKind::Histogram) {
            let buckets = match def.name {
                QUEUE_WAIT => QUEUE_BUCKETS,
                RTP_JITTER => JITTER_BUCKETS,
                _ => LATENCY_BUCKETS,
            };
            builder = builder
                .set_buckets_for_metric(Matcher::Full(def.name.to_owned()), buckets)
                .expect("the bucket lists are non-empty constants");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder,
            handle,
            transport: Arc::default(),
        };
        for def in ALL {
            let help = metrics::SharedString::const_str(def.help);
            let name = metrics::KeyName::from_const_str(def.name);
            match def.kind {
                MetricKind::Counter => metrics.recorder.describe_counter(name, None, help),
                MetricKind::Gauge => metrics.recorder.describe_gauge(name, None, help),
                MetricKind::Histogram => metrics.recorder.describe_histogram(name, None, help),
            }
        }
        for name in [
            READY,
            ACTIVE_CALLS,
            SIP_TRANSACTIONS,
            RTP_PORTS,
            CDR_SPOOLED,
        ] {
            metrics.gauge(name, &[]).set(0.0);
        }
        for name in [
            RTP_SEND_ERRORS,
            CDR_WRITTEN,
            CDR_WRITE_ERRORS,
            MEDIA_PACKETS_PACED,
        ] {
            metrics.counter(name, &[]).absolute(0);
        }
        for dir in ["in", "out"] {
            for name in [SIP_RETRANSMISSIONS, RTP_PACKETS, RTP_BYTES, RTP_LOST] {
                metrics.counter(name, &[("direction", dir)]).absolute(0);
            }
        }
        for method in ["rfc4733", "info", "inband"] {
            metrics
                .counter(DTMF_KEYS, &[("method", method)])
                .increment(0);
        }
        for result in ["ok", "refused"] {
            metrics
                .counter(MENU_RELOADS, &[("result", result)])
                .increment(0);
        }
        for name in [INVITE_ANSWER, FIRST_PROMPT, KEY_ACTION, QUEUE_WAIT] {
            let _ = metrics.histogram(name);
        }
        for dir in ["in", "out"] {
            let _ = metrics.histogram_with(RTP_JITTER, &[("direction", dir)]);
        }
        metrics
    }

    /// The counter `name{labels}` (registered on first use; a handle is an atomic).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The (unlabelled) histogram `name`.
    pub fn histogram(&self, name: &'static str) -> Histogram {
        self.histogram_with(name, &[])
    }

    /// The histogram `name{labels}`.
    pub fn histogram_with(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// The Prometheus text of every value.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The transport's counters, for the accept loop and connection tasks to count into.
    pub fn transport_stats(&self) -> Arc<crate::transport::TransportStats> {
        self.transport.clone()
    }

    /// Moves recorded histogram samples into their buckets; call every few seconds so samples do not
    /// pile up between scrapes (or without any).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Sets the values read at scrape time: the core's snapshot and the media engine's counters.
    pub fn publish(
        &self,
        ready: bool,
        core: &CoreSnapshot,
        media: &crate::server::media_engine::SendStatsSnapshot,
    ) {
        self.gauge(READY, &[]).set(if ready { 1.0 } else { 0.0 });
        self.gauge(ACTIVE_CALLS, &[]).set(core.active_calls as f64);
        self.gauge(SIP_TRANSACTIONS, &[])
            .set(core.transactions as f64);
        self.gauge(RTP_PORTS, &[]).set(core.ports_in_use as f64);
        let retrans = core.retransmissions;
        self.counter(SIP_RETRANSMISSIONS, &[("direction", "in")])
            .absolute(retrans.received);
        self.counter(SIP_RETRANSMISSIONS, &[("direction", "out")])
            .absolute(retrans.sent);
        let (guard, auth_failures) = core.guard;
        self.counter(BANS, &[]).absolute(guard.bans);
        self.counter(AUTH_FAILURES, &[]).absolute(auth_failures);
        for (reason, n) in [
            ("banned", guard.banned_refusals),
            ("banned-silent", guard.dropped),
            ("call-cap", guard.call_cap_refusals),
            ("no-ack-reclaimed", guard.unacked_reclaimed),
            ("scanner", guard.scanners),
            ("records-full", core.records_full_refusals),
            ("no-rtp-port", core.no_port_refusals),
            ("max-calls", core.admission.max_calls),
            ("max-cps", core.admission.max_cps),
        ] {
            self.counter(OVERLOAD_REFUSALS, &[("reason", reason)])
                .absolute(n);
        }
        for (reason, n) in self.transport.snapshot() {
            self.counter(OVERLOAD_REFUSALS, &[("reason", reason)])
                .absolute(n);
        }
        for ((status, state), n) in &core.agents {
            self.gauge(AGENTS, &[("status", status), ("state", state)])
                .set(*n as f64);
        }
        for q in &core.queues {
            self.gauge(QUEUE_WAITING, &[("queue", &q.name)])
                .set(q.waiting as f64);
            self.gauge(QUEUE_ESTIMATED_WAIT, &[("queue", &q.name)])
                .set(q.estimated_wait.as_secs_f64());
        }
        self.publish_media(media);
    }

    fn publish_media(&self, media: &crate::server::media_engine::SendStatsSnapshot) {
        let sent = media.packets + media.relayed;
        self.counter(RTP_PACKETS, &[("direction", "in")])
            .absolute(media.received);
        self.counter(RTP_PACKETS, &[("direction", "out")])
            .absolute(sent);
        self.counter(RTP_BYTES, &[("direction", "in")])
            .absolute(media.received_bytes);
        self.counter(RTP_BYTES, &[("direction", "out")])
            .absolute(media.sent_bytes);
        self.counter(RTP_SEND_ERRORS, &[])
            .absolute(media.send_errors);
        self.counter(MEDIA_PACKETS_PACED, &[])
            .absolute(media.packets);
        for (reason, n) in [
            ("rtcp-folded", media.reports_folded),
            ("keys-over-rate", media.keys_over_rate),
            ("stats-merged", media.stats_merged),
            ("keys-dropped", media.keys_dropped),
            ("lifecycle-dropped", media.lifecycle_dropped),
        ] {
            self.counter(MEDIA_EVENTS_SHED, &[("reason", reason)])
                .absolute(n);
        }
        self.counter(MEDIA_COMMANDS_DROPPED, &[])
            .absolute(media.commands_dropped);
        self.counter(OVERLOAD_REFUSALS, &[("reason", "media-busy")])
            .absolute(media.calls_refused);
        for (label, q) in [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999)] {
            let late = if media.packets == 0 {
                Duration::ZERO
            } else {
                media.quantile(q)
            };
            self.gauge(MEDIA_LATENESS, &[("quantile", label)])
                .set(late.as_secs_f64());
        }
        self.gauge(MEDIA_LATENESS, &[("quantile", "1")])
            .set(media.max_late.as_secs_f64());
    }

    /// The counters the menu reloader bumps.
    pub fn reload_counters(&self) -> ReloadCounters {
        ReloadCounters {
            ok: self.counter(MENU_RELOADS, &[("result", "ok")]),
            refused: self.counter(MENU_RELOADS, &[("result", "refused")]),
        }
    }

    /// The counters the CDR writer bumps.
    pub fn cdr_counters(&self) -> LineCounters {
        LineCounters {
            written: self.counter(CDR_WRITTEN, &[]),
            failed: self.counter(CDR_WRITE_ERRORS, &[]),
            spooled: self.gauge(CDR_SPOOLED, &[]),
        }
    }
}

/// Menu reloads, ok and refused.
#[derive(Clone)]
pub struct ReloadCounters {
    /// Reloads that became live.
    pub ok: Counter,
    /// Reloads refused (the live set stays).
    pub refused: Counter,
}

/// Lines a JSON-lines writer wrote and failed to write.
#[derive(Clone)]
pub struct LineCounters {
    /// Written.
    pub written: Counter,
    /// Refused by the file.
    pub failed: Counter,
    /// Records waiting to be written.
    pub spooled: Gauge,
}

/// One queue at the moment of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSnapshot {
    /// `region.department`.
    pub name: String,
    /// Callers waiting.
    pub waiting: usize,
    /// The estimated wait (zero when none is known).
    pub estimated_wait: Duration,
}

/// What the signalling core reports at a scrape (built by the shell from `call::Calls`' accessors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreSnapshot {
    /// Calls in progress.
    pub active_calls: usize,
    /// Live SIP transactions.
    pub transactions: usize,
    /// RTP port pairs in use.
    pub ports_in_use: usize,
    /// The endpoint's retransmission counters.
    pub retransmissions: crate::sip::endpoint::Retransmissions,
    /// Agents by (status, state): every combination, zero included, so a state that empties shows 0.
    pub agents: Vec<((&'static str, &'static str), usize)>,
    /// Every queue the menus and agents name, and every queue with a caller.
    pub queues: Vec<QueueSnapshot>,
    /// What the per-source defences did so far, and the registrar's failed authentications.
    pub guard: (crate::call::GuardStats, u64),
    /// New calls refused because the record spools were full.
    pub records_full_refusals: u64,
    /// New calls refused `503` because no RTP port could be had.
    pub no_port_refusals: u64,
    /// What the server-wide limits (`--max-calls`, `--max-cps`) refused so far.
    pub admission: crate::call::AdmissionStats,
}

/// Most in-flight measurements kept at once (INVITEs awaiting their answer, media sessions awaiting a
/// prompt); past it new ones are not measured, so a flood cannot grow the shell's memory.
const MAX_PENDING: usize = 20_000;

/// The shell's side of the metrics: event counters with their handles cached by label (one atomic
/// add per event after the first), and the start instants of the latencies being measured. Owned by
/// the signalling core, so none of it is shared or locked.
pub struct CoreMetrics {
    metrics: Arc<Metrics>,
    menus: Arc<MenuSet>,
    menu_version: Gauge,
    sip: HashMap<(bool, Kind, &'static str), Counter>,
    calls: HashMap<[String; 4], Counter>,
    dtmf: HashMap<&'static str, Counter>,
    /// Per (menu, event or key): the menu names come from the menu files, so the set is closed.
    menu_events: HashMap<(String, &'static str), Counter>,
    menu_keys: HashMap<(String, char), Counter>,
    invite_answer: Histogram,
    first_prompt: Histogram,
    key_action: Histogram,
    queue_wait: Histogram,
    /// INVITEs received and not yet answered finally, by Call-ID.
    invites: HashMap<String, Instant>,
    /// Per media session: its first RTP's arrival while no prompt has started (`None` once one has).
    first_rtp: HashMap<MediaId, Option<Instant>>,
    /// Per media session: the last key not yet followed by an action.
    keys: HashMap<MediaId, Instant>,
    /// `helpline_rtp_lost_packets_total` and `helpline_rtp_jitter_seconds`, in and out.
    lost_in: Counter,
    lost_out: Counter,
    jitter_in: Histogram,
    jitter_out: Histogram,
}

impl CoreMetrics {
    /// The core's metrics over the process's recorder; `menus` names the configured numbers.
    pub fn new(metrics: Arc<Metrics>, menus: Arc<MenuSet>) -> CoreMetrics {
        let menu_version = metrics.gauge(MENU_INFO, &[("version", menus.version())]);
        menu_version.set(1.0);
        let mut core = CoreMetrics {
            lost_in: metrics.counter(RTP_LOST, &[("direction", "in")]),
            lost_out: metrics.counter(RTP_LOST, &[("direction", "out")]),
            jitter_in: metrics.histogram_with(RTP_JITTER, &[("direction", "in")]),
            jitter_out: metrics.histogram_with(RTP_JITTER, &[("direction", "out")]),
            invite_answer: metrics.histogram(INVITE_ANSWER),
            first_prompt: metrics.histogram(FIRST_PROMPT),
            key_action: metrics.histogram(KEY_ACTION),
            queue_wait: metrics.histogram(QUEUE_WAIT),
            menu_version,
            metrics,
            menus,
            sip: HashMap::new(),
            calls: HashMap::new(),
            dtmf: HashMap::new(),
            menu_events: HashMap::new(),
            menu_keys: HashMap::new(),
            invites: HashMap::new(),
            first_rtp: HashMap::new(),
            keys: HashMap::new(),
        };
        core.register_menu_events();
        core
    }

    /// Creates every menu's event counters at 0, so a dashboard shows a menu nobody left yet and
    /// `rate()` sees the first event (the set is closed: names come from the menu files).
    fn register_menu_events(&mut self) {
        let metrics = &self.metrics;
        for menu in self.menus.menu_names() {
            for name in crate::ivr::MenuEventKind::EVENT_NAMES {
                self.menu_events
                    .entry((menu.to_owned(), name))
                    .or_insert_with(|| {
                        metrics.counter(IVR_MENU_EVENTS, &[("menu", menu), ("event", name)])
                    });
            }
        }
    }

    /// New menus are live: their version becomes the one `helpline_menu_info` shows.
    pub fn set_menus(&mut self, menus: Arc<MenuSet>) {
        if menus.version() != self.menus.version() {
            self.menu_version.set(0.0);
            self.menu_version = self
                .metrics
                .gauge(MENU_INFO, &[("version", menus.version())]);
            self.menu_version.set(1.0);
        }
        self.menus = menus;
        self.register_menu_events();
    }

    /// A SIP message received (`inbound`) or about to be sent.
    pub fn sip(&mut self, now: Instant, inbound: bool, bytes: &[u8]) {
        let Some(p) = peek(bytes) else { return };
        let metrics = &self.metrics;
        self.sip
            .entry((inbound, p.kind, p.cseq_method))
            .or_insert_with(|| {
                let direction = if inbound { "in" } else { "out" };
                match p.kind {
                    Kind::Request(method) => metrics.counter(
                        SIP_REQUESTS,
                        &[("direction", direction), ("method", method)],
                    ),
                    Kind::Response(code) => metrics.counter(
                        SIP_RESPONSES,
                        &[
                            ("direction", direction),
                            ("method", p.cseq_method),
                            ("code", &code.to_string()),
                        ],
                    ),
                }
            })
            .increment(1);
        let Some(call_id) = p.call_id else { return };
        match (inbound, p.kind) {
            // A retransmitted INVITE keeps the first arrival.
            (true, Kind::Request("INVITE"))
                if self.invites.len() < MAX_PENDING && !self.invites.contains_key(call_id) =>
            {
                self.invites.insert(call_id.to_owned(), now);
            }
            (false, Kind::Response(code)) if p.cseq_method == "INVITE" && code >= 200 => {
                if let Some(at) = self.invites.remove(call_id) {
                    if code < 300 {
                        self.invite_answer
                            .record(now.duration_since(at).as_secs_f64());
                    }
                }
            }
            _ => {}
        }
    }

    /// The caller's first RTP on session `id` (a re-latch after a re-INVITE is not a first).
    pub fn first_rtp(&mut self, now: Instant, id: MediaId) {
        if self.first_rtp.len() < MAX_PENDING {
            self.first_rtp.entry(id).or_insert(Some(now));
        }
    }

    /// A key detected in session `id`'s RTP (RFC 4733 or in-band).
    pub fn key(&mut self, now: Instant, id: MediaId) {
        if self.keys.len() < MAX_PENDING || self.keys.contains_key(&id) {
            self.keys.insert(id, now);
        }
    }

    /// A prompt starts (or a bridge) on session `id`: the end of a first-prompt or key→action wait.
    pub fn action(&mut self, now: Instant, id: MediaId, is_prompt: bool) {
        if is_prompt {
            let room = self.first_rtp.len() < MAX_PENDING;
            match self.first_rtp.get_mut(&id) {
                Some(slot) => {
                    if let Some(at) = slot.take() {
                        self.first_prompt
                            .record(now.duration_since(at).as_secs_f64());
                    }
                }
                // The first prompt started before any RTP (`--first-prompt-delay`): not a measure.
                None if room => {
                    self.first_rtp.insert(id, None);
                }
                None => {}
            }
        }
        if let Some(at) = self.keys.remove(&id) {
            self.key_action.record(now.duration_since(at).as_secs_f64());
        }
    }

    /// Session `id` is closed: forget its measurements.
    pub fn closed(&mut self, id: MediaId) {
        self.first_rtp.remove(&id);
        self.keys.remove(&id);
    }

    /// A media session's RTCP statistics after a report sent or received: the loss counters move by
    /// what the session says is new (so a late event cannot count a loss twice), and the jitter that is
    /// fresh is observed.
    pub fn rtcp(&mut self, s: &crate::media::rtcp::RtcpStats) {
        use crate::media::rtcp::{ReportCause, CLOCK_RATE};
        let seconds = |units: u32| f64::from(units) / CLOCK_RATE as f64;
        self.lost_in.increment(s.new_lost);
        self.lost_out.increment(s.new_remote_lost);
        match (s.cause, s.remote) {
            (ReportCause::Sent, _) if s.packets_received > 0 => {
                self.jitter_in.record(seconds(s.jitter));
            }
            (ReportCause::Received, Some(r)) => self.jitter_out.record(seconds(r.jitter)),
            _ => {}
        }
    }

    /// A finished call's record.
    pub fn cdr(&mut self, cdr: &Cdr) {
        let reason = cdr
            .end_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "none".to_owned());
        let labels = [
            cdr.region.clone().unwrap_or_else(|| "none".to_owned()),
            self.menus
                .configured_number(&cdr.dialed)
                .unwrap_or_else(|| "unknown".to_owned()),
            reason,
            cdr.route.clone().unwrap_or_else(|| "none".to_owned()),
        ];
        let metrics = &self.metrics;
        self.calls
            .entry(labels)
            .or_insert_with_key(|[region, dialed, reason, route]| {
                metrics.counter(
                    CALLS,
                    &[
                        ("region", region),
                        ("dialed", dialed),
                        ("end_reason", reason),
                        ("route", route),
                    ],
                )
            })
            .increment(1);
        for d in &cdr.digits {
            self.dtmf_key(d.method, 1);
        }
        if cdr.digits_dropped > 0 {
            self.dtmf_key("unrecorded", u64::from(cdr.digits_dropped));
        }
        if let Some(ms) = cdr.queue_wait_ms {
            self.queue_wait.record(ms as f64 / 1000.0);
        }
        // An INVITE refused or cancelled before any final response went out: nothing left to measure.
        self.invites.remove(&cdr.call_id);
    }

    /// One IVR analytics event (see [`crate::ivr::MenuEventKind`]).
    pub fn menu_event(&mut self, event: &crate::ivr::MenuEvent) {
        use crate::ivr::MenuEventKind;
        let metrics = &self.metrics;
        if let MenuEventKind::Key(key) = event.kind {
            // The engine only passes 0-9 * #; anything else would be a bug, not a caller's doing.
            if !matches!(key, '0'..='9' | '*' | '#') {
                return;
            }
            self.menu_keys
                .entry((event.menu.clone(), key))
                .or_insert_with(|| {
                    let mut buf = [0u8; 4];
                    let key: &str = key.encode_utf8(&mut buf);
                    metrics.counter(IVR_MENU_KEYS, &[("menu", &event.menu), ("key", key)])
                })
                .increment(1);
            return;
        }
        let name = event.kind.name();
        self.menu_events
            .entry((event.menu.clone(), name))
            .or_insert_with(|| {
                metrics.counter(IVR_MENU_EVENTS, &[("menu", &event.menu), ("event", name)])
            })
            .increment(1);
    }

    fn dtmf_key(&mut self, method: &'static str, n: u64) {
        let label = match method {
            "rfc4733" | "info" | "inband" | "unrecorded" => method,
            _ => "other",
        };
        let metrics = &self.metrics;
        self.dtmf
            .entry(label)
            .or_insert_with(|| metrics.counter(DTMF_KEYS, &[("method", label)]))
            .increment(n);
    }
}
