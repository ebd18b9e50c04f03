//! One call's state inside the registry: its legs, its media session's settings and SDP, its IVR side;
//! plus the SDP-to-media helpers the request handlers share. It decides nothing on its own.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::call::cdr::EndReason;
use crate::call::ivr_call::IvrCall;
use crate::call::leg::{Leg, LegKind, UasLeg};
use crate::media::codec::Law;
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
}

/// One call.
pub(crate) struct Call {
    /// The caller leg's Call-ID.
    pub(crate) call_id: CallId,
    /// `legs[0]` is the caller's.
    pub(crate) legs: Vec<Leg>,
    pub(crate) media: CallMedia,
    pub(crate) ivr: IvrCall,
    /// Why the call ends, as the registry knows it (the IVR side may know better, see `finish`).
    pub(crate) end_reason: Option<EndReason>,
    /// The instant the call is armed for in the registry's wake-up heap.
    pub(crate) scheduled: Option<Instant>,
}

impl Call {
    pub(crate) fn caller(&self) -> &UasLeg {
        let LegKind::Caller(uas) = &self.legs[0].kind;
        uas
    }

    pub(crate) fn caller_mut(&mut self) -> &mut UasLeg {
        let LegKind::Caller(uas) = &mut self.legs[0].kind;
        uas
    }

    /// The earliest instant the call wants waking: its answer after ringing, or its IVR's timers.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.caller().poll_timeout(), self.ivr.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
    // send: plan.direction.sends() — wired once `MediaConfig::send` exists (hold with a=sendonly).
    MediaConfig {
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
    // send: false until the answer arrives — wired once `MediaConfig::send` exists.
    MediaConfig {
        law: Law::Ulaw,
        payload_type: 0,
        dtmf_payload_type: Some(crate::call::invite::OUR_DTMF_PT),
        remote: None,
        rtp_timeout,
        seed,
    }
}
