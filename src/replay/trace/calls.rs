//! From transport payloads to calls: groups SIP by Call-ID (a call exists when it has an INVITE), takes
//! the caller and server from its first INVITE, marks legs placed by another call's server, and assigns
//! UDP datagrams to a call as RTP/RTCP by the audio addresses its SDP named. It does not parse anything
//! below SIP and does not judge whether a call is well-formed.
//!
//! A datagram is a call's RTP when it goes to an audio address one side's SDP named (RTCP: that port + 1,
//! or RTCP payload types under rtcp-mux), comes from an IP the other side used (its SIP or SDP address:
//! SIPp's pcap playback keeps the IP but not always the port), and falls between that SDP's message and
//! the call's end plus [`MEDIA_GRACE`] (open-ended while the trace shows no BYE, CANCEL or failure). When
//! calls reuse the same media addresses (SIPp does), the call whose SDP named it most recently wins: calls
//! one after another separate cleanly; calls overlapping on identical addresses cannot be told apart.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::decode::{Captured, Payload};
use super::sip::{self, Message};
use super::{PacketKind, TraceCall, TracePacket};

/// Media still belongs to a call this long after its last SIP message once it has ended (BYE, CANCEL,
/// failed INVITE): the last packets in flight, RTCP BYE.
const MEDIA_GRACE: Duration = Duration::from_secs(2);

/// An SDP body's audio address: where its sender wanted media from `since` on.
#[derive(Debug)]
struct Offer {
    call: usize,
    since: Duration,
    addr: SocketAddr,
    /// Whether the caller (the first INVITE's sender) sent this SDP.
    by_caller: bool,
}

/// A call while it is being put together.
#[derive(Debug)]
struct Draft {
    call_id: String,
    invite: usize,
    /// Indices into the captured list: SIP of this call from its first INVITE on, then media.
    packets: Vec<(usize, PacketKind)>,
    ended: Option<Duration>,
    /// IP addresses each side sent SIP or announced media from: (caller side, server side).
    ips: (Vec<IpAddr>, Vec<IpAddr>),
}

/// Groups captured payloads (in capture order) into calls, ordered by their first INVITE.
pub(crate) fn build(captured: &[Captured]) -> Vec<TraceCall> {
    let mut drafts = sip_calls(captured);
    let offers = offers(captured, &mut drafts);
    attribute_media(captured, &mut drafts, &offers);
    let mut calls: Vec<TraceCall> = drafts.into_iter().map(|d| finish(captured, d)).collect();
    mark_legs(&mut calls);
    calls
}

/// Every Call-ID with an INVITE, with its SIP messages from that INVITE on.
fn sip_calls(captured: &[Captured]) -> Vec<Draft> {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let parsed: Vec<Option<Message>> = captured
        .iter()
        .map(|c| match &c.payload {
            Payload::Sip(bytes) => Message::parse(bytes),
            Payload::Udp(_) => None,
        })
        .collect();
    for (i, message) in parsed.iter().enumerate() {
        let Some(id) = message.as_ref().and_then(Message::call_id) else {
            continue;
        };
        let list = by_id.entry(id).or_insert_with(|| {
            order.push(id);
            Vec::new()
        });
        list.push(i);
    }
    let mut drafts = Vec::new();
    for id in order {
        let indices = &by_id[id];
        let is_invite =
            |i: &&usize| parsed[**i].as_ref().and_then(Message::method) == Some("INVITE");
        let Some(&invite) = indices.iter().find(is_invite) else {
            continue;
        };
        let sip: Vec<usize> = indices.iter().copied().filter(|&i| i >= invite).collect();
        let messages: Vec<&Message> = sip.iter().filter_map(|&i| parsed[i].as_ref()).collect();
        let ended = has_ended(&messages)
            .then(|| sip.last().map(|&i| captured[i].ts))
            .flatten();
        let packets = sip
            .iter()
            .filter_map(|&i| match &captured[i].payload {
                Payload::Sip(bytes) => Some((i, PacketKind::Sip(bytes.clone()))),
                Payload::Udp(_) => None,
            })
            .collect();
        drafts.push(Draft {
            call_id: id.to_string(),
            invite,
            packets,
            ended,
            ips: (Vec::new(), Vec::new()),
        });
    }
    drafts.sort_by_key(|d| d.invite);
    drafts
}

/// A call is over (in this trace) after a BYE or CANCEL, or when its INVITE failed without a 2xx.
fn has_ended(messages: &[&Message]) -> bool {
    let to_invite = |m: &&&Message| {
        m.cseq_method()
            .is_some_and(|c| c.eq_ignore_ascii_case("INVITE"))
    };
    let answered = messages
        .iter()
        .filter(to_invite)
        .any(|m| m.code().is_some_and(|c| (200..300).contains(&c)));
    let failed = messages
        .iter()
        .filter(to_invite)
        .any(|m| m.code().is_some_and(|c| c >= 300));
    messages
        .iter()
        .any(|m| matches!(m.method(), Some("BYE" | "CANCEL")))
        || (failed && !answered)
}

/// The audio addresses every call's SDP named; also records which IPs each side used.
fn offers(captured: &[Captured], drafts: &mut [Draft]) -> Vec<Offer> {
    let mut offers = Vec::new();
    for (call, draft) in drafts.iter_mut().enumerate() {
        let caller = captured[draft.invite].from;
        for (i, kind) in &draft.packets {
            let PacketKind::Sip(bytes) = kind else {
                continue;
            };
            let c = &captured[*i];
            let by_caller = c.from == caller;
            let side = if by_caller {
                &mut draft.ips.0
            } else {
                &mut draft.ips.1
            };
            side.push(c.from.ip());
            let Some(addr) = Message::parse(bytes).and_then(|m| sip::sdp_audio(m.body)) else {
                continue;
            };
            side.push(addr.ip());
            offers.push(Offer {
                call,
                since: c.ts,
                addr,
                by_caller,
            });
        }
        for ips in [&mut draft.ips.0, &mut draft.ips.1] {
            ips.sort_unstable();
            ips.dedup();
        }
    }
    offers
}

/// Gives each UDP datagram sent to an offered audio address (or that port + 1) while that call was alive
/// to the call whose SDP named it most recently.
fn attribute_media(captured: &[Captured], drafts: &mut [Draft], offers: &[Offer]) {
    let mut by_addr: HashMap<SocketAddr, Vec<(&Offer, bool)>> = HashMap::new();
    for offer in offers {
        by_addr.entry(offer.addr).or_default().push((offer, false));
        if let Some(rtcp_port) = offer.addr.port().checked_add(1) {
            by_addr
                .entry(SocketAddr::new(offer.addr.ip(), rtcp_port))
                .or_default()
                .push((offer, true));
        }
    }
    for (i, c) in captured.iter().enumerate() {
        let Payload::Udp(bytes) = &c.payload else {
            continue;
        };
        let Some(candidates) = by_addr.get(&c.to) else {
            continue;
        };
        let best = candidates
            .iter()
            .filter(|(o, _)| {
                let draft = &drafts[o.call];
                // The other side sends to this address; SIPp's pcap playback keeps the IP, not the port.
                let senders = if o.by_caller {
                    &draft.ips.1
                } else {
                    &draft.ips.0
                };
                o.since <= c.ts
                    && draft
                        .ended
                        .is_none_or(|e| c.ts <= e.saturating_add(MEDIA_GRACE))
                    && senders.contains(&c.from.ip())
            })
            .max_by_key(|(o, _)| o.since);
        let Some((offer, rtcp_port)) = best else {
            continue;
        };
        let Some(kind) = media_kind(bytes, *rtcp_port) else {
            continue;
        };
        drafts[offer.call].packets.push((i, kind));
    }
}

/// RTP or RTCP (by port, or by payload type under rtcp-mux); None when it is not RTP version 2.
fn media_kind(bytes: &[u8], rtcp_port: bool) -> Option<PacketKind> {
    let first = *bytes.first()?;
    if first >> 6 != 2 {
        return None;
    }
    // RTCP packet types 200..=204 sit where RTP has marker + payload type (RFC 5761 4).
    let rtcp_type = bytes.get(1).is_some_and(|pt| (200..=204).contains(pt));
    match (rtcp_port || rtcp_type, bytes.len()) {
        (true, 8..) => Some(PacketKind::Rtcp(bytes.to_vec())),
        (false, 12..) => Some(PacketKind::Rtp(bytes.to_vec())),
        _ => None,
    }
}

fn finish(captured: &[Captured], mut draft: Draft) -> TraceCall {
    let invite = &captured[draft.invite];
    draft.packets.sort_by_key(|(i, _)| *i);
    let packets = draft
        .packets
        .into_iter()
        .map(|(i, kind)| {
            let c = &captured[i];
            TracePacket {
                at: c.ts.saturating_sub(invite.ts),
                from: c.from,
                to: c.to,
                kind,
            }
        })
        .collect();
    TraceCall {
        call_id: draft.call_id,
        caller: invite.from,
        server: invite.to,
        transport: invite.transport,
        start: wall_time(invite.ts),
        leg_of: None,
        packets,
    }
}

/// A call whose INVITE came from the server address of a call that started earlier is that call's leg
/// (helpline's own captures hold the agent legs it placed). Over TCP the leg's connection comes from
/// another port, so its INVITE's Via sent-by naming that server counts too.
fn mark_legs(calls: &mut [TraceCall]) {
    for b in 1..calls.len() {
        let via = match calls[b].packets.first().map(|p| &p.kind) {
            Some(PacketKind::Sip(bytes)) => Message::parse(bytes).and_then(|m| m.via_sent_by()),
            _ => None,
        };
        let placed_by = |a: &TraceCall| a.server == calls[b].caller || via == Some(a.server);
        let parent = (0..b)
            .rev()
            .find(|&a| calls[a].call_id != calls[b].call_id && placed_by(&calls[a]));
        calls[b].leg_of = parent.map(|a| calls[a].call_id.clone());
    }
}

/// Time since the epoch as a wall time (None when out of chrono's range).
pub(crate) fn wall_time(ts: Duration) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(ts.as_secs()).ok()?, ts.subsec_nanos())
}
