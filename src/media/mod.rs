//! Media for one call leg: G.711 prompts paced out as RTP, RTP in with DTMF detection; sans-IO, no sockets.
//!
//! [`session::MediaSession`] is the state machine the call drives; [`rtp`] reads and writes headers;
//! [`dtmf`] holds the three DTMF carriers and the merger; [`codec`] is G.711; [`bridge`] relays RTP
//! between the two legs of a bridged call. Sockets and pacing threads live in `server::media_engine`.

pub mod bridge;
pub mod codec;
pub mod dtmf;
pub mod rtcp;
pub mod rtp;
pub mod session;

/// Identifies one call's media session between the call layer (which assigns it) and the media engine
/// (which binds and paces what it is told); ids are never reused within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(pub u64);
