//! What the checks here read from DER themselves: the Fulcio leaf's identity (every SAN,
//! the OIDC issuer, the Fulcio extensions) and validity, and the `genTime` of an RFC 3161
//! timestamp token (to tell an expired leaf from an untrusted chain, see
//! `bundle::explain`). Every decoder returns `None`/errors on malformed input.

use std::collections::BTreeMap;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The Fulcio OID arc: `1.3.6.1.4.1.57264.1.<n>`.
const FULCIO_ARC: &str = "1.3.6.1.4.1.57264.1.";
/// `.1`: OIDC issuer, raw bytes (deprecated).
const ISSUER_V1: u32 = 1;
/// `.8`: OIDC issuer, DER UTF8String.
const ISSUER_V2: u32 = 8;

/// The parts of a Fulcio leaf certificate the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    /// Every email and URI SAN, in certificate order.
    pub sans: Vec<String>,
    /// From `.8`, falling back to `.1`; `None` when neither is present or decodes.
    pub issuer: Option<String>,
    /// Fulcio extensions by last OID arc, decoded (`.2`–`.6` raw UTF-8, `.9`+ DER
    /// UTF8String); extensions that do not decode are absent.
    pub extensions: BTreeMap<u32, String>,
    /// Validity, inclusive, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl Leaf {
    pub(crate) fn parse(der: &[u8]) -> Result<Leaf, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("signing certificate is not DER X.509: {e}"))?;
        let mut sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(s) | GeneralName::URI(s) => sans.push(s.to_string()),
                    _ => {}
                }
            }
        }
        let mut extensions = BTreeMap::new();
        let mut issuer_v1 = None;
        let mut issuer_v2 = None;
        for ext in cert.iter_extensions() {
            let oid = ext.oid.to_id_string();
            let Some(arc) = oid
                .strip_prefix(FULCIO_ARC)
                .and_then(|a| a.parse::<u32>().ok())
            else {
                continue;
            };
            let value = if arc <= 6 {
                std::str::from_utf8(ext.value).ok().map(str::to_string)
            } else {
                der_utf8_string(ext.value)
            };
            match (arc, value) {
                (ISSUER_V1, v) => issuer_v1 = v,
                (ISSUER_V2, v) => issuer_v2 = v,
                (arc, Some(v)) => {
                    extensions.insert(arc, v);
                }
                (_, None) => {}
            }
        }
        let validity = cert.validity();
        Ok(Leaf {
            sans,
            issuer: issuer_v2.or(issuer_v1),
            extensions,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Whether the leaf was valid at `t` (inclusive ends).
    pub(crate) fn valid_at(&self, t: i64) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// One DER TLV: (tag, content, rest). Definite lengths only (DER), at most 4 length bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The children of a constructed value.
fn children(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = tlv(content)?;
        out.push((tag, value));
        content = rest;
    }
    Some(out)
}

/// A DER UTF8String (tag 12), the whole input.
fn der_utf8_string(der: &[u8]) -> Option<String> {
    match tlv(der)? {
        (0x0c, value, []) => std::str::from_utf8(value).ok().map(str::to_string),
        _ => None,
    }
}

const SEQUENCE: u8 = 0x30;
const CONTEXT_0: u8 = 0xa0;
const OCTET_STRING: u8 = 0x04;
const GENERALIZED_TIME: u8 = 0x18;

/// The `genTime` of an RFC 3161 timestamp (a `TimeStampResp` or a bare `TimeStampToken`),
/// seconds since the Unix epoch. Reads the structure only: the signature is the
/// verifier's business, and this is called only after it has verified the token.
pub(crate) fn timestamp_gen_time(der: &[u8]) -> Option<i64> {
    let (tag, outer, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let outer = children(outer)?;
    // TimeStampResp ::= SEQUENCE { status PKIStatusInfo (a SEQUENCE), timeStampToken }
    // TimeStampToken ::= ContentInfo ::= SEQUENCE { contentType OID, [0] EXPLICIT content }
    let content_info = match outer.as_slice() {
        [(SEQUENCE, _), (SEQUENCE, token), ..] => children(token)?,
        _ => outer,
    };
    let (CONTEXT_0, signed_data) = *content_info.get(1)? else {
        return None;
    };
    let (SEQUENCE, signed_data, _) = tlv(signed_data)? else {
        return None;
    };
    // SignedData ::= SEQUENCE { version, digestAlgorithms, encapContentInfo, ... }
    let (SEQUENCE, encap) = *children(signed_data)?.get(2)? else {
        return None;
    };
    // EncapsulatedContentInfo ::= SEQUENCE { eContentType, [0] EXPLICIT OCTET STRING }
    let (CONTEXT_0, econtent) = *children(encap)?.get(1)? else {
        return None;
    };
    let (OCTET_STRING, tst_info, _) = tlv(econtent)? else {
        return None;
    };
    let (SEQUENCE, tst_info, _) = tlv(tst_info)? else {
        return None;
    };
    // TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber, genTime, ... }
    let (GENERALIZED_TIME, gen_time) = *children(tst_info)?.get(4)? else {
        return None;
    };
    generalized_time(std::str::from_utf8(gen_time).ok()?)
}

/// `YYYYMMDDHHMMSS[.f*]Z` → seconds since the Unix epoch.
fn generalized_time(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let whole = s.split_once('.').map_or(s, |(w, _)| w);
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| whole.get(r)?.parse::<u16>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::from(num(0..4)?),
        month,
        u8::try_from(num(6..8)?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(num(8..10)?).ok()?,
        u8::try_from(num(10..12)?).ok()?,
        u8::try_from(num(12..14)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_refuses_what_it_cannot_read() {
        assert_eq!(tlv(&[]), None);
        assert_eq!(tlv(&[0x30]), None);
        assert_eq!(tlv(&[0x30, 0x02, 0x01]), None);
        assert_eq!(tlv(&[0x30, 0x80]), None, "indefinite length");
        assert_eq!(
            tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]),
            None,
            "length over 4 bytes"
        );
        assert_eq!(
            tlv(&[0x04, 0x01, 0xff, 0x00]),
            Some((0x04, &[0xff][..], &[0x00][..]))
        );
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xaa]),
            Some((0x04, &[0xaa][..], &[][..]))
        );
        assert_eq!(
            der_utf8_string(&[0x0c, 0x02, b'h', b'i']).as_deref(),
            Some("hi")
        );
        assert_eq!(der_utf8_string(&[0x13, 0x02, b'h', b'i']), None);
        assert_eq!(der_utf8_string(&[0x0c, 0x01, 0xff]), None);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = timestamp_gen_time(&junk);
            let _ = Leaf::parse(&junk);
        }
    }

    #[test]
    fn generalized_times() {
        assert_eq!(generalized_time("19700101000000Z"), Some(0));
        assert_eq!(generalized_time("20230712155636Z"), Some(1_689_177_396));
        assert_eq!(generalized_time("20230712155636.123Z"), Some(1_689_177_396));
        assert_eq!(generalized_time("20231312155636Z"), None);
        assert_eq!(generalized_time("2023071215563Z"), None);
        assert_eq!(generalized_time("20230712155636"), None);
        assert_eq!(generalized_time("2023+712155636Z"), None);
    }
}
