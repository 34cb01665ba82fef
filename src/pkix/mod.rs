//! X.509 machinery that several verifiers share, with no I/O: signatures checked by
//! algorithm identifier, certificate paths built at a chosen time, RFC 3161 timestamp
//! tokens ([`rfc3161`]), OCSP requests and responses ([`ocsp`]) and CRLs ([`crl`]).
//!
//! It exists because timestamps and revocation are protocols of their own, used by the
//! Notary Project verifier today and written so that any other verifier (Sigstore's RFC 3161
//! timestamps) can call them: each takes DER bytes, trust anchors and a time, and answers
//! with a typed result. The fetching of OCSP answers and CRLs lives in
//! the revocation module, at the edge.
//!
//! ASN.1 structures come from the RustCrypto formats crates (`der`, `x509-cert`, `cms`,
//! `x509-tsp`, `x509-ocsp`): exact DER types, no hand-written parsers. Signatures are
//! checked with aws-lc-rs (the crypto the rest of vouch uses), paths with rustls-webpki.

pub(crate) mod crl;
pub(crate) mod ocsp;
pub(crate) mod rfc3161;

use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_cert::Certificate;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

/// OIDs this module reads.
pub(crate) mod oid {
    use der::asn1::ObjectIdentifier as O;
    pub(crate) const SHA1: O = O::new_unwrap("1.3.14.3.2.26");
    pub(crate) const SHA256: O = O::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub(crate) const SHA384: O = O::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub(crate) const SHA512: O = O::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub(crate) const RSA: O = O::new_unwrap("1.2.840.113549.1.1.1");
    pub(crate) const RSA_SHA256: O = O::new_unwrap("1.2.840.113549.1.1.11");
    pub(crate) const RSA_SHA384: O = O::new_unwrap("1.2.840.113549.1.1.12");
    pub(crate) const RSA_SHA512: O = O::new_unwrap("1.2.840.113549.1.1.13");
    pub(crate) const EC_PUBLIC_KEY: O = O::new_unwrap("1.2.840.10045.2.1");
    pub(crate) const ECDSA_SHA256: O = O::new_unwrap("1.2.840.10045.4.3.2");
    pub(crate) const ECDSA_SHA384: O = O::new_unwrap("1.2.840.10045.4.3.3");
    pub(crate) const ECDSA_SHA512: O = O::new_unwrap("1.2.840.10045.4.3.4");
    pub(crate) const P256: O = O::new_unwrap("1.2.840.10045.3.1.7");
    pub(crate) const P384: O = O::new_unwrap("1.3.132.0.34");
    pub(crate) const P521: O = O::new_unwrap("1.3.132.0.35");
}

/// Extended key usages, as rustls-webpki wants them (DER contents of the OID).
pub(crate) const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
pub(crate) const EKU_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
pub(crate) const EKU_OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    /// The algorithm (or key type and curve) is not one vouch accepts.
    #[error("signature algorithm {0} is not supported")]
    Unsupported(String),
    /// The public key does not parse.
    #[error("public key does not parse")]
    BadKey,
    /// The signature is not the key's over the message.
    #[error("signature does not verify")]
    Mismatch,
}

/// A digest algorithm by OID: SHA-256/384/512 (and SHA-1, only where a protocol's
/// identifiers need it, never for a signature).
pub(crate) fn digest(alg: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, SHA384, SHA512, digest as d};
    let algorithm = match *alg {
        oid::SHA256 => &SHA256,
        oid::SHA384 => &SHA384,
        oid::SHA512 => &SHA512,
        oid::SHA1 => &SHA1_FOR_LEGACY_USE_ONLY,
        _ => return None,
    };
    Some(d(algorithm, data).as_ref().to_vec())
}

/// Verifies `signature` over `message` with the key `spki`, under the signature algorithm
/// `alg`. `digest_alg` is the separate digest algorithm CMS names when `alg` is a bare key
/// algorithm (`rsaEncryption`, `id-ecPublicKey`). RSA PKCS#1 v1.5 and ECDSA (P-256, P-384,
/// P-521) with SHA-2: what TSAs, OCSP responders and CAs sign with.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &ObjectIdentifier,
    digest_alg: Option<&ObjectIdentifier>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let hash = match (*alg, digest_alg) {
        (oid::RSA_SHA256 | oid::ECDSA_SHA256, _) => oid::SHA256,
        (oid::RSA_SHA384 | oid::ECDSA_SHA384, _) => oid::SHA384,
        (oid::RSA_SHA512 | oid::ECDSA_SHA512, _) => oid::SHA512,
        (oid::RSA | oid::EC_PUBLIC_KEY, Some(d)) => *d,
        _ => return Err(SignatureError::Unsupported(alg.to_string())),
    };
    let unsupported = || SignatureError::Unsupported(format!("{alg} with digest {hash}"));
    let key_alg = spki.algorithm.oid;
    let verification: &'static dyn VerificationAlgorithm = if key_alg == oid::RSA {
        if !matches!(
            *alg,
            oid::RSA | oid::RSA_SHA256 | oid::RSA_SHA384 | oid::RSA_SHA512
        ) {
            return Err(unsupported());
        }
        match hash {
            oid::SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            oid::SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            oid::SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            _ => return Err(unsupported()),
        }
    } else if key_alg == oid::EC_PUBLIC_KEY {
        if matches!(
            *alg,
            oid::RSA | oid::RSA_SHA256 | oid::RSA_SHA384 | oid::RSA_SHA512
        ) {
            return Err(unsupported());
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or(SignatureError::BadKey)?;
        match (curve, hash) {
            (oid::P256, oid::SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
            (oid::P256, oid::SHA384) => &sig::ECDSA_P256_SHA384_ASN1,
            (oid::P256, oid::SHA512) => &sig::ECDSA_P256_SHA512_ASN1,
            (oid::P384, oid::SHA256) => &sig::ECDSA_P384_SHA256_ASN1,
            (oid::P384, oid::SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
            (oid::P384, oid::SHA512) => &sig::ECDSA_P384_SHA512_ASN1,
            (oid::P521, oid::SHA256) => &sig::ECDSA_P521_SHA256_ASN1,
            (oid::P521, oid::SHA384) => &sig::ECDSA_P521_SHA384_ASN1,
            (oid::P521, oid::SHA512) => &sig::ECDSA_P521_SHA512_ASN1,
            _ => return Err(unsupported()),
        }
    } else {
        return Err(SignatureError::Unsupported(format!(
            "key algorithm {key_alg}"
        )));
    };
    let key = spki.subject_public_key.raw_bytes();
    UnparsedPublicKey::new(verification, key)
        .verify(message, signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// A certificate's DER bytes, parsed for the fields this module reads.
pub(crate) fn parse_certificate(der: &[u8]) -> Option<Certificate> {
    Certificate::from_der(der).ok()
}

/// Seconds since the epoch as a `SystemTime` (negative clamps to the epoch).
pub(crate) fn system_time(unix_seconds: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64)
}

fn unix_time(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// Why a certificate path was not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// No path leads from the certificate to an anchor (unknown issuer, bad signature,
    /// wrong usage, a CA constraint broken).
    #[error("certificate chain does not lead to the trust store: {0}")]
    Untrusted(String),
    /// A path exists but a certificate of it is not valid at the time asked about.
    #[error("a certificate of the chain is not valid at {0}")]
    NotValidAt(String),
    /// The leaf lacks the extended key usage its role needs.
    #[error("certificate lacks the {0} extended key usage")]
    Usage(&'static str),
}

/// The role a leaf certificate plays: the extended key usage it must carry. Only the leaf
/// needs it; intermediates without the extension are accepted, as every common PKI issues
/// them (an intermediate that does list usages must list this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    CodeSigning,
    TimeStamping,
}

impl Role {
    fn eku(self) -> &'static [u8] {
        match self {
            Role::CodeSigning => EKU_CODE_SIGNING,
            Role::TimeStamping => EKU_TIME_STAMPING,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::CodeSigning => "codeSigning",
            Role::TimeStamping => "timeStamping",
        }
    }
}

/// A verified path: the leaf's issuer chain up to (and including) the anchor, as DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedPath {
    /// Leaf first, then each issuer; the last is the trust-store certificate.
    pub certs: Vec<Vec<u8>>,
}

/// Builds a path from `leaf` through `intermediates` to one of `anchors`, valid at `at`,
/// for `role`. A leaf that is itself in `anchors` (a self-signed signing certificate, which
/// rustls-webpki does not handle) is its own path, checked for validity at `at`.
pub(crate) fn build_path(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    anchors: &[CertificateDer<'static>],
    at: SystemTime,
    role: Role,
) -> Result<VerifiedPath, PathError> {
    let when = || {
        time::OffsetDateTime::from(at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    if !has_eku(leaf, role) {
        return Err(PathError::Usage(role.name()));
    }
    if anchors.iter().any(|a| a.as_ref() == leaf) {
        let cert = parse_certificate(leaf).ok_or_else(|| PathError::Untrusted("bad DER".into()))?;
        let v = &cert.tbs_certificate.validity;
        if at < v.not_before.to_system_time() || at > v.not_after.to_system_time() {
            return Err(PathError::NotValidAt(when()));
        }
        return Ok(VerifiedPath {
            certs: vec![leaf.to_vec()],
        });
    }
    let trust: Vec<_> = anchors
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let leaf_der = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| PathError::Untrusted(format!("certificate: {e}")))?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let algs = crate::tls::crypto_provider()
        .signature_verification_algorithms
        .all;
    let path = ee
        .verify_for_usage(
            algs,
            &trust,
            &inter,
            unix_time(at),
            webpki::KeyUsage::required_if_present(role.eku()),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { not_after, .. } => PathError::NotValidAt(format!(
                "{} (one expired at {})",
                when(),
                rfc3339(not_after)
            )),
            webpki::Error::CertNotValidYet { not_before, .. } => PathError::NotValidAt(format!(
                "{} (one is valid from {})",
                when(),
                rfc3339(not_before)
            )),
            other => PathError::Untrusted(other.to_string()),
        })?;
    let mut certs = vec![leaf.to_vec()];
    certs.extend(
        path.intermediate_certificates()
            .map(|c| c.der().as_ref().to_vec()),
    );
    // The anchor: the trust-store certificate whose subject issued the last certificate.
    let last = certs.last().cloned().unwrap_or_default();
    let issuer = parse_certificate(&last).map(|c| c.tbs_certificate.issuer.to_der());
    if let Some(Ok(issuer)) = issuer
        && let Some(anchor) = anchors.iter().find(|a| {
            parse_certificate(a.as_ref())
                .and_then(|c| c.tbs_certificate.subject.to_der().ok())
                .is_some_and(|s| s == issuer)
        })
    {
        certs.push(anchor.as_ref().to_vec());
    }
    Ok(VerifiedPath { certs })
}

fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Whether `der` carries `role`'s extended key usage.
fn has_eku(der: &[u8], role: Role) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    cert.extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| match role {
            Role::CodeSigning => e.value.code_signing,
            Role::TimeStamping => e.value.time_stamping,
        })
}

/// Where a certificate says its revocation status is published: OCSP responders (from
/// its Authority Information Access) and CRL distribution points, as URLs, in its order.
pub(crate) fn revocation_urls(der: &[u8]) -> (Vec<String>, Vec<String>) {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return (Vec::new(), Vec::new());
    };
    let (mut ocsp, mut crl) = (Vec::new(), Vec::new());
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                for d in &aia.accessdescs {
                    if d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1"
                        && let GeneralName::URI(u) = d.access_location
                    {
                        ocsp.push(u.to_string());
                    }
                }
            }
            ParsedExtension::CRLDistributionPoints(dps) => {
                for dp in dps.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                crl.push(u.to_string());
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    (ocsp, crl)
}
