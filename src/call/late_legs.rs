//! Agent and transfer legs that outlive their call: when a call ends while one of its INVITEs (to an
//! agent's phone, or to a transfer's URI) is still unanswered (being cancelled) or its BYE is still out, the leg is kept here until its
//! transaction is over, so that whatever the phone still sends gets the right answer — a 2xx is ACKed
//! and then BYE'd (RFC 3261 §13.2.2.4: a late or forked 2xx), a first 1xx gets the CANCEL that waited
//! for it (§9.1), a retransmitted 2xx is ACKed again. No agent phone is left in a half-call.
//!
//! It keeps no call, presence or CDR (those ended with the call). Each leg is dropped at a non-2xx
//! final response or Timer B, else 64·T1 after its last change (after our BYE, it still ACKs a
//! retransmitted 2xx until then).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::call::leg::{TransferLeg, UacLeg, UacState};
use crate::call::Calls;
use crate::dialog::Dialog;
use crate::sip::endpoint::Peer;
use crate::sip::endpoint::TxId;
use crate::sip::message::Request;
use crate::sip::message::{Method, Response};

/// What a late leg keeps of an agent or transfer leg: its far end (for the log) and its SIP state.
#[derive(Debug)]
pub(crate) struct LateUac {
    /// The agent's ID or the transfer's URI.
    who: String,
    invite: Request,
    invite_tx: TxId,
    peer: Peer,
    contact: String,
    state: UacState,
    bye_tx: Option<TxId>,
}

impl From<UacLeg> for LateUac {
    fn from(l: UacLeg) -> Self {
        LateUac {
            who: l.agent.to_string(),
            invite: l.invite,
            invite_tx: l.invite_tx,
            peer: l.peer,
            contact: l.contact,
            state: l.state,
            bye_tx: l.bye_tx,
        }
    }
}

impl From<TransferLeg> for LateUac {
    fn from(l: TransferLeg) -> Self {
        LateUac {
            who: l.uri,
            invite: l.invite,
            invite_tx: l.invite_tx,
            peer: l.peer,
            contact: l.contact,
            state: l.state,
            bye_tx: l.bye_tx,
        }
    }
}

/// One leg without a call, and when it is given up.
#[derive(Debug)]
struct LateLeg {
    uac: LateUac,
    until: Instant,
}

/// The legs, by their INVITE's transaction; their BYEs' transactions point back to it.
#[derive(Debug, Default)]
pub(crate) struct LateLegs {
    legs: HashMap<TxId, LateLeg>,
    byes: HashMap<TxId, TxId>,
}

impl LateLegs {
    /// When the oldest leg is given up.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.legs.values().map(|l| l.until).min()
    }

    /// Legs kept (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.legs.len()
    }

    fn remove(&mut self, invite_tx: TxId) {
        if let Some(leg) = self.legs.remove(&invite_tx) {
            if let Some(bye) = leg.uac.bye_tx {
                self.byes.remove(&bye);
            }
        }
    }
}

impl Calls {
    /// How long a late leg may wait for its phone: a transaction's lifetime.
    fn late_leg_grace(&self) -> Duration {
        self.cfg.timers.t1 * 64
    }

    /// The call of `uac` is gone: keep the leg if its phone may still answer or our BYE is out.
    pub(crate) fn adopt_late_leg(&mut self, now: Instant, uac: impl Into<LateUac>) {
        let mut uac: LateUac = uac.into();
        match uac.state {
            UacState::Terminated => return,
            // A leg whose call ends is cancelled first (`leave_queue`); one that was not is now.
            UacState::Calling { provisional } => {
                uac.state = UacState::Cancelling { sent: provisional };
                if provisional {
                    self.endpoint.cancel(now, uac.invite_tx);
                }
            }
            UacState::Cancelling { .. } | UacState::Ending | UacState::Confirmed { .. } => {}
        }
        let until = now + self.late_leg_grace();
        let invite_tx = uac.invite_tx;
        if let Some(bye) = uac.bye_tx {
            self.late.byes.insert(bye, invite_tx);
        }
        self.late.legs.insert(invite_tx, LateLeg { uac, until });
        if matches!(
            self.late.legs.get(&invite_tx).map(|l| &l.uac.state),
            Some(UacState::Confirmed { .. })
        ) {
            self.bye_late_leg(now, invite_tx, None);
        }
    }

    /// A response that no call claims: a late leg's, or nobody's. Returns whether a late leg took it.
    pub(crate) fn on_late_response(&mut self, now: Instant, tx: TxId, response: &Response) -> bool {
        if self.late.byes.contains_key(&tx) {
            if response.code >= 200 {
                // The dialog is over; the leg stays until its deadline to ACK a retransmitted 2xx.
                self.late.byes.remove(&tx);
            }
            return true;
        }
        let grace = self.late_leg_grace();
        let Some(leg) = self.late.legs.get_mut(&tx) else {
            return false;
        };
        match response.code {
            100 => {}
            101..=199 => {
                if let UacState::Cancelling { sent: false } = leg.uac.state {
                    leg.uac.state = UacState::Cancelling { sent: true };
                    leg.until = now + grace;
                    tracing::debug!(
                        "late 1xx on a leg without a call: the CANCEL that waited goes out"
                    );
                    self.endpoint.cancel(now, tx);
                }
            }
            200..=299 => self.on_late_2xx(now, tx, response),
            // The endpoint ACKs a non-2xx final itself: the leg is over.
            _ => self.late.remove(tx),
        }
        true
    }

    /// A 2xx on a late leg: ACK it (every retransmission too); the first one is then hung up.
    fn on_late_2xx(&mut self, now: Instant, tx: TxId, response: &Response) {
        let user_agent = self.cfg.server_header.clone();
        let Some(leg) = self.late.legs.get_mut(&tx) else {
            return;
        };
        let dialog = Dialog::uac(&leg.uac.invite, response);
        let ack = dialog.ack(leg.uac.invite.cseq().seq, &leg.uac.contact, &user_agent);
        self.endpoint.send_ack(leg.uac.peer, ack);
        if matches!(leg.uac.state, UacState::Ending) {
            return; // a retransmission: our BYE is already out
        }
        tracing::info!(far_end = %leg.uac.who, "answered after the call ended: ACK and BYE");
        self.bye_late_leg(now, tx, Some(dialog));
    }

    /// Sends BYE on a late leg, in `dialog` (a fresh 2xx's) or in the leg's own confirmed one.
    fn bye_late_leg(&mut self, now: Instant, invite_tx: TxId, dialog: Option<Dialog>) {
        let user_agent = self.cfg.server_header.clone();
        let grace = self.late_leg_grace();
        let Some(leg) = self.late.legs.get_mut(&invite_tx) else {
            return;
        };
        let state = std::mem::replace(&mut leg.uac.state, UacState::Ending);
        let mut dialog = match (dialog, state) {
            (Some(d), _) => d,
            (None, UacState::Confirmed { dialog }) => *dialog,
            (None, other) => {
                leg.uac.state = other;
                return;
            }
        };
        let bye = dialog.request(Method::Bye, &leg.uac.contact, &user_agent);
        let bye_tx = self.endpoint.send_request(now, leg.uac.peer, bye);
        leg.uac.bye_tx = Some(bye_tx);
        leg.until = now + grace;
        self.late.byes.insert(bye_tx, invite_tx);
    }

    /// A client transaction timed out with no call claiming it: a late leg's INVITE (Timer B: the
    /// phone never answered) or BYE (the leg then waits for its deadline like an answered one).
    pub(crate) fn on_late_timeout(&mut self, tx: TxId) {
        if self.late.byes.remove(&tx).is_none() {
            self.late.remove(tx);
        }
    }

    /// Gives up the legs whose phones never finished.
    pub(crate) fn late_legs_timeout(&mut self, now: Instant) {
        if self.late.poll_timeout().is_some_and(|at| at <= now) {
            let expired: Vec<TxId> = self
                .late
                .legs
                .iter()
                .filter(|(_, l)| l.until <= now)
                .map(|(tx, _)| *tx)
                .collect();
            for tx in expired {
                tracing::debug!("leg without a call given up");
                self.late.remove(tx);
            }
        }
    }
}
