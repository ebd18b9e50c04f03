//! SIPp message logs (`sipp -trace_msg`, `<scenario>_<pid>_messages.log`): each entry is a separator line
//! with the time, `UDP message sent (N bytes):` or `TCP message received [N] bytes :`, a blank line and
//! the message. It reads SIP only: such logs hold no RTP.
//!
//! What is inferred, since the log records neither addresses nor the time zone:
//! - Times are SIPp's local time without a zone, taken as UTC (the trailing epoch field that some SIPp
//!   versions print is used instead when present). Offsets within a call are exact either way.
//! - Addresses are taken per Call-ID from its first INVITE: the sender is its top Via sent-by (else its
//!   Contact), the receiver its Request-URI host:port (else the Contact of the first response). Which of
//!   the two is this SIPp follows from whether the INVITE was sent or received; every later message of
//!   the call goes between the same two addresses. Behind a proxy the Request-URI names the target, not
//!   the next hop. A side that names no IP literal is 0.0.0.0 (port 0 for the caller, 5060 for the server).
//! - A TCP `received` entry may hold several messages or part of one (older SIPp logs the raw read): such
//!   entries are framed by Content-Length as one stream per transport.
//! - `control` entries (3PCC links between SIPp instances) and SIPp's diagnostic lines are skipped.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::NaiveDateTime;

use super::decode::{Captured, Payload};
use super::sip::{self, Message};
use super::TraceTransport;

/// The start of every entry: 47 dashes and a space, then the time.
const SEPARATOR: &[u8] = b"----------------------------------------------- ";

/// Where SIPp's first entry must start for the bytes to be taken as its log: it writes diagnostics such
/// as `Problem EAGAIN on socket` into the same file, before and between entries.
const SNIFF: usize = 64 * 1024;

/// Whether the bytes look like a SIPp message log: a message entry starts near the beginning.
pub(crate) fn is_sipp_log(bytes: &[u8]) -> bool {
    find_separator(&bytes[..bytes.len().min(SNIFF)])
        .is_some_and(|at| entries(&bytes[at..]).next().is_some())
}

/// One logged message (or, for TCP receives, a piece of the stream).
#[derive(Debug)]
struct Entry<'a> {
    ts: Duration,
    sent: bool,
    transport: TraceTransport,
    control: bool,
    content: &'a [u8],
}

/// Reads every SIP message of the log, with the addresses inferred as the module says.
pub(crate) fn read(bytes: &[u8]) -> Vec<Captured> {
    let mut messages: Vec<(Duration, bool, TraceTransport, Vec<u8>)> = Vec::new();
    // Older SIPp logs TCP reads as they came: frame them as a stream.
    let mut tcp_in: Vec<u8> = Vec::new();
    for entry in entries(bytes).filter(|e| !e.control) {
        if entry.transport == TraceTransport::Tcp && !entry.sent {
            tcp_in.extend_from_slice(entry.content);
            if tcp_in.len() > sip::MAX_BODY * 2 {
                tcp_in.clear();
            }
            for message in sip::drain_messages(&mut tcp_in) {
                messages.push((entry.ts, false, entry.transport, message));
            }
        } else if sip::looks_like_sip(entry.content) {
            let message = sip::datagram_message(entry.content).to_vec();
            messages.push((entry.ts, entry.sent, entry.transport, message));
        }
    }
    let ends = endpoints(&messages);
    let mut out: Vec<Captured> = messages
        .into_iter()
        .filter_map(|(ts, sent, transport, bytes)| {
            let call_id = Message::parse(&bytes)?.call_id()?.to_string();
            let &(local, remote) = ends.get(&call_id)?;
            let (from, to) = if sent {
                (local, remote)
            } else {
                (remote, local)
            };
            Some(Captured {
                ts,
                from,
                to,
                transport,
                payload: Payload::Sip(bytes),
            })
        })
        .collect();
    out.sort_by_key(|c| c.ts);
    out
}

/// (this SIPp's address, the peer's) per Call-ID, from the call's first INVITE.
fn endpoints(
    messages: &[(Duration, bool, TraceTransport, Vec<u8>)],
) -> HashMap<String, (SocketAddr, SocketAddr)> {
    let parsed: Vec<(bool, Message)> = messages
        .iter()
        .filter_map(|(_, sent, _, b)| Some((*sent, Message::parse(b)?)))
        .collect();
    let mut ends = HashMap::new();
    for (i, (sent, invite)) in parsed.iter().enumerate() {
        let Some(call_id) = invite.call_id() else {
            continue;
        };
        if invite.method() != Some("INVITE") || ends.contains_key(call_id) {
            continue;
        }
        let first_response = parsed[i..]
            .iter()
            .find(|(_, m)| m.code().is_some() && m.call_id() == Some(call_id));
        let caller = invite.via_sent_by().or_else(|| invite.contact_addr());
        let server = invite
            .request_uri_addr()
            .or_else(|| first_response.and_then(|(_, m)| m.contact_addr()));
        let caller = caller.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let server = server.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060));
        let pair = if *sent {
            (caller, server)
        } else {
            (server, caller)
        };
        ends.insert(call_id.to_string(), pair);
    }
    ends
}

/// The entries of a log, in order; text between separators that is not a message entry is skipped.
fn entries(bytes: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    let mut rest = bytes;
    std::iter::from_fn(move || loop {
        let start = if rest.starts_with(SEPARATOR) {
            0
        } else {
            find_separator(rest)?
        };
        let (entry, next) = entry(&rest[start..]);
        rest = next;
        if entry.is_some() {
            return entry;
        }
    })
}

/// The next separator at the start of a line.
fn find_separator(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = sip::find(&bytes[from..], SEPARATOR) {
        let at = from + i;
        if at == 0 || bytes[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Parses the entry at the front of `bytes` (which starts with a separator): the entry (None when it is
/// not a message entry) and the bytes from the next separator on.
fn entry(bytes: &[u8]) -> (Option<Entry<'_>>, &[u8]) {
    let after = &bytes[SEPARATOR.len()..];
    let next_at = find_separator(after).map_or(bytes.len(), |i| SEPARATOR.len() + i);
    let (this, next) = bytes.split_at(next_at);
    (parse_entry(this), next)
}

fn parse_entry(this: &[u8]) -> Option<Entry<'_>> {
    let body = &this[SEPARATOR.len()..];
    let time_end = body.iter().position(|&b| b == b'\n')?;
    let ts = parse_time(std::str::from_utf8(&body[..time_end]).ok()?)?;
    let body = &body[time_end + 1..];
    let header_end = body.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&body[..header_end]).ok()?;
    let (transport, control, sent, size) = parse_header(header)?;
    let content = body[header_end + 1..].strip_prefix(b"\n")?;
    // The logged size is exact when it fits; else up to the next entry, less the newline SIPp adds.
    let content = match size {
        Some(n) if n <= content.len() => &content[..n],
        _ => content.strip_suffix(b"\n").unwrap_or(content),
    };
    Some(Entry {
        ts,
        sent,
        transport,
        control,
        content,
    })
}

/// `UDP message sent (511 bytes):` or `TCP control message received [301] bytes :`.
fn parse_header(header: &str) -> Option<(TraceTransport, bool, bool, Option<usize>)> {
    let (transport, rest) = header.split_once(' ')?;
    let transport = match transport.to_ascii_uppercase().as_str() {
        "UDP" => TraceTransport::Udp,
        "TCP" | "TLS" | "SCTP" => TraceTransport::Tcp,
        _ => return None,
    };
    let (control, rest) = match rest.strip_prefix("control ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (sent, rest) = if let Some(r) = rest.strip_prefix("message sent ") {
        (true, r)
    } else {
        (false, rest.strip_prefix("message received ")?)
    };
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    Some((transport, control, sent, digits.parse().ok()))
}

/// `2026-12-01 15:31:25.329086`, or `2026-12-01\t15:31:25.329086\t1796131885.329086` (epoch preferred).
fn parse_time(text: &str) -> Option<Duration> {
    let fields: Vec<&str> = text.split(['\t', ' ']).filter(|f| !f.is_empty()).collect();
    if let Some(epoch) = fields.get(2) {
        let (secs, frac) = epoch.split_once('.').unwrap_or((epoch, "0"));
        let micros: u32 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
        return Some(Duration::new(secs.parse().ok()?, micros.checked_mul(1000)?));
    }
    let naive = NaiveDateTime::parse_from_str(
        &format!("{} {}", fields.first()?, fields.get(1)?),
        "%Y-%m-%d %H:%M:%S%.f",
    )
    .ok()?;
    let utc = naive.and_utc();
    Some(Duration::new(
        u64::try_from(utc.timestamp()).ok()?,
        utc.timestamp_subsec_nanos(),
    ))
}

#[cfg(test)]
pub(crate) fn parse_time_for_test(text: &str) -> Option<Duration> {
    parse_time(text)
}
