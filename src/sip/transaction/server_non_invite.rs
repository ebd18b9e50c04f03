//! Non-INVITE server transaction (RFC 3261 §17.2.2), e.g. for BYE, CANCEL and OPTIONS from callers.
//!
//! It stores and resends responses that the TU has already serialised; it does not parse, build or route
//! messages, and it does not decide which responses to send.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::timer::{Timer, TimerConfig, TimerTable};

/// States of the non-INVITE server transaction (RFC 3261 Figure 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request was received; no response sent yet.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent; absorbing request retransmissions until Timer J.
    Completed,
    /// The transaction is over and can be dropped.
    Terminated,
}

/// Inputs to the non-INVITE server transaction.
#[derive(Debug, Clone)]
pub enum ServerNonInviteInput {
    /// A retransmission of the request matched this transaction.
    RequestRetransmit,
    /// The TU sends a 1xx response (serialised).
    TuProvisional(Arc<[u8]>),
    /// The TU sends a final response (serialised) with status `code` (200–699).
    TuFinal {
        /// Status code of the response.
        code: u16,
        /// The serialised response.
        bytes: Arc<[u8]>,
    },
    /// The transport reported a fatal error sending a response.
    TransportError,
}

/// Events for the TU from the non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteEvent {
    /// The transport failed to deliver a response (RFC 3261 §17.2.4).
    TransportError,
}

/// The non-INVITE server transaction state machine; see the module documentation.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    /// The most recent response, resent on request retransmissions.
    last_response: Option<Arc<[u8]>>,
    transmits: VecDeque<Arc<[u8]>>,
    events: VecDeque<ServerNonInviteEvent>,
}

impl ServerNonInvite {
    /// Creates the transaction for a newly received non-INVITE request, in `Trying`.
    pub fn new(_now: Instant, cfg: TimerConfig, reliable: bool) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            cfg,
            reliable,
            timers: TimerTable::default(),
            last_response: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// Next serialised message to hand to the transport.
    pub fn poll_transmit(&mut self) -> Option<Arc<[u8]>> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<ServerNonInviteEvent> {
        self.events.pop_front()
    }

    /// Earliest instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Fires every timer due at `now`; a call with nothing due is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match (self.state, timer) {
                // RFC 3261 §17.2.2: Timer J fires in Completed — the transaction MUST enter Terminated.
                (ServerNonInviteState::Completed, Timer::J) => self.terminate(),
                (state, timer) => {
                    debug!(
                        ?state,
                        ?timer,
                        "non-invite server transaction: stale timer ignored"
                    )
                }
            }
        }
    }

    /// Feeds one input to the transaction.
    pub fn handle(&mut self, now: Instant, input: ServerNonInviteInput) {
        use ServerNonInviteInput as In;
        use ServerNonInviteState as S;
        match (self.state, input) {
            // RFC 3261 §17.2.2: request retransmissions in Trying are discarded (nothing to resend yet).
            (S::Trying, In::RequestRetransmit) => {}
            // RFC 3261 §17.2.2: a provisional from the TU is sent and the transaction MUST enter
            // Proceeding; further provisionals in Proceeding are sent too.
            (S::Trying, In::TuProvisional(bytes)) | (S::Proceeding, In::TuProvisional(bytes)) => {
                self.send(bytes);
                self.enter(S::Proceeding);
            }
            // RFC 3261 §17.2.2: retransmissions in Proceeding resend the most recent provisional.
            (S::Proceeding, In::RequestRetransmit) => self.resend_last(),
            // RFC 3261 §17.2.2: a final from the TU in Trying or Proceeding is sent, the transaction MUST
            // enter Completed and start Timer J (64·T1 unreliable, zero reliable).
            (S::Trying, In::TuFinal { code, bytes })
            | (S::Proceeding, In::TuFinal { code, bytes })
                if (200..700).contains(&code) =>
            {
                self.send(bytes);
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.timeout()
                };
                self.timers.set(Timer::J, now + wait);
                self.enter(S::Completed);
            }
            // RFC 3261 §17.2.2: retransmissions in Completed resend the final response.
            (S::Completed, In::RequestRetransmit) => self.resend_last(),
            // RFC 3261 §17.2.2: a transport failure in Proceeding/Completed is reported to the TU and the
            // transaction MUST enter Terminated.
            (S::Proceeding, In::TransportError) | (S::Completed, In::TransportError) => {
                self.events.push_back(ServerNonInviteEvent::TransportError);
                self.terminate();
            }
            // RFC 3261 §17.2.2: other final responses in Completed MUST be discarded; the rest cannot happen.
            (state, input) => {
                let input = match input {
                    In::RequestRetransmit => "request retransmit",
                    In::TuProvisional(_) => "tu provisional",
                    In::TuFinal { .. } => "tu final",
                    In::TransportError => "transport error",
                };
                debug!(
                    ?state,
                    input, "non-invite server transaction: input ignored in this state"
                );
            }
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

    fn enter(&mut self, next: ServerNonInviteState) {
        if next != self.state {
            debug!(from = ?self.state, to = ?next, "non-invite server transaction");
        }
        self.state = next;
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.enter(ServerNonInviteState::Terminated);
    }
}
