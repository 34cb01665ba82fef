//! Required attestations (SPEC §4 `attestations`): the in-toto statements an image carries
//! — SLSA provenance, SBOMs, vulnerability reports — judged by Rego modules.
//!
//! Nothing here reads an attestation that was not verified: [`evaluate`] takes
//! [`VerifiedStatement`]s only, which the verification engine makes after a verifier of the
//! policy accepted the envelope's signature and the statement named the image's digest
//! among its subjects. An attacker who can push to the repository can attach any statement
//! they like; it is never evaluated unless a trusted signer made it.
//!
//! [`evaluate`] is pure apart from CPU: for each required predicate type, the verified
//! statements of that type go through the type's Rego module (input: the statement, the
//! signer and issuer, the image reference and digest, the configured `params`), `any` or
//! `all` of them must pass, and the first requirement that fails explains the verdict:
//! `missing-attestation` when none of the type verified, `attestation-denied` (quoting the
//! first messages) when the policy denied.

mod rego;

pub use rego::{RegoError, RegoPolicy};

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AttestationConfig, Require};
use crate::verdict::{AttestationReport, Denial, VerdictCode};

/// A required attestation with its module compiled.
#[derive(Debug)]
pub(crate) struct RequiredAttestation {
    pub predicate_type: String,
    pub require: Require,
    pub params: serde_json::Value,
    pub policy: RegoPolicy,
}

impl RequiredAttestation {
    /// Compiles the configured module.
    pub(crate) fn load(
        config: &AttestationConfig,
        timeout: Duration,
    ) -> Result<RequiredAttestation, RegoError> {
        let path: PathBuf = config.policy.clone().unwrap_or_default();
        Ok(RequiredAttestation {
            predicate_type: config.predicate_type.clone(),
            require: config.require,
            params: config.params.clone(),
            policy: RegoPolicy::load(&path, timeout)?,
        })
    }
}

/// An in-toto statement whose envelope a verifier of the policy accepted, naming the image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifiedStatement {
    pub predicate_type: String,
    pub statement: serde_json::Value,
    /// The matched identity (keyless) or `key:<name>`.
    pub signer: String,
    /// The OIDC issuer (keyless); empty for keys.
    pub issuer: String,
}

/// The image as the policies see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub reference: &'a str,
    pub digest: &'a str,
}

/// What the required attestations conclude.
#[derive(Debug)]
pub(crate) struct Evaluation {
    /// Every statement evaluated, in requirement order.
    pub reports: Vec<AttestationReport>,
    /// `Ok` when every requirement is met, else the first failure.
    pub verdict: Result<(), Denial>,
}

/// Evaluates every requirement over the verified statements (CPU only: run it off the
/// async workers). `unverified` is how many attestations were found but not verified, for
/// the reason of a `missing-attestation`.
pub(crate) fn evaluate(
    required: &[RequiredAttestation],
    statements: &[VerifiedStatement],
    unverified: usize,
    image: Subject<'_>,
) -> Evaluation {
    let mut reports = Vec::new();
    let mut verdict = Ok(());
    for req in required {
        let mine: Vec<&VerifiedStatement> = statements
            .iter()
            .filter(|s| s.predicate_type == req.predicate_type)
            .collect();
        if mine.is_empty() {
            if verdict.is_ok() {
                let also = match unverified {
                    0 => String::new(),
                    n => format!(
                        " ({n} attestation{} found did not verify with this policy's verifiers or named another image)",
                        if n == 1 { "" } else { "s" }
                    ),
                };
                verdict = Err(Denial::new(
                    VerdictCode::MissingAttestation,
                    format!(
                        "no verified attestation of type {}{also}",
                        req.predicate_type
                    ),
                ));
            }
            continue;
        }
        let mut results = Vec::with_capacity(mine.len());
        for s in mine {
            let input = serde_json::json!({
                "statement": s.statement,
                "signer": s.signer,
                "issuer": s.issuer,
                "image": {"reference": image.reference, "digest": image.digest},
                "params": req.params,
            });
            let messages = match req.policy.deny(input) {
                Ok(m) => m,
                Err(why) => vec![why],
            };
            results.push(AttestationReport {
                predicate_type: req.predicate_type.clone(),
                signer: s.signer.clone(),
                passed: messages.is_empty(),
                messages,
            });
        }
        let met = match req.require {
            Require::Any => results.iter().any(|r| r.passed),
            Require::All => results.iter().all(|r| r.passed),
        };
        if !met && verdict.is_ok() {
            let failed = results.iter().find(|r| !r.passed);
            let (signer, quoted) = failed
                .map(|r| {
                    let first: Vec<&str> = r.messages.iter().take(3).map(String::as_str).collect();
                    (r.signer.as_str(), first.join("; "))
                })
                .unwrap_or_default();
            verdict = Err(Denial::new(
                VerdictCode::AttestationDenied,
                format!(
                    "{} attestation signed by {signer} denied: {quoted}",
                    req.predicate_type
                ),
            ));
        }
        reports.extend(results);
    }
    Evaluation { reports, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLSA: &str = "https://slsa.dev/provenance/v1";

    fn required(require: Require) -> RequiredAttestation {
        RequiredAttestation {
            predicate_type: SLSA.into(),
            require,
            params: serde_json::json!({"repository": "acme/app"}),
            policy: RegoPolicy::compile(
                "slsa.rego",
                "package t\n\ndeny contains sprintf(\"built from %s\", [input.statement.predicate.repo]) if input.statement.predicate.repo != input.params.repository\n\ndeny contains \"wrong image\" if input.image.digest != \"sha256:d\"\n",
                Duration::from_millis(200),
            )
            .expect("compiles"),
        }
    }

    fn statement(repo: &str, signer: &str) -> VerifiedStatement {
        VerifiedStatement {
            predicate_type: SLSA.into(),
            statement: serde_json::json!({"predicateType": SLSA, "predicate": {"repo": repo}}),
            signer: signer.into(),
            issuer: String::new(),
        }
    }

    const IMAGE: Subject<'static> = Subject {
        reference: "r.io/acme/app:1",
        digest: "sha256:d",
    };

    #[test]
    fn none_verified_is_missing_and_says_how_many_did_not_verify() {
        let e = evaluate(&[required(Require::Any)], &[], 2, IMAGE);
        let d = e.verdict.expect_err("missing");
        assert_eq!(d.code, VerdictCode::MissingAttestation);
        assert!(
            d.reason.contains(SLSA) && d.reason.contains("2 attestations"),
            "{}",
            d.reason
        );
        assert!(e.reports.is_empty());
    }

    #[test]
    fn any_passes_with_one_and_all_needs_every_one() {
        let both = [statement("acme/app", "ci"), statement("evil/app", "evil")];
        let any = evaluate(&[required(Require::Any)], &both, 0, IMAGE);
        assert!(any.verdict.is_ok());
        assert_eq!(any.reports.len(), 2);
        assert_eq!(
            any.reports[1].messages,
            vec!["built from evil/app".to_string()]
        );
        let all = evaluate(&[required(Require::All)], &both, 0, IMAGE);
        let d = all.verdict.expect_err("denied");
        assert_eq!(d.code, VerdictCode::AttestationDenied);
        assert!(
            d.reason.contains("signed by evil") && d.reason.contains("built from evil/app"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn other_predicate_types_do_not_count() {
        let mut sbom = statement("acme/app", "ci");
        sbom.predicate_type = "https://spdx.dev/Document".into();
        let e = evaluate(&[required(Require::Any)], &[sbom], 0, IMAGE);
        assert_eq!(
            e.verdict.expect_err("missing").code,
            VerdictCode::MissingAttestation
        );
    }
}
