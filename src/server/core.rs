//! The signalling core: one task that owns the call registry (`call::Calls`, which owns the SIP endpoint
//! and every call), fed by the UDP socket, the TCP readers, the media engine's events, its own timers and
//! the shutdown signals. It carries out what the registry decides — sends SIP, forwards media commands,
//! hands CDRs to the writer — and decides nothing itself; RTP pacing lives on the media thread.
//!
//! Why one task and not one per Call-ID: signalling is a few messages per call, so a single owner of all
//! dialogs needs no locks and no routing table between tasks, and still serves thousands of calls; the
//! per-packet work (RTP) runs on the media engine's own thread.
use std::sync::Arc;
use std::time::Instant;

use crate::call::{Calls, CaptureEvent, CaptureId, MediaCommand, MediaId};
use crate::ivr::MenuSet;
use crate::media::session::MediaEvent;
use crate::server::capture::{CaptureMsg, CaptureSink};
use crate::server::jsonl::LineSender;
use crate::server::live::LivePublisher;
use crate::server::media_engine::MediaHandle;
use crate::sip::endpoint::{Peer, Transmit, Transport};
use crate::telemetry::http::Query;
use crate::telemetry::metrics::CoreMetrics;
use crate::telemetry::recent::{RecentCalls, RECENT_CALLS};
use crate::transport::tcp::{TcpConnections, TcpInbound};
use crate::transport::udp::SipUdpSocket;

/// The shell around [`Calls`]: every `handle_*` feeds one input and then carries out every output.
pub struct Core {
    calls: Calls,
    udp: Arc<SipUdpSocket>,
    tcp: TcpConnections,
    media: MediaHandle,
    cdr_tx: Option<LineSender>,
    /// The next local midnight: today's call counts (`fewest-calls`) start again then.
    new_day_at: Instant,
    queue_log_tx: Option<LineSender>,
    /// The record files' spools were full at the last look (see [`Core::check_records`]).
    records_full: bool,
    /// `--trace-dir`: the capture writer, and the ends it has not taken yet (a full channel), retried
    /// on every flush so no capture file stays open for good.
    capture: Option<CaptureSink>,
    capture_ends: Vec<CaptureId>,
    /// Metrics and the recent calls' CDRs (`serve`), none in tests that build a bare core.
    telemetry: Option<(CoreMetrics, RecentCalls)>,
    /// The supervisor view's page (`serve --http`).
    live: Option<LivePublisher>,
}

/// The instant of the next local midnight, from the system's wall clock and time zone (an hour
/// from now if the time zone has no midnight tomorrow).
fn next_local_midnight(now: Instant) -> Instant {
    let wall = chrono::Local::now();
    let until = wall
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|m| m.and_local_timezone(chrono::Local).earliest())
        .and_then(|m| (m - wall).to_std().ok())
        .unwrap_or(std::time::Duration::from_secs(3600));
    now + until
}

impl Core {
    /// Builds the core around the registry, bound sockets and started services.
    pub fn new(
        calls: Calls,
        udp: Arc<SipUdpSocket>,
        tcp: TcpConnections,
        media: MediaHandle,
        cdr_tx: Option<LineSender>,
    ) -> Core {
        Core {
            calls,
            udp,
            tcp,
            media,
            cdr_tx,
            new_day_at: next_local_midnight(crate::clock::now()),
            queue_log_tx: None,
            records_full: false,
            capture: None,
            capture_ends: Vec::new(),
            telemetry: None,
            live: None,
        }
    }

    /// Counts what passes through the core into `metrics` and keeps the recent calls' CDRs.
    pub fn enable_telemetry(&mut self, metrics: CoreMetrics) {
        self.telemetry = Some((metrics, RecentCalls::new(RECENT_CALLS)));
    }

    /// Publishes the supervisor view's page through this publisher.
    pub fn enable_live(&mut self, live: LivePublisher) {
        self.live = Some(live);
    }

    /// The publishing tick (every `live::PUBLISH_EVERY`): a page if something changed and someone watches.
    pub fn tick_live(&mut self, now: Instant) {
        if let Some(live) = &mut self.live {
            live.tick(&self.calls, now);
        }
    }

    /// Answers an HTTP handler (see `telemetry::http`); a handler that gave up is not an error.
    pub async fn answer(&mut self, now: Instant, query: Query) {
        match query {
            Query::Live(reply) => {
                let page = match &mut self.live {
                    Some(live) => live.page(&self.calls, now),
                    None => Arc::new(crate::telemetry::supervisor::LivePage {
                        view: self.calls.live_view(now),
                        funnel: Default::default(),
                    }),
                };
                let _ = reply.send(page);
            }
            Query::Supervisor(command, reply) => {
                let result = self.calls.handle_supervisor(now, command);
                let _ = reply.send(result);
                self.flush(now).await;
            }
            Query::Snapshot(reply) => {
                let _ = reply.send(crate::server::snapshot::of(&self.calls));
            }
            Query::Cdr(call_id, reply) => {
                let line = self.telemetry.as_ref().and_then(|(_, r)| r.get(&call_id));
                let _ = reply.send(line);
            }
        }
    }

    /// Hands everything the registry says to capture to this writer (`serve --trace-dir`; the
    /// registry must have `CallsConfig::capture` on).
    pub fn set_capture(&mut self, sink: CaptureSink) {
        self.capture = Some(sink);
    }

    /// Sends every queue log line to this writer (`serve --queue-log`; the registry must have
    /// `Calls::enable_queue_log` on).
    pub fn set_queue_log(&mut self, tx: LineSender) {
        self.queue_log_tx = Some(tx);
    }

    /// A UDP datagram.
    pub async fn handle_udp(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        if let Some((m, _)) = &mut self.telemetry {
            m.sip(now, true, bytes);
        }
        self.check_records();
        if self.refused_for_media(now, peer, bytes).await {
            return;
        }
        self.calls.handle_sip(now, peer, bytes);
        self.flush(now).await;
    }

    /// A framed TCP message.
    pub async fn handle_tcp(&mut self, now: Instant, inbound: TcpInbound) {
        let peer = Peer {
            transport: Transport::Tcp(inbound.conn),
            addr: inbound.peer,
            local: inbound.local,
        };
        if let Some((m, _)) = &mut self.telemetry {
            m.sip(now, true, &inbound.bytes);
        }
        self.check_records();
        if self.refused_for_media(now, peer, &inbound.bytes).await {
            return;
        }
        self.calls.handle_sip(now, peer, &inbound.bytes);
        self.flush(now).await;
    }

    /// While the media command queue is half full (`media_engine`, "Bounded both ways") a new
    /// INVITE gets a stateless `503` + Retry-After here, before it is a call, so the rest of the
    /// queue serves the calls in progress; counted. True when answered so. Two atomic loads.
    async fn refused_for_media(&mut self, now: Instant, peer: Peer, bytes: &[u8]) -> bool {
        if !self.media.is_busy() {
            return false;
        }
        let Some(answer) = crate::transport::tcp::overload_answer(bytes) else {
            return false;
        };
        self.media.send_stats().call_refused();
        if let Some((m, _)) = &mut self.telemetry {
            m.sip(now, false, &answer);
        }
        self.send(Transmit {
            to: peer,
            bytes: answer.into(),
        })
        .await;
        true
    }

    /// Tells the call layer whether the record spools are full, before it sees a SIP message (an INVITE
    /// is refused then: its record could not be kept). Two atomic loads per message.
    fn check_records(&mut self) {
        let full = self
            .cdr_tx
            .iter()
            .chain(&self.queue_log_tx)
            .any(LineSender::is_full);
        if full != self.records_full {
            self.records_full = full;
            if full {
                tracing::error!(
                    "record spool full: new calls get 503 until the files take writes again"
                );
            } else {
                tracing::warn!("record spool below its limit again: new calls are accepted");
            }
            self.calls.set_records_full(full);
        }
    }

    /// A media engine event.
    pub async fn handle_media(&mut self, now: Instant, id: MediaId, event: MediaEvent) {
        if let Some((m, _)) = &mut self.telemetry {
            match &event {
                MediaEvent::FirstRtp { .. } => m.first_rtp(now, id),
                // The media thread's arrival instant of the key's first packet (G6 starts there).
                MediaEvent::Digit(d) => m.key(d.at.min(now), id),
                MediaEvent::Rtcp(stats) => m.rtcp(stats),
                _ => {}
            }
        }
        self.calls.handle_media(now, id, event);
        self.flush(now).await;
    }

    /// The earliest wake-up has come (or a spurious one).
    pub async fn handle_timeout(&mut self, now: Instant) {
        if now >= self.new_day_at {
            self.calls.handle_new_day(now);
            if let Some(live) = &mut self.live {
                live.new_day();
            }
            self.new_day_at = next_local_midnight(now);
        }
        self.calls.handle_timeout(now);
        self.flush(now).await;
    }

    /// Shutdown began: refuse new calls.
    pub async fn handle_drain(&mut self, now: Instant) {
        self.calls.handle_drain(now);
        self.flush(now).await;
    }

    /// The drain time is over: hang up every call.
    pub async fn handle_hangup_all(&mut self, now: Instant) {
        self.calls.handle_hangup_all(now);
        self.flush(now).await;
    }

    /// New menus for new calls (and the agents declared in them).
    pub async fn set_menus(&mut self, now: Instant, menus: Arc<MenuSet>) {
        if let Some((m, _)) = &mut self.telemetry {
            m.set_menus(menus.clone());
        }
        self.calls.set_menus(now, menus);
        self.flush(now).await;
    }

    /// A server config reload's live settings.
    pub fn set_live(&mut self, live: crate::call::LiveSettings) {
        self.calls.set_live(live);
    }

    /// Exit: CDRs for the calls still present.
    pub async fn finish_all(&mut self, now: Instant) {
        self.calls.finish_all(now);
        self.flush(now).await;
    }

    /// The earliest instant the registry wants waking.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let calls = self.calls.poll_timeout();
        Some(calls.map_or(self.new_day_at, |at| at.min(self.new_day_at)))
    }

    /// Closes the TCP connections the transport's policy finds expired: no first message in time, or
    /// idle with no binding and no dialog on it (asked of the registry only when one is idle).
    pub fn sweep_tcp(&mut self, now: Instant) {
        let calls = &self.calls;
        let mut in_use: Option<std::collections::HashSet<u64>> = None;
        self.tcp.sweep(now, |conn| {
            in_use
                .get_or_insert_with(|| calls.tcp_connections_in_use())
                .contains(&conn)
        });
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.call_count()
    }

    /// Carries out every output the last input produced. Media commands go first: a port is bound
    /// (or found busy and reported back, so the call moves to another) before the SDP naming it leaves.
    async fn flush(&mut self, now: Instant) {
        if let Some(live) = &mut self.live {
            live.touch();
        }
        loop {
            let mut progressed = false;
            while let Some(command) = self.calls.poll_media() {
                progressed = true;
                self.carry_out(now, command);
            }
            while let Some(t) = self.calls.poll_transmit() {
                progressed = true;
                if let Some((m, _)) = &mut self.telemetry {
                    // The clock again: `now` is when the input arrived, this is when its answer leaves.
                    m.sip(crate::clock::now(), false, &t.bytes);
                }
                self.send(t).await;
            }
            while let Some(cdr) = self.calls.poll_cdr() {
                progressed = true;
                if self.cdr_tx.is_none() && self.telemetry.is_none() {
                    continue;
                }
                let line = match serde_json::to_string(&cdr) {
                    Ok(line) => line,
                    Err(err) => {
                        tracing::error!(%err, "cdr not serialisable");
                        continue;
                    }
                };
                if let Some((m, recent)) = &mut self.telemetry {
                    m.cdr(&cdr);
                    // Exactly the line the --cdr file gets.
                    recent.push(&cdr.call_id, Arc::from(line.as_str()));
                }
                if let Some(live) = &mut self.live {
                    live.cdr(&line);
                }
                if let Some(tx) = &self.cdr_tx {
                    tx.send(line);
                }
            }
            while let Some(event) = self.calls.poll_menu_event() {
                progressed = true;
                if let Some((m, _)) = &mut self.telemetry {
                    m.menu_event(&event);
                }
            }
            while let Some(event) = self.calls.poll_capture() {
                progressed = true;
                self.capture(event);
            }
            while let Some(line) = self.calls.poll_queue_log() {
                progressed = true;
                if let Some(tx) = &self.queue_log_tx {
                    tx.send(line);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Carries out one capture decision: copies go to the writer, a session's RTP is tapped.
    fn capture(&mut self, event: CaptureEvent) {
        let Some(sink) = &self.capture else {
            return;
        };
        self.capture_ends
            .retain(|&id| !sink.offer(CaptureMsg::End { id }));
        match event {
            CaptureEvent::Start { id, stem, .. } => {
                sink.offer(CaptureMsg::Start { id, stem });
            }
            CaptureEvent::Sip(sip) => {
                sink.offer(CaptureMsg::Sip(sip));
            }
            CaptureEvent::Media { id, media, local } => {
                self.media.capture(media, id, local, sink.clone());
            }
            CaptureEvent::End { id } => {
                if !sink.offer(CaptureMsg::End { id }) {
                    self.capture_ends.push(id);
                }
            }
        }
    }

    fn carry_out(&mut self, now: Instant, command: MediaCommand) {
        if let Some((m, _)) = &mut self.telemetry {
            // As for SIP: measured up to when the command leaves, not when its input arrived.
            let sent = crate::clock::now();
            match &command {
                MediaCommand::Play { id, .. } => m.action(sent, *id, true),
                MediaCommand::Bridge { a, .. } => m.action(sent, *a, false),
                // A key that cuts a prompt: stopping it is the action the caller hears first.
                MediaCommand::Stop { id } => m.action(sent, *id, false),
                MediaCommand::Close { id } => m.closed(*id),
                _ => {}
            }
        }
        match command {
            MediaCommand::Open { id, port, cfg } => {
                if let Err(err) = self.media.open(id, port, cfg) {
                    tracing::debug!(%err, port, "rtp port pair could not be bound");
                    self.calls
                        .handle_media(now, id, MediaEvent::BindFailed { port });
                }
            }
            MediaCommand::Configure { id, cfg } => self.media.configure(id, cfg),
            MediaCommand::Play { id, prompt } => self.media.play(id, prompt),
            MediaCommand::Stop { id } => self.media.stop_playout(id),
            MediaCommand::Close { id } => self.media.close(id),
            MediaCommand::Bridge { a, b } => self.media.bridge(a, b),
        }
    }

    async fn send(&self, t: Transmit) {
        match t.to.transport {
            Transport::Udp => {
                // From the address the peer reached us on, so its replies and next requests come back
                // to the same address even when the socket is bound to the wildcard.
                let from = t.to.local.ip();
                if let Err(err) = self.udp.send_to(&t.bytes, t.to.addr, from).await {
                    tracing::debug!(%err, to = %t.to.addr, "udp send failed");
                }
            }
            Transport::Tcp(conn) => {
                if !self.tcp.send(conn, t.bytes) {
                    tracing::debug!(to = %t.to.addr, "tcp connection gone");
                }
            }
        }
    }
}
