//! The UAS pre-checks of RFC 3261 §8.2 that every new request gets before the call layer looks at it:
//! the Request-URI scheme (416), `Require` (420) and, for INVITE, `Accept` (406). It only decides the
//! reply; it does not send it, and it does not do method inspection (405/501, which depends on the
//! dialog state the call layer holds), merged-request detection (482) or body processing (415/488).
//!
//! Order of the checks, as §8.2 orders them (the first failing check decides the reply):
//! 1. ACK passes everything: no response is ever sent to an ACK (§17.1.1.3, §17.2.1).
//! 2. Request-URI scheme (§8.2.2.1): a scheme helpline does not serve gets 416, for every other method.
//! 3. `Require` (§8.2.2.3): option tags helpline lacks get 420 listing them in `Unsupported`; not for
//!    CANCEL (§9.1: a CANCEL's Require would apply to the cancelled request, and §8.2.2.3 exempts it).
//! 4. `Accept` of an INVITE (§8.2.3, §21.4.7): helpline's answer always carries SDP (in the 200 or, for
//!    an INVITE without an offer, as the offer), so an `Accept` that excludes `application/sdp` gets 406.
//!
//! §8.2.1 (method inspection) precedes §8.2.2 in the RFC; the caller does it after these checks, so an
//! unknown method with an unknown URI scheme gets 416 rather than 501. Both are correct refusals.

use crate::sip::message::{Method, Request};
use crate::sip::Reply;

/// Request-URI schemes helpline serves (§8.2.2.1). `sips` is not among them until helpline speaks TLS:
/// accepting it would promise a secure path it cannot give (§19.1).
pub const SERVED_SCHEMES: &[&str] = &["sip", "tel"];

/// Option tags helpline supports (§19.2): none today. A tag listed here stops being a 420.
pub const SUPPORTED: &[&str] = &[];

/// Vets a new request before anything else handles it; `Err` is the reply to send instead of handling
/// it. See the module documentation for the order of the checks.
pub fn vet_request(request: &Request) -> Result<(), Reply> {
    // §17: an ACK is never answered, whatever is wrong with it.
    if request.method == Method::Ack {
        return Ok(());
    }
    check_scheme(request)?;
    // §8.2.2.3: the Require rule covers every request but CANCEL and ACK.
    if request.method != Method::Cancel {
        check_require(request)?;
    }
    if request.method == Method::Invite {
        check_accept(request)?;
    }
    Ok(())
}

/// §8.2.2.1: "If the Request-URI uses a scheme not supported by the UAS, it SHOULD reject the request
/// with a 416 (Unsupported URI Scheme) response." Schemes compare case-insensitively (§19.1.4).
fn check_scheme(request: &Request) -> Result<(), Reply> {
    let scheme = &request.uri.scheme;
    if SERVED_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Ok(());
    }
    Err(Reply::UnsupportedUriScheme {
        scheme: scheme.clone(),
    })
}

/// §8.2.2.3: every option tag of `Require` the UAS does not understand is listed in the 420's
/// `Unsupported`, in the request's order, once each. Tags compare case-insensitively (§7.3.1).
fn check_require(request: &Request) -> Result<(), Reply> {
    let mut unsupported: Vec<String> = Vec::new();
    for tag in request.require() {
        let known = SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag));
        if !known && !unsupported.iter().any(|u| u.eq_ignore_ascii_case(tag)) {
            unsupported.push(tag.to_owned());
        }
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(Reply::BadExtension { unsupported })
    }
}

/// §21.4.7: an INVITE whose `Accept` is present and does not admit `application/sdp` gets 406. No
/// `Accept` means `application/sdp` (§20.1); an empty one means nothing is acceptable (§20.1).
fn check_accept(request: &Request) -> Result<(), Reply> {
    if request.header("Accept").is_none() || accepts_sdp(&request.headers.get_all("Accept")) {
        Ok(())
    } else {
        Err(Reply::NotAcceptable)
    }
}

/// Whether a list of media ranges (§20.1, RFC 2616 §14.1 syntax) admits `application/sdp`: the most
/// specific matching range decides (`application/sdp` over `application/*` over `*/*`), and a range
/// with `q=0` excludes. Other parameters (`level=1`) do not restrict, and unreadable ranges are skipped.
fn accepts_sdp(ranges: &[&str]) -> bool {
    // (specificity, acceptable) of the most specific ranges matching so far.
    let mut best: Option<(u8, bool)> = None;
    for range in ranges {
        let mut parts = range.split(';');
        let Some((kind, sub)) = parts.next().and_then(|m| m.split_once('/')) else {
            continue;
        };
        let (kind, sub) = (kind.trim(), sub.trim());
        let application = kind.eq_ignore_ascii_case("application");
        let specificity = if application && sub.eq_ignore_ascii_case("sdp") {
            2
        } else if application && sub == "*" {
            1
        } else if kind == "*" && sub == "*" {
            0
        } else {
            continue;
        };
        let acceptable = !parts.any(is_zero_q);
        best = match best {
            Some((s, ok)) if s > specificity => Some((s, ok)),
            // Two ranges equally specific: either admitting it is enough.
            Some((s, ok)) if s == specificity => Some((s, ok || acceptable)),
            _ => Some((specificity, acceptable)),
        };
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Whether an accept parameter is `q=0` (`0`, `0.0`, `0.000`: qvalue of §25.1).
fn is_zero_q(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, SipMessage};

    fn parse(text: &str) -> Request {
        match parse_datagram(text.replace('\n', "\r\n").as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    /// A request with `method` to `uri`, plus `extra` header lines.
    fn request(method: &str, uri: &str, extra: &str) -> Request {
        parse(&format!(
            "{method} {uri} SIP/2.0\n\
Via: SIP/2.0/UDP 192.0.2.34;branch=z9hG4bKkdjuw\n\
From: <sip:caller@example.net>;tag=242etr\n\
To: <sip:ivr@example.com>\n\
Call-ID: vet-1\n\
CSeq: 8 {method}\n\
Max-Forwards: 70\n\
{extra}Content-Length: 0\n\n"
        ))
    }

    fn vet(method: &str, uri: &str, extra: &str) -> Result<(), Reply> {
        vet_request(&request(method, uri, extra))
    }

    fn scheme(s: &str) -> Result<(), Reply> {
        Err(Reply::UnsupportedUriScheme { scheme: s.into() })
    }

    #[test]
    fn sip_and_tel_are_served_in_any_case() {
        for uri in [
            "sip:ivr@example.com",
            "SIP:ivr@example.com",
            "tel:+15551234567",
            "Tel:+15551234567",
        ] {
            assert_eq!(vet("INVITE", uri, ""), Ok(()), "{uri}");
            assert_eq!(vet("OPTIONS", uri, ""), Ok(()), "{uri}");
        }
    }

    #[test]
    fn other_schemes_get_416_on_every_answered_method() {
        for uri in [
            "sips:ivr@example.com",
            "http://example.com/ivr?x=1",
            "im:alice@example.com",
            "urn:service:sos",
        ] {
            let s = uri.split(':').next().unwrap_or_default();
            for method in [
                "INVITE", "OPTIONS", "BYE", "INFO", "REGISTER", "FOO", "CANCEL",
            ] {
                assert_eq!(vet(method, uri, ""), scheme(s), "{method} {uri}");
            }
            assert_eq!(vet("ACK", uri, ""), Ok(()), "an ACK is never answered");
        }
    }

    #[test]
    fn rfc4475_unknown_and_atypical_schemes_get_416() {
        // §3.3.2 (unkscm) and §3.3.3 (novelsc): both parse, both are 416.
        let unkscm = parse(
            "OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0\n\
To: sip:j.user@example.com\n\
From: sip:caller@example.net;tag=384\n\
Max-Forwards: 3\n\
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n\
CSeq: 3923423 OPTIONS\n\
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw380234\n\
Content-Length: 0\n\n",
        );
        assert_eq!(vet_request(&unkscm), scheme("nobodyknowsthisscheme"));
        let novelsc = parse(
            "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n\
To: sip:njrusmc@example.com\n\
From: sip:lsdfhj@example.net;tag=384\n\
Max-Forwards: 3\n\
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\n\
CSeq: 3923423 OPTIONS\n\
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n\
Content-Length: 0\n\n",
        );
        assert_eq!(vet_request(&novelsc), scheme("soap.beep"));
        let reply = Reply::UnsupportedUriScheme {
            scheme: "soap.beep".into(),
        }
        .to_response(&novelsc, Some("t"));
        assert_eq!(
            (reply.code, reply.reason.as_str()),
            (416, "Unsupported URI Scheme")
        );
    }

    #[test]
    fn unknown_require_tags_get_420_listing_them() {
        let bad = |tags: &[&str]| {
            Err(Reply::BadExtension {
                unsupported: tags.iter().map(|t| t.to_string()).collect(),
            })
        };
        let uri = "sip:ivr@example.com";
        for method in ["OPTIONS", "INVITE", "BYE", "INFO", "REGISTER", "UPDATE"] {
            assert_eq!(
                vet(method, uri, "Require: nothing\n"),
                bad(&["nothing"]),
                "{method}"
            );
        }
        assert_eq!(
            vet(
                "INVITE",
                uri,
                "Require: 100rel, timer\nRequire: foo, TIMER\n"
            ),
            bad(&["100rel", "timer", "foo"]),
            "every line, in order, once each"
        );
        assert_eq!(vet("OPTIONS", uri, "Require: \n"), Ok(()), "no tags");
        assert_eq!(
            vet("OPTIONS", uri, "Proxy-Require: noProxiesSupportThis\n"),
            Ok(()),
            "Proxy-Require is for proxies (§20.29)"
        );
        assert_eq!(vet("OPTIONS", uri, "Supported: timer\n"), Ok(()));
    }

    #[test]
    fn rfc4475_bext01_gets_420_with_unsupported() {
        // §3.3.5: a UAS answers 420 listing `nothing`, and ignores Proxy-Require.
        let bext01 = parse(
            "OPTIONS sip:user@example.com SIP/2.0\n\
To: sip:j_user@example.com\n\
From: sip:caller@example.net;tag=242etr\n\
Max-Forwards: 6\n\
Call-ID: bext01.0ha0isndaksdj\n\
Require: nothing\n\
Proxy-Require: noProxiesSupportThis\n\
CSeq: 8 OPTIONS\n\
Via: SIP/2.0/UDP 192.0.2.34;branch=z9hG4bKkdjuw\n\
Content-Length: 0\n\n",
        );
        let reply = vet_request(&bext01).expect_err("420");
        let text = String::from_utf8(reply.to_response(&bext01, Some("t")).to_bytes())
            .expect("we print UTF-8");
        assert!(text.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{text}");
        assert!(text.contains("\r\nUnsupported: nothing\r\n"), "{text}");
    }

    #[test]
    fn cancel_and_ack_pass_the_require_rule() {
        let uri = "sip:ivr@example.com";
        assert_eq!(vet("CANCEL", uri, "Require: 100rel\n"), Ok(()));
        assert_eq!(vet("ACK", uri, "Require: 100rel\n"), Ok(()));
    }

    #[test]
    fn invite_accept_must_admit_sdp() {
        let uri = "sip:ivr@example.com";
        let accept = |value: &str| vet("INVITE", uri, &format!("Accept: {value}\n"));
        for ok in [
            "application/sdp",
            "APPLICATION/SDP",
            "application/sdp;level=1",
            "application/sdp ; q=0.5",
            "*/*",
            "application/*",
            "text/html, application/sdp",
            "application/*;q=0, application/sdp",
            "application/sdp;q=0, application/sdp",
            "broken, application/sdp",
        ] {
            assert_eq!(accept(ok), Ok(()), "{ok}");
        }
        for bad in [
            "text/nobodyKnowsThis",
            "application/dtmf-relay",
            "application/sdp;q=0",
            "application/sdp;Q=0.000",
            "*/*, application/sdp;q=0",
            "application/sdp;q=0, application/*",
            "application/*;q=0.0, */*",
            "text/*",
            "broken",
        ] {
            assert_eq!(accept(bad), Err(Reply::NotAcceptable), "{bad}");
        }
        assert_eq!(vet("INVITE", uri, ""), Ok(()), "no Accept means SDP");
        assert_eq!(
            vet("INVITE", uri, "Accept: \n"),
            Err(Reply::NotAcceptable),
            "an empty Accept accepts nothing (§20.1)"
        );
        assert_eq!(
            vet("OPTIONS", uri, "Accept: text/plain\n"),
            Ok(()),
            "only an INVITE's answer must carry SDP"
        );
    }

    #[test]
    fn rfc4475_sdp01_gets_406() {
        // §3.3.15: Accept offers only a type nobody knows.
        let sdp01 = request(
            "INVITE",
            "sip:user@example.com",
            "Accept: text/nobodyKnowsThis\nContent-Type: application/sdp\n",
        );
        assert_eq!(vet_request(&sdp01), Err(Reply::NotAcceptable));
    }

    #[test]
    fn checks_run_in_rfc_order() {
        let all = "Require: foo\nAccept: text/plain\n";
        assert_eq!(vet("INVITE", "im:a@b", all), scheme("im"));
        assert!(matches!(
            vet("INVITE", "sip:a@b", all),
            Err(Reply::BadExtension { .. })
        ));
        assert_eq!(
            vet("INVITE", "sip:a@b", "Accept: text/plain\n"),
            Err(Reply::NotAcceptable)
        );
    }
}
