//! Non-INVITE client transaction (RFC 3261 §17.1.2), used for BYE, CANCEL and OPTIONS sent to agents.
//!
//! It sends and retransmits a request that the TU has already serialised and classifies the status codes
//! of matching responses; it does not parse responses or build requests.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::timer::{Timer, TimerConfig, TimerTable};

/// States of the non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// The request was sent; no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing its retransmissions until Timer K.
    Completed,
    /// The transaction is over and can be dropped.
    Terminated,
}

/// Inputs to the non-INVITE client transaction.
#[derive(Debug, Clone)]
pub enum ClientNonInviteInput {
    /// A response matching this transaction arrived, with status `code`.
    Response {
        /// Status code of the response.
        code: u16,
    },
    /// The transport reported a fatal error sending the request.
    TransportError,
}

/// Events for the TU from the non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteEvent {
    /// A 1xx response arrived (RFC 3261 §17.1.2.2).
    Provisional(u16),
    /// The final response arrived; emitted once per transaction (RFC 3261 §17.1.2.2).
    Final(u16),
    /// Timer F fired without a final response (RFC 3261 §17.1.2.2).
    Timeout,
    /// The transport failed to deliver the request (RFC 3261 §17.1.2.2).
    TransportError,
}

/// The non-INVITE client transaction state machine; see the module documentation.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    request: Arc<[u8]>,
    /// Current Timer E interval.
    retransmit_interval: Duration,
    transmits: VecDeque<Arc<[u8]>>,
    events: VecDeque<ClientNonInviteEvent>,
}

impl ClientNonInvite {
    /// Creates the transaction in `Trying` and queues the request for transmission; arms Timer E (T1,
    /// unreliable transports only) and Timer F (64·T1) (RFC 3261 §17.1.2.2).
    pub fn new(now: Instant, cfg: TimerConfig, reliable: bool, request: Arc<[u8]>) -> Self {
        let mut timers = TimerTable::default();
        // RFC 3261 §17.1.2.2: for an unreliable transport Timer E MUST be set to fire in T1 seconds.
        if !reliable {
            timers.set(Timer::E, now + cfg.t1);
        }
        // RFC 3261 §17.1.2.2: Timer F MUST be set to fire in 64·T1 seconds.
        timers.set(Timer::F, now + cfg.timeout());
        let mut transmits = VecDeque::new();
        transmits.push_back(request.clone());
        Self {
            state: ClientNonInviteState::Trying,
            cfg,
            reliable,
            timers,
            request,
            retransmit_interval: cfg.t1,
            transmits,
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Whether the transaction has ended and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// Next serialised message to hand to the transport.
    pub fn poll_transmit(&mut self) -> Option<Arc<[u8]>> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<ClientNonInviteEvent> {
        self.events.pop_front()
    }

    /// Earliest instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Fires every timer due at `now`; a call with nothing due is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientNonInviteState as S;
        while let Some(timer) = self.timers.pop_expired(now) {
            match (self.state, timer) {
                // RFC 3261 §17.1.2.2: Timer E in Trying retransmits and resets to MIN(2·interval, T2).
                (S::Trying, Timer::E) => {
                    self.transmits.push_back(self.request.clone());
                    self.retransmit_interval = self.cfg.backoff_capped(self.retransmit_interval);
                    self.timers.set(Timer::E, now + self.retransmit_interval);
                }
                // RFC 3261 §17.1.2.2: Timer E in Proceeding retransmits and resets to T2.
                (S::Proceeding, Timer::E) => {
                    self.transmits.push_back(self.request.clone());
                    self.retransmit_interval = self.cfg.t2;
                    self.timers.set(Timer::E, now + self.retransmit_interval);
                }
                // RFC 3261 §17.1.2.2: Timer F in Trying or Proceeding — inform the TU of the timeout and
                // enter Terminated.
                (S::Trying, Timer::F) | (S::Proceeding, Timer::F) => {
                    self.events.push_back(ClientNonInviteEvent::Timeout);
                    self.terminate();
                }
                // RFC 3261 §17.1.2.2: Timer K in Completed — the transaction MUST enter Terminated.
                (S::Completed, Timer::K) => self.terminate(),
                (state, timer) => {
                    debug!(
                        ?state,
                        ?timer,
                        "non-invite client transaction: stale timer ignored"
                    )
                }
            }
        }
    }

    /// Feeds one input to the transaction.
    pub fn handle(&mut self, now: Instant, input: ClientNonInviteInput) {
        use ClientNonInviteInput as In;
        use ClientNonInviteState as S;
        match (self.state, input) {
            // RFC 3261 §17.1.2.2: a provisional in Trying or Proceeding is passed to the TU and the
            // transaction moves to (or stays in) Proceeding; Timer E keeps running.
            (
                S::Trying,
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
                self.events
                    .push_back(ClientNonInviteEvent::Provisional(code));
                self.enter(S::Proceeding);
            }
            // RFC 3261 §17.1.2.2: a final in Trying or Proceeding is passed to the TU and the transaction
            // MUST enter Completed, starting Timer K (T4 unreliable, zero reliable).
            (
                S::Trying,
                In::Response {
                    code: code @ 200..=699,
                },
            )
            | (
                S::Proceeding,
                In::Response {
                    code: code @ 200..=699,
                },
            ) => {
                self.timers.stop_all();
                let wait = if self.reliable {
                    Duration::ZERO
                } else {
                    self.cfg.t4
                };
                self.timers.set(Timer::K, now + wait);
                self.events.push_back(ClientNonInviteEvent::Final(code));
                self.enter(S::Completed);
            }
            // RFC 3261 §17.1.2.2: response retransmissions in Completed are absorbed.
            (S::Completed, In::Response { .. }) => {}
            // RFC 3261 §17.1.2.2: a transport failure in Trying or Proceeding is reported to the TU and
            // the transaction enters Terminated.
            (S::Trying, In::TransportError) | (S::Proceeding, In::TransportError) => {
                self.events.push_back(ClientNonInviteEvent::TransportError);
                self.terminate();
            }
            (state, input) => {
                debug!(
                    ?state,
                    ?input,
                    "non-invite client transaction: input ignored in this state"
                )
            }
        }
    }

    fn enter(&mut self, next: ClientNonInviteState) {
        if next != self.state {
            debug!(from = ?self.state, to = ?next, "non-invite client transaction");
        }
        self.state = next;
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.enter(ClientNonInviteState::Terminated);
    }
}
