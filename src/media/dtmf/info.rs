//! DTMF carried in SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`); pure parsing, no SIP.
//!
//! Neither format has an RFC; these follow the de-facto Cisco `dtmf-relay` body (`Signal=5` and
//! `Duration=160` lines) and the bare `application/dtmf` body (`5`). Both are parsed leniently: case
//! and spaces do not matter, and the numeric codes `10` and `11` that some phones send mean `*` and `#`.

use thiserror::Error;

/// Why an INFO body did not yield a digit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InfoDtmfError {
    /// The Content-Type is neither `application/dtmf-relay` nor `application/dtmf`.
    #[error("unsupported content type {0:?} for dtmf")]
    UnsupportedContentType(String),
    /// The body is not UTF-8 text.
    #[error("dtmf body is not utf-8 text")]
    NotText,
    /// An `application/dtmf-relay` body without a `Signal=` line.
    #[error("dtmf-relay body has no signal line")]
    MissingSignal,
    /// The signal value is not a DTMF key.
    #[error("dtmf signal {0:?} is not a key")]
    InvalidSignal(String),
}

/// Extracts the key from an INFO request's body, given its Content-Type header value.
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Result<char, InfoDtmfError> {
    // Parameters such as `;charset=...` do not change the format.
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::NotText)?;
    match media_type.as_str() {
        "application/dtmf-relay" => {
            let value = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("signal"))
                .map(|(_, value)| value)
                .ok_or(InfoDtmfError::MissingSignal)?;
            signal_to_key(value)
        }
        "application/dtmf" => signal_to_key(text),
        _ => Err(InfoDtmfError::UnsupportedContentType(
            content_type.trim().to_owned(),
        )),
    }
}

fn signal_to_key(value: &str) -> Result<char, InfoDtmfError> {
    let v = value.trim();
    let key = match v {
        "10" => Some('*'),
        "11" => Some('#'),
        _ => {
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    let c = c.to_ascii_uppercase();
                    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
                }
                _ => None,
            }
        }
    };
    key.ok_or_else(|| InfoDtmfError::InvalidSignal(v.chars().take(16).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(
            parse_info_body(relay, b"Signal=5\r\nDuration=160\r\n"),
            Ok('5')
        );
        assert_eq!(
            parse_info_body(relay, b"signal = *\r\nduration=100"),
            Ok('*')
        );
        assert_eq!(parse_info_body(relay, b"Signal= #\r\n"), Ok('#'));
        assert_eq!(
            parse_info_body(relay, b"Duration=160\nSIGNAL=10\n"),
            Ok('*')
        );
        assert_eq!(parse_info_body(relay, b"Signal=11"), Ok('#'));
        assert_eq!(parse_info_body(relay, b"Signal=d"), Ok('D'));
        assert_eq!(
            parse_info_body("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Ok('0')
        );
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(parse_info_body("application/dtmf", b"5"), Ok('5'));
        assert_eq!(parse_info_body("application/dtmf", b" 10\r\n"), Ok('*'));
        assert_eq!(parse_info_body("application/dtmf", b"11"), Ok('#'));
    }

    #[test]
    fn errors_name_the_fault() {
        assert_eq!(
            parse_info_body("text/plain", b"5"),
            Err(InfoDtmfError::UnsupportedContentType("text/plain".into()))
        );
        assert_eq!(
            parse_info_body("application/dtmf-relay", b"Duration=160"),
            Err(InfoDtmfError::MissingSignal)
        );
        assert_eq!(
            parse_info_body("application/dtmf-relay", b"Signal=12"),
            Err(InfoDtmfError::InvalidSignal("12".into()))
        );
        assert_eq!(
            parse_info_body("application/dtmf", b"x"),
            Err(InfoDtmfError::InvalidSignal("x".into()))
        );
        assert_eq!(
            parse_info_body("application/dtmf", b""),
            Err(InfoDtmfError::InvalidSignal(String::new()))
        );
        assert_eq!(
            parse_info_body("application/dtmf", &[0xff, 0xfe]),
            Err(InfoDtmfError::NotText)
        );
        let msg = InfoDtmfError::MissingSignal.to_string();
        assert!(msg.chars().next().unwrap().is_lowercase() && !msg.ends_with('.'));
    }
}
