//! Message-level parse/print tests; URI, Via and header-list pairs live next to their types.

use super::*;

const INVITE: &str = "INVITE sip:service@127.0.0.1:5091 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
From: sipp <sip:sipp@127.0.0.1:5092>;tag=a1\r\n\
To: service <sip:service@127.0.0.1:5091>\r\n\
Call-ID: 1-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 4\r\n\r\nbody";

fn req(s: &str) -> Request {
    match parse_datagram(s.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn fault_of(bytes: &[u8]) -> ParseError {
    match parse_datagram(bytes) {
        Err(e) => e,
        Ok(m) => panic!("expected a parse error, got {m:?}"),
    }
}

#[test]
fn typed_headers_after_parse() {
    let r = req(INVITE);
    assert_eq!(r.method, Method::Invite);
    assert!(r.is_sip2());
    assert_eq!(r.via()[0].branch(), Some("z9hG4bK-1"));
    assert_eq!(r.from().tag(), Some("a1"));
    assert_eq!(r.to().tag(), None);
    assert_eq!(r.call_id(), "1-1@127.0.0.1");
    assert_eq!(
        r.cseq(),
        &CSeq {
            seq: 1,
            method: Method::Invite
        }
    );
    assert_eq!(r.max_forwards(), Some(70));
    assert_eq!(r.body, b"body");
}

#[test]
fn compact_names_are_expanded_when_printed() {
    let s = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:c@d>;tag=1\r\n\
             t: <sip:a@b>\r\ni: cid\r\nCSeq: 7 OPTIONS\r\nk: timer\r\nl: 0\r\n\r\n";
    let r = req(s);
    assert_eq!(r.call_id(), "cid");
    assert_eq!(r.supported(), ["timer"]);
    let printed = String::from_utf8(r.to_bytes()).unwrap();
    assert_eq!(
        printed,
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\n\
         To: <sip:a@b>\r\nCall-ID: cid\r\nCSeq: 7 OPTIONS\r\nSupported: timer\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn folded_lines_are_unfolded() {
    let s = INVITE.replace(
        "Max-Forwards: 70\r\n",
        "Subject: a\r\n  b\r\n\t c\r\nMax-Forwards:\r\n 70\r\n",
    );
    let r = req(&s);
    assert_eq!(r.header("Subject"), Some("a b c"));
    assert_eq!(r.max_forwards(), Some(70));
}

#[test]
fn lf_only_and_leading_crlf_are_accepted() {
    let s = format!("\r\n{}", INVITE.replace("\r\n", "\n"));
    let r = req(&s);
    assert_eq!(r.body, b"body");
}

#[test]
fn each_fault_is_named() {
    let cases: Vec<(String, &str)> = vec![
        (
            INVITE.replace("Call-ID: 1-1@127.0.0.1\r\n", ""),
            "Missing Call-ID header",
        ),
        (
            INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE"),
            "Malformed CSeq header",
        ),
        (
            INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            "CSeq method does not match request method",
        ),
        (
            INVITE.replace("CSeq: 1 INVITE", "CSeq: 2147483648 INVITE"),
            "Malformed CSeq header",
        ),
        (
            INVITE.replace("sip:service@127.0.0.1:5091 SIP", "sip:serv ice SIP"),
            "Bad start line",
        ),
        (
            INVITE.replace(
                "sip:service@127.0.0.1:5091 SIP",
                "sip:service@127.0.0.1:x SIP",
            ),
            "Bad Request-URI",
        ),
        (
            INVITE.replace("INVITE sip:service@127.0.0.1:5091 SIP/2.0", "HELLO WORLD"),
            "Bad start line",
        ),
        (
            INVITE.replace("Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n", ""),
            "Missing Via header",
        ),
        (
            INVITE.replace("SIP/2.0/UDP 127.0.0.1:5092", "SIP/2.0/UDP"),
            "Malformed Via header",
        ),
        (
            INVITE.replace("From: sipp <", "From: sipp <<"),
            "Malformed From header",
        ),
        (
            INVITE.replace("To: service <sip:service@127.0.0.1:5091>\r\n", ""),
            "Missing To header",
        ),
        (
            INVITE.replace("To: service ", "Tx"),
            "Malformed header line",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "Max-Forwards: 300"),
            "Malformed Max-Forwards header",
        ),
        (
            INVITE.replace("Content-Length: 4", "Content-Length: 99999999999999999999"),
            "Malformed Content-Length header",
        ),
        (
            INVITE.replace("Content-Length: 4", "Content-Length: 5000"),
            "Content-Length larger than message",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "no colon here"),
            "Malformed header line",
        ),
        (
            INVITE.replace("\r\n\r\nbody", "\r\n"),
            "Missing empty line after headers",
        ),
        (String::new(), "Bad start line"),
    ];
    for (input, fault) in cases {
        let e = fault_of(input.as_bytes());
        assert_eq!(e.fault, fault, "for input {input:?}");
        assert_eq!(e.kind.to_string(), fault);
    }
    let mut bytes = INVITE.as_bytes().to_vec();
    bytes[INVITE.find("sipp <").unwrap()] = 0xff;
    assert_eq!(fault_of(&bytes).fault, "Invalid UTF-8 in header section");
    // A multi-byte character straddling byte 4 of the start line must not split a char.
    assert_eq!(
        fault_of("SIPé 200 OK\r\n\r\n".as_bytes()).fault,
        "Bad start line"
    );
    assert_eq!(
        fault_of("INVITE sip:a@b SIP/é\r\n\r\n".as_bytes()).fault,
        "Bad start line"
    );
}

#[test]
fn reply_400_names_the_fault_and_echoes_what_was_read() {
    let bad = INVITE.replace("Call-ID: 1-1@127.0.0.1\r\n", "");
    let reply = fault_of(bad.as_bytes()).reply_400(None).unwrap();
    // Without a Call-ID the reply is not a complete message for our own strict parser; check the text.
    let text = String::from_utf8(reply).unwrap();
    assert_eq!(
        text,
        "SIP/2.0 400 Missing Call-ID header\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
         From: sipp <sip:sipp@127.0.0.1:5092>;tag=a1\r\n\
         To: service <sip:service@127.0.0.1:5091>;tag=6c6b73fb8ad4fbc2\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let with_server = fault_of(bad.as_bytes())
        .reply_400(Some("helpline"))
        .unwrap();
    assert!(String::from_utf8(with_server)
        .unwrap()
        .ends_with("CSeq: 1 INVITE\r\nServer: helpline\r\nContent-Length: 0\r\n\r\n"));

    let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let e = fault_of(bad.as_bytes());
    let reply = e.reply_400(None).unwrap();
    let twice = e.reply_400(None).unwrap();
    assert_eq!(reply, twice, "the derived To tag is deterministic");
    let SipMessage::Response(resp) = parse_datagram(&reply).unwrap() else {
        panic!("not a response")
    };
    assert_eq!(
        (resp.code, resp.reason.as_str()),
        (400, "CSeq method does not match request method")
    );
    assert_eq!(resp.call_id(), "1-1@127.0.0.1");
    assert!(resp.to().tag().is_some());
    assert_eq!(resp.via()[0].branch(), Some("z9hG4bK-1"));
}

#[test]
fn reply_400_is_withheld_when_it_must_not_or_cannot_be_sent() {
    let ack = INVITE
        .replace("INVITE", "ACK")
        .replace("Call-ID: 1-1@127.0.0.1\r\n", "");
    assert_eq!(
        fault_of(ack.as_bytes()).reply_400(None),
        None,
        "never answer an ACK"
    );
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
    assert_eq!(
        fault_of(resp.as_bytes()).reply_400(None),
        None,
        "never answer a response"
    );
    let no_via = INVITE.replace("Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n", "");
    assert_eq!(
        fault_of(no_via.as_bytes()).reply_400(None),
        None,
        "nowhere to send it"
    );
    assert_eq!(fault_of(b"\x00garbage\r\n\r\n").reply_400(None), None);
}

#[test]
fn unknown_method_and_other_version() {
    let s = INVITE
        .replace("INVITE", "FOO")
        .replace("SIP/2.0\r\n", "SIP/3.0\r\n");
    let r = req(&s);
    assert_eq!(r.method, Method::Other("FOO".into()));
    assert_eq!(r.method.as_str(), "FOO");
    assert!(!r.is_sip2());
    assert_eq!(r.version, "SIP/3.0");
    assert!(String::from_utf8(r.to_bytes())
        .unwrap()
        .starts_with("FOO sip:service@127.0.0.1:5091 SIP/3.0\r\n"));
    assert_eq!(
        "invite".parse::<Method>().unwrap(),
        Method::Other("invite".into()),
        "case-sensitive"
    );
    for m in [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ] {
        let parsed = Method::from(m);
        assert!(!matches!(parsed, Method::Other(_)));
        assert_eq!(parsed.to_string(), m);
    }
}

#[test]
fn response_for_request_copies_addressing_headers() {
    let s = INVITE.replace(
        "Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n",
        "Via: SIP/2.0/UDP 127.0.0.1:5092;rport;branch=z9hG4bK-1, SIP/2.0/TCP p;branch=z9hG4bK-2\r\nv: SIP/2.0/UDP q;branch=z9hG4bK-3\r\n",
    );
    let mut r = req(&s);
    r.stamp_source("192.0.2.9:6000".parse().unwrap());
    let mut resp = Response::for_request(&r, 180, "Ringing");
    assert!(resp.set_to_tag("srv1"));
    assert!(!resp.set_to_tag("other"), "an existing tag is kept");
    let text = String::from_utf8(resp.to_bytes()).unwrap();
    assert_eq!(
        text,
        "SIP/2.0 180 Ringing\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5092;rport=6000;branch=z9hG4bK-1;received=192.0.2.9, SIP/2.0/TCP p;branch=z9hG4bK-2\r\n\
         Via: SIP/2.0/UDP q;branch=z9hG4bK-3\r\n\
         From: sipp <sip:sipp@127.0.0.1:5092>;tag=a1\r\n\
         To: \"service\" <sip:service@127.0.0.1:5091>;tag=srv1\r\n\
         Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let SipMessage::Response(back) = parse_datagram(text.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(back, resp);
    assert_eq!(back.via().len(), 3);
    assert_eq!(back.to().tag(), Some("srv1"));
}

#[test]
fn request_builder_prints_a_parseable_request() {
    let mut r = Request::new(
        Method::Invite,
        Uri::parse("sip:agent1001@192.0.2.50:5060").unwrap(),
    );
    // Typed headers can be pushed one at a time, before the other mandatory ones exist.
    r.push_header("Max-Forwards", "70").unwrap();
    assert_eq!(r.max_forwards(), Some(70));
    r.push_via_top(Via::new("UDP", "192.0.2.1", Some(5060), "z9hG4bK-out1"));
    r.set_from(NameAddr::parse("<sip:ivr@192.0.2.1>;tag=f1").unwrap());
    r.set_to(NameAddr::new(
        Uri::parse("sip:agent1001@192.0.2.50").unwrap(),
    ));
    r.set_call_id("leg2@192.0.2.1");
    r.set_cseq(CSeq {
        seq: 1,
        method: Method::Invite,
    });
    assert_eq!(
        r.push_header("CSeq", "2 BYE").unwrap_err().fault,
        "Malformed CSeq header",
        "a second CSeq"
    );
    r.push_contact(NameAddr::parse("<sip:ivr@192.0.2.1:5060>").unwrap());
    assert!(r.push_header("CSeq", "x").is_err());
    assert_eq!(r.cseq().seq, 1, "a rejected push changes nothing");
    assert_eq!(r.headers.get_all("CSeq"), ["1 INVITE"]);
    assert!(r.push_header("Via", "SIP/2.0/UDP").is_err());
    assert_eq!(r.headers.get_all("Via").len(), 1);
    r.headers.push("Content-Type", "application/sdp");
    r.body = b"v=0\r\n".to_vec();
    let again = req(&String::from_utf8(r.to_bytes()).unwrap());
    assert_eq!(again.to_bytes(), r.to_bytes());
    assert_eq!(
        (again.via(), again.from(), again.to()),
        (r.via(), r.from(), r.to())
    );
    assert_eq!((again.cseq(), again.contacts()), (r.cseq(), r.contacts()));
    assert_eq!(again.headers.get("Content-Length"), Some("5"));
}

#[test]
fn contact_star_and_routes() {
    let s = INVITE.replace("INVITE", "REGISTER").replace(
        "Max-Forwards: 70",
        "Contact: *\r\nRoute: <sip:p1;lr>, <sip:p2;lr>",
    );
    let r = req(&s);
    assert!(r.contact_is_star());
    assert_eq!(r.route().len(), 2);
    assert_eq!(r.route()[1].uri.host, "p2");
}

/// RFC 3261 §25.1 `token` characters other than alphanumerics, all of which may build a method.
const TOKEN_PUNCT: &str = "-.!%*_+`'~";

#[test]
fn a_method_built_from_any_token_characters_is_an_unknown_method() {
    // RFC 4475 §3.1.1.2 (intmeth) uses this method; it must reach the UAS, which answers 501.
    let method = format!("!interesting-Method0123456789{TOKEN_PUNCT}indeed");
    let s = INVITE.replace("INVITE", &method);
    let r = req(&s);
    assert_eq!(r.method, Method::Other(method.clone()));
    assert_eq!(r.cseq().method, Method::Other(method.clone()));
    for c in TOKEN_PUNCT.chars() {
        let m = format!("X{c}Y");
        let r = req(&INVITE.replace("INVITE", &m));
        assert_eq!(r.method.as_str(), m);
    }
}

#[test]
fn a_method_with_a_non_token_character_is_a_400_naming_the_method() {
    for bad in ["FO(O", "FO\"O", "FO/O", "FO:O", "FO@O", "FOé"] {
        let s = INVITE.replacen("INVITE", bad, 1);
        let e = fault_of(s.as_bytes());
        assert_eq!(e.fault, "Method is not a token", "for {bad:?}");
        let reply = String::from_utf8(e.reply_400(None).expect("a 400 can be addressed")).unwrap();
        assert!(
            reply.starts_with("SIP/2.0 400 Method is not a token\r\n"),
            "{reply}"
        );
    }
}

#[test]
fn escaped_control_characters_in_a_quoted_string_are_valid() {
    // RFC 3261 §25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F); RFC 4475 §3.1.1.2's To.
    let to = "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:service@127.0.0.1:5091>\r\n";
    let s = INVITE.replace("To: service <sip:service@127.0.0.1:5091>\r\n", to);
    let r = req(&s);
    assert_eq!(
        r.to().display_name.as_deref(),
        Some("BEL:\x07 NUL:\x00 DEL:\x7f")
    );
    // Printing the display name again escapes the controls, so a tagged To still parses.
    let mut resp = Response::for_request(&r, 200, "OK");
    resp.set_to_tag("t1");
    let again = parse_datagram(&resp.to_bytes()).expect("our response parses");
    let SipMessage::Response(again) = again else {
        panic!("not a response")
    };
    assert_eq!(again.to().display_name, r.to().display_name);
    // Unescaped, or outside a quoted string, a control character is still a fault.
    for bad in [
        "To: \"BEL:\x07\" <sip:service@127.0.0.1:5091>\r\n",
        "To: <sip:service@127.0.0.1:5091>;x=\\\x07\r\n",
        "To: \"a\" <sip:service@127.0.0.1:5091>\\\x07\r\n",
    ] {
        let s = INVITE.replace("To: service <sip:service@127.0.0.1:5091>\r\n", bad);
        assert_eq!(
            fault_of(s.as_bytes()).fault,
            "Malformed header line",
            "{bad:?}"
        );
    }
}
