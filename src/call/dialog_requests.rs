//! Requests inside a call's dialog — the ACK (matched by Call-ID and both tags), BYE (also in the early
//! dialog our 180 opened, RFC 3261 §15), INFO keys, re-INVITE/UPDATE (hold, unhold, codec or address
//! change) and OPTIONS — for the call registry. New calls are in `invite`.
use std::time::Instant;

use crate::call::cdr::EndReason;
use crate::call::ivr_call::CallInput;
use crate::call::leg::{LegId, LegKind, UasState};
use crate::call::state::{media_config_from, sdp_body};
use crate::call::{CallKey, Calls, MediaCommand};
use crate::dialog::uas::add_capabilities;
use crate::media::dtmf::info::parse_info_body;
use crate::sdp::{self, MediaCaps, SdpAnswer};
use crate::sip::endpoint::TxId;
use crate::sip::message::{Method, Request, Response};
use crate::sip::{CallId, Reply};

fn is_dtmf_type(content_type: &str) -> bool {
    content_type
        .to_ascii_lowercase()
        .starts_with("application/dtmf")
}

impl Calls {
    fn leg_of(&self, request: &Request) -> Option<(CallKey, LegId)> {
        self.by_call_id
            .get(&CallId::from(request.call_id()))
            .copied()
    }

    /// The ACK of a 2xx: confirms the caller's leg (and carries the SDP answer when the INVITE had no
    /// offer, RFC 3264 §5). Matched by Call-ID and both tags; an ACK of no dialog is ignored (ACKs get no
    /// response).
    pub(crate) fn on_ack(&mut self, now: Instant, request: &Request) {
        let Some((key, _)) = self.leg_of(request) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if !call.caller().dialog().is_some_and(|d| d.matches(request)) {
            tracing::debug!(call_id = %call.call_id, "ACK with the tags of no dialog ignored");
            return;
        }
        let mut usable = true;
        if let Some(offer) = call.media.pending_offer.take() {
            let answer = std::str::from_utf8(&request.body)
                .ok()
                .and_then(|s| SdpAnswer::from_sdp_string(s).ok());
            match answer.map(|a| sdp::accept_answer(&offer, &a)) {
                Some(Ok(negotiated)) => {
                    call.media.cfg =
                        media_config_from(&negotiated, self.cfg.rtp_timeout, call.media.session_id);
                    self.media_out.push_back(MediaCommand::Configure {
                        id: call.media.id,
                        cfg: call.media.cfg.clone(),
                    });
                }
                _ => usable = false,
            }
        }
        let leg = call.caller_mut();
        let state = std::mem::replace(&mut leg.state, UasState::Terminated);
        leg.state = match state {
            UasState::Accepted { dialog } => UasState::Confirmed { dialog },
            other => other,
        };
        if std::mem::take(&mut leg.bye_after_ack) {
            // A hang-up (drain, timeout) waited for this ACK so the BYE could not overtake it.
            self.send_bye(now, key);
            return;
        }
        if !usable {
            tracing::info!(call_id = %call.call_id, "ACK carried no usable SDP answer: releasing");
            self.hangup(now, key, EndReason::Error);
            return;
        }
        call.ivr.handle(now, CallInput::Acked);
        self.after_call(now, key);
    }

    /// A request with a To tag (RFC 3261 §12.2.2).
    pub(crate) fn on_in_dialog(&mut self, now: Instant, tx: TxId, request: Request) {
        let stranger = Reply::CallDoesNotExist.to_response(&request, None);
        let Some((key, leg_id)) = self.leg_of(&request) else {
            return self.respond(now, tx, stranger);
        };
        if self.is_transfer_leg(key, leg_id) {
            return self.on_transfer_in_dialog(now, tx, key, &request);
        }
        if leg_id != LegId::CALLER {
            return self.on_agent_in_dialog(now, tx, key, leg_id, &request);
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return self.respond(now, tx, stranger);
        };
        if !call.caller().matches(&request) {
            return self.respond(now, tx, stranger);
        }
        if let UasState::Proceeding { incoming, .. } = &call.caller().state {
            if request.method != Method::Bye {
                return self.respond(now, tx, stranger);
            }
            // RFC 3261 §15: a BYE in the early dialog ends it: 200 to the BYE, 487 to the INVITE.
            let ok = Reply::Ok.to_response(&request, Some(incoming.local_tag().as_str()));
            call.end_reason = Some(EndReason::CallerBye);
            self.respond(now, tx, ok);
            return self.reject_call(now, key, Reply::RequestTerminated);
        }
        let call_id = call.call_id.clone();
        // Split borrows: the leg's dialog and the call's IVR side are used together below.
        let LegKind::Caller(leg) = &mut call.legs[0].kind else {
            return self.respond(now, tx, stranger);
        };
        let Some(dialog) = leg.dialog_mut() else {
            return self.respond(now, tx, stranger);
        };
        if let Err(err) = dialog.check_remote_cseq(&request) {
            // RFC 3261 §12.2.2: a lower CSeq is answered 500.
            tracing::debug!(%call_id, %err, "in-dialog request out of order");
            let reply = Reply::ServerInternalError {
                why: err.to_string(),
            };
            let response = dialog.respond(&request, &reply);
            return self.respond(now, tx, response);
        }
        call.ivr.handle(now, CallInput::SipActivity);
        match request.method {
            Method::Bye => {
                let ok = dialog.respond(&request, &Reply::Ok);
                leg.state = UasState::Terminated;
                call.end_reason.get_or_insert(EndReason::CallerBye);
                self.respond(now, tx, ok);
                self.finish(now, key);
            }
            Method::Info => self.on_info(now, tx, key, &request),
            Method::Invite | Method::Update => {
                let response = self.renegotiate(key, &request);
                self.respond(now, tx, response);
            }
            Method::Options => {
                let mut ok = dialog.respond(&request, &Reply::Ok);
                add_capabilities(&mut ok);
                self.respond(now, tx, ok);
            }
            _ => {
                let response = dialog.respond(&request, &Reply::MethodNotAllowed);
                self.respond(now, tx, response);
            }
        }
    }

    /// SIP INFO: a key (`application/dtmf-relay` or `application/dtmf`), an empty keep-alive, or an Info
    /// Package we do not support (RFC 6086 §4.2.2: 415).
    fn on_info(&mut self, now: Instant, tx: TxId, key: CallKey, request: &Request) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let content_type = request.content_type().unwrap_or_default();
        let reply = match parse_info_body(content_type, &request.body) {
            Ok(digit) => {
                call.ivr.handle(now, CallInput::InfoDigit(digit));
                Reply::Ok
            }
            Err(err) if is_dtmf_type(content_type) => {
                tracing::debug!(call_id = %call.call_id, %err, "bad DTMF INFO body");
                Reply::BadRequest {
                    why: format!("Bad DTMF body: {err}"),
                }
            }
            Err(_) if request.body.is_empty() => Reply::Ok,
            Err(_) => Reply::UnsupportedInfoBody,
        };
        let Some(dialog) = call.caller().dialog() else {
            return;
        };
        let response = dialog.respond(request, &reply);
        self.respond(now, tx, response);
        self.after_call(now, key);
    }

    /// A re-INVITE or UPDATE: hold, unhold, codec or address change, through the same negotiation as the
    /// first offer. A failed offer leaves the session as it was (RFC 3261 §14.2: 488, call goes on).
    fn renegotiate(&mut self, key: CallKey, request: &Request) -> Response {
        let Some(call) = self.calls.get_mut(&key) else {
            return Reply::CallDoesNotExist.to_response(request, None);
        };
        let LegKind::Caller(leg) = &call.legs[0].kind else {
            return Reply::CallDoesNotExist.to_response(request, None);
        };
        let Some(dialog) = leg.dialog() else {
            return Reply::CallDoesNotExist.to_response(request, None);
        };
        let media = &mut call.media;
        let offer = match sdp_body(request) {
            Ok(offer) => offer,
            Err(reply) => return dialog.respond(request, &reply),
        };
        let mut response = match offer {
            Some(offer) => match sdp::negotiate(&offer, &MediaCaps::default()) {
                Ok(plan) => {
                    media.sdp_version += 1;
                    media.cfg = media_config_from(
                        &plan.negotiated(),
                        self.cfg.rtp_timeout,
                        media.session_id,
                    );
                    let answer =
                        plan.into_answer(media.ip, media.port, media.session_id, media.sdp_version);
                    media.local_sdp = answer.to_string();
                    self.media_out.push_back(MediaCommand::Configure {
                        id: media.id,
                        cfg: media.cfg.clone(),
                    });
                    let mut ok = dialog.respond(request, &Reply::Ok);
                    ok.headers.push("Content-Type", "application/sdp");
                    ok.body = media.local_sdp.clone().into_bytes();
                    ok
                }
                Err(err) => dialog.respond(
                    request,
                    &Reply::NotAcceptableHere {
                        why: err.to_string(),
                    },
                ),
            },
            None if request.method == Method::Invite => {
                // A re-INVITE without SDP asks for our offer; the answer comes in the ACK (RFC 3264 §5).
                media.sdp_version += 1;
                let offer = sdp::make_offer(
                    &MediaCaps::default(),
                    media.ip,
                    media.port,
                    media.session_id,
                    media.sdp_version,
                    media.cfg.dtmf_payload_type.unwrap_or(101),
                );
                media.local_sdp = offer.to_string();
                media.pending_offer = Some(offer);
                let mut ok = dialog.respond(request, &Reply::Ok);
                ok.headers.push("Content-Type", "application/sdp");
                ok.body = media.local_sdp.clone().into_bytes();
                ok
            }
            None => dialog.respond(request, &Reply::Ok),
        };
        response.headers.push("Contact", &leg.contact);
        response
    }
}
