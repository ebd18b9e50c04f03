//! Known SIP scanners by their `User-Agent` (sipvicious' "friendly-scanner", sipcli, sip-scan …): a
//! weak signal — any scanner can send another User-Agent — used only with `serve --drop-scanners`.
//! It reads the header from the raw bytes (no parse: a dropped scan costs next to nothing); it does not
//! decide what happens to the request.

/// Substrings (compared case-insensitively) of the User-Agents of well-known scanning tools.
pub const SCANNER_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak",
    "vaxsipuseragent",
    "iwar",
    "sundayddr",
    "pplsip",
    "sipptk",
    "smap",
    "siparmyknife",
    "eyebeam-scan",
];

/// Whether the message's `User-Agent` header names a known scanner. Only the header section is read,
/// at most its first 8 KiB.
pub fn is_scanner(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8 * 1024)];
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"user-agent")
        {
            continue;
        }
        let value = line[colon + 1..].to_ascii_lowercase();
        return SCANNER_USER_AGENTS
            .iter()
            .any(|s| value.windows(s.len()).any(|w| w == s.as_bytes()));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ua: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\r\n\
             From: <sip:100@192.0.2.1>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: 1\r\n\
             CSeq: 1 OPTIONS\r\n{ua}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn known_scanners_are_recognised_in_any_case() {
        for ua in [
            "User-Agent: friendly-scanner\r\n",
            "User-Agent: sipvicious\r\n",
            "user-agent:  SIPVicious 0.3.4\r\n",
            "USER-AGENT: sipcli/v1.8\r\n",
            "User-Agent: sip-scan\r\n",
            "User-Agent: VaxSIPUserAgent/3.1\r\n",
            "User-Agent: iWar\r\n",
            "User-Agent: sundayddr\r\n",
            "User-Agent: pplsip\r\n",
        ] {
            assert!(is_scanner(&options(ua)), "{ua}");
        }
    }

    #[test]
    fn phones_and_missing_headers_are_not_scanners() {
        for ua in [
            "User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n",
            "User-Agent: Yealink SIP-T46S 66.86.0.15\r\n",
            "User-Agent: SIPp\r\n",
            "Server: friendly-scanner\r\n",
            "",
        ] {
            assert!(!is_scanner(&options(ua)), "{ua}");
        }
        // A scanner's name in the body is not its User-Agent.
        let mut m = options("");
        m.extend_from_slice(b"User-Agent: friendly-scanner\r\n");
        assert!(!is_scanner(&m));
    }
}
