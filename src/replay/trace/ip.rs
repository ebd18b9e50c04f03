//! IP: parses IPv4 and IPv6 headers (etherparse) and reassembles fragmented datagrams (IPv4 id/offset/MF,
//! the IPv6 fragment header), bounded in pending sets, bytes and capture time. It does not look at the
//! transport payload; damaged packets are dropped.
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{IpSlice, Ipv6ExtensionSlice};

/// At most this many datagrams waiting for fragments at once; the oldest is given up first.
const MAX_PENDING_SETS: usize = 256;
/// At most this many bytes of fragments held in all pending sets.
const MAX_PENDING_BYTES: usize = 8 << 20;
/// A datagram whose fragments have not all arrived this long (capture time) after its first is dropped.
const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reassembled payload (an IP datagram's length field is 16 bits).
const MAX_DATAGRAM: usize = 65_535;

/// One whole IP datagram's transport payload.
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number of the payload (17 UDP, 6 TCP).
    pub proto: u8,
    pub payload: Cow<'a, [u8]>,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

#[derive(Debug)]
struct FragSet {
    first_seen: Duration,
    /// (offset, bytes) in arrival order.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    bytes: usize,
}

impl FragSet {
    /// The reassembled payload, once fragments cover 0..total without a gap.
    fn assemble(&self) -> Option<Vec<u8>> {
        let total = self.total?;
        let mut spans: Vec<(usize, usize)> =
            self.pieces.iter().map(|(o, d)| (*o, o + d.len())).collect();
        spans.sort_unstable();
        let mut covered = 0;
        for (start, end) in spans {
            if start > covered {
                return None;
            }
            covered = covered.max(end);
        }
        if covered < total {
            return None;
        }
        let mut out = vec![0; total];
        // Overlaps (retransmitted or re-fragmented pieces): the later arrival wins.
        for (offset, data) in &self.pieces {
            let end = (offset + data.len()).min(total);
            if *offset < end {
                out[*offset..end].copy_from_slice(&data[..end - offset]);
            }
        }
        Some(out)
    }
}

/// IP parsing with fragment reassembly across packets.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    sets: HashMap<FragKey, FragSet>,
    bytes: usize,
}

/// What one IP packet said about fragmentation.
struct Fragment {
    id: u32,
    offset: usize,
    more: bool,
}

/// The IPv6 fragment header's fields (RFC 8200 4.5: bytes 2-3 are offset << 3 | M), read here because
/// etherparse 0.16 reads the offset and M bits in the wrong places (etherparse issue #150, fixed in 0.20).
/// None for an atomic fragment (offset 0, no more): that datagram is whole.
fn ipv6_fragment(header: &[u8]) -> Option<Fragment> {
    let word = u16::from_be_bytes([*header.get(2)?, *header.get(3)?]);
    let id = u32::from_be_bytes(header.get(4..8)?.try_into().ok()?);
    let (offset, more) = (usize::from(word & 0xfff8), word & 1 == 1);
    (offset != 0 || more).then_some(Fragment { id, offset, more })
}

impl Reassembler {
    /// Handles one IP packet captured at `ts`: the datagram it completes (itself when not fragmented).
    pub(crate) fn handle<'a>(&mut self, ts: Duration, packet: &'a [u8]) -> Option<Datagram<'a>> {
        let ip = IpSlice::from_slice(packet).ok()?;
        let (src, dst) = (ip.source_addr(), ip.destination_addr());
        let payload = ip.payload();
        let proto = payload.ip_number.0;
        let fragment = match &ip {
            IpSlice::Ipv4(v4) => {
                let h = v4.header();
                h.is_fragmenting_payload().then(|| Fragment {
                    id: u32::from(h.identification()),
                    offset: usize::from(h.fragments_offset().value()) * 8,
                    more: h.more_fragments(),
                })
            }
            IpSlice::Ipv6(v6) => v6
                .extensions()
                .clone()
                .into_iter()
                .find_map(|ext| match ext {
                    Ipv6ExtensionSlice::Fragment(f) => ipv6_fragment(f.slice()),
                    _ => None,
                }),
        };
        let Some(fragment) = fragment else {
            return Some(Datagram {
                src,
                dst,
                proto,
                payload: Cow::Borrowed(payload.payload),
            });
        };
        let key = FragKey {
            src,
            dst,
            proto,
            id: fragment.id,
        };
        let whole = self.add(ts, key, fragment, payload.payload)?;
        Some(Datagram {
            src,
            dst,
            proto,
            payload: Cow::Owned(whole),
        })
    }

    fn add(
        &mut self,
        ts: Duration,
        key: FragKey,
        fragment: Fragment,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        self.expire(ts);
        let end = fragment.offset + data.len();
        if end > MAX_DATAGRAM {
            self.remove(&key);
            return None;
        }
        let set = self.sets.entry(key).or_insert_with(|| FragSet {
            first_seen: ts,
            pieces: Vec::new(),
            total: None,
            bytes: 0,
        });
        set.pieces.push((fragment.offset, data.to_vec()));
        set.bytes += data.len();
        self.bytes += data.len();
        if !fragment.more {
            set.total = Some(end);
        }
        if let Some(whole) = set.assemble() {
            self.remove(&key);
            return Some(whole);
        }
        self.enforce_caps(&key);
        None
    }

    fn remove(&mut self, key: &FragKey) {
        if let Some(set) = self.sets.remove(key) {
            self.bytes -= set.bytes;
        }
    }

    /// Drops sets whose first fragment is older than the timeout.
    fn expire(&mut self, now: Duration) {
        let stale: Vec<FragKey> = self
            .sets
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.first_seen) > FRAGMENT_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.remove(&key);
        }
    }

    /// Over a cap, gives up the oldest sets other than the one just added to (then that one too).
    fn enforce_caps(&mut self, current: &FragKey) {
        while self.sets.len() > MAX_PENDING_SETS || self.bytes > MAX_PENDING_BYTES {
            let oldest = self
                .sets
                .iter()
                .filter(|(k, _)| *k != current || self.sets.len() == 1)
                .min_by_key(|(_, s)| s.first_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(key) => self.remove(&key),
                None => break,
            }
        }
    }

    /// How many datagrams wait for fragments (for tests of the bounds).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> (usize, usize) {
        (self.sets.len(), self.bytes)
    }
}
