//! Black-box SIP tests of the real `helpline serve` binary with our scripted test UA over UDP, TCP and
//! IPv6: call set-up and tear-down, INVITE server transaction behaviour (retransmissions, 2xx
//! retransmission and the no-ACK release, CANCEL), error responses, SDP offer/answer cases, TCP framing
//! and graceful shutdown. Interop with SIPp and the IVR's menu logic are tested elsewhere.

mod common;

use common::{root, sdp_offer, Msg, Server, TestCall, Ua};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Generous bound for any single expected message on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Tr {
    Udp,
    Tcp,
}

/// Runs a test body once over UDP and once over TCP (two `#[test]`s in a module named after it).
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn udp() {
                super::$name(super::Tr::Udp)
            }
            #[test]
            fn tcp() {
                super::$name(super::Tr::Tcp)
            }
        }
    )*};
}

both!(
    call_setup_and_caller_bye,
    retransmitted_invite_is_one_call,
    cancel_while_ringing,
    no_ack_releases_the_call_with_bye,
    answers_to_odd_requests,
    malformed_requests_get_400_naming_the_header,
    offers_and_renegotiation,
);

/// The SDP cases share one server (each server start costs seconds of a debug build on a loaded machine);
/// each case is its own call with its own CDR.
fn offers_and_renegotiation(tr: Tr) {
    let server = start(&[]);
    offer_pcma_only_is_answered_pcma(&server, tr);
    offer_g729_only_is_refused_488(&server, tr);
    invite_without_sdp_gets_our_offer(&server, tr);
    hold_unhold_and_unusable_reinvite(&server, tr);
}

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--no-watch"];
    args.extend_from_slice(extra);
    Server::start(&root().join("tests/data/menus/first-flow"), &args)
}

fn ua(server: &Server, tr: Tr) -> Ua {
    match tr {
        Tr::Udp => Ua::udp(server.addr),
        Tr::Tcp => Ua::tcp(server.addr),
    }
}

/// A local RTP socket: where the server's media for a test call goes.
fn rtp_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind rtp")
}

fn port_of(sock: &UdpSocket) -> u16 {
    sock.local_addr().expect("rtp addr").port()
}

/// A PCMU + telephone-event offer.
fn pcmu_offer(port: u16, extra: &str) -> String {
    sdp_offer(
        port,
        "0 101",
        &format!(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n{extra}"
        ),
    )
}

/// Sends an INVITE with an explicit branch (so it can be retransmitted or cancelled) and extra headers.
fn send_invite(ua: &mut Ua, call: &TestCall, branch: &str, extra_headers: &str, sdp: &str) {
    let (server, local, tr) = (ua.server, ua.local, ua.transport());
    let ct = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\n"
    };
    send_head(
        ua,
        &format!(
            "INVITE sip:{user}@{server} SIP/2.0
            Via: SIP/2.0/{tr} {local};branch={branch};rport
            Max-Forwards: 70
            From: \"Test Caller\" <sip:caller@{local}>;tag={ftag}
            To: <sip:{user}@{server}>
            Call-ID: {cid}
            CSeq: 1 INVITE
            Contact: <sip:caller@{local}>
            {extra_headers}
            {ct}",
            user = call.user,
            ftag = call.from_tag,
            cid = call.call_id,
        ),
        sdp,
    );
}

/// Like `Ua::send`, but blank lines (from empty optional headers) are dropped: they would end the head.
fn send_head(ua: &mut Ua, head: &str, body: &str) {
    let head: Vec<&str> = head.lines().filter(|l| !l.trim().is_empty()).collect();
    ua.send(&head.join("\n"), body);
}

fn new_call(user: &str) -> TestCall {
    TestCall {
        call_id: format!("loop-{}-{}@test", std::process::id(), unique()),
        from_tag: format!("ft{}", unique()),
        to_tag: String::new(),
        user: user.to_string(),
        cseq: 1,
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    n.wrapping_mul(0x9e37_79b9) ^ u64::from(std::process::id()) << 32
}

/// Sends a request inside (or about) `call` with full control of CSeq, branch and To tag.
#[allow(clippy::too_many_arguments)]
fn send_request(
    ua: &mut Ua,
    call: &TestCall,
    method: &str,
    cseq: u32,
    branch: &str,
    to_tag: Option<&str>,
    extra_headers: &str,
    body: &str,
) {
    let (server, local, tr) = (ua.server, ua.local, ua.transport());
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    send_head(
        ua,
        &format!(
            "{method} sip:{user}@{server} SIP/2.0
            Via: SIP/2.0/{tr} {local};branch={branch};rport
            Max-Forwards: 70
            From: \"Test Caller\" <sip:caller@{local}>;tag={ftag}
            To: <sip:{user}@{server}>{to_tag}
            Call-ID: {cid}
            CSeq: {cseq} {method}
            {extra_headers}",
            user = call.user,
            ftag = call.from_tag,
            cid = call.call_id,
        ),
        body,
    );
}

/// The method named in a message's CSeq.
fn cseq_method(msg: &Msg) -> String {
    msg.header("CSeq")
        .and_then(|c| c.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

/// Waits for the final response to `method` with `code`; provisional responses and responses to other
/// methods are skipped, requests from the server are returned in `skipped`.
fn final_response(ua: &mut Ua, method: &str, code: u16, skipped: &mut Vec<Msg>) -> Msg {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no {code} to {method} within {WAIT:?}"));
        let msg = ua
            .recv(left)
            .unwrap_or_else(|| panic!("no {code} to {method} within {WAIT:?}"));
        msg.assert_rsip_parses_if_v4();
        match msg.code() {
            Some(c) if cseq_method(&msg) == method && c >= 200 => {
                assert_eq!(c, code, "final response to {method}:\n{}", msg.text);
                return msg;
            }
            Some(_) => continue,
            None => skipped.push(msg),
        }
    }
}

fn expect_final(ua: &mut Ua, method: &str, code: u16) -> Msg {
    let mut skipped = Vec::new();
    let msg = final_response(ua, method, code, &mut skipped);
    assert!(
        skipped.is_empty(),
        "unexpected requests from the server: {skipped:?}"
    );
    msg
}

/// Everything received within `dur`.
fn collect(ua: &mut Ua, dur: Duration) -> Vec<Msg> {
    let deadline = Instant::now() + dur;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match ua.recv(left) {
            Some(m) => out.push(m),
            None => break,
        }
    }
    out
}

trait MsgExt {
    fn assert_rsip_parses_if_v4(&self);
    fn m_line(&self) -> String;
}

impl MsgExt for Msg {
    /// rsip handles IPv4 only; every IPv4 message helpline sends must parse.
    fn assert_rsip_parses_if_v4(&self) {
        if !self.text.contains("[::1]") {
            self.assert_rsip_parses();
        }
    }

    fn m_line(&self) -> String {
        self.body()
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .unwrap_or_else(|| panic!("no m=audio in:\n{}", self.text))
            .to_string()
    }
}

/// The payload types of an `m=` line.
fn payloads(m_line: &str) -> Vec<String> {
    m_line
        .split_whitespace()
        .skip(3)
        .map(str::to_string)
        .collect()
}

/// INVITE with `sdp`, wait for the 200, ACK it; returns the call (with To tag) and the 200.
fn establish(ua: &mut Ua, sdp: &str) -> (TestCall, Msg) {
    let mut call = ua.invite("08000000001", sdp);
    let ok = expect_final(ua, "INVITE", 200);
    call.to_tag = ok.to_tag().expect("to-tag in 200");
    ua.ack(&call, "");
    (call, ok)
}

fn bye_ok(ua: &mut Ua, call: &mut TestCall) -> Msg {
    ua.in_dialog(call, "BYE", "", "");
    let mut skipped = Vec::new();
    final_response(ua, "BYE", 200, &mut skipped)
}

// ---------------------------------------------------------------------------------------------------------

fn call_setup_and_caller_bye(tr: Tr) {
    let server = start(&[]);
    let mut ua = ua(&server, tr);
    let rtp = rtp_socket();
    let mut call = ua.invite("08000000001", &pcmu_offer(port_of(&rtp), ""));
    // RFC 3261 §17.2.1: 100 Trying first, then the 200 with our answer.
    let trying = ua.recv(WAIT).expect("100 Trying");
    trying.assert_rsip_parses();
    assert_eq!(trying.code(), Some(100), "{}", trying.text);
    let ok = expect_final(&mut ua, "INVITE", 200);
    ok.assert_rsip_parses();
    call.to_tag = ok.to_tag().expect("to-tag");
    assert_eq!(
        ok.header("Content-Type").as_deref(),
        Some("application/sdp")
    );
    let pts = payloads(&ok.m_line());
    assert!(pts.contains(&"0".to_string()), "answer: {}", ok.body());
    assert!(pts.contains(&"101".to_string()), "answer: {}", ok.body());
    assert!(ok.body().contains("telephone-event/8000"), "{}", ok.body());
    assert!(ok.body().contains("a=rtpmap:0 PCMU/8000"), "{}", ok.body());
    assert!(ok.body().contains("c=IN IP4 127.0.0.1"), "{}", ok.body());
    assert!(ok.header("Contact").is_some(), "{}", ok.text);
    ua.ack(&call, "");
    // A BYE naming another dialog (wrong To tag) is refused and does not end this call (RFC 3261 §12.2.2).
    let b = ua.branch();
    call.cseq += 1;
    send_request(
        &mut ua,
        &call,
        "BYE",
        call.cseq,
        &b,
        Some("not-our-tag"),
        "",
        "",
    );
    expect_final(&mut ua, "BYE", 481).assert_rsip_parses();
    let bye = bye_ok(&mut ua, &mut call);
    bye.assert_rsip_parses();
    assert_eq!(bye.to_tag().as_deref(), Some(call.to_tag.as_str()));
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
    assert_eq!(cdr["final_status"], 200, "{cdr}");
    assert_eq!(cdr["dialed"], "08000000001", "{cdr}");
}

fn retransmitted_invite_is_one_call(tr: Tr) {
    let server = start(&[]);
    let mut ua = ua(&server, tr);
    let rtp = rtp_socket();
    let mut call = new_call("08000000001");
    let branch = ua.branch();
    let sdp = pcmu_offer(port_of(&rtp), "");
    for _ in 0..3 {
        send_invite(&mut ua, &call, &branch, "", &sdp);
    }
    let ok = expect_final(&mut ua, "INVITE", 200);
    call.to_tag = ok.to_tag().expect("to-tag");
    // Whatever else comes back for the INVITE is a copy of the same answer: same dialog.
    for msg in collect(&mut ua, Duration::from_millis(700)) {
        if let Some(code) = msg.code() {
            assert!(code == 100 || code == 200, "{}", msg.text);
            if code == 200 {
                assert_eq!(msg.to_tag(), Some(call.to_tag.clone()), "{}", msg.text);
            }
        }
    }
    ua.ack(&call, "");
    bye_ok(&mut ua, &mut call);
    let cdrs = server.wait_cdrs(1, WAIT);
    // A second call would have ended too by now (the BYE's 200 came after its INVITE): give any stray
    // CDR a moment by waiting for a log line that must not come.
    assert!(
        server
            .wait_log_count("call ended", 2, Duration::from_millis(500))
            .is_none(),
        "{}",
        server.log_text()
    );
    let cdrs_now = server.cdrs();
    assert_eq!(cdrs_now.len(), 1, "{cdrs_now:?}");
    assert_eq!(cdrs[0]["call_id"], call.call_id.as_str());
    assert_eq!(cdrs[0]["end_reason"], "caller-bye");
}

fn cancel_while_ringing(tr: Tr) {
    let server = start(&["--ring-ms", "5000"]);
    let mut ua = ua(&server, tr);
    let rtp = rtp_socket();
    let call = new_call("08000000001");
    let branch = ua.branch();
    let sent = Instant::now();
    send_invite(&mut ua, &call, &branch, "", &pcmu_offer(port_of(&rtp), ""));
    // Wait for 180 Ringing.
    let deadline = Instant::now() + WAIT;
    let ringing = loop {
        let msg = ua
            .recv(deadline.saturating_duration_since(Instant::now()))
            .expect("180 Ringing");
        msg.assert_rsip_parses();
        match msg.code() {
            Some(100) => continue,
            Some(180) => break msg,
            _ => panic!("before 180: {}", msg.text),
        }
    };
    // RFC 3261 §9.1: the CANCEL copies the INVITE's branch, Call-ID, From, To and CSeq number.
    send_request(&mut ua, &call, "CANCEL", 1, &branch, None, "", "");
    let mut got_cancel_ok = false;
    let mut got_487 = None;
    let deadline = Instant::now() + WAIT;
    while !(got_cancel_ok && got_487.is_some()) {
        let msg = ua
            .recv(deadline.saturating_duration_since(Instant::now()))
            .expect("200 to CANCEL and 487 to INVITE");
        msg.assert_rsip_parses();
        match (msg.code(), cseq_method(&msg).as_str()) {
            (Some(200), "CANCEL") => got_cancel_ok = true,
            (Some(487), "INVITE") => got_487 = Some(msg),
            (Some(c), "INVITE") if c < 200 => {}
            _ => panic!("unexpected after CANCEL: {}", msg.text),
        }
    }
    let r487 = got_487.expect("487");
    let tag = r487.to_tag();
    assert!(tag.is_some(), "{}", r487.text);
    assert_eq!(tag, ringing.to_tag(), "487 and 180 name the same dialog");
    // RFC 3261 §17.1.1.3: the ACK to a non-2xx uses the INVITE's branch.
    send_request(&mut ua, &call, "ACK", 1, &branch, tag.as_deref(), "", "");
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "cancel", "{cdr}");
    assert_eq!(cdr["final_status"], 487, "{cdr}");
    // Until well after the ring time would have ended, no 200 (and no 487 retransmission after the ACK
    // over UDP is fine only as a copy of the 487).
    let until = sent + Duration::from_millis(6000);
    for msg in collect(&mut ua, until.saturating_duration_since(Instant::now())) {
        assert_ne!(msg.code(), Some(200), "200 after CANCEL: {}", msg.text);
        assert!(
            msg.code() == Some(487) || msg.code().is_none_or(|c| c < 200),
            "{}",
            msg.text
        );
    }
}

fn no_ack_releases_the_call_with_bye(tr: Tr) {
    // 64·T1 = 3.2 s with T1 = 50 ms.
    let server = start(&["--t1-ms", "50"]);
    let mut ua = ua(&server, tr);
    let rtp = rtp_socket();
    let call = ua.invite("08000000001", &pcmu_offer(port_of(&rtp), ""));
    let ok = expect_final(&mut ua, "INVITE", 200);
    let tag = ok.to_tag().expect("to-tag");
    let started = Instant::now();
    let mut copies = 1;
    let deadline = Instant::now() + Duration::from_secs(15);
    let bye = loop {
        let msg = ua
            .recv(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|| panic!("no BYE after the unacknowledged 200 ({copies} copies)"));
        msg.assert_rsip_parses();
        if msg.method() == Some("BYE") {
            break msg;
        }
        if msg.code() == Some(200) && cseq_method(&msg) == "INVITE" {
            assert_eq!(msg.to_tag().as_deref(), Some(tag.as_str()));
            copies += 1;
        }
    };
    // The BYE comes once 64·T1 has run out, not earlier.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "BYE after {:?}",
        started.elapsed()
    );
    if matches!(tr, Tr::Udp) {
        // RFC 3261 §13.3.1.4: the 2xx is retransmitted (T1, 2T1, 4T1 … capped at T2) until the ACK.
        assert!(copies >= 5, "only {copies} copies of the 200");
    }
    assert_eq!(
        bye.header("Call-ID").as_deref(),
        Some(call.call_id.as_str())
    );
    assert!(
        bye.header("From").is_some_and(|f| f.contains(&tag)),
        "{}",
        bye.text
    );
    assert!(
        bye.header("To").is_some_and(|t| t.contains(&call.from_tag)),
        "{}",
        bye.text
    );
    // RFC 3261 §12.2.1.1: the remote target is our Contact.
    assert!(
        bye.first_line()
            .starts_with(&format!("BYE sip:caller@{} ", ua.local)),
        "{}",
        bye.text
    );
    ua.reply_ok(&bye);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "no-ack", "{cdr}");
}

#[test]
fn withheld_ack_200_is_retransmitted_until_ack() {
    let server = start(&["--t1-ms", "100"]);
    let mut ua = Ua::udp(server.addr);
    let rtp = rtp_socket();
    let mut call = ua.invite("08000000001", &pcmu_offer(port_of(&rtp), ""));
    let ok = expect_final(&mut ua, "INVITE", 200);
    call.to_tag = ok.to_tag().expect("to-tag");
    // RFC 3261 §13.3.1.4: copies at +T1, +3T1, +7T1, +15T1 … Wait for the first two copies (3 in all),
    // bounded; they must be byte-identical to the first 200.
    let mut copies = 1;
    let deadline = Instant::now() + WAIT;
    while copies < 3 {
        let m = ua
            .recv(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|| panic!("only {copies} copies of the 200 without an ACK"));
        assert_eq!(m.text, ok.text, "retransmission differs from the first 200");
        copies += 1;
    }
    // ACK right after the copy at +3T1: the next is due at +7T1, 4 T1 (400 ms) later, so no copy is in
    // flight; then 1.5 s (15 T1) with no copy shows the ACK stopped them.
    ua.ack(&call, "");
    let after = collect(&mut ua, Duration::from_millis(1500));
    let late: Vec<_> = after.iter().filter(|m| m.code() == Some(200)).collect();
    assert!(late.is_empty(), "200 after the ACK: {late:?}");
    bye_ok(&mut ua, &mut call);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
}

fn answers_to_odd_requests(tr: Tr) {
    let server = start(&[]);
    let mut ua = ua(&server, tr);
    let ghost = new_call("08000000001");

    let b = ua.branch();
    send_request(
        &mut ua,
        &ghost,
        "OPTIONS",
        1,
        &b,
        None,
        "Accept: application/sdp\n",
        "",
    );
    let ok = expect_final(&mut ua, "OPTIONS", 200);
    ok.assert_rsip_parses();
    let allow = ok.header("Allow").expect("Allow");
    for m in ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    assert!(
        ok.header("Accept")
            .is_some_and(|a| a.contains("application/sdp")),
        "{}",
        ok.text
    );

    let b = ua.branch();
    send_request(&mut ua, &ghost, "FOO", 2, &b, None, "", "");
    expect_final(&mut ua, "FOO", 501).assert_rsip_parses();

    // RFC 3261 §12.2.2: a request for a dialog we do not have.
    let b = ua.branch();
    send_request(&mut ua, &ghost, "BYE", 3, &b, Some("nosuchtag"), "", "");
    expect_final(&mut ua, "BYE", 481).assert_rsip_parses();
    let b = ua.branch();
    send_request(
        &mut ua,
        &ghost,
        "INFO",
        4,
        &b,
        Some("nosuchtag"),
        "Content-Type: application/dtmf-relay\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    expect_final(&mut ua, "INFO", 481).assert_rsip_parses();

    // RFC 3261 §9.2: a CANCEL matching no INVITE transaction.
    let b = ua.branch();
    send_request(&mut ua, &ghost, "CANCEL", 1, &b, None, "", "");
    expect_final(&mut ua, "CANCEL", 481).assert_rsip_parses();

    // RFC 3261 §8.2.2.3: an extension we do not support in Require.
    let call = new_call("08000000001");
    let b = ua.branch();
    let rtp = rtp_socket();
    send_invite(
        &mut ua,
        &call,
        &b,
        "Require: 100rel",
        &pcmu_offer(port_of(&rtp), ""),
    );
    let r420 = expect_final(&mut ua, "INVITE", 420);
    r420.assert_rsip_parses();
    assert!(
        r420.header("Unsupported")
            .is_some_and(|u| u.contains("100rel")),
        "{}",
        r420.text
    );
    send_request(
        &mut ua,
        &call,
        "ACK",
        1,
        &b,
        r420.to_tag().as_deref(),
        "",
        "",
    );

    // RFC 3261 §8.2.2 / §21.5.6: another SIP version.
    let (server_addr, local, t) = (ua.server, ua.local, ua.transport());
    ua.send(
        &format!(
            "OPTIONS sip:helpline@{server_addr} SIP/3.0
            Via: SIP/3.0/{t} {local};branch=z9hG4bK-v3-{}
            Max-Forwards: 70
            From: <sip:caller@{local}>;tag=v3
            To: <sip:helpline@{server_addr}>
            Call-ID: v3-{}@test
            CSeq: 1 OPTIONS",
            unique(),
            unique()
        ),
        "",
    );
    let r505 = ua.recv(WAIT).expect("505");
    assert_eq!(r505.code(), Some(505), "{}", r505.text);
}

fn malformed_requests_get_400_naming_the_header(tr: Tr) {
    let server = start(&[]);
    let rtp = rtp_socket();
    let sdp = pcmu_offer(port_of(&rtp), "");
    for (fault, header) in [("bad-cseq", "CSeq"), ("no-call-id", "Call-ID")] {
        // A fresh connection per message: a server may close a TCP connection after garbage.
        let mut ua = ua(&server, tr);
        let (server_addr, local, t) = (ua.server, ua.local, ua.transport());
        let cseq = if fault == "bad-cseq" {
            "CSeq: one INVITE"
        } else {
            "CSeq: 1 INVITE"
        };
        let call_id = if fault == "no-call-id" {
            String::new()
        } else {
            format!("Call-ID: bad-{}@test", unique())
        };
        send_head(
            &mut ua,
            &format!(
                "INVITE sip:08000000001@{server_addr} SIP/2.0
                Via: SIP/2.0/{t} {local};branch=z9hG4bK-bad-{}
                Max-Forwards: 70
                From: <sip:caller@{local}>;tag=bad
                To: <sip:08000000001@{server_addr}>
                {call_id}
                {cseq}
                Contact: <sip:caller@{local}>
                Content-Type: application/sdp",
                unique()
            ),
            &sdp,
        );
        let reply = ua
            .recv(WAIT)
            .unwrap_or_else(|| panic!("no reply to {fault}"));
        assert_eq!(reply.code(), Some(400), "{fault}: {}", reply.text);
        let reason = reply
            .first_line()
            .get("SIP/2.0 400 ".len()..)
            .unwrap_or_default();
        assert!(reason.contains(header), "{fault}: reason `{reason}`");
    }
    // No CDR for either: place a real call, and it is the only line.
    let mut ua = ua(&server, tr);
    let (mut call, _) = establish(&mut ua, &pcmu_offer(port_of(&rtp), ""));
    bye_ok(&mut ua, &mut call);
    let cdrs = server.wait_cdrs(1, WAIT);
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["call_id"], call.call_id.as_str());
}

fn offer_pcma_only_is_answered_pcma(server: &Server, tr: Tr) {
    let mut ua = ua(server, tr);
    let rtp = rtp_socket();
    let sdp = sdp_offer(
        port_of(&rtp),
        "8 101",
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
    );
    let (mut call, ok) = establish(&mut ua, &sdp);
    let pts = payloads(&ok.m_line());
    assert_eq!(pts.first().map(String::as_str), Some("8"), "{}", ok.body());
    assert!(!pts.contains(&"0".to_string()), "{}", ok.body());
    assert!(ok.body().contains("PCMA/8000"), "{}", ok.body());
    // The prompt really is sent as PCMA.
    rtp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 2048];
    let (n, _) = rtp.recv_from(&mut buf).expect("RTP from helpline");
    let pkt = common::parse_rtp(Instant::now(), &buf[..n]).expect("RTP");
    assert_eq!(pkt.pt, 8);
    bye_ok(&mut ua, &mut call);
}

fn offer_g729_only_is_refused_488(server: &Server, tr: Tr) {
    let mut ua = ua(server, tr);
    let call = new_call("08000000001");
    let b = ua.branch();
    let sdp = sdp_offer(40000, "18", "a=rtpmap:18 G729/8000\r\n");
    send_invite(&mut ua, &call, &b, "", &sdp);
    let r = expect_final(&mut ua, "INVITE", 488);
    r.assert_rsip_parses();
    send_request(&mut ua, &call, "ACK", 1, &b, r.to_tag().as_deref(), "", "");
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["final_status"], 488, "{cdr}");
}

fn invite_without_sdp_gets_our_offer(server: &Server, tr: Tr) {
    let mut ua = ua(server, tr);
    let rtp = rtp_socket();
    let mut call = ua.invite("08000000001", "");
    let ok = expect_final(&mut ua, "INVITE", 200);
    call.to_tag = ok.to_tag().expect("to-tag");
    let pts = payloads(&ok.m_line());
    assert!(pts.contains(&"0".to_string()), "our offer: {}", ok.body());
    assert!(ok.body().contains("telephone-event/8000"), "{}", ok.body());
    // RFC 3264 §5: our answer in the ACK names where we want the media.
    ua.ack(&call, &pcmu_offer(port_of(&rtp), ""));
    rtp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 2048];
    let (n, from) = rtp
        .recv_from(&mut buf)
        .expect("RTP at the port the ACK named");
    let pkt = common::parse_rtp(Instant::now(), &buf[..n]).expect("RTP");
    assert_eq!(pkt.pt, 0);
    assert_eq!(from.port(), ok.sdp_audio_port().expect("our port"));
    bye_ok(&mut ua, &mut call);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
}

fn hold_unhold_and_unusable_reinvite(server: &Server, tr: Tr) {
    let mut ua = ua(server, tr);
    let rtp = rtp_socket();
    let port = port_of(&rtp);
    let (mut call, _) = establish(&mut ua, &pcmu_offer(port, ""));
    let contact = format!(
        "Contact: <sip:caller@{}>\nContent-Type: application/sdp\n",
        ua.local
    );

    // The welcome prompt is flowing before the hold.
    rtp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 2048];
    rtp.recv_from(&mut buf).expect("prompt RTP before the hold");

    // Hold: we send only, so helpline must only receive (RFC 3264 §8.4).
    let reinvite = |ua: &mut Ua, call: &mut TestCall, sdp: &str, code: u16| -> Msg {
        call.cseq += 1;
        let b = ua.branch();
        send_request(
            ua,
            call,
            "INVITE",
            call.cseq,
            &b,
            Some(&call.to_tag.clone()),
            &contact,
            sdp,
        );
        let r = expect_final(ua, "INVITE", code);
        r.assert_rsip_parses();
        // 2xx: ACK in a new transaction; non-2xx: ACK in the INVITE's (RFC 3261 §17.1.1.3).
        let ack_branch = if code == 200 { ua.branch() } else { b };
        send_request(
            ua,
            call,
            "ACK",
            call.cseq,
            &ack_branch,
            Some(&call.to_tag.clone()),
            "",
            "",
        );
        r
    };
    let held = reinvite(&mut ua, &mut call, &pcmu_offer(port, "a=sendonly\r\n"), 200);
    assert!(held.body().contains("a=recvonly"), "{}", held.body());
    // recvonly: helpline must not send RTP to the held caller (RFC 3264 §6.1), although the welcome prompt
    // (several seconds) is still playing. Packets already in flight are drained first.
    rtp.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut seen_before = 0;
    while rtp.recv_from(&mut buf).is_ok() && seen_before < 1000 {
        seen_before += 1;
    }
    let quiet_from = Instant::now();
    let mut on_hold = 0;
    while quiet_from.elapsed() < Duration::from_millis(800) {
        if rtp.recv_from(&mut buf).is_ok() {
            on_hold += 1;
        }
    }
    assert_eq!(on_hold, 0, "RTP packets sent to a caller on hold");
    let resumed = reinvite(&mut ua, &mut call, &pcmu_offer(port, "a=sendrecv\r\n"), 200);
    assert!(
        !resumed.body().contains("a=recvonly") && !resumed.body().contains("a=inactive"),
        "{}",
        resumed.body()
    );
    assert!(
        resumed.body().contains("a=sendrecv") || !resumed.body().contains("a=sendonly"),
        "{}",
        resumed.body()
    );
    // Off hold, the prompt audio flows again (the rest of the 4.9 s welcome, or the no-input prompt).
    rtp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    rtp.recv_from(&mut buf).expect("RTP again after the unhold");
    // RFC 3261 §14.2: an unusable offer is refused 488 and the session goes on unchanged.
    reinvite(
        &mut ua,
        &mut call,
        &sdp_offer(port, "18", "a=rtpmap:18 G729/8000\r\n"),
        488,
    );
    bye_ok(&mut ua, &mut call);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
    assert_eq!(cdr["final_status"], 200, "{cdr}");
}

// --- TCP specifics ------------------------------------------------------------------------------------------

fn options_text(ua: &Ua, tag: &str) -> String {
    let (server, local) = (ua.server, ua.local);
    format!(
        "OPTIONS sip:helpline@{server} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-{tag}-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{local}>;tag={tag}\r\n\
         To: <sip:helpline@{server}>\r\n\
         Call-ID: {tag}-{}@test\r\n\
         CSeq: 7 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        unique(),
        unique()
    )
}

#[test]
fn tcp_pipelined_requests_are_both_answered() {
    let server = start(&[]);
    let mut ua = Ua::tcp(server.addr);
    let both = format!(
        "{}{}",
        options_text(&ua, "first"),
        options_text(&ua, "second")
    );
    ua.send_raw(both.as_bytes());
    let mut tags = Vec::new();
    for _ in 0..2 {
        let r = ua.recv(WAIT).expect("response on the same connection");
        r.assert_rsip_parses();
        assert_eq!(r.code(), Some(200), "{}", r.text);
        tags.push(r.header("From").unwrap_or_default());
    }
    assert!(tags.iter().any(|f| f.contains("tag=first")), "{tags:?}");
    assert!(tags.iter().any(|f| f.contains("tag=second")), "{tags:?}");
}

#[test]
fn tcp_request_split_in_three_writes_is_answered_once() {
    let server = start(&[]);
    let mut ua = Ua::tcp(server.addr);
    let text = options_text(&ua, "split");
    let bytes = text.as_bytes();
    let (a, rest) = bytes.split_at(20);
    let (b, c) = rest.split_at(rest.len() - 10);
    for part in [a, b, c] {
        ua.send_raw(part);
        // A pause so the parts arrive as separate reads (not to wait for anything).
        std::thread::sleep(Duration::from_millis(40));
    }
    let r = ua.recv(WAIT).expect("response");
    assert_eq!(r.code(), Some(200), "{}", r.text);
    assert!(r.header("From").is_some_and(|f| f.contains("tag=split")));
    let more = collect(&mut ua, Duration::from_millis(700));
    assert!(more.is_empty(), "answered more than once: {more:?}");
}

// --- IPv6 -------------------------------------------------------------------------------------------------

#[test]
fn ipv6_call_over_udp() {
    assert!(
        common::has_ipv6_loopback(),
        "this machine has no IPv6 loopback ::1: scripts/test enables it"
    );
    let server = Server::start_on(
        "[::1]:0",
        &root().join("tests/data/menus/first-flow"),
        &["--no-watch"],
    );
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    let mut ua = Ua::udp6(server.addr).expect("[::1] socket");
    let rtp = UdpSocket::bind("[::1]:0").expect("rtp6");
    let sdp = format!(
        "v=0\r\no=test 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        port_of(&rtp)
    );
    let mut call = ua.invite("08000000001", &sdp);
    let ok = expect_final(&mut ua, "INVITE", 200);
    call.to_tag = ok.to_tag().expect("to-tag");
    assert!(ok.body().contains("c=IN IP6 ::1"), "{}", ok.body());
    assert!(
        ok.header("Contact").is_some_and(|c| c.contains("[::1]")),
        "{}",
        ok.text
    );
    assert!(
        ok.header("Via").is_some_and(|v| v.contains("[::1]")),
        "{}",
        ok.text
    );
    ua.ack(&call, "");
    rtp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 2048];
    let (n, from) = rtp.recv_from(&mut buf).expect("RTP over IPv6");
    assert!(from.is_ipv6(), "{from}");
    assert!(common::parse_rtp(Instant::now(), &buf[..n]).is_some());
    bye_ok(&mut ua, &mut call);
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
}

/// `serve --listen 0.0.0.0:…` (the README's command): a phone that dialed 127.0.0.2 (UDP) or 127.0.0.3
/// (TCP) gets a Contact and an SDP naming that address — not 127.0.0.1 — and over UDP the responses
/// come from it, so the phone's ACK, BYE and RTP reach the address it chose.
#[test]
fn wildcard_listener_names_the_address_each_phone_dialed() {
    let server = Server::start_on(
        "0.0.0.0:0",
        &root().join("tests/data/menus/first-flow"),
        &["--no-watch"],
    );
    let port = server.addr.port();
    let rtp = rtp_socket();
    for (ip, tr) in [("127.0.0.2", Tr::Udp), ("127.0.0.3", Tr::Tcp)] {
        let dialed: std::net::SocketAddr = format!("{ip}:{port}").parse().expect("addr");
        let mut ua = match tr {
            Tr::Udp => Ua::udp(dialed),
            Tr::Tcp => Ua::tcp(dialed),
        };
        let mut call = ua.invite("08000000001", &pcmu_offer(port_of(&rtp), ""));
        let ok = expect_final(&mut ua, "INVITE", 200);
        call.to_tag = ok.to_tag().expect("to-tag");
        let contact = ok.header("Contact").unwrap_or_default();
        assert!(
            contact.contains(&format!("@{ip}:{port}")),
            "{tr:?}: {contact}"
        );
        assert_eq!(
            contact.contains(";transport=tcp"),
            matches!(tr, Tr::Tcp),
            "{tr:?}: {contact}"
        );
        assert!(
            ok.body().contains(&format!("c=IN IP4 {ip}")),
            "{tr:?}: {}",
            ok.body()
        );
        ua.ack(&call, "");
        bye_ok(&mut ua, &mut call);
    }
    // Over UDP the responses leave from the address the phone sent to.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let options = format!(
        "OPTIONS sip:helpline@127.0.0.2:{port} SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-wild;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@{local}>;tag=w1\r\n\
To: <sip:helpline@127.0.0.2>\r\n\
Call-ID: wildcard-options\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n",
        local = sock.local_addr().expect("addr")
    );
    sock.send_to(options.as_bytes(), ("127.0.0.2", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, from) = sock.recv_from(&mut buf).expect("a reply to OPTIONS");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(from.to_string(), format!("127.0.0.2:{port}"));
}

// --- graceful shutdown ------------------------------------------------------------------------------------

#[test]
fn sigterm_refuses_new_calls_and_lets_the_call_finish() {
    let mut server = start(&[]);
    let mut ua1 = Ua::udp(server.addr);
    let rtp = rtp_socket();
    let (mut call, _) = establish(&mut ua1, &pcmu_offer(port_of(&rtp), ""));
    server.signal("TERM");
    server
        .wait_log("refusing new calls, draining", WAIT)
        .unwrap_or_else(|| panic!("no drain log:\n{}", server.log_text()));
    let mut ua2 = Ua::udp(server.addr);
    let late = new_call("08000000001");
    let b = ua2.branch();
    send_invite(&mut ua2, &late, &b, "", &pcmu_offer(port_of(&rtp), ""));
    let r503 = expect_final(&mut ua2, "INVITE", 503);
    r503.assert_rsip_parses();
    assert!(
        r503.header("Retry-After")
            .is_some_and(|r| r.trim().parse::<u32>().is_ok_and(|s| s > 0)),
        "{}",
        r503.text
    );
    send_request(
        &mut ua2,
        &late,
        "ACK",
        1,
        &b,
        r503.to_tag().as_deref(),
        "",
        "",
    );
    // The call in progress still works.
    bye_ok(&mut ua1, &mut call);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server exits after its last call");
    assert_eq!(status.code(), Some(0));
    let cdrs = server.cdrs();
    assert_eq!(cdrs.len(), 2, "{cdrs:?}");
    let first = cdrs
        .iter()
        .find(|c| c["call_id"] == call.call_id.as_str())
        .expect("call");
    assert_eq!(first["end_reason"], "caller-bye");
    let refused = cdrs
        .iter()
        .find(|c| c["call_id"] == late.call_id.as_str())
        .expect("late");
    assert_eq!(refused["final_status"], 503);
}

#[test]
fn sigterm_with_short_drain_ends_calls_with_bye() {
    let mut server = start(&["--drain-secs", "1"]);
    let mut ua = Ua::udp(server.addr);
    let rtp = rtp_socket();
    let (call, _) = establish(&mut ua, &pcmu_offer(port_of(&rtp), ""));
    server.signal("TERM");
    let bye = ua.expect_request("BYE", WAIT);
    assert_eq!(
        bye.header("Call-ID").as_deref(),
        Some(call.call_id.as_str())
    );
    ua.reply_ok(&bye);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server exits after the drain");
    assert_eq!(status.code(), Some(0));
    let cdrs = server.cdrs();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!(cdrs[0]["end_reason"], "server-bye");
}

/// Bad input loses nothing: thousands of mangled copies of real SIP messages, sent from another socket
/// while a call is up, get at most a 400 each; the call stays healthy (its BYE is answered 200), the
/// server keeps running and the only CDR is the call's own.
#[test]
fn garbage_from_another_peer_does_not_disturb_a_live_call() {
    let server = start(&[]);
    let mut ua = ua(&server, Tr::Udp);
    let rtp = rtp_socket();
    let (mut call, _) = establish(&mut ua, &pcmu_offer(port_of(&rtp), ""));

    let corpus: Vec<Vec<u8>> = std::fs::read_dir(root().join("tests/data/sip"))
        .expect("corpus dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| std::fs::read(e.path()).expect("corpus file"))
        .collect();
    assert!(corpus.len() > 20);
    // Another peer: another address. (From the caller's own address the flood would get that address
    // banned by the per-source rate limit, the caller with it — as it should.)
    let attacker = UdpSocket::bind("127.0.0.2:0").expect("bind");
    // A small deterministic generator (xorshift): the same mutations on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3000 {
        let mut msg = corpus[i % corpus.len()].clone();
        for _ in 0..(1 + next() % 8) {
            if msg.is_empty() {
                break;
            }
            let at = (next() as usize) % msg.len();
            match next() % 4 {
                0 => msg[at] = next() as u8,
                1 => {
                    msg.truncate(at);
                }
                2 => msg.insert(at, b"\r\n:;<>\"%\0,"[(next() % 10) as usize]),
                _ => msg.retain(|_| next() % 64 != 0),
            }
        }
        if !msg.is_empty() {
            let _ = attacker.send_to(&msg, server.addr);
        }
    }
    // Whatever came back to the attacker were responses, never requests (no call was set up for it).
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = attacker.recv_from(&mut buf) {
        assert!(
            buf[..n].starts_with(b"SIP/2.0 "),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }

    let bye = bye_ok(&mut ua, &mut call);
    assert_eq!(bye.code(), Some(200));
    let cdr = server.cdr_for(&call.call_id, WAIT);
    assert_eq!(cdr["end_reason"], "caller-bye", "{cdr}");
    // Mutations that still parse as INVITEs may have opened calls of their own; none was a panic.
    assert!(
        !server.log_text().contains("panicked"),
        "the server panicked:\n{}",
        server.log_text()
    );
    let mut ua2 = Ua::udp(server.addr);
    let (mut call2, _) = establish(&mut ua2, &pcmu_offer(port_of(&rtp_socket()), ""));
    assert_eq!(
        bye_ok(&mut ua2, &mut call2).code(),
        Some(200),
        "the server still takes calls"
    );
}
