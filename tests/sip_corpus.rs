//! The SIP corpus in `tests/data/sip/`: every file's expected outcome (from the fixture README), parse →
//! print → parse stability, `rsip` as an independent oracle on what we print, and a seeded mutation run
//! proving no input panics the codec or the stream framer.

use std::path::PathBuf;

use helpline::sip::message::{parse_datagram, Method, Request, Response, SipMessage};
use helpline::transport::framing::StreamFramer;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What the codec must do with a corpus file when it arrives as one UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Request(&'static str),
    Response(u16),
    /// Rejected; the fault must contain this text.
    Reject(&'static str),
}

const CORPUS: &[(&str, Expect)] = &[
    ("01_sipp_invite.sip", Expect::Request("INVITE")),
    ("02_compact.sip", Expect::Request("INVITE")),
    ("03_case.sip", Expect::Request("INVITE")),
    ("04_folded.sip", Expect::Request("INVITE")),
    ("05_multi_via.sip", Expect::Request("INVITE")),
    ("06_ipv6.sip", Expect::Request("INVITE")),
    ("07_ws_before_colon.sip", Expect::Request("INVITE")),
    ("08_cl_shorter_than_body.sip", Expect::Request("INVITE")),
    (
        "09_cl_larger_than_body.sip",
        Expect::Reject("Content-Length"),
    ),
    // As one datagram the second message is bytes beyond Content-Length (dropped); see the stream test.
    ("10_two_msgs_stream.sip", Expect::Request("INVITE")),
    ("11_lf_only.sip", Expect::Request("INVITE")),
    ("12_no_content_length.sip", Expect::Request("INVITE")),
    ("13_multi_contact.sip", Expect::Request("INVITE")),
    (
        "14_quoted_name_empty_subject.sip",
        Expect::Request("INVITE"),
    ),
    ("20_rfc4475_wsinv.sip", Expect::Request("INVITE")),
    // Parses; answering 501 is the endpoint's decision.
    ("21_unknown_method.sip", Expect::Request("FOO")),
    ("22_rfc4475_esc01.sip", Expect::Request("INVITE")),
    ("23_info_dtmf_relay.sip", Expect::Request("INFO")),
    ("24_register_digest.sip", Expect::Request("REGISTER")),
    ("25_resp_401.sip", Expect::Response(401)),
    ("26_resp_noreason.sip", Expect::Response(100)),
    ("27_resp_unreason.sip", Expect::Response(200)),
    ("28_ack.sip", Expect::Request("ACK")),
    ("29_bye.sip", Expect::Request("BYE")),
    ("30_cancel.sip", Expect::Request("CANCEL")),
    ("31_tel_uri.sip", Expect::Request("INVITE")),
    ("32_misc_headers.sip", Expect::Request("INVITE")),
    // RFC 4475 §3.1.1.2: a method built from every token character; valid, answered 501.
    (
        "33_rfc4475_intmeth.sip",
        Expect::Request("!interesting-Method0123456789_*+`.%indeed'~"),
    ),
];

/// rsip cannot parse IPv6 hosts; these files are skipped in the oracle check.
const IPV6_FILES: &[&str] = &["06_ipv6.sip"];

/// rsip rejects unknown methods (`invalid method: FOO`), so for this file only the response we would
/// send is checked, not the reprinted request (helpline never originates a FOO request).
const UNKNOWN_METHOD_FILES: &[&str] = &["21_unknown_method.sip", "33_rfc4475_intmeth.sip"];

/// rsip cannot parse `tel:` URIs (`number too large to fit in target type`: it reads the number as a
/// port); the reprinted request is skipped, the response is still checked.
const TEL_URI_FILES: &[&str] = &["31_tel_uri.sip"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn request(name: &str) -> Request {
    match parse_datagram(&read(name)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn response(name: &str) -> Response {
    match parse_datagram(&read(name)) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("{name}: expected a response, got {other:?}"),
    }
}

const SDP_129: &[u8] =
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[test]
fn the_table_covers_every_corpus_file() {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = CORPUS.iter().map(|(n, _)| *n).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn every_file_has_its_expected_outcome() {
    for (name, expect) in CORPUS {
        match (parse_datagram(&read(name)), expect) {
            (Ok(SipMessage::Request(r)), Expect::Request(m)) => {
                assert_eq!(r.method.as_str(), *m, "{name}")
            }
            (Ok(SipMessage::Response(r)), Expect::Response(c)) => assert_eq!(r.code, *c, "{name}"),
            (Err(e), Expect::Reject(fault)) => {
                assert!(e.fault.contains(fault), "{name}: fault {:?}", e.fault);
                assert!(
                    e.reply_400(None).is_some(),
                    "{name}: a 400 can be addressed"
                );
            }
            (got, _) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn parse_print_parse_is_stable() {
    for (name, expect) in CORPUS {
        let Ok(first) = parse_datagram(&read(name)) else {
            assert!(matches!(expect, Expect::Reject(_)), "{name}");
            continue;
        };
        let printed = first.to_bytes();
        let second =
            parse_datagram(&printed).unwrap_or_else(|e| panic!("{name}: reparse failed: {e}"));
        assert_eq!(second, first, "{name}");
        assert_eq!(second.to_bytes(), printed, "{name}: printing is idempotent");
    }
}

#[test]
fn rsip_parses_everything_we_print_for_ipv4() {
    for (name, expect) in CORPUS {
        if IPV6_FILES.contains(name) || matches!(expect, Expect::Reject(_)) {
            continue;
        }
        let msg = parse_datagram(&read(name)).expect("accepted file");
        let mut outputs = Vec::new();
        if !UNKNOWN_METHOD_FILES.contains(name) && !TEL_URI_FILES.contains(name) {
            outputs.push(msg.to_bytes());
        }
        if let SipMessage::Request(r) = &msg {
            // What we actually send back for it: a final response with our To tag.
            let mut resp = Response::for_request(r, 486, "Busy Here");
            resp.set_to_tag("ivr1");
            outputs.push(resp.to_bytes());
        }
        for printed in outputs {
            if let Err(e) = rsip::SipMessage::try_from(printed.as_slice()) {
                panic!(
                    "{name}: rsip rejects our output: {e}\n{}",
                    String::from_utf8_lossy(&printed)
                );
            }
        }
    }
}

#[test]
fn compact_case_and_whitespace_variants_equal_the_plain_invite() {
    let plain = request("01_sipp_invite.sip");
    for name in ["02_compact.sip", "03_case.sip", "07_ws_before_colon.sip"] {
        let r = request(name);
        assert_eq!(r.to_bytes(), plain.to_bytes(), "{name}");
    }
    // LF-only: same headers; the body keeps its bare LFs and runs to the datagram end (122 of the
    // announced 129 bytes, see parse.rs on LF-only senders).
    let lf = request("11_lf_only.sip");
    assert_eq!(
        lf.headers
            .iter()
            .filter(|(n, _)| *n != "Content-Length")
            .collect::<Vec<_>>(),
        plain
            .headers
            .iter()
            .filter(|(n, _)| *n != "Content-Length")
            .collect::<Vec<_>>()
    );
    assert_eq!(
        lf.body,
        String::from_utf8_lossy(SDP_129)
            .replace("\r\n", "\n")
            .as_bytes()
    );
}

#[test]
fn folded_values_are_unfolded() {
    let r = request("04_folded.sip");
    assert_eq!(r.header("Subject"), Some("Performance Test"));
    assert_eq!(r.via()[0].host, "127.0.0.1");
    assert_eq!(r.from().display_name.as_deref(), Some("sipp"));
    assert_eq!(r.from().tag(), Some("10607SIPpTag001"));
}

#[test]
fn multi_via_top_first_and_echoed_in_order() {
    let r = request("05_multi_via.sip");
    let branches: Vec<_> = r.via().iter().map(|v| v.branch().unwrap_or("")).collect();
    assert_eq!(branches, ["z9hG4bK-top", "z9hG4bK-mid", "z9hG4bK-bottom"]);
    assert_eq!(r.via()[1].received(), Some("192.0.2.7"));
    let resp = Response::for_request(&r, 200, "OK");
    let text = String::from_utf8(resp.to_bytes()).unwrap();
    let via_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Via:")).collect();
    assert_eq!(
        via_lines,
        [
            "Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-top, SIP/2.0/TCP proxy1.example.com;branch=z9hG4bK-mid;received=192.0.2.7",
            "Via: SIP/2.0/UDP 192.0.2.9:5060;rport;branch=z9hG4bK-bottom",
        ]
    );
}

#[test]
fn ipv6_hosts_keep_their_brackets() {
    let r = request("06_ipv6.sip");
    assert_eq!(
        (r.uri.host.as_str(), r.uri.port),
        ("[2001:db8::10]", Some(5060))
    );
    assert_eq!(
        (r.via()[0].host.as_str(), r.via()[0].port),
        ("[2001:db8::1]", Some(5070))
    );
    assert_eq!(r.contacts()[0].uri.host, "[2001:db8::1]");
    let text = String::from_utf8(r.to_bytes()).unwrap();
    assert!(text.starts_with("INVITE sip:ivr@[2001:db8::10]:5060 SIP/2.0\r\n"));
    assert!(text.contains("Via: SIP/2.0/UDP [2001:db8::1]:5070;rport;branch=z9hG4bK-v6\r\n"));
    assert!(text.contains("Contact: <sip:alice@[2001:db8::1]:5070;transport=udp>\r\n"));
}

#[test]
fn content_length_rules_over_udp() {
    let cut = request("08_cl_shorter_than_body.sip");
    assert_eq!(cut.body, SDP_129);
    let Err(e) = parse_datagram(&read("09_cl_larger_than_body.sip")) else {
        panic!("09 accepted")
    };
    assert_eq!(e.fault, "Content-Length larger than message");
    let reply = String::from_utf8(e.reply_400(None).expect("addressable")).unwrap();
    assert!(
        reply.starts_with("SIP/2.0 400 Content-Length larger than message\r\n"),
        "{reply}"
    );
    let to_end = request("12_no_content_length.sip");
    assert_eq!(to_end.body, SDP_129);
    assert!(String::from_utf8(to_end.to_bytes())
        .unwrap()
        .contains("Content-Length: 129\r\n"));
}

#[test]
fn two_messages_are_framed_from_one_tcp_read() {
    let mut framer = StreamFramer::new();
    framer.push(&read("10_two_msgs_stream.sip"));
    let mut cseqs = Vec::new();
    while let Some(frame) = framer.next_message().expect("framing") {
        match helpline::sip::message::parse_stream_message(&frame) {
            Ok(SipMessage::Request(r)) => cseqs.push(r.cseq().seq),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(cseqs, [1, 2]);
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn two_contacts_are_both_seen() {
    let r = request("13_multi_contact.sip");
    let c = r.contacts();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].display_name.as_deref(), Some("Alice, the 2nd"));
    assert_eq!(c[0].param("q"), Some(Some("0.7")));
    assert_eq!(c[1].uri.user.as_deref(), Some("b"));
    assert_eq!(c[1].param("expires"), Some(Some("60")));
}

#[test]
fn quoted_display_name_and_empty_subject() {
    let r = request("14_quoted_name_empty_subject.sip");
    assert_eq!(r.from().display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(r.header("Subject"), Some(""));
}

#[test]
fn rfc4475_whitespace_torture() {
    let r = request("20_rfc4475_wsinv.sip");
    assert_eq!(r.to().tag(), Some("1918181833n"));
    assert_eq!(r.from().tag(), Some("98asjd8"));
    assert_eq!(r.cseq().seq, 9);
    assert_eq!(r.max_forwards(), Some(68));
    let hosts: Vec<_> = r.via().iter().map(|v| v.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    );
    assert_eq!(r.via()[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(
        r.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.contacts()[0].param("q"), Some(Some("0.33")));
    assert_eq!(r.route()[0].uri.param("unknown-no-value"), Some(None));
}

#[test]
fn unknown_method_parses() {
    let r = request("21_unknown_method.sip");
    assert_eq!(r.method, Method::Other("FOO".into()));
    assert_eq!(r.cseq().method, Method::Other("FOO".into()));
}

#[test]
fn rfc4475_wide_range_of_valid_characters() {
    // §3.1.1.2: valid, so it must reach the UAS (which answers 501 to the unknown method), not get a 400.
    let r = request("33_rfc4475_intmeth.sip");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Other(method.into()));
    assert_eq!(r.cseq().method, Method::Other(method.into()));
    assert_eq!(r.cseq().seq, 139122385);
    assert_eq!(r.max_forwards(), Some(255));
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.to().display_name.as_deref(),
        Some("BEL:\x07 NUL:\x00 DEL:\x7f")
    );
    assert_eq!(r.from().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(r.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(r.via()[0].branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        r.header("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
}

#[test]
fn escapes_are_kept_verbatim_after_print() {
    let r = request("22_rfc4475_esc01.sip");
    assert_eq!(r.uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    let text = String::from_utf8(r.to_bytes()).unwrap();
    for verbatim in [
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n",
        "To: sip:%75se%72@example.com\r\n",
        "From: <sip:I%20have%20spaces@example.net>;tag=938\r\n",
        "Contact: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\n",
    ] {
        assert!(text.contains(verbatim), "missing {verbatim:?} in\n{text}");
    }
}

#[test]
fn info_register_and_responses() {
    let info = request("23_info_dtmf_relay.sip");
    assert_eq!(info.content_type(), Some("application/dtmf-relay"));
    assert_eq!(info.body, b"Signal=5\r\nDuration=160\r\n");
    let reg = request("24_register_digest.sip");
    assert_eq!(reg.contacts()[0].param("expires"), Some(Some("300")));
    assert!(reg
        .header("Authorization")
        .unwrap()
        .contains("response=\"28d794408590e82c933fbf9368ae1a94\""));
    assert_eq!(reg.headers.get_all("Allow").len(), 10);
    let r401 = response("25_resp_401.sip");
    assert_eq!(r401.via()[0].rport(), Some(Some(5060)));
    assert_eq!(r401.reason, "Unauthorized");
    let r100 = response("26_resp_noreason.sip");
    assert_eq!(r100.reason, "");
    let r200 = response("27_resp_unreason.sip");
    assert!(r200.reason.starts_with("= 2**3 * 5**2 "));
    assert_eq!(r200.body.len(), 154);
}

#[test]
fn ack_bye_cancel_tel_and_misc() {
    for (name, m) in [
        ("28_ack.sip", Method::Ack),
        ("29_bye.sip", Method::Bye),
        ("30_cancel.sip", Method::Cancel),
    ] {
        let r = request(name);
        assert_eq!((&r.method, &r.cseq().method), (&m, &m), "{name}");
    }
    let tel = request("31_tel_uri.sip");
    assert_eq!(
        (tel.uri.scheme.as_str(), tel.uri.user.as_deref()),
        ("tel", Some("+15551234567"))
    );
    assert_eq!(
        tel.to_bytes().split(|&b| b == b'\r').next(),
        Some(&b"INVITE tel:+15551234567 SIP/2.0"[..])
    );
    let misc = request("32_misc_headers.sip");
    assert_eq!(misc.record_route().len(), 2);
    assert_eq!(misc.supported(), ["timer", "100rel", "replaces"]);
    assert_eq!(
        misc.header("P-Asserted-Identity"),
        Some("\"Caller\" <sip:+15551234567@example.com;user=phone>")
    );
    assert_eq!(misc.header("session-expires"), Some("1800;refresher=uac"));
}

/// One random edit biased towards the bytes SIP parsers trip over.
fn mutate(rng: &mut SmallRng, bytes: &mut Vec<u8>) {
    const SPECIAL: &[&[u8]] = &[
        b":",
        b",",
        b";",
        b"<",
        b">",
        b"\"",
        b"\\",
        b"[",
        b"]",
        b"@",
        b" ",
        b"\t",
        b"\r\n",
        b"\n",
        b"\r\n ",
        b"=",
        b"/",
        b"%",
        b"\xff",
        b"\x00",
        b"999999999999",
        b"SIP/2.0",
        b"Content-Length: 5\r\n",
    ];
    let len = bytes.len();
    let at = if len == 0 { 0 } else { rng.gen_range(0..len) };
    match rng.gen_range(0..5) {
        0 if len > 0 => bytes[at] = rng.gen(),
        1 => {
            let s = SPECIAL[rng.gen_range(0..SPECIAL.len())];
            bytes.splice(at..at, s.iter().copied());
        }
        2 if len > 0 => {
            let end = (at + rng.gen_range(1..16)).min(len);
            bytes.drain(at..end);
        }
        3 if len > 0 => {
            let end = (at + rng.gen_range(1..32)).min(len);
            let chunk = bytes[at..end].to_vec();
            let to = rng.gen_range(0..=len);
            bytes.splice(to..to, chunk);
        }
        _ => bytes.truncate(at),
    }
}

#[test]
fn twenty_thousand_mutations_never_panic_and_stay_print_stable() {
    let files: Vec<Vec<u8>> = CORPUS.iter().map(|(n, _)| read(n)).collect();
    let mut rng = SmallRng::seed_from_u64(0x5151_2026);
    let mut accepted = 0;
    for i in 0..20_000 {
        let mut bytes = files[i % files.len()].clone();
        for _ in 0..rng.gen_range(1..4) {
            mutate(&mut rng, &mut bytes);
        }
        match parse_datagram(&bytes) {
            Ok(msg) => {
                accepted += 1;
                let printed = msg.to_bytes();
                let again = parse_datagram(&printed).unwrap_or_else(|e| {
                    panic!(
                        "mutation {i}: printed form rejected ({e}):\n{}",
                        String::from_utf8_lossy(&printed)
                    )
                });
                assert_eq!(again, msg, "mutation {i}");
            }
            Err(e) => {
                if let Some(reply) = e.reply_400(None) {
                    assert!(reply.starts_with(b"SIP/2.0 400 "), "mutation {i}");
                }
            }
        }
        let mut framer = StreamFramer::new();
        for chunk in bytes.chunks(97) {
            framer.push(chunk);
            while let Ok(Some(frame)) = framer.next_message() {
                let _ = helpline::sip::message::parse_stream_message(&frame);
            }
        }
    }
    // The mutations must leave enough valid messages for the stability half to mean something.
    assert!(accepted > 2_000, "only {accepted} mutated messages parsed");
}
