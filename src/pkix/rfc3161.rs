//! RFC 3161 timestamp tokens: the one place vouch checks that a timestamp authority
//! (TSA) vouched for a time at which some bytes existed.
//!
//! A token is a CMS `SignedData` whose content is a `TSTInfo`. It is authentic when:
//! 1. the `TSTInfo`'s message imprint is the hash of exactly the bytes being timestamped
//!    (for a Notary Project signature: the signature value) — else [`TimestampError::Imprint`];
//! 2. its single `SignerInfo` signs the signed attributes, which name the `TSTInfo`
//!    content type and carry its digest — else [`TimestampError::Signature`];
//! 3. the signing certificate (found in the token by issuer and serial or key identifier)
//!    carries the timeStamping extended key usage and chains, through the token's other
//!    certificates, to the caller's TSA trust store, valid at the time the token states —
//!    else [`TimestampError::Untrusted`].
//!
//! The caller gets the time (`genTime`) and its accuracy, so that a certificate can be
//! required to be valid over the whole interval the TSA allows.

use std::time::{Duration, SystemTime};

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;
use x509_tsp::{Accuracy, MessageImprint};

use super::{Role, build_path, digest, verify_signature};

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE_ATTR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST_ATTR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// An authentic timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// The TSA's `genTime`.
    pub time: SystemTime,
    /// The TSA's stated accuracy (zero when it states none).
    pub accuracy: Duration,
    /// The TSA signing certificate's subject, for reports.
    pub tsa: String,
}

impl Timestamp {
    /// The earliest and latest instants the token allows.
    pub(crate) fn range(&self) -> (SystemTime, SystemTime) {
        (
            self.time.checked_sub(self.accuracy).unwrap_or(self.time),
            self.time + self.accuracy,
        )
    }
}

/// Why a token is not an authentic timestamp of the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimestampError {
    /// The token does not parse as a timestamp token.
    #[error("timestamp token is malformed: {0}")]
    Malformed(String),
    /// The token timestamps other bytes.
    #[error("timestamp token is not over this signature")]
    Imprint,
    /// The token's signature does not verify.
    #[error("timestamp token signature: {0}")]
    Signature(String),
    /// The TSA is not trusted (or not at the time it states).
    #[error("timestamp authority is not trusted: {0}")]
    Untrusted(String),
}

fn malformed(e: impl std::fmt::Display) -> TimestampError {
    TimestampError::Malformed(e.to_string())
}

/// Verifies `token` (DER) as a timestamp of `message` by a TSA of `tsa_roots`.
pub(crate) fn verify(
    token: &[u8],
    message: &[u8],
    tsa_roots: &[CertificateDer<'static>],
) -> Result<Timestamp, TimestampError> {
    let info = ContentInfo::from_der(token).map_err(malformed)?;
    if info.content_type != SIGNED_DATA {
        return Err(malformed("content is not SignedData"));
    }
    let signed: SignedData = info.content.decode_as().map_err(malformed)?;
    let encap = &signed.encap_content_info;
    if encap.econtent_type != TST_INFO {
        return Err(malformed("content is not a TSTInfo"));
    }
    let econtent = encap
        .econtent
        .as_ref()
        .ok_or_else(|| malformed("TSTInfo is absent"))?;
    let tst_der = econtent
        .decode_as::<OctetString>()
        .map_err(malformed)?
        .into_bytes();
    let tst = parse_tst_info(&tst_der)?;

    // 1. The imprint is over these bytes.
    let imprint = &tst.message_imprint;
    let hashed = digest(&imprint.hash_algorithm.oid, message).ok_or_else(|| {
        malformed(format!(
            "imprint hash algorithm {} is not supported",
            imprint.hash_algorithm.oid
        ))
    })?;
    if imprint.hash_algorithm.oid == super::oid::SHA1 {
        return Err(malformed("SHA-1 imprints are not accepted"));
    }
    if hashed != imprint.hashed_message.as_bytes() {
        return Err(TimestampError::Imprint);
    }

    // 2. The signer signed these signed attributes, which cover the TSTInfo.
    let mut signers = signed.signer_infos.0.iter();
    let (Some(signer), None) = (signers.next(), signers.next()) else {
        return Err(malformed("expected exactly one signer"));
    };
    let certs: Vec<Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let signing_cert = certs
        .iter()
        .find(|c| identifies(&signer.sid, c))
        .ok_or_else(|| {
            TimestampError::Untrusted("the token does not carry its signing certificate".into())
        })?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| malformed("signed attributes are absent"))?;
    let attr = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    let content_type = attr(CONTENT_TYPE_ATTR)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| malformed("content-type attribute is absent"))?;
    if content_type != TST_INFO {
        return Err(malformed("content-type attribute is not TSTInfo"));
    }
    let message_digest = attr(MESSAGE_DIGEST_ATTR)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or_else(|| malformed("message-digest attribute is absent"))?;
    let content_digest = digest(&signer.digest_alg.oid, &tst_der).ok_or_else(|| {
        malformed(format!(
            "digest algorithm {} is not supported",
            signer.digest_alg.oid
        ))
    })?;
    if content_digest != message_digest.as_bytes() {
        return Err(TimestampError::Signature(
            "message-digest attribute does not match the TSTInfo".into(),
        ));
    }
    let signed_attrs_der = attrs.to_der().map_err(malformed)?;
    verify_signature(
        &signing_cert.tbs_certificate.subject_public_key_info,
        &signer.signature_algorithm.oid,
        Some(&signer.digest_alg.oid),
        &signed_attrs_der,
        signer.signature.as_bytes(),
    )
    .map_err(|e| TimestampError::Signature(e.to_string()))?;

    // 3. The TSA chains to the trust store at the time it states.
    let time = tst.gen_time;
    let accuracy = tst
        .accuracy
        .as_ref()
        .map(|a| {
            Duration::from_secs(a.seconds.unwrap_or(0))
                + Duration::from_millis(a.millis.unwrap_or(0).max(0) as u64)
                + Duration::from_micros(a.micros.unwrap_or(0).max(0) as u64)
        })
        .unwrap_or_default();
    let leaf = signing_cert.to_der().map_err(malformed)?;
    let others: Vec<Vec<u8>> = certs
        .iter()
        .filter(|c| *c != signing_cert)
        .filter_map(|c| c.to_der().ok())
        .collect();
    build_path(&leaf, &others, tsa_roots, time, Role::TimeStamping)
        .map_err(|e| TimestampError::Untrusted(e.to_string()))?;
    Ok(Timestamp {
        time,
        accuracy,
        tsa: signing_cert.tbs_certificate.subject.to_string(),
    })
}

/// The fields of a `TSTInfo` vouch reads. Decoded by hand rather than with `x509_tsp`'s
/// type because `genTime` may carry fractional seconds (RFC 3161 allows them; major TSAs
/// write them), which DER's `GeneralizedTime` type of the `der` crate refuses.
struct TstFields {
    message_imprint: MessageImprint,
    gen_time: SystemTime,
    accuracy: Option<Accuracy>,
}

fn parse_tst_info(der_bytes: &[u8]) -> Result<TstFields, TimestampError> {
    use der::asn1::{AnyRef, Int};
    use der::{Reader, SliceReader, Tag};
    let mut reader = SliceReader::new(der_bytes).map_err(malformed)?;
    let fields = reader
        .sequence(|r| {
            let _version: Int = r.decode()?;
            let _policy: ObjectIdentifier = r.decode()?;
            let message_imprint: MessageImprint = r.decode()?;
            let _serial: Int = r.decode()?;
            let gen_time: AnyRef<'_> = r.decode()?;
            let accuracy = if r.peek_tag().ok() == Some(Tag::Sequence) {
                Some(r.decode::<Accuracy>()?)
            } else {
                None
            };
            // ordering, nonce, tsa, extensions: not read.
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            Ok((
                message_imprint,
                der::Tagged::tag(&gen_time),
                gen_time.value().to_vec(),
                accuracy,
            ))
        })
        .map_err(malformed)?;
    let (message_imprint, tag, time, accuracy): (MessageImprint, Tag, Vec<u8>, Option<Accuracy>) =
        fields;
    if tag != Tag::GeneralizedTime {
        return Err(malformed("genTime is not a GeneralizedTime"));
    }
    Ok(TstFields {
        message_imprint,
        gen_time: generalized_time(&time).ok_or_else(|| malformed("genTime is malformed"))?,
        accuracy,
    })
}

/// `YYYYMMDDHHMMSS[.f+]Z` (RFC 3161 §2.4.2) as a time.
fn generalized_time(b: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(b).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 14
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !fraction.bytes().all(|c| c.is_ascii_digit())
        || fraction.ends_with('0')
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let clock = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    let mut t = SystemTime::from(time::PrimitiveDateTime::new(date, clock).assume_utc());
    if !fraction.is_empty() {
        let digits = &fraction[..fraction.len().min(9)];
        let nanos: u64 = digits.parse().ok()?;
        t += Duration::from_nanos(nanos * 10u64.pow(9 - digits.len() as u32));
    }
    Some(t)
}

/// Whether `sid` names `cert`.
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(is) => {
            is.issuer == cert.tbs_certificate.issuer
                && is.serial_number == cert.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.14"))
            .and_then(|e| OctetString::from_der(e.extn_value.as_bytes()).ok())
            .is_some_and(|v| v.as_bytes() == ski.0.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use std::path::PathBuf;

    /// notation's published e2e signature timestamped by a public TSA (Microsoft's), with
    /// the token in the unprotected header `io.cncf.notary.timestampSignature`.
    fn published() -> (Vec<u8>, Vec<u8>, Vec<CertificateDer<'static>>) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
            "../shared/fixtures/notation/notation-e2e/oci_layout/e2e-with-timestamped-signature/blobs/sha256/603ff134e97a79cd7a15560b76137c2c4a10451daab11327a7c6f86dac250fee",
        );
        let env: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
        let token = STANDARD
            .decode(
                env["header"]["io.cncf.notary.timestampSignature"]
                    .as_str()
                    .expect("token"),
            )
            .expect("base64");
        let signature = URL_SAFE_NO_PAD
            .decode(env["signature"].as_str().expect("sig"))
            .expect("base64url");
        // Trust the TSA's issuing CA, as the token carries it.
        let info = ContentInfo::from_der(&token).expect("token");
        let sd: SignedData = info.content.decode_as().expect("signed data");
        let ca: Vec<CertificateDer<'static>> = sd
            .certificates
            .iter()
            .flat_map(|s| s.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c)
                    if c.tbs_certificate
                        .subject
                        .to_string()
                        .contains("Timestamping CA") =>
                {
                    Some(CertificateDer::from(c.to_der().expect("der")))
                }
                _ => None,
            })
            .collect();
        assert_eq!(ca.len(), 1, "the token carries its issuing CA");
        (token, signature, ca)
    }

    #[test]
    fn a_published_token_verifies_at_its_time() {
        let (token, signature, ca) = published();
        let ts = verify(&token, &signature, &ca).expect("authentic");
        let signed_at = time::OffsetDateTime::parse(
            "2025-01-21T09:17:46Z",
            &time::format_description::well_known::Rfc3339,
        )
        .expect("time");
        let delta = ts
            .time
            .duration_since(SystemTime::from(signed_at))
            .unwrap_or_default();
        assert!(delta < Duration::from_secs(60), "{ts:?}");
        assert!(ts.tsa.contains("Time Stamping Authority"), "{}", ts.tsa);
    }

    #[test]
    fn generalized_times_with_and_without_fractions() {
        let t = |s: &str| generalized_time(s.as_bytes());
        let base = t("20250121091746Z").expect("whole seconds");
        assert_eq!(
            t("20250121091746.25Z"),
            Some(base + Duration::from_millis(250))
        );
        assert_eq!(t("20250121091746.250Z"), None, "trailing zeros are not DER");
        assert_eq!(t("20250121091746"), None, "Z is required");
        assert_eq!(t("20251321091746Z"), None, "month 13");
    }

    #[test]
    fn a_token_over_other_bytes_is_refused() {
        let (token, mut signature, ca) = published();
        signature[0] ^= 1;
        assert_eq!(
            verify(&token, &signature, &ca),
            Err(TimestampError::Imprint)
        );
    }

    #[test]
    fn another_trust_store_is_untrusted() {
        let (token, signature, _) = published();
        let other = rcgen::generate_simple_self_signed(vec!["tsa.example".into()])
            .expect("cert")
            .cert
            .der()
            .clone();
        assert!(matches!(
            verify(&token, &signature, &[other]),
            Err(TimestampError::Untrusted(_))
        ));
    }

    #[test]
    fn a_flipped_byte_in_the_token_never_verifies() {
        let (token, signature, ca) = published();
        for i in (0..token.len()).step_by(97) {
            let mut t = token.clone();
            t[i] ^= 0x40;
            if let Ok(ts) = verify(&t, &signature, &ca) {
                // Only bytes outside what is signed (unsigned certificates' padding) may
                // change without effect; the time must then be the original one.
                assert_eq!(ts, verify(&token, &signature, &ca).expect("ok"), "byte {i}");
            }
        }
    }
}
