//! The caller's INVITE on the UAS side as a typestate (STYLE P5): an [`IncomingCall`] may ring any number
//! of times, then either answers (consumed, yielding the confirmed [`Dialog`]) or rejects (consumed), so a
//! second final response or an answer after a reject does not compile. It builds responses; it does not
//! send them, negotiate SDP or know about calls.
use crate::dialog::{Dialog, DialogState};
use crate::sip::message::{Request, Response};
use crate::sip::reply::{ACCEPT, ALLOW};
use crate::sip::{Reply, Tag};

/// An INVITE that opened a new dialog and has not had its final response yet.
#[derive(Debug)]
pub struct IncomingCall {
    invite: Request,
    local_tag: Tag,
    /// A provisional response with our tag went out: an early dialog exists (RFC 3261 §12.1).
    early: bool,
}

impl IncomingCall {
    /// Takes the INVITE and the tag our responses will carry (RFC 3261 §8.2.6.2: every response but
    /// 100 carries it).
    pub fn new(invite: Request, local_tag: Tag) -> IncomingCall {
        IncomingCall {
            invite,
            local_tag,
            early: false,
        }
    }

    /// The INVITE.
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Our tag.
    pub fn local_tag(&self) -> &Tag {
        &self.local_tag
    }

    /// `100 Trying` (no tag: RFC 3261 §8.2.6.1).
    pub fn trying(&self) -> Response {
        Reply::Trying.to_response(&self.invite, None)
    }

    /// `180 Ringing` with our tag and `contact`: from here an early dialog exists.
    pub fn ring(&mut self, contact: &str) -> Response {
        self.early = true;
        let mut ringing = Reply::Ringing.to_response(&self.invite, Some(self.local_tag.as_str()));
        ringing.headers.push("Contact", contact);
        ringing
    }

    /// Whether `request` belongs to the early dialog our 180 created (Call-ID and both tags, RFC 3261
    /// §12.2.2); always false before a 180 went out.
    pub fn in_early_dialog(&self, request: &Request) -> bool {
        self.early
            && request.call_id() == self.invite.call_id()
            && request.to().tag() == Some(self.local_tag.as_str())
            && request.from().tag() == self.invite.from().tag()
    }

    /// The `200 OK` carrying `sdp` (our answer, or our offer when the INVITE had none) and the confirmed
    /// dialog it creates (RFC 3261 §12.1.1).
    pub fn answer(self, contact: &str, sdp: String) -> (Dialog, Response) {
        let mut ok = Reply::Ok.to_response(&self.invite, Some(self.local_tag.as_str()));
        ok.headers.push("Contact", contact);
        add_capabilities(&mut ok);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = sdp.into_bytes();
        let mut dialog = Dialog::uas(&self.invite, &self.local_tag);
        dialog.state = DialogState::Confirmed;
        (dialog, ok)
    }

    /// The final non-2xx response (404, 480, 487, 488, 503 …), with our tag.
    pub fn reject(self, reply: &Reply) -> Response {
        debug_assert!(reply.code() >= 300, "reject takes a failure reply");
        reply.to_response(&self.invite, Some(self.local_tag.as_str()))
    }
}

/// Adds what helpline supports to a 200 to INVITE or OPTIONS (RFC 3261 §11.2).
pub fn add_capabilities(response: &mut Response) {
    response.headers.push("Allow", ALLOW);
    response.headers.push("Accept", ACCEPT);
    response.headers.push("Accept-Language", "en");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, SipMessage};

    const INVITE: &str = "INVITE sip:1@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1\r\n\
From: <sip:c@127.0.0.1>;tag=c1\r\n\
To: <sip:1@127.0.0.1>\r\n\
Call-ID: u1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:c@127.0.0.1:5092>\r\n\
Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn ring_opens_an_early_dialog_and_answer_confirms_it() {
        let mut call = IncomingCall::new(request(INVITE), Tag::from("srv"));
        let early_bye = request(
            &INVITE
                .replace("INVITE sip", "BYE sip")
                .replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
                .replace("To: <sip:1@127.0.0.1>", "To: <sip:1@127.0.0.1>;tag=srv"),
        );
        assert!(
            !call.in_early_dialog(&early_bye),
            "no early dialog before a 180"
        );
        let ringing = call.ring("<sip:helpline@127.0.0.1:5060>");
        assert_eq!(ringing.code, 180);
        assert_eq!(ringing.to().tag(), Some("srv"));
        assert!(call.in_early_dialog(&early_bye));
        let (dialog, ok) = call.answer("<sip:helpline@127.0.0.1:5060>", "v=0\r\n".into());
        assert_eq!(ok.code, 200);
        assert_eq!(ok.to().tag(), Some("srv"));
        assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
        assert_eq!(dialog.state, DialogState::Confirmed);
        assert!(dialog.matches(&early_bye));
    }

    #[test]
    fn reject_carries_our_tag() {
        let call = IncomingCall::new(request(INVITE), Tag::from("srv"));
        let r = call.reject(&Reply::RequestTerminated);
        assert_eq!(r.code, 487);
        assert_eq!(r.to().tag(), Some("srv"));
    }
}
