//! SDP (RFC 4566) session descriptions: parse, print, and the `SdpOffer`/`SdpAnswer` newtypes used by the
//! offer/answer model (RFC 3264), whose decisions live in [`negotiate()`] and its siblings.
//!
//! This module does not allocate RTP ports, open sockets or keep per-call state: the dialog layer hands it
//! the body of an INVITE/ACK and gets back a decision ([`AnswerPlan`]) plus the answer to send. Lines we do
//! not model (`i=`, `b=`, `t=`, `k=`, unknown letters, …) are kept verbatim so a description prints back
//! with nothing lost; printing always uses CRLF (RFC 4566 §5) while parsing also accepts bare LF.
//!
//! Deliberate limits, chosen for a telephony IVR: `c=` must carry an IP literal of the declared address
//! type (no FQDNs), the network type must be `IN`, and a media section may have at most one `c=` line
//! (layered multicast is out of scope). Each of those is reported as an [`SdpError`] rather than guessed.

mod negotiate;

pub use negotiate::{
    accept_answer, make_offer, negotiate, AnswerPlan, Codec, CodecName, MediaCaps, Negotiated,
};

use std::fmt;
use std::net::IpAddr;
use std::ops::Deref;

/// What went wrong with a session description or an offer/answer exchange.
///
/// Variants split by blame (as rustls does): the peer sent something malformed or broke the offer/answer
/// rules (`NotALine`, `Malformed`, `MissingLine`, `Duplicate`, `BadRtpmap`, `MediaCountMismatch`,
/// `CodecNotOffered`), or the peer's capabilities do not meet ours (`NoAudio`, `NoCommonTransport`,
/// `NoCommonCodec`, `AudioRejected`).
/// [`SdpError::status_code`] maps each to the SIP response a UAS sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A non-empty line does not have the `<type>=<value>` shape (RFC 4566 §5).
    #[error("line {line} is not a <type>=<value> line")]
    NotALine {
        /// 1-based line number in the body.
        line: usize,
    },
    /// A mandatory line is absent (`v=`, `o=`, `s=`, `m=`, or a `c=` for the stream we use).
    #[error("missing {0}= line")]
    MissingLine(char),
    /// A line that may appear once appeared twice.
    #[error("duplicate {kind}= line (line {line})")]
    Duplicate {
        /// The line type letter.
        kind: char,
        /// 1-based line number of the second occurrence.
        line: usize,
    },
    /// A known line type whose value does not follow the RFC 4566 grammar.
    #[error("malformed {kind}= line (line {line})")]
    Malformed {
        /// The line type letter (`v`, `o`, `c`, `m`).
        kind: char,
        /// 1-based line number.
        line: usize,
    },
    /// An `a=rtpmap:` attribute that is not `<pt> <name>/<rate>[/<params>]` (RFC 4566 §6).
    #[error("bad rtpmap (line {line})")]
    BadRtpmap {
        /// 1-based line number.
        line: usize,
    },
    /// The offer has no audio stream with a non-zero port.
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio was offered only over a transport we do not speak (e.g. `RTP/SAVP`).
    #[error("no common transport")]
    NoCommonTransport,
    /// No offered payload type is one of ours (PCMU/PCMA at 8000 Hz).
    #[error("no common codec")]
    NoCommonCodec,
    /// The answer's number of `m=` lines differs from our offer's (RFC 3264 §6).
    #[error("answer has {answer} m= lines, offer had {offer}")]
    MediaCountMismatch {
        /// `m=` lines in our offer.
        offer: usize,
        /// `m=` lines in the answer.
        answer: usize,
    },
    /// The answerer set our audio stream's port to zero.
    #[error("answerer rejected the audio stream")]
    AudioRejected,
    /// The answer picked a payload type we did not offer, or mapped it to another codec (RFC 3264 §6.1).
    #[error("answer chose payload type {0} which we did not offer")]
    CodecNotOffered(u8),
}

impl SdpError {
    /// The SIP status code a UAS answers an INVITE with when its SDP fails this way: `400` for a malformed
    /// body, `488 Not Acceptable Here` when the body is fine but nothing in it is usable (RFC 3261 §13.3.1.1).
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::NoAudio
            | SdpError::NoCommonTransport
            | SdpError::NoCommonCodec
            | SdpError::AudioRejected => 488,
            SdpError::NotALine { .. }
            | SdpError::MissingLine(_)
            | SdpError::Duplicate { .. }
            | SdpError::Malformed { .. }
            | SdpError::BadRtpmap { .. }
            | SdpError::MediaCountMismatch { .. }
            | SdpError::CodecNotOffered(_) => 400,
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1, RFC 4566 §6); absent means `SendRecv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`: media both ways.
    SendRecv,
    /// `a=sendonly`: the describing party only sends.
    SendOnly,
    /// `a=recvonly`: the describing party only receives.
    RecvOnly,
    /// `a=inactive`: no media either way.
    Inactive,
}

impl Direction {
    /// The attribute name as written in SDP (`sendrecv`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name; `None` for any other attribute.
    pub fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The mirror direction seen from the other side: what we answer to an offer with this direction.
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// This direction with sending removed (`sendrecv` → `recvonly`, `sendonly` → `inactive`).
    pub fn without_send(self) -> Self {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the describing party sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the describing party receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line kept verbatim because we do not model it (`i=`, `b=`, `t=`, unknown types…); `Display` prints the
/// whole line including its CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The type letter before `=`.
    pub kind: char,
    /// Everything after `=`.
    pub value: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}\r\n", self.kind, self.value)
    }
}

/// Address type of an `o=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddressType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "IP4" => Some(AddressType::Ip4),
            "IP6" => Some(AddressType::Ip6),
            _ => None,
        }
    }

    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressType::Ip4,
            IpAddr::V6(_) => AddressType::Ip6,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AddressType::Ip4 => "IP4",
            AddressType::Ip6 => "IP6",
        }
    }
}

/// The `o=` line (RFC 4566 §5.2). Network type is always `IN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name, `-` when there is none.
    pub username: String,
    /// Session id; kept as text because some UAs send numbers wider than 64 bits.
    pub session_id: String,
    /// Session version; RFC 3264 §8 requires it to grow by one with every changed offer or answer.
    pub session_version: u64,
    /// `IP4` or `IP6`.
    pub address_type: AddressType,
    /// Unicast address or host name of the originator (not used for media).
    pub address: String,
}

impl Origin {
    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = SdpError::Malformed { kind: 'o', line };
        let mut it = value.split_ascii_whitespace();
        let (Some(user), Some(id), Some(ver), Some(net), Some(addr_type), Some(addr), None) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            return Err(bad);
        };
        if net != "IN" {
            return Err(bad);
        }
        Ok(Origin {
            username: user.to_owned(),
            session_id: id.to_owned(),
            session_version: ver.parse().map_err(|_| bad.clone())?,
            address_type: AddressType::parse(addr_type).ok_or(bad)?,
            address: addr.to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "o={} {} {} IN {} {}\r\n",
            self.username,
            self.session_id,
            self.session_version,
            self.address_type.as_str(),
            self.address
        )
    }
}

/// A `c=` line (RFC 4566 §5.7): where media for a session or stream should be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection address; `0.0.0.0` / `::` mean "no address" (RFC 2543-style hold).
    pub address: IpAddr,
    /// The multicast `/ttl[/count]` suffix without the first slash, kept verbatim.
    pub multicast_suffix: Option<String>,
}

impl Connection {
    /// A unicast connection line for `address`.
    pub fn new(address: IpAddr) -> Self {
        Connection {
            address,
            multicast_suffix: None,
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = SdpError::Malformed { kind: 'c', line };
        let mut it = value.split_ascii_whitespace();
        let (Some("IN"), Some(addr_type), Some(addr), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad);
        };
        let addr_type = AddressType::parse(addr_type).ok_or(bad.clone())?;
        let (host, suffix) = match addr.split_once('/') {
            Some((h, s)) => (h, Some(s.to_owned())),
            None => (addr, None),
        };
        let address: IpAddr = host.parse().map_err(|_| bad.clone())?;
        if AddressType::of(address) != addr_type {
            return Err(bad);
        }
        Ok(Connection {
            address,
            multicast_suffix: suffix,
        })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c=IN {} {}",
            AddressType::of(self.address).as_str(),
            self.address
        )?;
        if let Some(s) = &self.multicast_suffix {
            write!(f, "/{s}")?;
        }
        f.write_str("\r\n")
    }
}

/// An `a=` line: `a=name` (property) or `a=name:value` (RFC 4566 §5.13); `Display` prints the whole line
/// including its CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Text before the first `:`.
    pub name: String,
    /// Text after the first `:`, if there was one.
    pub value: Option<String>,
}

impl Attribute {
    /// An attribute with a value, `a=name:value`.
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }

    /// A property attribute without a value, `a=name`.
    pub fn property(name: &str) -> Self {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let attr = match value.split_once(':') {
            Some((n, v)) => Attribute::new(n, v),
            None => Attribute::property(value),
        };
        // Validated at the edge so negotiation can trust every rtpmap it reads (RFC 4566 §6).
        if attr.name == "rtpmap" && attr.value.as_deref().and_then(Rtpmap::parse).is_none() {
            return Err(SdpError::BadRtpmap { line });
        }
        Ok(attr)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}\r\n", self.name, v),
            None => write!(f, "a={}\r\n", self.name),
        }
    }
}

/// A parsed `a=rtpmap:` value: `<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type (0–127).
    pub payload_type: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding_name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters (channel count for audio), if present.
    pub encoding_params: Option<String>,
}

impl Rtpmap {
    /// Parses an rtpmap value; `None` if it does not follow the grammar.
    pub fn parse(value: &str) -> Option<Self> {
        let mut it = value.split_ascii_whitespace();
        let (Some(pt), Some(enc), None) = (it.next(), it.next(), it.next()) else {
            return None;
        };
        let payload_type: u8 = pt.parse().ok().filter(|pt| *pt < 128)?;
        let mut parts = enc.splitn(3, '/');
        let name = parts.next().filter(|n| !n.is_empty())?;
        let clock_rate: u32 = parts.next()?.parse().ok()?;
        Some(Rtpmap {
            payload_type,
            encoding_name: name.to_owned(),
            clock_rate,
            encoding_params: parts.next().map(str::to_owned),
        })
    }
}

/// One media section: the `m=` line and everything up to the next `m=` (RFC 4566 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `video`, …).
    pub media: String,
    /// Transport port; 0 means the stream is rejected or disabled (RFC 3264 §6).
    pub port: u16,
    /// The `/<number of ports>` suffix, if any.
    pub port_count: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, …).
    pub proto: String,
    /// Media formats; RTP payload type numbers for RTP protocols.
    pub formats: Vec<String>,
    /// Media-level `c=`, overriding the session-level one.
    pub connection: Option<Connection>,
    /// Media-level attributes in order.
    pub attributes: Vec<Attribute>,
    /// Unmodelled lines that RFC 4566 places before `c=` (`i=`).
    lines_before_c: Vec<Line>,
    /// Other unmodelled lines (`b=`, `k=`, unknown types), printed after `c=`.
    lines_after_c: Vec<Line>,
}

impl MediaDescription {
    /// A media section with no connection line and no attributes.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> Self {
        MediaDescription {
            media: media.to_owned(),
            port,
            port_count: None,
            proto: proto.to_owned(),
            formats,
            connection: None,
            attributes: Vec::new(),
            lines_before_c: Vec::new(),
            lines_after_c: Vec::new(),
        }
    }

    fn parse(value: &str, line: usize) -> Result<Self, SdpError> {
        let bad = SdpError::Malformed { kind: 'm', line };
        let mut it = value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
            return Err(bad);
        };
        let (port, port_count) = match port.split_once('/') {
            Some((p, n)) => (p, Some(n.parse().map_err(|_| bad.clone())?)),
            None => (port, None),
        };
        let port: u16 = port.parse().map_err(|_| bad.clone())?;
        let formats: Vec<String> = it.map(str::to_owned).collect();
        // RFC 4566 §5.14 grammar: at least one <fmt>.
        if formats.is_empty() {
            return Err(bad);
        }
        let mut m = MediaDescription::new(media, port, proto, formats);
        m.port_count = port_count;
        Ok(m)
    }

    /// Unmodelled lines of this section, in print order.
    pub fn extra_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines_before_c.iter().chain(&self.lines_after_c)
    }

    /// Keeps an unmodelled line (`i=`, `b=`, …) in the position RFC 4566 gives its type.
    pub fn push_extra_line(&mut self, kind: char, value: impl Into<String>) {
        let line = Line {
            kind,
            value: value.into(),
        };
        if kind == 'i' {
            self.lines_before_c.push(line);
        } else {
            self.lines_after_c.push(line);
        }
    }

    /// The value of the first attribute called `name` that has a value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attribute(&self.attributes, name)
    }

    /// The direction attribute of this section, if any.
    pub fn direction(&self) -> Option<Direction> {
        find_direction(&self.attributes)
    }

    /// The rtpmap for `payload_type`, if the section has one.
    pub fn rtpmap(&self, payload_type: u8) -> Option<Rtpmap> {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| a.value.as_deref().and_then(Rtpmap::parse))
            .find(|r| r.payload_type == payload_type)
    }

    /// The format parameters (`a=fmtp:<pt> <params>`) for `payload_type`.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (pt, params) = v.split_once(' ')?;
                (pt.parse::<u8>().ok()? == payload_type).then(|| params.trim())
            })
    }

    /// The formats that are valid RTP payload type numbers, in offer (preference) order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        for l in &self.lines_before_c {
            l.fmt(f)?;
        }
        if let Some(c) = &self.connection {
            c.fmt(f)?;
        }
        for l in &self.lines_after_c {
            l.fmt(f)?;
        }
        for a in &self.attributes {
            a.fmt(f)?;
        }
        Ok(())
    }
}

fn find_attribute<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .filter(|a| a.name == name)
        .find_map(|a| a.value.as_deref())
}

fn find_direction(attrs: &[Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .filter(|a| a.value.is_none())
        .find_map(|a| Direction::from_attribute(&a.name))
}

/// A whole SDP body (RFC 4566 §5): session-level lines followed by media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` line.
    pub origin: Origin,
    /// `s=` value (may be `-` or a single space).
    pub session_name: String,
    /// Session-level `c=`, the default for media sections without their own.
    pub connection: Option<Connection>,
    /// Session-level attributes in order (they apply to every stream unless overridden).
    pub attributes: Vec<Attribute>,
    /// Media sections in order.
    pub media: Vec<MediaDescription>,
    /// Unmodelled lines that RFC 4566 places before `c=` (`i=`, `u=`, `e=`, `p=`).
    lines_before_c: Vec<Line>,
    /// Other unmodelled session lines (`b=`, `t=`, `r=`, `z=`, `k=`, unknown types).
    lines_after_c: Vec<Line>,
}

impl SessionDescription {
    /// A description with the mandatory lines and `t=0 0` (RFC 4566 §5.9: unbounded session), no media.
    pub fn new(origin: Origin, session_name: &str) -> Self {
        SessionDescription {
            origin,
            session_name: session_name.to_owned(),
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
            lines_before_c: Vec::new(),
            lines_after_c: vec![Line {
                kind: 't',
                value: "0 0".to_owned(),
            }],
        }
    }

    /// Parses an SDP body. Accepts CRLF or bare LF line ends and skips empty lines; keeps unknown lines.
    /// Session-level line order is not enforced; everything after the first `m=` belongs to media sections.
    ///
    /// Requires `v=0`, `o=`, `s=` and at least one `m=` (a helpline call without media is useless);
    /// `t=` is tolerated when missing because several SIP UAs omit it.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut version_seen = false;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut attributes = Vec::new();
        let mut lines_before_c = Vec::new();
        let mut lines_after_c = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            // RFC 4566 §5: `<type>=<value>`, where <type> is exactly one character.
            let (kind, value) = match raw.as_bytes() {
                [k, b'=', ..] if k.is_ascii_graphic() => {
                    (char::from(*k), raw.get(2..).unwrap_or_default())
                }
                _ => return Err(SdpError::NotALine { line }),
            };
            if kind == 'm' {
                media.push(MediaDescription::parse(value, line)?);
                continue;
            }
            if let Some(m) = media.last_mut() {
                match kind {
                    'c' => {
                        if m.connection.is_some() {
                            return Err(SdpError::Duplicate { kind, line });
                        }
                        m.connection = Some(Connection::parse(value, line)?);
                    }
                    'a' => m.attributes.push(Attribute::parse(value, line)?),
                    _ => m.push_extra_line(kind, value),
                }
                continue;
            }
            match kind {
                'v' => {
                    if version_seen {
                        return Err(SdpError::Duplicate { kind, line });
                    }
                    // RFC 4566 §5.1: the only version is 0.
                    if value != "0" {
                        return Err(SdpError::Malformed { kind, line });
                    }
                    version_seen = true;
                }
                'o' => {
                    if origin.is_some() {
                        return Err(SdpError::Duplicate { kind, line });
                    }
                    origin = Some(Origin::parse(value, line)?);
                }
                's' => {
                    if session_name.is_some() {
                        return Err(SdpError::Duplicate { kind, line });
                    }
                    session_name = Some(value.to_owned());
                }
                'c' => {
                    if connection.is_some() {
                        return Err(SdpError::Duplicate { kind, line });
                    }
                    connection = Some(Connection::parse(value, line)?);
                }
                'a' => attributes.push(Attribute::parse(value, line)?),
                'i' | 'u' | 'e' | 'p' => lines_before_c.push(Line {
                    kind,
                    value: value.to_owned(),
                }),
                _ => lines_after_c.push(Line {
                    kind,
                    value: value.to_owned(),
                }),
            }
        }

        if !version_seen {
            return Err(SdpError::MissingLine('v'));
        }
        let origin = origin.ok_or(SdpError::MissingLine('o'))?;
        let session_name = session_name.ok_or(SdpError::MissingLine('s'))?;
        if media.is_empty() {
            return Err(SdpError::MissingLine('m'));
        }
        Ok(SessionDescription {
            origin,
            session_name,
            connection,
            attributes,
            media,
            lines_before_c,
            lines_after_c,
        })
    }

    /// Unmodelled session-level lines, in print order.
    pub fn extra_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines_before_c.iter().chain(&self.lines_after_c)
    }

    /// Keeps an unmodelled session-level line in the position RFC 4566 §5 gives its type.
    pub fn push_extra_line(&mut self, kind: char, value: impl Into<String>) {
        let line = Line {
            kind,
            value: value.into(),
        };
        if matches!(kind, 'i' | 'u' | 'e' | 'p') {
            self.lines_before_c.push(line);
        } else {
            self.lines_after_c.push(line);
        }
    }

    /// The value of the first session-level attribute called `name` that has a value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        find_attribute(&self.attributes, name)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        find_direction(&self.attributes)
    }

    /// The direction in force for `media`: its own attribute, else the session's, else `sendrecv`
    /// (RFC 3264 §5.1 default).
    pub fn effective_direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction()
            .or_else(|| self.direction())
            .unwrap_or(Direction::SendRecv)
    }

    /// The connection in force for `media`: its own `c=`, else the session's (RFC 4566 §5.7).
    pub fn effective_connection<'a>(
        &'a self,
        media: &'a MediaDescription,
    ) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }
}

impl fmt::Display for SessionDescription {
    /// Prints in RFC 4566 §5 order with CRLF line ends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        self.origin.fmt(f)?;
        write!(f, "s={}\r\n", self.session_name)?;
        for l in &self.lines_before_c {
            l.fmt(f)?;
        }
        if let Some(c) = &self.connection {
            c.fmt(f)?;
        }
        for l in &self.lines_after_c {
            l.fmt(f)?;
        }
        for a in &self.attributes {
            a.fmt(f)?;
        }
        for m in &self.media {
            m.fmt(f)?;
        }
        Ok(())
    }
}

/// A session description received or sent as an offer (RFC 3264 §4). A distinct type from [`SdpAnswer`]
/// so an answer can never be negotiated as if it were an offer:
///
/// ```compile_fail,E0308
/// use helpline::sdp::{negotiate, MediaCaps, SdpAnswer};
/// fn renegotiate(answer: &SdpAnswer) {
///     let _ = negotiate(answer, &MediaCaps::default()); // expected `&SdpOffer`, found `&SdpAnswer`
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer(SessionDescription);

/// A session description sent or received as an answer (RFC 3264 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpAnswer(SessionDescription);

macro_rules! sdp_newtype {
    ($t:ident, $role:literal) => {
        impl $t {
            #[doc = concat!("Treats `sdp` as ", $role, ".")]
            pub fn new(sdp: SessionDescription) -> Self {
                $t(sdp)
            }

            #[doc = concat!("Parses a body that the exchange says is ", $role, ".")]
            pub fn from_sdp_string(text: &str) -> Result<Self, SdpError> {
                SessionDescription::parse(text).map($t)
            }

            /// Prints the body with CRLF line ends, ready for a SIP message.
            pub fn to_sdp_string(&self) -> String {
                self.0.to_string()
            }

            /// The underlying description.
            pub fn into_inner(self) -> SessionDescription {
                self.0
            }
        }

        impl Deref for $t {
            type Target = SessionDescription;
            fn deref(&self) -> &SessionDescription {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

sdp_newtype!(SdpOffer, "an offer");
sdp_newtype!(SdpAnswer, "an answer");

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const FULL: &str = "v=0\r\n\
        o=alice 2890844526 2890844527 IN IP4 host.example.com\r\n\
        s=-\r\n\
        i=call about an order\r\n\
        c=IN IP4 192.0.2.10\r\n\
        b=AS:64\r\n\
        t=0 0\r\n\
        a=sendrecv\r\n\
        m=audio 49170 RTP/AVP 0 8 97 101\r\n\
        i=voice\r\n\
        c=IN IP4 192.0.2.11\r\n\
        b=AS:80\r\n\
        a=rtpmap:97 iLBC/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=ptime:20\r\n\
        m=video 51372/2 RTP/AVP 31\r\n\
        a=rtpmap:31 H261/90000\r\n";

    #[test]
    fn full_description_parses_into_fields() {
        let sd = SessionDescription::parse(FULL).unwrap();
        assert_eq!(sd.origin.username, "alice");
        assert_eq!(sd.origin.session_version, 2890844527);
        assert_eq!(sd.origin.address, "host.example.com");
        assert_eq!(sd.connection, Some(Connection::new([192, 0, 2, 10].into())));
        assert_eq!(sd.direction(), Some(Direction::SendRecv));
        assert_eq!(sd.media.len(), 2);
        let audio = &sd.media[0];
        assert_eq!(audio.port, 49170);
        assert_eq!(audio.payload_types().collect::<Vec<_>>(), [0, 8, 97, 101]);
        assert_eq!(audio.fmtp(101), Some("0-15"));
        assert_eq!(audio.attribute("ptime"), Some("20"));
        assert_eq!(audio.rtpmap(97).unwrap().encoding_name, "iLBC");
        assert_eq!(sd.media[1].port_count, Some(2));
        let kinds: String = sd.extra_lines().map(|l| l.kind).collect();
        assert_eq!(kinds, "ibt");
    }

    #[test]
    fn print_reproduces_canonical_input_byte_for_byte() {
        let sd = SessionDescription::parse(FULL).unwrap();
        assert_eq!(sd.to_string(), FULL);
    }

    #[test]
    fn lf_only_input_parses_and_prints_with_crlf() {
        let lf = FULL.replace("\r\n", "\n");
        let sd = SessionDescription::parse(&lf).unwrap();
        assert_eq!(sd.to_string(), FULL);
    }

    #[test]
    fn unknown_lines_are_kept_and_reprinted() {
        let text = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=x\ny=private extension\nt=0 0\nm=audio 4000 RTP/AVP 0\nq=odd\n";
        let sd = SessionDescription::parse(text).unwrap();
        let printed = sd.to_string();
        assert!(printed.contains("y=private extension\r\n"));
        assert!(printed.contains("q=odd\r\n"));
        assert_eq!(SessionDescription::parse(&printed).unwrap(), sd);
    }

    #[test]
    fn out_of_order_extra_lines_print_in_rfc_order_and_stay_stable() {
        let text = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=x\nt=0 0\ni=late info\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0\n";
        let sd = SessionDescription::parse(text).unwrap();
        let printed = sd.to_string();
        assert!(printed.find("i=late").unwrap() < printed.find("c=IN").unwrap());
        assert!(printed.find("c=IN").unwrap() < printed.find("t=0 0").unwrap());
        assert_eq!(SessionDescription::parse(&printed).unwrap(), sd);
    }

    #[test]
    fn ipv6_connection_round_trips() {
        let text = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        let sd = SessionDescription::parse(text).unwrap();
        assert_eq!(
            sd.connection.as_ref().unwrap().address,
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(sd.origin.address_type, AddressType::Ip6);
        assert!(sd.to_string().contains("c=IN IP6 2001:db8::5\r\n"));
    }

    #[test]
    fn multicast_suffix_is_kept() {
        let text = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 224.2.1.1/127/3\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
        let sd = SessionDescription::parse(text).unwrap();
        assert_eq!(
            sd.connection.as_ref().unwrap().multicast_suffix.as_deref(),
            Some("127/3")
        );
        assert!(sd.to_string().contains("c=IN IP4 224.2.1.1/127/3\r\n"));
    }

    fn err(text: &str) -> String {
        SessionDescription::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn malformed_inputs_name_the_fault() {
        let head = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\n";
        assert_eq!(err(head), "missing m= line");
        assert_eq!(
            err("o=- 1 1 IN IP4 10.0.0.1\ns=-\nm=audio 1 RTP/AVP 0\n"),
            "missing v= line"
        );
        assert_eq!(err("v=0\ns=-\nm=audio 1 RTP/AVP 0\n"), "missing o= line");
        assert_eq!(
            err("v=0\no=- 1 1 IN IP4 10.0.0.1\nm=audio 1 RTP/AVP 0\n"),
            "missing s= line"
        );
        assert_eq!(err("v=1\n"), "malformed v= line (line 1)");
        assert_eq!(
            err(&format!("{head}c=IN IP4 not-an-ip\nm=audio 1 RTP/AVP 0\n")),
            "malformed c= line (line 4)"
        );
        assert_eq!(
            err(&format!("{head}c=IN IP6 10.0.0.1\nm=audio 1 RTP/AVP 0\n")),
            "malformed c= line (line 4)"
        );
        assert_eq!(
            err(&format!("{head}m=audio port RTP/AVP 0\n")),
            "malformed m= line (line 4)"
        );
        assert_eq!(
            err(&format!("{head}m=audio 4000 RTP/AVP\n")),
            "malformed m= line (line 4)"
        );
        assert_eq!(
            err(&format!("{head}m=audio 70000 RTP/AVP 0\n")),
            "malformed m= line (line 4)"
        );
        assert_eq!(
            err(&format!("{head}m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU\n")),
            "bad rtpmap (line 5)"
        );
        assert_eq!(
            err(&format!(
                "{head}m=audio 4000 RTP/AVP 0\na=rtpmap:300 PCMU/8000\n"
            )),
            "bad rtpmap (line 5)"
        );
        assert_eq!(
            err("v=0\no=- 1 x IN IP4 10.0.0.1\ns=-\n"),
            "malformed o= line (line 2)"
        );
        assert_eq!(
            err("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nthis is not sdp\n"),
            "line 4 is not a <type>=<value> line"
        );
        assert_eq!(err("v=0\nv=0\n"), "duplicate v= line (line 2)");
    }

    #[test]
    fn error_status_codes_split_by_blame() {
        assert_eq!(SdpError::MissingLine('m').status_code(), 400);
        assert_eq!(SdpError::BadRtpmap { line: 3 }.status_code(), 400);
        assert_eq!(SdpError::NoCommonCodec.status_code(), 488);
        assert_eq!(SdpError::NoCommonTransport.status_code(), 488);
    }

    #[test]
    fn direction_helpers() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.without_send(), Direction::RecvOnly);
        assert_eq!(Direction::SendOnly.without_send(), Direction::Inactive);
        assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    }

    /// Seeded mutation fuzzing: parsing never panics, and whatever parses prints to something that parses
    /// back to the same value.
    #[test]
    fn mutated_inputs_never_panic_and_round_trip() {
        let seeds = [FULL, "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::\nt=0 0\nm=audio 4000 RTP/AVP 0 8 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\na=sendonly\n"];
        let alphabet = b"v=o sctma:/\r\n0123456789IP46N.-";
        let mut rng = SmallRng::seed_from_u64(0x5d9_0ffe);
        let mut parsed_ok = 0;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..rng.gen_range(1..6) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..5) {
                    0 => bytes[at] = rng.gen(),
                    1 => bytes[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    2 => {
                        bytes.remove(at);
                    }
                    3 => bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                    _ => bytes.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(sd) = SessionDescription::parse(&text) {
                parsed_ok += 1;
                let printed = sd.to_string();
                assert_eq!(
                    SessionDescription::parse(&printed).as_ref(),
                    Ok(&sd),
                    "round trip failed for {text:?}"
                );
            }
        }
        // Both outcomes must be exercised, or the test proves nothing.
        assert!(
            parsed_ok > 1_000 && parsed_ok < 20_000,
            "parsed_ok = {parsed_ok}"
        );
    }
}
