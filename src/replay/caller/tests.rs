//! Unit tests of the replaying caller on a simulated clock: rewriting, retransmission, ACKs, answering
//! the server's requests, RTP re-sent with new SSRC and sequence, keys by method, bounded life.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::media::rtp;
use crate::replay::script::script;
use crate::replay::synth::{audio_packet, tone_payloads, CallBuilder};
use crate::replay::trace::PacketKind;
use crate::sip::message::{parse_datagram, Request, Response, SipMessage};

const TARGET: &str = "127.0.0.1:5070";
const SIP: &str = "127.0.0.9:6000";
const RTP: &str = "127.0.0.9:6002";
const SERVER_RTP: &str = "127.0.0.1:31000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Net {
    caller: ReplayCaller,
    now: Instant,
    t0: Instant,
    /// Everything sent, with its time.
    sent: Vec<(Instant, Transmit)>,
}

impl Net {
    fn new(b: &CallBuilder) -> Net {
        Net::with_transport(b, TraceTransport::Udp)
    }

    fn with_transport(b: &CallBuilder, transport: TraceTransport) -> Net {
        let s = script(&b.build()).expect("script");
        let caller = ReplayCaller::new(
            CallerConfig {
                target: addr(TARGET),
                local_sip: addr(SIP),
                local_rtp: addr(RTP),
                transport,
                t1: ms(500),
                seed: 3,
            },
            s,
        );
        let t0 = Instant::now();
        let mut net = Net {
            caller,
            now: t0,
            t0,
            sent: Vec::new(),
        };
        net.caller.start(t0);
        net.drain();
        net
    }

    fn drain(&mut self) {
        while let Some(t) = self.caller.poll_transmit() {
            self.sent.push((self.now, t));
        }
    }

    /// Runs timers up to `t0 + d`.
    fn advance_to(&mut self, d: Duration) {
        let until = self.t0 + d;
        while let Some(next) = self.caller.poll_timeout() {
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.caller.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(until);
    }

    fn deliver(&mut self, text: &str) {
        self.caller
            .handle_sip(self.now, addr(TARGET), text.as_bytes());
        self.drain();
    }

    fn sip(&self) -> Vec<(Duration, SipMessage)> {
        self.sent
            .iter()
            .filter(|(_, t)| t.carry == Carry::Sip)
            .map(|(at, t)| {
                (
                    *at - self.t0,
                    parse_datagram(&t.bytes).expect("we send parsable sip"),
                )
            })
            .collect()
    }

    fn requests(&self, method: &str) -> Vec<(Duration, Request)> {
        self.sip()
            .into_iter()
            .filter_map(|(at, m)| match m {
                SipMessage::Request(r) if r.method.as_str() == method => Some((at, r)),
                _ => None,
            })
            .collect()
    }

    fn responses(&self) -> Vec<Response> {
        self.sip()
            .into_iter()
            .filter_map(|(_, m)| match m {
                SipMessage::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn rtp(&self) -> Vec<(Duration, SocketAddr, rtp::RtpHeader)> {
        self.sent
            .iter()
            .filter(|(_, t)| t.carry == Carry::Rtp)
            .map(|(at, t)| {
                let (h, _) = rtp::parse(&t.bytes).expect("we send valid rtp");
                (*at - self.t0, t.to, h)
            })
            .collect()
    }

    fn invite(&self) -> Request {
        self.requests("INVITE")[0].1.clone()
    }

    /// A response from the server to our request `req`.
    fn respond(&mut self, req: &Request, code: u16, sdp: Option<&str>) {
        let mut r = Response::for_request(req, code, "Whatever");
        if code > 100 {
            r.set_to_tag("srv-tag");
        }
        if let Some(s) = sdp {
            r.push_header("Content-Type", "application/sdp")
                .expect("valid header");
            r.body = s.as_bytes().to_vec();
        }
        let text = r.to_string();
        self.deliver(&text);
    }

    fn answer_invite(&mut self) {
        let inv = self.invite();
        self.respond(&inv, 200, Some(&server_sdp(SERVER_RTP)));
    }

    /// A request from the server in our dialog.
    fn server_request(&mut self, method: &str, body: Option<&str>) {
        let inv = self.invite();
        let (ct, body) = match body {
            Some(b) => ("Content-Type: application/sdp\r\n", b),
            None => ("", ""),
        };
        let text = format!(
            "{method} sip:{SIP} SIP/2.0\r\nVia: SIP/2.0/UDP {TARGET};branch=z9hG4bK-srv-{method}\r\nFrom: <sip:08000289999@{TARGET}>;tag=srv-tag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 {method}\r\nMax-Forwards: 70\r\nContact: <sip:{TARGET}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            inv.header("From").expect("from"),
            inv.call_id(),
            body.len()
        );
        self.deliver(&text);
    }
}

fn server_sdp(rtp: &str) -> String {
    let a = addr(rtp);
    format!(
        "v=0\r\no=helpline 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = a.ip(),
        port = a.port()
    )
}

fn basic() -> CallBuilder {
    let mut b = CallBuilder::udp("08000289999");
    b.invite(ms(0)).ok(ms(20)).ack(ms(30));
    b
}

#[test]
fn the_invite_is_a_fresh_call_to_the_target_from_our_addresses() {
    let mut b = basic();
    b.bye(ms(5030));
    let mut trace = b.build();
    // A captured INVITE through a proxy: Route and credentials must not be replayed.
    if let PacketKind::Sip(bytes) = &mut trace.packets[0].kind {
        let text = String::from_utf8_lossy(bytes).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRoute: <sip:proxy.example;lr>\r\nProxy-Authorization: Digest x\r\n",
        );
        *bytes = text.into_bytes();
    }
    let s = script(&trace).expect("script");
    let mut c = ReplayCaller::new(
        CallerConfig {
            target: addr(TARGET),
            local_sip: addr(SIP),
            local_rtp: addr(RTP),
            transport: TraceTransport::Udp,
            t1: ms(500),
            seed: 3,
        },
        s,
    );
    c.start(Instant::now());
    let t = c.poll_transmit().expect("the INVITE");
    assert_eq!(t.to, addr(TARGET));
    let Ok(SipMessage::Request(inv)) = parse_datagram(&t.bytes) else {
        panic!("not a request");
    };
    assert_eq!(inv.uri.to_string(), format!("sip:08000289999@{TARGET}"));
    assert_eq!(inv.to().uri.host, "127.0.0.1");
    assert_eq!(inv.to().uri.port, Some(5070));
    assert_ne!(inv.call_id(), trace.call_id);
    assert_eq!(inv.call_id(), c.call_id());
    assert_ne!(inv.from().tag(), Some("orig-from"));
    assert_eq!(inv.via().len(), 1);
    let via = &inv.via()[0];
    assert_eq!((via.host.as_str(), via.port), ("127.0.0.9", Some(6000)));
    assert!(via
        .branch()
        .is_some_and(|b| b.starts_with("z9hG4bK") && !b.contains("orig")));
    assert_eq!(inv.contacts()[0].uri.host, "127.0.0.9");
    assert!(inv.route().is_empty());
    assert!(inv.header("Proxy-Authorization").is_none());
    let body = String::from_utf8_lossy(&inv.body);
    assert!(body.contains("c=IN IP4 127.0.0.9\r\n"), "{body}");
    assert!(body.contains("m=audio 6002 RTP/AVP 0 101\r\n"), "{body}");
    assert!(!body.contains("192.0.2.10"), "{body}");
    assert_eq!(
        inv.header("Content-Length"),
        Some(inv.body.len().to_string().as_str())
    );
}

#[test]
fn seeds_decide_the_ids_so_two_replays_with_one_seed_are_identical() {
    let a = Net::new(&basic());
    let b = Net::new(&basic());
    assert_eq!(a.sent[0].1.bytes, b.sent[0].1.bytes);
}

#[test]
fn udp_requests_are_retransmitted_with_t1_doubling_until_a_response() {
    let mut net = Net::new(&basic());
    net.advance_to(ms(3600));
    let times: Vec<u128> = net
        .requests("INVITE")
        .iter()
        .map(|(at, _)| at.as_millis())
        .collect();
    assert_eq!(times, [0, 500, 1500, 3500]);
    let inv = net.invite();
    net.respond(&inv, 100, None);
    net.advance_to(ms(20_000));
    assert_eq!(net.requests("INVITE").len(), 4, "a 100 stops Timer A");
}

#[test]
fn tcp_requests_are_not_retransmitted() {
    let mut b = CallBuilder::tcp("08000289999");
    b.invite(ms(0)).ok(ms(20)).ack(ms(30));
    let mut net = Net::with_transport(&b, TraceTransport::Tcp);
    net.advance_to(ms(10_000));
    assert_eq!(net.requests("INVITE").len(), 1);
    assert!(net.invite().via()[0].transport == "TCP");
}

#[test]
fn an_unanswered_invite_gives_up_after_64_t1() {
    let mut net = Net::new(&basic());
    net.advance_to(ms(40_000));
    assert!(net.caller.is_done());
    assert_eq!(net.caller.report().end, CallEnd::TimedOut);
    assert!(net.requests("INVITE").len() <= 1 + 7);
}

#[test]
fn a_non_2xx_final_is_acked_on_the_invite_branch_and_ends_the_call() {
    let mut net = Net::new(&basic());
    let inv = net.invite();
    net.respond(&inv, 486, None);
    let acks = net.requests("ACK");
    assert_eq!(acks.len(), 1);
    let ack = &acks[0].1;
    assert_eq!(
        ack.top_via().and_then(|v| v.branch()),
        inv.top_via().and_then(|v| v.branch())
    );
    assert_eq!(ack.to().tag(), Some("srv-tag"));
    assert_eq!(ack.cseq().seq, inv.cseq().seq);
    assert!(net.caller.is_done());
    assert_eq!(net.caller.report().end, CallEnd::Rejected(486));
    assert_eq!(net.caller.report().responses, [486]);
}

#[test]
fn the_2xx_is_acked_with_the_learned_tag_and_in_dialog_requests_carry_it() {
    let mut b = basic();
    b.info(ms(1030), '5');
    b.bye(ms(2030));
    let mut net = Net::new(&b);
    net.advance_to(ms(100));
    net.answer_invite();
    let acks = net.requests("ACK");
    assert_eq!(acks.len(), 1);
    let ack = &acks[0].1;
    assert_eq!(ack.to().tag(), Some("srv-tag"));
    assert_ne!(
        ack.top_via().and_then(|v| v.branch()),
        net.invite().top_via().and_then(|v| v.branch())
    );
    // A retransmitted 200 gets the ACK again, and nothing else.
    net.answer_invite();
    assert_eq!(net.requests("ACK").len(), 2);
    assert_eq!(net.caller.report().responses, [200]);
    net.advance_to(ms(100 + 1000));
    let infos = net.requests("INFO");
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].0, ms(1100), "1 s after our ACK, as in the trace");
    assert_eq!(infos[0].1.to().tag(), Some("srv-tag"));
    assert_eq!(infos[0].1.call_id(), net.caller.call_id());
    let info = infos[0].1.clone();
    net.respond(&info, 200, None);
    net.advance_to(ms(100 + 2000));
    let byes = net.requests("BYE");
    assert_eq!(byes.len(), 1);
    let bye = byes[0].1.clone();
    net.respond(&bye, 200, None);
    assert!(net.caller.is_done());
    let rep = net.caller.report();
    assert_eq!(rep.end, CallEnd::WeHungUp);
    assert_eq!(rep.responses, [200, 200, 200]);
    assert_eq!(
        rep.keys,
        [KeyDelivered {
            key: '5',
            method: KeyMethod::Info,
            offset: ms(1000),
            after_ack: true
        }]
    );
}

#[test]
fn the_servers_bye_is_answered_and_ends_the_call_before_the_trace_does() {
    let mut b = basic();
    b.info(ms(5030), '1');
    b.bye(ms(9030));
    let mut net = Net::new(&b);
    net.answer_invite();
    net.advance_to(ms(1000));
    net.server_request("BYE", None);
    let ok = net.responses();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].code, 200);
    assert_eq!(ok[0].cseq().method.as_str(), "BYE");
    assert!(net.caller.is_done());
    net.advance_to(ms(20_000));
    assert!(
        net.requests("INFO").is_empty(),
        "nothing after the server hung up"
    );
    assert!(net.requests("BYE").is_empty());
    assert_eq!(net.caller.report().end, CallEnd::ServerHungUp);
}

#[test]
fn a_re_invite_is_answered_with_our_sdp_and_moves_our_rtp() {
    let mut b = basic();
    for i in 0..4u16 {
        b.caller_rtp(
            ms(30 + 100 + 20 * u64::from(i)),
            audio_packet(0, 500 + i, 0, &[0xff; 160]),
        );
    }
    b.bye(ms(5000));
    let mut net = Net::new(&b);
    net.answer_invite();
    // Our ACK left at 0: the first packet (100 ms after the ACK, as traced) goes out, then the
    // server moves its media.
    net.advance_to(ms(105));
    net.server_request("INVITE", Some(&server_sdp("127.0.0.1:32000")));
    let ok = &net.responses()[0];
    assert_eq!(ok.code, 200);
    assert_eq!(ok.to().tag(), net.invite().from().tag());
    let body = String::from_utf8_lossy(&ok.body);
    assert!(
        body.contains("c=IN IP4 127.0.0.9") && body.contains("m=audio 6002 RTP/AVP 0 101"),
        "{body}"
    );
    net.server_request("ACK", None);
    net.server_request("OPTIONS", None);
    assert_eq!(
        net.responses().len(),
        2,
        "the ACK is absorbed, the OPTIONS answered"
    );
    net.advance_to(ms(1000));
    let rtp = net.rtp();
    assert_eq!(rtp.len(), 4);
    assert_eq!(rtp[0].1, addr(SERVER_RTP));
    assert!(rtp[1..]
        .iter()
        .all(|(_, to, _)| *to == addr("127.0.0.1:32000")));
    // New SSRC, contiguous sequence numbers, timestamps 160 apart (from the 20 ms capture spacing).
    assert!(rtp
        .iter()
        .all(|(_, _, h)| h.ssrc == rtp[0].2.ssrc && h.ssrc != 0x1234));
    for w in rtp.windows(2) {
        assert_eq!(w[1].2.sequence, w[0].2.sequence.wrapping_add(1));
        assert_eq!(w[1].2.timestamp, w[0].2.timestamp.wrapping_add(160));
    }
    assert_eq!(net.caller.report().server_requests, ["INVITE", "OPTIONS"]);
}

#[test]
fn identical_captured_event_timestamps_go_out_as_separate_presses() {
    let mut b = basic();
    b.key_rfc4733(ms(1030), '4', 0x33e0);
    b.key_rfc4733(ms(2030), '4', 0x33e0);
    b.bye(ms(4030));
    let mut net = Net::new(&b);
    net.answer_invite();
    net.advance_to(ms(3000));
    let rtp = net.rtp();
    assert_eq!(rtp.len(), 20);
    let (first, second) = (rtp[0].2.timestamp, rtp[10].2.timestamp);
    assert_eq!(second.wrapping_sub(first), 8000, "1 s apart at 8 kHz");
    assert!(rtp[..10].iter().all(|r| r.2.timestamp == first));
    assert!(rtp[0].2.marker && rtp[10].2.marker);
    let keys = net.caller.report().keys;
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .all(|k| k.key == '4' && k.method == KeyMethod::Rfc4733));
    assert_eq!((keys[0].offset, keys[1].offset), (ms(1000), ms(2000)));
    // The packets go out at their original spacing.
    assert_eq!(rtp[9].0 - rtp[0].0, ms(180));
}

#[test]
fn a_tone_in_the_callers_audio_is_reported_as_an_inband_key() {
    let mut b = basic();
    let mut t = 1030;
    for (i, p) in tone_payloads('7', 100, Law::Ulaw).into_iter().enumerate() {
        b.caller_rtp(ms(t), audio_packet(0, i as u16, 0, &p));
        t += 20;
    }
    for i in 0..5u16 {
        b.caller_rtp(ms(t), audio_packet(0, 100 + i, 0, &[0xff; 160]));
        t += 20;
    }
    let mut net = Net::new(&b);
    net.answer_invite();
    net.advance_to(ms(3000));
    let keys = net.caller.report().keys;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!((keys[0].key, keys[0].method), ('7', KeyMethod::Inband));
}

#[test]
fn rtp_before_the_server_named_its_media_address_is_skipped() {
    let mut b = CallBuilder::udp("08000289999");
    b.invite(ms(0));
    b.caller_rtp(ms(10), audio_packet(0, 1, 0, &[0xff; 160]));
    b.ok(ms(20)).ack(ms(30)).bye(ms(1000));
    let mut net = Net::new(&b);
    net.advance_to(ms(15));
    assert!(net.rtp().is_empty());
    assert_eq!(net.caller.report().rtp_skipped, 1);
}

#[test]
fn without_a_bye_in_the_trace_the_replay_hangs_up_after_its_last_packet() {
    let mut b = basic();
    b.info(ms(2030), '1');
    let mut net = Net::new(&b);
    net.answer_invite();
    net.advance_to(ms(2000 + HANGUP_AFTER.as_millis() as u64 - 1));
    assert!(net.requests("BYE").is_empty());
    net.advance_to(ms(2000 + HANGUP_AFTER.as_millis() as u64));
    let byes = net.requests("BYE");
    assert_eq!(byes.len(), 1);
    let bye = &byes[0].1;
    assert_eq!(bye.to().tag(), Some("srv-tag"));
    assert!(bye.cseq().seq > net.requests("INFO")[0].1.cseq().seq);
}

#[test]
fn a_traced_cancel_goes_out_on_the_invite_branch_while_ringing() {
    let mut b = CallBuilder::udp("08000289999");
    b.invite(ms(0))
        .response(ms(10), 180)
        .cancel(ms(2000))
        .response(ms(2010), 487);
    let mut net = Net::new(&b);
    let inv = net.invite();
    net.respond(&inv, 180, None);
    net.advance_to(ms(2000));
    let cancels = net.requests("CANCEL");
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0].1.top_via().and_then(|v| v.branch()),
        inv.top_via().and_then(|v| v.branch())
    );
    let cancel = cancels[0].1.clone();
    net.respond(&cancel, 200, None);
    net.respond(&inv, 487, None);
    assert!(net.caller.is_done());
    assert_eq!(net.caller.report().end, CallEnd::WeHungUp);
}

#[test]
fn the_life_of_a_replay_is_bounded_by_its_trace_plus_a_margin() {
    let mut b = basic();
    b.bye(ms(1000));
    let mut net = Net::new(&b);
    net.answer_invite();
    // The server never answers our BYE: Timer F ends the call, well within the bound.
    net.advance_to(ms(1000) + LIFE_MARGIN + ms(40_000));
    assert!(net.caller.is_done());
    assert_eq!(net.caller.report().end, CallEnd::TimedOut);
}

#[test]
fn sdp_rewrite_keeps_hold_and_rejected_streams() {
    let body = "v=0\r\no=a 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    let out = rewrite_sdp(body, addr("[::1]:7000"));
    assert_eq!(
        out,
        "v=0\r\no=a 1 2 IN IP6 ::1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    );
}

#[test]
fn the_callers_re_invite_carries_our_sdp_and_its_2xx_is_acked_with_the_captured_ack() {
    let mut b = basic();
    let hold = CallBuilder::udp("08000289999")
        .offer()
        .replace("a=sendrecv", "a=sendonly");
    b.in_dialog(ms(1030), "INVITE", "application/sdp", &hold);
    b.ack(ms(1060));
    b.bye(ms(3030));
    let mut net = Net::new(&b);
    net.answer_invite();
    net.advance_to(ms(1000));
    let invites = net.requests("INVITE");
    assert_eq!(invites.len(), 2);
    let re = invites[1].1.clone();
    assert_eq!(re.cseq().seq, 2);
    assert_eq!(re.to().tag(), Some("srv-tag"));
    let body = String::from_utf8_lossy(&re.body);
    assert!(
        body.contains("a=sendonly") && body.contains("m=audio 6002 "),
        "{body}"
    );
    net.respond(&re, 200, Some(&server_sdp("127.0.0.1:33000")));
    let acks = net.requests("ACK");
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[1].1.cseq().seq, 2);
    assert_eq!(acks[1].1.to().tag(), Some("srv-tag"));
}
