//! Agents' phones registering with helpline's real call layer on a simulated clock (see
//! `tests/common/sim.rs`): digest REGISTER with MD5 and SHA-256 logs the agent in, a wrong password gets
//! `403` and never does, a binding that lapses logs the agent out, and a reload keeps agents logged in.
//! Then whole routed calls: the caller's call rings the agent's phones (UAC legs), the answer is ACKed
//! and bridged, either side's BYE ends the other, CANCEL while ringing, two phones, decline → next.
//! The digest is computed here with the `md-5` and `sha2` crates, independently of helpline's own code.
mod common;

use std::time::Duration;

use common::sim::{sample_agent_menus, sdp, AnswerMode, CallRef, PhoneId, SimNet, GB};
use helpline::agent::presence::{AgentState, AgentStatus};
use helpline::agent::AgentId;
use helpline::call::EndReason;
use helpline::queue::QueueResult;
use helpline::sip::message::Response;
use md5::Md5;
use sha2::{Digest, Sha256};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Sample agents (`examples/agents/README.md`).
const ANA: (&str, &str) = ("ana", "europe-refunds-1");
const LI_WEI: (&str, &str) = ("li.wei", "china-disputes-2");

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

/// One REGISTER dialog of an agent's phone (one Call-ID, rising CSeq).
struct Registration {
    phone: PhoneId,
    user: String,
    call_id: String,
    cseq: u32,
}

impl Registration {
    fn new(net: &mut SimNet, addr: &str, user: &str) -> Registration {
        let phone = net.udp_phone(addr);
        Registration {
            phone,
            user: user.to_owned(),
            call_id: format!("reg-{user}-{addr}"),
            cseq: 0,
        }
    }

    /// Sends one REGISTER (with `Expires`, and `authorization` if given) and returns helpline's answer.
    fn send(&mut self, net: &mut SimNet, expires: u32, authorization: Option<String>) -> Response {
        self.cseq += 1;
        let server = net.local;
        let ph = net.phone(self.phone);
        let addr = ph.addr;
        let auth = authorization
            .map(|a| format!("Authorization: {a}"))
            .unwrap_or_default();
        let head = format!(
            "REGISTER sip:{server} SIP/2.0
            Via: SIP/2.0/UDP {addr};branch=z9hG4bK-reg{cseq}x{port};rport
            Max-Forwards: 70
            From: <sip:{user}@{server}>;tag=r{port}
            To: <sip:{user}@{server}>
            Call-ID: {call_id}
            CSeq: {cseq} REGISTER
            Contact: <sip:{user}@{addr}>
            Expires: {expires}
            {auth}",
            cseq = self.cseq,
            port = addr.port(),
            user = self.user,
            call_id = self.call_id,
        );
        ph.send_text(&head, "");
        net.drive();
        let (call_id, cseq) = (self.call_id.clone(), self.cseq);
        let finals: Vec<&Response> = net
            .phone(self.phone)
            .inbox
            .iter()
            .filter_map(|m| m.response())
            .filter(|r| r.call_id() == call_id && r.cseq().seq == cseq && r.code >= 200)
            .collect();
        match finals.as_slice() {
            [one] => (*one).clone(),
            other => panic!("expected one final response to REGISTER {cseq}, got {other:#?}"),
        }
    }

    /// REGISTER, the `401`, and the REGISTER answering its `algorithm` challenge with `password`:
    /// returns the challenge response and the final answer.
    fn register(
        &mut self,
        net: &mut SimNet,
        password: &str,
        algorithm: &str,
        expires: u32,
    ) -> (Response, Response) {
        let challenge = self.send(net, expires, None);
        assert_eq!(challenge.code, 401, "{challenge:?}");
        let offered = challenge.headers.get_all("WWW-Authenticate");
        let chosen = offered
            .iter()
            .find(|c| param(c, "algorithm").as_deref() == Some(algorithm))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in {offered:?}"));
        let realm = param(chosen, "realm").expect("realm");
        let nonce = param(chosen, "nonce").expect("nonce");
        let uri = format!("sip:{}", net.local);
        let ha1 = hex_digest(algorithm, &format!("{}:{realm}:{password}", self.user));
        let ha2 = hex_digest(algorithm, &format!("REGISTER:{uri}"));
        let (nc, cnonce) = ("00000001", "c0ffee");
        let response = hex_digest(
            algorithm,
            &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
        );
        let authorization = format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={algorithm}, cnonce=\"{cnonce}\", qop=auth, nc={nc}",
            self.user
        );
        let answer = self.send(net, expires, Some(authorization));
        (challenge, answer)
    }
}

fn status(net: &SimNet, id: &str) -> Option<AgentStatus> {
    net.calls
        .agents()
        .get(&AgentId::from(id))
        .map(|a| a.status())
}

fn agents_net() -> SimNet {
    SimNet::with_menus(sample_agent_menus()).build()
}

#[test]
fn md5_and_sha256_registrations_log_agents_in() {
    let mut net = agents_net();
    assert_eq!(status(&net, "ana"), Some(AgentStatus::LoggedOut));

    let mut ana = Registration::new(&mut net, "127.0.0.1:41000", ANA.0);
    let (challenge, ok) = ana.register(&mut net, ANA.1, "MD5", 600);
    let algorithms: Vec<Option<String>> = challenge
        .headers
        .get_all("WWW-Authenticate")
        .iter()
        .map(|c| param(c, "algorithm"))
        .collect();
    assert_eq!(
        algorithms,
        [Some("MD5".to_owned()), Some("SHA-256".to_owned())],
        "both challenges, MD5 first"
    );
    assert_eq!(ok.code, 200, "{ok:?}");
    let listed: Vec<String> = ok.contacts().iter().map(|c| c.uri.to_string()).collect();
    assert_eq!(listed, ["sip:ana@127.0.0.1:41000"]);
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));

    let mut li = Registration::new(&mut net, "127.0.0.1:41002", LI_WEI.0);
    let (_, ok) = li.register(&mut net, LI_WEI.1, "SHA-256", 600);
    assert_eq!(ok.code, 200, "{ok:?}");
    assert_eq!(status(&net, "li.wei"), Some(AgentStatus::Available));
    assert_eq!(status(&net, "sam"), Some(AgentStatus::LoggedOut));
}

#[test]
fn wrong_password_gets_403_and_never_logs_in() {
    let mut net = agents_net();
    let mut ana = Registration::new(&mut net, "127.0.0.1:41000", ANA.0);
    let (_, refused) = ana.register(&mut net, "europe-refunds-2", "MD5", 600);
    assert_eq!(refused.code, 403, "{refused:?}");
    assert!(refused.contacts().is_empty());
    let (_, refused) = ana.register(&mut net, "wrong", "SHA-256", 600);
    assert_eq!(refused.code, 403, "{refused:?}");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::LoggedOut));
    assert!(net
        .calls
        .registrar()
        .bindings(net.now, &AgentId::from("ana"))
        .is_empty());

    // An unknown user sees exactly what a known one with a wrong password sees.
    let mut ghost = Registration::new(&mut net, "127.0.0.1:41004", "nobody");
    let (_, refused) = ghost.register(&mut net, "whatever", "MD5", 600);
    assert_eq!(refused.code, 403, "{refused:?}");
}

#[test]
fn a_lapsed_binding_logs_the_agent_out_at_its_expiry() {
    let mut net = agents_net();
    let mut ana = Registration::new(&mut net, "127.0.0.1:41000", ANA.0);
    let start = net.elapsed();
    let (_, ok) = ana.register(&mut net, ANA.1, "MD5", 60);
    assert_eq!(ok.code, 200, "{ok:?}");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));

    net.run_until(net.t0 + start + secs(59));
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
    // Nothing else is scheduled: the binding's expiry is what wakes the call layer.
    let due = net.calls.poll_timeout().expect("the binding's expiry");
    assert_eq!(net.since_t0(due), start + secs(60));
    net.run_until(due);
    assert_eq!(status(&net, "ana"), Some(AgentStatus::LoggedOut));
    assert!(net
        .calls
        .registrar()
        .bindings(net.now, &AgentId::from("ana"))
        .is_empty());
}

#[test]
fn unregister_with_expires_zero_logs_the_agent_out() {
    let mut net = agents_net();
    let mut ana = Registration::new(&mut net, "127.0.0.1:41000", ANA.0);
    assert_eq!(ana.register(&mut net, ANA.1, "MD5", 600).1.code, 200);
    let (_, ok) = ana.register(&mut net, ANA.1, "MD5", 0);
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(ok.contacts().is_empty(), "no binding left to list");
    assert_eq!(status(&net, "ana"), Some(AgentStatus::LoggedOut));
}

#[test]
fn reload_keeps_declared_agents_logged_in_and_logs_out_removed_ones() {
    let mut net = agents_net();
    let mut ana = Registration::new(&mut net, "127.0.0.1:41000", ANA.0);
    assert_eq!(ana.register(&mut net, ANA.1, "MD5", 600).1.code, 200);
    let mut li = Registration::new(&mut net, "127.0.0.1:41002", LI_WEI.0);
    assert_eq!(li.register(&mut net, LI_WEI.1, "MD5", 600).1.code, 200);

    // The same agents file without li.wei's table.
    let dir = common::menus_with_sample_agents(|text| {
        let start = text.find("[agents.\"li.wei\"]").expect("li.wei's table");
        let end = start + text[start..].find("\n\n").expect("a blank line after it");
        format!("{}{}", &text[..start], &text[end..])
    });
    let menus = common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"));
    assert!(menus.agent("li.wei").is_none() && menus.agent("ana").is_some());
    net.calls.set_menus(net.now, menus);
    net.drive();

    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
    let now = net.now;
    assert_eq!(
        net.calls
            .registrar()
            .bindings(now, &AgentId::from("ana"))
            .len(),
        1
    );
    assert_eq!(status(&net, "li.wei"), None, "no longer declared");
    assert!(net
        .calls
        .registrar()
        .bindings(now, &AgentId::from("li.wei"))
        .is_empty());
    // ana's phone refreshes with the new menus in force, without another login.
    assert_eq!(ana.register(&mut net, ANA.1, "MD5", 600).1.code, 200);
    assert_eq!(status(&net, "ana"), Some(AgentStatus::Available));
}

// ── routed calls ringing agents ──

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An agent's phone at `addr`, registered (MD5) and answering helpline's INVITEs as `mode`.
fn agent_phone(net: &mut SimNet, addr: &str, agent: (&str, &str), mode: AnswerMode) -> PhoneId {
    let mut reg = Registration::new(net, addr, agent.0);
    let (_, ok) = reg.register(net, agent.1, "MD5", 600);
    assert_eq!(ok.code, 200, "{ok:?}");
    net.phone(reg.phone).answer_invites = mode;
    reg.phone
}

/// Answers after `ring`, with PCMU from the phone's RTP port.
fn answers_after(net: &SimNet, ring: Duration, addr: &str) -> AnswerMode {
    let a: std::net::SocketAddr = addr.parse().expect("literal");
    let _ = net;
    AnswerMode::Answer {
        ring,
        sdp: sdp(
            std::net::SocketAddr::new(a.ip(), a.port() + 1000),
            "0 101",
            "a=sendrecv",
        ),
    }
}

/// A GB caller who presses 2 (refunds) and enters order number 123456#: routed to europe.refunds.
fn refunds_caller(net: &mut SimNet) -> (PhoneId, CallRef) {
    let p = net.udp_phone("127.0.0.1:40000");
    let offer = net.offer(p);
    let c = net.phone(p).invite(GB, Some(&offer));
    net.drive();
    assert_eq!(net.phone(p).codes_to(c, "INVITE"), [100, 200]);
    net.phone(p).ack(c, None);
    net.advance(ms(300));
    let m = net.media_id(p, c);
    for key in "2123456".chars() {
        net.key(m, key);
        net.advance(ms(200));
    }
    // The last key: the order number is complete and the caller is routed at this instant.
    net.key(m, '#');
    (p, c)
}

/// The INVITEs helpline sent to a phone (the agent legs), in order.
fn invites(net: &mut SimNet, phone: PhoneId) -> Vec<helpline::sip::message::Request> {
    net.phone(phone)
        .calls
        .iter()
        .filter_map(|c| c.incoming.clone())
        .collect()
}

fn requests_of(net: &mut SimNet, phone: PhoneId, method: &str) -> usize {
    let ph = net.phone(phone);
    (0..ph.calls.len())
        .map(|i| ph.requests(CallRef(i), method).len())
        .sum()
}

fn agent_state(net: &SimNet, id: &str) -> Option<AgentState> {
    net.calls
        .agents()
        .get(&AgentId::from(id))
        .map(|a| a.state())
}

#[test]
fn routed_caller_rings_the_agent_who_answers_and_the_caller_hangs_up() {
    let mut net = agents_net();
    let mode = answers_after(&net, secs(2), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net);

    let inv = invites(&mut net, ana);
    assert_eq!(inv.len(), 1, "{}", net.phone(ana).transcript());
    let invite = &inv[0];
    assert_eq!(invite.uri.to_string(), "sip:ana@127.0.0.1:41000");
    assert_eq!(invite.header("X-Helpline-Region"), Some("europe"));
    assert_eq!(invite.header("X-Helpline-Queue"), Some("europe.refunds"));
    assert_eq!(invite.header("X-Helpline-Language"), Some("en"));
    assert_eq!(invite.header("X-Helpline-Order-Id"), Some("123456"));
    assert_eq!(invite.from().uri.user.as_deref(), Some("caller"));
    assert!(invite
        .header("P-Asserted-Identity")
        .is_some_and(|v| v.contains("sip:caller@")));
    let agent_port = common::sim::sdp_port(&invite.body).expect("an SDP offer");
    let caller_port =
        common::sim::sdp_port(&net.phone(p).responses_to(c, "INVITE")[1].body).expect("caller SDP");
    assert_ne!(
        agent_port, caller_port,
        "the agent leg has its own RTP port"
    );
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::Offered));

    net.advance(secs(2));
    let ph = net.phone(ana);
    assert_eq!(
        ph.requests(CallRef(0), "ACK").len(),
        1,
        "{}",
        ph.transcript()
    );
    let caller_media = net.media_id(p, c);
    let agent_media = net.media.by_port(agent_port).expect("agent session").id;
    assert_eq!(net.media.bridges.len(), 1);
    assert_eq!(
        (net.media.bridges[0].1, net.media.bridges[0].2),
        (caller_media, agent_media)
    );
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::InCall));

    net.advance(secs(10));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(net.phone(ana).requests(CallRef(0), "BYE").len(), 1);
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::WrapUp));
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.queue.as_deref(), Some("europe.refunds"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.talk_ms, Some(10_000));
    assert_eq!(cdr.queue_wait_ms, Some(2_000));
    assert!(net.media.session(agent_media).closed_at.is_some());
    assert_eq!(net.calls.ports_in_use(), 0);
    // The 10 s wrap-up is over: free for the next caller.
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::Idle));
}

#[test]
fn the_agent_hangs_up_and_the_caller_gets_bye() {
    let mut net = agents_net();
    let mode = answers_after(&net, secs(1), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net);
    net.advance(secs(1));
    assert_eq!(net.media.bridges.len(), 1);
    net.advance(secs(5));
    net.phone(ana).bye(CallRef(0));
    net.drive();
    assert_eq!(net.phone(p).requests(c, "BYE").len(), 1);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::AgentBye));
    assert_eq!(cdr.agent.as_deref(), Some("ana"));
    assert_eq!(cdr.talk_ms, Some(5_000));
    let line = serde_json::to_string(cdr).expect("serialisable");
    assert!(line.contains("\"end_reason\":\"agent-bye\""), "{line}");
    assert!(line.contains("\"queue_result\":\"answered\""), "{line}");
}

#[test]
fn caller_hanging_up_while_the_agent_rings_cancels_the_agent_leg() {
    let mut net = agents_net();
    let mode = answers_after(&net, secs(10), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net);
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.advance(secs(1));
    net.phone(p).bye(c);
    net.drive();
    assert_eq!(
        requests_of(&mut net, ana, "CANCEL"),
        1,
        "{}",
        net.phone(ana).transcript()
    );
    net.run_until_idle(secs(60));
    assert_eq!(net.media.bridges.len(), 0);
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.end_reason, Some(EndReason::CallerBye));
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    assert_eq!(cdr.agent, None);
    assert_ne!(agent_state(&net, "ana"), Some(AgentState::Offered));
    assert_eq!(net.calls.ports_in_use(), 0);
}

#[test]
fn an_agent_with_two_phones_rings_both_and_the_other_gets_cancel() {
    let mut net = agents_net();
    let slow = answers_after(&net, secs(5), "127.0.0.1:41000");
    let desk = agent_phone(&mut net, "127.0.0.1:41000", ANA, slow);
    let quick = answers_after(&net, secs(1), "127.0.0.1:41010");
    let mobile = agent_phone(&mut net, "127.0.0.1:41010", ANA, quick);
    let (p, c) = refunds_caller(&mut net);
    assert_eq!(invites(&mut net, desk).len(), 1);
    assert_eq!(invites(&mut net, mobile).len(), 1);
    net.advance(secs(1));
    assert_eq!(net.phone(mobile).requests(CallRef(0), "ACK").len(), 1);
    assert_eq!(
        requests_of(&mut net, desk, "CANCEL"),
        1,
        "{}",
        net.phone(desk).transcript()
    );
    assert_eq!(requests_of(&mut net, mobile, "CANCEL"), 0);
    assert_eq!(net.media.bridges.len(), 1);
    net.advance(secs(10));
    assert_eq!(
        net.media.bridges.len(),
        1,
        "the cancelled phone never joins"
    );
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    assert_eq!(net.cdr(p, c).agent.as_deref(), Some("ana"));
}

#[test]
fn an_agent_who_declines_moves_the_caller_to_the_next_agent() {
    // bob (password "bob-pw") also serves europe.refunds.
    let ha1 = hex_digest("MD5", "bob:helpline:bob-pw");
    let dir = common::menus_with_sample_agents(|text| {
        format!(
            "{text}\n[agents.bob]\nname = \"Bob\"\nha1 = \"{ha1}\"\nqueues = [\"europe.refunds\"]\n"
        )
    });
    let menus = common::sim::load_menus(dir.to_str().expect("UTF-8 temp path"));
    let mut net = SimNet::with_menus(menus).build();
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, AnswerMode::Decline);
    net.advance(secs(1)); // ana has been idle longer: she is offered first
    let mode = answers_after(&net, secs(1), "127.0.0.1:41020");
    let bob = agent_phone(&mut net, "127.0.0.1:41020", ("bob", "bob-pw"), mode);
    let (p, c) = refunds_caller(&mut net);
    assert_eq!(invites(&mut net, ana).len(), 1);
    assert_eq!(
        invites(&mut net, bob).len(),
        1,
        "{}",
        net.phone(bob).transcript()
    );
    net.advance(secs(1));
    assert_eq!(net.media.bridges.len(), 1);
    assert_eq!(agent_state(&net, "bob"), Some(AgentState::InCall));
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::WrapUp));
    net.phone(p).bye(c);
    net.run_until_idle(secs(60));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.agent.as_deref(), Some("bob"));
    assert_eq!(cdr.queue_result, Some(QueueResult::Answered));
}

#[test]
fn an_unanswered_offer_is_cancelled_at_the_ring_timeout_and_tried_again_after_wrap_up() {
    let mut net = agents_net();
    let mode = answers_after(&net, secs(60), "127.0.0.1:41000");
    let ana = agent_phone(&mut net, "127.0.0.1:41000", ANA, mode);
    let (p, c) = refunds_caller(&mut net);
    let routed = net.now;
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.run_until(routed + secs(15) - ms(1));
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 0);
    net.run_until(routed + secs(15));
    assert_eq!(
        requests_of(&mut net, ana, "CANCEL"),
        1,
        "{}",
        net.phone(ana).transcript()
    );
    assert_eq!(agent_state(&net, "ana"), Some(AgentState::WrapUp));
    // The only agent of the queue, free again after the 10 s wrap-up: offered the caller once more.
    net.run_until(routed + secs(25) - ms(1));
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.run_until(routed + secs(25));
    assert_eq!(invites(&mut net, ana).len(), 2);
    net.phone(p).bye(c);
    net.run_until_idle(secs(120));
    let cdr = net.cdr(p, c);
    assert_eq!(cdr.queue_result, Some(QueueResult::Abandoned));
    assert_eq!(cdr.queue_wait_ms, Some(25_000));
    assert_eq!(requests_of(&mut net, ana, "CANCEL"), 2);
}
