//! Agents' feature codes and agent settings on helpline's real call layer, simulated clock
//! (`tests/common/sim.rs`): an INVITE to `*50`/`*51` from a registered agent's phone is challenged with
//! digest, answered with a confirmation prompt and released with BYE, and moves the agent on break /
//! back; a wrong password or an unknown user gets identical refusals and changes nothing; an unknown code
//! gets `404`; the menus are never entered. The `[routing]` and `[queue_defaults]` settings
//! (algorithms, expiry bounds, ring timeout, wrap-up) take effect, also on reload without logging anyone
//! out. The digest is computed here with `md-5`/`sha2`, independently of helpline's own code.
mod common;

use std::time::Duration;

use common::sim::{sample_agent_menus, AnswerMode, CallRef, PhoneId, SimNet, GB};
use helpline::agent::presence::AgentStatus;
use helpline::agent::AgentId;
use helpline::call::EndReason;
use helpline::queue::QueueResult;
use helpline::sip::message::Response;
use md5::Md5;
use sha2::{Digest, Sha256};

const ANA: (&str, &str) = ("ana", "europe-refunds-1");
const PHONE: &str = "127.0.0.1:41000";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hex_digest(algorithm: &str, text: &str) -> String {
    let bytes: Vec<u8> = match algorithm {
        "MD5" => Md5::digest(text.as_bytes()).to_vec(),
        "SHA-256" => Sha256::digest(text.as_bytes()).to_vec(),
        other => panic!("no digest algorithm {other}"),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of `name="…"` or `name=token` in a challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.split(&format!("{name}=")).nth(1)?;
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

/// The algorithms a `401` offers, in order.
fn offered(challenge: &Response) -> Vec<String> {
    challenge
        .headers
        .get_all("WWW-Authenticate")
        .iter()
        .filter_map(|c| param(c, "algorithm"))
        .collect()
}

/// An `Authorization` answering the first challenge of `challenge` for `method uri`.
fn authorization(
    challenge: &Response,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let offered = challenge.headers.get_all("WWW-Authenticate");
    let first = offered
        .first()
        .unwrap_or_else(|| panic!("no challenge in {challenge:?}"));
    let alg = param(first, "algorithm").expect("algorithm");
    let realm = param(first, "realm").expect("realm");
    let nonce = param(first, "nonce").expect("nonce");
    let ha1 = hex_digest(&alg, &format!("{user}:{realm}:{password}"));
    let ha2 = hex_digest(&alg, &format!("{method}:{uri}"));
    let (nc, cnonce) = ("00000001", "f00d");
    let response = hex_digest(&alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm={alg}, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
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

/// One REGISTER of `agent` from `phone` (CSeq `cseq`, `Expires: expires`, extra header lines `auth`):
/// helpline's final answer.
fn send_register(
    net: &mut SimNet,
    phone: PhoneId,
    agent: &str,
    cseq: u32,
    expires: u32,
    auth: &str,
) -> Response {
    let server = net.local;
    let addr = net.phone(phone).addr;
    let head = format!(
        "REGISTER sip:{server} SIP/2.0
        Via: SIP/2.0/UDP {addr};branch=z9hG4bK-fc-reg{cseq};rport
        Max-Forwards: 70
        From: <sip:{agent}@{server}>;tag=reg
        To: <sip:{agent}@{server}>
        Call-ID: fc-reg-{agent}
        CSeq: {cseq} REGISTER
        Contact: <sip:{agent}@{addr}>
        Expires: {expires}
        {auth}"
    );
    net.phone(phone).send_text(&head, "");
    net.drive();
    let call_id = format!("fc-reg-{agent}");
    let all = finals(net, phone, &call_id, "REGISTER");
    all.last().cloned().expect("a final response to REGISTER")
}

/// REGISTER, its `401`, and the REGISTER answering the first challenge: the two answers. `cseq` is the
/// first CSeq (the second is one more).
fn register_as(
    net: &mut SimNet,
    phone: PhoneId,
    agent: (&str, &str),
    cseq: u32,
    expires: u32,
) -> (Response, Response) {
    let challenge = send_register(net, phone, agent.0, cseq, expires, "");
    assert_eq!(challenge.code, 401, "{challenge:?}");
    let uri = format!("sip:{}", net.local);
    let auth = authorization(&challenge, agent.0, agent.1, "REGISTER", &uri);
    let answer = send_register(net, phone, agent.0, cseq + 1, expires, &auth);
    (challenge, answer)
}

/// Registers `agent` from a phone at `addr` (REGISTER, 401, REGISTER with credentials → 200).
fn register(net: &mut SimNet, addr: &str, agent: (&str, &str)) -> PhoneId {
    let phone = net.udp_phone(addr);
    let (_, ok) = register_as(net, phone, agent, 1, 600);
    assert_eq!(ok.code, 200, "{ok:?}");
    phone
}

/// Dials `code` from `phone` and answers the `401` as `user`/`password`: returns the call and the final
/// response to the authenticated INVITE.
fn dial(
    net: &mut SimNet,
    phone: PhoneId,
    code: &str,
    user: &str,
    password: &str,
) -> (CallRef, Response) {
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
    assert!(
        common::sim::sdp_port(&answer.body).is_some(),
        "an SDP answer"
    );
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
    assert!(
        cdr.menu_path.is_empty(),
        "the menus are not entered: {cdr:?}"
    );
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
    for key in "2123456".chars() {
        net.key(m, key);
        net.advance(ms(200));
    }
    // The last key: the caller is routed at this instant.
    net.key(m, '#');
    (p, c)
}

/// The phone rings (180) and answers only after a minute: offers to it run into the ring timeout.
fn rings_long(net: &mut SimNet, phone: PhoneId) {
    let a = net.phone(phone).addr;
    let rtp = std::net::SocketAddr::new(a.ip(), a.port() + 1000);
    net.phone(phone).answer_invites = AnswerMode::Answer {
        ring: secs(60),
        sdp: common::sim::sdp(rtp, "0 101", "a=sendrecv"),
    };
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

    // On break: a caller routed to her queue is not offered to her (nobody else serves it): the shipped
    // `when_no_agents = "overflow"` moves them on at once.
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.run_until_idle(secs(60));
    assert_eq!(offers(&mut net, ana), 0, "{}", net.phone(ana).transcript());
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.queue_result, Some(QueueResult::Overflow));
    assert_eq!(cdr.queues_tried[0].queue, "europe.refunds");
    assert_eq!(cdr.queues_tried[0].result, QueueResult::Overflow);

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
        let mut v: Vec<String> = r
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
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

/// The shipped menus and the sample agents, with `[routing]` keys added and `[queue_defaults]` replaced.
fn menus_with_settings(
    routing: &str,
    queue_defaults: &str,
) -> std::sync::Arc<helpline::ivr::MenuSet> {
    let dir = common::menus_with_sample_agents(str::to_owned);
    let path = dir.join("00-routing.toml");
    let text = std::fs::read_to_string(&path).expect("00-routing.toml");
    let head = text
        .split("[queue_defaults]")
        .next()
        .expect("text before the table");
    let text = head.replace("[routing]\n", &format!("[routing]\n{routing}\n"))
        + &format!("[queue_defaults]\n{queue_defaults}\n");
    std::fs::write(&path, text).expect("write 00-routing.toml");
    common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// The seconds of the `expires=` the 200 lists for the binding.
fn granted(ok: &Response) -> Option<u64> {
    param(ok.header("Contact")?, "expires")?.parse().ok()
}

#[test]
fn routing_settings_choose_algorithms_and_bound_registrations() {
    let menus = menus_with_settings(
        "auth_algorithms = [\"SHA-256\"]\nmin_expires = 120\nmax_expires = 1800",
        "",
    );
    let mut net = SimNet::with_menus(menus).build();
    let ana = net.udp_phone(PHONE);
    let (challenge, too_brief) = register_as(&mut net, ana, ANA, 1, 60);
    assert_eq!(offered(&challenge), ["SHA-256"]);
    assert_eq!(too_brief.code, 423, "{too_brief:?}");
    assert_eq!(too_brief.header("Min-Expires"), Some("120"));
    assert_eq!(status(&net, "ana"), Some(AgentStatus::LoggedOut));
    let (_, ok) = register_as(&mut net, ana, ANA, 3, 7200);
    assert_eq!(ok.code, 200, "{ok:?}");
    assert_eq!(granted(&ok), Some(1800), "clamped to max_expires: {ok:?}");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
}

#[test]
fn queue_defaults_set_the_ring_timeout_and_the_wrap_up() {
    let menus = menus_with_settings("", "ring_timeout = \"5s\"\nwrap_up = \"2s\"");
    let mut net = SimNet::with_menus(menus).build();
    let ana = register(&mut net, PHONE, ANA);
    rings_long(&mut net, ana);
    let _ = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    assert_eq!(offers(&mut net, ana), 1);
    let cancels = |net: &mut SimNet| {
        let ph = net.phone(ana);
        (0..ph.calls.len())
            .map(|i| ph.requests(CallRef(i), "CANCEL").len())
            .sum::<usize>()
    };
    net.run_until(routed + secs(5) - ms(1));
    assert_eq!(cancels(&mut net), 0);
    net.run_until(routed + secs(5));
    assert_eq!(cancels(&mut net), 1, "{}", net.phone(ana).transcript());
    // Offered again when the 2 s wrap-up is over.
    net.run_until(routed + secs(7) - ms(1));
    assert_eq!(offers(&mut net, ana), 1);
    net.run_until(routed + secs(7));
    assert_eq!(offers(&mut net, ana), 2);
}

#[test]
fn reloaded_settings_apply_and_registered_agents_stay_logged_in() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = register(&mut net, PHONE, ANA);
    rings_long(&mut net, ana);
    let menus = menus_with_settings("max_expires = 1800", "ring_timeout = \"4s\"");
    let now = net.now;
    net.calls.set_menus(now, menus);
    net.drive();
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
    // The new ring timeout.
    let _ = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    assert_eq!(offers(&mut net, ana), 1);
    net.run_until(routed + secs(4));
    let ph = net.phone(ana);
    assert_eq!(
        ph.requests(CallRef(0), "CANCEL").len(),
        1,
        "{}",
        ph.transcript()
    );
    // The new bound on a refresh.
    let (_, ok) = register_as(&mut net, ana, ANA, 3, 3600);
    assert_eq!(granted(&ok), Some(1800), "{ok:?}");
}

#[test]
fn the_tech_category_the_caller_chose_reaches_the_agent() {
    // tess (password "tess-pw") serves europe.tech.
    let ha1 = hex_digest("MD5", "tess:helpline:tess-pw");
    let dir = common::menus_with_sample_agents(|text| {
        format!(
            "{text}\n[agents.tess]\nname = \"Tess\"\nha1 = \"{ha1}\"\nqueues = [\"europe.tech\"]\n"
        )
    });
    let menus = common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"));
    let mut net = SimNet::with_menus(menus).build();
    let tess = register(&mut net, PHONE, ("tess", "tess-pw"));
    rings_long(&mut net, tess);
    for (key, category) in [('1', "app-and-website"), ('2', "account-and-login")] {
        let p = net.udp_phone(if key == '1' {
            "127.0.0.1:40000"
        } else {
            "127.0.0.1:40010"
        });
        let offer = net.offer(p);
        let c = net.phone(p).invite(GB, Some(&offer));
        net.drive();
        net.phone(p).ack(c, None);
        net.advance(ms(300));
        let m = net.media_id(p, c);
        net.key(m, '4');
        net.advance(ms(500));
        net.key(m, key);
        let invites: Vec<_> = net
            .phone(tess)
            .calls
            .iter()
            .filter_map(|c| c.incoming.clone())
            .collect();
        let invite = invites.last().expect("tess is offered the caller");
        assert_eq!(invite.header("X-Helpline-Queue"), Some("europe.tech"));
        assert_eq!(invite.header("X-Helpline-Category"), Some(category));
        net.phone(p).bye(c);
        net.run_until_idle(secs(60));
        assert_eq!(
            net.cdr(p, c).variables.get("category").map(String::as_str),
            Some(category)
        );
    }
}
