//! What a verification concludes: the report that is the `value` of a `/v1/verify` item
//! (SPEC §2), its codes, and the per-signature results the verifiers produce.
//!
//! A leaf: the verifiers, the caches and the command line all speak these types, so they
//! live apart from any of them.

use serde::{Deserialize, Serialize};

use crate::reference::ImageRef;

/// Why an image is not verified. `None` (serialized as `""`) when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictCode {
    /// Verified.
    #[default]
    #[serde(rename = "")]
    None,
    /// No signature of a format the policy verifies.
    Unsigned,
    /// A signature that is not a signature at all, or malformed signature material.
    InvalidSignature,
    /// A well-formed signature no trusted key or identity vouches for.
    UntrustedSigner,
    /// Trusted material that was not valid at the signing time, or an expired signature.
    Expired,
    /// Content that does not hash to its digest, or a signature over another image.
    DigestMismatch,
    /// The image (tag or digest) does not exist.
    NotFound,
    /// The key is not an image reference (or is over `limits.maxKeyBytes`).
    InvalidReference,
    /// No policy covers the image.
    NoPolicy,
    /// The image's own manifest, as the registry serves it, cannot be used (over
    /// `limits.maxManifestBytes`, not a manifest): the pusher's doing, so a verdict.
    InvalidImage,
    /// No verified attestation of a type the policy requires (SPEC §2).
    MissingAttestation,
    /// A required attestation's Rego policy denied it (or could not decide: over its time
    /// budget, a runtime error); the reason quotes the first messages.
    AttestationDenied,
    /// A certificate of the signing chain is revoked (OCSP or CRL).
    Revoked,
}

impl VerdictCode {
    /// Every code, in declaration order.
    pub const ALL: [VerdictCode; 13] = [
        VerdictCode::None,
        VerdictCode::Unsigned,
        VerdictCode::InvalidSignature,
        VerdictCode::UntrustedSigner,
        VerdictCode::Expired,
        VerdictCode::DigestMismatch,
        VerdictCode::NotFound,
        VerdictCode::InvalidReference,
        VerdictCode::NoPolicy,
        VerdictCode::InvalidImage,
        VerdictCode::MissingAttestation,
        VerdictCode::AttestationDenied,
        VerdictCode::Revoked,
    ];
}

/// Why something is not verified: the code and one human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The verdict code.
    pub code: VerdictCode,
    /// One human sentence.
    pub reason: String,
}

impl Denial {
    /// A denial with `code` and `reason`.
    pub fn new(code: VerdictCode, reason: impl Into<String>) -> Denial {
        Denial {
            code,
            reason: reason.into(),
        }
    }
}

/// The signature formats vouch verifies, as reports and metrics name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// cosign key-based signatures.
    Cosign,
    /// Notary Project signatures.
    Notation,
    /// Sigstore keyless signatures: bundles and legacy `.sig` layers with a Fulcio
    /// certificate.
    Sigstore,
}

impl SignatureFormat {
    /// The name in reports (`signatures[].format`) and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::Cosign => "cosign",
            SignatureFormat::Notation => "notation",
            SignatureFormat::Sigstore => "sigstore",
        }
    }
}

/// One signature examined for the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureReport {
    /// `cosign`, `notation` or `sigstore`.
    pub format: String,
    /// Whether this signature vouches for the image.
    pub verified: bool,
    /// Who signed: `key:<name>` for cosign keys, the subject DN for Notary Project, the
    /// matched identity (a SAN of the Fulcio certificate) for keyless signatures.
    pub signer: String,
    /// Why, in one sentence.
    pub detail: String,
    /// The OIDC issuer of a keyless signature's certificate; absent for other formats.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// The authentic signing time an RFC 3161 timestamp gave, where one was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<TimestampReport>,
    /// What revocation checking found, one entry per certificate checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation: Vec<RevocationReport>,
}

/// A verified RFC 3161 timestamp, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampReport {
    /// The timestamp authority's certificate subject.
    pub tsa: String,
    /// The time it vouches for (RFC 3339).
    pub time: String,
}

/// The revocation status of one certificate of a signing chain, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationReport {
    /// The certificate's subject.
    pub certificate: String,
    /// `ocsp`, `crl`, or `none` (no revocation source named, or none reachable).
    pub method: String,
    /// `good`, `revoked`, `unknown`, `unavailable` or `not-revocable`.
    pub status: String,
    /// When the source was produced (RFC 3339; absent when nothing was read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub this_update: String,
    /// Until when the source is current (RFC 3339; absent when it states no bound).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_update: String,
}

/// The verdict about one image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Whether the image is verified.
    pub verified: bool,
    /// The reference as vouch understood it (normalized: `nginx` → `docker.io/library/nginx:latest`).
    pub reference: String,
    /// The digest the verdict is about; empty when it was not resolved.
    pub digest: String,
    /// The policy that decided; empty when none applies.
    pub policy: String,
    /// Every signature examined.
    pub signatures: Vec<SignatureReport>,
    /// Why not verified; empty when verified.
    pub code: VerdictCode,
    /// One human sentence when `verified` is false.
    pub reason: String,
    /// The attestations the policy requires, as evaluated; absent when it requires none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationReport>,
    /// For an index verified platform by platform (`platforms: each`, or `index-or-each`
    /// without an index signature): every platform manifest and its verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformReport>,
    /// When not verified, one line saying what would fix it; absent otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
}

/// One platform manifest of an index, as verified (SPEC §4 `platforms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformReport {
    /// The platform manifest's digest.
    pub digest: String,
    /// `os/architecture[/variant]` as the index names it (empty when it names none).
    pub platform: String,
    /// Whether it verified on its own.
    pub verified: bool,
    /// Why not; empty when verified.
    pub code: VerdictCode,
}

/// One attestation evaluated for a required type (SPEC §2 `attestations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationReport {
    /// The in-toto predicate type.
    pub predicate_type: String,
    /// Who signed it: the matched identity (keyless) or `key:<name>`.
    pub signer: String,
    /// Whether its policy passed it.
    pub passed: bool,
    /// The policy's deny messages (empty when it passed).
    pub messages: Vec<String>,
}

impl Report {
    /// A failed verdict for `reference` under `policy`.
    pub fn failed(reference: &str, policy: &str, denial: Denial) -> Report {
        Report {
            verified: false,
            reference: reference.to_string(),
            digest: String::new(),
            policy: policy.to_string(),
            signatures: Vec::new(),
            code: denial.code,
            reason: denial.reason,
            attestations: Vec::new(),
            platforms: Vec::new(),
            hint: String::new(),
        }
    }

    /// `action: allow`: verified without looking at signatures.
    pub fn allowed(image: &ImageRef, policy: &str) -> Report {
        Report {
            verified: true,
            reference: image.to_string(),
            digest: image.digest().unwrap_or_default().to_string(),
            policy: policy.to_string(),
            signatures: Vec::new(),
            code: VerdictCode::None,
            reason: String::new(),
            attestations: Vec::new(),
            platforms: Vec::new(),
            hint: String::new(),
        }
    }

    /// The report rendered as the item's `value`.
    pub fn to_json(&self) -> crate::protocol::Json {
        crate::protocol::Json::new(self)
    }
}

/// The result of checking one signature against one verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the report says about the signature.
    pub report: SignatureReport,
    /// `None` when the signature vouches for the image.
    pub failure: Option<VerdictCode>,
    /// For a passing signature: when what made it valid stops being valid (certificate
    /// expiry, signature expiry). Caps how long the verdict may be cached.
    pub valid_until: Option<std::time::SystemTime>,
    /// A check this signature needed could not be made for a transient reason (a
    /// revocation source unreachable while revocation is enforced): if no other signature
    /// vouches for the image, the outcome is a transient failure, not a verdict.
    pub transient: Option<String>,
}

impl Checked {
    /// A signature that vouches for the image.
    pub fn passed(format: SignatureFormat, signer: String, detail: impl Into<String>) -> Checked {
        Checked {
            report: SignatureReport {
                format: format.as_str().to_string(),
                verified: true,
                signer,
                detail: detail.into(),
                issuer: String::new(),
                timestamp: None,
                revocation: Vec::new(),
            },
            failure: None,
            valid_until: None,
            transient: None,
        }
    }

    /// The signature's OIDC issuer (keyless signatures).
    pub fn issued_by(mut self, issuer: impl Into<String>) -> Checked {
        self.report.issuer = issuer.into();
        self
    }

    /// A passing signature valid until `until`.
    pub fn until(mut self, until: Option<std::time::SystemTime>) -> Checked {
        self.valid_until = until;
        self
    }

    /// A signature (or a candidate that turned out not to be one) that does not.
    pub fn failed(
        format: SignatureFormat,
        signer: &str,
        code: VerdictCode,
        detail: impl Into<String>,
    ) -> Checked {
        Checked {
            report: SignatureReport {
                format: format.as_str().to_string(),
                verified: false,
                signer: signer.to_string(),
                detail: detail.into(),
                issuer: String::new(),
                timestamp: None,
                revocation: Vec::new(),
            },
            failure: Some(code),
            valid_until: None,
            transient: None,
        }
    }
}

/// The verdict of one verifier over every signature it checked: `Ok` if one vouches for the
/// image, else the most telling failure — a trusted signature whose certificate is revoked,
/// one for another digest, then an expired one, then a malformed one, then an unattributable one; none at all → `unsigned`.
pub fn signatures_verdict(format: SignatureFormat, checked: &[Checked]) -> Result<(), Denial> {
    let format = format.as_str();
    if checked.iter().any(|c| c.failure.is_none()) {
        return Ok(());
    }
    let rank = |code: VerdictCode| match code {
        VerdictCode::Revoked => 0,
        VerdictCode::DigestMismatch => 1,
        VerdictCode::Expired => 2,
        VerdictCode::InvalidSignature => 3,
        VerdictCode::UntrustedSigner => 4,
        _ => 5,
    };
    checked
        .iter()
        .filter_map(|c| c.failure.map(|f| (f, &c.report.detail)))
        .min_by_key(|(f, _)| rank(*f))
        .map_or_else(
            || {
                Err(Denial::new(
                    VerdictCode::Unsigned,
                    format!("no {format} signature found"),
                ))
            },
            |(code, detail)| {
                Err(Denial::new(
                    code,
                    format!("no valid {format} signature: {detail}"),
                ))
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_matches_the_spec() {
        let r = Report::failed(
            "ghcr.io/a/b:1",
            "acme",
            Denial::new(VerdictCode::UntrustedSigner, "x"),
        );
        let v: serde_json::Value = r.to_json().parse().expect("json");
        assert_eq!(
            v,
            serde_json::json!({"verified": false, "reference": "ghcr.io/a/b:1", "digest": "",
              "policy": "acme", "signatures": [], "code": "untrusted-signer", "reason": "x"})
        );
        let back: Report = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, r);
    }

    #[test]
    fn codes_have_their_spec_names() {
        let names: Vec<String> = VerdictCode::ALL
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .expect("code")
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "",
                "unsigned",
                "invalid-signature",
                "untrusted-signer",
                "expired",
                "digest-mismatch",
                "not-found",
                "invalid-reference",
                "no-policy",
                "invalid-image",
                "missing-attestation",
                "attestation-denied",
                "revoked"
            ]
        );
    }
}
