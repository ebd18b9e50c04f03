//! What the caller of one traced call did and when: its requests and its RTP, each with an offset (from
//! the ACK once the call was answered, from the INVITE before), RFC 4733 events and audio re-stamped from
//! capture times. Pure: it neither rewrites addresses (the replaying caller does) nor sends anything.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::media::dtmf::rfc4733;
use crate::media::rtp;
use crate::replay::trace::{PacketKind, TraceCall, TraceTransport};
use crate::sdp::SessionDescription;
use crate::sip::message::{parse_datagram, parse_stream_message, Method, Request, SipMessage};

/// The payload type `telephone-event` is assumed to use when the caller's SDP does not say.
pub const DEFAULT_EVENT_PT: u8 = 101;

/// What a step's offset counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The (replayed) INVITE: steps captured before the ACK.
    Invite,
    /// The (replayed) ACK of the 2xx to the first INVITE: everything captured after it.
    Ack,
}

/// One thing the caller did.
#[derive(Clone, Debug)]
pub struct Step {
    /// What `offset` counts from.
    pub anchor: Anchor,
    /// When, after the anchor.
    pub offset: Duration,
    /// What.
    pub action: Action,
}

/// A caller's action.
#[derive(Clone, Debug)]
pub enum Action {
    /// A request as captured (re-INVITE, UPDATE, INFO, BYE, CANCEL, …; never the first INVITE or an ACK).
    Request(Box<Request>),
    /// One RTP packet.
    Rtp(RtpStep),
}

/// One RTP packet of the caller, its timestamp already re-stamped from capture times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpStep {
    /// Payload type as captured.
    pub payload_type: u8,
    /// Marker bit as captured.
    pub marker: bool,
    /// Samples (8 kHz) since the caller's first RTP packet: audio from its own capture offset, every
    /// packet of an RFC 4733 event from the capture offset of the event's first packet.
    pub timestamp: u32,
    /// The payload as captured.
    pub payload: Vec<u8>,
    /// Set on the first packet of an RFC 4733 event: the key it carries.
    pub event_start: Option<char>,
}

/// The caller's side of one call, ready to replay.
#[derive(Clone, Debug)]
pub struct Script {
    /// The Call-ID as captured.
    pub call_id: String,
    /// How the call's SIP travelled.
    pub transport: TraceTransport,
    /// The server the trace's caller called.
    pub server: SocketAddr,
    /// The first INVITE as captured.
    pub invite: Request,
    /// The caller's ACKs of 2xx responses, by CSeq number: sent when the replay's 2xx arrives.
    pub acks: Vec<(u32, Request)>,
    /// Everything else the caller sent, in capture order.
    pub steps: Vec<Step>,
    /// The telephone-event payload type of the caller's offer.
    pub event_pt: u8,
    /// Whether the caller ended the call itself (BYE or CANCEL).
    pub hangs_up: bool,
    /// When the traced server hung up (its first BYE), from the ACK: a caller who did not hang up
    /// waits that long (and a little more) for the server's BYE before hanging up itself.
    pub server_bye_after_ack: Option<Duration>,
    /// Capture time of the trace's last packet of the call, from the INVITE.
    pub duration: Duration,
}

/// Why a traced call cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The call is a leg helpline (or the traced server) placed itself.
    #[error("a leg the server placed (of call {of})")]
    Leg {
        /// The Call-ID of the call it belongs to.
        of: String,
    },
    /// No INVITE from the caller could be parsed.
    #[error("no INVITE from the caller")]
    NoInvite,
}

fn parse(transport: TraceTransport, bytes: &[u8]) -> Option<SipMessage> {
    match transport {
        TraceTransport::Udp => parse_datagram(bytes).ok(),
        TraceTransport::Tcp => parse_stream_message(bytes).ok(),
    }
}

/// The audio address an SDP body names (`c=` of the first audio section, else the session's).
pub fn sdp_audio_addr(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let sdp = SessionDescription::parse(text).ok()?;
    let audio = sdp.media.iter().find(|m| m.media == "audio")?;
    let conn = audio.connection.as_ref().or(sdp.connection.as_ref())?;
    Some(SocketAddr::new(conn.address, audio.port))
}

/// The telephone-event payload type an SDP body offers.
pub fn sdp_event_pt(body: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(body).ok()?;
    let sdp = SessionDescription::parse(text).ok()?;
    let audio = sdp.media.iter().find(|m| m.media == "audio")?;
    let pt = audio.payload_types().find(|pt| {
        audio
            .rtpmap(*pt)
            .is_some_and(|m| m.encoding_name.eq_ignore_ascii_case("telephone-event"))
    });
    pt
}

fn is_sdp(msg_ct: Option<&str>, body: &[u8]) -> bool {
    !body.is_empty()
        && msg_ct.is_none_or(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/sdp")
        })
}

/// The media addresses each side's SDP named.
#[derive(Default)]
struct MediaAddrs {
    caller: HashSet<SocketAddr>,
    server: HashSet<SocketAddr>,
}

fn media_addrs(call: &TraceCall) -> MediaAddrs {
    let mut addrs = MediaAddrs::default();
    for p in &call.packets {
        let PacketKind::Sip(bytes) = &p.kind else {
            continue;
        };
        let Some(msg) = parse(call.transport, bytes) else {
            continue;
        };
        let (ct, body) = match &msg {
            SipMessage::Request(r) => (r.content_type(), &r.body),
            SipMessage::Response(r) => (r.content_type(), &r.body),
        };
        if !is_sdp(ct, body) {
            continue;
        }
        if let Some(a) = sdp_audio_addr(body) {
            if p.from == call.caller {
                addrs.caller.insert(a);
            } else {
                addrs.server.insert(a);
            }
        }
    }
    addrs
}

/// Whether an RTP packet of the trace was sent by the caller.
fn callers_rtp(call: &TraceCall, addrs: &MediaAddrs, from: SocketAddr, to: SocketAddr) -> bool {
    if addrs.caller.contains(&from) {
        return true;
    }
    if addrs.server.contains(&from) {
        return false;
    }
    if addrs.server.contains(&to) {
        return true;
    }
    addrs.caller.is_empty() && from.ip() == call.caller.ip() && to != call.caller
}

/// Turns a traced call into the caller's script. Calls with `leg_of` set are refused (legs the server
/// placed are not the caller's).
pub fn script(call: &TraceCall) -> Result<Script, ScriptError> {
    if let Some(of) = &call.leg_of {
        return Err(ScriptError::Leg { of: of.clone() });
    }
    let addrs = media_addrs(call);
    let mut invite: Option<(Duration, Request)> = None;
    let mut invite_branches: Vec<(u32, String)> = Vec::new();
    let mut seen: HashSet<(String, u32, String)> = HashSet::new();
    let mut ack_at: Option<Duration> = None;
    let mut acks: Vec<(u32, Request)> = Vec::new();
    // (capture time, action), anchors decided once the ACK's time is known.
    let mut timed: Vec<(Duration, Action)> = Vec::new();
    let mut hangs_up = false;
    let mut server_bye_at: Option<Duration> = None;
    let mut event_pt = None;
    let mut rtp = Restamper::default();
    for p in &call.packets {
        match &p.kind {
            PacketKind::Sip(bytes) => {
                if p.from != call.caller {
                    if server_bye_at.is_none() && is_bye(call.transport, bytes) {
                        server_bye_at = Some(p.at);
                    }
                    continue;
                }
                let Some(SipMessage::Request(req)) = parse(call.transport, bytes) else {
                    continue;
                };
                let branch = req
                    .top_via()
                    .and_then(|v| v.branch())
                    .unwrap_or_default()
                    .to_owned();
                let key = (req.method.to_string(), req.cseq().seq, branch.clone());
                if !seen.insert(key) {
                    continue; // a retransmission: the replaying caller retransmits by itself
                }
                if req.method == Method::Invite
                    && event_pt.is_none()
                    && is_sdp(req.content_type(), &req.body)
                {
                    event_pt = sdp_event_pt(&req.body);
                }
                match req.method {
                    Method::Invite if invite.is_none() => {
                        invite_branches.push((req.cseq().seq, branch));
                        invite = Some((p.at, req));
                    }
                    Method::Ack => {
                        let seq = req.cseq().seq;
                        // The ACK of a non-2xx reuses the INVITE's branch (RFC 3261 §17.1.1.3): the
                        // replaying caller sends its own.
                        if invite_branches
                            .iter()
                            .any(|(s, b)| *s == seq && *b == branch)
                        {
                            continue;
                        }
                        let first = invite.as_ref().is_some_and(|(_, i)| i.cseq().seq == seq);
                        if first && ack_at.is_none() {
                            ack_at = Some(p.at);
                        }
                        if !acks.iter().any(|(s, _)| *s == seq) {
                            acks.push((seq, req));
                        }
                    }
                    _ => {
                        if invite.is_none() {
                            continue;
                        }
                        if req.method == Method::Invite {
                            invite_branches.push((req.cseq().seq, branch));
                        }
                        if matches!(req.method, Method::Bye | Method::Cancel) {
                            hangs_up = true;
                        }
                        timed.push((p.at, Action::Request(Box::new(req))));
                    }
                }
            }
            PacketKind::Rtp(bytes) => {
                if invite.is_none() || !callers_rtp(call, &addrs, p.from, p.to) {
                    continue;
                }
                let pt = event_pt.unwrap_or(DEFAULT_EVENT_PT);
                if let Some(step) = rtp.restamp(p.at, bytes, pt) {
                    timed.push((p.at, Action::Rtp(step)));
                }
            }
            PacketKind::Rtcp(_) => {}
        }
    }
    let Some((invite_at, invite)) = invite else {
        return Err(ScriptError::NoInvite);
    };
    let steps = timed
        .into_iter()
        .map(|(at, action)| {
            let at = at.saturating_sub(invite_at);
            match ack_at.map(|a| a.saturating_sub(invite_at)) {
                Some(ack) if at >= ack => Step {
                    anchor: Anchor::Ack,
                    offset: at - ack,
                    action,
                },
                _ => Step {
                    anchor: Anchor::Invite,
                    offset: at,
                    action,
                },
            }
        })
        .collect();
    let duration = call
        .packets
        .last()
        .map_or(Duration::ZERO, |p| p.at.saturating_sub(invite_at));
    Ok(Script {
        call_id: call.call_id.clone(),
        transport: call.transport,
        server: call.server,
        invite,
        acks,
        steps,
        event_pt: event_pt.unwrap_or(DEFAULT_EVENT_PT),
        hangs_up,
        server_bye_after_ack: server_bye_at
            .zip(ack_at)
            .map(|(bye, ack)| bye.saturating_sub(ack)),
        duration,
    })
}

/// Whether a captured message is a BYE request.
fn is_bye(transport: TraceTransport, bytes: &[u8]) -> bool {
    matches!(parse(transport, bytes), Some(SipMessage::Request(r)) if r.method == Method::Bye)
}

/// Samples at 8 kHz in `d`.
fn samples(d: Duration) -> u32 {
    (d.as_micros() * 8 / 1000) as u32
}

/// Gives the caller's RTP timestamps from capture times. A run of telephone-event packets with one
/// timestamp and one event code, ended by its E-bit packets, is one event: a packet after the end
/// packets starts a new event even when it repeats the timestamp (sip-tester's captures all carry the
/// same one, so a trace that played them twice holds the same key twice, stamped alike).
#[derive(Default)]
struct Restamper {
    /// Capture time of the caller's first RTP packet: timestamp 0.
    first: Option<Duration>,
    /// The event being sent: (original timestamp, event code, whether an end packet was seen,
    /// re-stamped timestamp).
    event: Option<(u32, u8, bool, u32)>,
}

impl Restamper {
    fn restamp(&mut self, at: Duration, bytes: &[u8], event_pt: u8) -> Option<RtpStep> {
        let (header, payload) = rtp::parse(bytes).ok()?;
        let first = *self.first.get_or_insert(at);
        let now_ts = samples(at.saturating_sub(first));
        let mut step = RtpStep {
            payload_type: header.payload_type,
            marker: header.marker,
            timestamp: now_ts,
            payload: payload.to_vec(),
            event_start: None,
        };
        if header.payload_type != event_pt {
            return Some(step);
        }
        let ev = rfc4733::parse_payload(payload).ok()?;
        let continues = self.event.is_some_and(|(ts, code, ended, _)| {
            ts == header.timestamp && code == ev.event && (ev.end || !ended)
        });
        if continues {
            if let Some(e) = self.event.as_mut() {
                e.2 |= ev.end;
                step.timestamp = e.3;
            }
        } else {
            self.event = Some((header.timestamp, ev.event, ev.end, now_ts));
            step.event_start = Some(rfc4733::event_to_char(ev.event).unwrap_or('?'));
        }
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synth::{event_packets, CallBuilder};

    fn rtp_steps(s: &Script) -> Vec<(Anchor, Duration, RtpStep)> {
        s.steps
            .iter()
            .filter_map(|st| match &st.action {
                Action::Rtp(r) => Some((st.anchor, st.offset, r.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn offsets_count_from_the_ack_after_it_and_from_the_invite_before() {
        let mut b = CallBuilder::udp("08000289999");
        b.invite(Duration::ZERO);
        b.ok(Duration::from_millis(40));
        b.ack(Duration::from_millis(100));
        b.info(Duration::from_millis(1100), '5');
        b.bye(Duration::from_millis(5100));
        let s = script(&b.build()).expect("script");
        let kinds: Vec<(Anchor, u128, String)> = s
            .steps
            .iter()
            .map(|st| match &st.action {
                Action::Request(r) => (st.anchor, st.offset.as_millis(), r.method.to_string()),
                Action::Rtp(_) => (st.anchor, st.offset.as_millis(), "RTP".into()),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (Anchor::Ack, 1000, "INFO".to_owned()),
                (Anchor::Ack, 5000, "BYE".to_owned())
            ]
        );
        assert_eq!(s.acks.len(), 1);
        assert!(s.hangs_up);
    }

    #[test]
    fn retransmissions_and_non_2xx_acks_are_not_steps() {
        let mut b = CallBuilder::udp("08000289999");
        b.invite(Duration::ZERO);
        b.invite(Duration::from_millis(500)); // Timer A retransmission
        b.ok(Duration::from_millis(600));
        b.ack(Duration::from_millis(700));
        b.bye(Duration::from_millis(900));
        b.bye(Duration::from_millis(1400));
        let s = script(&b.build()).expect("script");
        assert_eq!(s.steps.len(), 1, "{:?}", s.steps);
    }

    #[test]
    fn identical_event_timestamps_become_separate_presses_stamped_from_capture_times() {
        // What a trace of a SIPp caller that played dtmf_2833_1.pcap twice holds: the same ten packets
        // (same timestamp 0x33e0, same sequence numbers) two seconds apart.
        let mut b = CallBuilder::udp("08000289999");
        b.invite(Duration::ZERO);
        b.ok(Duration::from_millis(10));
        b.ack(Duration::from_millis(20));
        for start in [1000u64, 3000] {
            for (i, pkt) in event_packets('1', 0x33e0, 7000, 101)
                .into_iter()
                .enumerate()
            {
                b.caller_rtp(Duration::from_millis(20 + start + 20 * i as u64), pkt);
            }
        }
        let s = script(&b.build()).expect("script");
        let steps = rtp_steps(&s);
        assert_eq!(steps.len(), 20);
        let starts: Vec<(u128, char, u32)> = steps
            .iter()
            .filter_map(|(_, off, r)| r.event_start.map(|k| (off.as_millis(), k, r.timestamp)))
            .collect();
        // Timestamps count from the caller's first RTP packet (1 s after the ACK): 0 and 2 s · 8000.
        assert_eq!(starts, [(1000, '1', 0), (3000, '1', 16000)]);
        // Every packet of an event carries its event's timestamp, end packets included.
        assert!(steps[..10].iter().all(|(_, _, r)| r.timestamp == 0));
        assert!(steps[10..].iter().all(|(_, _, r)| r.timestamp == 16000));
    }

    #[test]
    fn a_new_timestamp_or_key_starts_a_new_event_and_audio_is_stamped_by_offset() {
        let mut b = CallBuilder::udp("08000289999");
        b.invite(Duration::ZERO);
        b.ok(Duration::from_millis(10));
        b.ack(Duration::from_millis(20));
        b.caller_rtp(
            Duration::from_millis(40),
            crate::replay::synth::audio_packet(0, 5, 999, &[0xff; 160]),
        );
        b.caller_rtp(
            Duration::from_millis(60),
            crate::replay::synth::audio_packet(0, 6, 999, &[0xff; 160]),
        );
        for (i, pkt) in event_packets('2', 5, 7, 101)
            .into_iter()
            .enumerate()
            .take(4)
        {
            b.caller_rtp(Duration::from_millis(80 + 20 * i as u64), pkt);
        }
        for (i, pkt) in event_packets('3', 5, 8, 101).into_iter().enumerate() {
            b.caller_rtp(Duration::from_millis(200 + 20 * i as u64), pkt);
        }
        let s = script(&b.build()).expect("script");
        let steps = rtp_steps(&s);
        assert_eq!(steps[0].2.timestamp, 0);
        assert_eq!(steps[1].2.timestamp, 160);
        let starts: Vec<(char, u32)> = steps
            .iter()
            .filter_map(|(_, _, r)| r.event_start.map(|k| (k, r.timestamp)))
            .collect();
        assert_eq!(starts, [('2', 320), ('3', 1280)]);
    }

    #[test]
    fn legs_the_server_placed_are_refused() {
        let mut b = CallBuilder::udp("ana");
        b.invite(Duration::ZERO);
        let mut call = b.build();
        call.leg_of = Some("abc".into());
        assert_eq!(
            script(&call).err(),
            Some(ScriptError::Leg { of: "abc".into() })
        );
    }
}
