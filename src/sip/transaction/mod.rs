//! RFC 3261 §17 transaction state machines (with the RFC 6026 `Accepted` correction), sans-IO.
//!
//! The machines are independent of the SIP message types: they store and retransmit messages that were
//! already serialised (`Arc<[u8]>`) and take status codes and small input enums, so they never parse,
//! build or route messages, never read the clock and never touch a socket. Matching a datagram to a
//! transaction ([`TransactionKey`]), building responses and ACKs, and gluing related transactions together
//! is the endpoint's and the TU's job.
//!
//! | machine | RFC | states | timers |
//! |---|---|---|---|
//! | [`ServerInvite`] | §17.2.1, RFC 6026 §7.1, §13.3.1.4 | Proceeding, Completed, Confirmed, Accepted, Terminated | G, H, I, L, 2xx retransmit |
//! | [`ServerNonInvite`] | §17.2.2 | Trying, Proceeding, Completed, Terminated | J |
//! | [`ClientInvite`] | §17.1.1, RFC 6026 §7.2 | Calling, Proceeding, Completed, Accepted, Terminated | A, B, D, M |
//! | [`ClientNonInvite`] | §17.1.2 | Trying, Proceeding, Completed, Terminated | E, F, K |
//!
//! Every machine has the same surface: `new(now, cfg, reliable, ..)`, `handle(now, input)`,
//! `handle_timeout(now)` (a spurious call is a no-op), `poll_transmit()`, `poll_event()`,
//! `poll_timeout()`, `state()` and `is_terminated()`. After any `handle*` call the driver drains
//! `poll_transmit` and `poll_event` and sleeps until `poll_timeout`. On reliable transports the
//! retransmit timers (A, E, G) are never started and the wait timers (D, I, J, K) are zero, i.e. due at
//! once (RFC 3261 Table 4); the 2xx retransmission of §13.3.1.4 runs on every transport, as that section
//! says.
//!
//! A CANCEL is its own server transaction ([`ServerNonInvite`], key method CANCEL): when a CANCEL races a
//! 200 for the INVITE, the endpoint answers the CANCEL 200 and leaves the INVITE transaction in
//! `Accepted`; when the CANCEL wins, the TU answers the INVITE with 487, moving it to `Completed`
//! (RFC 3261 §9.2). Neither machine knows about the other.

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
mod timer;

pub use client_invite::{ClientInvite, ClientInviteEvent, ClientInviteInput, ClientInviteState};
pub use client_non_invite::{
    ClientNonInvite, ClientNonInviteEvent, ClientNonInviteInput, ClientNonInviteState,
};
pub use key::{KeyMethod, Rfc2543Fields, TransactionKey, MAGIC_COOKIE};
pub use server_invite::{ServerInvite, ServerInviteEvent, ServerInviteInput, ServerInviteState};
pub use server_non_invite::{
    ServerNonInvite, ServerNonInviteEvent, ServerNonInviteInput, ServerNonInviteState,
};
pub use timer::{Timer, TimerConfig, TimerTable};

#[cfg(test)]
mod tests;
