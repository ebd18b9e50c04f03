//! Bytes → [`SipMessage`]: one linear pass over the header section (unfolding, compact names, LF-only
//! lenience), then typed validation of the headers every transaction needs; it does no transaction or
//! dialog matching and never panics on any input.

use super::error::{Fault, ParseError, PartialHeaders};
use super::headers::{same_name, Headers};
use super::uri::{is_token, NameAddr, Uri};
use super::via::Via;
use super::{Base, CSeq, Method, Request, Response, SipMessage};

/// How the message was delimited, which decides the Content-Length rules (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Datagram,
    Stream,
}

/// The start line, once read.
enum StartLine {
    Request {
        method: Method,
        uri: Uri,
        version: String,
    },
    Response {
        version: String,
        code: u16,
        reason: String,
    },
}

/// `SIP/` followed by a dotted number; anything but `SIP/2.0` is still parsed so the endpoint can answer
/// `505`.
fn is_version(v: &str) -> bool {
    v.len() > 4
        && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v.bytes().skip(4).all(|c| c.is_ascii_digit() || c == b'.')
}

fn parse_start_line(line: &str, partial: &mut PartialHeaders) -> Result<StartLine, Fault> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        partial.is_request = Some(false);
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2); a missing final SP before an
        // empty reason phrase is accepted leniently.
        let (version, rest) = line.split_once(' ').ok_or(Fault::BadStartLine)?;
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Fault::BadStartLine);
        }
        let code: u16 = code.parse().map_err(|_| Fault::BadStartLine)?;
        if !(100..=699).contains(&code) || !is_version(version) {
            return Err(Fault::BadStartLine);
        }
        return Ok(StartLine::Response {
            version: version.to_owned(),
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split_ascii_whitespace();
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Fault::BadStartLine);
    };
    if !is_version(version) {
        return Err(Fault::BadStartLine);
    }
    partial.is_request = Some(true);
    // §25.1 Method = INVITEm / … / extension-method, extension-method = token: every token is a method
    // (an unknown one is the UAS's 501, RFC 4475 §3.1.1.2); anything else is a 400 naming the method.
    if !is_token(method) {
        return Err(Fault::BadMethod);
    }
    partial.method = Some(method.to_owned());
    let uri = Uri::parse(uri).map_err(|_| Fault::BadRequestUri)?;
    Ok(StartLine::Request {
        method: Method::from(method),
        uri,
        version: version.to_owned(),
    })
}

/// Whether every control character in a header value (other than HTAB, which is LWS) is the second half
/// of a quoted-pair inside a quoted string: RFC 3261 §25.1 allows `"\" (%x00-09 / %x0B-0C / %x0E-7F)`
/// there and nowhere else (RFC 4475 §3.1.1.2 sends BEL, NUL and DEL that way in a display name).
fn controls_are_quoted_pairs(value: &str) -> bool {
    // Almost every value is printable ASCII: nothing to check char by char (bytes from 0x80 may be
    // C1 controls, so they take the slow path).
    if value.bytes().all(is_printable_ascii) {
        return true;
    }
    let (mut in_quote, mut escaped) = (false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if c.is_ascii() && c != '\r' && c != '\n' {
                continue;
            }
        }
        if c.is_control() && c != '\t' {
            return false;
        }
        match c {
            '"' => in_quote = !in_quote,
            '\\' if in_quote => escaped = true,
            _ => {}
        }
    }
    true
}

/// Printable ASCII or HTAB: never a control character.
fn is_printable_ascii(b: u8) -> bool {
    (b' '..=b'~').contains(&b) || b == b'\t'
}

/// The headers kept in typed form, in the order their faults are reported.
const TYPED: [&str; 9] = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Contact",
    "Route",
    "Record-Route",
];

/// Reads the mandatory and routing headers into typed values; `method` is the Request-Line method.
pub(crate) fn typed(headers: &Headers, method: Option<&Method>) -> Result<Base, Fault> {
    let mut base = Base::default();
    for name in TYPED {
        read_field(headers, name, method, &mut base)?;
    }
    Ok(base)
}

/// Re-reads one typed header (`name` in any spelling) into `base`; `base` is unchanged on error.
/// Returns `Ok(())` without doing anything for headers that are not kept typed.
pub(crate) fn read_field(
    headers: &Headers,
    name: &str,
    method: Option<&Method>,
    base: &mut Base,
) -> Result<(), Fault> {
    let Some(name) = TYPED.into_iter().find(|t| same_name(t, name)) else {
        return Ok(());
    };
    let values = headers.get_all(name);
    // These appear at most once (RFC 3261 §7.3.1: only list headers may repeat).
    let single = matches!(name, "From" | "To" | "Call-ID" | "CSeq" | "Max-Forwards");
    if single && values.len() > 1 {
        return Err(Fault::Malformed(name));
    }
    let required = matches!(name, "Via" | "From" | "To" | "Call-ID" | "CSeq");
    let Some(&first) = values.first() else {
        // §8.1.1: a valid request contains at least To, From, CSeq, Call-ID, Max-Forwards and Via;
        // Max-Forwards is tolerated missing (older UAs omit it), the others are required.
        return if required {
            Err(Fault::Missing(name))
        } else {
            Ok(())
        };
    };
    let malformed = |_| Fault::Malformed(name);
    let name_addrs = || -> Result<Vec<NameAddr>, Fault> {
        values
            .iter()
            .map(|v| NameAddr::parse(v).map_err(malformed))
            .collect()
    };
    match name {
        "Via" => {
            base.via = values
                .iter()
                .map(|v| Via::parse(v).map_err(malformed))
                .collect::<Result<_, _>>()?;
        }
        "From" => base.from = NameAddr::parse(first).map_err(malformed)?,
        "To" => base.to = NameAddr::parse(first).map_err(malformed)?,
        "Call-ID" => {
            // §25.1 callid = word ["@" word]: never empty, never whitespace.
            if first.is_empty() || first.bytes().any(|c| c <= b' ' || c == 0x7f) {
                return Err(Fault::Malformed(name));
            }
            base.call_id = first.to_owned();
        }
        "CSeq" => {
            let cseq = parse_cseq(first).ok_or(Fault::Malformed(name))?;
            if let Some(m) = method {
                // §8.1.1.5: the CSeq method MUST match the request method.
                if *m != cseq.method {
                    return Err(Fault::CSeqMethodMismatch);
                }
            }
            base.cseq = cseq;
        }
        "Max-Forwards" => {
            // §20.22: 1*DIGIT in 0..=255 (leading zeros allowed, RFC 4475 §3.1.1.1).
            if first.is_empty() || !first.bytes().all(|c| c.is_ascii_digit()) {
                return Err(Fault::Malformed(name));
            }
            base.max_forwards = Some(first.parse::<u8>().map_err(|_| Fault::Malformed(name))?);
        }
        "Contact" => {
            let star = values.contains(&"*");
            let contacts = values
                .iter()
                .filter(|v| **v != "*")
                .map(|v| NameAddr::parse(v).map_err(malformed))
                .collect::<Result<_, _>>()?;
            base.contacts = contacts;
            base.contact_star = star;
        }
        "Route" => base.route = name_addrs()?,
        _ => base.record_route = name_addrs()?,
    }
    Ok(())
}

fn parse_cseq(v: &str) -> Option<CSeq> {
    let mut parts = v.split_ascii_whitespace();
    let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if !seq.bytes().all(|c| c.is_ascii_digit()) || !is_token(method) {
        return None;
    }
    let seq: u32 = seq.parse().ok()?;
    // §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer and less than 2**31.
    if seq >= 1 << 31 {
        return None;
    }
    Some(CSeq {
        seq,
        method: Method::from(method),
    })
}

/// Content-Length from every line of it: all must be the same decimal number.
fn content_length(headers: &Headers) -> Result<Option<usize>, Fault> {
    let mut found = None;
    for v in headers.get_all("Content-Length") {
        if v.is_empty() || v.len() > 12 || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Fault::Malformed("Content-Length"));
        }
        let n: usize = v.parse().map_err(|_| Fault::Malformed("Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(Fault::Malformed("Content-Length"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// `partial` with the headers a stateless reply echoes (Via, From, To, Call-ID, CSeq): read only
/// when a message fails, since a parsed one carries them typed.
fn with_echoed(mut partial: PartialHeaders, headers: &Headers) -> PartialHeaders {
    partial.via = headers.get_all_lines("Via");
    partial.from = headers.get("From").map(str::to_owned);
    partial.to = headers.get("To").map(str::to_owned);
    partial.call_id = headers.get("Call-ID").map(str::to_owned);
    partial.cseq = headers.get("CSeq").map(str::to_owned);
    partial
}

/// Parses one message; see [`super::parse_datagram`] and [`super::parse_stream_message`].
pub(crate) fn parse(bytes: &[u8], framing: Framing) -> Result<SipMessage, ParseError> {
    let mut partial = PartialHeaders::default();
    let mut fault: Option<Fault> = None;
    let mut start: Option<Result<StartLine, Fault>> = None;
    // Header lines as (name, unfolded value); `None` marks an unreadable line so that its
    // continuation lines are not glued onto the previous header.
    let mut raw: Vec<Option<(&str, String)>> = Vec::with_capacity(16);
    let mut body_start = None;
    let mut saw_crlf = false;
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) else {
            break;
        };
        let line = &bytes[pos..pos + nl];
        pos += nl + 1;
        // CRLF is the line end; a bare LF is accepted for robustness.
        let line = match line.strip_suffix(b"\r") {
            Some(l) => {
                saw_crlf = true;
                l
            }
            None => line,
        };
        if line.is_empty() {
            if start.is_none() {
                // §7.5: CRLFs before the start line are ignored.
                continue;
            }
            body_start = Some(pos);
            break;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            fault.get_or_insert(Fault::InvalidUtf8);
            raw.push(None);
            continue;
        };
        if start.is_none() {
            if !line.bytes().all(is_printable_ascii)
                && line.chars().any(|c| c.is_control() && c != '\t')
            {
                fault.get_or_insert(Fault::MalformedHeaderLine);
                raw.push(None);
                continue;
            }
            start = Some(parse_start_line(line, &mut partial));
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // §7.3.1: a line starting with whitespace continues the previous header; the fold is LWS,
            // equivalent to one SP.
            match raw.last_mut() {
                Some(Some((_, value))) => {
                    let cont = line.trim();
                    if !cont.is_empty() {
                        let trimmed = value.trim_end().len();
                        value.truncate(trimmed);
                        if !value.is_empty() {
                            value.push(' ');
                        }
                        value.push_str(cont);
                    }
                }
                Some(None) => {}
                None => {
                    fault.get_or_insert(Fault::MalformedHeaderLine);
                }
            }
            continue;
        }
        match line.split_once(':') {
            // §7.3.1: whitespace is allowed between the name and the colon (HCOLON).
            Some((name, value)) if is_token(name.trim_end_matches([' ', '\t'])) => {
                raw.push(Some((
                    name.trim_end_matches([' ', '\t']),
                    value.trim().to_owned(),
                )));
            }
            _ => {
                fault.get_or_insert(Fault::MalformedHeaderLine);
                raw.push(None);
            }
        }
    }
    let mut headers = Headers::new();
    for (name, value) in raw.into_iter().flatten() {
        // Checked on the unfolded value, which is what gets printed, so a reparse decides the same.
        if !controls_are_quoted_pairs(&value) {
            fault.get_or_insert(Fault::MalformedHeaderLine);
        }
        headers.push_trimmed(name, value);
    }
    let fail = |kind: Fault, partial: PartialHeaders, headers: &Headers| {
        Err(ParseError::new(kind, with_echoed(partial, headers)))
    };
    let start = match start {
        None => return fail(Fault::BadStartLine, partial, &headers),
        Some(Err(f)) => return fail(f, partial, &headers),
        Some(Ok(s)) => s,
    };
    if let Some(f) = fault {
        return fail(f, partial, &headers);
    }
    let Some(body_start) = body_start else {
        return fail(Fault::MissingEndOfHeaders, partial, &headers);
    };
    let method = match &start {
        StartLine::Request { method, .. } => Some(method),
        StartLine::Response { .. } => None,
    };
    let base = match typed(&headers, method) {
        Ok(b) => b,
        Err(f) => return fail(f, partial, &headers),
    };
    let rest = bytes.get(body_start..).unwrap_or(&[]);
    let declared = content_length(&headers);
    let body = match declared {
        Err(f) => return fail(f, partial, &headers),
        // §18.3: on a stream Content-Length MUST be present.
        Ok(None) if framing == Framing::Stream => {
            return fail(Fault::Missing("Content-Length"), partial, &headers)
        }
        // §18.3: over UDP a missing Content-Length means the body runs to the end of the datagram.
        Ok(None) => rest,
        // Robustness, not RFC: a sender that writes bare LF line ends (never CRLF) typically counted
        // the body as if it had CRLFs, so over UDP the datagram end is trusted instead.
        Ok(Some(n)) if n > rest.len() && !saw_crlf && framing == Framing::Datagram => rest,
        // §18.3: a datagram shorter than Content-Length is an error (400).
        Ok(Some(n)) if n > rest.len() => {
            return fail(Fault::ContentLengthTooLarge, partial, &headers)
        }
        // §18.3: bytes beyond Content-Length are discarded.
        Ok(Some(n)) => &rest[..n],
    };
    // Keep the stored Content-Length equal to the body, so parse → print → parse is stable; the usual
    // message already has it so (one line, the body's length without leading zeros).
    let stored_fits = declared == Ok(Some(body.len()))
        && headers.count("Content-Length") == 1
        && headers
            .get("Content-Length")
            .is_some_and(|v| v == "0" || !v.starts_with('0'));
    if !stored_fits {
        headers.set("Content-Length", &body.len().to_string());
    }
    let body = body.to_vec();
    Ok(match start {
        StartLine::Request {
            method,
            uri,
            version,
        } => SipMessage::Request(Request {
            method,
            uri,
            version,
            headers,
            body,
            base,
        }),
        StartLine::Response {
            version,
            code,
            reason,
        } => SipMessage::Response(Response {
            version,
            code,
            reason,
            headers,
            body,
            base,
        }),
    })
}
