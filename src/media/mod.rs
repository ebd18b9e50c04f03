//! Media for one call leg: G.711 prompts paced out as RTP, RTP in with DTMF detection; sans-IO, no sockets.
//!
//! [`session::MediaSession`] is the state machine the call drives; [`rtp`] reads and writes headers;
//! [`dtmf`] holds the three DTMF carriers and the merger; [`codec`] is G.711; [`bridge`] relays RTP
//! between the two legs of a bridged call. Sockets and pacing threads live in `server::media_engine`.

pub mod bridge;
pub mod codec;
pub mod dtmf;
pub mod rtp;
pub mod session;
