//! Which of an image's attestations may be read: each candidate (a `.att` layer, a bundle
//! among the referrers) is verified with the policy's verifiers — keyless identities
//! against the trusted root, cosign keys over DSSE — and only a statement a verifier vouches
//! for, naming the image's digest, comes out. The rest are counted and never parsed beyond
//! what verification needs (pure: no I/O).

use crate::attest::VerifiedStatement;
use crate::keyless::{COSIGN_SIGN_PREDICATE, bundle_predicate_type};
use crate::metrics::{IgnoredAttestation, Metrics};

use super::dsse;
use super::signatures::{AttestationCandidates, LoadedVerifier};

/// The verified statements, and how many attestations were found but not verified.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub statements: Vec<VerifiedStatement>,
    pub unverified: usize,
}

/// Verifies every attestation candidate for the image `digest`.
pub(crate) fn verify(
    verifiers: &[LoadedVerifier],
    candidates: &AttestationCandidates,
    digest: &str,
    metrics: &Metrics,
) -> Found {
    let mut found = Found::default();
    let note = |statement: Option<VerifiedStatement>, found: &mut Found| match statement {
        Some(s) => found.statements.push(s),
        None => {
            found.unverified += 1;
            metrics.attestations_ignored(IgnoredAttestation::Unverified, 1);
        }
    };
    let unreadable = |found: &mut Found| {
        found.unverified += 1;
        metrics.attestations_ignored(IgnoredAttestation::Unreadable, 1);
    };
    for c in &candidates.bundles {
        let Ok(bundle) = c else {
            unreadable(&mut found);
            continue;
        };
        // Signatures (message signatures, cosign's signing predicate) are not attestations.
        match bundle_predicate_type(bundle) {
            None => continue,
            Some(p) if p == COSIGN_SIGN_PREDICATE => continue,
            Some(_) => {}
        }
        let statement = verifiers.iter().find_map(|v| match v {
            LoadedVerifier::Keyless(k) => k.attestation_from_bundle(bundle, digest),
            LoadedVerifier::Cosign(keys) => {
                let json: serde_json::Value = serde_json::from_slice(bundle).ok()?;
                json["verificationMaterial"].get("publicKey")?;
                dsse::verify_with_keys(&json["dsseEnvelope"], keys, digest)
            }
            LoadedVerifier::Notation(_) => None,
        });
        note(statement, &mut found);
    }
    for c in &candidates.layers {
        let Ok(layer) = c else {
            unreadable(&mut found);
            continue;
        };
        let envelope = &layer.cosign.payload;
        let statement = verifiers.iter().find_map(|v| match v {
            LoadedVerifier::Keyless(k) => {
                k.attestation_from_layer(envelope, &layer.annotations, digest)
            }
            LoadedVerifier::Cosign(keys) => {
                let json: serde_json::Value = serde_json::from_slice(envelope).ok()?;
                dsse::verify_with_keys(&json, keys, digest)
            }
            LoadedVerifier::Notation(_) => None,
        });
        note(statement, &mut found);
    }
    found
}
