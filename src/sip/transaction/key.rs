//! Typed transaction keys for matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3).
//!
//! The key is built from plain strings that the parser has already extracted (top Via branch and sent-by,
//! CSeq or request method); this module does not parse SIP. A request whose branch carries the RFC 3261
//! magic cookie is keyed by branch + sent-by + method; one without it (an RFC 2543 peer) is keyed by the
//! §17.2.3 backward-compatible fields in [`Rfc2543Fields`] instead, so such requests no longer all share
//! one empty branch. Comparing the fields is by equality of the normalised strings the endpoint extracts;
//! the full URI comparison rules of §19.1.4 are not implemented.

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

/// Identifies one transaction: branch + sent-by + method (RFC 3261 §17.2.3), plus the RFC 2543 fields
/// when the branch lacks the magic cookie.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// The `branch` parameter of the top Via, compared exactly.
    pub branch: String,
    /// The sent-by (`host[:port]`) of the top Via; the host part is lower-cased because hosts compare
    /// case-insensitively (RFC 3261 §19.1.4). Empty for client keys, whose Via we wrote ourselves.
    pub sent_by: String,
    /// The method, with ACK folded into INVITE.
    pub method: KeyMethod,
    /// The §17.2.3 fields of a request without the magic cookie; `None` for RFC 3261 keys.
    pub rfc2543: Option<Rfc2543Fields>,
}

/// What identifies the transaction of a request from an RFC 2543 peer (RFC 3261 §17.2.3): "the
/// Request-URI, To tag, From tag, Call-ID, CSeq, and top Via header field". The CSeq method is the
/// key's [`KeyMethod`] (so an ACK finds its INVITE by CSeq number alone, and a CANCEL looks its INVITE up
/// with [`TransactionKey::with_method`], §9.2). An empty tag stands for an absent one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Rfc2543Fields {
    /// The Request-URI with scheme and host lower-cased (they compare case-insensitively, §19.1.4).
    pub request_uri: String,
    /// The To tag. For the ACK of a non-2xx final response it is the tag of that response, so the
    /// endpoint registers the INVITE under the response's tag too (§17.2.3).
    pub to_tag: String,
    /// The From tag.
    pub from_tag: String,
    /// The Call-ID, compared exactly (§20.8).
    pub call_id: String,
    /// The CSeq number.
    pub cseq: u32,
    /// The whole top Via as received, normalised: sent-protocol and transport upper-cased, host
    /// lower-cased, port, and every parameter (names lower-cased, sorted), before the endpoint stamps
    /// `received`/`rport` on it.
    pub top_via: String,
}

impl TransactionKey {
    /// Key of a server transaction for a received request (RFC 3261 §17.2.3): the request's top Via branch
    /// and sent-by, and its method (`"ACK"` yields the INVITE key so a non-2xx ACK finds its transaction).
    pub fn server(branch: &str, sent_by: &str, method: &str) -> Self {
        Self {
            branch: branch.to_owned(),
            sent_by: sent_by.to_ascii_lowercase(),
            method: KeyMethod::from_method(method),
            rfc2543: None,
        }
    }

    /// Key of a server transaction for a received request whose branch lacks the magic cookie
    /// (RFC 3261 §17.2.3, backward compatibility with RFC 2543): the branch (possibly empty) and sent-by
    /// are kept as in [`TransactionKey::server`], and `fields` decide the match.
    pub fn server_rfc2543(
        branch: &str,
        sent_by: &str,
        method: &str,
        fields: Rfc2543Fields,
    ) -> Self {
        Self {
            rfc2543: Some(fields),
            ..Self::server(branch, sent_by, method)
        }
    }

    /// The same key for another method: what a CANCEL uses to find the INVITE it cancels (§9.2).
    pub fn with_method(&self, method: KeyMethod) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }

    /// The same RFC 2543 key with another To tag: the key under which the ACK of a non-2xx final response
    /// that added `tag` finds its INVITE (§17.2.3). `None` for RFC 3261 keys, which need no such alias.
    pub fn with_to_tag(&self, tag: &str) -> Option<Self> {
        let mut fields = self.rfc2543.clone()?;
        fields.to_tag = tag.to_owned();
        Some(Self {
            rfc2543: Some(fields),
            ..self.clone()
        })
    }

    /// Key of a client transaction for a received response (RFC 3261 §17.1.3): the top Via branch and the
    /// CSeq method. The sent-by is left empty because the top Via is ours.
    pub fn client(branch: &str, cseq_method: &str) -> Self {
        Self {
            branch: branch.to_owned(),
            sent_by: String::new(),
            method: KeyMethod::from_method(cseq_method),
            rfc2543: None,
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

    #[test]
    fn rfc2543_keys_differ_by_their_fields_and_alias_by_to_tag() {
        let fields = Rfc2543Fields {
            request_uri: "sip:1@h".into(),
            call_id: "c1".into(),
            cseq: 1,
            top_via: "SIP/2.0/UDP h:5060".into(),
            ..Rfc2543Fields::default()
        };
        let invite = TransactionKey::server_rfc2543("", "h:5060", "INVITE", fields.clone());
        let other = TransactionKey::server_rfc2543(
            "",
            "h:5060",
            "INVITE",
            Rfc2543Fields {
                call_id: "c2".into(),
                ..fields.clone()
            },
        );
        assert_ne!(invite, other, "same empty branch, different Call-ID");
        let ack = TransactionKey::server_rfc2543("", "h:5060", "ACK", fields.clone());
        assert_eq!(ack, invite, "ACK matches INVITE by CSeq number");
        let cancel = TransactionKey::server_rfc2543("", "h:5060", "CANCEL", fields.clone());
        assert_ne!(cancel, invite);
        assert_eq!(cancel.with_method(KeyMethod::Invite), invite);
        let tagged = invite.with_to_tag("srv").expect("an RFC 2543 key");
        assert_ne!(tagged, invite);
        assert_eq!(tagged.rfc2543.map(|f| f.to_tag), Some("srv".to_owned()));
        assert_eq!(
            TransactionKey::server("z9hG4bK1", "h", "INVITE").with_to_tag("srv"),
            None
        );
    }
}
