//! OCSP (RFC 6960), pure: the request vouch sends for one certificate and the checks an
//! answer must pass before its status counts.
//!
//! An answer counts when it is `successful`, a basic response, signed by the
//! certificate's issuer or by a responder certificate that the issuer issued with the
//! OCSPSigning extended key usage, names the certificate's `CertID`, and is current
//! (`thisUpdate` not in the future beyond [`CLOCK_SKEW`], `nextUpdate` not passed).

use std::time::{Duration, SystemTime};

use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};

use super::{EKU_OCSP_SIGNING, digest, oid, verify_signature};

const BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// How far in the future a responder's `thisUpdate` may lie (clocks differ).
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A certificate's revocation status as an authority states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Good,
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
}

/// A checked answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: Status,
    pub this_update: SystemTime,
    /// Until when the answer may be reused; `None`: the responder gives no bound.
    pub next_update: Option<SystemTime>,
}

/// Why an OCSP answer does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OcspError {
    #[error("OCSP: {0}")]
    Malformed(String),
    #[error("OCSP responder answered {0:?}")]
    NotSuccessful(OcspResponseStatus),
    #[error("OCSP answer is not signed by the issuer or its responder: {0}")]
    Signature(String),
    #[error("OCSP answer does not name the certificate")]
    NotAnswered,
    #[error("OCSP answer is stale or not yet valid")]
    Stale,
}

fn malformed(e: impl std::fmt::Display) -> OcspError {
    OcspError::Malformed(e.to_string())
}

/// The `CertID` of `cert` issued by `issuer` (SHA-1, as every responder understands).
pub(crate) fn cert_id(cert: &Certificate, issuer: &Certificate) -> Result<CertId, OcspError> {
    let name = issuer.tbs_certificate.subject.to_der().map_err(malformed)?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let sha1 = |b: &[u8]| digest(&oid::SHA1, b).unwrap_or_default();
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: oid::SHA1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(sha1(&name)).map_err(malformed)?,
        issuer_key_hash: OctetString::new(sha1(key)).map_err(malformed)?,
        serial_number: cert.tbs_certificate.serial_number.clone(),
    })
}

/// The DER request for `id` (unsigned, no nonce: answers are cached and shared).
pub(crate) fn request(id: &CertId) -> Result<Vec<u8>, OcspError> {
    OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(malformed)
}

/// Checks `der` as the answer about `id`, whose issuer is `issuer`, at `now`.
pub(crate) fn check(
    der: &[u8],
    id: &CertId,
    issuer: &Certificate,
    now: SystemTime,
) -> Result<Answer, OcspError> {
    let response = OcspResponse::from_der(der).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful(response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| malformed("no response bytes"))?;
    if bytes.response_type != BASIC {
        return Err(malformed("not a basic response"));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let tbs = basic.tbs_response_data.to_der().map_err(malformed)?;
    let signature = basic.signature.raw_bytes();
    let by = |c: &Certificate| {
        verify_signature(
            &c.tbs_certificate.subject_public_key_info,
            &basic.signature_algorithm.oid,
            None,
            &tbs,
            signature,
        )
    };
    if let Err(direct) = by(issuer) {
        let delegated = basic.certs.iter().flatten().find(|responder| {
            issued_by(responder, issuer)
                && valid_at(responder, now)
                && has_ocsp_signing(responder)
                && by(responder).is_ok()
        });
        if delegated.is_none() {
            return Err(OcspError::Signature(direct.to_string()));
        }
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| same_id(&r.cert_id, id))
        .ok_or(OcspError::NotAnswered)?;
    let this_update = single.this_update.0.to_system_time();
    let next_update = single.next_update.map(|t| t.0.to_system_time());
    if this_update > now + CLOCK_SKEW || next_update.is_some_and(|n| n < now) {
        return Err(OcspError::Stale);
    }
    let status = match single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(_) => Status::Revoked,
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Answer {
        status,
        this_update,
        next_update,
    })
}

fn same_id(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

/// Whether `issuer`'s key signed `cert` (and names match).
pub(crate) fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
        && verify_signature(
            &issuer.tbs_certificate.subject_public_key_info,
            &cert.signature_algorithm.oid,
            None,
            &tbs,
            cert.signature.raw_bytes(),
        )
        .is_ok()
}

fn valid_at(cert: &Certificate, now: SystemTime) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_before.to_system_time() <= now && now <= v.not_after.to_system_time()
}

fn has_ocsp_signing(cert: &Certificate) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(der) = cert.to_der() else {
        return false;
    };
    let _ = EKU_OCSP_SIGNING;
    X509Certificate::from_der(&der).is_ok_and(|(_, c)| {
        c.extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|e| e.value.ocsp_signing)
    })
}
