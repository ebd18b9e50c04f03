//! SIP (RFC 3261) protocol core: the message codec and the transaction layer; sans-IO, it never touches
//! sockets, files or the clock.

pub mod endpoint;
pub mod ids;
pub mod message;
pub mod reply;
pub mod transaction;

pub use ids::{Branch, CallId, Tag};
pub use reply::Reply;
