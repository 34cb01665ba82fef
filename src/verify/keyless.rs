//! A keyless verifier of a policy: its trusted root and identity policy loaded, and the
//! check of one candidate (pure: no I/O) — a legacy `.sig` layer or a Sigstore bundle —
//! over [`crate::keyless`], which does the cryptography.
//!
//! What counts as an image *signature* (SPEC §2): a legacy layer whose simple-signing
//! payload names the digest, a `messageSignature` bundle over the digest, or a DSSE bundle
//! whose in-toto statement has cosign's signing predicate
//! (`https://sigstore.dev/cosign/sign/v1`) and the image among its subjects. A DSSE bundle
//! with any other predicate type is an attestation: it is not a signature, whatever it
//! says, so an image whose only bundles are attestations is `unsigned`. This is stricter
//! than `cosign verify` (v3), which accepts any DSSE bundle as a signature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::attest::VerifiedStatement;
use crate::config::{KeylessFormat, KeylessVerifierConfig};
use crate::keyless::{
    CERTIFICATE_ANNOTATION, KeylessPolicy, LegacySignature, SignedContent, TrustRootError,
    TrustedRoot, Verified, bundle_predicate_type, verify_bundle, verify_legacy,
    verify_legacy_attestation,
};
use crate::verdict::{Checked, SignatureFormat, VerdictCode};

const FORMAT: SignatureFormat = SignatureFormat::Sigstore;

/// Why a keyless verifier cannot be loaded: a configuration problem, never a verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("trustedRoot {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("trustedRoot {path}: {source}")]
    Root {
        path: PathBuf,
        source: TrustRootError,
    },
    #[error("{0}")]
    Policy(String),
}

/// A keyless verifier with its trust material loaded.
#[derive(Debug)]
pub(crate) struct KeylessVerifier {
    root: TrustedRoot,
    policy: KeylessPolicy,
    format: KeylessFormat,
}

impl KeylessVerifier {
    /// Reads the trusted root and compiles the identity rules.
    pub(crate) fn load(config: &KeylessVerifierConfig) -> Result<KeylessVerifier, LoadError> {
        let path = config
            .trusted_root
            .clone()
            .ok_or_else(|| LoadError::Policy("trustedRoot is required".into()))?;
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        let root = TrustedRoot::from_json(&bytes).map_err(|source| LoadError::Root {
            path: path.clone(),
            source,
        })?;
        let policy = config
            .policy()
            .map_err(|(field, why)| LoadError::Policy(format!("{field} {why}")))?;
        Ok(KeylessVerifier {
            root,
            policy,
            format: config.format,
        })
    }

    /// A verifier for discovery tests: Sigstore's public-good root, any identity.
    #[cfg(test)]
    pub(crate) fn for_discovery(format: KeylessFormat) -> KeylessVerifier {
        use crate::keyless::{IdentityRule, Matcher};
        let any = Matcher::regex(".*").expect("regex");
        KeylessVerifier {
            root: TrustedRoot::from_json(
                sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes(),
            )
            .expect("production root"),
            policy: KeylessPolicy::new(vec![IdentityRule::new(any.clone(), any)]).expect("policy"),
            format,
        }
    }

    /// Where this verifier looks for signatures.
    pub(crate) fn format(&self) -> KeylessFormat {
        self.format
    }

    /// Checks one layer of the `.sig` signature image as a legacy keyless signature of
    /// `digest`. A layer without a certificate is a key-based cosign signature: not one a
    /// Fulcio identity vouches for.
    pub(crate) fn check_legacy(
        &self,
        payload: &[u8],
        annotations: &BTreeMap<String, String>,
        digest: &str,
    ) -> Checked {
        if !annotations.contains_key(CERTIFICATE_ANNOTATION) {
            return Checked::failed(
                FORMAT,
                "",
                VerdictCode::UntrustedSigner,
                "a key-based cosign signature (no Fulcio certificate): no trusted identity signed it",
            );
        }
        let sig = LegacySignature::from_annotations(payload.to_vec(), annotations.iter());
        match verify_legacy(&sig, digest, &self.root, &self.policy) {
            Ok(v) => passed(&v, "legacy .sig layer"),
            Err(e) => Checked::failed(FORMAT, "", e.code(), e.detail()),
        }
    }

    /// Checks one bundle found among the referrers as a signature of `digest`; `None` when
    /// it is an attestation (a DSSE statement with another predicate type), which is not a
    /// signature and is left to attestation policies.
    pub(crate) fn check_bundle(&self, bundle: &[u8], digest: &str) -> Option<Checked> {
        if let Some(predicate) = bundle_predicate_type(bundle)
            && predicate != crate::keyless::COSIGN_SIGN_PREDICATE
        {
            return None;
        }
        Some(
            match verify_bundle(bundle, digest, &self.root, &self.policy) {
                Ok(v) if v.is_image_signature() => passed(&v, "bundle"),
                Ok(v) => Checked::failed(
                    FORMAT,
                    &v.identity,
                    VerdictCode::InvalidSignature,
                    format!(
                        "bundle statement has predicate type {:?}, not an image signature",
                        v.predicate_type().unwrap_or_default()
                    ),
                )
                .issued_by(v.issuer),
                Err(e) => Checked::failed(FORMAT, "", e.code(), e.detail()),
            },
        )
    }
}

impl KeylessVerifier {
    /// The statement of an attestation bundle this verifier vouches for (its signature,
    /// evidence and identity verified, the image among its subjects); `None` otherwise.
    pub(crate) fn attestation_from_bundle(
        &self,
        bundle: &[u8],
        digest: &str,
    ) -> Option<VerifiedStatement> {
        statement_of(verify_bundle(bundle, digest, &self.root, &self.policy).ok()?)
    }

    /// The statement of a legacy `.att` layer (a DSSE envelope with the keyless
    /// annotations) this verifier vouches for; `None` otherwise.
    pub(crate) fn attestation_from_layer(
        &self,
        envelope: &[u8],
        annotations: &BTreeMap<String, String>,
        digest: &str,
    ) -> Option<VerifiedStatement> {
        if !annotations.contains_key(CERTIFICATE_ANNOTATION) {
            return None;
        }
        let att = LegacySignature::from_annotations(envelope.to_vec(), annotations.iter());
        statement_of(verify_legacy_attestation(&att, digest, &self.root, &self.policy).ok()?)
    }
}

/// A verified DSSE statement as the attestation policies read it.
fn statement_of(v: Verified) -> Option<VerifiedStatement> {
    match v.content {
        SignedContent::Dsse {
            predicate_type,
            statement,
            ..
        } => Some(VerifiedStatement {
            predicate_type,
            statement,
            signer: v.identity,
            issuer: v.issuer,
        }),
        SignedContent::MessageSignature => None,
    }
}

/// `vouch verify-bundle`'s core: verifies `bundle` against `digest` with every keyless
/// verifier of policy `policy_name`, whatever the bundle's predicate type (an attestation
/// verifies as well as a signature: the digest must be its message digest or an in-toto
/// subject). `Ok(Ok)` from the first verifier that accepts it, `Ok(Err)` with the first
/// verifier's failure otherwise; `Err` when it cannot run (no such policy, no keyless
/// verifier, a trusted root that does not load).
pub(crate) fn verify_bundle_with_policy(
    config: &crate::config::Config,
    policy_name: &str,
    bundle: &[u8],
    digest: &str,
) -> Result<Result<Verified, crate::keyless::KeylessError>, String> {
    use crate::config::Verifier;
    let policy = config
        .policies
        .iter()
        .find(|p| p.name == policy_name)
        .ok_or_else(|| format!("no policy named {policy_name:?} in the config"))?;
    let verifiers = policy
        .verifiers
        .iter()
        .filter_map(|v| match v.kind() {
            Some(Verifier::Keyless(k)) => Some(KeylessVerifier::load(k)),
            _ => None,
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("policy {policy_name:?}: keyless: {e}"))?;
    let mut first_failure = None;
    for v in &verifiers {
        match verify_bundle(bundle, digest, &v.root, &v.policy) {
            Ok(verified) => return Ok(Ok(verified)),
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    first_failure
        .map(Err)
        .ok_or_else(|| format!("policy {policy_name:?} has no keyless verifier"))
}

/// A verified keyless signature as the report shows it: the matched identity as signer,
/// its issuer, and how it was found and proven.
fn passed(v: &Verified, form: &str) -> Checked {
    let kind = match v.predicate_type() {
        Some(_) => "DSSE",
        None => "message signature",
    };
    let proof = match (v.log_times.is_empty(), v.tsa_times.is_empty()) {
        (false, false) => "log entry and timestamp",
        (false, true) => "log entry",
        (true, false) => "timestamp",
        (true, true) => "no verified time",
    };
    Checked::passed(
        FORMAT,
        v.identity.clone(),
        format!("{form}, {kind}, proven by {proof}"),
    )
    .issued_by(v.issuer.clone())
}
