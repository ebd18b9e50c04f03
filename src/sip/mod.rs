//! SIP (RFC 3261) protocol core: the message codec and the transaction layer; sans-IO, it never touches
//! sockets, files or the clock.

pub mod message;
pub mod transaction;
