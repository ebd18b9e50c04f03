//! Typed transaction keys for matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3).
//!
//! The key is built from plain strings that the parser has already extracted (top Via branch and sent-by,
//! CSeq or request method); this module does not parse SIP. Requests whose branch lacks the RFC 3261 magic
//! cookie need the RFC 2543 matching rules of §17.2.3, which are not implemented here: callers can detect
//! them with [`TransactionKey::is_rfc3261`].

use std::fmt;

/// The RFC 3261 branch magic cookie (RFC 3261 §8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The method component of a transaction key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyMethod {
    /// INVITE, and ACK for a non-2xx final response, which matches its INVITE (RFC 3261 §17.2.3).
    Invite,
    /// CANCEL, which forms its own transaction with the same branch as the INVITE it cancels (§9.2).
    Cancel,
    /// Any other method, case-sensitive as SIP methods are (RFC 3261 §7.1).
    Other(String),
}

impl KeyMethod {
    /// Maps a request or CSeq method to its key method: ACK maps to INVITE (RFC 3261 §17.2.3).
    pub fn from_method(method: &str) -> Self {
        match method {
            "INVITE" | "ACK" => KeyMethod::Invite,
            "CANCEL" => KeyMethod::Cancel,
            other => KeyMethod::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for KeyMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMethod::Invite => f.write_str("INVITE"),
            KeyMethod::Cancel => f.write_str("CANCEL"),
            KeyMethod::Other(m) => f.write_str(m),
        }
    }
}

/// Identifies one transaction: branch + sent-by + method (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// The `branch` parameter of the top Via, compared exactly.
    pub branch: String,
    /// The sent-by (`host[:port]`) of the top Via; the host part is lower-cased because hosts compare
    /// case-insensitively (RFC 3261 §19.1.4). Empty for client keys, whose Via we wrote ourselves.
    pub sent_by: String,
    /// The method, with ACK folded into INVITE.
    pub method: KeyMethod,
}

impl TransactionKey {
    /// Key of a server transaction for a received request (RFC 3261 §17.2.3): the request's top Via branch
    /// and sent-by, and its method (`"ACK"` yields the INVITE key so a non-2xx ACK finds its transaction).
    pub fn server(branch: &str, sent_by: &str, method: &str) -> Self {
        Self {
            branch: branch.to_owned(),
            sent_by: sent_by.to_ascii_lowercase(),
            method: KeyMethod::from_method(method),
        }
    }

    /// Key of a client transaction for a received response (RFC 3261 §17.1.3): the top Via branch and the
    /// CSeq method. The sent-by is left empty because the top Via is ours.
    pub fn client(branch: &str, cseq_method: &str) -> Self {
        Self {
            branch: branch.to_owned(),
            sent_by: String::new(),
            method: KeyMethod::from_method(cseq_method),
        }
    }

    /// Whether the branch carries the RFC 3261 magic cookie, i.e. whether this key alone identifies the
    /// transaction (RFC 3261 §17.2.3; older clients need the §17.2.3 fallback rules instead).
    pub fn is_rfc3261(&self) -> bool {
        self.branch.starts_with(MAGIC_COOKIE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_matches_invite_and_cancel_does_not() {
        let invite = TransactionKey::server("z9hG4bK776", "Caller.Example:5060", "INVITE");
        let ack = TransactionKey::server("z9hG4bK776", "caller.example:5060", "ACK");
        let cancel = TransactionKey::server("z9hG4bK776", "caller.example:5060", "CANCEL");
        assert_eq!(invite, ack);
        assert_ne!(invite, cancel);
        assert_eq!(cancel.method, KeyMethod::Cancel);
        assert!(invite.is_rfc3261());
    }

    #[test]
    fn other_methods_are_case_sensitive_and_keep_their_name() {
        let bye = TransactionKey::server("z9hG4bK1", "h", "BYE");
        let odd = TransactionKey::server("z9hG4bK1", "h", "bye");
        assert_ne!(bye, odd);
        assert_eq!(bye.method.to_string(), "BYE");
        assert!(!TransactionKey::client("abc", "OPTIONS").is_rfc3261());
    }
}
