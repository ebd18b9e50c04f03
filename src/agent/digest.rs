//! Digest access authentication as SIP uses it (RFC 3261 §22.4 on RFC 7616, SHA-256 per RFC 8760),
//! `qop=auth` only: the hashes, `WWW-Authenticate` challenges and `Authorization` credentials (parse and
//! print), and checking a response in constant time.
//!
//! It keeps no state and decides nothing about nonces, users or replies; the registrar does. `-sess`
//! algorithms, `auth-int`, `userhash` and SHA-512-256 are not offered and are refused when answered.
use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm helpline offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617): all SIP phones speak it; SIPp 3.6 and baresip 1.0 speak nothing else.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760 for SIP).
    Sha256,
}

impl Algorithm {
    /// The name in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm named `name` (case-insensitive, RFC 7616 §3.3), if helpline speaks it.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Lowercase hex of the hash of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }

    /// Length of a hash in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `realm` can be a realm: non-empty printable text without `"` or `\` (it is sent as a quoted
/// string and is part of every stored HA1, so it must survive copying between tools unchanged).
pub fn is_valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 128
        && !realm
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
}

/// `HA1 = H(username ":" realm ":" password)` in lowercase hex, as `htdigest` stores it: a password
/// equivalent, so `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    algorithm: Algorithm,
    hex: String,
}

impl Ha1 {
    /// A stored HA1: lowercase hex of the algorithm's length, else `None`.
    pub fn parse(algorithm: Algorithm, hex: &str) -> Option<Ha1> {
        is_lower_hex(hex, algorithm.hex_len()).then(|| Ha1 {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// HA1 of a password (what `helpline passwd` prints).
    pub fn compute(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> Ha1 {
        Ha1 {
            algorithm,
            hex: algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes()),
        }
    }

    /// The algorithm it was computed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex, for the configuration file.
    pub fn as_hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({}, …)", self.algorithm)
    }
}

/// `KD(HA1, nonce:nc:cnonce:auth:H(method:uri))`: the `response` for `qop=auth` (RFC 7616 §3.4.1).
pub fn response(ha1: &Ha1, nonce: &str, nc: &str, cnonce: &str, method: &str, uri: &str) -> String {
    let alg = ha1.algorithm;
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    alg.hash_hex(format!("{}:{nonce}:{nc}:{cnonce}:auth:{ha2}", ha1.hex).as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how many leading digits matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Why an `Authorization` or `WWW-Authenticate` value cannot be used (the registrar answers `400`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The value does not follow the auth-param grammar (RFC 7235 §2.1).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A parameter the digest needs is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A parameter appears twice (RFC 7616 §3.4: each at most once).
    #[error("duplicate {0}")]
    Duplicate(String),
    /// An algorithm helpline does not speak (or did not offer).
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// A qop other than `auth`.
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    /// `userhash=true` (RFC 7616 §3.4.4), which helpline never offers.
    #[error("userhash is not offered")]
    UserHash,
}

/// One `name=value` of an auth-param list; names are lowercased, quoted values unescaped.
type Params = Vec<(String, String)>;

/// Splits `Scheme rest` at the first whitespace.
fn split_scheme(value: &str) -> (&str, &str) {
    let value = value.trim();
    value.split_once([' ', '\t']).unwrap_or((value, ""))
}

/// Splits `Scheme a=b, c="d"` into the scheme and its parameters.
fn parse_params(value: &str) -> Result<(&str, Params), DigestError> {
    let (scheme, mut rest) = split_scheme(value);
    let mut params = Params::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Ok((scheme, params));
        }
        let name_end = rest.find(['=', ' ', '\t', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(DigestError::Malformed("parameter name"));
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or(DigestError::Malformed("parameter without a value"))?
            .trim_start();
        let (v, after) = if let Some(q) = rest.strip_prefix('"') {
            quoted(q)?
        } else {
            let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        let name = name.to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(DigestError::Duplicate(name));
        }
        params.push((name, v));
        rest = after.trim_start();
        if !(rest.is_empty() || rest.starts_with(',')) {
            return Err(DigestError::Malformed("text between parameters"));
        }
    }
}

/// The body of a quoted string (after its opening `"`), unescaped, and the text after its closing `"`.
fn quoted(s: &str) -> Result<(String, &str), DigestError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(DigestError::Malformed("quoted string"))
}

/// `"text"` with `"` and `\` escaped (RFC 3261 §25.1 quoted-pair).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn take(params: &mut Params, name: &str) -> Option<String> {
    let i = params.iter().position(|(n, _)| n == name)?;
    Some(params.swap_remove(i).1)
}

/// One `WWW-Authenticate: Digest …` challenge, always `qop="auth"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space, `[routing] realm`.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// The algorithm this challenge asks for.
    pub algorithm: Algorithm,
    /// The previous request's nonce was stale but its digest was right: retry without asking the user.
    pub stale: bool,
}

impl Challenge {
    /// The header value.
    pub fn to_header_value(&self) -> String {
        let mut v = format!(
            "Digest realm={}, nonce={}, algorithm={}, qop=\"auth\"",
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm
        );
        if self.stale {
            v.push_str(", stale=true");
        }
        v
    }

    /// Parses a `WWW-Authenticate` value (the client side, for tests and future outbound registration).
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let (scheme, mut p) = parse_params(value)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::Malformed("scheme"));
        }
        let algorithm = match take(&mut p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a))?,
        };
        let qop = take(&mut p, "qop").ok_or(DigestError::Missing("qop"))?;
        if !qop
            .split(',')
            .any(|q| q.trim().eq_ignore_ascii_case("auth"))
        {
            return Err(DigestError::UnsupportedQop(qop));
        }
        Ok(Challenge {
            realm: take(&mut p, "realm").ok_or(DigestError::Missing("realm"))?,
            nonce: take(&mut p, "nonce").ok_or(DigestError::Missing("nonce"))?,
            algorithm,
            stale: take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// The digest in an `Authorization: Digest …` header, syntax checked (`qop=auth`, 8-hex `nc`, a response
/// of the algorithm's length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The digest username (an agent ID).
    pub username: String,
    /// The realm the client answers.
    pub realm: String,
    /// The server nonce it answers.
    pub nonce: String,
    /// The digest-uri (should equal the Request-URI).
    pub uri: String,
    /// The response, lowercase hex.
    pub response: String,
    /// The algorithm (MD5 when absent, RFC 7616 §3.4).
    pub algorithm: Algorithm,
    /// The client nonce.
    pub cnonce: String,
    /// The nonce count as sent: 8 hex digits.
    pub nc: String,
    /// `opaque`, echoed when the challenge had one.
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses an `Authorization` value; `Ok(None)` for a scheme other than `Digest`.
    pub fn parse(value: &str) -> Result<Option<Credentials>, DigestError> {
        // Other schemes (Basic's token68, Bearer) need not follow the auth-param grammar.
        if !split_scheme(value).0.eq_ignore_ascii_case("Digest") {
            return Ok(None);
        }
        let (_, mut p) = parse_params(value)?;
        let mut need = |name: &'static str| take(&mut p, name).ok_or(DigestError::Missing(name));
        let username = need("username")?;
        let realm = need("realm")?;
        let nonce = need("nonce")?;
        let uri = need("uri")?;
        let response = need("response")?.to_ascii_lowercase();
        let qop = need("qop")?;
        let nc = need("nc")?;
        let cnonce = need("cnonce")?;
        let algorithm = match take(&mut p, "algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a))?,
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(DigestError::UnsupportedQop(qop));
        }
        if take(&mut p, "userhash").is_some_and(|u| u.eq_ignore_ascii_case("true")) {
            return Err(DigestError::UserHash);
        }
        if nc.len() != 8 || !nc.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(DigestError::Malformed("nc"));
        }
        if !is_lower_hex(&response, algorithm.hex_len()) {
            return Err(DigestError::Malformed("response"));
        }
        if username.is_empty() || nonce.is_empty() || cnonce.is_empty() {
            return Err(DigestError::Malformed("empty username, nonce or cnonce"));
        }
        Ok(Some(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            nc,
            opaque: take(&mut p, "opaque"),
        }))
    }

    /// The nonce count as a number.
    pub fn nc_value(&self) -> u32 {
        // `parse` checked 8 hex digits, which always fit in a u32.
        u32::from_str_radix(&self.nc, 16).unwrap_or(0)
    }

    /// Whether `response` is right for `ha1` and `method` (constant time in the response compared).
    /// An `ha1` of another algorithm than the credentials' never matches.
    pub fn verify(&self, ha1: &Ha1, method: &str) -> bool {
        let expected = response(ha1, &self.nonce, &self.nc, &self.cnonce, method, &self.uri);
        constant_time_eq(expected.as_bytes(), self.response.as_bytes())
            && ha1.algorithm == self.algorithm
    }

    /// A client's answer to `challenge` (for tests and future outbound registration).
    pub fn answer(
        challenge: &Challenge,
        username: &str,
        ha1: &Ha1,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Credentials {
        let nc = format!("{nc:08x}");
        Credentials {
            username: username.to_owned(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response: response(ha1, &challenge.nonce, &nc, cnonce, method, uri),
            algorithm: ha1.algorithm,
            cnonce: cnonce.to_owned(),
            nc,
            opaque: None,
        }
    }

    /// The header value, in the parameter order SIP phones use.
    pub fn to_header_value(&self) -> String {
        let mut v = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}, cnonce={}, qop=auth, nc={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm,
            quote(&self.cnonce),
            self.nc
        );
        if let Some(o) = &self.opaque {
            v.push_str(", opaque=");
            v.push_str(&quote(o));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5: the Mufasa example, MD5 with qop=auth.
    #[test]
    fn rfc2617_md5_example() {
        let ha1 = Ha1::compute(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = response(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn rfc7616_sha256_and_md5_example() {
        let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = Credentials::parse(header).unwrap().unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let pw = |alg| Ha1::compute(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(c.verify(&pw(Algorithm::Sha256), "GET"));
        assert!(!c.verify(&pw(Algorithm::Sha256), "POST"));
        let md5 = response(
            &pw(Algorithm::Md5),
            &c.nonce,
            &c.nc,
            &c.cnonce,
            "GET",
            &c.uri,
        );
        assert_eq!(md5, "8ca523f5e9506fed4657c9700eebdbec");
        // An HA1 of the other algorithm never verifies.
        assert!(!c.verify(&pw(Algorithm::Md5), "GET"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    #[test]
    fn htdigest_ha1_of_a_known_password() {
        // `printf 'alice:helpline:correct horse' | md5sum` / `sha256sum`.
        let md5 = Ha1::compute(Algorithm::Md5, "alice", "helpline", "correct horse");
        assert_eq!(md5.as_hex(), "b5e76893f4140dd5a5838cad7b58cf3b");
        let sha = Ha1::compute(Algorithm::Sha256, "alice", "helpline", "correct horse");
        assert_eq!(
            sha.as_hex(),
            "a2d853ea78ff06e3647367d773fd19b8903f7b27c9193e486b12881cb3c75e49"
        );
        assert_eq!(Ha1::parse(Algorithm::Md5, md5.as_hex()), Some(md5.clone()));
        assert!(Ha1::parse(Algorithm::Md5, &md5.as_hex().to_uppercase()).is_none());
        assert!(Ha1::parse(Algorithm::Sha256, md5.as_hex()).is_none());
        assert_eq!(format!("{md5:?}"), "Ha1(MD5, …)");
    }

    #[test]
    fn challenge_prints_and_parses_back() {
        let c = Challenge {
            realm: "help \"line\"".into(),
            nonce: "abc".into(),
            algorithm: Algorithm::Sha256,
            stale: true,
        };
        let v = c.to_header_value();
        assert_eq!(
            v,
            r#"Digest realm="help \"line\"", nonce="abc", algorithm=SHA-256, qop="auth", stale=true"#
        );
        assert_eq!(Challenge::parse(&v), Ok(c));
    }

    #[test]
    fn credentials_print_and_parse_back() {
        let ch = Challenge {
            realm: "helpline".into(),
            nonce: "n1".into(),
            algorithm: Algorithm::Md5,
            stale: false,
        };
        let ha1 = Ha1::compute(Algorithm::Md5, "alice", "helpline", "pw");
        let c = Credentials::answer(&ch, "alice", &ha1, "REGISTER", "sip:h", "c1", 2);
        assert_eq!(c.nc, "00000002");
        let parsed = Credentials::parse(&c.to_header_value()).unwrap().unwrap();
        assert_eq!(parsed, c);
        assert_eq!(parsed.nc_value(), 2);
        assert!(parsed.verify(&ha1, "REGISTER"));
    }

    #[test]
    fn malformed_credentials_name_their_fault() {
        let ok = r#"Digest username="a", realm="r", nonce="n", uri="sip:h", response="00000000000000000000000000000000", cnonce="c", qop=auth, nc=00000001"#;
        assert!(Credentials::parse(ok).unwrap().is_some());
        assert_eq!(Credentials::parse("Basic YWxhZGRpbjpvcGVu"), Ok(None));
        let cases = [
            (
                ok.replace("nc=00000001", "nc=1"),
                DigestError::Malformed("nc"),
            ),
            (
                ok.replace("qop=auth", "qop=auth-int"),
                DigestError::UnsupportedQop("auth-int".into()),
            ),
            (ok.replace(", qop=auth", ""), DigestError::Missing("qop")),
            (
                ok.replace("nonce=\"n\", ", ""),
                DigestError::Missing("nonce"),
            ),
            (
                format!("{ok}, algorithm=MD5-sess"),
                DigestError::UnsupportedAlgorithm("MD5-sess".into()),
            ),
            (
                format!("{ok}, realm=\"x\""),
                DigestError::Duplicate("realm".into()),
            ),
            (format!("{ok}, userhash=true"), DigestError::UserHash),
            (
                ok.replace("\"0000", "\"zz00"),
                DigestError::Malformed("response"),
            ),
            (
                format!("{ok}, opaque=\"abc"),
                DigestError::Malformed("quoted string"),
            ),
            (
                ok.replace("uri=\"sip:h\"", "uri"),
                DigestError::Malformed("parameter without a value"),
            ),
            (
                ok.replace("cnonce=\"c\"", "cnonce=\"c\" x"),
                DigestError::Malformed("text between parameters"),
            ),
        ];
        for (text, err) in cases {
            assert_eq!(Credentials::parse(&text), Err(err), "{text}");
        }
    }

    #[test]
    fn tokens_and_quoted_values_are_both_accepted() {
        let v = "digest  username=alice ,realm=\"r\",nonce=n,uri=\"sip:a;b=c\",response=\"0123456789abcdef0123456789ABCDEF\",cnonce=c,qop=\"auth\",nc=\"0000000a\",algorithm=md5";
        let c = Credentials::parse(v).unwrap().unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.uri, "sip:a;b=c");
        assert_eq!(c.response, "0123456789abcdef0123456789abcdef");
        assert_eq!(c.nc_value(), 10);
        assert_eq!(c.algorithm, Algorithm::Md5);
    }

    #[test]
    fn realms_that_survive_quoting() {
        assert!(is_valid_realm("helpline"));
        assert!(is_valid_realm("helpline.example.org"));
        for bad in ["", "a\"b", "a\\b", "a\nb"] {
            assert!(!is_valid_realm(bad), "{bad:?}");
        }
    }
}
