//! One SIP leg of a call: one dialog with one party — the caller's (UAS: [`UasLeg`]) and, once the
//! caller is offered to an agent, one per registered contact of that agent (UAC: [`UacLeg`], helpline
//! sends the INVITE through `Endpoint::send_request` and gets `SipEvent::Response`), or, after a menu
//! `transfer`, one to the external URI (UAC: [`TransferLeg`]). It holds the leg's SIP state; it does not
//! send anything (the call registry does).
use std::time::Instant;

use crate::dialog::uas::IncomingCall;
use crate::dialog::Dialog;
use crate::sip::endpoint::{Peer, TxId};
use crate::sip::message::Request;

/// A leg's number within its call; the caller's leg is [`LegId::CALLER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl LegId {
    /// The caller's leg, created by the INVITE that created the call.
    pub const CALLER: LegId = LegId(0);
}

/// One leg of a call.
#[derive(Debug)]
pub struct Leg {
    /// Its number within the call.
    pub id: LegId,
    /// Which side of which dialog.
    pub kind: LegKind,
}

/// What kind of leg, with its state.
#[derive(Debug)]
pub enum LegKind {
    /// The caller's leg: helpline is the UAS.
    Caller(UasLeg),
    /// A leg to one phone of an agent: helpline is the UAC.
    Agent(UacLeg),
    /// A leg to the external SIP URI of a menu `transfer` (another contact centre): helpline is the UAC.
    Transfer(TransferLeg),
}

/// Where an agent leg is (RFC 3261 §13.2).
#[derive(Debug)]
pub enum UacState {
    /// Our INVITE is out; `provisional` once a 1xx came (a CANCEL may only follow one, §9.1).
    Calling {
        /// A provisional response arrived.
        provisional: bool,
    },
    /// We want the INVITE cancelled: the CANCEL is out (`sent`), or waits for the first 1xx.
    Cancelling {
        /// The CANCEL went out.
        sent: bool,
    },
    /// The agent answered and we ACKed: the dialog is up.
    Confirmed {
        /// The dialog (boxed: the other states carry next to nothing).
        dialog: Box<crate::dialog::Dialog>,
    },
    /// Our BYE is out, or the agent's BYE came.
    Ending,
    /// A final non-2xx came, or the leg is over.
    Terminated,
}

/// A leg to one registered contact of an agent.
#[derive(Debug)]
pub struct UacLeg {
    /// The agent.
    pub agent: crate::agent::AgentId,
    /// Our INVITE (without the Via the endpoint adds), for the dialog and the ACK.
    pub invite: Request,
    /// The INVITE's client transaction.
    pub invite_tx: TxId,
    /// Where the agent's REGISTER came from: requests to the phone go there.
    pub peer: Peer,
    /// Our Contact on this leg.
    pub contact: String,
    /// Where the leg is.
    pub state: UacState,
    /// Our BYE's client transaction.
    pub bye_tx: Option<TxId>,
}

impl UacLeg {
    /// Whether the INVITE is still unanswered and not being cancelled.
    pub fn is_ringing(&self) -> bool {
        matches!(self.state, UacState::Calling { .. })
    }
}

/// The leg to a menu `transfer`'s URI: the same SIP state as an agent leg ([`UacLeg`]), with the URI in
/// place of the agent.
#[derive(Debug)]
pub struct TransferLeg {
    /// The URI, as the menu wrote it (also the CDR's `route`).
    pub uri: String,
    /// Our INVITE (without the Via the endpoint adds), for the dialog and the ACK.
    pub invite: Request,
    /// The INVITE's client transaction.
    pub invite_tx: TxId,
    /// The address the URI names: requests on the leg go there.
    pub peer: Peer,
    /// Our Contact on this leg.
    pub contact: String,
    /// Where the leg is.
    pub state: UacState,
    /// Our BYE's client transaction.
    pub bye_tx: Option<TxId>,
}

impl TransferLeg {
    /// Whether the INVITE is still unanswered and not being cancelled.
    pub fn is_ringing(&self) -> bool {
        matches!(self.state, UacState::Calling { .. })
    }
}

/// Where the caller's leg is (RFC 3261 §13.3, RFC 6026 state names for the INVITE's 2xx).
#[derive(Debug)]
pub enum UasState {
    /// No final response yet (100 and maybe 180 sent); answering at `answer_at`.
    Proceeding {
        /// The INVITE, to answer or reject exactly once.
        incoming: IncomingCall,
        /// When helpline answers (now, or after `--ring-ms`).
        answer_at: Instant,
    },
    /// 200 sent, ACK not seen yet.
    Accepted {
        /// The confirmed dialog.
        dialog: Dialog,
    },
    /// The ACK arrived.
    Confirmed {
        /// The dialog.
        dialog: Dialog,
    },
    /// Our BYE is out; waiting for its answer.
    Ending {
        /// The dialog (a crossing BYE from the caller still matches it).
        dialog: Dialog,
    },
    /// A final non-2xx went out, or the BYE exchange is over.
    Terminated,
}

/// The caller's leg: its INVITE transaction, where it came from, and its dialog state.
#[derive(Debug)]
pub struct UasLeg {
    /// The INVITE's server transaction.
    pub invite_tx: TxId,
    /// Where the INVITE came from and the local address it arrived on: in-dialog requests go back over
    /// the same transport to the same address (the usual NAT-friendly choice: the Contact may be
    /// unreachable).
    pub peer: Peer,
    /// Our Contact for this leg (names the local address and the transport the INVITE used).
    pub contact: String,
    /// Where the leg is.
    pub state: UasState,
    /// A hang-up was asked for before the ACK came: the BYE goes out when it does (a BYE before the
    /// ACK would cross it), or the leg is released as no-ack after 64·T1.
    pub bye_after_ack: bool,
    /// Our BYE's client transaction.
    pub bye_tx: Option<TxId>,
}

impl UasLeg {
    /// The dialog, once answered.
    pub fn dialog(&self) -> Option<&Dialog> {
        match &self.state {
            UasState::Accepted { dialog }
            | UasState::Confirmed { dialog }
            | UasState::Ending { dialog } => Some(dialog),
            UasState::Proceeding { .. } | UasState::Terminated => None,
        }
    }

    /// The dialog, once answered (mutable: CSeq bookkeeping, new requests).
    pub fn dialog_mut(&mut self) -> Option<&mut Dialog> {
        match &mut self.state {
            UasState::Accepted { dialog }
            | UasState::Confirmed { dialog }
            | UasState::Ending { dialog } => Some(dialog),
            UasState::Proceeding { .. } | UasState::Terminated => None,
        }
    }

    /// Whether a request with our tag belongs to this leg: its confirmed dialog, or the early dialog
    /// our 180 opened (Call-ID and both tags, RFC 3261 §12.2.2).
    pub fn matches(&self, request: &Request) -> bool {
        match &self.state {
            UasState::Proceeding { incoming, .. } => incoming.in_early_dialog(request),
            _ => self.dialog().is_some_and(|d| d.matches(request)),
        }
    }

    /// When the leg wants waking (the answer after ringing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            UasState::Proceeding { answer_at, .. } => Some(*answer_at),
            _ => None,
        }
    }
}
