//! The SIP demultiplexer: bytes from a peer → parsed message → the matching transaction, a new request for
//! the core, or a stateless reply (400, 505, 481 to a stray CANCEL). It owns every transaction and their
//! timers, and puts its `Server`/`User-Agent` text on what it sends; it does not know about dialogs, calls
//! or media (quinn-proto's `Endpoint` shape). Requests without a `z9hG4bK` branch (RFC 2543 peers) are
//! matched by the §17.2.3 backward-compatible rules.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::sip::message::{
    parse_datagram, parse_stream_message, Method, Request, Response, SipMessage, Via,
};
use crate::sip::transaction::{
    ClientInvite, ClientInviteEvent, ClientInviteInput, ClientNonInvite, ClientNonInviteEvent,
    ClientNonInviteInput, KeyMethod, Rfc2543Fields, ServerInvite, ServerInviteEvent,
    ServerInviteInput, ServerNonInvite, ServerNonInviteEvent, ServerNonInviteInput, TimerConfig,
    TransactionKey, MAGIC_COOKIE,
};

/// How a message travels: over the UDP socket or over one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The shared UDP socket.
    Udp,
    /// A TCP connection, by the shell's connection number.
    Tcp(u64),
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions, RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp(_))
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
        }
    }
}

/// A peer: transport plus address, and the local address the exchange uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP socket or TCP connection.
    pub transport: Transport,
    /// The remote address.
    pub addr: SocketAddr,
    /// Our address that the peer's message arrived on (the destination it used): what our Contact and
    /// SDP must name so the peer's next requests and RTP reach us. On a UDP socket bound to the
    /// unspecified address the shell learns it per datagram (IP_PKTINFO); sends to this peer go out
    /// from it.
    pub local: SocketAddr,
}

/// Bytes for the shell to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// Where to.
    pub to: Peer,
    /// A whole SIP message.
    pub bytes: Arc<[u8]>,
}

/// Identifies one transaction inside the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// What the endpoint reports to the core.
#[derive(Debug)]
pub enum SipEvent {
    /// A request that opened a new server transaction (INVITE, BYE, INFO, OPTIONS, REGISTER, unknown …).
    /// The core must answer it with [`Endpoint::respond`].
    Request {
        /// The server transaction to respond on.
        tx: TxId,
        /// The request, its top Via already stamped with `received`/`rport` (RFC 3581).
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// An ACK for a 2xx (end to end, no transaction of its own, RFC 3261 §17.1.1.3).
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// A CANCEL matched a pending INVITE transaction; the endpoint already answered it `200`
    /// (RFC 3261 §9.2). The core should answer the INVITE `487` if it has not answered it yet.
    Cancelled {
        /// The INVITE's server transaction.
        invite_tx: TxId,
    },
    /// A 2xx to an INVITE was never acknowledged within 64·T1 (RFC 3261 §13.3.1.4): release with BYE.
    NoAck {
        /// The INVITE's server transaction.
        invite_tx: TxId,
    },
    /// A response to one of our client transactions (retransmissions already absorbed).
    Response {
        /// Our client transaction.
        tx: TxId,
        /// The response.
        response: Response,
    },
    /// A client transaction got no final response in time (Timer B or F).
    ClientTimeout {
        /// Our client transaction.
        tx: TxId,
    },
}

enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

struct ServerEntry {
    key: TransactionKey,
    peer: Peer,
    tx: ServerTx,
    /// For INVITE: the request, kept to build the 487 after a CANCEL and to match the 2xx ACK.
    ack_match: Option<AckMatch>,
    answered: bool,
    /// A 2xx was sent: an ACK that matches the key is then the 2xx ACK, for the core (an RFC 2543 peer's
    /// 2xx ACK to a re-INVITE has the INVITE's key, since nothing in it changes).
    accepted: bool,
    /// Further keys of an RFC 2543 INVITE: the key with the To tag of a non-2xx final response, which its
    /// ACK carries (§17.2.3).
    aliases: Vec<TransactionKey>,
}

/// What identifies the ACK of a 2xx: it has a new branch, so it is matched by dialog — Call-ID, both
/// tags — and the INVITE's CSeq number (RFC 3261 §13.2.2.4, §17.1.1.3). The To tag is the one our 2xx
/// carried; it is empty until the 2xx is sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AckMatch {
    call_id: String,
    cseq: u32,
    from_tag: String,
    to_tag: String,
}

struct ClientEntry {
    key: TransactionKey,
    tx: ClientTx,
    peer: Peer,
    request: Request,
}

/// Retransmissions counted since the endpoint was made (plain counters for the shell's `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retransmissions {
    /// Requests a peer sent again that their transaction absorbed (RFC 3261 §17.2).
    pub received: u64,
    /// Messages our transactions' timers sent again (Timers A, E, G and the 2xx retransmission).
    pub sent: u64,
}

/// The SIP endpoint (sans-IO).
pub struct Endpoint {
    timers: TimerConfig,
    next_id: u64,
    /// Boxed: an entry is ~750 bytes and a map's table keeps its peak size, so a burst of 100,000
    /// transactions held ~250 MB in empty slots inline; boxed, a slot is a pointer (see `compact`).
    server: HashMap<TxId, Box<ServerEntry>>,
    server_keys: HashMap<TransactionKey, TxId>,
    acks: HashMap<AckMatch, TxId>,
    client: HashMap<TxId, Box<ClientEntry>>,
    client_keys: HashMap<TransactionKey, TxId>,
    wakeups: BinaryHeap<Reverse<(Instant, TxId)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    /// Our address as written into Via of requests we send.
    local: SocketAddr,
    /// The text of `Server` on our responses and `User-Agent` on our requests.
    server_header: String,
    rng: rand::rngs::SmallRng,
    retransmissions: Retransmissions,
}

impl Endpoint {
    /// A new endpoint. `local` is the address our requests' Via headers carry; `seed` makes branches
    /// reproducible in tests.
    pub fn new(timers: TimerConfig, local: SocketAddr, seed: u64) -> Self {
        use rand::SeedableRng;
        Endpoint {
            timers,
            next_id: 1,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            acks: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            wakeups: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            local,
            server_header: crate::sip::USER_AGENT.to_owned(),
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            retransmissions: Retransmissions::default(),
        }
    }

    /// The address our Via headers carry.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Changes the address our Via headers carry (the shell learns it after binding port 0).
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        self.local = local;
    }

    /// Sets the text of the `Server` header on every response and the `User-Agent` header on every
    /// request this endpoint sends, unless the message already has one (default [`USER_AGENT`]).
    pub fn set_server_header(&mut self, text: &str) {
        self.server_header = text.to_owned();
    }

    /// Adds `Server` (RFC 3261 §20.35) unless the response has one.
    fn with_server(&self, mut response: Response) -> Response {
        if response.headers.get("Server").is_none() {
            response
                .headers
                .push_before("Content-Length", "Server", &self.server_header);
        }
        response
    }

    /// Number of live transactions (server + client), for metrics and tests.
    pub fn transaction_count(&self) -> usize {
        self.server.len() + self.client.len()
    }

    /// Retransmissions received and sent so far.
    pub fn retransmissions(&self) -> Retransmissions {
        self.retransmissions
    }

    fn id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    /// A fresh RFC 3261 branch (magic cookie + 64 random bits).
    pub fn new_branch(&mut self) -> String {
        use rand::Rng;
        format!("z9hG4bK{:016x}", self.rng.gen::<u64>())
    }

    /// A fresh tag for From/To (RFC 3261 §19.3: at least 32 bits of randomness).
    pub fn new_tag(&mut self) -> String {
        use rand::Rng;
        format!("{:012x}", self.rng.gen::<u64>() & 0xffff_ffff_ffff)
    }

    /// Feeds one message from the network: a UDP datagram, or one TCP message framed by the shell.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        let parsed = match peer.transport {
            Transport::Udp => parse_datagram(bytes),
            Transport::Tcp(_) => parse_stream_message(bytes),
        };
        let message = match parsed {
            Ok(m) => m,
            Err(err) => {
                tracing::debug!(%peer.addr, fault = %err.fault, "malformed SIP message");
                // Answered statelessly and no state is created (RFC 3261 §16.3 / §21.4.1 spirit).
                if let Some(reply) = err.reply_400(Some(&self.server_header)) {
                    self.push_transmit(peer, reply.into());
                }
                return;
            }
        };
        match message {
            SipMessage::Request(request) => self.on_request(now, peer, request),
            SipMessage::Response(response) => self.on_response(now, response),
        }
    }

    fn on_request(&mut self, now: Instant, peer: Peer, mut request: Request) {
        if !request.is_sip2() {
            // RFC 3261 §8.2.2 (version check is the first thing a UAS does).
            if request.method != Method::Ack {
                let reply = Response::for_request(&request, 505, "Version Not Supported");
                let reply = self.with_server(reply);
                self.push_transmit(peer, reply.to_bytes().into());
            }
            return;
        }
        // The key is read from the top Via as the peer sent it, before it is stamped below.
        let Some(key) = server_key(&request) else {
            return; // the parser guarantees a Via; nothing can be answered without one
        };
        // Responses go back where the request came from (RFC 3261 §18.2.1, RFC 3581 §4).
        request.stamp_source(peer.addr);

        match request.method {
            Method::Ack => {
                // A non-2xx ACK matches the INVITE transaction by key (§17.2.3) …
                let by_key = self.server_keys.get(&key).copied();
                let by_key = by_key.filter(|id| !self.server.get(id).is_some_and(|e| e.accepted));
                if let Some(id) = by_key {
                    if let Some(entry) = self.server.get_mut(&id) {
                        if let ServerTx::Invite(tx) = &mut entry.tx {
                            tx.handle(now, ServerInviteInput::Ack);
                        }
                    }
                    self.after_server(now, id);
                    return;
                }
                // … a 2xx ACK by dialog (§13.3.1.4): it stops the 2xx retransmission.
                let m = AckMatch {
                    call_id: request.call_id().to_owned(),
                    cseq: request.cseq().seq,
                    from_tag: request.from().tag().unwrap_or_default().to_owned(),
                    to_tag: request.to().tag().unwrap_or_default().to_owned(),
                };
                if let Some(&id) = self.acks.get(&m) {
                    if let Some(entry) = self.server.get_mut(&id) {
                        if let ServerTx::Invite(tx) = &mut entry.tx {
                            tx.handle(now, ServerInviteInput::Ack);
                        }
                    }
                    self.after_server(now, id);
                }
                self.events.push_back(SipEvent::Ack { request, peer });
            }
            Method::Cancel => {
                if let Some(&id) = self.server_keys.get(&key) {
                    // A retransmitted CANCEL: its own transaction absorbs it.
                    self.retransmitted(now, id);
                    return;
                }
                // §9.2: the INVITE is the transaction the CANCEL would match were it not a CANCEL.
                let invite_key = key.with_method(KeyMethod::Invite);
                let invite = self.server_keys.get(&invite_key).copied();
                let id = self.new_server_tx(now, peer, key, &request);
                match invite {
                    Some(invite_tx) => {
                        // RFC 3261 §9.2: the CANCEL itself is answered 200 at once.
                        let ok = Response::for_request(&request, 200, "OK");
                        self.respond(now, id, ok);
                        let answered = self.server.get(&invite_tx).is_some_and(|e| e.answered);
                        if !answered {
                            self.events.push_back(SipEvent::Cancelled { invite_tx });
                        }
                    }
                    None => {
                        let reply =
                            Response::for_request(&request, 481, "Call/Transaction Does Not Exist");
                        self.respond(now, id, reply);
                    }
                }
            }
            _ => {
                if let Some(&id) = self.server_keys.get(&key) {
                    // Retransmissions are absorbed by their transaction: never a second call.
                    self.retransmitted(now, id);
                    return;
                }
                let id = self.new_server_tx(now, peer, key, &request);
                self.events.push_back(SipEvent::Request {
                    tx: id,
                    request,
                    peer,
                });
            }
        }
    }

    fn new_server_tx(
        &mut self,
        now: Instant,
        peer: Peer,
        key: TransactionKey,
        request: &Request,
    ) -> TxId {
        let id = self.id();
        let reliable = peer.transport.is_reliable();
        let (tx, ack_match) = if request.method == Method::Invite {
            let m = AckMatch {
                call_id: request.call_id().to_owned(),
                cseq: request.cseq().seq,
                from_tag: request.from().tag().unwrap_or_default().to_owned(),
                to_tag: String::new(),
            };
            (
                ServerTx::Invite(ServerInvite::new(now, self.timers, reliable)),
                Some(m),
            )
        } else {
            (
                ServerTx::NonInvite(ServerNonInvite::new(now, self.timers, reliable)),
                None,
            )
        };
        self.server_keys.insert(key.clone(), id);
        self.server.insert(
            id,
            Box::new(ServerEntry {
                key,
                peer,
                tx,
                ack_match,
                answered: false,
                accepted: false,
                aliases: Vec::new(),
            }),
        );
        id
    }

    fn retransmitted(&mut self, now: Instant, id: TxId) {
        self.retransmissions.received += 1;
        if let Some(entry) = self.server.get_mut(&id) {
            match &mut entry.tx {
                ServerTx::Invite(tx) => tx.handle(now, ServerInviteInput::RequestRetransmit),
                ServerTx::NonInvite(tx) => tx.handle(now, ServerNonInviteInput::RequestRetransmit),
            }
        }
        self.after_server(now, id);
    }

    /// Sends a response on a server transaction. Responses go where the request came from (the top Via
    /// was stamped with `received`/`rport`, RFC 3261 §18.2.2 and RFC 3581 §4).
    pub fn respond(&mut self, now: Instant, tx: TxId, response: Response) {
        let response = self.with_server(response);
        let Some(entry) = self.server.get_mut(&tx) else {
            tracing::debug!(
                ?tx,
                code = response.code,
                "response for a finished transaction dropped"
            );
            return;
        };
        let code = response.code;
        let bytes: Arc<[u8]> = response.to_bytes().into();
        match &mut entry.tx {
            ServerTx::Invite(t) => {
                if code < 200 {
                    t.handle(now, ServerInviteInput::TuProvisional(bytes));
                } else {
                    entry.answered = true;
                    if (200..300).contains(&code) {
                        entry.accepted = true;
                        if let Some(m) = entry.ack_match.as_mut() {
                            // Only an ACK carrying the tag our 2xx gave stops its retransmission.
                            m.to_tag = response.to().tag().unwrap_or_default().to_owned();
                            self.acks.insert(m.clone(), tx);
                        }
                    } else if let Some(alias) = response
                        .to()
                        .tag()
                        .and_then(|tag| entry.key.with_to_tag(tag))
                        .filter(|alias| *alias != entry.key)
                    {
                        // §17.2.3: an RFC 2543 ACK carries the To tag of this response.
                        entry.aliases.push(alias.clone());
                        self.server_keys.insert(alias, tx);
                    }
                    t.handle(now, ServerInviteInput::TuFinal { code, bytes });
                }
            }
            ServerTx::NonInvite(t) => {
                if code < 200 {
                    t.handle(now, ServerNonInviteInput::TuProvisional(bytes));
                } else {
                    t.handle(now, ServerNonInviteInput::TuFinal { code, bytes });
                }
            }
        }
        self.after_server(now, tx);
    }

    /// Whether a final response was already sent on this server transaction.
    pub fn is_answered(&self, tx: TxId) -> bool {
        self.server.get(&tx).is_some_and(|e| e.answered)
    }

    /// Our Via for a request we originate towards `peer`, with `branch`.
    fn our_via(&self, peer: Peer, branch: &str) -> Via {
        let mut via = Via::new(
            peer.transport.via_token(),
            &self.local.ip().to_string(),
            Some(self.local.port()),
            branch,
        );
        if self.local.is_ipv6() {
            via.host = format!("[{}]", self.local.ip());
        }
        // RFC 3581: ask for the response at the source port, whatever NAT does to it.
        via.set_param("rport", None);
        via
    }

    /// Sends a request that we originate (BYE to a caller, INVITE to an agent) in a client transaction.
    /// The top Via is written here with a fresh branch.
    pub fn send_request(&mut self, now: Instant, peer: Peer, mut request: Request) -> TxId {
        if request.headers.get("User-Agent").is_none() {
            // RFC 3261 §20.41.
            request
                .headers
                .push_before("Content-Length", "User-Agent", &self.server_header);
        }
        let branch = self.new_branch();
        request.push_via_top(self.our_via(peer, &branch));
        let id = self.id();
        let reliable = peer.transport.is_reliable();
        let bytes: Arc<[u8]> = request.to_bytes().into();
        let method = request.method.as_str().to_owned();
        let key = TransactionKey::client(&branch, &method);
        let tx = if request.method == Method::Invite {
            ClientTx::Invite(ClientInvite::new(now, self.timers, reliable, bytes))
        } else {
            ClientTx::NonInvite(ClientNonInvite::new(now, self.timers, reliable, bytes))
        };
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            Box::new(ClientEntry {
                key,
                tx,
                peer,
                request,
            }),
        );
        self.after_client(now, id);
        id
    }

    /// CANCELs our INVITE `invite_tx` (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, CSeq number
    /// and top Via (so the same branch) as the INVITE, in a client transaction of its own. `None` when
    /// the INVITE transaction is gone or is no INVITE. The caller waits for a provisional response
    /// before cancelling (§9.1).
    pub fn cancel(&mut self, now: Instant, invite_tx: TxId) -> Option<TxId> {
        let entry = self.client.get(&invite_tx)?;
        if entry.request.method != Method::Invite {
            return None;
        }
        let invite = &entry.request;
        let peer = entry.peer;
        let via = invite.top_via()?.clone();
        let branch = via.branch().unwrap_or_default().to_owned();
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        cancel.headers.push("Via", &via.to_string());
        for route in invite.headers.get_all("Route") {
            cancel.headers.push("Route", route);
        }
        for name in ["From", "To", "Call-ID"] {
            if let Some(v) = invite.headers.get(name) {
                cancel.headers.push(name, v);
            }
        }
        cancel
            .headers
            .push("CSeq", &format!("{} CANCEL", invite.cseq().seq));
        cancel.headers.push("Max-Forwards", "70");
        cancel.headers.push("User-Agent", &self.server_header);
        cancel.headers.push("Content-Length", "0");
        if cancel.refresh_typed().is_err() {
            return None;
        }
        let id = self.id();
        let reliable = peer.transport.is_reliable();
        let bytes: Arc<[u8]> = cancel.to_bytes().into();
        let key = TransactionKey::client(&branch, "CANCEL");
        let tx = ClientTx::NonInvite(ClientNonInvite::new(now, self.timers, reliable, bytes));
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            Box::new(ClientEntry {
                key,
                tx,
                peer,
                request: cancel,
            }),
        );
        self.after_client(now, id);
        Some(id)
    }

    /// Sends the ACK of a 2xx to our INVITE (RFC 3261 §13.2.2.4): outside any transaction, with a Via of
    /// its own (fresh branch).
    pub fn send_ack(&mut self, peer: Peer, mut ack: Request) {
        let branch = self.new_branch();
        ack.push_via_top(self.our_via(peer, &branch));
        self.push_transmit(peer, ack.to_bytes().into());
    }

    /// Sends bytes outside any transaction (the ACK for a 2xx, RFC 3261 §13.2.2.4).
    pub fn send_stateless(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.push_transmit(peer, bytes.into());
    }

    fn on_response(&mut self, now: Instant, response: Response) {
        let Some(top) = response.via().first() else {
            return;
        };
        let key = TransactionKey::client(
            top.branch().unwrap_or_default(),
            response.cseq().method.as_str(),
        );
        let Some(&id) = self.client_keys.get(&key) else {
            // RFC 3261 §18.1.2: a response matching no transaction is discarded.
            tracing::debug!(code = response.code, "stray response dropped");
            return;
        };
        let code = response.code;
        if let Some(entry) = self.client.get_mut(&id) {
            match &mut entry.tx {
                ClientTx::Invite(tx) => tx.handle(now, ClientInviteInput::Response { code }),
                ClientTx::NonInvite(tx) => tx.handle(now, ClientNonInviteInput::Response { code }),
            }
        }
        self.after_client_with(now, id, Some(response));
    }

    /// Fires every transaction timer that is due; spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Timers only ever send retransmissions (Timers B, D, F, H, I, J, K, L, M send nothing).
        let queued = self.transmits.len();
        self.handle_timers(now);
        self.retransmissions.sent += (self.transmits.len().saturating_sub(queued)) as u64;
        self.compact();
    }

    /// Gives back the tables' room once a burst is over: a `HashMap` never shrinks by itself, so
    /// after 100,000 calls at 2,000/s (126,000 transactions alive at the peak) the empty tables
    /// held ~250 MB for good. A table shrinks when under a quarter full, to twice what it holds:
    /// amortised O(1) per removal.
    fn compact(&mut self) {
        shrink_after_peak(&mut self.server);
        shrink_after_peak(&mut self.server_keys);
        shrink_after_peak(&mut self.acks);
        shrink_after_peak(&mut self.client);
        shrink_after_peak(&mut self.client_keys);
        if self.wakeups.capacity() > 1024 && self.wakeups.capacity() / 4 > self.wakeups.len() {
            self.wakeups.shrink_to(self.wakeups.len() * 2);
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            if let Some(entry) = self.server.get_mut(&id) {
                match &mut entry.tx {
                    ServerTx::Invite(tx) => tx.handle_timeout(now),
                    ServerTx::NonInvite(tx) => tx.handle_timeout(now),
                }
                self.after_server(now, id);
            } else if self.client.contains_key(&id) {
                if let Some(entry) = self.client.get_mut(&id) {
                    match &mut entry.tx {
                        ClientTx::Invite(tx) => tx.handle_timeout(now),
                        ClientTx::NonInvite(tx) => tx.handle_timeout(now),
                    }
                }
                self.after_client(now, id);
            }
        }
    }

    /// The earliest instant any transaction wants [`Endpoint::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wakeups.peek().map(|Reverse((at, _))| *at)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the core.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    fn push_transmit(&mut self, to: Peer, bytes: Arc<[u8]>) {
        self.transmits.push_back(Transmit { to, bytes });
    }

    /// Collects a server transaction's outputs and re-arms its wake-up; drops it when terminated.
    fn after_server(&mut self, _now: Instant, id: TxId) {
        let Some(entry) = self.server.get_mut(&id) else {
            return;
        };
        let peer = entry.peer;
        let mut out = Vec::new();
        let mut events = Vec::new();
        let (terminated, timeout) = match &mut entry.tx {
            ServerTx::Invite(tx) => {
                while let Some(b) = tx.poll_transmit() {
                    out.push(b);
                }
                while let Some(e) = tx.poll_event() {
                    events.push(e);
                }
                (tx.is_terminated(), tx.poll_timeout())
            }
            ServerTx::NonInvite(tx) => {
                while let Some(b) = tx.poll_transmit() {
                    out.push(b);
                }
                while let Some(ServerNonInviteEvent::TransportError) = tx.poll_event() {}
                (tx.is_terminated(), tx.poll_timeout())
            }
        };
        for bytes in out {
            self.push_transmit(peer, bytes);
        }
        for e in events {
            if e == ServerInviteEvent::NoAck {
                self.events.push_back(SipEvent::NoAck { invite_tx: id });
            }
        }
        if terminated {
            if let Some(entry) = self.server.remove(&id) {
                for key in std::iter::once(&entry.key).chain(&entry.aliases) {
                    if self.server_keys.get(key) == Some(&id) {
                        self.server_keys.remove(key);
                    }
                }
                if let Some(m) = entry.ack_match {
                    if self.acks.get(&m) == Some(&id) {
                        self.acks.remove(&m);
                    }
                }
            }
        } else if let Some(at) = timeout {
            self.wakeups.push(Reverse((at, id)));
        }
    }

    fn after_client(&mut self, now: Instant, id: TxId) {
        self.after_client_with(now, id, None);
    }

    fn after_client_with(&mut self, _now: Instant, id: TxId, response: Option<Response>) {
        let Some(entry) = self.client.get_mut(&id) else {
            return;
        };
        let peer = entry.peer;
        let mut out = Vec::new();
        let mut deliver = false;
        let mut timeout_event = false;
        let mut need_ack = false;
        let (terminated, timeout) = match &mut entry.tx {
            ClientTx::Invite(tx) => {
                while let Some(e) = tx.poll_event() {
                    match e {
                        ClientInviteEvent::Provisional(_)
                        | ClientInviteEvent::Final(_)
                        | ClientInviteEvent::Retransmitted2xx(_) => deliver = true,
                        ClientInviteEvent::NeedAck(_) => need_ack = true,
                        ClientInviteEvent::Timeout => timeout_event = true,
                        _ => {}
                    }
                }
                if need_ack {
                    if let Some(resp) = &response {
                        let ack = non_2xx_ack(&entry.request, resp);
                        tx.set_ack(ack.to_bytes().into());
                    }
                }
                while let Some(b) = tx.poll_transmit() {
                    out.push(b);
                }
                (tx.is_terminated(), tx.poll_timeout())
            }
            ClientTx::NonInvite(tx) => {
                while let Some(e) = tx.poll_event() {
                    match e {
                        ClientNonInviteEvent::Provisional(_) | ClientNonInviteEvent::Final(_) => {
                            deliver = true
                        }
                        ClientNonInviteEvent::Timeout => timeout_event = true,
                        _ => {}
                    }
                }
                while let Some(b) = tx.poll_transmit() {
                    out.push(b);
                }
                (tx.is_terminated(), tx.poll_timeout())
            }
        };
        for bytes in out {
            self.push_transmit(peer, bytes);
        }
        if let (true, Some(response)) = (deliver, response) {
            self.events
                .push_back(SipEvent::Response { tx: id, response });
        }
        if timeout_event {
            self.events.push_back(SipEvent::ClientTimeout { tx: id });
        }
        if terminated {
            if let Some(entry) = self.client.remove(&id) {
                self.client_keys.remove(&entry.key);
            }
        } else if let Some(at) = timeout {
            self.wakeups.push(Reverse((at, id)));
        }
    }
}

/// The server transaction key of a received request (RFC 3261 §17.2.3): branch + sent-by + method when
/// the branch has the magic cookie, otherwise the RFC 2543 fields too. `None` without a Via.
fn server_key(request: &Request) -> Option<TransactionKey> {
    let top = request.top_via()?;
    let branch = top.branch().unwrap_or_default();
    let sent_by = match top.port {
        Some(port) => format!("{}:{}", top.host, port),
        None => top.host.clone(),
    };
    let method = request.method.as_str();
    if branch.starts_with(MAGIC_COOKIE) {
        return Some(TransactionKey::server(branch, &sent_by, method));
    }
    let fields = Rfc2543Fields {
        request_uri: normalised_uri(&request.uri),
        to_tag: request.to().tag().unwrap_or_default().to_owned(),
        from_tag: request.from().tag().unwrap_or_default().to_owned(),
        call_id: request.call_id().to_owned(),
        cseq: request.cseq().seq,
        top_via: normalised_via(top),
    };
    Some(TransactionKey::server_rfc2543(
        branch, &sent_by, method, fields,
    ))
}

/// A Request-URI for RFC 2543 matching: scheme (and a SIP host) lower-cased, the rest verbatim.
fn normalised_uri(uri: &crate::sip::message::Uri) -> String {
    let mut uri = uri.clone();
    uri.scheme.make_ascii_lowercase();
    if uri.is_sip() {
        uri.host.make_ascii_lowercase();
    }
    uri.to_string()
}

/// A top Via for RFC 2543 matching: protocol and transport upper-cased, host lower-cased, parameters
/// with lower-cased names in sorted order (their order carries no meaning).
fn normalised_via(via: &Via) -> String {
    let mut params: Vec<(String, Option<&str>)> = via
        .params
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_deref()))
        .collect();
    params.sort();
    let mut out = format!(
        "{}/{} {}",
        via.protocol.to_ascii_uppercase(),
        via.transport.to_ascii_uppercase(),
        via.host.to_ascii_lowercase()
    );
    if let Some(port) = via.port {
        out.push_str(&format!(":{port}"));
    }
    for (name, value) in params {
        out.push(';');
        out.push_str(&name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The ACK for a non-2xx final response: same Request-URI, top Via, From, Call-ID and CSeq number as the
/// INVITE, To from the response (RFC 3261 §17.1.1.3).
fn non_2xx_ack(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.get_all_lines("Via").first() {
        ack.headers.push("Via", via);
    }
    for route in invite.headers.get_all_lines("Route") {
        ack.headers.push("Route", &route);
    }
    for name in ["Max-Forwards", "From"] {
        if let Some(v) = invite.headers.get(name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(to) = response.headers.get("To") {
        ack.headers.push("To", to);
    }
    ack.headers.push("Call-ID", invite.call_id());
    ack.headers
        .push("CSeq", &format!("{} ACK", invite.cseq().seq));
    ack
}

/// Shrinks `map` when it is under a quarter full (and past 1,024 slots), to twice what it holds: a
/// `HashMap` never gives its peak table back by itself. Amortised O(1) when called after each removal;
/// the call registry's tables use it too.
pub(crate) fn shrink_after_peak<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 1024 && map.capacity() / 4 > map.len() {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const INVITE: &str = "INVITE sip:08000289999@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-1;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5092>;tag=caller1\r\n\
To: <sip:08000289999@127.0.0.1:5060>\r\n\
Call-ID: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5092>\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    fn peer() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "127.0.0.1:5092".parse().expect("addr"),
            local: "127.0.0.1:5060".parse().expect("addr"),
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint::new(
            TimerConfig::default(),
            "127.0.0.1:5060".parse().expect("addr"),
            7,
        )
    }

    fn transmits(ep: &mut Endpoint) -> Vec<String> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect()
    }

    fn new_request(ep: &mut Endpoint) -> (TxId, Request) {
        match ep.poll_event() {
            Some(SipEvent::Request { tx, request, .. }) => (tx, request),
            other => panic!("expected a new request, got {other:?}"),
        }
    }

    #[test]
    fn retransmitted_invite_is_absorbed_and_gets_the_last_response_again() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        ep.respond(t0, tx, Response::for_request(&invite, 100, "Trying"));
        assert_eq!(transmits(&mut ep).len(), 1);
        ep.handle_message(t0 + Duration::from_millis(500), peer(), INVITE.as_bytes());
        assert!(
            ep.poll_event().is_none(),
            "a retransmission must never be a second call"
        );
        let again = transmits(&mut ep);
        assert_eq!(again.len(), 1);
        assert!(again[0].starts_with("SIP/2.0 100 Trying"));
        assert_eq!(
            ep.retransmissions(),
            Retransmissions {
                received: 1,
                sent: 0
            }
        );
    }

    #[test]
    fn unacknowledged_2xx_is_retransmitted_then_released_after_64_t1() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        let mut ok = Response::for_request(&invite, 200, "OK");
        ok.set_to_tag("srv");
        ep.respond(t0, tx, ok);
        let mut sent_at = vec![Duration::ZERO; transmits(&mut ep).len()];
        let mut no_ack_at = None;
        for _ in 0..100 {
            let Some(now) = ep.poll_timeout() else { break };
            ep.handle_timeout(now);
            sent_at.extend(transmits(&mut ep).iter().map(|_| now - t0));
            if let Some(SipEvent::NoAck { invite_tx }) = ep.poll_event() {
                assert_eq!(invite_tx, tx);
                no_ack_at = Some(now - t0);
                break;
            }
        }
        let ms: Vec<u128> = sent_at.iter().map(|d| d.as_millis()).collect();
        // Every 2xx after the first was a timer's retransmission.
        assert_eq!(ep.retransmissions().sent, sent_at.len() as u64 - 1);
        assert_eq!(ep.retransmissions().received, 0);
        assert_eq!(ms[..6], [0, 500, 1500, 3500, 7500, 11500]);
        assert_eq!(no_ack_at, Some(Duration::from_secs(32)));
    }

    #[test]
    fn ack_for_the_2xx_stops_retransmission_and_reaches_the_core() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        let mut ok = Response::for_request(&invite, 200, "OK");
        ok.set_to_tag("srv");
        ep.respond(t0, tx, ok);
        transmits(&mut ep);
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace("branch=z9hG4bK-1", "branch=z9hG4bK-2")
            .replace(
                "To: <sip:08000289999@127.0.0.1:5060>",
                "To: <sip:08000289999@127.0.0.1:5060>;tag=srv",
            );
        ep.handle_message(t0 + Duration::from_millis(100), peer(), ack.as_bytes());
        assert!(matches!(ep.poll_event(), Some(SipEvent::Ack { .. })));
        // No more 2xx retransmissions until the transaction ends.
        for _ in 0..20 {
            let Some(at) = ep.poll_timeout() else { break };
            ep.handle_timeout(at);
            assert!(transmits(&mut ep).is_empty());
            assert!(ep.poll_event().is_none());
        }
    }

    #[test]
    fn cancel_gets_200_and_the_core_is_told() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (invite_tx, _) = new_request(&mut ep);
        let cancel = INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
        ep.handle_message(t0, peer(), cancel.as_bytes());
        let out = transmits(&mut ep);
        assert!(out[0].starts_with("SIP/2.0 200 OK"), "{out:?}");
        assert!(out[0].contains("CSeq: 1 CANCEL"));
        assert!(
            matches!(ep.poll_event(), Some(SipEvent::Cancelled { invite_tx: t }) if t == invite_tx)
        );
    }

    #[test]
    fn cancel_for_nothing_gets_481() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let cancel = INVITE
            .replace("INVITE sip", "CANCEL sip")
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
        ep.handle_message(t0, peer(), cancel.as_bytes());
        let out = transmits(&mut ep);
        assert!(out[0].starts_with("SIP/2.0 481"), "{out:?}");
        assert!(ep.poll_event().is_none());
    }

    #[test]
    fn malformed_request_gets_a_stateless_400_naming_the_fault() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE");
        ep.handle_message(t0, peer(), bad.as_bytes());
        let out = transmits(&mut ep);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("SIP/2.0 400 "), "{}", out[0]);
        assert!(
            out[0].lines().next().unwrap_or_default().contains("CSeq"),
            "{}",
            out[0]
        );
        assert_eq!(
            ep.transaction_count(),
            0,
            "no state is created for a malformed message"
        );
        assert!(ep.poll_event().is_none());
    }

    #[test]
    fn wrong_sip_version_gets_505() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let bad = INVITE.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
        ep.handle_message(t0, peer(), bad.as_bytes());
        let out = transmits(&mut ep);
        assert!(out[0].starts_with("SIP/2.0 505"), "{out:?}");
    }

    #[test]
    fn responses_honour_rport_and_received() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let natted = Peer {
            transport: Transport::Udp,
            addr: "127.0.0.9:40000".parse().expect("addr"),
            local: "127.0.0.1:5060".parse().expect("addr"),
        };
        ep.handle_message(t0, natted, INVITE.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        ep.respond(t0, tx, Response::for_request(&invite, 100, "Trying"));
        let t = ep.poll_transmit().expect("a response");
        assert_eq!(t.to, natted, "responses go where the request came from");
        let text = String::from_utf8_lossy(&t.bytes);
        assert!(text.contains("received=127.0.0.9"), "{text}");
        assert!(text.contains("rport=40000"), "{text}");
    }

    /// An RFC 2543 INVITE: no magic cookie in the Via (here no branch at all) and no From tag.
    const INVITE_2543: &str = "INVITE sip:08000289999@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5092\r\n\
From: old <sip:old@127.0.0.1:5092>\r\n\
To: <sip:08000289999@127.0.0.1:5060>\r\n\
Call-ID: 2543-a@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:old@127.0.0.1:5092>\r\n\
Content-Length: 0\r\n\r\n";

    fn to_method(invite: &str, method: &str) -> String {
        invite
            .replacen("INVITE sip", &format!("{method} sip"), 1)
            .replace("CSeq: 1 INVITE", &format!("CSeq: 1 {method}"))
    }

    #[test]
    fn two_rfc2543_invites_from_one_peer_are_two_transactions() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE_2543.as_bytes());
        let (first, _) = new_request(&mut ep);
        let other = INVITE_2543.replace("2543-a@", "2543-b@");
        ep.handle_message(t0, peer(), other.as_bytes());
        let (second, request) = new_request(&mut ep);
        assert_ne!(first, second);
        assert_eq!(request.call_id(), "2543-b@127.0.0.1");
        // Same Call-ID, another CSeq, or another Request-URI, or another Via: each a new transaction too.
        for (i, variant) in [
            INVITE_2543.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
            INVITE_2543.replace("INVITE sip:08000289999@", "INVITE sip:08000280000@"),
            INVITE_2543.replace(
                "127.0.0.1:5092\r\n",
                "127.0.0.1:5092;received=192.0.2.1\r\n",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            ep.handle_message(t0, peer(), variant.as_bytes());
            assert!(
                matches!(ep.poll_event(), Some(SipEvent::Request { .. })),
                "variant {i} is a new request"
            );
        }
        assert_eq!(ep.transaction_count(), 5);
    }

    #[test]
    fn rfc2543_retransmission_is_absorbed() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE_2543.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        ep.respond(t0, tx, Response::for_request(&invite, 180, "Ringing"));
        assert_eq!(transmits(&mut ep).len(), 1);
        // Header case and order may differ in a retransmission; the §17.2.3 fields do not.
        let again = INVITE_2543.replace("Call-ID:", "call-id:");
        ep.handle_message(t0 + Duration::from_millis(500), peer(), again.as_bytes());
        assert!(
            ep.poll_event().is_none(),
            "a retransmission is not a second call"
        );
        let out = transmits(&mut ep);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("SIP/2.0 180 Ringing"), "{out:?}");
        assert_eq!(ep.transaction_count(), 1);
    }

    #[test]
    fn rfc2543_cancel_matches_its_invite() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let other = INVITE_2543.replace("2543-a@", "2543-b@");
        ep.handle_message(t0, peer(), other.as_bytes());
        let (other_tx, _) = new_request(&mut ep);
        ep.handle_message(t0, peer(), INVITE_2543.as_bytes());
        let (invite_tx, _) = new_request(&mut ep);
        let cancel = to_method(INVITE_2543, "CANCEL");
        ep.handle_message(t0, peer(), cancel.as_bytes());
        let out = transmits(&mut ep);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].starts_with("SIP/2.0 200 OK"), "{out:?}");
        assert!(out[0].contains("Call-ID: 2543-a@127.0.0.1"), "{out:?}");
        match ep.poll_event() {
            Some(SipEvent::Cancelled { invite_tx: t }) => {
                assert_eq!(t, invite_tx);
                assert_ne!(t, other_tx);
            }
            other => panic!("expected Cancelled, got {other:?}"),
        }
        // A retransmitted CANCEL is absorbed by the CANCEL's own transaction.
        ep.handle_message(t0 + Duration::from_millis(500), peer(), cancel.as_bytes());
        assert!(ep.poll_event().is_none());
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 200 OK"));
        // A CANCEL whose Request-URI differs cancels nothing (§9.1: it must be the INVITE's).
        let stray = cancel.replace("CANCEL sip:08000289999@", "CANCEL sip:08000280000@");
        ep.handle_message(t0, peer(), stray.as_bytes());
        assert!(transmits(&mut ep)[0].starts_with("SIP/2.0 481"));
        assert!(ep.poll_event().is_none());
    }

    #[test]
    fn rfc2543_ack_of_a_non_2xx_final_finds_its_invite() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE_2543.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        let mut busy = Response::for_request(&invite, 486, "Busy Here");
        busy.set_to_tag("srv486");
        ep.respond(t0, tx, busy);
        assert_eq!(transmits(&mut ep).len(), 1);
        // The ACK carries the To tag of our 486, which the INVITE did not have (§17.2.3).
        let ack = to_method(INVITE_2543, "ACK").replace(
            "To: <sip:08000289999@127.0.0.1:5060>",
            "To: <sip:08000289999@127.0.0.1:5060>;tag=srv486",
        );
        ep.handle_message(t0 + Duration::from_millis(100), peer(), ack.as_bytes());
        assert!(
            ep.poll_event().is_none(),
            "the ACK of a non-2xx belongs to the transaction, not the core"
        );
        // Timer G stops: no more 486 retransmissions until the transaction ends.
        for _ in 0..20 {
            let Some(at) = ep.poll_timeout() else { break };
            ep.handle_timeout(at);
            assert!(transmits(&mut ep).is_empty());
        }
        assert_eq!(ep.transaction_count(), 0);
    }

    #[test]
    fn rfc2543_ack_of_a_2xx_to_a_reinvite_reaches_the_core() {
        // Inside a dialog nothing in an RFC 2543 ACK differs from its re-INVITE's key fields.
        let reinvite = INVITE_2543.replace(
            "To: <sip:08000289999@127.0.0.1:5060>",
            "To: <sip:08000289999@127.0.0.1:5060>;tag=srv",
        );
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), reinvite.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        ep.respond(t0, tx, Response::for_request(&invite, 200, "OK"));
        transmits(&mut ep);
        let ack = to_method(&reinvite, "ACK");
        ep.handle_message(t0 + Duration::from_millis(100), peer(), ack.as_bytes());
        assert!(matches!(ep.poll_event(), Some(SipEvent::Ack { .. })));
        for _ in 0..20 {
            let Some(at) = ep.poll_timeout() else { break };
            ep.handle_timeout(at);
            assert!(
                transmits(&mut ep).is_empty(),
                "the ACK stopped the 2xx retransmission"
            );
            assert!(ep.poll_event().is_none(), "no NoAck");
        }
        assert_eq!(ep.transaction_count(), 0);
    }

    fn bye() -> Request {
        let mut bye = Request::new(
            Method::Bye,
            crate::sip::message::Uri::parse("sip:caller@127.0.0.1:5092").expect("uri"),
        );
        bye.headers.push("Call-ID", "x");
        bye.headers.push("CSeq", "1 BYE");
        bye
    }

    /// Every message the endpoint sends for the exchanges that need no core decision besides `respond`.
    fn everything_sent(ep: &mut Endpoint) -> Vec<String> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (tx, invite) = new_request(ep);
        ep.respond(t0, tx, Response::for_request(&invite, 100, "Trying"));
        out.extend(transmits(ep));
        let cancel = to_method(INVITE, "CANCEL");
        ep.handle_message(t0, peer(), cancel.as_bytes()); // 200 to the CANCEL
        let stray = cancel.replace("z9hG4bK-1", "z9hG4bK-9");
        ep.handle_message(t0, peer(), stray.as_bytes()); // 481
        let bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE");
        ep.handle_message(t0, peer(), bad.as_bytes()); // stateless 400
        let old = INVITE.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
        ep.handle_message(t0, peer(), old.as_bytes()); // 505
        out.extend(transmits(ep));
        ep.send_request(t0, peer(), bye());
        out.extend(transmits(ep));
        out
    }

    fn header_lines<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
        message
            .lines()
            .filter(|l| l.split(':').next() == Some(name))
            .collect()
    }

    #[test]
    fn every_response_carries_server_and_every_request_user_agent() {
        let mut ep = endpoint();
        let sent = everything_sent(&mut ep);
        let starts: Vec<&str> = sent
            .iter()
            .map(|m| &m[..m.find('\r').unwrap_or(0)])
            .collect();
        assert_eq!(
            starts[..5],
            [
                "SIP/2.0 100 Trying",
                "SIP/2.0 200 OK",
                "SIP/2.0 481 Call/Transaction Does Not Exist",
                "SIP/2.0 400 Malformed CSeq header",
                "SIP/2.0 505 Version Not Supported",
            ]
        );
        assert!(starts[5].starts_with("BYE "), "{}", starts[5]);
        for m in &sent[..5] {
            assert_eq!(header_lines(m, "Server"), ["Server: helpline"], "{m}");
            assert!(header_lines(m, "User-Agent").is_empty(), "{m}");
        }
        assert_eq!(
            header_lines(&sent[5], "User-Agent"),
            ["User-Agent: helpline"]
        );
        assert!(header_lines(&sent[5], "Server").is_empty());

        let mut ep = endpoint();
        ep.set_server_header("Acme IVR");
        for m in everything_sent(&mut ep) {
            let name = if m.starts_with("SIP/2.0") {
                "Server"
            } else {
                "User-Agent"
            };
            assert_eq!(header_lines(&m, name), [format!("{name}: Acme IVR")], "{m}");
        }
    }

    #[test]
    fn a_server_or_user_agent_already_set_is_kept() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        ep.handle_message(t0, peer(), INVITE.as_bytes());
        let (tx, invite) = new_request(&mut ep);
        let mut trying = Response::for_request(&invite, 100, "Trying");
        trying.headers.push("Server", "custom/1");
        ep.respond(t0, tx, trying);
        let mut request = bye();
        request.headers.push("User-Agent", "custom/2");
        ep.send_request(t0, peer(), request);
        let sent = transmits(&mut ep);
        assert_eq!(header_lines(&sent[0], "Server"), ["Server: custom/1"]);
        assert_eq!(
            header_lines(&sent[1], "User-Agent"),
            ["User-Agent: custom/2"]
        );
    }

    #[test]
    fn the_default_server_text_names_no_version() {
        assert_eq!(crate::sip::USER_AGENT, "helpline");
    }

    #[test]
    fn client_transaction_times_out_with_timer_f() {
        let t0 = Instant::now();
        let mut ep = endpoint();
        let tx = ep.send_request(t0, peer(), bye());
        assert!(transmits(&mut ep)[0].starts_with("BYE sip:caller@127.0.0.1:5092 SIP/2.0"));
        for _ in 0..100 {
            let Some(at) = ep.poll_timeout() else { break };
            ep.handle_timeout(at);
            transmits(&mut ep);
            if let Some(SipEvent::ClientTimeout { tx: t }) = ep.poll_event() {
                assert_eq!(t, tx);
                assert_eq!(at - t0, Duration::from_secs(32));
                return;
            }
        }
        panic!("Timer F never fired");
    }
}
