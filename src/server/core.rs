//! The signalling core: one task that owns the SIP endpoint and every call, fed by the UDP socket, the
//! TCP readers, the media engine's events and its own timers. It decides what each request gets; RTP pacing
//! lives on the media thread, never here.
//!
//! Why one task and not one per Call-ID: signalling is a few messages per call, so a single owner of all
//! dialogs needs no locks and no routing table between tasks, and still serves thousands of calls; the
//! per-packet work (RTP) runs on the media engine's own thread.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::call::{
    Call, CallInput, CallOutput, CallTiming, Cdr, EndReason, MediaCommand, WallClock,
};
use crate::config::ServerConfig;
use crate::dialog::{Dialog, DialogState};
use crate::ivr::{IvrSession, MenuSet};
use crate::media::codec::Law;
use crate::media::dtmf::info::parse_info_body;
use crate::media::session::{MediaConfig, MediaEvent};
use crate::prompts::PromptStore;
use crate::sdp::{self, MediaCaps, SdpAnswer, SdpOffer, SessionDescription};
use crate::server::media_engine::{MediaHandle, MediaId};
use crate::sip::endpoint::{Endpoint, Peer, SipEvent, Transport, TxId};
use crate::sip::message::{Method, Request, Response};
use crate::transport::tcp::{TcpConnections, TcpInbound};

/// Methods we answer (Allow header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// Inputs to the core from the other tasks.
#[derive(Debug)]
pub enum CoreInput {
    /// A media event for a call.
    Media(String, MediaEvent),
    /// Start draining: refuse new calls with 503.
    Drain,
    /// The drain time is over: hang up every call.
    HangupAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// Provisional sent; answering at the instant.
    Ringing { answer_at: Instant },
    /// 200 sent.
    Answered,
    /// BYE sent or received; waiting for the last words.
    Ending,
}

struct CallEntry {
    /// The address our SDP announces for this call.
    media_ip: IpAddr,
    invite_tx: TxId,
    invite: Request,
    peer: Peer,
    local_tag: String,
    leg: Leg,
    dialog: Option<Dialog>,
    media_id: MediaId,
    media_port: u16,
    media_cfg: MediaConfig,
    /// The SDP we send: the answer to the caller's offer, or our offer when the INVITE had none.
    local_sdp: String,
    /// Our offer awaiting the caller's answer in the ACK (INVITE without SDP, RFC 3264 §5).
    pending_offer: Option<SdpOffer>,
    sdp_version: u64,
    session_id: u64,
    ivr: Option<IvrSession>,
    call: Option<Call>,
    clock: WallClock,
    cdr: Cdr,
    bye_tx: Option<TxId>,
    end_reason: Option<EndReason>,
}

/// The core's state; `run` drives it.
pub struct Core {
    cfg: ServerConfig,
    endpoint: Endpoint,
    calls: HashMap<String, CallEntry>,
    by_tx: HashMap<TxId, String>,
    wakeups: BinaryHeap<Reverse<(Instant, String)>>,
    menus: watch::Receiver<Arc<MenuSet>>,
    prompts: PromptStore,
    media: MediaHandle,
    core_tx: mpsc::UnboundedSender<CoreInput>,
    cdr_tx: Option<mpsc::UnboundedSender<Cdr>>,
    udp: Arc<UdpSocket>,
    tcp: TcpConnections,
    draining: bool,
    contact: String,
    /// The address announced in SDP when configured (see `server::run`).
    advertise_ip: Option<IpAddr>,
    seed: u64,
    /// Added to the real wall clock (`--pretend-time`); zero normally.
    wall_offset: chrono::Duration,
}

impl Core {
    /// Builds the core around bound sockets and started services.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ServerConfig,
        local: SocketAddr,
        udp: Arc<UdpSocket>,
        tcp: TcpConnections,
        menus: watch::Receiver<Arc<MenuSet>>,
        prompts: PromptStore,
        media: MediaHandle,
        core_tx: mpsc::UnboundedSender<CoreInput>,
        cdr_tx: Option<mpsc::UnboundedSender<Cdr>>,
        advertise_ip: Option<IpAddr>,
    ) -> Core {
        let seed = crate::clock::seed();
        let wall_offset = cfg
            .pretend_time
            .map(|t| t - crate::clock::wall())
            .unwrap_or_else(chrono::Duration::zero);
        Core {
            wall_offset,
            endpoint: Endpoint::new(cfg.timers, local, seed),
            cfg,
            calls: HashMap::new(),
            by_tx: HashMap::new(),
            wakeups: BinaryHeap::new(),
            menus,
            prompts,
            media,
            core_tx,
            cdr_tx,
            udp,
            tcp,
            draining: false,
            contact: format!("<sip:helpline@{local}>"),
            advertise_ip,
            seed,
        }
    }

    /// The address our SDP announces for a call: the configured one, else the address the caller sent the
    /// INVITE to when the Request-URI names one, else loopback.
    fn media_ip_for(&self, request: &Request) -> IpAddr {
        if let Some(ip) = self.advertise_ip {
            return ip;
        }
        let host = request
            .uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    /// Ends every call still present (shutdown): each gets its CDR line, with the reason already recorded
    /// (e.g. `server-bye` for a BYE that got no answer) or `server-bye`.
    pub fn finish_all(&mut self, now: Instant) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            if let Some(entry) = self.calls.get_mut(&id) {
                if entry.end_reason.is_none() {
                    entry.end_reason = Some(EndReason::ServerBye);
                }
            }
            self.finish(now, &id);
        }
    }

    /// Number of calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The earliest instant anything wants waking.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop wake-ups of calls that are gone so the heap cannot grow without bound.
        while let Some(Reverse((_, id))) = self.wakeups.peek() {
            if self.calls.contains_key(id) {
                break;
            }
            self.wakeups.pop();
        }
        let calls = self.wakeups.peek().map(|Reverse((at, _))| *at);
        match (calls, self.endpoint.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A SIP message from the network.
    pub async fn handle_sip(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        self.endpoint.handle_message(now, peer, bytes);
        self.drive(now).await;
    }

    /// A TCP message.
    pub async fn handle_tcp(&mut self, now: Instant, inbound: TcpInbound) {
        let peer = Peer {
            transport: Transport::Tcp(inbound.conn),
            addr: inbound.peer,
            local: inbound.local,
        };
        self.handle_sip(now, peer, &inbound.bytes).await;
    }

    /// Timers.
    pub async fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        while let Some(Reverse((at, _))) = self.wakeups.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.wakeups.pop() else {
                break;
            };
            self.call_timeout(now, &id);
        }
        self.drive(now).await;
    }

    /// Messages from other tasks.
    pub async fn handle_input(&mut self, now: Instant, input: CoreInput) {
        match input {
            CoreInput::Media(id, event) => {
                if let Some(entry) = self.calls.get_mut(&id) {
                    if let Some(call) = entry.call.as_mut() {
                        call.handle(now, CallInput::Media(event));
                    }
                }
                self.after_call(now, &id);
            }
            CoreInput::Drain => self.draining = true,
            CoreInput::HangupAll => {
                let ids: Vec<String> = self.calls.keys().cloned().collect();
                for id in ids {
                    self.hangup(now, &id, EndReason::ServerBye);
                }
            }
        }
        self.drive(now).await;
    }

    fn call_timeout(&mut self, now: Instant, id: &str) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if let Leg::Ringing { answer_at } = entry.leg {
            if now >= answer_at {
                self.answer(now, id);
            }
            return;
        }
        if let Some(call) = entry.call.as_mut() {
            call.handle_timeout(now);
        }
        self.after_call(now, id);
    }

    /// Drains the endpoint's transmits and events until both are empty.
    async fn drive(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                match t.to.transport {
                    Transport::Udp => {
                        if let Err(err) = self.udp.send_to(&t.bytes, t.to.addr).await {
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
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.on_sip_event(now, event).await;
            }
            if !progressed {
                break;
            }
        }
    }

    async fn on_sip_event(&mut self, now: Instant, event: SipEvent) {
        match event {
            SipEvent::Request { tx, request, peer } => {
                self.on_request(now, tx, request, peer).await
            }
            SipEvent::Ack { request, .. } => self.on_ack(now, request),
            SipEvent::Cancelled { invite_tx } => {
                if let Some(id) = self.by_tx.get(&invite_tx).cloned() {
                    self.on_cancel(now, &id);
                }
            }
            SipEvent::NoAck { invite_tx } => {
                if let Some(id) = self.by_tx.get(&invite_tx).cloned() {
                    tracing::info!(call_id = %id, "no ACK for our 2xx within 64*T1: releasing with BYE");
                    self.hangup(now, &id, EndReason::NoAck);
                }
            }
            SipEvent::Response { tx, response } => {
                if response.code >= 200 {
                    if let Some(id) = self.by_tx.remove(&tx) {
                        self.finish(now, &id);
                    }
                }
            }
            SipEvent::ClientTimeout { tx } => {
                if let Some(id) = self.by_tx.remove(&tx) {
                    self.finish(now, &id);
                }
            }
        }
    }

    async fn on_request(&mut self, now: Instant, tx: TxId, request: Request, peer: Peer) {
        let in_dialog = request.to().tag().is_some();
        match (&request.method, in_dialog) {
            (Method::Invite, false) => self.on_invite(now, tx, request, peer).await,
            (Method::Options, false) => {
                let mut ok = Response::for_request(&request, 200, "OK");
                add_capabilities(&mut ok);
                self.endpoint.respond(now, tx, ok);
            }
            (Method::Other(_), _) => {
                let reply = Response::for_request(&request, 501, "Not Implemented");
                self.endpoint.respond(now, tx, reply);
            }
            (
                Method::Register
                | Method::Subscribe
                | Method::Publish
                | Method::Message
                | Method::Refer
                | Method::Notify
                | Method::Prack,
                _,
            ) => {
                let mut reply = Response::for_request(&request, 405, "Method Not Allowed");
                reply.headers.push("Allow", ALLOW);
                self.endpoint.respond(now, tx, reply);
            }
            (_, true) => self.on_in_dialog(now, tx, request),
            (_, false) => {
                // BYE, INFO, UPDATE … outside any dialog (RFC 3261 §12.2.2).
                let reply = Response::for_request(&request, 481, "Call/Transaction Does Not Exist");
                self.endpoint.respond(now, tx, reply);
            }
        }
    }

    async fn on_invite(&mut self, now: Instant, tx: TxId, request: Request, peer: Peer) {
        let call_id = request.call_id().to_owned();
        let wall = crate::clock::wall() + self.wall_offset;
        let clock = WallClock { instant: now, wall };
        let dialed = dialed_user(&request);
        let mut cdr = Cdr {
            call_id: call_id.clone(),
            from: request.from().uri.to_string(),
            dialed: dialed.clone(),
            source: peer.addr.to_string(),
            start: clock.format(now),
            ..Cdr::default()
        };
        if self.calls.contains_key(&call_id) {
            // A second INVITE with the same Call-ID but a new branch: a forked or looped request
            // (RFC 3261 §8.2.2.2).
            let reply = Response::for_request(&request, 482, "Loop Detected");
            self.endpoint.respond(now, tx, reply);
            return;
        }
        if self.draining {
            let mut reply = Response::for_request(&request, 503, "Service Unavailable");
            reply.headers.push("Retry-After", "30");
            self.reject(now, tx, reply, clock, cdr);
            return;
        }
        let unsupported: Vec<&str> = request.require();
        if !unsupported.is_empty() {
            // We implement no SIP extension that a peer could require (RFC 3261 §8.2.2.3).
            let mut reply = Response::for_request(&request, 420, "Bad Extension");
            reply.headers.push("Unsupported", &unsupported.join(", "));
            self.reject(now, tx, reply, clock, cdr);
            return;
        }
        if request.max_forwards() == Some(0) {
            let reply = Response::for_request(&request, 483, "Too Many Hops");
            self.reject(now, tx, reply, clock, cdr);
            return;
        }
        // RFC 3261 §17.2.1: 100 Trying at once, so the caller stops retransmitting.
        let trying = Response::for_request(&request, 100, "Trying");
        self.endpoint.respond(now, tx, trying);

        let menus = self.menus.borrow().clone();
        let ivr = match IvrSession::new(menus.clone(), &dialed, wall, now) {
            Ok(ivr) => ivr,
            Err(_) => {
                tracing::info!(%call_id, "dialed number belongs to no region: 404");
                let reply = Response::for_request(&request, 404, "Not Found");
                self.reject(now, tx, reply, clock, cdr);
                return;
            }
        };
        cdr.menu_version = Some(menus.version().to_owned());

        // SDP: an offer in the INVITE, or none (then we offer in the 200, RFC 3264 §5).
        let caps = MediaCaps::default();
        let session_id = self.seed ^ now.elapsed().as_nanos() as u64 ^ hash(&call_id);
        let offer = match sdp_body(&request) {
            Ok(offer) => offer,
            Err(reply) => {
                let reply = Response::for_request(&request, reply.0, reply.1);
                self.reject(now, tx, reply, clock, cdr);
                return;
            }
        };
        let plan = match &offer {
            Some(offer) => match sdp::negotiate(offer, &caps) {
                Ok(plan) => Some(plan),
                Err(err) => {
                    tracing::info!(%call_id, %err, "no usable media in the offer: 488");
                    let mut reply = Response::for_request(&request, 488, "Not Acceptable Here");
                    reply
                        .headers
                        .push("Warning", &format!("304 helpline \"{err}\""));
                    self.reject(now, tx, reply, clock, cdr);
                    return;
                }
            },
            None => None,
        };

        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let (media_id, media_port) = match self.media.open(events_tx).await {
            Ok(x) => x,
            Err(err) => {
                tracing::warn!(%err, "no RTP port free");
                let mut reply = Response::for_request(&request, 503, "Service Unavailable");
                reply.headers.push("Retry-After", "5");
                self.reject(now, tx, reply, clock, cdr);
                return;
            }
        };
        // Forward this call's media events into the core, tagged with the Call-ID.
        let core_tx = self.core_tx.clone();
        let forward_id = call_id.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                if core_tx
                    .send(CoreInput::Media(forward_id.clone(), event))
                    .is_err()
                {
                    break;
                }
            }
        });

        let media_ip = self.media_ip_for(&request);
        let (media_cfg, local_sdp, pending_offer) = match plan {
            Some(plan) => {
                let cfg = media_config_from(&plan.negotiated(), self.cfg.rtp_timeout, session_id);
                let answer = plan.into_answer(media_ip, media_port, session_id, 1);
                (cfg, answer.to_string(), None)
            }
            None => {
                let offer = sdp::make_offer(&caps, media_ip, media_port, session_id, 1, 101);
                let cfg = MediaConfig {
                    law: Law::Ulaw,
                    payload_type: 0,
                    dtmf_payload_type: Some(101),
                    remote: None,
                    send: true,
                    rtp_timeout: self.cfg.rtp_timeout,
                    seed: session_id,
                };
                (cfg, offer.to_string(), Some(offer))
            }
        };
        self.media.configure(media_id, media_cfg.clone());

        let local_tag = self.endpoint.new_tag();
        let ring = self.cfg.ring;
        let entry = CallEntry {
            media_ip,
            invite_tx: tx,
            invite: request,
            peer,
            local_tag,
            leg: Leg::Ringing {
                answer_at: now + ring,
            },
            dialog: None,
            media_id,
            media_port,
            media_cfg,
            local_sdp,
            pending_offer,
            sdp_version: 1,
            session_id,
            ivr: Some(ivr),
            call: None,
            clock,
            cdr,
            bye_tx: None,
            end_reason: None,
        };
        self.by_tx.insert(tx, call_id.clone());
        self.calls.insert(call_id.clone(), entry);
        if ring.is_zero() {
            self.answer(now, &call_id);
        } else {
            if let Some(entry) = self.calls.get(&call_id) {
                let mut ringing = Response::for_request(&entry.invite, 180, "Ringing");
                ringing.set_to_tag(&entry.local_tag);
                ringing.headers.push("Contact", &self.contact);
                self.endpoint.respond(now, tx, ringing);
            }
            self.wakeups.push(Reverse((now + ring, call_id)));
        }
    }

    fn reject(&mut self, now: Instant, tx: TxId, reply: Response, clock: WallClock, mut cdr: Cdr) {
        cdr.final_status = reply.code;
        cdr.end_reason = Some(if reply.code == 487 {
            EndReason::Cancel
        } else {
            EndReason::Error
        });
        cdr.end = clock.format(now);
        self.endpoint.respond(now, tx, reply);
        self.write_cdr(cdr);
    }

    fn answer(&mut self, now: Instant, id: &str) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        let mut ok = Response::for_request(&entry.invite, 200, "OK");
        ok.set_to_tag(&entry.local_tag);
        ok.headers.push("Contact", &self.contact);
        add_capabilities(&mut ok);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = entry.local_sdp.clone().into_bytes();
        let mut dialog = Dialog::uas(&entry.invite, &entry.local_tag);
        dialog.state = DialogState::Confirmed;
        entry.dialog = Some(dialog);
        entry.leg = Leg::Answered;
        entry.cdr.final_status = 200;
        entry.cdr.answer = Some(entry.clock.format(now));
        if let Some(ivr) = entry.ivr.take() {
            entry.call = Some(Call::new(
                now,
                entry.clock,
                ivr,
                self.prompts.clone(),
                CallTiming {
                    first_prompt_delay: self.cfg.first_prompt_delay,
                    rtp_timeout: self.cfg.rtp_timeout,
                    max_ivr: self.cfg.max_ivr,
                },
                entry.cdr.clone(),
            ));
        }
        let tx = entry.invite_tx;
        self.endpoint.respond(now, tx, ok);
        self.after_call(now, id);
    }

    fn on_cancel(&mut self, now: Instant, id: &str) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if !matches!(entry.leg, Leg::Ringing { .. }) {
            return; // the 200 crossed the CANCEL: the call goes on and is ended by BYE (RFC 3261 §9.2)
        }
        let reply = Response::for_request(&entry.invite, 487, "Request Terminated");
        let mut reply = reply;
        reply.set_to_tag(&entry.local_tag);
        let tx = entry.invite_tx;
        entry.cdr.final_status = 487;
        entry.end_reason = Some(EndReason::Cancel);
        self.endpoint.respond(now, tx, reply);
        self.finish(now, id);
    }

    fn on_ack(&mut self, now: Instant, request: Request) {
        let id = request.call_id().to_owned();
        let Some(entry) = self.calls.get_mut(&id) else {
            return; // an ACK for a call already gone: nothing to do (ACKs get no response)
        };
        if let Some(offer) = entry.pending_offer.take() {
            // RFC 3264 §5: the INVITE had no SDP, so the answer comes in the ACK.
            let answer = std::str::from_utf8(&request.body)
                .ok()
                .and_then(|s| SdpAnswer::from_sdp_string(s).ok());
            match answer.map(|a| sdp::accept_answer(&offer, &a)) {
                Some(Ok(negotiated)) => {
                    entry.media_cfg =
                        media_config_from(&negotiated, self.cfg.rtp_timeout, entry.session_id);
                    self.media
                        .configure(entry.media_id, entry.media_cfg.clone());
                }
                _ => {
                    tracing::info!(call_id = %id, "ACK carried no usable SDP answer: releasing");
                    self.hangup(now, &id, EndReason::Error);
                    return;
                }
            }
        }
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(call) = entry.call.as_mut() {
            call.handle(now, CallInput::Acked);
        }
        self.after_call(now, &id);
    }

    fn on_in_dialog(&mut self, now: Instant, tx: TxId, request: Request) {
        let id = request.call_id().to_owned();
        let Some(entry) = self.calls.get_mut(&id) else {
            let reply = Response::for_request(&request, 481, "Call/Transaction Does Not Exist");
            self.endpoint.respond(now, tx, reply);
            return;
        };
        let Some(dialog) = entry.dialog.as_mut().filter(|d| d.matches(&request)) else {
            let reply = Response::for_request(&request, 481, "Call/Transaction Does Not Exist");
            self.endpoint.respond(now, tx, reply);
            return;
        };
        if let Err(err) = dialog.check_remote_cseq(&request) {
            // RFC 3261 §12.2.2: a lower CSeq is answered 500.
            let reply = dialog.response(&request, 500, "Server Internal Error");
            tracing::debug!(call_id = %id, %err, "in-dialog request out of order");
            self.endpoint.respond(now, tx, reply);
            return;
        }
        if let Some(call) = entry.call.as_mut() {
            call.handle(now, CallInput::SipActivity);
        }
        match request.method {
            Method::Bye => {
                let ok = dialog.response(&request, 200, "OK");
                dialog.state = DialogState::Terminated;
                self.endpoint.respond(now, tx, ok);
                if entry.end_reason.is_none() {
                    entry.end_reason = Some(EndReason::CallerBye);
                }
                self.finish(now, &id);
            }
            Method::Info => {
                let content_type = request.content_type().unwrap_or_default().to_owned();
                let reply = match parse_info_body(&content_type, &request.body) {
                    Ok(digit) => {
                        if let Some(call) = entry.call.as_mut() {
                            call.handle(now, CallInput::InfoDigit(digit));
                        }
                        dialog.response(&request, 200, "OK")
                    }
                    Err(err) if is_dtmf_type(&content_type) => {
                        tracing::debug!(call_id = %id, %err, "bad DTMF INFO body");
                        dialog.response(&request, 400, &format!("Bad DTMF body: {err}"))
                    }
                    Err(_) if request.body.is_empty() => dialog.response(&request, 200, "OK"),
                    Err(_) => {
                        // RFC 6086 §4.2.2: an Info Package we do not support.
                        let mut r = dialog.response(&request, 415, "Unsupported Media Type");
                        r.headers
                            .push("Accept", "application/dtmf-relay, application/dtmf");
                        r
                    }
                };
                self.endpoint.respond(now, tx, reply);
                self.after_call(now, &id);
            }
            Method::Invite | Method::Update => {
                let reply = self.renegotiate(now, &id, &request);
                self.endpoint.respond(now, tx, reply);
            }
            Method::Options => {
                let mut ok = dialog.response(&request, 200, "OK");
                add_capabilities(&mut ok);
                self.endpoint.respond(now, tx, ok);
            }
            _ => {
                let mut reply = dialog.response(&request, 405, "Method Not Allowed");
                reply.headers.push("Allow", ALLOW);
                self.endpoint.respond(now, tx, reply);
            }
        }
    }

    /// A re-INVITE or UPDATE: hold, unhold, codec or address change, through the same negotiation as the
    /// first offer. A failed offer leaves the session as it was (RFC 3261 §14.2: 488, call goes on).
    fn renegotiate(&mut self, _now: Instant, id: &str, request: &Request) -> Response {
        let rtp_timeout = self.cfg.rtp_timeout;
        let Some(entry) = self.calls.get_mut(id) else {
            return Response::for_request(request, 481, "Call/Transaction Does Not Exist");
        };
        let Some(dialog) = entry.dialog.as_ref() else {
            return Response::for_request(request, 481, "Call/Transaction Does Not Exist");
        };
        let media_ip = entry.media_ip;
        let offer = match sdp_body(request) {
            Ok(o) => o,
            Err((code, reason)) => return dialog.response(request, code, reason),
        };
        let mut reply = match offer {
            Some(offer) => match sdp::negotiate(&offer, &MediaCaps::default()) {
                Ok(plan) => {
                    entry.sdp_version += 1;
                    entry.media_cfg =
                        media_config_from(&plan.negotiated(), rtp_timeout, entry.session_id);
                    let answer = plan.into_answer(
                        media_ip,
                        entry.media_port,
                        entry.session_id,
                        entry.sdp_version,
                    );
                    entry.local_sdp = answer.to_string();
                    self.media
                        .configure(entry.media_id, entry.media_cfg.clone());
                    let mut ok = dialog.response(request, 200, "OK");
                    ok.headers.push("Content-Type", "application/sdp");
                    ok.body = entry.local_sdp.clone().into_bytes();
                    ok
                }
                Err(err) => {
                    let mut r = dialog.response(request, 488, "Not Acceptable Here");
                    r.headers
                        .push("Warning", &format!("304 helpline \"{err}\""));
                    r
                }
            },
            None if request.method == Method::Invite => {
                // A re-INVITE without SDP asks for our offer; the answer comes in the ACK (RFC 3264 §5).
                entry.sdp_version += 1;
                let offer = sdp::make_offer(
                    &MediaCaps::default(),
                    media_ip,
                    entry.media_port,
                    entry.session_id,
                    entry.sdp_version,
                    entry.media_cfg.dtmf_payload_type.unwrap_or(101),
                );
                entry.local_sdp = offer.to_string();
                entry.pending_offer = Some(offer);
                let mut ok = dialog.response(request, 200, "OK");
                ok.headers.push("Content-Type", "application/sdp");
                ok.body = entry.local_sdp.clone().into_bytes();
                ok
            }
            None => dialog.response(request, 200, "OK"),
        };
        reply.headers.push("Contact", &self.contact);
        reply
    }

    /// Ends a call from our side: BYE if answered, otherwise a final error to the INVITE.
    fn hangup(&mut self, now: Instant, id: &str, reason: EndReason) {
        let contact = self.contact.clone();
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if entry.end_reason.is_none() {
            entry.end_reason = Some(reason);
        }
        match entry.leg {
            Leg::Ringing { .. } => {
                let mut reply =
                    Response::for_request(&entry.invite, 480, "Temporarily Unavailable");
                reply.set_to_tag(&entry.local_tag);
                entry.cdr.final_status = 480;
                let tx = entry.invite_tx;
                self.endpoint.respond(now, tx, reply);
                self.finish(now, id);
            }
            Leg::Answered => {
                entry.leg = Leg::Ending;
                let peer = entry.peer;
                let Some(dialog) = entry.dialog.as_mut() else {
                    self.finish(now, id);
                    return;
                };
                let bye = dialog.request(Method::Bye, &contact);
                dialog.state = DialogState::Terminated;
                self.media.stop_playout(entry.media_id);
                // In-dialog requests go back over the transport the caller used, to the address it
                // sent from (the usual NAT-friendly choice: the Contact may be unreachable).
                let tx = self.endpoint.send_request(now, peer, bye);
                entry.bye_tx = Some(tx);
                self.by_tx.insert(tx, id.to_owned());
            }
            Leg::Ending => {}
        }
    }

    /// Carries out a call's outputs and schedules its next wake-up.
    fn after_call(&mut self, now: Instant, id: &str) {
        let mut hangup = false;
        {
            let Some(entry) = self.calls.get_mut(id) else {
                return;
            };
            let Some(call) = entry.call.as_mut() else {
                return;
            };
            while let Some(output) = call.poll_output() {
                match output {
                    CallOutput::Media(MediaCommand::Play(prompt)) => {
                        self.media.play(entry.media_id, prompt)
                    }
                    CallOutput::Media(MediaCommand::Stop) => {
                        self.media.stop_playout(entry.media_id)
                    }
                    CallOutput::Hangup => hangup = true,
                }
            }
            for missing in call.take_missing_prompts() {
                tracing::warn!(prompt = %missing, "prompt not loaded: skipped");
            }
            if let Some(at) = call.poll_timeout() {
                self.wakeups.push(Reverse((at, id.to_owned())));
            }
        }
        if hangup {
            self.hangup(now, id, EndReason::ServerBye);
        }
    }

    /// Removes a call, closes its media and writes its CDR.
    fn finish(&mut self, now: Instant, id: &str) {
        let Some(entry) = self.calls.remove(id) else {
            return;
        };
        self.by_tx.remove(&entry.invite_tx);
        if let Some(tx) = entry.bye_tx {
            self.by_tx.remove(&tx);
        }
        self.media.close(entry.media_id);
        let reason = entry.end_reason.unwrap_or(EndReason::Error);
        let cdr = match entry.call {
            // The call's own reason (rtp-timeout, server-bye after the menu) wins: the shell only knows
            // it sent a BYE. `Call::finish` falls back to `reason` when the call recorded none.
            Some(call) => call.finish(now, reason),
            None => {
                let mut cdr = entry.cdr;
                cdr.end_reason = Some(reason);
                cdr.end = entry.clock.format(now);
                cdr
            }
        };
        tracing::info!(call_id = %cdr.call_id, reason = ?reason, route = ?cdr.route, "call ended");
        self.write_cdr(cdr);
    }

    fn write_cdr(&mut self, cdr: Cdr) {
        if let Some(tx) = &self.cdr_tx {
            let _ = tx.send(cdr);
        }
    }
}

/// Adds what we support to a 200 to OPTIONS or INVITE (RFC 3261 §11.2).
fn add_capabilities(response: &mut Response) {
    response.headers.push("Allow", ALLOW);
    response.headers.push(
        "Accept",
        "application/sdp, application/dtmf-relay, application/dtmf",
    );
    response.headers.push("Accept-Language", "en");
    response.headers.push("User-Agent", crate::sip::USER_AGENT);
}

/// The number the caller dialed: the Request-URI user part, the To user as fallback (`tel:` URIs carry
/// the number as their user).
fn dialed_user(request: &Request) -> String {
    request
        .uri
        .user
        .clone()
        .or_else(|| request.to().uri.user.clone())
        .unwrap_or_default()
}

/// The SDP offer in a request, if any; a body of another type is refused `415` (RFC 3261 §21.4.13).
fn sdp_body(request: &Request) -> Result<Option<SdpOffer>, (u16, &'static str)> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let content_type = request.content_type().unwrap_or("application/sdp");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Err((415, "Unsupported Media Type"));
    }
    let text = std::str::from_utf8(&request.body).map_err(|_| (400, "SDP body is not UTF-8"))?;
    match SessionDescription::parse(text) {
        Ok(sdp) => Ok(Some(SdpOffer::new(sdp))),
        Err(_) => Err((488, "Not Acceptable Here")),
    }
}

fn is_dtmf_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("application/dtmf")
}

fn media_config_from(plan: &sdp::Negotiated, rtp_timeout: Duration, seed: u64) -> MediaConfig {
    MediaConfig {
        law: match plan.codec.name {
            sdp::CodecName::Pcma => Law::Alaw,
            sdp::CodecName::Pcmu => Law::Ulaw,
        },
        payload_type: plan.codec.payload_type,
        dtmf_payload_type: plan.dtmf_payload_type,
        remote: plan.remote_rtp,
        send: true,
        rtp_timeout,
        seed,
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
