//! Trace containers: pcap (both byte orders, micro- and nanosecond) and pcapng (each section's byte order,
//! several interfaces with their own link type, `if_tsresol` and `if_tsoffset`; EPB, SPB and the obsolete
//! PB; other blocks skipped) into timestamped link-layer frames. It does not look inside the frames.
//!
//! pcap-file's slice parsers are used, not its Readers: its pcapng EPB timestamp assumes nanoseconds
//! (ignores `if_tsresol`) and its pcap packet check rejects `orig_len > snaplen`, so both are redone here.
use std::borrow::Cow;
use std::time::Duration;

use byteorder_slice::{BigEndian, ByteOrder, LittleEndian};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, RawBlock};
use pcap_file::{Endianness, PcapError, TsResolution};

use super::TraceError;

/// One captured link-layer frame.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// The frame's link type (LINKTYPE_* number).
    pub link: u32,
    /// The captured bytes, from the link-layer header on.
    pub data: Cow<'a, [u8]>,
}

/// True when the bytes start with a pcap magic number (either byte order, µs or ns).
pub(crate) fn is_pcap(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
        )
    )
}

/// True when the bytes start with a pcapng Section Header Block.
pub(crate) fn is_pcapng(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a][..])
}

/// Reads every packet record of a pcap file. A truncated last record ends the list; a broken header is
/// an error.
pub(crate) fn read_pcap(bytes: &[u8]) -> Result<Vec<Frame<'_>>, TraceError> {
    let (mut rest, parser) =
        PcapParser::new(bytes).map_err(|e| TraceError::Malformed(format!("pcap header: {e}")))?;
    let header = parser.header();
    // The upper bits of the link-type field carry FCS information (pcap-linktype(7)).
    let link = u32::from(header.datalink) & 0xffff;
    let mut frames = Vec::new();
    // Records after a broken one cannot be found again (pcap has no sync marker).
    while let Ok((next, raw)) = parser.next_raw_packet(rest) {
        let frac = match header.ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac).saturating_mul(1_000),
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        let ts = Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(frac);
        frames.push(Frame {
            ts,
            link,
            data: raw.data,
        });
        rest = next;
    }
    Ok(frames)
}

/// One pcapng interface: what its packets' link type and timestamps mean.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: u32,
    /// Timestamp units: 10^-n (`decimal`) or 2^-n seconds.
    resolution: u8,
    decimal: bool,
    offset_secs: u64,
}

impl Interface {
    fn from_block(idb: &InterfaceDescriptionBlock) -> Self {
        let mut iface = Interface {
            link: u32::from(idb.linktype) & 0xffff,
            resolution: 6,
            decimal: true,
            offset_secs: 0,
        };
        for option in &idb.options {
            match option {
                InterfaceDescriptionOption::IfTsResol(r) => {
                    iface.decimal = r & 0x80 == 0;
                    iface.resolution = r & 0x7f;
                }
                InterfaceDescriptionOption::IfTsOffset(o) => iface.offset_secs = *o,
                _ => {}
            }
        }
        iface
    }

    /// A raw timestamp (in this interface's units) as time since the epoch.
    fn time(&self, raw: u64) -> Duration {
        let raw = u128::from(raw);
        let nanos = if self.decimal {
            let exp = u32::from(self.resolution);
            if exp <= 9 {
                raw.saturating_mul(10u128.pow(9 - exp))
            } else {
                raw / 10u128.checked_pow(exp - 9).unwrap_or(u128::MAX)
            }
        } else {
            let shift = u32::from(self.resolution).min(127);
            raw.saturating_mul(1_000_000_000) >> shift
        };
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let sub = u32::try_from(nanos % 1_000_000_000).expect("a remainder of 10^9 fits in u32");
        Duration::new(secs.saturating_add(self.offset_secs), sub)
    }
}

/// Reads every packet block of a pcapng file (all sections). A damaged block whose framing is intact is
/// skipped; broken framing ends the list (blocks cannot be found again without it).
pub(crate) fn read_pcapng(bytes: &[u8]) -> Result<Vec<Frame<'_>>, TraceError> {
    let mut reader = NgReader {
        endianness: Endianness::Big,
        interfaces: Vec::new(),
        last_ts: Duration::ZERO,
        frames: Vec::new(),
    };
    let mut rest = bytes;
    let mut first = true;
    while !rest.is_empty() {
        let step = match reader.endianness {
            Endianness::Big => reader.block::<BigEndian>(rest),
            Endianness::Little => reader.block::<LittleEndian>(rest),
        };
        match step {
            Ok(next) => rest = next,
            Err(e) if first => {
                return Err(TraceError::Malformed(format!("pcapng section header: {e}")))
            }
            Err(_) => break,
        }
        first = false;
    }
    Ok(reader.frames)
}

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION: u32 = 1;

struct NgReader<'a> {
    endianness: Endianness,
    interfaces: Vec<Option<Interface>>,
    /// SPBs carry no timestamp: they get the previous packet's.
    last_ts: Duration,
    frames: Vec<Frame<'a>>,
}

impl<'a> NgReader<'a> {
    /// Reads one block; returns the bytes after it.
    fn block<B: ByteOrder>(&mut self, rest: &'a [u8]) -> Result<&'a [u8], PcapError> {
        let (next, raw) = RawBlock::from_slice::<B>(rest)?;
        let kind = raw.type_;
        match raw.try_into_block::<B>() {
            Ok(block) => self.take(block),
            // A section header we cannot read leaves the byte order unknown: give up there.
            Err(e) if kind == SECTION_HEADER => return Err(e),
            // Keep the numbering of the interfaces after a damaged one; its packets are skipped.
            Err(_) if kind == INTERFACE_DESCRIPTION => self.interfaces.push(None),
            Err(_) => {}
        }
        Ok(next)
    }

    fn take(&mut self, block: Block<'a>) {
        match block {
            Block::SectionHeader(shb) => {
                self.endianness = shb.endianness;
                self.interfaces.clear();
            }
            Block::InterfaceDescription(idb) => {
                self.interfaces.push(Some(Interface::from_block(&idb)))
            }
            Block::EnhancedPacket(epb) => {
                // pcap-file made a Duration of the raw count as if it were nanoseconds: undo that.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                self.push(
                    epb.interface_id as usize,
                    Some(raw),
                    epb.data,
                    epb.original_len,
                );
            }
            Block::Packet(pb) => self.push(
                usize::from(pb.interface_id),
                Some(pb.timestamp),
                pb.data,
                pb.original_len,
            ),
            Block::SimplePacket(spb) => self.push(0, None, spb.data, spb.original_len),
            _ => {}
        }
    }

    fn push(
        &mut self,
        interface: usize,
        raw_ts: Option<u64>,
        data: Cow<'a, [u8]>,
        original_len: u32,
    ) {
        let Some(Some(iface)) = self.interfaces.get(interface).copied() else {
            return;
        };
        let ts = raw_ts.map(|raw| iface.time(raw)).unwrap_or(self.last_ts);
        self.last_ts = ts;
        // An SPB's data runs to the end of its block, padding included.
        let data = match data {
            Cow::Borrowed(d) => Cow::Borrowed(&d[..d.len().min(original_len as usize)]),
            Cow::Owned(mut d) => {
                d.truncate(original_len as usize);
                Cow::Owned(d)
            }
        };
        self.frames.push(Frame {
            ts,
            link: iface.link,
            data,
        });
    }
}
