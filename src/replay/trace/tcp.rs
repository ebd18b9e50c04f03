//! TCP: per-direction stream reassembly by sequence number (out-of-order segments held, retransmitted and
//! overlapping bytes dropped, SYN restarts and RST ends a stream; FIN needs nothing: a partial message at the end is dropped) and SIP framing of each stream by
//! Content-Length. Bounded: segments held, bytes buffered and streams tracked. It does not check
//! checksums, windows or acknowledgements (a capture shows what was sent, not what was received).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::sip;

/// At most this many streams tracked; the least recently active is forgotten first.
const MAX_STREAMS: usize = 4096;
/// At most this many out-of-order segments held per stream.
const MAX_HELD_SEGMENTS: usize = 512;
/// At most this many bytes of out-of-order segments held per stream.
const MAX_HELD_BYTES: usize = 2 << 20;
/// A segment this far (or farther) ahead of the stream is taken as a stream we joined late.
const MAX_AHEAD: u32 = 16 << 20;
/// At most this many unframed bytes buffered per stream (one head plus the largest body).
const MAX_BUFFERED: usize = sip::MAX_BODY + 128 * 1024;

/// One TCP segment, as far as reassembly cares.
#[derive(Debug)]
pub(crate) struct Segment<'a> {
    pub seq: u32,
    pub syn: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

#[derive(Debug, Default)]
struct Stream {
    /// The sequence number of the next byte expected; None until the first segment.
    next: Option<u32>,
    /// Bytes in order, not yet framed into messages.
    buf: Vec<u8>,
    /// Segments ahead of `next`: (seq, bytes).
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
    last_seen: Duration,
}

/// Every TCP stream of a trace, one per direction.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    streams: HashMap<(SocketAddr, SocketAddr), Stream>,
}

impl Streams {
    /// Handles one segment from `from` to `to` captured at `ts`: the SIP messages it completes.
    pub(crate) fn handle(
        &mut self,
        ts: Duration,
        from: SocketAddr,
        to: SocketAddr,
        segment: &Segment,
    ) -> Vec<Vec<u8>> {
        let key = (from, to);
        if segment.rst {
            self.streams.remove(&key);
            return Vec::new();
        }
        if !self.streams.contains_key(&key) && self.streams.len() >= MAX_STREAMS {
            self.forget_oldest();
        }
        let stream = self.streams.entry(key).or_default();
        stream.last_seen = ts;
        let mut seq = segment.seq;
        if segment.syn {
            // A new connection on these addresses: what was buffered belonged to the old one.
            *stream = Stream {
                next: Some(seq.wrapping_add(1)),
                last_seen: ts,
                ..Stream::default()
            };
            seq = seq.wrapping_add(1);
        }
        if !segment.payload.is_empty() {
            stream.insert(seq, segment.payload);
        }
        stream.drain()
    }

    fn forget_oldest(&mut self) {
        if let Some(key) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| *k)
        {
            self.streams.remove(&key);
        }
    }
}

/// How far `seq` is ahead of `next` (negative: behind), modulo 2^32.
fn ahead(seq: u32, next: u32) -> i64 {
    i64::from(seq.wrapping_sub(next) as i32)
}

impl Stream {
    fn insert(&mut self, seq: u32, data: &[u8]) {
        let next = *self.next.get_or_insert(seq);
        let distance = ahead(seq, next);
        if distance > 0 && distance < i64::from(MAX_AHEAD) {
            self.hold(seq, data);
        } else if distance >= i64::from(MAX_AHEAD) || distance <= -i64::from(MAX_AHEAD) {
            // Not this stream's numbering (we joined late, or the capture lost a lot): start over here.
            self.restart(seq, data);
        } else {
            self.append(seq, data);
        }
        self.take_held();
    }

    /// Appends the part of a segment at or behind `next` that is new.
    fn append(&mut self, seq: u32, data: &[u8]) {
        let next = self.next.expect("append is called once next is known");
        let overlap = usize::try_from(-ahead(seq, next)).unwrap_or(0);
        if overlap >= data.len() {
            return; // a retransmission of bytes already taken
        }
        let fresh = &data[overlap..];
        self.buf.extend_from_slice(fresh);
        self.next = Some(next.wrapping_add(fresh.len() as u32));
        if self.buf.len() > MAX_BUFFERED {
            // No message is this big: what is buffered is not SIP.
            self.buf.clear();
        }
    }

    fn hold(&mut self, seq: u32, data: &[u8]) {
        if self.held.len() >= MAX_HELD_SEGMENTS || self.held_bytes + data.len() > MAX_HELD_BYTES {
            // The gap is not going to be filled (the capture lost it): skip over it. The message that
            // spanned it is lost; framing resynchronises on the next start line.
            self.skip_gap();
        }
        self.held_bytes += data.len();
        self.held.push((seq, data.to_vec()));
    }

    /// Moves `next` to the earliest held segment and drops the partial message before the gap.
    fn skip_gap(&mut self) {
        let Some(next) = self.next else { return };
        if let Some(earliest) = self
            .held
            .iter()
            .map(|(s, _)| *s)
            .min_by_key(|s| ahead(*s, next))
        {
            self.buf.clear();
            self.next = Some(earliest);
            self.take_held();
        }
    }

    fn restart(&mut self, seq: u32, data: &[u8]) {
        self.buf.clear();
        self.held.clear();
        self.held_bytes = 0;
        self.next = Some(seq);
        self.append(seq, data);
    }

    /// Appends held segments that the stream has now reached, in order.
    fn take_held(&mut self) {
        while let Some(next) = self.next {
            let Some(i) = self.held.iter().position(|(s, _)| ahead(*s, next) <= 0) else {
                break;
            };
            let (seq, data) = self.held.swap_remove(i);
            self.held_bytes -= data.len();
            self.append(seq, &data);
        }
    }

    /// The whole messages at the front of the buffer.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        sip::drain_messages(&mut self.buf)
    }
}
