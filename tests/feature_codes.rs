//! Agents' feature codes on helpline's real call layer, simulated clock (`tests/common/sim.rs`): an
//! INVITE to `*50`/`*51` from a registered agent's phone is challenged with digest, answered with a
//! confirmation prompt and released with BYE, and moves the agent on break / back; a wrong password or
//! an unknown user gets identical refusals and changes nothing; an unknown code gets `404`; the menus are
//! never entered. The digest is computed here with `md-5`, independently of helpline's own code.
mod common;

use std::time::Duration;

use common::sim::{sample_agent_menus, CallRef, PhoneId, SimNet, GB};
use helpline::agent::presence::AgentStatus;
use helpline::agent::AgentId;
use helpline::call::EndReason;
use helpline::queue::QueueResult;
use helpline::sip::message::Response;
use md5::{Digest, Md5};

const ANA: (&str, &str) = ("ana", "europe-refunds-1");
const PHONE: &str = "127.0.0.1:41000";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

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

/// An `Authorization` answering the MD5 challenge of `challenge` for `method uri`.
fn authorization(challenge: &Response, user: &str, password: &str, method: &str, uri: &str) -> String {
    let offered = challenge.headers.get_all("WWW-Authenticate");
    let md5 = offered
        .iter()
        .find(|c| param(c, "algorithm").as_deref() == Some("MD5"))
        .unwrap_or_else(|| panic!("no MD5 challenge in {offered:?}"));
    let realm = param(md5, "realm").expect("realm");
    let nonce = param(md5, "nonce").expect("nonce");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let (nc, cnonce) = ("00000001", "f00d");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    )
}

/// The final responses helpline sent to the phone for `call_id` and `method`, in order.
fn finals(net: &mut SimNet, phone: PhoneId, call_id: &str, method: &str) -> Vec<Response> {
    net.phone(phone)
        .inbox
        .iter()
        .filter_map(|m| m.response())
        .filter(|r| r.call_id() == call_id && r.cseq().method.as_str() == method && r.code >= 200)
        .cloned()
        .collect()
}

/// Registers `agent` from a phone at `addr` (REGISTER, 401, REGISTER with MD5 credentials → 200).
fn register(net: &mut SimNet, addr: &str, agent: (&str, &str)) -> PhoneId {
    let phone = net.udp_phone(addr);
    let server = net.local;
    let send = |net: &mut SimNet, cseq: u32, auth: &str| {
        let head = format!(
            "REGISTER sip:{server} SIP/2.0
            Via: SIP/2.0/UDP {addr};branch=z9hG4bK-fc-reg{cseq};rport
            Max-Forwards: 70
            From: <sip:{user}@{server}>;tag=reg
            To: <sip:{user}@{server}>
            Call-ID: fc-reg-{user}
            CSeq: {cseq} REGISTER
            Contact: <sip:{user}@{addr}>
            Expires: 600
            {auth}",
            user = agent.0,
        );
        net.phone(phone).send_text(&head, "");
        net.drive();
        let call_id = format!("fc-reg-{}", agent.0);
        let all = finals(net, phone, &call_id, "REGISTER");
        all.last().cloned().expect("a final response to REGISTER")
    };
    let challenge = send(net, 1, "");
    assert_eq!(challenge.code, 401);
    let auth = authorization(&challenge, agent.0, agent.1, "REGISTER", &format!("sip:{server}"));
    assert_eq!(send(net, 2, &auth).code, 200);
    phone
}

/// Dials `code` from `phone` and answers the `401` as `user`/`password`: returns the call and the final
/// response to the authenticated INVITE.
fn dial(net: &mut SimNet, phone: PhoneId, code: &str, user: &str, password: &str) -> (CallRef, Response) {
    let offer = net.offer(phone);
    let c = net.phone(phone).invite(code, Some(&offer));
    net.drive();
    let call_id = net.phone(phone).call(c).call_id.clone();
    let first = finals(net, phone, &call_id, "INVITE");
    assert_eq!(first.len(), 1, "{}", net.phone(phone).transcript());
    assert_eq!(first[0].code, 401, "{:?}", first[0]);
    let uri = format!("sip:{code}@{}", net.local);
    let auth = authorization(&first[0], user, password, "INVITE", &uri);
    net.phone(phone).invite_again(c, Some(&offer), &auth);
    net.drive();
    let all = finals(net, phone, &call_id, "INVITE");
    assert_eq!(all.len(), 2, "{}", net.phone(phone).transcript());
    (c, all[1].clone())
}

fn status(net: &SimNet, id: &str) -> Option<AgentStatus> {
    net.calls
        .agents()
        .get(&AgentId::from(id))
        .map(|a| a.status())
}

/// Dials `code` as ana, checks the answer, the prompt and helpline's BYE after it.
fn feature_call(net: &mut SimNet, phone: PhoneId, code: &str, prompt: &str) {
    let (c, answer) = dial(net, phone, code, ANA.0, ANA.1);
    assert_eq!(answer.code, 200, "{answer:?}");
    assert!(common::sim::sdp_port(&answer.body).is_some(), "an SDP answer");
    net.phone(phone).ack(c, None);
    let answered = net.now;
    net.advance(ms(300));
    let m = net.media_id(phone, c);
    assert_eq!(net.media.session(m).played(), [prompt]);
    // No BYE while the prompt plays (1 s in the harness); BYE as soon as it has ended.
    net.run_until(answered + ms(1299));
    assert!(net.phone(phone).requests(c, "BYE").is_empty());
    net.run_until(answered + ms(1300));
    let byes = net.phone(phone).requests(c, "BYE");
    assert_eq!(byes.len(), 1, "{}", net.phone(phone).transcript());
    net.run_until_idle(secs(60));
    assert!(net.media.session(m).closed_at.is_some());
    let cdr = net.cdr(phone, c);
    assert_eq!(cdr.end_reason, Some(EndReason::ServerBye));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert!(cdr.menu_path.is_empty(), "the menus are not entered: {cdr:?}");
    assert_eq!(cdr.region, None);
}

/// A GB caller who presses 2, enters an order number and `#`: routed to europe.refunds (ana's queue).
fn refunds_caller(net: &mut SimNet, addr: &str) -> (PhoneId, CallRef) {
    let p = net.udp_phone(addr);
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    for key in "2123456#".chars() {
        net.key(m, key);
        net.advance(ms(200));
    }
    (p, c)
}

/// helpline's INVITEs to the phone (agent legs).
fn offers(net: &mut SimNet, phone: PhoneId) -> usize {
    net.phone(phone)
        .calls
        .iter()
        .filter(|c| c.incoming.is_some())
        .count()
}

#[test]
fn star_50_puts_the_agent_on_break_and_star_51_brings_them_back() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = register(&mut net, PHONE, ANA);
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));

    feature_call(&mut net, ana, "*50", "agent-on-break");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::OnBreak));

    // On break: a caller routed to her queue is not offered to her (nobody else serves it).
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.run_until_idle(secs(60));
    assert_eq!(offers(&mut net, ana), 0, "{}", net.phone(ana).transcript());
    assert_eq!(net.cdr(p, c).queue_result, Some(QueueResult::NoAgents));

    feature_call(&mut net, ana, "*51", "agent-available");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));

    // Back: the next caller rings her phone.
    let _ = refunds_caller(&mut net, "127.0.0.1:40010");
    assert_eq!(offers(&mut net, ana), 1, "{}", net.phone(ana).transcript());
}

#[test]
fn wrong_password_and_unknown_user_get_identical_refusals_and_change_nothing() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = register(&mut net, PHONE, ANA);
    let (_, wrong) = dial(&mut net, ana, "*50", ANA.0, "not-her-password");
    let stranger = net.udp_phone("127.0.0.1:41500");
    let (_, unknown) = dial(&mut net, stranger, "*50", "mallory", "guess");
    assert_eq!((wrong.code, unknown.code), (403, 403));
    assert_eq!(wrong.reason, unknown.reason);
    let names = |r: &Response| -> Vec<String> {
        let mut v: Vec<String> = r.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&wrong), names(&unknown));
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
    assert!(net.cdrs.is_empty(), "no call was set up: {:?}", net.cdrs);
    // The refusals cost nothing: no port, no call.
    assert_eq!(net.calls.call_count(), 0);
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn an_unknown_code_from_an_agent_is_not_found_and_never_reaches_the_menus() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = register(&mut net, PHONE, ANA);
    let (_, answer) = dial(&mut net, ana, "*59", ANA.0, ANA.1);
    assert_eq!(answer.code, 404, "{answer:?}");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
    assert!(net.media.sessions.is_empty(), "no media opened");
}

#[test]
fn the_from_header_does_not_identify_the_agent() {
    // The phone's From says `caller`; only the credentials name ana. Without credentials: 401, no break.
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = register(&mut net, PHONE, ANA);
    let offer = net.offer(ana);
    let c = net.phone(ana).invite_with("*50", Some(&offer), "");
    net.drive();
    assert_eq!(net.phone(ana).codes_to(c, "INVITE"), [401]);
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
}
