//! SIP message codec (RFC 3261 §7, §18.3, §20, §25): bytes ↔ typed [`Request`]/[`Response`], with the
//! mandatory headers checked and typed once at parse time, and stateless `400` replies naming the fault.
//! It does not frame TCP streams (see `transport::framing`), match transactions or dialogs, or
//! interpret bodies.
//!
//! Printing keeps every header value verbatim (so `%`-escapes are never re-escaped), expands compact
//! names to full ones, and recomputes Content-Length from the body.

mod error;
mod headers;
mod parse;
mod uri;
mod via;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

pub use error::{Fault, ParseError, PartialHeaders};
pub use headers::{canonical_name, Headers};
pub use uri::{NameAddr, Params, Uri, UriError};
pub use via::Via;

/// A request method; names are case-sensitive (RFC 3261 §7.1), unknown ones are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// OPTIONS (RFC 3261)
    Options,
    /// REGISTER (RFC 3261)
    Register,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token.
    Other(String),
}

const METHODS: &[(&str, Method)] = &[
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("OPTIONS", Method::Options),
    ("REGISTER", Method::Register),
    ("INFO", Method::Info),
    ("UPDATE", Method::Update),
    ("PRACK", Method::Prack),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("REFER", Method::Refer),
    ("MESSAGE", Method::Message),
    ("PUBLISH", Method::Publish),
];

impl Method {
    /// The method name as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            m => METHODS
                .iter()
                .find(|(_, k)| k == m)
                .map_or("", |(name, _)| name),
        }
    }
}

impl From<&str> for Method {
    fn from(s: &str) -> Self {
        METHODS
            .iter()
            .find(|(name, _)| *name == s)
            .map_or_else(|| Method::Other(s.to_owned()), |(_, m)| m.clone())
    }
}

impl FromStr for Method {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Method::from(s))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSeq header (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (below 2³¹ in parsed messages).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Typed copies of the headers transactions and dialogs need, read once at parse time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Base {
    via: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: CSeq,
    contacts: Vec<NameAddr>,
    contact_star: bool,
    max_forwards: Option<u8>,
    route: Vec<NameAddr>,
    record_route: Vec<NameAddr>,
}

impl Default for CSeq {
    fn default() -> Self {
        CSeq {
            seq: 0,
            method: Method::Other(String::new()),
        }
    }
}

/// A SIP request.
///
/// `headers` is the source of truth for printing. The typed accessors (`via()`, `from()`, …) read copies
/// made at parse time; the typed setters keep both in step. After editing `headers` directly, call
/// [`Request::refresh_typed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method from the Request-Line.
    pub method: Method,
    /// Request-URI.
    pub uri: Uri,
    /// SIP-Version as received; see [`Request::is_sip2`].
    pub version: String,
    /// All headers in order.
    pub headers: Headers,
    /// Body bytes (exactly Content-Length of them).
    pub body: Vec<u8>,
    base: Base,
}

/// A SIP response. Same header model as [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// SIP-Version as received (`SIP/2.0` for built responses).
    pub version: String,
    /// Status code, 100–699.
    pub code: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// All headers in order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
    base: Base,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Parses a message received as one UDP datagram: without Content-Length the body runs to the end of
/// the datagram; bytes beyond Content-Length are dropped; a Content-Length beyond the datagram is an
/// error (RFC 3261 §18.3).
pub fn parse_datagram(bytes: &[u8]) -> Result<SipMessage, ParseError> {
    parse::parse(bytes, parse::Framing::Datagram)
}

/// Parses one message framed from a stream (TCP/TLS) by `transport::framing`: Content-Length is
/// mandatory (RFC 3261 §18.3).
pub fn parse_stream_message(bytes: &[u8]) -> Result<SipMessage, ParseError> {
    parse::parse(bytes, parse::Framing::Stream)
}

fn sanitize_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Writes the header section and body; Content-Length is recomputed from the body, in place of the first
/// Content-Length line or at the end.
fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    let mut wrote_len = false;
    for (name, value) in headers.iter() {
        if headers::same_name(name, "Content-Length") {
            if !wrote_len {
                write_content_length(out, body.len());
                wrote_len = true;
            }
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_len {
        write_content_length(out, body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The wire size of the header lines and body (what [`write_headers_and_body`] writes, give or take
/// the Content-Length digits), so that a message is serialised into one allocation.
fn headers_and_body_len(headers: &Headers, body: &[u8]) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    lines + "Content-Length: \r\n\r\n".len() + 20 + body.len()
}

fn write_content_length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"Content-Length: ");
    write_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without `fmt` (a response's status code and Content-Length on every message).
fn write_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Accessors and setters shared by requests and responses.
macro_rules! common_impl {
    ($t:ty) => {
        impl $t {
            /// The Via values, top (most recent hop) first.
            pub fn via(&self) -> &[Via] {
                &self.base.via
            }

            /// The top Via, if any.
            pub fn top_via(&self) -> Option<&Via> {
                self.base.via.first()
            }

            /// From.
            pub fn from(&self) -> &NameAddr {
                &self.base.from
            }

            /// To.
            pub fn to(&self) -> &NameAddr {
                &self.base.to
            }

            /// Call-ID.
            pub fn call_id(&self) -> &str {
                &self.base.call_id
            }

            /// CSeq.
            pub fn cseq(&self) -> &CSeq {
                &self.base.cseq
            }

            /// Contact values in order (without a `*`, see `contact_is_star`).
            pub fn contacts(&self) -> &[NameAddr] {
                &self.base.contacts
            }

            /// Whether a Contact is `*` (REGISTER remove-all, RFC 3261 §10.2.2).
            pub fn contact_is_star(&self) -> bool {
                self.base.contact_star
            }

            /// Max-Forwards, if present.
            pub fn max_forwards(&self) -> Option<u8> {
                self.base.max_forwards
            }

            /// Route values in order.
            pub fn route(&self) -> &[NameAddr] {
                &self.base.route
            }

            /// Record-Route values in order.
            pub fn record_route(&self) -> &[NameAddr] {
                &self.base.record_route
            }

            /// Content-Type, raw.
            pub fn content_type(&self) -> Option<&str> {
                self.headers.get("Content-Type")
            }

            /// Option tags of Require.
            pub fn require(&self) -> Vec<&str> {
                self.headers.get_all("Require")
            }

            /// Option tags of Supported.
            pub fn supported(&self) -> Vec<&str> {
                self.headers.get_all("Supported")
            }

            /// The first value of any header, raw (shortcut for `headers.get`).
            pub fn header(&self, name: &str) -> Option<&str> {
                self.headers.get(name)
            }

            /// Appends a header line; Via/From/To/Call-ID/CSeq/Max-Forwards/Contact/Route/Record-Route
            /// are validated and their typed copies updated. On error nothing changes.
            pub fn push_header(&mut self, name: &str, value: &str) -> Result<(), ParseError> {
                self.headers.push(name, value);
                let method = self.request_method().cloned();
                if let Err(f) =
                    parse::read_field(&self.headers, name, method.as_ref(), &mut self.base)
                {
                    // Undo: `push` appended the line at the very end.
                    self.headers.pop_last();
                    return Err(ParseError::new(f, PartialHeaders::default()));
                }
                Ok(())
            }

            /// Sets From.
            pub fn set_from(&mut self, from: NameAddr) {
                self.headers.set("From", &from.to_string());
                self.base.from = from;
            }

            /// Sets To.
            pub fn set_to(&mut self, to: NameAddr) {
                self.headers.set("To", &to.to_string());
                self.base.to = to;
            }

            /// Adds `tag` to To unless it already has one (RFC 3261 §8.2.6.2); returns whether it did.
            pub fn set_to_tag(&mut self, tag: &str) -> bool {
                if self.base.to.tag().is_some() {
                    return false;
                }
                self.base.to.set_param("tag", Some(tag));
                let to = self.base.to.to_string();
                self.headers.set("To", &to);
                true
            }

            /// Sets Call-ID.
            pub fn set_call_id(&mut self, call_id: &str) {
                let call_id = sanitize_line(call_id);
                self.headers.set("Call-ID", &call_id);
                self.base.call_id = call_id;
            }

            /// Sets CSeq.
            pub fn set_cseq(&mut self, cseq: CSeq) {
                self.headers.set("CSeq", &cseq.to_string());
                self.base.cseq = cseq;
            }

            /// Adds a Via above all others (what a UAC or proxy does when sending).
            pub fn push_via_top(&mut self, via: Via) {
                self.headers.push_front_of("Via", &via.to_string());
                self.base.via.insert(0, via);
            }

            /// Replaces the top Via value, keeping any values comma-joined after it on the same line.
            pub fn set_top_via(&mut self, via: Via) {
                let printed = via.to_string();
                match self.headers.value_mut_nth("Via", 0) {
                    Some(line) => {
                        let rest: Vec<&str> = headers::split_outside(line, b',')
                            .into_iter()
                            .skip(1)
                            .collect();
                        let mut new = printed;
                        for r in rest {
                            new.push_str(", ");
                            new.push_str(r);
                        }
                        *line = new;
                    }
                    None => self.headers.push("Via", &printed),
                }
                match self.base.via.first_mut() {
                    Some(v) => *v = via,
                    None => self.base.via.push(via),
                }
            }

            /// Adds a Contact.
            pub fn push_contact(&mut self, contact: NameAddr) {
                self.headers.push("Contact", &contact.to_string());
                self.base.contacts.push(contact);
            }

            /// Re-reads the typed header copies from `headers` after direct edits.
            pub fn refresh_typed(&mut self) -> Result<(), ParseError> {
                let method = self.request_method().cloned();
                self.base = parse::typed(&self.headers, method.as_ref())
                    .map_err(|f| ParseError::new(f, PartialHeaders::default()))?;
                Ok(())
            }

            /// The message as wire bytes (CRLF line ends, full header names, recomputed Content-Length).
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(
                    self.start_line_len() + headers_and_body_len(&self.headers, &self.body),
                );
                self.write_start_line(&mut out);
                write_headers_and_body(&mut out, &self.headers, &self.body);
                out
            }
        }

        impl fmt::Display for $t {
            /// The wire form; a non-UTF-8 body is shown lossily.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
            }
        }
    };
}

common_impl!(Request);
common_impl!(Response);

impl Request {
    /// A request with no headers yet, version `SIP/2.0`; add headers with the setters (typed accessors
    /// return empty values until then).
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            version: "SIP/2.0".to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
            base: Base::default(),
        }
    }

    /// Whether the version is `SIP/2.0`; otherwise the endpoint answers `505 Version Not Supported`
    /// (RFC 3261 §21.5.7).
    pub fn is_sip2(&self) -> bool {
        self.version.eq_ignore_ascii_case("SIP/2.0")
    }

    /// Stamps `received`/`rport` on the top Via from the packet's source address (RFC 3261 §18.2.1,
    /// RFC 3581 §4), in both the typed copy and the header line.
    pub fn stamp_source(&mut self, source: SocketAddr) {
        if let Some(mut top) = self.base.via.first().cloned() {
            top.stamp_source(source);
            self.set_top_via(top);
        }
    }

    fn request_method(&self) -> Option<&Method> {
        Some(&self.method)
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Into the buffer itself, not through a `String` (a `Vec` never fails a write).
        let _ = write!(out, "{} {} {}\r\n", self.method, self.uri, self.version);
    }

    /// Room for the start line: the URI is formatted, so this guesses its size from typical ones.
    fn start_line_len(&self) -> usize {
        96 + self.version.len()
    }
}

impl Response {
    /// A response to `req` (RFC 3261 §8.2.6.2): every Via line in order, From, To, Call-ID and CSeq
    /// copied verbatim, `Content-Length: 0`. Add a To tag with [`Response::set_to_tag`].
    pub fn for_request(req: &Request, code: u16, reason: &str) -> Response {
        let mut headers = Headers::new();
        // §8.2.6.2: Via values MUST equal the request's, in the same order.
        for (name, v) in req.headers.iter() {
            if headers::same_name(name, "Via") {
                headers.push("Via", v);
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.get(name) {
                headers.push(name, v);
            }
        }
        headers.push("Content-Length", "0");
        Response {
            version: "SIP/2.0".to_owned(),
            code,
            reason: sanitize_line(reason),
            headers,
            body: Vec::new(),
            base: Base {
                via: req.base.via.clone(),
                from: req.base.from.clone(),
                to: req.base.to.clone(),
                call_id: req.base.call_id.clone(),
                cseq: req.base.cseq.clone(),
                ..Base::default()
            },
        }
    }

    /// Whether the version is `SIP/2.0`.
    pub fn is_sip2(&self) -> bool {
        self.version.eq_ignore_ascii_case("SIP/2.0")
    }

    fn request_method(&self) -> Option<&Method> {
        None
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.version.as_bytes());
        out.push(b' ');
        write_decimal(out, usize::from(self.code));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn start_line_len(&self) -> usize {
        self.version.len() + self.reason.len() + 7
    }
}

impl SipMessage {
    /// The message as wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }

    /// Call-ID of either kind.
    pub fn call_id(&self) -> &str {
        match self {
            SipMessage::Request(r) => r.call_id(),
            SipMessage::Response(r) => r.call_id(),
        }
    }
}

impl fmt::Display for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipMessage::Request(r) => r.fmt(f),
            SipMessage::Response(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests;
