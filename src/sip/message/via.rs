//! One Via value (RFC 3261 §20.42, §18.2.1) and the RFC 3581 `received`/`rport` stamping; it does not
//! decide where a response is sent (that is the transport's job).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::uri::{find_param, fmt_params, is_token, parse_params, set_param, Params, UriError};

/// A single Via value: `SIP/2.0/UDP host:port;branch=…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version, normally `SIP/2.0` (printed without the LWS a peer may put around `/`).
    pub protocol: String,
    /// Transport: `UDP`, `TCP`, `TLS`, `WS`, …
    pub transport: String,
    /// The sent-by host; IPv6 references keep their brackets.
    pub host: String,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// Via parameters (`branch`, `received`, `rport`, `maddr`, `ttl`, …) in order.
    pub params: Params,
}

/// Reads a token after optional leading whitespace; returns it and the rest.
fn token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)))
        .unwrap_or(s.len());
    s.split_at(end)
}

impl Via {
    /// A Via with `branch`, for requests we originate; the branch should start with `z9hG4bK`
    /// (RFC 3261 §8.1.1.7).
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Self {
        Via {
            protocol: "SIP/2.0".to_owned(),
            transport: transport.to_owned(),
            host: host.to_owned(),
            port,
            params: vec![("branch".to_owned(), Some(branch.to_owned()))],
        }
    }

    /// Parses one Via value (not a comma-joined list), allowing LWS around `/`, `:`, `;` and `=`.
    pub fn parse(s: &str) -> Result<Via, UriError> {
        let (name, rest) = token(s);
        let rest = rest
            .trim_start()
            .strip_prefix('/')
            .ok_or(UriError("no / in sent-protocol"))?;
        let (version, rest) = token(rest);
        let rest = rest
            .trim_start()
            .strip_prefix('/')
            .ok_or(UriError("no / in sent-protocol"))?;
        let (transport, rest) = token(rest);
        if !is_token(name) || !is_token(version) || !is_token(transport) {
            return Err(UriError("bad sent-protocol"));
        }
        let rest = rest.trim_start();
        let (host, rest) = if let Some(v6) = rest.strip_prefix('[') {
            let end = v6.find(']').ok_or(UriError("unclosed ipv6 reference"))?;
            let addr = &v6[..end];
            if addr.is_empty()
                || !addr
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(UriError("bad ipv6 reference"));
            }
            (&rest[..end + 2], &v6[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._".contains(c)))
                .unwrap_or(rest.len());
            rest.split_at(end)
        };
        if host.is_empty() {
            return Err(UriError("missing sent-by host"));
        }
        let mut rest = rest.trim_start();
        let mut port = None;
        if let Some(p) = rest.strip_prefix(':') {
            let p = p.trim_start();
            let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            port = Some(p[..end].parse().map_err(|_| UriError("bad port"))?);
            rest = &p[end..];
        }
        let params = parse_params(rest)?;
        let via = Via {
            protocol: format!("{name}/{version}"),
            transport: transport.to_owned(),
            host: host.to_owned(),
            port,
            params,
        };
        if let Some(Some(p)) = via.param("rport") {
            p.parse::<u16>().map_err(|_| UriError("bad rport"))?;
        }
        Ok(via)
    }

    /// A Via parameter: `None` when absent, `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets (or replaces) a Via parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }

    /// The `branch` parameter (the transaction id, RFC 3261 §17.2.3).
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// The RFC 3581 `rport` parameter: `None` absent, `Some(None)` requested, `Some(Some(p))` filled in.
    /// A value that is not a port reads as `Some(None)` (parsing rejects it, so only hand-built Vias).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// Records where the request really came from, as a server transport does on receipt.
    pub fn stamp_source(&mut self, source: SocketAddr) {
        let ip = source.ip();
        let sent_by = self.host.trim_start_matches('[').trim_end_matches(']');
        let same_host = sent_by.parse::<IpAddr>().is_ok_and(|h| h == ip);
        let wants_rport = self.param("rport").is_some();
        // RFC 3261 §18.2.1: add received when sent-by differs from the source address;
        // RFC 3581 §4: with rport the server MUST add received even when they are equal.
        if !same_host || wants_rport {
            // received holds a bare IPv6 address (§20.42 via-received = IPv6address, no brackets).
            self.set_param("received", Some(&ip.to_string()));
        }
        if wants_rport {
            // RFC 3581 §4: the server MUST set rport to the source port of the request.
            self.set_param("rport", Some(&source.port().to_string()));
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        fmt_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_parse_print_pairs() {
        for s in [
            "SIP/2.0/UDP 127.0.0.1:5092;branch=z9hG4bK-10607-1-0",
            "SIP/2.0/UDP [2001:db8::1]:5070;rport;branch=z9hG4bK-v6",
            "SIP/2.0/TCP proxy1.example.com;branch=z9hG4bK-mid;received=192.0.2.7",
            "SIP/2.0/UDP 192.0.2.50:5060;rport=5060;received=2001:db8::9;branch=z9hG4bK-reg1",
        ] {
            let v = Via::parse(s).unwrap();
            assert_eq!(v.to_string(), s);
        }
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.protocol.as_str(), v.transport.as_str()),
            ("SIP/2.0", "UDP")
        );
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!((v.host.as_str(), v.port), ("spindle.example.com", None));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::1] : 5070 ;rport").unwrap();
        assert_eq!(
            (v.host.as_str(), v.port, v.rport()),
            ("[2001:db8::1]", Some(5070), Some(None))
        );
    }

    #[test]
    fn bad_vias_are_rejected() {
        for s in [
            "",
            "SIP/2.0",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ;branch=x",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h;rport=abc",
            "SIP 2.0 UDP h",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(Via::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn stamp_source_follows_rfc3581() {
        let mut v = Via::parse("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1").unwrap();
        v.stamp_source("192.0.2.4:40000".parse().unwrap());
        assert_eq!(v.received(), Some("192.0.2.4"));
        assert_eq!(v.rport(), Some(Some(40000)));
        let mut v = Via::parse("SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK1").unwrap();
        v.stamp_source("192.0.2.4:5060".parse().unwrap());
        assert_eq!(v.received(), None, "same host and no rport: nothing to add");
        let mut v = Via::parse("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1").unwrap();
        v.stamp_source("[2001:db8::2]:5060".parse().unwrap());
        assert_eq!(v.received(), Some("2001:db8::2"));
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
    }
}
