//! Dialed-number normalisation: published numbers (national or `+` format) and Request-URI user parts
//! (`+`, `00`, `011`, national trunk prefixes, spaces, dashes, `tel:` URIs) become E.164 digit strings.
//!
//! Written by hand rather than with the `phonenumber` crate: parsing a national number needs its
//! country, which a dialed user part does not carry, so matching is done against the configured
//! numbers instead (see `MenuSet::route_dialed`); all we need per country is its calling code and trunk
//! prefix. This module does not validate number ranges or carrier rules.

use thiserror::Error;

/// Calling code and national trunk prefix of the countries helpline publishes numbers in.
/// The trunk prefix is what a caller dials before a national number (`0` in most of Europe).
const COUNTRIES: &[(&str, &str, &str)] = &[
    ("AR", "54", "0"),
    ("AU", "61", "0"),
    ("BD", "880", "0"),
    ("BR", "55", "0"),
    ("CA", "1", "1"),
    ("CN", "86", "0"),
    // Colombia and Mexico: `01` was the long-distance prefix used in front of toll-free 800 numbers.
    ("CO", "57", "01"),
    ("DE", "49", "0"),
    ("ES", "34", ""),
    ("FR", "33", "0"),
    ("GB", "44", "0"),
    ("ID", "62", "0"),
    ("IN", "91", "0"),
    // Italy keeps a leading 0 inside the number (no trunk prefix to strip).
    ("IT", "39", ""),
    ("LK", "94", "0"),
    ("MX", "52", "01"),
    ("MY", "60", "0"),
    ("NZ", "64", "0"),
    ("PH", "63", "0"),
    ("PK", "92", "0"),
    ("SG", "65", ""),
    ("TH", "66", "0"),
    ("US", "1", "1"),
    ("VN", "84", "0"),
];

/// Why a published number in the config cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NumberError {
    /// The country code is not in our table.
    #[error("unknown country `{0}`")]
    UnknownCountry(String),
    /// Something other than digits and visual separators.
    #[error("`{0}` is not a phone number")]
    NotANumber(String),
    /// A `+` number whose calling code does not belong to the stated country.
    #[error("`{number}` does not start with calling code +{code} of {country}")]
    WrongCallingCode {
        /// The number as written.
        number: String,
        /// The expected calling code.
        code: String,
        /// The stated country.
        country: String,
    },
    /// Longer than the 15 digits E.164 allows.
    #[error("`{0}` is longer than 15 digits")]
    TooLong(String),
}

/// ISO country codes the normaliser knows, for hints.
pub fn known_countries() -> impl Iterator<Item = &'static str> {
    COUNTRIES.iter().map(|(c, _, _)| *c)
}

/// A configured number in its matching forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedNumber {
    /// E.164 digits without `+`, e.g. `448000289999`.
    pub e164: String,
    /// Digit strings a carrier may deliver nationally: as published (with trunk prefix) and without it.
    pub national: Vec<String>,
}

/// A dialed user part after cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialed {
    /// Written with a leading `+`: E.164 digits.
    International(String),
    /// Digits only: E.164 without `+`, `00`/`011` international, or national.
    Digits(String),
}

/// Removes a URI scheme, host part, URI parameters and visual separators (RFC 3966 §5.1.1
/// `visual-separator`: `-`, `.`, `(`, `)`, plus spaces as people write them).
fn strip_visuals(input: &str) -> Option<(bool, String)> {
    let mut s = input.trim();
    for scheme in ["tel:", "sip:", "sips:"] {
        if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
            s = &s[scheme.len()..];
        }
    }
    let s = s.split('@').next().unwrap_or(s);
    let s = s.split(';').next().unwrap_or(s);
    let (plus, rest) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (!digits.is_empty()).then_some((plus, digits))
}

/// Cleans a Request-URI/To user part; `None` if it is not a phone number at all.
pub fn parse_dialed(user: &str) -> Option<Dialed> {
    let (plus, digits) = strip_visuals(user)?;
    Some(if plus {
        Dialed::International(digits)
    } else {
        Dialed::Digits(digits)
    })
}

/// The candidate E.164 digit strings for digits dialed without `+`, in the order to try them:
/// as-is (E.164 without `+`), then after an `00` or `011` international prefix.
pub fn international_candidates(digits: &str) -> impl Iterator<Item = &str> {
    let stripped = ["011", "00"]
        .into_iter()
        .find_map(|p| digits.strip_prefix(p));
    std::iter::once(digits).chain(stripped)
}

/// Normalises a number as the config publishes it in `country`.
pub fn normalise_published(country: &str, number: &str) -> Result<PublishedNumber, NumberError> {
    let &(_, code, trunk) = COUNTRIES
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(country))
        .ok_or_else(|| NumberError::UnknownCountry(country.to_owned()))?;
    let (plus, digits) =
        strip_visuals(number).ok_or_else(|| NumberError::NotANumber(number.to_owned()))?;
    let (e164, subscriber) = if plus {
        let subscriber = digits
            .strip_prefix(code)
            .ok_or_else(|| NumberError::WrongCallingCode {
                number: number.to_owned(),
                code: code.to_owned(),
                country: country.to_owned(),
            })?
            .to_owned();
        (digits.clone(), subscriber)
    } else {
        let subscriber = if trunk.is_empty() {
            digits.clone()
        } else {
            digits.strip_prefix(trunk).unwrap_or(&digits).to_owned()
        };
        (format!("{code}{subscriber}"), subscriber)
    };
    // E.164 §6.1: at most 15 digits including the country code.
    if e164.len() > 15 {
        return Err(NumberError::TooLong(number.to_owned()));
    }
    let mut national = vec![format!("{trunk}{subscriber}")];
    if !trunk.is_empty() {
        national.push(subscriber);
    }
    if !plus && !national.contains(&digits) {
        national.push(digits);
    }
    Ok(PublishedNumber { e164, national })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_national_numbers_become_e164() {
        let uk = normalise_published("GB", "0800 028 9999").unwrap();
        assert_eq!(uk.e164, "448000289999");
        assert!(uk.national.contains(&"08000289999".to_owned()));
        assert_eq!(
            normalise_published("US", "1-800-881-0888").unwrap().e164,
            "18008810888"
        );
        assert_eq!(
            normalise_published("MX", "01 800 842 9999").unwrap().e164,
            "528008429999"
        );
        assert_eq!(
            normalise_published("IT", "800 977 999").unwrap().e164,
            "39800977999"
        );
        assert_eq!(
            normalise_published("CN", "+86 21 6195 9999").unwrap().e164,
            "862161959999"
        );
    }

    #[test]
    fn published_number_errors() {
        assert_eq!(
            normalise_published("XX", "1"),
            Err(NumberError::UnknownCountry("XX".into()))
        );
        assert!(matches!(
            normalise_published("GB", "+49 800 1"),
            Err(NumberError::WrongCallingCode { .. })
        ));
        assert!(matches!(
            normalise_published("GB", "0800 CALL"),
            Err(NumberError::NotANumber(_))
        ));
    }

    #[test]
    fn dialed_forms() {
        assert_eq!(
            parse_dialed("tel:+44-800-028-9999;phone-context=x"),
            Some(Dialed::International("448000289999".into()))
        );
        assert_eq!(
            parse_dialed("sip:00448000289999@example.invalid"),
            Some(Dialed::Digits("00448000289999".into()))
        );
        assert_eq!(parse_dialed("support"), None);
        let c: Vec<&str> = international_candidates("011448000289999").collect();
        assert_eq!(c, ["011448000289999", "448000289999"]);
    }
}
