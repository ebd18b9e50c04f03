//! SDP offer/answer (RFC 3264) as a caller sees it: inline offers from real-world UAs, the answer helpline
//! sends back, and the body-less INVITE flow where helpline offers and reads the answer from the ACK.

use std::net::{IpAddr, SocketAddr};

use helpline::sdp::{
    accept_answer, make_offer, negotiate, AnswerPlan, Codec, CodecName, Direction, MediaCaps,
    SdpAnswer, SdpError, SdpOffer, SessionDescription,
};

const LOCAL_IP: [u8; 4] = [203, 0, 113, 5];
const LOCAL_PORT: u16 = 30000;

/// SIPp's built-in `uac` scenario body (PCMU only), written with bare LF line ends to exercise the
/// tolerant parser.
const SIPP_OFFER: &str = "v=0\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\n\
s=-\n\
c=IN IP4 127.0.0.1\n\
t=0 0\n\
m=audio 6000 RTP/AVP 0\n\
a=rtpmap:0 PCMU/8000\n";

fn offer_with(media: &str) -> SdpOffer {
    SdpOffer::from_sdp_string(&format!(
        "v=0\r\no=caller 100 1 IN IP4 198.51.100.20\r\ns=call\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n{media}"
    ))
    .expect("test offer parses")
}

fn negotiate_default(offer: &SdpOffer) -> AnswerPlan {
    negotiate(offer, &MediaCaps::default()).expect("offer is acceptable")
}

fn plan_for(media: &str) -> AnswerPlan {
    negotiate_default(&offer_with(media))
}

fn answer_text(plan: AnswerPlan, version: u64) -> String {
    plan.into_answer(IpAddr::from(LOCAL_IP), LOCAL_PORT, 4242, version)
        .to_sdp_string()
}

fn caller_rtp(port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from(([198, 51, 100, 20], port)))
}

#[test]
fn sipp_default_offer_is_answered_with_pcmu_exactly() {
    let offer = SdpOffer::from_sdp_string(SIPP_OFFER).unwrap();
    let plan = negotiate_default(&offer);
    assert_eq!(plan.codec, Codec::pcmu());
    assert_eq!(plan.dtmf_payload_type, None);
    assert_eq!(plan.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!(plan.direction, Direction::SendRecv);

    let text = answer_text(plan, 1);
    assert_eq!(
        text,
        "v=0\r\n\
         o=- 4242 1 IN IP4 203.0.113.5\r\n\
         s=helpline\r\n\
         c=IN IP4 203.0.113.5\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    // The answer we produce is itself valid SDP and prints back identically.
    let reparsed = SessionDescription::parse(&text).unwrap();
    assert_eq!(reparsed.to_string(), text);
}

#[test]
fn answer_with_dtmf_contains_exactly_the_expected_lines() {
    let offer = offer_with(
        "m=audio 7078 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
    );
    let plan = negotiate_default(&offer);
    assert_eq!(plan.remote_rtp, caller_rtp(7078));
    assert_eq!(plan.remote_ptime_ms, Some(20));
    let text = answer_text(plan, 7);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines,
        [
            "v=0",
            "o=- 4242 7 IN IP4 203.0.113.5",
            "s=helpline",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
            "",
        ]
    );
}

#[test]
fn pcma_only_offer_chooses_pcma() {
    let plan = negotiate_default(&offer_with("m=audio 4000 RTP/AVP 8\r\n"));
    assert_eq!(plan.codec, Codec::pcma());
    let text = answer_text(plan, 1);
    assert!(text.contains("m=audio 30000 RTP/AVP 8\r\n"));
    assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"));
    assert!(!text.contains("PCMU"));
}

#[test]
fn caller_preference_order_wins() {
    let plan = plan_for("m=audio 4000 RTP/AVP 8 0\r\n");
    assert_eq!(plan.codec.name, CodecName::Pcma);
    let plan = plan_for("m=audio 4000 RTP/AVP 0 8\r\n");
    assert_eq!(plan.codec.name, CodecName::Pcmu);
}

#[test]
fn unsupported_codecs_ahead_of_g711_are_skipped() {
    let plan = plan_for(
        "m=audio 4000 RTP/AVP 111 18 8\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:18 G729/8000\r\n",
    );
    assert_eq!(plan.codec, Codec::pcma());
}

#[test]
fn telephone_event_payload_type_96_is_echoed_with_default_fmtp() {
    let plan = plan_for("m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n");
    assert_eq!(plan.dtmf_payload_type, Some(96));
    let text = answer_text(plan, 1);
    assert!(text.contains("m=audio 30000 RTP/AVP 0 96\r\n"));
    assert!(text.contains("a=rtpmap:96 telephone-event/8000\r\n"));
    assert!(text.contains("a=fmtp:96 0-15\r\n"));
}

#[test]
fn telephone_event_payload_type_101_and_100_are_echoed() {
    for pt in [101u8, 100] {
        let plan = plan_for(&format!(
            "m=audio 4000 RTP/AVP 8 {pt}\r\na=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
        ));
        assert_eq!(plan.dtmf_payload_type, Some(pt));
        let text = answer_text(plan, 1);
        assert!(text.contains(&format!("m=audio 30000 RTP/AVP 8 {pt}\r\n")));
        assert!(text.contains(&format!("a=fmtp:{pt} 0-15\r\n")));
    }
}

#[test]
fn wideband_telephone_event_is_not_taken() {
    let plan = plan_for(
        "m=audio 4000 RTP/AVP 0 97 101\r\na=rtpmap:97 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    assert_eq!(plan.dtmf_payload_type, Some(101));
}

#[test]
fn only_g729_and_opus_is_no_common_codec_488() {
    let offer = offer_with(
        "m=audio 4000 RTP/AVP 18 111\r\na=rtpmap:18 G729/8000\r\na=rtpmap:111 opus/48000/2\r\n",
    );
    let err = negotiate(&offer, &MediaCaps::default()).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.to_string(), "no common codec");
    assert_eq!(err.status_code(), 488);
}

#[test]
fn srtp_audio_is_no_common_transport() {
    let offer =
        offer_with("m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n");
    assert_eq!(
        negotiate(&offer, &MediaCaps::default()),
        Err(SdpError::NoCommonTransport)
    );
}

#[test]
fn hold_via_sendonly_is_answered_recvonly() {
    let plan = plan_for("m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n");
    assert_eq!(plan.direction, Direction::RecvOnly);
    // The caller still told us where it is; we just do not send there.
    assert_eq!(plan.remote_rtp, caller_rtp(4000));
    assert!(answer_text(plan, 2).ends_with("a=ptime:20\r\na=recvonly\r\n"));
}

#[test]
fn recvonly_offer_is_answered_sendonly() {
    let plan = plan_for("m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n");
    assert_eq!(plan.direction, Direction::SendOnly);
}

#[test]
fn inactive_offer_is_answered_inactive() {
    let plan = plan_for("m=audio 4000 RTP/AVP 0\r\na=inactive\r\n");
    assert_eq!(plan.direction, Direction::Inactive);
    assert!(answer_text(plan, 2).ends_with("a=inactive\r\n"));
}

#[test]
fn session_level_direction_applies_unless_media_overrides() {
    let offer = SdpOffer::from_sdp_string(
        "v=0\no=- 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\na=sendonly\n\
         m=audio 4000 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(negotiate_default(&offer).direction, Direction::RecvOnly);
    let offer = SdpOffer::from_sdp_string(
        "v=0\no=- 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 198.51.100.20\nt=0 0\na=sendonly\n\
         m=audio 4000 RTP/AVP 0\na=sendrecv\n",
    )
    .unwrap();
    assert_eq!(negotiate_default(&offer).direction, Direction::SendRecv);
}

#[test]
fn rfc2543_hold_with_zero_address_has_no_remote_and_we_only_receive() {
    let offer = SdpOffer::from_sdp_string(
        "v=0\no=- 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
    )
    .unwrap();
    let plan = negotiate_default(&offer);
    assert_eq!(plan.remote_rtp, None);
    assert_eq!(plan.direction, Direction::RecvOnly);
    let text = answer_text(plan, 2);
    // Our own address stays real: the peer may keep sending (e.g. music on hold).
    assert!(text.contains("c=IN IP4 203.0.113.5\r\n"));
    assert!(text.ends_with("a=recvonly\r\n"));

    let offer = SdpOffer::from_sdp_string(
        "v=0\no=- 1 2 IN IP4 198.51.100.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\na=recvonly\n",
    )
    .unwrap();
    let plan = negotiate_default(&offer);
    assert_eq!(plan.remote_rtp, None);
    assert_eq!(plan.direction, Direction::Inactive);
}

#[test]
fn hold_then_unhold_through_the_same_negotiate_path() {
    let hold = plan_for("m=audio 4000 RTP/AVP 8 0\r\na=sendonly\r\n");
    assert_eq!(hold.direction, Direction::RecvOnly);
    let hold_answer = answer_text(hold, 2);

    let unhold = plan_for("m=audio 4000 RTP/AVP 8 0\r\na=sendrecv\r\n");
    assert_eq!(unhold.direction, Direction::SendRecv);
    assert_eq!(unhold.remote_rtp, caller_rtp(4000));
    assert_eq!(unhold.codec, Codec::pcma());
    // Version bumps are the caller's job (RFC 3264 §8); the answer carries whatever it passes.
    let unhold_answer = answer_text(unhold, 3);
    assert!(hold_answer.contains("o=- 4242 2 IN IP4"));
    assert!(unhold_answer.contains("o=- 4242 3 IN IP4"));
    assert!(unhold_answer.ends_with("a=sendrecv\r\n"));
}

#[test]
fn audio_plus_video_answers_video_with_port_zero() {
    let offer = offer_with(
        "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
         m=video 4002 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 VP8/90000\r\n",
    );
    let text = answer_text(negotiate_default(&offer), 1);
    let answer = SessionDescription::parse(&text).unwrap();
    assert_eq!(
        answer.media.len(),
        2,
        "RFC 3264 §6: one m= line per offered m= line"
    );
    let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        ["m=audio 30000 RTP/AVP 0 101", "m=video 0 RTP/AVP 96 97"]
    );
    assert!(answer.media[1].attributes.is_empty());
}

#[test]
fn video_first_then_audio_keeps_order() {
    let offer = offer_with("m=video 4002 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 8\r\n");
    let plan = negotiate_default(&offer);
    assert_eq!(plan.remote_rtp, caller_rtp(4000));
    let answer = SessionDescription::parse(&answer_text(plan, 1)).unwrap();
    assert_eq!(answer.media[0].media, "video");
    assert_eq!(answer.media[0].port, 0);
    assert_eq!(answer.media[1].port, LOCAL_PORT);
}

#[test]
fn rejected_audio_port_zero_is_skipped() {
    let offer = offer_with("m=audio 0 RTP/AVP 0\r\nm=audio 4004 RTP/AVP 8\r\n");
    let plan = negotiate_default(&offer);
    assert_eq!(plan.remote_rtp, caller_rtp(4004));
    let text = answer_text(plan, 1);
    assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"));
    assert!(text.contains("m=audio 30000 RTP/AVP 8\r\n"));
}

#[test]
fn ipv6_offer_and_answer() {
    let offer = SdpOffer::from_sdp_string(
        "v=0\r\no=- 7 7 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
    )
    .unwrap();
    let plan = negotiate_default(&offer);
    assert_eq!(
        plan.remote_rtp,
        Some("[2001:db8::20]:5004".parse().unwrap())
    );
    let local: IpAddr = "2001:db8::5".parse().unwrap();
    let text = plan.into_answer(local, 30000, 9, 1).to_sdp_string();
    assert!(text.contains("o=- 9 1 IN IP6 2001:db8::5\r\n"));
    assert!(text.contains("c=IN IP6 2001:db8::5\r\n"));

    let held = SdpOffer::from_sdp_string(
        "v=0\no=- 7 8 IN IP6 2001:db8::20\ns=-\nc=IN IP6 ::\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(
        negotiate(&held, &MediaCaps::default()).unwrap().remote_rtp,
        None
    );
}

const OUR_OFFER: &str = "v=0\r\n\
o=- 77 1 IN IP4 203.0.113.5\r\n\
s=helpline\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn our_offer() -> SdpOffer {
    make_offer(
        &MediaCaps::default(),
        IpAddr::from(LOCAL_IP),
        LOCAL_PORT,
        77,
        1,
        101,
    )
}

fn ack_answer(media: &str) -> SdpAnswer {
    SdpAnswer::from_sdp_string(&format!(
        "v=0\r\no=phone 5 5 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n{media}"
    ))
    .unwrap()
}

#[test]
fn make_offer_produces_exactly_the_expected_lines() {
    let offer = our_offer();
    assert_eq!(offer.to_sdp_string(), OUR_OFFER);
    assert_eq!(SdpOffer::from_sdp_string(OUR_OFFER).unwrap(), offer);
}

#[test]
fn no_sdp_flow_accepts_an_answer_choosing_pcma_with_dtmf() {
    let answer = ack_answer(
        "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let n = accept_answer(&our_offer(), &answer).unwrap();
    assert_eq!(n.codec, Codec::pcma());
    assert_eq!(n.dtmf_payload_type, Some(101));
    assert_eq!(n.remote_rtp, caller_rtp(40000));
    assert_eq!(n.direction, Direction::SendRecv);
}

#[test]
fn no_sdp_flow_answer_without_dtmf_and_with_sendonly() {
    let answer = ack_answer("m=audio 40000 RTP/AVP 0\r\na=sendonly\r\n");
    let n = accept_answer(&our_offer(), &answer).unwrap();
    assert_eq!(n.codec, Codec::pcmu());
    assert_eq!(n.dtmf_payload_type, None);
    assert_eq!(n.direction, Direction::RecvOnly);
}

#[test]
fn no_sdp_flow_rejects_answers_that_break_the_offer() {
    let offer = our_offer();
    let not_offered = ack_answer("m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n");
    assert_eq!(
        accept_answer(&offer, &not_offered),
        Err(SdpError::CodecNotOffered(18))
    );
    let rebound = ack_answer("m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 G722/8000\r\n");
    assert_eq!(
        accept_answer(&offer, &rebound),
        Err(SdpError::CodecNotOffered(8))
    );
    let rejected = ack_answer("m=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        accept_answer(&offer, &rejected),
        Err(SdpError::AudioRejected)
    );
    let extra = ack_answer("m=audio 40000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n");
    assert_eq!(
        accept_answer(&offer, &extra),
        Err(SdpError::MediaCountMismatch {
            offer: 1,
            answer: 2
        })
    );
    let dtmf_only = ack_answer("m=audio 40000 RTP/AVP 101\r\n");
    assert_eq!(
        accept_answer(&offer, &dtmf_only),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn answer_plan_and_accepted_answer_agree() {
    // helpline answering its own offer must agree with what accept_answer reads back.
    let offer = our_offer();
    let as_peer_offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let plan = negotiate(&as_peer_offer, &MediaCaps::default()).unwrap();
    let answer = plan
        .clone()
        .into_answer(IpAddr::from([198, 51, 100, 20]), 40000, 5, 1);
    let n = accept_answer(&offer, &answer).unwrap();
    assert_eq!(n.codec, plan.codec);
    assert_eq!(n.dtmf_payload_type, plan.dtmf_payload_type);
    assert_eq!(n.remote_rtp, caller_rtp(40000));
}

#[test]
fn malformed_offers_name_the_fault() {
    let cases = [
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n", "missing m= line"),
        (
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.999\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
            "malformed c= line (line 4)",
        ),
        (
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
            "malformed c= line (line 4)",
        ),
        (
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event\n",
            "bad rtpmap (line 7)",
        ),
        (
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio\n",
            "malformed m= line (line 6)",
        ),
        ("", "missing v= line"),
        ("INVITE sip:x SIP/2.0\r\n", "line 1 is not a <type>=<value> line"),
    ];
    for (text, expected) in cases {
        let err = SdpOffer::from_sdp_string(text).unwrap_err();
        assert_eq!(err.to_string(), expected, "for {text:?}");
        assert_eq!(err.status_code(), 400);
    }
}

#[test]
fn real_world_offers_round_trip_through_print_and_parse() {
    let offers = [
        SIPP_OFFER,
        OUR_OFFER,
        // A softphone offer with bandwidth, rtcp, and an SRTP alternative line.
        "v=0\r\no=Z 0 1 IN IP4 192.168.1.50\r\ns=Z\r\nc=IN IP4 192.168.1.50\r\nb=AS:84\r\nt=0 0\r\n\
         m=audio 8000 RTP/AVP 106 9 98 101 0 8 3\r\na=rtpmap:106 opus/48000/2\r\na=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1\r\n\
         a=rtpmap:98 telephone-event/48000\r\na=fmtp:98 0-16\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
         a=sendrecv\r\na=rtcp-mux\r\n",
        // IPv6 with media-level connection and an unknown line type.
        "v=0\no=- 3 3 IN IP6 2001:db8::1\ns= \nt=0 0\nx=vendor thing\nm=audio 9 RTP/AVP 0\nc=IN IP6 2001:db8::2\nb=TIAS:64000\na=ptime:30\n",
    ];
    for text in offers {
        let first = SessionDescription::parse(text).unwrap();
        let printed = first.to_string();
        assert!(printed.ends_with("\r\n") && !printed.contains("\r\n\r\n"));
        let second = SessionDescription::parse(&printed).unwrap();
        assert_eq!(second, first);
        assert_eq!(second.to_string(), printed);
    }
}

#[test]
fn softphone_offer_with_opus_first_gets_pcmu_and_8k_dtmf() {
    let offer = SdpOffer::from_sdp_string(
        "v=0\r\no=Z 0 1 IN IP4 192.168.1.50\r\ns=Z\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\n\
         m=audio 8000 RTP/AVP 106 9 98 101 0 8 3\r\na=rtpmap:106 opus/48000/2\r\n\
         a=rtpmap:98 telephone-event/48000\r\na=fmtp:98 0-16\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
    )
    .unwrap();
    let plan = negotiate_default(&offer);
    assert_eq!(plan.codec, Codec::pcmu());
    assert_eq!(plan.dtmf_payload_type, Some(101));
    let text = answer_text(plan, 1);
    assert!(text.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
    assert!(text.contains("a=fmtp:101 0-16\r\n"));
}
