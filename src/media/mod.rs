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
///
/// The bits above [`MediaId::GROUP_SHIFT`] are the id's *group*: the call layer gives every session
/// of one call (its caller's, its agents') one group, and the media engine keeps a group on one media
/// thread, so that a bridge joins two sessions of one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(pub u64);

impl MediaId {
    /// Bits of an id below its group: 16 million sessions per call.
    pub const GROUP_SHIFT: u32 = 24;

    /// Session `n` of group `group`.
    pub fn in_group(group: u64, n: u32) -> MediaId {
        MediaId(group << Self::GROUP_SHIFT | u64::from(n & ((1 << Self::GROUP_SHIFT) - 1)))
    }

    /// The id's group (see the type's doc).
    pub fn group(self) -> u64 {
        self.0 >> Self::GROUP_SHIFT
    }

    /// The index within the group.
    pub fn index(self) -> u32 {
        (self.0 & ((1 << Self::GROUP_SHIFT) - 1)) as u32
    }
}
