//! Just enough SIP for reading traces: recognising a message by its first line, the few headers that
//! group and frame messages (Call-ID, CSeq, Content-Length, Via, Contact, with compact forms), stream
//! framing by Content-Length, and the audio address of an SDP body. It does not validate messages: a
//! trace may hold anything, and the replay decides what to do with it.
use std::net::{IpAddr, SocketAddr};

/// Largest header section accepted when framing a stream; beyond it the bytes are not SIP.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted when framing a stream.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// The first line of a SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16 },
}

/// Parses a request line (`METHOD uri SIP/2.0`) or a status line (`SIP/2.0 NNN reason`).
pub(crate) fn start_line(line: &[u8]) -> Option<StartLine> {
    let line = std::str::from_utf8(line)
        .ok()?
        .trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ' ');
    let first = parts.next()?;
    let second = parts.next()?;
    if first.eq_ignore_ascii_case("SIP/2.0") {
        let code: u16 = second.parse().ok().filter(|c| (100..700).contains(c))?;
        return (second.len() == 3).then_some(StartLine::Response { code });
    }
    let version = parts.next()?;
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    };
    (is_token(first) && second.contains(':') && version.eq_ignore_ascii_case("SIP/2.0")).then(
        || StartLine::Request {
            method: first.to_string(),
            uri: second.to_string(),
        },
    )
}

/// Whether these bytes begin (after keep-alive CRLFs) with a SIP start line.
pub(crate) fn looks_like_sip(bytes: &[u8]) -> bool {
    let bytes = skip_crlf(bytes);
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len())
        .min(8 * 1024);
    start_line(&bytes[..end]).is_some()
}

fn skip_crlf(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// A parsed view of one SIP message.
#[derive(Clone, Debug)]
pub(crate) struct Message<'a> {
    pub start: StartLine,
    /// Header lines (name, value), folded continuation lines joined.
    headers: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

/// Long and compact names of the headers the reader looks at.
const COMPACT: [(&str, &str); 6] = [
    ("call-id", "i"),
    ("content-length", "l"),
    ("via", "v"),
    ("contact", "m"),
    ("from", "f"),
    ("to", "t"),
];

impl<'a> Message<'a> {
    /// Parses a whole message (head and body); None when its first line is not SIP.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let bytes = skip_crlf(bytes);
        let (head_len, body_start) = head_end(bytes).unwrap_or((bytes.len(), bytes.len()));
        let head = std::str::from_utf8(&bytes[..head_len]).ok()?;
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let start = start_line(lines.next()?.as_bytes())?;
        let mut headers: Vec<(&str, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim(), value.trim().to_string()));
            }
        }
        let mut message = Message {
            start,
            headers,
            body: &bytes[body_start..],
        };
        // UDP: bytes past Content-Length are not part of the message (RFC 3261 18.3).
        if let Some(len) = message.content_length() {
            message.body = &message.body[..len.min(message.body.len())];
        }
        Some(message)
    }

    /// The first value of a header, by its long name (lowercase) or its compact form.
    pub(crate) fn header<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        self.headers(name).next()
    }

    /// Every value of a header, in order (a header line with commas stays one value).
    pub(crate) fn headers<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let compact = COMPACT
            .iter()
            .find(|(long, _)| *long == name)
            .map(|(_, c)| *c);
        self.headers
            .iter()
            .filter(move |(n, _)| {
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn call_id(&self) -> Option<&str> {
        self.header("call-id").filter(|v| !v.is_empty())
    }

    /// The CSeq method (`INVITE` of `CSeq: 1 INVITE`).
    pub(crate) fn cseq_method(&self) -> Option<&str> {
        self.header("cseq")?.split_whitespace().nth(1)
    }

    pub(crate) fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.trim().parse().ok()
    }

    pub(crate) fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub(crate) fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The sent-by of the top Via (`SIP/2.0/UDP host:port;...`), as an address when it is an IP literal.
    /// `received`/`rport` parameters, when present with values, override it (RFC 3261 18.2.1, RFC 3581).
    pub(crate) fn via_sent_by(&self) -> Option<SocketAddr> {
        let via = self.header("via")?.split(',').next()?;
        let (proto, rest) = via.trim().split_once(char::is_whitespace)?;
        let default_port = if proto.to_ascii_uppercase().ends_with("TLS") {
            5061
        } else {
            5060
        };
        let mut params = rest.split(';');
        let mut addr = host_port(params.next()?.trim(), default_port)?;
        for param in params {
            match param.trim().split_once('=') {
                Some((name, value)) if name.eq_ignore_ascii_case("received") => {
                    if let Ok(ip) = value.trim_matches(['[', ']']).parse::<IpAddr>() {
                        addr.set_ip(ip);
                    }
                }
                Some((name, value)) if name.eq_ignore_ascii_case("rport") => {
                    if let Ok(port) = value.parse() {
                        addr.set_port(port);
                    }
                }
                _ => {}
            }
        }
        Some(addr)
    }

    /// The address of the Request-URI, when its host is an IP literal.
    pub(crate) fn request_uri_addr(&self) -> Option<SocketAddr> {
        match &self.start {
            StartLine::Request { uri, .. } => uri_addr(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The address of the first Contact, when its host is an IP literal.
    pub(crate) fn contact_addr(&self) -> Option<SocketAddr> {
        let contact = self.header("contact")?;
        let uri = match (contact.find('<'), contact.find('>')) {
            (Some(open), Some(close)) if open < close => &contact[open + 1..close],
            _ => contact.split([';', ',']).next()?,
        };
        uri_addr(uri.trim())
    }
}

/// Where the header section ends: (length of the head without the blank line, start of the body).
/// One pass that stops at the first blank line (CRLF CRLF, or bare LF LF from lenient writers), so
/// framing a stream does not rescan a large body.
fn head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
    {
        // A line ends at i; the head ends when the next line is empty.
        let line_end = if i > 0 && bytes[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        match bytes.get(i + 1) {
            Some(b'\n') => return Some((line_end, i + 2)),
            Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some((line_end, i + 3)),
            _ => {}
        }
        from = i + 1;
    }
    None
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `host[:port]` with an IP literal host (IPv6 in brackets).
fn host_port(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    if let Some(v6) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return Some(SocketAddr::new(v6.parse().ok()?, default_port));
    }
    Some(SocketAddr::new(
        text.parse::<std::net::Ipv4Addr>().ok()?.into(),
        default_port,
    ))
}

/// The host:port of a `sip:`/`sips:` URI, when the host is an IP literal.
fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let (scheme, rest) = uri.split_once(':')?;
    let default_port = if scheme.eq_ignore_ascii_case("sips") {
        5061
    } else {
        5060
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let hostport = rest.split([';', '?', '>']).next()?;
    host_port(hostport.trim(), default_port)
}

/// One datagram's message: keep-alive CRLFs before it skipped, bytes past its Content-Length dropped
/// (RFC 3261 18.3); without a Content-Length the body runs to the end of the datagram.
pub(crate) fn datagram_message(bytes: &[u8]) -> &[u8] {
    let bytes = skip_crlf(bytes);
    let Some((_, body_start)) = head_end(bytes) else {
        return bytes;
    };
    let declared = Message::parse(&bytes[..body_start]).and_then(|m| m.content_length());
    match declared {
        Some(len) if body_start + len <= bytes.len() => &bytes[..body_start + len],
        _ => bytes,
    }
}

/// What the front of a stream buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framed {
    /// A whole message: skip `skip` bytes (keep-alives), then `len` bytes are the message.
    Message { skip: usize, len: usize },
    /// Not enough bytes yet (after skipping `skip` bytes of keep-alives).
    Incomplete { skip: usize },
    /// The front is not SIP: drop this many bytes and look again.
    Garbage(usize),
}

/// Frames the next message of a stream by its Content-Length (a missing one means no body, as on any
/// stream transport). CRLF keep-alives (RFC 5626) before a message are skipped.
pub(crate) fn frame(buf: &[u8]) -> Framed {
    let skip = buf.len() - skip_crlf(buf).len();
    let rest = &buf[skip..];
    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
        return if rest.len() > MAX_HEAD {
            Framed::Garbage(buf.len())
        } else {
            Framed::Incomplete { skip }
        };
    };
    // Not SIP from here to the end of the line: resynchronise at the next line.
    let garbage = Framed::Garbage(skip + line_end + 1);
    if start_line(&rest[..line_end]).is_none() {
        return garbage;
    }
    let Some((_, body_start)) = head_end(rest) else {
        return if rest.len() > MAX_HEAD {
            garbage
        } else {
            Framed::Incomplete { skip }
        };
    };
    let Some(message) = Message::parse(&rest[..body_start]) else {
        return garbage;
    };
    let body_len = match message.header("content-length") {
        None => 0,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n <= MAX_BODY => n,
            _ => return garbage,
        },
    };
    if rest.len() < body_start + body_len {
        return Framed::Incomplete { skip };
    }
    Framed::Message {
        skip,
        len: body_start + body_len,
    }
}

/// Takes every whole message off the front of a stream buffer (keep-alives and non-SIP lines dropped),
/// leaving an incomplete message in place.
pub(crate) fn drain_messages(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match frame(buf) {
            Framed::Message { skip, len } => {
                out.push(buf[skip..skip + len].to_vec());
                buf.drain(..skip + len);
            }
            Framed::Incomplete { skip } => {
                buf.drain(..skip);
                return out;
            }
            Framed::Garbage(n) => {
                buf.drain(..n.min(buf.len()));
            }
        }
    }
}

/// The audio address an SDP body offers: the first `m=audio` with a non-zero port, at its media-level
/// `c=` or else the session-level one. None without such a line or with a hold address (0.0.0.0).
pub(crate) fn sdp_audio(body: &[u8]) -> Option<SocketAddr> {
    let text = String::from_utf8_lossy(body);
    let mut session_ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Option<IpAddr>)> = None;
    let mut in_media = false;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if audio.is_some() {
                break;
            }
            let mut fields = m.split_whitespace();
            let is_audio = fields.next() == Some("audio");
            let port = fields
                .next()
                .and_then(|p| p.split('/').next()?.parse::<u16>().ok())
                .unwrap_or(0);
            in_media = true;
            if is_audio && port != 0 {
                audio = Some((port, None));
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next()?.parse::<IpAddr>().ok());
            match (&mut audio, in_media) {
                (Some((_, media_ip)), true) => *media_ip = ip,
                (None, false) => session_ip = ip,
                _ => {}
            }
        }
    }
    let (port, media_ip) = audio?;
    let ip = media_ip.or(session_ip)?;
    (!ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}
