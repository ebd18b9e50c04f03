//! SIP/SIPS/tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (From, To, Contact, Route); printing
//! is verbatim (`%`-escapes are never decoded or re-escaped) and no URI comparison rules (§19.1.4) are
//! implemented here.

use std::fmt;

use super::headers::split_outside;

/// Why a URI or name-addr could not be parsed (the caller turns it into a fault naming the header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed uri: {0}")]
pub struct UriError(pub &'static str);

/// A parsed URI. For `sip`/`sips` the parts are split; for `tel` the telephone-subscriber is in `user`
/// and `host` is empty; for any other scheme the text after `scheme:` is kept whole in `host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uri {
    /// Scheme as received: `sip`, `sips`, `tel` or another.
    pub scheme: String,
    /// The userinfo (user and optional `:password`) verbatim, escapes kept; the number of a `tel:` URI.
    pub user: Option<String>,
    /// The host; IPv6 references keep their brackets (`[2001:db8::1]`).
    pub host: String,
    /// The port, if one was given.
    pub port: Option<u16>,
    /// URI parameters verbatim including the leading `;` (empty when none).
    params: String,
    /// URI headers verbatim including the leading `?` (empty when none).
    headers: String,
}

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Whether `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Finds the value of `name` in a raw `;a=b;c` parameter string (case-insensitive names).
fn raw_param<'a>(raw: &'a str, name: &str) -> Option<Option<&'a str>> {
    raw.split(';').skip(1).find_map(|p| {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.map(str::trim))
    })
}

impl Uri {
    /// Parses a URI. Whitespace, control bytes, `<`, `>` and `"` are rejected anywhere.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.bytes()
            .any(|c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return Err(UriError("forbidden character"));
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError("no scheme"))?;
        let sb = scheme.as_bytes();
        // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
        {
            return Err(UriError("bad scheme"));
        }
        if rest.is_empty() {
            return Err(UriError("empty"));
        }
        let mut uri = Uri {
            scheme: scheme.to_owned(),
            ..Uri::default()
        };
        if scheme.eq_ignore_ascii_case("tel") {
            let (num, params) = match rest.find(';') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            if num.is_empty() {
                return Err(UriError("empty telephone number"));
            }
            uri.user = Some(num.to_owned());
            uri.params = params.to_owned();
            return Ok(uri);
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            uri.host = rest.to_owned();
            return Ok(uri);
        }
        // Userinfo may itself contain `;` and `?` (RFC 3261 §25.1 user-unreserved) but never an
        // unescaped `@`, so the first `@` ends it.
        let hostpart = match rest.split_once('@') {
            Some((user, h)) => {
                if user.is_empty() {
                    return Err(UriError("empty user"));
                }
                uri.user = Some(user.to_owned());
                h
            }
            None => rest,
        };
        let hostport = if let Some(stripped) = hostpart.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or(UriError("unclosed ipv6 reference"))?;
            let v6 = &stripped[..end];
            if v6.is_empty()
                || !v6
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(UriError("bad ipv6 reference"));
            }
            uri.host = format!("[{v6}]");
            &stripped[end + 1..]
        } else {
            let end = hostpart.find([':', ';', '?']).unwrap_or(hostpart.len());
            let host = &hostpart[..end];
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
            {
                return Err(UriError("bad host"));
            }
            uri.host = host.to_owned();
            &hostpart[end..]
        };
        let mut rest = hostport;
        if let Some(p) = rest.strip_prefix(':') {
            let end = p.find([';', '?']).unwrap_or(p.len());
            let port = &p[..end];
            if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
                return Err(UriError("bad port"));
            }
            uri.port = Some(port.parse().map_err(|_| UriError("port out of range"))?);
            rest = &p[end..];
        }
        let (params, headers) = match rest.find('?') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !(params.is_empty() || params.starts_with(';')) {
            return Err(UriError("junk after host"));
        }
        uri.params = params.to_owned();
        uri.headers = headers.to_owned();
        Ok(uri)
    }

    /// A URI parameter: `None` when absent, `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        raw_param(&self.params, name)
    }

    /// The raw parameter string, including its leading `;` (empty when there are none).
    pub fn params_raw(&self) -> &str {
        &self.params
    }

    /// The raw URI header string, including its leading `?` (empty when there are none).
    pub fn headers_raw(&self) -> &str {
        &self.headers
    }

    /// Appends a parameter (`;name` or `;name=value`) verbatim.
    pub fn push_param(&mut self, name: &str, value: Option<&str>) {
        self.params.push(';');
        self.params.push_str(name);
        if let Some(v) = value {
            self.params.push('=');
            self.params.push_str(v);
        }
    }

    /// Whether this is a `sip:` or `sips:` URI.
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if self.scheme.eq_ignore_ascii_case("tel") {
            return write!(f, "{}{}", self.user.as_deref().unwrap_or(""), self.params);
        }
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}{}", self.params, self.headers)
    }
}

/// A header parameter list `;name[=value]`, names and values trimmed of the LWS RFC 3261 allows around
/// `;` and `=`; quoted values keep their quotes.
pub type Params = Vec<(String, Option<String>)>;

/// Parses `;a=b ; c` (the text after the URI or sent-by) into [`Params`].
pub(crate) fn parse_params(s: &str) -> Result<Params, UriError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some(s) = s.strip_prefix(';') else {
        return Err(UriError("junk before parameters"));
    };
    let mut out = Vec::new();
    for p in split_outside(s, b';') {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        if !is_token(n) {
            return Err(UriError("bad parameter name"));
        }
        if let Some(v) = v {
            let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            // Values are tokens, quoted strings, or IPv6 addresses (Via received); brackets too.
            if v.is_empty()
                || !(quoted || v.bytes().all(|c| is_token_byte(c) || b":[]".contains(&c)))
            {
                return Err(UriError("bad parameter value"));
            }
        }
        out.push((n.to_owned(), v.map(str::to_owned)));
    }
    Ok(out)
}

pub(crate) fn find_param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub(crate) fn set_param(params: &mut Params, name: &str, value: Option<&str>) {
    let value = value.map(str::to_owned);
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(p) => p.1 = value,
        None => params.push((name.to_owned(), value)),
    }
}

pub(crate) fn fmt_params(f: &mut fmt::Formatter<'_>, params: &Params) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// A name-addr or addr-spec header value (From, To, Contact, Route, …) with its header parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped (`Some("")` for `""`).
    pub display_name: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (`tag`, `q`, `expires`, …) in order.
    pub params: Params,
}

/// Reads a quoted string at the start of `s`; returns the unescaped text and the rest after it.
fn quoted(s: &str) -> Result<(String, &str), UriError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            // RFC 3261 §25.1 quoted-pair
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c if c == '\r' || c == '\n' => break,
            c => out.push(c),
        }
    }
    Err(UriError("unterminated quoted string"))
}

impl NameAddr {
    /// A name-addr for `uri` without display name or parameters.
    pub fn new(uri: Uri) -> Self {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses `"Name" <uri>;p=v`, `Name <uri>`, `<uri>` or a bare `uri;p=v` (whose `;` parameters belong
    /// to the header, RFC 3261 §20.10).
    pub fn parse(s: &str) -> Result<NameAddr, UriError> {
        let s = s.trim();
        let (display_name, uri, rest) = if s.starts_with('"') {
            let (name, rest) = quoted(s)?;
            let rest = rest.trim_start();
            let inner = rest
                .strip_prefix('<')
                .ok_or(UriError("no < after display name"))?;
            let end = inner.find('>').ok_or(UriError("no closing >"))?;
            (Some(name), &inner[..end], &inner[end + 1..])
        } else if let Some(lt) = s.find('<').filter(|&lt| !s[..lt].contains([';', '"'])) {
            let name = s[..lt].trim();
            // Tokens only per §25.1, but raw UTF-8 is tolerated: real phones send unquoted
            // non-ASCII names, and refusing a call over a display name helps nobody.
            let lenient = |t: &str| t.bytes().all(|c| !c.is_ascii() || is_token_byte(c));
            if !name.split_ascii_whitespace().all(lenient) {
                return Err(UriError("bad display name"));
            }
            let inner = &s[lt + 1..];
            let end = inner.find('>').ok_or(UriError("no closing >"))?;
            let name = (!name.is_empty()).then(|| name.to_owned());
            (name, &inner[..end], &inner[end + 1..])
        } else {
            let end = s.find(';').unwrap_or(s.len());
            (None, s[..end].trim_end(), &s[end..])
        };
        Ok(NameAddr {
            display_name,
            uri: Uri::parse(uri.trim())?,
            params: parse_params(rest)?,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3), if present with a value.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// A header parameter: `None` when absent, `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets (or replaces) a header parameter.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }
}

impl fmt::Display for NameAddr {
    /// Always prints the `<uri>` form so URI parameters can never be mistaken for header parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            f.write_str("\"")?;
            for c in name.chars() {
                match c {
                    // CR and LF cannot be written even as a quoted-pair (RFC 3261 §25.1).
                    '\r' | '\n' => f.write_str(" ")?,
                    // Other ASCII controls (an RFC 4475 display name holds NUL) only as quoted-pairs.
                    '"' | '\\' => write!(f, "\\{c}")?,
                    c if c.is_ascii_control() && c != '\t' => write!(f, "\\{c}")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        fmt_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parse_print_pairs() {
        for s in [
            "sip:service@127.0.0.1:5091",
            "sip:ivr@[2001:db8::10]:5060",
            "sip:[2001:db8::1]",
            "sips:alice:pw@example.com;transport=tcp;lr?subject=x&h=y",
            "sip:sips%3Auser%40example.com@example.net",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "tel:+15551234567;phone-context=example.com",
            "urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF",
            // Schemes helpline does not serve stay opaque, so the UAS can answer 416 (not 400).
            "http://example.com/ivr?x=1;y=2",
            "im:alice@example.com",
            "soap.beep://192.0.2.103:3002",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.to_string(), s, "round trip of {s}");
        }
        let u = Uri::parse("sip:ivr@[2001:db8::10]:5060;transport=udp;lr").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port),
            (Some("ivr"), "[2001:db8::10]", Some(5060))
        );
        assert_eq!(u.param("TRANSPORT"), Some(Some("udp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        let t = Uri::parse("tel:+15551234567").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str()),
            (Some("+15551234567"), "")
        );
    }

    #[test]
    fn bad_uris_are_rejected() {
        for s in [
            "",
            "sip:",
            "nocolon",
            "1sip:a@b",
            "sip:a b@c",
            "sip:@host",
            "sip:host:99999",
            "sip:host:",
            "sip:[::1",
            "sip:[zz]",
            "sip:ho/st",
            "sip:a@",
            "tel:",
        ] {
            assert!(Uri::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8")
            .unwrap();
        assert_eq!(n.display_name.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(
            n.to_string(),
            "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8"
        );
        let n =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.display_name, None);
        assert_eq!(n.uri.host, "chair-dnrc.example.com");
        assert_eq!(n.tag(), Some("1918181833n"));
        let n = NameAddr::parse("Jörg Müller <sip:j@b>").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Jörg Müller"));
        let n = NameAddr::parse("Agent 1001 <sip:a@b;lr>;expires=60;+sip.instance=\"<urn:x>\"")
            .unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Agent 1001"));
        assert_eq!(n.uri.param("lr"), Some(None));
        assert_eq!(n.param("+sip.instance"), Some(Some("\"<urn:x>\"")));
        let again = NameAddr::parse(&n.to_string()).unwrap();
        assert_eq!(again, n);
        for bad in [
            "<sip:a@b",
            "\"open <sip:a@b>",
            "sip:a@b;=x",
            "<sip:a@b> junk",
            "x<y <sip:a@b>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
