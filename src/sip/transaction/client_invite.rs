//! INVITE client transaction (RFC 3261 §17.1.1 as corrected by RFC 6026 §7.2), used for calls to agents.
//!
//! It sends and retransmits an INVITE that the TU has already serialised and classifies the status codes
//! of matching responses; it does not parse responses or build the ACK. For a 300–699 final response it
//! asks the TU for the ACK bytes ([`ClientInviteEvent::NeedAck`]) because building the ACK needs the
//! response's To tag, which only the message layer can read (RFC 3261 §17.1.1.3).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::timer::{Timer, TimerConfig, TimerTable};

/// Timer D for unreliable transports: "at least 32 seconds" (RFC 3261 §17.1.1.2).
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// States of the INVITE client transaction (RFC 3261 Figure 5, RFC 6026 Figure 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// The INVITE was sent; no response yet.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300–699 final arrived; ACKing its retransmissions until Timer D.
    Completed,
    /// A 2xx arrived; passing 2xx retransmissions to the TU until Timer M (RFC 6026 §7.2).
    Accepted,
    /// The transaction is over and can be dropped.
    Terminated,
}

/// Inputs to the INVITE client transaction.
#[derive(Debug, Clone)]
pub enum ClientInviteInput {
    /// A response matching this transaction arrived, with status `code`.
    Response {
        /// Status code of the response.
        code: u16,
    },
    /// The transport reported a fatal error sending the request or the ACK.
    TransportError,
}

/// Events for the TU from the INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteEvent {
    /// A 1xx response arrived (every one is passed up, RFC 3261 §17.1.1.2).
    Provisional(u16),
    /// The first final response arrived (RFC 3261 §17.1.1.2); emitted once per transaction.
    Final(u16),
    /// Follows `Final` for a 300–699 response: the TU must build the ACK and call
    /// [`ClientInvite::set_ack`] (RFC 3261 §17.1.1.3).
    NeedAck(u16),
    /// A further 2xx arrived in Accepted (a retransmission or another fork); the TU re-sends its ACK
    /// (RFC 3261 §13.2.2.4, RFC 6026 §7.2).
    Retransmitted2xx(u16),
    /// Timer B fired without a final response (RFC 3261 §17.1.1.2).
    Timeout,
    /// The transport failed to deliver the request or the ACK (RFC 3261 §17.1.1.2).
    TransportError,
}

/// The INVITE client transaction state machine; see the module documentation.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    request: Arc<[u8]>,
    /// ACK for the non-2xx final, once the TU has supplied it.
    ack: Option<Arc<[u8]>>,
    /// Set on entering Completed until the TU supplies the ACK.
    awaiting_ack: bool,
    /// Current Timer A interval.
    retransmit_interval: Duration,
    transmits: VecDeque<Arc<[u8]>>,
    events: VecDeque<ClientInviteEvent>,
}

impl ClientInvite {
    /// Creates the transaction in `Calling` and queues the INVITE for transmission; arms Timer A (T1,
    /// unreliable transports only) and Timer B (64·T1) (RFC 3261 §17.1.1.2).
    pub fn new(now: Instant, cfg: TimerConfig, reliable: bool, request: Arc<[u8]>) -> Self {
        let mut timers = TimerTable::default();
        // RFC 3261 §17.1.1.2: for an unreliable transport the client transaction MUST start Timer A.
        if !reliable {
            timers.set(Timer::A, now + cfg.t1);
        }
        // RFC 3261 §17.1.1.2: for any transport the client transaction MUST start Timer B.
        timers.set(Timer::B, now + cfg.timeout());
        let mut transmits = VecDeque::new();
        transmits.push_back(request.clone());
        Self {
            state: ClientInviteState::Calling,
            cfg,
            reliable,
            timers,
            request,
            ack: None,
            awaiting_ack: false,
            retransmit_interval: cfg.t1,
            transmits,
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// Next serialised message to hand to the transport.
    pub fn poll_transmit(&mut self) -> Option<Arc<[u8]>> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<ClientInviteEvent> {
        self.events.pop_front()
    }

    /// Earliest instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Supplies the ACK for a 300–699 final after [`ClientInviteEvent::NeedAck`]. It is transmitted now
    /// and again for every retransmission of the final while `Completed` (RFC 3261 §17.1.1.2).
    ///
    /// On a reliable transport Timer D is zero, so the transaction may already be `Terminated` when the
    /// TU answers; the ACK is still sent once because §17.1.1.3 requires it for the final response.
    pub fn set_ack(&mut self, bytes: Arc<[u8]>) {
        if !self.awaiting_ack {
            debug!(state = ?self.state, "invite client transaction: ack supplied when none is needed, ignored");
            return;
        }
        self.awaiting_ack = false;
        self.ack = Some(bytes.clone());
        self.transmits.push_back(bytes);
    }

    /// Fires every timer due at `now`; a call with nothing due is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientInviteState as S;
        while let Some(timer) = self.timers.pop_expired(now) {
            match (self.state, timer) {
                // RFC 3261 §17.1.1.2: Timer A fires — retransmit the request and reset Timer A to twice
                // its previous value (no T2 cap for INVITE).
                (S::Calling, Timer::A) => {
                    self.transmits.push_back(self.request.clone());
                    self.retransmit_interval = self.retransmit_interval.saturating_mul(2);
                    self.timers.set(Timer::A, now + self.retransmit_interval);
                }
                // RFC 3261 §17.1.1.2: Timer B fires in Calling — inform the TU of the timeout; the
                // transaction MUST NOT generate an ACK and enters Terminated.
                (S::Calling, Timer::B) => {
                    self.events.push_back(ClientInviteEvent::Timeout);
                    self.terminate();
                }
                // RFC 3261 §17.1.1.2: Timer D fires in Completed — the transaction MUST enter Terminated.
                (S::Completed, Timer::D) => self.terminate(),
                // RFC 6026 §7.2: Timer M fires in Accepted — the transaction MUST enter Terminated.
                (S::Accepted, Timer::M) => self.terminate(),
                (state, timer) => {
                    debug!(
                        ?state,
                        ?timer,
                        "invite client transaction: stale timer ignored"
                    )
                }
            }
        }
    }

    /// Feeds one input to the transaction.
    pub fn handle(&mut self, now: Instant, input: ClientInviteInput) {
        use ClientInviteInput as In;
        use ClientInviteState as S;
        match (self.state, input) {
            // RFC 3261 §17.1.1.2: a provisional in Calling moves to Proceeding and is passed to the TU;
            // Timers A and B only run in Calling (Figure 5), so both stop: from here the TU bounds the
            // wait (e.g. by sending CANCEL).
            (
                S::Calling,
                In::Response {
                    code: code @ 100..=199,
                },
            )
            | (
                S::Proceeding,
                In::Response {
                    code: code @ 100..=199,
                },
            ) => {
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.events.push_back(ClientInviteEvent::Provisional(code));
                self.enter(S::Proceeding);
            }
            // RFC 6026 §7.2: a 2xx in Calling or Proceeding is passed to the TU and the transaction MUST
            // enter Accepted, starting Timer M (64·T1).
            (
                S::Calling,
                In::Response {
                    code: code @ 200..=299,
                },
            )
            | (
                S::Proceeding,
                In::Response {
                    code: code @ 200..=299,
                },
            ) => {
                self.timers.stop_all();
                self.timers.set(Timer::M, now + self.cfg.timeout());
                self.events.push_back(ClientInviteEvent::Final(code));
                self.enter(S::Accepted);
            }
            // RFC 3261 §17.1.1.2: a 300–699 in Calling or Proceeding MUST be passed to the TU, an ACK
            // generated, and the transaction enters Completed with Timer D (≥32 s unreliable, 0 reliable).
            (
                S::Calling,
                In::Response {
                    code: code @ 300..=699,
                },
            )
            | (
                S::Proceeding,
                In::Response {
                    code: code @ 300..=699,
                },
            ) => {
                self.timers.stop_all();
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    TIMER_D_UNRELIABLE
                };
                self.timers.set(Timer::D, now + wait);
                self.events.push_back(ClientInviteEvent::Final(code));
                self.events.push_back(ClientInviteEvent::NeedAck(code));
                self.awaiting_ack = true;
                self.enter(S::Completed);
            }
            // RFC 3261 §17.1.1.2: final retransmissions in Completed MUST cause the ACK to be re-passed to
            // the transport, and MUST NOT be passed up to the TU.
            (S::Completed, In::Response { code: 300..=699 }) => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
            }
            // RFC 6026 §7.2: any 2xx in Accepted MUST be passed up to the TU (it ACKs each one,
            // RFC 3261 §13.2.2.4).
            (
                S::Accepted,
                In::Response {
                    code: code @ 200..=299,
                },
            ) => {
                self.events
                    .push_back(ClientInviteEvent::Retransmitted2xx(code));
            }
            // RFC 3261 §17.1.1.2: a transport failure in Calling, or while sending the ACK in Completed,
            // is reported to the TU and the transaction enters Terminated.
            (S::Calling, In::TransportError) | (S::Completed, In::TransportError) => {
                self.events.push_back(ClientInviteEvent::TransportError);
                self.terminate();
            }
            (state, input) => {
                debug!(
                    ?state,
                    ?input,
                    "invite client transaction: input ignored in this state"
                )
            }
        }
    }

    fn enter(&mut self, next: ClientInviteState) {
        if next != self.state {
            debug!(from = ?self.state, to = ?next, "invite client transaction");
        }
        self.state = next;
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.enter(ClientInviteState::Terminated);
    }
}
