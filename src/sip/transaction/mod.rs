//! RFC 3261 §17 transactions (filled in on another branch).
