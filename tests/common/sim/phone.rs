//! A scripted SIP phone for the simulated network: builds the requests a real caller sends (INVITE with
//! or without SDP, ACK, CANCEL, BYE, re-INVITE, INFO, OPTIONS) as wire text, reads everything helpline
//! sends with helpline's own parser, answers helpline's BYE, and — as an agent's phone — answers or
//! declines INVITEs. It is sans-IO: messages go out through [`ScriptedPhone::poll_outgoing`] and come in
//! through [`ScriptedPhone::handle_incoming`]; it never decides anything on its own except the replies a
//! UA must send (200 to BYE, re-ACK of a retransmitted 2xx, the configured answer to an INVITE).
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use helpline::sip::endpoint::Transport;
use helpline::sip::message::{parse_datagram, Method, Request, Response, SipMessage};

/// A message helpline sent to this phone, as the phone received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Simulated time of arrival.
    pub at: Instant,
    /// The parsed message.
    pub message: SipMessage,
    /// The wire text, for failure messages.
    pub text: String,
}

impl Received {
    /// The response, if this is one.
    pub fn response(&self) -> Option<&Response> {
        match &self.message {
            SipMessage::Response(r) => Some(r),
            SipMessage::Request(_) => None,
        }
    }

    /// The request, if this is one.
    pub fn request(&self) -> Option<&Request> {
        match &self.message {
            SipMessage::Request(r) => Some(r),
            SipMessage::Response(_) => None,
        }
    }
}

/// Which call of a phone (index into its calls, in the order they were placed or received).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallRef(pub usize);

/// One dialog as the phone sees it.
#[derive(Clone, Debug)]
pub struct PhoneCall {
    /// Call-ID.
    pub call_id: String,
    /// The phone's own tag (From of the calls it places, To of the calls it receives).
    pub local_tag: String,
    /// helpline's tag, once a response carried one (or the From tag of helpline's INVITE).
    pub remote_tag: Option<String>,
    /// The dialed user (Request-URI and To of the INVITE).
    pub user: String,
    /// The phone's last CSeq number in this dialog.
    pub cseq: u32,
    /// CSeq number of the INVITE that set the dialog up (the ACK reuses it, RFC 3261 §13.2.2.4).
    pub invite_cseq: u32,
    /// Branch of the INVITE (the CANCEL reuses it, RFC 3261 §9.1).
    pub invite_branch: String,
    /// Where in-dialog requests go: helpline's Contact, else its address.
    pub remote_target: String,
    /// The INVITE helpline sent, when helpline called this phone (agent leg).
    pub incoming: Option<Request>,
    /// The last ACK the phone sent, re-sent when the 2xx is retransmitted (RFC 3261 §13.2.2.4).
    last_ack: Option<Vec<u8>>,
}

/// What the phone does with INVITEs helpline sends it (an agent's phone).
#[derive(Clone, Debug, Default)]
pub enum AnswerMode {
    /// Leave them unanswered (the test answers by hand, or lets them time out).
    #[default]
    Ignore,
    /// 180 at once, then 200 with `sdp` after `ring`.
    Answer {
        /// How long it rings.
        ring: Duration,
        /// The SDP answer for the 200.
        sdp: String,
    },
    /// 486 Busy Here at once.
    Decline,
}

#[derive(Clone, Debug)]
enum Scheduled {
    /// Send the 200 to an INVITE helpline sent us.
    Answer { call: CallRef },
}

/// A scripted SIP UA on one address and transport.
pub struct ScriptedPhone {
    /// The phone's address (the source of what it sends).
    pub addr: SocketAddr,
    /// UDP, or one TCP connection.
    pub transport: Transport,
    /// helpline's address as this phone reaches it (what a Peer's `local` is).
    pub server: SocketAddr,
    /// The host part of the URIs the phone dials (`server` by default; a name to test that helpline
    /// does not take its own address from the Request-URI).
    pub dial_host: String,
    /// Every message helpline sent to this phone, in order.
    pub inbox: Vec<Received>,
    /// Every message the phone sent, in order (wire text), for failure messages.
    pub sent: Vec<(Instant, String)>,
    /// Calls placed or received.
    pub calls: Vec<PhoneCall>,
    /// Whether helpline's BYE is answered 200 (default yes).
    pub answer_bye: bool,
    /// What an INVITE from helpline gets.
    pub answer_invites: AnswerMode,
    outgoing: VecDeque<Vec<u8>>,
    scheduled: Vec<(Instant, Scheduled)>,
    /// The phone's notion of now: the time of the last input (sends are stamped with it).
    now: Instant,
    counter: u64,
}

/// A minimal PCMU + telephone-event SDP offer or answer from `addr` (`direction` e.g. `a=sendrecv`).
pub fn sdp(addr: SocketAddr, payloads: &str, direction: &str) -> String {
    let ip = addr.ip();
    let port = addr.port();
    let mut s = format!(
        "v=0\r\no=phone 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {payloads}\r\n"
    );
    for pt in payloads.split_whitespace() {
        match pt {
            "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "101" => s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            _ => {}
        }
    }
    if !direction.is_empty() {
        s.push_str(direction);
        s.push_str("\r\n");
    }
    s
}

impl ScriptedPhone {
    /// A phone at `addr` that reaches helpline at `server` over `transport`.
    pub fn new(addr: SocketAddr, transport: Transport, server: SocketAddr, now: Instant) -> Self {
        ScriptedPhone {
            addr,
            transport,
            server,
            dial_host: server.to_string(),
            inbox: Vec::new(),
            sent: Vec::new(),
            calls: Vec::new(),
            answer_bye: true,
            answer_invites: AnswerMode::Ignore,
            outgoing: VecDeque::new(),
            scheduled: Vec::new(),
            now,
            counter: 0,
        }
    }

    fn token(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}{}x{}", self.addr.port(), self.counter)
    }

    fn branch(&mut self) -> String {
        let t = self.token("");
        format!("z9hG4bK-ph{t}")
    }

    fn via_token(&self) -> &'static str {
        self.transport.via_token()
    }

    fn contact(&self) -> String {
        match self.transport {
            Transport::Udp => format!("<sip:phone@{}>", self.addr),
            Transport::Tcp(_) => format!("<sip:phone@{};transport=tcp>", self.addr),
        }
    }

    /// The call's state.
    pub fn call(&self, c: CallRef) -> &PhoneCall {
        &self.calls[c.0]
    }

    /// Queues a message given as header lines (`\n`-separated, no Content-Length) and a body.
    pub fn send_text(&mut self, head: &str, body: &str) {
        let mut text = String::new();
        for line in head.trim().lines() {
            let line = line.trim();
            if !line.is_empty() {
                text.push_str(line);
                text.push_str("\r\n");
            }
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.send_raw(text.into_bytes());
    }

    /// Queues raw bytes.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.sent
            .push((self.now, String::from_utf8_lossy(&bytes).into_owned()));
        self.outgoing.push_back(bytes);
    }

    /// The next message for the network.
    pub fn poll_outgoing(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// Sets the phone's clock (the net does this before every input).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    // ── requests the phone sends ──

    /// Places a call to `user`; `sdp` `None` sends an INVITE without a body (helpline then offers).
    pub fn invite(&mut self, user: &str, sdp: Option<&str>) -> CallRef {
        self.invite_with(user, sdp, "")
    }

    /// Places a call with extra header lines (e.g. `Require: foo`).
    pub fn invite_with(&mut self, user: &str, sdp: Option<&str>, extra: &str) -> CallRef {
        let call_id = self.token("call-");
        let call_id = format!("{call_id}@{}", self.addr.ip());
        let local_tag = self.token("tag");
        let branch = self.branch();
        let c = CallRef(self.calls.len());
        self.calls.push(PhoneCall {
            call_id,
            local_tag,
            remote_tag: None,
            user: user.to_owned(),
            cseq: 1,
            invite_cseq: 1,
            invite_branch: branch,
            remote_target: format!("sip:{user}@{}", self.dial_host),
            incoming: None,
            last_ack: None,
        });
        let head = self.invite_head(c, extra);
        self.send_text(&head, sdp.unwrap_or_default());
        c
    }

    fn invite_head(&self, c: CallRef, extra: &str) -> String {
        let call = &self.calls[c.0];
        let ct = if extra.contains("Content-Type") {
            ""
        } else {
            "Content-Type: application/sdp"
        };
        format!(
            "INVITE sip:{user}@{server} SIP/2.0
            Via: SIP/2.0/{tr} {addr};branch={branch};rport
            Max-Forwards: 70
            From: \"Caller\" <sip:caller@{addr}>;tag={tag}
            To: <sip:{user}@{server}>
            Call-ID: {call_id}
            CSeq: {cseq} INVITE
            Contact: {contact}
            {ct}
            {extra}",
            user = call.user,
            server = self.dial_host,
            tr = self.via_token(),
            addr = self.addr,
            branch = call.invite_branch,
            tag = call.local_tag,
            call_id = call.call_id,
            cseq = call.invite_cseq,
            contact = self.contact(),
        )
    }

    /// Sends the call's INVITE again after a `401`/`407` (same Call-ID and tags, next CSeq, new branch,
    /// RFC 3261 §22.2) with extra header lines (the `Authorization`).
    pub fn invite_again(&mut self, c: CallRef, sdp: Option<&str>, extra: &str) {
        let branch = self.branch();
        let call = &mut self.calls[c.0];
        call.invite_cseq += 1;
        call.cseq = call.invite_cseq;
        call.invite_branch = branch;
        call.remote_tag = None;
        let head = self.invite_head(c, extra);
        self.send_text(&head, sdp.unwrap_or_default());
    }

    /// Cancels the call's INVITE (same branch, CSeq number and headers, RFC 3261 §9.1).
    pub fn cancel(&mut self, c: CallRef) {
        let call = &self.calls[c.0];
        let head = format!(
            "CANCEL sip:{user}@{server} SIP/2.0
            Via: SIP/2.0/{tr} {addr};branch={branch};rport
            Max-Forwards: 70
            From: \"Caller\" <sip:caller@{addr}>;tag={tag}
            To: <sip:{user}@{server}>
            Call-ID: {call_id}
            CSeq: {cseq} CANCEL",
            user = call.user,
            server = self.dial_host,
            tr = self.via_token(),
            addr = self.addr,
            branch = call.invite_branch,
            tag = call.local_tag,
            call_id = call.call_id,
            cseq = call.invite_cseq,
        );
        self.send_text(&head, "");
    }

    /// Acknowledges the call's 2xx, with an SDP answer or without a body.
    pub fn ack(&mut self, c: CallRef, sdp: Option<&str>) {
        let tag = self.calls[c.0].remote_tag.clone().unwrap_or_default();
        self.ack_with_to_tag(c, &tag, sdp);
    }

    /// Acknowledges the call's 2xx with the given To tag (a wrong one is a different dialog).
    pub fn ack_with_to_tag(&mut self, c: CallRef, to_tag: &str, sdp: Option<&str>) {
        let branch = self.branch();
        let call = &self.calls[c.0];
        let ct = if sdp.is_some() {
            "Content-Type: application/sdp"
        } else {
            ""
        };
        let head = format!(
            "ACK {target} SIP/2.0
            Via: SIP/2.0/{tr} {addr};branch={branch};rport
            Max-Forwards: 70
            From: \"Caller\" <sip:caller@{addr}>;tag={tag}
            To: <sip:{user}@{server}>;tag={to_tag}
            Call-ID: {call_id}
            CSeq: {cseq} ACK
            {ct}",
            target = call.remote_target,
            tr = self.via_token(),
            addr = self.addr,
            tag = call.local_tag,
            user = call.user,
            server = self.dial_host,
            call_id = call.call_id,
            cseq = call.invite_cseq,
        );
        let before = self.outgoing.len();
        self.send_text(&head, sdp.unwrap_or_default());
        if to_tag == self.calls[c.0].remote_tag.as_deref().unwrap_or_default() {
            self.calls[c.0].last_ack = self.outgoing.get(before).cloned();
        }
    }

    /// Sends an in-dialog request; returns its CSeq number.
    pub fn in_dialog(&mut self, c: CallRef, method: &str, extra: &str, body: &str) -> u32 {
        let branch = self.branch();
        let contact = self.contact();
        let call = &mut self.calls[c.0];
        call.cseq += 1;
        let cseq = call.cseq;
        let call = &self.calls[c.0];
        let (from, to) = match &call.incoming {
            // helpline called us: it is From, we are To.
            Some(inv) => (
                format!("<sip:phone@{}>;tag={}", self.addr, call.local_tag),
                format!(
                    "{};tag={}",
                    inv.header("From")
                        .and_then(|f| f.split(';').next())
                        .unwrap_or_default(),
                    call.remote_tag.as_deref().unwrap_or_default()
                ),
            ),
            None => (
                format!(
                    "\"Caller\" <sip:caller@{}>;tag={}",
                    self.addr, call.local_tag
                ),
                format!(
                    "<sip:{}@{}>;tag={}",
                    call.user,
                    self.dial_host,
                    call.remote_tag.as_deref().unwrap_or_default()
                ),
            ),
        };
        let contact_line = if method == "INVITE" || method == "UPDATE" {
            format!("Contact: {contact}")
        } else {
            String::new()
        };
        let head = format!(
            "{method} {target} SIP/2.0
            Via: SIP/2.0/{tr} {addr};branch={branch};rport
            Max-Forwards: 70
            From: {from}
            To: {to}
            Call-ID: {call_id}
            CSeq: {cseq} {method}
            {contact_line}
            {extra}",
            target = call.remote_target,
            tr = self.via_token(),
            addr = self.addr,
            call_id = call.call_id,
        );
        self.send_text(&head, body);
        cseq
    }

    /// Hangs up with BYE.
    pub fn bye(&mut self, c: CallRef) -> u32 {
        self.in_dialog(c, "BYE", "", "")
    }

    /// Re-INVITE with an SDP offer, or without one (asking helpline to offer).
    pub fn reinvite(&mut self, c: CallRef, sdp: Option<&str>) -> u32 {
        match sdp {
            Some(s) => self.in_dialog(c, "INVITE", "Content-Type: application/sdp", s),
            None => self.in_dialog(c, "INVITE", "", ""),
        }
    }

    /// A key by SIP INFO (`application/dtmf-relay`, the Cisco body most phones send).
    pub fn info_dtmf(&mut self, c: CallRef, key: char) -> u32 {
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.in_dialog(c, "INFO", "Content-Type: application/dtmf-relay", &body)
    }

    /// OPTIONS outside any dialog (a keep-alive or capability query).
    pub fn options(&mut self) -> String {
        let call_id = self.token("opt-");
        let tag = self.token("tag");
        let branch = self.branch();
        let head = format!(
            "OPTIONS sip:helpline@{server} SIP/2.0
            Via: SIP/2.0/{tr} {addr};branch={branch};rport
            Max-Forwards: 70
            From: <sip:caller@{addr}>;tag={tag}
            To: <sip:helpline@{server}>
            Call-ID: {call_id}
            CSeq: 1 OPTIONS
            Accept: application/sdp",
            server = self.dial_host,
            tr = self.via_token(),
            addr = self.addr,
        );
        self.send_text(&head, "");
        call_id
    }

    // ── what the phone received ──

    /// Every response helpline sent for this call, in order (retransmissions included).
    pub fn responses(&self, c: CallRef) -> Vec<&Response> {
        let id = &self.calls[c.0].call_id;
        self.inbox
            .iter()
            .filter_map(Received::response)
            .filter(|r| r.call_id() == id)
            .collect()
    }

    /// The responses to requests with this method in this call.
    pub fn responses_to(&self, c: CallRef, method: &str) -> Vec<&Response> {
        self.responses(c)
            .into_iter()
            .filter(|r| r.cseq().method.as_str() == method)
            .collect()
    }

    /// The status codes helpline sent for this call, in order.
    pub fn codes(&self, c: CallRef) -> Vec<u16> {
        self.responses(c).iter().map(|r| r.code).collect()
    }

    /// The status codes of the responses to `method`, in order.
    pub fn codes_to(&self, c: CallRef, method: &str) -> Vec<u16> {
        self.responses_to(c, method)
            .iter()
            .map(|r| r.code)
            .collect()
    }

    /// The last response to the request with this CSeq method and number.
    pub fn response_to(&self, c: CallRef, method: &str, cseq: u32) -> Option<&Response> {
        self.responses(c)
            .into_iter()
            .rev()
            .find(|r| r.cseq().method.as_str() == method && r.cseq().seq == cseq)
    }

    /// The requests helpline sent in this call with this method, with their arrival times.
    pub fn requests(&self, c: CallRef, method: &str) -> Vec<(Instant, &Request)> {
        let id = &self.calls[c.0].call_id;
        self.inbox
            .iter()
            .filter_map(|m| m.request().map(|r| (m.at, r)))
            .filter(|(_, r)| r.call_id() == id && r.method.as_str() == method)
            .collect()
    }

    /// Arrival times of every response with this code for this call.
    pub fn times_of(&self, c: CallRef, code: u16) -> Vec<Instant> {
        let id = &self.calls[c.0].call_id;
        self.inbox
            .iter()
            .filter(|m| {
                m.response()
                    .is_some_and(|r| r.call_id() == id && r.code == code)
            })
            .map(|m| m.at)
            .collect()
    }

    /// The whole exchange as text, for assertion messages.
    pub fn transcript(&self) -> String {
        let mut lines: Vec<(Instant, String)> = self
            .sent
            .iter()
            .map(|(at, t)| (*at, format!("→ {}", t.lines().next().unwrap_or_default())))
            .collect();
        lines.extend(self.inbox.iter().map(|m| {
            (
                m.at,
                format!("← {}", m.text.lines().next().unwrap_or_default()),
            )
        }));
        lines.sort_by_key(|(at, _)| *at);
        let t0 = lines.first().map(|(at, _)| *at);
        lines
            .iter()
            .map(|(at, l)| {
                let ms = t0.map(|t| (*at - t).as_millis()).unwrap_or_default();
                format!("{ms:>7} ms {l}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    // ── inputs ──

    /// A message from helpline. Panics if helpline's own parser rejects it: helpline must emit valid SIP.
    pub fn handle_incoming(&mut self, now: Instant, bytes: &[u8]) {
        self.now = now;
        let text = String::from_utf8_lossy(bytes).into_owned();
        let message = match parse_datagram(bytes) {
            Ok(m) => m,
            Err(err) => panic!("helpline sent a message its own parser rejects ({err}):\n{text}"),
        };
        if let Err(err) = rsip::SipMessage::try_from(bytes) {
            panic!("helpline sent a message rsip rejects ({err:?}):\n{text}");
        }
        self.inbox.push(Received {
            at: now,
            message: message.clone(),
            text,
        });
        match message {
            SipMessage::Response(r) => self.on_response(&r),
            SipMessage::Request(r) => self.on_request(now, r),
        }
    }

    fn call_index(&self, call_id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.call_id == call_id)
    }

    fn on_response(&mut self, r: &Response) {
        let Some(i) = self.call_index(r.call_id()) else {
            return;
        };
        if r.cseq().method != Method::Invite || r.cseq().seq != self.calls[i].invite_cseq {
            return;
        }
        if r.code >= 300 {
            // RFC 3261 §17.1.1.3: the client transaction ACKs every non-2xx final, retransmissions too.
            let ack = self.non_2xx_ack(i, r);
            self.send_raw(ack);
            return;
        }
        let call = &mut self.calls[i];
        if let (None, Some(tag)) = (&call.remote_tag, r.to().tag()) {
            if r.code > 100 {
                call.remote_tag = Some(tag.to_owned());
            }
        }
        if r.code > 100 {
            if let Some(contact) = r.contacts().first() {
                call.remote_target = contact.uri.to_string();
            }
        }
        if (200..300).contains(&r.code) {
            // RFC 3261 §13.2.2.4: every retransmission of the 2xx gets the ACK again.
            if let Some(ack) = call.last_ack.clone() {
                self.send_raw(ack);
            }
        }
    }

    /// The ACK of a non-2xx final: the INVITE's Request-URI, Via branch and CSeq number, To from the
    /// response (RFC 3261 §17.1.1.3).
    fn non_2xx_ack(&self, i: usize, r: &Response) -> Vec<u8> {
        let call = &self.calls[i];
        let mut text = format!(
            "ACK sip:{user}@{host} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {addr};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Caller\" <sip:caller@{addr}>;tag={tag}\r\n",
            user = call.user,
            host = self.dial_host,
            tr = self.via_token(),
            addr = self.addr,
            branch = call.invite_branch,
            tag = call.local_tag,
        );
        text.push_str(&format!(
            "To: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            r.header("To").unwrap_or_default(),
            call.call_id,
            call.invite_cseq
        ));
        text.into_bytes()
    }

    fn on_request(&mut self, now: Instant, r: Request) {
        match r.method {
            Method::Ack => {}
            Method::Bye if !self.answer_bye => {}
            Method::Invite => self.on_invite(now, r),
            Method::Cancel => {
                self.reply(&r, 200, "OK", None, "");
                if let Some(i) = self.call_index(r.call_id()) {
                    if let Some(inv) = self.calls[i].incoming.clone() {
                        let tag = self.calls[i].local_tag.clone();
                        self.reply(&inv, 487, "Request Terminated", Some(&tag), "");
                        self.scheduled
                            .retain(|(_, Scheduled::Answer { call })| call.0 != i);
                    }
                }
            }
            _ => {
                let tag = self
                    .call_index(r.call_id())
                    .map(|i| self.calls[i].local_tag.clone());
                self.reply(&r, 200, "OK", tag.as_deref(), "");
            }
        }
    }

    fn on_invite(&mut self, now: Instant, r: Request) {
        if let Some(i) = self.call_index(r.call_id()) {
            let branch = r.top_via().and_then(|v| v.branch()).unwrap_or_default();
            if self.calls[i].incoming.is_some() && branch == self.calls[i].invite_branch {
                // helpline's INVITE retransmitted (Timer A): the same request, not a new one; a phone
                // that has not answered yet goes on not answering.
                return;
            }
            // A re-INVITE in a known dialog: accept it without media change.
            let tag = self.calls[i].local_tag.clone();
            self.reply(&r, 200, "OK", Some(&tag), "");
            return;
        }
        let local_tag = self.token("agent");
        let i = self.calls.len();
        self.calls.push(PhoneCall {
            call_id: r.call_id().to_owned(),
            local_tag: local_tag.clone(),
            remote_tag: r.from().tag().map(str::to_owned),
            user: r.uri.user.clone().unwrap_or_default(),
            cseq: 0,
            invite_cseq: r.cseq().seq,
            invite_branch: r
                .top_via()
                .and_then(|v| v.branch())
                .unwrap_or_default()
                .to_owned(),
            remote_target: r
                .contacts()
                .first()
                .map(|c| c.uri.to_string())
                .unwrap_or_else(|| format!("sip:helpline@{}", self.server)),
            incoming: Some(r.clone()),
            last_ack: None,
        });
        match self.answer_invites.clone() {
            AnswerMode::Ignore => {}
            AnswerMode::Decline => self.reply(&r, 486, "Busy Here", Some(&local_tag), ""),
            AnswerMode::Answer { ring, .. } => {
                self.reply(&r, 180, "Ringing", Some(&local_tag), "");
                self.scheduled
                    .push((now + ring, Scheduled::Answer { call: CallRef(i) }));
            }
        }
    }

    /// Answers a request helpline sent (copying Via, From, To, Call-ID, CSeq; RFC 3261 §8.2.6.2).
    pub fn reply(&mut self, r: &Request, code: u16, reason: &str, to_tag: Option<&str>, sdp: &str) {
        let mut head = format!("SIP/2.0 {code} {reason}\n");
        for v in r.headers.get_all_lines("Via") {
            head.push_str(&format!("Via: {v}\n"));
        }
        for name in ["From", "Call-ID", "CSeq"] {
            if let Some(v) = r.header(name) {
                head.push_str(&format!("{name}: {v}\n"));
            }
        }
        let to = r.header("To").unwrap_or_default();
        match to_tag {
            Some(tag) if r.to().tag().is_none() => head.push_str(&format!("To: {to};tag={tag}\n")),
            _ => head.push_str(&format!("To: {to}\n")),
        }
        if (101..300).contains(&code) && r.method == Method::Invite {
            head.push_str(&format!("Contact: {}\n", self.contact()));
        }
        if !sdp.is_empty() {
            head.push_str("Content-Type: application/sdp\n");
        }
        self.send_text(&head, sdp);
    }

    /// When the phone next wants [`ScriptedPhone::handle_timeout`] (a delayed answer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.scheduled.iter().map(|(at, _)| *at).min()
    }

    /// Carries out what is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let (due, later): (Vec<_>, Vec<_>) =
            self.scheduled.drain(..).partition(|(at, _)| *at <= now);
        self.scheduled = later;
        for (_, action) in due {
            match action {
                Scheduled::Answer { call } => {
                    let AnswerMode::Answer { sdp, .. } = self.answer_invites.clone() else {
                        continue;
                    };
                    let call = &self.calls[call.0];
                    let (Some(inv), tag) = (call.incoming.clone(), call.local_tag.clone()) else {
                        continue;
                    };
                    self.reply(&inv, 200, "OK", Some(&tag), &sdp);
                }
            }
        }
    }
}
