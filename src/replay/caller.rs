//! The replaying caller, sans-IO: plays a [`Script`] as a fresh, valid call — new Call-ID, tags and
//! branches, our own addresses in Via, Contact and SDP — retransmits over UDP, ACKs, answers the
//! server's requests as a phone would, re-sends the caller's RTP with its original timing, and records
//! what it saw. Time is an argument; it owns no socket and reads no clock.
//!
//! Inputs: [`ReplayCaller::handle_sip`], [`ReplayCaller::handle_rtp`], [`ReplayCaller::handle_timeout`].
//! Outputs: [`ReplayCaller::poll_transmit`] (drain until `None` after every input),
//! [`ReplayCaller::poll_timeout`]. [`ReplayCaller::is_done`] then [`ReplayCaller::report`].
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::media::codec::Law;
use crate::media::dtmf::inband::InbandDetector;
use crate::media::dtmf::info::parse_info_body;
use crate::media::rtp::{self, RtpHeader};
use crate::replay::script::{sdp_audio_addr, Action, Anchor, RtpStep, Script};
use crate::replay::trace::TraceTransport;
use crate::sdp::SessionDescription;
use crate::sip::message::{
    parse_datagram, parse_stream_message, CSeq, Headers, Method, NameAddr, Request, Response,
    SipMessage, Uri, Via,
};

/// How long a call may outlast its trace before the replay gives up on it.
pub const LIFE_MARGIN: Duration = Duration::from_secs(15);
/// When the trace has no BYE: how long after its last packet the replay hangs up.
pub const HANGUP_AFTER: Duration = Duration::from_secs(3);
/// Most retransmissions of one request (RFC 3261 timers A/E, bounded by 64·T1 as well).
const MAX_RETRANSMITS: u32 = 7;

/// Where the replaying caller lives and whom it calls.
#[derive(Clone, Debug)]
pub struct CallerConfig {
    /// The server's SIP address: Request-URI and To host.
    pub target: SocketAddr,
    /// Our SIP address (Via sent-by, Contact).
    pub local_sip: SocketAddr,
    /// Our RTP address (the SDP's c= and m=).
    pub local_rtp: SocketAddr,
    /// SIP over UDP or TCP.
    pub transport: TraceTransport,
    /// RFC 3261 T1 (500 ms).
    pub t1: Duration,
    /// Seed of Call-ID, tags, branches and SSRC.
    pub seed: u64,
}

/// What a transmit carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    /// A SIP message (to the SIP socket or connection).
    Sip,
    /// An RTP packet (from our RTP socket).
    Rtp,
}

/// Bytes to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// SIP or RTP.
    pub carry: Carry,
    /// The message or packet.
    pub bytes: Vec<u8>,
}

/// How a key reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMethod {
    /// An RFC 4733 telephone-event (counted once per event).
    Rfc4733,
    /// A SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    Info,
    /// A DTMF tone in the caller's G.711 audio.
    Inband,
}

impl KeyMethod {
    /// The name the CDR uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMethod::Rfc4733 => "rfc4733",
            KeyMethod::Info => "info",
            KeyMethod::Inband => "inband",
        }
    }
}

/// One key the replay delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDelivered {
    /// The key.
    pub key: char,
    /// How.
    pub method: KeyMethod,
    /// When, from the ACK (or from the INVITE when `after_ack` is false).
    pub offset: Duration,
    /// Whether `offset` counts from the ACK.
    pub after_ack: bool,
}

/// How the replayed call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// Not yet.
    InProgress,
    /// The server hung up (its BYE).
    ServerHungUp,
    /// We hung up (the trace's BYE or CANCEL, or ours after its last packet) and got an answer.
    WeHungUp,
    /// The INVITE got a final non-2xx response.
    Rejected(u16),
    /// No final response, or the call outlived its trace by [`LIFE_MARGIN`].
    TimedOut,
}

/// What the replaying caller saw.
#[derive(Clone, Debug)]
pub struct CallerReport {
    /// The Call-ID of the replay.
    pub call_id: String,
    /// Status codes of the responses to our requests, in arrival order (retransmissions once).
    pub responses: Vec<u16>,
    /// Keys delivered, in order.
    pub keys: Vec<KeyDelivered>,
    /// How it ended.
    pub end: CallEnd,
    /// Methods of the server's requests we answered.
    pub server_requests: Vec<String>,
    /// RTP packets sent.
    pub rtp_sent: u32,
    /// RTP packets of the trace left out (no media address known yet, or the call was over).
    pub rtp_skipped: u32,
    /// RTP packets received from the server.
    pub rtp_received: u32,
}

#[derive(Debug)]
struct ClientTx {
    method: Method,
    cseq: u32,
    branch: String,
    bytes: Vec<u8>,
    next: Option<Instant>,
    interval: Duration,
    retransmits: u32,
    give_up: Instant,
    /// Final code, once received.
    final_code: Option<u16>,
    /// The ACK we sent for its 2xx (resent on a retransmitted 2xx).
    ack: Option<Vec<u8>>,
    /// The last provisional code seen (retransmissions recorded once).
    codes_seen: Vec<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Calling,
    Established,
    Over,
}

/// The replaying caller (see the module doc).
pub struct ReplayCaller {
    cfg: CallerConfig,
    script: Script,
    rng: SmallRng,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    branches: HashMap<String, String>,
    started: Option<Instant>,
    ack_at: Option<Instant>,
    next_step: usize,
    deadline: Option<Instant>,
    hangup_at: Option<Instant>,
    hangup_sent: bool,
    phase: Phase,
    end: CallEnd,
    out: VecDeque<Transmit>,
    txs: Vec<ClientTx>,
    remote_rtp: Option<SocketAddr>,
    ssrc: u32,
    seq: u16,
    ts0: u32,
    max_cseq: u32,
    inband: InbandDetector,
    keys: Vec<KeyDelivered>,
    responses: Vec<u16>,
    server_requests: Vec<String>,
    rtp_sent: u32,
    rtp_skipped: u32,
    rtp_received: u32,
    sdp_version: u64,
}

fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

fn ip_kind(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// Rewrites an SDP body to name `rtp`: every `c=` that is not hold (`0.0.0.0`), `o=`'s address, the
/// audio `m=` port (a rejected port 0 stays 0). Everything else is kept as captured.
pub fn rewrite_sdp(body: &str, rtp: SocketAddr) -> String {
    let ip = rtp.ip().to_string();
    let kind = ip_kind(rtp);
    let mut out = String::with_capacity(body.len() + 32);
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        let new = if let Some(rest) = line.strip_prefix("c=") {
            let hold = rest.ends_with(" 0.0.0.0") || rest.ends_with(" ::");
            if hold {
                line.to_owned()
            } else {
                format!("c=IN {kind} {ip}")
            }
        } else if let Some(rest) = line.strip_prefix("o=") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if parts.len() >= 6 {
                format!("o={} {} {} IN {kind} {ip}", parts[0], parts[1], parts[2])
            } else {
                line.to_owned()
            }
        } else if let Some(rest) = line.strip_prefix("m=audio ") {
            match rest.split_once(' ') {
                Some((port, tail)) if port != "0" => format!("m=audio {} {tail}", rtp.port()),
                _ => line.to_owned(),
            }
        } else {
            line.to_owned()
        };
        out.push_str(&new);
        out.push_str("\r\n");
    }
    out
}

fn is_sdp_body(ct: Option<&str>, body: &[u8]) -> bool {
    !body.is_empty() && ct.is_none_or(|c| c.to_ascii_lowercase().contains("application/sdp"))
}

impl ReplayCaller {
    /// A caller that will play `script` with `cfg`; nothing happens before [`ReplayCaller::start`].
    pub fn new(cfg: CallerConfig, script: Script) -> ReplayCaller {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let call_id = format!(
            "replay-{:016x}@{}",
            rng.gen::<u64>(),
            host_of(cfg.local_sip)
        );
        let from_tag = format!("rp{:08x}", rng.gen::<u32>());
        let ssrc = rng.gen();
        let seq = rng.gen();
        let ts0 = rng.gen();
        ReplayCaller {
            cfg,
            script,
            rng,
            call_id,
            from_tag,
            to_tag: None,
            branches: HashMap::new(),
            started: None,
            ack_at: None,
            next_step: 0,
            deadline: None,
            hangup_at: None,
            hangup_sent: false,
            phase: Phase::Calling,
            end: CallEnd::InProgress,
            out: VecDeque::new(),
            txs: Vec::new(),
            remote_rtp: None,
            ssrc,
            seq,
            ts0,
            max_cseq: 0,
            inband: InbandDetector::new(),
            keys: Vec::new(),
            responses: Vec::new(),
            server_requests: Vec::new(),
            rtp_sent: 0,
            rtp_skipped: 0,
            rtp_received: 0,
            sdp_version: 1,
        }
    }

    /// The Call-ID of the replay (what the server's record is looked up by).
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Sends the INVITE.
    pub fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        self.deadline = Some(now + self.script.duration + LIFE_MARGIN);
        let invite = self.script.invite.clone();
        let req = self.rewrite(&invite);
        self.send_request(now, req);
        self.run_steps(now);
    }

    /// Whether the call is over and everything has been sent.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Over && self.out.is_empty()
    }

    /// What the caller saw.
    pub fn report(&self) -> CallerReport {
        CallerReport {
            call_id: self.call_id.clone(),
            responses: self.responses.clone(),
            keys: self.keys.clone(),
            end: self.end.clone(),
            server_requests: self.server_requests.clone(),
            rtp_sent: self.rtp_sent,
            rtp_skipped: self.rtp_skipped,
            rtp_received: self.rtp_received,
        }
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ReplayCaller::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Over || self.started.is_none() {
            return None;
        }
        let mut t = self.deadline;
        let mut earliest = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        earliest(self.step_due());
        earliest(self.hangup_at.filter(|_| !self.hangup_sent));
        for tx in self.txs.iter().filter(|t| t.final_code.is_none()) {
            earliest(tx.next);
            earliest(Some(tx.give_up));
        }
        t
    }

    /// Advances timers: due steps, retransmissions, the hang-up and the life bound. Spurious calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Over {
            return;
        }
        self.retransmit(now);
        if self.phase == Phase::Over {
            return;
        }
        self.run_steps(now);
        if self.hangup_at.is_some_and(|t| t <= now) && !self.hangup_sent {
            self.hang_up(now);
        }
        if self.deadline.is_some_and(|d| d <= now) && self.phase != Phase::Over {
            // Leave nothing behind on the server: a BYE when answered, a CANCEL while ringing.
            if !self.hangup_sent {
                self.hang_up(now);
            }
            self.finish(CallEnd::TimedOut);
        }
    }

    /// One SIP message from the server (a datagram, or one framed message of the TCP stream), from
    /// `src`.
    pub fn handle_sip(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) {
        let parsed = match self.cfg.transport {
            TraceTransport::Udp => parse_datagram(bytes),
            TraceTransport::Tcp => parse_stream_message(bytes),
        };
        match parsed {
            Ok(SipMessage::Response(r)) if r.call_id() == self.call_id => {
                self.handle_response(now, r)
            }
            Ok(SipMessage::Request(r)) if r.call_id() == self.call_id => {
                self.handle_request(now, src, r)
            }
            Ok(_) => tracing::debug!("replay: message of another call ignored"),
            Err(err) => tracing::debug!(%err, "replay: unparsable sip ignored"),
        }
    }

    /// One RTP packet from the server (counted; the replay does not listen to prompts).
    pub fn handle_rtp(&mut self, _now: Instant, _src: SocketAddr, _packet: &[u8]) {
        self.rtp_received += 1;
    }

    // ── steps ──

    fn anchor_time(&self, anchor: Anchor) -> Option<Instant> {
        match anchor {
            Anchor::Invite => self.started,
            Anchor::Ack => self.ack_at,
        }
    }

    fn step_due(&self) -> Option<Instant> {
        let step = self.script.steps.get(self.next_step)?;
        Some(self.anchor_time(step.anchor)? + step.offset)
    }

    fn run_steps(&mut self, now: Instant) {
        while self.phase != Phase::Over {
            let Some(due) = self.step_due() else {
                break;
            };
            if due > now {
                break;
            }
            let step = self.script.steps[self.next_step].clone();
            self.next_step += 1;
            match step.action {
                Action::Request(req) => self.scripted_request(now, &req),
                Action::Rtp(r) => self.send_rtp(now, &r),
            }
        }
        self.arm_hangup(now);
    }

    /// After the script's last step, a trace without BYE or CANCEL is hung up a little later.
    fn arm_hangup(&mut self, now: Instant) {
        let all_done = self.next_step >= self.script.steps.len();
        if all_done && !self.script.hangs_up && self.hangup_at.is_none() {
            let last = self
                .script
                .steps
                .last()
                .and_then(|s| Some(self.anchor_time(s.anchor)? + s.offset))
                .unwrap_or(now);
            // Not before the call is answered: a call still ringing waits for its answer or the
            // deadline (an unanswered trace is cancelled there).
            // A trace where the server hung up: wait for its BYE as long as it took there.
            let server_bye = self
                .script
                .server_bye_after_ack
                .and_then(|after| Some(self.anchor_time(Anchor::Ack)? + after));
            if self.phase == Phase::Established {
                let last = server_bye.map_or(last, |bye| bye.max(last));
                self.hangup_at = Some(last.max(now) + HANGUP_AFTER);
            }
        }
    }

    fn offset_now(&self, now: Instant) -> (Duration, bool) {
        match (self.ack_at, self.started) {
            (Some(a), _) if now >= a => (now - a, true),
            (_, Some(s)) => (now.saturating_duration_since(s), false),
            _ => (Duration::ZERO, false),
        }
    }

    fn key(&mut self, now: Instant, key: char, method: KeyMethod) {
        let (offset, after_ack) = self.offset_now(now);
        self.keys.push(KeyDelivered {
            key,
            method,
            offset,
            after_ack,
        });
    }

    fn scripted_request(&mut self, now: Instant, req: &Request) {
        match req.method {
            // A BYE before the answer cancels; a CANCEL after it hangs up (the server was slower or
            // faster than the traced one).
            Method::Bye | Method::Cancel => {
                if !self.hangup_sent {
                    self.hang_up_with(now, Some(req));
                }
            }
            _ => {
                if req.method == Method::Info {
                    if let Ok(k) = parse_info_body(req.content_type().unwrap_or(""), &req.body) {
                        self.key(now, k, KeyMethod::Info);
                    }
                }
                let r = self.rewrite(req);
                self.send_request(now, r);
            }
        }
    }

    fn send_rtp(&mut self, now: Instant, step: &RtpStep) {
        let Some(dst) = self.remote_rtp.filter(|_| self.phase != Phase::Over) else {
            self.rtp_skipped += 1;
            return;
        };
        let header = RtpHeader {
            marker: step.marker,
            payload_type: step.payload_type,
            sequence: self.seq,
            timestamp: self.ts0.wrapping_add(step.timestamp),
            ssrc: self.ssrc,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut buf = vec![0u8; 12 + step.payload.len()];
        let Ok(n) = rtp::write(&mut buf, &header, &step.payload) else {
            self.rtp_skipped += 1;
            return;
        };
        buf.truncate(n);
        self.out.push_back(Transmit {
            to: dst,
            carry: Carry::Rtp,
            bytes: buf,
        });
        self.rtp_sent += 1;
        if let Some(k) = step.event_start {
            self.key(now, k, KeyMethod::Rfc4733);
        } else if step.payload_type != self.script.event_pt {
            self.detect_inband(now, step);
        }
    }

    fn detect_inband(&mut self, now: Instant, step: &RtpStep) {
        let law = match step.payload_type {
            0 => Law::Ulaw,
            8 => Law::Alaw,
            _ => return,
        };
        let mut pcm = vec![0i16; step.payload.len()];
        law.decode_into(&step.payload, &mut pcm);
        let mut found = Vec::new();
        if let Some(d) = self.inband.process(&pcm) {
            found.push(d.digit);
        }
        while let Some(d) = self.inband.poll_digit() {
            found.push(d.digit);
        }
        for k in found {
            self.key(now, k, KeyMethod::Inband);
        }
    }

    // ── SIP out ──

    fn new_branch(&mut self) -> String {
        format!("z9hG4bK-rp{:016x}", self.rng.gen::<u64>())
    }

    fn branch_for(&mut self, original: &str) -> String {
        if let Some(b) = self.branches.get(original) {
            return b.clone();
        }
        let b = self.new_branch();
        self.branches.insert(original.to_owned(), b.clone());
        b
    }

    fn target_uri(&self, orig: &Uri) -> Uri {
        let mut uri = orig.clone();
        if !uri.scheme.eq_ignore_ascii_case("sip") && !uri.scheme.eq_ignore_ascii_case("sips") {
            uri = Uri::parse(&format!(
                "sip:{}@{}",
                orig.user.clone().unwrap_or_default(),
                host_of(self.cfg.target)
            ))
            .unwrap_or_else(|_| orig.clone());
        }
        uri.scheme = "sip".to_owned();
        uri.host = host_of(self.cfg.target);
        uri.port = Some(self.cfg.target.port());
        uri
    }

    fn contact(&self, user: Option<&str>) -> String {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let transport = match self.cfg.transport {
            TraceTransport::Udp => "",
            TraceTransport::Tcp => ";transport=tcp",
        };
        format!("<sip:{user}{}{transport}>", self.cfg.local_sip)
    }

    fn via_token(&self) -> &'static str {
        match self.cfg.transport {
            TraceTransport::Udp => "UDP",
            TraceTransport::Tcp => "TCP",
        }
    }

    /// The captured request as ours: fresh Call-ID, From tag and branch; the target in the Request-URI
    /// and To; our address in Via, Contact and SDP; the learned To tag; no Route or credentials.
    fn rewrite(&mut self, orig: &Request) -> Request {
        let mut req = Request::new(orig.method.clone(), self.target_uri(&orig.uri));
        let orig_branch = orig
            .top_via()
            .and_then(|v| v.branch())
            .unwrap_or("")
            .to_owned();
        let branch = if orig.method == Method::Ack {
            self.new_branch()
        } else {
            self.branch_for(&format!("{orig_branch}/{}", orig.cseq().seq))
        };
        let mut via = Via::new(
            self.via_token(),
            &host_of(self.cfg.local_sip),
            Some(self.cfg.local_sip.port()),
            &branch,
        );
        via.set_param("rport", None);
        let mut headers = Headers::new();
        headers.push("Via", &via.to_string());
        for (name, value) in orig.headers.iter() {
            let lower = crate::sip::message::canonical_name(name).to_ascii_lowercase();
            match lower.as_str() {
                "via" | "route" | "record-route" | "authorization" | "proxy-authorization" => {}
                "call-id" => headers.push("Call-ID", &self.call_id),
                "from" => {
                    let mut from = orig.from().clone();
                    from.set_param("tag", Some(&self.from_tag));
                    headers.push("From", &from.to_string());
                }
                "to" => {
                    let mut to = orig.to().clone();
                    to.uri = self.target_uri(&to.uri);
                    to.uri.port = Some(self.cfg.target.port());
                    if to.tag().is_some() {
                        if let Some(tag) = &self.to_tag {
                            to.set_param("tag", Some(tag));
                        }
                    }
                    headers.push("To", &to.to_string());
                }
                "contact" => {
                    let user = orig.contacts().first().and_then(|c| c.uri.user.clone());
                    headers.push("Contact", &self.contact(user.as_deref()));
                }
                _ => headers.push(name, value),
            }
        }
        req.headers = headers;
        req.body = if is_sdp_body(orig.content_type(), &orig.body) {
            let text = String::from_utf8_lossy(&orig.body);
            rewrite_sdp(&text, self.cfg.local_rtp).into_bytes()
        } else {
            orig.body.clone()
        };
        if let Err(err) = req.refresh_typed() {
            tracing::debug!(%err, "replay: rewritten request does not re-parse");
        }
        req
    }

    fn push_sip(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Transmit {
            to: self.cfg.target,
            carry: Carry::Sip,
            bytes,
        });
    }

    fn send_request(&mut self, now: Instant, req: Request) {
        let bytes = req.to_bytes();
        self.max_cseq = self.max_cseq.max(req.cseq().seq);
        if req.method != Method::Ack {
            let udp = self.cfg.transport == TraceTransport::Udp;
            self.txs.push(ClientTx {
                method: req.method.clone(),
                cseq: req.cseq().seq,
                branch: req
                    .top_via()
                    .and_then(|v| v.branch())
                    .unwrap_or("")
                    .to_owned(),
                bytes: bytes.clone(),
                next: udp.then(|| now + self.cfg.t1),
                interval: self.cfg.t1,
                retransmits: 0,
                give_up: now + self.cfg.t1 * 64,
                final_code: None,
                ack: None,
                codes_seen: Vec::new(),
            });
        }
        self.push_sip(bytes);
    }

    fn retransmit(&mut self, now: Instant) {
        let t2 = Duration::from_secs(4);
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        for (i, tx) in self.txs.iter_mut().enumerate() {
            if tx.final_code.is_some() {
                continue;
            }
            if now >= tx.give_up {
                tx.final_code = Some(408);
                timed_out.push(i);
                continue;
            }
            if let Some(next) = tx.next.filter(|n| *n <= now) {
                let _ = next;
                if tx.retransmits >= MAX_RETRANSMITS {
                    tx.next = None;
                    continue;
                }
                tx.retransmits += 1;
                tx.interval = if tx.method == Method::Invite {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(t2)
                };
                tx.next = Some(now + tx.interval);
                resend.push(tx.bytes.clone());
            }
        }
        for b in resend {
            self.push_sip(b);
        }
        for i in timed_out {
            let method = self.txs[i].method.clone();
            let first_invite = method == Method::Invite && i == 0;
            let ends = (first_invite && self.phase == Phase::Calling)
                || matches!(method, Method::Bye | Method::Cancel);
            if ends {
                self.finish(CallEnd::TimedOut);
            }
        }
    }

    /// Hangs up: BYE when answered, CANCEL while ringing; `scripted` is the trace's own request.
    fn hang_up(&mut self, now: Instant) {
        self.hang_up_with(now, None);
    }

    fn hang_up_with(&mut self, now: Instant, scripted: Option<&Request>) {
        self.hangup_sent = true;
        match self.phase {
            Phase::Over => {}
            Phase::Established => {
                let req = match scripted.filter(|r| r.method == Method::Bye) {
                    Some(r) => self.rewrite(r),
                    None => self.own_bye(),
                };
                self.send_request(now, req);
            }
            Phase::Calling => {
                let cancel = self.own_cancel();
                self.send_request(now, cancel);
            }
        }
    }

    fn in_dialog_base(&mut self, method: Method, seq: u32) -> Request {
        let mut req = self.script.invite.clone();
        req.method = method.clone();
        req.body.clear();
        req.headers.remove("Content-Type");
        req.set_cseq(CSeq { seq, method });
        let mut to = req.to().clone();
        if let Some(tag) = &self.to_tag {
            to.set_param("tag", Some(tag));
        }
        req.set_to(to);
        req
    }

    fn own_bye(&mut self) -> Request {
        let seq = self.max_cseq + 1;
        let base = self.in_dialog_base(Method::Bye, seq);
        let mut req = self.rewrite(&base);
        // A fresh branch: a BYE is a new transaction.
        let branch = self.new_branch();
        self.set_branch(&mut req, &branch);
        req
    }

    fn own_cancel(&mut self) -> Request {
        let seq = self.script.invite.cseq().seq;
        let mut base = self.script.invite.clone();
        base.method = Method::Cancel;
        base.body.clear();
        base.headers.remove("Content-Type");
        base.set_cseq(CSeq {
            seq,
            method: Method::Cancel,
        });
        // RFC 3261 §9.1: the CANCEL's branch is the INVITE's.
        self.rewrite(&base)
    }

    fn set_branch(&self, req: &mut Request, branch: &str) {
        let mut via = Via::new(
            self.via_token(),
            &host_of(self.cfg.local_sip),
            Some(self.cfg.local_sip.port()),
            branch,
        );
        via.set_param("rport", None);
        req.set_top_via(via);
    }

    fn ack_for(&mut self, tx_index: usize, resp: &Response) -> Vec<u8> {
        let seq = self.txs[tx_index].cseq;
        let code = resp.code;
        if code >= 300 {
            // RFC 3261 §17.1.1.3: same branch, the response's To, CSeq number with ACK.
            let mut req = Request::new(Method::Ack, self.target_uri(&self.script.invite.uri));
            req.headers.push(
                "Via",
                &self.top_via_line(&self.txs[tx_index].branch.clone()),
            );
            req.headers.push("Max-Forwards", "70");
            if let Some(f) = self.script.invite.header("From") {
                if let Ok(mut from) = NameAddr::parse(f) {
                    from.set_param("tag", Some(&self.from_tag));
                    req.headers.push("From", &from.to_string());
                }
            }
            if let Some(to) = resp.header("To") {
                req.headers.push("To", to);
            }
            req.headers.push("Call-ID", &self.call_id);
            req.headers.push("CSeq", &format!("{seq} ACK"));
            req.headers.push("Content-Length", "0");
            return req.to_bytes();
        }
        let captured = self
            .script
            .acks
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, r)| r.clone());
        let req = match captured {
            Some(r) => self.rewrite(&r),
            None => {
                let base = self.in_dialog_base(Method::Ack, seq);
                let mut r = self.rewrite(&base);
                let b = self.new_branch();
                self.set_branch(&mut r, &b);
                r
            }
        };
        req.to_bytes()
    }

    fn top_via_line(&self, branch: &str) -> String {
        let mut via = Via::new(
            self.via_token(),
            &host_of(self.cfg.local_sip),
            Some(self.cfg.local_sip.port()),
            branch,
        );
        via.set_param("rport", None);
        via.to_string()
    }

    // ── SIP in ──

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let branch = resp
            .top_via()
            .and_then(|v| v.branch())
            .unwrap_or("")
            .to_owned();
        let method = resp.cseq().method.clone();
        let Some(i) = self
            .txs
            .iter()
            .position(|t| t.branch == branch && t.method == method)
        else {
            return;
        };
        let code = resp.code;
        let retransmitted = self.txs[i].codes_seen.contains(&code);
        if !retransmitted {
            self.txs[i].codes_seen.push(code);
            self.responses.push(code);
        }
        if method == Method::Invite {
            self.invite_response(now, i, &resp, retransmitted);
            return;
        }
        if code >= 200 && self.txs[i].final_code.is_none() {
            self.txs[i].final_code = Some(code);
            if method == Method::Bye {
                self.finish(CallEnd::WeHungUp);
            }
        } else if code < 200 {
            // Timer E continues at T2 after a provisional response (RFC 3261 §17.1.2.2).
            self.txs[i].interval = Duration::from_secs(4);
        }
    }

    fn invite_response(&mut self, now: Instant, i: usize, resp: &Response, retransmitted: bool) {
        let code = resp.code;
        let first = i == 0;
        // Any response stops Timer A (RFC 3261 §17.1.1.2).
        self.txs[i].next = None;
        if first && code > 100 && self.to_tag.is_none() {
            self.to_tag = resp.to().tag().map(str::to_owned);
        }
        if is_sdp_body(resp.content_type(), &resp.body) {
            if let Some(a) = sdp_audio_addr(&resp.body) {
                self.remote_rtp = Some(a);
            }
        }
        if code < 200 {
            return;
        }
        if let Some(ack) = self.txs[i].ack.clone() {
            // A retransmitted final response: our ACK again.
            self.push_sip(ack);
            return;
        }
        if retransmitted && self.txs[i].final_code.is_some() {
            return;
        }
        self.txs[i].final_code = Some(code);
        if (200..300).contains(&code) && first {
            self.to_tag = resp.to().tag().map(str::to_owned).or(self.to_tag.take());
        }
        let ack = self.ack_for(i, resp);
        self.txs[i].ack = Some(ack.clone());
        self.push_sip(ack);
        if !first {
            return;
        }
        if (200..300).contains(&code) {
            if self.phase == Phase::Calling {
                self.phase = Phase::Established;
                self.ack_at = Some(now);
                let ack_steps_end = self
                    .script
                    .steps
                    .iter()
                    .filter(|s| s.anchor == Anchor::Ack)
                    .map(|s| s.offset)
                    .max()
                    .unwrap_or_default();
                let until = now + ack_steps_end + LIFE_MARGIN;
                self.deadline = Some(self.deadline.map_or(until, |d| d.max(until)));
                if self.hangup_sent {
                    // We cancelled, but the 200 crossed the CANCEL: hang up properly.
                    self.hangup_sent = false;
                    self.hang_up(now);
                }
                self.run_steps(now);
            }
        } else if self.phase == Phase::Calling {
            self.finish(if self.hangup_sent && code == 487 {
                CallEnd::WeHungUp
            } else {
                CallEnd::Rejected(code)
            });
        }
    }

    fn handle_request(&mut self, now: Instant, src: SocketAddr, req: Request) {
        let _ = now;
        self.server_requests.push(req.method.to_string());
        let mut resp = Response::for_request(&req, 200, "OK");
        resp.set_to_tag(&self.from_tag.clone());
        match req.method {
            Method::Ack => {
                self.server_requests.pop();
                return;
            }
            Method::Bye => {
                self.send_response(src, resp);
                self.finish(CallEnd::ServerHungUp);
                return;
            }
            Method::Invite | Method::Update => {
                let offer = is_sdp_body(req.content_type(), &req.body).then(|| req.body.clone());
                if let Some(a) = offer.as_deref().and_then(sdp_audio_addr) {
                    // `c=0.0.0.0` is hold: nothing to send to.
                    self.remote_rtp = (!a.ip().is_unspecified()).then_some(a);
                }
                let user = self.script.invite.from().uri.user.clone();
                let _ = resp.push_header("Contact", &self.contact(user.as_deref()));
                let body = self.sdp_answer(offer.as_deref());
                let _ = resp.push_header("Content-Type", "application/sdp");
                resp.body = body.into_bytes();
            }
            _ => {}
        }
        self.send_response(src, resp);
    }

    fn send_response(&mut self, src: SocketAddr, resp: Response) {
        let to = match self.cfg.transport {
            TraceTransport::Udp => src,
            TraceTransport::Tcp => self.cfg.target,
        };
        self.out.push_back(Transmit {
            to,
            carry: Carry::Sip,
            bytes: resp.to_bytes(),
        });
    }

    /// Our SDP for a server's offer (its first G.711 codec and telephone-event, direction mirrored), or
    /// our own offer when it sent none.
    fn sdp_answer(&mut self, offer: Option<&[u8]>) -> String {
        let parsed = offer
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| SessionDescription::parse(t).ok());
        let audio = parsed
            .as_ref()
            .and_then(|s| s.media.iter().find(|m| m.media == "audio"));
        let mut pts: Vec<u8> = Vec::new();
        let mut maps = String::new();
        let mut direction = "sendrecv";
        if let Some(m) = audio {
            if let Some(pt) = m.payload_types().find(|p| *p == 0 || *p == 8) {
                pts.push(pt);
            }
            if let Some(pt) = m.payload_types().find(|p| {
                m.rtpmap(*p)
                    .is_some_and(|r| r.encoding_name.eq_ignore_ascii_case("telephone-event"))
            }) {
                pts.push(pt);
                maps.push_str(&format!("a=rtpmap:{pt} telephone-event/8000\r\n"));
            }
            direction = match m.direction().map(|d| d.as_str()) {
                Some("sendonly") => "recvonly",
                Some("recvonly") => "sendonly",
                Some("inactive") => "inactive",
                _ => "sendrecv",
            };
        }
        if pts.is_empty() {
            pts = vec![0, self.script.event_pt];
            maps = format!("a=rtpmap:{} telephone-event/8000\r\n", self.script.event_pt);
        }
        self.sdp_version += 1;
        let ip = self.cfg.local_rtp.ip();
        let kind = ip_kind(self.cfg.local_rtp);
        let list: Vec<String> = pts.iter().map(u8::to_string).collect();
        format!(
            "v=0\r\no=replay 1 {v} IN {kind} {ip}\r\ns=-\r\nc=IN {kind} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {list}\r\n{maps}a={direction}\r\n",
            v = self.sdp_version,
            port = self.cfg.local_rtp.port(),
            list = list.join(" "),
        )
    }

    fn finish(&mut self, end: CallEnd) {
        if self.phase == Phase::Over {
            return;
        }
        self.phase = Phase::Over;
        self.end = end;
    }
}

#[cfg(test)]
mod tests;
