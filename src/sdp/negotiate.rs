//! RFC 3264 offer/answer decisions for one G.711 audio stream plus RFC 4733 telephone-event.
//!
//! Two steps, both pure: [`negotiate`] inspects an offer and returns an [`AnswerPlan`] (codec, DTMF payload
//! type, where to send RTP, our direction); the caller allocates an RTP port and turns the plan into an
//! [`SdpAnswer`] with [`AnswerPlan::into_answer`]. For an INVITE without a body the roles swap:
//! [`make_offer`] builds our offer and [`accept_answer`] reads the caller's answer from the ACK.
//!
//! Re-INVITEs (hold, unhold, address changes) go through the same [`negotiate`]. This module keeps no
//! state between exchanges: the caller keeps the `o=` session id fixed for the dialog and passes a
//! `version` one higher for each new answer or offer it sends (RFC 3264 §8), and compares the peer's
//! `o=` version itself if it wants to skip unchanged re-offers.

use std::net::{IpAddr, SocketAddr};

use super::{
    Attribute, Connection, Direction, MediaDescription, Origin, SdpAnswer, SdpError, SdpOffer,
    SessionDescription,
};

/// Clock rate shared by G.711 and the telephone-event stream we accept (RFC 3551 §4.5.14, RFC 4733 §2.3).
const CLOCK_RATE: u32 = 8000;
/// Events we can detect when the offer gives no fmtp: DTMF 0–9, *, #, A–D (RFC 4733 §2.4.1 default).
const DEFAULT_DTMF_EVENTS: &str = "0-15";
/// `s=` for everything we originate.
const SESSION_NAME: &str = "helpline";

/// The two audio codecs helpline speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecName {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl CodecName {
    /// The rtpmap encoding name (`PCMU` / `PCMA`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecName::Pcmu => "PCMU",
            CodecName::Pcma => "PCMA",
        }
    }

    /// The static payload type from RFC 3551 table 4.
    pub fn static_payload_type(self) -> u8 {
        match self {
            CodecName::Pcmu => 0,
            CodecName::Pcma => 8,
        }
    }

    /// Matches an rtpmap entry; only 8000 Hz mono qualifies.
    fn from_rtpmap(name: &str, clock_rate: u32, params: Option<&str>) -> Option<Self> {
        if clock_rate != CLOCK_RATE || params.is_some_and(|p| p != "1") {
            return None;
        }
        if name.eq_ignore_ascii_case("PCMU") {
            Some(CodecName::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(CodecName::Pcma)
        } else {
            None
        }
    }
}

/// A codec bound to the RTP payload type used for it in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    /// Which codec.
    pub name: CodecName,
    /// Payload type in RTP headers (the offerer's number, which may be dynamic).
    pub payload_type: u8,
}

impl Codec {
    /// PCMU at its static payload type 0.
    pub fn pcmu() -> Self {
        Codec {
            name: CodecName::Pcmu,
            payload_type: 0,
        }
    }

    /// PCMA at its static payload type 8.
    pub fn pcma() -> Self {
        Codec {
            name: CodecName::Pcma,
            payload_type: 8,
        }
    }
}

/// What we can do with media; the default is PCMU and PCMA at 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCaps {
    /// Codecs we accept, in the order we offer them (answers follow the caller's order instead).
    pub codecs: Vec<Codec>,
    /// Packetisation time we send and ask for, in ms (default 20).
    pub ptime_ms: u32,
}

impl Default for MediaCaps {
    fn default() -> Self {
        MediaCaps {
            codecs: vec![Codec::pcmu(), Codec::pcma()],
            ptime_ms: 20,
        }
    }
}

/// The outcome of an offer/answer exchange, whichever side offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Codec and payload type for the audio stream.
    pub codec: Codec,
    /// Payload type of RFC 4733 telephone-event, if both sides have it.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP; `None` when the peer gave no address (`0.0.0.0`/`::`, RFC 2543 hold).
    pub remote_rtp: Option<SocketAddr>,
    /// Our direction for the stream (send and/or receive).
    pub direction: Direction,
    /// The `a=ptime` the peer asked for, if any.
    pub remote_ptime_ms: Option<u32>,
}

/// An m= line of the offer as it must be echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OfferedLine {
    media: String,
    proto: String,
    formats: Vec<String>,
}

/// The decision taken on an offer: what the answer will say and how media should flow.
///
/// Produced by [`negotiate`]; turn it into the SDP to send with [`AnswerPlan::into_answer`] once an RTP
/// port is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPlan {
    /// Chosen codec, at the caller's payload type.
    pub codec: Codec,
    /// Caller's telephone-event payload type, echoed in the answer.
    pub dtmf_payload_type: Option<u8>,
    /// The telephone-event fmtp we answer with (the caller's, else `0-15`).
    pub dtmf_fmtp: Option<String>,
    /// Where to send RTP; `None` when on hold by address (`0.0.0.0`/`::`).
    pub remote_rtp: Option<SocketAddr>,
    /// Our direction, written into the answer.
    pub direction: Direction,
    /// Packetisation time we answer with (`a=ptime`).
    pub ptime_ms: u32,
    /// The `a=ptime` the caller asked for, if any.
    pub remote_ptime_ms: Option<u32>,
    /// Every offered m= line in order; RFC 3264 §6 wants the same count back.
    offered: Vec<OfferedLine>,
    /// Index of the audio line we accept.
    audio_index: usize,
}

impl AnswerPlan {
    /// The negotiated parameters, in the same shape [`accept_answer`] returns.
    pub fn negotiated(&self) -> Negotiated {
        Negotiated {
            codec: self.codec,
            dtmf_payload_type: self.dtmf_payload_type,
            remote_rtp: self.remote_rtp,
            direction: self.direction,
            remote_ptime_ms: self.remote_ptime_ms,
        }
    }

    /// Builds the complete answer: `v`, `o`, `s`, `c`, `t`, one `m=` per offered line (ours with the
    /// chosen codec and telephone-event, every other one with port 0), rtpmap, fmtp, ptime, direction.
    ///
    /// `session_id` stays fixed for the dialog; `version` must grow by one per new answer (RFC 3264 §8).
    pub fn into_answer(
        self,
        local_ip: IpAddr,
        local_port: u16,
        session_id: u64,
        version: u64,
    ) -> SdpAnswer {
        let mut sd = base_description(local_ip, session_id, version);
        for (i, line) in self.offered.into_iter().enumerate() {
            if i != self.audio_index {
                // RFC 3264 §6: a rejected stream MUST have port 0; its formats are echoed to stay valid.
                sd.media.push(MediaDescription::new(
                    &line.media,
                    0,
                    &line.proto,
                    line.formats,
                ));
                continue;
            }
            let mut formats = vec![self.codec.payload_type.to_string()];
            formats.extend(self.dtmf_payload_type.map(|pt| pt.to_string()));
            // The answer keeps the offer's transport (RFC 3264 §6.1); AVPF feedback is simply never sent.
            let mut m = MediaDescription::new(&line.media, local_port, &line.proto, formats);
            m.attributes.push(rtpmap_attr(
                self.codec.payload_type,
                self.codec.name.encoding_name(),
            ));
            if let Some(pt) = self.dtmf_payload_type {
                m.attributes.push(rtpmap_attr(pt, "telephone-event"));
                let events = self.dtmf_fmtp.as_deref().unwrap_or(DEFAULT_DTMF_EVENTS);
                m.attributes
                    .push(Attribute::new("fmtp", format!("{pt} {events}")));
            }
            m.attributes
                .push(Attribute::new("ptime", self.ptime_ms.to_string()));
            m.attributes
                .push(Attribute::property(self.direction.as_str()));
            sd.media.push(m);
        }
        SdpAnswer::new(sd)
    }
}

/// Decides how to answer `offer` (RFC 3264 §6): picks an audio stream, codec, DTMF type and direction.
///
/// The stream is the first `audio` m= line with a non-zero port over `RTP/AVP` or `RTP/AVPF` for which a
/// codec matches; every other m= line is rejected in the answer. The codec is the first of the *caller's*
/// payload types that is PCMU or PCMA at 8000 Hz, static (0, 8, even without rtpmap) or dynamic via rtpmap.
///
/// Direction mirrors the offer's (RFC 3264 §6.1). An offer whose connection address is `0.0.0.0` or `::`
/// (RFC 2543 hold, RFC 3264 §8.4) gives us nowhere to send: we answer its mirror direction without
/// sending (`sendrecv`/`sendonly` → `recvonly`, `recvonly`/`inactive` → `inactive`), both allowed by
/// §6.1, and `remote_rtp` is `None`. We keep receiving so music on hold from the peer still flows, and
/// because §8.4 says the recipient of a held offer SHOULD NOT answer with held SDP of its own.
///
/// Errors: [`SdpError::NoCommonCodec`] when plain-RTP audio was offered with no codec of ours,
/// [`SdpError::NoCommonTransport`] when audio came only over e.g. SRTP, [`SdpError::NoAudio`] when there
/// was no usable audio line at all, [`SdpError::MissingLine`]`('c')` when the chosen stream has no address.
///
/// ```
/// use helpline::sdp::{negotiate, Codec, Direction, MediaCaps, SdpOffer};
///
/// let offer = SdpOffer::from_sdp_string(
///     "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 8 0\n",
/// )?;
/// let plan = negotiate(&offer, &MediaCaps::default())?;
/// assert_eq!(plan.codec, Codec::pcma()); // the caller listed 8 first
/// assert_eq!(plan.direction, Direction::SendRecv);
/// // The caller allocates an RTP port, then builds the answer for the 200 OK.
/// let answer = plan.into_answer([192, 0, 2, 9].into(), 30000, 42, 1);
/// assert!(answer.to_sdp_string().contains("m=audio 30000 RTP/AVP 8\r\n"));
/// # Ok::<(), helpline::sdp::SdpError>(())
/// ```
pub fn negotiate(offer: &SdpOffer, caps: &MediaCaps) -> Result<AnswerPlan, SdpError> {
    let mut saw_rtp_audio = false;
    let mut saw_other_transport = false;
    let mut chosen = None;
    for (i, m) in offer.media.iter().enumerate() {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        if !is_plain_rtp(&m.proto) {
            saw_other_transport = true;
            continue;
        }
        saw_rtp_audio = true;
        if let Some(codec) = pick_codec(m, caps) {
            chosen = Some((i, m, codec));
            break;
        }
    }
    let Some((audio_index, m, codec)) = chosen else {
        return Err(if saw_rtp_audio {
            SdpError::NoCommonCodec
        } else if saw_other_transport {
            SdpError::NoCommonTransport
        } else {
            SdpError::NoAudio
        });
    };

    let dtmf_payload_type = telephone_event_pt(m);
    let dtmf_fmtp = dtmf_payload_type.map(|pt| {
        m.fmtp(pt)
            .filter(|f| !f.is_empty())
            .unwrap_or(DEFAULT_DTMF_EVENTS)
            .to_owned()
    });
    let stream = stream_view(offer, m)?;
    let offered = offer
        .media
        .iter()
        .map(|m| OfferedLine {
            media: m.media.clone(),
            proto: m.proto.clone(),
            formats: m.formats.clone(),
        })
        .collect();
    Ok(AnswerPlan {
        codec,
        dtmf_payload_type,
        dtmf_fmtp,
        remote_rtp: stream.remote_rtp,
        direction: stream.our_direction,
        ptime_ms: caps.ptime_ms,
        remote_ptime_ms: stream.remote_ptime_ms,
        offered,
        audio_index,
    })
}

/// Builds our offer for an INVITE that arrived without SDP (RFC 3261 §13.2.1: the offer then goes in the
/// 200 OK and the answer comes in the ACK): one `sendrecv` audio line with every codec in `caps` at its
/// payload type, then telephone-event at `dtmf_pt` (conventionally 101) with events `0-15`.
/// `dtmf_pt` must be a dynamic payload type (96–127) distinct from every codec's.
pub fn make_offer(
    caps: &MediaCaps,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
    dtmf_pt: u8,
) -> SdpOffer {
    let mut sd = base_description(local_ip, session_id, version);
    let mut formats: Vec<String> = caps
        .codecs
        .iter()
        .map(|c| c.payload_type.to_string())
        .collect();
    formats.push(dtmf_pt.to_string());
    let mut m = MediaDescription::new("audio", local_port, "RTP/AVP", formats);
    for c in &caps.codecs {
        m.attributes
            .push(rtpmap_attr(c.payload_type, c.name.encoding_name()));
    }
    m.attributes.push(rtpmap_attr(dtmf_pt, "telephone-event"));
    m.attributes.push(Attribute::new(
        "fmtp",
        format!("{dtmf_pt} {DEFAULT_DTMF_EVENTS}"),
    ));
    m.attributes
        .push(Attribute::new("ptime", caps.ptime_ms.to_string()));
    m.attributes
        .push(Attribute::property(Direction::SendRecv.as_str()));
    sd.media.push(m);
    SdpOffer::new(sd)
}

/// Reads the answer to our offer (from the ACK after a body-less INVITE, or a 200 OK to our re-INVITE).
///
/// The answer must have as many m= lines as the offer (RFC 3264 §6), keep our audio stream's port
/// non-zero, and pick a codec among the payload types we offered (RFC 3264 §6.1); otherwise the call
/// should be released. Direction and hold-by-address are read exactly as in [`negotiate`].
pub fn accept_answer(our_offer: &SdpOffer, answer: &SdpAnswer) -> Result<Negotiated, SdpError> {
    if answer.media.len() != our_offer.media.len() {
        return Err(SdpError::MediaCountMismatch {
            offer: our_offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let (index, ours) = our_offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let theirs = answer.media.get(index).ok_or(SdpError::NoAudio)?;
    if theirs.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    if !theirs.proto.eq_ignore_ascii_case(&ours.proto) {
        return Err(SdpError::NoCommonTransport);
    }
    let our_dtmf = telephone_event_pt(ours);
    let mut codec = None;
    let mut dtmf_payload_type = None;
    for pt in theirs.payload_types() {
        if !ours.payload_types().any(|o| o == pt) {
            return Err(SdpError::CodecNotOffered(pt));
        }
        if Some(pt) == our_dtmf {
            dtmf_payload_type = Some(pt);
            continue;
        }
        if codec.is_some() {
            continue;
        }
        let Some(name) = codec_name_of(ours, pt) else {
            continue;
        };
        // An answer may restate the rtpmap; it must not rebind our number to another codec (RFC 3264 §6.1).
        if theirs.rtpmap(pt).is_some() && codec_name_of(theirs, pt) != Some(name) {
            return Err(SdpError::CodecNotOffered(pt));
        }
        codec = Some(Codec {
            name,
            payload_type: pt,
        });
    }
    let codec = codec.ok_or(SdpError::NoCommonCodec)?;
    let stream = stream_view(answer, theirs)?;
    Ok(Negotiated {
        codec,
        dtmf_payload_type,
        remote_rtp: stream.remote_rtp,
        direction: stream.our_direction,
        remote_ptime_ms: stream.remote_ptime_ms,
    })
}

/// What the peer's description says about the stream we use, seen from our side.
struct StreamView {
    remote_rtp: Option<SocketAddr>,
    our_direction: Direction,
    remote_ptime_ms: Option<u32>,
}

fn stream_view(sd: &SessionDescription, m: &MediaDescription) -> Result<StreamView, SdpError> {
    // RFC 4566 §5.7: every media section needs a c= of its own or at session level.
    let connection: &Connection = sd
        .effective_connection(m)
        .ok_or(SdpError::MissingLine('c'))?;
    let their_direction = sd.effective_direction(m);
    let (remote_rtp, our_direction) = if connection.address.is_unspecified() {
        // RFC 3264 §8.4: an agent MUST accept c=0.0.0.0 and then send neither RTP nor RTCP to the peer.
        // We drop only our sending half; see `negotiate` docs for why we keep receiving.
        (None, their_direction.reversed().without_send())
    } else {
        (
            Some(SocketAddr::new(connection.address, m.port)),
            their_direction.reversed(),
        )
    };
    let remote_ptime_ms = m
        .attribute("ptime")
        .or_else(|| sd.attribute("ptime"))
        .and_then(|p| p.trim().parse().ok());
    Ok(StreamView {
        remote_rtp,
        our_direction,
        remote_ptime_ms,
    })
}

fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The codec a payload type stands for in `m`: its rtpmap if present, else the static assignment.
fn codec_name_of(m: &MediaDescription, pt: u8) -> Option<CodecName> {
    match m.rtpmap(pt) {
        Some(map) => CodecName::from_rtpmap(
            &map.encoding_name,
            map.clock_rate,
            map.encoding_params.as_deref(),
        ),
        // RFC 3551 §6: 0 and 8 are static and need no rtpmap.
        None => match pt {
            0 => Some(CodecName::Pcmu),
            8 => Some(CodecName::Pcma),
            _ => None,
        },
    }
}

/// The first offered payload type (caller's preference order) that is a codec in `caps`.
fn pick_codec(m: &MediaDescription, caps: &MediaCaps) -> Option<Codec> {
    m.payload_types().find_map(|pt| {
        let name = codec_name_of(m, pt)?;
        caps.codecs.iter().any(|c| c.name == name).then_some(Codec {
            name,
            payload_type: pt,
        })
    })
}

/// The first payload type whose rtpmap is `telephone-event/8000` (RFC 4733 §7.1.1).
fn telephone_event_pt(m: &MediaDescription) -> Option<u8> {
    m.payload_types().find(|pt| {
        m.rtpmap(*pt).is_some_and(|r| {
            r.encoding_name.eq_ignore_ascii_case("telephone-event") && r.clock_rate == CLOCK_RATE
        })
    })
}

fn rtpmap_attr(pt: u8, name: &str) -> Attribute {
    Attribute::new("rtpmap", format!("{pt} {name}/{CLOCK_RATE}"))
}

fn base_description(local_ip: IpAddr, session_id: u64, version: u64) -> SessionDescription {
    let origin = Origin {
        username: "-".to_owned(),
        session_id: session_id.to_string(),
        session_version: version,
        address_type: super::AddressType::of(local_ip),
        address: local_ip.to_string(),
    };
    let mut sd = SessionDescription::new(origin, SESSION_NAME);
    sd.connection = Some(Connection::new(local_ip));
    sd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(media: &str) -> SdpOffer {
        SdpOffer::from_sdp_string(&format!(
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n{media}"
        ))
        .unwrap()
    }

    #[test]
    fn dynamic_pcmu_is_matched_case_insensitively() {
        let plan = negotiate(
            &offer("m=audio 4000 RTP/AVP 97\na=rtpmap:97 pcmu/8000\n"),
            &MediaCaps::default(),
        )
        .unwrap();
        assert_eq!(
            plan.codec,
            Codec {
                name: CodecName::Pcmu,
                payload_type: 97
            }
        );
    }

    #[test]
    fn wrong_clock_rate_or_stereo_is_not_g711() {
        let e = negotiate(
            &offer("m=audio 4000 RTP/AVP 97 98\na=rtpmap:97 PCMU/16000\na=rtpmap:98 PCMA/8000/2\n"),
            &MediaCaps::default(),
        );
        assert_eq!(e, Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn caps_restrict_the_choice() {
        let caps = MediaCaps {
            codecs: vec![Codec::pcma()],
            ptime_ms: 20,
        };
        let plan = negotiate(&offer("m=audio 4000 RTP/AVP 0 8\n"), &caps).unwrap();
        assert_eq!(plan.codec, Codec::pcma());
    }

    #[test]
    fn srtp_only_is_no_common_transport_but_a_plain_second_line_is_used() {
        let e = negotiate(&offer("m=audio 4000 RTP/SAVP 0\n"), &MediaCaps::default());
        assert_eq!(e, Err(SdpError::NoCommonTransport));
        let plan = negotiate(
            &offer("m=audio 4000 RTP/SAVP 0\nm=audio 4002 RTP/AVP 8\n"),
            &MediaCaps::default(),
        )
        .unwrap();
        assert_eq!(plan.codec, Codec::pcma());
        let answer = plan.into_answer([10, 0, 0, 1].into(), 20000, 1, 1);
        assert_eq!(answer.media[0].port, 0);
        assert_eq!(answer.media[1].port, 20000);
    }

    #[test]
    fn no_audio_and_missing_connection_are_reported() {
        assert_eq!(
            negotiate(&offer("m=video 4000 RTP/AVP 31\n"), &MediaCaps::default()),
            Err(SdpError::NoAudio)
        );
        let no_c = SdpOffer::from_sdp_string(
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
        )
        .unwrap();
        assert_eq!(
            negotiate(&no_c, &MediaCaps::default()),
            Err(SdpError::MissingLine('c'))
        );
    }

    #[test]
    fn avpf_is_accepted_and_echoed() {
        let plan = negotiate(&offer("m=audio 4000 RTP/AVPF 0\n"), &MediaCaps::default()).unwrap();
        let answer = plan.into_answer([10, 0, 0, 1].into(), 20000, 1, 1);
        assert_eq!(answer.media[0].proto, "RTP/AVPF");
    }

    #[test]
    fn media_level_connection_and_ptime_override_session() {
        let plan = negotiate(
            &offer("a=ptime:30\nm=audio 4000 RTP/AVP 0\nc=IN IP4 198.51.100.7\n"),
            &MediaCaps::default(),
        )
        .unwrap();
        assert_eq!(plan.remote_rtp, Some("198.51.100.7:4000".parse().unwrap()));
        assert_eq!(plan.remote_ptime_ms, Some(30));
    }
}
