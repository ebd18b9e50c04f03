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
    // The head is ASCII in every message we count; stop at the blank line, whatever follows.
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = std::str::from_utf8(bytes.get(..end)?).ok()?;
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?.trim();
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
    let mut cseq_method = "other";
    let mut call_id = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("cseq") {
            if let Some(m) = value.split_whitespace().nth(1) {
                cseq_method = method_label(m);
            }
        } else if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            call_id = Some(value.trim());
        }
    }
    Some(Peeked {
        kind,
        cseq_method,
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
    }
}
