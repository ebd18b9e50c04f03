//! Transport edge: turns socket bytes into SIP messages; only stream framing lives here so far (the
//! socket code arrives on another branch).

pub mod framing;
pub mod tcp;
