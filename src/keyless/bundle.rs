//! Verifying one Sigstore bundle against an expected artifact digest, a trusted root and a
//! keyless policy (see the module docs of [`super`] for what `sigstore-verify` checks and
//! what is checked here).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use sigstore_verify::types::bundle::{MediaType, VerificationMaterialContent};
use sigstore_verify::types::{Bundle, HashAlgorithm, KindVersion, Sha256Hash, SignatureContent};
use sigstore_verify::{
    CertificateError, Error as SigstoreError, TimestampError, TransparencyLogError,
    VerificationPolicy, VerificationResult,
};

use super::certificate::{Leaf, timestamp_gen_time};
use super::error::KeylessError;
use super::policy::{KeylessPolicy, SctMode, TlogMode, TsaMode};
use super::trusted_root::{TrustedRoot, rfc3339};

/// What was signed.
#[derive(Debug, Clone, PartialEq)]
pub enum SignedContent {
    /// A signature over the artifact's digest (`messageSignature`), or a legacy cosign
    /// signature over a simple-signing payload naming the image.
    MessageSignature,
    /// A DSSE envelope holding an in-toto statement whose subjects include the artifact.
    Dsse {
        /// The DSSE `payloadType` (`application/vnd.in-toto+json` for a statement).
        payload_type: String,
        /// The statement's `predicateType` (SLSA provenance, an SBOM, a vulnerability report…).
        predicate_type: String,
        /// The statement, for attestation policies to read.
        statement: serde_json::Value,
    },
}

/// A keyless signature that verified, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// What the signature covers: the artifact digest itself, or a statement about it.
    pub content: SignedContent,
    /// The SAN the policy's identity rule matched.
    pub identity: String,
    /// The OIDC issuer of the certificate.
    pub issuer: String,
    /// Verified RFC 3161 times (timestamp authorities of the trusted root).
    pub tsa_times: Vec<SystemTime>,
    /// Verified log times: the `integratedTime` of each entry whose SET verified.
    pub log_times: Vec<SystemTime>,
    /// The bundle's media type (for the legacy form, that of the equivalent bundle).
    pub media_type: String,
    /// How many transparency log entries the bundle carried (all of them verified).
    pub log_entries: usize,
}

impl Verified {
    /// The in-toto predicate type, for a DSSE bundle.
    pub fn predicate_type(&self) -> Option<&str> {
        match &self.content {
            SignedContent::Dsse { predicate_type, .. } => Some(predicate_type),
            SignedContent::MessageSignature => None,
        }
    }

    /// Whether this counts as a *signature* of an image (SPEC §2): a message signature, or
    /// a DSSE statement with cosign's signing predicate. Other DSSE statements are
    /// attestations.
    pub fn is_image_signature(&self) -> bool {
        self.predicate_type()
            .is_none_or(|p| p == super::COSIGN_SIGN_PREDICATE)
    }

    /// Every time the certificate was checked at.
    pub fn verified_times(&self) -> impl Iterator<Item = SystemTime> + '_ {
        self.tsa_times.iter().chain(&self.log_times).copied()
    }
}

/// Verifies a Sigstore bundle (JSON) as a signature of the artifact `digest`
/// (`sha256:<hex>`): for a DSSE bundle the statement's subjects must include it, for a
/// message signature its message digest must be it.
pub fn verify_bundle(
    bundle_json: &[u8],
    digest: &str,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
) -> Result<Verified, KeylessError> {
    let expected = parse_digest(digest)?;
    let bundle = parse_bundle(bundle_json)?;
    verify_parsed(&bundle, &expected, root, policy)
}

/// The in-toto predicate type a DSSE bundle's statement *claims*, read without verifying
/// anything; `None` for a message-signature bundle or one that does not parse that far.
/// Only for sorting bundles into signatures and attestations before verification: a claim
/// that is false fails verification as whichever it claims to be.
pub fn bundle_predicate_type(bundle_json: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        dsse_envelope: Option<Envelope>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        payload: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Statement {
        predicate_type: String,
    }
    let head: Head = serde_json::from_slice(bundle_json).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(head.dsse_envelope?.payload)
        .ok()?;
    let statement: Statement = serde_json::from_slice(&payload).ok()?;
    Some(statement.predicate_type)
}

/// `sha256:<64 lowercase hex>`.
pub(crate) fn parse_digest(digest: &str) -> Result<Sha256Hash, KeylessError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| Sha256Hash::from_hex(&h.to_ascii_lowercase()).ok())
        .ok_or_else(|| {
            KeylessError::DigestMismatch(format!(
                "expected digest {digest:?} is not of the form sha256:<64 hex digits>"
            ))
        })
}

pub(crate) fn parse_bundle(json: &[u8]) -> Result<Bundle, KeylessError> {
    let text = std::str::from_utf8(json)
        .map_err(|_| KeylessError::Malformed("bundle is not UTF-8 text".to_string()))?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| {
        KeylessError::Malformed(format!("bundle is not a JSON object with a mediaType: {e}"))
    })?;
    let media_type = head.media_type.unwrap_or_default();
    if !super::BUNDLE_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(KeylessError::Malformed(format!(
            "bundle media type {media_type:?} is not a supported Sigstore bundle version (0.1, 0.2, 0.3)"
        )));
    }
    std::panic::catch_unwind(|| Bundle::from_json(text))
        .map_err(|_| KeylessError::Malformed("bundle could not be decoded".to_string()))?
        .map_err(|e| KeylessError::Malformed(format!("not a valid Sigstore bundle: {e}")))
}

/// First pass, or the second one that looks at the bundle's own digest after a digest
/// mismatch (see [`explain`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    OwnDigest,
}

pub(crate) fn verify_parsed(
    bundle: &Bundle,
    expected: &Sha256Hash,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
) -> Result<Verified, KeylessError> {
    verify_pass(bundle, expected, root, policy, Pass::First)
}

fn verify_pass(
    bundle: &Bundle,
    expected: &Sha256Hash,
    root: &TrustedRoot,
    policy: &KeylessPolicy,
    pass: Pass,
) -> Result<Verified, KeylessError> {
    let leaf = check_shape(bundle, policy)?;
    let result = run(root, bundle, expected, policy).map_err(|e| {
        explain(
            e,
            &Context {
                bundle,
                expected,
                root,
                policy,
                leaf: &leaf,
                pass,
            },
        )
    })?;

    let secs = |t: &SystemTime| super::trusted_root::unix_secs(*t);
    let all: Vec<SystemTime> = result
        .verified_timestamps()
        .iter()
        .map(|t| SystemTime::from(*t))
        .collect();
    let log_times: Vec<SystemTime> = set_times(bundle)
        .into_iter()
        .filter_map(|t| {
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(t).ok()?))
        })
        .collect();
    let mut tsa_times = all.clone();
    for t in &log_times {
        if let Some(i) = tsa_times.iter().position(|a| a == t) {
            tsa_times.remove(i);
        }
    }
    if all.is_empty() {
        // The crate never returns without a verified time; refuse rather than assume one.
        return Err(KeylessError::MissingTimestamp(
            "no verified time: neither a log entry with a valid SET nor an RFC 3161 timestamp"
                .to_string(),
        ));
    }
    if policy.tlog() == TlogMode::Required {
        let tsa_secs: Vec<i64> = tsa_times.iter().map(secs).collect();
        let all_secs: Vec<i64> = all.iter().map(secs).collect();
        check_log_entries(bundle, root, &tsa_secs, &all_secs)?;
    }
    if policy.tsa() == TsaMode::Required && tsa_times.is_empty() {
        return Err(KeylessError::MissingTimestamp(
            "no RFC 3161 timestamp verified, and the policy requires one (tsa: required)"
                .to_string(),
        ));
    }
    let (identity, issuer) = policy.authorize(&leaf)?;
    Ok(Verified {
        content: signed_content(bundle)?,
        identity,
        issuer,
        tsa_times,
        log_times,
        media_type: bundle.media_type().as_str().to_string(),
        log_entries: bundle.verification_material.tlog_entries.len(),
    })
}

/// The evidence the policy requires is there, and the bundle is a keyless one; returns
/// the parsed leaf.
fn check_shape(bundle: &Bundle, policy: &KeylessPolicy) -> Result<Leaf, KeylessError> {
    match &bundle.content {
        SignatureContent::MessageSignature(_) | SignatureContent::DsseEnvelope(_) => {}
        _ => {
            return Err(KeylessError::Malformed(
                "bundle holds neither a message signature nor a DSSE envelope".to_string(),
            ));
        }
    }
    let leaf = match &bundle.verification_material.content {
        VerificationMaterialContent::Certificate(c) => c.raw_bytes.as_bytes(),
        VerificationMaterialContent::X509CertificateChain { certificates } => certificates
            .first()
            .map(|c| c.raw_bytes.as_bytes())
            .ok_or_else(|| {
                KeylessError::Malformed("bundle has an empty certificate chain".to_string())
            })?,
        _ => {
            return Err(KeylessError::Malformed(
                "not a keyless bundle: it carries a public key, not a Fulcio certificate"
                    .to_string(),
            ));
        }
    };
    let leaf = Leaf::parse(leaf).map_err(KeylessError::Malformed)?;
    let material = &bundle.verification_material;
    if policy.tlog() == TlogMode::Required {
        if material.tlog_entries.is_empty() {
            return Err(KeylessError::MissingLogEntry(
                "the bundle has no transparency log entry, and the policy requires one (tlog: required)"
                    .to_string(),
            ));
        }
        for (i, entry) in material.tlog_entries.iter().enumerate() {
            let proof = entry
                .inclusion_proof
                .as_ref()
                .filter(|p| p.checkpoint.checkpoint().is_some());
            if bundle.media_type() == MediaType::Bundle0_1 {
                // v0.1 bundles (and the legacy form) prove inclusion by the SET alone.
                if entry.inclusion_promise.is_none() && proof.is_none() {
                    return Err(KeylessError::MissingLogEntry(format!(
                        "transparency log entry {i} has neither a signed entry timestamp nor an inclusion proof"
                    )));
                }
            } else if proof.is_none() {
                return Err(KeylessError::MissingLogEntry(format!(
                    "transparency log entry {i} has no inclusion proof with a signed checkpoint, and the policy requires one (tlog: required)"
                )));
            }
        }
    }
    if policy.tsa() == TsaMode::Required
        && material
            .timestamp_verification_data
            .rfc3161_timestamps
            .is_empty()
    {
        return Err(KeylessError::MissingTimestamp(
            "the bundle has no RFC 3161 timestamp, and the policy requires one (tsa: required)"
                .to_string(),
        ));
    }
    Ok(leaf)
}

/// The crate's verification: every cryptographic check, identity left to
/// [`KeylessPolicy::authorize`].
fn run(
    root: &TrustedRoot,
    bundle: &Bundle,
    digest: &Sha256Hash,
    policy: &KeylessPolicy,
) -> Result<VerificationResult, SigstoreError> {
    let mut p = VerificationPolicy::any_identity();
    if policy.tlog() == TlogMode::Skip {
        p = p.skip_tlog_unsafe();
    }
    if policy.sct() == SctMode::Skip {
        p = p.skip_sct();
    }
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        root.verifier().verify(*digest, bundle, &p)
    }))
    .unwrap_or_else(|_| {
        Err(SigstoreError::InvalidBundle(
            "bundle could not be verified (verifier failure)".to_string(),
        ))
    })
}

/// Rekor v1 entry kinds: their SET covers `integratedTime`.
fn is_rekor_v1(kind: KindVersion) -> bool {
    matches!(
        kind,
        KindVersion::HashedRekordV001 | KindVersion::DsseV001 | KindVersion::IntotoV002
    )
}

/// The `integratedTime` (seconds) of every entry whose SET the crate verified before using
/// it as a signing time: Rekor v1 entries with an inclusion promise.
fn set_times(bundle: &Bundle) -> Vec<i64> {
    bundle
        .verification_material
        .tlog_entries
        .iter()
        .filter(|e| is_rekor_v1(e.kind_version) && e.inclusion_promise.is_some())
        .filter_map(|e| e.integrated_time.map(|t| t.as_second()))
        .collect()
}

/// Every log entry names a log of the root whose key is valid at the entry's verified
/// time, and its checkpoint is signed by that key (hint = the log ID's first 4 bytes).
fn check_log_entries(
    bundle: &Bundle,
    root: &TrustedRoot,
    tsa_secs: &[i64],
    all_secs: &[i64],
) -> Result<(), KeylessError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, entry) in bundle.verification_material.tlog_entries.iter().enumerate() {
        let id = entry.log_id.key_id.as_bytes();
        let log = root.tlog(id).ok_or_else(|| {
            KeylessError::Log(format!(
                "transparency log entry {i} is from log {}, which the trusted root does not list",
                b64.encode(id)
            ))
        })?;
        let own_time = (is_rekor_v1(entry.kind_version) && entry.inclusion_promise.is_some())
            .then(|| entry.integrated_time.map(|t| t.as_second()))
            .flatten();
        let times: &[i64] = match &own_time {
            Some(t) => std::slice::from_ref(t),
            None if !tsa_secs.is_empty() => tsa_secs,
            None => all_secs,
        };
        if let Some(&t) = times.iter().find(|&&t| !log.valid_at(t)) {
            return Err(KeylessError::Log(format!(
                "the key of transparency log {} is valid {}, not at {}, the verified time of entry {i}",
                log.base_url,
                log.window(),
                rfc3339(t)
            )));
        }
        if let Some(proof) = &entry.inclusion_proof {
            let checkpoint = proof.checkpoint.checkpoint().ok_or_else(|| {
                KeylessError::Log(format!(
                    "transparency log entry {i} has an inclusion proof without a checkpoint"
                ))
            })?;
            let key = log.key.as_ref().ok_or_else(|| {
                KeylessError::Log(format!(
                    "the key of transparency log {} uses an algorithm this build does not verify",
                    log.base_url
                ))
            })?;
            let hint = id.get(..4).unwrap_or(id);
            let signed = checkpoint.signatures().iter().any(|s| {
                s.key_id.as_slice() == hint
                    && key.verify(checkpoint.signed_data(), &s.signature).is_ok()
            });
            if !signed {
                return Err(KeylessError::Log(format!(
                    "the checkpoint of transparency log entry {i} carries no valid signature by log {} (key hint {})",
                    log.base_url,
                    b64.encode(hint)
                )));
            }
        }
    }
    Ok(())
}

fn signed_content(bundle: &Bundle) -> Result<SignedContent, KeylessError> {
    match &bundle.content {
        SignatureContent::DsseEnvelope(env) => {
            let statement: serde_json::Value = serde_json::from_slice(env.payload.as_bytes())
                .map_err(|e| {
                    KeylessError::Malformed(format!("DSSE payload is not a JSON statement: {e}"))
                })?;
            let predicate_type = statement
                .get("predicateType")
                .and_then(|p| p.as_str())
                .ok_or_else(|| {
                    KeylessError::Malformed("in-toto statement has no predicateType".to_string())
                })?
                .to_string();
            Ok(SignedContent::Dsse {
                payload_type: env.payload_type.clone(),
                predicate_type,
                statement,
            })
        }
        _ => Ok(SignedContent::MessageSignature),
    }
}

/// The sha256 digests the bundle itself claims to sign: its message digest, or the
/// sha256 digests of its statement's subjects.
fn claimed_digests(bundle: &Bundle) -> Vec<Sha256Hash> {
    match &bundle.content {
        SignatureContent::MessageSignature(m) => m
            .message_digest
            .iter()
            .filter(|d| d.algorithm == HashAlgorithm::Sha2256)
            .filter_map(|d| Sha256Hash::try_from(d.digest.as_bytes()).ok())
            .collect(),
        SignatureContent::DsseEnvelope(env) => {
            serde_json::from_slice::<serde_json::Value>(env.payload.as_bytes())
                .ok()
                .and_then(|s| s.get("subject").and_then(|s| s.as_array()).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.pointer("/digest/sha256").and_then(|h| h.as_str()))
                .filter_map(|h| Sha256Hash::from_hex(h).ok())
                .collect()
        }
        _ => Vec::new(),
    }
}

struct Context<'a> {
    bundle: &'a Bundle,
    expected: &'a Sha256Hash,
    root: &'a TrustedRoot,
    policy: &'a KeylessPolicy,
    leaf: &'a Leaf,
    pass: Pass,
}

/// Maps a `sigstore-verify` error to a verdict, re-examining the bundle where the error
/// alone does not decide the code.
fn explain(err: SigstoreError, cx: &Context<'_>) -> KeylessError {
    match err {
        SigstoreError::ArtifactMismatch(detail) => digest_mismatch(&detail, cx),
        SigstoreError::Certificate(CertificateError::ChainInvalid(detail)) => {
            match leaf_invalid_at(cx) {
                Some(expired) => expired,
                None => KeylessError::Chain(format!(
                    "certificate does not chain to a certificate authority of the trusted root: {detail}"
                )),
            }
        }
        SigstoreError::Certificate(CertificateError::NoValidAuthority { time }) => {
            KeylessError::Chain(format!(
                "no certificate authority of the trusted root is valid at {time}, a verified signing time"
            ))
        }
        SigstoreError::Certificate(
            e @ (CertificateError::Expired { .. } | CertificateError::NotYetValid { .. }),
        ) => KeylessError::Expired(format!("signing {e}")),
        SigstoreError::Certificate(CertificateError::Sct(detail)) => KeylessError::Sct(format!(
            "no signed certificate timestamp verifies against the trusted root's CT logs: {detail}"
        )),
        SigstoreError::Certificate(CertificateError::Malformed(detail)) => {
            KeylessError::Malformed(detail)
        }
        SigstoreError::Certificate(e) => KeylessError::Chain(e.to_string()),
        SigstoreError::TransparencyLog(TransparencyLogError::IntegratedTime(detail)) => {
            // A log that signs a time still to come is wrong, whatever the certificate says.
            let now = super::trusted_root::unix_secs(SystemTime::now());
            if set_times(cx.bundle).iter().any(|&t| t > now) {
                KeylessError::Log(format!("invalid integrated time: {detail}"))
            } else {
                leaf_invalid_at(cx).unwrap_or(KeylessError::Log(format!(
                    "invalid integrated time: {detail}"
                )))
            }
        }
        SigstoreError::TransparencyLog(e) => KeylessError::Log(e.to_string()),
        SigstoreError::Timestamp(TimestampError::NoVerifiedTimestamp(detail)) => {
            KeylessError::MissingTimestamp(format!("no verified signing time: {detail}"))
        }
        SigstoreError::Timestamp(e) => KeylessError::Timestamp(e.to_string()),
        SigstoreError::SignatureInvalid(detail) => KeylessError::Signature(detail),
        // Raised while verifying only by the SCT check, when the root has no CT log key.
        SigstoreError::InvalidTrustRoot(detail) => KeylessError::Sct(format!(
            "signed certificate timestamp cannot be verified: {detail}"
        )),
        SigstoreError::Crypto(e) => KeylessError::Signature(e.to_string()),
        other => KeylessError::Malformed(other.to_string()),
    }
}

/// The first verified time at which the leaf was not valid, as an `Expired` error.
///
/// Called only for errors the crate raises after it has verified every timestamp of the
/// bundle (chain and log-time checks come after the SETs and RFC 3161 tokens are
/// verified), so the SET times and the tokens' `genTime` are verified times.
fn leaf_invalid_at(cx: &Context<'_>) -> Option<KeylessError> {
    let material = &cx.bundle.verification_material;
    let tokens = material
        .timestamp_verification_data
        .rfc3161_timestamps
        .iter()
        .filter_map(|t| timestamp_gen_time(t.signed_timestamp.as_bytes()))
        .map(|t| (t, "RFC 3161 timestamp"));
    let sets = set_times(cx.bundle)
        .into_iter()
        .map(|t| (t, "log entry integrated time"));
    tokens
        .chain(sets)
        .find(|(t, _)| !cx.leaf.valid_at(*t))
        .map(|(t, what)| {
            KeylessError::Expired(format!(
                "signing certificate was valid from {} to {}, not at {} ({what})",
                rfc3339(cx.leaf.not_before),
                rfc3339(cx.leaf.not_after),
                rfc3339(t)
            ))
        })
}

/// The bundle does not bind `expected`: a trusted signature for another artifact
/// (`digest-mismatch`), or a bundle whose parts disagree (a log entry describing another
/// signature or digest: `invalid-signature`). Told apart by verifying the bundle against
/// the digest it claims itself.
fn digest_mismatch(detail: &str, cx: &Context<'_>) -> KeylessError {
    let entry_mismatch = || {
        KeylessError::Log(format!(
            "a transparency log entry does not match the bundle's signature or digest ({detail})"
        ))
    };
    if cx.pass == Pass::OwnDigest {
        return entry_mismatch();
    }
    let claimed = claimed_digests(cx.bundle);
    if claimed.contains(cx.expected) {
        return entry_mismatch();
    }
    let Some(own) = claimed.first() else {
        return KeylessError::Malformed(format!(
            "bundle names no sha256 digest of what it signs ({detail})"
        ));
    };
    match verify_pass(cx.bundle, own, cx.root, cx.policy, Pass::OwnDigest) {
        Ok(v) => KeylessError::DigestMismatch(format!(
            "signature by {} is for {}, not sha256:{}",
            v.identity,
            claimed
                .iter()
                .map(|d| format!("sha256:{}", d.to_hex()))
                .collect::<Vec<_>>()
                .join(", "),
            cx.expected.to_hex()
        )),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyless::policy::{IdentityRule, Matcher};
    use crate::verdict::VerdictCode;

    /// A published bundle (sigstore-conformance `happy-path-v0.3`, signed by Sigstore's
    /// public-good instance) and what it signs.
    fn vector() -> (Vec<u8>, String, TrustedRoot, KeylessPolicy) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sigstore/conformance/bundle-verify");
        let bundle = std::fs::read(dir.join("happy-path-v0.3/bundle.sigstore.json"))
            .expect("conformance vector");
        let artifact = std::fs::read(dir.join("a.txt")).expect("conformance artifact");
        let digest = format!(
            "sha256:{}",
            sigstore_verify::crypto::sha256(&artifact).to_hex()
        );
        let root = TrustedRoot::from_json(
            sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes(),
        )
        .expect("production root");
        let policy = KeylessPolicy::new(vec![IdentityRule::new(
            Matcher::Exact("https://token.actions.githubusercontent.com".to_string()),
            Matcher::Exact("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main".to_string()),
        )])
        .expect("policy");
        (bundle, digest, root, policy)
    }

    #[test]
    fn the_published_bundle_verifies() {
        let (bundle, digest, root, policy) = vector();
        let v = verify_bundle(&bundle, &digest, &root, &policy).expect("verifies");
        assert_eq!(v.content, SignedContent::MessageSignature);
        assert_eq!(v.issuer, "https://token.actions.githubusercontent.com");
        assert_eq!(v.log_entries, 1);
        assert_eq!(v.log_times.len(), 1);
        assert!(v.is_image_signature());
    }

    /// Fuzz-style robustness: truncations, byte flips and structural edits of a valid
    /// bundle never panic, and never verify unless the edit left what was verified
    /// unchanged (an unused bit of a base64 character, the media type's version).
    #[test]
    fn mutated_bundles_never_panic_and_never_verify() {
        let (bundle, digest, root, policy) = vector();
        // What no signature covers: the media type (versions that accept the same content),
        // the message digest (the signature is checked over the expected digest itself)
        // and the signer names on checkpoint signature lines (keys are found by hint). A
        // mutation of those changes nothing that was verified.
        fn normalized(m: &[u8]) -> Option<Bundle> {
            let mut v: serde_json::Value = serde_json::from_slice(m).ok()?;
            v["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.3+json".into();
            if let Some(sig) = v
                .get_mut("messageSignature")
                .and_then(|s| s.as_object_mut())
            {
                sig.remove("messageDigest");
            }
            if let Some(entries) = v
                .pointer_mut("/verificationMaterial/tlogEntries")
                .and_then(|e| e.as_array_mut())
            {
                for e in entries {
                    if let Some(env) = e.pointer_mut("/inclusionProof/checkpoint/envelope") {
                        let text = env.as_str().unwrap_or_default();
                        let lines: Vec<String> = text
                            .split('\n')
                            .map(|l| match l.strip_prefix("\u{2014} ") {
                                Some(rest) => format!(
                                    "\u{2014} signer {}",
                                    rest.split_once(' ').map_or(rest, |(_, sig)| sig)
                                ),
                                None => l.to_string(),
                            })
                            .collect();
                        *env = lines.join("\n").into();
                    }
                }
            }
            Bundle::from_json(&v.to_string()).ok()
        }
        let original = normalized(&bundle).expect("original parses");
        let same_bundle = |m: &[u8]| normalized(m).is_some_and(|b| b == original);
        let mut tried = 0;
        let mut check = |m: Vec<u8>| {
            tried += 1;
            if let Ok(v) = verify_bundle(&m, &digest, &root, &policy) {
                assert!(
                    same_bundle(&m),
                    "a changed bundle verified: {v:?}\n{}",
                    String::from_utf8_lossy(&m)
                );
            }
        };
        // Truncations.
        for len in (0..bundle.len()).step_by(7) {
            check(bundle[..len].to_vec());
        }
        // Byte flips: the low bit everywhere, the case and high bits at every fourth byte.
        for i in 0..bundle.len() {
            let flips: &[u8] = if i % 4 == 0 {
                &[0x01, 0x20, 0x80]
            } else {
                &[0x01]
            };
            for &x in flips {
                let mut m = bundle.clone();
                m[i] ^= x;
                check(m);
            }
        }
        // Structural edits of every JSON value: removed, nulled, emptied, retyped.
        let value: serde_json::Value = serde_json::from_slice(&bundle).expect("json");
        let mut pointers = Vec::new();
        fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, c) in m {
                        walk(c, format!("{at}/{k}"), out);
                    }
                }
                serde_json::Value::Array(a) => {
                    for (i, c) in a.iter().enumerate() {
                        walk(c, format!("{at}/{i}"), out);
                    }
                }
                _ => {}
            }
            out.push(at);
        }
        walk(&value, String::new(), &mut pointers);
        for p in pointers.iter().filter(|p| !p.is_empty()) {
            for replacement in [
                serde_json::Value::Null,
                serde_json::json!(""),
                serde_json::json!(0),
                serde_json::json!(-1),
                serde_json::json!("AAAA"),
                serde_json::json!([]),
                serde_json::json!({}),
                serde_json::json!("9999999999999999999999"),
            ] {
                let mut m = value.clone();
                if let Some(slot) = m.pointer_mut(p) {
                    *slot = replacement;
                }
                check(serde_json::to_vec(&m).expect("json"));
            }
            let mut m = value.clone();
            let (parent, key) = p.rsplit_once('/').unwrap_or(("", p));
            match m.pointer_mut(parent) {
                Some(serde_json::Value::Object(o)) => {
                    o.remove(key);
                }
                Some(serde_json::Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
            check(serde_json::to_vec(&m).expect("json"));
        }
        // Garbage that is not a bundle at all.
        for junk in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"\xff\xfe",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\"}",
        ] {
            check(junk.to_vec());
        }
        assert!(tried > 10_000, "{tried} mutations tried");
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        let (bundle, _, root, policy) = vector();
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            "sha256:xyz",
            &format!("sha256:{}", "0".repeat(63)),
        ] {
            let e = verify_bundle(&bundle, bad, &root, &policy).expect_err(bad);
            assert_eq!(e.code(), VerdictCode::DigestMismatch, "{bad}: {e}");
        }
    }
}
