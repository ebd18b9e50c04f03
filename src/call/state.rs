//! One call's state inside the registry: its legs, its media session's settings and SDP, its IVR side;
//! plus the SDP-to-media helpers the request handlers share. It decides nothing on its own.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::call::cdr::{EndReason, RtcpLeg};
use crate::call::ivr_call::IvrCall;
use crate::call::leg::{Leg, LegId, LegKind, TransferLeg, UacLeg, UasLeg};
use crate::media::codec::Law;
use crate::media::rtcp::RtcpStats;
use crate::media::session::MediaConfig;
use crate::media::MediaId;
use crate::sdp::{self, SdpOffer, SessionDescription};
use crate::sip::message::Request;
use crate::sip::{CallId, Reply};

/// The call's media session as the call layer sees it.
#[derive(Debug)]
pub(crate) struct CallMedia {
    pub(crate) id: MediaId,
    pub(crate) port: u16,
    /// The address our SDP announces.
    pub(crate) ip: IpAddr,
    pub(crate) cfg: MediaConfig,
    /// The SDP we send: the answer to the caller's offer, or our offer when the INVITE had none.
    pub(crate) local_sdp: String,
    /// Our offer awaiting the caller's answer in the ACK (INVITE without SDP, RFC 3264 §5).
    pub(crate) pending_offer: Option<SdpOffer>,
    pub(crate) sdp_version: u64,
    pub(crate) session_id: u64,
    /// Ports tried so far (a busy one is replaced while the SDP has not left yet).
    pub(crate) bind_attempts: u32,
    /// The session is closed and its port back in the pool: the call is known dead (no ACK, our BYE
    /// is out) and only its signalling winds down (see `Calls::release_media`).
    pub(crate) released: bool,
    /// When our 2xx went out (the ACK is awaited while the caller's leg is `Accepted`).
    pub(crate) answered_at: Option<Instant>,
    /// Sessions of the call's media group handed out so far (see [`CallMedia::next_id`]).
    pub(crate) ids_given: u32,
}

impl CallMedia {
    /// A new session id in the call's group (a rebound caller session, an agent's leg), so that the
    /// media engine keeps it on the caller session's thread (`MediaId`'s doc).
    pub(crate) fn next_id(&mut self) -> MediaId {
        self.ids_given = self.ids_given.saturating_add(1);
        MediaId::in_group(self.id.group(), self.ids_given)
    }
}

/// One call.
pub(crate) struct Call {
    /// The caller leg's Call-ID.
    pub(crate) call_id: CallId,
    /// When the INVITE was accepted (the supervisor view's "for how long").
    pub(crate) started: Instant,
    /// `legs[0]` is the caller's.
    pub(crate) legs: Vec<Leg>,
    pub(crate) media: CallMedia,
    pub(crate) ivr: IvrCall,
    /// Why the call ends, as the registry knows it (the IVR side may know better, see `finish`).
    pub(crate) end_reason: Option<EndReason>,
    /// The instant the call is armed for in the registry's wake-up heap.
    pub(crate) scheduled: Option<Instant>,
    /// The queue and agent side, once the caller is routed to a queue (boxed, as `transfer`: most of a
    /// call's life is spent without one, and inline each would cost every call ~350 bytes).
    pub(crate) queued: Option<Box<QueuedCall>>,
    /// The far side of a menu `transfer`, once the IVR asked for one.
    pub(crate) transfer: Option<Box<TransferSide>>,
    /// `call{call_id=…}`: entered whenever the registry handles something of this call, so every log
    /// line about it (its agent and transfer legs' included) carries the caller's Call-ID.
    pub(crate) span: tracing::Span,
    /// The last RTCP statistics of each of the call's media sessions, in the order they first came.
    pub(crate) rtcp: Vec<(MediaId, RtcpLeg, RtcpStats)>,
}

/// A transferred call's far side: its leg, media session and timing.
#[derive(Debug)]
pub(crate) struct TransferSide {
    /// The transfer leg's number (`None` when no INVITE could be sent).
    pub(crate) leg: Option<LegId>,
    /// The far side's media session.
    pub(crate) media: Option<AgentMedia>,
    /// An unanswered INVITE is cancelled and the caller released at this instant.
    pub(crate) ring_until: Option<Instant>,
    /// When the far end answered.
    pub(crate) answered: Option<Instant>,
}

/// A routed call's queue and agent side.
#[derive(Debug)]
pub(crate) struct QueuedCall {
    /// The agents whose phones ring now (ring-all rings several for one caller): one is added per
    /// offer and removed when that offer ends; an answer wins only from an agent still in it.
    pub(crate) ringing: std::collections::BTreeSet<crate::agent::AgentId>,
    /// The agent who answered, and when.
    pub(crate) answered: Option<(crate::agent::AgentId, Instant)>,
    /// When the bridge was torn down, if before the call's end (our hang-up: the caller's leg may
    /// take up to 64·T1 more to close); the CDR's `talk_ms` ends here.
    pub(crate) talk_end: Option<Instant>,
    /// The agent side's media session (one for every agent leg: only one is ever answered).
    pub(crate) media: Option<AgentMedia>,
    /// The last SIP from the answered agent's phone (its 200, then any request in the dialog): RTP
    /// silence alone does not end a call whose agent still talks SIP (e.g. on hold).
    pub(crate) agent_sip_at: Option<Instant>,
    /// The next leg number.
    pub(crate) next_leg: u32,
    /// The caller has joined a line once (`connecting` played); an overflow into another queue does
    /// not play it again.
    pub(crate) joined: bool,
}

/// The agent side's media session and our SDP offer on it (also a transfer's far side).
#[derive(Clone, Debug)]
pub(crate) struct AgentMedia {
    pub(crate) id: MediaId,
    pub(crate) port: u16,
    pub(crate) offer: SdpOffer,
    pub(crate) session_id: u64,
    /// The `o=` version of our last SDP on the agent side (our offer is 1).
    pub(crate) sdp_version: u64,
    /// Ports tried before this one that could not be bound.
    pub(crate) bind_attempts: u32,
}

impl Call {
    /// Keeps `stats` as the latest of session `id` (the caller's, the agent side's or the transfer's;
    /// a session the call no longer names is ignored).
    pub(crate) fn record_rtcp(&mut self, id: MediaId, stats: RtcpStats) {
        let side = |m: Option<&AgentMedia>| m.is_some_and(|m| m.id == id);
        let leg = if self.media.id == id {
            RtcpLeg::Caller
        } else if side(self.queued.as_ref().and_then(|q| q.media.as_ref())) {
            RtcpLeg::Agent
        } else if side(self.transfer.as_ref().and_then(|t| t.media.as_ref())) {
            RtcpLeg::Transfer
        } else {
            return;
        };
        match self.rtcp.iter_mut().find(|(m, _, _)| *m == id) {
            Some(entry) => entry.2 = stats,
            None => {
                // One entry per session (one to three a call): a first `push` would reserve four.
                self.rtcp.reserve_exact(1);
                self.rtcp.push((id, leg, stats))
            }
        }
    }

    pub(crate) fn caller(&self) -> &UasLeg {
        match &self.legs[0].kind {
            LegKind::Caller(uas) => uas,
            LegKind::Agent(_) | LegKind::Transfer(_) => {
                unreachable!("legs[0] is always the caller's leg")
            }
        }
    }

    pub(crate) fn caller_mut(&mut self) -> &mut UasLeg {
        match &mut self.legs[0].kind {
            LegKind::Caller(uas) => uas,
            LegKind::Agent(_) | LegKind::Transfer(_) => {
                unreachable!("legs[0] is always the caller's leg")
            }
        }
    }

    /// An agent leg of the call.
    pub(crate) fn agent_leg_mut(&mut self, leg: LegId) -> Option<&mut UacLeg> {
        match &mut self.legs.iter_mut().find(|l| l.id == leg)?.kind {
            LegKind::Agent(uac) => Some(uac),
            LegKind::Caller(_) | LegKind::Transfer(_) => None,
        }
    }

    /// The transfer leg of the call, if there is one.
    pub(crate) fn transfer_leg_mut(&mut self) -> Option<&mut TransferLeg> {
        self.legs.iter_mut().find_map(|l| match &mut l.kind {
            LegKind::Transfer(t) => Some(t),
            LegKind::Caller(_) | LegKind::Agent(_) => None,
        })
    }

    /// Whether `leg` is the call's transfer leg.
    pub(crate) fn is_transfer_leg(&self, leg: LegId) -> bool {
        self.legs
            .iter()
            .any(|l| l.id == leg && matches!(l.kind, LegKind::Transfer(_)))
    }

    /// The earliest instant the call wants waking: its answer after ringing, its IVR's timers, or the
    /// end of a transfer's ringing.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let transfer = self.transfer.as_ref().and_then(|t| t.ring_until);
        [
            self.caller().poll_timeout(),
            self.ivr.poll_timeout(),
            transfer,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The SDP offer in a request, if any; a body of another type is refused `415` (RFC 3261 §21.4.13).
pub(crate) fn sdp_body(request: &Request) -> Result<Option<SdpOffer>, Reply> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let content_type = request.content_type().unwrap_or("application/sdp");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Err(Reply::UnsupportedMediaType);
    }
    let text = std::str::from_utf8(&request.body).map_err(|_| Reply::BadRequest {
        why: "SDP body is not UTF-8".to_owned(),
    })?;
    match SessionDescription::parse(text) {
        Ok(sdp) => Ok(Some(SdpOffer::new(sdp))),
        Err(err) => Err(Reply::NotAcceptableHere {
            why: err.to_string(),
        }),
    }
}

/// The media session's settings for a negotiated stream.
pub(crate) fn media_config_from(
    plan: &sdp::Negotiated,
    rtp_timeout: Duration,
    seed: u64,
) -> MediaConfig {
    MediaConfig {
        // Hold by `a=sendonly`/`a=inactive` (baresip, linphone): our answer does not send, so nothing
        // is sent and the prompt pauses where it was.
        send: plan.direction.sends(),
        law: match plan.codec.name {
            sdp::CodecName::Pcma => Law::Alaw,
            sdp::CodecName::Pcmu => Law::Ulaw,
        },
        payload_type: plan.codec.payload_type,
        dtmf_payload_type: plan.dtmf_payload_type,
        remote: plan.remote_rtp,
        rtp_timeout,
        seed,
    }
}

/// The settings before the caller's answer to our offer has come (PCMU, no destination yet).
pub(crate) fn media_config_unanswered(rtp_timeout: Duration, seed: u64) -> MediaConfig {
    MediaConfig {
        // Nothing is sent until the answer in the ACK says where and how.
        send: false,
        law: Law::Ulaw,
        payload_type: 0,
        dtmf_payload_type: Some(crate::call::invite::OUR_DTMF_PT),
        remote: None,
        rtp_timeout,
        seed,
    }
}
