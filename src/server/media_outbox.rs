//! One media session's outbox toward the signalling core: the events the bounded channel had no
//! room for wait here, in order, until it has; it does not decide which events a session emits
//! (`media::session` already limits keys and received-report statistics) nor touch the channel
//! itself (the engine passes a `try_send`).
//!
//! What waits, and how much (so a session's backlog is bounded whatever its peer sends):
//! * **Lifecycle events** (first RTP, prompt finished, RTP timeout, bind failed) are never dropped
//!   while fewer than [`LIFECYCLE_BACKLOG`] wait: they follow commands of the call (a play, a
//!   re-INVITE) or timers, not packets, so a session has only a handful at a time; past that (the
//!   core stuck for minutes) the newest is dropped and counted.
//! * **Statistics** (`Rtcp`): only the latest matters, so one waits at most; a newer one replaces it,
//!   its loss deltas added to the newer one's (each delta counts from the previous snapshot, so the sum
//!   is what the core would have counted from both).
//! * **Keys** wait up to [`KEY_BACKLOG`]; more are dropped and counted.
//!
//! Order is kept: an event is sent directly only when nothing of this session waits.
use std::collections::VecDeque;

use crate::media::session::MediaEvent;

/// Lifecycle events one session keeps while the channel is full.
pub const LIFECYCLE_BACKLOG: usize = 32;

/// Keys one session keeps while the channel is full.
pub const KEY_BACKLOG: usize = 16;

/// Why the channel did not take an event.
#[derive(Debug)]
pub enum Refused {
    /// No room now; the event comes back.
    Full(MediaEvent),
    /// The receiver is gone (shutdown): nothing will be read again.
    Closed,
}

/// What an outbox left out, since [`Outbox::take_shed`] was last asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxShed {
    /// Statistics events replaced by a newer one while waiting.
    pub stats_merged: u64,
    /// Keys dropped because [`KEY_BACKLOG`] were waiting.
    pub keys_dropped: u64,
    /// Lifecycle events dropped because [`LIFECYCLE_BACKLOG`] were waiting.
    pub lifecycle_dropped: u64,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Outbox {
    waiting: VecDeque<MediaEvent>,
    keys: usize,
    lifecycle: usize,
    closed: bool,
    shed: OutboxShed,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether anything waits for room in the channel.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Sends `event` (after everything waiting) or keeps it, by the rules of the module doc.
    pub fn offer(
        &mut self,
        event: MediaEvent,
        send: &mut impl FnMut(MediaEvent) -> Result<(), Refused>,
    ) {
        if self.closed {
            return;
        }
        if self.flush(send) {
            match send(event) {
                Ok(()) => {}
                Err(Refused::Full(event)) => self.keep(event),
                Err(Refused::Closed) => self.close(),
            }
        } else {
            self.keep(event);
        }
    }

    /// Sends what waits, oldest first, until the channel is full; true when nothing waits any more.
    pub fn flush(&mut self, send: &mut impl FnMut(MediaEvent) -> Result<(), Refused>) -> bool {
        while let Some(event) = self.waiting.pop_front() {
            let kind = Kind::of(&event);
            match send(event) {
                Ok(()) => self.forget(kind),
                Err(Refused::Full(event)) => {
                    self.waiting.push_front(event);
                    return false;
                }
                Err(Refused::Closed) => {
                    self.close();
                    return true;
                }
            }
        }
        true
    }

    /// What was left out since the last call; the counts start again from zero.
    pub fn take_shed(&mut self) -> OutboxShed {
        std::mem::take(&mut self.shed)
    }

    fn keep(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Rtcp(newer) => {
                let older = self.waiting.iter_mut().find_map(|e| match e {
                    MediaEvent::Rtcp(s) => Some(s),
                    _ => None,
                });
                match older {
                    Some(older) => {
                        let (lost, remote_lost) = (older.new_lost, older.new_remote_lost);
                        *older = newer;
                        older.new_lost = older.new_lost.saturating_add(lost);
                        older.new_remote_lost = older.new_remote_lost.saturating_add(remote_lost);
                        self.shed.stats_merged += 1;
                    }
                    None => self.waiting.push_back(MediaEvent::Rtcp(newer)),
                }
            }
            MediaEvent::Digit(_) if self.keys >= KEY_BACKLOG => self.shed.keys_dropped += 1,
            MediaEvent::Digit(_) => {
                self.keys += 1;
                self.waiting.push_back(event);
            }
            _ if self.lifecycle >= LIFECYCLE_BACKLOG => self.shed.lifecycle_dropped += 1,
            _ => {
                self.lifecycle += 1;
                self.waiting.push_back(event);
            }
        }
    }

    fn forget(&mut self, kind: Kind) {
        match kind {
            Kind::Key => self.keys = self.keys.saturating_sub(1),
            Kind::Lifecycle => self.lifecycle = self.lifecycle.saturating_sub(1),
            Kind::Stats => {}
        }
    }

    fn close(&mut self) {
        self.closed = true;
        self.waiting.clear();
        self.keys = 0;
        self.lifecycle = 0;
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Key,
    Stats,
    Lifecycle,
}

impl Kind {
    fn of(event: &MediaEvent) -> Kind {
        match event {
            MediaEvent::Digit(_) => Kind::Key,
            MediaEvent::Rtcp(_) => Kind::Stats,
            _ => Kind::Lifecycle,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::media::rtcp::{ReportCause, RtcpStats};
    use crate::media::session::{DetectedDigit, DigitMethod};

    /// A channel of `room` slots that the test empties by hand.
    struct Channel {
        room: usize,
        got: Vec<MediaEvent>,
        closed: bool,
    }

    impl Channel {
        fn new(room: usize) -> Self {
            Channel {
                room,
                got: Vec::new(),
                closed: false,
            }
        }

        fn send(&mut self) -> impl FnMut(MediaEvent) -> Result<(), Refused> + '_ {
            |e| {
                if self.closed {
                    Err(Refused::Closed)
                } else if self.got.len() >= self.room {
                    Err(Refused::Full(e))
                } else {
                    self.got.push(e);
                    Ok(())
                }
            }
        }

        /// The core reads everything: room again.
        fn drain(&mut self) -> Vec<MediaEvent> {
            std::mem::take(&mut self.got)
        }
    }

    /// One instant for every key, so that equal keys compare equal.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn key(c: char) -> MediaEvent {
        MediaEvent::Digit(DetectedDigit {
            digit: c,
            method: DigitMethod::Rfc4733,
            at: t0(),
        })
    }

    fn stats(reports: u32, new_lost: u64) -> MediaEvent {
        MediaEvent::Rtcp(RtcpStats {
            cause: ReportCause::Received,
            ssrc: 1,
            packets_sent: 0,
            packets_received: 0,
            lost: 0,
            jitter: 0,
            remote: None,
            rtt: None,
            reports_sent: 0,
            reports_received: reports,
            malformed: 0,
            new_lost,
            new_remote_lost: 0,
        })
    }

    fn first_rtp() -> MediaEvent {
        MediaEvent::FirstRtp {
            from: SocketAddr::from(([192, 0, 2, 1], 4000)),
        }
    }

    #[test]
    fn with_room_events_go_straight_through() {
        let mut ch = Channel::new(10);
        let mut out = Outbox::new();
        out.offer(first_rtp(), &mut ch.send());
        out.offer(key('1'), &mut ch.send());
        assert!(out.is_empty());
        assert_eq!(ch.drain(), vec![first_rtp(), key('1')]);
    }

    #[test]
    fn a_full_channel_keeps_lifecycle_events_and_order_and_bounds_keys_and_stats() {
        let mut ch = Channel::new(1);
        let mut out = Outbox::new();
        out.offer(key('0'), &mut ch.send()); // takes the one slot
        out.offer(first_rtp(), &mut ch.send());
        for i in 0..100 {
            out.offer(stats(i + 1, 1), &mut ch.send());
            out.offer(key('5'), &mut ch.send());
        }
        out.offer(MediaEvent::RtpTimeout, &mut ch.send());
        // FirstRtp, one merged statistics event, KEY_BACKLOG keys, the timeout.
        assert_eq!(out.len(), 1 + 1 + KEY_BACKLOG + 1);
        let shed = out.take_shed();
        assert_eq!(shed.stats_merged, 99);
        assert_eq!(shed.keys_dropped, 100 - KEY_BACKLOG as u64);
        assert_eq!(shed.lifecycle_dropped, 0);

        // The core reads one at a time; the outbox flushes into each slot freed, in order.
        let mut seen = ch.drain();
        while !out.is_empty() {
            out.flush(&mut ch.send());
            seen.extend(ch.drain());
        }
        assert_eq!(seen.first(), Some(&key('0')));
        assert_eq!(seen.get(1), Some(&first_rtp()));
        assert_eq!(seen.last(), Some(&MediaEvent::RtpTimeout));
        let merged: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Rtcp(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].reports_received, 100, "the latest figures");
        assert_eq!(merged[0].new_lost, 100, "every report's new loss, summed");
        let keys = seen.iter().filter(|e| matches!(e, MediaEvent::Digit(_)));
        assert_eq!(keys.count(), 1 + KEY_BACKLOG);
        // Room again: keys wait again up to the limit (the count went down as they left).
        out.offer(key('7'), &mut ch.send());
        assert_eq!(ch.drain(), vec![key('7')]);
    }

    #[test]
    fn lifecycle_events_are_bounded_too_and_counted() {
        let mut ch = Channel::new(0);
        let mut out = Outbox::new();
        for _ in 0..LIFECYCLE_BACKLOG + 3 {
            out.offer(MediaEvent::RtpTimeout, &mut ch.send());
        }
        assert_eq!(out.len(), LIFECYCLE_BACKLOG);
        assert_eq!(out.take_shed().lifecycle_dropped, 3);
    }

    #[test]
    fn a_closed_channel_drops_everything_and_keeps_nothing() {
        let mut ch = Channel::new(0);
        let mut out = Outbox::new();
        out.offer(first_rtp(), &mut ch.send());
        assert_eq!(out.len(), 1);
        ch.closed = true;
        assert!(out.flush(&mut ch.send()));
        out.offer(first_rtp(), &mut ch.send());
        assert!(out.is_empty());
    }
}
