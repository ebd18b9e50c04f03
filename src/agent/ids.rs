//! Typed names of the agent layer: [`AgentId`] (an agent's SIP user and digest username) and
//! [`QueueName`] (`REGION.DEPARTMENT`). They check syntax only; whether a region or department exists
//! is `ivr::compile`'s business. Both serialize as their plain text (CDR, status JSON).
use std::borrow::Borrow;
use std::fmt;

use serde::{Serialize, Serializer};

/// Characters an agent ID may use: RFC 3261 §25.1 `unreserved` (alphanumerics and `-_.!~*'()`).
/// Escapes and the `user-unreserved` set (`&=+$,;?/`) are refused: clients escape them inconsistently,
/// and the ID must read the same in a To header, a digest username and an `htdigest` line.
pub fn is_valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c))
}

/// An agent: the user part its phone registers (`sip:ID@…`) and its digest username.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AgentId(String);

impl AgentId {
    /// The ID when it is a valid agent ID (see [`is_valid_agent_id`]).
    pub fn parse(id: &str) -> Option<AgentId> {
        is_valid_agent_id(id).then(|| AgentId(id.to_owned()))
    }

    /// Wraps an ID without checking it: for IDs that already passed [`AgentId::parse`] (the compiled
    /// menus) and for tests. Text from outside goes through `parse`.
    pub fn new(id: impl Into<String>) -> AgentId {
        AgentId(id.into())
    }

    /// The ID as written in the configuration and on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AgentId {
    /// Unchecked, like [`AgentId::new`].
    fn from(id: &str) -> AgentId {
        AgentId::new(id)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for AgentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A regional queue, `REGION.DEPARTMENT` (e.g. `europe.refunds`): where a `route` action sends a caller
/// and what an agent serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName {
    full: String,
    /// Byte index of the `.` between region and department.
    dot: usize,
}

impl QueueName {
    /// The queue of `department` in `region`.
    pub fn new(region: &str, department: &str) -> QueueName {
        QueueName {
            full: format!("{region}.{department}"),
            dot: region.len(),
        }
    }

    /// Splits `REGION.DEPARTMENT` at the first `.`; `None` unless both sides are non-empty.
    pub fn parse(text: &str) -> Option<QueueName> {
        let (region, department) = text.split_once('.')?;
        (!region.is_empty() && !department.is_empty()).then(|| QueueName::new(region, department))
    }

    /// A name without checking it (tests, names from the compiled menus): split at the first `.`;
    /// without one the whole name is the region and the department is empty.
    pub fn unchecked(text: &str) -> QueueName {
        QueueName {
            full: text.to_owned(),
            dot: text.find('.').unwrap_or(text.len()),
        }
    }

    /// The region part.
    pub fn region(&self) -> &str {
        &self.full[..self.dot]
    }

    /// The department part (empty for an [`QueueName::unchecked`] name without a dot).
    pub fn department(&self) -> &str {
        self.full.get(self.dot + 1..).unwrap_or("")
    }

    /// `REGION.DEPARTMENT`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl From<&str> for QueueName {
    /// Unchecked, like [`QueueName::unchecked`].
    fn from(text: &str) -> QueueName {
        QueueName::unchecked(text)
    }
}

impl Serialize for QueueName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_unreserved_characters_only() {
        for ok in ["alice", "agent-1001", "j.doe", "x_y", "A~*'()!"] {
            assert!(AgentId::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "a@b",
            "a;b",
            "a%20b",
            "a/b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(AgentId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn queue_names_split_at_the_first_dot() {
        let q = QueueName::parse("china.seller-disputes").unwrap();
        assert_eq!((q.region(), q.department()), ("china", "seller-disputes"));
        assert_eq!(q.to_string(), "china.seller-disputes");
        assert_eq!(q, QueueName::new("china", "seller-disputes"));
        for bad in ["china", ".tech", "china.", ""] {
            assert!(QueueName::parse(bad).is_none(), "{bad}");
        }
        let bare = QueueName::from("support");
        assert_eq!((bare.region(), bare.department()), ("support", ""));
        assert_eq!(QueueName::from("china.seller-disputes"), q);
        assert_eq!(
            serde_json::to_string(&(AgentId::from("a1"), q)).unwrap(),
            r#"["a1","china.seller-disputes"]"#
        );
    }
}
