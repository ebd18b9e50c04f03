//! The call detail record (one JSON line per call), why a call ended, and the wall clock its times are
//! written in. It decides what a CDR holds; it does not write files (`server::jsonl` does).
use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// Keys kept in a CDR's `digits`; further keys are only counted in `digits_dropped`, so a CDR line stays
/// small whatever the caller sends.
pub const MAX_CDR_DIGITS: usize = 64;

/// Why a call ended, as written to the CDR's `end_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// The caller sent BYE.
    CallerBye,
    /// helpline sent BYE (menu finished, routed, shutdown).
    ServerBye,
    /// The caller cancelled before the answer.
    Cancel,
    /// The 2xx was never acknowledged (RFC 3261 §13.3.1.4: released with BYE after 64·T1).
    NoAck,
    /// No RTP and no SIP from the caller for the configured time.
    RtpTimeout,
    /// The call could not be set up or continued (refused, bad SDP, internal fault).
    Error,
    /// The agent the caller was bridged to sent BYE.
    AgentBye,
    /// The contact centre the caller was transferred to (a menu `transfer`) sent BYE.
    TransferBye,
}

/// Why helpline refused a new call for want of capacity, as written to the CDR's `refusal`: the refusals
/// that share a status code (`503`, or `486` for the admission limits with `--overload-answer 486`)
/// told apart, so a load run's refusals add up by cause. Other refusals (404, 488 …) are told apart by
/// `final_status` alone and leave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalReason {
    /// `--max-calls` calls were in progress.
    MaxCalls,
    /// New calls arrived faster than `--max-cps`.
    MaxCps,
    /// The caller's source held its share of the calls (`--max-calls-per-source`).
    CallCap,
    /// Every RTP port of `--rtp-ports` was held by a call (none whose ACK was overdue to take back).
    NoRtpPort,
    /// The media engine could not bind the call's RTP port, nor the ports tried after it.
    RtpBindFailed,
    /// The server was shutting down.
    Draining,
}

/// How a menu `transfer` to an external SIP URI ended, as written to the CDR's `transfer_result` (the
/// counterpart of `queue_result` for a routed call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferResult {
    /// The far end answered (2xx): the caller was bridged to it.
    Answered,
    /// The caller hung up while the far end rang (our INVITE was cancelled).
    Abandoned,
    /// The far end refused the call with a final 3xx–6xx (its code is in `transfer_status`).
    Rejected,
    /// The far end did not answer within the transfer's ring timeout (our INVITE was cancelled).
    NoAnswer,
    /// Nothing came back to our INVITE at all (Timer B, RFC 3261 §17.1.1.2).
    Unreachable,
    /// helpline could not place the call (no RTP port free, a URI that does not name an address).
    Failed,
}

/// One queue a caller waited in, as recorded in the CDR's `queues_tried`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueTried {
    /// The queue (`europe.refunds`).
    pub queue: String,
    /// How the wait there ended.
    pub result: crate::queue::QueueResult,
}

/// One key press as recorded in the CDR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CdrDigit {
    /// The key: `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// How it arrived: `rfc4733`, `info` or `inband`.
    pub method: &'static str,
    /// When it arrived (RFC 3339 with milliseconds).
    pub at: String,
    /// The menu in which this key was a choice (`None` for digits collected into a variable, a language
    /// choice or a key typed ahead of the first menu): with it a replay names the menu and the key at
    /// which a call went elsewhere.
    pub menu: Option<String>,
}

/// The call detail record: one JSON line per call.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cdr {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The caller's From URI.
    pub from: String,
    /// The dialed number (Request-URI user part).
    pub dialed: String,
    /// Where the INVITE came from (ip:port).
    pub source: String,
    /// When the INVITE arrived.
    pub start: String,
    /// When the call was answered (200 sent), if it was.
    pub answer: Option<String>,
    /// When the call ended.
    pub end: String,
    /// The first [`MAX_CDR_DIGITS`] keys the caller pressed, once each.
    pub digits: Vec<CdrDigit>,
    /// Keys pressed beyond the first [`MAX_CDR_DIGITS`] (counted, not kept).
    pub digits_dropped: u32,
    /// The final response code sent to the INVITE (200, 404, 487, 488, 503 …).
    pub final_status: u16,
    /// Why the call ended.
    pub end_reason: Option<EndReason>,
    /// Why a new call was refused for want of capacity (left out for every other call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalReason>,
    /// The region the dialed number belongs to (also for a refused call, when the number is known).
    pub region: Option<String>,
    /// The language the caller heard.
    pub language: Option<String>,
    /// The menus the caller went through, in order.
    pub menu_path: Vec<String>,
    /// Digits collected into named variables (e.g. `order_id`).
    pub variables: BTreeMap<String, String>,
    /// The queue the call was routed to (`europe.refunds`) or the transfer target.
    pub route: Option<String>,
    /// The menu set version the call ran on.
    pub menu_version: Option<String>,
    /// The queue that answered, or the last one tried.
    pub queue: Option<String>,
    /// From entering the queue to the answer or the departure.
    pub queue_wait_ms: Option<u64>,
    /// The agent (ID) who answered.
    pub agent: Option<String>,
    /// From the agent's answer to the end of the call.
    pub talk_ms: Option<u64>,
    /// How the wait in the (last) queue ended: `answered`, `abandoned`, `no-agents`, `overflow` or
    /// `timeout`.
    pub queue_result: Option<crate::queue::QueueResult>,
    /// Every queue the caller waited in, in order, each with how that wait ended (an overflow or a
    /// timeout moves the caller on to the next); the last one's result is `queue_result`.
    pub queues_tried: Vec<QueueTried>,
    /// How a menu `transfer` ended: `answered`, `abandoned`, `rejected`, `no-answer`, `unreachable`
    /// or `failed` (`route` holds the URI; `talk_ms` counts from the far end's answer).
    pub transfer_result: Option<TransferResult>,
    /// The far end's final response code to our transfer INVITE (e.g. 200, 486, 503), if one came.
    pub transfer_status: Option<u16>,
    /// Per media leg (the caller's, an agent's, a transfer's far end), RTCP's view of its audio, as of
    /// the last report sent or received on it; left out when no leg had media.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rtcp: Vec<CdrRtcp>,
}

/// Which leg of a call a [`CdrRtcp`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcpLeg {
    /// The caller's leg.
    Caller,
    /// The agent side (every agent leg of a routed call shares one media session).
    Agent,
    /// The far end of a menu `transfer`.
    Transfer,
}

/// One leg's audio quality from RTCP (RFC 3550 §6.4), as written in the CDR's `rtcp`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CdrRtcp {
    /// The leg.
    pub leg: RtcpLeg,
    /// RTP packets helpline sent on it (prompts and relayed audio).
    pub packets_sent: u64,
    /// RTP packets helpline accepted from the far end.
    pub packets_received: u64,
    /// The far end's packets that never arrived (RFC 3550 A.3; negative when duplicated).
    pub lost: i64,
    /// Interarrival jitter of the far end's RTP as helpline measured it (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// Our packets the far end reports lost (its last report block about our stream).
    pub remote_lost: Option<i64>,
    /// The jitter of our RTP as the far end reports it, ms.
    pub remote_jitter_ms: Option<f64>,
    /// Round trip from the far end's LSR/DLSR echo of our sender report, ms (0.1 ms resolution).
    pub rtt_ms: Option<f64>,
    /// RTCP compound packets helpline sent on the leg.
    pub reports_sent: u32,
    /// Valid RTCP compound packets received from the far end.
    pub reports_received: u32,
    /// RTCP datagrams ignored: malformed, or from an address that is not the far end's.
    pub reports_malformed: u32,
}

impl CdrRtcp {
    /// The CDR's view of one leg's statistics.
    pub fn new(leg: RtcpLeg, s: &crate::media::rtcp::RtcpStats) -> CdrRtcp {
        // Timestamp units of the 8 kHz clock: 8 per millisecond.
        let ms = |units: u32| f64::from(units) / 8.0;
        CdrRtcp {
            leg,
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            lost: s.lost,
            jitter_ms: ms(s.jitter),
            remote_lost: s.remote.map(|r| i64::from(r.cumulative_lost)),
            remote_jitter_ms: s.remote.map(|r| ms(r.jitter)),
            rtt_ms: s.rtt.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0),
            reports_sent: s.reports_sent,
            reports_received: s.reports_received,
            reports_malformed: s.malformed,
        }
    }
}

impl Cdr {
    /// Records one key, keeping the first [`MAX_CDR_DIGITS`] and counting the rest.
    pub fn push_digit(&mut self, digit: CdrDigit) {
        if self.digits.len() < MAX_CDR_DIGITS {
            self.digits.push(digit);
        } else {
            self.digits_dropped = self.digits_dropped.saturating_add(1);
        }
    }
}

/// Maps wall-clock time onto the monotonic clock the calls run on, so the CDR can show RFC 3339 times and
/// opening hours can be checked while every decision is taken on `Instant`s (and so on a simulated clock
/// in tests). The shell builds one at start from the real wall clock (plus `--pretend-time`'s offset).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// A monotonic instant …
    pub instant: Instant,
    /// … and the wall time it corresponds to.
    pub wall: DateTime<Utc>,
}

impl WallClock {
    /// The wall time of `at`.
    pub fn at(&self, at: Instant) -> DateTime<Utc> {
        if at >= self.instant {
            self.wall + chrono::Duration::from_std(at - self.instant).unwrap_or_default()
        } else {
            self.wall - chrono::Duration::from_std(self.instant - at).unwrap_or_default()
        }
    }

    /// The wall time of `at`, formatted as RFC 3339 with milliseconds.
    pub fn format(&self, at: Instant) -> String {
        self.at(at).to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_bounded_and_the_rest_counted() {
        let mut cdr = Cdr::default();
        for i in 0..100 {
            cdr.push_digit(CdrDigit {
                digit: char::from(b'0' + (i % 10) as u8),
                method: "info",
                at: String::new(),
                menu: None,
            });
        }
        assert_eq!(cdr.digits.len(), MAX_CDR_DIGITS);
        assert_eq!(cdr.digits_dropped, 36);
        let line = serde_json::to_string(&cdr).expect("serialisable");
        assert!(line.contains("\"digits_dropped\":36"), "{line}");
    }
}
