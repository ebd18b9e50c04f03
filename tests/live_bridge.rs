//! A whole bridged call through the real `helpline serve` binary on loopback (issue 8): an agent's phone
//! (the test UA over UDP) registers as the sample agent `ana` with MD5 digest, a GB caller presses 2 and an
//! order number by SIP INFO and is routed to `europe.refunds`, ana's phone is rung, answers with PCMA (the
//! caller speaks PCMU), and 50 RTP packets each way go through helpline's bridge, transcoded, counted at
//! both ends. Then one side hangs up, the other gets BYE, and the CDR names the agent and the queue.
//! The digest is computed here with `md-5`, independently of helpline's own code. What is not tested
//! here: ring timeouts, CANCEL and several phones (the call harness, `tests/agents.rs`). The same bridge
//! serves a menu `transfer` to an external contact centre: its last test (failures: `tests/transfer.rs`).
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    menus_with_sample_agents, menus_with_transfer, parse_rtp, rtp_packet, sdp_offer, Msg, Server,
    Ua,
};
use helpline::media::codec::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
use md5::{Digest, Md5};

/// Bound on every single SIP or log wait.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on the whole RTP exchange (50 packets 20 ms apart each way, plus slack).
const MEDIA_WAIT: Duration = Duration::from_secs(10);
/// The GB number of the shipped menus: 2 (refunds) and an order number route to `europe.refunds`.
const GB: &str = "08000289999";
/// A Friday evening in Paris, inside the shipped Europe hours (08:00-22:00 Europe/Paris): without it
/// the calls would meet the closed menu whenever the suite runs after hours.
const EUROPE_OPEN: &str = "2026-11-27T19:00:00+01:00";
/// Sample agent ana (`examples/agents/README.md`), who serves `europe.refunds`.
const ANA: (&str, &str) = ("ana", "europe-refunds-1");
const PACKETS: usize = 50;
const CALLER_SSRC: u32 = 0x0c0c_0c0c;
const AGENT_SSRC: u32 = 0x0a0a_0a0a;

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of `name="…"` or `name=token` in a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.split(&format!("{name}=")).nth(1)?;
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

/// The `c=` address and `m=audio` port of an SDP body.
fn sdp_addr(body: &str) -> SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap_or_else(|| panic!("no c= line in {body}"))
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no m=audio port in {body}"));
    format!("{ip}:{port}")
        .parse()
        .unwrap_or_else(|e| panic!("RTP address {ip}:{port}: {e}"))
}

/// Sends one REGISTER from the agent's phone (Contact = its own address).
fn send_register(ua: &mut Ua, user: &str, cseq: u32, authorization: Option<&str>) {
    let (server, local) = (ua.server, ua.local);
    let branch = ua.branch();
    let auth = authorization
        .map(|a| format!("Authorization: {a}"))
        .unwrap_or_default();
    ua.send(
        &format!(
            "REGISTER sip:{server} SIP/2.0
            Via: SIP/2.0/UDP {local};branch={branch};rport
            Max-Forwards: 70
            From: <sip:{user}@{server}>;tag=reg{port}
            To: <sip:{user}@{server}>
            Call-ID: reg-{user}-{port}@127.0.0.1
            CSeq: {cseq} REGISTER
            Contact: <sip:{user}@{local}>
            Expires: 600
            {auth}",
            port = local.port()
        ),
        "",
    );
}

/// Registers the agent's phone with MD5 digest: REGISTER → 401 → REGISTER with the answer → 200.
fn register(ua: &mut Ua, (user, password): (&str, &str)) {
    send_register(ua, user, 1, None);
    let challenge = ua.expect_response(401, WAIT);
    let md5 = challenge
        .headers("WWW-Authenticate")
        .into_iter()
        .find(|c| param(c, "algorithm").as_deref() == Some("MD5"))
        .unwrap_or_else(|| panic!("no MD5 challenge in\n{}", challenge.text));
    let realm = param(&md5, "realm").expect("realm in the challenge");
    let nonce = param(&md5, "nonce").expect("nonce in the challenge");
    let uri = format!("sip:{}", ua.server);
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let (nc, cnonce) = ("00000001", "c0ffee");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let authorization = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    );
    send_register(ua, user, 2, Some(&authorization));
    let ok = ua.expect_response(200, WAIT);
    assert!(
        ok.headers("Contact")
            .iter()
            .any(|c| c.contains(&ua.local.to_string())),
        "the 200 lists our binding:\n{}",
        ok.text
    );
}

/// One received RTP packet: SSRC, payload type and payload.
struct Got {
    ssrc: u32,
    pt: u8,
    payload: Vec<u8>,
}

/// Everything waiting on a non-blocking socket.
fn drain(sock: &UdpSocket, into: &mut Vec<Got>) {
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        if let Some(h) = parse_rtp(Instant::now(), &buf[..n]) {
            into.push(Got {
                ssrc: h.ssrc,
                pt: h.pt,
                payload: buf[12..n].to_vec(),
            });
        }
    }
}

/// The payload of packet `i`: distinct per packet, so each relayed one can be recognised.
fn payload(i: usize) -> Vec<u8> {
    (0..160).map(|j| ((i * 5 + j) % 256) as u8).collect()
}

/// A routed, answered and bridged call: both UAs, the caller's call and the agent's dialog.
struct Bridged {
    server: Server,
    caller: Ua,
    call: common::TestCall,
    agent: Ua,
    /// helpline's INVITE to the agent's phone.
    invite: Msg,
    /// The To tag the agent's phone answered with.
    agent_tag: String,
}

/// Starts the server (with `extra` flags), registers ana, routes a GB caller to her, answers, ACK,
/// and checks the RTP relay both ways.
fn bridged_call(extra: &[&str]) -> Bridged {
    let mut args = vec!["--pretend-time", EUROPE_OPEN];
    args.extend_from_slice(extra);
    let server = Server::start(&menus_with_sample_agents(str::to_owned), &args);
    let mut agent = Ua::udp(server.addr);
    register(&mut agent, ANA);
    server
        .wait_log("agent logged in", WAIT)
        .unwrap_or_else(|| panic!("ana not logged in:\n{}", server.log_text()));

    let caller_rtp = UdpSocket::bind("127.0.0.1:0").expect("bind caller RTP");
    let caller_port = caller_rtp.local_addr().expect("addr").port();
    let mut caller = Ua::udp(server.addr);
    let offer = sdp_offer(
        caller_port,
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
    );
    let mut call = caller.invite(GB, &offer);
    let ok = caller.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("a To tag on the 200");
    let to_caller = sdp_addr(ok.body());
    caller.ack(&call, "");

    // The welcome prompt starting is the sign the menu listens; keys then barge in.
    caller_rtp
        .set_read_timeout(Some(WAIT))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    let (n, _) = caller_rtp
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no prompt RTP: {e}\n{}", server.log_text()));
    let prompt_ssrc = parse_rtp(Instant::now(), &buf[..n])
        .expect("helpline sends RTP")
        .ssrc;
    for key in "2123456#".chars() {
        caller.in_dialog(
            &mut call,
            "INFO",
            "Content-Type: application/dtmf-relay\n",
            &format!("Signal={key}\r\nDuration=160\r\n"),
        );
        caller.expect_response(200, WAIT);
    }

    let invite = agent.expect_request("INVITE", WAIT);
    assert_eq!(
        invite.header("X-Helpline-Queue").as_deref(),
        Some("europe.refunds"),
        "{}",
        invite.text
    );
    assert_eq!(
        invite.header("X-Helpline-Order-Id").as_deref(),
        Some("123456")
    );
    assert!(
        invite
            .header("P-Asserted-Identity")
            .is_some_and(|v| v.contains("sip:caller@")),
        "{}",
        invite.text
    );
    let to_agent = sdp_addr(invite.body());
    let agent_rtp = UdpSocket::bind("127.0.0.1:0").expect("bind agent RTP");
    let agent_port = agent_rtp.local_addr().expect("addr").port();
    let agent_tag = format!("ag{agent_port}");
    answer(&mut agent, &invite, &agent_tag, agent_port);
    agent.expect_request("ACK", WAIT);

    exchange_rtp(
        &server,
        (&caller_rtp, to_caller),
        (&agent_rtp, to_agent),
        prompt_ssrc,
    );
    Bridged {
        server,
        caller,
        call,
        agent,
        invite,
        agent_tag,
    }
}

/// The agent's phone answers helpline's INVITE 200 with PCMA from `rtp_port`.
fn answer(agent: &mut Ua, invite: &Msg, tag: &str, rtp_port: u16) {
    let local = agent.local;
    let mut head = String::from("SIP/2.0 200 OK\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for v in invite.headers(name) {
            head.push_str(&format!("{name}: {v}\n"));
        }
    }
    let to = invite.header("To").expect("a To header");
    head.push_str(&format!(
        "To: {to};tag={tag}\nContact: <sip:ana@{local}>\nContent-Type: application/sdp\n"
    ));
    let sdp = sdp_offer(rtp_port, "8", "a=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n");
    agent.send(&head, &sdp);
}

/// Both sides send 50 packets to the RTP address helpline gave each; each must receive the other's 50,
/// transcoded, the caller with the SSRC it heard the prompt with.
fn exchange_rtp(
    server: &Server,
    (caller, to_caller): (&UdpSocket, SocketAddr),
    (agent, to_agent): (&UdpSocket, SocketAddr),
    prompt_ssrc: u32,
) {
    caller.set_nonblocking(true).expect("non-blocking");
    agent.set_nonblocking(true).expect("non-blocking");
    let (mut at_caller, mut at_agent) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let deadline = start + MEDIA_WAIT;
    let mut sent = 0;
    let expected_at_agent: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            payload(i)
                .iter()
                .map(|&u| linear_to_alaw(ulaw_to_linear(u)))
                .collect()
        })
        .collect();
    let expected_at_caller: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            payload(i)
                .iter()
                .map(|&a| linear_to_ulaw(alaw_to_linear(a)))
                .collect()
        })
        .collect();
    // How many of the other side's packets arrived (each counted once, whatever duplicates came).
    let relayed = |got: &[Got], pt: u8, want: &[Vec<u8>]| {
        let seen: std::collections::HashSet<usize> = got
            .iter()
            .filter(|g| g.pt == pt)
            .filter_map(|g| want.iter().position(|w| *w == g.payload))
            .collect();
        seen.len()
    };
    while Instant::now() < deadline {
        if sent < PACKETS && Instant::now() >= start + Duration::from_millis(20) * sent as u32 {
            let (seq, ts) = (sent as u16, 160 * sent as u32);
            let p = payload(sent);
            let from_caller = rtp_packet(0, sent == 0, 1000 + seq, ts, CALLER_SSRC, &p);
            caller.send_to(&from_caller, to_caller).ok();
            let from_agent = rtp_packet(8, sent == 0, 2000 + seq, ts, AGENT_SSRC, &p);
            agent.send_to(&from_agent, to_agent).ok();
            sent += 1;
        }
        drain(caller, &mut at_caller);
        drain(agent, &mut at_agent);
        if sent == PACKETS
            && relayed(&at_caller, 0, &expected_at_caller) == PACKETS
            && relayed(&at_agent, 8, &expected_at_agent) == PACKETS
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let log = server.log_text();
    assert_eq!(
        relayed(&at_agent, 8, &expected_at_agent),
        PACKETS,
        "the agent hears the caller's packets as PCMA ({} packets in all)\n{log}",
        at_agent.len()
    );
    assert_eq!(
        relayed(&at_caller, 0, &expected_at_caller),
        PACKETS,
        "the caller hears the agent's packets as PCMU ({} packets in all)\n{log}",
        at_caller.len()
    );
    let ssrcs: Vec<u32> = at_caller
        .iter()
        .filter(|g| expected_at_caller.contains(&g.payload))
        .map(|g| g.ssrc)
        .collect();
    assert!(
        ssrcs.iter().all(|&s| s == prompt_ssrc),
        "the caller hears the agent with the prompt's SSRC {prompt_ssrc:#x}: {ssrcs:x?}"
    );
}

#[test]
fn a_routed_caller_is_bridged_to_the_agent_and_hangs_up_first() {
    let Bridged {
        server,
        mut caller,
        mut call,
        mut agent,
        ..
    } = bridged_call(&[]);
    caller.in_dialog(&mut call, "BYE", "", "");
    caller.expect_response(200, WAIT);
    let bye = agent.expect_request("BYE", WAIT);
    agent.reply_ok(&bye);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["agent"], "ana", "{cdr}");
    assert_eq!(cdr["queue"], "europe.refunds", "{cdr}");
    assert_eq!(cdr["queue_result"], "answered", "{cdr}");
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
    assert!(cdr["talk_ms"].as_u64().is_some_and(|t| t > 0), "{cdr}");
}

/// The same call with two media threads: the caller's and the agent's sessions share one (their
/// ids are of one call group), so the relay works as with one.
#[test]
fn a_bridged_call_relays_both_ways_with_two_media_threads() {
    let Bridged {
        server,
        mut caller,
        mut call,
        mut agent,
        ..
    } = bridged_call(&["--media-threads", "2"]);
    caller.in_dialog(&mut call, "BYE", "", "");
    caller.expect_response(200, WAIT);
    let bye = agent.expect_request("BYE", WAIT);
    agent.reply_ok(&bye);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["queue_result"], "answered", "{cdr}");
}

#[test]
fn a_bridged_agent_hangs_up_first_and_the_caller_gets_bye() {
    let Bridged {
        server,
        mut caller,
        call,
        mut agent,
        invite,
        agent_tag,
    } = bridged_call(&[]);
    // The agent's BYE: in helpline's dialog, to its Contact, From/To swapped from the INVITE.
    let target = invite
        .header("Contact")
        .and_then(|c| Some(c.split('<').nth(1)?.split('>').next()?.to_owned()))
        .unwrap_or_else(|| panic!("no Contact in helpline's INVITE:\n{}", invite.text));
    let (local, branch) = (agent.local, agent.branch());
    let from = invite.header("From").expect("From");
    let to = invite.header("To").expect("To");
    let call_id = invite.header("Call-ID").expect("Call-ID");
    agent.send(
        &format!(
            "BYE {target} SIP/2.0
            Via: SIP/2.0/UDP {local};branch={branch};rport
            Max-Forwards: 70
            From: {to};tag={agent_tag}
            To: {from}
            Call-ID: {call_id}
            CSeq: 1 BYE"
        ),
        "",
    );
    agent.expect_response(200, WAIT);
    let bye = caller.expect_request("BYE", WAIT);
    caller.reply_ok(&bye);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["agent"], "ana", "{cdr}");
    assert_eq!(cdr["queue"], "europe.refunds", "{cdr}");
    assert_eq!(cdr["queue_result"], "answered", "{cdr}");
    assert_eq!(cdr["end_reason"], "agent-bye", "{cdr}");
    assert!(cdr["talk_ms"].as_u64().is_some_and(|t| t > 0), "{cdr}");
}

/// A menu `transfer` to an external contact centre (the test UA at its own port): a GB caller presses 7,
/// the contact centre gets helpline's INVITE with the caller's context, answers with PCMA, 50 packets go
/// each way through the bridge, counted at both ends; then the contact centre hangs up and the caller
/// gets BYE, and the CDR names the URI and `transfer-bye`.
#[test]
fn a_transferred_caller_is_bridged_to_the_contact_centre() {
    // The contact centre's socket exists before the menus name it; it learns the server's address later.
    let mut centre = Ua::udp("127.0.0.1:9".parse().expect("literal"));
    let uri = format!("sip:support@{}", centre.local);
    let server = Server::start(&menus_with_transfer(&uri), &["--pretend-time", EUROPE_OPEN]);
    centre.server = server.addr;

    let caller_rtp = UdpSocket::bind("127.0.0.1:0").expect("bind caller RTP");
    let caller_port = caller_rtp.local_addr().expect("addr").port();
    let mut caller = Ua::udp(server.addr);
    let offer = sdp_offer(
        caller_port,
        "0 101",
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
    );
    let mut call = caller.invite(GB, &offer);
    let ok = caller.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("a To tag on the 200");
    let to_caller = sdp_addr(ok.body());
    caller.ack(&call, "");
    caller_rtp
        .set_read_timeout(Some(WAIT))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    let (n, _) = caller_rtp
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no prompt RTP: {e}\n{}", server.log_text()));
    let prompt_ssrc = parse_rtp(Instant::now(), &buf[..n])
        .expect("helpline sends RTP")
        .ssrc;
    caller.in_dialog(
        &mut call,
        "INFO",
        "Content-Type: application/dtmf-relay\n",
        "Signal=7\r\nDuration=160\r\n",
    );
    caller.expect_response(200, WAIT);

    let invite = centre.expect_request("INVITE", WAIT);
    assert!(
        invite.text.starts_with(&format!("INVITE {uri} SIP/2.0")),
        "{}",
        invite.text
    );
    assert_eq!(
        invite.header("X-Helpline-Region").as_deref(),
        Some("europe")
    );
    assert!(
        invite
            .header("P-Asserted-Identity")
            .is_some_and(|v| v.contains("sip:caller@")),
        "{}",
        invite.text
    );
    let to_centre = sdp_addr(invite.body());
    let centre_rtp = UdpSocket::bind("127.0.0.1:0").expect("bind contact centre RTP");
    let centre_port = centre_rtp.local_addr().expect("addr").port();
    let centre_tag = format!("cc{centre_port}");
    answer(&mut centre, &invite, &centre_tag, centre_port);
    centre.expect_request("ACK", WAIT);
    exchange_rtp(
        &server,
        (&caller_rtp, to_caller),
        (&centre_rtp, to_centre),
        prompt_ssrc,
    );

    // The contact centre hangs up: in helpline's dialog, to its Contact, From/To swapped.
    let target = invite
        .header("Contact")
        .and_then(|c| Some(c.split('<').nth(1)?.split('>').next()?.to_owned()))
        .unwrap_or_else(|| panic!("no Contact in helpline's INVITE:\n{}", invite.text));
    let (local, branch) = (centre.local, centre.branch());
    let from = invite.header("From").expect("From");
    let to = invite.header("To").expect("To");
    let call_id = invite.header("Call-ID").expect("Call-ID");
    centre.send(
        &format!(
            "BYE {target} SIP/2.0
            Via: SIP/2.0/UDP {local};branch={branch};rport
            Max-Forwards: 70
            From: {to};tag={centre_tag}
            To: {from}
            Call-ID: {call_id}
            CSeq: 1 BYE"
        ),
        "",
    );
    centre.expect_response(200, WAIT);
    let bye = caller.expect_request("BYE", WAIT);
    caller.reply_ok(&bye);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["route"], uri.as_str(), "{cdr}");
    assert_eq!(cdr["transfer_result"], "answered", "{cdr}");
    assert_eq!(cdr["transfer_status"], 200, "{cdr}");
    assert_eq!(cdr["end_reason"], "transfer-bye", "{cdr}");
    assert!(cdr["talk_ms"].as_u64().is_some_and(|t| t > 0), "{cdr}");
}
