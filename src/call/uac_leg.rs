//! What every UAC leg of a call shares, whoever it calls — an agent's phone (`agent_leg`) or the
//! external URI of a menu `transfer` (`transfer`): the far side's own media session and our SDP offer
//! on it, our INVITE (the caller's number in From and P-Asserted-Identity, the caller's context in
//! `X-Helpline-*` headers) and its sending, the ACK of a 2xx, the media bridge, BYE on the leg and the
//! answer to the far end's in-dialog requests.
//!
//! It decides nothing: who is called, when to give up and what a failure means are the callers'.
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use rand::Rng;

use crate::agent::QueueName;
use crate::call::invite::OUR_DTMF_PT;
use crate::call::leg::{LegId, UacState};
use crate::call::state::{media_config_from, media_config_unanswered, AgentMedia};
use crate::call::{CallKey, Calls, MediaCommand};
use crate::dialog::Dialog;
use crate::sdp::{self, MediaCaps, SdpAnswer};
use crate::sip::endpoint::{Endpoint, Peer, Transport, TxId};
use crate::sip::message::{Method, Request, Response, Uri};
use crate::sip::{CallId, Reply};

/// Ports an agent's or a transfer's side tries before it fails (the caller's leg tries as many).
const MAX_SIDE_BIND_ATTEMPTS: u32 = 4;

/// `order_id` → `Order-Id`: the header name part of a collected variable.
pub(crate) fn header_name(variable: &str) -> String {
    variable
        .split(['_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// An address as the host part of a URI (IPv6 in brackets).
pub(crate) fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// What every INVITE of one call's UAC legs carries.
pub(crate) struct UacContext {
    /// The caller, as From and P-Asserted-Identity name them.
    caller_uri: String,
    region: String,
    /// The queue, for an agent leg.
    queue: Option<QueueName>,
    language: String,
    variables: BTreeMap<String, String>,
    /// Our SDP offer for the far side.
    sdp: String,
    user_agent: String,
}

/// Our INVITE to `target`, typed (for the dialog and the ACK) — typing wants a Via, so it carries a
/// placeholder that the copy handed to the endpoint drops (the endpoint writes the real one). `None`
/// if it does not type (never for a contact the registrar accepted or a URI `check` accepted).
fn uac_invite(
    ctx: &UacContext,
    target: &Uri,
    from_tag: &str,
    call_id: &str,
    contact: &str,
) -> Option<Request> {
    let mut invite = Request::new(Method::Invite, target.clone());
    let h = &mut invite.headers;
    h.push("Via", "SIP/2.0/UDP 0.0.0.0;branch=z9hG4bK-kept");
    h.push("From", &format!("<{}>;tag={from_tag}", ctx.caller_uri));
    h.push("To", &format!("<{target}>"));
    h.push("Call-ID", call_id);
    h.push("CSeq", "1 INVITE");
    h.push("Max-Forwards", "70");
    h.push("Contact", contact);
    h.push("P-Asserted-Identity", &format!("<{}>", ctx.caller_uri));
    h.push("X-Helpline-Region", &ctx.region);
    if let Some(queue) = &ctx.queue {
        h.push("X-Helpline-Queue", queue.as_str());
    }
    h.push("X-Helpline-Language", &ctx.language);
    for (name, value) in &ctx.variables {
        h.push(&format!("X-Helpline-{}", header_name(name)), value);
    }
    h.push("User-Agent", &ctx.user_agent);
    h.push("Content-Type", "application/sdp");
    invite.body = ctx.sdp.clone().into_bytes();
    match invite.refresh_typed() {
        Ok(()) => Some(invite),
        Err(e) => {
            tracing::warn!(error = %e, "UAC INVITE did not build");
            None
        }
    }
}

/// An INVITE of ours that went out.
pub(crate) struct SentInvite {
    /// As typed (without the endpoint's Via).
    pub(crate) invite: Request,
    pub(crate) tx: TxId,
    /// Our Contact on the leg.
    pub(crate) contact: String,
}

/// Sends the ACK of a 2xx to our INVITE (RFC 3261 §13.2.2.4: outside the transaction, each
/// retransmission of the 2xx too) and returns the dialog the 2xx set up.
pub(crate) fn ack_2xx(
    endpoint: &mut Endpoint,
    user_agent: &str,
    invite: &Request,
    contact: &str,
    peer: Peer,
    response: &Response,
) -> Dialog {
    let dialog = Dialog::uac(invite, response);
    let ack = dialog.ack(invite.cseq().seq, contact, user_agent);
    endpoint.send_ack(peer, ack);
    dialog
}

/// Sends BYE on a confirmed UAC leg (the leg is then `Ending`); `None` when it is not confirmed.
pub(crate) fn send_uac_bye(
    endpoint: &mut Endpoint,
    now: Instant,
    user_agent: &str,
    state: &mut UacState,
    contact: &str,
    peer: Peer,
) -> Option<TxId> {
    let UacState::Confirmed { dialog } = state else {
        return None;
    };
    let bye = dialog.request(Method::Bye, contact, user_agent);
    *state = UacState::Ending;
    Some(endpoint.send_request(now, peer, bye))
}

/// The answer to a request from the far end inside a UAC leg's dialog, and whether it was its BYE
/// (the leg is then over); `None` when the request belongs to no confirmed dialog of the leg (answer
/// `481`). Anything but BYE is answered `200` and changes nothing.
pub(crate) fn answer_uac_in_dialog(
    state: &mut UacState,
    request: &Request,
) -> Option<(Response, bool)> {
    let UacState::Confirmed { dialog } = &*state else {
        return None;
    };
    if !dialog.matches(request) {
        return None;
    }
    let ok = dialog.respond(request, &Reply::Ok);
    let bye = request.method == Method::Bye;
    if bye {
        *state = UacState::Terminated;
    }
    Some((ok, bye))
}

impl Calls {
    /// The context a UAC leg of the call carries: the caller, the region (the queue's, for an agent
    /// leg), the language and collected variables, and our SDP offer on the far side's session.
    pub(crate) fn uac_context(
        &self,
        key: CallKey,
        queue: Option<&QueueName>,
        media: &AgentMedia,
    ) -> Option<UacContext> {
        let call = self.calls.get(&key)?;
        let (language, variables) = call.ivr.context();
        Some(UacContext {
            caller_uri: format!(
                "sip:{}@{}",
                call.caller()
                    .dialog()
                    .and_then(|d| d.remote.uri.user.clone())
                    .unwrap_or_else(|| "anonymous".to_owned()),
                host(call.media.ip)
            ),
            region: queue.map_or_else(|| call.ivr.region(), |q| q.region().to_owned()),
            queue: queue.cloned(),
            language,
            variables,
            sdp: media.offer.to_string(),
            user_agent: self.cfg.server_header.clone(),
        })
    }

    /// Sends our INVITE to `target` at `peer` as leg `leg` of the call, and files the leg's Call-ID
    /// and transaction under it. Our Contact names the local address `peer` is reached from and its
    /// transport. `None` if the INVITE does not build.
    pub(crate) fn send_uac_invite(
        &mut self,
        now: Instant,
        key: CallKey,
        leg: LegId,
        peer: Peer,
        target: &Uri,
        ctx: &UacContext,
    ) -> Option<SentInvite> {
        let ip = self.calls.get(&key)?.media.ip;
        let transport = match peer.transport {
            Transport::Udp => "",
            Transport::Tcp(_) => ";transport=tcp",
        };
        let contact = format!(
            "<sip:helpline@{}:{}{transport}>",
            host(ip),
            peer.local.port()
        );
        let (from_tag, id) = (self.endpoint.new_tag(), self.endpoint.new_tag());
        let call_id = format!("{id}@helpline");
        let invite = uac_invite(ctx, target, &from_tag, &call_id, &contact)?;
        // The endpoint's copy stays typed too (it builds the ACK of a non-2xx from it).
        let mut sent = invite.clone();
        sent.headers.remove("Via");
        let tx = self.endpoint.send_request(now, peer, sent);
        self.by_call_id
            .insert(CallId::from(call_id.as_str()), (key, leg));
        self.by_tx.insert(tx, (key, leg));
        Some(SentInvite {
            invite,
            tx,
            contact,
        })
    }

    /// Opens a media session for the far side of the call on a port of its own, with our SDP offer;
    /// `None` when no port is free.
    pub(crate) fn open_side_media(&mut self, now: Instant, key: CallKey) -> Option<AgentMedia> {
        let ip = self.calls.get(&key)?.media.ip;
        let port = self.ports.allocate(now)?;
        let Some(call) = self.calls.get_mut(&key) else {
            self.ports.release(port);
            return None;
        };
        let id = call.media.next_id();
        let session_id: u64 = self.rng.gen::<u64>() >> 1;
        let offer = sdp::make_offer(&MediaCaps::default(), ip, port, session_id, 1, OUR_DTMF_PT);
        self.media_out.push_back(MediaCommand::Open {
            id,
            port,
            cfg: media_config_unanswered(self.cfg.rtp_timeout, session_id),
        });
        self.by_media.insert(id, key);
        Some(AgentMedia {
            id,
            port,
            offer,
            session_id,
            sdp_version: 1,
            bind_attempts: 0,
        })
    }

    /// Side `failed`'s port could not be bound before any INVITE named it: the side's session on
    /// another port, while tries remain (`None` when none do, or no port is free).
    pub(crate) fn reopen_side_media(
        &mut self,
        now: Instant,
        key: CallKey,
        failed: &AgentMedia,
    ) -> Option<AgentMedia> {
        if failed.bind_attempts + 1 >= MAX_SIDE_BIND_ATTEMPTS {
            return None;
        }
        let mut media = self.open_side_media(now, key)?;
        tracing::debug!(
            port = failed.port,
            "rtp port busy: the call's far side moves to another one"
        );
        media.bind_attempts = failed.bind_attempts + 1;
        Some(media)
    }

    /// The far side answered with `response`: when its SDP answer is usable, its session takes the
    /// negotiated media and `true` comes back; otherwise nothing changes.
    pub(crate) fn negotiate_side(&mut self, side: &AgentMedia, response: &Response) -> bool {
        let answer = std::str::from_utf8(&response.body)
            .ok()
            .and_then(|s| SdpAnswer::from_sdp_string(s).ok());
        let Some(Ok(negotiated)) = answer.map(|a| sdp::accept_answer(&side.offer, &a)) else {
            return false;
        };
        let cfg = media_config_from(&negotiated, self.cfg.rtp_timeout, side.session_id);
        self.media_out
            .push_back(MediaCommand::Configure { id: side.id, cfg });
        true
    }

    /// The far side is answered and negotiated: the caller's prompts stop and the two sessions are
    /// bridged.
    pub(crate) fn bridge_side(&mut self, key: CallKey, side: &AgentMedia) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let caller_media = call.media.id;
        call.ivr.bridged();
        self.media_out
            .push_back(MediaCommand::Stop { id: caller_media });
        self.media_out.push_back(MediaCommand::Bridge {
            a: caller_media,
            b: side.id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_become_header_names() {
        assert_eq!(header_name("order_id"), "Order-Id");
        assert_eq!(header_name("ticket_id"), "Ticket-Id");
        assert_eq!(header_name("pin"), "Pin");
    }
}
