//! SIP (RFC 3261) protocol core: the message codec and the transaction layer; sans-IO, it never touches
//! sockets, files or the clock.

pub mod endpoint;
pub mod ids;
pub mod message;
pub mod reply;
pub mod transaction;
pub mod uas;

pub use ids::{Branch, CallId, Tag};
pub use reply::Reply;

/// What helpline calls itself in Server and User-Agent headers unless `serve --server-header` says
/// otherwise. No version: telling every peer the exact build only helps whoever looks for its bugs.
pub const USER_AGENT: &str = "helpline";
