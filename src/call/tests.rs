//! Unit tests of the call registry on a simulated clock: SIP in as bytes, everything out through the
//! `poll_*` methods, time advanced by hand. One test per call defect found by real phones, plus the
//! paths around them.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::ivr::{compile, PromptCheck};
use crate::media::session::{DetectedDigit, DigitMethod};
use crate::sip::endpoint::Transport;
use crate::sip::message::{parse_datagram, Request, SipMessage};

/// Every prompt exists (the unit tests synthesise their own); shared with `ivr_call`'s tests.
pub(super) struct AllPrompts;
impl PromptCheck for AllPrompts {
    fn check(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// A one-region menu set: key 1 routes to `test.orders`, key 2 repeats; shared with `ivr_call`'s tests.
pub(super) const MENUS: &str = r#"
[routing]
departments = ["orders", "refunds"]

[regions.test]
time_zone = "UTC"
languages = ["en"]
open_menu = "main"
closed_menu = "main"

[[regions.test.numbers]]
country = "GB"
number = "0800 000 0001"

[[regions.test.hours]]
days = "daily"
open = "00:00"
close = "24:00"

[menus.main]
greeting = ["welcome", "main-short"]
first_key_timeout = "5s"
max_timeouts = 1

[menus.main.on_max_timeouts]
action = "hangup"
prompt = ["goodbye"]

[menus.main.keys.1]
action = "route"
department = "orders"

[menus.main.keys.2]
action = "repeat"
"#;

const OFFER: &str = "v=0\r\n\
o=caller 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n";

const G729_ONLY: &str = "v=0\r\n\
o=caller 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 18\r\n\
a=rtpmap:18 G729/8000\r\n";

fn udp_peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5092".parse().expect("addr"),
        local: "127.0.0.1:5060".parse().expect("addr"),
    }
}

/// What the registry emitted, parsed.
#[derive(Default)]
struct Out {
    sip: Vec<(Peer, SipMessage)>,
    media: Vec<MediaCommand>,
    cdrs: Vec<Cdr>,
}

impl Out {
    fn responses(&self) -> Vec<&Response> {
        self.sip
            .iter()
            .filter_map(|(_, m)| match m {
                SipMessage::Response(r) => Some(r),
                SipMessage::Request(_) => None,
            })
            .collect()
    }

    fn codes(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.code).collect()
    }

    fn requests(&self) -> Vec<&Request> {
        self.sip
            .iter()
            .filter_map(|(_, m)| match m {
                SipMessage::Request(r) => Some(r),
                SipMessage::Response(_) => None,
            })
            .collect()
    }

    /// BYEs sent, retransmissions counted once.
    fn byes(&self) -> usize {
        let mut seen: Vec<(String, u32)> = self
            .requests()
            .iter()
            .filter(|r| r.method == Method::Bye)
            .map(|r| (r.call_id().to_owned(), r.cseq().seq))
            .collect();
        seen.dedup();
        seen.len()
    }

    fn plays(&self) -> Vec<String> {
        self.media
            .iter()
            .filter_map(|c| match c {
                MediaCommand::Play { prompt, .. } => Some(prompt.name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The registry, a simulated clock and everything emitted since the last `take`.
struct Net {
    calls: Calls,
    t0: Instant,
    now: Instant,
    out: Out,
}

fn config(t0: Instant) -> CallsConfig {
    let wall = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let mut cfg = CallsConfig::new(
        "127.0.0.1:5060".parse().expect("addr"),
        WallClock { instant: t0, wall },
    );
    cfg.rtp_ports = (40000, 40099);
    cfg.server_header = "test-server".to_owned();
    cfg
}

impl Net {
    fn new() -> Net {
        Net::with(|_| {})
    }

    fn with(change: impl FnOnce(&mut CallsConfig)) -> Net {
        let t0 = Instant::now();
        let files = vec![(PathBuf::from("test.toml"), MENUS.to_owned())];
        let (menus, _) = compile(&files, &AllPrompts).expect("test menus compile");
        let mut prompts = PromptStore::default();
        for (name, frames) in [("welcome", 50), ("main-short", 25), ("goodbye", 10)] {
            prompts.insert(Prompt::from_samples("en", name, &vec![0i16; frames * 160]));
        }
        let mut cfg = config(t0);
        change(&mut cfg);
        Net {
            calls: Calls::new(cfg, menus, prompts, 7),
            t0,
            now: t0,
            out: Out::default(),
        }
    }

    /// Drains every output in the documented order (media, then SIP, then CDRs) until none is left.
    fn collect(&mut self) {
        loop {
            let before = (
                self.out.sip.len(),
                self.out.media.len(),
                self.out.cdrs.len(),
            );
            while let Some(c) = self.calls.poll_media() {
                self.out.media.push(c);
            }
            while let Some(t) = self.calls.poll_transmit() {
                let msg = parse_datagram(&t.bytes).expect("helpline emits parseable SIP");
                self.out.sip.push((t.to, msg));
            }
            while let Some(c) = self.calls.poll_cdr() {
                self.out.cdrs.push(c);
            }
            if before
                == (
                    self.out.sip.len(),
                    self.out.media.len(),
                    self.out.cdrs.len(),
                )
            {
                break;
            }
        }
    }

    fn take(&mut self) -> Out {
        std::mem::take(&mut self.out)
    }

    fn send(&mut self, peer: Peer, text: &str) {
        self.calls.handle_sip(self.now, peer, text.as_bytes());
        self.collect();
    }

    fn media(&mut self, id: MediaId, event: MediaEvent) {
        self.calls.handle_media(self.now, id, event);
        self.collect();
    }

    /// Moves the clock to `t0 + at`, firing every wake-up on the way at its own instant.
    fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        while let Some(next) = self.calls.poll_timeout() {
            if next > target {
                break;
            }
            self.now = self.now.max(next);
            self.calls.handle_timeout(self.now);
            self.collect();
        }
        self.now = target;
    }

    fn media_id(&self) -> MediaId {
        self.out
            .media
            .iter()
            .find_map(|c| match c {
                MediaCommand::Open { id, .. } => Some(*id),
                _ => None,
            })
            .expect("the call opened media")
    }
}

/// An INVITE to the test number with `body` (SDP when not empty).
fn invite(call_id: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    format!(
        "INVITE sip:08000000001@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-{call_id}-1\r\n\
From: <sip:caller@127.0.0.1:5092>;tag=c-{call_id}\r\n\
To: <sip:08000000001@127.0.0.1:5060>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:5092>\r\n\
Max-Forwards: 70\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request in the dialog of `call_id` with our tag `tag`.
fn in_dialog(method: &str, call_id: &str, tag: &str, cseq: u32, extra: &str, body: &str) -> String {
    format!(
        "{method} sip:helpline@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-{call_id}-{method}-{cseq}\r\n\
From: <sip:caller@127.0.0.1:5092>;tag=c-{call_id}\r\n\
To: <sip:08000000001@127.0.0.1:5060>;tag={tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Max-Forwards: 70\r\n\
{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn ack(call_id: &str, tag: &str) -> String {
    in_dialog("ACK", call_id, tag, 1, "", "").replace(
        &format!("z9hG4bK-{call_id}-ACK-1"),
        &format!("z9hG4bK-{call_id}-ack"),
    )
}

fn info_key(call_id: &str, tag: &str, cseq: u32, key: char) -> String {
    in_dialog(
        "INFO",
        call_id,
        tag,
        cseq,
        "Content-Type: application/dtmf-relay\r\n",
        &format!("Signal={key}\r\nDuration=160\r\n"),
    )
}

/// Starts a call answered at once; returns our tag.
fn answered(net: &mut Net, call_id: &str) -> String {
    net.send(udp_peer(), &invite(call_id, OFFER));
    let out = &net.out;
    let ok = out
        .responses()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200 OK");
    ok.to().tag().expect("our tag").to_owned()
}

#[test]
fn whole_call_answer_menu_route_bye() {
    let mut net = Net::new();
    let tag = answered(&mut net, "w1");
    let out = net.take();
    assert_eq!(out.codes(), [100, 200]);
    assert!(matches!(out.media[0], MediaCommand::Open { port, .. } if port % 2 == 0));
    net.send(udp_peer(), &ack("w1", &tag));
    net.advance_to(Duration::from_millis(300));
    assert_eq!(net.take().plays(), ["welcome"]);
    net.advance_to(Duration::from_millis(400));
    net.send(udp_peer(), &info_key("w1", &tag, 2, '1'));
    let out = net.take();
    assert_eq!(out.codes(), [200]);
    assert_eq!(out.byes(), 1, "routed: helpline hangs up");
    // The media session and its ports go with our BYE, not with the 200 that answers it.
    assert!(out
        .media
        .iter()
        .any(|c| matches!(c, MediaCommand::Close { .. })));
    assert_eq!(net.calls.ports_in_use(), 0);
    let bye = out.requests()[0].clone();
    let mut ok = Reply::Ok.to_response(&bye, None);
    ok.set_to_tag("c-w1");
    net.send(udp_peer(), &String::from_utf8_lossy(&ok.to_bytes()));
    let out = net.take();
    assert_eq!(out.cdrs.len(), 1);
    assert_eq!(out.cdrs[0].route.as_deref(), Some("test.orders"));
    assert_eq!(out.cdrs[0].end_reason, Some(EndReason::ServerBye));
    assert_eq!(net.calls.call_count(), 0);
}

#[test]
fn a_key_typed_before_the_first_prompt_reaches_the_menu() {
    let mut net = Net::new();
    let tag = answered(&mut net, "ta1");
    net.send(udp_peer(), &ack("ta1", &tag));
    net.take();
    // SIP INFO 100 ms after the ACK, before the first prompt (300 ms) has started.
    net.advance_to(Duration::from_millis(100));
    net.send(udp_peer(), &info_key("ta1", &tag, 2, '1'));
    assert_eq!(net.take().codes(), [200]);
    net.advance_to(Duration::from_millis(300));
    let out = net.take();
    assert_eq!(
        out.byes(),
        1,
        "the key routes the call as soon as the menu starts"
    );
}

#[test]
fn an_rfc4733_key_before_the_ack_reaches_the_menu_in_order() {
    let mut net = Net::new();
    let tag = answered(&mut net, "ta2");
    let id = net.media_id();
    let key = |d| {
        MediaEvent::Digit(DetectedDigit {
            digit: d,
            method: DigitMethod::Rfc4733,
            at: Instant::now(),
        })
    };
    // 2 (repeat) then 1 (route): delivered in that order, the menu ends routed.
    net.advance_to(Duration::from_millis(10));
    net.media(id, key('2'));
    net.advance_to(Duration::from_millis(250));
    net.media(id, key('1'));
    net.advance_to(Duration::from_millis(260));
    net.send(udp_peer(), &ack("ta2", &tag));
    net.advance_to(Duration::from_millis(600));
    let out = net.take();
    // The 2 replays the greeting, then the 1 routes: both keys reached the menu, in order.
    assert_eq!(out.plays(), ["welcome", "welcome"]);
    assert_eq!(out.byes(), 1);
    net.calls.finish_all(net.now);
    net.collect();
    let cdr = &net.take().cdrs[0];
    assert_eq!(cdr.route.as_deref(), Some("test.orders"));
    let keys: String = cdr.digits.iter().map(|d| d.digit).collect();
    assert_eq!(keys, "21");
}

#[test]
fn contact_and_sdp_name_the_transport_and_the_address_the_invite_arrived_on() {
    let mut net = Net::new();
    let tcp = Peer {
        transport: Transport::Tcp(4),
        addr: "10.1.2.9:40312".parse().expect("addr"),
        local: "10.1.2.3:5060".parse().expect("addr"),
    };
    net.send(
        tcp,
        &invite("c1", OFFER).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
    );
    let out = net.take();
    let ok = out
        .responses()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200");
    assert_eq!(
        ok.header("Contact"),
        Some("<sip:helpline@10.1.2.3:5060;transport=tcp>")
    );
    let sdp = String::from_utf8_lossy(&ok.body);
    assert!(sdp.contains("c=IN IP4 10.1.2.3\r\n"), "{sdp}");
    assert!(out.sip.iter().all(|(to, _)| *to == tcp));

    // --advertise-ip wins, on UDP without a transport parameter; IPv6 in brackets.
    let mut net = Net::with(|c| c.advertise_ip = Some("2001:db8::5".parse().expect("ip")));
    net.send(udp_peer(), &invite("c2", OFFER));
    let out = net.take();
    let ok = out
        .responses()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200");
    assert_eq!(
        ok.header("Contact"),
        Some("<sip:helpline@[2001:db8::5]:5060>")
    );
    assert!(String::from_utf8_lossy(&ok.body).contains("c=IN IP6 2001:db8::5\r\n"));
}

#[test]
fn an_ack_with_the_wrong_tags_is_ignored() {
    let mut net = Net::new();
    let tag = answered(&mut net, "a1");
    net.take();
    net.send(udp_peer(), &ack("a1", "not-our-tag"));
    let stray_from = ack("a1", &tag).replace("tag=c-a1", "tag=someone-else");
    net.send(udp_peer(), &stray_from);
    net.advance_to(Duration::from_secs(2));
    let out = net.take();
    assert!(out.plays().is_empty(), "no stray ACK starts the call");
    assert!(
        out.codes().iter().all(|&c| c == 200),
        "only 2xx retransmissions"
    );
    net.send(udp_peer(), &ack("a1", &tag));
    net.advance_to(Duration::from_millis(2300));
    assert_eq!(net.take().plays(), ["welcome"]);
}

#[test]
fn bye_in_the_early_dialog_ends_the_call() {
    let mut net = Net::with(|c| c.ring = Duration::from_secs(5));
    net.send(udp_peer(), &invite("e1", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [100, 180]);
    let tag = out.responses()[1]
        .to()
        .tag()
        .expect("180 has our tag")
        .to_owned();
    net.advance_to(Duration::from_secs(1));
    net.send(udp_peer(), &in_dialog("BYE", "e1", &tag, 2, "", ""));
    let out = net.take();
    let mut codes = out.codes();
    codes.sort();
    assert_eq!(codes, [200, 487]);
    let r487 = out
        .responses()
        .into_iter()
        .find(|r| r.code == 487)
        .expect("487");
    assert_eq!(r487.cseq().method, Method::Invite);
    assert_eq!(r487.to().tag(), Some(tag.as_str()));
    assert_eq!(out.cdrs.len(), 1);
    assert_eq!(out.cdrs[0].end_reason, Some(EndReason::CallerBye));
    assert_eq!(out.cdrs[0].final_status, 487);
    assert_eq!(net.calls.call_count(), 0);
    // The ringing timer of the gone call does nothing.
    net.advance_to(Duration::from_secs(6));
    assert!(net.take().codes().iter().all(|&c| c != 200));
}

#[test]
fn drain_sends_no_bye_before_the_ack() {
    let mut net = Net::new();
    let tag = answered(&mut net, "d1");
    net.take();
    net.calls.handle_drain(net.now);
    net.advance_to(Duration::from_millis(100));
    net.calls.handle_hangup_all(net.now);
    net.collect();
    assert_eq!(
        net.take().byes(),
        0,
        "the ACK has not come: a BYE would cross it"
    );
    net.advance_to(Duration::from_millis(200));
    net.send(udp_peer(), &ack("d1", &tag));
    let out = net.take();
    assert_eq!(out.byes(), 1, "BYE once the ACK is in");
    assert!(out.plays().is_empty());
}

#[test]
fn drain_without_an_ack_releases_as_no_ack() {
    let mut net = Net::new();
    answered(&mut net, "d2");
    net.take();
    net.calls.handle_hangup_all(net.now);
    net.collect();
    net.advance_to(Duration::from_secs(31));
    assert_eq!(net.take().byes(), 0);
    net.advance_to(Duration::from_secs(33));
    assert_eq!(net.take().byes(), 1, "64·T1 without ACK: released with BYE");
    net.calls.finish_all(net.now);
    net.collect();
    assert_eq!(net.take().cdrs[0].end_reason, Some(EndReason::NoAck));
}

#[test]
fn drain_refuses_new_calls_with_retry_after() {
    let mut net = Net::new();
    net.calls.handle_drain(net.now);
    assert!(net.calls.is_draining());
    net.send(udp_peer(), &invite("d3", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [503]);
    assert_eq!(out.responses()[0].header("Retry-After"), Some("30"));
    assert_eq!(out.cdrs[0].region.as_deref(), Some("test"));
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::Draining));
}

#[test]
fn full_records_refuse_new_calls_without_a_record_and_calls_in_progress_go_on() {
    let mut net = Net::new();
    let tag = answered(&mut net, "r1");
    net.send(udp_peer(), &ack("r1", &tag));
    net.take();
    net.calls.set_records_full(true);
    net.send(udp_peer(), &invite("r2", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [503]);
    assert_eq!(out.responses()[0].header("Retry-After"), Some("30"));
    assert!(
        out.cdrs.is_empty(),
        "a refused call adds no record to a full spool"
    );
    assert!(out.media.is_empty());
    assert_eq!(net.calls.records_full_refusals(), 1);
    // The call in progress still ends with its record.
    net.send(udp_peer(), &in_dialog("BYE", "r1", &tag, 2, "", ""));
    let out = net.take();
    assert_eq!(out.codes(), [200]);
    assert_eq!(out.cdrs.len(), 1);
    // Room again: new calls are answered.
    net.calls.set_records_full(false);
    net.send(udp_peer(), &invite("r3", OFFER));
    assert_eq!(net.take().codes(), [100, 200]);
    assert_eq!(net.calls.records_full_refusals(), 1);
}

#[test]
fn cdr_digits_are_bounded() {
    let mut net = Net::new();
    let tag = answered(&mut net, "b1");
    net.send(udp_peer(), &ack("b1", &tag));
    net.advance_to(Duration::from_millis(300));
    // Key 2 repeats the menu: 100 presses, 250 ms apart (no two merge as one key).
    for i in 0..100u32 {
        net.advance_to(Duration::from_millis(400 + 250 * u64::from(i)));
        net.send(udp_peer(), &info_key("b1", &tag, 2 + i, '2'));
    }
    net.calls.finish_all(net.now);
    net.collect();
    let cdr = &net.take().cdrs[0];
    assert_eq!(cdr.digits.len(), MAX_CDR_DIGITS);
    assert_eq!(cdr.digits_dropped, 100 - MAX_CDR_DIGITS as u32);
}

#[test]
fn a_refused_call_still_names_its_region() {
    let mut net = Net::new();
    net.send(udp_peer(), &invite("r1", G729_ONLY));
    let out = net.take();
    assert_eq!(out.codes(), [100, 488]);
    assert!(out.responses()[1].header("Warning").is_some());
    assert_eq!(out.cdrs[0].final_status, 488);
    assert_eq!(out.cdrs[0].region.as_deref(), Some("test"));
    assert!(out.media.is_empty(), "no port taken for a refused call");
    let text =
        invite("r2", OFFER).replace("Content-Type: application/sdp", "Content-Type: text/plain");
    net.send(udp_peer(), &text);
    let out = net.take();
    assert_eq!(out.codes(), [100, 415]);
    assert_eq!(out.cdrs[0].region.as_deref(), Some("test"));
}

#[test]
fn server_and_user_agent_carry_the_configured_text_without_a_version() {
    let mut net = Net::new();
    let tag = answered(&mut net, "s1");
    net.send(udp_peer(), &ack("s1", &tag));
    net.calls.handle_hangup_all(net.now);
    net.collect();
    let out = net.take();
    for r in out.responses() {
        assert_eq!(r.header("Server"), Some("test-server"), "{}", r.code);
        assert!(r.header("User-Agent").is_none());
    }
    let bye = out.requests()[0];
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.header("User-Agent"), Some("test-server"));
    for (_, m) in &out.sip {
        let text = match m {
            SipMessage::Request(r) => String::from_utf8_lossy(&r.to_bytes()).into_owned(),
            SipMessage::Response(r) => String::from_utf8_lossy(&r.to_bytes()).into_owned(),
        };
        assert!(!text.contains("helpline/"), "{text}");
    }
}

fn opened(c: &MediaCommand) -> Option<(MediaId, u16)> {
    match c {
        MediaCommand::Open { id, port, .. } => Some((*id, *port)),
        _ => None,
    }
}

fn sdp_port(r: &Response) -> Option<u16> {
    let sdp = String::from_utf8_lossy(&r.body).into_owned();
    let line = sdp.lines().find(|l| l.starts_with("m=audio "))?;
    line.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_busy_port_is_replaced_before_the_caller_sees_it() {
    let mut net = Net::new();
    // As the shell does: carry out the media commands first, reporting a busy port at once.
    net.calls
        .handle_sip(net.now, udp_peer(), invite("p0", OFFER).as_bytes());
    let (id, busy) = net
        .calls
        .poll_media()
        .as_ref()
        .and_then(opened)
        .expect("open");
    net.calls
        .handle_media(net.now, id, MediaEvent::BindFailed { port: busy });
    let (_, port) = net
        .calls
        .poll_media()
        .as_ref()
        .and_then(opened)
        .expect("another port");
    assert_ne!(port, busy);
    net.collect();
    let out = net.take();
    let ok = out
        .responses()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200");
    assert_eq!(
        sdp_port(ok),
        Some(port),
        "the caller only ever sees the bound port"
    );
    assert_eq!(net.calls.call_count(), 1);
}

#[test]
fn a_port_the_engine_cannot_bind_refuses_or_releases_the_call() {
    // Ringing: the SDP has not left, so the call moves; when no port is left, 503.
    let mut net = Net::with(|c| {
        c.ring = Duration::from_secs(2);
        c.rtp_ports = (40000, 40003);
    });
    net.send(udp_peer(), &invite("p1", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [100, 180]);
    let (id, port) = opened(&out.media[0]).expect("open");
    net.media(id, MediaEvent::BindFailed { port });
    let out = net.take();
    let (id2, port2) = opened(&out.media[0]).expect("moved to the other port");
    assert_ne!(port2, port);
    assert!(out.codes().is_empty());
    net.media(id2, MediaEvent::BindFailed { port: port2 });
    let out = net.take();
    assert_eq!(out.codes(), [503]);
    assert_eq!(out.responses()[0].header("Retry-After"), Some("5"));
    assert_eq!(out.cdrs[0].final_status, 503);
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::RtpBindFailed));
    assert_eq!(net.calls.call_count(), 0);
    // Both ports rest: the next call finds none free.
    net.send(udp_peer(), &invite("p3", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [100, 503]);
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::NoRtpPort));
    assert_eq!(net.calls.no_port_refusals(), 2);

    // Answered and its SDP sent: released with BYE once the ACK is in.
    let mut net = Net::new();
    let tag = answered(&mut net, "p4");
    let id = net.media_id();
    let port = net.out.media.iter().find_map(opened).expect("open").1;
    net.send(udp_peer(), &ack("p4", &tag));
    net.take();
    net.media(id, MediaEvent::BindFailed { port });
    assert_eq!(net.take().byes(), 1);
}

#[test]
fn every_refusal_for_capacity_names_its_cause_in_the_cdr() {
    // At most 2 calls, 1 new call a second (a bucket of 1): each 503 says which limit refused it.
    // (`no-rtp-port` and `rtp-bind-failed`: a_port_the_engine_cannot_bind_refuses_or_releases_the_call.)
    let mut net = Net::with(|c| {
        c.admission = AdmissionConfig {
            burst: 1,
            ..AdmissionConfig::new(2, 1)
        };
    });
    let tag = answered(&mut net, "r1");
    net.send(udp_peer(), &ack("r1", &tag));
    net.send(udp_peer(), &invite("r2", OFFER));
    let out = net.take();
    assert_eq!(out.cdrs.len(), 1, "the second call is refused at once");
    assert_eq!(out.cdrs[0].final_status, 503);
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::MaxCps));

    net.advance_to(Duration::from_secs(1));
    let tag = answered(&mut net, "r3");
    net.send(udp_peer(), &ack("r3", &tag));
    assert!(net.take().cdrs.is_empty());
    net.advance_to(Duration::from_secs(2));
    net.take();
    net.send(udp_peer(), &invite("r4", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [503]);
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::MaxCalls));
    assert_eq!(net.calls.admission_stats().max_calls, 1);
    assert_eq!(net.calls.admission_stats().max_cps, 1);
}

#[test]
fn an_answered_call_names_no_refusal() {
    let mut net = Net::new();
    let tag = answered(&mut net, "ok1");
    net.send(udp_peer(), &ack("ok1", &tag));
    net.calls.finish_all(net.now);
    net.collect();
    let cdr = &net.take().cdrs[0];
    assert_eq!(cdr.final_status, 200);
    assert_eq!(cdr.refusal, None);
    let line = serde_json::to_string(cdr).expect("a CDR serialises");
    assert!(!line.contains("refusal"), "{line}");
}

#[test]
fn cancel_while_ringing_gets_487_and_a_cdr() {
    let mut net = Net::with(|c| c.ring = Duration::from_secs(5));
    net.send(udp_peer(), &invite("x1", OFFER));
    net.take();
    let cancel = invite("x1", "")
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    net.send(udp_peer(), &cancel);
    let out = net.take();
    let mut codes = out.codes();
    codes.sort();
    assert_eq!(codes, [200, 487]);
    assert_eq!(out.cdrs[0].end_reason, Some(EndReason::Cancel));
    assert_eq!(out.cdrs[0].final_status, 487);
}

#[test]
fn invite_without_sdp_takes_the_answer_from_the_ack() {
    let mut net = Net::new();
    net.send(udp_peer(), &invite("n1", ""));
    let out = net.take();
    let ok = out
        .responses()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200");
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio"));
    let tag = ok.to().tag().expect("tag").to_owned();
    let mut ack_text = ack("n1", &tag);
    let answer = OFFER.replace("m=audio 40000 RTP/AVP 0 101", "m=audio 40002 RTP/AVP 0 101");
    ack_text = ack_text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        ),
    );
    net.send(udp_peer(), &ack_text);
    let out = net.take();
    let remote = out.media.iter().find_map(|c| match c {
        MediaCommand::Configure { cfg, .. } => cfg.remote,
        _ => None,
    });
    assert_eq!(remote, Some(SocketAddr::from(([127, 0, 0, 1], 40002))));
}

#[test]
fn second_invite_with_a_known_call_id_is_a_loop() {
    let mut net = Net::new();
    answered(&mut net, "l1");
    net.take();
    let again = invite("l1", OFFER).replace("z9hG4bK-l1-1", "z9hG4bK-l1-2");
    net.send(udp_peer(), &again);
    assert_eq!(net.take().codes(), [482]);
    assert_eq!(net.calls.call_count(), 1);
}

#[test]
fn the_wakeup_heap_stays_bounded() {
    let mut net = Net::new();
    let tag = answered(&mut net, "h1");
    net.send(udp_peer(), &ack("h1", &tag));
    net.advance_to(Duration::from_millis(300));
    for i in 0..2000u32 {
        net.advance_to(Duration::from_millis(400 + 250 * u64::from(i)));
        net.send(udp_peer(), &info_key("h1", &tag, 2 + i, '2'));
        net.take();
    }
    assert!(net.calls.wakeups.len() <= 2 * net.calls.call_count() + 65);
}

#[test]
fn a_source_over_its_call_cap_gets_503_with_retry_after_others_do_not() {
    let mut net = Net::with(|c| c.guard.max_calls_per_source = 2);
    net.send(udp_peer(), &invite("cap1", OFFER));
    net.send(udp_peer(), &invite("cap2", OFFER));
    net.take();
    net.send(udp_peer(), &invite("cap3", OFFER));
    let out = net.take();
    assert_eq!(out.codes(), [503]);
    assert_eq!(out.responses()[0].header("Retry-After"), Some("10"));
    assert_eq!(out.cdrs[0].refusal, Some(cdr::RefusalReason::CallCap));
    assert_eq!(net.calls.guard_stats().0.call_cap_refusals, 1);
    // Another source is not capped.
    let mut other = udp_peer();
    other.addr = "192.0.2.99:5060".parse().expect("addr");
    net.send(other, &invite("cap4", OFFER));
    assert!(net.take().codes().contains(&200));
}

#[test]
fn a_flooding_source_is_banned_silently_and_the_ban_expires() {
    let mut net = Net::with(|c| {
        c.guard.rate = 2;
        c.guard.burst = 2;
        c.guard.ban = Duration::from_secs(30);
    });
    for i in 0..5 {
        net.send(udp_peer(), &invite(&format!("f{i}"), OFFER));
    }
    let out = net.take();
    // Two calls answered, the other three never heard of (no answer, no CDR).
    assert_eq!(out.codes().iter().filter(|c| **c == 200).count(), 2);
    assert!(out.cdrs.is_empty());
    let (stats, _) = net.calls.guard_stats();
    assert_eq!((stats.bans, stats.dropped), (1, 3));
    // After the ban a new INVITE is served again.
    net.now += Duration::from_secs(31);
    net.send(udp_peer(), &invite("after", OFFER));
    assert!(net.take().codes().contains(&200));
}
