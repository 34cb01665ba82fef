//! Certificate revocation lists (RFC 5280 §5), pure: whether a CRL is the issuer's, current,
//! and lists a certificate.
//!
//! A CRL counts for a certificate when its issuer name is the certificate's issuer, its
//! signature verifies with the issuer's key (which, when it states key usages, allows
//! cRLSign), and it is current (`nextUpdate` not passed). Delta CRLs and indirect CRLs are
//! not read: a CRL that declares either is refused rather than half understood.

use std::time::SystemTime;

use der::Encode;
use der::asn1::ObjectIdentifier;
use x509_cert::Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::ocsp::Status;
use super::verify_signature;

/// What a checked CRL says about one certificate: the same shape as an OCSP answer.
pub(crate) use super::ocsp::Answer;

/// Why a CRL does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CrlError {
    #[error("CRL does not parse: {0}")]
    Malformed(String),
    #[error("CRL is not the issuer's: {0}")]
    Signature(String),
    #[error("CRL has expired (nextUpdate passed)")]
    Stale,
    #[error("CRL is a delta or indirect CRL, which are not supported")]
    Unsupported,
}

/// Checks `der` as `issuer`'s CRL and looks `cert` up in it, at `now`.
pub(crate) fn check(
    der: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
    now: SystemTime,
) -> Result<Answer, CrlError> {
    let (_, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| CrlError::Malformed(e.to_string()))?;
    let issuer_name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| CrlError::Malformed(e.to_string()))?;
    if crl.tbs_cert_list.issuer.as_raw() != issuer_name.as_slice() {
        return Err(CrlError::Signature("issuer name differs".into()));
    }
    for ext in crl.extensions() {
        let id = ext.oid.to_id_string();
        // deltaCRLIndicator; issuingDistributionPoint marked indirect is refused too.
        if id == "2.5.29.27" {
            return Err(CrlError::Unsupported);
        }
        if id == "2.5.29.28" && ext.critical && indirect(ext.value) {
            return Err(CrlError::Unsupported);
        }
    }
    if !allows_crl_sign(issuer) {
        return Err(CrlError::Signature(
            "issuer's key usage excludes cRLSign".into(),
        ));
    }
    let alg = ObjectIdentifier::new(&crl.signature_algorithm.algorithm.to_id_string())
        .map_err(|e| CrlError::Malformed(e.to_string()))?;
    verify_signature(
        &issuer.tbs_certificate.subject_public_key_info,
        &alg,
        None,
        crl.tbs_cert_list.as_ref(),
        &crl.signature_value.data,
    )
    .map_err(|e| CrlError::Signature(e.to_string()))?;
    let this_update = super::system_time(crl.last_update().timestamp());
    let next_update = crl.next_update().map(|t| super::system_time(t.timestamp()));
    if next_update.is_some_and(|n| n < now) {
        return Err(CrlError::Stale);
    }
    let serial = cert.tbs_certificate.serial_number.as_bytes();
    let revoked = crl
        .iter_revoked_certificates()
        .any(|r| trim(r.raw_serial()) == trim(serial));
    Ok(Answer {
        status: if revoked {
            Status::Revoked
        } else {
            Status::Good
        },
        this_update,
        next_update,
    })
}

/// Serial numbers compare as integers: leading zero octets do not count.
fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// `indirectCRL [4] BOOLEAN` set in an issuingDistributionPoint value.
fn indirect(value: &[u8]) -> bool {
    value.windows(3).any(|w| w == [0x84, 0x01, 0xff])
}

fn allows_crl_sign(issuer: &Certificate) -> bool {
    use x509_parser::prelude::X509Certificate;
    let Ok(der) = issuer.to_der() else {
        return false;
    };
    X509Certificate::from_der(&der).is_ok_and(|(_, c)| {
        c.key_usage()
            .ok()
            .flatten()
            .is_none_or(|k| k.value.crl_sign())
    })
}
