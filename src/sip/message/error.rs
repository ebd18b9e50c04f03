//! The parse error: which fault broke the message, plus whatever addressing headers could still be read,
//! so the endpoint can answer a stateless `400` whose reason phrase names the fault.

use std::fmt;

use super::via::Via;

/// What was wrong with a message; `Display` gives the reason phrase used in the `400`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The start line is neither a Request-Line nor a Status-Line.
    BadStartLine,
    /// The Request-Line method is not a token (RFC 3261 §25.1).
    BadMethod,
    /// The Request-URI does not parse.
    BadRequestUri,
    /// The header section is not UTF-8.
    InvalidUtf8,
    /// A line in the header section is not `name: value` (or a continuation before any header).
    MalformedHeaderLine,
    /// No empty line ends the header section.
    MissingEndOfHeaders,
    /// A mandatory header is absent (canonical header name).
    Missing(&'static str),
    /// A header value does not follow its grammar (canonical header name).
    Malformed(&'static str),
    /// The CSeq method differs from the Request-Line method.
    CSeqMethodMismatch,
    /// Content-Length announces more bytes than the datagram holds (RFC 3261 §18.3).
    ContentLengthTooLarge,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BadStartLine => f.write_str("Bad start line"),
            Fault::BadMethod => f.write_str("Method is not a token"),
            Fault::BadRequestUri => f.write_str("Bad Request-URI"),
            Fault::InvalidUtf8 => f.write_str("Invalid UTF-8 in header section"),
            Fault::MalformedHeaderLine => f.write_str("Malformed header line"),
            Fault::MissingEndOfHeaders => f.write_str("Missing empty line after headers"),
            Fault::Missing(h) => write!(f, "Missing {h} header"),
            Fault::Malformed(h) => write!(f, "Malformed {h} header"),
            Fault::CSeqMethodMismatch => f.write_str("CSeq method does not match request method"),
            Fault::ContentLengthTooLarge => f.write_str("Content-Length larger than message"),
        }
    }
}

/// Raw values of the headers needed to address a reply, as far as they could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialHeaders {
    /// `Some(true)` for a Request-Line, `Some(false)` for a Status-Line, `None` when unreadable.
    pub is_request: Option<bool>,
    /// The request method when the Request-Line was readable.
    pub method: Option<String>,
    /// Every Via line, in order, verbatim.
    pub via: Vec<String>,
    /// The From value.
    pub from: Option<String>,
    /// The To value.
    pub to: Option<String>,
    /// The Call-ID value.
    pub call_id: Option<String>,
    /// The CSeq value.
    pub cseq: Option<String>,
}

/// A message that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sip message rejected: {fault}")]
pub struct ParseError {
    /// The fault as a reason phrase, e.g. `Malformed CSeq header`.
    pub fault: String,
    /// The fault as a value.
    pub kind: Fault,
    /// What could be recovered for a stateless reply (boxed: errors stay small on the happy path).
    pub partial: Box<PartialHeaders>,
}

impl ParseError {
    pub(crate) fn new(kind: Fault, partial: PartialHeaders) -> Self {
        ParseError {
            fault: kind.to_string(),
            kind,
            partial: Box::new(partial),
        }
    }

    /// A stateless `400 <fault>` for the offending request, or `None` when no reply may or can be sent.
    ///
    /// `None` when the input was (or might have been) a response — responses are never answered — or an
    /// ACK (RFC 3261 §17.2.1: no response to ACK), or when no top Via with a readable sent-by was
    /// recovered, because the reply could not be addressed (§18.2.2). From, To, Call-ID and CSeq are
    /// echoed verbatim when present and left out when not, so `400 Missing Call-ID header` can still be
    /// sent. A To without a tag gets one derived deterministically from the Call-ID and top Via
    /// (§8.2.6.2 wants a tag; deriving it means a retransmitted bad request gets a byte-identical 400).
    /// `server` is the text of a `Server` header (§20.35), left out when `None`.
    pub fn reply_400(&self, server: Option<&str>) -> Option<Vec<u8>> {
        let p = &self.partial;
        if p.is_request != Some(true) || p.method.as_deref() == Some("ACK") {
            return None;
        }
        let top = p.via.first()?;
        let top_value = super::headers::split_outside(top, b',')
            .into_iter()
            .next()?;
        Via::parse(top_value).ok()?;
        let mut out = format!("SIP/2.0 400 {}\r\n", self.fault);
        for v in &p.via {
            out.push_str(&format!("Via: {v}\r\n"));
        }
        if let Some(f) = &p.from {
            out.push_str(&format!("From: {f}\r\n"));
        }
        if let Some(t) = &p.to {
            let has_tag = super::uri::NameAddr::parse(t).is_ok_and(|n| n.tag().is_some());
            if has_tag {
                out.push_str(&format!("To: {t}\r\n"));
            } else {
                let seed = format!("{}|{}", p.call_id.as_deref().unwrap_or(""), top);
                out.push_str(&format!("To: {t};tag={:016x}\r\n", fnv1a(seed.as_bytes())));
            }
        }
        if let Some(c) = &p.call_id {
            out.push_str(&format!("Call-ID: {c}\r\n"));
        }
        if let Some(c) = &p.cseq {
            out.push_str(&format!("CSeq: {c}\r\n"));
        }
        if let Some(s) = server {
            out.push_str(&format!("Server: {}\r\n", s.replace(['\r', '\n'], " ")));
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Some(out.into_bytes())
    }
}

/// 64-bit FNV-1a: a tiny stable hash for deterministic tags (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
