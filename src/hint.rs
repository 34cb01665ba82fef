//! The one line a not-verified report carries to say what would fix it (SPEC §2 `hint`).
//!
//! A code says *what* failed; an operator staring at a denied Pod wants to know *what to
//! do*: which signer was seen against which the policy trusts, which attestation failed and
//! its first message, which limit was hit. Pure: the report and a one-line summary of the
//! policy's trust (made once per engine by [`trust_summary`]) in, one line out.

use crate::config::{Verifier, VerifierConfig};
use crate::verdict::{Report, VerdictCode};

/// What a policy's verifiers trust, in one line: cosign key names and fingerprints, Notary
/// identities, keyless identities. `fingerprint` gives a loaded cosign key's fingerprint by
/// its name (the key file's stem).
pub(crate) fn trust_summary(
    verifiers: &[VerifierConfig],
    fingerprint: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut parts = Vec::new();
    for v in verifiers {
        match v.kind() {
            Some(Verifier::Cosign(c)) => {
                let keys: Vec<String> = c
                    .public_keys
                    .iter()
                    .map(|p| {
                        let name = p
                            .file_stem()
                            .map(|s| s.to_string_lossy().to_string())
                            .unwrap_or_default();
                        match fingerprint(&name) {
                            Some(f) => format!("key:{name} ({f})"),
                            None => format!("key:{name}"),
                        }
                    })
                    .collect();
                parts.push(format!("cosign {}", keys.join(", ")));
            }
            Some(Verifier::Notation(n)) => {
                parts.push(format!(
                    "notation identities [{}]",
                    n.trusted_identities.join("; ")
                ));
            }
            Some(Verifier::Keyless(k)) => {
                let ids: Vec<String> = k
                    .identities
                    .iter()
                    .map(|i| {
                        let issuer = i
                            .issuer
                            .clone()
                            .or_else(|| i.issuer_reg_exp.clone().map(|r| format!("~{r}")))
                            .unwrap_or_default();
                        let subject = i
                            .subject
                            .clone()
                            .or_else(|| i.subject_reg_exp.clone().map(|r| format!("~{r}")))
                            .unwrap_or_default();
                        format!("{subject} from {issuer}")
                    })
                    .collect();
                parts.push(format!("keyless identities [{}]", ids.join("; ")));
            }
            None => {}
        }
    }
    parts.join("; ")
}

/// The hint for `report` (empty when it is verified, or already carries one).
pub(crate) fn hint(report: &Report, trusts: &str) -> String {
    if report.verified || !report.hint.is_empty() {
        return report.hint.clone();
    }
    let policy = &report.policy;
    let target = if report.digest.is_empty() {
        report.reference.clone()
    } else {
        report.digest.clone()
    };
    let first_detail = report
        .signatures
        .iter()
        .find(|s| !s.verified && !s.detail.is_empty())
        .map(|s| s.detail.as_str())
        .unwrap_or(report.reason.as_str());
    if let Some(limit) = limit_named(first_detail).or_else(|| limit_named(&report.reason)) {
        return format!(
            "a limit was hit ({limit}): raise it in the config if the content is legitimate"
        );
    }
    let trusted = if trusts.is_empty() {
        format!("policy \"{policy}\" trusts no signer")
    } else {
        format!("policy \"{policy}\" trusts {trusts}")
    };
    match report.code {
        VerdictCode::Unsigned => {
            format!(
                "no signature found for {target}: sign that digest (signatures follow digests, not tags); {trusted}"
            )
        }
        VerdictCode::UntrustedSigner => {
            let seen: Vec<&str> = report
                .signatures
                .iter()
                .filter(|s| !s.signer.is_empty())
                .map(|s| s.signer.as_str())
                .collect();
            let seen = if seen.is_empty() {
                "a signer none of its keys or identities matches".to_string()
            } else {
                seen.join(", ")
            };
            format!("signed by {seen} ({first_detail}); {trusted}")
        }
        VerdictCode::InvalidSignature => {
            format!(
                "a signature is malformed or does not verify ({first_detail}): re-sign {target}"
            )
        }
        VerdictCode::Expired => format!(
            "{first_detail}: re-sign with a currently valid key or certificate, or have Notary signatures timestamped by a TSA of tsaStore so they outlive their certificate"
        ),
        VerdictCode::Revoked => {
            format!("{first_detail}: re-sign {target} with a certificate that is not revoked")
        }
        VerdictCode::DigestMismatch => {
            format!("the signature is for other content ({first_detail}): sign {target} itself")
        }
        VerdictCode::MissingAttestation => format!(
            "{}: attach that attestation for {target}, signed by what policy \"{policy}\" trusts ({})",
            report.reason,
            if trusts.is_empty() { "nothing" } else { trusts }
        ),
        VerdictCode::AttestationDenied => match report.attestations.iter().find(|a| !a.passed) {
            Some(a) => format!(
                "attestation {} signed by {} was denied: {}",
                a.predicate_type,
                a.signer,
                a.messages.first().map_or("no message", String::as_str)
            ),
            None => report.reason.clone(),
        },
        VerdictCode::NotFound => format!(
            "{} does not exist in its registry: check the tag or digest",
            report.reference
        ),
        VerdictCode::NoPolicy => format!(
            "no policy covers {}: add a scope for it (or a policy with action: allow)",
            report.reference
        ),
        VerdictCode::InvalidReference => {
            "write the image as [registry/]repository[:tag][@sha256:digest]".to_string()
        }
        VerdictCode::InvalidImage => format!("{}: push a well-formed manifest", report.reason),
        VerdictCode::None => String::new(),
    }
}

/// The config limit a message names (`… limit (limits.maxSignatureBytes)`), if any.
fn limit_named(message: &str) -> Option<&str> {
    let start = message
        .find("(limits.")
        .or_else(|| message.find("(revocation.max"))?;
    let rest = &message[start + 1..];
    let end = rest.find(')')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{AttestationReport, Denial, SignatureReport};

    fn failed(code: VerdictCode, reason: &str) -> Report {
        let mut r = Report::failed("r.io/acme/app:1", "acme", Denial::new(code, reason));
        r.digest = format!("sha256:{}", "a".repeat(64));
        r
    }

    fn sig(signer: &str, detail: &str) -> SignatureReport {
        SignatureReport {
            format: "notation".into(),
            verified: false,
            signer: signer.into(),
            detail: detail.into(),
            issuer: String::new(),
            timestamp: None,
            revocation: Vec::new(),
        }
    }

    #[test]
    fn an_untrusted_signer_is_named_against_what_the_policy_trusts() {
        let mut r = failed(VerdictCode::UntrustedSigner, "no valid notation signature");
        r.signatures = vec![sig(
            "CN=mallory",
            "signer CN=mallory is not a trusted identity",
        )];
        let h = hint(&r, "notation identities [x509.subject: CN=acme]");
        assert!(h.contains("CN=mallory"), "{h}");
        assert!(h.contains("x509.subject: CN=acme"), "{h}");
        assert!(h.contains("\"acme\""), "{h}");
    }

    #[test]
    fn a_limit_is_named() {
        let mut r = failed(VerdictCode::InvalidSignature, "no valid cosign signature");
        r.signatures = vec![sig(
            "",
            "blob is larger than the 262144-byte limit (limits.maxSignatureBytes)",
        )];
        assert!(hint(&r, "cosign key:acme").contains("limits.maxSignatureBytes"));
    }

    #[test]
    fn a_denied_attestation_quotes_its_first_message() {
        let mut r = failed(VerdictCode::AttestationDenied, "denied");
        r.attestations = vec![AttestationReport {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            signer: "key:ci".into(),
            passed: false,
            messages: vec!["builder is not ours".into(), "second".into()],
        }];
        let h = hint(&r, "");
        assert!(
            h.contains("slsa.dev/provenance/v1") && h.contains("builder is not ours"),
            "{h}"
        );
        assert!(!h.contains("second"), "{h}");
    }

    #[test]
    fn every_code_has_a_hint_and_verified_reports_none() {
        for code in VerdictCode::ALL
            .into_iter()
            .filter(|c| *c != VerdictCode::None)
        {
            let h = hint(&failed(code, "why"), "cosign key:acme (sha256:0123)");
            assert!(!h.is_empty() && !h.contains('\n'), "{code:?}: {h:?}");
        }
        let mut ok = failed(VerdictCode::None, "");
        ok.verified = true;
        assert_eq!(hint(&ok, "x"), "");
    }

    #[test]
    fn an_existing_hint_is_kept() {
        let mut r = failed(VerdictCode::InvalidImage, "index too large");
        r.hint = "raise limits.maxPlatforms".into();
        assert_eq!(hint(&r, ""), "raise limits.maxPlatforms");
    }
}
