//! Link layers: strips Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked SLL and SLL2, raw IP and
//! BSD loopback/null headers down to the IP packet. It does not parse IP, and drops non-IP frames.

/// LINKTYPE_NULL: BSD loopback, 4-byte address family in the capturing host's byte order.
pub(crate) const NULL: u32 = 0;
/// LINKTYPE_ETHERNET.
pub(crate) const ETHERNET: u32 = 1;
/// LINKTYPE_RAW: a bare IPv4 or IPv6 packet.
pub(crate) const RAW: u32 = 101;
/// LINKTYPE_LOOP: OpenBSD loopback, address family in network byte order.
pub(crate) const LOOP: u32 = 108;
/// LINKTYPE_LINUX_SLL: Linux cooked capture v1 (`tcpdump -i any`, older tshark).
pub(crate) const LINUX_SLL: u32 = 113;
/// LINKTYPE_IPV4: a bare IPv4 packet.
pub(crate) const IPV4: u32 = 228;
/// LINKTYPE_IPV6: a bare IPv6 packet.
pub(crate) const IPV6: u32 = 229;
/// LINKTYPE_LINUX_SLL2: Linux cooked capture v2 (`tshark -i any` on newer systems).
pub(crate) const LINUX_SLL2: u32 = 276;
/// DLT_RAW as some BSDs number it in files (12 and 14 both mean raw IP).
const RAW_BSD: [u32; 2] = [12, 14];

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad and the old QinQ tag: 4 bytes (TCI, inner EtherType) each.
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// Whether the reader knows this link type.
pub(crate) fn is_known(link: u32) -> bool {
    matches!(
        link,
        NULL | ETHERNET | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2
    ) || RAW_BSD.contains(&link)
}

/// The IP packet inside a frame, or None for a non-IP, unknown or truncated frame.
pub(crate) fn ip_packet(link: u32, frame: &[u8]) -> Option<&[u8]> {
    let packet = match link {
        ETHERNET => ethernet(frame)?,
        LINUX_SLL => by_ethertype(
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]),
            frame.get(16..)?,
        )?,
        LINUX_SLL2 => by_ethertype(
            u16::from_be_bytes([*frame.first()?, *frame.get(1)?]),
            frame.get(20..)?,
        )?,
        NULL | LOOP => loopback(frame)?,
        RAW | IPV4 | IPV6 => frame,
        l if RAW_BSD.contains(&l) => frame,
        _ => return None,
    };
    let version = packet.first()? >> 4;
    match (link, version) {
        (IPV4, 4) | (IPV6, 6) => Some(packet),
        (IPV4 | IPV6, _) => None,
        (_, 4 | 6) => Some(packet),
        _ => None,
    }
}

fn ethernet(frame: &[u8]) -> Option<&[u8]> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut rest = frame.get(14..)?;
    // Bounded: a frame has room for only so many tags.
    while ETHERTYPE_VLAN.contains(&ethertype) {
        ethertype = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]);
        rest = rest.get(4..)?;
    }
    by_ethertype(ethertype, rest)
}

fn by_ethertype(ethertype: u16, payload: &[u8]) -> Option<&[u8]> {
    matches!(ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6).then_some(payload)
}

/// BSD loopback: the family is AF_INET (2) or AF_INET6 (24, 28 or 30 on the BSDs and macOS, 10 on
/// Linux), written in the capturing host's byte order (NULL) or network order (LOOP); both are accepted
/// for both, and the family must agree with the IP version.
fn loopback(frame: &[u8]) -> Option<&[u8]> {
    let family: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    let packet = frame.get(4..)?;
    let version = packet.first()? >> 4;
    let agrees = |f: u32| matches!((f, version), (2, 4) | (10 | 24 | 28 | 30, 6));
    (agrees(u32::from_le_bytes(family)) || agrees(u32::from_be_bytes(family))).then_some(packet)
}
