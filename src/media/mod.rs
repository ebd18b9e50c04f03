//! Media: G.711 codecs and DTMF detection for the caller's RTP stream.
//!
//! This module holds sans-IO signal processing only; it never touches sockets, files or the clock.

pub mod codec;
pub mod dtmf;
