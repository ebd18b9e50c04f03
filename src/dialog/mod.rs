//! SIP dialogs (RFC 3261 §12): identity, tags, route set, CSeq bookkeeping and in-dialog request building,
//! for the caller's leg (UAS, answered through [`uas::IncomingCall`]) and, later, agent legs (UAC). It does
//! not send anything or own transactions.
pub mod uas;

use crate::sip::message::{Method, NameAddr, Request, Response, Uri};
use crate::sip::{CallId, Reply, Tag};

/// Identifies a dialog: Call-ID plus both tags (RFC 3261 §12).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: CallId,
    /// Our tag.
    pub local_tag: Tag,
    /// The peer's tag (empty when an old RFC 2543 peer sent none).
    pub remote_tag: Tag,
}

/// Why an in-dialog request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The CSeq went backwards (RFC 3261 §12.2.2: answered 500).
    #[error("cseq {got} is lower than {last} already seen")]
    CseqOutOfOrder {
        /// The offending CSeq.
        got: u32,
        /// The last CSeq seen.
        last: u32,
    },
}

/// Where the dialog is (RFC 3261 §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// A provisional response with our tag was sent.
    Early,
    /// A 2xx was sent (or received).
    Confirmed,
    /// BYE sent or received.
    Terminated,
}

/// One dialog (sans-IO).
#[derive(Clone, Debug)]
pub struct Dialog {
    /// Identity.
    pub id: DialogId,
    /// Where the dialog is.
    pub state: DialogState,
    /// Our URI (the To of the INVITE we answered, with our tag).
    pub local: NameAddr,
    /// The peer's URI (the From of the INVITE).
    pub remote: NameAddr,
    /// The peer's Contact: the Request-URI of our in-dialog requests (RFC 3261 §12.1.1).
    pub remote_target: Uri,
    /// Record-Route values, in the order our requests must carry them as Route (RFC 3261 §12.1.1).
    pub route_set: Vec<String>,
    /// Our last CSeq number.
    pub local_cseq: u32,
    /// The peer's last CSeq number.
    pub remote_cseq: u32,
}

impl Dialog {
    /// The UAS side of a dialog created by an INVITE we answer with tag `local_tag` (RFC 3261 §12.1.1).
    pub fn uas(invite: &Request, local_tag: &Tag) -> Dialog {
        let mut local = invite.to().clone();
        local.set_param("tag", Some(local_tag.as_str()));
        let remote_target = invite
            .contacts()
            .first()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| invite.from().uri.clone());
        Dialog {
            id: DialogId {
                call_id: CallId::from(invite.call_id()),
                local_tag: local_tag.clone(),
                remote_tag: Tag::from(invite.from().tag().unwrap_or_default()),
            },
            state: DialogState::Early,
            local,
            remote: invite.from().clone(),
            remote_target,
            // UAS: the route set is the Record-Route list in order (RFC 3261 §12.1.1).
            route_set: invite
                .headers
                .get_all("Record-Route")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            // Our first request in the dialog gets a CSeq of our own choosing (§12.1.1); 1 is as good as any.
            local_cseq: 0,
            remote_cseq: invite.cseq().seq,
        }
    }

    /// The UAC side of a dialog: the INVITE we sent (to an agent) and the 2xx or 1xx-with-tag that came
    /// back (RFC 3261 §12.1.2). Ready for the agent legs of the queue stage.
    pub fn uac(invite: &Request, response: &Response) -> Dialog {
        let remote_target = response
            .contacts()
            .first()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| invite.uri.clone());
        Dialog {
            id: DialogId {
                call_id: CallId::from(invite.call_id()),
                local_tag: Tag::from(invite.from().tag().unwrap_or_default()),
                remote_tag: Tag::from(response.to().tag().unwrap_or_default()),
            },
            state: if response.code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local: invite.from().clone(),
            remote: response.to().clone(),
            remote_target,
            // UAC: the route set is the Record-Route list in reverse (RFC 3261 §12.1.2).
            route_set: response
                .headers
                .get_all("Record-Route")
                .into_iter()
                .rev()
                .map(str::to_owned)
                .collect(),
            local_cseq: invite.cseq().seq,
            // The peer has not sent a request yet: any CSeq it starts with is accepted (§12.2.2).
            remote_cseq: 0,
        }
    }

    /// Whether an incoming request belongs to this dialog (Call-ID and both tags, RFC 3261 §12.2.2).
    pub fn matches(&self, request: &Request) -> bool {
        self.id.call_id == *request.call_id()
            && request.to().tag() == Some(self.id.local_tag.as_str())
            && self.id.remote_tag == *request.from().tag().unwrap_or_default()
    }

    /// Checks an incoming in-dialog request's CSeq and remembers it (RFC 3261 §12.2.2). ACK and CANCEL
    /// carry the INVITE's number and are not checked.
    pub fn check_remote_cseq(&mut self, request: &Request) -> Result<(), DialogError> {
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        let got = request.cseq().seq;
        if got < self.remote_cseq {
            return Err(DialogError::CseqOutOfOrder {
                got,
                last: self.remote_cseq,
            });
        }
        self.remote_cseq = got;
        Ok(())
    }

    /// Our response to a request in this dialog, with our tag in To.
    pub fn respond(&self, request: &Request, reply: &Reply) -> Response {
        reply.to_response(request, Some(self.id.local_tag.as_str()))
    }

    /// The ACK of the 2xx to our INVITE numbered `invite_cseq` (RFC 3261 §13.2.2.4): built like any
    /// in-dialog request but with the INVITE's CSeq number, leaving the dialog's count alone.
    pub fn ack(&self, invite_cseq: u32, contact: &str, user_agent: &str) -> Request {
        let mut copy = self.clone();
        copy.local_cseq = invite_cseq.saturating_sub(1);
        copy.request(Method::Ack, contact, user_agent)
    }

    /// A new request inside the dialog (BYE, re-INVITE, INFO): Request-URI = remote target, Route = route
    /// set, From/To/Call-ID from the dialog, CSeq one above the last (RFC 3261 §12.2.1.1), `User-Agent`
    /// as given. The endpoint adds the Via.
    pub fn request(&mut self, method: Method, contact: &str, user_agent: &str) -> Request {
        self.local_cseq += 1;
        let mut request = Request::new(method.clone(), self.remote_target.clone());
        for route in &self.route_set {
            request.headers.push("Route", route);
        }
        request.headers.push("From", &self.local.to_string());
        request.headers.push("To", &self.remote.to_string());
        request.headers.push("Call-ID", self.id.call_id.as_str());
        request
            .headers
            .push("CSeq", &format!("{} {}", self.local_cseq, method.as_str()));
        request.headers.push("Max-Forwards", "70");
        request.headers.push("Contact", contact);
        request.headers.push("User-Agent", user_agent);
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, SipMessage};

    fn request(text: &str) -> Request {
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response(text: &str) -> Response {
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:08000289999@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
From: <sip:caller@127.0.0.1>;tag=c1\r\n\
To: <sip:08000289999@127.0.0.1>\r\n\
Call-ID: d1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:caller@127.0.0.1:5092>\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn uas_dialog_builds_in_dialog_requests() {
        let invite = request(INVITE);
        let mut d = Dialog::uas(&invite, &Tag::from("srv"));
        assert_eq!(d.id.remote_tag.as_str(), "c1");
        assert_eq!(d.route_set, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        let bye = d.request(Method::Bye, "<sip:helpline@127.0.0.1>", "helpline");
        let text = String::from_utf8_lossy(&bye.to_bytes()).into_owned();
        assert!(
            text.starts_with("BYE sip:caller@127.0.0.1:5092 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>"),
            "{text}"
        );
        assert!(
            text.contains("From: <sip:08000289999@127.0.0.1>;tag=srv"),
            "{text}"
        );
        assert!(text.contains("To: <sip:caller@127.0.0.1>;tag=c1"), "{text}");
        assert!(text.contains("CSeq: 1 BYE"), "{text}");
        let again = d.request(Method::Bye, "<sip:helpline@127.0.0.1>", "helpline");
        assert!(String::from_utf8_lossy(&again.to_bytes()).contains("CSeq: 2 BYE"));
    }

    #[test]
    fn uas_dialog_matches_and_orders_requests() {
        let invite = request(INVITE);
        let mut d = Dialog::uas(&invite, &Tag::from("srv"));
        let bye = request(
            &INVITE
                .replace("INVITE sip", "BYE sip")
                .replace("CSeq: 7 INVITE", "CSeq: 8 BYE")
                .replace(
                    "To: <sip:08000289999@127.0.0.1>",
                    "To: <sip:08000289999@127.0.0.1>;tag=srv",
                ),
        );
        assert!(d.matches(&bye));
        assert_eq!(d.check_remote_cseq(&bye), Ok(()));
        let stale = request(
            &INVITE
                .replace("INVITE sip", "INFO sip")
                .replace("CSeq: 7 INVITE", "CSeq: 6 INFO")
                .replace(
                    "To: <sip:08000289999@127.0.0.1>",
                    "To: <sip:08000289999@127.0.0.1>;tag=srv",
                ),
        );
        assert_eq!(
            d.check_remote_cseq(&stale),
            Err(DialogError::CseqOutOfOrder { got: 6, last: 8 })
        );
        let stranger = request(&INVITE.replace(
            "To: <sip:08000289999@127.0.0.1>",
            "To: <sip:x@127.0.0.1>;tag=other",
        ));
        assert!(!d.matches(&stranger));
    }

    #[test]
    fn uac_dialog_reverses_the_record_route() {
        let invite = request(INVITE);
        let ok = response(
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
From: <sip:caller@127.0.0.1>;tag=c1\r\n\
To: <sip:08000289999@127.0.0.1>;tag=agent\r\n\
Call-ID: d1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:agent1001@127.0.0.1:25110>\r\n\
Content-Length: 0\r\n\r\n",
        );
        let mut d = Dialog::uac(&invite, &ok);
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.id.local_tag.as_str(), "c1");
        assert_eq!(d.id.remote_tag.as_str(), "agent");
        assert_eq!(d.route_set, ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
        let bye = d.request(Method::Bye, "<sip:helpline@127.0.0.1>", "helpline");
        let text = String::from_utf8_lossy(&bye.to_bytes()).into_owned();
        assert!(
            text.starts_with("BYE sip:agent1001@127.0.0.1:25110 SIP/2.0"),
            "{text}"
        );
        assert!(text.contains("CSeq: 8 BYE"), "{text}");
    }
}
