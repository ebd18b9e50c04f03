//! A glance at a SIP message for metrics: request method or status code, CSeq method and Call-ID,
//! read from the head without parsing it. It decides nothing about the message (`sip` parses it).

/// Methods counted by name; any other token counts as `other`, so peers cannot grow the label set.
const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// What the first line said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A request with this method (a known name or `other`).
    Request(&'static str),
    /// A response with this status code (100–699; anything else is not counted).
    Response(u16),
}

/// The few facts the metrics need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peeked<'a> {
    /// Request or response.
    pub kind: Kind,
    /// The CSeq method (what a response answers), `other` when missing or unknown.
    pub cseq_method: &'static str,
    /// The Call-ID, when present.
    pub call_id: Option<&'a str>,
}

/// The method name as a label: one of [`METHODS`] or `other`.
pub fn method_label(token: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(token))
        .copied()
        .unwrap_or("other")
}

/// Reads the first line and the CSeq and Call-ID headers (compact `i:` too) of a message; `None` for
/// keep-alives and anything that is not SIP-shaped.
pub fn peek(bytes: &[u8]) -> Option<Peeked<'_>> {
    // Line by line, stopping at the blank line or as soon as both headers are found: this runs for
    // every message in and out, and scanning the whole head first was 4 % of the signalling thread.
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = std::str::from_utf8(lines.next()?).ok()?.trim();
    let kind = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let code: u16 = rest.get(..3)?.parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        Kind::Response(code)
    } else {
        let token = first.split(' ').next().filter(|t| !t.is_empty())?;
        if !first.ends_with("SIP/2.0") {
            return None;
        }
        Kind::Request(method_label(token))
    };
    let mut cseq_method = None;
    let mut call_id = None;
    for line in lines {
        if line.is_empty() || (cseq_method.is_some() && call_id.is_some()) {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"cseq") {
            let value = std::str::from_utf8(&line[colon + 1..]).ok();
            cseq_method = Some(
                value
                    .and_then(|v| v.split_whitespace().nth(1))
                    .map_or("other", method_label),
            );
        } else if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            call_id = std::str::from_utf8(&line[colon + 1..]).ok().map(str::trim);
        }
    }
    Some(Peeked {
        kind,
        cseq_method: cseq_method.unwrap_or("other"),
        call_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_responses_and_headers() {
        let invite = b"INVITE sip:08001234567@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP a\r\ni: abc@h\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n";
        let p = peek(invite).expect("a request");
        assert_eq!(p.kind, Kind::Request("INVITE"));
        assert_eq!(p.call_id, Some("abc@h"));
        assert_eq!(p.cseq_method, "INVITE");

        let ok = b"SIP/2.0 200 OK\r\nCall-ID: x\r\ncseq: 2 bye\r\n\r\n";
        let p = peek(ok).expect("a response");
        assert_eq!(p.kind, Kind::Response(200));
        assert_eq!(p.cseq_method, "BYE");

        let odd = b"FROB sip:x SIP/2.0\r\nCSeq: 1 FROB\r\n\r\n";
        assert_eq!(peek(odd).map(|p| p.kind), Some(Kind::Request("other")));
        assert_eq!(peek(b"\r\n\r\n"), None);
        assert_eq!(peek(b"SIP/2.0 999 Nope\r\n\r\n"), None);
        assert_eq!(peek(b"hello world\r\n\r\n"), None);

        // The body is not the head.
        let in_body = b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nCSeq: 1 BYE\r\n";
        assert_eq!(peek(in_body).map(|p| p.cseq_method), Some("other"));
    }
}
