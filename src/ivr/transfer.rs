//! Where a menu `transfer` sends the caller: the URI's checks (shared by `helpline check` and the call
//! layer, so a URI that passed `check` is one the call layer can dial) and the prompt a caller hears
//! when the far end cannot be reached.
//!
//! Only `sip:` URIs whose host is an IP literal are accepted, over UDP: helpline does not resolve
//! names (a SIP name is an RFC 3263 NAPTR/SRV/A lookup that the sans-IO call layer cannot do, and a
//! lookup done once at load time would silently keep a stale address), opens no outgoing TCP
//! connection and speaks no TLS. It does not place the call (`call::transfer` does).
use std::net::{IpAddr, SocketAddr};

use crate::sip::message::Uri;

/// The prompt a caller hears when a transfer fails, before being released.
pub const TRANSFER_FAILED_PROMPT: &str = "transfer-failed";

/// The SIP port when a transfer URI names none (RFC 3261 §19.1.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// A transfer URI the call layer can dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferTarget {
    /// The Request-URI of our INVITE.
    pub uri: Uri,
    /// Where the INVITE goes (UDP).
    pub addr: SocketAddr,
}

/// Why a transfer URI cannot be dialed: the message, and a hint for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransferUriError {
    /// What is wrong, naming the URI.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

fn error(message: String, hint: &str) -> TransferUriError {
    TransferUriError {
        message,
        hint: hint.to_owned(),
    }
}

/// Checks a menu's transfer URI: `sip:[user@]IP[:port]`, IPv6 in brackets, no transport other than
/// UDP.
pub fn transfer_target(text: &str) -> Result<TransferTarget, TransferUriError> {
    let syntax = "write sip:user@host or sips:user@host";
    let uri =
        Uri::parse(text).map_err(|_| error(format!("invalid transfer uri `{text}`"), syntax))?;
    match uri.scheme.to_ascii_lowercase().as_str() {
        "sip" => {}
        "sips" => {
            return Err(error(
                format!("transfer uri `{text}` needs TLS (sips:), which helpline does not speak"),
                "write a sip: URI to the contact centre's UDP address",
            ))
        }
        _ => return Err(error(format!("invalid transfer uri `{text}`"), syntax)),
    }
    let bare = uri.host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Err(error(
            format!(
                "transfer uri `{text}` names the host `{}`: helpline does not resolve names",
                uri.host
            ),
            "write the contact centre's IP address, e.g. sip:queue@192.0.2.10:5060",
        ));
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(error(
            format!("transfer uri `{text}` names no host that can be called"),
            "write the contact centre's IP address, e.g. sip:queue@192.0.2.10:5060",
        ));
    }
    if let Some(transport) = uri.param("transport").flatten() {
        if !transport.eq_ignore_ascii_case("udp") {
            return Err(error(
                format!("transfer uri `{text}` asks for transport={transport}: transfers go over UDP only"),
                "remove the transport parameter",
            ));
        }
    }
    let addr = SocketAddr::new(ip, uri.port.unwrap_or(DEFAULT_SIP_PORT));
    Ok(TransferTarget { uri, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_with_and_without_port_are_dialable() {
        let t = transfer_target("sip:queue@192.0.2.10:5070").expect("valid");
        assert_eq!(t.addr, "192.0.2.10:5070".parse().expect("literal"));
        assert_eq!(t.uri.user.as_deref(), Some("queue"));
        let t = transfer_target("sip:192.0.2.10;transport=udp").expect("valid");
        assert_eq!(t.addr.port(), 5060);
        let t = transfer_target("sip:cc@[2001:db8::1]:5080").expect("valid");
        assert_eq!(t.addr, "[2001:db8::1]:5080".parse().expect("literal"));
    }

    #[test]
    fn names_tcp_tls_and_garbage_are_refused_with_a_reason() {
        let name = transfer_target("sip:queue@cc.example.com").expect_err("a name");
        assert!(name.message.contains("does not resolve names"), "{name}");
        let tcp = transfer_target("sip:queue@192.0.2.10;transport=tcp").expect_err("tcp");
        assert!(tcp.message.contains("transport=tcp"), "{tcp}");
        let tls = transfer_target("sips:queue@192.0.2.10").expect_err("tls");
        assert!(tls.message.contains("TLS"), "{tls}");
        let bad = transfer_target("tech@example.invalid").expect_err("no scheme");
        assert_eq!(bad.message, "invalid transfer uri `tech@example.invalid`");
        assert!(transfer_target("sip:q@0.0.0.0").is_err());
    }
}
