//! INVITE server transaction (RFC 3261 §17.2.1 as corrected by RFC 6026 §7.1), plus the UAS core's 2xx
//! retransmission (RFC 3261 §13.3.1.4).
//!
//! It stores and resends responses that the TU has already serialised; it does not parse, build or route
//! messages, and it does not decide which responses to send — the TU feeds them in, including `100 Trying`.
//!
//! The 2xx retransmission of §13.3.1.4 is the UAS core's duty, not the transaction's (RFC 6026 §7.1 says
//! the transaction "MUST NOT generate 2xx retransmissions on its own"). helpline places it here for
//! locality: the `Accepted` state lives exactly as long as the 2xx needs retransmitting (both end at
//! 64·T1), and it already holds the 2xx bytes. The timer is named [`Timer::Retransmit2xx`] so it is never
//! mistaken for a transaction timer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::timer::{Timer, TimerConfig, TimerTable};

/// States of the INVITE server transaction (RFC 3261 Figure 7, RFC 6026 Figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// The INVITE was received; provisional responses may be sent.
    Proceeding,
    /// A 300–699 final response was sent; waiting for the ACK.
    Completed,
    /// The ACK for the non-2xx final arrived; absorbing ACK retransmissions until Timer I.
    Confirmed,
    /// A 2xx was sent; absorbing INVITE retransmissions until Timer L (RFC 6026 §7.1).
    Accepted,
    /// The transaction is over and can be dropped.
    Terminated,
}

/// Inputs to the INVITE server transaction.
#[derive(Debug, Clone)]
pub enum ServerInviteInput {
    /// A retransmission of the INVITE matched this transaction.
    RequestRetransmit,
    /// An ACK matched this transaction (a non-2xx ACK by key, or a 2xx ACK routed here by the dialog).
    Ack,
    /// The TU sends a 1xx response (serialised).
    TuProvisional(Arc<[u8]>),
    /// The TU sends a final response (serialised) with status `code` (200–699).
    TuFinal {
        /// Status code of the response, which selects the Completed or Accepted branch.
        code: u16,
        /// The serialised response.
        bytes: Arc<[u8]>,
    },
    /// The transport reported a fatal error sending a response.
    TransportError,
}

/// Events for the TU from the INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteEvent {
    /// Timer H fired: no ACK arrived for the non-2xx final response (RFC 3261 §17.2.1).
    Timeout,
    /// The ACK for the 2xx arrived; 2xx retransmission stopped (RFC 3261 §13.3.1.4).
    AckReceived,
    /// 64·T1 passed without an ACK for the 2xx; the TU should end the session with BYE (§13.3.1.4).
    NoAck,
    /// The transport failed to deliver a response (RFC 3261 §17.2.4).
    TransportError,
}

/// The INVITE server transaction state machine; see the module documentation.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    /// The most recent provisional or final response, resent on INVITE retransmissions and by Timer G /
    /// the 2xx retransmission timer.
    last_response: Option<Arc<[u8]>>,
    /// Current interval of Timer G or of the 2xx retransmission.
    retransmit_interval: Duration,
    ack_received: bool,
    transmits: VecDeque<Arc<[u8]>>,
    events: VecDeque<ServerInviteEvent>,
}

impl ServerInvite {
    /// Creates the transaction for a newly received INVITE, in `Proceeding`. Nothing is queued: the TU
    /// sends `100 Trying` itself through [`ServerInviteInput::TuProvisional`].
    pub fn new(_now: Instant, cfg: TimerConfig, reliable: bool) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            cfg,
            reliable,
            timers: TimerTable::default(),
            last_response: None,
            retransmit_interval: cfg.t1,
            ack_received: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// Next serialised message to hand to the transport.
    pub fn poll_transmit(&mut self) -> Option<Arc<[u8]>> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<ServerInviteEvent> {
        self.events.pop_front()
    }

    /// Earliest instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Fires every timer due at `now`; a call with nothing due is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            self.on_timer(now, timer);
        }
    }

    /// Feeds one input to the transaction.
    pub fn handle(&mut self, now: Instant, input: ServerInviteInput) {
        use ServerInviteInput as In;
        use ServerInviteState as S;
        match (self.state, input) {
            // RFC 3261 §17.2.1: INVITE retransmissions in Proceeding resend the most recent provisional.
            (S::Proceeding, In::RequestRetransmit) => self.resend_last(),
            // RFC 3261 §17.2.1: provisional responses from the TU are passed to the transport.
            (S::Proceeding, In::TuProvisional(bytes)) => self.send(bytes),
            (S::Proceeding, In::TuFinal { code, bytes }) => self.on_final(now, code, bytes),
            // RFC 3261 §17.2.1: INVITE retransmissions in Completed resend the final response.
            (S::Completed, In::RequestRetransmit) => self.resend_last(),
            // RFC 3261 §17.2.1: an ACK in Completed MUST move to Confirmed; Timer G stops, Timer I starts
            // (T4 for unreliable transports, zero for reliable).
            (S::Completed, In::Ack) => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.timers.set(Timer::I, now + wait);
                // Confirmed absorbs retransmissions without answering: the response is not sent again.
                self.last_response = None;
                self.enter(S::Confirmed);
            }
            // RFC 3261 §17.2.1: further ACKs in Confirmed are absorbed without being passed to the TU.
            (S::Confirmed, In::Ack) | (S::Confirmed, In::RequestRetransmit) => {}
            // RFC 6026 §7.1: INVITE retransmissions in Accepted MUST NOT be passed to the TU.
            (S::Accepted, In::RequestRetransmit) => {}
            // RFC 6026 §7.1: an ACK in Accepted is passed to the TU; RFC 3261 §13.3.1.4: it stops the 2xx
            // retransmissions. ACK retransmissions (the UAC resends it on every 2xx) are absorbed here
            // because the TU needs to learn of the ACK only once.
            (S::Accepted, In::Ack) => {
                self.timers.stop(Timer::Retransmit2xx);
                // Nothing resends the 2xx once it is acknowledged (INVITE retransmissions are absorbed),
                // and the transaction lives on to Timer L (32 s): its bytes need not.
                self.last_response = None;
                if !self.ack_received {
                    self.ack_received = true;
                    self.events.push_back(ServerInviteEvent::AckReceived);
                }
            }
            // RFC 6026 §7.1: any 2xx passed from the TU in Accepted MUST be passed to the transport; it
            // also becomes the response that §13.3.1.4 retransmits.
            (S::Accepted, In::TuFinal { code, bytes }) if (200..300).contains(&code) => {
                self.send(bytes)
            }
            // RFC 3261 §17.2.4: a transport failure in Proceeding/Completed is reported to the TU and
            // the transaction terminates.
            (S::Proceeding, In::TransportError) | (S::Completed, In::TransportError) => {
                self.events.push_back(ServerInviteEvent::TransportError);
                self.terminate();
            }
            // RFC 6026 §7.1 keeps Accepted until Timer L so INVITE retransmissions stay absorbed; the TU
            // learns of the failure and resending the 2xx over a failed transport is pointless.
            (S::Accepted, In::TransportError) => {
                self.timers.stop(Timer::Retransmit2xx);
                self.events.push_back(ServerInviteEvent::TransportError);
            }
            (state, input) => ignore(state, &input),
        }
    }

    fn on_final(&mut self, now: Instant, code: u16, bytes: Arc<[u8]>) {
        match code {
            // RFC 6026 §7.1: a 2xx from the TU in Proceeding is sent and the transaction MUST enter
            // Accepted, starting Timer L (64·T1).
            200..=299 => {
                self.send(bytes);
                self.timers.set(Timer::L, now + self.cfg.timeout());
                // RFC 3261 §13.3.1.4: retransmit the 2xx starting at T1, doubling up to T2, until the ACK
                // arrives — "independent of whatever transport protocols are used", so also on TCP.
                self.retransmit_interval = self.cfg.t1;
                self.timers
                    .set(Timer::Retransmit2xx, now + self.retransmit_interval);
                self.enter(ServerInviteState::Accepted);
            }
            // RFC 3261 §17.2.1: a 300–699 from the TU is sent and the transaction MUST enter Completed;
            // Timer G (T1) only for unreliable transports, Timer H (64·T1) always.
            300..=699 => {
                self.send(bytes);
                if !self.reliable {
                    self.retransmit_interval = self.cfg.t1;
                    self.timers.set(Timer::G, now + self.retransmit_interval);
                }
                self.timers.set(Timer::H, now + self.cfg.timeout());
                self.enter(ServerInviteState::Completed);
            }
            _ => debug!(
                code,
                "invite server transaction: final response with non-final code ignored"
            ),
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        use ServerInviteState as S;
        match (self.state, timer) {
            // RFC 3261 §17.2.1: Timer G resends the final response; the interval doubles up to T2.
            (S::Completed, Timer::G) => {
                self.resend_last();
                self.retransmit_interval = self.cfg.backoff_capped(self.retransmit_interval);
                self.timers.set(Timer::G, now + self.retransmit_interval);
            }
            // RFC 3261 §17.2.1: Timer H fires in Completed — the transaction MUST enter Terminated and
            // inform the TU that the ACK never arrived.
            (S::Completed, Timer::H) => {
                self.events.push_back(ServerInviteEvent::Timeout);
                self.terminate();
            }
            // RFC 3261 §17.2.1: Timer I fires in Confirmed — the transaction MUST enter Terminated.
            (S::Confirmed, Timer::I) => self.terminate(),
            // RFC 3261 §13.3.1.4: resend the 2xx, doubling the interval up to T2.
            (S::Accepted, Timer::Retransmit2xx) => {
                self.resend_last();
                self.retransmit_interval = self.cfg.backoff_capped(self.retransmit_interval);
                self.timers
                    .set(Timer::Retransmit2xx, now + self.retransmit_interval);
            }
            // RFC 6026 §7.1: Timer L fires in Accepted — the transaction MUST enter Terminated. Timer L is
            // 64·T1 after the 2xx, the same span after which §13.3.1.4 gives up on the ACK, so the NoAck
            // verdict is taken here.
            (S::Accepted, Timer::L) => {
                if !self.ack_received {
                    self.events.push_back(ServerInviteEvent::NoAck);
                }
                self.terminate();
            }
            (state, timer) => debug!(
                ?state,
                ?timer,
                "invite server transaction: stale timer ignored"
            ),
        }
    }

    fn send(&mut self, bytes: Arc<[u8]>) {
        self.last_response = Some(bytes.clone());
        self.transmits.push_back(bytes);
    }

    fn resend_last(&mut self) {
        if let Some(bytes) = &self.last_response {
            self.transmits.push_back(bytes.clone());
        }
    }

    fn enter(&mut self, next: ServerInviteState) {
        debug!(from = ?self.state, to = ?next, "invite server transaction");
        self.state = next;
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.enter(ServerInviteState::Terminated);
    }
}

fn ignore(state: ServerInviteState, input: &ServerInviteInput) {
    let input = match input {
        ServerInviteInput::RequestRetransmit => "request retransmit",
        ServerInviteInput::Ack => "ack",
        ServerInviteInput::TuProvisional(_) => "tu provisional",
        ServerInviteInput::TuFinal { .. } => "tu final",
        ServerInviteInput::TransportError => "transport error",
    };
    debug!(
        ?state,
        input, "invite server transaction: input ignored in this state"
    );
}
