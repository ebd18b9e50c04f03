//! A menu `transfer` to an external SIP URI (an existing contact centre): helpline, as a B2BUA, calls
//! the URI as a UAC leg of the call exactly as it rings an agent's phone (`uac_leg`: our INVITE with
//! the caller's number in From and P-Asserted-Identity and the caller's context in `X-Helpline-*`
//! headers, an SDP offer on a far-side media session of its own), ACKs a 2xx and bridges the two
//! sessions; either side's BYE ends the other. A refusal (3xx–6xx), no response at all (Timer B) or no
//! answer within the ring timeout (the queue's default, 15 s; the INVITE is then cancelled) plays
//! `transfer-failed` to the caller, who is then released; a caller who hangs up while it rings gets
//! the INVITE cancelled. The CDR's `transfer_result` and `transfer_status` say how it went.
//!
//! It does not resolve names or open TCP connections: the URI is an IP literal dialed over UDP, which
//! `helpline check` enforces (`ivr::transfer`).
use std::time::{Duration, Instant};

use crate::call::cdr::{EndReason, TransferResult};
use crate::call::leg::{Leg, LegId, LegKind, TransferLeg, UacState};
use crate::call::state::TransferSide;
use crate::call::uac_leg::{ack_2xx, answer_uac_in_dialog, send_uac_bye};
use crate::call::{CallKey, Calls, MediaCommand};
use crate::ivr::transfer::transfer_target;
use crate::queue::QueueConfig;
use crate::sip::endpoint::{Peer, Transport, TxId};
use crate::sip::message::{Request, Response};
use crate::sip::Reply;

/// The transfer leg's number (a call is transferred at most once: the IVR is over).
const TRANSFER_LEG: LegId = LegId(1);

/// How long the far end may ring before the transfer is given up: an agent's ring timeout.
fn ring_timeout() -> Duration {
    QueueConfig::default().ring_timeout
}

/// Moves a ringing UAC leg to cancelling; true when the CANCEL may go out now (a provisional response
/// came, RFC 3261 §9.1), false when it waits for one (or the leg no longer rings).
fn start_cancel(state: &mut UacState) -> bool {
    match *state {
        UacState::Calling { provisional } => {
            *state = UacState::Cancelling { sent: provisional };
            provisional
        }
        _ => false,
    }
}

impl Calls {
    /// Whether `leg` of the call is its transfer leg.
    pub(crate) fn is_transfer_leg(&self, key: CallKey, leg: LegId) -> bool {
        leg != LegId::CALLER && self.calls.get(&key).is_some_and(|c| c.is_transfer_leg(leg))
    }

    /// The IVR transferred the caller to `uri`: opens the far side's media session; our INVITE goes
    /// once the shell has bound its port (`dial_when_bound`), so a busy one is replaced first.
    pub(crate) fn start_transfer(&mut self, now: Instant, key: CallKey, uri: &str) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.transfer = Some(Box::new(TransferSide {
            leg: None,
            media: None,
            ring_until: None,
            answered: None,
        }));
        if let Err(e) = transfer_target(uri) {
            // `check` refuses such URIs, so only a menu compiled without it gets here.
            tracing::warn!(error = %e, "transfer uri cannot be dialed");
            return self.transfer_failed(now, key, TransferResult::Failed, None);
        }
        let Some(media) = self.open_side_media(now, key) else {
            tracing::warn!("no RTP port free for the transfer");
            return self.transfer_failed(now, key, TransferResult::Failed, None);
        };
        if let Some(side) = self.calls.get_mut(&key).and_then(|c| c.transfer.as_mut()) {
            side.media = Some(media);
        }
        self.transfers_waiting_for_port
            .push_back((now, key, uri.into()));
    }

    /// Dials the transfers whose far-side port the shell has bound (its `Open` is no longer in
    /// `media_out`); one whose call ended or whose transfer failed meanwhile is dropped.
    pub(crate) fn dial_when_bound(&mut self) {
        for _ in 0..self.transfers_waiting_for_port.len() {
            let Some((at, key, uri)) = self.transfers_waiting_for_port.pop_front() else {
                return;
            };
            let side = self.calls.get(&key).and_then(|c| c.transfer.as_ref());
            let Some(media) = side
                .filter(|t| t.leg.is_none())
                .and_then(|t| t.media.as_ref())
            else {
                continue;
            };
            let id = media.id;
            let unbound = self
                .media_out
                .iter()
                .any(|c| matches!(c, MediaCommand::Open { id: open, .. } if *open == id));
            if unbound {
                self.transfers_waiting_for_port.push_back((at, key, uri));
            } else {
                self.dial_transfer(at, key, &uri);
            }
        }
    }

    /// Sends our INVITE to the transfer's URI, with the offer on the far side's (bound) port.
    fn dial_transfer(&mut self, now: Instant, key: CallKey, uri: &str) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let local = call.caller().peer.local;
        let Some(media) = call.transfer.as_ref().and_then(|t| t.media.clone()) else {
            return;
        };
        let Ok(target) = transfer_target(uri) else {
            return self.transfer_failed(now, key, TransferResult::Failed, None);
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: target.addr,
            local,
        };
        let sent = self
            .uac_context(key, None, &media)
            .and_then(|ctx| self.send_uac_invite(now, key, TRANSFER_LEG, peer, &target.uri, &ctx));
        let Some(sent) = sent else {
            return self.transfer_failed(now, key, TransferResult::Failed, None);
        };
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.legs.push(Leg {
            id: TRANSFER_LEG,
            kind: LegKind::Transfer(TransferLeg {
                uri: uri.to_owned(),
                invite: sent.invite,
                invite_tx: sent.tx,
                peer,
                contact: sent.contact,
                state: UacState::Calling { provisional: false },
                bye_tx: None,
            }),
        });
        if let Some(side) = call.transfer.as_mut() {
            side.leg = Some(TRANSFER_LEG);
            side.ring_until = Some(now + ring_timeout());
        }
        tracing::info!(call_id = %call.call_id, "transferring the caller");
        self.schedule(key);
    }

    /// A response on the transfer leg: our BYE's, or our INVITE's.
    pub(crate) fn on_transfer_response(
        &mut self,
        now: Instant,
        key: CallKey,
        tx: TxId,
        response: &Response,
    ) {
        let Some(leg) = self.calls.get_mut(&key).and_then(|c| c.transfer_leg_mut()) else {
            return;
        };
        if leg.invite_tx != tx {
            return; // our BYE's answer: nothing waits for it
        }
        match response.code {
            // 100 counts too: a contact centre's proxy may send nothing else for a long while, and
            // our CANCEL must be able to go out at the ring timeout (RFC 3261 §9.1).
            100..=199 => match &mut leg.state {
                UacState::Calling { provisional } => *provisional = true,
                UacState::Cancelling { sent } if !*sent => {
                    *sent = true;
                    self.endpoint.cancel(now, tx);
                }
                _ => {}
            },
            200..=299 => self.on_transfer_answer(now, key, response),
            code => {
                let was_ringing = leg.is_ringing();
                leg.state = UacState::Terminated;
                self.by_tx.remove(&tx);
                if was_ringing {
                    tracing::info!(code, "the transfer was refused");
                    self.transfer_failed(now, key, TransferResult::Rejected, Some(code));
                }
            }
        }
    }

    /// Timer B on the transfer INVITE: nothing came back from the URI.
    pub(crate) fn on_transfer_timeout(&mut self, now: Instant, key: CallKey, tx: TxId) {
        let Some(leg) = self.calls.get_mut(&key).and_then(|c| c.transfer_leg_mut()) else {
            return;
        };
        if leg.invite_tx != tx {
            return;
        }
        let was_ringing = leg.is_ringing();
        leg.state = UacState::Terminated;
        if was_ringing {
            tracing::info!("the transfer's far end never answered our INVITE");
            self.transfer_failed(now, key, TransferResult::Unreachable, None);
        }
    }

    /// The far end rang too long: CANCEL, and the caller is released.
    pub(crate) fn transfer_ring_timeout(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(side) = call.transfer.as_mut() {
            side.ring_until = None;
        }
        let Some(leg) = call.transfer_leg_mut() else {
            return;
        };
        if !leg.is_ringing() {
            return;
        }
        if start_cancel(&mut leg.state) {
            self.endpoint.cancel(now, leg.invite_tx);
        }
        tracing::info!("the transfer was not answered in time: cancelled");
        self.transfer_failed(now, key, TransferResult::NoAnswer, None);
    }

    /// A 2xx to the transfer INVITE: ACK it (each retransmission too); while it still rings, bridge the
    /// caller to it; after we gave up on it (cancelled, the 2xx crossed the CANCEL), hang it up.
    fn on_transfer_answer(&mut self, now: Instant, key: CallKey, response: &Response) {
        let user_agent = self.cfg.server_header.clone();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(leg) = call.transfer_leg_mut() else {
            return;
        };
        let dialog = ack_2xx(
            &mut self.endpoint,
            &user_agent,
            &leg.invite,
            &leg.contact,
            leg.peer,
            response,
        );
        if matches!(leg.state, UacState::Confirmed { .. } | UacState::Ending) {
            return; // a retransmission: ACKed again, nothing else
        }
        let ringing = leg.is_ringing();
        leg.state = UacState::Confirmed {
            dialog: Box::new(dialog),
        };
        if !ringing {
            tracing::info!("the transfer answered after it was given up: hanging it up");
            return self.bye_transfer_leg(now, key);
        }
        let Some(media) = call.transfer.as_ref().and_then(|t| t.media.clone()) else {
            return;
        };
        if !self.negotiate_side(&media, response) {
            // Bridging would leave both sides in silence: the transfer failed, like a 488.
            tracing::warn!("the transfer's 200 carried no usable SDP answer: hanging it up");
            self.bye_transfer_leg(now, key);
            return self.transfer_failed(now, key, TransferResult::Failed, Some(response.code));
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let cdr = call.ivr.cdr_mut();
        cdr.transfer_result = Some(TransferResult::Answered);
        cdr.transfer_status = Some(response.code);
        if let Some(side) = call.transfer.as_mut() {
            side.ring_until = None;
            side.answered = Some(now);
        }
        self.bridge_side(key, &media);
        tracing::info!("the transfer answered: bridged");
        self.schedule(key);
    }

    /// Sends BYE on the confirmed transfer leg.
    fn bye_transfer_leg(&mut self, now: Instant, key: CallKey) {
        let user_agent = self.cfg.server_header.clone();
        let Some(leg) = self.calls.get_mut(&key).and_then(|c| c.transfer_leg_mut()) else {
            return;
        };
        let endpoint = &mut self.endpoint;
        let Some(tx) = send_uac_bye(
            endpoint,
            now,
            &user_agent,
            &mut leg.state,
            &leg.contact,
            leg.peer,
        ) else {
            return;
        };
        leg.bye_tx = Some(tx);
        self.by_tx.insert(tx, (key, TRANSFER_LEG));
    }

    /// A request from the far end inside the transfer leg's dialog: BYE ends the call (the caller gets
    /// BYE); anything else is answered and changes nothing.
    pub(crate) fn on_transfer_in_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        key: CallKey,
        request: &Request,
    ) {
        let stranger = Reply::CallDoesNotExist.to_response(request, None);
        let Some(leg) = self.calls.get_mut(&key).and_then(|c| c.transfer_leg_mut()) else {
            return self.respond(now, tx, stranger);
        };
        let Some((ok, bye)) = answer_uac_in_dialog(&mut leg.state, request) else {
            return self.respond(now, tx, stranger);
        };
        self.respond(now, tx, ok);
        if bye {
            tracing::info!("the transfer's far end hung up: ending the caller's leg");
            self.hangup(now, key, EndReason::TransferBye);
        }
    }

    /// The transfer did not connect: the CDR says how, the caller hears `transfer-failed` and is
    /// released. Only the first outcome counts.
    fn transfer_failed(
        &mut self,
        now: Instant,
        key: CallKey,
        result: TransferResult,
        status: Option<u16>,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(side) = call.transfer.as_mut() {
            side.ring_until = None;
        }
        let cdr = call.ivr.cdr_mut();
        if cdr.transfer_result.is_some() {
            return;
        }
        cdr.transfer_result = Some(result);
        cdr.transfer_status = status;
        call.ivr.transfer_failed();
        self.after_call(now, key);
    }

    /// The transfer's far-side port could not be bound. Before the INVITE, the side moves to another
    /// port (a few tries); otherwise the INVITE is cancelled, or a far end that answered gets BYE, and
    /// the transfer fails as for a refusal (`transfer-failed`).
    pub(crate) fn on_transfer_side_bind_failed(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(side) = call.transfer.as_mut() else {
            return;
        };
        let dialed = side.leg.is_some();
        let Some(old) = side.media.take() else {
            return;
        };
        self.by_media.remove(&old.id);
        if let Some(media) = (!dialed)
            .then(|| self.reopen_side_media(now, key, &old))
            .flatten()
        {
            if let Some(side) = self.calls.get_mut(&key).and_then(|c| c.transfer.as_mut()) {
                side.media = Some(media);
            }
            return;
        }
        tracing::warn!(
            port = old.port,
            "transfer's rtp port could not be bound: the transfer fails"
        );
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(leg) = call.transfer_leg_mut() {
            match leg.state {
                UacState::Calling { .. } => {
                    if start_cancel(&mut leg.state) {
                        self.endpoint.cancel(now, leg.invite_tx);
                    }
                }
                UacState::Confirmed { .. } => self.bye_transfer_leg(now, key),
                UacState::Cancelling { .. } | UacState::Ending | UacState::Terminated => {}
            }
        }
        self.transfer_failed(now, key, TransferResult::Failed, None);
    }

    /// The call is ending: a transfer leg still ringing is cancelled (the caller abandoned it), an
    /// answered one gets BYE.
    pub(crate) fn leave_transfer(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.transfer.is_none() {
            return;
        }
        let Some(leg) = call.transfer_leg_mut() else {
            return;
        };
        match leg.state {
            UacState::Calling { .. } => {
                if start_cancel(&mut leg.state) {
                    self.endpoint.cancel(now, leg.invite_tx);
                }
                tracing::info!("the caller hung up while the transfer rang: cancelled");
                call.ivr
                    .cdr_mut()
                    .transfer_result
                    .get_or_insert(TransferResult::Abandoned);
            }
            UacState::Confirmed { .. } => self.bye_transfer_leg(now, key),
            UacState::Cancelling { .. } | UacState::Ending | UacState::Terminated => {}
        }
    }
}
