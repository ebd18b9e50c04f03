//! New requests for the call registry: the dispatch of every request the endpoint reports, the checks
//! every request passes, and the INVITE that creates a call — classified (a caller's call to a helpline
//! number, or an agent's star code for `feature_codes`), then accept (100, maybe 180, then 200), reject,
//! CANCEL. In-dialog requests and the ACK are in `dialog_requests`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::call::cdr::{Cdr, EndReason, RefusalReason};
use crate::call::feature_codes::FeatureCode;
use crate::call::ivr_call::{CallInput, IvrCall};
use crate::call::leg::{Leg, LegId, LegKind, UasLeg, UasState};
use crate::call::state::{media_config_from, media_config_unanswered, sdp_body, Call, CallMedia};
use crate::call::{
    admission::{OverloadAnswer, Refusal},
    CallKey, Calls, MediaCommand, RETRY_AFTER_CALL_CAP, RETRY_AFTER_DRAINING, RETRY_AFTER_NO_PORT,
};
use crate::dialog::uas::{add_capabilities, IncomingCall};
use crate::ivr::IvrSession;
use crate::sdp::{self, MediaCaps, SdpOffer};
use crate::sip::endpoint::{Peer, Transport, TxId};
use crate::sip::message::{Method, Request};
use crate::sip::{CallId, Reply, Tag};

/// An INVITE that passed every check, on its way to becoming a call.
struct NewCall {
    call_id: CallId,
    tx: TxId,
    peer: Peer,
    incoming: IncomingCall,
    ivr: IvrSession,
    offer: Option<SdpOffer>,
    cdr: Cdr,
}

/// Ports tried for one call before it is refused `503` (each busy port rests, see `ports`).
const MAX_BIND_ATTEMPTS: u32 = 4;

/// The `telephone-event` payload type of our own offers.
pub(crate) const OUR_DTMF_PT: u8 = 101;

/// The checks every new request passes before anything else looks at it (RFC 3261 §8.2): `Err` is
/// the reply. The `sip` layer's vetting (416 for a Request-URI scheme we do not serve, 420 for every
/// request the rule covers, 406 for an INVITE whose `Accept` excludes `application/sdp`), then 483 for
/// an initial INVITE that has run out of hops.
pub(crate) fn vet_request(request: &Request) -> Result<(), Reply> {
    crate::sip::uas::vet_request(request)?;
    let initial_invite = request.method == Method::Invite && request.to().tag().is_none();
    if initial_invite && request.max_forwards() == Some(0) {
        return Err(Reply::TooManyHops);
    }
    Ok(())
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

/// An IP literal in a URI host (`[::1]` included), if it is one.
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

impl Calls {
    pub(crate) fn on_request(&mut self, now: Instant, tx: TxId, request: Request, peer: Peer) {
        if let Some(retry_after) = self.refusing {
            // A source banned in `503` mode: refused through the transaction (which absorbs its
            // retransmissions), no call, no CDR (a flood would fill the CDR file).
            self.guard_stats.banned_refusals += 1;
            let response = Reply::ServiceUnavailable { retry_after }.to_response(&request, None);
            self.respond(now, tx, response);
            return;
        }
        if let Err(reply) = vet_request(&request) {
            tracing::debug!(code = reply.code(), why = ?reply.why(), "request refused");
            if request.method == Method::Invite && request.to().tag().is_none() {
                let cdr = self.new_cdr(now, &request, &peer);
                self.begin_capture(now, &cdr);
                let local_tag = Tag::new(self.endpoint.new_tag());
                self.reject_new(now, tx, IncomingCall::new(request, local_tag), reply, cdr);
            } else {
                let response = reply.to_response(&request, None);
                self.respond(now, tx, response);
            }
            return;
        }
        let in_dialog = request.to().tag().is_some();
        match (&request.method, in_dialog) {
            (Method::Invite, false) => self.on_invite(now, tx, request, peer),
            (Method::Register, _) => self.on_register(now, tx, &request, &peer),
            (Method::Options, false) => {
                let mut ok = Reply::Ok.to_response(&request, None);
                add_capabilities(&mut ok);
                self.respond(now, tx, ok);
            }
            (Method::Other(_), _) => {
                let response = Reply::NotImplemented.to_response(&request, None);
                self.respond(now, tx, response);
            }
            (
                Method::Subscribe
                | Method::Publish
                | Method::Message
                | Method::Refer
                | Method::Notify
                | Method::Prack,
                _,
            ) => {
                let response = Reply::MethodNotAllowed.to_response(&request, None);
                self.respond(now, tx, response);
            }
            (_, true) => self.on_in_dialog(now, tx, request),
            (_, false) => {
                // BYE, INFO, UPDATE … outside any dialog (RFC 3261 §12.2.2).
                let response = Reply::CallDoesNotExist.to_response(&request, None);
                self.respond(now, tx, response);
            }
        }
    }

    /// What the CDR of a new INVITE starts with; the region is looked up even if the call is refused.
    fn new_cdr(&self, now: Instant, request: &Request, peer: &Peer) -> Cdr {
        let dialed = dialed_user(request);
        let region = self
            .menus
            .route_dialed(&dialed)
            .ok()
            .map(|r| self.menus.region_name(r).to_owned());
        Cdr {
            call_id: request.call_id().to_owned(),
            from: request.from().uri.to_string(),
            dialed,
            source: peer.addr.to_string(),
            start: self.cfg.wall.format(now),
            region,
            ..Cdr::default()
        }
    }

    /// A new call's capture begins, unless the menus say `trace = false` for its number or region.
    fn begin_capture(&mut self, now: Instant, cdr: &Cdr) {
        let traced = self.menus.traced(&cdr.dialed);
        let call_id = CallId::from(cdr.call_id.as_str());
        self.capture.begin(&self.cfg.wall, now, &call_id, traced);
    }

    fn on_invite(&mut self, now: Instant, tx: TxId, request: Request, peer: Peer) {
        let call_id = CallId::from(request.call_id());
        if self.by_call_id.contains_key(&call_id) {
            // A second INVITE with the same Call-ID but a new branch: a forked or looped request
            // (RFC 3261 §8.2.2.2).
            let response = Reply::LoopDetected.to_response(&request, None);
            self.respond(now, tx, response);
            return;
        }
        if self.records_full {
            // No record could be kept: refused before it is a call (no CDR, no capture).
            self.records_full_refusals += 1;
            tracing::warn!(%call_id, "call records cannot be written (spool full): 503");
            let incoming = IncomingCall::new(request, Tag::new(self.endpoint.new_tag()));
            let response = incoming.reject(&Reply::ServiceUnavailable {
                retry_after: super::RETRY_AFTER_RECORDS_FULL,
            });
            self.respond(now, tx, response);
            return;
        }
        let mut cdr = self.new_cdr(now, &request, &peer);
        if FeatureCode::parse(&cdr.dialed).is_none() {
            // A caller's call (an agent's star code is not a call to capture).
            self.begin_capture(now, &cdr);
        }
        let incoming = IncomingCall::new(request, Tag::new(self.endpoint.new_tag()));
        if self.draining {
            let reply = Reply::ServiceUnavailable {
                retry_after: RETRY_AFTER_DRAINING,
            };
            cdr.refusal = Some(RefusalReason::Draining);
            return self.reject_new(now, tx, incoming, reply, cdr);
        }
        // The classification of a new INVITE: a star code is an agent's feature code (`*50` break,
        // `*51` back), authenticated and answered without ever entering a region's menus; anything
        // else is a caller dialling one of the helpline's numbers.
        if let Some(code) = FeatureCode::parse(&cdr.dialed) {
            return self.on_feature_code(now, tx, peer, incoming, code, cdr);
        }
        // The server as a whole: calls in progress and new calls per second (G8: refuse fast, count).
        if let Err(why) = self.admission.admit(now, self.calls.len()) {
            tracing::debug!(%call_id, ?why, "overload: new call refused");
            let reply = match self.admission.config().answer {
                OverloadAnswer::ServiceUnavailable => Reply::ServiceUnavailable {
                    retry_after: why.retry_after(),
                },
                OverloadAnswer::Busy => Reply::Busy,
            };
            cdr.refusal = Some(match why {
                Refusal::MaxCalls => RefusalReason::MaxCalls,
                Refusal::MaxCps => RefusalReason::MaxCps,
            });
            return self.reject_new(now, tx, incoming, reply, cdr);
        }
        // One source may not hold more than its share of the calls (and so of the RTP ports).
        let ip = peer.addr.ip();
        // Kept as a count per source: counting the calls here was a walk over every call per INVITE
        // (a quarter of the CPU at 1,500 calls/s, perf).
        let current = self.sources.count(ip);
        if self.guard.over_call_cap(ip, current) {
            tracing::info!(source = %ip, current, "per-source call cap reached: 503");
            self.guard_stats.call_cap_refusals += 1;
            let reply = Reply::ServiceUnavailable {
                retry_after: RETRY_AFTER_CALL_CAP,
            };
            cdr.refusal = Some(RefusalReason::CallCap);
            return self.reject_new(now, tx, incoming, reply, cdr);
        }
        // RFC 3261 §17.2.1: 100 Trying at once, so the caller stops retransmitting.
        let trying = incoming.trying();
        self.respond(now, tx, trying);

        let ivr = match IvrSession::new(self.menus.clone(), &cdr.dialed, self.cfg.wall.at(now), now)
        {
            Ok(ivr) => ivr,
            Err(_) => {
                tracing::info!(%call_id, "dialed number belongs to no region: 404");
                return self.reject_new(now, tx, incoming, Reply::NotFound, cdr);
            }
        };
        cdr.menu_version = Some(self.menus.version().to_owned());
        self.admit(now, tx, peer, incoming, ivr, cdr);
    }

    /// The checks every INVITE that will be answered passes (its SDP, a free RTP port), then the call:
    /// true when it was created, false when the INVITE was refused (and recorded).
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        tx: TxId,
        peer: Peer,
        incoming: IncomingCall,
        ivr: IvrSession,
        mut cdr: Cdr,
    ) -> bool {
        let call_id = CallId::from(incoming.invite().call_id());
        // SDP: an offer in the INVITE, or none (then we offer in the 200, RFC 3264 §5).
        let offer = match sdp_body(incoming.invite()) {
            Ok(offer) => offer,
            Err(reply) => {
                self.reject_new(now, tx, incoming, reply, cdr);
                return false;
            }
        };
        if let Some(Err(err)) = offer
            .as_ref()
            .map(|o| sdp::negotiate(o, &MediaCaps::default()))
        {
            tracing::info!(%call_id, %err, "no usable media in the offer: 488");
            let reply = Reply::NotAcceptableHere {
                why: err.to_string(),
            };
            self.reject_new(now, tx, incoming, reply, cdr);
            return false;
        }
        // An empty pool first takes back the port of a call whose ACK is long overdue (see
        // `reclaim_unacked`): junk INVITEs that never ACK cannot hold the range for 64·T1 each.
        let port = self.ports.allocate(now).or_else(|| {
            self.reclaim_unacked(now)
                .then(|| self.ports.allocate(now))?
        });
        let Some(port) = port else {
            tracing::warn!("no RTP port free");
            self.no_port_refusals += 1;
            let reply = Reply::ServiceUnavailable {
                retry_after: RETRY_AFTER_NO_PORT,
            };
            cdr.refusal = Some(RefusalReason::NoRtpPort);
            self.reject_new(now, tx, incoming, reply, cdr);
            return false;
        };
        let accepted = NewCall {
            call_id,
            tx,
            peer,
            incoming,
            ivr,
            offer,
            cdr,
        };
        self.accept(now, accepted, port);
        true
    }

    /// Creates the call for an INVITE that passed every check and got RTP port `port`: opens its media,
    /// then rings or answers.
    fn accept(&mut self, now: Instant, new: NewCall, port: u16) {
        let NewCall {
            call_id,
            tx,
            peer,
            mut incoming,
            ivr,
            offer,
            cdr,
        } = new;
        let ip = self.local_ip(&peer, incoming.invite());
        let contact = contact(&peer, ip);
        let session_id: u64 = self.rng.gen::<u64>() >> 1;
        let mut media = CallMedia {
            id: self.new_media_group(),
            port,
            ip,
            cfg: media_config_unanswered(self.cfg.rtp_timeout, session_id),
            local_sdp: String::new(),
            pending_offer: None,
            sdp_version: 1,
            session_id,
            bind_attempts: 1,
            released: false,
            answered_at: None,
            ids_given: 0,
        };
        first_sdp(offer.as_ref(), &mut media, self.cfg.rtp_timeout);
        let id = media.id;
        self.media_out.push_back(MediaCommand::Open {
            id,
            port,
            cfg: media.cfg.clone(),
        });

        let key = CallKey(self.next_key);
        self.next_key += 1;
        let ring = self.cfg.ring;
        let ringing = (!ring.is_zero()).then(|| incoming.ring(&contact));
        let ivr = IvrCall::new(
            now,
            self.cfg.wall,
            ivr,
            self.prompts.clone(),
            self.cfg.timing(),
            cdr,
        );
        let caller = UasLeg {
            invite_tx: tx,
            peer,
            contact,
            state: UasState::Proceeding {
                incoming,
                answer_at: now + ring,
            },
            bye_after_ack: false,
            bye_tx: None,
        };
        let call = Call {
            span: super::call_span(call_id.as_str()),
            call_id: call_id.clone(),
            started: now,
            legs: vec![Leg {
                id: LegId::CALLER,
                kind: LegKind::Caller(caller),
            }],
            media,
            ivr,
            end_reason: None,
            scheduled: None,
            queued: None,
            transfer: None,
            rtcp: Vec::new(),
        };
        self.sources.add(key, call.caller().peer.addr.ip());
        self.calls.insert(key, Box::new(call));
        self.by_call_id.insert(call_id, (key, LegId::CALLER));
        self.by_tx.insert(tx, (key, LegId::CALLER));
        self.by_media.insert(id, key);
        match ringing {
            None => self.answer(now, key),
            Some(ringing) => {
                self.respond(now, tx, ringing);
                self.schedule(key);
            }
        }
    }

    /// The engine could not bind the port of a call whose SDP has not left yet (ringing, or its 200
    /// still held, see [`Calls::poll_transmit`]): the call moves to another port, invisibly to the caller.
    /// False when it cannot (no port free, or tried too often).
    pub(crate) fn rebind(&mut self, now: Instant, key: CallKey) -> bool {
        let Some(call) = self.calls.get(&key) else {
            return false;
        };
        if call.media.bind_attempts >= MAX_BIND_ATTEMPTS {
            return false;
        }
        let Some(port) = self.ports.allocate(now) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return false;
        };
        let id = call.media.next_id();
        let UasState::Proceeding { incoming, .. } = &call.caller().state else {
            self.ports.release(port);
            return false;
        };
        // The offer was parsed and found usable when the call was accepted.
        let offer = sdp_body(incoming.invite()).ok().flatten();
        self.by_media.remove(&call.media.id);
        call.media.id = id;
        call.media.port = port;
        call.media.bind_attempts += 1;
        first_sdp(offer.as_ref(), &mut call.media, self.cfg.rtp_timeout);
        let cfg = call.media.cfg.clone();
        self.media_out
            .push_back(MediaCommand::Open { id, port, cfg });
        self.by_media.insert(id, key);
        true
    }

    /// Refuses an INVITE for which no call was created, and records it.
    pub(crate) fn reject_new(
        &mut self,
        now: Instant,
        tx: TxId,
        incoming: IncomingCall,
        reply: Reply,
        mut cdr: Cdr,
    ) {
        cdr.final_status = reply.code();
        cdr.end_reason = Some(if reply == Reply::RequestTerminated {
            EndReason::Cancel
        } else {
            EndReason::Error
        });
        cdr.end = self.cfg.wall.format(now);
        let response = incoming.reject(&reply);
        self.respond(now, tx, response);
        self.push_cdr(now, cdr);
    }

    /// Decides to answer: the 200 is built and handed to the endpoint when the shell next polls for
    /// transmits, so that the media commands polled before it (the shell binds the port while carrying
    /// out `Open`) can still move the call to another port if its port turns out busy.
    pub(crate) fn answer(&mut self, now: Instant, key: CallKey) {
        self.answering.push_back((now, key));
    }

    /// Sends the 200 of a call that is still proceeding.
    pub(crate) fn answer_now(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        // Polled from the shell, outside any event of the call: its span here too.
        let span = call.span.clone();
        let _in_call = span.enter();
        let sdp = call.media.local_sdp.clone();
        let leg = call.caller_mut();
        let state = std::mem::replace(&mut leg.state, UasState::Terminated);
        let UasState::Proceeding { incoming, .. } = state else {
            leg.state = state;
            return;
        };
        let (dialog, ok) = incoming.answer(&leg.contact, sdp);
        leg.state = UasState::Accepted { dialog };
        let tx = leg.invite_tx;
        call.media.answered_at = Some(now);
        call.ivr.handle(now, CallInput::Answered);
        self.respond(now, tx, ok);
        self.after_call(now, key);
    }

    /// Ends a call whose INVITE has no final response yet with `reply` (480, 487, 503 …).
    pub(crate) fn reject_call(&mut self, now: Instant, key: CallKey, reply: Reply) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let leg = call.caller_mut();
        let state = std::mem::replace(&mut leg.state, UasState::Terminated);
        let UasState::Proceeding { incoming, .. } = state else {
            leg.state = state;
            return;
        };
        let tx = leg.invite_tx;
        let response = incoming.reject(&reply);
        call.ivr.cdr_mut().final_status = reply.code();
        self.respond(now, tx, response);
        self.finish(now, key);
    }

    pub(crate) fn on_cancel(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !matches!(call.caller().state, UasState::Proceeding { .. }) {
            return; // the 200 crossed the CANCEL: the call goes on and is ended by BYE (RFC 3261 §9.2)
        }
        call.end_reason = Some(EndReason::Cancel);
        self.reject_call(now, key, Reply::RequestTerminated);
    }

    /// The address our Contact and SDP name for a request from `peer`: `--advertise-ip`, else the local
    /// address the request arrived on, else (a socket on the unspecified address that could not tell)
    /// the Request-URI host when it is an IP literal, else our Via address, else loopback.
    fn local_ip(&self, peer: &Peer, request: &Request) -> IpAddr {
        if let Some(ip) = self.cfg.advertise_ip {
            return ip;
        }
        if !peer.local.ip().is_unspecified() {
            return peer.local.ip();
        }
        if let Some(ip) = ip_literal(&request.uri.host) {
            return ip;
        }
        if !self.cfg.local.ip().is_unspecified() {
            return self.cfg.local.ip();
        }
        match peer.local.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }
}

/// Our Contact for a leg with `peer`: the address `ip` at the port the request arrived on, naming the
/// transport unless it is UDP (RFC 3261 §19.1.1 default), so the caller's ACK and BYE come back the
/// same way.
fn contact(peer: &Peer, ip: IpAddr) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let transport = match peer.transport {
        Transport::Udp => "",
        Transport::Tcp(_) => ";transport=tcp",
    };
    format!("<sip:helpline@{host}:{}{transport}>", peer.local.port())
}

/// Our first SDP for `media.port`: the answer to the INVITE's offer, or our offer when it had none
/// (then the answer comes in the ACK, RFC 3264 §5). The offer was checked usable already.
fn first_sdp(offer: Option<&SdpOffer>, media: &mut CallMedia, rtp_timeout: Duration) {
    let caps = MediaCaps::default();
    match offer.map(|o| sdp::negotiate(o, &caps)) {
        Some(Ok(plan)) => {
            media.cfg = media_config_from(&plan.negotiated(), rtp_timeout, media.session_id);
            let answer = plan.into_answer(media.ip, media.port, media.session_id, 1);
            media.local_sdp = answer.to_string();
            media.pending_offer = None;
        }
        Some(Err(_)) | None => {
            let offer = sdp::make_offer(
                &caps,
                media.ip,
                media.port,
                media.session_id,
                1,
                OUR_DTMF_PT,
            );
            media.cfg = media_config_unanswered(rtp_timeout, media.session_id);
            media.local_sdp = offer.to_string();
            media.pending_offer = Some(offer);
        }
    }
}
