//! The registrar on a simulated clock. Client responses are computed here with the hash crates
//! directly, not with `digest::response`, so the test checks the registrar against RFC 7616 arithmetic
//! rather than against itself.
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::*;
use crate::agent::{AgentConfig, QueueName, StaticDirectory};
use crate::sip::endpoint::{Peer, Transport};
use crate::sip::message::{parse_datagram, SipMessage};

const REALM: &str = "helpline.test";
const URI: &str = "sip:helpline.test";

fn h(alg: &str, data: &str) -> String {
    let bytes: Vec<u8> = match alg {
        "MD5" => Md5::digest(data.as_bytes()).to_vec(),
        "SHA-256" => Sha256::digest(data.as_bytes()).to_vec(),
        other => panic!("no {other}"),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn agent(id: &str, password: &str, sha256: bool) -> AgentConfig {
    let secret = format!("{id}:{REALM}:{password}");
    AgentConfig {
        id: AgentId::parse(id).unwrap(),
        name: id.to_uppercase(),
        ha1: Ha1::parse(Algorithm::Md5, &h("MD5", &secret)).unwrap(),
        ha1_sha256: sha256.then(|| Ha1::parse(Algorithm::Sha256, &h("SHA-256", &secret)).unwrap()),
        queues: vec![QueueName::new("europe", "refunds")],
        languages: vec!["en".into()],
        penalties: Default::default(),
    }
}

fn directory() -> Arc<StaticDirectory> {
    Arc::new(StaticDirectory::new(
        REALM,
        [
            agent("alice", "alice-pw", true),
            agent("bob", "bob-pw", false),
        ],
    ))
}

fn registrar_with(config: RegistrarConfig) -> Registrar {
    Registrar::new(config, directory(), [7; 32])
}

fn registrar() -> Registrar {
    registrar_with(RegistrarConfig::default())
}

fn id(name: &str) -> AgentId {
    AgentId::parse(name).unwrap()
}

fn peer(port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: ([127, 0, 0, 1], port).into(),
        local: ([127, 0, 0, 1], 5060).into(),
    }
}

/// One softphone: its AOR user, Call-ID, Contact and CSeq counter.
struct Phone {
    user: String,
    call_id: String,
    port: u16,
    cseq: u32,
    cnonce: u32,
}

impl Phone {
    fn new(user: &str, call_id: &str, port: u16) -> Phone {
        Phone {
            user: user.into(),
            call_id: call_id.into(),
            port,
            cseq: 0,
            cnonce: 0,
        }
    }

    fn contact(&self) -> String {
        format!("<sip:{}@127.0.0.1:{}>", self.user, self.port)
    }

    /// A REGISTER with the next CSeq; `extra` are whole header lines. A Contact is added unless
    /// `extra` has one.
    fn request(&mut self, extra: &[String]) -> Request {
        self.cseq += 1;
        let mut text = format!(
            "REGISTER {URI} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{cid}-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@helpline.test>;tag=ph-{cid}\r\n\
             To: <sip:{user}@helpline.test>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} REGISTER\r\n",
            port = self.port,
            cid = self.call_id,
            cseq = self.cseq,
            user = self.user,
        );
        if !extra.iter().any(|l| l.starts_with("Contact:")) {
            text.push_str(&format!("Contact: {}\r\n", self.contact()));
        }
        for l in extra {
            text.push_str(l);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("bad test request {other:?}\n{text}"),
        }
    }

    fn next_cnonce(&mut self) -> String {
        self.cnonce += 1;
        format!("cn-{}-{}", self.call_id, self.cnonce)
    }
}

/// An `Authorization` line computed from the password as a phone would.
fn authorization(
    alg: &str,
    user: &str,
    password: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let ha1 = h(alg, &format!("{user}:{REALM}:{password}"));
    let ha2 = h(alg, &format!("REGISTER:{URI}"));
    let nc = format!("{nc:08x}");
    let response = h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
         response=\"{response}\", algorithm={alg}, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    )
}

fn challenges(r: &Response) -> Vec<&str> {
    r.headers.get_all("WWW-Authenticate")
}

/// The nonce of the 401's challenge for `alg`.
fn nonce_for(r: &Response, alg: &str) -> String {
    assert_eq!(r.code, 401, "{r}");
    let c = challenges(r)
        .into_iter()
        .map(|v| Challenge::parse(v).unwrap())
        .find(|c| c.algorithm.name() == alg)
        .unwrap_or_else(|| panic!("no {alg} challenge in {r}"));
    c.nonce
}

fn contacts(r: &Response) -> Vec<String> {
    r.headers
        .get_all("Contact")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// REGISTER, take the 401's nonce for `alg`, answer it with nc=1.
fn register(
    reg: &mut Registrar,
    now: Instant,
    phone: &mut Phone,
    alg: &str,
    password: &str,
    extra: &[String],
) -> RegisterOutcome {
    let first = reg.handle_register(now, &phone.request(extra), &peer(phone.port));
    let nonce = nonce_for(&first.response, alg);
    let mut lines = extra.to_vec();
    let cnonce = phone.next_cnonce();
    lines.push(authorization(
        alg,
        &phone.user.clone(),
        password,
        &nonce,
        1,
        &cnonce,
    ));
    reg.handle_register(now, &phone.request(&lines), &peer(phone.port))
}

fn events(reg: &mut Registrar) -> Vec<AgentEvent> {
    std::iter::from_fn(|| reg.poll_event()).collect()
}

#[test]
fn md5_challenge_then_response_registers_the_agent() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    assert_eq!(first.reply.code(), 401);
    assert_eq!(first.agent, None);
    let ch = challenges(&first.response);
    assert_eq!(ch.len(), 2, "{}", first.response);
    // MD5 first, then SHA-256, one nonce for both.
    let nonce = nonce_for(&first.response, "MD5");
    assert_eq!(
        ch[0],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
    );
    assert_eq!(
        ch[1],
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"")
    );
    assert_eq!(nonce.len(), 32);
    assert!(first.response.to().tag().is_some_and(|t| !t.is_empty()));
    assert!(events(&mut reg).is_empty());

    let auth = authorization("MD5", "alice", "alice-pw", &nonce, 1, "0a4f113b");
    let ok = reg.handle_register(t0, &phone.request(&[auth]), &peer(5071));
    assert_eq!(ok.response.code, 200, "{}", ok.response);
    assert_eq!(ok.agent, Some(id("alice")));
    assert_eq!(
        contacts(&ok.response),
        ["<sip:alice@127.0.0.1:5071>;expires=3600"]
    );
    assert_eq!(events(&mut reg), [AgentEvent::LoggedIn(id("alice"))]);
    let b = reg.bindings(t0, &id("alice"));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, peer(5071));
    assert_eq!(b[0].expires, t0 + Duration::from_secs(3600));
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
}

#[test]
fn sha256_challenge_then_response_registers_the_agent() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let ok = register(&mut reg, t0, &mut phone, "SHA-256", "alice-pw", &[]);
    assert_eq!(ok.response.code, 200, "{}", ok.response);
    assert_eq!(ok.agent, Some(id("alice")));
    assert_eq!(events(&mut reg), [AgentEvent::LoggedIn(id("alice"))]);
}

#[test]
fn the_order_of_challenges_is_configurable() {
    let t0 = Instant::now();
    let mut reg = registrar_with(RegistrarConfig {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        ..RegistrarConfig::default()
    });
    let first = reg.handle_register(
        t0,
        &Phone::new("alice", "c1", 5071).request(&[]),
        &peer(5071),
    );
    let ch = challenges(&first.response);
    assert!(ch[0].contains("algorithm=SHA-256"), "{ch:?}");
    assert!(ch[1].contains("algorithm=MD5"), "{ch:?}");
    // Only SHA-256 offered: an MD5 answer is refused.
    let mut reg = registrar_with(RegistrarConfig {
        algorithms: vec![Algorithm::Sha256],
        ..RegistrarConfig::default()
    });
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    assert_eq!(challenges(&first.response).len(), 1);
    let nonce = nonce_for(&first.response, "SHA-256");
    let md5 = authorization("MD5", "alice", "alice-pw", &nonce, 1, "x");
    let r = reg.handle_register(t0, &phone.request(&[md5]), &peer(5071));
    assert_eq!(r.response.code, 400, "{}", r.response);
}

#[test]
fn an_expired_nonce_is_challenged_again_as_stale() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let late = t0 + Duration::from_secs(30);
    let auth = authorization("MD5", "alice", "alice-pw", &nonce, 1, "c");
    let r = reg.handle_register(late, &phone.request(&[auth]), &peer(5071));
    assert_eq!(r.response.code, 401, "{}", r.response);
    let ch = challenges(&r.response);
    assert_eq!(ch.len(), 2);
    assert!(ch.iter().all(|c| c.ends_with(", stale=true")), "{ch:?}");
    let fresh = nonce_for(&r.response, "MD5");
    assert_ne!(fresh, nonce);
    assert!(reg.bindings(late, &id("alice")).is_empty());
    // The wrong password on an expired nonce is not stale: the user must be asked again.
    let bad = authorization("MD5", "alice", "nope", &nonce, 1, "c");
    let r = reg.handle_register(late, &phone.request(&[bad]), &peer(5071));
    assert_eq!(r.response.code, 401);
    assert!(challenges(&r.response).iter().all(|c| !c.contains("stale")));
    // The fresh nonce works.
    let auth = authorization("MD5", "alice", "alice-pw", &fresh, 1, "c2");
    let r = reg.handle_register(late, &phone.request(&[auth]), &peer(5071));
    assert_eq!(r.response.code, 200, "{}", r.response);
    // 29.999 s after issue a nonce is still good.
    let first = reg.handle_register(late, &phone.request(&[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let auth = authorization("MD5", "alice", "alice-pw", &nonce, 1, "c3");
    let almost = late + Duration::from_millis(29_999);
    let r = reg.handle_register(almost, &phone.request(&[auth]), &peer(5071));
    assert_eq!(r.response.code, 200, "{}", r.response);
}

#[test]
fn a_replayed_or_recounted_response_is_refused() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let auth1 = authorization("MD5", "alice", "alice-pw", &nonce, 1, "c");
    let captured = phone.request(&[auth1]);
    assert_eq!(
        reg.handle_register(t0, &captured, &peer(5071))
            .response
            .code,
        200
    );
    // The phone unregisters with the same nonce and the next count.
    let auth2 = authorization("MD5", "alice", "alice-pw", &nonce, 2, "c");
    let bye = phone.request(&[auth2, "Expires: 0".into()]);
    let r = reg.handle_register(t0, &bye, &peer(5071));
    assert_eq!(r.response.code, 200, "{}", r.response);
    assert!(contacts(&r.response).is_empty());
    assert_eq!(
        events(&mut reg),
        [
            AgentEvent::LoggedIn(id("alice")),
            AgentEvent::LoggedOut(id("alice"))
        ]
    );
    // An attacker replays the captured REGISTER.
    let t1 = t0 + Duration::from_secs(1);
    let r = reg.handle_register(t1, &captured, &peer(6000));
    assert_eq!(r.response.code, 401, "{}", r.response);
    assert!(challenges(&r.response)
        .iter()
        .all(|c| c.ends_with("stale=true")));
    // The same nonce count with a new CSeq and cnonce is a reuse, too.
    let reuse = authorization("MD5", "alice", "alice-pw", &nonce, 2, "other");
    let r = reg.handle_register(t1, &phone.request(&[reuse]), &peer(6000));
    assert_eq!(r.response.code, 401, "{}", r.response);
    assert!(reg.bindings(t1, &id("alice")).is_empty());
    assert!(events(&mut reg).is_empty());
    // A count above the last one is accepted.
    let auth3 = authorization("MD5", "alice", "alice-pw", &nonce, 3, "c");
    let r = reg.handle_register(t1, &phone.request(&[auth3]), &peer(5071));
    assert_eq!(r.response.code, 200, "{}", r.response);
}

#[test]
fn a_wrong_password_gets_403_and_never_binds() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    for alg in ["MD5", "SHA-256"] {
        let r = register(&mut reg, t0, &mut phone, alg, "alice-PW", &[]);
        assert_eq!(r.response.code, 403, "{}", r.response);
        assert_eq!(r.response.reason, "Forbidden");
        assert_eq!(r.agent, None);
    }
    // An agent without ha1_sha256 cannot pass the SHA-256 challenge, even with its password.
    let mut bob = Phone::new("bob", "c2", 5072);
    let r = register(&mut reg, t0, &mut bob, "SHA-256", "bob-pw", &[]);
    assert_eq!(r.response.code, 403, "{}", r.response);
    assert!(reg.bindings(t0, &id("alice")).is_empty());
    assert!(reg.bindings(t0, &id("bob")).is_empty());
    assert_eq!(reg.poll_timeout(), None);
    assert!(events(&mut reg).is_empty());
    // Bob with MD5 is fine.
    let r = register(&mut reg, t0, &mut bob, "MD5", "bob-pw", &[]);
    assert_eq!(r.response.code, 200, "{}", r.response);
}

#[test]
fn an_agent_registers_only_its_own_address() {
    let t0 = Instant::now();
    let mut reg = registrar();
    // To says bob, the credentials are alice's.
    let mut phone = Phone::new("bob", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let auth = authorization("MD5", "alice", "alice-pw", &nonce, 1, "c");
    let r = reg.handle_register(t0, &phone.request(&[auth]), &peer(5071));
    assert_eq!(r.response.code, 403, "{}", r.response);
    assert!(reg.bindings(t0, &id("bob")).is_empty());
    assert!(reg.bindings(t0, &id("alice")).is_empty());
}

/// A response with its random parts (To tag, nonces) masked and `user` renamed `USER`.
fn masked(r: &Response, user: &str) -> String {
    let text = r.to_string().replace(user, "USER");
    let tag = r.to().tag().unwrap_or("no-tag").to_owned();
    let mut text = text.replace(&tag, "TAG");
    for c in challenges(r) {
        let n = Challenge::parse(c).unwrap().nonce;
        text = text.replace(&n, "NONCE");
    }
    text
}

#[test]
fn unknown_and_known_users_get_identical_answers() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut answers: Vec<Vec<String>> = Vec::new();
    for user in ["alice", "mallory"] {
        let mut phone = Phone::new(user, "same-call", 5071);
        let mut seen = Vec::new();
        // 1. No credentials.
        let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
        seen.push(masked(&first.response, user));
        // 2. A wrong password answering a live nonce, with each algorithm.
        for alg in ["MD5", "SHA-256"] {
            let nonce = nonce_for(&first.response, alg);
            let auth = authorization(alg, user, "guess", &nonce, 1, "c");
            let r = reg.handle_register(t0, &phone.request(&[auth]), &peer(5071));
            assert_eq!(r.response.code, 403, "{user}: {}", r.response);
            seen.push(masked(&r.response, user));
        }
        // 3. A guess against a nonce the registrar never issued.
        let auth = authorization(
            "MD5",
            user,
            "guess",
            "0123456789abcdef0123456789abcdef",
            1,
            "c",
        );
        let r = reg.handle_register(t0, &phone.request(&[auth]), &peer(5071));
        assert_eq!(r.response.code, 401);
        seen.push(masked(&r.response, user));
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert!(
        answers[0][0].starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{}",
        answers[0][0]
    );
    assert!(answers[0][0].contains("To: <sip:USER@helpline.test>;tag=TAG\r\n"));
    assert!(events(&mut reg).is_empty());
}

#[test]
fn bindings_expire_on_the_clock() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 120".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=120"]
    );
    assert_eq!(events(&mut reg), [AgentEvent::LoggedIn(id("alice"))]);
    let due = t0 + Duration::from_secs(120);
    assert_eq!(reg.poll_timeout(), Some(due));
    // Spurious and early wake-ups change nothing.
    reg.handle_timeout(t0 + Duration::from_secs(60));
    reg.handle_timeout(due - Duration::from_millis(1));
    assert!(events(&mut reg).is_empty());
    assert_eq!(
        reg.bindings(due - Duration::from_millis(1), &id("alice"))
            .len(),
        1
    );
    reg.handle_timeout(due);
    assert_eq!(events(&mut reg), [AgentEvent::LoggedOut(id("alice"))]);
    assert!(reg.bindings(due, &id("alice")).is_empty());
    assert_eq!(reg.poll_timeout(), None);
    // A refresh 50 s in restarts the full interval.
    let t1 = due + Duration::from_secs(1);
    register(
        &mut reg,
        t1,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 600".into()],
    );
    let t2 = t1 + Duration::from_secs(50);
    let r = register(
        &mut reg,
        t2,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 600".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=600"]
    );
    assert_eq!(reg.poll_timeout(), Some(t2 + Duration::from_secs(600)));
    assert_eq!(events(&mut reg), [AgentEvent::LoggedIn(id("alice"))]);
}

#[test]
fn a_register_without_contact_is_a_query() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 300".into()],
    );
    let later = t0 + Duration::from_millis(100_500);
    let first = reg.handle_register(later, &query(&mut phone, &[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let auth = authorization("MD5", "alice", "alice-pw", &nonce, 1, "q");
    let r = reg.handle_register(later, &query(&mut phone, &[auth]), &peer(5071));
    assert_eq!(r.response.code, 200);
    // 199.5 s left, rounded up.
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=200"]
    );
}

/// A REGISTER without any Contact.
fn query(phone: &mut Phone, extra: &[String]) -> Request {
    let mut r = phone.request(extra);
    r.headers.remove("Contact");
    r.refresh_typed().unwrap();
    r
}

#[test]
fn expires_is_clamped_and_too_brief_gets_423() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 59".into()],
    );
    assert_eq!(r.response.code, 423, "{}", r.response);
    assert_eq!(r.response.reason, "Interval Too Brief");
    assert_eq!(r.response.header("Min-Expires"), Some("60"));
    assert!(reg.bindings(t0, &id("alice")).is_empty());
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 60".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=60"]
    );
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 86400".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=3600"]
    );
    // The Contact parameter wins over the header; a huge value saturates and is clamped.
    let contact = |e: &str| format!("Contact: <sip:alice@127.0.0.1:5071>;expires={e}");
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &[contact("90"), "Expires: 30".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=90"]
    );
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &[contact("99999999999999")],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=3600"]
    );
    // A malformed value counts as the default (RFC 3261 §20.19).
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &[contact("soon")],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=3600"]
    );
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &[contact("10")],
    );
    assert_eq!(r.response.code, 423);
    // The refused request changed nothing.
    assert_eq!(
        reg.bindings(t0, &id("alice"))[0].expires,
        t0 + Duration::from_secs(3600)
    );
}

#[test]
fn two_phones_of_one_agent_and_star_unregister() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut desk = Phone::new("alice", "desk", 5071);
    let mut mobile = Phone::new("alice", "mobile", 5072);
    register(&mut reg, t0, &mut desk, "MD5", "alice-pw", &[]);
    let t1 = t0 + Duration::from_secs(10);
    let r = register(
        &mut reg,
        t1,
        &mut mobile,
        "SHA-256",
        "alice-pw",
        &["Expires: 600".into()],
    );
    assert_eq!(
        contacts(&r.response),
        [
            "<sip:alice@127.0.0.1:5071>;expires=3590",
            "<sip:alice@127.0.0.1:5072>;expires=600"
        ]
    );
    assert_eq!(events(&mut reg), [AgentEvent::LoggedIn(id("alice"))]);
    let b = reg.bindings(t1, &id("alice"));
    assert_eq!(
        b.iter().map(|b| b.source).collect::<Vec<_>>(),
        [peer(5071), peer(5072)]
    );
    // The mobile leaves; the agent stays logged in on the desk phone.
    let r = register(
        &mut reg,
        t1,
        &mut mobile,
        "MD5",
        "alice-pw",
        &["Expires: 0".into()],
    );
    assert_eq!(
        contacts(&r.response),
        ["<sip:alice@127.0.0.1:5071>;expires=3590"]
    );
    assert!(events(&mut reg).is_empty());
    // `*` needs Expires: 0.
    let star = "Contact: *".to_owned();
    let r = register(
        &mut reg,
        t1,
        &mut mobile,
        "MD5",
        "alice-pw",
        &[star.clone(), "Expires: 60".into()],
    );
    assert_eq!(r.response.code, 400, "{}", r.response);
    let r = register(
        &mut reg,
        t1,
        &mut mobile,
        "MD5",
        "alice-pw",
        std::slice::from_ref(&star),
    );
    assert_eq!(r.response.code, 400, "{}", r.response);
    assert_eq!(reg.bindings(t1, &id("alice")).len(), 1);
    // `*` with Expires: 0 from any phone of the agent removes every binding.
    register(&mut reg, t1, &mut mobile, "MD5", "alice-pw", &[]);
    assert_eq!(reg.bindings(t1, &id("alice")).len(), 2);
    let r = register(
        &mut reg,
        t1,
        &mut mobile,
        "MD5",
        "alice-pw",
        &[star, "Expires: 0".into()],
    );
    assert_eq!(r.response.code, 200, "{}", r.response);
    assert!(contacts(&r.response).is_empty());
    assert_eq!(events(&mut reg), [AgentEvent::LoggedOut(id("alice"))]);
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn a_stale_cseq_in_the_same_call_id_is_refused() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    register(&mut reg, t0, &mut phone, "MD5", "alice-pw", &[]);
    // Rewind the CSeq below the binding's.
    phone.cseq = 0;
    let r = register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 0".into()],
    );
    assert_eq!(r.response.code, 500, "{}", r.response);
    assert_eq!(reg.bindings(t0, &id("alice")).len(), 1);
}

#[test]
fn too_many_contacts_replace_the_one_that_expires_first() {
    let t0 = Instant::now();
    let mut reg = registrar_with(RegistrarConfig {
        max_contacts: 2,
        ..RegistrarConfig::default()
    });
    for (i, e) in [(1u16, 600), (2, 300), (3, 900)] {
        let mut p = Phone::new("alice", &format!("boot{i}"), 5070 + i);
        let r = register(
            &mut reg,
            t0,
            &mut p,
            "MD5",
            "alice-pw",
            &[format!("Expires: {e}")],
        );
        assert_eq!(r.response.code, 200);
    }
    let ports: Vec<u16> = reg
        .bindings(t0, &id("alice"))
        .iter()
        .map(|b| b.source.addr.port())
        .collect();
    assert_eq!(ports, [5071, 5073]);
}

#[test]
fn malformed_authorization_gets_400_naming_the_fault() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    let nonce = nonce_for(&first.response, "MD5");
    let good = authorization("MD5", "alice", "alice-pw", &nonce, 1, "c");
    let cases = [
        (
            good.replace("nc=00000001", "nc=1"),
            "Bad Authorization: malformed nc",
        ),
        (
            good.replace(", qop=auth", ""),
            "Bad Authorization: missing qop",
        ),
        (
            good.replace(URI, "sip:elsewhere.test"),
            "Bad Authorization: uri is not the Request-URI",
        ),
    ];
    for (line, reason) in cases {
        let r = reg.handle_register(t0, &phone.request(&[line]), &peer(5071));
        assert_eq!(r.response.code, 400, "{}", r.response);
        assert_eq!(r.response.reason, reason);
    }
    // None of it spent the nonce.
    let r = reg.handle_register(t0, &phone.request(&[good]), &peer(5071));
    assert_eq!(r.response.code, 200, "{}", r.response);
    // Credentials for another realm are not ours: challenge.
    let other =
        authorization("MD5", "alice", "alice-pw", &nonce, 2, "c").replace(REALM, "other.test");
    let r = reg.handle_register(t0, &phone.request(&[other]), &peer(5071));
    assert_eq!(r.response.code, 401);
}

#[test]
fn a_flood_of_registers_keeps_nonces_bounded() {
    let t0 = Instant::now();
    let mut reg = registrar_with(RegistrarConfig {
        max_nonces: 64,
        ..RegistrarConfig::default()
    });
    let mut phone = Phone::new("alice", "c1", 5071);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer(5071));
    let early = nonce_for(&first.response, "MD5");
    let mut flood = Phone::new("mallory", "flood", 6000);
    for _ in 0..1000 {
        reg.handle_register(t0, &flood.request(&[]), &peer(6000));
        assert!(reg.store().nonce_count() <= 64);
    }
    assert_eq!(reg.store().nonce_count(), 64);
    // Alice's nonce was forgotten; her right answer is challenged as stale, not refused.
    let auth = authorization("MD5", "alice", "alice-pw", &early, 1, "c");
    let r = reg.handle_register(t0, &phone.request(&[auth]), &peer(5071));
    assert_eq!(r.response.code, 401);
    assert!(challenges(&r.response)
        .iter()
        .all(|c| c.ends_with("stale=true")));
    // Expired nonces are forgotten on the clock.
    reg.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(reg.store().nonce_count(), 0);
}

#[test]
fn a_reload_keeps_declared_agents_logged_in() {
    let t0 = Instant::now();
    let mut reg = registrar();
    register(
        &mut reg,
        t0,
        &mut Phone::new("alice", "a", 5071),
        "MD5",
        "alice-pw",
        &[],
    );
    register(
        &mut reg,
        t0,
        &mut Phone::new("bob", "b", 5072),
        "MD5",
        "bob-pw",
        &[],
    );
    assert_eq!(events(&mut reg).len(), 2);
    reg.set_directory(directory());
    assert!(events(&mut reg).is_empty());
    reg.set_directory(Arc::new(StaticDirectory::new(
        REALM,
        [agent("alice", "new-pw", true)],
    )));
    assert_eq!(events(&mut reg), [AgentEvent::LoggedOut(id("bob"))]);
    assert_eq!(reg.bindings(t0, &id("alice")).len(), 1);
    // The new password applies to the next registration.
    let r = register(
        &mut reg,
        t0,
        &mut Phone::new("alice", "a2", 5073),
        "MD5",
        "alice-pw",
        &[],
    );
    assert_eq!(r.response.code, 403);
    let r = register(
        &mut reg,
        t0,
        &mut Phone::new("alice", "a3", 5073),
        "MD5",
        "new-pw",
        &[],
    );
    assert_eq!(r.response.code, 200);
}

#[test]
fn the_same_seed_gives_the_same_answers() {
    let t0 = Instant::now();
    let run = || {
        let mut reg = registrar();
        let mut phone = Phone::new("alice", "c1", 5071);
        let a = reg
            .handle_register(t0, &phone.request(&[]), &peer(5071))
            .response
            .to_string();
        let b = register(&mut reg, t0, &mut phone, "MD5", "alice-pw", &[])
            .response
            .to_string();
        (a, b)
    };
    assert_eq!(run(), run());
}

#[test]
fn every_answer_parses_with_an_independent_parser() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let mut phone = Phone::new("alice", "c1", 5071);
    let mut answers = vec![reg.handle_register(t0, &phone.request(&[]), &peer(5071))];
    answers.push(register(&mut reg, t0, &mut phone, "MD5", "alice-pw", &[]));
    answers.push(register(&mut reg, t0, &mut phone, "MD5", "nope", &[]));
    answers.push(register(
        &mut reg,
        t0,
        &mut phone,
        "MD5",
        "alice-pw",
        &["Expires: 5".into()],
    ));
    let codes: Vec<u16> = answers.iter().map(|a| a.response.code).collect();
    assert_eq!(codes, [401, 200, 403, 423]);
    for a in answers {
        let bytes = a.response.to_bytes();
        let parsed = rsip::SipMessage::try_from(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{e:?}\n{}", a.response));
        assert!(parsed.is_response());
    }
}

/// An INVITE to `*50` from `ip` with a digest for `password` on nonce `nonce` (or no credentials).
fn feature_invite(user: &str, password: Option<(&str, &str)>, n: u32) -> Request {
    let uri = "sip:*50@helpline.test";
    let mut text = format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-fc-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@helpline.test>;tag=fc{n}\r\nTo: <{uri}>\r\n\
         Call-ID: fc-{n}\r\nCSeq: 1 INVITE\r\n"
    );
    if let Some((password, nonce)) = password {
        let ha1 = h("MD5", &format!("{user}:{REALM}:{password}"));
        let ha2 = h("MD5", &format!("INVITE:{uri}"));
        let cnonce = format!("fc-cn-{n}");
        let response = h(
            "MD5",
            &format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"),
        );
        text.push_str(&format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, \
             nc=00000001\r\n"
        ));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("bad test request {other:?}\n{text}"),
    }
}

/// The `*50` / `*51` feature codes are digest-authenticated through the same per-source throttle as
/// REGISTER: after five wrong guesses for alice from one address, even her right password is refused
/// there (on `*50` and on REGISTER alike), while it works from another address.
#[test]
fn feature_code_guesses_are_throttled_like_registers() {
    let t0 = Instant::now();
    let mut reg = registrar();
    let attacker: IpAddr = "192.0.2.66".parse().unwrap();
    let agent_phone: IpAddr = "192.0.2.7".parse().unwrap();
    let mut n = 0;
    let mut try_code = |reg: &mut Registrar, password: &str, from: IpAddr| {
        n += 1;
        let challenge = match reg.authorize(t0, &feature_invite("alice", None, n), from) {
            Err(r @ Reply::Unauthorized { .. }) => {
                r.to_response(&feature_invite("alice", None, n), None)
            }
            other => panic!("expected a challenge, got {other:?}"),
        };
        let nonce = nonce_for(&challenge, "MD5");
        reg.authorize(
            t0,
            &feature_invite("alice", Some((password, &nonce)), n),
            from,
        )
    };
    for guess in 0..5 {
        let got = try_code(&mut reg, &format!("guess-{guess}"), attacker);
        assert_eq!(got.map_err(|r| r.code()), Err(403), "guess {guess}");
    }
    assert_eq!(reg.auth_failures(), 5);
    let got = try_code(&mut reg, "alice-pw", attacker);
    assert_eq!(
        got.map_err(|r| r.code()),
        Err(403),
        "the right password from the guessing source"
    );
    // REGISTER shares the throttle: the attacker's address is locked out there too.
    let mut phone = Phone::new("alice", "fc-reg", 5090);
    let first = reg.handle_register(t0, &phone.request(&[]), &peer_at(attacker, 5090));
    let nonce = nonce_for(&first.response, "MD5");
    let line = authorization("MD5", "alice", "alice-pw", &nonce, 1, &phone.next_cnonce());
    let r = reg.handle_register(t0, &phone.request(&[line]), &peer_at(attacker, 5090));
    assert_eq!(r.response.code, 403, "{}", r.response);
    // Alice's own phone, elsewhere, is not locked out.
    let got = try_code(&mut reg, "alice-pw", agent_phone);
    assert_eq!(got.map_err(|r| r.code()), Ok(id("alice")));
}

fn peer_at(ip: IpAddr, port: u16) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: std::net::SocketAddr::new(ip, port),
        local: ([127, 0, 0, 1], 5060).into(),
    }
}
