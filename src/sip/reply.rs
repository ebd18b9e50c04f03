//! Symbolic SIP replies: every response helpline sends to a request is one of these, so the status code,
//! its reason phrase and the extra headers the RFCs tie to it (Retry-After, Unsupported, Allow, Accept,
//! Warning) are decided in one place (nksip_reply.erl). It builds responses; it does not send them.
use crate::sip::message::{Request, Response};

/// Methods helpline answers (Allow header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";

/// Bodies helpline accepts (Accept header, RFC 3261 §20.1).
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// Bodies helpline reads in an INFO (DTMF only).
pub const INFO_ACCEPT: &str = "application/dtmf-relay, application/dtmf";

/// One reply to a request: the status, its reason and why it was chosen (logged, and for 4xx–6xx carried
/// in a `Warning` or the reason where the RFCs allow it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 100: the INVITE arrived; stop retransmitting (RFC 3261 §17.2.1).
    Trying,
    /// 180: ringing (the caller hears ringback).
    Ringing,
    /// 200.
    Ok,
    /// 400: the request is malformed; `why` names the fault.
    BadRequest {
        /// What is wrong, e.g. `Bad DTMF body: no Signal`.
        why: String,
    },
    /// 401: authenticate first; one `WWW-Authenticate` value per offered digest algorithm, in order of
    /// preference (RFC 3261 §22.1, RFC 8760 §2.4).
    Unauthorized {
        /// The challenge header values.
        challenges: Vec<String>,
    },
    /// 403: the credentials answered a live challenge but are wrong, or do not cover this request.
    Forbidden,
    /// 404: the dialed number belongs to no region.
    NotFound,
    /// 405: a method helpline knows but does not serve here; carries `Allow`.
    MethodNotAllowed,
    /// 406: the request's `Accept` excludes every body type the answer needs (RFC 3261 §21.4.7).
    NotAcceptable,
    /// 415: a body type helpline cannot read; carries `Accept` (RFC 3261 §21.4.13).
    UnsupportedMediaType,
    /// 415 to an INFO whose body is no DTMF we read (an Info Package we do not support, RFC 6086
    /// §4.2.2); its `Accept` lists only the DTMF types INFO may carry.
    UnsupportedInfoBody,
    /// 416: a Request-URI scheme helpline does not serve (RFC 3261 §8.2.2.1).
    UnsupportedUriScheme {
        /// The scheme, e.g. `sips`.
        scheme: String,
    },
    /// 420: the request requires extensions helpline lacks; carries `Unsupported` (RFC 3261 §8.2.2.3).
    BadExtension {
        /// The option tags not supported, in the order the request listed them.
        unsupported: Vec<String>,
    },
    /// 423: the registration is shorter than the registrar allows; carries `Min-Expires`
    /// (RFC 3261 §10.3 step 7).
    IntervalTooBrief {
        /// The shortest registration accepted, in seconds.
        min: u32,
    },
    /// 480: the call could not be completed now (helpline hung up before answering).
    TemporarilyUnavailable,
    /// 481: no dialog or transaction for this request (RFC 3261 §12.2.2).
    CallDoesNotExist,
    /// 482: a second INVITE with a known Call-ID and a new branch (RFC 3261 §8.2.2.2).
    LoopDetected,
    /// 483: Max-Forwards reached zero (RFC 3261 §16.3).
    TooManyHops,
    /// 486: busy.
    Busy,
    /// 487: the INVITE was cancelled (RFC 3261 §9.2).
    RequestTerminated,
    /// 488: nothing in the SDP offer is usable; `why` goes in a `Warning: 304` (RFC 3261 §20.43).
    NotAcceptableHere {
        /// Why, e.g. `no common codec`.
        why: String,
    },
    /// 500: a CSeq out of order (RFC 3261 §12.2.2) or a fault of ours; `why` is logged.
    ServerInternalError {
        /// Why.
        why: String,
    },
    /// 501: a method helpline does not know (RFC 3261 §21.5.2).
    NotImplemented,
    /// 503 with `Retry-After` (draining, out of RTP ports).
    ServiceUnavailable {
        /// Seconds the client should wait before retrying.
        retry_after: u32,
    },
    /// 603: declined.
    Decline,
}

impl Reply {
    /// The status code.
    pub fn code(&self) -> u16 {
        match self {
            Reply::Trying => 100,
            Reply::Ringing => 180,
            Reply::Ok => 200,
            Reply::BadRequest { .. } => 400,
            Reply::Unauthorized { .. } => 401,
            Reply::Forbidden => 403,
            Reply::NotFound => 404,
            Reply::MethodNotAllowed => 405,
            Reply::NotAcceptable => 406,
            Reply::UnsupportedMediaType | Reply::UnsupportedInfoBody => 415,
            Reply::UnsupportedUriScheme { .. } => 416,
            Reply::BadExtension { .. } => 420,
            Reply::IntervalTooBrief { .. } => 423,
            Reply::TemporarilyUnavailable => 480,
            Reply::CallDoesNotExist => 481,
            Reply::LoopDetected => 482,
            Reply::TooManyHops => 483,
            Reply::Busy => 486,
            Reply::RequestTerminated => 487,
            Reply::NotAcceptableHere { .. } => 488,
            Reply::ServerInternalError { .. } => 500,
            Reply::NotImplemented => 501,
            Reply::ServiceUnavailable { .. } => 503,
            Reply::Decline => 603,
        }
    }

    /// The reason phrase (RFC 3261 §21), or the fault for a 400 so the peer sees what broke.
    pub fn reason(&self) -> String {
        match self {
            Reply::BadRequest { why } => why.clone(),
            other => other.standard_reason().to_owned(),
        }
    }

    fn standard_reason(&self) -> &'static str {
        match self {
            Reply::Trying => "Trying",
            Reply::Ringing => "Ringing",
            Reply::Ok => "OK",
            Reply::BadRequest { .. } => "Bad Request",
            Reply::Unauthorized { .. } => "Unauthorized",
            Reply::Forbidden => "Forbidden",
            Reply::NotFound => "Not Found",
            Reply::MethodNotAllowed => "Method Not Allowed",
            Reply::NotAcceptable => "Not Acceptable",
            Reply::UnsupportedMediaType | Reply::UnsupportedInfoBody => "Unsupported Media Type",
            Reply::UnsupportedUriScheme { .. } => "Unsupported URI Scheme",
            Reply::BadExtension { .. } => "Bad Extension",
            Reply::IntervalTooBrief { .. } => "Interval Too Brief",
            Reply::TemporarilyUnavailable => "Temporarily Unavailable",
            Reply::CallDoesNotExist => "Call/Transaction Does Not Exist",
            Reply::LoopDetected => "Loop Detected",
            Reply::TooManyHops => "Too Many Hops",
            Reply::Busy => "Busy Here",
            Reply::RequestTerminated => "Request Terminated",
            Reply::NotAcceptableHere { .. } => "Not Acceptable Here",
            Reply::ServerInternalError { .. } => "Server Internal Error",
            Reply::NotImplemented => "Not Implemented",
            Reply::ServiceUnavailable { .. } => "Service Unavailable",
            Reply::Decline => "Decline",
        }
    }

    /// Why this reply was chosen, for the log; `None` where the code says it all.
    pub fn why(&self) -> Option<String> {
        match self {
            Reply::BadRequest { why }
            | Reply::NotAcceptableHere { why }
            | Reply::ServerInternalError { why } => Some(why.clone()),
            Reply::UnsupportedUriScheme { scheme } => Some(format!("scheme {scheme}")),
            Reply::BadExtension { unsupported } => Some(unsupported.join(", ")),
            _ => None,
        }
    }

    /// The response to `request`: status line, the copied headers of RFC 3261 §8.2.6.2, `to_tag` in To
    /// when given (a dialog-creating or in-dialog reply) and the headers this reply carries.
    pub fn to_response(&self, request: &Request, to_tag: Option<&str>) -> Response {
        let mut response = Response::for_request(request, self.code(), &self.reason());
        if let Some(tag) = to_tag {
            response.set_to_tag(tag);
        }
        match self {
            Reply::MethodNotAllowed => response.headers.push("Allow", ALLOW),
            Reply::UnsupportedMediaType | Reply::NotAcceptable => {
                response.headers.push("Accept", ACCEPT)
            }
            Reply::UnsupportedInfoBody => response.headers.push("Accept", INFO_ACCEPT),
            Reply::BadExtension { unsupported } => response
                .headers
                .push("Unsupported", &unsupported.join(", ")),
            Reply::NotAcceptableHere { why } => response.headers.push(
                "Warning",
                &format!("304 helpline \"{}\"", why.replace('"', "'")),
            ),
            Reply::ServiceUnavailable { retry_after } => response
                .headers
                .push("Retry-After", &retry_after.to_string()),
            Reply::Unauthorized { challenges } => {
                for c in challenges {
                    response.headers.push("WWW-Authenticate", c);
                }
            }
            Reply::IntervalTooBrief { min } => {
                response.headers.push("Min-Expires", &min.to_string())
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, SipMessage};

    fn invite() -> Request {
        let text = "INVITE sip:1@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
From: <sip:c@127.0.0.1>;tag=c1\r\n\
To: <sip:1@127.0.0.1>\r\n\
Call-ID: r1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn text(reply: Reply, tag: Option<&str>) -> String {
        String::from_utf8_lossy(&reply.to_response(&invite(), tag).to_bytes()).into_owned()
    }

    #[test]
    fn each_reply_carries_the_headers_its_rfc_ties_to_it() {
        let t = text(
            Reply::BadExtension {
                unsupported: vec!["100rel".into(), "foo".into()],
            },
            None,
        );
        assert!(t.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{t}");
        assert!(t.contains("Unsupported: 100rel, foo\r\n"), "{t}");
        let t = text(Reply::ServiceUnavailable { retry_after: 30 }, Some("srv"));
        assert!(t.contains("Retry-After: 30\r\n"), "{t}");
        assert!(t.contains("To: <sip:1@127.0.0.1>;tag=srv\r\n"), "{t}");
        let t = text(
            Reply::NotAcceptableHere {
                why: "no common \"codec\"".into(),
            },
            None,
        );
        assert!(
            t.contains("Warning: 304 helpline \"no common 'codec'\"\r\n"),
            "{t}"
        );
        let t = text(
            Reply::Unauthorized {
                challenges: vec!["Digest a=1".into(), "Digest b=2".into()],
            },
            Some("srv"),
        );
        assert!(t.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{t}");
        assert!(
            t.contains("WWW-Authenticate: Digest a=1\r\nWWW-Authenticate: Digest b=2\r\n"),
            "{t}"
        );
        let t = text(Reply::IntervalTooBrief { min: 60 }, Some("srv"));
        assert!(t.starts_with("SIP/2.0 423 Interval Too Brief\r\n"), "{t}");
        assert!(t.contains("Min-Expires: 60\r\n"), "{t}");
        assert!(text(Reply::Forbidden, None).starts_with("SIP/2.0 403 Forbidden\r\n"));
        assert!(text(Reply::MethodNotAllowed, None).contains(&format!("Allow: {ALLOW}\r\n")));
        assert!(text(Reply::NotAcceptable, None).contains(&format!("Accept: {ACCEPT}\r\n")));
        let t = text(Reply::UnsupportedInfoBody, Some("srv"));
        assert!(
            t.starts_with("SIP/2.0 415 Unsupported Media Type\r\n"),
            "{t}"
        );
        assert!(
            t.contains("Accept: application/dtmf-relay, application/dtmf\r\n"),
            "{t}"
        );
        let t = text(
            Reply::UnsupportedUriScheme {
                scheme: "sips".into(),
            },
            None,
        );
        assert!(
            t.starts_with("SIP/2.0 416 Unsupported URI Scheme\r\n"),
            "{t}"
        );
    }

    #[test]
    fn a_bad_request_names_its_fault_in_the_reason() {
        let t = text(
            Reply::BadRequest {
                why: "Bad DTMF body: no Signal".into(),
            },
            Some("srv"),
        );
        assert!(
            t.starts_with("SIP/2.0 400 Bad DTMF body: no Signal\r\n"),
            "{t}"
        );
    }
}
