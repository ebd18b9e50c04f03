//! Typed identifiers of SIP's own vocabulary (Call-ID, tags, branches), so a tag can never be passed where
//! a Call-ID is expected. They are opaque strings as received or generated; they do not validate syntax.
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value as received or generated.
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            /// The value as it goes on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the value is empty (an RFC 2543 peer may send no tag).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                $name(value.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

string_id!(
    /// A SIP Call-ID (RFC 3261 §8.1.1.4).
    CallId
);
string_id!(
    /// A From or To tag (RFC 3261 §19.3).
    Tag
);
string_id!(
    /// A Via branch (RFC 3261 §8.1.1.7); RFC 3261 ones start with `z9hG4bK`.
    Branch
);
