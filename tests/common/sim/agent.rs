//! Agents for the simulated network: an agent's phone registered with MD5 digest (computed here with the
//! `md-5` crate, independently of helpline's code), a routed caller, and the agent side's view of a
//! call (the INVITEs it got, answering one by hand). It does not test the registrar (tests/agents.rs
//! does); it only gets agents logged in so that whole calls can reach them.
use std::net::SocketAddr;
use std::time::Duration;

use helpline::sip::message::Request;
use md5::{Digest, Md5};

use super::phone::{sdp, AnswerMode, CallRef};
use super::{PhoneId, SimNet, GB};

/// The sample agent `ana` (`examples/agents/README.md`): europe.refunds and europe.orders.
pub const ANA: (&str, &str) = ("ana", "europe-refunds-1");
/// `bob`, added by [`menus_with_bob`]: europe.refunds.
pub const BOB: (&str, &str) = ("bob", "bob-pw");

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sample agents plus `bob` (password `bob-pw`), who also serves europe.refunds.
pub fn menus_with_bob() -> std::sync::Arc<helpline::ivr::MenuSet> {
    let ha1 = md5_hex("bob:helpline:bob-pw");
    let dir = crate::common::menus_with_sample_agents(|text| {
        format!(
            "{text}\n[agents.bob]\nname = \"Bob\"\nha1 = \"{ha1}\"\nqueues = [\"europe.refunds\"]\n"
        )
    });
    super::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// `cy`, added by [`menus_with_team`]: europe.refunds.
pub const CY: (&str, &str) = ("cy", "cy-pw");
/// `dan`, added by [`menus_with_team`]: europe.orders only (an overflow target's agent).
pub const DAN: (&str, &str) = ("dan", "dan-pw");

/// The sample agents plus `bob` and `cy` (europe.refunds) and `dan` (europe.orders), each speaking
/// English (as ana does: no one is preferred for the language) and with the password of their constant.
pub fn menus_with_team() -> std::sync::Arc<helpline::ivr::MenuSet> {
    let extra = [
        (BOB, "europe.refunds"),
        (CY, "europe.refunds"),
        (DAN, "europe.orders"),
    ];
    let dir = crate::common::menus_with_sample_agents(|text| {
        let mut text = text.to_owned();
        for ((user, password), queue) in extra {
            let ha1 = md5_hex(&format!("{user}:helpline:{password}"));
            text.push_str(&format!(
                "\n[agents.{user}]\nname = \"{user}\"\nha1 = \"{ha1}\"\nqueues = [\"{queue}\"]\nlanguages = [\"en\"]\n"
            ));
        }
        text
    });
    super::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// The value of `name="…"` in a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.split(&format!("{name}=\"")).nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

/// Sends one REGISTER from `phone` and returns the final answer's code and its MD5 challenge, if any.
fn register_once(
    net: &mut SimNet,
    phone: PhoneId,
    user: &str,
    cseq: u32,
    auth: &str,
) -> (u16, Option<String>) {
    let server = net.local;
    let ph = net.phone(phone);
    let addr = ph.addr;
    let call_id = format!("reg-{user}-{addr}");
    let head = format!(
        "REGISTER sip:{server} SIP/2.0
        Via: SIP/2.0/UDP {addr};branch=z9hG4bK-reg{cseq}x{port};rport
        Max-Forwards: 70
        From: <sip:{user}@{server}>;tag=r{port}
        To: <sip:{user}@{server}>
        Call-ID: {call_id}
        CSeq: {cseq} REGISTER
        Contact: <sip:{user}@{addr}>
        Expires: 600
        {auth}",
        port = addr.port(),
    );
    ph.send_text(&head, "");
    net.drive();
    let ph = net.phone(phone);
    let answer = ph
        .inbox
        .iter()
        .filter_map(|m| m.response())
        .rfind(|r| r.call_id() == call_id && r.cseq().seq == cseq && r.code >= 200)
        .unwrap_or_else(|| panic!("no answer to REGISTER {cseq}:\n{}", ph.transcript()));
    let challenge = answer
        .headers
        .get_all("WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains("algorithm=MD5"))
        .map(str::to_owned);
    (answer.code, challenge)
}

/// An agent's phone at `addr`, registered with MD5 digest and answering helpline's INVITEs as `mode`.
pub fn agent_phone(net: &mut SimNet, addr: &str, agent: (&str, &str), mode: AnswerMode) -> PhoneId {
    let phone = net.udp_phone(addr);
    // Set before the login: a waiting caller is offered to the agent the moment the 200 goes out.
    net.phone(phone).answer_invites = mode;
    let (user, password) = agent;
    let (code, challenge) = register_once(net, phone, user, 1, "");
    assert_eq!(code, 401);
    let challenge = challenge.expect("an MD5 challenge");
    let realm = param(&challenge, "realm").expect("realm");
    let nonce = param(&challenge, "nonce").expect("nonce");
    let uri = format!("sip:{}", net.local);
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, \
         nc=00000001"
    );
    let (code, _) = register_once(net, phone, user, 2, &auth);
    assert_eq!(code, 200, "{}", net.phone(phone).transcript());
    phone
}

/// 180 at once, 200 with PCMU from the phone's RTP port (its SIP port + 1000) after `ring`.
pub fn answers_after(ring: Duration, addr: &str) -> AnswerMode {
    AnswerMode::Answer {
        ring,
        sdp: agent_sdp(addr),
    }
}

/// The agent phone's SDP answer (PCMU + telephone-event from its SIP port + 1000).
pub fn agent_sdp(addr: &str) -> String {
    let a: SocketAddr = addr.parse().expect("literal address");
    sdp(
        SocketAddr::new(a.ip(), a.port() + 1000),
        "0 101",
        "a=sendrecv",
    )
}

/// A GB caller at `addr` who presses 2 (refunds) and enters order number 123456#: routed to
/// europe.refunds at the instant this returns.
pub fn refunds_caller(net: &mut SimNet, addr: &str) -> (PhoneId, CallRef) {
    let p = net.udp_phone(addr);
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.phone(p).ack(c, None);
    net.advance(Duration::from_millis(300));
    let m = net.media_id(p, c);
    for key in "2123456".chars() {
        net.key(m, key);
        net.advance(Duration::from_millis(200));
    }
    net.key(m, '#');
    (p, c)
}

/// The INVITEs helpline sent to a phone (one per agent leg), in order.
pub fn invites(net: &mut SimNet, phone: PhoneId) -> Vec<Request> {
    net.phone(phone)
        .calls
        .iter()
        .filter_map(|c| c.incoming.clone())
        .collect()
}

/// How many requests with this method helpline sent to a phone, over all its calls.
pub fn requests_of(net: &mut SimNet, phone: PhoneId, method: &str) -> usize {
    let ph = net.phone(phone);
    (0..ph.calls.len())
        .map(|i| ph.requests(CallRef(i), method).len())
        .sum()
}

/// The agent phone answers helpline's INVITE of its call `c` by hand with `code` (a 2xx carries
/// `sdp`, which may be empty: a 200 without a body).
pub fn reply_to_invite(net: &mut SimNet, phone: PhoneId, c: CallRef, code: u16, sdp: &str) {
    let ph = net.phone(phone);
    let call = ph.call(c).clone();
    let invite = call.incoming.expect("helpline called this phone");
    let reason = match code {
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        486 => "Busy Here",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    ph.reply(&invite, code, reason, Some(&call.local_tag), sdp);
}
